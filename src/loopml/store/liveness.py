"""Whether the process that owns a RUNNING record is still there: one rule for tracking runs
and pipeline runs.

A record owned by a process carries ``owner`` (``host:pid:start-ms``, from
:func:`owner_token`) and ``heartbeat_at`` (epoch milliseconds, refreshed every
:data:`HEARTBEAT_S` seconds while it runs). The owner is alive when

- on this host: its pid exists and started when the token says (a reused pid is another
  process); no waiting, a SIGKILLed process is seen as gone at once;
- on another host (a shared PostgreSQL store): its heartbeat is younger than
  :data:`STALE_AFTER_S` seconds.

A record without an owner (written before owners were recorded) counts as gone.

>>> owner_alive("elsewhere:1:0", heartbeat_at=1_000, now=1_000 + 5_000)
True
>>> owner_alive("elsewhere:1:0", heartbeat_at=1_000, now=1_000 + 121_000)
False
>>> owner_alive(None, heartbeat_at=None)
False
"""

from __future__ import annotations

import os
import socket

from loopml.store.clock import now_ms

#: How often a live owner refreshes its heartbeat.
HEARTBEAT_S = 15.0
#: A record owned on another host is considered dead when its heartbeat is older than this.
STALE_AFTER_S = 120.0

_owner: str | None = None
_owner_pid: int | None = None


def owner_token() -> str:
    """``host:pid:start-ms`` of this process (the start time tells a reused pid apart)."""
    global _owner, _owner_pid
    pid = os.getpid()
    if _owner is None or _owner_pid != pid:  # a forked child is another owner
        _owner = f"{socket.gethostname()}:{pid}:{process_start_ms(pid)}"
        _owner_pid = pid
    return _owner


def process_start_ms(pid: int) -> int:
    """When process ``pid`` started (epoch ms), or 0 if it can't be told."""
    import psutil

    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except (psutil.Error, OSError):
        return 0


def owner_alive(owner: str | None, heartbeat_at: int | None, now: int | None = None) -> bool:
    """Whether the process named by ``owner`` still runs (see the module's docstring)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, start_text = rest.partition(":")
    if host == socket.gethostname():
        try:
            pid, start = int(pid_text), int(start_text or 0)
        except ValueError:
            return False
        if pid == os.getpid():
            return True
        import psutil

        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False  # exited, not yet waited for by its parent
        except (psutil.Error, OSError):
            return False
        actual = process_start_ms(pid)
        return not start or not actual or abs(actual - start) < 2000
    now = now_ms() if now is None else now
    return heartbeat_at is not None and now - heartbeat_at < STALE_AFTER_S * 1000
