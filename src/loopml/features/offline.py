"""Training sets: point-in-time-correct, as-of-known-time feature retrieval in DuckDB.

For each entity row at time ``t`` and each view, the value is the view's row with the same
join keys that was *true* at ``t`` (event time ≤ ``t``) and *known* at ``t`` (created time ≤
``t``), the latest by event time, ties broken by created time (rows equal in keys, event and
created time are duplicates: which one is returned is not defined). A value older than the
view's TTL is null. A row with no such feature row keeps its
place with nulls: the result has the entity frame's length and order.

How (one statement, all in DuckDB):

1. ``ASOF LEFT JOIN`` of the entity rows to each view on the join keys and ``(t, +inf) >=
   (event, created)`` (just ``t >= event`` without created times): the latest row that was
   true at ``t``, a merge join. The pair is packed into one HUGEINT, and the join partitions
   on a 32-bit image of the keys (:func:`narrowing`): short keys sort much faster. Values
   older than the TTL are null.
2. If a row's match was created after ``t`` (a late row: rare when data arrives on time), or
   is another key's with the same image, that row is recomputed in the same statement from
   the rows known at ``t`` (an inner join built on those few rows, over the source held once
   in memory) and its values are taken from there.
3. The values stream to pandas and are put in the entity frame's order next to its columns.

:func:`plan_view_join` and :func:`plan_statement` build the SQL (pure);
:func:`historical_features` runs it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.features.definitions import (
    DTYPES,
    DataFrameSource,
    FeatureRef,
    FeatureView,
    FileSource,
    OnDemandFeatureView,
    PostgresSource,
    SqlSource,
)
from loopml.features.errors import (
    FeatureDefinitionError,
    InvalidEntityFrame,
    SourceNotFound,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

ROW = "__row"
TIME = "__t"
EVENT = "__event_ts"
CREATED = "__created_ts"
DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for feature work: UTC, spilling to ``temp_directory``."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if temp_directory is not None:
        temp_directory.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {literal(str(temp_directory))}")
    return con


# -- sources -----------------------------------------------------------------------------------


@dataclass
class SourceContext:
    """What registering sources needs: the workspace root, where pushed rows are kept, and
    fsspec options for object storage."""

    root: Path
    pushed_dir: Path | None = None
    storage_options: dict[str, Any] | None = None


def _file_list(source: FileSource, ctx: SourceContext, con: duckdb.DuckDBPyConnection) -> list[str]:
    path = source.path
    if "://" in path:
        import fsspec

        protocol = path.split("://", 1)[0]
        fs = fsspec.filesystem(protocol, **(ctx.storage_options or {}))
        if not con.filesystem_is_registered(protocol):
            con.register_filesystem(fs)
        pattern = path if any(c in path for c in "*?[") else path.rstrip("/")
        found = fs.glob(pattern)
        if found and not any(c in path for c in "*?[") and fs.isdir(pattern):
            found = fs.glob(f"{pattern}/**/*.{source.format}")
        files = [f if "://" in f else f"{protocol}://{f}" for f in found]
    else:
        full = Path(path) if os.path.isabs(path) else ctx.root / path
        if full.is_dir():
            files = sorted(str(p) for p in full.rglob(f"*.{source.format}"))
        else:
            files = sorted(glob.glob(str(full), recursive=True))
    if not files:
        raise SourceNotFound(
            f"The source {source.path!r} matches no {source.format} file"
            f"{'' if '://' in path else f' (looked in {ctx.root})'}: write the data there, or fix "
            "the path in the view's FileSource."
        )
    return files


def _non_empty_csv(view: str, source: FileSource, files: list[str]) -> list[str]:
    """``files`` less the local CSV files that hold nothing (no header, no rows: DuckDB
    would read them as one column named ``column0``); an error when all of them are."""

    def empty(file: str) -> bool:
        if "://" in file:
            return False
        try:
            if os.path.getsize(file) > 4096:
                return False
            with open(file, "rb") as fh:
                return not fh.read().strip()
        except OSError:
            return False

    kept = [f for f in files if not empty(f)]
    if not kept:
        where = (
            repr(source.path)
            if len(files) == 1
            else f"each of the {len(files)} files of {source.path!r}"
        )
        raise FeatureDefinitionError(
            f"The source of view {view!r} is empty: {where} has no header line and no rows. "
            "Write the data there (a header line naming the columns, then one row per line)."
        )
    return kept


def source_select(
    view: FeatureView, con: duckdb.DuckDBPyConnection, ctx: SourceContext, prefix: str
) -> str:
    """A SELECT of ``view``'s rows as the store reads them: join keys, ``__event_ts`` and
    ``__created_ts`` (UTC; the event time when the view has no created field) and the
    features, cast to their types, transformed, with pushed rows appended."""
    return source_with_key_types(view, con, ctx, prefix)[0]


def source_with_key_types(
    view: FeatureView, con: duckdb.DuckDBPyConnection, ctx: SourceContext, prefix: str
) -> tuple[str, dict[str, str]]:
    """:func:`source_select` and the DuckDB types of the view's join keys in it."""
    source = view.source
    if isinstance(source, FileSource):
        listed = _file_list(source, ctx, con)
        if source.format == "csv":
            listed = _non_empty_csv(view.name, source, listed)
        files = "[" + ", ".join(literal(f) for f in listed) + "]"
        if source.format == "csv":
            raw = f"SELECT * FROM read_csv({files}, auto_detect = true, union_by_name = true)"
        else:
            raw = f"SELECT * FROM read_parquet({files}, union_by_name = true)"
    elif isinstance(source, SqlSource):
        raw = source.query
    elif isinstance(source, DataFrameSource):
        con.register(f"{prefix}_frame", source.frame)
        raw = f"SELECT * FROM {prefix}_frame"
    elif isinstance(source, PostgresSource):
        con.register(f"{prefix}_frame", _read_postgres(source))
        raw = f"SELECT * FROM {prefix}_frame"
    else:  # pragma: no cover - definitions check the type
        raise FeatureDefinitionError(f"Unknown source {source!r}")
    if view.transform_sql is not None:
        raw = f"WITH source AS ({raw}) {view.transform_sql}"
    if view.transform is not None:
        frame = con.execute(raw).df()
        out = view.transform(frame)
        con.register(f"{prefix}_transformed", out)
        raw = f"SELECT * FROM {prefix}_transformed"
    try:
        described = {row[0]: row[1] for row in con.execute(f"DESCRIBE ({raw})").fetchall()}
    except Exception as exc:
        text = str(exc).splitlines()[0]
        raise FeatureDefinitionError(
            f"The source of view {view.name!r} can't be read: {text}"
        ) from exc
    ts, created = source.timestamp_field, source.created_timestamp_field
    needed = [*view.join_keys, ts, *([created] if created else []), *view.feature_names]
    missing = [c for c in needed if c not in described]
    if missing:
        raise FeatureDefinitionError(
            f"The source of view {view.name!r} has no column {', '.join(map(repr, missing))}; "
            f"it has {', '.join(described)}."
        )
    created_sql = (
        f"coalesce(CAST({quote(created)} AS TIMESTAMPTZ), CAST({quote(ts)} AS TIMESTAMPTZ))"
        if created
        else f"CAST({quote(ts)} AS TIMESTAMPTZ)"
    )
    features = ", ".join(
        f"CAST({quote(f.name)} AS {DTYPES[f.dtype]}) AS {quote(f.name)}" for f in view.schema
    )
    keys = ", ".join(quote(k) for k in view.join_keys)
    parts = [
        f"SELECT {keys}, CAST({quote(ts)} AS TIMESTAMPTZ) AS {EVENT}, {created_sql} AS {CREATED}, "
        f"{features} FROM ({raw}) WHERE {quote(ts)} IS NOT NULL"
    ]
    pushed = pushed_files(ctx, view.name)
    if pushed:
        names = [*view.join_keys, EVENT, CREATED, *view.feature_names]
        listing = ", ".join(quote(n) for n in names)
        files = "[" + ", ".join(literal(str(p)) for p in pushed) + "]"
        parts.append(f"SELECT {listing} FROM read_parquet({files}, union_by_name = true)")
        sql = " UNION ALL ".join(f"({p})" for p in parts)
        # The union may widen a key's type: ask DuckDB.
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE ({sql})").fetchall()}
        return sql, {k: types[k] for k in view.join_keys}
    return f"({parts[0]})", {k: described[k] for k in view.join_keys}


def pushed_files(ctx: SourceContext, view: str) -> list[Path]:
    if ctx.pushed_dir is None:
        return []
    folder = ctx.pushed_dir / view
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _read_postgres(source: PostgresSource) -> Any:
    import pandas as pd
    from sqlalchemy import create_engine

    url = source.url or os.environ.get("LOOPML_FEATURES_POSTGRES_URL")
    if not url:
        raise FeatureDefinitionError(
            "PostgresSource has no url: pass url= or set LOOPML_FEATURES_POSTGRES_URL."
        )
    engine = create_engine(url)
    query = source.query or f"SELECT * FROM {source.table}"
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(query, conn)
    except Exception as exc:
        raise SourceNotFound(
            f"The PostgreSQL source {source.table or 'query'} can't be read: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        engine.dispose()


# -- the entity frame --------------------------------------------------------------------------


def entity_frame(frame: Any, join_keys: Sequence[str], timestamp_column: str) -> pd.DataFrame:
    """The entity frame with ``__row`` (its order) and ``__t`` (UTC); bad frames raise
    :class:`InvalidEntityFrame` naming the missing or unreadable column."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        if hasattr(frame, "to_pandas"):
            frame = frame.to_pandas()
        else:
            raise InvalidEntityFrame(
                f"The entity frame must be a pandas DataFrame or Arrow table, "
                f"not {type(frame).__name__}."
            )
    missing = [k for k in join_keys if k not in frame.columns]
    if missing:
        raise InvalidEntityFrame(
            f"The entity frame has no join key column {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(str, frame.columns))})."
        )
    if timestamp_column not in frame.columns:
        raise InvalidEntityFrame(
            f"The entity frame has no timestamp column {timestamp_column!r}: add the time each "
            f"row's features are wanted at, or name the column with "
            f"event_timestamp_column= (it has {', '.join(map(str, frame.columns))})."
        )
    out = frame.copy()
    out[TIME] = utc_times(frame[timestamp_column], timestamp_column)
    if not pd.api.types.is_datetime64_any_dtype(frame[timestamp_column]):
        # Times held as objects (strings, naive and aware datetimes mixed) come back as the
        # UTC times they were read as: DuckDB can't scan a column of mixed datetimes.
        out[timestamp_column] = out[TIME]
    if out[TIME].isna().any():
        bad = int(out[TIME].isna().sum())
        raise InvalidEntityFrame(
            f"{bad} row(s) of the entity frame have no {timestamp_column!r}: every row needs "
            "the time its features are wanted at."
        )
    out[ROW] = range(len(out))
    return out


def utc_times(values: Any, column: str) -> pd.Series:
    """Times as UTC: aware values converted, naive ones read as UTC, mixed alike."""
    import pandas as pd

    try:
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC")
        if pd.api.types.is_datetime64_any_dtype(values):
            return values.dt.tz_localize("UTC")
        return pd.Series(
            [None if v is None or v is pd.NaT else _utc(pd.Timestamp(v)) for v in values],
            index=values.index,
            dtype="datetime64[us, UTC]",
        )
    except (ValueError, TypeError) as exc:
        raise InvalidEntityFrame(
            f"Column {column!r} holds values that aren't times: {str(exc).splitlines()[0]}"
        ) from exc


def _utc(value: Any) -> Any:
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")


# -- the join ----------------------------------------------------------------------------------

# The as-of key of a view with created times: (event, created) packed into one HUGEINT, event
# in the high 64 bits, created (shifted to be unsigned) in the low 64. Ordering the packed
# numbers is ordering the pairs; with a 32-bit key image, DuckDB sorts it with fixed-size
# keys (a struct would make them variable-size, much slower).
_LOW = "9223372036854775808::HUGEINT"  # 2**63: a signed microsecond count → 0 .. 2**64 - 1
_LOW_MAX = "18446744073709551615::HUGEINT"  # 2**64 - 1: "created at +infinity"


def packed_key(event: str, created: str | None) -> str:
    """An expression: ``(event, created)`` as one HUGEINT ordered like the pair (``created``
    None: the largest created time, as the probe of an entity row uses)."""
    low = _LOW_MAX if created is None else f"(epoch_us({created})::HUGEINT + {_LOW})"
    return f"((epoch_us({event})::HUGEINT << 64) + {low})"


_NARROW_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER"}
_WIDE_INTEGERS = {"BIGINT": "int", "UBIGINT": "uint"}  # image: the low 32 bits
_HASHABLE = _NARROW_INTEGERS | set(_WIDE_INTEGERS) | {"HUGEINT", "UHUGEINT", "VARCHAR", "UUID"}
_HASHABLE |= {"DATE", "BOOLEAN"}


def narrowing(types: Sequence[tuple[str, str]]) -> str | None:
    """How the as-of join can partition on a 32-bit image of join keys of these (entity
    frame, source) DuckDB types: ``"int"``/``"uint"`` (the low 32 bits of one BIGINT/UBIGINT
    key; the high 32 tell keys of one image apart), ``"hash"`` (32 bits of their hash) or None
    (the keys themselves: already short, of types that differ, or whose equality isn't
    equality of their hash, like floats)."""
    if any(entity != source for entity, source in types):
        return None
    kinds = [source for _, source in types]
    if len(kinds) == 1 and kinds[0] in _NARROW_INTEGERS:
        return None
    if len(kinds) == 1 and kinds[0] in _WIDE_INTEGERS:
        return _WIDE_INTEGERS[kinds[0]]
    return "hash" if all(k in _HASHABLE for k in kinds) else None


def key_high(key: str, narrow: str) -> str:
    """An expression: the high 32 bits of an integer key with image ``narrow``."""
    return f"({quote(key)} >> 32)::{'INTEGER' if narrow == 'int' else 'UINTEGER'}"


def key_image(keys: Sequence[str], narrow: str) -> str:
    """An expression: the 32-bit image of ``keys`` (null when one is null: it matches none)."""
    if narrow in ("int", "uint"):
        return f"({quote(keys[0])} & 4294967295)::UINTEGER"
    nulls = " OR ".join(f"{quote(k)} IS NULL" for k in keys)
    listing = ", ".join(quote(k) for k in keys)
    return f"CASE WHEN {nulls} THEN NULL ELSE (hash({listing}) & 4294967295)::UINTEGER END"


@dataclass(frozen=True)
class ViewJoin:
    """How one view's values join the entity rows (see :func:`plan_view_join`).

    The statement of :func:`plan_statement` has a materialized CTE ``__m``: the entity rows
    ``e`` with every view's as-of join (``join``) and its ``matched`` select expressions. The
    rows whose match was created after the row's time (``redo``, a column of ``__m``) are
    recomputed by ``recompute`` (a CTE named ``name``) and the final ``columns`` take the
    recomputed values for them."""

    alias: str
    source: str  # the source's relation in the statement (a CTE or view name)
    probe: tuple[str, ...]  # select expressions the probe ``e`` needs (over its columns)
    materialize: str | None  # the source's CTE (``name AS MATERIALIZED (...)``) or None
    join: str  # an ASOF LEFT JOIN clause against the probe ``e``
    matched: tuple[str, ...]  # select expressions of ``__m``
    recompute: str | None  # a CTE: ``__row``, ``__t`` and ``__best`` (event and values)
    columns: tuple[str, ...]  # final select expressions, one per feature, TTL-guarded


def plan_view_join(
    keys: Sequence[str],
    features: Sequence[str],
    outputs: Sequence[str],
    ttl_seconds: float | None,
    source: str,
    alias: str,
    created: bool = True,
    narrow: str | None = None,
) -> ViewJoin:
    """The SQL that gives a view's values per entity row ``e`` (which has ``__row``, ``__t``,
    the join keys, the expressions of ``probe`` and, with created times, ``__k``, the packed
    probe key of :func:`packed_key`, and ``__known``, ``t`` as its low bits), pure.

    One as-of join finds, per entity row, the view's latest row by (event, created) with an
    event time at or before the row's; when that row was created after the row's time (a late
    row), the rows known then are searched in the same statement: an inner join built on the
    (few) late entity rows, over the source held once in memory.

    ``narrow`` (views with created times; see :func:`narrowing`): the as-of join partitions on
    a 32-bit image of the join keys (DuckDB sorts short keys much faster), ``"int"`` for one
    integer key, ``"hash"`` for others; a match whose keys differ (two keys with one image)
    is recomputed like a late row."""
    on = " AND ".join(f"e.{quote(k)} = {alias}.{quote(k)}" for k in keys)
    micros = None if ttl_seconds is None else int(ttl_seconds * 1_000_000)

    def fresh(event: str, time: str) -> str:
        """A condition: the matched row exists and is within the TTL at the row's time."""
        if micros is None:
            return f"{event} IS NOT NULL"
        return f"{event} >= {time} - to_microseconds(CAST({micros} AS BIGINT))"

    value = [f"{alias}_{j}" for j in range(len(features))]
    event, redo = f"{alias}.{EVENT}", f"{alias}__redo"
    # The values of the match, null when it is older than the TTL (or there is none).
    matched = [
        f"CASE WHEN {fresh(event, 'e.' + TIME)} THEN {alias}.{quote(f)} END AS {v}"
        for f, v in zip(features, value, strict=True)
    ]
    if not created:
        # Created times are the event times: the latest event is known at once, no late rows.
        join = f"ASOF LEFT JOIN {source} {alias} ON {on} AND e.{TIME} >= {event}"
        columns = tuple(f"m.{v} AS {quote(o)}" for v, o in zip(value, outputs, strict=True))
        return ViewJoin(alias, source, (), None, join, tuple(matched), None, columns)

    held = f"{alias}__src"
    materialize = f"{held} AS MATERIALIZED (SELECT * FROM {source})"
    # Event and created times are read from the packed key (two fewer columns for the join
    # to carry): event ≥ t - ttl is __k ≥ (t - ttl) << 64; created > t compares its low bits.
    probe: list[str] = []
    if micros is None:
        guard = f"{alias}.__k IS NOT NULL"
    else:
        probe.append(
            f"((epoch_us({TIME}) - CAST({micros} AS BIGINT))::HUGEINT << 64) AS {alias}__floor"
        )
        guard = f"{alias}.__k >= e.{alias}__floor"
    matched = [
        f"CASE WHEN {guard} THEN {alias}.{quote(f)} END AS {v}"
        for f, v in zip(features, value, strict=True)
    ]
    late = f"({alias}.__k & {_LOW_MAX}) > e.__known"
    if narrow is None:
        extra = ""
    else:
        image = f"{alias}__h"
        probe.append(f"{key_image(keys, narrow)} AS {image}")
        extra = f", {key_image(keys, narrow)} AS __h"
        on = f"e.{image} = {alias}.__h"
        if narrow == "hash":
            late += " OR " + " OR ".join(f"e.{quote(k)} <> {alias}.{quote(k)}" for k in keys)
        else:  # the high bits (4 bytes) tell keys apart: the join carries them, not the key
            probe.append(f"{key_high(keys[0], narrow)} AS {alias}__hi")
            extra += f", {key_high(keys[0], narrow)} AS __hi"
            late += f" OR e.{alias}__hi <> {alias}.__hi"
    join = (
        f"ASOF LEFT JOIN (SELECT *, {packed_key(EVENT, CREATED)} AS __k{extra} FROM {held}) "
        f"{alias} ON {on} AND e.__k >= {alias}.__k"
    )
    matched.append(f"coalesce({late}, false) AS {redo}")
    # The rows known at the late row's time: the latest by (event, created). Late rows are
    # few: the join's hash table is built on them, not on the source.
    name = f"{alias}__late"
    on_late = " AND ".join(f"l.{quote(k)} = f.{quote(k)}" for k in keys)
    best = ", ".join(
        [f"__ev := f.{EVENT}"]
        + [f"{v} := f.{quote(f)}" for f, v in zip(features, value, strict=True)]
    )
    recompute = (
        f"{name} AS (SELECT l.{ROW}, l.{TIME}, arg_max(struct_pack({best}), "
        f"{packed_key('f.' + EVENT, 'f.' + CREATED)}) AS __best "
        f"FROM __m l JOIN {held} f ON {on_late} AND f.{EVENT} <= l.{TIME} "
        f"AND f.{CREATED} <= l.{TIME} WHERE l.{redo} GROUP BY l.{ROW}, l.{TIME})"
    )
    guard = fresh(f"{name}.__best.__ev", f"{name}.{TIME}")
    columns = tuple(
        f"CASE WHEN m.{redo} THEN (CASE WHEN {guard} THEN {name}.__best.{v} END) "
        f"ELSE m.{v} END AS {quote(o)}"
        for v, o in zip(value, outputs, strict=True)
    )
    return ViewJoin(
        alias, held, tuple(probe), materialize, join, tuple(matched), recompute, columns
    )


def plan_statement(plans: Sequence[ViewJoin], keys: Sequence[str], entities: str) -> str:
    """The one statement of a training set: every view's values (the select expressions of
    ``plans``) per row of ``entities`` (``__row``, ``__t`` and ``keys``), with ``__row``
    first, in no particular order (:func:`historical_features` puts them in place).

    ``__m`` holds the entity rows with every view's as-of match; each view with late rows
    recomputes them, and the final select takes those values in their place."""
    probe = ", ".join([ROW, TIME, *(quote(k) for k in keys), *(x for p in plans for x in p.probe)])
    if any(p.recompute for p in plans):
        # The packed probe key (t, +inf), and t as the low bits of a packed key: a match
        # whose low bits are greater was created after t.
        probe += f", {packed_key(TIME, None)} AS __k, epoch_us({TIME})::HUGEINT + {_LOW} AS __known"
    ctes = [p.materialize for p in plans if p.materialize]
    matched = [f"e.{ROW}", f"e.{TIME}", *(f"e.{quote(k)}" for k in keys)]
    matched += [m for p in plans for m in p.matched]
    joins = " ".join(p.join for p in plans)
    ctes.append(
        f"__m AS MATERIALIZED (SELECT {', '.join(matched)} FROM "
        f"(SELECT {probe} FROM {entities}) e {joins})"
    )
    ctes += [p.recompute for p in plans if p.recompute]
    late = " ".join(
        f"LEFT JOIN {p.alias}__late ON {p.alias}__late.{ROW} = m.{ROW}"
        for p in plans
        if p.recompute
    )
    columns = ", ".join(c for p in plans for c in p.columns)
    return f"WITH {', '.join(ctes)} SELECT m.{ROW}, {columns} FROM __m m {late}"


def column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name → DuckDB type of ``relation``."""
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {relation}").fetchall()}


def output_names(
    refs: Sequence[FeatureRef], full_feature_names: bool
) -> dict[tuple[str, str], str]:
    """(view, feature) → output column; bare names that collide are an error."""
    names: dict[tuple[str, str], str] = {}
    seen: dict[str, str] = {}
    for ref in refs:
        for feature in ref.features:
            column = f"{ref.view.name}__{feature}" if full_feature_names else feature
            if column in seen:
                raise FeatureDefinitionError(
                    f"Feature {feature!r} comes from both {seen[column]!r} and "
                    f"{ref.view.name!r}: pass full_feature_names=True to get view__feature columns."
                )
            seen[column] = ref.view.name
            names[(ref.view.name, feature)] = column
    return names


def historical_features(
    con: duckdb.DuckDBPyConnection,
    ctx: SourceContext,
    refs: Sequence[FeatureRef],
    entity_df: Any,
    *,
    full_feature_names: bool = False,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
) -> pd.DataFrame:
    """The entity frame with the features of ``refs`` as of each row's time (see module doc).

    One statement chains every view's as-of join onto the entity rows, recomputes the few
    rows whose match was created after their time, and streams the values to pandas in the
    entity frame's order; the entity frame's own columns are kept as they are."""
    import numpy as np
    import pandas as pd

    stored, on_demand = split_refs(refs)
    keys = list(dict.fromkeys(k for ref in stored for k in ref.view.join_keys))  # type: ignore[union-attr]
    frame = entity_frame(entity_df, keys, timestamp_column)
    original = [c for c in frame.columns if c not in (ROW, TIME)]
    names = output_names(refs, full_feature_names)
    # Only what the joins read goes to DuckDB; the other columns stay in pandas.
    con.register("__entities", frame[[ROW, TIME, *keys]])
    try:
        plans: list[ViewJoin] = []
        outputs: list[str] = []
        entity_types = column_types(con, "__entities")
        for i, ref in enumerate(stored):
            view = ref.view
            assert isinstance(view, FeatureView)
            source_sql, key_types = source_with_key_types(view, con, ctx, f"__src_{i}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW __source_{i} AS {source_sql}")
            # An on-demand view's input that wasn't asked for is fetched as view__feature
            # (dropped from the result after the function ran).
            view_outputs = [names.get((view.name, f), f"{view.name}__{f}") for f in ref.features]
            created = view.source.created_timestamp_field is not None or bool(
                pushed_files(ctx, view.name)
            )
            narrow = None
            if created:  # a view without created times has no recomputation to fall back on
                narrow = narrowing([(entity_types[k], key_types[k]) for k in view.join_keys])
            plans.append(
                plan_view_join(
                    view.join_keys,
                    ref.features,
                    view_outputs,
                    view.ttl.total_seconds() if view.ttl is not None else None,
                    f"__source_{i}",
                    f"v{i}",
                    created=created,
                    narrow=narrow,
                )
            )
            outputs += view_outputs
        values = con.execute(plan_statement(plans, keys, "__entities")).df()
    finally:
        con.unregister("__entities")
    # The statement's rows come in any order: row ``__row`` of the entity frame goes there.
    place = np.empty(len(values), dtype=np.int64)
    place[values[ROW].to_numpy()] = np.arange(len(values))
    values = values.drop(columns=ROW).take(place).reset_index(drop=True)
    out = pd.concat([frame[original].reset_index(drop=True), values], axis=1)
    out = apply_on_demand(out, on_demand, names, full_feature_names)
    keep = original + [names[(ref.view.name, f)] for ref in refs for f in ref.features]
    return out[keep].reset_index(drop=True)


def split_refs(refs: Sequence[FeatureRef]) -> tuple[list[FeatureRef], list[FeatureRef]]:
    """Stored refs (with every input an on-demand view needs added) and on-demand refs."""
    stored: dict[str, list[str]] = {}
    views: dict[str, FeatureView] = {}
    on_demand = []
    for ref in refs:
        if isinstance(ref.view, OnDemandFeatureView):
            on_demand.append(ref)
            needed = ref.view.inputs
        else:
            needed = [ref]
        for item in needed:
            assert isinstance(item.view, FeatureView)
            views[item.view.name] = item.view
            bucket = stored.setdefault(item.view.name, [])
            bucket.extend(f for f in item.features if f not in bucket)
    return [FeatureRef(views[n], tuple(fs)) for n, fs in stored.items()], on_demand


def apply_on_demand(
    frame: pd.DataFrame,
    on_demand: Sequence[FeatureRef],
    names: dict[tuple[str, str], str],
    full_feature_names: bool,
) -> pd.DataFrame:
    """Add on-demand features: each view's function over its inputs (plain names) and the
    request fields (columns of ``frame``)."""
    import pandas as pd

    for ref in on_demand:
        view = ref.view
        assert isinstance(view, OnDemandFeatureView)
        inputs = pd.DataFrame(index=frame.index)
        for item in view.inputs:
            for feature in item.features:
                # Its output column when asked for, else view__feature (never a bare name
                # that another view's feature may hold).
                asked = names.get((item.view.name, feature))
                source = asked if asked in frame.columns else f"{item.view.name}__{feature}"
                inputs[feature] = frame[source]
        for request in view.request_fields:
            if request.name not in frame.columns:
                raise InvalidEntityFrame(
                    f"On-demand view {view.name!r} needs the request field {request.name!r}: "
                    "add it as a column of the entity frame (or to each entity row online)."
                )
            inputs[request.name] = frame[request.name]
        computed = view.function(inputs)
        for feature in ref.features:
            if feature not in computed.columns:
                raise FeatureDefinitionError(
                    f"On-demand view {view.name!r} returned no column {feature!r}."
                )
            frame[names[(view.name, feature)]] = computed[feature].to_numpy()
    return frame


def time_range_entities(
    con: duckdb.DuckDBPyConnection,
    ctx: SourceContext,
    refs: Sequence[FeatureRef],
    start: datetime,
    end: datetime,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
) -> pd.DataFrame:
    """Every (entity, event time) of the views of ``refs`` between ``start`` and ``end``: the
    entity frame of a retrieval by time range."""
    stored, _ = split_refs(refs)
    keys = stored[0].view.join_keys  # type: ignore[union-attr]
    for ref in stored[1:]:
        if ref.view.join_keys != keys:  # type: ignore[union-attr]
            raise FeatureDefinitionError(
                "A retrieval by time range needs views with the same join keys; "
                f"{stored[0].view.name!r} and {ref.view.name!r} differ. Pass an entity frame."
            )
    parts = []
    cols = ", ".join(quote(k) for k in keys)
    for i, ref in enumerate(stored):
        assert isinstance(ref.view, FeatureView)
        sql = source_select(ref.view, con, ctx, f"__range_{i}")
        parts.append(
            f"SELECT {cols}, {EVENT} AS {quote(timestamp_column)} FROM ({sql}) "
            f"WHERE {EVENT} BETWEEN $start AND $end"
        )
    query = f"SELECT DISTINCT * FROM ({' UNION '.join(parts)}) ORDER BY {quote(timestamp_column)}, {cols}"
    return con.execute(query, {"start": start, "end": end}).df()
