"""LLMOps part 3: the prompt registry — versions, labels and the labels' history
(loopml.llm.prompts).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


KEY = 250


def upgrade() -> None:
    op.create_table(
        "llm_prompts",
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("model", sa.String(KEY), nullable=True),
        sa.Column("params", sa.Text, nullable=True),
        sa.Column("output_schema", sa.Text, nullable=True),
        sa.Column("commit_message", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(KEY), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_llm_prompts"),
        sa.UniqueConstraint("name", "digest", name="uq_llm_prompts_name_digest"),
    )
    op.create_table(
        "llm_prompt_labels",
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "label", name="pk_llm_prompt_labels"),
    )
    op.create_table(
        "llm_prompt_label_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(KEY), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("verdict", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_llm_prompt_label_history_name_label",
        "llm_prompt_label_history",
        ["name", "label", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_llm_prompt_label_history_name_label", table_name="llm_prompt_label_history")
    op.drop_table("llm_prompt_label_history")
    op.drop_table("llm_prompt_labels")
    op.drop_table("llm_prompts")
