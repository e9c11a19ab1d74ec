"""Rendering the UI's pages: the Jinja2 environment, the error pages and the page decorator.

Templates live in ``templates/`` of this package and are autoescaped: every value a user
logged (a param, a tag, an artifact name) is shown as text, never as markup. Times are shown
in ISO 8601 with their offset.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from loopml.exceptions import LoopmlError
from loopml.server.errors import ApiError, code_of

if TYPE_CHECKING:
    import jinja2
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


class PageNotFound(LoopmlError, LookupError):
    """A page's id names nothing (the 404 page)."""


def when(value: datetime | None) -> str:
    """``2026-12-01T06:03:34+00:00``; an empty string for None."""
    if value is None:
        return ""
    return value.isoformat(timespec="seconds")


def seconds(value: float | None) -> str:
    """A duration: ``0.42 s``, ``3 min 5 s``, ``2 h 1 min``."""
    if value is None or not math.isfinite(value):
        return ""
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def number(value: Any) -> str:
    """A metric value, short: 4 significant digits, ``NaN`` for NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def size(value: int | None) -> str:
    if value is None:
        return ""
    amount = float(value)
    for unit in ("bytes", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{int(amount)} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1000
    return str(value)  # pragma: no cover


_PLAIN_KEY = re.compile(r"^[A-Za-z_][\w\-/:]*$")


def search_key(column: str) -> str:
    """``metrics.val loss`` → ``metrics.`val loss``` : a column as the filter language
    spells it (a key with spaces or dots is quoted)."""
    prefix, _, key = column.partition(".")
    return column if _PLAIN_KEY.match(key) else f"{prefix}.`{key}`"


def url(path: str, /, **params: Any) -> str:
    """``path`` with a query string of the params that are not None (lists repeat)."""
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            items.extend((key, str(v)) for v in value)
        else:
            items.append((key, str(value)))
    return f"{path}?{urlencode(items)}" if items else path


def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, seconds=seconds, number=number, size=size)
    env.globals.update(url=url)
    return env


class Renderer:
    """Turns a template and its values into an HTML response."""

    def __init__(self) -> None:
        self.env = environment()

    def page(self, template: str, status_code: int = 200, /, **values: Any) -> Response:
        from starlette.responses import HTMLResponse

        html = self.env.get_template(template).render(**values)
        return HTMLResponse(html, status_code, headers={"Cache-Control": "no-store"})

    def error(self, status: int, message: str) -> Response:
        titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 413: "Too large"}
        return self.page(
            "error.html",
            status,
            title=titles.get(status, "Error"),
            status=status,
            message=message,
        )


Endpoint = Callable[["Request"], Awaitable["Response"]]


def page(renderer: Renderer) -> Callable[[Endpoint], Endpoint]:
    """Wrap a page's endpoint: a LoopmlError or ApiError becomes an HTML error page with
    MLflow's status for it (unknown ids 404, bad filters 400, no permission 403/404)."""

    def wrap(fn: Endpoint) -> Endpoint:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            began = time.perf_counter()
            try:
                response = await fn(request)
            except PageNotFound as exc:
                response = renderer.error(404, str(exc))
            except (ApiError, LoopmlError) as exc:
                _, status = code_of(exc)
                if status >= 500:
                    logger.exception("%s %s failed", request.method, request.url.path)
                response = renderer.error(status, str(exc))
            # The time the page took here, shown by browsers' developer tools (and measured
            # by benchmarks/server_ui.py).
            spent = (time.perf_counter() - began) * 1000
            response.headers["Server-Timing"] = f"app;dur={spent:.1f}"
            return response

        return endpoint

    return wrap
