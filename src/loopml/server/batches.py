"""Batches loopml's HTTP client sent, by id: a replayed batch is stored once.

The client gives every batch of points an id before it first sends it; the server stores the
batch's points and its id in one transaction, and answers a batch id it has already stored
without storing anything again (at-least-once on the wire, exactly once in the store).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, Index, Integer, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import Conflict, InvalidInput, RunNotFound
from loopml.store.clock import now_ms
from loopml.store.db import Database
from loopml.store.tables import RUN_ID, metadata
from loopml.tracking.tables import runs
from loopml.tracking.writer import Point, write_points

client_batches = Table(
    "client_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(RUN_ID), nullable=False),
    Column("points", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_client_batches_run_id", "run_id"),
)


def apply_batch(db: Database, batch_id: str, run_id: str, points: list[Point]) -> bool:
    """Store ``points`` of run ``run_id`` and ``batch_id`` in one transaction; → False (and
    nothing stored) when that batch id was stored before.

    A batch id seen before for another run is a :class:`~loopml.exceptions.Conflict` (a
    client bug, never silently dropped); an unknown run is
    :class:`~loopml.exceptions.RunNotFound`.
    """
    if not isinstance(batch_id, str) or not 8 <= len(batch_id) <= 64:
        raise InvalidInput(f"batch_id must be a string of 8 to 64 characters, got {batch_id!r}")

    def tx(conn: Connection) -> bool:
        seen = conn.execute(
            select(client_batches.c.run_id).where(client_batches.c.batch_id == batch_id)
        ).first()
        if seen is not None:
            if seen.run_id != run_id:
                raise Conflict(
                    f"Batch {batch_id} was stored for run {seen.run_id}, not {run_id}: a batch "
                    "id must be new for every batch."
                )
            return False
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise RunNotFound(f"No run {run_id!r}: its points can't be stored.")
        conn.execute(
            insert(client_batches).values(
                batch_id=batch_id, run_id=run_id, points=len(points), created_at=now_ms()
            )
        )
        write_points(conn, points)
        return True

    try:
        return db.transact(tx)
    except IntegrityError:
        # The same batch, sent again while its first copy was being stored: stored once.
        with db.read() as conn:
            stored = conn.execute(
                select(client_batches.c.run_id).where(client_batches.c.batch_id == batch_id)
            ).first()
        if stored is not None and stored.run_id == run_id:
            return False
        raise
