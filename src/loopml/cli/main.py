"""The ``loopml`` command: a click group whose subcommand groups are imported on first use.

``loopml --version`` imports click and nothing heavy; ``loopml runs list`` imports the runs
commands (and, when it opens the workspace, the store). A group is one line in
:data:`COMMANDS`; an entry whose module is not written yet is left out of ``loopml --help``.
"""

from __future__ import annotations

import atexit
import errno
import gc
import importlib
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import click

from loopml import __version__
from loopml.cli.context import WORKSPACE_ENV, CliError, WorkspaceState
from loopml.exceptions import LoopmlError, LoopmlWarning

#: Subcommand groups: name → ``"module:attribute"`` of a click command, imported when used.
COMMANDS = {
    "alerts": "loopml.cli.alerts:alerts",
    "config": "loopml.cli.config:config",
    "data": "loopml.cli.data:data",
    "demo": "loopml.cli.demo:demo",
    "deploy": "loopml.cli.deploy:deploy",
    "evals": "loopml.cli.evals:evals",
    "experiments": "loopml.cli.experiments:experiments",
    "features": "loopml.cli.features:features",
    "gateway": "loopml.cli.gateway:gateway",
    "labels": "loopml.cli.labels:labels",
    "llm": "loopml.cli.llm:llm",
    "models": "loopml.cli.models:models",
    "monitor": "loopml.cli.monitor:monitor",
    "pipelines": "loopml.cli.pipelines:pipelines",
    "predict": "loopml.cli.predict:predict",
    "prompts": "loopml.cli.prompts:prompts",
    "rag": "loopml.cli.rag:rag",
    "runs": "loopml.cli.runs:runs",
    "scheduler": "loopml.cli.scheduler:scheduler",
    "serve": "loopml.cli.serve:serve",
    "server": "loopml.cli.server:server",
    "status": "loopml.cli.status:status",
    "tokens": "loopml.cli.users:tokens",
    "traces": "loopml.cli.traces:traces",
    "users": "loopml.cli.users:users",
}


NEXT_STEPS = """\
  import loopml
  with loopml.start_run(experiment="demo"):
      loopml.log_params({{"lr": 0.01}})
      loopml.log_metric("loss", 0.42)
then look at it:
{cd}  loopml runs list
  loopml runs show <RUN>
"""


class LazyGroup(click.Group):
    """A group that imports its ``lazy_subcommands`` only when one is looked up
    (click's documented lazy-loading pattern)."""

    def __init__(
        self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(
            name for name, target in self.lazy_subcommands.items() if _module_exists(target)
        )
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_subcommands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        return load_command(target)


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.partition(":")[0]) is not None


def load_command(target: str) -> click.Command | None:
    """Import ``"module:attribute"``; None only when that module itself does not exist (an
    import error inside it, or a missing attribute, is raised)."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is a {type(command).__name__}, not a click command")
    return command


class RootGroup(LazyGroup):
    """The ``loopml`` group: shows every :class:`LoopmlError` as one ``error:`` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except LoopmlError as exc:
            raise CliError.from_error(exc) from exc
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):  # `loopml runs list | head`: not an error
                raise
            raise CliError(os_error_message(exc)) from exc


_SHOW_WARNING = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """loopml's own warnings as one ``warning:`` line on stderr, as its errors are; any
    other warning as Python shows it."""
    if issubclass(category, LoopmlWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_OS_HINTS = {
    errno.EACCES: "check the permissions of that path",
    errno.EPERM: "check the permissions of that path",
    errno.ENOSPC: "free some disk space and run the command again; nothing half-written is kept",
    errno.EDQUOT: "free some disk space (quota) and run the command again",
    errno.EROFS: "the file system is read-only; use a writable workspace",
    errno.ENOENT: "check that the path exists",
}


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{what}{where}" + (f": {hint}." if hint else ".")


@click.group(
    cls=RootGroup,
    lazy_subcommands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--workspace",
    "-w",
    envvar=WORKSPACE_ENV,
    show_envvar=True,
    metavar="PATH",
    help="Workspace folder, or a metadata store URL. Default: the nearest loopml.toml "
    "at or above the current directory, or LOOPML_STORE_URL.",
)
@click.version_option(
    __version__, "--version", "-V", prog_name="loopml", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """loopml: track experiments, version data and models, run ML pipelines.

    Commands act on the workspace found from the current directory unless
    --workspace names another. Start with `loopml init`.
    """
    ctx.obj = WorkspaceState(workspace)


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(path: Path) -> None:
    """Create a workspace in PATH (default: here): loopml.toml and a .loopml/ folder.

    An existing loopml.toml is kept as it is.
    """
    from loopml.config import CONFIG_FILE, STATE_DIR
    from loopml.workspace import Workspace

    existed = (path / CONFIG_FILE).is_file()
    try:
        ws = Workspace.init(path)
    except OSError as exc:
        if isinstance(exc, LoopmlError):
            raise
        raise CliError(f"Cannot create a workspace in {path}: {exc.strerror or exc}") from exc
    with ws:
        root = ws.root
        if existed:
            click.echo(f"Workspace already set up in {root} (kept its {CONFIG_FILE}).")
        else:
            click.echo(f"Created a workspace in {root}:")
        click.echo(f"  {CONFIG_FILE:<22} settings (commit this file)")
        click.echo(f"  {STATE_DIR + '/':<22} local state (git-ignored)")
        click.echo(f"  metadata store         {ws.db.safe_url}")
        click.echo(f"  artifact store         {ws.settings.artifacts_url}")
    here = path.resolve() == Path.cwd().resolve()
    click.echo("\nNext, track a run from your training code:")
    click.echo(NEXT_STEPS.format(cd="" if here else f"  cd {path}\n"), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``loopml`` console script."""
    # At exit the interpreter's last garbage collection walks every object that SQLAlchemy,
    # click and rich created: about 0.15 s of a 0.7 s `loopml runs list` here. Registered
    # first, this handler runs last, after every other exit handler has flushed metrics and
    # closed the workspace; frozen objects are skipped by that collection, and the operating
    # system reclaims their memory.
    atexit.register(gc.freeze)
    cli.main(args=argv, prog_name="loopml")
