"""Prompt A/B tests: a label split between versions by weight (checked, gated when protected,
rolled back, time travelled), sticky assignment per end user (in the registry and through the
gateway's HTTP server with the official ``openai`` client), and the report comparing the
versions on feedback, online-eval scores and eval-suite runs, in Python and on the CLI."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from llm.fake_provider import FakeProvider
from llm.test_gateway import table
from loopml.cli.main import cli
from loopml.exceptions import Conflict, InvalidInput
from loopml.llm.gateway import Gateway
from loopml.llm.keys import create_key
from loopml.llm.prompts import (
    GateVerdict,
    LabelBlocked,
    LabelState,
    PromptNotFound,
    get_prompt,
    label_history,
    label_splits,
    label_state,
    list_prompts,
    prompt_ab,
    register_prompt,
    rollback,
    set_label,
    split_label,
)
from loopml.llm.prompts.settings import PromptsSettings
from loopml.llm.tables import llm_feedback, llm_online_evals, llm_requests, llm_spans
from loopml.serving.router import bucket
from loopml.store.clock import now_ms
from loopml.workspace import Workspace
from server.conftest import start_server
from services import require_module

NAME = "support/answer"


def _four(ws: Workspace) -> None:
    for n in (1, 2, 3, 4):
        register_prompt(NAME, f"Answer v{n}: {{{{ question }}}}", model="cheap", workspace=ws)


def _protect(ws: Workspace, *labels: str) -> None:
    ws.settings = ws.settings.with_overrides(prompts=PromptsSettings(labels))


def _pause() -> None:
    """Let the millisecond clock move on, so times before and after a move differ."""
    time.sleep(0.005)


# -- the split -------------------------------------------------------------------------------


def test_weights_are_checked(sqlite_ws: Workspace) -> None:
    _four(sqlite_ws)

    def refused(weights: Any, fragment: str) -> None:
        with pytest.raises(InvalidInput, match=fragment):
            split_label(NAME, "production", weights, workspace=sqlite_ws)

    refused({1: 100}, "two or more versions, got 1")
    refused({1: 60, 2: 50}, r"60 \(version 1\) \+ 50 \(version 2\) = 110")
    refused({1: 0, 2: 100}, "weight of version 1 is 0")
    refused({1: -10, 2: 110}, "weight of version 1 is -10")
    refused({1: math.nan, 2: 50}, "weight of version 1 is nan")
    refused({1: "50", 2: 50}, "weight of version 1 is '50'")
    refused([(1, 50), (1, 50)], "Version 1 is in the split twice")
    refused({0: 50, 2: 50}, "whole numbers from 1, got 0")
    with pytest.raises(PromptNotFound, match="no version 9"):
        split_label(NAME, "production", {1: 50, 9: 50}, workspace=sqlite_ws)
    assert label_history(NAME, workspace=sqlite_ws) == []


def test_a_split_is_stored_listed_and_ended_by_setting_one_version(ws: Workspace) -> None:
    _four(ws)
    set_label(NAME, "production", 4, workspace=ws)
    move = split_label(NAME, "production", {5 - 1: 50, 2: 50}, reason="tone", workspace=ws)
    # the holder stays the control, listed first or not
    assert (move.version, move.previous_version, move.split) == (4, 4, ((4, 50), (2, 50)))
    assert move.target == "4 (50%) / 2 (50%)" and move.to_dict()["split"] == [[4, 50], [2, 50]]
    assert split_label(NAME, "production", {4: 50, 2: 50}, workspace=ws) == move  # no-op
    assert label_state(NAME, workspace=ws) == {"production": 4}
    assert label_splits(NAME, workspace=ws) == {"production": LabelState(4, ((4, 50), (2, 50)))}
    assert list_prompts(workspace=ws)[0]["splits"] == {"production": [[4, 50], [2, 50]]}
    # a label that held none of the split's versions: the first listed is the control
    assert split_label(NAME, "staging", {3: 20, 1: 80}, workspace=ws).version == 3
    ended = set_label(NAME, "production", 4, workspace=ws)  # the control: the test ends
    assert (ended.kind, ended.split) == ("set", None)
    assert label_splits(NAME, workspace=ws)["production"] == LabelState(4)
    assert get_prompt(f"{NAME}@production", key="anyone", workspace=ws).version == 4


def test_assignment_is_sticky_and_follows_the_weights(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _four(ws)
    set_label(NAME, "production", 1, workspace=ws)
    split_label(NAME, "production", {1: 50, 2: 50}, workspace=ws)
    ref = f"{NAME}@production"
    first = get_prompt(ref, key="user-42", workspace=ws).version
    assert {get_prompt(ref, key="user-42", workspace=ws).version for _ in range(100)} == {first}
    assert get_prompt(ref, workspace=ws).version == 1  # no end user: the control
    users = [f"user-{i}" for i in range(2000)]
    given = {u: get_prompt(ref, key=u, workspace=ws).version for u in users}
    on_two = sum(v == 2 for v in given.values())
    # Binomial(2000, 0.5): sd 22.4; 5 sd either side
    assert abs(on_two - 1000) < 5 * math.sqrt(2000 * 0.25), on_two
    # exactly the hash's consecutive ranges: [0, 50) → version 1, [50, 100) → version 2
    assert all((bucket(ref, u) >= 50) == (v == 2) for u, v in given.items())
    # ramping the candidate from 10% to 30% keeps every user it had
    split_label(NAME, "production", {1: 90, 2: 10}, workspace=ws)
    before = {u for u in users if get_prompt(ref, key=u, workspace=ws).version == 2}
    split_label(NAME, "production", {1: 70, 2: 30}, workspace=ws)
    after = {u for u in users if get_prompt(ref, key=u, workspace=ws).version == 2}
    assert before < after and abs(len(after) - 600) < 5 * math.sqrt(2000 * 0.21)


def test_a_protected_label_splits_through_the_gate_blocked_or_forced(ws: Workspace) -> None:
    _four(ws)
    _protect(ws, "production")
    set_label(NAME, "production", 1, force=True, reason="launch", workspace=ws)
    judged: list[tuple[int, int | None]] = []

    def gate(*, candidate: Any, current: Any, **_: Any) -> GateVerdict:
        judged.append((candidate.version, current.version if current else None))
        passed = candidate.version != 3
        return GateVerdict(passed, f"pass rate {0.95 if passed else 0.5}")

    with pytest.raises(LabelBlocked, match="needs a promotion gate"):
        split_label(NAME, "production", {1: 50, 2: 50}, workspace=ws)
    move = split_label(NAME, "production", {1: 50, 2: 50}, gate=gate, workspace=ws)
    assert judged == [(2, 1)]  # only the version new to the label is judged
    assert move.kind == "set" and move.verdict is not None and move.verdict.passed
    judged.clear()
    with pytest.raises(LabelBlocked, match="refused the split 1 \\(40%\\) / 2 \\(30%\\) / 3"):
        split_label(NAME, "production", {1: 40, 2: 30, 3: 30}, gate=gate, workspace=ws)
    assert judged == [(2, 1), (3, 1)]
    blocked = label_history(NAME, "production", workspace=ws)[-1]
    assert blocked.kind == "blocked" and blocked.split == ((1, 40), (2, 30), (3, 30))
    assert blocked.verdict is not None and "version 3: FAIL" in blocked.verdict.summary
    assert label_splits(NAME, workspace=ws)["production"].split == ((1, 50), (2, 50))
    forced = split_label(
        NAME, "production", {1: 40, 2: 30, 3: 30}, force=True, reason="try it", workspace=ws
    )
    assert forced.kind == "override" and forced.verdict is not None and forced.verdict.forced
    # ending at the control needs no gate; ending at another version does
    with pytest.raises(LabelBlocked):
        set_label(NAME, "production", 3, workspace=ws)
    assert set_label(NAME, "production", 1, workspace=ws).split is None


def test_rollback_and_time_travel_see_splits(ws: Workspace) -> None:
    _four(ws)
    set_label(NAME, "production", 1, workspace=ws)
    _pause()
    at_one = datetime.now(UTC)
    _pause()
    split_label(NAME, "production", {1: 50, 2: 50}, workspace=ws)
    _pause()
    at_split = datetime.now(UTC)
    _pause()
    set_label(NAME, "production", 2, workspace=ws)
    assert label_splits(NAME, at=at_one, workspace=ws) == {"production": LabelState(1)}
    assert label_splits(NAME, at=at_split, workspace=ws) == {
        "production": LabelState(1, ((1, 50), (2, 50)))
    }
    user = next(f"u{i}" for i in range(100) if bucket(f"{NAME}@production", f"u{i}") >= 50)
    assert get_prompt(f"{NAME}@production", at=at_split, key=user, workspace=ws).version == 2
    back = rollback(NAME, "production", workspace=ws)  # to the split
    assert (back.kind, back.version, back.split) == ("rollback", 1, ((1, 50), (2, 50)))
    again = rollback(NAME, "production", workspace=ws)  # to version 1 alone
    assert (again.version, again.split) == (1, None)
    assert again.reason == "rollback from split 1 (50%) / 2 (50%)"
    with pytest.raises(Conflict, match="no earlier version"):
        rollback(NAME, "production", workspace=ws)


# -- through the gateway ---------------------------------------------------------------------


@pytest.fixture
def served(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Gateway]]:
    from loopml.llm.server import create_gateway_app

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    yield url, gateway
    stop()


def test_the_gateway_gives_each_end_user_their_version(served: tuple[str, Gateway]) -> None:
    openai = require_module("openai")
    url, gateway = served
    ws = gateway.workspace
    for n in (1, 2):
        register_prompt(NAME, f"v{n} says {{{{ question }}}}", model="cheap", workspace=ws)
    set_label(NAME, "production", 1, workspace=ws)
    split_label(NAME, "production", {1: 50, 2: 50}, workspace=ws)
    _, secret = create_key(ws, name="tests")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
    users = [f"user-{i}" for i in range(12)]
    answers: dict[str, set[str]] = {}
    for user in users * 2:
        reply = client.chat.completions.with_raw_response.create(
            model="cheap",
            messages=[],
            user=user,
            extra_body={"prompt": f"{NAME}@production", "variables": {"question": "hi"}},
        )
        answers.setdefault(user, set()).add(reply.parse().choices[0].message.content)
        assert reply.headers["x-request-id"].startswith("req_")
    expected = {u: get_prompt(f"{NAME}@production", key=u, workspace=ws).version for u in users}
    assert set(expected.values()) == {1, 2}  # both versions answer someone
    assert answers == {u: {f"echo: v{expected[u]} says hi"} for u in users}
    gateway.log.flush()
    gateway.tracing.force_flush()
    with ws.db.read() as conn:
        logged = conn.execute(select(llm_requests.c.user, llm_requests.c.prompt)).all()
        labels = set(conn.execute(select(llm_requests.c.prompt_label)).scalars())
        attributes = [
            json.loads(a)
            for a in conn.execute(
                select(llm_spans.c.attributes).where(llm_spans.c.name == "gateway chat")
            ).scalars()
        ]
    assert {(u, p) for u, p in logged} == {(u, f"{NAME}/{expected[u]}") for u in users}
    assert len(logged) == 24 and labels == {"production"}
    assert {a["loopml.prompt.label"] for a in attributes} == {"production"}
    # no end user: each request's id decides, so both versions still get traffic
    for _ in range(20):
        client.chat.completions.create(
            model="cheap", messages=[], extra_body={"prompt": f"{NAME}@production",
                                                    "variables": {"question": "x"}},
        )  # fmt: skip
    gateway.log.flush()
    with ws.db.read() as conn:
        anonymous = conn.execute(
            select(llm_requests.c.prompt).where(llm_requests.c.user.is_(None))
        ).scalars()
        assert set(anonymous) == {f"{NAME}/1", f"{NAME}/2"}
    # a request naming a version itself is logged as not made through a label
    client.chat.completions.create(
        model="cheap", messages=[], user="direct",
        extra_body={"prompt": f"{NAME}/2", "variables": {"question": "x"}},
    )  # fmt: skip
    gateway.log.flush()
    with ws.db.read() as conn:
        direct = conn.execute(
            select(llm_requests.c.prompt, llm_requests.c.prompt_label).where(
                llm_requests.c.user == "direct"
            )
        ).all()
    assert [tuple(r) for r in direct] == [(f"{NAME}/2", "")]


# -- the report ------------------------------------------------------------------------------


def _log(ws: Workspace, rows: list[tuple[int, int, str | None]]) -> list[str]:
    """Log answered requests (version, ms after now, end user) as the gateway does; → ids."""
    start = now_ms()
    ids = [f"req_test{i:06d}" for i in range(len(rows))]
    values = [
        _row(ident, version, start + offset, user)
        for ident, (version, offset, user) in zip(ids, rows, strict=True)
    ]
    ws.db.transact(lambda conn: conn.execute(insert(llm_requests), values))
    return ids


def _row(
    ident: str, version: int, at: int, user: str | None, label: str | None = "production"
) -> dict[str, Any]:
    """An answered request's row of the request log, made from ``NAME/version`` through
    ``label`` ("": the version named directly; None: logged before labels were)."""
    zero = dict.fromkeys(("cached_read_tokens", "cached_write_tokens", "reasoning_tokens"), 0)
    return {
        "id": ident,
        "created_at": at,
        "endpoint": "chat",
        "user": user,
        "model_requested": "cheap",
        "status": 200,
        "stream": False,
        "truncated": False,
        "latency_ms": 1.0,
        "input_tokens": 1,
        "output_tokens": 1,
        **zero,
        "usage_estimated": False,
        "cost_usd": 0.0,
        "cache_hit": False,
        "prompt": f"{NAME}/{version}",
        "prompt_label": label,
    }


def _thumbs(ws: Workspace, rates: dict[int, float], n: int, seed: int = 7) -> list[str]:
    """``n`` requests per version in a shuffled order, a fraction ``rate`` thumbs up."""
    rng = np.random.default_rng(seed)
    plan = [(v, float(i < round(rate * n))) for v, rate in rates.items() for i in range(n)]
    order = rng.permutation(len(plan))
    rows = [(plan[j][0], k, f"user-{j % 150}") for k, j in enumerate(order)]
    ids = _log(ws, rows)
    feedback = [
        {"request_id": ident, "name": "user", "value": plan[j][1], "created_at": now_ms()}
        for ident, j in zip(ids, order, strict=True)
    ]
    ws.db.transact(lambda conn: conn.execute(insert(llm_feedback), feedback))
    return ids


def _ab_ready(ws: Workspace) -> None:
    _four(ws)
    set_label(NAME, "production", 1, workspace=ws)
    split_label(NAME, "production", {1: 50, 2: 50}, workspace=ws)


def test_a_clearly_better_version_wins_on_feedback(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    _thumbs(ws, {1: 0.30, 2: 0.50}, 400)
    found = prompt_ab(NAME, workspace=ws)
    one, two = found.versions
    assert (one.version, one.requests, one.outcomes, one.weight) == (1, 400, 400, 50)
    assert one.mean == pytest.approx(0.30) and two.mean == pytest.approx(0.50)
    assert 0 < one.users <= 150
    (comparison,) = found.comparisons
    assert comparison.test is not None and comparison.test.test.startswith("two-proportion")
    assert comparison.test.significant and comparison.test.difference == pytest.approx(0.2)
    assert comparison.sequential is not None and comparison.sequential.crossed
    assert comparison.verdict == "better"
    assert (found.recommendation, found.winner) == ("winner", 2)
    assert f"`loopml prompts label {NAME} production 2`" in found.summary
    # an older thumb on the same request is replaced by the newest
    assert found.to_dict()["versions"][1]["outcomes"] == 400


def test_only_the_labels_requests_are_counted(sqlite_ws: Workspace) -> None:
    """Requests that named a version directly (an eval suite, a pinned client) are not the A/B
    test's traffic; rows logged before the label was recorded (NULL) still count."""
    ws = sqlite_ws
    _ab_ready(ws)
    ids = _thumbs(ws, {1: 0.30, 2: 0.50}, 100)
    start = now_ms()
    extra = [
        _row("req_direct", 2, start, "pinned", label=""),
        _row("req_staging", 2, start, "stager", label="staging"),
        _row("req_old", 1, start, "old", label=None),
    ]
    ws.db.transact(lambda conn: conn.execute(insert(llm_requests), extra))
    thumbs = [
        {"request_id": r["id"], "name": "user", "value": 0.0, "created_at": now_ms()} for r in extra
    ]
    ws.db.transact(lambda conn: conn.execute(insert(llm_feedback), thumbs))
    one, two = prompt_ab(NAME, workspace=ws).versions
    assert (one.requests, one.outcomes) == (101, 101)  # the old row counts
    assert (two.requests, two.outcomes) == (100, 100)  # the direct and staging ones don't
    assert two.mean == pytest.approx(0.50) and len(ids) == 200


def test_equal_rates_are_no_difference(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    _thumbs(ws, {1: 0.40, 2: 0.40}, 400)
    found = prompt_ab(NAME, workspace=ws)
    (comparison,) = found.comparisons
    assert comparison.test is not None and not comparison.test.significant
    assert comparison.sequential is not None and not comparison.sequential.crossed
    assert found.recommendation == "keep collecting" and found.winner is None
    sized = prompt_ab(NAME, mde=0.1, workspace=ws)  # 400 ≥ the planned sample for 0.1
    assert sized.comparisons[0].sample_size is not None
    assert sized.comparisons[0].sample_size <= 400
    assert sized.recommendation == "no difference"


def test_too_little_feedback_says_so(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    _log(ws, [(1, 0, "a"), (2, 1, "b")])
    found = prompt_ab(NAME, workspace=ws)
    assert found.recommendation == "not enough data"
    assert "POST /v1/feedback" in found.summary
    with pytest.raises(InvalidInput, match="Unknown metric 'thumbs'"):
        prompt_ab(NAME, metric="thumbs", workspace=ws)
    with pytest.raises(PromptNotFound, match="no label 'canary'"):
        prompt_ab(NAME, "canary", workspace=ws)


def test_a_version_swapped_out_of_the_test_is_still_reported(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    _log(ws, [(1, 0, "a"), (2, 1, "b")])
    split_label(NAME, "production", {1: 50, 3: 50}, workspace=ws)
    ws.db.transact(
        lambda conn: conn.execute(insert(llm_requests), [_row("req_more", 3, now_ms(), "c")])
    )
    found = prompt_ab(NAME, workspace=ws)
    assert [(v.version, v.weight, v.requests) for v in found.versions] == [
        (1, 50, 1),
        (3, 50, 1),
        (2, None, 1),
    ]
    assert [c.treatment for c in found.comparisons] == ["3", "2"]
    assert any("each compared with 1" in note for note in found.notes)
    set_label(NAME, "production", 3, workspace=ws)  # the test ended: its last one is reported
    ended = prompt_ab(NAME, workspace=ws)
    assert ended.control == 3 and ended.split is None
    assert any("no longer split" in note for note in ended.notes)


def test_online_eval_scores_compare_with_welch(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    rng = np.random.default_rng(3)
    versions = [1, 2] * 150
    ids = _log(ws, [(v, k, f"u{k}") for k, v in enumerate(versions)])
    scores = [float(np.clip(rng.normal(0.6 if v == 1 else 0.8, 0.1), 0, 1)) for v in versions]
    rows = [
        {
            "request_id": ident,
            "evaluator": "groundedness",
            "route": "cheap",
            "prompt": f"{NAME}/{v}",
            "status": "ok",
            "score": score,
            "judge_cost_usd": 0.0,
            "request_at": now_ms(),
            "evaluated_at": now_ms(),
        }  # fmt: skip
        for ident, v, score in zip(ids, versions, scores, strict=True)
    ]
    rows[0] = {**rows[0], "status": "judge_error", "score": None}  # left out
    ws.db.transact(lambda conn: conn.execute(insert(llm_online_evals), rows))
    found = prompt_ab(NAME, metric="online:groundedness", workspace=ws)
    assert [v.outcomes for v in found.versions] == [149, 150]
    (comparison,) = found.comparisons
    assert comparison.test is not None and comparison.test.test.startswith("Welch")
    assert comparison.verdict == "better" and found.winner == 2
    assert prompt_ab(NAME, metric="online:nosuch", workspace=ws).recommendation == (
        "not enough data"
    )


def test_eval_runs_compare_pass_rates(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _ab_ready(ws)
    for version, passed in ((1, 60), (1, 62), (2, 90), (2, 88)):
        with ws.runs.start(
            experiment="evals",
            tags={"loopml.evals.prompt": f"{NAME}/{version}"},
            log_environment=False,
        ) as run:
            run.log_metrics({"passed": float(passed), "cases": 100.0})
    found = prompt_ab(NAME, metric="eval", workspace=ws)
    assert [(v.outcomes, v.mean) for v in found.versions] == [(200, 0.61), (200, 0.89)]
    assert found.comparisons[0].sequential is None
    assert (found.recommendation, found.winner) == ("winner", 2)
    assert any("eval-suite run" in note for note in found.notes)


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_split_list_show_and_ab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "project")
    monkeypatch.chdir(ws.root)
    _four(ws)
    set_label(NAME, "production", 1, workspace=ws)

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["prompts", *args], prog_name="loopml")

    done = run("split", NAME, "production", "1=50", "2=50", "--reason", "tone")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"{NAME}@production: 1 → 1 (50%) / 2 (50%)"
    listed = run("list")
    assert "production: 1 (50%) / 2 (50%)" in listed.stdout.replace("\n", " ")
    assert run("versions", NAME).stdout.count("production (50%)") == 2
    moment = datetime.now(UTC).isoformat()
    shown = json.loads(run("show", NAME, "--at", moment, "--json").stdout)
    assert shown["labels_at"] == {"production": 1}
    assert shown["splits_at"] == {"production": [[1, 50], [2, 50]]}
    assert "production: 1 (50%) / 2 (50%)" in run("show", NAME, "--at", moment).stdout
    bad = run("split", NAME, "production", "1=50", "2=60")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: A split's weights sum to 100")
    assert "Traceback" not in bad.output
    _thumbs(ws, {1: 0.30, 2: 0.50}, 400)
    report = json.loads(run("ab", NAME, "--json").stdout)
    assert report["recommendation"] == "winner" and report["winner"] == 2
    assert [v["requests"] for v in report["versions"]] == [400, 400]
    assert report["comparisons"][0]["test"]["significant"] is True
    text = run("ab", NAME, "--label", "production")
    assert text.exit_code == 0, text.output
    assert f"{NAME}@production: prompt A/B test 1 (50%) / 2 (50%), metric feedback" in text.stdout
    assert "two-proportion z-test" in text.stdout and "winner: " in text.stdout
    unknown = run("ab", NAME, "--metric", "stars")
    assert unknown.exit_code == 1 and "Unknown metric 'stars'" in unknown.stderr
    history = run("history", NAME, "production", "--json")
    assert json.loads(history.stdout)[-1]["split"] == [[1, 50], [2, 50]]
    ws.close()
