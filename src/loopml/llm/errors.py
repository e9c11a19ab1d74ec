"""The LLM gateway's errors: each a :class:`~loopml.exceptions.LoopmlError` with the HTTP
status the gateway answers with and the OpenAI error ``type``/``code`` it puts in the body.

    GatewayError
    ├── BadRequest             400 invalid_request_error  (malformed body, bad parameter)
    │   └── ContextWindowExceeded 400 context_length_exceeded (no larger model declared)
    ├── AuthenticationFailed   401 invalid_api_key   (missing, unknown, revoked, expired key)
    ├── PermissionDenied       403 model_not_allowed (the key may not use this model)
    ├── UnknownModel           404 model_not_found   (no such alias; names the known ones)
    ├── BudgetExceeded         402 budget_exceeded   (names the budget and what is left)
    ├── RateLimited            429 rate_limit_exceeded (names the limit; retry_after seconds)
    └── UpstreamError          502/503/504 (every deployment failed; the attempt chain)

:class:`ProviderError` is what a provider adapter raises for one failed attempt; the router
reads its ``kind`` to decide whether to retry, fall back or give up.
"""

from __future__ import annotations

from typing import Any, Literal

from loopml.exceptions import LoopmlError

#: Why one attempt at a provider failed. ``rate_limit``, ``server``, ``timeout`` and
#: ``connection`` are retried and fall back; ``context_window`` falls back to a larger-context
#: group; ``bad_request`` and ``auth`` are the caller's or the config's fault and are not
#: retried; ``garbage`` (an answer that is not the protocol) is treated like ``server``.
FailureKind = Literal[
    "rate_limit",
    "server",
    "timeout",
    "connection",
    "context_window",
    "bad_request",
    "auth",
    "garbage",
]
RETRYABLE: frozenset[str] = frozenset({"rate_limit", "server", "timeout", "connection", "garbage"})


class GatewayError(LoopmlError):
    """An error the gateway answers a client with."""

    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def openai_body(self) -> dict[str, Any]:
        """The body OpenAI's API answers an error with (what the ``openai`` SDK parses)."""
        return {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": None}
        }

    def anthropic_body(self) -> dict[str, Any]:
        """The body Anthropic's API answers an error with."""
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            402: "billing_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        return {
            "type": "error",
            "error": {"type": kinds.get(self.status, "api_error"), "message": self.message},
        }


class BadRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class ContextWindowExceeded(BadRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(GatewayError):
    status, type, code = 403, "permission_error", "model_not_allowed"


class UnknownModel(GatewayError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class BudgetExceeded(GatewayError):
    status, type, code = 402, "insufficient_quota", "budget_exceeded"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class UpstreamError(GatewayError):
    """Every deployment the router tried failed; ``attempts`` is the chain."""

    status, type, code = 502, "api_error", "upstream_error"

    def __init__(self, message: str, status: int = 502, **details: Any) -> None:
        super().__init__(message, **details)
        self.status = status


class ProviderError(Exception):
    """One failed attempt at one deployment (not shown to clients as is)."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        tokens_sent: int = 0,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        #: Output tokens already streamed to the caller when it failed (0: none).
        self.tokens_sent = tokens_sent

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"ProviderError({self.kind!r}, {self.message!r}, status={self.status})"
