"""What the gateway recorded, read back: spend grouped by key, team, user, model, tag, day,
provider or deployment; the request log; traces and their span trees.

    costs(ws, by="team", since="7d")        # [{"group": "growth", "cost_usd": 12.5, ...}, ...]
    requests(ws, model="cheap", errors_only=True, limit=20)
    request(ws, "3f2a…")                      # one request with its messages, response, attempts
    traces(ws, since="1h"); trace_tree(ws, "4bf92f…")

Each report is one or two SQL queries (GROUP BY in the database), the same on SQLite and
PostgreSQL. Times given as text are ISO 8601 (without an offset: local time, as loopml prints
times) or a duration back from now (``7d``, ``12h``, ``30m``); times returned are aware
datetimes in UTC. Days (``by="day"``) are UTC days.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, case, cast, func, literal_column, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.tables import llm_keys, llm_requests, llm_spans
from loopml.llm.tracing import (
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    LOOPML_COST_USD,
)
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: What :func:`costs` groups by.
GROUPINGS = ("key", "team", "user", "model", "tag", "day", "provider", "deployment")
DAY_MS = 86_400_000
#: A unique prefix of an id this long or longer finds a request or trace.
MIN_PREFIX = 6

_R = llm_requests.c
_S = llm_spans.c


class RequestNotFound(NotFound):
    """No logged gateway request has that id."""


class TraceNotFound(NotFound):
    """No stored trace has that id."""


# -- time arguments -------------------------------------------------------------------------


def _ms(value: datetime | str | None, what: str) -> int | None:
    """``value`` (an aware or local datetime, ISO text, or a duration back from now such as
    ``7d``) as ms since the epoch."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        seconds = parse_duration(text)
        if seconds is not None:
            return int((datetime.now(UTC) - timedelta(seconds=seconds)).timestamp() * 1000)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{what}={value!r} is neither a duration back from now (7d, 12h, 30m) nor an "
                "ISO time like 2026-11-30T16:32:07-05:00."
            ) from None
    if not isinstance(value, datetime):
        raise InvalidInput(
            f"{what} takes a datetime, ISO text or a duration like 7d, not {value!r}."
        )
    if value.tzinfo is None:
        value = value.astimezone()  # local time, as loopml prints times
    return int(value.timestamp() * 1000)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float | None:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` → seconds; None if ``text`` is not
    such a duration (it may be a time).

    >>> parse_duration("7d"), parse_duration("2026-11-30")
    (604800.0, None)
    """
    if len(text) < 2 or text[-1] not in _UNITS:
        return None
    try:
        amount = float(text[:-1])
    except ValueError:
        return None
    if not math.isfinite(amount) or amount <= 0:
        return None
    return amount * _UNITS[text[-1]]


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _time_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- costs ----------------------------------------------------------------------------------


def _group_column(by: str, dialect: str) -> tuple[ColumnElement[Any], Any]:
    """The GROUP BY expression of ``by`` and the FROM clause it needs."""
    source: Any = llm_requests
    if by == "key":
        return _R.key_id, llm_requests.outerjoin(llm_keys, llm_keys.c.id == _R.key_id)
    if by == "model":
        return func.coalesce(_R.model_used, _R.model_requested), source
    if by == "day":
        return _R.created_at // DAY_MS, source
    if by == "tag":
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            tags = func.jsonb_array_elements_text(cast(_R.tags, JSONB)).table_valued("value")
        else:
            tags = func.json_each(_R.tags).table_valued("value")
        return tags.c.value, llm_requests.join(tags, true())
    column = {
        "team": _R.team,
        "user": _R.user,
        "provider": _R.provider,
        "deployment": _R.deployment,
    }
    return column[by], source


def costs(
    workspace: WorkspaceLike = None,
    *,
    by: str = "model",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> list[dict[str, Any]]:
    """Spend and tokens of the logged requests with ``since <= time < until``, grouped
    ``by`` key, team, user, model (the one used; the one asked for when none answered),
    tag (a request counts once under each of its tags; untagged ones are left out), day (UTC,
    ``YYYY-MM-DD``), provider or deployment.

    One dict per group, most expensive first (``by="day"``: oldest day first): ``group``,
    ``requests``, ``errors`` (HTTP status >= 400), ``input_tokens``, ``output_tokens``,
    ``cached_read_tokens``, ``reasoning_tokens``, ``cost_usd``, ``estimated`` (how many of
    them had token counts the gateway estimated itself), ``cache_hits`` (answered from the
    cache) and ``saved_usd`` (what those would have cost upstream); ``by="key"`` adds the
    key's ``name``.

    >>> costs(ws, by="team", since="7d")[0]                             # doctest: +SKIP
    {'group': 'growth', 'requests': 1204, 'errors': 3, ..., 'cost_usd': 4.21, 'estimated': 0}
    """
    if by not in GROUPINGS:
        raise InvalidInput(f"costs(by={by!r}): group by one of {', '.join(GROUPINGS)}.")
    ws = resolve_workspace(workspace)
    begin, end = _ms(since, "since"), _ms(until, "until")
    group, source = _group_column(by, ws.db.dialect)
    columns: list[Any] = [
        group.label("grp"),
        func.count().label("requests"),
        func.sum(case((_R.status >= 400, 1), else_=0)).label("errors"),
        func.sum(_R.input_tokens).label("input_tokens"),
        func.sum(_R.output_tokens).label("output_tokens"),
        func.sum(_R.cached_read_tokens).label("cached_read_tokens"),
        func.sum(_R.reasoning_tokens).label("reasoning_tokens"),
        func.sum(cast(_R.cost_usd, Float)).label("cost_usd"),
        func.sum(case((_R.usage_estimated, 1), else_=0)).label("estimated"),
        func.sum(case((_R.cache_hit, 1), else_=0)).label("cache_hits"),
        func.sum(cast(_R.saved_usd, Float)).label("saved_usd"),
    ]
    if by == "key":
        columns.append(func.max(llm_keys.c.name).label("name"))
    query = select(*columns).select_from(source).group_by(group)
    if begin is not None:
        query = query.where(_R.created_at >= begin)
    if end is not None:
        query = query.where(_R.created_at < end)
    if by == "day":
        query = query.order_by(group)
    else:
        query = query.order_by(literal_column("cost_usd").desc(), group)
    with ws.db.engine.connect() as conn:
        found = conn.execute(query).mappings().all()
    rows = []
    for row in found:
        value = row["grp"]
        if by == "day" and value is not None:
            value = datetime.fromtimestamp(int(value) * DAY_MS / 1000, UTC).date().isoformat()
        out: dict[str, Any] = {
            "group": value,
            "requests": int(row["requests"]),
            "errors": int(row["errors"] or 0),
            "input_tokens": int(row["input_tokens"] or 0),
            "output_tokens": int(row["output_tokens"] or 0),
            "cached_read_tokens": int(row["cached_read_tokens"] or 0),
            "reasoning_tokens": int(row["reasoning_tokens"] or 0),
            "cost_usd": float(row["cost_usd"] or 0.0),
            "estimated": int(row["estimated"] or 0),
            "cache_hits": int(row["cache_hits"] or 0),
            "saved_usd": float(row["saved_usd"] or 0.0),
        }
        if by == "key":
            out["name"] = row["name"]
        rows.append(out)
    return rows


# -- the request log ------------------------------------------------------------------------

_SUMMARY = [c for c in llm_requests.c if c.name not in ("request", "response", "attempts")]
_BOOLEANS = ("stream", "truncated", "usage_estimated", "cache_hit")


def _request_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    out["created_at"] = _time(out["created_at"])
    out["tags"] = _decode(out.get("tags")) or []
    for name in ("cache", "guardrails"):
        if name in out:
            out[name] = _decode(out[name])
    for name in _BOOLEANS:
        if name in out:
            out[name] = bool(out[name])
    return out


def requests(
    workspace: WorkspaceLike = None,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    model: str | None = None,
    key: str | None = None,
    team: str | None = None,
    user: str | None = None,
    status: int | None = None,
    errors_only: bool = False,
    tag: str | None = None,
    prompt: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The logged requests, newest first, without their content (see :func:`request`).
    ``model`` matches the model asked for or the one used; ``key`` is a key id;
    ``errors_only`` keeps those answered with an HTTP status >= 400; ``tag`` keeps those
    with that tag among theirs; ``prompt`` keeps those made from a registered prompt
    (``NAME``: any of its versions, ``NAME/VERSION``: that one)."""
    if limit < 1:
        raise InvalidInput(f"limit={limit}: ask for at least one request.")
    ws = resolve_workspace(workspace)
    query = select(*_SUMMARY)
    begin, end = _ms(since, "since"), _ms(until, "until")
    if begin is not None:
        query = query.where(_R.created_at >= begin)
    if end is not None:
        query = query.where(_R.created_at < end)
    if model is not None:
        query = query.where(or_(_R.model_requested == model, _R.model_used == model))
    if key is not None:
        query = query.where(_R.key_id == key)
    if team is not None:
        query = query.where(_R.team == team)
    if user is not None:
        query = query.where(_R.user == user)
    if status is not None:
        query = query.where(_R.status == int(status))
    if errors_only:
        query = query.where(_R.status >= 400)
    if tag is not None:
        query = query.where(_has_tag(ws.db.engine.dialect.name, tag))
    if prompt is not None:
        name, _, version = prompt.rpartition("/")
        if name and version.isdigit():
            query = query.where(_R.prompt == prompt)
        else:  # NAME/VERSION of this name, not of a longer one (support vs support/answer)
            name = prompt.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(
                _R.prompt.like(f"{name}/%", escape="\\"),
                ~_R.prompt.like(f"{name}/%/%", escape="\\"),
            )
    query = query.order_by(_R.created_at.desc(), _R.id.desc()).limit(limit)
    with ws.db.engine.connect() as conn:
        return [_request_dict(row) for row in conn.execute(query).mappings()]


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    """A request's JSON list of tags holds ``tag`` (exactly)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return cast(_R.tags, JSONB).contains([tag])
    tags = func.json_each(_R.tags).table_valued("value")
    return select(tags.c.value).where(tags.c.value == tag).exists()


def _by_id(
    conn: Connection, column: Any, ident: str, what: str, error: type[NotFound]
) -> list[Any]:
    """Rows whose ``column`` is ``ident``, or starts with it (a unique prefix of at least
    :data:`MIN_PREFIX` characters)."""
    ident = ident.strip()
    exact = {ident, ident.lower()}
    rows = list(conn.execute(select(column).where(column.in_(exact)).limit(1)).scalars())
    if rows:
        return rows
    if len(ident) >= MIN_PREFIX:
        rows = list(
            conn.execute(
                select(column).where(column.startswith(ident, autoescape=True)).distinct().limit(6)
            )
            .scalars()
            .all()
        )
        if len(rows) > 1:
            raise InvalidInput(
                f"{what} prefix {ident!r} is ambiguous: it starts {', '.join(rows[:5])}; "
                "give more of the id."
            )
        if rows:
            return rows
    raise error(
        f"No {what} {ident!r} in this workspace's LLM gateway log; list them with "
        f"`loopml {'llm requests' if what == 'request' else 'traces list'}`."
    )


def request(workspace: WorkspaceLike, request_id: str) -> dict[str, Any]:
    """One logged request by id (or a unique prefix of it): every column, with ``tags``,
    ``attempts``, ``request`` and ``response`` decoded, and ``messages`` (the request's)
    for convenience. :class:`RequestNotFound` if no request has that id."""
    ws = resolve_workspace(workspace)
    with ws.db.engine.connect() as conn:
        (ident,) = _by_id(conn, _R.id, request_id, "request", RequestNotFound)
        row = conn.execute(select(llm_requests).where(_R.id == ident)).mappings().one()
    out = _request_dict(row)
    out["attempts"] = _decode(row["attempts"]) or []
    out["request"] = _decode(row["request"])
    out["response"] = _decode(row["response"])
    body = out["request"]
    out["messages"] = body.get("messages") if isinstance(body, dict) else None
    return out


# -- traces ---------------------------------------------------------------------------------


def _span_numbers(attributes: Mapping[str, Any]) -> tuple[int | None, int | None, float | None]:
    def number(key: str) -> Any:
        value = attributes.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    tokens_in, tokens_out, cost = (
        number(GEN_AI_USAGE_INPUT_TOKENS),
        number(GEN_AI_USAGE_OUTPUT_TOKENS),
        number(LOOPML_COST_USD),
    )
    return (
        None if tokens_in is None else int(tokens_in),
        None if tokens_out is None else int(tokens_out),
        None if cost is None else float(cost),
    )


def _tree(spans: Sequence[Mapping[Any, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The span rows of one trace as nested nodes (roots: spans whose parent is not stored,
    in start order) and the trace's totals from its spans' attributes (each cost counted
    once: the topmost span carrying it)."""
    start = min(s["start_us"] for s in spans)
    nodes: dict[str, dict[str, Any]] = {}
    for s in sorted(spans, key=lambda s: (s["start_us"], s["span_id"])):
        attributes = _decode(s["attributes"]) or {}
        tokens_in, tokens_out, cost = _span_numbers(attributes)
        nodes[s["span_id"]] = {
            "span_id": s["span_id"],
            "parent_id": s["parent_id"],
            "name": s["name"],
            "kind": s["kind"],
            "status": s["status"],
            "start": _time_us(s["start_us"]),
            "offset_ms": (s["start_us"] - start) / 1000,
            "duration_ms": (s["end_us"] - s["start_us"]) / 1000,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost_usd": cost,
            "request_id": s["request_id"],
            "attributes": attributes,
            "children": [],
        }
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent_id"]) if node["parent_id"] else None
        (parent["children"] if parent is not None else roots).append(node)
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    walk = [(root, False) for root in roots]
    while walk:
        node, counted = walk.pop()
        carries = node["cost_usd"] is not None or node["input_tokens"] is not None
        if carries and not counted:
            totals["input_tokens"] += node["input_tokens"] or 0
            totals["output_tokens"] += node["output_tokens"] or 0
            totals["cost_usd"] += node["cost_usd"] or 0.0
        walk += [(child, counted or carries) for child in node["children"]]
    return roots, totals


def _request_totals(conn: Connection, trace_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Cost and tokens of the gateway requests logged in each trace (the accounting's
    figures, preferred to the spans' attributes)."""
    query = (
        select(
            _R.trace_id,
            func.count().label("requests"),
            func.sum(_R.input_tokens).label("input_tokens"),
            func.sum(_R.output_tokens).label("output_tokens"),
            func.sum(cast(_R.cost_usd, Float)).label("cost_usd"),
        )
        .where(_R.trace_id.in_(list(trace_ids)))
        .group_by(_R.trace_id)
    )
    return {
        row["trace_id"]: {
            "requests": int(row["requests"]),
            "input_tokens": int(row["input_tokens"] or 0),
            "output_tokens": int(row["output_tokens"] or 0),
            "cost_usd": float(row["cost_usd"] or 0.0),
        }
        for row in conn.execute(query).mappings()
    }


_SPAN_COLUMNS = [
    _S.trace_id,
    _S.span_id,
    _S.parent_id,
    _S.name,
    _S.kind,
    _S.start_us,
    _S.end_us,
    _S.status,
    _S.attributes,
    _S.request_id,
]


def _summary(
    trace_id: str, spans: Sequence[Mapping[Any, Any]], logged: dict[str, Any] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    roots, totals = _tree(spans)
    if logged is not None:
        totals = {k: logged[k] for k in ("input_tokens", "output_tokens", "cost_usd")}
    first, last = min(s["start_us"] for s in spans), max(s["end_us"] for s in spans)
    summary = {
        "trace_id": trace_id,
        "name": roots[0]["name"] if roots else "",
        "start": _time_us(first),
        "duration_ms": (last - first) / 1000,
        "spans": len(spans),
        "errors": sum(1 for s in spans if s["status"] == "error"),
        "requests": logged["requests"] if logged is not None else 0,
        **totals,
        "tokens": totals["input_tokens"] + totals["output_tokens"],
    }
    return summary, roots


def traces(
    workspace: WorkspaceLike = None,
    *,
    since: datetime | str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The latest traces with spans started since ``since``, newest first: ``trace_id``,
    ``name`` (of its first root span), ``start``, ``duration_ms``, ``spans``, ``errors``,
    ``requests`` (gateway requests in it), ``input_tokens``, ``output_tokens``, ``tokens``
    and ``cost_usd`` (the logged requests' figures; without any, the spans' attributes)."""
    if limit < 1:
        raise InvalidInput(f"limit={limit}: ask for at least one trace.")
    ws = resolve_workspace(workspace)
    begin = _ms(since, "since")
    latest = (
        select(_S.trace_id, func.min(_S.start_us).label("first"))
        .group_by(_S.trace_id)
        .order_by(func.min(_S.start_us).desc(), _S.trace_id)
        .limit(limit)
    )
    if begin is not None:
        latest = latest.where(_S.start_us >= begin * 1000)
    with ws.db.engine.connect() as conn:
        ids = [row.trace_id for row in conn.execute(latest)]
        if not ids:
            return []
        spans: dict[str, list[Mapping[Any, Any]]] = {}
        for row in conn.execute(select(*_SPAN_COLUMNS).where(_S.trace_id.in_(ids))).mappings():
            spans.setdefault(row["trace_id"], []).append(row)
        logged = _request_totals(conn, ids)
    return [_summary(t, spans[t], logged.get(t))[0] for t in ids if t in spans]


def trace_tree(workspace: WorkspaceLike, trace_id: str) -> dict[str, Any]:
    """One trace (by id, or a unique prefix of it) as a tree: the summary :func:`traces`
    gives, plus ``roots``, the spans whose parent is not stored (in start order), each with
    ``name``, ``kind``, ``status``, ``start``, ``offset_ms`` (from the trace's start),
    ``duration_ms``, ``input_tokens``, ``output_tokens``, ``cost_usd`` (None where the span
    carries none), ``request_id``, ``attributes`` and its ``children``.
    :class:`TraceNotFound` if no span has that trace id."""
    ws = resolve_workspace(workspace)
    with ws.db.engine.connect() as conn:
        (ident,) = _by_id(conn, _S.trace_id, trace_id, "trace", TraceNotFound)
        spans = list(conn.execute(select(*_SPAN_COLUMNS).where(_S.trace_id == ident)).mappings())
        logged = _request_totals(conn, [ident]).get(ident)
    summary, roots = _summary(ident, spans, logged)
    summary["roots"] = roots
    return summary


__all__ = [
    "GROUPINGS",
    "RequestNotFound",
    "TraceNotFound",
    "costs",
    "request",
    "requests",
    "trace_tree",
    "traces",
]
