"""Forwarding the OTLP exports the gateway receives (``POST /v1/traces``) to its own
collector (``[gateway] otlp_endpoint``), so that the collector sees whole traces: an
application's spans (its retrieval, say) beside the gateway's generation spans, which the
gateway exports there itself.

Each export request is sent on as it came (its encoding and compression kept) by one
background thread, off the request path; at most ``MAX_PENDING`` wait, and an export that
finds the queue full, or that the collector refuses, is counted and logged (the spans are
stored in the workspace either way)::

    forwarder = OtlpForwarder("http://collector:4318/v1/traces")
    forwarder.forward(body, "application/x-protobuf", "gzip")
    forwarder.flush(); forwarder.close()
"""

from __future__ import annotations

import logging
import queue
import threading
import time

log = logging.getLogger("loopml.llm")

#: Export requests waiting to be forwarded before new ones are dropped (and counted).
MAX_PENDING = 256
#: Seconds one forward may take.
TIMEOUT_S = 10.0
#: Marks a forwarded export: a gateway receiving one stores it but doesn't forward it again
#: (an otlp_endpoint pointing at a gateway, or at itself, can't loop).
FORWARDED_HEADER = "x-loopml-forwarded"


class OtlpForwarder:
    """Sends OTLP/HTTP export request bodies on to ``endpoint`` from a background thread."""

    def __init__(self, endpoint: str, *, max_pending: int = MAX_PENDING) -> None:
        self.endpoint = endpoint
        self.forwarded = 0
        self.dropped = 0  # the queue was full
        self.failed = 0  # the collector could not be reached or refused it
        self._queue: queue.Queue[tuple[bytes, str, str] | None] = queue.Queue(max_pending)
        self._idle = threading.Condition()
        self._busy = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="loopml-otlp-forward", daemon=True)
        self._thread.start()

    def forward(self, body: bytes, content_type: str, content_encoding: str = "") -> bool:
        """Queue ``body`` (an export request as received) for the collector; False when it
        was dropped (the queue is full or the forwarder closed)."""
        if self._closed:
            return False
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait((body, content_type, content_encoding))
        except queue.Full:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
            self.dropped += 1
            if _worth_saying(self.dropped):
                log.warning(
                    "OTLP forwarding to %s is behind: %d export(s) dropped so far (they are "
                    "stored in the workspace)",
                    self.endpoint,
                    self.dropped,
                )
            return False
        return True

    def flush(self, timeout: float = TIMEOUT_S) -> bool:
        """Wait until what is queued has been sent (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = TIMEOUT_S) -> None:
        """Send what is queued (up to ``timeout`` seconds) and stop; idempotent."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # still behind after the timeout: the daemon thread goes with us
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=TIMEOUT_S) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                body, content_type, content_encoding = item
                headers = {"Content-Type": content_type, FORWARDED_HEADER: "1"}
                if content_encoding and content_encoding != "identity":
                    headers["Content-Encoding"] = content_encoding
                try:
                    reply = client.post(self.endpoint, content=body, headers=headers)
                    if reply.status_code >= 300:
                        raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:200]}")
                    self.forwarded += 1
                except Exception as exc:
                    self.failed += 1
                    if _worth_saying(self.failed):
                        log.warning(
                            "Could not forward an OTLP export to %s (%d so far; the spans are "
                            "stored in the workspace): %s",
                            self.endpoint,
                            self.failed,
                            exc,
                        )
                finally:
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()


def _worth_saying(count: int) -> bool:
    """Log the 1st, 10th, 100th and every 1,000th of a repeated problem, not each one."""
    return count in (1, 10, 100) or count % 1000 == 0
