"""Applied feature definitions: a version per change, stored in the metadata database.

``apply`` compares each definition's spec with its latest stored version and stores a new
version (with a ``feature.applied`` event) only when it changed; :func:`spec_diff` says what
changed. A feature service's version is what a model version records as its feature contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select

from loopml import events
from loopml.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    spec_digest,
)
from loopml.features.errors import FeatureNotFound
from loopml.features.tables import feature_definitions
from loopml.store.clock import now_ms, to_datetime

if TYPE_CHECKING:
    from loopml.store.db import Database

KINDS = ("entity", "feature_view", "on_demand_feature_view", "feature_service")


def kind_of(item: Definition) -> str:
    if isinstance(item, Entity):
        return "entity"
    if isinstance(item, FeatureView):
        return "feature_view"
    if isinstance(item, OnDemandFeatureView):
        return "on_demand_feature_view"
    if isinstance(item, FeatureService):
        return "feature_service"
    raise FeatureNotFound(f"{item!r} is not a feature definition")


@dataclass(frozen=True)
class StoredDefinition:
    """One stored version of a definition."""

    kind: str
    name: str
    version: int
    digest: str
    spec: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "created_at": self.created_at.isoformat(),
            "spec": self.spec,
        }


@dataclass(frozen=True)
class Change:
    """What applying one definition did: ``new``, ``changed`` or ``unchanged``."""

    kind: str
    name: str
    status: str
    version: int
    diff: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "version": self.version,
            "diff": list(self.diff),
        }


def spec_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Lines saying how ``new`` differs from ``old``: ``+ key: value``, ``- key: value``,
    ``~ key: old → new`` (nested mappings by dotted key; lists by element for fields).

    >>> spec_diff({"ttl_seconds": 60, "online": True}, {"ttl_seconds": 120, "online": True})
    ['~ ttl_seconds: 60 → 120']
    """
    lines: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        where = f"{prefix}{key}"
        if key not in new:
            lines.append(f"- {where}: {_short(old[key])}")
        elif key not in old:
            lines.append(f"+ {where}: {_short(new[key])}")
        elif old[key] != new[key]:
            a, b = old[key], new[key]
            if isinstance(a, Mapping) and isinstance(b, Mapping):
                lines += spec_diff(a, b, f"{where}.")
            elif _named_list(a) and _named_list(b):
                before = {item["name"]: item for item in a}
                after = {item["name"]: item for item in b}
                # In list order, so the same change always reads the same.
                found = [f"+ {where}: {_short(after[n])}" for n in after if n not in before]
                found += [f"- {where}: {_short(before[n])}" for n in before if n not in after]
                for name in sorted(before.keys() & after.keys()):
                    if before[name] != after[name]:
                        found.append(
                            f"~ {where}.{name}: {_short(before[name])} → {_short(after[name])}"
                        )
                if not found:  # the same elements, reordered: still a change (column order)
                    found.append(f"~ {where}: order {', '.join(before)} → {', '.join(after)}")
                lines += found
            else:
                lines.append(f"~ {where}: {_short(a)} → {_short(b)}")
    return lines


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, Mapping) and isinstance(v.get("name"), str) for v in value
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _latest(conn: Connection, kind: str, name: str) -> Any:
    return conn.execute(
        select(feature_definitions)
        .where(feature_definitions.c.kind == kind, feature_definitions.c.name == name)
        .order_by(feature_definitions.c.version.desc())
        .limit(1)
    ).first()


def apply(db: Database, items: Iterable[Definition], *, dry_run: bool = False) -> list[Change]:
    """Store a new version of every definition whose spec changed, in one transaction (or,
    with ``dry_run``, only say what would change)."""
    planned = [(kind_of(item), item.name, item.spec()) for item in items]

    def tx(conn: Connection) -> list[Change]:
        changes = []
        for kind, name, spec in planned:
            digest = spec_digest(spec)
            row = _latest(conn, kind, name)
            if row is not None and row.digest == digest:
                changes.append(Change(kind, name, "unchanged", row.version))
                continue
            version = 1 if row is None else row.version + 1
            diff = tuple(spec_diff(json.loads(row.spec), spec)) if row is not None else ()
            changes.append(Change(kind, name, "new" if row is None else "changed", version, diff))
            if dry_run:
                continue
            conn.execute(
                insert(feature_definitions).values(
                    kind=kind,
                    name=name,
                    version=version,
                    digest=digest,
                    spec=json.dumps(spec, sort_keys=True, default=str),
                    created_at=now_ms(),
                )
            )
            events.emit(
                conn,
                "feature.applied",
                name,
                {
                    "kind": kind,
                    "version": version,
                    "previous": None if row is None else row.version,
                },
            )
        return changes

    if dry_run:
        with db.read() as conn:
            return tx(conn)
    return db.transact(tx)


def _stored(row: Any) -> StoredDefinition:
    created = to_datetime(row.created_at)
    assert created is not None  # the column is NOT NULL
    return StoredDefinition(
        row.kind, row.name, row.version, row.digest, json.loads(row.spec), created
    )


def latest(db: Database, kind: str | None = None) -> list[StoredDefinition]:
    """The latest version of every stored definition (of ``kind``), by kind then name."""
    newest = (
        select(
            feature_definitions.c.kind,
            feature_definitions.c.name,
            func.max(feature_definitions.c.version).label("version"),
        )
        .group_by(feature_definitions.c.kind, feature_definitions.c.name)
        .subquery()
    )
    stmt = select(feature_definitions).join(
        newest,
        (newest.c.kind == feature_definitions.c.kind)
        & (newest.c.name == feature_definitions.c.name)
        & (newest.c.version == feature_definitions.c.version),
    )
    if kind is not None:
        stmt = stmt.where(feature_definitions.c.kind == kind)
    with db.read() as conn:
        rows = conn.execute(stmt).all()
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted((_stored(r) for r in rows), key=lambda d: (order.get(d.kind, 9), d.name))


def history(db: Database, name: str, kind: str | None = None) -> list[StoredDefinition]:
    """Every stored version of the definition(s) named ``name``, oldest first."""
    stmt = select(feature_definitions).where(feature_definitions.c.name == name)
    if kind is not None:
        stmt = stmt.where(feature_definitions.c.kind == kind)
    with db.read() as conn:
        rows = conn.execute(
            stmt.order_by(feature_definitions.c.kind, feature_definitions.c.version)
        ).all()
    if not rows:
        import difflib

        known = [d.name for d in latest(db)]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise FeatureNotFound(
            f"No feature definition named {name!r} has been applied.{hint} "
            "Run `loopml features apply` first."
        )
    return [_stored(r) for r in rows]


def current_version(db: Database, item: Definition) -> int | None:
    """The stored version whose spec is ``item``'s spec now (None: not applied as it is)."""
    kind, digest = kind_of(item), spec_digest(item.spec())
    with db.read() as conn:
        row = _latest(conn, kind, item.name)
    return row.version if row is not None and row.digest == digest else None


def service_features(db: Database, service_version: str) -> list[str]:
    """The feature columns (bare names) of ``"SERVICE:VERSION"`` as that version was applied:
    what a model registered with it reads."""
    name, _, number = service_version.rpartition(":")
    for stored in history(db, name, "feature_service"):
        if str(stored.version) == number:
            return [feature.partition(":")[2] for feature in stored.spec["features"]]
    raise FeatureNotFound(f"Feature service {service_version!r} has no such applied version.")
