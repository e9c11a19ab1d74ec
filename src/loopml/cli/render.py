"""How commands print: rich tables for people, strict JSON for programs.

Values shown to people are formatted here (short ids, local times with their UTC offset,
durations, numbers), so every command prints them alike, and times read back the same way
(:func:`parse_time`). JSON output is strict (RFC 8259): NaN becomes ``null`` (the store
keeps a NaN metric as NULL anyway) and ±inf become the strings ``"Infinity"``/``"-Infinity"``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

SHORT_ID = 8
# Wide enough that piped tables keep whole ids and times on one line.
PIPE_WIDTH = 160

STATUS_STYLES = {
    "RUNNING": "cyan",
    "FINISHED": "green",
    "FAILED": "bold red",
    "KILLED": "yellow",
}


def json_option(f: F) -> F:
    """The ``--json`` flag every listing has; the callback receives ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout."
    )(f)


def console() -> Console:
    """A console on the current stdout (click's test runner swaps it)."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def table(*headers: str, title: str | None = None, no_wrap: Collection[str] = ()) -> Table:
    """A table with a header rule; columns named in ``no_wrap`` keep their cells on one line."""
    from rich import box
    from rich.table import Table

    grid = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        title_style="bold",
        show_edge=False,
        collapse_padding=True,
    )
    for header in headers:
        grid.add_column(header, no_wrap=header in no_wrap)
    return grid


def key_values(rows: Mapping[str, Any]) -> Table:
    """A borderless two-column table of ``key  value`` lines."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows.items():
        grid.add_row(text(key), value if _is_renderable(value) else text(value))
    return grid


def _is_renderable(value: Any) -> bool:
    from rich.table import Table
    from rich.text import Text

    return isinstance(value, Text | Table)


def text(value: Any, style: str = "") -> Text:
    """User data as literal text (a name like ``[red]x`` is not rich markup)."""
    from rich.text import Text

    return Text(value if isinstance(value, str) else format_value(value), style=style)


def status_text(status: str, deleted: bool = False) -> Text:
    label = f"{status} (deleted)" if deleted else status
    return text(label, "dim" if deleted else STATUS_STYLES.get(status, ""))


def emit_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2, allow_nan=False))


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 strings and non-finite floats made strict-JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def short_id(run_id: str) -> str:
    return run_id[:SHORT_ID]


#: Said in the ``--help`` of every option that takes a time, so all read the same way.
TIME_HELP = (
    "An ISO time as printed by loopml (2026-11-30T16:32:07-05:00); without an offset it "
    "is local time; 2026-11-30 alone is midnight."
)


def format_time(moment: datetime | None) -> str:
    """Local time to the second with its UTC offset (``2026-11-30T16:32:07-05:00``): one word
    a shell needn't quote, which :func:`parse_time` reads back as the same instant. Blank for
    None; a naive ``moment`` is UTC (the store's times are)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().isoformat(timespec="seconds")


def parse_time(value: str, option: str = "--at") -> datetime:
    """An aware datetime from ISO text as :func:`format_time` prints it (``T`` or a space
    between date and time, ``Z`` or ``+HH:MM`` offsets). A time without an offset is local
    time, like the times loopml prints.

    >>> parse_time("2026-11-30T16:32:07-05:00").isoformat()
    '2026-11-30T16:32:07-05:00'
    >>> parse_time("2026-11-30T21:32:07Z").utcoffset().total_seconds()
    0.0
    """
    from loopml.exceptions import InvalidInput

    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} needs an ISO time like 2026-11-30T16:32:07-05:00 or 2026-11-30T16:32 "
            f"(local time), got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def format_duration(seconds: float | None) -> str:
    """``850ms``, ``42.1s``, ``3m 07s``, ``2h 05m``, ``3d 04h``; blank for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def format_value(value: Any) -> str:
    """A param, metric or tag value for a table cell (missing → ``—``)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_size(size: int | None) -> str:
    from rich.filesize import decimal

    return "" if size is None else decimal(size)
