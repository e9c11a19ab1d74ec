"""The spool: what the client could not send yet, on disk, sent in order when the server is
back. Nothing logged is lost when the server is down, restarting or unreachable.

Every write the client makes (create a run, a batch of metric points, params, tags, an
artifact's bytes and its listing, the end of a run) is a request with an identity: run ids
are made by the client, batches carry a batch id the server stores with their points in one
transaction, params and tags are idempotent. So a request can be sent again safely
(at-least-once on the wire, exactly once in the store).

:class:`Outbox` sends each request at once; when the server can't be reached it appends the
request to the spool instead, and from then on every later request goes behind it, so the
server sees them in the order they were made. A background thread (the metric sender's)
replays the spool, oldest first, until it is empty.

Where it lives: ``$LOOPML_SPOOL_DIR`` if set, else ``~/.cache/loopml/spool`` (or
``$XDG_CACHE_HOME/loopml/spool``), then one folder per server (``host_port``). Each request
is one file, ``<time-ns>-<pid>-<seq>.json``, written atomically (temporary file, fsync,
rename); an artifact's bytes are copied beside it under ``blobs/`` until sent. At exit a
process keeps trying for up to 5 seconds (:data:`loopml.client.session.EXIT_GRACE_S`);
requests still there then (the server never came back) are sent by the next process that
talks to the same server, at its start. A request the server refuses for good (a param
changed, a run deleted) is moved to ``rejected/`` with the server's answer, and logged.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from loopml.client.errors import ServerUnreachable, Unauthorized
from loopml.client.transport import Transport
from loopml.exceptions import LoopmlError

log = logging.getLogger(__name__)

SPOOL_ENV = "LOOPML_SPOOL_DIR"


def spool_root() -> Path:
    """The folder every server's spool lives under (see the module's docstring)."""
    configured = os.environ.get(SPOOL_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "loopml" / "spool"


def spool_folder(url: str) -> Path:
    """The spool of the server at ``url``: ``<root>/<host>_<port>[_path]``."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    name = f"{parts.hostname or 'server'}_{port}"
    path = parts.path.strip("/").replace("/", "_")
    return spool_root() / (f"{name}_{path}" if path else name)


class Spool:
    """Requests not yet acknowledged by the server, one file each, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seq = itertools.count()

    def _ensure(self) -> None:
        (self.folder / "blobs").mkdir(parents=True, exist_ok=True)

    def append(self, entry: dict[str, Any]) -> Path:
        """Write ``entry`` as the newest file, atomically and durably."""
        self._ensure()
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):09d}.json"
        target = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(entry))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    def keep_blob(self, source: str | os.PathLike[str], digest: str) -> str:
        """Copy a file's bytes into the spool (they are sent later); → its name there."""
        self._ensure()
        target = self.folder / "blobs" / digest
        if not target.exists():
            tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        return digest

    def keep_bytes(self, data: bytes, digest: str) -> str:
        """Keep ``data`` in the spool under its digest; → its name there."""
        self._ensure()
        target = self.folder / "blobs" / digest
        if not target.exists():
            tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return digest

    def blob_path(self, name: str) -> Path:
        return self.folder / "blobs" / name

    def pending(self) -> list[Path]:
        """The spooled requests, oldest first."""
        try:
            names = sorted(
                n for n in os.listdir(self.folder) if n.endswith(".json") and n[0] != "."
            )
        except FileNotFoundError:
            return []
        return [self.folder / n for n in names]

    def read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None  # another process sent it meanwhile
        except orjson.JSONDecodeError:
            log.warning("loopml: spooled request %s is unreadable; moved to rejected/", path)
            self.reject(path, "unreadable")
            return None
        return data if isinstance(data, dict) else None

    def done(self, path: Path, entry: dict[str, Any]) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        blob = entry.get("blob")
        if blob and not any(self._uses_blob(p, blob) for p in self.pending()):
            with contextlib.suppress(FileNotFoundError):
                self.blob_path(blob).unlink()

    def _uses_blob(self, path: Path, blob: str) -> bool:
        entry = self.read(path)
        return entry is not None and entry.get("blob") == blob

    def reject(self, path: Path, why: str) -> None:
        folder = self.folder / "rejected"
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, folder / path.name)
            (folder / f"{path.name}.why").write_text(why)


class Outbox:
    """Sends requests in order, through the spool whenever the server can't take them now.

    An entry is ``{"method", "path", "body"}`` (JSON), or ``{"method": "PUT", "path",
    "blob", "size"}`` for an artifact's bytes kept in the spool.
    """

    def __init__(self, transport: Transport, spool: Spool) -> None:
        self.transport = transport
        self.spool = spool
        self._lock = threading.Lock()
        #: Requests are waiting in the spool: new ones must go behind them.
        self.backlog = bool(spool.pending())
        #: Called when a request is spooled (wakes the sender thread).
        self.on_spooled: Callable[[], None] | None = None

    def _send(self, entry: dict[str, Any]) -> Any:
        blob = entry.get("blob")
        if blob:
            path = self.spool.blob_path(blob)
            return self.transport.upload(entry["path"], path, int(entry["size"]))
        return self.transport.call(entry["method"], entry["path"], entry.get("body"))

    def send(self, entry: dict[str, Any], *, spool_ok: bool = True) -> Any:
        """Send ``entry`` now and return the answer; when the server can't be reached (or
        earlier requests still wait), spool it and return None. Errors the server answers
        are raised (nothing is spooled for them). ``spool_ok=False``: raise
        :class:`ServerUnreachable` instead of spooling."""
        with self._lock:
            if not self.backlog:
                try:
                    return self._send(entry)
                except ServerUnreachable:
                    if not spool_ok:
                        raise
            elif not spool_ok:
                raise ServerUnreachable(
                    f"The loopml server at {self.transport.url} has not taken the requests "
                    f"spooled in {self.spool.folder} yet."
                )
            self.spool.append(entry)
            self.backlog = True
        hook = self.on_spooled
        if hook is not None:
            hook()
        return None

    def send_blob(self, source: str | os.PathLike[str] | bytes, digest: str, size: int) -> None:
        """Store a blob on the server (streamed from a file, or ``bytes``) unless it is there;
        when the server can't be reached, its bytes are kept in the spool and sent later."""
        path = f"/blobs/{digest}"
        with self._lock:
            if not self.backlog:
                try:
                    if not self.transport.exists(path):
                        if isinstance(source, bytes):
                            self.transport.upload_bytes(path, source)
                        else:
                            self.transport.upload(path, source, size)
                    return
                except ServerUnreachable:
                    pass
            if isinstance(source, bytes):
                self.spool.keep_bytes(source, digest)
            else:
                self.spool.keep_blob(source, digest)
            self.spool.append({"method": "PUT", "path": path, "blob": digest, "size": size})
            self.backlog = True
        hook = self.on_spooled
        if hook is not None:
            hook()

    def replay(self) -> bool:
        """Send spooled requests, oldest first, until the spool is empty (→ True) or the
        server can't be reached (→ False, the rest stays)."""
        while True:
            with self._lock:
                pending = self.spool.pending()
                if not pending:
                    self.backlog = False
                    return True
            # New requests only ever go after these: send this listing, then look again.
            for path in pending:
                with self._lock:
                    entry = self.spool.read(path)
                    if entry is None:
                        continue  # another process sent it
                    try:
                        self._send(entry)
                    except (ServerUnreachable, Unauthorized):
                        return False
                    except LoopmlError as exc:
                        log.warning(
                            "loopml: the server refused a spooled request (%s %s): %s; it is "
                            "kept in %s",
                            entry.get("method"),
                            entry.get("path"),
                            exc,
                            self.spool.folder / "rejected",
                        )
                        self.spool.reject(path, f"{type(exc).__name__}: {exc}")
                        continue
                    self.spool.done(path, entry)
