"""``ws.deployments.report`` over real prediction and feedback logs (written with
:class:`PredictionLogger` into a workspace): A/B conversion and value, champion/challenger
on the same requests, the experiment's window, promotion through the gate, and bad input."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from scipy import stats as scipy_stats

from loopml.exceptions import InvalidInput, PromotionBlocked
from loopml.registry.gates import GatePolicy
from loopml.serving.deployments import Deployment, DeploymentNotFound
from loopml.serving.log import PredictionLogger, to_json
from loopml.serving.report import NotRecommended
from loopml.serving.stats import two_proportion_ztest
from loopml.workspace import Workspace


def log(
    ws: Workspace,
    deployment: Deployment,
    requests: Iterable[tuple[str, str, Any]],
    *,
    shadow: bool = False,
    start: datetime | None = None,
) -> None:
    """Log ``(request_id, variant, prediction)`` rows of ``deployment``, one ms apart from
    ``start`` (default: when the revision was stored)."""
    at = start or deployment.created_at
    assert at is not None
    logger = PredictionLogger(ws.blobs)
    for i, (request_id, variant, prediction) in enumerate(requests):
        logger.log(
            {
                "request_id": request_id,
                "time": at + timedelta(milliseconds=i + 1),
                "deployment": deployment.name,
                "revision": deployment.revision,
                "model": deployment.variant(variant).model.removeprefix("models:/"),
                "variant": variant,
                "shadow": shadow,
                "inputs": to_json([{"x": 1.0, "n": 1}]),
                "outputs": to_json([prediction]),
                "latency_ms": 1.0,
                "error": None,
            }
        )
    logger.close()


def feedback(
    ws: Workspace,
    deployment: Deployment,
    outcomes: Mapping[str, Any],
    *,
    reward: bool = True,
    at: datetime | None = None,
) -> None:
    """Feedback for each request id: a reward (or a label), a minute after the revision."""
    when = at or deployment.created_at + timedelta(minutes=1)  # type: ignore[operator]
    logger = PredictionLogger(ws.blobs)
    for request_id, value in outcomes.items():
        logger.feedback(
            {
                "request_id": request_id,
                "time": when,
                "deployment": deployment.name,
                "label": None if reward else to_json(value),
                "reward": float(value) if reward else None,
            }
        )
    logger.close()


def start_ab(ws: Workspace, metric: str = "conversion") -> Deployment:
    return ws.deployments.ab("churn", {"a": ("double/1", 50), "b": ("double/2", 50)}, metric=metric)


def split(n: int) -> list[tuple[str, str, Any]]:
    """``n`` requests per variant, interleaved as they would arrive."""
    return [(f"{v}{i}", v, 1.0) for i in range(n) for v in ("a", "b")]


def test_an_ab_conversion_report_finds_a_real_lift(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_ab(ws)
    log(ws, current, split(1500))
    rng = random.Random(7)
    outcomes = {f"a{i}": int(rng.random() < 0.10) for i in range(1500)}
    outcomes |= {f"b{i}": int(rng.random() < 0.17) for i in range(1500)}
    feedback(ws, current, outcomes)
    # The newest feedback wins: a0 converted after all, b0 did not.
    feedback(ws, current, {"a0": 1, "b0": 0}, at=current.created_at + timedelta(minutes=2))  # type: ignore[operator]
    outcomes |= {"a0": 1, "b0": 0}
    # An outcome that is not 0/1 is left out, and said so.
    feedback(ws, current, {"a1": "yes"}, reward=False, at=current.created_at + timedelta(minutes=3))  # type: ignore[operator]
    del outcomes["a1"]

    report = ws.deployments.report("churn", mde=0.02)
    assert report.strategy == "ab" and report.metric == "conversion"
    a, b = report.variants
    assert (a.name, a.requests, a.outcomes) == ("a", 1500, 1499)
    assert (b.name, b.requests, b.outcomes) == ("b", 1500, 1500)
    xa = sum(v for k, v in outcomes.items() if k.startswith("a"))
    xb = sum(v for k, v in outcomes.items() if k.startswith("b"))
    assert a.mean == pytest.approx(xa / 1499) and b.mean == pytest.approx(xb / 1500)
    [comparison] = report.comparisons
    expected = two_proportion_ztest(xa, 1499, xb, 1500)
    assert comparison.test == expected
    assert comparison.test.p_value < 1e-5 and comparison.test.effect_size_kind == "cohen_h"
    assert comparison.sequential is not None and comparison.sequential.crossed
    assert comparison.verdict == "better" and comparison.decided_by == "sequential"
    assert comparison.sample_size is not None and comparison.sample_size > 1500
    assert report.recommendation == "decided"
    assert report.summary == "b better than a on conversion."
    assert any("not 0 or 1" in n for n in report.notes)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["comparisons"][0]["test"]["significant"] is True
    assert data["comparisons"][0]["sequential"]["crossed"] is True
    assert data["variants"][1]["model"] == "double/2"
    text = report.render()
    assert "churn: A/B test" in text and "two-proportion z-test" in text
    assert f"z-test: statistic {expected.statistic:.4g}, p < 0.0001" in text
    assert re.search(r"always-valid p [=<] 0\.000\d \(crossed alpha\) over \d+ looks", text)
    assert "decided: b better than a on conversion." in text


def test_no_feedback_yet_is_a_report_that_says_so(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_ab(ws)
    report = ws.deployments.report("churn")
    assert report.recommendation == "not enough data"
    assert [v.requests for v in report.variants] == [0, 0]
    log(ws, current, split(50))
    report = ws.deployments.report("churn")
    assert report.recommendation == "not enough data" and "a 0, b 0" in report.summary
    assert report.comparisons[0].test is None
    assert "not enough data" in report.render()
    json.dumps(report.to_dict())


def test_a_value_metric_with_no_true_difference_keeps_collecting(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_ab(ws, metric="value")
    log(ws, current, split(300))
    rng = random.Random(3)
    values = {f"{v}{i}": rng.gauss(20.0, 5.0) for i in range(300) for v in "ab"}
    feedback(ws, current, values)
    report = ws.deployments.report("churn", mde=0.5)
    assert report.metric == "value"
    [comparison] = report.comparisons
    a = [values[f"a{i}"] for i in range(300)]
    b = [values[f"b{i}"] for i in range(300)]
    theirs = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert comparison.test is not None and comparison.test.test == "Welch's t-test"
    assert comparison.test.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert comparison.sample_size is not None and comparison.sample_size > 300
    assert comparison.verdict == "keep collecting" and report.recommendation == "keep collecting"
    assert comparison.sequential is not None and not comparison.sequential.crossed
    # The value test of a deployment configured for conversion: --metric overrides.
    assert ws.deployments.report("churn", metric="conversion").metric == "conversion"


def test_the_report_covers_the_current_experiment_only(serving_ws: Workspace) -> None:
    ws = serving_ws
    single = ws.deployments.get("churn")
    log(ws, single, [(f"p{i}", "primary", 1.0) for i in range(10)])
    first = ws.deployments.ab("churn", {"a": ("double/1", 50), "b": ("fragile/1", 50)})
    log(ws, first, split(10))
    current = start_ab(ws)
    later = current.created_at + timedelta(seconds=5)  # type: ignore[operator]
    log(ws, current, [(f"n{v}{i}", v, 1.0) for i in range(5) for v in "ab"])
    log(ws, current, [(f"m{v}{i}", v, 1.0) for i in range(3) for v in "ab"], start=later)
    report = ws.deployments.report("churn")
    assert report.started == current.created_at
    assert [v.requests for v in report.variants] == [8, 8]
    assert [v.requests for v in ws.deployments.report("churn", since=later).variants] == [3, 3]
    assert [v.requests for v in ws.deployments.report("churn", until=later).variants] == [5, 5]


def start_challenger(ws: Workspace) -> Deployment:
    return ws.deployments.champion_challenger("churn", "double/2")


def paired_logs(
    ws: Workspace, current: Deployment, rows: list[tuple[Any, Any, Any]], *, reward: bool = False
) -> None:
    """``(champion prediction, challenger prediction, label)`` per request."""
    log(ws, current, [(f"r{i}", "champion", c) for i, (c, _, _) in enumerate(rows)])
    log(
        ws,
        current,
        [(f"r{i}", "challenger", x) for i, (_, x, _) in enumerate(rows)],
        shadow=True,
    )
    feedback(ws, current, {f"r{i}": t for i, (_, _, t) in enumerate(rows)}, reward=reward)


def test_a_better_classifier_challenger_is_recommended_and_promoted(
    serving_ws: Workspace,
) -> None:
    ws = serving_ws
    current = start_challenger(ws)
    rng = random.Random(11)
    rows = []
    for _ in range(400):
        truth = rng.randint(0, 1)
        champion = truth if rng.random() < 0.70 else 1 - truth
        challenger = truth if rng.random() < 0.85 else 1 - truth
        rows.append((champion, challenger, truth))
    paired_logs(ws, current, rows)
    report = ws.deployments.report("churn")
    assert report.strategy == "champion-challenger" and report.metric == "accuracy"
    champion, challenger = report.variants
    assert champion.outcomes == challenger.outcomes == 400
    assert champion.mean == pytest.approx(sum(c == t for c, _, t in rows) / 400)
    [comparison] = report.comparisons
    assert comparison.test is not None and comparison.test.test == "McNemar's test"
    assert comparison.verdict == "better" and report.recommendation == "promote"
    assert "promote-challenger" in report.summary

    found, stored = ws.deployments.promote_challenger("churn", reason="better on live traffic")
    assert found.recommendation == "promote"
    assert stored.strategy == "single" and stored.primary.model == "models:/double/2"
    assert ws.models.get("models:/double@production").version == 2
    assert "challenger promoted: accuracy" in (stored.reason or "")
    assert "better on live traffic" in (stored.reason or "")


def test_a_worse_regressor_challenger_is_not_promoted(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_challenger(ws)
    rng = random.Random(12)
    rows = []
    for _ in range(300):
        truth = rng.gauss(50.0, 10.0)
        rows.append((truth + rng.gauss(0, 2.0), truth + rng.gauss(0, 4.0), truth))
    paired_logs(ws, current, rows)
    report = ws.deployments.report("churn")
    assert report.metric == "squared_error"
    [comparison] = report.comparisons
    losses = [((c - t) ** 2, (x - t) ** 2) for c, x, t in rows]
    theirs = scipy_stats.ttest_rel([x for _, x in losses], [c for c, _ in losses])
    assert comparison.test is not None and comparison.test.test == "paired t-test"
    assert comparison.test.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert comparison.verdict == "worse" and report.recommendation == "keep champion"
    absolute = ws.deployments.report("churn", metric="absolute_error")
    assert absolute.metric == "absolute_error" and absolute.recommendation == "keep champion"
    revision = ws.deployments.get("churn").revision
    with pytest.raises(NotRecommended, match="'keep champion', not 'promote'"):
        ws.deployments.promote_challenger("churn")
    assert ws.deployments.get("churn").revision == revision
    with pytest.raises(LookupError):
        ws.models.get("models:/double@production")


def test_a_challenger_the_gate_blocks_puts_the_comparison_back(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_challenger(ws)
    paired_logs(ws, current, [(0, 1, 1)] * 40 + [(1, 1, 1)] * 40)
    assert ws.deployments.report("churn").recommendation == "promote"
    blocking = GatePolicy(min_score=0.99, beat_champion=False)
    with pytest.raises(PromotionBlocked, match="registry gate blocked"):
        ws.deployments.promote_challenger("churn", policy=blocking)
    back = ws.deployments.get("churn")
    assert back.strategy == "champion-challenger"
    assert [(v.name, v.model) for v in back.variants] == [
        (v.name, v.model) for v in current.variants
    ]
    assert (back.reason or "").startswith("challenger not promoted:")


def test_champion_challenger_without_labels_says_so(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_challenger(ws)
    log(ws, current, [(f"r{i}", "champion", 1) for i in range(5)])
    report = ws.deployments.report("churn")
    assert report.recommendation == "not enough data"
    assert any("No labelled request" in n for n in report.notes)
    with pytest.raises(NotRecommended):
        ws.deployments.promote_challenger("churn")


def test_bad_input(serving_ws: Workspace) -> None:
    ws = serving_ws
    with pytest.raises(InvalidInput, match="runs single"):
        ws.deployments.report("churn")
    with pytest.raises(DeploymentNotFound, match="No deployment 'nope'"):
        ws.deployments.report("nope")
    with pytest.raises(InvalidInput, match="not champion-challenger"):
        ws.deployments.promote_challenger("churn")
    start_ab(ws)
    with pytest.raises(InvalidInput, match="Minimum detectable effect"):
        ws.deployments.report("churn", mde=-1)
    with pytest.raises(InvalidInput, match="alpha"):
        ws.deployments.report("churn", alpha=1.5)
    with pytest.raises(InvalidInput, match="does not apply to an A/B test"):
        ws.deployments.report("churn", metric="accuracy")
    with pytest.raises(InvalidInput, match="one of conversion, value"):
        ws.deployments.report("churn", metric="revenue")
    with pytest.raises(InvalidInput, match="not an ISO 8601"):
        ws.deployments.report("churn", since="yesterday")
