"""The prompt registry on every metadata backend: versions, references, labels and their
history, time travel, rollback, protected labels and the gate, diffs, concurrent writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from loopml.exceptions import Conflict, InvalidInput, NotFound, PromotionBlocked
from loopml.llm.prompts import (
    GateVerdict,
    LabelBlocked,
    PromptNotFound,
    PromptVersion,
    diff,
    get_prompt,
    label_history,
    label_state,
    list_prompts,
    list_versions,
    register_prompt,
    rollback,
    set_label,
)
from loopml.llm.prompts.settings import PromptsSettings
from loopml.workspace import Workspace

NAME = "support/answer"
CHAT = [
    {"role": "system", "content": "Answer from the context only.\nContext: {{ context }}"},
    {"role": "user", "content": "{{ question }}"},
]


def _three(ws: Workspace) -> list[PromptVersion]:
    return [
        register_prompt(NAME, f"Answer v{n}: {{{{ question }}}}", workspace=ws) for n in (1, 2, 3)
    ]


def _pause() -> None:
    """Let the millisecond clock move on, so times before and after a move differ."""
    time.sleep(0.005)


def test_versions_are_numbered_and_content_addressed(ws: Workspace) -> None:
    v1 = register_prompt(NAME, CHAT, model="gpt-4o-mini", params={"temperature": 0},
                         commit_message="first", workspace=ws)  # fmt: skip
    again = register_prompt(NAME, CHAT, model="gpt-4o-mini", params={"temperature": 0},
                            commit_message="ignored", workspace=ws)  # fmt: skip
    assert (v1.version, again.version, again.commit_message) == (1, 1, "first")
    assert v1.digest == again.digest and v1.kind == "chat"
    assert v1.variables == ("context", "question")
    v2 = register_prompt(NAME, CHAT, model="gpt-4o", params={"temperature": 0}, workspace=ws)
    v3 = register_prompt(NAME, CHAT, model="gpt-4o", schema={"type": "object"}, workspace=ws)
    assert (v2.version, v3.version) == (2, 3)
    other = register_prompt("other", "Hi {{ name }}", workspace=ws)
    assert other.version == 1 and other.kind == "text"
    assert [v.version for v in list_versions(NAME, workspace=ws)] == [1, 2, 3]
    assert v1.created_by and v1.created_at.tzinfo is not None


def test_render_fills_text_and_chat_and_names_bad_variables(ws: Workspace) -> None:
    chat = register_prompt(NAME, CHAT, workspace=ws)
    assert chat.render(context="Shipping takes 2 days.", question="How long?") == [
        {"role": "system", "content": "Answer from the context only.\nContext: Shipping takes 2 days."},
        {"role": "user", "content": "How long?"},
    ]  # fmt: skip
    with pytest.raises(InvalidInput, match="Missing variable\\(s\\) 'context'"):
        chat.render(question="x")
    with pytest.raises(InvalidInput, match="Unknown variable\\(s\\) 'tone'"):
        chat.render(question="x", context="y", tone="z")
    text = register_prompt("plain", "Hello {{ name }}!", workspace=ws)
    assert get_prompt("plain", workspace=ws).render(name="Ann") == "Hello Ann!"
    assert text.to_dict()["variables"] == ["name"]


def test_a_bad_template_or_name_is_refused_at_registration(ws: Workspace) -> None:
    bad_chat = [{"role": "system", "content": "ok"}, {"role": "user", "content": "Hi {{ who"}]
    with pytest.raises(InvalidInput, match="Prompt 'p': .*message 2, character 4"):
        register_prompt("p", bad_chat, workspace=ws)
    with pytest.raises(InvalidInput, match="'@' is not allowed"):
        register_prompt("a@b", "x", workspace=ws)
    with pytest.raises(InvalidInput, match="params="):
        register_prompt("p", "x", params=[1], workspace=ws)  # type: ignore[arg-type]
    assert list_prompts(workspace=ws) == []


def test_references_and_what_not_found_says(ws: Workspace) -> None:
    _three(ws)
    set_label(NAME, "production", 2, workspace=ws)
    assert get_prompt(NAME, workspace=ws).version == 3
    assert get_prompt(f"{NAME}@latest", workspace=ws).version == 3
    assert get_prompt(f"{NAME}/1", workspace=ws).version == 1
    found = get_prompt(f"{NAME}@production", workspace=ws)
    assert (found.version, found.labels) == (2, ("production",))
    with pytest.raises(PromptNotFound, match="no version 7; it has versions 1–3"):
        get_prompt(f"{NAME}/7", workspace=ws)
    with pytest.raises(PromptNotFound, match="no label 'staging'; its labels: production → 2"):
        get_prompt(f"{NAME}@staging", workspace=ws)
    with pytest.raises(NotFound, match="Did you mean 'support/answer'"):
        get_prompt("support/answr", workspace=ws)


def test_labels_move_with_history_who_when_why(ws: Workspace) -> None:
    _three(ws)
    first = set_label(NAME, "production", 1, reason="launch", workspace=ws)
    again = set_label(NAME, "production", 1, reason="no-op", workspace=ws)
    assert again == first  # the label is there already: nothing new recorded
    set_label(NAME, "staging", 3, workspace=ws)
    second = set_label(NAME, "production", 2, reason="better tone", workspace=ws)
    assert (second.previous_version, second.version, second.kind) == (1, 2, "set")
    history = label_history(NAME, workspace=ws)
    assert [(m.label, m.previous_version, m.version) for m in history] == [
        ("production", None, 1),
        ("staging", None, 3),
        ("production", 1, 2),
    ]
    assert [m.reason for m in label_history(NAME, "production", workspace=ws)] == [
        "launch",
        "better tone",
    ]
    assert all(m.actor for m in history)
    assert datetime.fromisoformat(history[0].to_dict()["created_at"]).utcoffset() is not None
    assert label_state(NAME, workspace=ws) == {"production": 2, "staging": 3}
    assert list_prompts(workspace=ws)[0]["labels"] == {"production": 2, "staging": 3}


def test_time_travel_shows_where_labels_pointed(ws: Workspace) -> None:
    _three(ws)
    _pause()
    before_any = datetime.now(UTC)
    _pause()
    set_label(NAME, "production", 1, workspace=ws)
    _pause()
    at_one = datetime.now(UTC)
    _pause()
    set_label(NAME, "production", 3, workspace=ws)
    assert get_prompt(f"{NAME}@production", at=at_one, workspace=ws).version == 1
    assert get_prompt(f"{NAME}@production", workspace=ws).version == 3
    assert label_state(NAME, at=at_one, workspace=ws) == {"production": 1}
    with pytest.raises(PromptNotFound, match="no label 'production' at"):
        get_prompt(f"{NAME}@production", at=before_any, workspace=ws)
    with pytest.raises(PromptNotFound, match="had no version yet"):
        get_prompt(NAME, at=datetime(2000, 1, 1, tzinfo=UTC), workspace=ws)
    with pytest.raises(InvalidInput, match="UTC offset"):
        get_prompt(NAME, at=datetime(2030, 1, 1), workspace=ws)


def test_rollback_walks_back_through_the_holders(ws: Workspace) -> None:
    _three(ws)
    for version in (1, 2, 3):
        set_label(NAME, "production", version, workspace=ws)
    back = rollback(NAME, "production", workspace=ws)
    assert (back.kind, back.previous_version, back.version) == ("rollback", 3, 2)
    assert back.reason == "rollback from version 3"
    assert rollback(NAME, "production", reason="still bad", workspace=ws).version == 1
    with pytest.raises(Conflict, match="no earlier version"):
        rollback(NAME, "production", workspace=ws)
    with pytest.raises(Conflict, match="points at no version"):
        rollback(NAME, "staging", workspace=ws)
    assert get_prompt(f"{NAME}@production", workspace=ws).version == 1
    kinds = [m.kind for m in label_history(NAME, "production", workspace=ws)]
    assert kinds == ["set", "set", "set", "rollback", "rollback"]


def _protect(ws: Workspace, *labels: str) -> None:
    ws.settings = ws.settings.with_overrides(prompts=PromptsSettings(labels))


def test_a_protected_label_needs_a_gate_or_a_recorded_override(ws: Workspace) -> None:
    _three(ws)
    _protect(ws, "production")
    with pytest.raises(LabelBlocked, match="--force --reason") as caught:
        set_label(NAME, "production", 1, workspace=ws)
    assert isinstance(caught.value, PromotionBlocked)
    assert label_history(NAME, workspace=ws) == []
    set_label(NAME, "staging", 1, workspace=ws)  # not protected
    with pytest.raises(InvalidInput, match="needs a reason"):
        set_label(NAME, "production", 1, force=True, workspace=ws)
    forced = set_label(NAME, "production", 1, force=True, reason="hotfix", workspace=ws)
    assert forced.kind == "override"
    assert forced.verdict is not None and forced.verdict.forced
    assert forced.verdict.reason == "hotfix"


def test_the_gate_decides_and_its_verdict_is_kept(ws: Workspace) -> None:
    _three(ws)
    _protect(ws, "production")
    calls: list[dict[str, Any]] = []

    def gate(**kwargs: Any) -> GateVerdict:
        calls.append(kwargs)
        passed = kwargs["candidate"].version != 3
        return GateVerdict(passed, f"pass rate {1.0 if passed else 0.5}", {"pass_rate": 0.5})

    moved = set_label(NAME, "production", 1, gate=gate, workspace=ws)
    assert moved.kind == "set" and moved.verdict == GateVerdict(
        True, "pass rate 1.0", {"pass_rate": 0.5}
    )
    assert calls[0]["label"] == "production" and calls[0]["current"] is None
    with pytest.raises(
        LabelBlocked, match="refused support/answer/3 .*stays at version 1"
    ) as caught:
        set_label(NAME, "production", 3, gate=gate, workspace=ws)
    assert isinstance(caught.value.verdict, GateVerdict) and not caught.value.verdict.passed
    assert calls[1]["current"].version == 1
    assert get_prompt(f"{NAME}@production", workspace=ws).version == 1
    forced = set_label(NAME, "production", 3, gate=gate, force=True, reason="ship", workspace=ws)
    assert forced.kind == "override" and forced.verdict and not forced.verdict.passed
    rows = [(m.kind, m.version, m.verdict.passed if m.verdict else None)
            for m in label_history(NAME, "production", workspace=ws)]  # fmt: skip
    assert rows == [("set", 1, True), ("blocked", 3, False), ("override", 3, False)]
    # A blocked move moved nothing, for time travel as for now.
    assert label_state(NAME, at=datetime.now(UTC), workspace=ws) == {"production": 3}


def test_a_gate_must_answer_a_verdict(ws: Workspace) -> None:
    _three(ws)
    _protect(ws, "production")
    with pytest.raises(InvalidInput, match="not a GateVerdict"):
        set_label(NAME, "production", 1, gate=lambda **_: True, workspace=ws)  # type: ignore[arg-type, return-value]
    assert label_history(NAME, workspace=ws) == []


def test_rollback_of_a_protected_label_needs_no_gate(ws: Workspace) -> None:
    _three(ws)
    _protect(ws, "production")
    ok: Callable[..., GateVerdict] = lambda **_: GateVerdict(True)  # noqa: E731
    set_label(NAME, "production", 1, gate=ok, workspace=ws)
    set_label(NAME, "production", 2, gate=ok, workspace=ws)
    assert rollback(NAME, "production", workspace=ws).version == 1


def test_label_errors(ws: Workspace) -> None:
    _three(ws)
    with pytest.raises(PromptNotFound, match="no version 9"):
        set_label(NAME, "production", 9, workspace=ws)
    with pytest.raises(InvalidInput, match="'latest' is not a label"):
        set_label(NAME, "latest", 1, workspace=ws)
    with pytest.raises(PromptNotFound):
        set_label("nosuch", "production", 1, workspace=ws)
    with pytest.raises(PromptNotFound):
        label_history("nosuch", workspace=ws)


def test_diff_shows_template_model_and_params(ws: Workspace) -> None:
    register_prompt(NAME, "Answer briefly: {{ question }}\nBe kind.", model="a", workspace=ws)
    register_prompt(NAME, "Answer politely: {{ question }}\nBe kind.", model="b",
                    params={"temperature": 0.2}, workspace=ws)  # fmt: skip
    set_label(NAME, "production", 1, workspace=ws)
    out = diff(NAME, 1, 2, workspace=ws)
    assert out.startswith(f"--- {NAME}/1\n+++ {NAME}/2\n")
    assert "-Answer briefly: {{ question }}\n+Answer politely: {{ question }}\n Be kind." in out
    assert f"--- {NAME}/1 model" in out and "+b" in out
    assert '+  "temperature": 0.2' in out
    assert "schema" not in out
    assert diff(NAME, "production", "1", workspace=ws) == ""


# -- concurrent writers -------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_concurrent_label_moves_are_all_recorded_in_order(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    ws = workspace_factory(store)
    _three(ws)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def mover(versions: tuple[int, ...]) -> None:
        try:
            start.wait()
            for _ in range(8):
                for version in versions:
                    set_label(NAME, "production", version, workspace=ws)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(v,)) for v in ((1, 2), (3, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = label_history(NAME, "production", workspace=ws)
    assert history[0].previous_version is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.previous_version == before.version  # one chain, no lost move
        assert after.version != before.version
    assert {1, 3} <= {move.version for move in history}  # each writer's own moves recorded
    assert get_prompt(f"{NAME}@production", workspace=ws).version == history[-1].version


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_concurrent_registrations_number_once(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    ws = workspace_factory(store)
    results: list[int] = []
    start = threading.Barrier(4)

    def register(text: str) -> None:
        start.wait()
        results.append(register_prompt(NAME, text, workspace=ws).version)

    texts = ["same {{ x }}", "same {{ x }}", "other {{ x }}", "third {{ x }}"]
    threads = [threading.Thread(target=register, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(results)) == [1, 2, 3]
    assert [v.version for v in list_versions(NAME, workspace=ws)] == [1, 2, 3]
    assert len({v.digest for v in list_versions(NAME, workspace=ws)}) == 3


def test_a_verdict_is_stored_as_strict_json(sqlite_ws: Workspace) -> None:
    _three(sqlite_ws)
    _protect(sqlite_ws, "production")
    verdict = GateVerdict(True, "ok", {"score": float("nan"), "cases": [1, float("inf")]})
    set_label(NAME, "production", 1, gate=lambda **_: verdict, workspace=sqlite_ws)
    stored = label_history(NAME, workspace=sqlite_ws)[-1].verdict
    assert stored is not None and dict(stored.details) == {"score": None, "cases": [1, None]}
