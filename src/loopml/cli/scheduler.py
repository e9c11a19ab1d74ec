"""``loopml scheduler``: start pipeline runs from schedules, new data and events."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.exceptions import LoopmlWarning
from loopml.wording import counted

if TYPE_CHECKING:
    from loopml.workspace import Workspace

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str) -> float:
    """``"60s"``, ``"5m"``, ``"1.5h"``, ``"250ms"`` or plain seconds → seconds."""
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(
            f"{value!r} is not a duration: use e.g. 30s, 5m, 1h or a number of seconds."
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Duration(click.ParamType):
    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


@click.group()
def scheduler() -> None:
    """Start pipeline runs from cron schedules, new data and events (continuous training)."""


@scheduler.command("run")
@click.argument("pipeline_refs", nargs=-1, metavar="[PIPELINE]...")
@click.option("--once", is_flag=True, help="Check every trigger once, run what is due, exit.")
@click.option(
    "--for",
    "duration",
    type=Duration(),
    metavar="DURATION",
    help="Run for this long (e.g. 60s, 10m), then wait for started runs and exit.",
)
@click.option(
    "--interval",
    type=Duration(),
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Time between checks of the triggers (at least 1s).",
)
@click.option(
    "--executor",
    "-x",
    default="threads",
    show_default=True,
    metavar="NAME",
    help="Where tasks run: threads, processes, inline, ray or ray://HOST:PORT.",
)
@click.option(
    "--max-workers", "-j", type=click.IntRange(min=1), metavar="N", help="Tasks at once per run."
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="N",
    help="Pipeline runs at once.",
)
@pass_workspace
def run(
    ws: Workspace,
    pipeline_refs: tuple[str, ...],
    once: bool,
    duration: float | None,
    interval: float,
    executor: str,
    max_workers: int | None,
    max_runs: int,
) -> None:
    """Watch the triggers of each PIPELINE and start the runs they call for.

    PIPELINE is package.module:name or path/to/file.py:name; without any, the pipelines
    listed in loopml.toml are watched:

    \b
        [scheduler]
        pipelines = ["pipelines/train.py:train_churn"]

    Runs forever unless --once or --for is given. Several schedulers may run at once: each
    triggered run is started by exactly one of them, and a run left behind by a scheduler
    that died is resumed by the next one.
    """
    from loopml.cli.pipelines import use_workspace
    from loopml.pipelines.refs import load_pipeline
    from loopml.pipelines.scheduler import MIN_INTERVAL_S, Scheduler

    use_workspace(ws)
    if not once and interval < MIN_INTERVAL_S:
        raise CliError(
            f"--interval {interval:g}s is too short: use at least {MIN_INTERVAL_S:g}s (e.g. "
            "10s, 1m); each check reads the store and hashes watched data."
        )
    refs = list(pipeline_refs) or _configured(ws)
    if not refs:
        raise CliError(
            "No pipelines to watch: name them (loopml scheduler run path/to/file.py:NAME) or "
            "list them in loopml.toml under [scheduler] pipelines = [...]."
        )
    with warnings.catch_warnings():  # a missing on_new_data path is an error below
        warnings.simplefilter("ignore", LoopmlWarning)
        pipes = [load_pipeline(ref, ws.root) for ref in refs]

    def log(line: str) -> None:
        stamp = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
        click.echo(f"[{stamp}] {line}")

    sched = Scheduler(
        pipes,
        ws,
        executor=executor,
        max_workers=max_workers,
        max_concurrent_runs=max_runs,
        log=log,
    )
    report = sched.run(once=once, duration=duration, interval=interval)
    statuses = list(report.finished.values())
    failed = [s for s in statuses if s not in ("FINISHED", "SKIPPED")]
    log(
        f"done: {counted(report.ticks, 'check')}, {counted(len(report.claimed), 'run')} triggered, "
        f"{len(report.recovered)} taken over, {len(statuses) - len(failed)} finished, "
        f"{len(failed)} failed"
    )
    if failed:
        raise CliError(
            f"{counted(len(failed), 'triggered run')} failed: see `loopml pipelines runs`."
        )


def _configured(ws: Workspace) -> list[str]:
    """``[scheduler] pipelines`` of loopml.toml (checked when the settings were loaded)."""
    return list(ws.settings.scheduler.pipelines)
