"""The label a gateway request's prompt was resolved through (``NAME@LABEL``): a prompt A/B
report counts only its label's requests, not those that named a version directly.

NULL: logged before this column (or not made from a prompt); "": the request named the
version itself (``NAME/VERSION``).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_requests") as batch:
        batch.add_column(sa.Column("prompt_label", sa.String(250), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_requests") as batch:
        batch.drop_column("prompt_label")
