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
                                # (the gateway's, and those applications send to /v1/traces)
    budget_alerts = [0.5, 0.8, 1.0]
    cut_streams_at_budget = false  # end a stream with an error event when its budget runs out

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

import copy
import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from loopml.config import _did_you_mean
from loopml.exceptions import InvalidConfig

if TYPE_CHECKING:
    from loopml.config import Settings

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
class GuardrailsConfig:
    """``[gateway.guardrails]``: the policies (:class:`loopml.llm.guardrails.Policy` by name,
    the built-in ``default`` among them) and which one judges a request: the key's
    (``keys``, by key id), else its team's (``teams``), else the model alias's (``routes``),
    else ``default`` ("" or absent: none).

    ::

        [gateway.guardrails]
        default = "default"          # the built-in policy: PII redacted, secrets and injections blocked
        routes = { frontier = "strict" }
        teams = { growth = "strict" }
        keys = { k_3f2a9c1e = "none" }   # "none": no guardrails for this key

        [gateway.guardrails.policies.strict]
        rules = [ … ]                # see docs/guardrails.md
    """

    policies: Mapping[str, Any] = field(default_factory=dict)
    default: str = ""
    routes: Mapping[str, str] = field(default_factory=dict)
    teams: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any request can be judged at all."""
        return bool(self.default or self.routes or self.teams or self.keys)

    def policy_for(self, *, key_id: str | None, team: str | None, route: str) -> Any:
        """The policy that judges a request, or None."""
        name = None
        if key_id is not None:
            name = self.keys.get(key_id)
        if name is None and team is not None:
            name = self.teams.get(team)
        if name is None:
            name = self.routes.get(route)
        if name is None:
            name = self.default
        if not name or name == "none":
            return None
        return self.policies[name]


@dataclass(frozen=True)
class OnlineEvalConfig:
    """``[gateway.online_eval]``: judge a share of the traffic, off the response path
    (:mod:`loopml.llm.rag.online`).

    ::

        [gateway.online_eval]
        sample = 0.1                 # share of chat requests judged (0: off)
        judge_model = "judge"        # a model alias of this gateway
        evaluators = ["context_relevance", "groundedness", "answer_relevance"]
        prompts = { groundedness = "my/grounded@production" }   # instead of the built-in
        routes = ["support"]         # model aliases sampled (default: every one)
        delay_s = 2.0                # wait for the application's retrieval span
        window = "1h"                # width of the time-series windows
        threshold = 0.5              # a score at or above it passes
        max_queue = 1000             # sampled requests waiting beyond it are dropped
    """

    sample: float = 0.0
    evaluators: tuple[str, ...] = ("context_relevance", "groundedness", "answer_relevance")
    judge_model: str = ""
    prompts: Mapping[str, str] = field(default_factory=dict)
    routes: tuple[str, ...] = ()
    delay_s: float = 2.0
    window: str = "1h"
    threshold: float = 0.5
    max_queue: int = 1000

    @property
    def active(self) -> bool:
        """Whether any request is sampled at all."""
        return self.sample > 0


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
    #: End a stream with an error event once its cost reaches what is left of the tightest
    #: budget of its key, team or user (checked as tokens arrive; the cut is billed).
    cut_streams_at_budget: bool = False
    #: ``[gateway.cache]`` checked (a :class:`loopml.llm.cache.CacheConfig`); None without the
    #: table, or with ``enabled = false`` and no route enabling it: no cache.
    cache: Any = None
    #: ``[gateway.guardrails]``: its policies and which requests each judges.
    guardrails: GuardrailsConfig = field(default_factory=lambda: GuardrailsConfig())
    #: ``[gateway.online_eval]``: which share of the traffic is judged, and how.
    online_eval: OnlineEvalConfig = field(default_factory=lambda: OnlineEvalConfig())
    #: Where it was read from (shown in errors), and the raw table (compared on reload).
    source: str = "loopml.toml"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(
        cls, table: Mapping[str, Any], source: str = "loopml.toml", *, root: str = "gateway"
    ) -> GatewayConfig:
        """A checked config from a ``[gateway]`` table as written (``source``: the file, and
        ``root``: the table's name, both shown in errors; ``root=""`` for a file with the keys
        at its top level).

        Every problem raises :class:`~loopml.exceptions.InvalidConfig` naming the entry and
        the fix, e.g. ``loopml.toml [gateway.models.cheap.deployments][1]: unknown provider
        'opneai' (did you mean 'openai'?); use "openai" or "anthropic"`` (indexes count
        from 0).
        """
        return _parse(cls, table, source, root)


# -- parsing ---------------------------------------------------------------------------------

#: Where each provider kind is reached when a deployment gives no ``base_url``.
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
PROVIDERS = ("openai", "anthropic")
STRATEGIES = ("weighted", "least-busy", "lowest-latency")
LOG_CONTENT = ("full", "redact", "none")
_TOP_KEYS = (
    "require_key",
    "limits_url",
    "log_content",
    "log_flush_interval",
    "log_batch_rows",
    "timeout",
    "num_retries",
    "cooldown_failures",
    "cooldown_seconds",
    "otlp_endpoint",
    "budget_alerts",
    "cut_streams_at_budget",
    "models",
    "routers",
    "teams",
    "users",
    "prices",
    "cache",
    "guardrails",
    "online_eval",
)
_ONLINE_EVAL_KEYS = (
    "sample",
    "evaluators",
    "judge_model",
    "prompts",
    "routes",
    "delay_s",
    "window",
    "threshold",
    "max_queue",
)
_GUARDRAILS_KEYS = ("policies", "default", "routes", "teams", "keys")
_GROUP_KEYS = ("deployments", "strategy", "fallbacks", "context_window", "larger_context")
_DEPLOYMENT_KEYS = (
    "name",
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "weight",
    "timeout",
    "price",
    "headers",
)
_ROUTER_KEYS = ("default", "rules")
_RULE_KEYS = ("model", "max_prompt_tokens", "min_prompt_tokens", "tags", "classifier")
_LIMIT_KEYS = ("rpm", "tpm", "budget", "max_request_cost_usd")
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "reasoning")
#: Headers that carry a provider key: never in the config either.
_KEY_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASSIFIER = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")
_BUDGET = re.compile(r"\$?\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*([a-z]+)")
_PERIOD_WORDS = {"day": "day", "daily": "day", "month": "month", "monthly": "month"}


class _Checker:
    """Reads one ``[gateway]`` table; ``where(path)`` names an entry the way the file does."""

    def __init__(self, source: str, root: str) -> None:
        self.source = source
        self.root = root

    def where(self, path: str = "") -> str:
        name = ".".join(p for p in (self.root, path) if p)
        if not name:
            return self.source
        head, _, rest = name.partition("[")
        return f"{self.source} [{head}]" + (f"[{rest}" if rest else "")

    def fail(self, path: str, message: str) -> InvalidConfig:
        return InvalidConfig(f"{self.where(path)}: {message}")

    def table(self, value: Any, path: str, hint: str = "") -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a table{hint}, got {value!r}")
        return value

    def keys(self, table: Mapping[str, Any], valid: Sequence[str], path: str) -> None:
        for key in table:
            if key == "api_key":
                raise self.fail(
                    path,
                    'never put keys in the config; set api_key_env = "VAR" (the name of the '
                    "environment variable that holds the key) instead of api_key",
                )
            if key not in valid:
                raise self.fail(path, f"unknown key {key!r}{_did_you_mean(str(key), list(valid))}")

    def string(self, table: Mapping[str, Any], key: str, path: str, *, empty: bool = False) -> str:
        value = table[key]
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(path, f"{key} must be a non-empty string, got {value!r}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: str) -> bool:
        value = table[key]
        if not isinstance(value, bool):
            raise self.fail(path, f"{key} must be true or false, got {value!r}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, path: str, *, minimum: int = 1) -> int:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.fail(path, f"{key} must be {what}, got {value!r}")
        return value

    def number(self, table: Mapping[str, Any], key: str, path: str, *, zero: bool = False) -> float:
        value = table[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            what = "a number >= 0" if zero else "a number > 0"
            raise self.fail(path, f"{key} must be {what}, got {value!r}")
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = table[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(path, f"{key} must be a list of names, got {value!r}")
        return tuple(value)

    def choice(self, table: Mapping[str, Any], key: str, path: str, valid: Sequence[str]) -> Any:
        value = table[key]
        if value not in valid:
            options = " or ".join(f'"{v}"' for v in valid)
            close = difflib.get_close_matches(str(value), list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(path, f"unknown {key} {value!r}{hint}; use {options}")
        return value


def _parse_budget(check: _Checker, value: Any, path: str) -> Budget:
    """``"50/month"``, ``"2.5/day"`` or ``{amount = 50, period = "month"}``."""
    usage = 'write budget = "50/month" or "2.5/day" (USD), or {amount = 50, period = "month"}'
    if isinstance(value, str):
        match = _BUDGET.fullmatch(value.strip().lower())
        period = _PERIOD_WORDS.get(match.group(2)) if match else None
        if match is None or period is None:
            raise check.fail(path, f"budget {value!r} is not a budget; {usage}")
        amount = float(match.group(1))
    elif isinstance(value, Mapping):
        check.keys(value, ("amount", "period"), f"{path}.budget")
        if "amount" not in value or "period" not in value:
            raise check.fail(f"{path}.budget", f"needs amount and period; {usage}")
        amount = check.number(value, "amount", f"{path}.budget")
        period = check.choice(value, "period", f"{path}.budget", ("day", "month"))
    else:
        raise check.fail(path, f"budget must be a string or a table, got {value!r}; {usage}")
    if not math.isfinite(amount) or amount <= 0:
        raise check.fail(path, f"budget {value!r} must be more than 0 USD; {usage}")
    return Budget(amount_usd=amount, period=cast(Period, period))


def _parse_limits(check: _Checker, table: Any, path: str) -> Limits:
    table = check.table(table, path, ' (rpm = 600, tpm = 200000, budget = "50/month")')
    check.keys(table, _LIMIT_KEYS, path)
    return Limits(
        rpm=check.integer(table, "rpm", path) if "rpm" in table else None,
        tpm=check.integer(table, "tpm", path) if "tpm" in table else None,
        budget=_parse_budget(check, table["budget"], path) if "budget" in table else None,
        max_request_cost_usd=(
            check.number(table, "max_request_cost_usd", path)
            if "max_request_cost_usd" in table
            else None
        ),
    )


def _parse_price(check: _Checker, table: Any, path: str) -> Price:
    table = check.table(table, path, " (input = 0.15, output = 0.60: USD per 1M tokens)")
    check.keys(table, _PRICE_KEYS, path)
    for key in ("input", "output"):
        if key not in table:
            raise check.fail(path, f"a price needs {key} (USD per 1M tokens)")
    # 0 is a price (a model served locally costs nothing per token).
    values = {k: check.number(table, k, path, zero=True) for k in _PRICE_KEYS if k in table}
    return Price(**values)


def _parse_deployment(
    check: _Checker, table: Any, group: str, index: int, prices: Mapping[str, Price]
) -> Deployment:
    path = f"models.{group}.deployments[{index}]"
    table = check.table(table, path, ' (provider = "openai", model = "gpt-4o-mini", …)')
    check.keys(table, _DEPLOYMENT_KEYS, path)
    for key in ("provider", "model"):
        if key not in table:
            raise check.fail(path, f'missing {key}; e.g. provider = "openai", model = "gpt-4o"')
    provider = check.choice(table, "provider", path, PROVIDERS)
    model = check.string(table, "model", path)
    name = check.string(table, "name", path) if "name" in table else f"{group}/{model}"
    base_url = check.string(table, "base_url", path) if "base_url" in table else None
    if base_url is None:
        base_url = DEFAULT_BASE_URLS[provider]
    if not base_url.startswith(("http://", "https://")):
        raise check.fail(path, f"base_url must start with http:// or https://, got {base_url!r}")
    api_key_env = None
    if "api_key_env" in table:
        api_key_env = check.string(table, "api_key_env", path)
        if not _ENV_NAME.fullmatch(api_key_env):
            raise check.fail(
                path,
                f"api_key_env must name an environment variable (e.g. OPENAI_API_KEY), got "
                f"{api_key_env[:4]!r}…: never put the key itself in the config",
            )
    headers: dict[str, str] = {}
    if "headers" in table:
        given = check.table(table["headers"], f"{path}.headers")
        for key, value in given.items():
            if not isinstance(value, str):
                raise check.fail(f"{path}.headers", f"{key} must be a string, got {value!r}")
            if key.lower() in _KEY_HEADERS:
                raise check.fail(
                    f"{path}.headers",
                    f'never put keys in the config ({key}); set api_key_env = "VAR" and the '
                    "gateway sends the key from that environment variable",
                )
            headers[key] = value
    price = check.string(table, "price", path) if "price" in table else None
    if price is not None:
        from loopml.llm.prices import PRICES, lookup

        if lookup(price, prices) is None:
            known = sorted({*prices, *PRICES})
            raise check.fail(
                path,
                f"unknown price {price!r}{_did_you_mean(price, known)} Or add "
                f'[{check.root + "." if check.root else ""}prices."{price}"] '
                "with input and output (USD per 1M tokens)",
            )
    return Deployment(
        name=name,
        group=group,
        provider=provider,
        model=model,
        base_url=base_url.rstrip("/"),
        api_key_env=api_key_env,
        weight=check.number(table, "weight", path) if "weight" in table else 1.0,
        timeout=check.number(table, "timeout", path) if "timeout" in table else None,
        price=price,
        headers=headers,
    )


def _parse_group(check: _Checker, name: str, table: Any, prices: Mapping[str, Price]) -> ModelGroup:
    path = f"models.{name}"
    table = check.table(table, path, " with [[…deployments]] below it")
    check.keys(table, _GROUP_KEYS, path)
    deployments = table.get("deployments")
    if not deployments:
        table_name = ".".join(p for p in (check.root, path, "deployments") if p)
        raise check.fail(
            path,
            f"a model group needs at least one deployment; add [[{table_name}]] with "
            'provider = "openai" and model = "…"',
        )
    if not isinstance(deployments, list):
        raise check.fail(path, f"deployments must be a list of tables, got {deployments!r}")
    parsed = tuple(_parse_deployment(check, d, name, i, prices) for i, d in enumerate(deployments))
    context_window = (
        check.integer(table, "context_window", path) if "context_window" in table else None
    )
    larger = check.string(table, "larger_context", path) if "larger_context" in table else None
    if larger is not None and context_window is None:
        raise check.fail(
            path, "larger_context needs context_window (the prompt size that sends a request on)"
        )
    return ModelGroup(
        name=name,
        deployments=parsed,
        strategy=check.choice(table, "strategy", path, STRATEGIES)
        if "strategy" in table
        else "weighted",
        fallbacks=check.strings(table, "fallbacks", path) if "fallbacks" in table else (),
        context_window=context_window,
        larger_context=larger,
    )


def _parse_rule(check: _Checker, table: Any, path: str) -> RouterRule:
    table = check.table(table, path, ' (model = "cheap", max_prompt_tokens = 2000)')
    check.keys(table, _RULE_KEYS, path)
    if "model" not in table:
        raise check.fail(path, 'a rule needs model = "<group>" (where it sends a request)')
    conditions = [k for k in _RULE_KEYS if k != "model" and k in table]
    if not conditions:
        raise check.fail(
            path,
            "a rule needs a condition (max_prompt_tokens, min_prompt_tokens, tags or "
            "classifier); for requests no rule matches, set the router's default",
        )
    low = (
        check.integer(table, "min_prompt_tokens", path, minimum=0)
        if "min_prompt_tokens" in table
        else None
    )
    high = check.integer(table, "max_prompt_tokens", path) if "max_prompt_tokens" in table else None
    if low is not None and high is not None and low > high:
        raise check.fail(path, f"min_prompt_tokens {low} is more than max_prompt_tokens {high}")
    classifier = check.string(table, "classifier", path) if "classifier" in table else None
    if classifier is not None and not _CLASSIFIER.fullmatch(classifier):
        raise check.fail(
            path,
            f'classifier {classifier!r} must be "module:function" (e.g. '
            '"myapp.routing:is_hard", a function of the request body returning true or false)',
        )
    return RouterRule(
        model=check.string(table, "model", path),
        max_prompt_tokens=high,
        min_prompt_tokens=low,
        tags=check.strings(table, "tags", path) if "tags" in table else (),
        classifier=classifier,
    )


def _parse_router(check: _Checker, name: str, table: Any) -> Router:
    path = f"routers.{name}"
    table = check.table(table, path, ' (default = "<group>" and [[…rules]])')
    check.keys(table, _ROUTER_KEYS, path)
    if "default" not in table:
        raise check.fail(path, 'a router needs default = "<group>" (where no rule matches)')
    rules = table.get("rules", [])
    if not isinstance(rules, list):
        raise check.fail(path, f"rules must be a list of tables, got {rules!r}")
    return Router(
        name=name,
        default=check.string(table, "default", path),
        rules=tuple(_parse_rule(check, r, f"{path}.rules[{i}]") for i, r in enumerate(rules)),
    )


def _parse_cache(check: _Checker, table: Any) -> Any:
    from loopml.llm.cache.config import parse_cache_config

    check.table(table, "cache")
    cache = parse_cache_config(table, check.source)
    if not cache.defaults.enabled and not any(r.enabled for r in cache.routes.values()):
        return None
    return cache


def _parse_guardrails(check: _Checker, table: Any) -> GuardrailsConfig:
    from loopml.llm.guardrails.policy import policies_from_config

    path = "guardrails"
    table = check.table(table, path)
    check.keys(table, _GUARDRAILS_KEYS, path)
    prefix = f"{check.root}.{path}" if check.root else path
    policies = policies_from_config(table, where=f"{check.source}: {prefix}")
    names = sorted(policies)

    def policy(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise check.fail(where, f"must name a policy, got {value!r}")
        if value and value != "none" and value not in policies:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            table_name = f"{check.root + '.' if check.root else ''}guardrails.policies.{value}"
            raise check.fail(
                where,
                f"no policy {value!r}{hint}; the policies are {', '.join(names)}: declare "
                f'[{table_name}], or write "none" for no guardrails',
            )
        return value

    attached: dict[str, dict[str, str]] = {}
    for kind in ("routes", "teams", "keys"):
        entries = check.table(table.get(kind, {}), f"{path}.{kind}")
        attached[kind] = {
            str(name): policy(value, f"{path}.{kind}.{name}") for name, value in entries.items()
        }
    default = policy(table["default"], f"{path}.default") if "default" in table else ""
    return GuardrailsConfig(policies=policies, default=default, **attached)


def _parse_online_eval(check: _Checker, table: Any) -> OnlineEvalConfig:
    from loopml.llm.rag.judges import KINDS
    from loopml.monitoring.settings import duration_seconds

    path = "online_eval"
    table = check.table(table, path)
    check.keys(table, _ONLINE_EVAL_KEYS, path)
    values: dict[str, Any] = {}
    for key in ("sample", "threshold"):
        if key in table:
            value = table[key]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not 0 <= value <= 1:
                raise check.fail(path, f"{key} must be a share from 0 to 1, got {value!r}")
            values[key] = float(value)
    if "evaluators" in table:
        evaluators = check.strings(table, "evaluators", path)
        for name in evaluators:
            if name not in KINDS:
                close = difflib.get_close_matches(name, list(KINDS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise check.fail(
                    path, f"unknown evaluator {name!r}{hint}; use any of {', '.join(KINDS)}"
                )
        if not evaluators:
            raise check.fail(path, f"evaluators is empty; name one or more of {', '.join(KINDS)}")
        values["evaluators"] = tuple(dict.fromkeys(evaluators))
    if "judge_model" in table:
        values["judge_model"] = check.string(table, "judge_model", path)
    if "routes" in table:
        values["routes"] = check.strings(table, "routes", path)
    if "prompts" in table:
        prompts = check.table(table["prompts"], f"{path}.prompts")
        for kind, ref in prompts.items():
            if kind not in KINDS:
                raise check.fail(
                    f"{path}.prompts",
                    f"unknown evaluator {kind!r}{_did_you_mean(str(kind), list(KINDS))}",
                )
            if not isinstance(ref, str) or not ref.strip():
                raise check.fail(
                    f"{path}.prompts",
                    f"{kind} must name a registered prompt (NAME, NAME@LABEL or NAME/VERSION), "
                    f"got {ref!r}",
                )
        values["prompts"] = {str(k): str(v) for k, v in prompts.items()}
    if "delay_s" in table:
        values["delay_s"] = check.number(table, "delay_s", path, zero=True)
    if "window" in table:
        window = table["window"]
        try:
            seconds = duration_seconds(window) if isinstance(window, str) else 0.0
        except InvalidConfig:
            seconds = 0.0
        if seconds < 60 or seconds % 60:
            raise check.fail(
                path, f"window must be whole minutes, at least one (15m, 1h, 1d), got {window!r}"
            )
        values["window"] = window
    if "max_queue" in table:
        values["max_queue"] = check.integer(table, "max_queue", path)
    config = OnlineEvalConfig(**values)
    if config.active and not config.judge_model:
        raise check.fail(
            path,
            f"sample = {config.sample:g} needs judge_model: the model alias that judges "
            '(e.g. judge_model = "judge")',
        )
    return config


def _check_online_eval(check: _Checker, config: GatewayConfig) -> None:
    """The judge model and the sampled routes are model aliases of this gateway."""
    online = config.online_eval
    aliases = [*config.models, *config.routers]
    names = ([online.judge_model] if online.judge_model else []) + list(online.routes)
    for i, name in enumerate(names):
        if name not in aliases:
            key = "judge_model" if online.judge_model and i == 0 else "routes"
            raise check.fail(
                "online_eval",
                f"{key} {name!r} is not a model alias of this gateway"
                + _did_you_mean(name, aliases).replace("Valid:", "Aliases:"),
            )


def _check_names(check: _Checker, config: GatewayConfig) -> None:
    """Every name a group or router points at is a group; no two deployments share a name."""
    groups = list(config.models)

    def known(path: str, key: str, target: str) -> None:
        if target not in config.models:
            if not groups:
                hint = f"; add [{check.root + '.' if check.root else ''}models.{target}]"
            else:
                hint = _did_you_mean(target, groups).replace("Valid:", "Model groups:")
            raise check.fail(path, f"{key} {target!r} is not a model group{hint}")

    seen: dict[str, str] = {}
    for group in config.models.values():
        path = f"models.{group.name}"
        for i, d in enumerate(group.deployments):
            if d.name in seen:
                raise check.fail(
                    f"{path}.deployments[{i}]",
                    f"deployment name {d.name!r} is used twice (also in model group "
                    f'{seen[d.name]!r}); give each deployment its own name = "…"',
                )
            seen[d.name] = group.name
        for target in group.fallbacks:
            known(path, "fallback", target)
            if target == group.name:
                raise check.fail(path, f"fallbacks names the group itself ({target!r})")
        if group.larger_context is not None:
            known(path, "larger_context", group.larger_context)
            chain, at = [group.name], group
            while at.larger_context is not None:
                if at.larger_context in chain:
                    raise check.fail(
                        path,
                        "larger_context goes round in a circle: "
                        + " -> ".join([*chain, at.larger_context]),
                    )
                chain.append(at.larger_context)
                at = config.models[at.larger_context]
    for router in config.routers.values():
        path = f"routers.{router.name}"
        if router.name in config.models:
            raise check.fail(
                path,
                f"{router.name!r} is both a router and a model group; clients ask for either "
                "by name, so rename one",
            )
        known(path, "default", router.default)
        for i, rule in enumerate(router.rules):
            known(f"{path}.rules[{i}]", "model", rule.model)


def _parse(cls: type[GatewayConfig], table: Any, source: str, root: str) -> GatewayConfig:
    check = _Checker(source, root)
    table = check.table(table, "")
    check.keys(table, _TOP_KEYS, "")
    values: dict[str, Any] = {}
    for key in ("require_key", "cut_streams_at_budget"):
        if key in table:
            values[key] = check.boolean(table, key, "")
    for key in ("log_flush_interval", "timeout"):
        if key in table:
            values[key] = check.number(table, key, "")
    if "cooldown_seconds" in table:
        values["cooldown_seconds"] = check.number(table, "cooldown_seconds", "", zero=True)
    for key in ("log_batch_rows", "cooldown_failures"):
        if key in table:
            values[key] = check.integer(table, key, "")
    if "num_retries" in table:
        values["num_retries"] = check.integer(table, "num_retries", "", minimum=0)
    if "log_content" in table:
        values["log_content"] = check.choice(table, "log_content", "", LOG_CONTENT)
    if "limits_url" in table:
        url = check.string(table, "limits_url", "", empty=True)
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise check.fail(
                "",
                f'limits_url must be "" (count in the metadata store) or a redis:// URL, '
                f"got {url!r}",
            )
        values["limits_url"] = url
    if "otlp_endpoint" in table:
        url = check.string(table, "otlp_endpoint", "", empty=True)
        if url and not url.startswith(("http://", "https://")):
            raise check.fail(
                "",
                "otlp_endpoint must be an http:// or https:// URL (e.g. "
                f'"http://collector:4318/v1/traces"), got {url!r}',
            )
        values["otlp_endpoint"] = url
    if "budget_alerts" in table:
        alerts = table["budget_alerts"]
        ok = isinstance(alerts, list) and all(
            isinstance(a, int | float) and not isinstance(a, bool) and 0 < a <= 1 for a in alerts
        )
        if not ok:
            raise check.fail(
                "",
                "budget_alerts must be a list of fractions of a budget in (0, 1], e.g. "
                f"[0.5, 0.8, 1.0], got {alerts!r}",
            )
        values["budget_alerts"] = tuple(sorted({float(a) for a in alerts}))

    prices = {
        str(name): _parse_price(check, price, f'prices."{name}"')
        for name, price in check.table(table.get("prices", {}), "prices").items()
    }
    models = {
        str(name): _parse_group(check, str(name), group, prices)
        for name, group in check.table(table.get("models", {}), "models").items()
    }
    routers = {
        str(name): _parse_router(check, str(name), router)
        for name, router in check.table(table.get("routers", {}), "routers").items()
    }
    teams = {
        str(name): _parse_limits(check, limits, f"teams.{name}")
        for name, limits in check.table(table.get("teams", {}), "teams").items()
    }
    if "users" in table:
        values["user_limits"] = _parse_limits(check, table["users"], "users")
    if "cache" in table:
        values["cache"] = _parse_cache(check, table["cache"])
    if "guardrails" in table:
        values["guardrails"] = _parse_guardrails(check, table["guardrails"])
    if "online_eval" in table:
        values["online_eval"] = _parse_online_eval(check, table["online_eval"])
    config = cls(
        models=models,
        routers=routers,
        teams=teams,
        prices=prices,
        source=source,
        raw=copy.deepcopy(dict(table)),
        **values,
    )
    _check_names(check, config)
    _check_online_eval(check, config)
    return config


def load_gateway_config(
    path: str | os.PathLike[str] | None = None, *, settings: Settings | None = None
) -> GatewayConfig:
    """The gateway's config from ``path`` (a TOML file with the keys at its top level or under
    ``[gateway]``), else from ``settings.gateway`` (``loopml.toml``'s ``[gateway]``; settings
    are loaded from the current workspace when not given).

    >>> config = load_gateway_config("gateway.toml")            # doctest: +SKIP
    >>> [d.name for d in config.models["cheap"].deployments]     # doctest: +SKIP
    ['cheap-openai']
    """
    if path is not None:
        from loopml.config import _read_toml

        file = Path(path).expanduser()
        if not file.is_file():
            raise InvalidConfig(
                f"No gateway config at {file}: give the path of a TOML file with a [gateway] "
                "table (or its keys at the top level)."
            )
        data = _read_toml(file)
        if isinstance(data.get("gateway"), dict):
            return GatewayConfig.from_dict(data["gateway"], str(file))
        return GatewayConfig.from_dict(data, str(file), root="")
    if settings is None:
        from loopml.config import load_settings

        settings = load_settings()
    source = str(settings.config_path) if settings.config_path else "loopml.toml"
    return GatewayConfig.from_dict(settings.gateway, source)
