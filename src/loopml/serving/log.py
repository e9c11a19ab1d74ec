"""The prediction log: every request a model server answers, and the feedback on it, as
Parquet files in the blob store, written in batches off the response path.

Layout (under the blob store's root, beside the content-addressed blobs)::

    predictions/deployment=churn/hour=2026-12-01T14/<uuid>.parquet
    feedback/deployment=churn/hour=2026-12-01T14/<uuid>.parquet

A file is written whole and appears at once: on a local disk as a temporary file renamed
into place, on an object store as one PUT. Readers therefore never see half a file, and two
servers (or workers) over one workspace never write the same name.

A prediction row holds ``request_id``, ``time`` (UTC), ``deployment``, ``revision``,
``model`` (``churn/4``), ``variant``, ``shadow`` (scored off the response path),
``inputs`` and ``outputs`` (JSON text), ``latency_ms``, ``error`` (None when it
answered) and ``batch_id`` (None online; the id of the run of
:func:`loopml.serving.batch_predict` that scored it, whose rows have the request ids
``<batch_id>-<row>`` and the variant ``batch``). Files written before ``batch_id`` existed
read back with it None. A feedback row holds ``request_id``, ``time``, ``deployment``, ``label`` (JSON
text) and ``reward``.

:class:`PredictionLogger` queues rows in memory and a background thread writes them every
``[serving] log_flush_interval`` seconds, or as soon as ``log_batch_rows`` are waiting, and
on :meth:`~PredictionLogger.close`: a SIGKILL loses at most one interval. Reading back is
DuckDB over the files of the hours asked for::

    loopml.serving.read_predictions(ws, "churn", start=yesterday)
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput, LoopmlWarning

if TYPE_CHECKING:
    import pandas as pd

    from loopml.store.blobs import BlobStore
    from loopml.workspace import Workspace

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
_HOUR = "%Y-%m-%dT%H"


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    time = pa.timestamp("us", tz="UTC")
    return {
        PREDICTIONS: pa.schema(
            [
                ("request_id", pa.string()),
                ("time", time),
                ("deployment", pa.string()),
                ("revision", pa.int64()),
                ("model", pa.string()),
                ("variant", pa.string()),
                ("shadow", pa.bool_()),
                ("inputs", pa.string()),
                ("outputs", pa.string()),
                ("latency_ms", pa.float64()),
                ("error", pa.string()),
                ("batch_id", pa.string()),
            ]
        ),
        FEEDBACK: pa.schema(
            [
                ("request_id", pa.string()),
                ("time", time),
                ("deployment", pa.string()),
                ("label", pa.string()),
                ("reward", pa.float64()),
            ]
        ),
    }


def to_json(value: Any) -> str:
    """``value`` as JSON text; NumPy and pandas values become plain ones, NaN and infinities
    null, anything else its ``str`` (orjson: ~15x faster than the standard library on a
    100-row request)."""
    import orjson

    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(value, default=_plain, option=options).decode()


#: Columns held as JSON text: a queued row may carry the plain value, encoded when written
#: (by the writer thread, so a server's response never waits for it).
_JSON_COLUMNS = frozenset({"inputs", "outputs", "label"})


def _cell(name: str, value: Any) -> Any:
    if value is None or name not in _JSON_COLUMNS or isinstance(value, str):
        return value
    return to_json(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class PredictionLogger:
    """Queues prediction and feedback rows and writes them to the blob store in batches.

    :meth:`log` and :meth:`feedback` only append to a list (no I/O on the caller's path);
    a daemon thread writes. Open it with :meth:`start`, finish with :meth:`close` (which
    writes what is left). A write that fails keeps its rows for the next try and warns. A
    row that can't be stored at all (an input JSON can't hold, such as an integer beyond 64
    bits) is dropped with a warning and counted in :attr:`dropped`: one bad row never keeps
    the others from being written.
    """

    def __init__(
        self, blobs: BlobStore, *, flush_interval: float = 1.0, batch_rows: int = 5000
    ) -> None:
        self.blobs = blobs
        self.flush_interval = flush_interval
        self.batch_rows = batch_rows
        self._rows: dict[str, list[dict[str, Any]]] = {PREDICTIONS: [], FEEDBACK: []}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0  # rows written so far (both logs)
        self.dropped = 0  # rows that could not be stored (see the class doc)

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> PredictionLogger:
        settings = workspace.settings.serving
        return cls(
            workspace.blobs,
            flush_interval=settings.log_flush_interval,
            batch_rows=settings.log_batch_rows,
        )

    def start(self) -> PredictionLogger:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="loopml-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def log(self, row: Mapping[str, Any]) -> None:
        """Queue one prediction row (see the module doc for its fields). ``inputs`` and
        ``outputs`` may be JSON text or the plain values, encoded when written: don't change
        them after queuing."""
        self._append(PREDICTIONS, row)

    def feedback(self, row: Mapping[str, Any]) -> None:
        """Queue one feedback row (``request_id``, ``time``, ``deployment``, ``label``,
        ``reward``)."""
        self._append(FEEDBACK, row)

    def _append(self, log: str, row: Mapping[str, Any]) -> None:
        with self._lock:
            rows = self._rows[log]
            rows.append(dict(row))
            full = len(rows) >= self.batch_rows
        if full:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return sum(len(rows) for rows in self._rows.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush(warn=True)

    def flush(self, *, warn: bool = False) -> int:
        """Write every queued row now; the number written. A failed write puts its rows back
        (and, with ``warn``, warns instead of raising)."""
        with self._write_lock:
            with self._lock:
                taken = self._rows
                self._rows = {PREDICTIONS: [], FEEDBACK: []}
            written = 0
            for log, rows in taken.items():
                groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
                for row in rows:
                    hour = row["time"].astimezone(UTC).strftime(_HOUR)
                    groups.setdefault((row["deployment"], hour), []).append(row)
                for (deployment, hour), group in groups.items():
                    table = self._table(log, deployment, group)
                    if table is None:
                        continue
                    try:
                        write_table(self.blobs, log, deployment, hour, table)
                    except Exception as exc:
                        with self._lock:
                            self._rows[log][:0] = group
                        if not warn:
                            raise
                        warnings.warn(
                            f"The {log} log of {deployment!r} could not be written to "
                            f"{self.blobs.url} ({type(exc).__name__}: {exc}); its "
                            f"{len(group)} row(s) are kept and retried.",
                            LoopmlWarning,
                            stacklevel=2,
                        )
                    else:
                        written += table.num_rows
            self.written += written
            return written

    def _table(self, log: str, deployment: str, rows: list[dict[str, Any]]) -> Any:
        """``rows`` as an Arrow table of the log's schema (None: no row could be stored).
        A row that can't be encoded is dropped from ``rows`` (so it isn't retried), counted
        and named in one warning."""
        import pyarrow as pa

        schema = _schemas()[log]
        names = schema.names
        cells: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        bad: list[tuple[dict[str, Any], BaseException]] = []
        for row in rows:
            try:
                cells.append({name: _cell(name, row.get(name)) for name in names})
            except Exception as exc:  # e.g. orjson: Integer exceeds 64-bit range
                bad.append((row, exc))
            else:
                kept.append(row)
        try:
            table = pa.Table.from_pylist(cells, schema=schema)
        except Exception:  # a value of the wrong type or range: find the rows, row by row
            good_cells, good_rows = [], []
            for row, cell in zip(kept, cells, strict=True):
                try:
                    pa.Table.from_pylist([cell], schema=schema)
                except Exception as exc:
                    bad.append((row, exc))
                else:
                    good_cells.append(cell)
                    good_rows.append(row)
            kept = good_rows
            table = pa.Table.from_pylist(good_cells, schema=schema)
        if bad:
            rows[:] = kept  # a failed write keeps (and retries) only the rows that can be stored
            self.dropped += len(bad)
            _, reason = bad[0]
            ids = ", ".join(repr(r.get("request_id")) for r, _ in bad[:5])
            warnings.warn(
                f"{len(bad)} row(s) of the {log} log of {deployment!r} could not be stored "
                f"and were dropped (request id(s) {ids}{', ...' if len(bad) > 5 else ''}; "
                f"{type(reason).__name__}: {reason}); the other rows are written.",
                LoopmlWarning,
                stacklevel=3,
            )
        return table if table.num_rows else None

    def close(self) -> None:
        """Stop the writer thread and write what is queued (raises if that last write
        fails, so a lost log is never silent)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def __enter__(self) -> PredictionLogger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_schema(log: str) -> Any:
    """The Arrow schema of the ``predictions`` or ``feedback`` log."""
    return _schemas()[log]


def write_table(blobs: BlobStore, log: str, deployment: str, hour: str, table: Any) -> str:
    """Write ``table`` (rows of the ``log``'s schema, all of ``deployment`` in ``hour``,
    formatted ``YYYY-MM-DDTHH``) as one new file of the log, whole or not at all; the
    file's path. Used by the logger's flushes and by batch scoring, which writes its rows
    itself, chunk by chunk."""
    import pyarrow.parquet as pq

    folder = _folder(blobs, log, deployment, hour)
    name = f"{uuid.uuid4().hex}.parquet"
    if blobs.is_local:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet.part")
        try:
            with os.fdopen(fd, "wb") as fh:
                pq.write_table(table, fh)
            os.replace(tmp, os.path.join(folder, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return os.path.join(folder, name)
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    blobs.fs.pipe_file(f"{folder}/{name}", sink.getvalue().to_pybytes())
    return f"{folder}/{name}"


def remove_files(blobs: BlobStore, paths: list[str]) -> None:
    """Delete log files written by :func:`write_table` (a batch that failed takes its rows
    back); best effort, a file already gone is fine."""
    for path in paths:
        try:
            if blobs.is_local:
                os.unlink(path)
            else:
                blobs.fs.rm_file(path)
        except (OSError, FileNotFoundError):
            pass


def _folder(blobs: BlobStore, log: str, deployment: str, hour: str | None = None) -> str:
    root = os.path.abspath(blobs.root) if blobs.is_local else blobs.root
    folder = f"{root}/{log}/deployment={deployment}"
    return folder if hour is None else f"{folder}/hour={hour}"


def _utc(value: datetime | str | None, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(f"{what} {value!r} is not an ISO 8601 time: {exc}") from exc
    if value.tzinfo is None:  # naive times are UTC, as the log's are
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _files(
    blobs: BlobStore, log: str, deployment: str, start: datetime | None, end: datetime | None
) -> list[str]:
    folder = _folder(blobs, log, deployment)
    first = start.strftime(_HOUR) if start else None
    last = end.strftime(_HOUR) if end else None
    if blobs.is_local:
        if not os.path.isdir(folder):
            return []
        hours = sorted(os.listdir(folder))
    else:
        if not blobs.fs.exists(folder):
            return []
        hours = sorted(p.rsplit("/", 1)[-1] for p in blobs.fs.ls(folder, detail=False))
    files: list[str] = []
    for entry in hours:
        hour = entry.removeprefix("hour=")
        if (first and hour < first) or (last and hour > last):
            continue
        if blobs.is_local:
            path = os.path.join(folder, entry)
            files += [
                os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".parquet")
            ]
        else:
            found = blobs.fs.glob(f"{folder}/{entry}/*.parquet")
            files += [f"{blobs.protocol}://{f.lstrip('/')}" for f in sorted(found)]
    return files


def _read(
    workspace: Workspace,
    log: str,
    deployment: str,
    start: datetime | str | None,
    end: datetime | str | None,
) -> pd.DataFrame:
    import duckdb
    import pyarrow as pa

    begin, finish = _utc(start, "start"), _utc(end, "end")
    blobs = workspace.blobs
    files = _files(blobs, log, deployment, begin, finish)
    if not files:
        return pa.Table.from_pylist([], schema=_schemas()[log]).to_pandas()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not blobs.is_local and not con.filesystem_is_registered(blobs.protocol):
            con.register_filesystem(blobs.fs)
        where, params = [], []
        if begin is not None:
            where.append("time >= ?")
            params.append(begin)
        if finish is not None:
            where.append("time < ?")
            params.append(finish)
        listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        query = f"SELECT * FROM read_parquet({listing}, union_by_name = true, hive_partitioning = false)"
        if where:
            query += " WHERE " + " AND ".join(where)
        frame = con.execute(query + " ORDER BY time, request_id", params).df()
    finally:
        con.close()
    for name in _schemas()[log].names:  # files written before a column was added
        if name not in frame.columns:
            frame[name] = None
    return frame


def known_request_ids(workspace: Workspace, deployment: str, request_ids: Any) -> set[str]:
    """Which of ``request_ids`` the prediction log of ``deployment`` holds (any time)."""
    import duckdb
    import pyarrow as pa

    blobs = workspace.blobs
    files = _files(blobs, PREDICTIONS, deployment, None, None)
    wanted = pa.table({"request_id": pa.array(list(request_ids), pa.string())})
    if not files or not len(wanted):
        return set()
    con = duckdb.connect()
    try:
        if not blobs.is_local and not con.filesystem_is_registered(blobs.protocol):
            con.register_filesystem(blobs.fs)
        con.register("wanted", wanted)
        listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        found = con.execute(
            "SELECT DISTINCT w.request_id FROM wanted w SEMI JOIN "
            f"read_parquet({listing}, union_by_name = true, hive_partitioning = false) p "
            "ON w.request_id = p.request_id"
        ).fetchall()
    finally:
        con.close()
    return {row[0] for row in found}


def read_predictions(
    workspace: Workspace,
    deployment: str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``deployment`` with ``start <= time < end`` (UTC; naive
    times are taken as UTC), oldest first: one row per variant that scored a request
    (``shadow`` marks those off the response path). Rows still queued in a running server
    appear after its next flush.

    >>> read_predictions(ws, "churn", start="2026-12-01T00:00")        # doctest: +SKIP
    """
    return _read(workspace, PREDICTIONS, deployment, start, end)


def read_feedback(
    workspace: Workspace,
    deployment: str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pd.DataFrame:
    """The feedback (labels, rewards) recorded for ``deployment``'s requests with
    ``start <= time < end``, oldest first; join it to :func:`read_predictions` on
    ``request_id``."""
    return _read(workspace, FEEDBACK, deployment, start, end)
