"""Monitoring: reference profiles, computed windows and their metrics, alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEY = 250
NAME = 128
HASH = 64


def upgrade() -> None:
    op.create_table(
        "monitor_references",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(KEY), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("sample_hash", sa.String(HASH), nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_monitor_references_model_version"),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(KEY), nullable=False),
        sa.Column("start_at", sa.BigInteger, nullable=False),
        sa.Column("end_at", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(KEY), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("computed_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "deployment",
            "start_at",
            "end_at",
            name="uq_monitor_windows_deployment_start_at_end_at",
        ),
    )
    op.create_table(
        "monitor_metrics",
        sa.Column(
            "window_id",
            sa.Integer,
            sa.ForeignKey(
                "monitor_windows.id",
                ondelete="CASCADE",
                name="fk_monitor_metrics_window_id_monitor_windows",
            ),
            primary_key=True,
        ),
        sa.Column("feature", sa.String(NAME), primary_key=True),
        sa.Column("metric", sa.String(NAME), primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(KEY), nullable=False),
        sa.Column("deployment", sa.String(KEY), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("window_end", sa.BigInteger, nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("resolved_at", sa.BigInteger, nullable=True),
        sa.Column("acked_at", sa.BigInteger, nullable=True),
        sa.Column("acked_by", sa.String(KEY), nullable=True),
    )
    op.create_index("ix_alerts_rule_deployment", "alerts", ["rule", "deployment"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "alert_id",
            sa.Integer,
            sa.ForeignKey(
                "alerts.id", ondelete="CASCADE", name="fk_alert_deliveries_alert_id_alerts"
            ),
            nullable=False,
        ),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("notice", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_status", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alerts_rule_deployment", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("monitor_metrics")
    op.drop_table("monitor_windows")
    op.drop_table("monitor_references")
