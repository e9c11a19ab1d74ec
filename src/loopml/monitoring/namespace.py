"""``ws.monitors``: reference profiles, the computed windows of a deployment and their
metrics, notebook drift, and the alerts they raise (:mod:`loopml.monitoring`).

    ws.monitors.set_reference("churn@production", train_df)
    ws.monitors.run("churn")                                   # closed windows not yet computed
    ws.monitors.metrics("churn", metric="psi", feature="tenure")   # the time series
    ws.monitors.drift(train_df, last_week_df)                  # one table, in a notebook
    ws.monitors.alerts(open_only=True); ws.monitors.ack(7)
    ws.monitors.report("churn", "report.html", since="2026-11-24")   # one HTML file
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loopml.namespaces import Namespace

if TYPE_CHECKING:
    import pandas as pd

    from loopml.monitoring.alerts import Alert
    from loopml.monitoring.profile import Reference
    from loopml.monitoring.windows import WindowResult
    from loopml.pipelines.executors import Executor


class Monitors(Namespace):
    """``ws.monitors``: monitoring of one workspace's deployments."""

    def set_reference(
        self,
        model: str,
        data: Any,
        *,
        predictions: Any = None,
        source: str | None = None,
    ) -> Reference:
        """Store the reference profile of ``model`` (``churn@production``, ``churn/4``,
        ``churn``: its latest version) from its training ``data``; replaces an earlier one."""
        from loopml.monitoring.profile import set_reference

        return set_reference(
            model, data, predictions=predictions, source=source, workspace=self.workspace
        )

    def reference(self, model: str) -> Reference | None:
        """The reference profile of ``model`` (``churn/4``, ``churn@production``,
        ``models:/churn/4``), or None."""
        from loopml.monitoring.profile import get_reference

        version = self.workspace.models.get(
            model if model.startswith("models:/") or "://" in model else f"models:/{model}"
        )
        return get_reference(version.name, version.version, workspace=self.workspace)

    def run(
        self,
        deployment: str,
        *,
        window: str | timedelta | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        executor: str | Executor | None = None,
        now: datetime | None = None,
        progress: Callable[..., None] | None = None,
        restart: bool = False,
    ) -> list[WindowResult]:
        """Compute ``deployment``'s closed windows not yet computed (all from ``since``),
        then evaluate the alert rules (:func:`loopml.monitoring.windows.run`). Every window
        of a deployment has one length: ``restart`` deletes the stored windows first, to
        start over with another ``window``."""
        from loopml.monitoring.windows import run

        return run(
            deployment,
            window=window,
            since=since,
            until=until,
            executor=executor,
            now=now,
            progress=progress,
            restart=restart,
            workspace=self.workspace,
        )

    def windows(self, deployment: str, since: datetime | str | None = None) -> list[WindowResult]:
        """The computed windows of ``deployment`` (from ``since``), oldest first."""
        from loopml.monitoring.windows import list_windows

        return list_windows(deployment, since=since, workspace=self.workspace)

    def metrics(
        self,
        deployment: str,
        metric: str | None = None,
        feature: str | None = None,
        since: datetime | str | None = None,
    ) -> pd.DataFrame:
        """The stored metrics as a time series: ``start``, ``end``, ``status``, ``model``,
        ``feature``, ``metric``, ``value`` (see :func:`loopml.monitoring.windows.metric_series`).

        >>> ws.monitors.metrics("churn", metric="p99_ms")[["start", "value"]]  # doctest: +SKIP
        """
        from loopml.monitoring.windows import metric_series

        return metric_series(
            deployment, metric=metric, feature=feature, since=since, workspace=self.workspace
        )

    @staticmethod
    def drift(reference: pd.DataFrame, current: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """Drift of ``current`` against ``reference``, one row per feature, worst first
        (:func:`loopml.monitoring.drift`; no store involved)."""
        from loopml.monitoring.comparison import drift

        return drift(reference, current, **options)

    def alerts(
        self,
        deployment: str | None = None,
        *,
        open_only: bool = False,
        since: datetime | None = None,
    ) -> list[Alert]:
        """Alerts fired, newest first (:func:`loopml.monitoring.alerts.list_alerts`)."""
        from loopml.monitoring.alerts import list_alerts

        return list_alerts(
            deployment=deployment, open_only=open_only, since=since, workspace=self.workspace
        )

    def ack(self, alert_id: int, *, by: str | None = None) -> Alert:
        """Acknowledge alert ``alert_id`` (:func:`loopml.monitoring.alerts.ack`)."""
        from loopml.monitoring.alerts import ack

        return ack(alert_id, by=by, workspace=self.workspace)

    def report(
        self,
        deployment: str,
        path: str | os.PathLike[str] | None = None,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> str:
        """The self-contained HTML monitoring report of ``deployment`` over [``since``,
        ``until``), also written atomically to ``path`` when given
        (:mod:`loopml.monitoring.report`).

        >>> ws.monitors.report("churn", "report.html", since="2026-11-24")  # doctest: +SKIP
        """
        from loopml.monitoring.report import render_report, write_text

        text = render_report(deployment, since=since, until=until, workspace=self.workspace)
        if path is not None:
            write_text(path, text)
        return text
