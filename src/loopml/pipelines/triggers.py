"""Triggers: what starts a pipeline run without a person. Specs are data; the scheduler
(``loopml scheduler run``) evaluates them.

    @pipeline(triggers=[
        on_schedule("0 3 * * *"),                 # cron, UTC unless tz= is given
        on_new_data("data/raw"),                  # a file, folder or pointer file changed
        on_event("alert", subject="churn"),       # emit_event("alert", subject="churn", ...)
        on_event("model.promoted", subject="churn"),  # a kind loopml writes (loopml.events)
    ])
    def train_churn(day: str = "latest"): ...

Each trigger starts at most one run per *slot*: a cron time, a data version (the content
hash), an event id (or, with ``coalesce=True``, the newest of the events seen at once).
Schedules and data start from when a scheduler first sees them; events from the first one.
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loopml.exceptions import LoopmlWarning
from loopml.pipelines.exceptions import InvalidSchedule, PipelineDefinitionError, shown


@dataclass(frozen=True)
class Trigger(abc.ABC):
    """A reason to start a pipeline run. ``params`` are passed to the runs it starts."""

    kind: ClassVar[str] = "trigger"

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """Stable text naming the trigger within its pipeline (also the record's trigger)."""

    def describe(self) -> str:
        return self.id


@dataclass(frozen=True)
class Schedule(Trigger):
    """A cron schedule (five fields, or ``@daily``/``@hourly``/…) in time zone ``tz``.

    The first time a scheduler sees it, it starts from then; after a scheduler was down, every
    missed slot runs (at most ``max_catchup``, the newest), or only the newest with
    ``catchup=False``.
    """

    kind: ClassVar[str] = "schedule"
    cron: str
    tz: str = "UTC"
    catchup: bool = True
    max_catchup: int = 100
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from croniter import croniter

        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise InvalidSchedule(
                f"Not a cron expression: {self.cron!r}. Use five fields, minute hour "
                "day-of-month month day-of-week (e.g. '0 3 * * *' for 03:00 every day, "
                "'*/15 * * * *' for every 15 minutes), or @hourly, @daily, @weekly, @monthly."
            )
        try:
            self.zone  # noqa: B018 - validate the time zone now
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidSchedule(
                f"Unknown time zone {self.tz!r} for schedule {self.cron!r}: use an IANA name "
                "such as 'UTC' or 'Europe/Paris'."
            ) from exc
        if self.max_catchup < 1:
            raise InvalidSchedule("max_catchup must be at least 1")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def id(self) -> str:
        return f"schedule:{self.cron}" + ("" if self.tz == "UTC" else f" {self.tz}")

    def slots_between(self, after: datetime, until: datetime) -> list[datetime]:
        """Cron times in ``(after, until]`` (UTC), oldest first, after catch-up limits."""
        from croniter import croniter

        it = croniter(self.cron, after.astimezone(self.zone))
        slots: list[datetime] = []
        while True:
            moment = it.get_next(datetime).astimezone(UTC)
            if moment > until:
                break
            slots.append(moment)
            if len(slots) > self.max_catchup:
                slots.pop(0)
        if not self.catchup and slots:
            return slots[-1:]
        return slots

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        value: datetime = croniter(self.cron, moment.astimezone(self.zone)).get_next(datetime)
        return value.astimezone(UTC)


@dataclass(frozen=True)
class NewData(Trigger):
    """A file, folder or ``*.loopml`` pointer file whose data version (its content hash)
    changed. A relative path is relative to the workspace folder. Like a schedule, it starts
    from the data as it is when a scheduler first looks; after that, each change to a data
    version that has not started a run yet starts one (a change made while no scheduler was
    running included)."""

    kind: ClassVar[str] = "data"
    path: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | Path) or not str(self.path):
            raise PipelineDefinitionError(f"on_new_data needs a path, got {shown(self.path)}.")
        object.__setattr__(self, "path", str(self.path))

    def exists(self, root: Path) -> bool:
        """Whether the watched file, folder or pointer file (``PATH.loopml``) is there."""
        from loopml.data.pointers import pointer_path

        path = self.resolve(root)
        return path.exists() or pointer_path(path).exists()

    @property
    def id(self) -> str:
        return f"data:{self.path}"

    def resolve(self, root: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else root / path

    def version(self, root: Path) -> str | None:
        """The current data version (BLAKE3), or None while the path does not exist."""
        from loopml.exceptions import InvalidInput
        from loopml.tracking.inputs import dataset_ref

        try:
            return dataset_ref(self.resolve(root)).digest
        except InvalidInput:
            return None


@dataclass(frozen=True)
class OnEvent(Trigger):
    """Events of ``event`` kind (and ``subject``, when given): one loopml writes (see
    :data:`loopml.events.KINDS`, e.g. ``"model.promoted"``) or your own, written with
    :func:`~loopml.pipelines.emit_event`. With ``coalesce`` (the default) the events a
    scheduler finds at once start one run; without, one run each."""

    kind: ClassVar[str] = "event"
    event: str
    subject: str | None = None
    coalesce: bool = True
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not self.event.strip():
            raise PipelineDefinitionError(f"on_event needs an event kind, got {self.event!r}")
        from loopml.events import check_kind
        from loopml.exceptions import InvalidValue

        try:
            check_kind(self.event)  # a typo in one of loopml's kinds would never fire
        except InvalidValue as exc:
            raise PipelineDefinitionError(f"on_event({self.event!r}): {exc}") from None

    @property
    def id(self) -> str:
        return f"event:{self.event}:{self.subject if self.subject is not None else '*'}"


def on_schedule(
    cron: str,
    *,
    tz: str = "UTC",
    catchup: bool = True,
    max_catchup: int = 100,
    params: dict[str, Any] | None = None,
) -> Schedule:
    """Run on a cron schedule (see :class:`Schedule`); raises :class:`InvalidSchedule` at
    once for an expression that does not parse."""
    return Schedule(cron, tz, catchup, max_catchup, dict(params or {}))


def on_new_data(path: str | Path, *, params: dict[str, Any] | None = None) -> NewData:
    """Run when the data version of ``path`` changes (see :class:`NewData`). A path that is
    not there (from the current directory, or the workspace folder above it) gets a
    :class:`~loopml.exceptions.LoopmlWarning` now, and ``loopml scheduler run`` refuses
    to watch it."""
    trigger = NewData(str(path), dict(params or {}))
    roots = [Path.cwd()]
    from loopml.config import find_config

    config = find_config()
    if config is not None:
        roots.append(config.parent)
    if not any(trigger.exists(root) for root in roots):
        warnings.warn(
            f"on_new_data({shown(trigger.path)}): there is no such file or folder (looked "
            f"from {', '.join(str(r) for r in dict.fromkeys(roots))}), so nothing is watched "
            "until it appears; a relative path is relative to the workspace folder.",
            LoopmlWarning,
            stacklevel=2,
        )
    return trigger


def on_event(
    kind: str,
    subject: str | None = None,
    *,
    coalesce: bool = True,
    params: dict[str, Any] | None = None,
) -> OnEvent:
    """Run when an event of ``kind`` (and ``subject``) is emitted (see :class:`OnEvent`)."""
    return OnEvent(kind, subject, coalesce, dict(params or {}))
