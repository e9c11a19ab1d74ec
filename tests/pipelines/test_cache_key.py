"""The cache key follows what a task's code depends on: module-level values, helper
functions and classes of the project (in other modules too), the versions of the packages
it calls; ``@task(version=...)`` pins it; ``explain_cache`` names what changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loopml.pipelines import run_pipeline
from loopml.pipelines.explain import explain_cache
from loopml.pipelines.fingerprint import fingerprint, value_digest
from loopml.pipelines.refs import load_pipeline
from loopml.workspace import Workspace


def _write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def _fresh(project: Path) -> None:
    """Forget the project's modules, as a new process would (the files changed)."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(str(project)):
            del sys.modules[name]


def _run(ws: Workspace, project: Path) -> dict[str, str]:
    _fresh(project)
    pipe = load_pipeline(str(project / "flow.py") + ":flow")
    result = run_pipeline(pipe, workspace=ws, executor="inline")
    return {node: task.status for node, task in result.tasks.items()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    return folder


FLOW_WITH_CONSTANT = """
    from loopml.pipelines import pipeline, task

    K = {k}
    FEATURES = {features}

    @task
    def load() -> list[int]:
        return [1, 2, 3]

    @task
    def scale(xs: list[int]) -> list[int]:
        return [x * K for x in xs if FEATURES]

    @pipeline
    def flow():
        return scale(load())
"""


@pytest.mark.slow
def test_a_changed_module_constant_reruns_the_task(pws: Workspace, project: Path) -> None:
    _write(project / "flow.py", FLOW_WITH_CONSTANT.format(k=2, features='["a", "b"]'))
    assert _run(pws, project) == {"load": "COMPLETED", "scale": "COMPLETED"}
    assert _run(pws, project) == {"load": "CACHED", "scale": "CACHED"}
    _write(project / "flow.py", FLOW_WITH_CONSTANT.format(k=5, features='["a", "b"]'))
    assert _run(pws, project) == {"load": "CACHED", "scale": "COMPLETED"}
    _write(project / "flow.py", FLOW_WITH_CONSTANT.format(k=5, features='["a", "b", "c"]'))
    statuses = _run(pws, project)
    assert statuses == {"load": "CACHED", "scale": "COMPLETED"}
    last = pws.db  # the newest run explains itself: FEATURES, not K, changed
    from loopml.pipelines import records

    (newest, *_) = records.list_runs(last, pipeline="flow")
    reasons = {e.node: e for e in explain_cache(newest.id, workspace=pws)}
    assert reasons["load"].status == "CACHED" and reasons["load"].reason.startswith("reused")
    assert reasons["scale"].changes == ["global flow.FEATURES changed"]


SAME_MODULE_HELPER = """
    from loopml.pipelines import pipeline, task

    def helper(x):
        return x + {offset}

    @task
    def base() -> int:
        return 1

    @task
    def shifted(x: int) -> int:
        return helper(x)

    @pipeline
    def flow():
        return shifted(base())
"""


@pytest.mark.slow
def test_a_changed_helper_function_in_the_same_module_reruns_the_task(
    pws: Workspace, project: Path
) -> None:
    _write(project / "flow.py", SAME_MODULE_HELPER.format(offset=1))
    assert _run(pws, project) == {"base": "COMPLETED", "shifted": "COMPLETED"}
    assert _run(pws, project) == {"base": "CACHED", "shifted": "CACHED"}
    _write(project / "flow.py", SAME_MODULE_HELPER.format(offset=1000))
    assert _run(pws, project) == {"base": "CACHED", "shifted": "COMPLETED"}
    from loopml.pipelines import records

    (newest, *_) = records.list_runs(pws.db, pipeline="flow")
    reasons = {e.node: e for e in explain_cache(newest.id, workspace=pws)}
    assert reasons["shifted"].changes == ["function flow.helper changed"]


FLOW_WITH_HELPERS = """
    from loopml.pipelines import pipeline, task
    import helpers
    from helpers import Scaler, double

    @task
    def load() -> list[int]:
        return [1, 2, 3]

    @task
    def use_function(xs: list[int]) -> list[int]:
        return [double(x) for x in xs]

    @task
    def use_module(xs: list[int]) -> list[int]:
        return helpers.shift(xs)

    @task
    def use_class(xs: list[int]) -> list[int]:
        return Scaler().apply(xs)

    @pipeline
    def flow():
        xs = load()
        return use_function(xs), use_module(xs), use_class(xs)
"""

HELPERS = """
    def _inner(x):
        return x {inner}

    def double(x):
        return _inner(x) * 2

    def shift(xs):
        return [x + {shift} for x in xs]

    class Scaler:
        def apply(self, xs):
            return [x * {factor} for x in xs]
"""


@pytest.mark.slow
def test_helpers_in_another_module_and_class_methods_are_followed(
    pws: Workspace, project: Path
) -> None:
    _write(project / "flow.py", FLOW_WITH_HELPERS)
    _write(project / "helpers.py", HELPERS.format(inner="+ 0", shift=1, factor=3))
    assert set(_run(pws, project).values()) == {"COMPLETED"}
    assert set(_run(pws, project).values()) == {"CACHED"}
    # A helper of a helper (transitively):
    _write(project / "helpers.py", HELPERS.format(inner="+ 10", shift=1, factor=3))
    assert _run(pws, project) == {
        "load": "CACHED",
        "use_function": "COMPLETED",
        "use_module": "CACHED",
        "use_class": "CACHED",
    }
    # A function reached through the module (helpers.shift):
    _write(project / "helpers.py", HELPERS.format(inner="+ 10", shift=100, factor=3))
    assert _run(pws, project)["use_module"] == "COMPLETED"
    # A class method:
    _write(project / "helpers.py", HELPERS.format(inner="+ 10", shift=100, factor=300))
    statuses = _run(pws, project)
    assert statuses["use_class"] == "COMPLETED"
    assert statuses["use_function"] == statuses["use_module"] == "CACHED"
    from loopml.pipelines import records

    (newest, *_) = records.list_runs(pws.db, pipeline="flow")
    reasons = {e.node: e for e in explain_cache(newest.id, workspace=pws)}
    assert reasons["use_class"].changes == [
        "class helpers.Scaler changed",
        "function helpers.Scaler.apply changed",
    ]


PINNED = """
    from loopml.pipelines import pipeline, task

    K = {k}

    @task(version="{version}")
    def pinned() -> int:
        return K

    @pipeline
    def flow():
        return pinned()
"""


@pytest.mark.slow
def test_a_pinned_version_decides_alone(pws: Workspace, project: Path) -> None:
    _write(project / "flow.py", PINNED.format(k=1, version="1"))
    assert _run(pws, project) == {"pinned": "COMPLETED"}
    _write(project / "flow.py", PINNED.format(k=22, version="1"))
    assert _run(pws, project) == {"pinned": "CACHED"}  # pinned: the change is ignored
    _write(project / "flow.py", PINNED.format(k=22, version="2"))
    assert _run(pws, project) == {"pinned": "COMPLETED"}
    from loopml.pipelines import records

    (newest, *_) = records.list_runs(pws.db, pipeline="flow")
    (reason,) = explain_cache(newest.id, workspace=pws)
    assert reason.changes == ["version changed from 1 to 2"]


def _fake_distribution(site: Path, version: str) -> None:
    """A real installed distribution ``fakestats`` of ``version`` in ``site``."""
    package = site / "fakestats"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    for old in site.glob("fakestats-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    info = site / f"fakestats-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakestats\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakestats\n")
    (info / "RECORD").write_text("fakestats/__init__.py,,\n")


PACKAGE_FLOW = """
    import fakestats
    from loopml.pipelines import pipeline, task

    @task
    def stat() -> float:
        return fakestats.mean([1, 2, 3])

    @pipeline
    def flow():
        return stat()
"""


@pytest.mark.slow
def test_a_new_version_of_a_called_package_reruns_the_task(
    workspace_factory: object, tmp_path: Path, project: Path
) -> None:
    site = tmp_path / "site"
    _write(project / "flow.py", PACKAGE_FLOW)
    Workspace.init(tmp_path / "ws").close()
    env = {**os.environ, "PYTHONPATH": str(site), "LOOPML_WORKSPACE": str(tmp_path / "ws")}

    def run() -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, "-m", "loopml.cli", "pipelines", "run", "flow.py:flow", "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {t["node"]: t["status"] for t in json.loads(out)["tasks"]}

    _fake_distribution(site, "1.0")
    assert run() == {"stat": "COMPLETED"}
    assert run() == {"stat": "CACHED"}
    _fake_distribution(site, "1.1")
    assert run() == {"stat": "COMPLETED"}


@pytest.mark.slow
def test_values_hash_the_same_in_every_process() -> None:
    code = "from loopml.pipelines.fingerprint import value_digest; print(value_digest({'b','a'}))"
    seeds = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    ]
    assert seeds[0] == seeds[1] == value_digest({"a", "b"})


def test_unpicklable_values_and_recursion_are_handled() -> None:
    import threading

    lock = threading.Lock()

    def recursive(n: int) -> int:
        with lock:
            return 0 if n == 0 else recursive(n - 1)

    first, second = fingerprint(recursive), fingerprint(recursive)
    assert first.digest == second.digest
    assert any(label.startswith("closure") for label in first.components)

    class Weird:
        def __reduce__(self) -> Any:
            raise RuntimeError("not picklable")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    weird = Weird()

    def uses_weird() -> int:
        return 1 if weird else 0

    assert fingerprint(uses_weird).digest == fingerprint(uses_weird).digest


SET_TASK = """
    from loopml.pipelines import task

    @task
    def pick(xs: list[str]) -> list[str]:
        return [x for x in xs if x in {"alpha", "beta", "gamma", "delta"}]
"""


@pytest.mark.slow
def test_the_key_is_the_loaded_code_s_and_the_same_in_every_process(project: Path) -> None:
    """A long-lived process (the scheduler) keeps the code it imported: editing the file
    must not change the key of what it runs. And set constants hash in a stable order."""
    _write(project / "sets.py", SET_TASK)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sets; "
        "print(sets.pick.fingerprint().digest)"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code, str(project)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1
    _fresh(project)
    sys.path.insert(0, str(project))
    try:
        import sets  # type: ignore[import-not-found]

        loaded = sets.pick.fingerprint().digest
        assert loaded in digests
        _write(project / "sets.py", SET_TASK.replace('"delta"', '"epsilon"'))
        assert sets.pick.fingerprint().digest == loaded  # still the code that runs here
        _fresh(project)
        import sets as edited  # type: ignore[import-not-found]

        assert edited.pick.fingerprint().digest != loaded
    finally:
        sys.path.remove(str(project))
        _fresh(project)
