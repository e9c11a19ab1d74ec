"""The gateway's Prometheus metrics (``GET /metrics`` of ``loopml gateway serve``).

Each gateway has a registry of its own (two gateways in one process don't clash). With
``--workers N`` each worker process counts its own requests; scrape each, or sum by
instance. Labels stay bounded: model names come from the config, keys are key ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from loopml.llm.config import Deployment
from loopml.llm.types import Usage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


#: The ``type`` label of ``loopml_gateway_tokens``, in :class:`Usage`'s order.
TOKEN_KINDS = ("input", "output", "cached_read", "cached_write", "reasoning")


@dataclass(frozen=True)
class _Children:
    """The labelled metrics of one (model, key, status)."""

    requests: Any
    latency: Any
    ttft: Any
    tokens: tuple[Any, ...]
    cost: Any


class GatewayMetrics:
    """Requests, tokens, cost, latency, time to first token, provider errors, cache hits,
    online evaluations."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "loopml_gateway_requests",
            "Requests answered, by model used, key and HTTP status",
            ["model", "key", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "loopml_gateway_tokens",
            "Tokens, by model, key and type (input, output, cached_read, cached_write, reasoning)",
            ["model", "key", "type"],
            registry=r,
        )
        self.cost = Counter(
            "loopml_gateway_cost_usd",
            "Spend in USD, by model and key",
            ["model", "key"],
            registry=r,
        )
        self.latency = Histogram(
            "loopml_gateway_request_seconds",
            "Time from request to the last byte of the answer, by model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "loopml_gateway_time_to_first_token_seconds",
            "Time to the first streamed token, by model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "loopml_gateway_provider_errors",
            "Failed provider attempts, by deployment and kind (rate_limit, server, timeout, …)",
            ["deployment", "kind"],
            registry=r,
        )
        self.cache_hits = Counter(
            "loopml_gateway_cache_hits",
            "Answers served from the cache, by model",
            ["model"],
            registry=r,
        )
        self.online_evals = Counter(
            "loopml_gateway_online_evals",
            "Online evaluations of sampled requests, by evaluator and status "
            "(ok, judge_error, error, skipped)",
            ["evaluator", "status"],
            registry=r,
        )
        self.online_dropped = Counter(
            "loopml_gateway_online_evals_dropped",
            "Sampled requests not evaluated because the online evaluation queue was full",
            registry=r,
        )
        self._children: dict[tuple[str, str, int], _Children] = {}

    def request(
        self,
        *,
        model: str,
        key: str,
        status: int,
        seconds: float,
        ttft_seconds: float | None,
        usage: Usage,
        cost: float,
    ) -> None:
        children = self._children.get((model, key, status))
        if children is None:  # looked up once per label set (prometheus' labels() is slow)
            children = self._children[(model, key, status)] = _Children(
                requests=self.requests.labels(model, key, str(status)),
                latency=self.latency.labels(model),
                ttft=self.ttft.labels(model),
                tokens=tuple(self.tokens.labels(model, key, kind) for kind in TOKEN_KINDS),
                cost=self.cost.labels(model, key),
            )
        children.requests.inc()
        children.latency.observe(seconds)
        if ttft_seconds is not None:
            children.ttft.observe(ttft_seconds)
        for counter, count in zip(
            children.tokens,
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_read_tokens,
                usage.cached_write_tokens,
                usage.reasoning_tokens,
            ),
            strict=True,
        ):
            if count:
                counter.inc(count)
        if cost:
            children.cost.inc(cost)

    def cache_hit(self, model: str) -> None:
        self.cache_hits.labels(model).inc()

    def provider_error(self, deployment: Deployment, kind: str) -> None:
        self.errors.labels(deployment.name, kind).inc()

    def online_eval(self, evaluator: str, status: str) -> None:
        self.online_evals.labels(evaluator, status).inc()

    def online_eval_dropped(self) -> None:
        self.online_dropped.inc()
