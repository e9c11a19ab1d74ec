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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    from loopml.pipelines import emit_event, pipeline, run_pipeline, task
    from loopml.registry import GatePolicy, ModelVersion, PythonModel
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
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def _forward(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        from loopml.workspace import default_workspace

        return getattr(default_workspace(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``Workspace.{name}`` on the default workspace (see :class:`loopml.Workspace`)."
    return call


start_run = _forward("start_run")
end_run = _forward("end_run")
active_run = _forward("active_run")
log_param = _forward("log_param")
log_params = _forward("log_params")
log_metric = _forward("log_metric")
log_metrics = _forward("log_metrics")
set_tag = _forward("set_tag")
set_tags = _forward("set_tags")
log_artifact = _forward("log_artifact")
log_text = _forward("log_text")
log_dict = _forward("log_dict")
log_input = _forward("log_input")
seed_everything = _forward("seed_everything")
flush = _forward("flush")
get_run = _forward("get_run")
metric_history = _forward("metric_history")
search_runs = _forward("search_runs")
delete_run = _forward("delete_run")
restore_run = _forward("restore_run")
list_artifacts = _forward("list_artifacts")
download_artifacts = _forward("download_artifacts")
create_experiment = _forward("create_experiment")
get_experiment = _forward("get_experiment")
list_experiments = _forward("list_experiments")
rename_experiment = _forward("rename_experiment")
register_model = _forward("register_model")
load_model = _forward("load_model")
promote = _forward("promote")
approve = _forward("approve")
rollback = _forward("rollback")
set_alias = _forward("set_alias")
get_model_version = _forward("get_model_version")
lineage = _forward("lineage")


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
