"""Experiments: named groups of runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import AlreadyExists, ExperimentNotFound
from loopml.store.clock import now_ms
from loopml.store.db import Database
from loopml.tracking.keys import check_key
from loopml.tracking.tables import experiments, runs

DEFAULT_EXPERIMENT = "Default"


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    created_at: datetime
    description: str | None = None
    run_count: int = 0


def _to_experiment(row: object, run_count: int = 0) -> Experiment:
    return Experiment(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        created_at=datetime.fromtimestamp(row.created_at / 1000, UTC),  # type: ignore[attr-defined]
        description=row.description,  # type: ignore[attr-defined]
        run_count=run_count,
    )


def _find(conn: Connection, name_or_id: str | int) -> object | None:
    if isinstance(name_or_id, int):
        return conn.execute(select(experiments).where(experiments.c.id == name_or_id)).first()
    return conn.execute(select(experiments).where(experiments.c.name == name_or_id)).first()


def get_experiment(db: Database, name_or_id: str | int) -> Experiment:
    with db.read() as conn:
        row = _find(conn, name_or_id)
        if row is None:
            names = conn.execute(select(experiments.c.name).limit(20)).scalars().all()
            raise ExperimentNotFound(
                f"No experiment {name_or_id!r}. Known experiments: "
                f"{', '.join(repr(n) for n in names) or 'none'}."
            )
        return _to_experiment(row)


def create_experiment(db: Database, name: str, description: str | None = None) -> Experiment:
    check_key(name, "experiment name")

    def tx(conn: Connection) -> int:
        if _find(conn, name) is not None:
            raise AlreadyExists(f"Experiment {name!r} exists already.")
        result = conn.execute(
            insert(experiments).values(name=name, created_at=now_ms(), description=description)
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    try:
        db.transact(tx)
    except IntegrityError as exc:
        raise AlreadyExists(f"Experiment {name!r} exists already.") from exc
    return get_experiment(db, name)


def experiment_id(db: Database, name: str) -> int:
    """The id of experiment ``name``, creating it if needed (safe under concurrency)."""
    with db.read() as conn:
        row = _find(conn, name)
    if row is not None:
        return int(row.id)  # type: ignore[attr-defined]
    try:
        return create_experiment(db, name).id
    except AlreadyExists:
        return get_experiment(db, name).id  # another process created it between our two looks


def list_experiments(db: Database) -> list[Experiment]:
    counts = (
        select(runs.c.experiment_id, func.count().label("n"))
        .where(runs.c.deleted_at.is_(None))
        .group_by(runs.c.experiment_id)
        .subquery()
    )
    stmt = (
        select(experiments, func.coalesce(counts.c.n, 0).label("n"))
        .select_from(experiments.outerjoin(counts, counts.c.experiment_id == experiments.c.id))
        .order_by(experiments.c.id)
    )
    with db.read() as conn:
        return [_to_experiment(row, row.n) for row in conn.execute(stmt)]


def rename_experiment(db: Database, old: str | int, new: str) -> Experiment:
    check_key(new, "experiment name")
    current = get_experiment(db, old)
    if current.name == new:  # already so named: nothing to do (as a model's rename)
        return current

    def tx(conn: Connection) -> None:
        if _find(conn, new) is not None:
            raise AlreadyExists(f"Cannot rename {current.name!r} to {new!r}: {new!r} exists.")
        conn.execute(update(experiments).where(experiments.c.id == current.id).values(name=new))

    db.transact(tx)
    return get_experiment(db, current.id)
