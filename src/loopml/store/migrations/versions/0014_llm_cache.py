"""LLMOps part 2: the gateway's response cache, exact and semantic (loopml.llm.cache).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


KEY = 250
ID = 32


def upgrade() -> None:
    op.create_table(
        "llm_cache_entries",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("partition", sa.String(32), nullable=True),
        sa.Column("route", sa.String(KEY), nullable=False),
        sa.Column("tenant", sa.String(KEY + 8), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("query", sa.Text, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("body_blob", sa.String(64), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
        sa.Column("embedder", sa.String(KEY), nullable=True),
        sa.Column("request_id", sa.String(ID), nullable=True),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_hit_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("key", name="uq_llm_cache_entries_key"),
    )
    for column in ("created_at", "last_hit_at", "expires_at", "route"):
        op.create_index(f"ix_llm_cache_entries_{column}", "llm_cache_entries", [column])


def downgrade() -> None:
    for column in ("route", "expires_at", "last_hit_at", "created_at"):
        op.drop_index(f"ix_llm_cache_entries_{column}", table_name="llm_cache_entries")
    op.drop_table("llm_cache_entries")
