"""A progress bar for long commands, shown only to a person watching a terminal.

Library functions take a ``progress`` callback and know nothing of rich or click; a command
hands them the :class:`Tracker` of :func:`progress_bar`::

    with progress_bar("Adding data/raw", enabled=not as_json) as tracker:
        loopml.data.add("data/raw", progress=tracker)

    with progress_bar("Backfilling", unit="run", show_bytes=False) as tracker:
        tracker(total_files=len(days))
        for day in days:
            ...
            tracker(files=1)

The tracker is called with keyword arguments only, from any thread: ``files``/``bytes`` add
to the counts done, ``total_files``/``total_bytes`` set the totals when they become known
(``files`` counts whatever ``unit`` names). Unknown keywords are ignored, so a library may
report more later. The bar is drawn on stderr, cleared when the command ends, and it is a
no-op (nothing drawn, nothing imported) when stdout or stderr is not a terminal: piped output
and ``--json`` stay free of progress noise.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID


class Tracker:
    """Counts files (or runs, or any ``unit``) and bytes; draws them when a bar is attached.

    The counts are kept even without a bar, so callers and tests can read ``files``,
    ``bytes``, ``total_files`` and ``total_bytes`` afterwards.
    """

    def __init__(self, by_bytes: bool = True) -> None:
        self.by_bytes = by_bytes  # the bar, rate and ETA follow bytes, else the count
        self.files = 0
        self.bytes = 0
        self.total_files: int | None = None
        self.total_bytes: int | None = None
        self._lock = threading.Lock()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(
        self,
        *,
        files: int = 0,
        bytes: int = 0,  # noqa: A002 - the keyword callers pass
        total_files: int | None = None,
        total_bytes: int | None = None,
        **future: Any,
    ) -> None:
        with self._lock:
            self.files += files
            self.bytes += bytes
            if total_files is not None:
                self.total_files = total_files
            if total_bytes is not None:
                self.total_bytes = total_bytes
            if self._bar is not None and self._task is not None:
                self._bar.update(
                    self._task,
                    completed=self.bytes if self.by_bytes else self.files,
                    total=self.total_bytes if self.by_bytes else self.total_files,
                    files=self.files,
                    total_files=self.total_files,
                )


def is_interactive(*streams: IO[Any]) -> bool:
    """Whether every stream (default: stdout and stderr) is a terminal."""
    for stream in streams or (sys.stdout, sys.stderr):
        try:
            if not stream.isatty():
                return False
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False
    return True


@contextmanager
def progress_bar(
    description: str,
    *,
    unit: str = "file",
    show_bytes: bool = True,
    enabled: bool = True,
) -> Iterator[Tracker]:
    """A :class:`Tracker` drawn as a rich bar (count, bytes, rate, ETA) on a terminal.

    ``enabled=False`` (pass ``not as_json``) or a stdout/stderr that is not a terminal gives
    a tracker that only counts.
    """
    tracker = Tracker(by_bytes=show_bytes)
    if not (enabled and is_interactive()):
        yield tracker
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    def plural(n: int) -> str:
        return unit if n == 1 else f"{unit}s"

    class CountColumn(ProgressColumn):
        """``12/500 files``: the items done, of how many when known."""

        def render(self, task: Task) -> Text:
            done = int(task.fields.get("files") or 0)
            total = task.fields.get("total_files")
            shown = f"{done}/{total}" if total is not None else str(done)
            return Text(f"{shown} {plural(total if total is not None else done)}")

    class BytesColumn(ProgressColumn):
        """``1.2/2.0 GB``: the bytes done, of how many when known."""

        def render(self, task: Task) -> Text:
            from rich.filesize import decimal

            done = decimal(int(task.completed))
            return Text(done if task.total is None else f"{done}/{decimal(int(task.total))}")

    class RateColumn(TransferSpeedColumn):
        """Bytes per second when bytes are counted, else items per second."""

        def render(self, task: Task) -> Text:
            if show_bytes:
                return super().render(task)
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} {plural(2)}/s")

    columns: list[ProgressColumn | str] = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        CountColumn(),
    ]
    if show_bytes:
        columns.append(BytesColumn())
    columns += [RateColumn(), TimeRemainingColumn()]
    bar = Progress(*columns, console=Console(stderr=True), transient=True)
    with bar:
        tracker._task = bar.add_task(description, total=None, files=0, total_files=None)
        tracker._bar = bar
        try:
            yield tracker
        finally:
            tracker._bar = None
