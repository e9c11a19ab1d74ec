"""The model registry's tables: models, versions, aliases and the append-only history.

A version's ``run_id`` points into tracking's ``runs``, imported here so that table is on the
metadata whenever this one is.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from loopml.store.tables import KEY, RUN_ID, metadata
from loopml.tracking.tables import runs

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("description", Text, nullable=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(RUN_ID), ForeignKey(runs.c.id), nullable=True),
    Column("flavor", String(64), nullable=False),
    Column("digest", String(64), nullable=False),  # blob: the model's file manifest
    Column("signature", Text, nullable=True),  # JSON
    Column("environment", Text, nullable=True),  # JSON: library versions at registration
    Column("stage", String(16), nullable=False),  # None, Staging, Production, Archived
    Column("description", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # The feature contract: "SERVICE:VERSION" of the feature service the model reads.
    Column("feature_service", String(KEY), nullable=True),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    # At most one Production version per model, enforced by the database itself.
    Index(
        "ix_model_versions_one_production",
        "model_id",
        unique=True,
        sqlite_where=text("stage = 'Production'"),
        postgresql_where=text("stage = 'Production'"),
    ),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", String(KEY), primary_key=True),
    Column("version", Integer, nullable=False),
)

# Append-only: every registration, stage move, alias move, gate verdict, approval, rollback.
model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(KEY), nullable=True),  # the stage or alias moved
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(KEY), nullable=True),
    Column("reason", Text, nullable=True),
    Column("verdict", Text, nullable=True),  # JSON
    Column("created_at", BigInteger, nullable=False),
    Index("ix_model_events_model_time", "model_id", "created_at"),
)
