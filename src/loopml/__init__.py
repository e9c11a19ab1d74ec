"""loopml: one package for the whole loop of operating ML models.

    import loopml
    with loopml.start_run(experiment="churn") as run:
        loopml.log_params({"lr": 0.01})
        loopml.log_metric("loss", 0.42, step=1)

The module-level functions act on the default workspace, found from the current directory
(the nearest ``loopml.toml``) or ``LOOPML_STORE_URL``; the same methods exist on
:class:`Workspace` for explicit use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    from loopml.fluent import (
        active_run,
        approve,
        create_experiment,
        delete_run,
        download_artifacts,
        end_run,
        flush,
        get_experiment,
        get_model_version,
        get_run,
        lineage,
        list_artifacts,
        list_experiments,
        load_model,
        log_artifact,
        log_dict,
        log_input,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_text,
        metric_history,
        promote,
        register_model,
        rename_experiment,
        restore_run,
        rollback,
        search_runs,
        seed_everything,
        set_alias,
        set_tag,
        set_tags,
        start_run,
    )
    from loopml.pipelines import emit_event, run_pipeline, task
    from loopml.pipelines.pipeline import pipeline
    from loopml.registry import GatePolicy, ModelVersion, PythonModel
    from loopml.status import workspace_status as workspace_status
    from loopml.tracking import ArtifactInfo, DatasetRef, Experiment, Run, RunRecord, RunStatus
    from loopml.workspace import Workspace, default_workspace, set_default_workspace

__version__ = "0.1.0"

# Imported on first use, so `import loopml` (and the CLI) start fast.
_LAZY = {
    "ArtifactInfo": "loopml.tracking",
    "DatasetRef": "loopml.tracking",
    "Experiment": "loopml.tracking",
    "Run": "loopml.tracking",
    "RunRecord": "loopml.tracking",
    "RunStatus": "loopml.tracking",
    "Workspace": "loopml.workspace",
    "GatePolicy": "loopml.registry",
    "ModelVersion": "loopml.registry",
    "PythonModel": "loopml.registry",
    "default_workspace": "loopml.workspace",
    "set_default_workspace": "loopml.workspace",
    "emit_event": "loopml.pipelines",
    "pipeline": "loopml.pipelines",
    "run_pipeline": "loopml.pipelines",
    "task": "loopml.pipelines",
    "start_run": "loopml.fluent",
    "end_run": "loopml.fluent",
    "active_run": "loopml.fluent",
    "log_param": "loopml.fluent",
    "log_params": "loopml.fluent",
    "log_metric": "loopml.fluent",
    "log_metrics": "loopml.fluent",
    "set_tag": "loopml.fluent",
    "set_tags": "loopml.fluent",
    "log_artifact": "loopml.fluent",
    "log_text": "loopml.fluent",
    "log_dict": "loopml.fluent",
    "log_input": "loopml.fluent",
    "seed_everything": "loopml.fluent",
    "flush": "loopml.fluent",
    "get_run": "loopml.fluent",
    "metric_history": "loopml.fluent",
    "search_runs": "loopml.fluent",
    "delete_run": "loopml.fluent",
    "restore_run": "loopml.fluent",
    "list_artifacts": "loopml.fluent",
    "download_artifacts": "loopml.fluent",
    "create_experiment": "loopml.fluent",
    "get_experiment": "loopml.fluent",
    "list_experiments": "loopml.fluent",
    "rename_experiment": "loopml.fluent",
    "register_model": "loopml.fluent",
    "load_model": "loopml.fluent",
    "promote": "loopml.fluent",
    "approve": "loopml.fluent",
    "rollback": "loopml.fluent",
    "set_alias": "loopml.fluent",
    "get_model_version": "loopml.fluent",
    "lineage": "loopml.fluent",
    "workspace_status": "loopml.status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def init(path: str = ".") -> Workspace:
    """Create a workspace in ``path`` (``loopml.toml`` + ``.loopml/``) and make it the default."""
    from loopml.workspace import Workspace, set_default_workspace

    ws = Workspace.init(path)
    set_default_workspace(ws)
    return ws


__all__ = [
    "set_alias",
    "rollback",
    "register_model",
    "promote",
    "load_model",
    "lineage",
    "get_model_version",
    "approve",
    "PythonModel",
    "ModelVersion",
    "GatePolicy",
    "ArtifactInfo",
    "DatasetRef",
    "Experiment",
    "LoopmlError",
    "Run",
    "RunRecord",
    "RunStatus",
    "Workspace",
    "__version__",
    "active_run",
    "create_experiment",
    "default_workspace",
    "delete_run",
    "download_artifacts",
    "end_run",
    "flush",
    "get_experiment",
    "get_run",
    "init",
    "list_artifacts",
    "list_experiments",
    "log_artifact",
    "log_dict",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "metric_history",
    "rename_experiment",
    "restore_run",
    "search_runs",
    "seed_everything",
    "set_default_workspace",
    "set_tag",
    "set_tags",
    "start_run",
    "emit_event",
    "pipeline",
    "run_pipeline",
    "task",
]
