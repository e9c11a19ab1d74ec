"""Monitoring: drift against frozen reference profiles, data quality, delayed-label
performance, operational metrics, alert rules and HTML reports (``ws.monitors``).

    loopml.monitoring.drift(train_df, current_df)       # a drift table, in a notebook
    ref = loopml.monitoring.set_reference("churn@production", "data/train.parquet", workspace=ws)
    loopml.monitoring.compare(ref, current_df)          # [FeatureDrift, ...]

Names are imported on first use, so ``import loopml`` does not load NumPy or SciPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.monitoring.alerts import Alert, AlertRule, ack, evaluate, list_alerts
    from loopml.monitoring.comparison import FeatureDrift, compare, drift
    from loopml.monitoring.namespace import Monitors
    from loopml.monitoring.profile import (
        FeatureProfile,
        Profile,
        Reference,
        build_profile,
        get_reference,
        set_reference,
    )
    from loopml.monitoring.report import render_report, write_report
    from loopml.monitoring.windows import run

_LAZY = {
    "Alert": "loopml.monitoring.alerts",
    "AlertRule": "loopml.monitoring.alerts",
    "Monitors": "loopml.monitoring.namespace",
    "ack": "loopml.monitoring.alerts",
    "evaluate": "loopml.monitoring.alerts",
    "list_alerts": "loopml.monitoring.alerts",
    "render_report": "loopml.monitoring.report",
    "run": "loopml.monitoring.windows",
    "write_report": "loopml.monitoring.report",
    "FeatureDrift": "loopml.monitoring.comparison",
    "FeatureProfile": "loopml.monitoring.profile",
    "Profile": "loopml.monitoring.profile",
    "Reference": "loopml.monitoring.profile",
    "build_profile": "loopml.monitoring.profile",
    "compare": "loopml.monitoring.comparison",
    "drift": "loopml.monitoring.comparison",
    "get_reference": "loopml.monitoring.profile",
    "set_reference": "loopml.monitoring.profile",
}

__all__ = [
    "Alert",
    "AlertRule",
    "Monitors",
    "ack",
    "evaluate",
    "list_alerts",
    "render_report",
    "run",
    "write_report",
    "FeatureDrift",
    "FeatureProfile",
    "Profile",
    "Reference",
    "build_profile",
    "compare",
    "drift",
    "get_reference",
    "set_reference",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
