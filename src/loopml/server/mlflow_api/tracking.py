"""MLflow's tracking REST API (2.x/3.x) over loopml's own records.

Mounted under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``, so the real MLflow client
(``MLFLOW_TRACKING_URI=http://127.0.0.1:5000``) logs into a loopml workspace:

- an MLflow experiment is a loopml experiment (same id; MLflow's ``"0"`` is loopml's
  ``Default`` experiment, created on first use; its endpoints are in :mod:`.experiments`);
- an MLflow run is a loopml run (the same 32-hex id), its params, metrics (every point, with
  step and timestamp), tags and dataset inputs are loopml's, so ``loopml runs show`` and
  ``ws.runs.get`` / ``ws.runs.search`` see what the client logged; its ``artifact_uri`` is
  ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``;
- what loopml has no column for (an experiment's lifecycle and tags, a dataset's schema and
  profile, the logged models a run produced) lives in :mod:`.tables`.

Requests and answers are MLflow's JSON (GET takes query parameters); errors are MLflow's
``{"error_code", "message"}`` so the client raises the ``MlflowException`` it always does.
Filters use MLflow's syntax (loopml's filter language is a superset; ``attributes.user_id``
and ``attributes.created`` are translated). Limits are MLflow's: at most 1000 metrics, 100
params and 100 tags (1000 items in all) per ``log-batch``; keys up to 250 characters, param
values up to 6000, tag values up to 8000.

Runs created here are owned by the server process (its heartbeat keeps them RUNNING for
loopml's readers while the server is up); like MLflow, a run that is not deleted takes new
points whatever its status.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from loopml.exceptions import ParamConflict
from loopml.server.context import EDIT, EXPERIMENT, MANAGE, READ, ServerContext
from loopml.server.errors import ApiError
from loopml.server.http import reply, request_args
from loopml.server.mlflow_api.experiments import ExperimentsApi
from loopml.server.mlflow_api.tables import (
    logged_models,
    mlflow_dataset_inputs,
)
from loopml.server.mlflow_api.values import (
    DEFAULT_SEARCH_RUNS,
    LOG_MODEL_TAG,
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_RESULTS,
    PARENT_TAG,
    RUN_ID_RE,
    RUN_NAME_TAG,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    USER_TAG,
    VIEW_TYPES,
    add_model_metrics,
    bad,
    check_key,
    integer,
    key_values,
    link_models,
    metric_json,
    model_metrics,
    param_text,
    point,
    points_of,
    run_name,
    string_list,
    tag_text,
    text,
    translate_filter,
)
from loopml.store import liveness
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.tracking import keys
from loopml.tracking.runs import (
    RunStatus,
    emit_run_ended,
    generate_name,
    insert_running,
    run_row,
    upsert_tags,
)
from loopml.tracking.search import page_offset, page_token_for, search_run_ids
from loopml.tracking.tables import (
    artifacts,
    metrics,
    params,
    run_inputs,
    runs,
    tags,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.store.db import Database

logger = logging.getLogger(__name__)

# -- the API ---------------------------------------------------------------------------------


class TrackingApi:
    """The endpoints, over one server context (see the module's docstring)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.limit = ctx.settings.max_request_bytes
        self.experiments = ExperimentsApi(ctx)
        self._run_experiment: dict[str, int] = {}
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._live: set[str] = set()

    @property
    def db(self) -> Database:
        return self.ws.db

    async def body(self, request: Request) -> dict[str, Any]:
        return await request_args(request, self.limit)

    # -- runs: reading ---------------------------------------------------------------------

    def run_experiment(self, run_id: str) -> int:
        """The experiment of a run (cached: a run never moves); RESOURCE_DOES_NOT_EXIST."""
        found = self._run_experiment.get(run_id)
        if found is not None:
            return found
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
        with self.db.read() as conn:
            found = conn.execute(select(runs.c.experiment_id).where(runs.c.id == run_id)).scalar()
        if found is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
        if len(self._run_experiment) > 100_000:
            self._run_experiment.clear()
        self._run_experiment[run_id] = found
        return found

    async def run_for(self, request: Request, body: dict[str, Any], level: Any) -> str:
        """The request's run id, after the access check on its experiment."""
        run_id = text(body, "run_id", required=False) or text(body, "run_uuid", required=False)
        if not run_id:
            raise bad("Missing value for required parameter 'run_id'.")
        exp_id = self._run_experiment.get(run_id)
        if exp_id is None:
            exp_id = await self.ctx.call(self.run_experiment, run_id)
        try:
            self.ctx.access.check(request, EXPERIMENT, str(exp_id), level)
        except ApiError as exc:
            if exc.status == 404:  # hidden: worded as a missing run, so nothing tells it exists
                raise ApiError(
                    "RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found"
                ) from None
            raise
        return run_id

    def run_json(self, conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
        """MLflow's Run objects (info, data, inputs, outputs) of these ids, in their order.

        Plain SQL read as tuples: search answers thousands of runs, and building Row objects
        and statements was most of its time."""
        if not ids:
            return []
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            out.extend(_runs_json(conn, chunk, ", ".join([marker] * len(chunk))))
        return out

    def load_run(self, run_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            found = self.run_json(conn, [run_id])
        if not found:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
        return found[0]

    async def get_run(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, READ)
        return reply({"run": await self.ctx.call(self.load_run, run_id)})

    async def search_runs(self, request: Request) -> Response:
        body = await self.body(request)
        exp_ids = [await self.experiments.exp_key(e) for e in string_list(body, "experiment_ids")]
        if not exp_ids:
            raise bad("search-runs needs experiment_ids: the experiments to search in.")
        readable = self.ctx.access.readable(request, EXPERIMENT)
        if readable is not None:
            exp_ids = [e for e in exp_ids if str(e) in readable]
        max_results = integer(body, "max_results", DEFAULT_SEARCH_RUNS)
        assert max_results is not None
        if not 0 < max_results <= MAX_RESULTS:
            raise bad(f"Invalid value {max_results} for parameter 'max_results' supplied.")
        view = VIEW_TYPES.get(str(body.get("run_view_type") or "1"), str(body.get("run_view_type")))
        if view not in VIEW_TYPES.values():
            raise bad(f"run_view_type must be ACTIVE_ONLY, DELETED_ONLY or ALL, got {view!r}.")
        filter_ = translate_filter(text(body, "filter", required=False))
        order_by = [translate_filter(o) or o for o in string_list(body, "order_by")] or None
        token = text(body, "page_token", required=False) or None

        def find() -> dict[str, Any]:
            offset = page_offset(token)
            if not exp_ids:
                return {"runs": []}
            if view == "DELETED_ONLY":
                every = search_run_ids(self.db, exp_ids, filter_, order_by, 10**9, True)
                with self.db.read() as conn:
                    deleted = set(
                        conn.execute(
                            select(runs.c.id).where(
                                runs.c.experiment_id.in_(exp_ids), runs.c.deleted_at.is_not(None)
                            )
                        ).scalars()
                    )
                ids = [i for i in every if i in deleted][offset : offset + max_results + 1]
            else:
                ids = search_run_ids(
                    self.db, exp_ids, filter_, order_by, max_results + 1, view == "ALL", offset
                )
            more = len(ids) > max_results
            ids = ids[:max_results]
            with self.db.read() as conn:
                found = self.run_json(conn, ids)
            answer: dict[str, Any] = {"runs": found}
            if more:
                answer["next_page_token"] = page_token_for(offset + max_results)
            return answer

        return reply(await self.ctx.call(find))

    async def get_metric_history(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, READ)
        key = text(body, "metric_key")
        max_results = integer(body, "max_results")
        token = text(body, "page_token", required=False) or None

        def find() -> dict[str, Any]:
            offset = page_offset(token)
            stmt = (
                select(metrics.c.value, metrics.c.timestamp, metrics.c.step)
                .where(metrics.c.run_id == run_id, metrics.c.key == key)
                .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
                .offset(offset)
            )
            if max_results is not None:
                stmt = stmt.limit(max_results + 1)
            with self.db.read() as conn:
                rows = conn.execute(stmt).all()
            more = max_results is not None and len(rows) > max_results
            if max_results is not None:
                rows = rows[:max_results]
            answer: dict[str, Any] = {
                "metrics": [
                    {"key": key, "value": metric_json(v), "timestamp": ts, "step": s}
                    for v, ts, s in rows
                ]
            }
            if more and max_results is not None:
                answer["next_page_token"] = page_token_for(offset + max_results)
            return answer

        return reply(await self.ctx.call(find))

    async def get_history_bulk_interval(self, request: Request) -> Response:
        """Points of one metric of several runs between two steps, at most ``max_results``
        per run, spread evenly over the steps (what MLflow's charts ask for)."""
        body = await self.body(request)
        run_ids = string_list(body, "run_ids")
        if not run_ids:
            raise bad("Missing value for required parameter 'run_ids'.")
        if len(run_ids) > 100:
            raise bad(f"At most 100 run_ids, got {len(run_ids)}.")
        for run_id in run_ids:
            await self.run_for(request, {"run_id": run_id}, READ)
        key = text(body, "metric_key")
        start, end = integer(body, "start_step"), integer(body, "end_step")
        if (start is None) != (end is None):
            raise bad("Give both start_step and end_step, or neither.")
        max_results = integer(body, "max_results", 320)
        assert max_results is not None
        if not 0 < max_results <= 2500:
            raise bad(f"max_results must be between 1 and 2500, got {max_results}.")

        def find() -> dict[str, Any]:
            out: list[dict[str, Any]] = []
            with self.db.read() as conn:
                for run_id in run_ids:
                    stmt = select(metrics.c.value, metrics.c.timestamp, metrics.c.step).where(
                        metrics.c.run_id == run_id, metrics.c.key == key
                    )
                    if start is not None and end is not None:
                        stmt = stmt.where(metrics.c.step.between(start, end))
                    rows = conn.execute(stmt.order_by(metrics.c.step, metrics.c.timestamp)).all()
                    if len(rows) > max_results:
                        stride = (len(rows) - 1) / (max_results - 1) if max_results > 1 else 0
                        picks = sorted({round(i * stride) for i in range(max_results)})
                        rows = [rows[i] for i in picks]
                    out.extend(
                        {
                            "key": key,
                            "value": metric_json(v),
                            "timestamp": ts,
                            "step": s,
                            "run_id": run_id,
                        }
                        for v, ts, s in rows
                    )
            return {"metrics": out}

        return reply(await self.ctx.call(find))

    async def list_artifacts(self, request: Request) -> Response:
        """The older listing: ``run_id`` and ``path`` → files with paths from the run's
        artifact root."""
        from loopml.server.mlflow_api.paths import children, clean_path

        body = await self.body(request)
        run_id = await self.run_for(request, body, READ)
        raw = text(body, "path", required=False)
        sub = clean_path(raw) if raw else ""

        def find() -> dict[str, Any]:
            with self.db.read() as conn:
                exp_id = conn.execute(
                    select(runs.c.experiment_id).where(runs.c.id == run_id)
                ).scalar()
                stmt = select(artifacts.c.path, artifacts.c.digest, artifacts.c.size).where(
                    artifacts.c.run_id == run_id
                )
                if sub:
                    stmt = stmt.where(artifacts.c.path.startswith(sub + "/"))
                cut = len(sub) + 1 if sub else 0
                tree = {p[cut:]: (d, s) for p, d, s in conn.execute(stmt)}
            files = [
                {**entry, "path": f"{sub}/{entry['path']}" if sub else entry["path"]}
                for entry in children(tree, sub)
            ]
            return {"root_uri": f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts", "files": files}

        return reply(await self.ctx.call(find))

    # -- runs: writing ---------------------------------------------------------------------

    def start_heartbeat(self, run_id: str) -> None:
        """Keep the heartbeat of a RUNNING run this server created fresh, so loopml's
        readers on other hosts don't take it for dead (store/liveness.py). One thread beats
        for all of them, and stops when none is left running."""
        with self._lock:
            self._live.add(run_id)
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(
                target=self._beat, args=(liveness.owner_token(),), name="loopml-mlflow-heartbeat"
            )
            self._heartbeat.daemon = True
            self._heartbeat.start()

    def _beat(self, owner: str) -> None:
        while True:
            threading.Event().wait(liveness.HEARTBEAT_S)
            with self._lock:
                ids = list(self._live)
                if not ids:
                    self._heartbeat = None
                    return

            mine = (runs.c.id.in_(ids), runs.c.owner == owner, runs.c.status == "RUNNING")

            def tx(conn: Connection, mine: tuple[Any, ...] = mine) -> set[str]:
                conn.execute(update(runs).where(*mine).values(heartbeat_at=now_ms()))
                return set(conn.execute(select(runs.c.id).where(*mine)).scalars())

            try:
                running = self.db.transact(tx)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                logger.debug("heartbeat of %d MLflow runs failed", len(ids), exc_info=True)
                continue
            with self._lock:
                self._live.difference_update(set(ids) - running)

    async def create_run(self, request: Request) -> Response:
        body = await self.body(request)
        exp_id = await self.experiments.exp_key(
            text(body, "experiment_id", required=False, default="0")
        )
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)
        items = {
            check_key(k, "tag key"): tag_text(k, v) for k, v in key_values(body.get("tags"), "tags")
        }
        name = text(body, "run_name", required=False) or items.get(RUN_NAME_TAG) or generate_name()
        run_name(name)
        items[RUN_NAME_TAG] = name
        user = text(body, "user_id", required=False)
        if user and USER_TAG not in items:
            items[USER_TAG] = tag_text(USER_TAG, user)
        start = integer(body, "start_time") or now_ms()
        if not keys.TIMESTAMP_MIN_MS <= start < keys.TIMESTAMP_MAX_MS:
            raise bad(f"start_time {start} is not milliseconds between 1970 and 2262.")
        parent = items.get(PARENT_TAG)
        run_id = uuid.uuid4().hex
        owner = liveness.owner_token()

        def tx(conn: Connection) -> None:
            if not self.experiments.require_experiment(conn, exp_id):
                raise bad(f"The experiment {exp_id} must be in the 'active' state.")
            parent_id = None
            if parent and conn.execute(select(runs.c.id).where(runs.c.id == parent)).first():
                parent_id = parent
            insert_running(
                conn, run_id, exp_id, name, start=start, parent=parent_id, owner=owner, tags=items
            )

        await self.ctx.call(self.db.transact, tx)
        self._run_experiment[run_id] = exp_id
        self.start_heartbeat(run_id)
        run = {
            "info": {
                "run_id": run_id,
                "run_uuid": run_id,
                "run_name": name,
                "experiment_id": str(exp_id),
                "user_id": items.get(USER_TAG, ""),
                "status": "RUNNING",
                "start_time": start,
                "artifact_uri": f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts",
                "lifecycle_stage": "active",
            },
            "data": {"tags": [{"key": k, "value": v} for k, v in sorted(items.items())]},
            "inputs": {"dataset_inputs": []},
        }
        return reply({"run": run})

    def writable(self, conn: Connection, run_id: str) -> Any:
        """The run's row (status, name, experiment name) for a write; a deleted run takes
        nothing (MLflow: "must be in the 'active' state")."""
        row = run_row(conn, run_id, runs.c.deleted_at, runs.c.status, runs.c.name, runs.c.end_time)
        if row is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
        if row.deleted_at is not None:
            raise bad(f"The run {run_id} must be in the 'active' state. Current state is deleted.")
        return row

    def write(
        self,
        run_id: str,
        points: list[tuple[str, str, float | None, int, int]],
        param_items: list[tuple[str, str]],
        tag_items: dict[str, str],
        model_metrics: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        """Store what one request logged, in one transaction: all of it or nothing.
        ``model_metrics`` are (logged model id, MLflow Metric) of points logged for a
        logged model too (MLflow 3's ``model_id``): added to that model's metrics."""

        def tx(conn: Connection) -> None:
            marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            # The hot path (log-metric, log-batch): plain SQL, no statement to build.
            found = conn.exec_driver_sql(
                f"SELECT deleted_at FROM runs WHERE id = {marker}", (run_id,)
            ).first()
            if found is None:
                raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
            if found[0] is not None:
                raise bad(
                    f"The run {run_id} must be in the 'active' state. Current state is deleted."
                )
            if param_items:
                insert_params(conn, run_id, param_items)
            if tag_items:
                upsert_tags(conn, run_id, tag_items)
                name = tag_items.get(RUN_NAME_TAG)
                if name is not None:
                    conn.execute(update(runs).where(runs.c.id == run_id).values(name=name))
            if points:
                store_points(conn, points, marker)
            if model_metrics:
                add_model_metrics(conn, model_metrics)

        self.db.transact(tx)

    async def log_metric(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        item = point(run_id, body)
        linked = model_metrics(run_id, [body], [item])
        await self.ctx.call(self.write, run_id, [item], [], {}, linked)
        return reply({})

    async def log_param(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        key = check_key(text(body, "key"), "param key")
        value = param_text(key, body.get("value", ""))
        await self.ctx.call(self.write, run_id, [], [(key, value)], {})
        return reply({})

    async def set_tag(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        key = check_key(text(body, "key"), "tag key")
        value = tag_text(key, body.get("value", ""))
        if key == RUN_NAME_TAG:
            run_name(value)
        await self.ctx.call(self.write, run_id, [], [], {key: value})
        return reply({})

    async def delete_tag(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        key = text(body, "key")

        def tx(conn: Connection) -> None:
            self.writable(conn, run_id)
            gone = conn.execute(delete(tags).where(tags.c.run_id == run_id, tags.c.key == key))
            if not gone.rowcount:
                raise ApiError(
                    "RESOURCE_DOES_NOT_EXIST", f"No tag with name: {key} in run with id {run_id}"
                )

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def log_batch(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        metric_items = body.get("metrics") or []
        param_pairs = key_values(body.get("params"), "params")
        tag_pairs = key_values(body.get("tags"), "tags")
        if not isinstance(metric_items, list):
            raise bad("'metrics' must be a list of metrics.")
        if len(metric_items) > MAX_METRICS_PER_BATCH:
            raise bad(
                f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} "
                f"metrics. Got {len(metric_items)} metrics. Please split up metrics across "
                "multiple requests and try again."
            )
        for what, pairs in (("params", param_pairs), ("tags", tag_pairs)):
            if len(pairs) > MAX_PARAMS_TAGS_PER_BATCH:
                raise bad(
                    f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} "
                    f"{what}. Got {len(pairs)} {what}. Please split up {what} across multiple "
                    "requests and try again."
                )
        total = len(metric_items) + len(param_pairs) + len(tag_pairs)
        if total > MAX_ENTITIES_PER_BATCH:
            raise bad(
                f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} total "
                f"metrics, params, and tags. Got {total}. Please split up the request."
            )
        points = points_of(run_id, metric_items)
        param_items: dict[str, str] = {}
        for k, v in param_pairs:
            key = check_key(k, "param key")
            value = param_text(key, v)
            if param_items.get(key, value) != value:
                raise bad(
                    f"Duplicate parameter keys with different values in one batch: '{key}' "
                    f"is both {param_items[key]!r} and {value!r}."
                )
            param_items[key] = value
        tag_items = {check_key(k, "tag key"): tag_text(k, v) for k, v in tag_pairs}
        if RUN_NAME_TAG in tag_items:
            run_name(tag_items[RUN_NAME_TAG])
        linked = model_metrics(run_id, metric_items, points)
        await self.ctx.call(
            self.write, run_id, points, list(param_items.items()), tag_items, linked
        )
        return reply({})

    async def update_run(self, request: Request) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        status = text(body, "status", required=False).upper() or None
        if status is not None and status not in RUN_STATUSES:
            raise bad(f"Invalid run status {status!r}: one of {', '.join(sorted(RUN_STATUSES))}.")
        if status == "SCHEDULED":
            status = "RUNNING"  # loopml has no queue of scheduled runs: it runs
        end_time = integer(body, "end_time")
        if end_time is not None and not keys.TIMESTAMP_MIN_MS <= end_time < keys.TIMESTAMP_MAX_MS:
            raise bad(f"end_time {end_time} is not milliseconds between 1970 and 2262.")
        name = text(body, "run_name", required=False) or None
        if name is not None:
            run_name(name)

        def tx(conn: Connection) -> dict[str, Any]:
            row = self.writable(conn, run_id)
            values: dict[str, Any] = {}
            if name is not None:
                values["name"] = name
                upsert_tags(conn, run_id, {RUN_NAME_TAG: name})
            if status is not None:
                values["status"] = status
                if status in TERMINAL_STATUSES:
                    values["end_time"] = end_time if end_time is not None else now_ms()
                else:
                    values["end_time"] = None
            elif end_time is not None:
                values["end_time"] = end_time
            if values:
                conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            if status in TERMINAL_STATUSES and row.status != status:
                emit_run_ended(
                    conn, row.experiment, run_id, values.get("name", row.name), RunStatus(status)
                )
            found = self.run_json(conn, [run_id])
            return dict(found[0]["info"])

        return reply({"run_info": await self.ctx.call(self.db.transact, tx)})

    async def _set_run_deleted(self, request: Request, deleted: bool) -> Response:
        body = await self.body(request)
        run_id = await self.run_for(request, body, MANAGE)

        def tx(conn: Connection) -> None:
            found = conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first()
            if found is None:
                raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(deleted_at=now_ms() if deleted else None)
            )

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def delete_run(self, request: Request) -> Response:
        return await self._set_run_deleted(request, True)

    async def restore_run(self, request: Request) -> Response:
        return await self._set_run_deleted(request, False)

    async def log_model(self, request: Request) -> Response:
        """MLflow 2's record of a logged model: appended to the run's
        ``mlflow.log-model.history`` tag, as MLflow's own stores do."""
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        raw = text(body, "model_json")
        try:
            model = json.loads(raw)
        except ValueError:
            raise bad("model_json is not JSON.") from None
        if not isinstance(model, dict):
            raise bad("model_json must be a JSON object.")

        def tx(conn: Connection) -> None:
            self.writable(conn, run_id)
            current = conn.execute(
                select(tags.c.value).where(tags.c.run_id == run_id, tags.c.key == LOG_MODEL_TAG)
            ).scalar()
            history = json.loads(current) if current else []
            history.append(model)
            upsert_tags(conn, run_id, {LOG_MODEL_TAG: json.dumps(history)})

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def log_inputs(self, request: Request) -> Response:
        """Datasets a run read: each becomes a loopml run input (name, MLflow's digest,
        source); its source type, schema, profile and tags are kept beside it. Logged
        models it used (MLflow 3) are kept in ``mlflow_run_models``."""
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        models = body.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise bad("'models' must be a list of {model_id} objects.")
        model_rows = []
        for model in models:
            model_id = text(model, "model_id")
            if len(model_id) > 64:
                raise bad(f"Model id {model_id[:70]!r} is over 64 characters.")
            model_rows.append(
                {"run_id": run_id, "model_id": model_id, "direction": "input", "step": None}
            )
        datasets = body.get("datasets") or []
        if not isinstance(datasets, list):
            raise bad("'datasets' must be a list of dataset inputs.")
        rows = []
        for item in datasets:
            dataset = item.get("dataset") if isinstance(item, dict) else None
            if not isinstance(dataset, dict):
                raise bad(f"A dataset input needs a 'dataset' object: {item!r}")
            name = check_key(text(dataset, "name"), "dataset name")
            digest = text(dataset, "digest")
            if len(digest) > 64:
                raise bad(f"Dataset digest {digest[:70]!r} is over 64 characters.")
            input_tags = {
                check_key(k, "tag key"): tag_text(k, v)
                for k, v in key_values(item.get("tags"), "tags")
            }
            rows.append(
                (
                    {
                        "run_id": run_id,
                        "name": name,
                        "digest": digest,
                        "source": dataset.get("source") or None,
                        "size": None,
                        "file_count": None,
                        "created_at": now_ms(),
                    },
                    {
                        "run_id": run_id,
                        "name": name,
                        "source_type": dataset.get("source_type") or None,
                        "schema": dataset.get("schema") or None,
                        "profile": dataset.get("profile") or None,
                        "tags": json.dumps(input_tags) if input_tags else None,
                    },
                )
            )

        def tx(conn: Connection) -> None:
            self.writable(conn, run_id)
            if model_rows:
                link_models(conn, model_rows)
            if not rows:
                return
            stmt = upsert(conn.dialect.name, run_inputs)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[run_inputs.c.run_id, run_inputs.c.name],
                    set_={"digest": stmt.excluded.digest, "source": stmt.excluded.source},
                ),
                [r[0] for r in rows],
            )
            extra = upsert(conn.dialect.name, mlflow_dataset_inputs)
            conn.execute(
                extra.on_conflict_do_update(
                    index_elements=[mlflow_dataset_inputs.c.run_id, mlflow_dataset_inputs.c.name],
                    set_={
                        "source_type": extra.excluded.source_type,
                        "schema": extra.excluded.schema,
                        "profile": extra.excluded.profile,
                        "tags": extra.excluded.tags,
                    },
                ),
                [r[1] for r in rows],
            )

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def log_outputs(self, request: Request) -> Response:
        """MLflow 3: the logged models a run produced (``mlflow.<flavor>.log_model`` in a
        run). Kept per run; a logged model without a source run gets this one."""
        body = await self.body(request)
        run_id = await self.run_for(request, body, EDIT)
        models = body.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise bad("'models' must be a list of {model_id, step} objects.")
        rows = []
        for model in models:
            model_id = text(model, "model_id")
            if len(model_id) > 64:
                raise bad(f"Model id {model_id[:70]!r} is over 64 characters.")
            rows.append(
                {
                    "run_id": run_id,
                    "model_id": model_id,
                    "direction": "output",
                    "step": integer(model, "step", 0),
                }
            )

        def tx(conn: Connection) -> None:
            self.writable(conn, run_id)
            if not rows:
                return
            link_models(conn, rows)
            conn.execute(
                update(logged_models)
                .where(
                    logged_models.c.id.in_([r["model_id"] for r in rows]),
                    logged_models.c.source_run_id.is_(None),
                )
                .values(source_run_id=run_id)
            )

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    # -- the routes ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        table: list[tuple[str, Callable[..., Any], list[str]]] = [
            ("/runs/create", self.create_run, ["POST"]),
            ("/runs/get", self.get_run, ["GET"]),
            ("/runs/update", self.update_run, ["POST"]),
            ("/runs/delete", self.delete_run, ["POST"]),
            ("/runs/restore", self.restore_run, ["POST"]),
            ("/runs/search", self.search_runs, ["POST", "GET"]),
            ("/runs/log-metric", self.log_metric, ["POST"]),
            ("/runs/log-parameter", self.log_param, ["POST"]),
            ("/runs/set-tag", self.set_tag, ["POST"]),
            ("/runs/delete-tag", self.delete_tag, ["POST"]),
            ("/runs/log-batch", self.log_batch, ["POST"]),
            ("/runs/log-model", self.log_model, ["POST"]),
            ("/runs/log-inputs", self.log_inputs, ["POST"]),
            ("/runs/outputs", self.log_outputs, ["POST"]),
            ("/metrics/get-history", self.get_metric_history, ["GET"]),
            ("/metrics/get-history-bulk-interval", self.get_history_bulk_interval, ["GET"]),
            ("/artifacts/list", self.list_artifacts, ["GET"]),
        ]
        return [
            *self.experiments.routes(),
            *(Route(path, endpoint, methods=methods) for path, endpoint, methods in table),
        ]


def insert_params(conn: Connection, run_id: str, items: Iterable[tuple[str, str]]) -> None:
    """Add params to a run in the caller's transaction; the same value again is fine, another
    is a :class:`~loopml.exceptions.ParamConflict` (MLflow's INVALID_PARAMETER_VALUE)."""
    wanted = dict(items)
    existing = dict(
        conn.execute(
            select(params.c.key, params.c.value).where(
                params.c.run_id == run_id, params.c.key.in_(list(wanted))
            )
        ).all()
    )
    for key, value in wanted.items():
        if key in existing and existing[key] != value:
            raise ParamConflict(
                f"Changing param values is not allowed. Param with key='{key}' was already "
                f"logged with value='{existing[key]}' for run ID='{run_id}'. Attempted logging "
                f"new value '{value}'."
            )
    new = [{"run_id": run_id, "key": k, "value": v} for k, v in wanted.items() if k not in existing]
    if new:
        conn.execute(insert(params), new)


def store_points(
    conn: Connection, points: list[tuple[str, str, float | None, int, int]], marker: str
) -> None:
    """Insert metric points and move each (run, key)'s latest value forward, in the caller's
    transaction: what :func:`loopml.tracking.writer.write_points` does, as two prepared
    statements (the server's per-request cost is mostly building statements otherwise)."""
    conn.exec_driver_sql(
        "INSERT INTO metrics (run_id, key, value, step, timestamp) "
        f"VALUES ({marker}, {marker}, {marker}, {marker}, {marker})",
        points,
    )
    latest: dict[tuple[str, str], tuple[str, str, float | None, int, int]] = {}
    for item in points:
        ident = (item[0], item[1])
        seen = latest.get(ident)
        if seen is None or (item[3], item[4]) >= (seen[3], seen[4]):
            latest[ident] = item
    conn.exec_driver_sql(
        "INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
        f"VALUES ({marker}, {marker}, {marker}, {marker}, {marker}) "
        "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, "
        "step = excluded.step, timestamp = excluded.timestamp "
        "WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
        "AND excluded.timestamp >= latest_metrics.timestamp)",
        list(latest.values()),
    )


def _runs_json(conn: Connection, ids: list[str], slots: str) -> list[dict[str, Any]]:
    def rows(sql: str) -> list[Any]:
        return list(conn.exec_driver_sql(sql, tuple(ids)).fetchall())

    info = {
        row[0]: row
        for row in rows(
            "SELECT id, experiment_id, name, status, start_time, end_time, deleted_at "
            f"FROM runs WHERE id IN ({slots})"
        )
    }
    params_of: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    tags_of: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    metrics_of: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    inputs_of: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    outputs_of: dict[str, list[dict[str, Any]]] = {}
    for run_id, key, value in rows(
        f"SELECT run_id, key, value FROM params WHERE run_id IN ({slots}) ORDER BY key"
    ):
        params_of[run_id].append({"key": key, "value": value})
    for run_id, key, value in rows(
        f"SELECT run_id, key, value FROM tags WHERE run_id IN ({slots}) ORDER BY key"
    ):
        tags_of[run_id].append({"key": key, "value": value})
    for run_id, key, value, step, ts in rows(
        "SELECT run_id, key, value, step, timestamp FROM latest_metrics "
        f"WHERE run_id IN ({slots}) ORDER BY key"
    ):
        metrics_of[run_id].append(
            {"key": key, "value": metric_json(value), "timestamp": ts, "step": step}
        )
    for row in rows(
        "SELECT i.run_id, i.name, i.digest, i.source, i.size, i.file_count, d.source_type, "
        'd."schema", d.profile, d.tags FROM run_inputs i LEFT JOIN mlflow_dataset_inputs d '
        "ON d.run_id = i.run_id AND d.name = i.name "
        f"WHERE i.run_id IN ({slots}) ORDER BY i.name"
    ):
        inputs_of[row[0]].append(dataset_input_json(*row[1:]))
    model_inputs_of: dict[str, list[dict[str, Any]]] = {}
    for run_id, model_id, direction, step in rows(
        "SELECT run_id, model_id, direction, step FROM mlflow_run_models "
        f"WHERE run_id IN ({slots}) ORDER BY model_id"
    ):
        if direction == "input":
            model_inputs_of.setdefault(run_id, []).append({"model_id": model_id})
        else:
            outputs_of.setdefault(run_id, []).append({"model_id": model_id, "step": step})
    out: list[dict[str, Any]] = []
    for run_id in ids:
        row = info.get(run_id)
        if row is None:
            continue
        _, exp_id, name, status, start_time, end_time, deleted_at = row
        # MLflow's server always shows the run's name as the ``mlflow.runName`` tag (scripts
        # read ``tags.mlflow.runName`` from search_runs' DataFrame); runs loopml started have
        # no such tag, and the name column is the one a rename updates.
        run_tags = sorted(
            [t for t in tags_of[run_id] if t["key"] != RUN_NAME_TAG]
            + [{"key": RUN_NAME_TAG, "value": name}],
            key=lambda t: t["key"],
        )
        user = next((t["value"] for t in run_tags if t["key"] == USER_TAG), "")
        run_information: dict[str, Any] = {
            "run_id": run_id,
            "run_uuid": run_id,
            "run_name": name,
            "experiment_id": str(exp_id),
            "user_id": user,
            "status": status,
            "start_time": start_time,
            "artifact_uri": f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts",
            "lifecycle_stage": "deleted" if deleted_at is not None else "active",
        }
        if end_time is not None:
            run_information["end_time"] = end_time
        run: dict[str, Any] = {
            "info": run_information,
            "data": {"metrics": metrics_of[run_id], "params": params_of[run_id], "tags": run_tags},
            "inputs": {"dataset_inputs": inputs_of[run_id]},
        }
        if run_id in model_inputs_of:
            run["inputs"]["model_inputs"] = model_inputs_of[run_id]
        if run_id in outputs_of:
            run["outputs"] = {"model_outputs": outputs_of[run_id]}
        out.append(run)
    return out


def dataset_input_json(
    name: str,
    digest: str,
    source: str | None,
    size: int | None,
    file_count: int | None,
    source_type: str | None,
    schema: str | None,
    profile: str | None,
    input_tags: str | None,
) -> dict[str, Any]:
    """A run input as MLflow's DatasetInput; loopml's own inputs (a file, a folder, a
    DataFrame logged by loopml) show their size and file count as the profile."""
    if source_type is None and schema is None and input_tags is None:
        profile = json.dumps({k: v for k, v in (("size", size), ("file_count", file_count)) if v})
        source_type, schema = "loopml", ""
    tag_values = json.loads(input_tags) if input_tags else {}
    return {
        "tags": [{"key": k, "value": v} for k, v in tag_values.items()],
        "dataset": {
            "name": name,
            "digest": digest,
            "source_type": source_type or "",
            "source": source or "",
            "schema": schema or "",
            "profile": profile or "",
        },
    }


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The tracking endpoints of MLflow's REST API (see the module's docstring)."""
    return TrackingApi(ctx).routes()
