"""MLflow's model registry REST API over loopml's registry: a registered model is a loopml
model, a model version a loopml model version.

    mlflow.sklearn.log_model(clf, name="model", registered_model_name="churn")
    MlflowClient().set_registered_model_alias("churn", "champion", 1)
    mlflow.pyfunc.load_model("models:/churn@champion")
    ws.models.load("models:/churn@champion")          # the same version, from loopml

Creating a version reads the files at its ``source`` (``models:/m-...``, a logged model;
``runs:/<run_id>/<path>``; ``mlflow-artifacts:/<path>``): they are already blobs in the
workspace's blob store, so the version's package is a manifest naming them (no copy) with
the ``mlflow`` flavor (:mod:`loopml.registry.flavors.mlflow`). Stages and aliases are
loopml's: one Production version per model (moving one there archives the one before,
whatever ``archive_existing_versions`` says), and a transition to Production goes through
loopml's promotion gate (``[gates.<name>]`` in ``loopml.toml``): a blocked promotion is an
``INVALID_STATE`` error whose message is the gate's verdict. Tags of models and versions,
and where an MLflow version came from, are kept in ``mlflow_registry_tags`` and
``mlflow_version_sources``.

Search filters take MLflow's syntax (:mod:`loopml.server.mlflow_api.registry_search`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, select, update

from loopml.exceptions import InvalidInput, ModelVersionNotFound, PromotionBlocked
from loopml.registry import versions as v
from loopml.registry.tables import model_aliases, model_events, model_versions, registered_models
from loopml.server.auth import grants
from loopml.server.context import EDIT, MANAGE, MODEL, READ, ServerContext
from loopml.server.errors import ApiError
from loopml.server.http import reply, request_args
from loopml.server.mlflow_api.registry_search import matches, page, parse_filter, sort_records
from loopml.server.mlflow_api.tables import (
    logged_models,
    mlflow_registry_tags,
    mlflow_version_sources,
)
from loopml.store.db import upsert

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.workspace import Workspace

MODELS_MAX_RESULTS = 1000
MODELS_DEFAULT_RESULTS = 100
VERSIONS_MAX_RESULTS = 200_000
VERSIONS_DEFAULT_RESULTS = 10_000
_TAG_VALUE_MAX = 5000


def _tags(conn: Connection, mid: int, version: int | None = None) -> dict[int, dict[str, str]]:
    stmt = select(
        mlflow_registry_tags.c.version, mlflow_registry_tags.c.key, mlflow_registry_tags.c.value
    ).where(mlflow_registry_tags.c.model_id == mid)
    if version is not None:
        stmt = stmt.where(mlflow_registry_tags.c.version == version)
    out: dict[int, dict[str, str]] = {}
    for ver, key, value in conn.execute(stmt.order_by(mlflow_registry_tags.c.key)):
        out.setdefault(ver, {})[key] = value
    return out


def _version_records(
    conn: Connection, mid: int, name: str, only: int | None = None
) -> list[dict[str, Any]]:
    """Every version of model ``mid`` (or version ``only``) as MLflow's ModelVersion."""
    stmt = select(model_versions).where(model_versions.c.model_id == mid)
    alias_stmt = select(model_aliases.c.version, model_aliases.c.alias).where(
        model_aliases.c.model_id == mid
    )
    source_stmt = select(mlflow_version_sources).where(mlflow_version_sources.c.model_id == mid)
    updated_stmt = (
        select(model_events.c.version, func.max(model_events.c.created_at))
        .where(model_events.c.model_id == mid)
        .group_by(model_events.c.version)
    )
    if only is not None:
        stmt = stmt.where(model_versions.c.version == only)
        alias_stmt = alias_stmt.where(model_aliases.c.version == only)
        source_stmt = source_stmt.where(mlflow_version_sources.c.version == only)
        updated_stmt = updated_stmt.where(model_events.c.version == only)
    rows = conn.execute(stmt.order_by(model_versions.c.version)).all()
    aliases: dict[int, list[str]] = {}
    for ver, alias in conn.execute(alias_stmt.order_by(model_aliases.c.alias)):
        aliases.setdefault(ver, []).append(alias)
    sources = {r.version: r for r in conn.execute(source_stmt)}
    updated = dict(conn.execute(updated_stmt).all())
    tags = _tags(conn, mid, only)
    out = []
    for row in rows:
        src = sources.get(row.version)
        out.append(
            {
                "name": name,
                "version": str(row.version),
                "version_number": row.version,
                "creation_timestamp": row.created_at,
                "last_updated_timestamp": max(row.created_at, updated.get(row.version) or 0),
                "user_id": (src.user_id if src is not None else None) or "",
                "current_stage": row.stage,
                "description": row.description or "",
                "source": src.source if src is not None else f"models:/{name}/{row.version}",
                "run_id": row.run_id or "",
                "run_link": (src.run_link if src is not None else None) or "",
                "status": "READY",
                "tags": tags.get(row.version, {}),
                "aliases": aliases.get(row.version, []),
                "model_id": (src.logged_model_id if src is not None else None) or "",
                "storage_location": src.storage_location if src is not None else None,
                "flavor": row.flavor,
            }
        )
    return out


def version_json(record: dict[str, Any]) -> dict[str, Any]:
    """A version record in MLflow's ModelVersion JSON (empty fields left out, as MLflow does)."""
    out: dict[str, Any] = {
        "name": record["name"],
        "version": record["version"],
        "creation_timestamp": record["creation_timestamp"],
        "last_updated_timestamp": record["last_updated_timestamp"],
        "current_stage": record["current_stage"],
        "status": record["status"],
    }
    for key in ("user_id", "description", "source", "run_id", "run_link", "model_id"):
        if record.get(key):
            out[key] = record[key]
    if record["tags"]:
        out["tags"] = [{"key": k, "value": val} for k, val in record["tags"].items()]
    if record["aliases"]:
        out["aliases"] = list(record["aliases"])
    return out


def _model_record(conn: Connection, row: Any) -> dict[str, Any]:
    versions = _version_records(conn, row.id, row.name)
    updated = conn.execute(
        select(func.max(model_events.c.created_at)).where(model_events.c.model_id == row.id)
    ).scalar()
    latest: dict[str, dict[str, Any]] = {}
    for rec in versions:
        latest[rec["current_stage"]] = rec  # ordered by version: the last one wins
    aliases = [
        {"alias": alias, "version": str(ver)}
        for alias, ver in conn.execute(
            select(model_aliases.c.alias, model_aliases.c.version)
            .where(model_aliases.c.model_id == row.id)
            .order_by(model_aliases.c.alias)
        )
    ]
    return {
        "name": row.name,
        "creation_timestamp": row.created_at,
        "last_updated_timestamp": max(row.created_at, updated or 0),
        "description": row.description or "",
        "tags": _tags(conn, row.id, 0).get(0, {}),
        "aliases": aliases,
        "latest_versions": [latest[s] for s in v.STAGES if s in latest],
    }


def model_json(record: dict[str, Any]) -> dict[str, Any]:
    """A model record in MLflow's RegisteredModel JSON."""
    out: dict[str, Any] = {
        "name": record["name"],
        "creation_timestamp": record["creation_timestamp"],
        "last_updated_timestamp": record["last_updated_timestamp"],
    }
    if record["description"]:
        out["description"] = record["description"]
    if record["latest_versions"]:
        out["latest_versions"] = [version_json(r) for r in record["latest_versions"]]
    if record["tags"]:
        out["tags"] = [{"key": k, "value": val} for k, val in record["tags"].items()]
    if record["aliases"]:
        out["aliases"] = record["aliases"]
    return out


def _model_row(conn: Connection, name: str) -> Any:
    mid = v.model_id(conn, name)  # ModelNotFound: RESOURCE_DOES_NOT_EXIST
    return conn.execute(select(registered_models).where(registered_models.c.id == mid)).one()


def _one_version(conn: Connection, name: str, version: int) -> dict[str, Any]:
    mid = v.model_id(conn, name)
    found = _version_records(conn, mid, name, version)
    if not found:
        raise ModelVersionNotFound(
            f"Model version {name!r} version {version} not found. "
            f"See `loopml models versions {name}`."
        )
    return found[0]


# -- where a new version's files are ---------------------------------------------------------

_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)(?:/(?P<path>.*))?$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]{32})/?$")
_ARTIFACTS_URI = re.compile(
    r"^(?:mlflow-artifacts:(?://[^/]*)?/|https?://[^/]+/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/)(?P<path>.*)$"
)


@dataclass(frozen=True)
class Source:
    """A version's files: where the MLflow client downloads them and the files themselves."""

    storage_location: str
    prefix: str  # the artifact path of the model's folder
    run_id: str | None
    logged_model_id: str | None


def resolve_source(
    conn: Connection, source: str, run_id: str | None, model_id: str | None
) -> Source:
    """Where ``source`` (and ``model_id``) put a new version's files."""
    logged = model_id
    m = _LOGGED_MODEL_URI.match(source)
    if m is not None:
        logged = m.group("id")
    if logged:
        row = conn.execute(
            select(logged_models).where(
                logged_models.c.id == logged, logged_models.c.deleted_at.is_(None)
            )
        ).first()
        if row is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Logged model {logged!r} not found")
        if m is not None or not source:
            loc = _ARTIFACTS_URI.match(row.artifact_location)
            if loc is None:
                raise ApiError(
                    "INVALID_PARAMETER_VALUE",
                    f"Logged model {logged!r} has artifact location {row.artifact_location!r}, "
                    "which this server does not hold",
                )
            return Source(
                row.artifact_location,
                loc.group("path").strip("/"),
                run_id or row.source_run_id,
                logged,
            )
    m = _RUNS_URI.match(source)
    if m is not None:
        from loopml.tracking.tables import runs

        run = conn.execute(
            select(runs.c.id, runs.c.experiment_id).where(runs.c.id == m.group("run"))
        ).first()
        if run is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run {m.group('run')!r} not found")
        sub = (m.group("path") or "").strip("/")
        prefix = f"{run.experiment_id}/{run.id}/artifacts" + (f"/{sub}" if sub else "")
        return Source(source, prefix, run_id or run.id, logged)
    m = _ARTIFACTS_URI.match(source)
    if m is not None:
        return Source(source, m.group("path").strip("/"), run_id, logged)
    raise ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Unsupported model version source {source!r}: this server registers files it holds: "
        "models:/<model_id>, runs:/<run_id>/<path> or mlflow-artifacts:/<path>",
    )


def _create_version(
    ws: Workspace,
    name: str,
    body: dict[str, Any],
    user: str,
) -> dict[str, Any]:
    """Register the files at the body's source as a new loopml version of ``name``."""
    from loopml.registry.trees import mlflow_details, register_files, unpacked
    from loopml.server.mlflow_api.paths import clean_path, tree

    source = _str(body, "source", required=not body.get("model_id"))
    with ws.db.read() as conn:
        v.model_id(conn, name)  # the registered model must exist, as in MLflow
        found = resolve_source(conn, source, body.get("run_id") or None, body.get("model_id"))
        prefix = clean_path(found.prefix) if found.prefix else ""
        files = tree(conn, prefix)
    if not files:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"No files at model version source {source or found.storage_location!r}: upload the "
            "model's files (mlflow.<flavor>.log_model does) before registering it",
        )
    if "MLmodel" not in files:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"The source {source or found.storage_location!r} is not an MLflow model: it has no "
            "MLmodel file at its top (its files: "
            f"{', '.join(sorted(files)[:8])})",
        )
    entries = [(rel, digest, size) for rel, (digest, size) in files.items()]
    tmp = unpacked(ws, entries, only=("MLmodel", "requirements.txt"))
    try:
        from pathlib import Path

        signature, environment = mlflow_details(Path(tmp.name))
    finally:
        tmp.cleanup()
    description = body.get("description") or None
    tags = _tag_list(body.get("tags"))

    def record(conn: Connection, mid: int, number: int) -> None:
        conn.execute(
            mlflow_version_sources.insert().values(
                model_id=mid,
                version=number,
                source=source or f"models:/{found.logged_model_id}",
                storage_location=found.storage_location,
                logged_model_id=found.logged_model_id,
                run_link=body.get("run_link") or None,
                user_id=user,
            )
        )
        for key, value in tags.items():
            _set_tag(conn, mid, number, key, value)

    version = register_files(
        ws,
        name,
        entries,
        flavor="mlflow",
        run_id=found.run_id,
        signature=signature,
        environment=environment,
        description=description,
        with_version=record,
    )
    with ws.db.read() as conn:
        return _one_version(conn, name, version.version)


# -- request helpers --------------------------------------------------------------------------


def _str(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(
                "INVALID_PARAMETER_VALUE", f"Missing value for required parameter '{key}'"
            )
        return ""
    if not isinstance(value, str):
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"Parameter '{key}' must be a string, got {value!r}"
        )
    return value


def _version(body: dict[str, Any]) -> int:
    raw = body.get("version")
    if raw is None or raw == "":
        raise ApiError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'version'")
    try:
        number = int(str(raw))
    except ValueError:
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"Model version must be a positive integer, got {raw!r}"
        ) from None
    if number < 1:
        raise ApiError("INVALID_PARAMETER_VALUE", f"Model version must be positive, got {raw!r}")
    return number


def _max_results(body: dict[str, Any], default: int, limit: int) -> int:
    raw = body.get("max_results")
    if raw is None or raw == "":
        return default
    try:
        number = int(str(raw))
    except ValueError:
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"max_results must be an integer, got {raw!r}"
        ) from None
    if not 1 <= number <= limit:
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"max_results must be between 1 and {limit}, got {number}"
        )
    return number


def _order_by(body: dict[str, Any]) -> list[str]:
    raw = body.get("order_by")
    if raw is None or raw == "":
        return []
    return [raw] if isinstance(raw, str) else [str(x) for x in raw]


def _tag_list(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ApiError("INVALID_PARAMETER_VALUE", f"tags must be a list of {{key, value}}: {raw!r}")
    out: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise ApiError("INVALID_PARAMETER_VALUE", f"a tag needs a key: {item!r}")
        out[item["key"]] = _tag_value(item["key"], item.get("value"))
    return out


def _tag_value(key: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if len(key) > 250:
        raise ApiError("INVALID_PARAMETER_VALUE", f"Tag key {key[:40]!r}... is over 250 characters")
    if len(text) > _TAG_VALUE_MAX:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"Tag {key!r}: its value is {len(text)} characters, over the limit of {_TAG_VALUE_MAX}",
        )
    return text


def _set_tag(conn: Connection, mid: int, version: int, key: str, value: str) -> None:
    stmt = upsert(conn.dialect.name, mlflow_registry_tags).values(
        model_id=mid, version=version, key=key, value=value
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                mlflow_registry_tags.c.model_id,
                mlflow_registry_tags.c.version,
                mlflow_registry_tags.c.key,
            ],
            set_={"value": value},
        )
    )


# -- the routes -------------------------------------------------------------------------------


class RegistryApi:
    """The endpoints; each checks the caller's access to the model first."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace

    async def _args(self, request: Request) -> dict[str, Any]:
        return await request_args(request, self.ctx.settings.max_request_bytes)

    async def _read(self, fn: Callable[[Connection], Any]) -> Any:
        def run() -> Any:
            with self.ws.db.read() as conn:
                return fn(conn)

        return await self.ctx.call(run)

    def _user(self, request: Request) -> str:
        return self.ctx.access.principal(request).name

    async def _as_caller(self, request: Request, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a registry change in the thread pool, recorded in the model's history as
        done by the caller (when auth names one)."""
        principal = self.ctx.access.principal(request)
        who = None if principal.user_id is None else principal.name

        def run() -> Any:
            with v.acting_as(who):
                return fn(*args)

        return await self.ctx.call(run)

    # registered models

    async def create_model(self, request: Request) -> Response:
        from loopml.registry.lifecycle import create_model

        body = await self._args(request)
        name = _str(body, "name")
        tags = _tag_list(body.get("tags"))
        description = body.get("description") or None

        def tx() -> None:
            create_model(self.ws.db, name, description)
            if tags:

                def write(conn: Connection) -> None:
                    mid = v.model_id(conn, name)
                    for key, value in tags.items():
                        _set_tag(conn, mid, 0, key, value)

                self.ws.db.transact(write)

        await self._as_caller(request, tx)
        self.ctx.access.created(request, MODEL, name)
        record = await self._read(lambda c: _model_record(c, _model_row(c, name)))
        return reply({"registered_model": model_json(record)})

    async def get_model(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        self.ctx.access.check(request, MODEL, name, READ)
        record = await self._read(lambda c: _model_record(c, _model_row(c, name)))
        return reply({"registered_model": model_json(record)})

    async def search_models(self, request: Request) -> Response:
        body = await self._args(request)
        clauses = parse_filter(body.get("filter"), ["name"])
        for c in clauses:
            if c.field != "name" and not c.field.startswith("tags."):
                raise InvalidInput(f"Registered models are searched by name or tags, not {c.field}")
        limit = _max_results(body, MODELS_DEFAULT_RESULTS, MODELS_MAX_RESULTS)
        readable = self.ctx.access.readable(request, MODEL)

        def run(conn: Connection) -> list[dict[str, Any]]:
            # What filters and sorts need, in three queries; full records for one page only.
            updated = dict(
                conn.execute(
                    select(model_events.c.model_id, func.max(model_events.c.created_at)).group_by(
                        model_events.c.model_id
                    )
                ).all()
            )
            tags: dict[int, dict[str, str]] = {}
            for mid, key, value in conn.execute(
                select(
                    mlflow_registry_tags.c.model_id,
                    mlflow_registry_tags.c.key,
                    mlflow_registry_tags.c.value,
                ).where(mlflow_registry_tags.c.version == 0)
            ):
                tags.setdefault(mid, {})[key] = value
            out = []
            for row in conn.execute(select(registered_models)):
                if readable is not None and row.name not in readable:
                    continue
                light = {
                    "id": row.id,
                    "name": row.name,
                    "creation_timestamp": row.created_at,
                    "last_updated_timestamp": max(row.created_at, updated.get(row.id) or 0),
                    "tags": tags.get(row.id, {}),
                }
                if matches(light, clauses):
                    out.append(light)
            return out

        found = await self._read(run)
        found = sort_records(
            found,
            _order_by(body) or ["name ASC"],
            {
                "name": "name",
                "timestamp": "last_updated_timestamp",
                "last_updated_timestamp": "last_updated_timestamp",
                "creation_timestamp": "creation_timestamp",
            },
        )
        chunk_ids, token = page(found, limit, body.get("page_token"))

        def full(conn: Connection) -> list[dict[str, Any]]:
            out = []
            for light in chunk_ids:
                row = conn.execute(
                    select(registered_models).where(registered_models.c.id == light["id"])
                ).first()
                if row is not None:  # deleted meanwhile
                    out.append(_model_record(conn, row))
            return out

        chunk = await self._read(full)
        out: dict[str, Any] = {"registered_models": [model_json(r) for r in chunk]}
        if token:
            out["next_page_token"] = token
        return reply(out)

    async def update_model(self, request: Request) -> Response:
        from loopml.registry.lifecycle import set_description

        body = await self._args(request)
        name = _str(body, "name")
        self.ctx.access.check(request, MODEL, name, EDIT)
        if "description" in body:
            await self._as_caller(
                request, set_description, self.ws.db, name, None, body["description"] or None
            )
        record = await self._read(lambda c: _model_record(c, _model_row(c, name)))
        return reply({"registered_model": model_json(record)})

    async def rename_model(self, request: Request) -> Response:
        from loopml.registry.lifecycle import rename_model

        body = await self._args(request)
        name = _str(body, "name")
        new_name = _str(body, "new_name")
        self.ctx.access.check(request, MODEL, name, MANAGE)
        await self._as_caller(request, rename_model, self.ws.db, name, new_name)
        # Its users keep their grants under the new name (auth or not: the table is there).
        await self.ctx.call(
            self.ws.db.transact, lambda c: grants.rename_key(c, MODEL, name, new_name)
        )
        self.ctx.access.created(request, MODEL, new_name)
        record = await self._read(lambda c: _model_record(c, _model_row(c, new_name)))
        return reply({"registered_model": model_json(record)})

    async def delete_model(self, request: Request) -> Response:
        from loopml.registry.lifecycle import delete_model

        body = await self._args(request)
        name = _str(body, "name")
        self.ctx.access.check(request, MODEL, name, MANAGE)
        await self._as_caller(request, delete_model, self.ws.db, name)
        # A later model of the same name starts with no grants.
        await self.ctx.call(self.ws.db.transact, lambda c: grants.drop_key(c, MODEL, name))
        return reply({})

    async def set_model_tag(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        key = _str(body, "key")
        value = _tag_value(key, body.get("value"))
        self.ctx.access.check(request, MODEL, name, EDIT)

        def tx(conn: Connection) -> None:
            _set_tag(conn, v.model_id(conn, name), 0, key, value)

        await self._as_caller(request, self.ws.db.transact, tx)
        return reply({})

    async def delete_model_tag(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        key = _str(body, "key")
        self.ctx.access.check(request, MODEL, name, EDIT)
        await self._as_caller(request, self.ws.db.transact, lambda c: _delete_tag(c, name, 0, key))
        return reply({})

    async def latest_versions(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        self.ctx.access.check(request, MODEL, name, READ)
        raw = body.get("stages") or []
        stages = [
            v.stage_name(s) if s.lower() != "none" else v.NONE
            for s in ([raw] if isinstance(raw, str) else raw)
        ]
        record = await self._read(lambda c: _model_record(c, _model_row(c, name)))
        latest = [
            r for r in record["latest_versions"] if not stages or r["current_stage"] in stages
        ]
        return reply({"model_versions": [version_json(r) for r in latest]})

    # aliases

    async def set_alias(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        alias = _str(body, "alias")
        version = _version(body)
        self.ctx.access.check(request, MODEL, name, EDIT)
        await self._as_caller(request, v.set_alias, self.ws.db, name, alias, version, None)
        return reply({})

    async def delete_alias(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        alias = _str(body, "alias")
        self.ctx.access.check(request, MODEL, name, EDIT)
        await self._as_caller(request, v.delete_alias, self.ws.db, name, alias)
        return reply({})

    async def get_by_alias(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        alias = _str(body, "alias")
        self.ctx.access.check(request, MODEL, name, READ)

        def run(conn: Connection) -> dict[str, Any]:
            mid = v.model_id(conn, name)
            found = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.model_id == mid, model_aliases.c.alias == alias
                )
            ).scalar()
            if found is None:
                raise ModelVersionNotFound(f"Registered model alias {alias} not found.")
            return _one_version(conn, name, int(found))

        return reply({"model_version": version_json(await self._read(run))})

    # model versions

    async def create_version(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        self.ctx.access.check(request, MODEL, name, EDIT)
        record = await self._as_caller(
            request, _create_version, self.ws, name, body, self._user(request)
        )
        return reply({"model_version": version_json(record)})

    async def get_version(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        self.ctx.access.check(request, MODEL, name, READ)
        record = await self._read(lambda c: _one_version(c, name, version))
        return reply({"model_version": version_json(record)})

    async def search_versions(self, request: Request) -> Response:
        body = await self._args(request)
        clauses = parse_filter(
            body.get("filter"), ["name", "run_id", "source_path", "version_number", "model_id"]
        )
        limit = _max_results(body, VERSIONS_DEFAULT_RESULTS, VERSIONS_MAX_RESULTS)
        readable = self.ctx.access.readable(request, MODEL)
        names = [c.value for c in clauses if c.field == "name" and c.op == "="]

        def run(conn: Connection) -> list[dict[str, Any]]:
            stmt = select(registered_models.c.id, registered_models.c.name)
            if names:
                stmt = stmt.where(registered_models.c.name.in_(names))
            out = []
            for mid, name in conn.execute(stmt).all():
                if readable is not None and name not in readable:
                    continue
                for rec in _version_records(conn, mid, name):
                    rec["source_path"] = rec["source"]
                    if matches(rec, clauses):
                        out.append(rec)
            return out

        records = await self._read(run)
        records = sort_records(
            records,
            _order_by(body) or ["name ASC", "version_number DESC"],
            {
                "name": "name",
                "version_number": "version_number",
                "timestamp": "last_updated_timestamp",
                "last_updated_timestamp": "last_updated_timestamp",
                "creation_timestamp": "creation_timestamp",
            },
        )
        chunk, token = page(records, limit, body.get("page_token"))
        out: dict[str, Any] = {"model_versions": [version_json(r) for r in chunk]}
        if token:
            out["next_page_token"] = token
        return reply(out)

    async def update_version(self, request: Request) -> Response:
        from loopml.registry.lifecycle import set_description

        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        self.ctx.access.check(request, MODEL, name, EDIT)
        if "description" in body:
            await self._as_caller(
                request, set_description, self.ws.db, name, version, body["description"] or None
            )
        record = await self._read(lambda c: _one_version(c, name, version))
        return reply({"model_version": version_json(record)})

    async def delete_version(self, request: Request) -> Response:
        from loopml.registry.lifecycle import delete_version

        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        self.ctx.access.check(request, MODEL, name, MANAGE)
        await self._as_caller(request, delete_version, self.ws.db, name, version)
        return reply({})

    async def transition_stage(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        raw = _str(body, "stage")
        stage = v.NONE if raw.lower() == "none" else v.stage_name(raw)
        archive = str(body.get("archive_existing_versions", False)).lower() == "true"
        self.ctx.access.check(request, MODEL, name, EDIT)
        await self._as_caller(request, _transition, self.ws, name, version, stage, archive)
        record = await self._read(lambda c: _one_version(c, name, version))
        return reply({"model_version": version_json(record)})

    async def set_version_tag(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        key = _str(body, "key")
        value = _tag_value(key, body.get("value"))
        self.ctx.access.check(request, MODEL, name, EDIT)

        def tx(conn: Connection) -> None:
            v.resolve(conn, v.ModelRef(name, version=version))
            _set_tag(conn, v.model_id(conn, name), version, key, value)

        await self._as_caller(request, self.ws.db.transact, tx)
        return reply({})

    async def delete_version_tag(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        key = _str(body, "key")
        self.ctx.access.check(request, MODEL, name, EDIT)

        def tx(conn: Connection) -> None:
            v.resolve(conn, v.ModelRef(name, version=version))
            _delete_tag(conn, name, version, key)

        await self._as_caller(request, self.ws.db.transact, tx)
        return reply({})

    async def download_uri(self, request: Request) -> Response:
        body = await self._args(request)
        name = _str(body, "name")
        version = _version(body)
        self.ctx.access.check(request, MODEL, name, READ)
        record = await self._read(lambda c: _one_version(c, name, version))
        if not record["storage_location"]:
            raise ApiError(
                "INVALID_STATE",
                f"{name} version {version} was registered by loopml (flavor "
                f"{record['flavor']}), not as MLflow files; load it with loopml: "
                f"ws.models.load('models:/{name}/{version}')",
            )
        return reply({"artifact_uri": record["storage_location"]})


def _delete_tag(conn: Connection, name: str, version: int, key: str) -> None:
    mid = v.model_id(conn, name)
    done = conn.execute(
        delete(mlflow_registry_tags).where(
            mlflow_registry_tags.c.model_id == mid,
            mlflow_registry_tags.c.version == version,
            mlflow_registry_tags.c.key == key,
        )
    )
    if not done.rowcount:
        what = f"model {name!r}" if version == 0 else f"{name!r} version {version}"
        raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No tag with key {key!r} on {what}")


def _transition(ws: Workspace, name: str, version: int, stage: str, archive: bool) -> None:
    """Move a version to ``stage``; Production goes through loopml's gate."""
    if stage == v.PRODUCTION:
        try:
            ws.models.promote(name, version, "production")
        except PromotionBlocked as exc:
            raise ApiError("INVALID_STATE", str(exc)) from None
        return

    def tx(conn: Connection) -> None:
        v.move_stage(conn, name, version, stage)
        if archive and stage == v.STAGING:
            mid = v.model_id(conn, name)
            others = (
                conn.execute(
                    select(model_versions.c.version).where(
                        model_versions.c.model_id == mid,
                        model_versions.c.stage == v.STAGING,
                        model_versions.c.version != version,
                    )
                )
                .scalars()
                .all()
            )
            for other in others:
                conn.execute(
                    update(model_versions)
                    .where(model_versions.c.model_id == mid, model_versions.c.version == other)
                    .values(stage=v.ARCHIVED)
                )
                v.record_event(
                    conn,
                    mid,
                    "stage",
                    version=other,
                    target=v.ARCHIVED,
                    reason=f"archived: version {version} moved to Staging",
                )

    ws.db.transact(tx)


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The registry endpoints of MLflow's REST API (mounted under ``/api/2.0/mlflow`` and
    ``/ajax-api/2.0/mlflow``)."""
    from starlette.routing import Route

    api = RegistryApi(ctx)
    rm = "/registered-models"
    mv = "/model-versions"
    return [
        Route(f"{rm}/create", api.create_model, methods=["POST"]),
        Route(f"{rm}/get", api.get_model, methods=["GET"]),
        Route(f"{rm}/search", api.search_models, methods=["GET"]),
        Route(f"{rm}/update", api.update_model, methods=["PATCH"]),
        Route(f"{rm}/rename", api.rename_model, methods=["POST"]),
        Route(f"{rm}/delete", api.delete_model, methods=["DELETE"]),
        Route(f"{rm}/set-tag", api.set_model_tag, methods=["POST"]),
        Route(f"{rm}/delete-tag", api.delete_model_tag, methods=["DELETE"]),
        Route(f"{rm}/get-latest-versions", api.latest_versions, methods=["POST", "GET"]),
        Route(f"{rm}/alias", api.set_alias, methods=["POST"]),
        Route(f"{rm}/alias", api.delete_alias, methods=["DELETE"]),
        Route(f"{rm}/alias", api.get_by_alias, methods=["GET"]),
        Route(f"{mv}/create", api.create_version, methods=["POST"]),
        Route(f"{mv}/get", api.get_version, methods=["GET"]),
        Route(f"{mv}/search", api.search_versions, methods=["GET"]),
        Route(f"{mv}/update", api.update_version, methods=["PATCH"]),
        Route(f"{mv}/delete", api.delete_version, methods=["DELETE"]),
        Route(f"{mv}/transition-stage", api.transition_stage, methods=["POST"]),
        Route(f"{mv}/set-tag", api.set_version_tag, methods=["POST"]),
        Route(f"{mv}/delete-tag", api.delete_version_tag, methods=["DELETE"]),
        Route(f"{mv}/get-download-uri", api.download_uri, methods=["GET"]),
    ]
