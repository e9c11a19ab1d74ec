"""Labels of prompts (``production``, ``staging``, any name): pointers at versions, with an
append-only history of every move — who, when, why and the gate's verdict.

    set_label("support/answer", "staging", 4, reason="new tone")
    set_label("support/answer", "production", 4, gate=eval_gate)   # a protected label
    rollback("support/answer", "production")                        # back to its holder before
    label_history("support/answer", "production")
    split_label("support/answer", "production", {4: 50, 5: 50})      # an A/B test

A split label shares its traffic between versions by weight, sticky per end user
(:func:`~loopml.llm.prompts.refs.choose`); ``version`` is then the control (the holder before
the split, when it is in it, else the first version listed): what a request without an end
user gets. Setting the label to one version ends the test; a rollback returns to the state
before, split or not.

A label listed in ``[prompts] protected_labels`` moves only when a promotion gate passes
(:mod:`loopml.llm.prompts.gate`), or with ``force=True`` and a reason, recorded as an
override. Moves of one prompt are serialized (SQLite's ``BEGIN IMMEDIATE``; a row lock on
PostgreSQL): two concurrent moves are both recorded, in order, the later one wins, and each
history row's ``previous_version`` is the version the row before it moved the label to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from loopml.exceptions import Conflict, InvalidInput
from loopml.llm.prompts.gate import GateVerdict, LabelBlocked, PromotionGate, judge
from loopml.llm.prompts.refs import (
    PromptRef,
    Split,
    check_label,
    check_name,
    check_split,
    split_text,
)
from loopml.llm.prompts.versions import (
    LabelState,
    PromptVersion,
    _actor,
    dump_split,
    load_split,
    resolve,
    states_at,
)
from loopml.llm.tables import llm_prompt_label_history, llm_prompt_labels, llm_prompts
from loopml.store.clock import now_ms, to_datetime
from loopml.store.db import upsert
from loopml.workspace import Workspace, WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: Kinds of history rows: a plain move, a move back, a forced move past the gate, and a
#: move the gate refused (which moved nothing).
SET, ROLLBACK, OVERRIDE, BLOCKED = "set", "rollback", "override", "blocked"


@dataclass(frozen=True)
class LabelMove:
    """One row of a label's history."""

    id: int
    name: str
    label: str
    kind: str
    version: int
    previous_version: int | None
    actor: str | None
    reason: str | None
    verdict: GateVerdict | None
    created_at: datetime
    #: The A/B split the move set (``version`` is its control); None: one version.
    split: Split | None = None

    @property
    def moved(self) -> bool:
        return self.kind != BLOCKED

    @property
    def target(self) -> str:
        """Where the move pointed the label: ``4``, or ``4 (50%) / 5 (50%)``."""
        return split_text(self.split) if self.split else str(self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "version": self.version,
            "previous_version": self.previous_version,
            "actor": self.actor,
            "reason": self.reason,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "created_at": self.created_at.isoformat(),
            "split": [list(pair) for pair in self.split] if self.split else None,
        }


def _unmoved(name: str, label: str, current: int | None) -> str:
    if current is None:
        return f"{name}@{label} still points at no version"
    return f"{name}@{label} stays at version {current}"


def _move(row: Any) -> LabelMove:
    created = to_datetime(row.created_at)
    assert created is not None
    return LabelMove(
        id=int(row.id),
        name=row.name,
        label=row.label,
        kind=row.kind,
        version=int(row.version),
        previous_version=row.previous_version,
        actor=row.actor,
        reason=row.reason,
        verdict=GateVerdict.from_dict(json.loads(row.verdict)) if row.verdict else None,
        created_at=created,
        split=load_split(row.split),
    )


def protected_labels(ws: Workspace) -> tuple[str, ...]:
    """The labels ``[prompts] protected_labels`` of the workspace's ``loopml.toml`` names."""
    return tuple(ws.settings.prompts.protected_labels)


def _lock(conn: Connection, name: str) -> None:
    """Serialize label moves of one prompt: SQLite's write transactions already are
    (``BEGIN IMMEDIATE``); on PostgreSQL lock the prompt's first version row."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(llm_prompts.c.version)
            .where(llm_prompts.c.name == name)
            .order_by(llm_prompts.c.version)
            .limit(1)
            .with_for_update()
        )


def _state(conn: Connection, name: str, label: str) -> LabelState | None:
    found = conn.execute(
        select(llm_prompt_labels.c.version, llm_prompt_labels.c.split).where(
            llm_prompt_labels.c.name == name, llm_prompt_labels.c.label == label
        )
    ).first()
    return None if found is None else LabelState(int(found.version), load_split(found.split))


def _record(
    conn: Connection,
    name: str,
    label: str,
    kind: str,
    version: int,
    previous: int | None,
    reason: str | None,
    verdict: GateVerdict | None,
    split: Split | None = None,
) -> LabelMove:
    at = now_ms()
    stored = dump_split(split)
    if kind != BLOCKED:
        stmt = upsert(conn.dialect.name, llm_prompt_labels).values(
            name=name, label=label, version=version, updated_at=at, split=stored
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[llm_prompt_labels.c.name, llm_prompt_labels.c.label],
                set_={"version": version, "updated_at": at, "split": stored},
            )
        )
    new_id = conn.execute(
        insert(llm_prompt_label_history).values(
            name=name,
            label=label,
            kind=kind,
            version=version,
            previous_version=previous,
            actor=_actor(),
            reason=reason,
            verdict=verdict.to_json() if verdict is not None else None,
            created_at=at,
            split=stored,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    row = conn.execute(
        select(llm_prompt_label_history).where(llm_prompt_label_history.c.id == new_id)
    ).one()
    return _move(row)


def _read_state(
    ws: Workspace, name: str, label: str, version: int
) -> tuple[PromptVersion, PromptVersion | None, LabelState | None]:
    with ws.db.read() as conn:
        candidate = resolve(conn, PromptRef(name, version=version))
        state = _state(conn, name, label)
        holder = (
            resolve(conn, PromptRef(name, version=state.version)) if state is not None else None
        )
    return candidate, holder, state


def set_label(
    name: str,
    label: str,
    version: int,
    *,
    reason: str | None = None,
    gate: PromotionGate | Callable[..., GateVerdict] | None = None,
    force: bool = False,
    workspace: WorkspaceLike = None,
) -> LabelMove:
    """Point ``label`` of prompt ``name`` at ``version`` and record the move (a label already
    there records nothing; a label split between versions ends its A/B test). A protected
    label moves only when ``gate`` passes; its verdict is recorded either way and a failing
    one raises :class:`LabelBlocked`. ``force=True`` (with a ``reason``) moves it anyway,
    recorded as an override. Ending a split at its control version needs no gate."""
    check_name(name)
    check_label(label)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInput(f"A prompt version is a whole number, got {version!r}")
    if force and not (reason and reason.strip()):
        raise InvalidInput("A forced label move needs a reason (--reason '...'); it is recorded")
    ws = resolve_workspace(workspace)
    protected = label in protected_labels(ws)
    for _ in range(3):
        candidate, holder, state = _read_state(ws, name, label, version)
        current = holder.version if holder is not None else None
        if state is not None and state == LabelState(version):
            with ws.db.read() as conn:
                return _last_move(conn, name, label, version)
        verdict: GateVerdict | None = None
        kind = SET
        if protected and current != version:
            kind, verdict = _gated(
                gate,
                partial(judge, candidate=candidate, label=label, current=holder),
                force=force,
                reason=reason,
                refusal=(
                    f"{label!r} is a protected label ([prompts] protected_labels): moving "
                    f"{name}@{label} to version {version} needs a promotion gate (an eval "
                    "suite) to pass, and none was given. To move it anyway, record an "
                    f"override: `loopml prompts label {name} {label} {version} --force "
                    "--reason '...'`"
                ),
            )

        def tx(
            conn: Connection,
            kind: str = kind,
            verdict: GateVerdict | None = verdict,
            expected: int | None = current,
        ) -> LabelMove | None:
            _lock(conn, name)
            resolve(conn, PromptRef(name, version=version))
            now_state = _state(conn, name, label)
            now = now_state.version if now_state is not None else None
            if now_state == LabelState(version):  # another writer put it there meanwhile
                return _last_move(conn, name, label, version)
            if protected and gate is not None and now != expected:
                return None  # the label moved while the gate ran: judge again
            return _record(conn, name, label, kind, version, now, reason, verdict)

        move = ws.db.transact(tx)
        if move is None:
            continue
        if move.kind == BLOCKED:
            assert verdict is not None
            raise LabelBlocked(
                f"The promotion gate refused {name}/{version} for {label!r}: "
                f"{verdict.summary or 'failed'}. {_unmoved(name, label, current)}; the verdict is "
                "in `loopml prompts history`.",
                verdict,
            )
        return move
    raise Conflict(f"{name}@{label} kept moving while the gate ran; try again.")


def split_label(
    name: str,
    label: str,
    weights: Mapping[int, float] | Sequence[tuple[int, float]],
    *,
    reason: str | None = None,
    gate: PromotionGate | Callable[..., GateVerdict] | None = None,
    force: bool = False,
    workspace: WorkspaceLike = None,
) -> LabelMove:
    """Start (or re-weight) an A/B test: ``label`` of ``name`` shares its traffic between
    the versions of ``weights`` (``{4: 50, 5: 50}``; two or more, each above 0, summing to
    100), sticky per end user. The control — what a request without an end user gets, and
    what the report compares with — is the label's current version when it is in the split,
    else the first one listed. On a protected label every version of the split but the
    current one must pass ``gate`` (all verdicts are recorded together; one failing moves
    nothing and raises :class:`LabelBlocked`), or ``force=True`` with a ``reason``.

    >>> split_label("support/answer", "production", {4: 90, 5: 10})  # doctest: +SKIP
    """
    check_name(name)
    check_label(label)
    split = check_split(weights)
    if force and not (reason and reason.strip()):
        raise InvalidInput("A forced label move needs a reason (--reason '...'); it is recorded")
    ws = resolve_workspace(workspace)
    protected = label in protected_labels(ws)
    for _ in range(3):
        with ws.db.read() as conn:
            candidates = [resolve(conn, PromptRef(name, version=v)) for v, _ in split]
            state = _state(conn, name, label)
            holder = (
                resolve(conn, PromptRef(name, version=state.version)) if state is not None else None
            )
        current = state.version if state is not None else None
        control = (
            current if current is not None and any(v == current for v, _ in split) else split[0][0]
        )
        if state == LabelState(control, split):
            with ws.db.read() as conn:
                return _last_move(conn, name, label, control)
        verdict: GateVerdict | None = None
        kind = SET
        new = [c for c in candidates if c.version != current]
        if protected and new:
            kind, verdict = _gated(
                gate,
                partial(_judge_each, candidates=new, label=label, current=holder),
                force=force,
                reason=reason,
                refusal=(
                    f"{label!r} is a protected label ([prompts] protected_labels): splitting "
                    f"{name}@{label} to {split_text(split)} needs a promotion gate (an eval "
                    f"suite) to pass for version(s) {', '.join(str(c.version) for c in new)}, "
                    "and none was given. To split it anyway, record an override: `loopml "
                    f"prompts split {name} {label} "
                    + " ".join(f"{v}={w:g}" for v, w in split)
                    + " --force --reason '...'`"
                ),
            )

        def tx(
            conn: Connection,
            kind: str = kind,
            verdict: GateVerdict | None = verdict,
            expected: LabelState | None = state,
            control: int = control,
        ) -> LabelMove | None:
            _lock(conn, name)
            for v, _ in split:
                resolve(conn, PromptRef(name, version=v))
            now = _state(conn, name, label)
            if now == LabelState(control, split):
                return _last_move(conn, name, label, control)
            if now != expected:
                return None  # the label moved meanwhile: decide again
            previous = now.version if now is not None else None
            return _record(conn, name, label, kind, control, previous, reason, verdict, split)

        move = ws.db.transact(tx)
        if move is None:
            continue
        if move.kind == BLOCKED:
            assert verdict is not None
            raise LabelBlocked(
                f"The promotion gate refused the split {split_text(split)} of {name}@{label}: "
                f"{verdict.summary or 'failed'}. {_unmoved(name, label, current)}; the verdict is "
                "in `loopml prompts history`.",
                verdict,
            )
        return move
    raise Conflict(f"{name}@{label} kept moving while the split was decided; try again.")


def _gated(
    gate: PromotionGate | Callable[..., GateVerdict] | None,
    judged: Callable[[Any], GateVerdict],
    *,
    force: bool,
    reason: str | None,
    refusal: str,
) -> tuple[str, GateVerdict]:
    """The kind and verdict of a move on a protected label: the gate's verdict
    (``judged(gate)``, when there is a gate) — a plain move when it passed, a refused one
    when not — or, forced, an override carrying the reason (and the verdict, if a gate ran).
    Neither a gate nor force raises :class:`LabelBlocked` with ``refusal``."""
    verdict = judged(gate) if gate is not None else None
    if force:
        return OVERRIDE, GateVerdict(
            passed=verdict.passed if verdict else False,
            summary=verdict.summary if verdict else "no gate ran",
            details=verdict.details if verdict else {},
            forced=True,
            reason=reason,
        )
    if verdict is None:
        raise LabelBlocked(refusal)
    return (SET if verdict.passed else BLOCKED), verdict


def _judge_each(
    gate: PromotionGate | Callable[..., GateVerdict],
    *,
    candidates: Sequence[PromptVersion],
    label: str,
    current: PromptVersion | None,
) -> GateVerdict:
    """The gate's joint verdict on every version a split adds."""
    return _joint_verdict(
        [(c.version, judge(gate, candidate=c, label=label, current=current)) for c in candidates]
    )


def _joint_verdict(verdicts: list[tuple[int, GateVerdict]]) -> GateVerdict:
    """One verdict for the versions a split adds: passed when every one passed."""
    if len(verdicts) == 1:
        return verdicts[0][1]
    return GateVerdict(
        passed=all(v.passed for _, v in verdicts),
        summary="; ".join(
            f"version {n}: {'PASS' if v.passed else 'FAIL'}"
            + (f" {v.summary}" if v.summary else "")
            for n, v in verdicts
        ),
        details={str(n): v.to_dict() for n, v in verdicts},
    )


def _last_move(conn: Connection, name: str, label: str, version: int) -> LabelMove:
    """The recorded move that put ``label`` at ``version``, where it still is: setting a
    label to the version it holds records nothing new."""
    row = conn.execute(
        select(llm_prompt_label_history)
        .where(
            llm_prompt_label_history.c.name == name,
            llm_prompt_label_history.c.label == label,
            llm_prompt_label_history.c.kind != BLOCKED,
        )
        .order_by(llm_prompt_label_history.c.id.desc())
        .limit(1)
    ).one()
    return _move(row)


def rollback(
    name: str, label: str, *, reason: str | None = None, workspace: WorkspaceLike = None
) -> LabelMove:
    """Move ``label`` back to the version that held it before the current one, recorded as
    a ``rollback`` move. Rollbacks undo in turn: 1 → 2 → 3, then rollback gives 2, and
    again gives 1. A rollback returns to a version that held the label, so it needs no
    gate, even on a protected label."""
    check_name(name)
    check_label(label)
    ws = resolve_workspace(workspace)

    def tx(conn: Connection) -> LabelMove:
        _lock(conn, name)
        state = _state(conn, name, label)
        if state is None:
            resolve(conn, PromptRef(name))  # PromptNotFound for an unknown prompt
            raise Conflict(f"{name}@{label} points at no version: nothing to roll back")
        current = state.version
        rows = conn.execute(
            select(
                llm_prompt_label_history.c.kind,
                llm_prompt_label_history.c.version,
                llm_prompt_label_history.c.split,
            )
            .where(
                llm_prompt_label_history.c.name == name,
                llm_prompt_label_history.c.label == label,
                llm_prompt_label_history.c.kind != BLOCKED,
            )
            .order_by(llm_prompt_label_history.c.id)
        ).all()
        held: list[LabelState] = []
        for kind, version, split in rows:
            if kind == ROLLBACK:
                if held:
                    held.pop()
            else:
                held.append(LabelState(int(version), load_split(split)))
        now = split_text(state.split) if state.split else str(current)
        if len(held) < 2:
            raise Conflict(
                f"{name}@{label} has no earlier version to roll back to (it holds {now}; "
                f"see `loopml prompts history {name} {label}`)"
            )
        target = held[-2]
        why = reason or (
            f"rollback from split {now}" if state.split else f"rollback from version {current}"
        )
        return _record(
            conn, name, label, ROLLBACK, target.version, current, why, None, target.split
        )

    return ws.db.transact(tx)


def label_history(
    name: str, label: str | None = None, *, workspace: WorkspaceLike = None
) -> list[LabelMove]:
    """Every move of ``name``'s labels (of ``label`` only, when given), oldest first,
    including moves a gate blocked (``kind == "blocked"``)."""
    check_name(name)
    if label is not None:
        check_label(label)
    ws = resolve_workspace(workspace)
    query = select(llm_prompt_label_history).where(llm_prompt_label_history.c.name == name)
    if label is not None:
        query = query.where(llm_prompt_label_history.c.label == label)
    with ws.db.read() as conn:
        rows = conn.execute(query.order_by(llm_prompt_label_history.c.id)).all()
        if not rows:
            resolve(conn, PromptRef(name))  # PromptNotFound for an unknown prompt
    return [_move(row) for row in rows]


def label_state(
    name: str, *, at: datetime | None = None, workspace: WorkspaceLike = None
) -> dict[str, int]:
    """Every label of ``name`` → its version (a split label's control), now or at ``at``
    (time travel); :func:`label_splits` adds the splits."""
    return {label: s.version for label, s in label_splits(name, at=at, workspace=workspace).items()}


def label_splits(
    name: str, *, at: datetime | None = None, workspace: WorkspaceLike = None
) -> dict[str, LabelState]:
    """Every label of ``name`` → where it points (its version, and its A/B split if it has
    one), now or at ``at`` (time travel)."""
    from loopml.llm.prompts.versions import _ms

    check_name(name)
    at_ms = _ms(at)
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        resolve(conn, PromptRef(name), at_ms)  # PromptNotFound (or "no version yet then")
        return states_at(conn, name, at_ms)
