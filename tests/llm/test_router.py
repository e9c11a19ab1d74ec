"""The router: groups and rule-based routers, context windows, the order deployments are
tried in (strategies, fallbacks) and the circuit breaker, with a seeded rng and a fake clock."""

from __future__ import annotations

import random
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.llm.config import GatewayConfig
from loopml.llm.errors import ContextWindowExceeded, GatewayError, UnknownModel
from loopml.llm.router import Route, Router


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, weight: float = 1.0) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "model": f"m-{name}", "weight": weight}


def make(table: dict[str, Any], seed: int = 7) -> tuple[Router, Clock]:
    clock = Clock()
    config = GatewayConfig.from_dict({"cooldown_failures": 2, "cooldown_seconds": 30, **table})
    return Router(config, rng=random.Random(seed), clock=clock), clock


def names(router: Router, model: str, prompt_tokens: int = 10) -> list[str]:
    route = router.resolve(model, {}, prompt_tokens=prompt_tokens)
    return [d.name for d in router.plan(route)]


# -- choosing a group -----------------------------------------------------------------------

ROUTED = {
    "models": {
        "cheap": {"deployments": [dep("c1")], "context_window": 1000, "larger_context": "mid"},
        "mid": {"deployments": [dep("m1")], "context_window": 5000, "larger_context": "long"},
        "long": {"deployments": [dep("l1")], "context_window": 100_000},
        "frontier": {"deployments": [dep("f1")]},
    },
    "routers": {
        "auto": {
            "default": "frontier",
            "rules": [
                {"model": "cheap", "max_prompt_tokens": 200, "tags": ["faq"]},
                {"model": "mid", "min_prompt_tokens": 3000},
                {"model": "cheap", "max_prompt_tokens": 500},
            ],
        }
    },
}


def test_a_group_is_its_own_route() -> None:
    router, _ = make(ROUTED)
    route = router.resolve("frontier", {}, prompt_tokens=10)
    assert (route.requested, route.group.name, route.reason) == (
        "frontier",
        "frontier",
        "model group",
    )


def test_rules_first_match_then_default_with_the_reason() -> None:
    router, _ = make(ROUTED)

    def pick(tokens: int, tags: tuple[str, ...] = ()) -> tuple[str, str]:
        route = router.resolve("auto", {"messages": []}, tags=tags, prompt_tokens=tokens)
        assert route.requested == "auto"
        return route.group.name, route.reason

    assert pick(120, ("faq", "web")) == ("cheap", "rule 1: prompt 120 tokens <= 200, tags faq")
    assert pick(120) == ("cheap", "rule 3: prompt 120 tokens <= 500")
    assert pick(3500) == ("mid", "rule 2: prompt 3500 tokens >= 3000")
    assert pick(1000) == ("frontier", "default")


def test_a_prompt_over_the_window_goes_to_the_larger_context_group() -> None:
    router, _ = make(ROUTED)
    route = router.resolve("cheap", {}, prompt_tokens=1000)
    assert route.group.name == "cheap"  # at the window: fits
    route = router.resolve("cheap", {}, prompt_tokens=7000)
    assert route.group.name == "long"  # cheap -> mid -> long
    assert route.reason == (
        "model group; prompt 7000 tokens > context window 1000 of 'cheap': larger_context 'mid'"
        "; prompt 7000 tokens > context window 5000 of 'mid': larger_context 'long'"
    )
    assert route.prompt_tokens == 7000


def test_a_prompt_over_every_window_is_refused_naming_window_and_count() -> None:
    router, _ = make(ROUTED)
    with pytest.raises(ContextWindowExceeded) as info:
        router.resolve("auto", {}, prompt_tokens=150_000)
    message = str(info.value)
    assert "150000 tokens" in message and "100000-token context window" in message
    assert "'long'" in message and "'auto'" in message
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"


def test_larger_context_after_the_provider_said_so() -> None:
    router, _ = make(ROUTED)
    route = router.resolve("cheap", {}, prompt_tokens=10)
    larger = router.larger_context(route)
    assert larger is not None and larger.group.name == "mid"
    assert "context window was exceeded" in larger.reason
    assert router.larger_context(router.resolve("frontier", {}, prompt_tokens=10)) is None


def test_an_unknown_model_lists_the_known_ones() -> None:
    router, _ = make(ROUTED)
    with pytest.raises(UnknownModel) as info:
        router.resolve("gpt-5", {}, prompt_tokens=10)
    message = str(info.value)
    assert "'gpt-5'" in message
    assert "cheap, mid, long, frontier, auto" in message
    assert info.value.status == 404
    assert router.names() == ["cheap", "mid", "long", "frontier", "auto"]


CLASSIFIER = """
calls = []

def is_hard(body):
    calls.append(body)
    return "prove" in body["messages"][-1]["content"]

def broken(body):
    raise RuntimeError("model file missing")

not_a_function = 3
"""


@pytest.fixture
def classifier_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "h3_routing_rules.py").write_text(textwrap.dedent(CLASSIFIER))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "h3_routing_rules"
    sys.modules.pop("h3_routing_rules", None)


def routed_by(classifier: str) -> Router:
    router, _ = make(
        {
            "models": ROUTED["models"],
            "routers": {
                "smart": {
                    "default": "cheap",
                    "rules": [{"model": "frontier", "classifier": classifier}],
                }
            },
        }
    )
    return router


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_a_classifier_rule_is_imported_once_and_called_per_request(
    classifier_module: str, tmp_path: Path
) -> None:
    router = routed_by(f"{classifier_module}:is_hard")
    assert classifier_module not in sys.modules  # not imported when the config was read
    route = router.resolve("smart", ask("prove it"), prompt_tokens=5)
    assert (route.group.name, route.reason) == (
        "frontier",
        f"rule 1: classifier {classifier_module}:is_hard",
    )
    module = sys.modules[classifier_module]
    # Imported once and kept: gone from disk and from sys.modules, it still answers.
    (tmp_path / f"{classifier_module}.py").unlink()
    del sys.modules[classifier_module]
    route = router.resolve("smart", ask("hello"), prompt_tokens=5)
    assert (route.group.name, route.reason) == ("cheap", "default")
    assert len(module.calls) == 2


def test_a_classifier_that_cannot_load_or_fails_is_a_gateway_error(classifier_module: str) -> None:
    for spec, text in [
        (f"{classifier_module}:missing", "cannot load classifier"),
        ("no_such_module_h3:f", "cannot load classifier 'no_such_module_h3:f'"),
        (f"{classifier_module}:not_a_function", "is not a function"),
        (f"{classifier_module}:broken", "raised RuntimeError: model file missing"),
    ]:
        router = routed_by(spec)
        for _ in range(2):  # the same answer each time, without trying the import again
            with pytest.raises(GatewayError, match=text) as info:
                router.resolve("smart", ask("x"), prompt_tokens=5)
            assert "router 'smart' rule 1" in str(info.value)


# -- ordering deployments -------------------------------------------------------------------


def test_weighted_picks_in_proportion_to_weight() -> None:
    router, _ = make({"models": {"g": {"deployments": [dep("a", 3), dep("b", 1), dep("c", 0.5)]}}})
    route = router.resolve("g", {}, prompt_tokens=1)
    firsts = Counter(router.plan(route)[0].name for _ in range(2000))
    total = 4.5
    assert abs(firsts["a"] / 2000 - 3 / total) < 0.04
    assert abs(firsts["b"] / 2000 - 1 / total) < 0.04
    assert abs(firsts["c"] / 2000 - 0.5 / total) < 0.03
    # Every plan holds every deployment once.
    assert sorted(d.name for d in router.plan(route)) == ["a", "b", "c"]


def test_least_busy_goes_to_the_fewest_in_flight() -> None:
    router, _ = make(
        {"models": {"g": {"strategy": "least-busy", "deployments": [dep("a"), dep("b"), dep("c")]}}}
    )
    config = router.config.models["g"].deployments
    a, b, _c = config
    for d in (a, a, b):
        router.started(d)
    assert names(router, "g") == ["c", "b", "a"]
    router.finished(a, 0.1, ok=True)
    router.finished(a, 0.1, ok=True)
    router.finished(b, 0.1, ok=True)
    # All idle: ties are broken at random, so each gets a share.
    firsts = Counter(names(router, "g")[0] for _ in range(300))
    assert set(firsts) == {"a", "b", "c"}
    assert router.states()["a"]["in_flight"] == 0 and router.states()["a"]["requests"] == 2


def test_lowest_latency_tries_untried_first_then_the_fastest() -> None:
    router, _ = make(
        {
            "models": {
                "g": {"strategy": "lowest-latency", "deployments": [dep("a"), dep("b"), dep("c")]}
            }
        }
    )
    a, b, c = router.config.models["g"].deployments
    for d, latency in ((a, 0.5), (b, 0.2)):
        router.started(d)
        router.finished(d, latency, ok=True)
    assert names(router, "g") == ["c", "b", "a"]
    router.started(c)
    router.finished(c, 0.9, ok=True)
    assert names(router, "g") == ["b", "a", "c"]
    # The moving average follows: b slows down and a gets ahead.
    for _ in range(8):
        router.started(b)
        router.finished(b, 1.0, ok=True)
    assert names(router, "g") == ["a", "c", "b"]
    assert router.states()["b"]["latency_s"] == pytest.approx(0.2 * 0.7**8 + 1.0 * (1 - 0.7**8))


def test_fallbacks_follow_in_order_without_duplicates() -> None:
    router, _ = make(
        {
            "models": {
                "cheap": {
                    "fallbacks": ["frontier", "backup", "frontier"],
                    "deployments": [dep("c1"), dep("c2")],
                },
                "frontier": {"deployments": [dep("f1")], "fallbacks": ["never"]},
                "backup": {"deployments": [dep("b1"), dep("b2")], "strategy": "lowest-latency"},
                "never": {"deployments": [dep("n1")]},
            }
        }
    )
    plan = names(router, "cheap")
    assert sorted(plan[:2]) == ["c1", "c2"]
    assert plan[2:] == ["f1", "b1", "b2"]  # a fallback's own fallbacks are not followed


def test_a_fallback_too_small_for_the_prompt_is_left_out() -> None:
    router, _ = make(
        {
            "models": {
                "big": {"deployments": [dep("g1")], "fallbacks": ["small", "other"]},
                "small": {"deployments": [dep("s1")], "context_window": 100},
                "other": {"deployments": [dep("o1")]},
            }
        }
    )
    assert names(router, "big", prompt_tokens=50) == ["g1", "s1", "o1"]
    assert names(router, "big", prompt_tokens=500) == ["g1", "o1"]


# -- health: the circuit breaker ------------------------------------------------------------

POOL = {
    "models": {
        "g": {
            "strategy": "lowest-latency",
            "deployments": [dep("a"), dep("b")],
            "fallbacks": ["f"],
        },
        "f": {"deployments": [dep("f1")]},
    }
}


def fail(router: Router, name: str, kind: str = "server", retry_after: float | None = None) -> None:
    deployment = next(
        d for g in router.config.models.values() for d in g.deployments if d.name == name
    )
    router.started(deployment)
    router.finished(deployment, 0.01, ok=False, kind=kind, retry_after=retry_after)


def succeed(router: Router, name: str) -> None:
    deployment = next(
        d for g in router.config.models.values() for d in g.deployments if d.name == name
    )
    router.started(deployment)
    router.finished(deployment, 0.01, ok=True)


def test_failures_in_a_row_cool_a_deployment_down_and_it_comes_back() -> None:
    router, clock = make(POOL)
    fail(router, "a")
    assert names(router, "g") == ["a", "b", "f1"]  # one failure: still in
    fail(router, "a")
    assert names(router, "g") == ["b", "f1"]  # two in a row: out for 30 s
    assert router.states()["a"]["cooldown_s"] == 30.0
    clock.now += 29.9
    assert names(router, "g") == ["b", "f1"]
    clock.now += 0.2
    assert names(router, "g") == ["a", "b", "f1"]
    # Half-open: still at the threshold, the next failure takes it out again at once...
    fail(router, "a")
    assert names(router, "g") == ["b", "f1"]
    clock.now += 31
    # ...and a success resets the count.
    succeed(router, "a")
    fail(router, "a")
    assert "a" in names(router, "g")
    assert router.states()["a"]["failures"] == 1 and router.states()["a"]["errors"] == 4


def test_a_success_between_failures_resets_the_count() -> None:
    router, _ = make(POOL)
    fail(router, "a")
    succeed(router, "a")
    fail(router, "a")
    assert "a" in names(router, "g")


def test_a_rate_limit_with_retry_after_cools_down_at_once_for_that_long() -> None:
    router, clock = make(POOL)
    fail(router, "a", kind="rate_limit", retry_after=60.0)
    assert names(router, "g") == ["b", "f1"]
    clock.now += 45  # past cooldown_seconds, not past Retry-After
    assert names(router, "g") == ["b", "f1"]
    clock.now += 16
    assert names(router, "g") == ["a", "b", "f1"]


def test_the_requests_own_faults_do_not_count() -> None:
    router, _ = make(POOL)
    for _ in range(5):
        fail(router, "a", kind="context_window")
        fail(router, "a", kind="bad_request")
    assert names(router, "g") == ["a", "b", "f1"]
    assert router.states()["a"]["failures"] == 0


def test_when_everything_cools_down_all_are_tried_soonest_back_first() -> None:
    router, clock = make(POOL)
    fail(router, "b", kind="rate_limit", retry_after=100)
    clock.now += 10
    for name in ("a", "a", "f1", "f1"):
        fail(router, name)
    # b is back in 90 s, a and f1 in 30 s: a fallback still up is preferred; none is.
    assert names(router, "g") == ["a", "f1", "b"]
    clock.now += 31
    assert names(router, "g") == ["a", "f1"]  # a and f1 back: b stays out


def test_a_new_router_adopts_the_health_of_unchanged_deployments() -> None:
    router, clock = make(POOL)
    fail(router, "a")
    fail(router, "a")
    changed = {
        "models": {
            "g": {"deployments": [dep("a"), {**dep("b"), "weight": 2}], "fallbacks": ["f"]},
            "f": {"deployments": [dep("f1")]},
        }
    }
    fresh = Router(
        GatewayConfig.from_dict({"cooldown_failures": 2, "cooldown_seconds": 30, **changed}),
        clock=clock,
    )
    fresh.adopt(router)
    assert fresh.states()["a"]["cooldown_s"] == 30.0
    assert "a" not in names(fresh, "g")
    assert fresh.states()["b"]["requests"] == 0  # b changed: starts afresh


def test_states_report_every_deployment() -> None:
    router, _ = make(POOL)
    succeed(router, "a")
    states = router.states()
    assert set(states) == {"a", "b", "f1"}
    assert states["a"] == {
        "group": "g",
        "provider": "openai",
        "model": "m-a",
        "in_flight": 0,
        "latency_s": 0.01,
        "failures": 0,
        "cooldown_s": 0.0,
        "requests": 1,
        "errors": 0,
    }


def test_route_is_a_plain_record() -> None:
    router, _ = make(POOL)
    group = router.config.models["g"]
    route = Route(requested="g", group=group, reason="model group")
    assert route.prompt_tokens == 0 and [d.name for d in router.plan(route)][-1] == "f1"
