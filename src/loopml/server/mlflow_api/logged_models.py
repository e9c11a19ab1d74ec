"""MLflow 3's logged models: what ``mlflow.<flavor>.log_model`` creates before it uploads the
model's files, and what ``models:/m-<id>`` names.

    POST   /logged-models                     create (status PENDING); its artifact location
                                              is mlflow-artifacts:/<exp>/models/<id>/artifacts
    GET    /logged-models/<id>                get
    PATCH  /logged-models/<id>                finalize: status READY (or UPLOAD_FAILED)
    DELETE /logged-models/<id>                delete (a registered version keeps its files)
    POST   /logged-models/search              by experiments, filter, order, pages
    PATCH  /logged-models/<id>/tags           set tags;  DELETE .../tags/<key>: delete one
    POST   /logged-models/<id>/params         log params
    GET    /logged-models/<id>/artifacts/directories   list its files

A logged model belongs to an experiment: every route checks the caller's access to it. Its
files are uploaded through the artifacts API (``proxied_artifacts``); registering it
(``model-versions/create`` with ``source=models:/<id>``) makes a loopml model version of
them (:mod:`loopml.server.mlflow_api.registry`).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from loopml.server.context import EDIT, EXPERIMENT, MANAGE, READ, ServerContext
from loopml.server.errors import ApiError
from loopml.server.http import reply, request_args
from loopml.server.mlflow_api.registry_search import matches, page, parse_filter, sort_records
from loopml.server.mlflow_api.tables import logged_models
from loopml.store.clock import now_ms
from loopml.tracking.tables import experiments, runs

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

PENDING, READY, FAILED = "PENDING", "READY", "FAILED"
#: MLflow's LoggedModelStatus names ↔ the status column.
_STATUS_IN = {
    "LOGGED_MODEL_PENDING": PENDING,
    "LOGGED_MODEL_READY": READY,
    "LOGGED_MODEL_UPLOAD_FAILED": FAILED,
    "1": PENDING,
    "2": READY,
    "3": FAILED,
}
_STATUS_OUT = {
    PENDING: "LOGGED_MODEL_PENDING",
    READY: "LOGGED_MODEL_READY",
    FAILED: "LOGGED_MODEL_UPLOAD_FAILED",
}
DEFAULT_RESULTS = 100
MAX_RESULTS = 1000
_FILTER_FIELDS = (
    "name",
    "model_id",
    "model_type",
    "source_run_id",
    "status",
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
)


def _pairs(raw: Any, what: str) -> dict[str, str]:
    """``[{"key": k, "value": v}, ...]`` → ``{k: v}``; a malformed entry is a 400."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ApiError("INVALID_PARAMETER_VALUE", f"{what} must be a list of {{key, value}}")
    out: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise ApiError("INVALID_PARAMETER_VALUE", f"each of {what} needs a key: {item!r}")
        if len(item["key"]) > 250:
            raise ApiError(
                "INVALID_PARAMETER_VALUE", f"{what} key {item['key'][:40]!r}... is too long"
            )
        out[item["key"]] = "" if item.get("value") is None else str(item["value"])
    return out


def _record(row: Any) -> dict[str, Any]:
    tags = json.loads(row.tags) if row.tags else {}
    return {
        "model_id": row.id,
        "experiment_id": str(row.experiment_id),
        "name": row.name,
        "creation_timestamp": row.created_at,
        "creation_time": row.created_at,
        "last_updated_timestamp": row.updated_at,
        "artifact_uri": row.artifact_location,
        "status": _STATUS_OUT.get(row.status, row.status),
        "model_type": row.model_type or "",
        "source_run_id": row.source_run_id or "",
        "tags": tags,
        "params": json.loads(row.params) if row.params else {},
        "metrics": json.loads(row.metrics) if row.metrics else [],
    }


def model_json(record: dict[str, Any]) -> dict[str, Any]:
    """A logged model in MLflow's LoggedModel JSON: ``{"info": ..., "data": ...}``."""
    info: dict[str, Any] = {
        "model_id": record["model_id"],
        "experiment_id": record["experiment_id"],
        "name": record["name"],
        "creation_timestamp_ms": record["creation_timestamp"],
        "last_updated_timestamp_ms": record["last_updated_timestamp"],
        "artifact_uri": record["artifact_uri"],
        "status": record["status"],
    }
    for key in ("model_type", "source_run_id"):
        if record[key]:
            info[key] = record[key]
    if record["tags"]:
        info["tags"] = [{"key": k, "value": val} for k, val in record["tags"].items()]
    data: dict[str, Any] = {}
    if record["params"]:
        data["params"] = [{"key": k, "value": val} for k, val in record["params"].items()]
    if record["metrics"]:
        data["metrics"] = record["metrics"]
    return {"info": info, "data": data}


def _row(conn: Connection, model_id: str) -> Any:
    row = conn.execute(
        select(logged_models).where(
            logged_models.c.id == model_id, logged_models.c.deleted_at.is_(None)
        )
    ).first()
    if row is None:
        raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' not found.")
    return row


def _experiment_id(raw: Any) -> int:
    text = str(raw) if raw is not None else ""
    if not text.isdigit():
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"experiment_id must be an experiment's id, got {raw!r}"
        )
    return int(text)


class LoggedModelsApi:
    """The endpoints; each checks the caller's access to the model's experiment first."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.db = ctx.workspace.db

    async def _body(self, request: Request) -> dict[str, Any]:
        return await request_args(request, self.ctx.settings.max_request_bytes)

    async def _checked(self, request: Request, level: Any) -> Any:
        """The logged model of the URL, after checking access to its experiment."""
        model_id = request.path_params["model_id"]

        def run() -> Any:
            with self.db.read() as conn:
                return _row(conn, model_id)

        row = await self.ctx.call(run)
        self.ctx.access.check(request, EXPERIMENT, str(row.experiment_id), level)
        return row

    async def _answer(self, model_id: str) -> Response:
        def run() -> dict[str, Any]:
            with self.db.read() as conn:
                return _record(_row(conn, model_id))

        return reply({"model": model_json(await self.ctx.call(run))})

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        exp_id = _experiment_id(body.get("experiment_id"))
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)
        name = body.get("name") or "model"
        if not isinstance(name, str) or len(name) > 250:
            raise ApiError("INVALID_PARAMETER_VALUE", f"name must be a short string, got {name!r}")
        run_id = body.get("source_run_id") or None
        params = _pairs(body.get("params"), "params")
        tags = _pairs(body.get("tags"), "tags")
        model_id = f"m-{uuid.uuid4().hex}"

        def tx(conn: Connection) -> None:
            if (
                conn.execute(select(experiments.c.id).where(experiments.c.id == exp_id)).first()
                is None
            ):
                raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No experiment with id {exp_id}")
            if run_id is not None:
                found = conn.execute(
                    select(runs.c.experiment_id).where(runs.c.id == run_id)
                ).first()
                if found is None:
                    raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")
            now = now_ms()
            conn.execute(
                insert(logged_models).values(
                    id=model_id,
                    experiment_id=exp_id,
                    name=name,
                    source_run_id=run_id,
                    status=PENDING,
                    model_type=body.get("model_type") or None,
                    artifact_location=f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts",
                    tags=json.dumps(tags),
                    params=json.dumps(params),
                    metrics=None,
                    created_at=now,
                    updated_at=now,
                )
            )

        await self.ctx.call(self.db.transact, tx)
        return await self._answer(model_id)

    async def get(self, request: Request) -> Response:
        row = await self._checked(request, READ)
        return await self._answer(row.id)

    async def finalize(self, request: Request) -> Response:
        row = await self._checked(request, EDIT)
        body = await self._body(request)
        raw = str(body.get("status", ""))
        status = _STATUS_IN.get(raw)
        if status is None:
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"status must be LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED, got {raw!r}",
            )
        await self._update(row.id, status=status)
        return await self._answer(row.id)

    async def _update(self, model_id: str, **values: Any) -> None:
        def tx(conn: Connection) -> None:
            _row(conn, model_id)
            conn.execute(
                update(logged_models)
                .where(logged_models.c.id == model_id)
                .values(**values, updated_at=now_ms())
            )

        await self.ctx.call(self.db.transact, tx)

    async def delete(self, request: Request) -> Response:
        row = await self._checked(request, MANAGE)
        await self._update(row.id, deleted_at=now_ms())
        return reply({})

    async def _merge(self, request: Request, column: str, changes: dict[str, str | None]) -> None:
        model_id = request.path_params["model_id"]

        def tx(conn: Connection) -> None:
            row = _row(conn, model_id)
            current = json.loads(getattr(row, column) or "{}")
            for key, value in changes.items():
                if value is None:
                    if key not in current:
                        raise ApiError(
                            "RESOURCE_DOES_NOT_EXIST",
                            f"Logged model {model_id} has no tag {key!r}",
                        )
                    current.pop(key)
                else:
                    current[key] = value
            conn.execute(
                update(logged_models)
                .where(logged_models.c.id == model_id)
                .values(**{column: json.dumps(current)}, updated_at=now_ms())
            )

        await self.ctx.call(self.db.transact, tx)

    async def set_tags(self, request: Request) -> Response:
        await self._checked(request, EDIT)
        body = await self._body(request)
        await self._merge(request, "tags", dict(_pairs(body.get("tags"), "tags")))
        return reply({})

    async def delete_tag(self, request: Request) -> Response:
        await self._checked(request, EDIT)
        await self._merge(request, "tags", {request.path_params["tag_key"]: None})
        return reply({})

    async def log_params(self, request: Request) -> Response:
        await self._checked(request, EDIT)
        body = await self._body(request)
        await self._merge(request, "params", dict(_pairs(body.get("params"), "params")))
        return reply({})

    async def search(self, request: Request) -> Response:
        body = await self._body(request)
        raw_ids = body.get("experiment_ids") or []
        ids = [_experiment_id(x) for x in ([raw_ids] if isinstance(raw_ids, str) else raw_ids)]
        if not ids:
            raise ApiError("INVALID_PARAMETER_VALUE", "experiment_ids must name at least one")
        for exp_id in ids:
            self.ctx.access.check(request, EXPERIMENT, str(exp_id), READ)
        clauses = parse_filter(
            body.get("filter"), _FILTER_FIELDS, prefixes=("tags", "params", "metrics")
        )
        limit = int(body.get("max_results") or DEFAULT_RESULTS)
        if not 1 <= limit <= MAX_RESULTS:
            raise ApiError("INVALID_PARAMETER_VALUE", f"max_results must be 1 to {MAX_RESULTS}")

        def run() -> list[dict[str, Any]]:
            with self.db.read() as conn:
                rows = conn.execute(
                    select(logged_models).where(
                        logged_models.c.experiment_id.in_(ids),
                        logged_models.c.deleted_at.is_(None),
                    )
                ).all()
            out = []
            for row in rows:
                rec = _record(row)
                # metrics.<key> compares with the value logged for that key
                metrics = {m["key"]: m.get("value") for m in rec["metrics"]}
                if matches({**rec, "metrics": metrics}, clauses):
                    out.append(rec)
            return out

        records = await self.ctx.call(run)
        order = []
        for item in body.get("order_by") or []:
            if not isinstance(item, dict) or not item.get("field_name"):
                raise ApiError(
                    "INVALID_PARAMETER_VALUE", f"order_by entries need a field_name: {item!r}"
                )
            ascending = item.get("ascending", True) not in (False, "false")
            order.append(f"{item['field_name']} {'ASC' if ascending else 'DESC'}")
        fields = {
            f: f for f in ("name", "creation_timestamp", "last_updated_timestamp", "model_id")
        }
        fields["creation_time"] = "creation_timestamp"
        records = sort_records(records, order or ["creation_timestamp DESC"], fields)
        chunk, token = page(records, limit, body.get("page_token"))
        answer = [model_json(rec) for rec in chunk]
        out: dict[str, Any] = {"models": answer}
        if token:
            out["next_page_token"] = token
        return reply(out)

    async def list_artifacts(self, request: Request) -> Response:
        from loopml.server.mlflow_api.paths import children, clean_path, tree

        row = await self._checked(request, READ)
        body = await self._body(request)
        sub = (
            clean_path(body.get("artifact_directory_path") or "")
            if body.get("artifact_directory_path")
            else ""
        )
        prefix = f"{row.experiment_id}/models/{row.id}/artifacts" + (f"/{sub}" if sub else "")

        def run() -> dict[str, tuple[str, int]]:
            with self.db.read() as conn:
                return tree(conn, prefix)

        files = children(await self.ctx.call(run))
        for info in files:
            if sub:
                info["path"] = f"{sub}/{info['path']}"
        return reply({"root_uri": row.artifact_location, "files": files})


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """MLflow 3's logged-model endpoints (mounted under ``/api/2.0/mlflow``)."""
    from starlette.routing import Route

    api = LoggedModelsApi(ctx)
    base = "/logged-models"
    return [
        Route(base, api.create, methods=["POST"]),
        Route(f"{base}/search", api.search, methods=["POST"]),
        Route(f"{base}/{{model_id}}", api.get, methods=["GET"]),
        Route(f"{base}/{{model_id}}", api.finalize, methods=["PATCH"]),
        Route(f"{base}/{{model_id}}", api.delete, methods=["DELETE"]),
        Route(f"{base}/{{model_id}}/tags", api.set_tags, methods=["PATCH"]),
        Route(f"{base}/{{model_id}}/tags/{{tag_key:path}}", api.delete_tag, methods=["DELETE"]),
        Route(f"{base}/{{model_id}}/params", api.log_params, methods=["POST"]),
        Route(f"{base}/{{model_id}}/artifacts/directories", api.list_artifacts, methods=["GET"]),
    ]
