"""Registered models, their versions, stages and aliases, and the append-only event log."""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, false, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from loopml.events import emit
from loopml.exceptions import InvalidInput, ModelNotFound, ModelVersionNotFound
from loopml.registry.signature import Signature
from loopml.registry.tables import model_aliases, model_events, model_versions, registered_models
from loopml.store.clock import now_ms
from loopml.store.db import Database, upsert
from loopml.tracking.keys import check_key

NONE, STAGING, PRODUCTION, ARCHIVED = "None", "Staging", "Production", "Archived"
STAGES = (NONE, STAGING, PRODUCTION, ARCHIVED)
_STAGE_BY_LOWER = {s.lower(): s for s in STAGES}
_URI = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))?$")


_ACTING_AS: ContextVar[str | None] = ContextVar("loopml_registry_actor", default=None)


@contextmanager
def acting_as(name: str | None) -> Iterator[None]:
    """Record registry changes made inside the block as done by ``name`` (the server's
    authenticated caller) instead of the process's own user. ``None`` changes nothing."""
    token = _ACTING_AS.set(name)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


def actor() -> str:
    """Who is acting: the name set by :func:`acting_as`, else ``LOOPML_ACTOR`` or the OS
    user."""
    override = _ACTING_AS.get()
    if override:
        return override
    try:
        return os.environ.get("LOOPML_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def check_name(value: str, what: str) -> None:
    """A model name or alias: a valid key that a ``models:/NAME@ALIAS`` reference can hold
    (keys may contain ``/``; a reference can't)."""
    check_key(value, what)
    if "/" in value:
        raise InvalidInput(
            f"The {what} {value!r} has '/', which a models:/NAME@ALIAS reference can't hold; "
            "use letters, digits, '_', '-', '.', ':' and spaces"
        )


def stage_name(value: str) -> str:
    stage = _STAGE_BY_LOWER.get(value.lower())
    if stage is None:
        raise InvalidInput(f"Unknown stage {value!r}; use one of: staging, production, archived")
    return stage


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    stage: str
    flavor: str
    digest: str
    run_id: str | None
    created_at: datetime
    signature: Signature | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    aliases: tuple[str, ...] = ()
    #: The feature contract: ``"SERVICE:VERSION"`` of the feature service the model reads.
    feature_service: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelEvent:
    id: int
    name: str
    kind: str
    version: int | None
    target: str | None
    from_version: int | None
    to_version: int | None
    actor: str | None
    reason: str | None
    verdict: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/name/3``, ``models:/name@alias`` or ``models:/name@production``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        m = _URI.match(uri.strip())
        if m is None:
            raise InvalidInput(
                f"Not a model reference: {uri!r}. Use models:/NAME/VERSION, models:/NAME@ALIAS "
                "or models:/NAME@production"
            )
        version = m.group("version")
        return cls(m.group("name"), int(version) if version else None, m.group("alias"))

    def __str__(self) -> str:
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}"


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def model_id(conn: Connection, name: str) -> int:
    found = conn.execute(
        select(registered_models.c.id).where(registered_models.c.name == name)
    ).scalar()
    if found is None:
        names = conn.execute(select(registered_models.c.name).limit(20)).scalars().all()
        raise ModelNotFound(
            f"No registered model {name!r}. Registered: {', '.join(names) or 'none'}."
        )
    return int(found)


def _lock_model(conn: Connection, mid: int) -> None:
    """Serialize registry writes per model (SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(registered_models.c.id).where(registered_models.c.id == mid).with_for_update()
        )


def _to_version(conn: Connection, name: str, row: Any) -> ModelVersion:
    aliases = conn.execute(
        select(model_aliases.c.alias)
        .where(model_aliases.c.model_id == row.model_id, model_aliases.c.version == row.version)
        .order_by(model_aliases.c.alias)
    ).scalars()
    return ModelVersion(
        name=name,
        version=row.version,
        stage=row.stage,
        flavor=row.flavor,
        digest=row.digest,
        run_id=row.run_id,
        created_at=_ms(row.created_at),
        signature=Signature.from_dict(json.loads(row.signature)) if row.signature else None,
        environment=json.loads(row.environment) if row.environment else {},
        description=row.description,
        aliases=tuple(aliases),
        feature_service=row.feature_service,
    )


def resolve(conn: Connection, ref: ModelRef) -> ModelVersion:
    """The version a reference points at (no selector: the latest version)."""
    mid = model_id(conn, ref.name)
    stmt = select(model_versions).where(model_versions.c.model_id == mid)
    if ref.version is not None:
        stmt = stmt.where(model_versions.c.version == ref.version)
        what = f"version {ref.version}"
    elif ref.alias is not None:
        alias_version = conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_id == mid, model_aliases.c.alias == ref.alias
            )
        ).scalar()
        what = f"alias or stage {ref.alias!r}"
        if alias_version is not None:
            stmt = stmt.where(model_versions.c.version == alias_version)
        elif ref.alias.lower() in _STAGE_BY_LOWER and ref.alias.lower() != "none":
            stage = _STAGE_BY_LOWER[ref.alias.lower()]
            stmt = stmt.where(model_versions.c.stage == stage)
            stmt = stmt.order_by(model_versions.c.version.desc()).limit(1)
            what = f"version in {stage}"
        else:
            stmt = stmt.where(false())
    else:
        stmt = stmt.order_by(model_versions.c.version.desc()).limit(1)
        what = "any version"
    row = conn.execute(stmt).first()
    if row is None:
        raise ModelVersionNotFound(
            f"Model {ref.name!r} has no {what}. See `loopml models versions {ref.name}`."
        )
    return _to_version(conn, ref.name, row)


def get_version(db: Database, ref: ModelRef | str) -> ModelVersion:
    parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
    with db.read() as conn:
        return resolve(conn, parsed)


def record_event(
    conn: Connection,
    mid: int,
    kind: str,
    *,
    version: int | None = None,
    target: str | None = None,
    from_version: int | None = None,
    to_version: int | None = None,
    who: str | None = None,
    reason: str | None = None,
    verdict: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(model_events).values(
            model_id=mid,
            kind=kind,
            version=version,
            target=target,
            from_version=from_version,
            to_version=to_version,
            actor=who or actor(),
            reason=reason,
            verdict=json.dumps(verdict, default=str) if verdict is not None else None,
            created_at=now_ms(),
        )
    )


def create_version(
    db: Database,
    name: str,
    *,
    flavor: str,
    digest: str,
    run_id: str | None,
    signature: Signature | None,
    environment: dict[str, Any],
    description: str | None,
    feature_service: str | None = None,
    with_version: Callable[[Connection, int, int], None] | None = None,
) -> ModelVersion:
    """Insert version ``latest + 1`` of ``name`` (creating the model on its first version).
    ``with_version(conn, model_id, version)`` runs in the same transaction, before the
    registration is recorded: what it writes commits with the version, or not at all."""
    check_name(name, "model name")

    def tx(conn: Connection) -> ModelVersion:
        mid = conn.execute(
            select(registered_models.c.id).where(registered_models.c.name == name)
        ).scalar()
        if mid is None:
            mid = conn.execute(
                insert(registered_models).values(name=name, created_at=now_ms())
            ).inserted_primary_key[0]  # type: ignore[index]
        _lock_model(conn, mid)
        latest = conn.execute(
            select(func.max(model_versions.c.version)).where(model_versions.c.model_id == mid)
        ).scalar()
        version = (latest or 0) + 1
        conn.execute(
            insert(model_versions).values(
                model_id=mid,
                version=version,
                run_id=run_id,
                flavor=flavor,
                digest=digest,
                signature=json.dumps(signature.to_dict()) if signature else None,
                environment=json.dumps(environment),
                stage=NONE,
                description=description,
                created_at=now_ms(),
                feature_service=feature_service,
            )
        )
        if with_version is not None:
            with_version(conn, mid, version)
        record_event(conn, mid, "registered", version=version, to_version=version)
        emit(conn, "model.registered", name, {"version": version, "run_id": run_id})
        row = conn.execute(
            select(model_versions).where(
                model_versions.c.model_id == mid, model_versions.c.version == version
            )
        ).one()
        return _to_version(conn, name, row)

    for attempt in range(5):
        try:
            return db.transact(tx)
        except IntegrityError:  # a concurrent first registration or version number
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def move_stage(
    conn: Connection,
    name: str,
    version: int,
    stage: str,
    *,
    kind: str = "stage",
    reason: str | None = None,
    verdict: dict[str, Any] | None = None,
) -> int | None:
    """Move ``version`` to ``stage`` in the caller's transaction; returns the version that
    held Production before (which is archived) when moving to Production."""
    mid = model_id(conn, name)
    _lock_model(conn, mid)
    current = resolve(conn, ModelRef(name, version=version))
    previous: int | None = None
    if stage == PRODUCTION:
        previous = conn.execute(
            select(model_versions.c.version).where(
                model_versions.c.model_id == mid, model_versions.c.stage == PRODUCTION
            )
        ).scalar()
        if previous is not None and previous != version:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.model_id == mid, model_versions.c.version == previous)
                .values(stage=ARCHIVED)
            )
    conn.execute(
        update(model_versions)
        .where(model_versions.c.model_id == mid, model_versions.c.version == version)
        .values(stage=stage)
    )
    record_event(
        conn,
        mid,
        kind,
        version=version,
        target=stage,
        from_version=previous if stage == PRODUCTION else None,
        to_version=version,
        reason=reason or (f"was {current.stage}" if kind == "stage" else None),
        verdict=verdict,
    )
    if stage != PRODUCTION:
        emit(conn, "model.stage_changed", name, {"version": version, "stage": stage})
    elif kind == "rollback":
        emit(conn, "model.rolled_back", name, {"version": version, "previous": previous})
    else:
        payload = {"version": version, "previous": previous, "forced": kind == "override"}
        emit(conn, "model.promoted", name, payload)
    return previous


def set_alias(db: Database, name: str, alias: str, version: int, reason: str | None = None) -> None:
    check_name(alias, "alias")
    if alias.lower() in _STAGE_BY_LOWER:
        raise InvalidInput(f"{alias!r} names a stage; choose another alias (e.g. 'champion')")
    if alias.isdigit():
        raise InvalidInput(
            f"Alias {alias!r} looks like a version number ({name}/{alias} is version {alias}); "
            "choose a name with a letter in it (e.g. 'champion')"
        )

    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        _lock_model(conn, mid)
        resolve(conn, ModelRef(name, version=version))
        before = conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_id == mid, model_aliases.c.alias == alias
            )
        ).scalar()
        stmt = upsert(conn.dialect.name, model_aliases).values(
            model_id=mid, alias=alias, version=version
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[model_aliases.c.model_id, model_aliases.c.alias],
                set_={"version": version},
            )
        )
        record_event(
            conn,
            mid,
            "alias",
            version=version,
            target=alias,
            from_version=before,
            to_version=version,
            reason=reason,
        )
        payload = {"alias": alias, "version": version, "previous": before}
        emit(conn, "model.alias_set", name, payload)

    db.transact(tx)


def delete_alias(db: Database, name: str, alias: str) -> None:
    def tx(conn: Connection) -> None:
        mid = model_id(conn, name)
        before = conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_id == mid, model_aliases.c.alias == alias
            )
        ).scalar()
        if before is None:
            raise ModelVersionNotFound(f"Model {name!r} has no alias {alias!r}.")
        conn.execute(
            delete(model_aliases).where(
                and_(model_aliases.c.model_id == mid, model_aliases.c.alias == alias)
            )
        )
        record_event(conn, mid, "alias", target=alias, from_version=before, to_version=None)
        emit(conn, "model.alias_removed", name, {"alias": alias, "previous": before})

    db.transact(tx)


def list_models(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        models = conn.execute(select(registered_models).order_by(registered_models.c.name)).all()
        result = []
        for m in models:
            versions = conn.execute(
                select(model_versions.c.version, model_versions.c.stage).where(
                    model_versions.c.model_id == m.id
                )
            ).all()
            aliases = dict(
                conn.execute(
                    select(model_aliases.c.alias, model_aliases.c.version).where(
                        model_aliases.c.model_id == m.id
                    )
                ).all()
            )
            production = [v for v, s in versions if s == PRODUCTION]
            result.append(
                {
                    "name": m.name,
                    "versions": len(versions),
                    "latest": max((v for v, _ in versions), default=None),
                    "production": production[0] if production else None,
                    "staging": sorted(v for v, s in versions if s == STAGING),
                    "aliases": aliases,
                    "created_at": _ms(m.created_at),
                }
            )
    return result


def list_versions(db: Database, name: str) -> list[ModelVersion]:
    with db.read() as conn:
        mid = model_id(conn, name)
        rows = conn.execute(
            select(model_versions)
            .where(model_versions.c.model_id == mid)
            .order_by(model_versions.c.version)
        ).all()
        return [_to_version(conn, name, row) for row in rows]


def events(db: Database, name: str, until: datetime | None = None) -> list[ModelEvent]:
    with db.read() as conn:
        mid = model_id(conn, name)
        stmt = select(model_events).where(model_events.c.model_id == mid)
        if until is not None:
            stmt = stmt.where(model_events.c.created_at <= int(until.timestamp() * 1000))
        rows = conn.execute(stmt.order_by(model_events.c.id)).all()
    return [
        ModelEvent(
            id=r.id,
            name=name,
            kind=r.kind,
            version=r.version,
            target=r.target,
            from_version=r.from_version,
            to_version=r.to_version,
            actor=r.actor,
            reason=r.reason,
            verdict=json.loads(r.verdict) if r.verdict else None,
            created_at=_ms(r.created_at),
        )
        for r in rows
    ]


def state_at(db: Database, name: str, at: datetime) -> dict[str, Any]:
    """Replay the event log up to ``at``: which version held each stage and alias then."""
    stages: dict[int, str] = {}
    aliases: dict[str, int] = {}
    for event in events(db, name, until=at):
        if event.kind == "registered" and event.version is not None:
            stages[event.version] = NONE
        elif event.kind in {"stage", "rollback", "override"} and event.version is not None:
            if event.target == PRODUCTION:
                for v, s in list(stages.items()):
                    if s == PRODUCTION and v != event.version:
                        stages[v] = ARCHIVED
            stages[event.version] = event.target or NONE
        elif event.kind == "alias" and event.target is not None:
            if event.to_version is None:
                aliases.pop(event.target, None)
            else:
                aliases[event.target] = event.to_version
    production = [v for v, s in stages.items() if s == PRODUCTION]
    return {
        "at": at,
        "production": production[0] if production else None,
        "staging": sorted(v for v, s in stages.items() if s == STAGING),
        "archived": sorted(v for v, s in stages.items() if s == ARCHIVED),
        "aliases": aliases,
        "versions": sorted(stages),
    }
