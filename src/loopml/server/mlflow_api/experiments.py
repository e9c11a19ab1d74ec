"""MLflow's experiment endpoints (``/experiments/...`` of the tracking REST API) over loopml's
experiments.

An MLflow experiment is a loopml experiment, with the same id: MLflow's ``"0"`` is loopml's
``Default`` experiment, created on first use. Its ``artifact_location`` is
``mlflow-artifacts:/<experiment_id>`` (served by :mod:`.artifacts`); its lifecycle (deleted
or active, and when it last changed) and its tags live in :mod:`.tables` (loopml has no
column for them); the ``mlflow.note.content`` tag is loopml's description.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import AlreadyExists, InvalidInput
from loopml.server.context import EDIT, EXPERIMENT, MANAGE, READ, ServerContext
from loopml.server.errors import ApiError
from loopml.server.http import reply, request_args
from loopml.server.mlflow_api.experiment_search import experiment_filter, experiment_order
from loopml.server.mlflow_api.tables import mlflow_experiment_state, mlflow_experiment_tags
from loopml.server.mlflow_api.values import (
    DEFAULT_SEARCH_EXPERIMENTS,
    MAX_RESULTS,
    NOTE_TAG,
    VIEW_TYPES,
    bad,
    check_key,
    integer,
    key_values,
    string_list,
    tag_text,
    text,
)
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.tracking.experiments import DEFAULT_EXPERIMENT
from loopml.tracking.search import page_offset, page_token_for
from loopml.tracking.tables import experiments

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.store.db import Database


class ExperimentsApi:
    """The experiment endpoints, over one server context; the run endpoints
    (:class:`~loopml.server.mlflow_api.tracking.TrackingApi`) read experiment ids and
    states through it."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.db: Database = ctx.workspace.db
        self._default_id: int | None = None

    async def body(self, request: Request) -> dict[str, Any]:
        return await request_args(request, self.ctx.settings.max_request_bytes)

    def default_experiment_id(self) -> int:
        """loopml's ``Default`` experiment (MLflow's ``"0"``), created on first use."""
        if self._default_id is None:
            from loopml.tracking.experiments import experiment_id

            self._default_id = experiment_id(self.db, DEFAULT_EXPERIMENT)
        return self._default_id

    def experiment_key(self, value: Any) -> int:
        """An MLflow experiment id (``"0"``: Default) as loopml's integer id."""
        raw = str(value).strip()
        if not re.fullmatch(r"\d{1,18}", raw):
            raise bad(f"Experiment id {value!r} is not an id: experiment ids are integers.")
        number = int(raw)
        return self.default_experiment_id() if number == 0 else number

    async def exp_key(self, value: Any) -> int:
        """:meth:`experiment_key` from a route: only the first use of ``"0"`` reads the
        store (off the event loop)."""
        if self._default_id is None and str(value).strip().lstrip("0") == "":
            return await self.ctx.call(self.experiment_key, value)
        return self.experiment_key(value)

    def experiment_json(self, conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
        """MLflow's Experiment objects of these ids (those that exist)."""
        out: dict[int, dict[str, Any]] = {}
        if not ids:
            return out
        rows = conn.execute(
            select(
                experiments,
                mlflow_experiment_state.c.deleted_at,
                mlflow_experiment_state.c.updated_at,
            )
            .select_from(
                experiments.outerjoin(
                    mlflow_experiment_state,
                    mlflow_experiment_state.c.experiment_id == experiments.c.id,
                )
            )
            .where(experiments.c.id.in_(ids))
        ).all()
        tag_rows: dict[int, list[dict[str, str]]] = {}
        for exp_id, key, value in conn.execute(
            select(
                mlflow_experiment_tags.c.experiment_id,
                mlflow_experiment_tags.c.key,
                mlflow_experiment_tags.c.value,
            )
            .where(mlflow_experiment_tags.c.experiment_id.in_(ids))
            .order_by(mlflow_experiment_tags.c.key)
        ):
            tag_rows.setdefault(exp_id, []).append({"key": key, "value": value})
        for row in rows:
            exp_tags = tag_rows.get(row.id, [])
            if row.description and not any(t["key"] == NOTE_TAG for t in exp_tags):
                exp_tags = [*exp_tags, {"key": NOTE_TAG, "value": row.description}]
            out[row.id] = {
                "experiment_id": str(row.id),
                "name": row.name,
                "artifact_location": f"mlflow-artifacts:/{row.id}",
                "lifecycle_stage": "deleted" if row.deleted_at is not None else "active",
                "last_update_time": row.updated_at or row.created_at,
                "creation_time": row.created_at,
                "tags": exp_tags,
            }
        return out

    def one_experiment(self, exp_id: int) -> dict[str, Any]:
        with self.db.read() as conn:
            found = self.experiment_json(conn, [exp_id]).get(exp_id)
        if found is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with ID {exp_id}")
        return found

    async def create_experiment(self, request: Request) -> Response:
        body = await self.body(request)
        name = text(body, "name")
        check_key(name, "experiment name")
        location = text(body, "artifact_location", required=False)
        if location and not location.startswith("mlflow-artifacts:"):
            raise bad(
                f"This server keeps every experiment's artifacts itself (mlflow-artifacts:/"
                f"<id>); it can't use artifact_location {location!r}. Leave it out."
            )
        items = {
            check_key(k, "tag key"): tag_text(k, v) for k, v in key_values(body.get("tags"), "tags")
        }

        def tx(conn: Connection) -> int:
            found = conn.execute(select(experiments.c.id).where(experiments.c.name == name)).first()
            if found is not None:
                raise AlreadyExists(f"Experiment(name={name}) already exists.")
            now = now_ms()
            result = conn.execute(
                insert(experiments).values(
                    name=name, created_at=now, description=items.get(NOTE_TAG)
                )
            )
            exp_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            if items:
                conn.execute(
                    insert(mlflow_experiment_tags),
                    [{"experiment_id": exp_id, "key": k, "value": v} for k, v in items.items()],
                )
            return exp_id

        try:
            exp_id = await self.ctx.call(self.db.transact, tx)
        except IntegrityError:
            raise AlreadyExists(f"Experiment(name={name}) already exists.") from None
        self.ctx.access.created(request, EXPERIMENT, str(exp_id))
        return reply({"experiment_id": str(exp_id)})

    async def get_experiment(self, request: Request) -> Response:
        body = await self.body(request)
        exp_id = await self.exp_key(text(body, "experiment_id"))
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), READ)
        return reply({"experiment": await self.ctx.call(self.one_experiment, exp_id)})

    async def get_experiment_by_name(self, request: Request) -> Response:
        body = await self.body(request)
        name = text(body, "experiment_name")

        def find() -> int | None:
            if name == DEFAULT_EXPERIMENT:
                return self.default_experiment_id()
            with self.db.read() as conn:
                return conn.execute(
                    select(experiments.c.id).where(experiments.c.name == name)
                ).scalar()

        exp_id = await self.ctx.call(find)
        if exp_id is None:
            raise ApiError(
                "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'"
            )
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), READ)
        return reply({"experiment": await self.ctx.call(self.one_experiment, exp_id)})

    async def search_experiments(self, request: Request) -> Response:
        body = await self.body(request)
        max_results = integer(body, "max_results", DEFAULT_SEARCH_EXPERIMENTS)
        assert max_results is not None
        if not 0 < max_results <= MAX_RESULTS:
            raise bad(f"max_results must be between 1 and {MAX_RESULTS}, got {max_results}.")
        view = VIEW_TYPES.get(str(body.get("view_type") or "1"), str(body.get("view_type")))
        if view not in VIEW_TYPES.values():
            raise bad(f"view_type must be ACTIVE_ONLY, DELETED_ONLY or ALL, got {view!r}.")
        matcher = experiment_filter(text(body, "filter", required=False))
        order = experiment_order(string_list(body, "order_by"))
        try:
            offset = page_offset(text(body, "page_token", required=False) or None)
        except InvalidInput as exc:
            raise bad(str(exc)) from None
        readable = self.ctx.access.readable(request, EXPERIMENT)

        def find() -> list[dict[str, Any]]:
            self.default_experiment_id()
            with self.db.read() as conn:
                ids = list(conn.execute(select(experiments.c.id)).scalars())
                if readable is not None:
                    ids = [i for i in ids if str(i) in readable]
                return list(self.experiment_json(conn, ids).values())

        found = await self.ctx.call(find)
        if view == "ACTIVE_ONLY":
            found = [e for e in found if e["lifecycle_stage"] == "active"]
        elif view == "DELETED_ONLY":
            found = [e for e in found if e["lifecycle_stage"] == "deleted"]
        found = [e for e in found if matcher(e)]
        found.sort(key=order)
        page = found[offset : offset + max_results]
        answer: dict[str, Any] = {"experiments": page}
        if offset + max_results < len(found):
            answer["next_page_token"] = page_token_for(offset + max_results)
        return reply(answer)

    async def update_experiment(self, request: Request) -> Response:
        body = await self.body(request)
        exp_id = await self.exp_key(text(body, "experiment_id"))
        new_name = text(body, "new_name", required=False)
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)
        if new_name:
            check_key(new_name, "experiment name")

            def tx(conn: Connection) -> None:
                self.require_experiment(conn, exp_id)
                clash = conn.execute(
                    select(experiments.c.id).where(
                        experiments.c.name == new_name, experiments.c.id != exp_id
                    )
                ).first()
                if clash is not None:
                    raise AlreadyExists(f"Experiment(name={new_name}) already exists.")
                conn.execute(
                    update(experiments).where(experiments.c.id == exp_id).values(name=new_name)
                )
                self.touch_experiment(conn, exp_id)

            await self.ctx.call(self.db.transact, tx)
        return reply({})

    def require_experiment(self, conn: Connection, exp_id: int) -> bool:
        """Whether it is active; RESOURCE_DOES_NOT_EXIST when there is no such experiment."""
        row = conn.execute(
            select(experiments.c.id, mlflow_experiment_state.c.deleted_at)
            .select_from(
                experiments.outerjoin(
                    mlflow_experiment_state,
                    mlflow_experiment_state.c.experiment_id == experiments.c.id,
                )
            )
            .where(experiments.c.id == exp_id)
        ).first()
        if row is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with ID {exp_id}")
        return row.deleted_at is None

    def touch_experiment(
        self, conn: Connection, exp_id: int, deleted_at: int | None | bool = False
    ) -> None:
        """Set the experiment's last update time (and, unless ``deleted_at`` is False, its
        lifecycle: a time for deleted, None for active)."""
        now = now_ms()
        values: dict[str, Any] = {"experiment_id": exp_id, "updated_at": now}
        if deleted_at is not False:
            values["deleted_at"] = deleted_at
        stmt = upsert(conn.dialect.name, mlflow_experiment_state)
        changes: dict[str, Any] = {"updated_at": stmt.excluded.updated_at}
        if deleted_at is not False:
            changes["deleted_at"] = stmt.excluded.deleted_at
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[mlflow_experiment_state.c.experiment_id], set_=changes
            ),
            [values],
        )

    async def _set_experiment_deleted(self, request: Request, deleted: bool) -> Response:
        body = await self.body(request)
        exp_id = await self.exp_key(text(body, "experiment_id"))
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), MANAGE)
        if deleted and exp_id == self.default_experiment_id():
            raise bad("The default experiment (ID 0, Default) cannot be deleted.")

        def tx(conn: Connection) -> None:
            active = self.require_experiment(conn, exp_id)
            if deleted and not active:
                raise bad(f"Experiment {exp_id} is deleted already.")
            if not deleted and active:
                raise bad(f"Cannot restore an active experiment ({exp_id}).")
            self.touch_experiment(conn, exp_id, now_ms() if deleted else None)

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def delete_experiment(self, request: Request) -> Response:
        return await self._set_experiment_deleted(request, True)

    async def restore_experiment(self, request: Request) -> Response:
        return await self._set_experiment_deleted(request, False)

    async def set_experiment_tag(self, request: Request) -> Response:
        body = await self.body(request)
        exp_id = await self.exp_key(text(body, "experiment_id"))
        key = check_key(text(body, "key"), "tag key")
        value = tag_text(key, body.get("value", ""))
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)

        def tx(conn: Connection) -> None:
            if not self.require_experiment(conn, exp_id):
                raise bad(f"The experiment {exp_id} must be in the 'active' state.")
            stmt = upsert(conn.dialect.name, mlflow_experiment_tags)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        mlflow_experiment_tags.c.experiment_id,
                        mlflow_experiment_tags.c.key,
                    ],
                    set_={"value": stmt.excluded.value},
                ),
                [{"experiment_id": exp_id, "key": key, "value": value}],
            )
            if key == NOTE_TAG:  # MLflow's description is loopml's
                conn.execute(
                    update(experiments).where(experiments.c.id == exp_id).values(description=value)
                )
            self.touch_experiment(conn, exp_id)

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    async def delete_experiment_tag(self, request: Request) -> Response:
        body = await self.body(request)
        exp_id = await self.exp_key(text(body, "experiment_id"))
        key = text(body, "key")
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), EDIT)

        def tx(conn: Connection) -> None:
            self.require_experiment(conn, exp_id)
            gone = conn.execute(
                delete(mlflow_experiment_tags).where(
                    mlflow_experiment_tags.c.experiment_id == exp_id,
                    mlflow_experiment_tags.c.key == key,
                )
            ).rowcount
            if key == NOTE_TAG:
                gone += conn.execute(
                    update(experiments)
                    .where(experiments.c.id == exp_id, experiments.c.description.is_not(None))
                    .values(description=None)
                ).rowcount
            if not gone:
                raise ApiError(
                    "RESOURCE_DOES_NOT_EXIST", f"No tag with name: {key} in experiment {exp_id}."
                )
            self.touch_experiment(conn, exp_id)

        await self.ctx.call(self.db.transact, tx)
        return reply({})

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        table: list[tuple[str, Callable[..., Any], list[str]]] = [
            ("/experiments/create", self.create_experiment, ["POST"]),
            ("/experiments/get", self.get_experiment, ["GET"]),
            ("/experiments/get-by-name", self.get_experiment_by_name, ["GET"]),
            ("/experiments/search", self.search_experiments, ["POST", "GET"]),
            ("/experiments/update", self.update_experiment, ["POST"]),
            ("/experiments/delete", self.delete_experiment, ["POST"]),
            ("/experiments/restore", self.restore_experiment, ["POST"]),
            ("/experiments/set-experiment-tag", self.set_experiment_tag, ["POST"]),
            ("/experiments/delete-experiment-tag", self.delete_experiment_tag, ["POST"]),
        ]
        return [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]
