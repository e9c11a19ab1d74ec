"""The buffered metric writer refuses a bad point alone: the others are written."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from loopml.exceptions import StoreUnavailable
from loopml.tracking.runs import now_ms
from loopml.workspace import Workspace


def test_points_the_store_cannot_hold_are_rejected_alone(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    ws.settings = ws.settings.with_overrides(flush_interval=3600.0)  # flushed by hand below
    run = ws.start_run(log_environment=False)
    run.log_metric("loss", 0.5, step=1)
    writer = ws.runs._writer()
    # Points that never went through log_metric's checks, between good ones.
    writer.add((run.id, "loss", 0.4, 2**63, now_ms()))  # step past BIGINT
    writer.add((run.id, "loss", 0.41, 5, 10**30))  # timestamp past BIGINT
    writer.add((run.id, "acc", 0.7, 0, now_ms()))
    writer.add(("no-such-run", "loss", 0.1, 0, now_ms()))  # refused by the database itself
    run.log_metric("loss", 0.3, step=3)
    with caplog.at_level(logging.WARNING, logger="loopml.tracking.writer"):
        assert writer.flush() == 3
    assert writer.pending() == 0 and writer.rejected == 3
    assert "3 metric point(s) rejected, the others were kept" in caplog.text
    assert ws.metric_history(run.id, "loss")["value"].tolist() == [0.5, 0.3]
    run.end()
    record = ws.get_run(run.id)
    assert record.status == "FINISHED"
    assert record.metrics == {"acc": 0.7, "loss": 0.3}
    assert record.tags["loopml.rejected_metrics"] == "2"
    assert "'loss' at step 5" in record.tags["loopml.rejected_metrics.last"]


def test_rejections_add_up_on_the_run(ws: Workspace) -> None:
    ws.settings = ws.settings.with_overrides(flush_interval=3600.0)
    with ws.start_run(log_environment=False) as run:
        writer = ws.runs._writer()
        for step in (2**63, 2**64):
            writer.add((run.id, "loss", 0.4, step, now_ms()))
            writer.flush()
    assert ws.get_run(run.id).tags["loopml.rejected_metrics"] == "2"


def test_a_store_failure_keeps_every_point(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.settings = ws.settings.with_overrides(flush_interval=3600.0)
    run = ws.start_run(log_environment=False)
    writer = ws.runs._writer()
    writer.add((run.id, "loss", 0.4, 2**63, now_ms()))
    run.log_metric("loss", 0.5)
    # A real store failure, not a refused point: the table is gone for a moment.
    ws.db.transact(lambda conn: conn.execute(text("ALTER TABLE metrics RENAME TO away")))
    with pytest.raises(StoreUnavailable, match="no such table"):
        writer.flush()
    assert writer.pending() == 1  # the good point waits; the bad one was refused
    ws.db.transact(lambda conn: conn.execute(text("ALTER TABLE away RENAME TO metrics")))
    run.end()
    assert ws.get_run(run.id).metrics == {"loss": 0.5}
