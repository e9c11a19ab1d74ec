"""The registered prompt version a gateway request was made from (loopml.llm.prompts).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_requests") as batch:
        batch.add_column(sa.Column("prompt", sa.String(250), nullable=True))
    op.create_index("ix_llm_requests_prompt", "llm_requests", ["prompt"])


def downgrade() -> None:
    op.drop_index("ix_llm_requests_prompt", table_name="llm_requests")
    with op.batch_alter_table("llm_requests") as batch:
        batch.drop_column("prompt")
