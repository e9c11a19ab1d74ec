"""Batches loopml's HTTP client sent, by id: a replayed batch is stored once.

The client gives every batch of points an id before it first sends it; the server stores the
batch's points and its id in one transaction, and answers a batch id it has already stored
without storing anything again (at-least-once on the wire, exactly once in the store).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from loopml.store.tables import RUN_ID, metadata

client_batches = Table(
    "client_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(RUN_ID), nullable=False),
    Column("points", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_client_batches_run_id", "run_id"),
)
