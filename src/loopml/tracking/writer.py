"""The buffered metric writer: ``log_metric`` appends to memory, a thread writes batches.

A point is durable after the next flush: every ``flush_interval`` seconds, when the buffer
holds ``flush_max_points``, on ``end_run``, at interpreter exit, on an exception leaving a run
and on SIGTERM. A SIGKILL loses at most the points of one flush interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from sqlalchemy import Connection

from loopml.store.db import Database, upsert
from loopml.store.tables import latest_metrics, metrics

log = logging.getLogger(__name__)

Point = tuple[str, str, float | None, int, int]  # run_id, key, value, step, timestamp_ms


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
    """Buffers metric points for one database and writes them in batches from a thread."""

    def __init__(self, db: Database, interval: float = 1.0, max_points: int = 50_000) -> None:
        self.db = db
        self.interval = interval
        self.max_points = max_points
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

    def _start(self) -> None:
        with self._buffer_lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-metric-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # kept for the next explicit flush to raise
                log.warning("loopml: metric flush failed, will retry: %s", exc)

    def flush(self) -> int:
        """Write everything buffered so far; returns the number of points written.

        Points logged before the call are durable when it returns. On failure the points stay
        buffered (nothing is dropped) and the error is raised.
        """
        with self._flush_lock:
            with self._buffer_lock:
                points, self._buffer = self._buffer, []
            if not points:
                return 0
            try:
                self.db.transact(lambda conn: write_points(conn, points))
            except BaseException as exc:
                with self._buffer_lock:
                    self._buffer[:0] = points
                self.last_error = exc
                raise
            self.last_error = None
            return len(points)

    def close(self) -> None:
        """Flush and stop the thread."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()
