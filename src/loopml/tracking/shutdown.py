"""Process-exit hooks: flush buffered metrics and end live runs on exit and on SIGTERM.

SIGTERM raises :class:`Terminated` (a ``SystemExit`` with code 143) in the main thread, so
``with start_run()`` blocks unwind normally: the run is marked KILLED and its buffered
metrics are flushed, then ``atexit`` ends whatever is still live. A handler installed before
loopml's is called instead of raising.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
import traceback
import weakref
from types import FrameType, TracebackType
from typing import Any, Protocol


class Terminated(SystemExit):
    """Raised in the main thread when the process receives SIGTERM."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class _Closable(Protocol):
    def _shutdown(self, status: str, error: str | None) -> None: ...


_owners: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False
_lock = threading.Lock()
_previous_sigterm: Any = None
_uncaught: list[str] = []
_terminated: list[bool] = []


def register(owner: _Closable) -> None:
    """Have ``owner._shutdown(status, error)`` called at interpreter exit."""
    global _installed
    _owners.add(owner)
    with _lock:
        if _installed:
            return
        _installed = True
        atexit.register(_at_exit)
        _wrap_excepthook()
    _install_sigterm()


def _install_sigterm() -> None:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN:
        return
    _previous_sigterm = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _terminated.append(True)
    if callable(_previous_sigterm):
        _flush_all()
        _previous_sigterm(signum, frame)
        return
    raise Terminated()


def _wrap_excepthook() -> None:
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _uncaught.append("".join(traceback.format_exception(exc_type, exc, tb)))
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def _flush_all() -> None:
    for owner in list(_owners):
        flush = getattr(owner, "flush", None)
        if flush is not None:
            try:
                flush()
            except Exception as exc:  # exiting anyway: report, don't mask the original
                print(f"loopml: could not flush metrics at exit: {exc}", file=sys.stderr)


def _at_exit() -> None:
    error = _uncaught[-1] if _uncaught else None
    status = "KILLED" if _terminated else "FAILED" if error else "FINISHED"
    if _terminated:
        error = "Terminated by SIGTERM"
    for owner in list(_owners):
        try:
            owner._shutdown(status, error)
        except Exception as exc:
            print(f"loopml: could not close runs at exit: {exc}", file=sys.stderr)
