"""The scheduler: turns cron slots, new data versions and events into pipeline runs.

Every tick, for each trigger of each pipeline it watches, it *claims* the slots that are due
by inserting a QUEUED pipeline run whose ``(pipeline, trigger, trigger_slot)`` is unique, in
one transaction with the trigger's cursor (locked with ``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes writers). So two schedulers never start
the same triggered run twice, and a claim is never lost: a scheduler that dies leaves its
claim QUEUED (or its run RUNNING with a dead owner), and the next scheduler to start takes
it over and resumes it, reusing every task that had completed.

    loopml scheduler run examples/training_pipeline.py:train --once
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from loopml.events import read as read_events
from loopml.pipelines import records
from loopml.pipelines.exceptions import PipelineDefinitionError, RunNotResumable
from loopml.pipelines.records import FAILED, KILLED, QUEUED, RUNNING
from loopml.pipelines.tables import pipeline_runs, trigger_state
from loopml.pipelines.triggers import NewData, OnEvent, Schedule, Trigger
from loopml.store.db import upsert

if TYPE_CHECKING:
    from loopml.pipelines.executors import Executor
    from loopml.pipelines.pipeline import Pipeline
    from loopml.pipelines.runner import PipelineRun
    from loopml.workspace import Workspace

#: A triggered run killed this many times is left for a person to look at.
MAX_RECOVERIES = 3
#: The shortest time between two checks of the triggers: each check reads the store and
#: hashes watched data, so a shorter interval only burns CPU.
MIN_INTERVAL_S = 1.0


@dataclass
class Claim:
    """A run the scheduler claimed (QUEUED) or took over, to execute."""

    run_id: str
    pipeline: Pipeline
    trigger: str
    slot: str | None


@dataclass
class SchedulerReport:
    """What a scheduler did: runs claimed and how the runs it executed ended."""

    ticks: int = 0
    claimed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)  # run id → status


class Scheduler:
    """Watches ``pipelines``' triggers in ``workspace`` and runs what they start.

    ``clock`` returns the current UTC time (tests move it); ``log`` receives one line per
    thing that happens.
    """

    def __init__(
        self,
        pipelines: Iterable[Pipeline],
        workspace: Workspace,
        *,
        executor: str | Executor = "threads",
        max_workers: int | None = None,
        max_concurrent_runs: int = 2,
        clock: Callable[[], datetime] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.pipelines = {p.name: p for p in pipelines}
        if not self.pipelines:
            raise PipelineDefinitionError("The scheduler needs at least one pipeline to watch.")
        self.ws = workspace
        self.executor = executor
        self.max_workers = max_workers
        self.max_concurrent_runs = max(1, max_concurrent_runs)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.log = log or (lambda line: None)
        self.owner = records.owner_token()
        self.report = SchedulerReport()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.max_concurrent_runs)
        for pipe in self.pipelines.values():
            if not pipe.triggers:
                self.log(f"note: pipeline {pipe.name} declares no triggers; nothing starts it")
            for trig in pipe.triggers:
                self._params(pipe, trig, self.clock())  # fail now on params it can't bind

    def check_paths(self) -> None:
        """Raise :class:`PipelineDefinitionError` naming every ``on_new_data`` path that is
        not there: watching it would silently never start anything."""
        missing = [
            f"{trig.path} (pipeline {pipe.name}, looked for {trig.resolve(self.ws.root)})"
            for pipe in self.pipelines.values()
            for trig in pipe.triggers
            if isinstance(trig, NewData) and not trig.exists(self.ws.root)
        ]
        if missing:
            raise PipelineDefinitionError(
                f"on_new_data watches {'a path' if len(missing) == 1 else 'paths'} that "
                f"{'is' if len(missing) == 1 else 'are'} not there: {'; '.join(missing)}. "
                "Create it (a relative path is relative to the workspace folder) or fix the "
                "trigger."
            )

    # -- claiming --------------------------------------------------------------------------

    def tick(self) -> list[Claim]:
        """Claim every due slot of every trigger once; returns the new claims."""
        now = self.clock()
        claims: list[Claim] = []
        for pipe in self.pipelines.values():
            for trig in pipe.triggers:
                claims.extend(self._claim(pipe, trig, now))
        self.report.ticks += 1
        self._watch_canaries(now)
        for claim in claims:
            self.report.claimed.append(claim.run_id)
            self.log(
                f"claimed run {claim.run_id[:8]} of {claim.pipeline.name} "
                f"({claim.trigger}{' @ ' + _short(claim.slot) if claim.slot else ''})"
            )
        return claims

    def _watch_canaries(self, now: datetime) -> None:
        """Advance, abort or complete every running canary (``loopml deploy watch`` once):
        the scheduler is what keeps the loop turning without a person."""
        from loopml.serving.controller import watch_all

        for name, decision in watch_all(self.ws, now).items():
            if decision.action != "wait":
                self.log(f"canary {name}: {decision.line()}")

    def _claim(self, pipe: Pipeline, trig: Trigger, now: datetime) -> list[Claim]:
        if isinstance(trig, Schedule):
            return self.ws.db.transact(lambda conn: self._claim_schedule(conn, pipe, trig, now))
        if isinstance(trig, NewData):
            version = trig.version(self.ws.root)  # hashed outside the transaction
            if version is None:
                return []
            return self.ws.db.transact(
                lambda conn: self._claim_data(conn, pipe, trig, version, now)
            )
        if isinstance(trig, OnEvent):
            return self.ws.db.transact(lambda conn: self._claim_events(conn, pipe, trig, now))
        raise PipelineDefinitionError(f"Unknown trigger {trig!r}")

    def _claim_schedule(
        self, conn: Connection, pipe: Pipeline, trig: Schedule, now: datetime
    ) -> list[Claim]:
        cursor = _lock_cursor(conn, pipe.name, trig.id)
        _set_cursor(conn, pipe.name, trig.id, now.isoformat())
        if cursor is None:  # first sight: schedules start from now, not from the epoch
            return []
        slots = trig.slots_between(datetime.fromisoformat(cursor), now)
        wanted = [
            (
                slot.isoformat(),
                {"cron": trig.cron, "slot": slot.isoformat()},
                self._params(pipe, trig, slot),
            )
            for slot in slots
        ]
        return self._insert_claims(conn, pipe, trig, wanted)

    def _claim_data(
        self, conn: Connection, pipe: Pipeline, trig: NewData, version: str, now: datetime
    ) -> list[Claim]:
        seen = _lock_cursor(conn, pipe.name, trig.id)
        if seen == version:
            return []
        _set_cursor(conn, pipe.name, trig.id, version)
        if seen is None:  # first sight: like a schedule, start from the data as it is now
            return []
        detail = {"path": trig.path, "version": version, "previous": seen}
        params = self._params(pipe, trig, now)
        return self._insert_claims(conn, pipe, trig, [(version, detail, params)])

    def _claim_events(
        self, conn: Connection, pipe: Pipeline, trig: OnEvent, now: datetime
    ) -> list[Claim]:
        cursor = _lock_cursor(conn, pipe.name, trig.id)
        last = int(cursor) if cursor else 0
        found = read_events(conn, last, kinds=trig.event, subject=trig.subject, limit=10_000)
        if not found:
            return []
        _set_cursor(conn, pipe.name, trig.id, str(found[-1].id))
        params = self._params(pipe, trig, now)
        groups = [found] if trig.coalesce else [[event] for event in found]
        wanted = []
        for group in groups:
            newest = group[-1]
            detail = {
                "event": trig.event,
                "subject": newest.subject,
                "event_ids": [event.id for event in group],
                "payload": newest.payload,
            }
            wanted.append((str(newest.id), detail, params))
        return self._insert_claims(conn, pipe, trig, wanted)

    def _insert_claims(
        self,
        conn: Connection,
        pipe: Pipeline,
        trig: Trigger,
        wanted: Sequence[tuple[str, dict[str, Any], dict[str, Any]]],
    ) -> list[Claim]:
        claims = []
        for slot, detail, params in wanted:
            run_id = uuid.uuid4().hex
            stmt = (
                upsert(conn.dialect.name, pipeline_runs)
                .values(
                    id=run_id,
                    pipeline=pipe.name,
                    ref=pipe.ref,
                    status=QUEUED,
                    params=records.params_json(params),
                    partition=pipe.partition_of(params),
                    trigger=trig.id,
                    trigger_slot=slot,
                    trigger_detail=json.dumps(detail, default=str),
                    owner=self.owner,
                    attempt=1,
                    created_at=records.now_ms(),
                    heartbeat_at=records.now_ms(),
                )
                .on_conflict_do_nothing()
            )
            if conn.execute(stmt).rowcount:
                claims.append(Claim(run_id, pipe, trig.id, slot))
        return claims

    def _params(self, pipe: Pipeline, trig: Trigger, moment: datetime) -> dict[str, Any]:
        params = dict(getattr(trig, "params", {}) or {})
        if pipe.partition and pipe.partition not in params and isinstance(trig, Schedule):
            local = moment.astimezone(trig.zone)
            params.update(pipe.coerce({pipe.partition: local.strftime(pipe.partition_format)}))
        try:
            return pipe.bind(params)
        except PipelineDefinitionError as exc:
            raise PipelineDefinitionError(
                f"Trigger {trig.id} of pipeline {pipe.name!r} can't start it: {exc} Give the "
                "value in the trigger (params={...}) or as a default in the function."
            ) from exc

    # -- recovering ------------------------------------------------------------------------

    def recover(self) -> list[Claim]:
        """Take over triggered runs of these pipelines that a dead scheduler left behind:
        QUEUED claims whose owner is gone, and runs killed mid-way (resumed)."""
        names = list(self.pipelines)
        with self.ws.db.read() as conn:
            running = (
                conn.execute(
                    select(pipeline_runs.c.id).where(
                        pipeline_runs.c.pipeline.in_(names),
                        pipeline_runs.c.status == RUNNING,
                        pipeline_runs.c.trigger.not_in(records.UNTRIGGERED),
                    )
                )
                .scalars()
                .all()
            )
        if running:
            records.reap_stale(self.ws.db, list(running))
        with self.ws.db.read() as conn:
            rows = conn.execute(
                select(
                    pipeline_runs.c.id,
                    pipeline_runs.c.pipeline,
                    pipeline_runs.c.status,
                    pipeline_runs.c.owner,
                    pipeline_runs.c.heartbeat_at,
                    pipeline_runs.c.trigger,
                    pipeline_runs.c.trigger_slot,
                    pipeline_runs.c.attempt,
                ).where(
                    pipeline_runs.c.pipeline.in_(names),
                    pipeline_runs.c.status.in_((QUEUED, KILLED)),
                    pipeline_runs.c.trigger.not_in(records.UNTRIGGERED),
                )
            ).all()
        taken: list[Claim] = []
        now = records.now_ms()
        for row in rows:
            if row.id in self._threads:
                continue
            if row.owner != self.owner and records.owner_alive(row.owner, row.heartbeat_at, now):
                continue  # its scheduler is alive and will run it
            if row.status == KILLED and row.attempt >= MAX_RECOVERIES:
                continue
            if self._take_over(row.id, row.status, row.owner):
                taken.append(
                    Claim(row.id, self.pipelines[row.pipeline], row.trigger, row.trigger_slot)
                )
        for claim in taken:
            self.report.recovered.append(claim.run_id)
            self.log(f"took over run {claim.run_id[:8]} of {claim.pipeline.name} ({claim.trigger})")
        return taken

    def _take_over(self, run_id: str, status: str, owner: str | None) -> bool:
        def tx(conn: Connection) -> bool:
            return bool(
                conn.execute(
                    update(pipeline_runs)
                    .where(
                        pipeline_runs.c.id == run_id,
                        pipeline_runs.c.status == status,
                        pipeline_runs.c.owner == owner
                        if owner is not None
                        else pipeline_runs.c.owner.is_(None),
                    )
                    .values(owner=self.owner, heartbeat_at=records.now_ms())
                ).rowcount
            )

        return self.ws.db.transact(tx)

    # -- executing -------------------------------------------------------------------------

    def execute(self, claims: Iterable[Claim], wait: bool = False) -> None:
        """Run claimed runs in background threads (at most ``max_concurrent_runs`` at once)."""
        for claim in claims:
            thread = threading.Thread(
                target=self._execute_one, args=(claim,), name="loopml-scheduled-run", daemon=True
            )
            with self._lock:
                self._threads[claim.run_id] = thread
            thread.start()
        if wait:
            self.wait()

    def _execute_one(self, claim: Claim) -> None:
        from loopml.pipelines.runner import run_queued

        with self._slots:
            started = time.monotonic()
            self.log(f"starting run {claim.run_id[:8]} of {claim.pipeline.name}")
            status = FAILED
            try:
                result: PipelineRun = run_queued(
                    self.ws,
                    claim.run_id,
                    claim.pipeline,
                    executor=self.executor,
                    max_workers=self.max_workers,
                )
                status = result.status
                if not result.ok and result.error:
                    detail = f": {result.error.splitlines()[0]}"
                else:
                    detail = ""
            except RunNotResumable as exc:
                status, detail = "SKIPPED", f": {exc}"
            except Exception as exc:  # a broken pipeline must not stop the scheduler
                detail = f": {type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._threads.pop(claim.run_id, None)
            self.report.finished[claim.run_id] = status
            took = time.monotonic() - started
            self.log(
                f"run {claim.run_id[:8]} of {claim.pipeline.name} {status} in {took:.1f}s{detail}"
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the runs in progress; False if some are still running at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads.values())
            if not threads:
                return True
            for thread in threads:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._threads

    # -- the loop --------------------------------------------------------------------------

    def run(
        self, *, once: bool = False, duration: float | None = None, interval: float = 10.0
    ) -> SchedulerReport:
        """Tick every ``interval`` seconds, for ``duration`` seconds (forever when None), or
        once with ``once``; then wait for the runs it started.

        Raises :class:`PipelineDefinitionError` for an ``interval`` under
        :data:`MIN_INTERVAL_S` and for an ``on_new_data`` path that is not there.
        """
        if not once and not interval >= MIN_INTERVAL_S:
            raise PipelineDefinitionError(
                f"The scheduler's interval must be at least {MIN_INTERVAL_S:g}s, got "
                f"{interval:g}s: a shorter one only burns CPU (use e.g. 10s, 1m)."
            )
        self.check_paths()
        deadline = None if duration is None else time.monotonic() + duration
        self.log(
            f"scheduler {self.owner} watching {len(self.pipelines)} pipeline(s): "
            + ", ".join(
                f"{p.name} [{', '.join(t.id for t in p.triggers) or 'no triggers'}]"
                for p in self.pipelines.values()
            )
        )
        while True:
            started = time.monotonic()
            self.execute(self.recover())
            self.execute(self.tick())
            if once:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            pause = interval - (time.monotonic() - started)
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
            if pause > 0:
                time.sleep(pause)
        self.wait()
        return self.report


def _lock_cursor(conn: Connection, pipeline: str, trigger: str) -> str | None:
    """The trigger's cursor, its row locked for this transaction (created if missing)."""
    conn.execute(
        upsert(conn.dialect.name, trigger_state)
        .values(pipeline=pipeline, trigger=trigger, value=None, updated_at=records.now_ms())
        .on_conflict_do_nothing()
    )
    value = conn.execute(
        select(trigger_state.c.value)
        .where(trigger_state.c.pipeline == pipeline, trigger_state.c.trigger == trigger)
        .with_for_update()
    ).scalar()
    return None if value is None else str(value)


def _set_cursor(conn: Connection, pipeline: str, trigger: str, value: str) -> None:
    conn.execute(
        update(trigger_state)
        .where(trigger_state.c.pipeline == pipeline, trigger_state.c.trigger == trigger)
        .values(value=value, updated_at=records.now_ms())
    )


def _short(slot: str) -> str:
    return slot[:16] if len(slot) == 64 else slot
