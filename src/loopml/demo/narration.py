"""How ``loopml demo`` tells what it does: a spinner per stage and a one-line result.

Three modes:

- ``rich``: stdout and stderr are a terminal. While a stage runs, a transient rich progress
  line on stderr shows the stage and what it is doing now; when it ends, one line on stdout:
  ``✔ 3/8 train   churn/1 promoted: accuracy 0.79 (baseline 0.69)``.
- ``plain``: piped or redirected. The same result lines as plain text (no colour, no
  spinner, no terminal codes), so a log stays readable.
- ``quiet``: ``--json``. Nothing but the final JSON summary on stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Stage:
    """The stage being narrated: ``doing`` says what it does now, ``result`` what it made,
    ``note`` adds a detail line under the result."""

    def __init__(self, narrator: Narrator, number: int, name: str) -> None:
        self.number = number
        self.name = name
        self.line = ""
        self.notes: list[str] = []
        self._narrator = narrator

    def doing(self, text: str) -> None:
        self._narrator._doing(self, text)

    def result(self, line: str) -> None:
        self.line = line

    def note(self, line: str) -> None:
        self.notes.append(line)


class Narrator:
    """Narrates ``total`` numbered stages in ``mode`` (``rich``, ``plain`` or ``quiet``)."""

    def __init__(self, total: int, mode: str) -> None:
        self.total = total
        self.mode = mode
        self._out: Console | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if mode == "rich":
            from rich.console import Console

            self._out = Console(highlight=False)

    @classmethod
    def for_output(cls, total: int, *, as_json: bool) -> Narrator:
        """``quiet`` for ``--json``, ``rich`` on a terminal, ``plain`` otherwise."""
        from loopml.cli.progress import is_interactive

        if as_json:
            return cls(total, "quiet")
        return cls(total, "rich" if is_interactive() else "plain")

    def say(self, line: str, style: str = "") -> None:
        """A line of its own (the header, the summary)."""
        if self.mode == "quiet":
            return
        if self._out is not None:
            self._out.print(line, style=style or None, soft_wrap=True)
        else:
            _plain(line)

    @contextmanager
    def stage(self, number: int, name: str, title: str) -> Iterator[Stage]:
        stage = Stage(self, number, name)
        started = time.monotonic()
        label = f"{number}/{self.total} {name}"
        if self.mode == "rich":
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[label]}[/]  {task.description}"),
                TimeElapsedColumn(),
                transient=True,
                console=_stderr(),
            )
            self._progress = progress
            self._task = progress.add_task(title, label=label)
            progress.start()
        try:
            yield stage
        except BaseException:
            self._stop()
            took = time.monotonic() - started
            self._line("✘", "bold red", label, stage.line or f"{title}: did not close", took)
            raise
        self._stop()
        took = time.monotonic() - started
        self._line("✔", "bold green", label, stage.line or title, took)
        for note in stage.notes:
            self.say(f"      {note}", style="dim")

    def _doing(self, stage: Stage, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None

    def _line(self, mark: str, style: str, label: str, text: str, took: float) -> None:
        if self.mode == "quiet":
            return
        if self._out is not None:
            self._out.print(
                f"[{style}]{mark}[/] [bold]{label:<12}[/] {_escape(text)} [dim]({took:.1f}s)[/]",
                soft_wrap=True,
            )
        else:
            _plain(f"{mark} {label:<12} {text} ({took:.1f}s)")


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _plain(line: str) -> None:
    """Print ``line`` on stdout; characters its encoding lacks (a pipe in the C locale: the
    check marks, the arrows) become ``?`` rather than an error."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(line.encode(encoding, "replace").decode(encoding), flush=True)
