"""What every command shares: the workspace it acts on, opened on first use, and the one
error type the CLI shows without a traceback.

A subcommand module asks for the workspace with :func:`pass_workspace`::

    @data.command("list")
    @pass_workspace
    def list_datasets(ws: Workspace) -> None:
        \"\"\"List datasets.\"\"\"
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    from loopml.workspace import Workspace

WORKSPACE_ENV = "LOOPML_WORKSPACE"

P = ParamSpec("P")
R = TypeVar("R")


_DOUBLE_STOP = re.compile(r"(?<!\.)\.\.$")
#: How a finished sentence (or an ellipsis, a quoted sentence) ends.
_TERMINAL = (".", "!", "?", '."', ".'", ".)", "…")


class CliError(click.ClickException):
    """An error printed as ``error: <message>`` on stderr, no traceback, exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        # A message built from another ("git said: x.") plus our own full stop must not end
        # in "..": one full stop, an ellipsis left alone. A one-line message without a stop gets
        # one (a message drawing a caret under its input ends with the drawing).
        message = _DOUBLE_STOP.sub(".", message.rstrip())
        if message and "\n" not in message and not message.endswith(_TERMINAL):
            message += "."
        super().__init__(message)
        if exit_code != self.exit_code:
            # click >= 8.5 declares exit_code a ClassVar; click's main() reads the instance.
            setattr(self, "exit_code", exit_code)  # noqa: B010

    @classmethod
    def from_error(cls, error: LoopmlError) -> CliError:
        return cls(str(error), error.exit_code)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


#: Commands that may create a missing metadata store (they start runs); every other command
#: reports a missing store instead of showing an empty, new one.
CREATES_STORE = frozenset(
    {
        "pipelines run",
        "pipelines backfill",
        "scheduler run",
        "server",
        "features apply",
        "features materialize",
        "features materialize-incremental",
        "gateway serve",
    }
)


class WorkspaceState:
    """Which workspace the command line acts on (``--workspace``, ``LOOPML_WORKSPACE`` or
    discovery from the current directory); opened when a command first asks for it."""

    def __init__(self, location: str | None = None) -> None:
        self.location = location if location is not None else os.environ.get(WORKSPACE_ENV)
        self._workspace: Workspace | None = None

    def open(self) -> Workspace:
        if self._workspace is None:
            from loopml.workspace import Workspace

            ctx = click.get_current_context()
            command = " ".join(ctx.command_path.split()[1:])
            self._workspace = Workspace.open(self.location or None, create=command in CREATES_STORE)
            # Closed when the outermost command ends, whichever command opened it.
            ctx.find_root().call_on_close(self._workspace.close)
        return self._workspace


def current_workspace() -> Workspace:
    """The workspace of the running command (opened now if need be)."""
    ctx = click.get_current_context()
    state = ctx.find_object(WorkspaceState)
    if state is None:  # a group invoked on its own, without the root `loopml` group
        state = ctx.find_root().ensure_object(WorkspaceState)
    return state.open()


def pass_workspace(f: Callable[Concatenate[Workspace, P], R]) -> Callable[P, R]:
    """Decorate a command callback to receive the workspace as its first argument."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return f(current_workspace(), *args, **kwargs)

    return wrapper
