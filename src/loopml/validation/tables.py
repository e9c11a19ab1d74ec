"""Data contracts' table: the validation schema attached to a dataset or model version."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table

from loopml.store.tables import KEY, metadata

# The validation schema attached to a dataset version (by its hash) or to a model version
# (its feature contract); the schema's JSON is a blob.
schemas = Table(
    "schemas",
    metadata,
    Column("subject_kind", String(16), primary_key=True),  # "dataset" | "model"
    Column("subject", String(KEY + 16), primary_key=True),  # data hash, or "name/version"
    Column("digest", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
