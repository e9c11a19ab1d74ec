"""One process's connection to one loopml server: the transport, the spool and the outbox,
shared by every remote workspace of that URL in the process."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from loopml.client.blobs import RemoteBlobs
from loopml.client.errors import TOKEN_ENV, ServerUnreachable
from loopml.client.spool import Outbox, Spool, spool_folder
from loopml.client.transport import Transport
from loopml.store.blobs import hash_bytes, hash_file

log = logging.getLogger(__name__)

#: How long the exit hook keeps trying to send what is spooled before leaving it on disk.
EXIT_GRACE_S = 5.0


class SpoolingBlobs(RemoteBlobs):
    """The server's blob store for writes that must not fail while the server is away:
    uploads go through the outbox (spooled when the server can't be reached)."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox.transport)
        self.outbox = outbox

    def put_file(self, path: str | os.PathLike[str]) -> str:
        digest = hash_file(path)
        self.outbox.send_blob(path, digest, os.path.getsize(path))
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        self.outbox.send_blob(data, digest, len(data))
        return digest


class Session:
    """What a remote workspace talks to the server with (see the module's docstring)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.transport = Transport(self.url, token)
        self.spool = Spool(spool_folder(self.url))
        self.outbox = Outbox(self.transport, self.spool)
        self.blobs = RemoteBlobs(self.transport)
        self.spooling_blobs = SpoolingBlobs(self.outbox)
        self._replayer: threading.Thread | None = None
        if self.outbox.backlog:
            # A process before this one left requests behind: send them now, in order.
            self._replayer = threading.Thread(
                target=self._replay_quietly, name="loopml-spool-replay", daemon=True
            )
            self._replayer.start()

    def __repr__(self) -> str:
        return f"Session({self.url!r}, spool={str(self.spool.folder)!r})"

    def _replay_quietly(self) -> None:
        try:
            self.outbox.replay()
        except Exception as exc:
            log.warning("loopml: replaying the spool %s failed: %s", self.spool.folder, exc)

    def experiment_id(self, name: str) -> int:
        """The id of experiment ``name`` on the server."""
        answer = self.transport.call("GET", "/experiment", params={"name": name})
        return int(answer["id"])

    def drain(self, grace: float = EXIT_GRACE_S) -> bool:
        """Send what is spooled, trying for up to ``grace`` seconds; → True when nothing is
        left (what is left stays in the spool for the next process)."""
        deadline = time.monotonic() + grace
        while True:
            try:
                if self.outbox.replay():
                    return True
            except ServerUnreachable:
                pass
            except Exception as exc:
                log.warning("loopml: could not send the spool %s: %s", self.spool.folder, exc)
                return False
            if time.monotonic() >= deadline:
                log.warning(
                    "loopml: the server %s is not reachable; %d request(s) stay in %s and are "
                    "sent by the next process that uses this server",
                    self.url,
                    len(self.spool.pending()),
                    self.spool.folder,
                )
                return False
            time.sleep(0.2)


_sessions: dict[tuple[str, str | None], Session] = {}
_lock = threading.Lock()


def session_for(url: str, token: str | None = None) -> Session:
    """The process's session with the server at ``url`` (made on first use)."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    key = (url.rstrip("/"), token)
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _sessions[key] = Session(url, token)
            if len(_sessions) == 1:
                atexit.register(_drain_all)
    return found


def _drain_all() -> None:
    for session in list(_sessions.values()):
        if session.outbox.backlog:
            session.drain()


def forget_sessions() -> None:
    """Forget every session, so the next workspace makes a new one (tests; a forked
    child). Workspaces still open keep theirs."""
    with _lock:
        _sessions.clear()


__all__ = ["Session", "SpoolingBlobs", "forget_sessions", "session_for"]
