"""The router: realised traffic splits match the configuration, keys are sticky, ramping a
canary only ever moves keys onto the candidate, and off-path roles get no answers."""

from __future__ import annotations

import collections
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.serving import strategies as d
from loopml.serving.deployments import Deployment, Variant
from loopml.serving.router import answering, assign, bucket

KEYS = [f"user-{i}" for i in range(20_000)]


def base(name: str = "churn") -> Deployment:
    return Deployment(name, (Variant("primary", "churn/3"),))


def split(deployment: Deployment, keys: list[str] = KEYS) -> dict[str, float]:
    counts = collections.Counter(assign(deployment, k).variant.name for k in keys)
    return {name: 100.0 * n / len(keys) for name, n in counts.items()}


CONFIGS = {
    "canary 95/5": Deployment(
        "churn",
        (Variant("primary", "churn/3", 95), Variant("canary", "churn/4", 5, "candidate")),
        strategy="canary",
    ),
    "a/b 50/50": d.ab(base(), {"a": ("churn/3", 50), "b": ("churn/4", 50)}, key="user_id"),
    "a/b 75/25": d.ab(base("pricing"), {"a": ("p/1", 75), "b": ("p/2", 25)}),
    "three-way": d.ab(
        base("ranker"), {"a": ("r/1", 20), "b": ("r/2", 30), "c": ("r/3", 50)}, metric="value"
    ),
    "three-way uneven": d.ab(
        base("ranker"), {"x": ("r/1", 10), "y": ("r/2", 45), "z": ("r/3", 45)}
    ),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.slow
def test_realised_split_is_within_one_point(config: Deployment) -> None:
    realised = split(config)
    for variant in answering(config):
        assert realised.get(variant.name, 0.0) == pytest.approx(variant.weight, abs=1.0), realised
    assert set(realised) == {v.name for v in answering(config) if v.weight > 0}


def test_random_request_ids_split_too() -> None:
    """Without a key field the request id keys assignment: uuids split like user ids."""
    config = CONFIGS["canary 95/5"]
    realised = split(config, [str(uuid.UUID(int=i * 7919 + 13)) for i in range(20_000)])
    assert realised["canary"] == pytest.approx(5.0, abs=1.0)


def test_the_same_key_always_lands_on_the_same_variant() -> None:
    for config in CONFIGS.values():
        first = {k: assign(config, k).variant.name for k in KEYS[:2000]}
        # A new, equal Deployment object (another replica reading the same revision).
        again = Deployment(**{f: getattr(config, f) for f in ("name", "variants", "strategy")})
        assert {k: assign(again, k).variant.name for k in KEYS[:2000]} == first


@pytest.mark.slow
def test_ramping_the_canary_never_moves_a_key_off_the_candidate() -> None:
    started = d.canary(base(), "churn/4", [5, 25, 50, 100])
    on_candidate: set[str] = set()
    for step, share in enumerate([5, 25, 50, 100]):
        current = d.canary_step(started, step)
        assert current.variant("canary").weight == share
        now = {k for k in KEYS if assign(current, k).variant.name == "canary"}
        assert on_candidate <= now, f"step {step} moved keys off the candidate"
        assert len(now) / len(KEYS) * 100 == pytest.approx(share, abs=1.0)
        on_candidate = now
    assert on_candidate == set(KEYS)


def test_a_weight_zero_variant_gets_nothing() -> None:
    config = Deployment(
        "churn",
        (
            Variant("a", "churn/3", 0, "variant"),
            Variant("b", "churn/4", 100, "variant"),
            Variant("c", "churn/5", 0, "variant"),
        ),
        strategy="ab",
    )
    assert split(config) == {"b": 100.0}
    rolled_back = d.canary(base(), "churn/4", [5])
    rolled_back = Deployment(
        "churn",
        tuple(
            Variant(v.name, v.model, 0 if v.role == "candidate" else 100, v.role)
            for v in rolled_back.variants
        ),
        strategy="canary",
    )
    assert split(rolled_back) == {"primary": 100.0}


def test_shadow_and_challenger_score_every_request_off_path() -> None:
    shadowed = d.shadow(base(), "churn/4")
    challenged = d.champion_challenger(base(), "churn/4")
    for key in KEYS[:500]:
        routing = assign(shadowed, key)
        assert routing.variant.name == "primary"
        assert [v.name for v in routing.off_path] == ["shadow"]
        routing = assign(challenged, key)
        assert routing.variant.name == "champion"
        assert [(v.name, v.model) for v in routing.off_path] == [("challenger", "models:/churn/4")]
    assert assign(CONFIGS["canary 95/5"], "user-1").off_path == ()


@pytest.mark.slow
def test_blue_green_standby_gets_nothing_until_the_switch() -> None:
    warm = d.blue_green(base(), "churn/4")
    assert split(warm) == {"blue": 100.0}
    assert all(assign(warm, k).off_path == () for k in KEYS[:100])
    switched = d.switch(warm)
    assert split(switched) == {"green": 100.0}
    assert split(d.switch(switched)) == {"blue": 100.0}


def test_deployments_with_different_names_split_independently() -> None:
    """The hash includes the deployment name: the users in one canary's 5% are not the same
    users in every other deployment's 5%."""
    one = {k for k in KEYS if bucket("churn", k) < 5}
    other = {k for k in KEYS if bucket("pricing", k) < 5}
    assert len(one & other) < 0.2 * len(one)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=100), min_size=2, max_size=4).filter(
        lambda ws: sum(ws) > 0
    ),
    key=st.text(max_size=40),
)
def test_assignment_follows_the_bucket_ranges(weights: list[int], key: str) -> None:
    """For any weights, the chosen variant is the one whose cumulative range holds the
    key's bucket, and it is never a weight-0 variant."""
    total = sum(weights)
    scaled = [w * 100 / total for w in weights]
    scaled[-1] = 100 - sum(scaled[:-1])
    if scaled[-1] < 0:  # rounding made it -1e-15
        scaled[-1] = 0.0
    variants = tuple(Variant(f"v{i}", f"m/{i + 1}", w, "variant") for i, w in enumerate(scaled))
    config = Deployment("prop", variants, strategy="ab")
    routing = assign(config, key)
    assert routing.variant.weight > 0
    place = bucket("prop", key)
    assert routing.bucket == place
    edge = 0.0
    for variant in variants:
        if edge <= place < edge + variant.weight:
            assert routing.variant == variant
            break
        edge += variant.weight


@settings(max_examples=40, deadline=None)
@given(
    low=st.integers(min_value=0, max_value=100),
    high=st.integers(min_value=0, max_value=100),
    key=st.text(max_size=40),
)
def test_raising_a_candidate_share_only_moves_keys_onto_it(low: int, high: int, key: str) -> None:
    low, high = sorted((low, high))

    def at(share: int) -> Deployment:
        return Deployment(
            "churn",
            (
                Variant("primary", "churn/3", 100 - share),
                Variant("c", "churn/4", share, "candidate"),
            ),
            strategy="canary",
        )

    if assign(at(low), key).variant.name == "c":
        assert assign(at(high), key).variant.name == "c"
