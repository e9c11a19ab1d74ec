"""Online stores: the latest value of each entity's features, read in microseconds.

The seam is :class:`OnlineStore` (``write``, ``read``, ``delete``, ``ping``, ``close``),
chosen by URL with :func:`open_online_store`:

=========================  =============================================================
``""``                     SQLite in ``<workspace>/.loopml/online.sqlite`` (the default)
``sqlite:///path``         SQLite at ``path`` (relative paths are in the workspace)
``redis://host:port/db``   Redis: one hash per entity, ``<prefix>:<view>:<key>`` holding
                           each feature (JSON) and ``__event_ts``/``__created_ts`` (µs);
                           ``?prefix=NAME`` sets the prefix (default ``loopml``)
=========================  =============================================================

Semantics every store keeps (one contract suite checks them, ``tests/features/test_online.py``):

- a value is identified by (view, entity key); the entity key is :func:`entity_key` of the
  join-key values, so ``1`` and ``"1"`` name the same entity;
- writes never regress: a row replaces the stored one only if its event time is newer, or
  equal with a created time at least as new; writing the same rows twice changes nothing;
- a :meth:`~OnlineStore.write` is atomic: readers see all of its rows or none (a SQLite
  transaction; in Redis one Lua script per :data:`REDIS_BATCH` rows, so a call of more rows
  is atomic per slice of that size). Materializations and pushes write batches of at most
  that many rows, so an interrupted one leaves whole batches, never half-written entities;
- a missing entity reads as ``None``; values come back in the types they were written
  (float, int, str, bool, null, and timestamps as UTC datetimes when the field says so).

A store that can't be reached raises :class:`~loopml.features.errors.OnlineStoreUnavailable`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loopml.config import STATE_DIR
from loopml.exceptions import InvalidConfig, missing_dependency
from loopml.features.definitions import Field
from loopml.features.errors import OnlineStoreUnavailable
from loopml.store.wal import enable_wal

SQLITE_FILE = "online.sqlite"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_SEPARATOR = "\x1f"


class OnlineRow(NamedTuple):
    """One entity's values to write: times in µs since the epoch (UTC)."""

    key: str
    event_us: int
    created_us: int
    values: Mapping[str, Any]


class OnlineValue(NamedTuple):
    """One entity's stored values, in the order of the fields asked for."""

    event_us: int
    values: list[Any]


class OnlineStore(Protocol):
    """Where online values live. Implementations: :class:`SqliteOnlineStore`,
    :class:`RedisOnlineStore`."""

    url: str

    def write(self, view: str, rows: Iterable[OnlineRow]) -> int:
        """Write ``rows`` (atomically), each only if newer than the stored one; returns how
        many were given."""
        ...

    def read(
        self, view: str, keys: Sequence[str], fields: Sequence[Field]
    ) -> list[OnlineValue | None]:
        """The stored values of ``keys`` (None for an entity never written), one per key."""
        ...

    def delete(self, view: str, keys: Sequence[str] | None = None) -> None:
        """Forget ``keys`` of ``view``, or the whole view when ``keys`` is None."""
        ...

    def ping(self) -> None:
        """Raise :class:`OnlineStoreUnavailable` if the store can't be reached."""
        ...

    def close(self) -> None:
        """Release connections (the store reopens them if used again)."""
        ...


# -- values and keys ---------------------------------------------------------------------------


def entity_key(values: Sequence[Any]) -> str:
    """The text that names an entity in the online store: its join-key values, in join-key
    order. Integers (Python or NumPy) and integral floats are written as integers, so an id
    read from Parquet, pandas or JSON names the same entity.

    >>> entity_key([1]), entity_key(["a", 2.0])
    ('1', 'a\\x1f2')
    """
    if len(values) == 1:
        return key_part(values[0])
    return _KEY_SEPARATOR.join(key_part(v) for v in values)


def key_part(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if isinstance(value, bool) or value is None:
        return str(value)
    if hasattr(value, "__index__"):  # NumPy integers
        return str(int(value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return str(to_micros(value))
    return str(value)


def to_micros(value: Any) -> int:
    """A time as µs since the epoch (naive times are UTC)."""
    if isinstance(value, int):
        return value
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime) or hasattr(value, "to_pydatetime"):
        return to_micros(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} can't be stored online: {value!r}")


_encode = json.JSONEncoder(default=_json_default, separators=(",", ":")).encode
# The C scanner without the whitespace stripping of decode(): stored JSON has none.
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    return _scan(text, 0)[0]


_layouts: dict[int, tuple[Sequence[Field], tuple[str, ...], tuple[int, ...]]] = {}


def _layout(fields: Sequence[Field]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The names of ``fields`` and the positions of timestamps, computed once per sequence
    (lookups pass the same tuple each time)."""
    cached = _layouts.get(id(fields))
    if cached is not None and cached[0] is fields:
        return cached[1], cached[2]
    names = tuple(f.name for f in fields)
    stamps = tuple(i for i, f in enumerate(fields) if f.dtype == "timestamp")
    if len(_layouts) > 4096:
        _layouts.clear()
    _layouts[id(fields)] = (fields, names, stamps)
    return names, stamps


# -- opening -----------------------------------------------------------------------------------


def open_online_store(url: str, root: Path | str) -> OnlineStore:
    """The online store at ``url`` (see the module doc); ``root`` is the workspace folder a
    relative SQLite path and the default file are in. Nothing is connected until used."""
    text = (url or "").strip()
    if not text:
        return SqliteOnlineStore(Path(root) / STATE_DIR / SQLITE_FILE)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        if not path:
            raise InvalidConfig(
                f"Online store URL {text!r}: write sqlite:///relative/path.sqlite or "
                "sqlite:////absolute/path.sqlite."
            )
        full = Path(path)
        return SqliteOnlineStore(full if full.is_absolute() else Path(root) / full)
    if scheme in ("redis", "rediss", "unix"):
        return RedisOnlineStore(text)
    raise InvalidConfig(
        f"Online store URL {text!r}: use an empty value (SQLite in .loopml/online.sqlite), "
        "sqlite:///path or redis://host:port/db."
    )


# -- SQLite ------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_values (
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    event_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID
"""
_UPSERT = (
    "INSERT INTO online_values (view, key, event_us, created_us, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (view, key) DO UPDATE SET event_us = excluded.event_us, "
    "created_us = excluded.created_us, value = excluded.value "
    "WHERE excluded.event_us > online_values.event_us OR (excluded.event_us = "
    "online_values.event_us AND excluded.created_us >= online_values.created_us)"
)
_SELECT_ONE = "SELECT event_us, value FROM online_values WHERE view = ? AND key = ?"
_BUSY_MS = 30_000


class SqliteOnlineStore:
    """Online values in one SQLite file (WAL): one row per (view, entity key), the values a
    JSON object. Each thread uses its own connection; processes share the file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._ready = False
        self._setup = threading.Lock()

    def __repr__(self) -> str:
        return f"<SqliteOnlineStore {self.path}>"

    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            return con
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
            con.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            with self._setup:
                if not self._ready:
                    enable_wal(con, _BUSY_MS / 1000)
                    con.execute(_SCHEMA)
                    self._ready = True
            con.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        self._local.con = con
        return con

    def _unavailable(self, exc: BaseException) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"The online store {self.path} can't be used: {exc}. Check that the folder is "
            "writable and the disk not full, or set [features] online_store in loopml.toml."
        )

    def write(self, view: str, rows: Iterable[OnlineRow]) -> int:
        params = [
            (view, row.key, row.event_us, row.created_us, _encode(dict(row.values))) for row in rows
        ]
        if not params:
            return 0
        con = self._connection()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(_UPSERT, params)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return len(params)

    def read(
        self, view: str, keys: Sequence[str], fields: Sequence[Field]
    ) -> list[OnlineValue | None]:
        con = getattr(self._local, "con", None) or self._connection()
        names, stamps = _layout(fields)
        try:
            if len(keys) == 1:
                found = con.execute(_SELECT_ONE, (view, keys[0])).fetchall()
                if not found:
                    return [None]
                return [self._value(found[0][0], found[0][1], names, stamps)]
            stored: dict[str, tuple[int, str]] = {}
            unique = list(dict.fromkeys(keys))
            for i in range(0, len(unique), 900):  # SQLite's bound-parameter limit
                chunk = unique[i : i + 900]
                marks = ",".join("?" * len(chunk))
                for key, event, value in con.execute(
                    f"SELECT key, event_us, value FROM online_values "
                    f"WHERE view = ? AND key IN ({marks})",
                    (view, *chunk),
                ):
                    stored[key] = (event, value)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        out: list[OnlineValue | None] = []
        for key in keys:
            hit = stored.get(key)
            out.append(None if hit is None else self._value(hit[0], hit[1], names, stamps))
        return out

    @staticmethod
    def _value(
        event: int, text: str, names: tuple[str, ...], stamps: tuple[int, ...]
    ) -> OnlineValue:
        data = _scan(text, 0)[0]
        values = [data.get(name) for name in names]
        for i in stamps:
            if values[i] is not None:
                values[i] = from_micros(values[i])
        return OnlineValue(event, values)

    def delete(self, view: str, keys: Sequence[str] | None = None) -> None:
        con = self._connection()
        try:
            con.execute("BEGIN IMMEDIATE")
            if keys is None:
                con.execute("DELETE FROM online_values WHERE view = ?", (view,))
            else:
                con.executemany(
                    "DELETE FROM online_values WHERE view = ? AND key = ?",
                    [(view, k) for k in keys],
                )
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# -- Redis -------------------------------------------------------------------------------------

# KEYS: one hash per row. ARGV per row: event µs, created µs, n, then n field/value pairs. A
# row replaces the hash only if newer (event, then created); the script runs atomically, so a
# batch is all or nothing to readers. Lua numbers are doubles: µs since 1970 fit exactly.
_WRITE_SCRIPT = """
local a = 1
for k = 1, #KEYS do
  local event = tonumber(ARGV[a])
  local created = tonumber(ARGV[a + 1])
  local n = tonumber(ARGV[a + 2])
  local stored = redis.call('HMGET', KEYS[k], '__event_ts', '__created_ts')
  local se = tonumber(stored[1])
  local newer = true
  if se then
    local sc = tonumber(stored[2]) or 0
    if event < se or (event == se and created < sc) then newer = false end
  end
  if newer then
    local args = {'__event_ts', ARGV[a], '__created_ts', ARGV[a + 1]}
    for j = 1, 2 * n do args[#args + 1] = ARGV[a + 2 + j] end
    redis.call('DEL', KEYS[k])
    redis.call('HSET', KEYS[k], unpack(args))
  end
  a = a + 3 + 2 * n
end
return #KEYS
"""
#: Rows per Lua script call: bounds the time one batch blocks Redis (a few ms).
REDIS_BATCH = 5_000


class RedisOnlineStore:
    """Online values in Redis: one hash per entity (``<prefix>:<view>:<key>``) with each
    feature as a JSON field plus ``__event_ts`` and ``__created_ts`` (µs). Writes run a Lua
    script that compares the stored times; reads are one ``HMGET`` per entity, pipelined."""

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = prefix or query.pop("prefix", "loopml")
        self._client_url = urlunsplit(parts._replace(query=urlencode(query)))
        self.url = url
        self._client: Any = None
        self._script: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RedisOnlineStore {self.safe_url}>"

    @property
    def safe_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
                f":{parts.port}" if parts.port else ""
            )
            return urlunsplit(parts._replace(netloc=netloc))
        return self.url

    def _redis(self) -> Any:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                try:
                    import redis
                except ImportError as exc:
                    raise missing_dependency("redis", "redis", "The Redis online store") from exc
                client = redis.Redis.from_url(
                    self._client_url,
                    socket_connect_timeout=2,
                    socket_timeout=10,
                    health_check_interval=30,
                    decode_responses=True,
                )
                self._script = client.register_script(_WRITE_SCRIPT)
                self._client = client
        return self._client

    def _errors(self) -> tuple[type[BaseException], ...]:
        import redis

        return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

    def _unavailable(self, exc: BaseException) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"The Redis online store at {self.safe_url} can't be reached ({exc}). Start Redis "
            "there, or point [features] online_store (LOOPML_FEATURES_ONLINE_STORE) at a "
            "running one; nothing was written."
        )

    def _hash(self, view: str, key: str) -> str:
        return f"{self.prefix}:{view}:{key}"

    def write(self, view: str, rows: Iterable[OnlineRow]) -> int:
        client = self._redis()
        keys: list[str] = []
        args: list[Any] = []
        total = 0
        try:
            for row in rows:
                keys.append(self._hash(view, row.key))
                args += [row.event_us, row.created_us, len(row.values)]
                for name, value in row.values.items():
                    args += [name, _encode(value)]
                if len(keys) >= REDIS_BATCH:
                    self._script(keys=keys, args=args, client=client)
                    total += len(keys)
                    keys, args = [], []
            if keys:
                self._script(keys=keys, args=args, client=client)
                total += len(keys)
        except self._errors() as exc:
            raise self._unavailable(exc) from exc
        return total

    def read(
        self, view: str, keys: Sequence[str], fields: Sequence[Field]
    ) -> list[OnlineValue | None]:
        client = self._redis()
        names = ["__event_ts", *(f.name for f in fields)]
        try:
            if len(keys) == 1:
                replies = [client.hmget(self._hash(view, keys[0]), names)]
            else:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hmget(self._hash(view, key), names)
                replies = pipe.execute()
        except self._errors() as exc:
            raise self._unavailable(exc) from exc
        _, stamps = _layout(fields)
        out: list[OnlineValue | None] = []
        for reply in replies:
            if reply[0] is None:
                out.append(None)
                continue
            values: list[Any] = [None if v is None else _decode(v) for v in reply[1:]]
            for i in stamps:
                if values[i] is not None:
                    values[i] = from_micros(values[i])
            out.append(OnlineValue(int(reply[0]), values))
        return out

    def delete(self, view: str, keys: Sequence[str] | None = None) -> None:
        client = self._redis()
        try:
            if keys is not None:
                if keys:
                    client.unlink(*(self._hash(view, k) for k in keys))
                return
            batch: list[str] = []
            for name in client.scan_iter(match=f"{self.prefix}:{view}:*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
        except self._errors() as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> None:
        try:
            self._redis().ping()
        except self._errors() as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def now_micros() -> int:
    return time.time_ns() // 1000


# -- lookups -----------------------------------------------------------------------------------


class OnlineResponse:
    """Online feature values: ``to_dict()`` gives ``{column: [value per entity row]}`` (the
    join keys, then the features), ``to_df()`` a DataFrame of the same."""

    __slots__ = ("columns", "feature_names")

    def __init__(self, columns: dict[str, list[Any]], feature_names: list[str]) -> None:
        self.columns = columns
        self.feature_names = feature_names

    def to_dict(self) -> dict[str, list[Any]]:
        """The columns (the response's own dict: copy it before changing it)."""
        return self.columns

    def to_df(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.columns)

    def __repr__(self) -> str:
        rows = len(next(iter(self.columns.values()), []))
        return f"<OnlineResponse {rows} row(s) × {', '.join(self.feature_names)}>"


class ViewLookup(NamedTuple):
    """What one view contributes to a lookup: its fields, their output columns (None for an
    on-demand input that isn't asked for) and its TTL in µs."""

    view: str
    join_keys: tuple[str, ...]
    fields: tuple[Field, ...]
    columns: tuple[str | None, ...]
    ttl_us: int | None


class OnlinePlan:
    """A resolved online request: built once per feature list and cached, so a lookup reads
    only the online store."""

    def __init__(
        self,
        join_keys: Sequence[str],
        lookups: Sequence[ViewLookup],
        on_demand: Sequence[Any],
        names: dict[tuple[str, str], str],
        feature_names: Sequence[str],
        full_feature_names: bool,
    ) -> None:
        self.join_keys = tuple(join_keys)
        self.lookups = tuple(lookups)
        self.on_demand = tuple(on_demand)
        self.names = names
        self.feature_names = list(feature_names)
        self.full_feature_names = full_feature_names
        self.request_fields = tuple(
            dict.fromkeys(f.name for ref in on_demand for f in ref.view.request_fields)
        )
        produced = [
            *self.join_keys,
            *(c for lookup in self.lookups for c in lookup.columns if c is not None),
            *(names[(ref.view.name, f)] for ref in self.on_demand for f in ref.features),
        ]
        wanted = [*self.join_keys, *self.feature_names]
        self._order: list[str] | None = None if produced == wanted else wanted

    def run(
        self, store: OnlineStore, rows: Sequence[Mapping[str, Any]], now_us: int
    ) -> OnlineResponse:
        n = len(rows)
        try:
            out: dict[str, list[Any]] = {k: [row[k] for row in rows] for k in self.join_keys}
        except KeyError as exc:
            raise self._missing(rows, exc) from None
        inputs: dict[str, list[Any]] = {}
        for lookup in self.lookups:
            keys = self._keys(lookup.join_keys, out, n)
            found = store.read(lookup.view, keys, lookup.fields)
            floor = None if lookup.ttl_us is None else now_us - lookup.ttl_us
            if n == 1 and not self.on_demand:  # the common case, kept short
                hit = found[0]
                if hit is None or (floor is not None and hit.event_us < floor):
                    for column in lookup.columns:
                        if column is not None:
                            out[column] = [None]
                else:
                    for column, item in zip(lookup.columns, hit.values, strict=True):
                        if column is not None:
                            out[column] = [item]
                continue
            columns: list[list[Any]] = [[None] * n for _ in lookup.fields]
            for i, value in enumerate(found):
                if value is None or (floor is not None and value.event_us < floor):
                    continue
                for j, item in enumerate(value.values):
                    columns[j][i] = item
            for field_, column, values in zip(lookup.fields, lookup.columns, columns, strict=True):
                if column is not None:
                    out[column] = values
                if self.on_demand:
                    inputs[f"{lookup.view}__{field_.name}"] = values
        if self.on_demand:
            self._on_demand(out, inputs, rows)
        if self._order is not None:
            out = {c: out[c] for c in self._order}
        return OnlineResponse(out, self.feature_names)

    @staticmethod
    def _keys(join_keys: tuple[str, ...], out: dict[str, list[Any]], n: int) -> list[str]:
        if len(join_keys) == 1:
            return [key_part(v) for v in out[join_keys[0]]]
        return [entity_key([out[k][i] for k in join_keys]) for i in range(n)]

    def _missing(self, rows: Sequence[Mapping[str, Any]], exc: KeyError) -> Exception:
        from loopml.features.errors import InvalidEntityFrame

        key = exc.args[0]
        index = next(i for i, row in enumerate(rows) if key not in row)
        return InvalidEntityFrame(
            f"Entity row {index} has no join key {key!r}: every row needs "
            f"{', '.join(map(repr, self.join_keys))} (it has {', '.join(map(repr, rows[index]))})."
        )

    def _on_demand(
        self,
        out: dict[str, list[Any]],
        inputs: dict[str, list[Any]],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        import math

        import pandas as pd

        from loopml.features.errors import InvalidEntityFrame
        from loopml.features.offline import apply_on_demand

        frame = pd.DataFrame(inputs, index=range(len(rows)))
        for name in self.request_fields:
            try:
                frame[name] = [row[name] for row in rows]
            except KeyError:
                raise InvalidEntityFrame(
                    f"An on-demand feature needs the request field {name!r}: add it to each "
                    "entity row."
                ) from None
        frame = apply_on_demand(frame, self.on_demand, self.names, self.full_feature_names)
        for ref in self.on_demand:
            for feature in ref.features:
                column = self.names[(ref.view.name, feature)]
                out[column] = [
                    None if isinstance(v, float) and math.isnan(v) else v
                    for v in frame[column].tolist()
                ]
