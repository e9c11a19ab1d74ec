"""Reading runs back: one run, a metric's history, and filtered, ordered search across runs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    and_,
    false,
    func,
    intersect,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql import Select

from loopml.exceptions import ExperimentNotFound, InvalidFilter, RunNotFound
from loopml.store.db import Database
from loopml.tracking.filter import (
    BoolOp,
    Comparison,
    Expr,
    Key,
    OrderBy,
    parse_filter,
    parse_order_by,
)
from loopml.tracking.tables import (
    experiments,
    latest_metrics,
    metrics,
    params,
    run_inputs,
    runs,
    tags,
)

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 1000  # ids per IN (...): well under SQLite's 32,766 bound parameters


def to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _metric(value: float | None) -> float:
    return math.nan if value is None else value


@dataclass(frozen=True)
class RunRecord:
    """A snapshot of one run as stored: its info, params, latest metrics, tags and inputs."""

    id: str
    name: str
    experiment_id: int
    experiment: str
    status: str
    start_time: datetime
    end_time: datetime | None
    parent_run_id: str | None
    deleted: bool
    seed: int | None
    error: str | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


def get_run(db: Database, run_id: str) -> RunRecord:
    with db.read() as conn:
        row = conn.execute(
            select(runs, experiments.c.name.label("experiment"))
            .join(experiments, experiments.c.id == runs.c.experiment_id)
            .where(runs.c.id == run_id)
        ).first()
        if row is None:
            raise RunNotFound(
                f"No run {run_id!r}. List runs with `loopml runs list` to find its id."
            )
        p = dict(
            conn.execute(
                select(params.c.key, params.c.value).where(params.c.run_id == run_id)
            ).all()
        )
        t = dict(
            conn.execute(select(tags.c.key, tags.c.value).where(tags.c.run_id == run_id)).all()
        )
        m = {
            k: _metric(v)
            for k, v in conn.execute(
                select(latest_metrics.c.key, latest_metrics.c.value).where(
                    latest_metrics.c.run_id == run_id
                )
            ).all()
        }
        inputs = [
            {
                "name": r.name,
                "digest": r.digest,
                "source": r.source,
                "size": r.size,
                "file_count": r.file_count,
            }
            for r in conn.execute(
                select(run_inputs).where(run_inputs.c.run_id == run_id).order_by(run_inputs.c.name)
            )
        ]
    return RunRecord(
        id=row.id,
        name=row.name,
        experiment_id=row.experiment_id,
        experiment=row.experiment,
        status=row.status,
        start_time=datetime.fromtimestamp(row.start_time / 1000, UTC),
        end_time=to_datetime(row.end_time),
        parent_run_id=row.parent_run_id,
        deleted=row.deleted_at is not None,
        seed=row.seed,
        error=row.error,
        params=dict(sorted(p.items())),
        metrics=dict(sorted(m.items())),
        tags=dict(sorted(t.items())),
        inputs=inputs,
        environment=json.loads(row.environment) if row.environment else None,
    )


def metric_history(db: Database, run_id: str, key: str) -> pd.DataFrame:
    """Every point of one metric: columns ``step``, ``timestamp`` (UTC), ``value``."""
    import pandas as pd

    with db.read() as conn:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise RunNotFound(f"No run {run_id!r}.")
        rows = conn.execute(
            select(metrics.c.step, metrics.c.timestamp, metrics.c.value)
            .where(metrics.c.run_id == run_id, metrics.c.key == key)
            .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
        ).all()
    frame = pd.DataFrame(rows, columns=["step", "timestamp", "value"])
    frame["step"] = frame["step"].astype("int64")
    # A timestamp pandas can't hold (stored before log_metric checked them) reads as NaT.
    frame["timestamp"] = pd.to_datetime(
        frame["timestamp"].astype("int64"), unit="ms", utc=True, errors="coerce"
    )
    frame["value"] = frame["value"].astype("float64")  # NULL → NaN
    return frame


# -- the filter, compiled to SQL with bound parameters ------------------------------------------


def _number(value: Any) -> float:
    return float(value)


def _string_condition(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == str(value)
    if op == "!=":
        return column != str(value)
    if op == "like":
        return column.like(value)
    if op == "not like":
        return not_(column.like(value))
    if op == "ilike":
        return column.ilike(value)
    if op == "not ilike":
        return not_(column.ilike(value))
    if op == "in":
        return column.in_([str(v) for v in value])
    if op == "not in":
        return column.not_in([str(v) for v in value])
    raise InvalidFilter(f"Operator {op!r} does not apply to strings")


def _numeric_condition(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op in {"in", "not in"}:
        values = [_number(v) for v in value]
        return column.in_(values) if op == "in" else column.not_in(values)
    number = _number(value)
    if math.isnan(number):
        # NaN is stored as NULL: only equality tests make sense.
        if op == "=":
            return column.is_(None)
        if op == "!=":
            return column.is_not(None)
        return false()
    ops = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    return ops[op](number)


def _attribute_column(key: Key) -> Any:
    return runs.c[key.name]


_TABLES: dict[str, Table] = {"metric": latest_metrics, "param": params, "tag": tags}


def _value_condition(table: Any, key: Key, op: str, value: Any) -> ColumnElement[bool]:
    if key.kind == "metric":
        return _numeric_condition(table.c.value, op, value)
    return _string_condition(table.c.value, op, value)


def _compile(expr: Expr, probe: bool = False) -> ColumnElement[bool]:
    """The filter as a condition on ``runs``; values are bound parameters.

    A condition on a metric, param or tag becomes ``runs.id IN (SELECT run_id … WHERE key = ?
    AND value …)``: the (key, value) index finds the matching runs once, however many runs the
    query visits. With ``probe``, it becomes a correlated ``EXISTS`` on the (run_id, key)
    primary key instead: one index lookup per run visited, which is what a query that walks
    a few hundred runs in order and stops wants."""
    if isinstance(expr, BoolOp):
        parts = [_compile(item, probe) for item in expr.items]
        return and_(*parts) if expr.op == "and" else or_(*parts)
    assert isinstance(expr, Comparison)
    key, op, value = expr.key, expr.op, expr.value
    if key.kind == "attribute":
        column = _attribute_column(key)
        if op in {"is null", "is not null"}:
            return column.is_(None) if op == "is null" else column.is_not(None)
        if key.name in {"start_time", "end_time", "experiment_id"}:
            return _numeric_condition(column, op, value)
        if key.name == "status" and op in {"=", "!=", "in", "not in"}:
            value = (
                tuple(str(v).upper() for v in value)
                if isinstance(value, tuple)
                else str(value).upper()
            )
        return _string_condition(column, op, value)
    if probe:
        table = _TABLES[key.kind]
        row = select(literal(1)).where(table.c.run_id == runs.c.id, table.c.key == key.name)
        if op == "is null":
            return not_(row.exists())
        if op == "is not null":
            return row.exists()
        return row.where(_value_condition(table, key, op, value)).exists()
    if op == "is null":
        return runs.c.id.not_in(_matching_ids(Comparison(key, "is not null", None)))
    return runs.c.id.in_(_matching_ids(expr))


def _matching_ids(leaf: Comparison) -> Select[Any]:
    """The ids of the runs whose metric, param or tag matches ``leaf`` (not IS NULL), from
    the (key, value) index."""
    table = _TABLES[leaf.key.kind]
    found = select(table.c.run_id).where(table.c.key == leaf.key.name)
    if leaf.op == "is not null":
        return found
    return found.where(_value_condition(table, leaf.key, leaf.op, leaf.value))


def _experiment_ids(
    conn: Any, names_or_ids: Iterable[str | int] | str | int | None
) -> list[int] | None:
    if names_or_ids is None:
        return None
    if isinstance(names_or_ids, str | int):
        names_or_ids = [names_or_ids]
    ids: list[int] = []
    for item in names_or_ids:
        column = experiments.c.id if isinstance(item, int) else experiments.c.name
        found = conn.execute(select(experiments.c.id).where(column == item)).scalar()
        if found is None:
            raise ExperimentNotFound(f"No experiment {item!r}.")
        ids.append(found)
    return ids


def _order_terms(
    stmt: Select[Any], clauses: Sequence[OrderBy], first: int = 0
) -> tuple[Select[Any], list[Any]]:
    """``stmt`` outer-joined to what ``clauses`` sort on, and the ORDER BY terms: missing
    values (and NaN metrics) last in either direction, then newest first, then by id."""
    terms: list[Any] = []
    for i, clause in enumerate(clauses, start=first):
        key = clause.key
        if key.kind == "attribute":
            column: Any = _attribute_column(key)
        else:
            alias = _TABLES[key.kind].alias(f"order_{i}")
            stmt = stmt.outerjoin(alias, and_(alias.c.run_id == runs.c.id, alias.c.key == key.name))
            column = alias.c.value
        terms.append(column.desc().nulls_last() if clause.descending else column.asc().nulls_last())
    return stmt, [*terms, runs.c.start_time.desc(), runs.c.id]


# -- planning: walk an index in the requested order, or start from the filter's matches ----------
#
# A page of runs sorted by a metric can be found two ways. Walking the (key, value) index in
# order and probing each run's filter stops as soon as the page is full: cheap when many runs
# match (a page of 100 out of 100,000 runs where half match visits ~200), hopeless when few do
# (it visits them all). Starting from the filter's matches (the (key, value) index of its most
# selective condition) and sorting them costs what the matches number: cheap when few match.
# So search first walks a short, bounded stretch of the index, which fills the page when the
# filter is broad; when it doesn't, it counts (index-only range scans, capped) how many runs its
# conditions match and how long a walk would be, and picks. A bad guess costs a bounded detour,
# never a wrong answer: a walk that can't fill the page gives way to the plain query.
#
# A param or tag of a few values ties most runs: the walk's reach ends inside one value, and
# sorting all its runs by the clauses left (then newest first) is the cost the walk meant to
# avoid. So the walk stops before that value, and the page goes on with that value's runs,
# found by a search of their own (the filter and ``key = value``, sorted by the clauses left).

_COUNT_CAP = 100_000  # counting stops here: past it a condition is "broad" anyway
_WALK_SLACK = 4  # a walk may visit this many times the index entries it expects to need
_COVERED = ("param", "tag")  # walks whose index holds run_id (covering, on PostgreSQL too)
_LONG_WALK = 20  # a second walk, sized by the first one's matches, visits at most this x need
_NARROW = 1_000  # a condition matching this few rows is started from, whatever the store size


def _count(conn: Any, stmt: Select[Any]) -> int:
    capped = stmt.limit(_COUNT_CAP).subquery()
    return int(conn.execute(select(func.count()).select_from(capped)).scalar_one())


def _conjuncts(expr: Expr | None) -> list[Expr]:
    if expr is None:
        return []
    if isinstance(expr, BoolOp) and expr.op == "and":
        return list(expr.items)
    return [expr]


def _leaf_matches(conn: Any, leaf: Comparison) -> int:
    """How many rows match a metric/param/tag condition (capped at ``_COUNT_CAP``)."""
    table = _TABLES[leaf.key.kind]
    rows = select(literal(1)).select_from(table).where(table.c.key == leaf.key.name)
    if leaf.op != "is not null":
        rows = rows.where(_value_condition(table, leaf.key, leaf.op, leaf.value))
    return _count(conn, rows)


def _selective_conditions(conn: Any, expr: Expr | None) -> dict[Comparison, int]:
    """The filter's top-level AND conditions on a metric, param or tag that an index can
    answer, each with how many rows match it (capped): the smallest bounds the matches."""
    counts: dict[Comparison, int] = {}
    for leaf in _conjuncts(expr):
        if (
            isinstance(leaf, Comparison)
            and leaf.key.kind != "attribute"
            and leaf.op not in {"is null", "not in", "!=", "not like", "not ilike"}
        ):
            counts[leaf] = _leaf_matches(conn, leaf)
    return counts


@dataclass(frozen=True)
class _Walk:
    """An index that yields runs in the order of the first ORDER BY clause."""

    column: Any  # the value sorted on
    descending: bool
    source: Any  # the FROM clause (runs, or the metric/param/tag table joined to runs)
    where: list[ColumnElement[bool]]  # the index's own conditions (its key)
    key: Key | None = None  # the metric, param or tag walked (None: runs by start time)

    def entries(self) -> Select[Any]:
        """The index entries the walk visits, in no order (to count them)."""
        return select(self.column).where(*self.where)

    def bound(self, conn: Any, visit: int) -> Any:
        """The value of the ``visit``-th entry in the walk's order (None past the end)."""
        ordered = self.column.desc() if self.descending else self.column.asc()
        stmt = self.entries().order_by(ordered).offset(visit - 1).limit(1)
        return conn.execute(stmt).scalar()

    def ties(self, conn: Any, value: Any, cap: int) -> int:
        """How many entries hold ``value`` (counted no further than ``cap``)."""
        stmt = self.entries().where(self.column == value).limit(cap)
        return int(conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


def _walk_for(
    order: list[OrderBy], exp_ids: list[int] | None
) -> tuple[_Walk | None, list[OrderBy]]:
    """The index to walk for ``order`` (and the clauses left to sort by), if one fits:
    ``ix_latest_metrics_key_value`` / ``ix_params_key_value_run`` / ``ix_tags_key_value_run``
    for a first clause on a metric, param or tag, ``ix_runs_experiment_start`` for
    newest-first (the default) or start_time within one experiment."""
    first = order[0] if order else OrderBy(Key("attribute", "start_time"), descending=True)
    rest = order[1:]
    key = first.key
    if key.kind == "attribute":
        if key.name != "start_time" or exp_ids is None or len(exp_ids) != 1:
            return None, order
        where = [runs.c.experiment_id == exp_ids[0]]
        return _Walk(runs.c.start_time, first.descending, runs, where), rest
    table = _TABLES[key.kind].alias("walk")
    where = [table.c.key == key.name, table.c.value.is_not(None)]
    source = table.join(runs, runs.c.id == table.c.run_id)
    return _Walk(table.c.value, first.descending, source, where, key), rest


def _base_conditions(
    exp_ids: list[int] | None, include_deleted: bool, hint: bool
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if exp_ids is not None:
        # `experiment_id + 0` hides ix_runs_experiment_start from SQLite's planner (it has no
        # statistics and would otherwise scan every run of the experiment).
        column: Any = runs.c.experiment_id + 0 if hint else runs.c.experiment_id
        conditions.append(column.in_(exp_ids))
    if not include_deleted:
        conditions.append(runs.c.deleted_at.is_(None))
    return conditions


def _walked(
    conn: Any,
    walk: _Walk,
    rest: list[OrderBy],
    expr: Expr | None,
    exp_ids: list[int] | None,
    include_deleted: bool,
    limit: int,
    offset: int,
    visit: int,
) -> tuple[list[str] | None, bool, int]:
    """The page found by walking ``walk`` no further than ``visit`` index entries, or None
    when that reach could not fill the page; whether the reach stopped short of the end of
    the index (so that a longer walk might); and how many matches the reach held (at least;
    0 when not known)."""
    bound = walk.bound(conn, visit)
    where = list(walk.where)
    sqlite = conn.dialect.name == "sqlite"
    where += _base_conditions(exp_ids, include_deleted, hint=sqlite and walk.source is not runs)
    if expr is not None:
        where.append(_compile(expr, probe=True))
    stmt = select(runs.c.id).select_from(walk.source)
    first = walk.column.desc() if walk.descending else walk.column.asc()

    def page(stop: ColumnElement[bool] | None, limit: int, offset: int) -> list[str]:
        ordered, terms = _order_terms(stmt.where(*where, true() if stop is None else stop), rest, 1)
        return list(
            conn.execute(ordered.order_by(first, *terms).limit(limit).offset(offset)).scalars()
        )

    if bound is None:
        found = page(None, limit, offset)
    elif walk.key is not None and walk.ties(conn, bound, visit + 1) > visit:
        # The bound's value fills the reach (a param or tag of a few values): walk to it,
        # then take its runs in the order of the clauses left, by their own plan, rather
        # than sort them all.
        before = walk.column > bound if walk.descending else walk.column < bound
        tied = _with_ties(
            conn,
            walk.key,
            bound,
            page(before, offset + limit, 0),
            rest,
            expr,
            exp_ids,
            include_deleted,
            limit,
            offset,
        )
        return tied, True, 0
    else:
        # Every run past the bound sorts after every run before it (ties included: >=), so
        # a full page inside the bound is the page.
        found = page(
            walk.column >= bound if walk.descending else walk.column <= bound, limit, offset
        )
    matched = offset + len(found) if found else 0
    return (found if len(found) == limit else None), bound is not None, matched


def _with_ties(
    conn: Any,
    key: Key,
    value: Any,
    before: list[str],
    rest: list[OrderBy],
    expr: Expr | None,
    exp_ids: list[int] | None,
    include_deleted: bool,
    limit: int,
    offset: int,
) -> list[str] | None:
    """The page that follows ``before`` (the runs sorted ahead of ``key`` = ``value``, the
    first ``offset + limit`` of them) with the runs whose ``key`` is ``value``, sorted by
    ``rest`` then as every search ends; None when those two lists don't fill it."""
    skip = max(0, offset - len(before))
    want = offset + limit - len(before) - skip
    if want <= 0:
        return before[offset:]
    tie = Comparison(key, "=", value)
    tied = _run_ids(
        conn, exp_ids, BoolOp("and", (*_conjuncts(expr), tie)), rest, want, skip, include_deleted
    )
    return before[offset:] + tied if len(tied) == want else None


def _run_ids(
    conn: Any,
    exp_ids: list[int] | None,
    expr: Expr | None,
    order: list[OrderBy],
    limit: int,
    offset: int,
    include_deleted: bool,
) -> list[str]:
    if limit <= 0:
        return []
    need = offset + limit
    walk, rest = _walk_for(order, exp_ids)
    visited = 0
    if walk is not None:
        # First guess: the filter is broad (or absent), a short walk fills the page.
        visited = _WALK_SLACK * need + 100
        found, more, matched = _walked(
            conn, walk, rest, expr, exp_ids, include_deleted, limit, offset, visited
        )
        if found is not None:
            return found
        # The filter matched `matched` of those entries: walk as far as that rate needs (half
        # again, for matches spread unevenly) while it is still a short walk. On PostgreSQL a
        # failed short walk otherwise costs the plain query on top, but only the param and tag
        # indexes hold run_id: a metric's walk looks up a row per entry and loses to the plain
        # query there (measured, 30,000 runs, a 10 % tag filter, a page of 50: ordered by a
        # tag 39 -> 16 ms; by a metric 36 -> 40 ms, so not taken; SQLite 14 -> 9 ms for both).
        cheap = conn.dialect.name == "sqlite" or (
            walk.key is not None and walk.key.kind in _COVERED
        )
        if more and matched and cheap:
            reach = visited * need * 3 // (2 * matched) + 100
            if visited < reach <= _LONG_WALK * need + 100:
                visited = reach
                found, more, _ = _walked(
                    conn, walk, rest, expr, exp_ids, include_deleted, limit, offset, visited
                )
                if found is not None:
                    return found
        if not more:
            walk = None  # the walk saw the whole index: the rest are runs without the value
    if conn.dialect.name != "sqlite":
        # PostgreSQL keeps statistics and plans a narrow filter well by itself: counting
        # first only adds queries there (measured: 13 ms plain against 70 ms counted).
        return _plain(conn, exp_ids, expr, order, limit, offset, include_deleted)
    counts = _selective_conditions(conn, expr)
    if counts and min(counts.values()) <= _NARROW:
        # Narrow in any store: start from its matches, without counting the rest.
        estimate = max(1, min(counts.values()))
        narrow = [leaf for leaf, n in counts.items() if n <= 2 * estimate]
        return _plain(conn, exp_ids, expr, order, limit, offset, include_deleted, narrow, True)
    in_scope = select(literal(1)).select_from(runs)
    in_scope = in_scope.where(*_base_conditions(exp_ids, include_deleted=True, hint=False))
    runs_in_scope = _count(conn, in_scope)
    if runs_in_scope == 0:
        return []
    estimate = max(1, min([runs_in_scope, *counts.values()]))
    if walk is not None:
        # Entries to visit if matches are spread evenly along the index; worth it while that
        # is fewer than the matches the plain query would fetch and sort.
        expected = need * _count(conn, walk.entries()) // estimate + 1
        if visited < _WALK_SLACK * expected and expected <= estimate:
            found, _, _ = _walked(
                conn,
                walk,
                rest,
                expr,
                exp_ids,
                include_deleted,
                limit,
                offset,
                _WALK_SLACK * expected + 100,
            )
            if found is not None:
                return found
    # Start from the filter's matches: the runs its narrowest conditions match (from their
    # indexes; those about as narrow as the narrowest are intersected before any run is
    # read), the other conditions probe each run left, and those are sorted. Reading a run id
    # from a metric's (key, value) index costs a row lookup (it doesn't hold run_id; the param
    # and tag indexes do), so a broad list is dearer than probing the few runs the narrow one
    # leaves.
    selective = estimate * 4 < runs_in_scope
    narrow = [leaf for leaf, n in counts.items() if selective and n <= 2 * estimate]
    return _plain(conn, exp_ids, expr, order, limit, offset, include_deleted, narrow, selective)


def _plain(
    conn: Any,
    exp_ids: list[int] | None,
    expr: Expr | None,
    order: list[OrderBy],
    limit: int,
    offset: int,
    include_deleted: bool,
    listed: Sequence[Comparison] = (),
    selective: bool = False,
) -> list[str]:
    """The page by one query over the filter's matches, sorted: the runs of the ``listed``
    conditions (intersected) probed by the others (``selective``: one lookup per run, and
    SQLite told not to scan the experiment); by default every condition an ``IN`` list and
    the order of work left to the database's planner."""
    conditions = _base_conditions(exp_ids, include_deleted, hint=selective)
    if len(listed) > 1:
        conditions.append(runs.c.id.in_(intersect(*(_matching_ids(leaf) for leaf in listed))))
    elif listed:
        conditions.append(runs.c.id.in_(_matching_ids(listed[0])))
    conditions += [
        _compile(part, probe=selective) for part in _conjuncts(expr) if part not in listed
    ]
    stmt = select(runs.c.id).select_from(runs).where(and_(true(), *conditions))
    stmt, terms = _order_terms(stmt, order)
    return list(conn.execute(stmt.order_by(*terms).limit(limit).offset(offset)).scalars())


def search_run_ids(
    db: Database,
    experiments_: Iterable[str | int] | str | int | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    include_deleted: bool = False,
    offset: int = 0,
) -> list[str]:
    """The ids of the runs matching ``filter`` in ``experiments_`` (names or ids; None: all),
    sorted by ``order_by`` (then newest first, then id), ``max_results`` of them from
    ``offset`` on, in one SQL statement that uses the indexes (see the planning notes above):
    a page from 100,000 runs costs a few milliseconds when the filter is broad or narrow."""
    expr = parse_filter(filter)
    order = parse_order_by(order_by)
    with db.read() as conn:
        exp_ids = _experiment_ids(conn, experiments_)
        return _run_ids(conn, exp_ids, expr, order, max_results, offset, include_deleted)


def _floats(column: pd.Series) -> pd.Series:
    # Values arrive as text (NaN as null): make them floats.
    import pandas as pd

    return pd.Series([math.nan if v is None else float(v) for v in column], dtype="float64")


def _frame(rows: list[Any], columns: list[str]) -> pd.DataFrame:
    """Rows → DataFrame by columns (much faster than handing pandas the Row objects)."""
    import pandas as pd

    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame({c: list(v) for c, v in zip(columns, values, strict=True)})


_INFO_COLUMNS = [
    "run_id",
    "experiment_id",
    "experiment",
    "name",
    "status",
    "start_time",
    "end_time",
    "parent_run_id",
    "deleted",
]


_Wide = dict[str, dict[str, dict[str, Any]]]


def _fetch(db: Database, ids: list[str]) -> tuple[list[Any], _Wide]:
    """The runs' info rows (in no particular order) and, per section prefix, run id → its
    key/value pairs (metric values as text; NaN as None)."""
    info: list[Any] = []
    wide: dict[str, dict[str, dict[str, Any]]] = {"params.": {}, "metrics.": {}, "tags.": {}}
    with db.read() as conn:
        # One row per run with its key/value pairs as a JSON object: far fewer rows to
        # fetch than one per (run, key), which is what dominated the search time.
        aggregate = (
            func.json_object_agg if conn.dialect.name == "postgresql" else func.json_group_object
        )
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            info.extend(
                conn.execute(
                    select(
                        runs.c.id,
                        runs.c.experiment_id,
                        experiments.c.name,
                        runs.c.name,
                        runs.c.status,
                        runs.c.start_time,
                        runs.c.end_time,
                        runs.c.parent_run_id,
                        runs.c.deleted_at.is_not(None),
                    )
                    .join(experiments, experiments.c.id == runs.c.experiment_id)
                    .where(runs.c.id.in_(chunk))
                ).fetchall()
            )
            for prefix, table in (
                ("params.", params),
                ("metrics.", latest_metrics),
                ("tags.", tags),
            ):
                # Metric values travel as text: SQLite's JSON writes ±inf as invalid `Inf`.
                value = table.c.value.cast(Text) if prefix == "metrics." else table.c.value
                stmt = (
                    select(table.c.run_id, aggregate(table.c.key, value).cast(Text))
                    .where(table.c.run_id.in_(chunk))
                    .group_by(table.c.run_id)
                )
                for run_id, packed in conn.execute(stmt).fetchall():
                    wide[prefix][run_id] = orjson.loads(packed)
    return info, wide


def search_records(
    db: Database,
    experiments_: Iterable[str | int] | str | int | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    include_deleted: bool = False,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The runs :func:`search_runs` finds, as plain records in its order, without pandas:
    ``run_id``, ``name``, ``experiment``, ``experiment_id``, ``status``, ``start_time``,
    ``end_time`` (aware datetimes), ``duration`` (s), ``parent_run_id``, ``deleted`` and
    ``params``/``metrics``/``tags`` dicts (a metric whose latest value is NaN is ``nan``; one
    never logged is absent). What the CLI and the server list; :func:`search_page` pages."""
    ids = search_run_ids(db, experiments_, filter, order_by, max_results, include_deleted, offset)
    info, wide = _fetch(db, ids)
    by_id = {row[0]: row for row in info}
    records = []
    for run_id in ids:
        row = by_id.get(run_id)
        if row is None:  # deleted between the two queries
            continue
        _, exp_id, exp_name, name, status, start_ms, end_ms, parent, deleted = row
        start, end = to_datetime(start_ms), to_datetime(end_ms)
        metric_values = wide["metrics."].get(run_id, {})
        records.append(
            {
                "run_id": run_id,
                "name": name,
                "experiment": exp_name,
                "experiment_id": int(exp_id),
                "status": status,
                "start_time": start,
                "end_time": end,
                "duration": (end - start).total_seconds() if start and end else None,
                "parent_run_id": parent,
                "deleted": bool(deleted),
                "params": {k: str(v) for k, v in wide["params."].get(run_id, {}).items()},
                "metrics": {
                    k: math.nan if v is None else float(v) for k, v in metric_values.items()
                },
                "tags": {k: str(v) for k, v in wide["tags."].get(run_id, {}).items()},
            }
        )
    return records


@dataclass(frozen=True)
class RecordPage:
    """One page of run records, and the token of the next page (None on the last)."""

    records: list[dict[str, Any]]
    next_page_token: str | None


def page_offset(token: str | None) -> int:
    """The offset a page token stands for; a token that is not one is an InvalidFilter."""
    if token is None or token == "":
        return 0
    import base64

    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))["offset"]
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        raise InvalidFilter(
            f"Page token {token[:40]!r} is not one loopml gave out; pass the "
            "next_page_token of the previous page, or none for the first page."
        ) from exc
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidFilter(f"Page token {token[:40]!r} holds a bad offset ({value!r}).")
    return value


def page_token_for(offset: int) -> str:
    """The token of the page starting at ``offset``."""
    import base64

    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def search_page(
    db: Database,
    experiments_: Iterable[str | int] | str | int | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
    include_deleted: bool = False,
) -> RecordPage:
    """A page of :func:`search_records`, in the same order: pass ``next_page_token`` back
    for the next one (MLflow's paging). A run started meanwhile may shift later pages."""
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 0 < page_size <= 50_000:
        raise InvalidFilter(f"page_size must be an integer from 1 to 50000, got {page_size!r}.")
    offset = page_offset(page_token)
    found = search_records(
        db, experiments_, filter, order_by, page_size + 1, include_deleted, offset
    )
    more = len(found) > page_size
    return RecordPage(found[:page_size], page_token_for(offset + page_size) if more else None)


def search_runs(
    db: Database,
    experiments_: Iterable[str | int] | str | int | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """One row per run: ``run_id``, ``experiment``, ``name``, ``status``, times, then
    ``params.*``, ``metrics.*`` (latest value) and ``tags.*`` columns.

    A metric column holds NaN both where a run never logged the metric and where its latest
    value was NaN; ``frame.attrs["nan_metrics"]`` (run id → keys) names the second kind."""
    import pandas as pd

    ids = search_run_ids(db, experiments_, filter, order_by, max_results, include_deleted)
    info, wide = _fetch(db, ids)
    base = _frame(info, _INFO_COLUMNS)
    order = {run_id: i for i, run_id in enumerate(ids)}
    base = base.iloc[base["run_id"].map(order).argsort().to_numpy()].reset_index(drop=True)
    for col in ("start_time", "end_time"):
        base[col] = pd.to_datetime(base[col], unit="ms", utc=True)
    base["deleted"] = base["deleted"].astype(bool)
    parts = [base]
    run_ids = base["run_id"].tolist()
    for prefix, per_run in wide.items():
        if not per_run:
            continue
        frame = pd.DataFrame.from_records([per_run.get(r, {}) for r in run_ids])
        frame = frame[sorted(frame.columns)]
        if prefix == "metrics.":
            frame = frame.apply(_floats)
        frame.columns = [prefix + str(c) for c in frame.columns]
        parts.append(frame)
    frame = pd.concat(parts, axis=1) if len(parts) > 1 else base
    frame.attrs["nan_metrics"] = {
        run_id: sorted(key for key, value in values.items() if value is None)
        for run_id, values in wide["metrics."].items()
        if None in values.values()
    }
    return frame


def metric_steps(db: Database, run_id: str) -> dict[str, int]:
    """The highest step logged per metric key of a run (to continue numbering on resume)."""
    from sqlalchemy import func

    with db.read() as conn:
        rows = conn.execute(
            select(metrics.c.key, func.max(metrics.c.step))
            .where(metrics.c.run_id == run_id)
            .group_by(metrics.c.key)
        ).all()
    return {k: int(s) for k, s in rows}
