"""``loopml monitor run``: every closed time window of a deployment's prediction log, computed
once, stored as a time series (``monitor_windows`` + ``monitor_metrics``), then the alert
rules are evaluated over it.

    results = loopml.monitoring.windows.run("churn", window="1h", workspace=ws)
    results[-1].value("psi", feature="tenure"), results[-1].value("p99_ms")

**Which windows.** Windows are aligned to multiples of their size since the Unix epoch (UTC
midnight for sizes that divide a day: ``1h`` windows start on the hour). A window is
computed once it is closed — it ended, plus the server's log flush interval, before ``now``
— and not before: a computed window stays unless asked again. Without ``since``, a run
starts after the last window computed for the deployment (or at the first logged hour) and
also recomputes the computed windows of the last :data:`LABEL_HORIZON` whose requests got
labels since they were computed (labels land late). With ``since``, every window from
there is recomputed. Rerunning a window replaces its row and its metrics in one
transaction: the same log gives the same rows, never duplicates.

**What is read.** The log is read through DuckDB, one window at a time, from the Parquet
files of that window's hours: the counts and latency quantiles are SQL aggregates; the
logged inputs (JSON text) are unnested to one row per model input and the reference's
feature columns extracted with DuckDB's JSON functions, so only one window's feature
columns — never the log — are in memory as NumPy arrays.

**Which rows.** Shadow rows (scored off the response path by another model) are left out
entirely: the window describes what the deployment answered. Operational metrics
(``requests``, ``errors``, ``error_rate``, ``p50_ms``/``p95_ms``/``p99_ms``) cover every
answered request. Drift, data quality and performance are computed for the model version
that answered most of the window's rows (the window's ``model``/``version``), against that
version's own reference profile and signature; rows of other versions in the same window (a
canary's candidate, the old version just after an alias moved) are counted in the window's
summary and named in a warning, not mixed in.

**What is stored** per window (``feature`` ``""`` for the window, ``__prediction__`` for the
model's outputs, else the input feature): see :mod:`loopml.monitoring.tables`, and
:mod:`loopml.monitoring.performance` for the label-based metrics. A window with no answered
request is ``empty``: its only metric is ``rows`` = 0. A feature the reference has but no
logged row carries is stored as ``missing`` = 1 (with a warning), never an error.

**In parallel.** Windows are independent: a backfill of many windows runs them as tasks on
the pipelines' executors (``threads`` by default, ``processes``, ``ray``; ``inline`` is
serial). Workers only read; the caller stores each result as it arrives.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from loopml.exceptions import InvalidInput, LoopmlError, NotFound
from loopml.monitoring import logrows
from loopml.monitoring.tables import monitor_metrics, monitor_windows
from loopml.store.clock import now_ms, to_datetime

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from loopml.monitoring.comparison import FeatureDrift
    from loopml.monitoring.profile import Reference
    from loopml.pipelines.executors import Executor, Outcome
    from loopml.registry.versions import ModelVersion
    from loopml.store.db import Database
    from loopml.workspace import Workspace, WorkspaceLike

#: The feature name of window-level metrics and of the model's outputs.
WINDOW, PREDICTION = "", "__prediction__"
OK, EMPTY = "ok", "empty"
#: At most this many windows in one run: a finer window over a long history is split.
MAX_WINDOWS = 10_000
#: Computed windows this recent are recomputed when labels for their requests land; a label
#: whose request was not logged within this long before it is counted as unknown.
LABEL_HORIZON = timedelta(days=7)
#: Feedback this much older than the last run is read again (rows flushed after that run).
LABEL_SLACK = timedelta(minutes=10)
#: Reference samples kept per process (by blob hash).
SAMPLE_CACHE = 8
_samples: dict[str, pd.DataFrame] = {}
_samples_lock = threading.Lock()


class WindowsFailed(LoopmlError):
    """Some windows could not be computed (the others are stored)."""


class WindowLengthMismatch(InvalidInput):
    """A run asked for windows of another length than the deployment's stored ones."""


def parse_window(value: str | timedelta) -> timedelta:
    """A window size: ``"15m"``, ``"1h"``, ``"1d"`` (whole minutes, at least one).

    >>> parse_window("1h"), parse_window("15m").total_seconds()
    (datetime.timedelta(seconds=3600), 900.0)
    """
    from loopml.monitoring.settings import duration_seconds

    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = duration_seconds(value)
        except InvalidInput as exc:
            raise InvalidInput(f"Window: {exc}") from None
    if seconds < 60 or seconds % 60:
        raise InvalidInput(
            f"Window {value!r} must be whole minutes, at least one (e.g. 15m, 1h or 1d)."
        )
    return timedelta(seconds=seconds)


def align(moment: datetime, size: timedelta) -> datetime:
    """The start of the window of ``size`` that holds ``moment`` (UTC).

    >>> align(datetime(2026, 12, 1, 14, 42, tzinfo=UTC), timedelta(hours=1)).isoformat()
    '2026-12-01T14:00:00+00:00'
    """
    seconds = int(size.total_seconds())
    epoch = int(_utc(moment).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _moment(value: datetime | str | None, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return None if value is None else _utc(value)
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise InvalidInput(
            f"{what} {value!r} is not an ISO 8601 time (e.g. 2026-12-01T14:00+00:00)."
        ) from exc


@dataclass(frozen=True)
class WindowResult:
    """One computed window: its metrics by ``(feature, metric)``, and what to know about it.

    ``model`` is the version (``churn/4``) whose rows the drift, quality and performance
    metrics describe; ``warnings`` say what could not be computed and why."""

    deployment: str
    start: datetime
    end: datetime
    status: str
    rows: int
    model: str | None = None
    metrics: Mapping[tuple[str, str], float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)

    def value(self, metric: str, feature: str = WINDOW) -> float | None:
        """A metric's value (None when not computed; NaN when undefined on this window)."""
        return self.metrics.get((feature, metric))

    def to_dict(self) -> dict[str, Any]:
        features: dict[str, dict[str, float | None]] = {}
        for (feature, metric), value in sorted(self.metrics.items()):
            features.setdefault(feature, {})[metric] = _finite(value)
        return {
            "deployment": self.deployment,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "status": self.status,
            "rows": self.rows,
            "model": self.model,
            "metrics": features,
            "warnings": list(self.warnings),
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass(frozen=True)
class WindowTask:
    """What a worker needs to compute one window; picklable, for worker processes and Ray."""

    deployment: str
    start: datetime
    end: datetime
    now: datetime
    store_url: str
    artifacts_url: str
    bands: tuple[float, float] = (0.1, 0.25)
    labels_unknown: int = 0  # labels given in the window for requests never logged


# -- which windows -----------------------------------------------------------------------------


def computed_windows(db: Database, deployment: str, size: timedelta) -> dict[datetime, int]:
    """The start of every window of ``size`` computed for ``deployment`` → its computed_at
    (epoch ms)."""
    ms = int(size.total_seconds() * 1000)
    with db.read() as conn:
        rows = conn.execute(
            select(monitor_windows.c.start_at, monitor_windows.c.computed_at).where(
                monitor_windows.c.deployment == deployment,
                monitor_windows.c.end_at - monitor_windows.c.start_at == ms,
            )
        ).all()
    return {_at(r.start_at): int(r.computed_at) for r in rows}


def stored_lengths(db: Database, deployment: str) -> list[timedelta]:
    """The lengths of ``deployment``'s stored windows, shortest first (one, unless windows
    of several lengths were stored before runs refused a second length)."""
    with db.read() as conn:
        found = conn.execute(
            select(monitor_windows.c.end_at - monitor_windows.c.start_at)
            .where(monitor_windows.c.deployment == deployment)
            .distinct()
        ).scalars()
        return sorted(timedelta(milliseconds=int(ms)) for ms in found)


def format_length(size: timedelta) -> str:
    """A window length as ``--window`` takes it: ``7m``, ``1h``, ``90m``, ``1d``.

    >>> format_length(timedelta(hours=1)), format_length(timedelta(minutes=90))
    ('1h', '90m')
    """
    seconds = int(size.total_seconds())
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def _check_length(db: Database, deployment: str, size: timedelta) -> None:
    """Refuse windows of ``size`` when ``deployment``'s stored windows have another length:
    windows of two lengths would overlap in one series (``monitor show``, the alert rules
    and ``loopml status`` read a deployment's windows in start order, whatever their
    length)."""
    lengths = stored_lengths(db, deployment)
    if not lengths or size in lengths:
        return
    stored = " and ".join(format_length(length) for length in lengths)
    asked = format_length(size)
    raise WindowLengthMismatch(
        f"The stored windows of {deployment!r} are {stored} long, not {asked}: windows of "
        f"two lengths would overlap. Keep --window {format_length(lengths[0])} (or set "
        f"[monitor] window to it), or start over with {asked} windows: `loopml monitor run "
        f"{deployment} --window {asked} --restart` deletes the stored windows and computes "
        "them again from the log."
    )


def forget_windows(db: Database, deployment: str) -> int:
    """Delete every stored window of ``deployment`` and its metrics (one transaction); how
    many there were. Its alerts stay."""

    def tx(conn: Connection) -> int:
        ids = (
            conn.execute(
                select(monitor_windows.c.id).where(monitor_windows.c.deployment == deployment)
            )
            .scalars()
            .all()
        )
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            conn.execute(delete(monitor_metrics).where(monitor_metrics.c.window_id.in_(part)))
            conn.execute(delete(monitor_windows).where(monitor_windows.c.id.in_(part)))
        return len(ids)

    return db.transact(tx)


def _at(ms: int) -> datetime:
    moment = to_datetime(ms)
    assert moment is not None
    return moment


def _ms(moment: datetime) -> int:
    return int(round(moment.timestamp() * 1000))


def _first_logged(workspace: Workspace, deployment: str) -> datetime | None:
    from loopml.serving.log import PREDICTIONS, _folder

    blobs = workspace.blobs
    folder = _folder(blobs, PREDICTIONS, deployment)
    if blobs.is_local:
        hours = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    else:
        hours = (
            sorted(p.rsplit("/", 1)[-1] for p in blobs.fs.ls(folder, detail=False))
            if blobs.fs.exists(folder)
            else []
        )
    for entry in hours:
        if entry.startswith("hour="):
            try:
                return datetime.strptime(entry.removeprefix("hour="), "%Y-%m-%dT%H").replace(
                    tzinfo=UTC
                )
            except ValueError:
                continue
    return None


def plan(
    workspace: Workspace,
    deployment: str,
    size: timedelta,
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> list[tuple[datetime, datetime]]:
    """The windows a run computes (see the module doc), oldest first."""
    grace = timedelta(seconds=float(workspace.settings.serving.log_flush_interval))
    last_end = now - grace
    if until is not None:
        last_end = min(last_end, until)
    done = computed_windows(workspace.db, deployment, size)
    if since is not None:
        first = align(since, size)
        again: set[datetime] = set()
    else:
        logged = _first_logged(workspace, deployment)
        if done:
            first = max(done) + size
        elif logged is not None:
            first = align(logged, size)
        else:
            return []
        again = _relabelled(workspace, deployment, size, done, now)
    starts: list[datetime] = sorted(s for s in again if s + size <= last_end)
    start = first
    while start + size <= last_end:
        if len(starts) >= MAX_WINDOWS:
            raise InvalidInput(
                f"More than {MAX_WINDOWS:,} windows of {size} from {first.isoformat()}: give "
                "a later --since, an --until or a larger --window."
            )
        if start not in again:
            starts.append(start)
        start += size
    return [(s, s + size) for s in sorted(set(starts))]


def _relabelled(
    workspace: Workspace,
    deployment: str,
    size: timedelta,
    done: Mapping[datetime, int],
    now: datetime,
) -> set[datetime]:
    """Computed windows of the last :data:`LABEL_HORIZON` that have requests labelled after
    the window was computed.

    Only feedback since the latest computation (less :data:`LABEL_SLACK` for rows flushed
    late) is read: a label given before it was there for that run, which recomputed the
    windows it concerned."""
    from loopml.serving.log import FEEDBACK, PREDICTIONS, _files

    recent = {s: at for s, at in done.items() if s + size >= now - LABEL_HORIZON}
    if not recent:
        return set()
    oldest = min(recent)
    since = _at(max(recent.values())) - LABEL_SLACK
    blobs = workspace.blobs
    feedback = _files(blobs, FEEDBACK, deployment, since, None)
    predictions = _files(blobs, PREDICTIONS, deployment, oldest, max(recent) + size)
    if not feedback or not predictions:
        return set()
    seconds = int(size.total_seconds())
    con = logrows.connect(workspace)
    try:
        found = con.execute(
            f"""
            SELECT DISTINCT epoch(p.time)::BIGINT // {seconds} * {seconds} AS start,
                   max(epoch_ms(f.time)) AS labelled
            FROM {logrows.relation(feedback)} f JOIN {logrows.relation(predictions)} p USING (request_id)
            WHERE p.time >= $oldest AND f.time >= $since AND NOT coalesce(p.shadow, false)
            GROUP BY 1
            """,
            {"oldest": oldest, "since": since},
        ).fetchall()
    finally:
        con.close()
    again = set()
    for start_s, labelled_ms in found:
        start = datetime.fromtimestamp(int(start_s), UTC)
        computed = recent.get(start)
        if computed is not None and int(labelled_ms) >= computed:
            again.add(start)
    return again


def _unknown_labels(
    workspace: Workspace, deployment: str, windows: list[tuple[datetime, datetime]]
) -> dict[datetime, int]:
    """Per window start, the labels given in it for request ids that no prediction logged
    from :data:`LABEL_HORIZON` before the first window to the end of the last one holds
    (one pass over the log for a whole backfill)."""
    from loopml.serving.log import FEEDBACK, PREDICTIONS, _files

    if not windows:
        return {}
    first, last = windows[0][0], windows[-1][1]
    size = windows[0][1] - windows[0][0]
    blobs = workspace.blobs
    before = last - timedelta(microseconds=1)
    feedback = _files(blobs, FEEDBACK, deployment, first, before)
    if not feedback:
        return {}
    predictions = _files(blobs, PREDICTIONS, deployment, first - LABEL_HORIZON, before)
    from loopml.monitoring.performance import unknown_labels

    con = logrows.connect(workspace)
    try:
        found = unknown_labels(
            con,
            logrows.relation(feedback),
            logrows.relation(predictions) if predictions else None,
            {"start": first, "end": last},
            int(size.total_seconds()),
        )
    finally:
        con.close()
    starts = {s for s, _ in windows}
    moments = {datetime.fromtimestamp(k, UTC): v for k, v in found.items()}
    return {s: v for s, v in moments.items() if s in starts}


# -- one window (runs in a worker) -------------------------------------------------------------


def _open(task: WindowTask) -> Workspace:
    from loopml.workspace import Workspace

    return Workspace.open(store_url=task.store_url, artifacts_url=task.artifacts_url)


def compute_window(task: WindowTask, workspace: Workspace | None = None) -> WindowResult:
    """Compute one window (reads only; :func:`store_window` stores it). ``workspace`` is the
    caller's in threads; a worker process opens one from the task's URLs."""
    ws = workspace if workspace is not None else _open(task)
    try:
        return _compute(ws, task)
    finally:
        if workspace is None:
            ws.close()


def _compute(ws: Workspace, task: WindowTask) -> WindowResult:
    from loopml.serving.log import FEEDBACK, PREDICTIONS, _files

    start, end = task.start, task.end
    empty = WindowResult(task.deployment, start, end, EMPTY, 0, metrics={(WINDOW, "rows"): 0.0})
    blobs = ws.blobs
    last = end - timedelta(microseconds=1)
    files = _files(blobs, PREDICTIONS, task.deployment, start, last)
    if not files:
        return empty
    metrics: dict[tuple[str, str], float] = {}
    warnings: list[str] = []
    summary: dict[str, Any] = {}
    params = {"start": start, "end": end, "now": task.now}
    con = logrows.connect(ws)
    try:
        relation = logrows.relation(files)
        columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
        batch = "batch_id" if "batch_id" in columns else "NULL::VARCHAR"
        con.execute(
            "CREATE TEMP TABLE served AS SELECT request_id, time, model, inputs, outputs, "
            f"latency_ms, error, {batch} AS batch_id FROM {relation} "
            "WHERE time >= $start AND time < $end AND NOT coalesce(shadow, false)",
            {"start": start, "end": end},
        )
        # Batch scoring's rows (batch_id set) are predictions too, but not requests: they
        # count for drift and performance, not for the request counts and latencies.
        found = con.execute(
            "SELECT count(*), count(*) FILTER (batch_id IS NULL), "
            "count(error) FILTER (batch_id IS NULL), "
            "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (batch_id IS NULL) FROM served"
        ).fetchone()
        assert found is not None
        scored, requests, errors, quantiles = int(found[0]), int(found[1]), int(found[2]), found[3]
        if scored == 0:
            return empty
        metrics[(WINDOW, "requests")] = float(requests)
        metrics[(WINDOW, "errors")] = float(errors)
        metrics[(WINDOW, "error_rate")] = errors / requests if requests else math.nan
        for name, q in zip(("p50_ms", "p95_ms", "p99_ms"), quantiles or [None] * 3, strict=True):
            metrics[(WINDOW, name)] = math.nan if q is None else float(q)
        versions = con.execute(
            "SELECT model, sum(json_array_length(inputs::JSON))::BIGINT AS n FROM served "
            "WHERE error IS NULL AND model IS NOT NULL GROUP BY model ORDER BY n DESC, model"
        ).fetchall()
        summary["versions"] = {str(m): int(n or 0) for m, n in versions}
        if not versions:
            metrics[(WINDOW, "rows")] = 0.0
            return WindowResult(
                task.deployment, start, end, OK, 0, None, metrics, tuple(warnings), summary
            )
        label = str(versions[0][0])
        others = [(str(m), int(n or 0)) for m, n in versions[1:]]
        if others:
            total = sum(int(n or 0) for _, n in versions)
            warnings.append(
                f"{', '.join(f'{m} ({n} of {total} rows)' for m, n in others)} left out of "
                f"drift, quality and performance: the window's metrics are {label}'s"
            )
        version = _version(ws, label, warnings)
        signature = version.signature if version is not None else None
        con.execute(logrows.monitored_sql(signature), {"model": label})
        counted = con.execute(
            "SELECT count(*), count(*) FILTER (NOT valid) FROM monitored"
        ).fetchone()
        assert counted is not None
        rows = int(counted[0])
        metrics[(WINDOW, "rows")] = float(rows)
        metrics[(WINDOW, "invalid_rows")] = float(counted[1]) if signature is not None else math.nan
        if version is not None:
            _drift(ws, con, version, task, metrics, warnings, summary)
        metrics[(WINDOW, "labels_unknown")] = float(task.labels_unknown)
        # Labels joined: those given from the window's start, up to the label horizon.
        params["until"] = min(task.now, end + LABEL_HORIZON)
        feedback_files = _files(blobs, FEEDBACK, task.deployment, start, params["until"])
        feedback = logrows.relation(feedback_files) if feedback_files else None
        from loopml.monitoring import performance

        if version is not None:
            inputs = logrows.inputs_frame(con, signature) if signature is not None else None
            labelled = performance.labelled(con, feedback, params)
            result = performance.window_performance(ws, version, labelled, inputs)
            metrics.update(((WINDOW, k), v) for k, v in result.metrics.items())
            warnings.extend(result.warnings)
        summary["warnings"] = warnings
        return WindowResult(
            task.deployment, start, end, OK, rows, label, metrics, tuple(warnings), summary
        )
    finally:
        con.close()


def _version(ws: Workspace, label: str, warnings: list[str]) -> ModelVersion | None:
    try:
        return ws.models.get(f"models:/{label}")
    except (NotFound, InvalidInput) as exc:
        warnings.append(f"{label} is not in the registry ({exc}): operational metrics only")
        return None


def _drift(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    version: ModelVersion,
    task: WindowTask,
    metrics: dict[tuple[str, str], float],
    warnings: list[str],
    summary: dict[str, Any],
) -> None:
    """Feature and prediction drift and data quality of the monitored rows against
    ``version``'s reference profile (a warning when it has none)."""
    from loopml.monitoring.profile import get_reference

    label = f"{version.name}/{version.version}"
    reference = get_reference(version.name, version.version, workspace=ws)
    if reference is None:
        warnings.append(
            f"no reference profile for {label}: run `loopml monitor set-reference {label} "
            "--data PATH` (drift and data quality need one)"
        )
        return
    import pandas as pd

    from loopml.monitoring.comparison import compare

    profile = reference.profile
    names = list(profile.features)
    selects, present = [], []
    for i, feature in enumerate(profile.features.values()):
        value = logrows.field(feature.name)
        numeric = feature.kind == "numeric"
        sql = logrows.as_number(value) if numeric else logrows.as_text(value)
        selects.append(f"{sql} AS f{i}")
        present.append(f"count({value}) AS p{i}")
    predictions = None
    if profile.predictions is not None:
        out = logrows.output("out")
        numeric = profile.predictions.kind == "numeric"
        selects.append(f"{logrows.as_number(out) if numeric else logrows.as_text(out)} AS p")
    frame = (
        con.execute(f"SELECT {', '.join(selects)} FROM monitored ORDER BY row").df()
        if selects
        else pd.DataFrame()
    )
    if profile.predictions is not None:
        predictions = frame.pop("p")
    frame.columns = names
    if present:
        counts = con.execute(f"SELECT {', '.join(present)} FROM monitored").fetchone()
        assert counts is not None
        absent = [n for n, c in zip(names, counts, strict=True) if not c]
        if absent:
            frame = frame.drop(columns=absent)
            warnings.append(f"feature(s) {absent} of the reference are in no logged row")
    drifts = compare(
        reference,
        frame,
        sample=_sample(reference),
        predictions=predictions,
        bands=task.bands,
    )
    features: dict[str, Any] = {}
    for drifted in drifts:
        if drifted.feature == PREDICTION:
            summary["prediction"] = _record(drifted, metrics)
        else:
            features[drifted.feature] = _record(drifted, metrics)
    summary["features"] = features


def _sample(reference: Reference) -> pd.DataFrame:
    """The reference's stored sample, read once per process (a blob never changes)."""
    key = reference.sample_hash
    if key is None:
        return reference.sample()
    with _samples_lock:
        found = _samples.get(key)
    if found is None:
        found = reference.sample()
        with _samples_lock:
            _samples[key] = found
            while len(_samples) > SAMPLE_CACHE:
                _samples.pop(next(iter(_samples)))
    return found


def _record(drifted: FeatureDrift, metrics: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Store one feature's drift metrics (None: not applicable, left out); its summary for
    reports (shares per bin beside the reference's)."""
    feature = drifted.feature
    if drifted.missing:
        metrics[(feature, "missing")] = 1.0
        return {"kind": drifted.kind, "missing": True}
    for name, value in drifted.metrics().items():
        if value is not None:
            metrics[(feature, name)] = float(value)
    return {
        "kind": drifted.kind,
        "band": drifted.band,
        "rows": drifted.rows,
        "current_proportions": list(drifted.current_proportions),
        "reference_proportions": list(drifted.reference_proportions),
        "buckets": list(drifted.buckets),
    }


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (NaN as null: a share of no rows)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- storing -----------------------------------------------------------------------------------


def store_window(db: Database, result: WindowResult, *, computed_at: datetime | None = None) -> int:
    """Store ``result`` in place of any earlier computation of that window (one
    transaction); the window's id. ``computed_at`` (default: now) is the time its labels
    were read up to."""
    [window_id] = store_windows(db, [result], computed_at=computed_at)
    return window_id


def store_windows(
    db: Database, results: list[WindowResult], *, computed_at: datetime | None = None
) -> list[int]:
    """:func:`store_window` for several windows in one transaction."""
    computed = now_ms() if computed_at is None else _ms(computed_at)

    def tx(conn: Connection) -> list[int]:
        ids = []
        for result in results:
            ids.append(_replace(conn, result, computed))
        return ids

    return db.transact(tx)


def _replace(conn: Connection, result: WindowResult, computed: int) -> int:
    where = (
        (monitor_windows.c.deployment == result.deployment)
        & (monitor_windows.c.start_at == _ms(result.start))
        & (monitor_windows.c.end_at == _ms(result.end))
    )
    old = conn.execute(select(monitor_windows.c.id).where(where)).scalars().all()
    if old:
        conn.execute(delete(monitor_metrics).where(monitor_metrics.c.window_id.in_(old)))
        conn.execute(delete(monitor_windows).where(monitor_windows.c.id.in_(old)))
    name, _, number = (result.model or "").rpartition("/")
    inserted = conn.execute(
        insert(monitor_windows).values(
            deployment=result.deployment,
            start_at=_ms(result.start),
            end_at=_ms(result.end),
            model=name or None,
            version=int(number) if name and number.isdigit() else None,
            rows=result.rows,
            status=result.status,
            summary=json.dumps(_plain(result.summary), default=str, allow_nan=False)
            if result.summary
            else None,
            computed_at=computed,
        )
    ).inserted_primary_key
    assert inserted is not None
    window_id = int(inserted[0])
    if result.metrics:
        conn.execute(
            insert(monitor_metrics),
            [
                {"window_id": window_id, "feature": f, "metric": m, "value": _finite(v)}
                for (f, m), v in sorted(result.metrics.items())
            ],
        )
    return int(window_id)


# -- the run -----------------------------------------------------------------------------------


def run(
    deployment: str,
    *,
    window: str | timedelta | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    executor: str | Executor | None = None,
    now: datetime | None = None,
    progress: Callable[..., None] | None = None,
    restart: bool = False,
    workspace: WorkspaceLike = None,
) -> list[WindowResult]:
    """Compute and store ``deployment``'s closed windows not yet computed (or all from
    ``since``), then evaluate the alert rules over them and deliver their notices; the
    computed windows, oldest first. ``window`` defaults to ``[monitor] window``; see the
    module doc.

    All of a deployment's windows have one length: a ``window`` other than the stored
    windows' length raises :class:`WindowLengthMismatch`, unless ``restart`` deletes the
    stored windows first (and the run computes them again from the log).

    >>> run("churn", window="1h", workspace=ws)[-1].value("p99_ms")     # doctest: +SKIP
    """
    from loopml.pipelines.context import TaskContext, function_payload
    from loopml.pipelines.executors import Job, resolve_executor
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    settings = ws.settings.monitor
    size = parse_window(window or settings.window)
    at = _utc(now) if now is not None else datetime.now(UTC)
    begin, finish = _moment(since, "since"), _moment(until, "until")
    served = ws.deployments.get(deployment)  # DeploymentNotFound with a hint
    from loopml.monitoring.alerts import check_rule_features

    check_rule_features(served, workspace=ws)
    if restart:
        forget_windows(ws.db, deployment)
    else:
        _check_length(ws.db, deployment, size)
    windows = plan(ws, deployment, size, since=begin, until=finish, now=at)
    report = progress or (lambda **_: None)
    report(total_files=len(windows))
    bands = (float(settings.psi_bands[0]), float(settings.psi_bands[1]))
    unknown = _unknown_labels(ws, deployment, windows)
    tasks = [
        WindowTask(
            deployment,
            s,
            e,
            at,
            ws.settings.store_url,
            ws.settings.artifacts_url,
            bands,
            unknown.get(s, 0),
        )
        for s, e in windows
    ]
    results: dict[int, WindowResult] = {}
    failures: list[str] = []
    if tasks:
        # Each worker holds one window's columns: no more workers than cores.
        workers = min(len(tasks), os.cpu_count() or 1)
        pool, owned = resolve_executor(
            executor or ("inline" if len(tasks) == 1 else "threads"), workers
        )
        in_process = pool.name in ("inline", "threads")
        if not in_process:
            _check_shared(ws, pool.name)
        outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        run_id = uuid.uuid4().hex
        payload = function_payload(compute_window)
        try:
            for number, task in enumerate(tasks):
                context = TaskContext(
                    pipeline="monitor.run",
                    pipeline_run_id=run_id,
                    node=deployment,
                    task=f"{deployment}[{task.start.isoformat()}]",
                    attempt=1,
                    partition=task.start.isoformat(),
                )
                job = Job(
                    number,
                    compute_window,
                    (task, ws if in_process else None),
                    {},
                    context,
                    payload=lambda: payload,
                )
                pool.submit(job, outcomes.put)
            for _ in tasks:
                outcome = outcomes.get()
                task = tasks[outcome.job.id]
                if outcome.ok:
                    result: WindowResult = outcome.value
                    store_window(ws.db, result, computed_at=at)
                    results[outcome.job.id] = result
                else:
                    failures.append(
                        f"{task.start.isoformat()}: {type(outcome.error).__name__}: "
                        f"{str(outcome.error).rstrip('.')}"
                    )
                report(files=1)
        finally:
            if owned:
                pool.close()
    from loopml.monitoring.alerts import deliver_pending, evaluate

    evaluate(deployment, now=at, workspace=ws)
    deliver_pending(workspace=ws)
    if failures:
        raise WindowsFailed(
            f"{len(failures)} of {len(tasks)} window(s) of {deployment!r} failed: "
            f"{'; '.join(failures[:5])}. The others are stored; run again with --since to "
            "retry them."
        )
    return [results[i] for i in sorted(results)]


def _check_shared(ws: Workspace, executor: str) -> None:
    """Workers in other processes open the workspace from its URLs: refuse stores only this
    process can see."""
    store, blobs = ws.settings.store_url, ws.settings.artifacts_url
    if store in ("sqlite://", "sqlite:///:memory:") or blobs.startswith("memory://"):
        raise InvalidInput(
            f"The {executor} executor runs windows in other processes, which can't see this "
            f"workspace's in-memory store ({store if store.startswith('sqlite') else blobs}): "
            'use executor="threads", or a store on disk or a server.'
        )


# -- reading back ------------------------------------------------------------------------------


def stored_window(row: Any, metrics: Mapping[tuple[str, str], float]) -> WindowResult:
    """A ``monitor_windows`` row (and its metrics) as a :class:`WindowResult`."""
    summary = json.loads(row.summary) if row.summary else {}
    return WindowResult(
        deployment=row.deployment,
        start=_at(row.start_at),
        end=_at(row.end_at),
        status=row.status,
        rows=int(row.rows),
        model=f"{row.model}/{row.version}" if row.model else None,
        metrics=dict(metrics),
        warnings=tuple(summary.get("warnings", ())),
        summary=summary,
    )


def list_windows(
    deployment: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    workspace: WorkspaceLike = None,
) -> list[WindowResult]:
    """The stored windows of ``deployment`` that start at or after ``since`` (and before
    ``until``), oldest first, with their metrics."""
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    stmt = select(monitor_windows).where(monitor_windows.c.deployment == deployment)
    begin, finish = _moment(since, "since"), _moment(until, "until")
    if begin is not None:
        stmt = stmt.where(monitor_windows.c.start_at >= _ms(begin))
    if finish is not None:
        stmt = stmt.where(monitor_windows.c.start_at < _ms(finish))
    stmt = stmt.order_by(monitor_windows.c.start_at, monitor_windows.c.end_at)
    with ws.db.read() as conn:
        rows = conn.execute(stmt).all()
        ids = [r.id for r in rows]
        found: dict[int, dict[tuple[str, str], float]] = {i: {} for i in ids}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            for m in conn.execute(
                select(monitor_metrics).where(monitor_metrics.c.window_id.in_(part))
            ):
                found[m.window_id][(m.feature, m.metric)] = (
                    math.nan if m.value is None else float(m.value)
                )
    return [stored_window(r, found[r.id]) for r in rows]


def metric_series(
    deployment: str,
    *,
    metric: str | None = None,
    feature: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    workspace: WorkspaceLike = None,
) -> pd.DataFrame:
    """The stored metrics of ``deployment`` as a long time series: one row per (window,
    feature, metric) with ``start``, ``end`` (UTC), ``status``, ``model``, ``feature``
    (``""`` for the window, ``__prediction__`` for the outputs), ``metric``, ``value``
    (NaN where undefined); oldest first. ``metric``/``feature`` select one."""
    import pandas as pd

    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    stmt = (
        select(
            monitor_windows.c.start_at,
            monitor_windows.c.end_at,
            monitor_windows.c.status,
            monitor_windows.c.model,
            monitor_windows.c.version,
            monitor_metrics.c.feature,
            monitor_metrics.c.metric,
            monitor_metrics.c.value,
        )
        .join(monitor_metrics, monitor_metrics.c.window_id == monitor_windows.c.id)
        .where(monitor_windows.c.deployment == deployment)
    )
    begin, finish = _moment(since, "since"), _moment(until, "until")
    if begin is not None:
        stmt = stmt.where(monitor_windows.c.start_at >= _ms(begin))
    if finish is not None:
        stmt = stmt.where(monitor_windows.c.start_at < _ms(finish))
    if metric is not None:
        stmt = stmt.where(monitor_metrics.c.metric == metric)
    if feature is not None:
        stmt = stmt.where(monitor_metrics.c.feature == feature)
    stmt = stmt.order_by(
        monitor_windows.c.start_at, monitor_metrics.c.feature, monitor_metrics.c.metric
    )
    with ws.db.read() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame(
        {
            "start": pd.to_datetime([r.start_at for r in rows], unit="ms", utc=True),
            "end": pd.to_datetime([r.end_at for r in rows], unit="ms", utc=True),
            "status": [r.status for r in rows],
            "model": [f"{r.model}/{r.version}" if r.model else None for r in rows],
            "feature": [r.feature for r in rows],
            "metric": [r.metric for r in rows],
            "value": [math.nan if r.value is None else float(r.value) for r in rows],
        }
    )
    return frame
