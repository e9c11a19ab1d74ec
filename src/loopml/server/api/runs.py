"""``/api/loopml/runs`` and ``/api/loopml/runs/{run_id}/…``: runs written and read by
loopml's client. Every write can be sent twice (the client replays its spool after an
outage) and is stored once: the run id is the client's, batches carry an id, params and
tags are idempotent, ending an ended run does nothing."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from loopml.client import wire
from loopml.exceptions import AlreadyExists, Conflict, InvalidInput, RunNotFound
from loopml.server.api.endpoint import endpoint, field, string_map
from loopml.server.batches import apply_batch
from loopml.server.context import EDIT, EXPERIMENT, READ
from loopml.server.errors import ApiError
from loopml.server.http import query, read_json, reply
from loopml.store.blobs import check_digest
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.tracking import experiments as experiments_module
from loopml.tracking import keys, search
from loopml.tracking.artifacts import _clean_artifact_path, upsert_artifacts
from loopml.tracking.runs import Run, RunStatus, emit_run_ended, insert_running, reopen, run_row
from loopml.tracking.tables import metrics, run_inputs, runs
from loopml.tracking.writer import Point, point_problem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext
    from loopml.store.db import Database

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _value(raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in ("Infinity", "-Infinity", "NaN"):
        number = float(raw)
        return None if math.isnan(number) else number
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise ValueError(f"value {raw!r} is not a number")


def decode_points(run_id: str, raw: Any) -> tuple[list[Point], list[dict[str, Any]]]:
    """The storable points of a batch's ``[key, value, step, timestamp_ms]`` lists, and the
    refused ones (index and why): a bad point is refused alone."""
    if not isinstance(raw, list):
        raise ApiError("INVALID_PARAMETER_VALUE", "points must be a list")
    good: list[Point] = []
    refused: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, list) or len(item) != 4:
                raise ValueError("a point is [key, value, step, timestamp_ms]")
            key, value, step, ts = item
            if not isinstance(key, str):
                raise ValueError(f"key {key!r} is not a string")
            keys.check_key(key, "metric key")
            point: Point = (run_id, key, _value(value), step, ts)
            problem = point_problem(point)
            if problem is not None:
                raise ValueError(problem)
        except (ValueError, InvalidInput) as exc:
            refused.append({"index": i, "reason": str(exc)})
            continue
        good.append(point)
    return good, refused


class _Runs:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace

    @property
    def db(self) -> Database:
        return self.ws.db

    def run_id(self, request: Request) -> str:
        run_id = str(request.path_params["run_id"])
        if not _RUN_ID.match(run_id):
            raise RunNotFound(f"No run {run_id!r}: a run id is 32 hex digits.")
        return run_id

    def handle(self, request: Request, level: Any) -> Run:
        """The run of the URL as a handle on the server's store, after the access check."""
        run_id = self.run_id(request)
        with self.db.read() as conn:
            row = run_row(conn, run_id, runs.c.name, runs.c.experiment_id, runs.c.parent_run_id)
        if row is None:
            raise RunNotFound(f"No run {run_id!r}.")
        self.ctx.access.check(request, EXPERIMENT, str(row.experiment_id), level)
        return Run(
            self.ws.runs, run_id, row.name, row.experiment_id, row.experiment, row.parent_run_id
        )

    # -- writes ------------------------------------------------------------------------------

    def create(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        run_id = field(body, "run_id", str, required=True)
        if not _RUN_ID.match(run_id):
            raise InvalidInput(f"run_id must be 32 lowercase hex digits, got {run_id!r}")
        exp_name = keys.check_key(field(body, "experiment", str, required=True), "experiment")
        name = keys.check_key(field(body, "name", str) or run_id[:8], "run name")
        parent = field(body, "parent_run_id", str)
        owner = field(body, "owner", str)
        start = field(body, "start_time", int) or now_ms()
        environment = field(body, "environment", dict)
        tags = {
            keys.check_key(k, "tag key"): keys.tag_value(k, v)
            for k, v in string_map(body, "tags").items()
        }
        exp_id = self._experiment(request, exp_name)
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)

        def tx(conn: Connection) -> None:
            found = conn.execute(select(runs.c.experiment_id).where(runs.c.id == run_id)).first()
            if found is not None:
                if found.experiment_id != exp_id:
                    raise AlreadyExists(f"Run {run_id} exists in another experiment.")
                return  # sent again after an outage: created once
            if (
                parent is not None
                and conn.execute(select(runs.c.id).where(runs.c.id == parent)).first() is None
            ):
                raise RunNotFound(f"No parent run {parent!r}.")
            insert_running(
                conn,
                run_id,
                exp_id,
                name,
                start=start,
                parent=parent,
                owner=owner,
                tags=tags,
                environment=environment,
            )

        self.db.transact(tx)
        return {"run_id": run_id, "experiment_id": exp_id, "experiment": exp_name, "name": name}

    def _experiment(self, request: Request, name: str) -> int:
        """The id of experiment ``name``, created (and owned by the caller) if needed."""
        try:
            return experiments_module.get_experiment(self.db, name).id
        except LookupError:
            pass
        try:
            exp = experiments_module.create_experiment(self.db, name)
        except AlreadyExists:
            return experiments_module.get_experiment(self.db, name).id
        self.ctx.access.created(request, EXPERIMENT, str(exp.id))
        return exp.id

    def resume(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        owner = field(body, "owner", str, required=True)
        record = search.get_run(self.db, handle.id)
        if record.deleted:
            raise Conflict(f"Run {handle.id} is deleted; restore it before resuming.")

        reopen(self.db, handle.id, owner)
        return {
            "run": wire.run_to_json(search.get_run(self.db, handle.id)),
            "steps": search.metric_steps(self.db, handle.id),
        }

    def batch(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        batch_id = field(body, "batch_id", str, required=True)
        points, refused = decode_points(handle.id, body.get("points"))
        stored = apply_batch(self.db, batch_id, handle.id, points)
        return {"stored": len(points) if stored else 0, "duplicate": not stored, "refused": refused}

    def params(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        handle.log_params(string_map(body, "params"))  # ParamConflict, RunNotActive
        return {}

    def tags(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        handle.set_tags(string_map(body, "tags"))
        return {}

    def artifacts(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        raw = field(body, "artifacts", list, required=True)
        rows: list[tuple[str, str, int]] = []
        for item in raw:
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], str)
                and isinstance(item[2], int)
            ):
                raise InvalidInput("each artifact is [path, digest, size]")
            path, digest, size = item
            rows.append((_clean_artifact_path(path), check_digest(digest), size))
        blobs = self.ws.blobs
        missing = [d for _p, d, _s in rows if not blobs.exists(d)]
        if missing:
            raise InvalidInput(
                f"Upload the artifact's bytes first (PUT /api/loopml/blobs/{missing[0]})."
            )
        self.db.transact(lambda conn: upsert_artifacts(conn, handle.id, rows))
        return {"paths": [r[0] for r in rows]}

    def inputs(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        name = keys.check_key(field(body, "name", str, required=True), "input name")
        row = {
            "run_id": handle.id,
            "name": name,
            "digest": check_digest(field(body, "digest", str, required=True)),
            "source": field(body, "source", str),
            "size": field(body, "size", int),
            "file_count": field(body, "file_count", int),
            "created_at": field(body, "created_at", int) or now_ms(),
        }

        def tx(conn: Connection) -> None:
            stmt = upsert(conn.dialect.name, run_inputs)
            stmt = stmt.on_conflict_do_update(
                index_elements=[run_inputs.c.run_id, run_inputs.c.name],
                set_={
                    "digest": stmt.excluded.digest,
                    "source": stmt.excluded.source,
                    "size": stmt.excluded.size,
                    "file_count": stmt.excluded.file_count,
                },
            )
            conn.execute(stmt, [row])

        self.db.transact(tx)
        return {}

    def seed(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        seed = field(body, "seed", int, required=True)
        self.db.transact(
            lambda conn: conn.execute(update(runs).where(runs.c.id == handle.id).values(seed=seed))
        )
        return {}

    def end(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        try:
            final = RunStatus(str(field(body, "status", str) or "FINISHED").upper())
        except ValueError:
            raise InvalidInput(
                f"status must be one of {', '.join(s.value for s in RunStatus)}"
            ) from None
        error = field(body, "error", str)
        end_time = field(body, "end_time", int) or now_ms()
        owner = field(body, "owner", str)

        def tx(conn: Connection) -> bool:
            row = conn.execute(
                select(runs.c.status, runs.c.owner).where(runs.c.id == handle.id)
            ).one()
            # A run marked KILLED while its process could not reach the server (its
            # heartbeat went stale) is ended by that process as it says.
            reaped = row.status == RunStatus.KILLED and owner is not None and row.owner == owner
            if row.status != RunStatus.RUNNING and not reaped:
                return False  # ended already (a replayed request): once
            conn.execute(
                update(runs)
                .where(runs.c.id == handle.id)
                .values(status=final.value, end_time=end_time, error=error)
            )
            emit_run_ended(conn, handle.experiment, handle.id, handle.name, final, error)
            return True

        return {"ended": self.db.transact(tx)}

    def heartbeat(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        run_ids = field(body, "run_ids", list, required=True)
        owner = field(body, "owner", str, required=True)
        ids = [r for r in run_ids if isinstance(r, str) and _RUN_ID.match(r)]
        if not ids:
            return {"refreshed": 0}
        with self.db.read() as conn:
            exp_ids = set(
                conn.execute(select(runs.c.experiment_id).where(runs.c.id.in_(ids))).scalars()
            )
        for exp_id in exp_ids:
            self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)

        def tx(conn: Connection) -> int:
            return conn.execute(
                update(runs)
                .where(runs.c.id.in_(ids), runs.c.owner == owner)
                .values(heartbeat_at=now_ms())
            ).rowcount

        return {"refreshed": self.db.transact(tx)}

    def set_deleted(self, request: Request, deleted: bool) -> dict[str, Any]:
        handle = self.handle(request, EDIT)
        if deleted:
            self.ws.runs.delete(handle.id)
        else:
            self.ws.runs.restore(handle.id)
        return {}

    # -- reads ------------------------------------------------------------------------------

    def get(self, request: Request) -> dict[str, Any]:
        handle = self.handle(request, READ)
        return wire.run_to_json(self.ws.runs.get(handle.id))

    def history(self, request: Request) -> dict[str, Any]:
        handle = self.handle(request, READ)
        key = query(request).get("key")
        if not isinstance(key, str) or not key:
            raise InvalidInput("history needs ?key=<metric key>")
        with self.db.read() as conn:
            rows = conn.execute(
                select(metrics.c.step, metrics.c.timestamp, metrics.c.value)
                .where(metrics.c.run_id == handle.id, metrics.c.key == key)
                .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
            ).all()
        return {"key": key, "points": [[s, t, wire.num(v)] for s, t, v in rows]}

    def list_artifacts(self, request: Request) -> dict[str, Any]:
        handle = self.handle(request, READ)
        path = query(request).get("path") or None
        items = self.ws.runs.list_artifacts(handle.id, path)
        return {"artifacts": [wire.artifact_to_json(a) for a in items]}

    def search(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("experiments")
        if wanted is not None and not isinstance(wanted, str | int | list):
            raise InvalidInput("experiments must be a name, an id or a list of them")
        if isinstance(wanted, str | int):
            wanted = [wanted]
        ids: list[int] | None
        if wanted is not None:
            ids = [experiments_module.get_experiment(self.db, item).id for item in wanted]
            for exp_id in ids:
                self.ctx.access.check(request, EXPERIMENT, str(exp_id), READ)
        else:
            readable = self.ctx.access.readable(request, EXPERIMENT)
            ids = None if readable is None else [int(k) for k in readable if k.isdigit()]
            if ids == []:
                return {"runs": [], "next_page_token": None}
        filter_text = field(body, "filter", str)
        order_by = body.get("order_by")
        if order_by is not None and not (
            isinstance(order_by, str)
            or (isinstance(order_by, list) and all(isinstance(o, str) for o in order_by))
        ):
            raise InvalidInput("order_by must be a string or a list of strings")
        include_deleted = bool(field(body, "include_deleted", bool))
        if body.get("page_size") is not None:
            page = self.ws.runs.page(
                ids,
                filter_text,
                order_by,
                field(body, "page_size", int),
                field(body, "page_token", str),
                include_deleted,
            )
            return {
                "runs": [wire.listing_to_json(r) for r in page.records],
                "next_page_token": page.next_page_token,
            }
        max_results = field(body, "max_results", int) or 1000
        if not 0 < max_results <= 50_000:
            raise InvalidInput(f"max_results must be from 1 to 50000, got {max_results}")
        records = self.ws.runs.records(ids, filter_text, order_by, max_results, include_deleted)
        return {"runs": [wire.listing_to_json(r) for r in records], "next_page_token": None}


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from starlette.routing import Route

    api = _Runs(ctx)
    limit = ctx.settings.max_request_bytes

    def writer(name: str, method: Any) -> Any:
        async def handler(request: Request) -> Response:
            body = await read_json(request, limit)
            return reply(await ctx.call(method, request, body))

        handler.__name__ = handler.__qualname__ = name
        return endpoint(handler)

    def reader(name: str, method: Any) -> Any:
        async def handler(request: Request) -> Response:
            return reply(await ctx.call(method, request))

        handler.__name__ = handler.__qualname__ = name
        return endpoint(handler)

    run = "/runs/{run_id}"
    return [
        Route("/runs", writer("create_run", api.create), methods=["POST"]),
        Route("/runs/search", writer("search_runs", api.search), methods=["POST"]),
        Route("/runs/heartbeat", writer("heartbeat", api.heartbeat), methods=["POST"]),
        Route(run, reader("get_run", api.get), methods=["GET"]),
        Route(f"{run}/resume", writer("resume_run", api.resume), methods=["POST"]),
        Route(f"{run}/batches", writer("log_batch", api.batch), methods=["POST"]),
        Route(f"{run}/params", writer("log_params", api.params), methods=["POST"]),
        Route(f"{run}/tags", writer("set_tags", api.tags), methods=["POST"]),
        Route(f"{run}/artifacts", writer("log_artifacts", api.artifacts), methods=["POST"]),
        Route(f"{run}/artifacts", reader("list_artifacts", api.list_artifacts), methods=["GET"]),
        Route(f"{run}/inputs", writer("log_input", api.inputs), methods=["POST"]),
        Route(f"{run}/seed", writer("record_seed", api.seed), methods=["POST"]),
        Route(f"{run}/end", writer("end_run", api.end), methods=["POST"]),
        Route(f"{run}/history", reader("metric_history", api.history), methods=["GET"]),
        Route(
            f"{run}/delete",
            writer("delete_run", lambda r, b: api.set_deleted(r, True)),
            methods=["POST"],
        ),
        Route(
            f"{run}/restore",
            writer("restore_run", lambda r, b: api.set_deleted(r, False)),
            methods=["POST"],
        ),
    ]
