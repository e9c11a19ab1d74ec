"""The module-level functions (``loopml.start_run``, ``loopml.log_metric``, ...): each calls
the same-named :class:`~loopml.workspace.Shortcut` of the default workspace, so it has that
namespace method's exact signature, and mypy checks calls to it."""

from __future__ import annotations

from loopml.workspace import Workspace, forward

start_run = forward(Workspace.start_run)
end_run = forward(Workspace.end_run)
active_run = forward(Workspace.active_run)
log_param = forward(Workspace.log_param)
log_params = forward(Workspace.log_params)
log_metric = forward(Workspace.log_metric)
log_metrics = forward(Workspace.log_metrics)
set_tag = forward(Workspace.set_tag)
set_tags = forward(Workspace.set_tags)
log_artifact = forward(Workspace.log_artifact)
log_text = forward(Workspace.log_text)
log_dict = forward(Workspace.log_dict)
log_input = forward(Workspace.log_input)
seed_everything = forward(Workspace.seed_everything)
flush = forward(Workspace.flush)
get_run = forward(Workspace.get_run)
metric_history = forward(Workspace.metric_history)
search_runs = forward(Workspace.search_runs)
delete_run = forward(Workspace.delete_run)
restore_run = forward(Workspace.restore_run)
list_artifacts = forward(Workspace.list_artifacts)
download_artifacts = forward(Workspace.download_artifacts)
create_experiment = forward(Workspace.create_experiment)
get_experiment = forward(Workspace.get_experiment)
list_experiments = forward(Workspace.list_experiments)
rename_experiment = forward(Workspace.rename_experiment)
register_model = forward(Workspace.register_model)
load_model = forward(Workspace.load_model)
promote = forward(Workspace.promote)
approve = forward(Workspace.approve)
rollback = forward(Workspace.rollback)
set_alias = forward(Workspace.set_alias)
get_model_version = forward(Workspace.get_model_version)
lineage = forward(Workspace.lineage)

__all__ = [
    "start_run",
    "end_run",
    "active_run",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "set_tag",
    "set_tags",
    "log_artifact",
    "log_text",
    "log_dict",
    "log_input",
    "seed_everything",
    "flush",
    "get_run",
    "metric_history",
    "search_runs",
    "delete_run",
    "restore_run",
    "list_artifacts",
    "download_artifacts",
    "create_experiment",
    "get_experiment",
    "list_experiments",
    "rename_experiment",
    "register_model",
    "load_model",
    "promote",
    "approve",
    "rollback",
    "set_alias",
    "get_model_version",
    "lineage",
]
