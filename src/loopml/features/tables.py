"""The feature store's tables: versioned definitions, and materialization progress."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from loopml.store.tables import metadata

NAME = 128

# Every applied version of an entity, feature view, on-demand view or feature service: a new
# version whenever its spec (plain JSON) changes.
feature_definitions = Table(
    "feature_definitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(32), nullable=False),
    Column("spec", Text, nullable=False),  # JSON
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("kind", "name", "version", name="uq_feature_definitions_kind_name_version"),
    Index("ix_feature_definitions_kind_name", "kind", "name"),
)

# One row per partition of a materialization job (view, start, end): DONE partitions are
# skipped when the same job runs again, so an interrupted job resumes.
feature_materializations = Table(
    "feature_materializations",
    metadata,
    Column("view", String(NAME), primary_key=True),
    Column("start_at", BigInteger, primary_key=True),  # ms since the epoch, UTC
    Column("end_at", BigInteger, primary_key=True),
    Column("partitions", Integer, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("status", String(16), nullable=False),  # RUNNING, DONE, FAILED
    Column("rows", Integer, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)
