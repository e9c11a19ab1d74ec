"""The buffered metric writer: ``log_metric`` appends to memory, a thread writes batches.

A point is durable after the next flush: every ``flush_interval`` seconds, when the buffer
holds ``flush_max_points``, on ``end_run``, at interpreter exit, on an exception leaving a run
and on SIGTERM. A SIGKILL loses at most the points of one flush interval.

A point the store can't hold (a step or timestamp out of range that reached the writer without
going through ``log_metric``'s checks, or one the database refuses) is rejected on its own:
the points around it are written, a warning is logged, and the run's tag
``loopml.rejected_metrics`` counts the rejected points (``loopml.rejected_metrics.last`` says
why the last one was refused). Only an unreachable store keeps the whole batch buffered.

The same thread calls a heartbeat (every :data:`loopml.store.liveness.HEARTBEAT_S` seconds) so
that a run whose process died shows as KILLED (see :mod:`loopml.store.liveness`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, select
from sqlalchemy.exc import DataError, IntegrityError

from loopml.store.db import Database, upsert
from loopml.store.liveness import HEARTBEAT_S
from loopml.tracking.keys import STEP_MAX, STEP_MIN, TIMESTAMP_MAX_MS, TIMESTAMP_MIN_MS
from loopml.tracking.tables import latest_metrics, metrics, tags

log = logging.getLogger(__name__)

Point = tuple[str, str, float | None, int, int]  # run_id, key, value, step, timestamp_ms

REJECTED_TAG = "loopml.rejected_metrics"
#: Errors that belong to the points of a batch, not to the store: the batch is split to find
#: the point(s) at fault. Anything else (the store is down, locked, gone) keeps every point.
_POINT_ERRORS = (OverflowError, ValueError, TypeError, DataError, IntegrityError)


def point_problem(point: Point) -> str | None:
    """Why the store can't hold ``point``, or None (the checks ``log_metric`` makes)."""
    _run_id, _key, value, step, ts = point
    if type(step) is not int or not STEP_MIN <= step <= STEP_MAX:
        return f"step {step!r} is not a 64-bit integer"
    if type(ts) is not int or not TIMESTAMP_MIN_MS <= ts < TIMESTAMP_MAX_MS:
        return f"timestamp {ts!r} ms is not between 1970 and 2262"
    if value is not None and type(value) is not float:
        return f"value {value!r} is not a float"
    return None


def _all_storable(points: list[Point]) -> bool:
    """``point_problem`` is None for every point: the fast path, inlined (~3% of a flush)."""
    for _run_id, _key, value, step, ts in points:
        if (
            type(step) is not int
            or type(ts) is not int
            or not STEP_MIN <= step <= STEP_MAX
            or not TIMESTAMP_MIN_MS <= ts < TIMESTAMP_MAX_MS
            or (value is not None and type(value) is not float)
        ):
            return False
    return True


def _describe(point: Point, reason: str) -> str:
    return f"{point[1]!r} at step {point[3]!r}: {reason}"


def write_points(conn: Connection, points: list[Point]) -> None:
    """Insert points and move each (run, key)'s latest value forward, in the caller's tx."""
    if not points:
        return
    # The hot path: hand the tuples to the driver's executemany as they are.
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {metrics.name} (run_id, key, value, step, timestamp) "
        f"VALUES ({', '.join([marker] * 5)})",
        points,
    )
    latest: dict[tuple[str, str], Point] = {}
    for point in points:
        ident = (point[0], point[1])
        seen = latest.get(ident)
        if seen is None or (point[3], point[4]) >= (seen[3], seen[4]):
            latest[ident] = point
    stmt = upsert(conn.dialect.name, latest_metrics)
    newer = (stmt.excluded.step > latest_metrics.c.step) | (
        (stmt.excluded.step == latest_metrics.c.step)
        & (stmt.excluded.timestamp >= latest_metrics.c.timestamp)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[latest_metrics.c.run_id, latest_metrics.c.key],
        set_={
            "value": stmt.excluded.value,
            "step": stmt.excluded.step,
            "timestamp": stmt.excluded.timestamp,
        },
        where=newer,
    )
    conn.execute(
        stmt,
        [
            {"run_id": r, "key": k, "value": v, "step": s, "timestamp": t}
            for r, k, v, s, t in latest.values()
        ],
    )


class MetricWriter:
    """Buffers metric points for one database and writes them in batches from a thread.

    ``heartbeat``, when given, is called from the same thread every ``heartbeat_interval``
    seconds (its errors are logged, never raised)."""

    def __init__(
        self,
        db: Database,
        interval: float = 1.0,
        max_points: int = 50_000,
        heartbeat: Callable[[], None] | None = None,
        heartbeat_interval: float = HEARTBEAT_S,
    ) -> None:
        self.db = db
        self.interval = interval
        self.max_points = max_points
        self.heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval
        #: Points refused so far (each also counted on its run's ``loopml.rejected_metrics``).
        self.rejected = 0
        self._buffer: list[Point] = []
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def add(self, point: Point) -> None:
        with self._buffer_lock:
            self._buffer.append(point)
            size = len(self._buffer)
        if self._thread is None:
            self._start()
        if size >= self.max_points:
            self._wake.set()

    def extend(self, points: Iterable[Point]) -> None:
        with self._buffer_lock:
            self._buffer.extend(points)
            size = len(self._buffer)
        if self._thread is None:
            self._start()
        if size >= self.max_points:
            self._wake.set()

    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        """Start the thread now (it starts on the first point otherwise): the heartbeat of
        a run that logs no metrics needs it."""
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._buffer_lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-metric-writer", daemon=True
                )
                self._thread.start()

    #: The thread flushes once more when :meth:`close` wakes it (False: it stops at once and
    #: leaves the last flush to ``close``).
    _flush_when_stopped = True
    #: The thread flushes only when woken or when ``interval`` has passed (False: at every
    #: wake-up, a heartbeat's included).
    _flush_only_when_due = True

    def _loop(self) -> None:
        """The thread: :meth:`_background_flush` every ``interval`` seconds or when woken,
        the heartbeat every ``heartbeat_interval`` seconds, until :meth:`close`."""
        now = time.monotonic()
        next_flush = now + self.interval
        next_beat = now + self.heartbeat_interval
        while not self._stopped.is_set():
            due = min(next_flush, next_beat) if self.heartbeat else next_flush
            woken = self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            now = time.monotonic()
            if self._stopped.is_set() and not self._flush_when_stopped:
                break
            if woken or now >= next_flush or not self._flush_only_when_due:
                next_flush = now + self.interval
                self._background_flush()
            if self.heartbeat is not None and now >= next_beat and not self._stopped.is_set():
                next_beat = now + self.heartbeat_interval
                try:
                    self.heartbeat()
                except Exception as exc:  # a busy or unreachable store: the next beat will do
                    log.debug("loopml: heartbeat failed: %s", exc)

    def _background_flush(self) -> None:
        """One flush of the thread's: an error is logged, never raised."""
        try:
            self.flush()
        except Exception as exc:  # kept for the next explicit flush to raise
            log.warning("loopml: metric flush failed, will retry: %s", exc)

    def flush(self) -> int:
        """Write everything buffered so far; returns the number of points written.

        Points logged before the call are durable when it returns, except those the store
        can't hold, which are rejected one by one (see the module's docstring). When the store
        itself fails, the unwritten points stay buffered (nothing is dropped) and the error is
        raised.
        """
        with self._flush_lock:
            with self._buffer_lock:
                points, self._buffer = self._buffer, []
            if not points:
                return 0
            rejected: list[tuple[Point, str]] = []
            good = points
            if not _all_storable(points):
                good = []
                for point in points:
                    problem = point_problem(point)
                    if problem is None:
                        good.append(point)
                    else:
                        rejected.append((point, problem))
            try:
                written = self._write(good, rejected)
            finally:
                if rejected:
                    self._reject(rejected)
            self.last_error = None
            return written

    def _write(self, points: list[Point], rejected: list[tuple[Point, str]]) -> int:
        """Write ``points`` in one transaction; if the database refuses one, split the batch
        in halves until the point(s) at fault are alone, and add those to ``rejected``."""
        written = 0
        batches = [points] if points else []
        while batches:
            batch = batches.pop()
            try:
                self.db.transact(functools.partial(write_points, points=batch))
            except _POINT_ERRORS as exc:
                if len(batch) == 1:
                    reason = (str(exc).strip().splitlines() or [repr(exc)])[0]
                    rejected.append((batch[0], reason))
                else:
                    middle = len(batch) // 2
                    batches += [batch[middle:], batch[:middle]]  # the first half goes next
                continue
            except BaseException as exc:
                # The store, not a point: keep what is unwritten for the next flush.
                unwritten = [p for b in (*batches, batch) for p in b]
                with self._buffer_lock:
                    self._buffer[:0] = unwritten
                self.last_error = exc
                raise
            written += len(batch)
        return written

    def _reject(self, rejected: list[tuple[Point, str]]) -> None:
        """Warn about refused points and count them on their runs' tags."""
        self.rejected += len(rejected)
        shown = "; ".join(_describe(p, why) for p, why in rejected[:3])
        more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
        log.warning(
            "loopml: %d metric point(s) rejected, the others were kept: %s%s",
            len(rejected),
            shown,
            more,
        )
        counts = Counter(p[0] for p, _ in rejected)
        last = {p[0]: _describe(p, why)[:1000] for p, why in rejected}
        for run_id, count in counts.items():

            def tx(conn: Connection, run_id: str = run_id, count: int = count) -> None:
                before = conn.execute(
                    select(tags.c.value).where(tags.c.run_id == run_id, tags.c.key == REJECTED_TAG)
                ).scalar()
                total = count + (int(before) if before and before.isdigit() else 0)
                stmt = upsert(conn.dialect.name, tags)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[tags.c.run_id, tags.c.key], set_={"value": stmt.excluded.value}
                )
                conn.execute(
                    stmt,
                    [
                        {"run_id": run_id, "key": REJECTED_TAG, "value": str(total)},
                        {"run_id": run_id, "key": f"{REJECTED_TAG}.last", "value": last[run_id]},
                    ],
                )

            try:
                self.db.transact(tx)
            except Exception as exc:  # e.g. a point for a run that does not exist
                log.warning("loopml: could not record the rejection on run %s: %s", run_id, exc)

    def close(self) -> None:
        """Flush and stop the thread."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()
