"""The gateway's configuration: ``[gateway]`` in ``loopml.toml``, or a TOML file given with
``loopml gateway serve --config FILE`` (the same keys, at the top level or under
``[gateway]``). Keys are never written here: a deployment names the environment variable
that holds its provider key (``api_key_env``).

::

    [gateway]
    require_key = true          # every request needs a virtual key (loopml gateway keys create)
    limits_url = ""             # "": count limits and budgets in the metadata store; redis://…
    log_content = "full"        # full | redact | none: what the request log keeps of messages
    log_flush_interval = 1.0    # seconds between writes of the request log (loss bound on SIGKILL)
    timeout = 60.0              # seconds per provider attempt
    num_retries = 2             # extra attempts per request (across deployments and fallbacks)
    cooldown_failures = 3       # failures in a row that take a deployment out …
    cooldown_seconds = 30.0     # … for this long (circuit breaker)
    otlp_endpoint = ""          # http://collector:4318/v1/traces: also export spans over OTLP
    budget_alerts = [0.5, 0.8, 1.0]

    [gateway.models.cheap]      # a model group: the name clients ask for
    strategy = "weighted"       # weighted | least-busy | lowest-latency
    fallbacks = ["frontier"]    # groups tried when every deployment of this one failed
    context_window = 128000
    larger_context = "long"     # the group a prompt over context_window goes to

    [[gateway.models.cheap.deployments]]
    name = "cheap-openai"
    provider = "openai"         # openai (any OpenAI-compatible API) | anthropic
    model = "gpt-4o-mini"
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    weight = 3

    [gateway.routers.auto]      # a cheap-vs-frontier router, asked for as model "auto"
    default = "frontier"
    [[gateway.routers.auto.rules]]
    model = "cheap"
    max_prompt_tokens = 2000    # and/or: tags = ["faq"], classifier = "module:function"

    [gateway.teams.growth]
    budget = "50/month"         # USD per day or month
    rpm = 600
    tpm = 200000

    [gateway.prices."gpt-4o-mini"]   # USD per 1M tokens; overrides the shipped table
    input = 0.15
    cached_input = 0.075
    output = 0.60
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["weighted", "least-busy", "lowest-latency"]
ProviderKind = Literal["openai", "anthropic"]
Period = Literal["day", "month"]
LogContent = Literal["full", "redact", "none"]


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens. ``cached_input`` (prompt-cache reads), ``cache_write`` (prompt-cache
    writes) and ``reasoning`` default to ``input``, ``input`` and ``output``."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True)
class Budget:
    """A spend limit: ``amount_usd`` per ``period`` (calendar day or month, UTC)."""

    amount_usd: float
    period: Period


@dataclass(frozen=True)
class Limits:
    """Limits of one key, team or end user (None: no limit)."""

    rpm: int | None = None
    tpm: int | None = None
    budget: Budget | None = None
    max_request_cost_usd: float | None = None


@dataclass(frozen=True)
class Deployment:
    """One model at one provider: what a model group routes to."""

    name: str
    group: str
    provider: ProviderKind
    model: str
    base_url: str
    api_key_env: str | None = None
    weight: float = 1.0
    timeout: float | None = None  # None: the gateway's
    price: str | None = None  # the price table's key (None: ``model``)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def api_key(self) -> str | None:
        """The provider key, read from ``api_key_env`` now (None: not set or no variable)."""
        import os

        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class ModelGroup:
    """A model alias clients ask for, and the deployments that serve it."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: Strategy = "weighted"
    fallbacks: tuple[str, ...] = ()
    context_window: int | None = None
    larger_context: str | None = None


@dataclass(frozen=True)
class RouterRule:
    """Send a request to ``model`` when every condition given holds."""

    model: str
    max_prompt_tokens: int | None = None
    min_prompt_tokens: int | None = None
    tags: tuple[str, ...] = ()
    classifier: str | None = None  # "module:function"(request body) -> bool


@dataclass(frozen=True)
class Router:
    """A model name that picks a group per request from its rules (first match) or default."""

    name: str
    default: str
    rules: tuple[RouterRule, ...] = ()


@dataclass(frozen=True)
class GatewayConfig:
    """The whole ``[gateway]`` table, checked."""

    models: Mapping[str, ModelGroup] = field(default_factory=dict)
    routers: Mapping[str, Router] = field(default_factory=dict)
    teams: Mapping[str, Limits] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)  # overrides of the shipped table
    user_limits: Limits = field(default_factory=Limits)  # per end user (the `user` field)
    require_key: bool = True
    limits_url: str = ""
    log_content: LogContent = "full"
    log_flush_interval: float = 1.0
    log_batch_rows: int = 1000
    timeout: float = 60.0
    num_retries: int = 2
    cooldown_failures: int = 3
    cooldown_seconds: float = 30.0
    otlp_endpoint: str = ""
    budget_alerts: tuple[float, ...] = (0.5, 0.8, 1.0)
    #: Where it was read from (shown in errors), and the raw table (compared on reload).
    source: str = "loopml.toml"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
