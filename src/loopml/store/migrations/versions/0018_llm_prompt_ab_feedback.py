"""Prompt A/B tests (a label that splits traffic between two or more versions) and feedback
on gateway requests (loopml.llm.prompts, loopml.llm.feedback).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_prompt_labels") as batch:
        batch.add_column(sa.Column("split", sa.Text, nullable=True))
    with op.batch_alter_table("llm_prompt_label_history") as batch:
        batch.add_column(sa.Column("split", sa.Text, nullable=True))
    op.create_table(
        "llm_feedback",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("actor", sa.String(250), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_llm_feedback_request_id", "llm_feedback", ["request_id"])
    op.create_index("ix_llm_feedback_created_at", "llm_feedback", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_feedback_created_at", table_name="llm_feedback")
    op.drop_index("ix_llm_feedback_request_id", table_name="llm_feedback")
    op.drop_table("llm_feedback")
    with op.batch_alter_table("llm_prompt_label_history") as batch:
        batch.drop_column("split")
    with op.batch_alter_table("llm_prompt_labels") as batch:
        batch.drop_column("split")
