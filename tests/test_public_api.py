"""The curated public surface of ``loopml``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import loopml
from loopml import exceptions


def test_all_names_resolve() -> None:
    for name in loopml.__all__:
        assert getattr(loopml, name) is not None, name


def test_exported_members() -> None:
    assert set(loopml.__all__) == {
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
    }


def test_module_functions_mirror_workspace_methods() -> None:
    """Each forwarding module-level function has the same-named shortcut on Workspace, and
    that shortcut names a real method of one of the workspace's namespaces."""
    from loopml.workspace import Shortcut

    forwarded = 0
    for name in loopml.__all__:
        value = getattr(loopml, name)
        if callable(value) and value.__doc__ and "on the default workspace" in value.__doc__:
            shortcut = getattr(loopml.Workspace, name)
            assert isinstance(shortcut, Shortcut), name
            namespace = getattr(loopml.Workspace, shortcut.namespace)
            assert isinstance(namespace, property), name
            owner = namespace.fget.__annotations__["return"]
            assert shortcut.method in dir(getattr(__import__("loopml.workspace").workspace, owner))
            forwarded += 1
    assert forwarded == 34


def test_import_does_no_io_and_stays_light() -> None:
    code = (
        "import sys, loopml; print(sorted(m for m in ('pandas', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_listing_runs_loads_no_pandas_numpy_or_psutil(tmp_path: Path) -> None:
    """`loopml runs list` starts fast: the workspace, the registry and validation packages
    import pandas, NumPy (the gate) and psutil (environment capture) only when used."""
    from loopml.workspace import Workspace

    with Workspace.init(tmp_path) as ws, ws.start_run("e", log_environment=False) as run:
        run.log_metric("acc", 0.9)
    code = (
        "import sys\n"
        "from loopml.cli.main import main\n"
        "try:\n"
        "    main(['runs', 'list', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('pandas', 'numpy', 'psutil', 'alembic')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stderr.strip().splitlines()[-1] == "[]"
    assert '"acc": 0.9' in out.stdout


def test_every_error_is_a_loopml_error_and_documented() -> None:
    doc = exceptions.__doc__ or ""
    for name in dir(exceptions):
        value = getattr(exceptions, name)
        if isinstance(value, type) and issubclass(value, exceptions.LoopmlError):
            assert name in doc, f"{name} missing from the tree in loopml/exceptions.py"
    assert issubclass(exceptions.InvalidFilter, ValueError)
    assert issubclass(exceptions.RunNotFound, LookupError)
