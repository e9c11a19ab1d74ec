"""The progress callback that long data operations report to (the CLI draws it as a bar).

A callback is called with keyword arguments only, possibly from several threads::

    progress(total_files=500, total_bytes=1_000_000_000)   # once the work is known
    progress(files=1, bytes=2_000_000)                     # after each file

and must ignore keywords it doesn't know (``**_``), so operations can report more later.
:class:`loopml.cli.progress.Tracker` is one; a plain function is another.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives counts of work done (``files``, ``bytes``) and totals when known."""

    def __call__(
        self,
        *,
        files: int = ...,
        bytes: int = ...,  # noqa: A002 - the keyword callers pass
        total_files: int | None = ...,
        total_bytes: int | None = ...,
    ) -> None: ...
