"""The LLM gateway's pages: traces (the latest, and one as a waterfall of its spans), the
cost report and one logged gateway request.

- ``/traces?since=1h`` — the latest traces, newest first: root span, start, duration, spans,
  tokens and cost; ``since`` is a duration back from now (``30m``, ``1h``, ``7d``) or an ISO
  time (without an offset: the server's local time).
- ``/traces/{trace_id}`` — the span tree as an indented waterfall (bars placed by start and
  sized by duration, plain HTML/CSS): each span's duration, tokens, cost, status and key
  attributes (model, deployment, attempt, error); a gateway request links to its log entry.
  A unique prefix of the id (6+ characters) finds the trace too.
- ``/llm/costs?by=model&since=7d`` — spend grouped by model, key, team, user, tag, day,
  provider or deployment, with a total row.
- ``/llm/requests?since=1h&model=cheap&team=growth&user=…&key=…&errors=1`` — the request
  log, newest first (without content).
- ``/llm/requests/{id}`` — one request: status, models asked and used, the attempt chain,
  tokens, cost, latency and time to first token, and the logged messages and response.

The data is read through :mod:`loopml.llm.reports` (it needs the ``llm`` extra; without it
the pages say how to install it). These pages show gateway data, not experiments or models:
without ``--auth`` everyone may read them; with ``--auth`` the caller must be a signed-in user
(any user: the server's per-experiment and per-model grants don't cover gateway data).
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any

from loopml.exceptions import MissingDependency, missing_dependency
from loopml.server.ui.render import Endpoint, Renderer, page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext

#: Traces listed on ``/traces``.
TRACES_SHOWN = 100
#: Requests listed on ``/llm/requests``.
REQUESTS_SHOWN = 100
#: The ``/llm/requests`` query parameters passed to ``reports.requests`` as they are.
REQUEST_FILTERS = ("model", "team", "user", "key")
#: The smallest bar drawn, in percent of the trace's duration (a 0 ms span stays visible).
MIN_BAR = 0.4

#: Span attributes shown in the waterfall's "details" column, with their labels, in order.
KEY_ATTRIBUTES = (
    ("gen_ai.request.model", "model"),
    ("gen_ai.response.model", "answered by"),
    ("gen_ai.system", "provider"),
    ("loopml.deployment", "deployment"),
    ("loopml.attempt", "attempt"),
    ("loopml.route.group", "group"),
    ("loopml.route.reason", "route"),
    ("http.response.status_code", "HTTP"),
    ("error.type", "failure"),
    ("error", "error"),
)

# "2026-11-30T16:32:07+05:00" typed into a URL arrives with its "+" decoded as a space.
_SPACED_OFFSET = re.compile(r" (\d{2}:?\d{2})$")


def ms(value: float | None) -> str:
    """A duration in milliseconds: ``0.42 ms``, ``12.3 ms``, ``1.25 s``, ``2 min 5 s``.

    >>> ms(0.4215), ms(12.34), ms(1250), ms(125000)
    ('0.42 ms', '12.3 ms', '1.25 s', '2 min 5 s')
    """
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.1f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, secs = divmod(int(round(value / 1000)), 60)
    return f"{minutes} min {secs} s"


def usd(value: float | None) -> str:
    """A cost in US dollars, to a millionth of a dollar: ``$0.000123``, ``$12.50``.

    >>> usd(0.000123), usd(12.5), usd(0), usd(None)
    ('$0.000123', '$12.50', '$0.00', '')
    """
    if value is None:
        return ""
    text = f"{value:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def pretty(value: Any) -> str:
    """JSON, indented, for showing a logged body (escaped by the template like any text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def since_param(request: Request) -> str | None:
    """The ``since`` query parameter, its ISO offset's ``+`` restored."""
    since = (request.query_params.get("since") or "").strip()
    return _SPACED_OFFSET.sub(r"+\1", since) or None


def waterfall(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The trace's span tree (``reports.trace_tree``) as rows in depth-first order: each span
    with its ``depth``, the ``left`` and ``width`` of its bar in percent of the trace's
    duration, and its ``details`` (the key attributes as (label, value) pairs).

    >>> rows = waterfall({"duration_ms": 100.0, "roots": [{"name": "a", "offset_ms": 0.0,
    ...     "duration_ms": 100.0, "attributes": {}, "children": [{"name": "b",
    ...     "offset_ms": 50.0, "duration_ms": 25.0, "attributes": {"loopml.attempt": 2},
    ...     "children": []}]}]})
    >>> [(r["name"], r["depth"], r["left"], r["width"], r["details"]) for r in rows]
    [('a', 0, 0.0, 100.0, []), ('b', 1, 50.0, 25.0, [('attempt', '2')])]
    """
    total = float(trace.get("duration_ms") or 0.0)
    rows: list[dict[str, Any]] = []
    stack = [(node, 0) for node in reversed(trace.get("roots") or [])]
    while stack:
        node, depth = stack.pop()
        if total > 0:
            left = min(max(node["offset_ms"] / total * 100, 0.0), 100.0)
            width = min(max(node["duration_ms"] / total * 100, MIN_BAR), 100.0 - left)
        else:
            left, width = 0.0, 100.0
        attributes = node.get("attributes") or {}
        details: list[tuple[str, str]] = []
        for key, label in KEY_ATTRIBUTES:
            value = attributes.get(key)
            if value is None or value == "":
                continue
            shown = str(value)
            if (label, shown) not in details:
                details.append((label, shown))
        rows.append(
            {
                **node,
                "depth": depth,
                "left": round(left, 3),
                "width": round(max(width, 0.0), 3),
                "details": details,
                "others": {k: v for k, v in attributes.items() if k not in _KEY_NAMES},
            }
        )
        stack.extend((child, depth + 1) for child in reversed(node.get("children") or []))
    return rows


_KEY_NAMES = frozenset(key for key, _ in KEY_ATTRIBUTES) | {
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "loopml.cost_usd",
    "loopml.request_id",
}


def message_text(message: Any) -> tuple[str, str, Any]:
    """(role, text, extra) of one logged chat message: ``text`` is its content when that is
    a string (else the content as JSON); ``extra`` holds its other fields (tool calls, name,
    tool_call_id; empty ones left out), or None.

    >>> message_text({"role": "assistant", "content": None, "refusal": None,
    ...               "tool_calls": [{"id": "c1"}]})
    ('assistant', '', {'tool_calls': [{'id': 'c1'}]})
    """
    if not isinstance(message, dict):
        return "", pretty(message), None
    content = message.get("content")
    text = content if isinstance(content, str) else ("" if content is None else pretty(content))
    extra = {
        k: v for k, v in message.items() if k not in ("role", "content") and v not in (None, [])
    }
    return str(message.get("role") or ""), text, extra or None


def answer_of(response: Any) -> list[tuple[str, str, Any]]:
    """The messages of a logged response: an OpenAI ``chat.completion``'s choices, or an
    Anthropic ``message``'s content blocks; [] when it is neither."""
    if not isinstance(response, dict):
        return []
    choices = response.get("choices")
    if isinstance(choices, list):
        return [message_text(c.get("message")) for c in choices if isinstance(c, dict)]
    blocks = response.get("content")
    if response.get("type") == "message" and isinstance(blocks, list):
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        others = [b for b in blocks if not (isinstance(b, dict) and b.get("type") == "text")]
        return [(str(response.get("role") or "assistant"), text, others or None)]
    return []


def _reports() -> ModuleType:
    """:mod:`loopml.llm.reports` (imported on the first page asked for: the UI's other pages
    don't need OpenTelemetry), or :class:`MissingDependency` naming the ``llm`` extra."""
    try:
        return importlib.import_module("loopml.llm.reports")
    except ImportError as exc:
        missing = exc.name or ""
        package = missing if missing and not missing.startswith("loopml") else "opentelemetry-sdk"
        raise missing_dependency(package, "llm", "The LLM gateway's pages") from None


class LlmPages:
    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer
        filters = renderer.env.filters
        filters.setdefault("ms", ms)
        filters.setdefault("usd", usd)
        filters.setdefault("pretty", pretty)

    def signed_in(self, request: Request) -> None:
        """Gateway data is for any signed-in user: with ``--auth`` the server's middleware
        already refused anonymous callers (401); asking the access seam for the caller
        makes sure of it (an ApiError when the request carries no principal)."""
        self.ctx.access.principal(request)

    async def traces(self, request: Request) -> Response:
        self.signed_in(request)
        reports = _reports()
        since = since_param(request)
        found = await self.ctx.call(reports.traces, self.ws, since=since, limit=TRACES_SHOWN)
        return self.renderer.page(
            "traces.html", nav="traces", traces=found, since=since, limit=TRACES_SHOWN
        )

    async def trace(self, request: Request) -> Response:
        self.signed_in(request)
        reports = _reports()
        tree = await self.ctx.call(reports.trace_tree, self.ws, request.path_params["trace_id"])
        return self.renderer.page("trace.html", nav="traces", trace=tree, rows=waterfall(tree))

    async def costs(self, request: Request) -> Response:
        self.signed_in(request)
        reports = _reports()
        by = request.query_params.get("by") or "model"
        since = since_param(request)
        rows = await self.ctx.call(reports.costs, self.ws, by=by, since=since)
        keys = ("requests", "errors", "input_tokens", "output_tokens", "cached_read_tokens")
        total: dict[str, Any] = {k: sum(r[k] for r in rows) for k in (*keys, "reasoning_tokens")}
        total["cost_usd"] = sum(r["cost_usd"] for r in rows)
        total["estimated"] = sum(r["estimated"] for r in rows)
        return self.renderer.page(
            "llm_costs.html",
            nav="llm",
            rows=rows,
            total=total,
            by=by,
            since=since,
            groupings=reports.GROUPINGS,
        )

    async def requests(self, request: Request) -> Response:
        self.signed_in(request)
        reports = _reports()
        query = request.query_params
        filters = {name: (query.get(name) or "").strip() or None for name in REQUEST_FILTERS}
        errors_only = query.get("errors") in ("1", "on", "true")
        found = await self.ctx.call(
            reports.requests,
            self.ws,
            since=since_param(request),
            errors_only=errors_only,
            limit=REQUESTS_SHOWN,
            **filters,
        )
        return self.renderer.page(
            "llm_requests.html",
            nav="llm",
            requests=found,
            since=since_param(request),
            errors_only=errors_only,
            filters=filters,
            limit=REQUESTS_SHOWN,
        )

    async def request_page(self, request: Request) -> Response:
        self.signed_in(request)
        reports = _reports()
        found = await self.ctx.call(reports.request, self.ws, request.path_params["request_id"])
        return self.renderer.page(
            "llm_request.html",
            nav="llm",
            r=found,
            messages=[message_text(m) for m in found.get("messages") or []],
            answer=answer_of(found.get("response")),
        )

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        wrap = page(self.renderer)

        def serve(fn: Endpoint) -> Endpoint:
            @functools.wraps(fn)
            async def endpoint(request: Request) -> Response:
                try:
                    return await fn(request)
                except MissingDependency as exc:  # a server without the llm extra
                    return self.renderer.error(501, str(exc))

            return wrap(endpoint)

        return [
            Route("/traces", serve(self.traces), methods=["GET"]),
            Route("/traces/{trace_id}", serve(self.trace), methods=["GET"]),
            Route("/llm/costs", serve(self.costs), methods=["GET"]),
            Route("/llm/requests", serve(self.requests), methods=["GET"]),
            Route("/llm/requests/{request_id}", serve(self.request_page), methods=["GET"]),
        ]


__all__ = ["LlmPages", "answer_of", "message_text", "ms", "usd", "waterfall"]
