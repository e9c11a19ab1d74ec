"""Online evaluation of sampled gateway traffic: context relevance, groundedness and answer
relevance judged off the response path (loopml.llm.rag.online).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_online_evals",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("evaluator", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("route", sa.String(250), nullable=False),
        sa.Column("prompt", sa.String(250), nullable=True),
        sa.Column("rag_index", sa.String(250), nullable=True),
        sa.Column("index_version", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("judge_request_id", sa.String(32), nullable=True),
        sa.Column("judge_cost_usd", sa.Float, nullable=False),
        sa.Column("request_at", sa.BigInteger, nullable=False),
        sa.Column("evaluated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "evaluator", name="pk_llm_online_evals"),
    )
    op.create_index("ix_llm_online_evals_request_at", "llm_online_evals", ["request_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_online_evals_request_at", table_name="llm_online_evals")
    op.drop_table("llm_online_evals")
