"""LLMOps part 2: guardrail policy versions, and what the cache and the guardrails did to
each logged request (loopml.llm).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


KEY = 250


def upgrade() -> None:
    op.create_table(
        "llm_policies",
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_llm_policies"),
        sa.UniqueConstraint("name", "digest", name="uq_llm_policies_name_digest"),
    )
    with op.batch_alter_table("llm_requests") as batch:
        batch.add_column(sa.Column("cache", sa.Text, nullable=True))
        batch.add_column(sa.Column("saved_usd", sa.Float, nullable=True))
        batch.add_column(sa.Column("guardrails", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_requests") as batch:
        batch.drop_column("guardrails")
        batch.drop_column("saved_usd")
        batch.drop_column("cache")
    op.drop_table("llm_policies")
