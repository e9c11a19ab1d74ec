"""Creating, describing, renaming and deleting registered models and versions.

What MLflow's registry API asks of loopml's registry beyond registering and promoting::

    create_model(db, "churn", description="...")      # AlreadyExists if it is there
    set_description(db, "churn", None, "...")          # the model; a number: that version
    rename_model(db, "churn", "churn-v2")
    delete_version(db, "churn", 3)                     # its aliases go with it
    delete_model(db, "churn")                          # every version, alias and event

Deleting a version keeps the model's history (the event log records the deletion); deleting
a model removes it. Rows of other tables that point at a registered model by foreign key
(the server's tags of models and versions, say) are removed with it, in the same
transaction, so nothing is left half-deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select, update

from loopml.events import emit
from loopml.exceptions import AlreadyExists, InvalidInput
from loopml.registry.tables import model_aliases, model_events, model_versions, registered_models
from loopml.registry.versions import (
    ModelRef,
    _lock_model,
    check_name,
    model_id,
    record_event,
    resolve,
)
from loopml.store.clock import now_ms
from loopml.store.db import Database


def create_model(db: Database, name: str, description: str | None = None) -> None:
    """Create the registered model ``name`` with no version yet; :class:`AlreadyExists` if a
    model of that name is there."""
    check_name(name, "model name")

    def tx(conn: Connection) -> None:
        found = conn.execute(
            select(registered_models.c.id).where(registered_models.c.name == name)
        ).scalar()
        if found is not None:
            raise AlreadyExists(f"Registered model {name!r} already exists.")
        mid = conn.execute(
            insert(registered_models).values(
                name=name, created_at=now_ms(), description=description
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        record_event(conn, int(mid), "created")

    db.transact(tx)


def set_description(db: Database, name: str, version: int | None, description: str | None) -> None:
    """Set the description of model ``name`` (``version`` None) or of one of its versions."""

    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        if version is None:
            conn.execute(
                update(registered_models)
                .where(registered_models.c.id == mid)
                .values(description=description)
            )
        else:
            resolve(conn, ModelRef(name, version=version))
            conn.execute(
                update(model_versions)
                .where(model_versions.c.model_id == mid, model_versions.c.version == version)
                .values(description=description)
            )
        record_event(conn, mid, "described", version=version)

    db.transact(tx)


def rename_model(db: Database, name: str, new_name: str) -> None:
    """Rename a registered model; its versions, aliases and history follow it. A reference
    by the old name (``models:/old@production``) stops resolving."""
    check_name(new_name, "model name")
    if new_name == name:
        return

    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        _lock_model(conn, mid)
        taken = conn.execute(
            select(registered_models.c.id).where(registered_models.c.name == new_name)
        ).scalar()
        if taken is not None:
            raise AlreadyExists(
                f"Cannot rename {name!r} to {new_name!r}: a model of that name exists."
            )
        conn.execute(
            update(registered_models).where(registered_models.c.id == mid).values(name=new_name)
        )
        record_event(conn, mid, "renamed", target=new_name, reason=f"was {name!r}")

    db.transact(tx)


def _dependents() -> list[Table]:
    """Every table with a foreign key to ``registered_models``, after loading the schema."""
    from loopml.store.tables import load_all

    out = []
    for table in load_all().sorted_tables:
        if table is registered_models:
            continue
        if any(fk.column.table is registered_models for fk in table.foreign_keys):
            out.append(table)
    return out


def delete_version(db: Database, name: str, version: int) -> None:
    """Delete one version: its row, the aliases pointing at it and what other tables keep on
    it. The model's event log keeps its history and records the deletion."""

    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        _lock_model(conn, mid)
        resolve(conn, ModelRef(name, version=version))  # ModelVersionNotFound
        aliases = (
            conn.execute(
                select(model_aliases.c.alias).where(
                    model_aliases.c.model_id == mid, model_aliases.c.version == version
                )
            )
            .scalars()
            .all()
        )
        for table in _dependents():
            if table is model_events or table is model_versions or "version" not in table.c:
                continue
            conn.execute(
                delete(table).where(_model_column(table) == mid, table.c.version == version)
            )
        conn.execute(
            delete(model_versions).where(
                model_versions.c.model_id == mid, model_versions.c.version == version
            )
        )
        for alias in aliases:
            record_event(conn, mid, "alias", target=alias, from_version=version)
        record_event(conn, mid, "deleted", version=version)
        for alias in aliases:
            emit(conn, "model.alias_removed", name, {"alias": alias, "previous": version})

    db.transact(tx)


def delete_model(db: Database, name: str) -> None:
    """Delete a registered model with every version, alias and event of it."""

    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        _lock_model(conn, mid)
        # Children before parents: sorted_tables puts referencing tables after referenced
        # ones, so walk it backwards.
        for table in reversed(_dependents()):
            conn.execute(delete(table).where(_model_column(table) == mid))
        conn.execute(delete(registered_models).where(registered_models.c.id == mid))

    db.transact(tx)


def _model_column(table: Table) -> Any:
    for fk in table.foreign_keys:
        if fk.column.table is registered_models:
            return fk.parent
    raise InvalidInput(f"{table.name} does not point at registered_models")  # pragma: no cover
