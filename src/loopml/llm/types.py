"""What the gateway's parts hand each other.

Inside the gateway a chat request is an OpenAI Chat Completions body (a ``dict``), a response
is an OpenAI ``chat.completion`` object and a stream is a sequence of OpenAI
``chat.completion.chunk`` objects, whatever the provider or the client speaks:
:mod:`loopml.llm.translate` turns Anthropic Messages into that shape and back. Token figures
travel as :class:`Usage`, the same for every provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from loopml.llm.config import Deployment

#: An OpenAI Chat Completions request, response or stream chunk, as JSON-decoded.
Body = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens of one request, provider-neutral.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's
    ``prompt_tokens``; Anthropic's ``input_tokens + cache_read_input_tokens +
    cache_creation_input_tokens``). ``cached_read_tokens`` and ``cached_write_tokens`` are the
    parts of it read from or written to the provider's prompt cache. ``output_tokens`` counts
    every generated token, reasoning included (OpenAI's ``completion_tokens``);
    ``reasoning_tokens`` is the reasoning part. ``estimated`` is true when the gateway counted
    the tokens itself because the provider reported none (a stream without usage).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_read_tokens: int = 0
    cached_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_read_tokens + other.cached_read_tokens,
            self.cached_write_tokens + other.cached_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.estimated or other.estimated,
        )


@dataclass
class Attempt:
    """One try at one deployment, in a request's attempt chain (logged, and a span)."""

    deployment: str
    provider: str
    model: str
    status: str  # "ok" | a FailureKind
    latency_ms: float
    http_status: int | None = None
    error: str | None = None
    started_at: float = 0.0  # time.time()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    """A provider's answer to a non-streamed chat request, in OpenAI's shape."""

    body: Body  # an OpenAI chat.completion object; its "usage" is OpenAI-shaped too
    usage: Usage
    http_status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    """One provider adapter (OpenAI-compatible or Anthropic), shared by every deployment of
    that kind; holds a pooled async HTTP client. Errors are :class:`ProviderError`."""

    kind: str

    async def chat(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        """Send an OpenAI-shaped chat request (``stream`` absent/false) to ``deployment``."""
        ...

    def stream(self, deployment: Deployment, body: Body, *, timeout: float) -> AsyncIterator[Body]:
        """Stream an OpenAI-shaped chat request: yields ``chat.completion.chunk`` objects; the
        last has ``usage`` (OpenAI-shaped) when the provider reported it."""
        ...

    async def embed(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        """An OpenAI ``/embeddings`` request (usage: input tokens only)."""
        ...

    async def aclose(self) -> None: ...
