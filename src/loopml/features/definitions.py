"""Feature definitions: written once in Python, used for training sets, materialization and
online lookups alike.

    customer = Entity("customer", join_keys=["customer_id"])
    stats = FeatureView(
        "customer_stats", entities=[customer],
        source=FileSource("data/customer_stats.parquet", timestamp_field="event_ts",
                          created_timestamp_field="created_ts"),
        ttl=timedelta(days=30),
        schema=[Field("avg_purchase_30d", "float64"), Field("n_orders_7d", "int64")],
    )
    churn_v1 = FeatureService("churn_v1", [stats[["avg_purchase_30d", "n_orders_7d"]]])

Every definition has a :meth:`spec`: plain JSON data that says what it is (a Python transform
by the digest of its code). Applying definitions stores a new version whenever the spec
changes (:mod:`loopml.features.registry`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopml.features.errors import FeatureDefinitionError, FeatureNotFound

if TYPE_CHECKING:
    import pandas as pd

#: Field types and the DuckDB types they are read as.
DTYPES: Mapping[str, str] = {
    "float64": "DOUBLE",
    "float32": "FLOAT",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeatureDefinitionError(
            f"{what} name {name!r} must be a letter or _ then letters, digits or _ "
            "(at most 128): it becomes a column and a SQL identifier."
        )
    return name


def _names(values: Iterable[str] | str, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [values]
    out = tuple(_check_name(v, what) for v in values)
    if len(set(out)) != len(out):
        raise FeatureDefinitionError(f"{what} names repeat: {', '.join(out)}.")
    return out


def code_digest(function: Callable[..., Any]) -> str:
    """The digest of a transform's source code (or its bytecode when the source is gone)."""
    try:
        text = inspect.getsource(function).encode()
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        text = code.co_code if code is not None else repr(function).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


@dataclass(frozen=True)
class Entity:
    """What features describe (a customer, a driver), and the column(s) that identify it."""

    name: str
    join_keys: Sequence[str]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "Entity")
        keys = _names(self.join_keys, f"Entity {self.name!r} join key")
        if not keys:
            raise FeatureDefinitionError(f"Entity {self.name!r} needs at least one join key.")
        object.__setattr__(self, "join_keys", keys)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "entity",
            "name": self.name,
            "join_keys": list(self.join_keys),
            "description": self.description,
        }


@dataclass(frozen=True)
class Field:
    """One feature (or request field) and its type: one of :data:`DTYPES`."""

    name: str
    dtype: str = "float64"

    def __post_init__(self) -> None:
        _check_name(self.name, "Field")
        if self.dtype not in DTYPES:
            raise FeatureDefinitionError(
                f"Field {self.name!r} has type {self.dtype!r}; use one of {', '.join(DTYPES)}."
            )

    def spec(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype}


# -- sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source(ABC):
    """Where a view's rows come from. ``timestamp_field`` is when a value became true (the
    event time); ``created_timestamp_field``, if given, is when it became known: a row is
    invisible before it was created, so late corrections can't leak into the past."""

    timestamp_field: str
    created_timestamp_field: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.timestamp_field, "Timestamp field")
        if self.created_timestamp_field is not None:
            _check_name(self.created_timestamp_field, "Created timestamp field")
            if self.created_timestamp_field == self.timestamp_field:
                raise FeatureDefinitionError(
                    "created_timestamp_field must differ from timestamp_field."
                )

    @property
    @abstractmethod
    def kind(self) -> str:
        """The source's kind in its spec: ``file``, ``sql``, ``dataframe``, ``postgres``."""

    @abstractmethod
    def detail(self) -> dict[str, Any]:
        """What identifies the data, for the spec (never credentials)."""

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.detail(),
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }


@dataclass(frozen=True)
class FileSource(Source):
    """Parquet or CSV: a file, a folder of Parquet files, or a glob (``data/stats/*.parquet``),
    local (relative to the workspace) or on object storage (``s3://bucket/stats/*.parquet``)."""

    path: str = ""
    format: str | None = None  # "parquet" or "csv"; from the suffix when None

    def __init__(
        self,
        path: str,
        timestamp_field: str,
        created_timestamp_field: str | None = None,
        format: str | None = None,
    ) -> None:
        object.__setattr__(self, "path", str(path))
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        chosen = format or ("csv" if str(path).lower().endswith((".csv", ".csv.gz")) else "parquet")
        if chosen not in {"parquet", "csv"}:
            raise FeatureDefinitionError(f"FileSource format {format!r}: use 'parquet' or 'csv'.")
        object.__setattr__(self, "format", chosen)
        if not str(path).strip():
            raise FeatureDefinitionError("FileSource needs a path (a file, folder or glob).")
        self.__post_init__()

    @property
    def kind(self) -> str:
        return "file"

    def detail(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format}


@dataclass(frozen=True)
class SqlSource(Source):
    """A DuckDB query (it may read files itself: ``select * from 'data/*.parquet'``)."""

    query: str = ""

    def __init__(
        self, query: str, timestamp_field: str, created_timestamp_field: str | None = None
    ) -> None:
        if not isinstance(query, str) or not query.strip():
            raise FeatureDefinitionError("SqlSource needs a query.")
        object.__setattr__(self, "query", query.strip().rstrip(";"))
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        self.__post_init__()

    @property
    def kind(self) -> str:
        return "sql"

    def detail(self) -> dict[str, Any]:
        return {"query": self.query}


@dataclass(frozen=True, eq=False)
class DataFrameSource(Source):
    """An in-memory pandas DataFrame or Arrow table (tests, notebooks, pushed data)."""

    frame: Any = None

    def __init__(
        self, frame: Any, timestamp_field: str, created_timestamp_field: str | None = None
    ) -> None:
        if not hasattr(frame, "columns") and not hasattr(frame, "schema"):
            raise FeatureDefinitionError(
                f"DataFrameSource takes a pandas DataFrame or an Arrow table, "
                f"not {type(frame).__name__}."
            )
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        self.__post_init__()

    @property
    def kind(self) -> str:
        return "dataframe"

    def detail(self) -> dict[str, Any]:
        # An Arrow table's .columns are its data: its names are in its schema.
        schema = getattr(self.frame, "schema", None)
        if schema is not None and hasattr(schema, "names"):
            return {"columns": list(schema.names)}
        return {"columns": [str(c) for c in self.frame.columns]}


@dataclass(frozen=True)
class PostgresSource(Source):
    """A PostgreSQL table or query; ``url`` (``postgresql+psycopg://…``) defaults to the
    ``LOOPML_FEATURES_POSTGRES_URL`` variable so no password lands in a definition."""

    table: str | None = None
    query: str | None = None
    url: str | None = None

    def __init__(
        self,
        timestamp_field: str,
        *,
        table: str | None = None,
        query: str | None = None,
        url: str | None = None,
        created_timestamp_field: str | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise FeatureDefinitionError("PostgresSource takes table= or query=, one of them.")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        self.__post_init__()

    @property
    def kind(self) -> str:
        return "postgres"

    def detail(self) -> dict[str, Any]:
        from sqlalchemy.engine import make_url

        safe = make_url(self.url).render_as_string(hide_password=True) if self.url else None
        return {"table": self.table, "query": self.query, "url": safe}


@dataclass(frozen=True)
class RequestSource:
    """Fields that arrive with the request (not stored), for on-demand features."""

    name: str
    schema: Sequence[Field]

    def __post_init__(self) -> None:
        _check_name(self.name, "RequestSource")
        object.__setattr__(self, "schema", tuple(self.schema))

    def spec(self) -> dict[str, Any]:
        return {"kind": "request", "name": self.name, "schema": [f.spec() for f in self.schema]}


# -- views -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRef:
    """Some features of one view: ``stats[["avg_purchase_30d"]]`` or ``"customer_stats:avg_purchase_30d"``."""

    view: FeatureView | OnDemandFeatureView
    features: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [f"{self.view.name}:{name}" for name in self.features]


class _Selectable:
    name: str
    schema: Sequence[Field]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    def field(self, name: str) -> Field:
        for candidate in self.schema:
            if candidate.name == name:
                return candidate
        raise FeatureNotFound(
            f"{self.name!r} has no feature {name!r}.{_close(name, self.feature_names)}"
        )

    def __getitem__(self, names: str | Sequence[str]) -> FeatureRef:
        chosen = [names] if isinstance(names, str) else list(names)
        for name in chosen:
            self.field(name)
        return FeatureRef(self, tuple(chosen))  # type: ignore[arg-type]

    def ref(self) -> FeatureRef:
        return FeatureRef(self, self.feature_names)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class FeatureView(_Selectable):
    """Features of some entities from one source, valid for ``ttl`` after their event time.

    A transform is defined once and used for training sets, materialization and pushes:
    ``transform_sql`` is a DuckDB query over the source, named ``source``; ``transform`` is a
    vectorized Python function ``DataFrame -> DataFrame`` over the source's rows.
    """

    name: str
    entities: Sequence[Entity]
    source: Source
    schema: Sequence[Field]
    ttl: timedelta | None = None
    transform_sql: str | None = None
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    online: bool = True
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "FeatureView")
        entities = tuple(self.entities)
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r} needs entities=[Entity(...), ...]."
            )
        if not isinstance(self.source, Source):
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r}: source must be a FileSource, SqlSource, "
                f"DataFrameSource or PostgresSource, not {type(self.source).__name__}."
            )
        schema = tuple(self.schema)
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r} needs schema=[Field(name, dtype), ...]."
            )
        names = [f.name for f in schema]
        if len(set(names)) != len(names):
            raise FeatureDefinitionError(f"FeatureView {self.name!r} repeats a feature name.")
        keys = [k for e in entities for k in e.join_keys]
        reserved = {*keys, self.source.timestamp_field, self.source.created_timestamp_field}
        clash = sorted(set(names) & reserved)
        if clash:
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r}: {', '.join(clash)} is a join key or timestamp "
                "field, not a feature."
            )
        if self.ttl is not None and (
            not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)
        ):
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r}: ttl must be a positive timedelta (or None)."
            )
        if self.transform_sql is not None and self.transform is not None:
            raise FeatureDefinitionError(
                f"FeatureView {self.name!r}: give transform_sql or transform, not both."
            )
        if self.transform is not None and not callable(self.transform):
            raise FeatureDefinitionError(f"FeatureView {self.name!r}: transform must be callable.")
        object.__setattr__(self, "entities", entities)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "tags", dict(self.tags))

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for e in self.entities for k in e.join_keys))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "feature_view",
            "name": self.name,
            "entities": [e.spec() for e in self.entities],
            "source": self.source.spec(),
            "schema": [f.spec() for f in self.schema],
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
            "transform_sql": self.transform_sql,
            "transform": code_digest(self.transform) if self.transform is not None else None,
            "online": self.online,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }


@dataclass(frozen=True, eq=False)
class OnDemandFeatureView(_Selectable):
    """Features computed from request data and stored features by one vectorized function,
    the same in training sets and online lookups: ``function(frame) -> frame`` receives the
    source features (plain names) and request fields as columns and returns ``schema``."""

    name: str
    sources: Sequence[FeatureRef | FeatureView | RequestSource]
    schema: Sequence[Field]
    function: Callable[[pd.DataFrame], pd.DataFrame]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "OnDemandFeatureView")
        if not callable(self.function):
            raise FeatureDefinitionError(f"OnDemandFeatureView {self.name!r} needs a function.")
        sources = tuple(self.sources)
        for source in sources:
            if not isinstance(source, (FeatureRef, FeatureView, RequestSource)):
                raise FeatureDefinitionError(
                    f"OnDemandFeatureView {self.name!r}: a source is a view, view[[...]] or a "
                    f"RequestSource, not {type(source).__name__}."
                )
        schema = tuple(self.schema)
        if not schema:
            raise FeatureDefinitionError(f"OnDemandFeatureView {self.name!r} needs a schema.")
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "schema", schema)

    @property
    def inputs(self) -> list[FeatureRef]:
        """The stored features the function reads."""
        out = []
        for source in self.sources:
            if isinstance(source, FeatureView):
                out.append(source.ref())
            elif isinstance(source, FeatureRef):
                out.append(source)
        return out

    @property
    def request_fields(self) -> list[Field]:
        return [f for s in self.sources if isinstance(s, RequestSource) for f in s.schema]

    def spec(self) -> dict[str, Any]:
        sources: list[Any] = []
        for source in self.sources:
            if isinstance(source, RequestSource):
                sources.append(source.spec())
            else:
                ref = source.ref() if isinstance(source, FeatureView) else source
                sources.append({"kind": "features", "features": ref.names})
        return {
            "kind": "on_demand_feature_view",
            "name": self.name,
            "sources": sources,
            "schema": [f.spec() for f in self.schema],
            "function": code_digest(self.function),
            "description": self.description,
        }


Selection = FeatureRef | FeatureView | OnDemandFeatureView


@dataclass(frozen=True, eq=False)
class FeatureService:
    """A named set of features: what a model reads. Its version is the model version's
    feature contract."""

    name: str
    features: Sequence[Selection]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "FeatureService")
        items = tuple(self.features)
        if not items:
            raise FeatureDefinitionError(f"FeatureService {self.name!r} names no features.")
        for item in items:
            if not isinstance(item, (FeatureRef, FeatureView, OnDemandFeatureView)):
                raise FeatureDefinitionError(
                    f"FeatureService {self.name!r}: use views or view[[...]], "
                    f"not {type(item).__name__}."
                )
        object.__setattr__(self, "features", items)

    def refs(self) -> list[FeatureRef]:
        return [item if isinstance(item, FeatureRef) else item.ref() for item in self.features]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "feature_service",
            "name": self.name,
            "features": [name for ref in self.refs() for name in ref.names],
            "description": self.description,
        }


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A definition's version identity: the digest of its spec as canonical JSON."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _close(name: str, candidates: Iterable[str]) -> str:
    import difflib

    found = difflib.get_close_matches(name, list(candidates), n=3)
    return f" Did you mean {', '.join(repr(c) for c in found)}?" if found else ""


class Definitions:
    """Named definitions (from ``features.py`` or given directly), looked up with "did you
    mean" on a typo."""

    def __init__(self, items: Iterable[Definition] = ()) -> None:
        self.entities: dict[str, Entity] = {}
        self.views: dict[str, FeatureView | OnDemandFeatureView] = {}
        self.services: dict[str, FeatureService] = {}
        for item in items:
            self.add(item)

    def add(self, item: Definition) -> None:
        table: Any
        if isinstance(item, Entity):
            table = self.entities
        elif isinstance(item, (FeatureView, OnDemandFeatureView)):
            table = self.views
            for entity in getattr(item, "entities", ()):
                self.add(entity)
            for source in getattr(item, "sources", ()):
                view = source.view if isinstance(source, FeatureRef) else source
                if isinstance(view, (FeatureView, OnDemandFeatureView)):
                    self.add(view)
        elif isinstance(item, FeatureService):
            table = self.services
            for ref in item.refs():
                self.add(ref.view)
        else:
            raise FeatureDefinitionError(f"{item!r} is not a feature definition.")
        known = table.get(item.name)
        if known is not None and known is not item and known.spec() != item.spec():
            raise FeatureDefinitionError(
                f"Two different definitions are named {item.name!r}; rename one."
            )
        table.setdefault(item.name, item)

    def __iter__(self) -> Any:
        yield from self.entities.values()
        yield from self.views.values()
        yield from self.services.values()

    def view(self, name: str) -> FeatureView | OnDemandFeatureView:
        found = self.views.get(name)
        if found is None:
            raise FeatureNotFound(f"No feature view {name!r}.{_close(name, self.views)}")
        return found

    def service(self, name: str) -> FeatureService:
        found = self.services.get(name)
        if found is None:
            raise FeatureNotFound(f"No feature service {name!r}.{_close(name, self.services)}")
        return found

    def resolve(
        self, features: FeatureService | str | Sequence[str | Selection] | Selection
    ) -> list[FeatureRef]:
        """``features`` as refs: a service (object or name), or a list of ``"view:feature"``
        strings, views and ``view[[...]]`` selections."""
        if isinstance(features, FeatureService):
            return features.refs()
        if isinstance(features, str):
            if ":" not in features:
                return self.service(features).refs()
            features = [features]
        if isinstance(features, (FeatureRef, FeatureView, OnDemandFeatureView)):
            features = [features]
        grouped: dict[str, list[str]] = {}
        views: dict[str, FeatureView | OnDemandFeatureView] = {}
        for item in features:
            if isinstance(item, str):
                view_name, sep, feature = item.partition(":")
                if not sep or not feature:
                    raise FeatureNotFound(
                        f"Feature {item!r}: name it as VIEW:FEATURE (e.g. "
                        "'customer_stats:avg_purchase_30d'), or pass a FeatureService."
                    )
                view = self.view(view_name)
                view.field(feature)
                ref = FeatureRef(view, (feature,))
            elif isinstance(item, FeatureRef):
                ref = item
            elif isinstance(item, (FeatureView, OnDemandFeatureView)):
                ref = item.ref()
            else:
                raise FeatureNotFound(f"{item!r} is not a feature reference.")
            views.setdefault(ref.view.name, ref.view)
            bucket = grouped.setdefault(ref.view.name, [])
            bucket.extend(f for f in ref.features if f not in bucket)
        if not grouped:
            raise FeatureNotFound("No features asked for.")
        return [FeatureRef(views[name], tuple(names)) for name, names in grouped.items()]
