"""The remote metric writer: ``log_metric`` appends to a queue, a thread sends batches.

The training thread never waits on the network: a point is appended to a
:class:`collections.deque` (no lock, no I/O). Every ``flush_interval`` seconds (or when
``flush_max_points`` are queued) the sender thread takes what is queued, cuts it into
batches of at most :data:`BATCH_POINTS` points of one run, gives each batch an id and sends
it over the keep-alive connection; a batch the server can't take now goes to the spool
(:mod:`loopml.client.spool`) and is replayed, in order, when the server is back. The server
stores a batch id with its points in one transaction, so a batch sent twice is stored once.

The same thread refreshes the heartbeat of this process's live runs (every
:data:`loopml.store.liveness.HEARTBEAT_S` seconds), so that the server does not take a run
whose process lives on another machine for dead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from loopml.client.errors import ServerUnreachable
from loopml.client.spool import Outbox
from loopml.client.transport import segment
from loopml.client.wire import num
from loopml.exceptions import LoopmlError
from loopml.store.liveness import HEARTBEAT_S
from loopml.tracking.writer import MetricWriter, Point

log = logging.getLogger(__name__)

#: The most points one request carries.
BATCH_POINTS = 10_000


def encode_points(points: list[Point]) -> list[list[Any]]:
    """``[key, value, step, timestamp_ms]`` per point (its run is in the URL)."""
    return [[key, num(value), step, ts] for _run, key, value, step, ts in points]


class RemoteMetricWriter(MetricWriter):
    """A :class:`~loopml.tracking.writer.MetricWriter` whose store is a loopml server."""

    def __init__(
        self,
        outbox: Outbox,
        interval: float = 1.0,
        max_points: int = 50_000,
        heartbeat: Callable[[], None] | None = None,
        heartbeat_interval: float = HEARTBEAT_S,
    ) -> None:
        self.outbox = outbox
        self.interval = interval
        self.max_points = max_points
        self.heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval
        self.rejected = 0
        self.last_error: BaseException | None = None
        self._points: deque[Point] = deque()
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        outbox.on_spooled = self._wake.set

    # The training thread's side: an append, nothing else on the common path.

    def add(self, point: Point) -> None:
        points = self._points
        points.append(point)
        if self._thread is None:
            self._start()
        # Event.set takes a lock: only when the sender is not woken already.
        if len(points) >= self.max_points and not self._wake.is_set():
            self._wake.set()

    def extend(self, points: Iterable[Point]) -> None:
        self._points.extend(points)
        if self._thread is None:
            self._start()
        if len(self._points) >= self.max_points and not self._wake.is_set():
            self._wake.set()

    def pending(self) -> int:
        return len(self._points)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-metric-sender", daemon=True
                )
                self._thread.start()

    # The sender thread's side; its loop is MetricWriter's. A round sends at every wake-up
    # (a heartbeat's too), and none once close() has stopped the thread: close sends the rest.
    _flush_when_stopped = False
    _flush_only_when_due = False

    def _background_flush(self) -> None:
        try:
            self._drain()
            if self.outbox.backlog:
                self.outbox.replay()
        except Exception as exc:  # kept; the next round tries again
            self.last_error = exc
            log.warning("loopml: sending metrics failed, will retry: %s", exc)

    def _drain(self) -> int:
        """Send (or spool) everything queued; → how many points."""
        with self._flush_lock:
            queue = self._points
            taken = [queue.popleft() for _ in range(len(queue))]
            if not taken:
                return 0
            by_run: dict[str, list[Point]] = {}
            for point in taken:
                by_run.setdefault(point[0], []).append(point)
            for run_id, points in by_run.items():
                for start in range(0, len(points), BATCH_POINTS):
                    chunk = points[start : start + BATCH_POINTS]
                    entry = {
                        "method": "POST",
                        "path": f"/runs/{segment(run_id)}/batches",
                        "body": {"batch_id": uuid.uuid4().hex, "points": encode_points(chunk)},
                    }
                    try:
                        self.outbox.send(entry)
                    except LoopmlError as exc:  # refused for good (say, the run is gone)
                        self.rejected += len(chunk)
                        self.last_error = exc
                        log.warning(
                            "loopml: the server refused %d metric point(s) of run %s: %s",
                            len(chunk),
                            run_id,
                            exc,
                        )
            return len(taken)

    def flush(self) -> int:
        """Send everything logged so far, and what the spool holds if the server is back;
        → the number of points taken from the queue. Points the server can't take now are
        safe in the spool: this never raises for an unreachable server."""
        count = self._drain()
        if self.outbox.backlog:
            with contextlib.suppress(ServerUnreachable):
                self.outbox.replay()
        return count

    def close(self) -> None:
        """Stop the thread, then send what is queued (or spool it)."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()
