"""Where the loop stands, at a glance: ``loopml status``, ``ws.status()`` and the web UI's
``/status`` page.

    status = loopml.workspace_status()          # or ws.status(model="churn")
    status.models[0].production, status.models[0].windows[0].verdict
    status.maturity.level, status.maturity.missing

Per registered model: the Production version and since when, its deployments (strategy,
canary step, traffic split), the latest monitoring window's verdict and open alerts, what
retrains it and what guards its promotion, and the data versions added since its last
training run; then the pipelines (triggers, next scheduled time, running runs, the last
failure), LLM spend against budgets, and the grade against the maturity levels
(:mod:`loopml.status.maturity`, which defines the evidence for each level). Everything is
read from the metadata store and the settings: no model is loaded, no log scanned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.status.collect import workspace_status
    from loopml.status.maturity import grade, grade_workspace
    from loopml.status.records import (
        AlertStatus,
        BudgetStatus,
        DataChange,
        DeploymentStatus,
        LlmStatus,
        Maturity,
        ModelStatus,
        PipelineStatus,
        TrainingRun,
        WindowStatus,
        WorkspaceStatus,
    )

_LAZY = {
    "workspace_status": "loopml.status.collect",
    "grade": "loopml.status.maturity",
    "grade_workspace": "loopml.status.maturity",
    **{
        name: "loopml.status.records"
        for name in (
            "AlertStatus",
            "BudgetStatus",
            "DataChange",
            "DeploymentStatus",
            "LlmStatus",
            "Maturity",
            "ModelStatus",
            "PipelineStatus",
            "TrainingRun",
            "WindowStatus",
            "WorkspaceStatus",
        )
    },
}

__all__ = [
    "AlertStatus",
    "BudgetStatus",
    "DataChange",
    "DeploymentStatus",
    "LlmStatus",
    "Maturity",
    "ModelStatus",
    "PipelineStatus",
    "TrainingRun",
    "WindowStatus",
    "WorkspaceStatus",
    "grade",
    "grade_workspace",
    "workspace_status",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
