"""Monitoring's tables: frozen reference profiles, computed windows and their metrics, alerts.

- ``monitor_references``: one reference profile per model version (its frozen bins,
  category frequencies, null rates, ranges; the bounded sample for two-sample tests lives in
  the blob store under ``sample_hash``).
- ``monitor_windows``: one row per computed (deployment, window); rerunning a window replaces
  its row and its metrics in one transaction.
- ``monitor_metrics``: the time series, one value per (window, feature, metric). ``feature``
  is ``""`` for a metric of the whole window (``error_rate``, ``accuracy``, ``p99_ms``),
  ``"__prediction__"`` for prediction drift.
- ``alerts``: one row per firing of a rule, open until its condition clears
  (``resolved_at``) and acknowledged by a person (``acked_at``).
- ``alert_deliveries``: one row per (alert, channel, kind of notice); undelivered rows are
  retried on the next run, so a notice is never lost.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from loopml.store.tables import KEY, metadata

NAME = 128  # a feature or metric name
HASH = 64  # a blob hash

monitor_references = Table(
    "monitor_references",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(KEY), nullable=False),
    Column("version", Integer, nullable=False),
    Column("profile", Text, nullable=False),  # JSON, see loopml.monitoring.profile
    Column("sample_hash", String(HASH), nullable=True),  # Parquet sample in the blob store
    Column("rows", BigInteger, nullable=False),
    Column("source", Text, nullable=True),  # where the reference data came from
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("model", "version", name="uq_monitor_references_model_version"),
)

monitor_windows = Table(
    "monitor_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(KEY), nullable=False),
    Column("start_at", BigInteger, nullable=False),
    Column("end_at", BigInteger, nullable=False),
    Column("model", String(KEY), nullable=True),  # model version the reference came from
    Column("version", Integer, nullable=True),
    Column("rows", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # "ok" | "empty"
    Column("summary", Text, nullable=True),  # JSON: histograms and counts for reports
    Column("computed_at", BigInteger, nullable=False),
    UniqueConstraint(
        "deployment", "start_at", "end_at", name="uq_monitor_windows_deployment_start_at_end_at"
    ),
)

monitor_metrics = Table(
    "monitor_metrics",
    metadata,
    Column(
        "window_id",
        Integer,
        ForeignKey("monitor_windows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("feature", String(NAME), primary_key=True),
    Column("metric", String(NAME), primary_key=True),
    Column("value", Float, nullable=True),  # NULL is NaN (SQLite cannot hold NaN)
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(KEY), nullable=False),
    Column("deployment", String(KEY), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("condition", Text, nullable=False),
    Column("value", Float, nullable=True),
    Column("message", Text, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("fired_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger, nullable=True),
    Column("acked_at", BigInteger, nullable=True),
    Column("acked_by", String(KEY), nullable=True),
    Index("ix_alerts_rule_deployment", "rule", "deployment"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", Text, nullable=False),
    Column("notice", String(16), nullable=False),  # "fired" | "resolved"
    Column("status", String(16), nullable=False),  # "pending" | "delivered" | "undelivered"
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_alert_deliveries_status", "status"),
)
