"""RAG index registry: index versions and the manifest of the corpus each was built from
(loopml.llm.rag).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


KEY = 250


def upgrade() -> None:
    op.create_table(
        "llm_rag_indexes",
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("root", sa.Text, nullable=False),
        sa.Column("corpus", sa.String(64), nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(KEY), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_llm_rag_indexes"),
    )
    op.create_table(
        "llm_rag_documents",
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", "path", name="pk_llm_rag_documents"),
    )


def downgrade() -> None:
    op.drop_table("llm_rag_documents")
    op.drop_table("llm_rag_indexes")
