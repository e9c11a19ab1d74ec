"""Covering (key, value, run_id) indexes on params and tags, for run search.

Sorting or filtering runs by a param or tag walks these in value order and reads the run ids
from the index itself; they replace the (key, value) and (key) indexes they extend.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each new index is built before the one it extends goes, so search always has one.
    op.create_index("ix_params_key_value_run", "params", ["key", "value", "run_id"])
    op.drop_index("ix_params_key_value", table_name="params")
    op.create_index("ix_tags_key_value_run", "tags", ["key", "value", "run_id"])
    op.drop_index("ix_tags_key", table_name="tags")


def downgrade() -> None:
    op.create_index("ix_tags_key", "tags", ["key"])
    op.drop_index("ix_tags_key_value_run", table_name="tags")
    op.create_index("ix_params_key_value", "params", ["key", "value"])
    op.drop_index("ix_params_key_value_run", table_name="params")
