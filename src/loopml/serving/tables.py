"""Serving's tables: every revision of every deployment's configuration."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from loopml.store.tables import KEY, metadata

# Append-only: revision N of deployment NAME is its configuration from then on. The newest
# revision is what every server replica serves; rollback writes a copy of an older one.
deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("config", Text, nullable=False),  # JSON, see loopml.serving.deployments.Deployment
    Column("actor", String(KEY), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("name", "revision", name="uq_deployments_name_revision"),
    Index("ix_deployments_name", "name"),
)
