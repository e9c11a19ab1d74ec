"""The LLM gateway: virtual keys, shared limit counters, the request log and trace spans
(loopml.llm).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


KEY = 250
ID = 32


def upgrade() -> None:
    op.create_table(
        "llm_keys",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(KEY), nullable=True),
        sa.Column("team", sa.String(KEY), nullable=True),
        sa.Column("models", sa.Text, nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("budget_usd", sa.Float, nullable=True),
        sa.Column("budget_period", sa.String(8), nullable=True),
        sa.Column("max_request_cost_usd", sa.Float, nullable=True),
        sa.Column("log_content", sa.String(8), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_llm_keys_key_hash"),
    )
    op.create_index("ix_llm_keys_team", "llm_keys", ["team"])

    op.create_table(
        "llm_counters",
        sa.Column("scope", sa.String(KEY + 40), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("scope", "bucket", name="pk_llm_counters"),
    )
    op.create_index("ix_llm_counters_expires_at", "llm_counters", ["expires_at"])

    op.create_table(
        "llm_requests",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(ID), nullable=True),
        sa.Column("team", sa.String(KEY), nullable=True),
        sa.Column("user", sa.String(KEY), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("model_requested", sa.String(KEY), nullable=False),
        sa.Column("model_used", sa.String(KEY), nullable=True),
        sa.Column("deployment", sa.String(KEY), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("route_reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Text, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_read_tokens", sa.Integer, nullable=False),
        sa.Column("cached_write_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("trace_id", sa.String(ID), nullable=True),
        sa.Column("request", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
    )
    op.create_index("ix_llm_requests_created_at", "llm_requests", ["created_at"])
    op.create_index("ix_llm_requests_key_id_created_at", "llm_requests", ["key_id", "created_at"])
    op.create_index("ix_llm_requests_team_created_at", "llm_requests", ["team", "created_at"])
    op.create_index("ix_llm_requests_trace_id", "llm_requests", ["trace_id"])

    op.create_table(
        "llm_spans",
        sa.Column("trace_id", sa.String(ID), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(16), nullable=True),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attributes", sa.Text, nullable=True),
        sa.Column("request_id", sa.String(ID), nullable=True),
        sa.PrimaryKeyConstraint("trace_id", "span_id", name="pk_llm_spans"),
    )
    op.create_index("ix_llm_spans_start_us", "llm_spans", ["start_us"])
    op.create_index("ix_llm_spans_request_id", "llm_spans", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_llm_spans_request_id", table_name="llm_spans")
    op.drop_index("ix_llm_spans_start_us", table_name="llm_spans")
    op.drop_table("llm_spans")
    for name in (
        "ix_llm_requests_trace_id",
        "ix_llm_requests_team_created_at",
        "ix_llm_requests_key_id_created_at",
        "ix_llm_requests_created_at",
    ):
        op.drop_index(name, table_name="llm_requests")
    op.drop_table("llm_requests")
    op.drop_index("ix_llm_counters_expires_at", table_name="llm_counters")
    op.drop_table("llm_counters")
    op.drop_index("ix_llm_keys_team", table_name="llm_keys")
    op.drop_table("llm_keys")
