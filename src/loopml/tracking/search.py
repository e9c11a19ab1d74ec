"""Reading runs back: one run, a metric's history, and filtered, ordered search across runs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Text, and_, false, func, not_, or_, select, true
from sqlalchemy.sql import Select

from loopml.exceptions import ExperimentNotFound, InvalidFilter, RunNotFound
from loopml.store.db import Database
from loopml.tracking.filter import (
    BoolOp,
    Comparison,
    Expr,
    Key,
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

_CHUNK = 500


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


def _compile(expr: Expr) -> ColumnElement[bool]:
    if isinstance(expr, BoolOp):
        parts = [_compile(item) for item in expr.items]
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
    table = {"metric": latest_metrics, "param": params, "tag": tags}[key.kind]
    # `id IN (SELECT run_id … WHERE key = ? AND value …)` lets the (key, value) index do the
    # work once, instead of one correlated lookup per run.
    present = select(table.c.run_id).where(table.c.key == key.name)
    if op == "is null":
        return runs.c.id.not_in(present)
    if op == "is not null":
        return runs.c.id.in_(present)
    if key.kind == "metric":
        condition = _numeric_condition(table.c.value, op, value)
    else:
        condition = _string_condition(table.c.value, op, value)
    return runs.c.id.in_(present.where(condition))


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


def _ordered(stmt: Select[Any], order_by: Sequence[str] | str | None) -> Select[Any]:
    for i, clause in enumerate(parse_order_by(order_by)):
        key = clause.key
        if key.kind == "attribute":
            column: Any = _attribute_column(key)
        else:
            table = {"metric": latest_metrics, "param": params, "tag": tags}[key.kind]
            alias = table.alias(f"order_{i}")
            stmt = stmt.outerjoin(alias, and_(alias.c.run_id == runs.c.id, alias.c.key == key.name))
            column = alias.c.value
        stmt = stmt.order_by(
            column.desc().nulls_last() if clause.descending else column.asc().nulls_last()
        )
    return stmt.order_by(runs.c.start_time.desc(), runs.c.id)


def search_run_ids(
    db: Database,
    experiments_: Iterable[str | int] | str | int | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    include_deleted: bool = False,
    offset: int = 0,
) -> list[str]:
    expr = parse_filter(filter)
    stmt: Select[Any] = select(runs.c.id).select_from(runs)
    with db.read() as conn:
        exp_ids = _experiment_ids(conn, experiments_)
        conditions: list[ColumnElement[bool]] = []
        if exp_ids is not None:
            conditions.append(runs.c.experiment_id.in_(exp_ids))
        if not include_deleted:
            conditions.append(runs.c.deleted_at.is_(None))
        if expr is not None:
            conditions.append(_compile(expr))
        stmt = stmt.where(and_(true(), *conditions))
        stmt = _ordered(stmt, order_by).limit(max_results).offset(offset)
        return list(conn.execute(stmt).scalars())


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
                    wide[prefix][run_id] = json.loads(packed)
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
