"""load_model unpacks a package once into a bounded cache keyed by its digest: nothing is left
behind per call, concurrent loads are safe, the least recently used entries go first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.exceptions import InvalidConfig
from loopml.registry.cache import ModelCache
from loopml.workspace import Workspace

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})


def model(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c).fit(X, [0, 0, 1, 1])


@pytest.fixture
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary directory, private to this test, to count what is left there."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _with_registry_settings(ws: Workspace, body: str) -> Workspace:
    toml = ws.root / "loopml.toml"
    toml.write_text(toml.read_text() + "\n[registry]\n" + body)
    ws.close()
    return Workspace.open(ws.root)


@pytest.mark.slow
def test_loading_100_times_leaves_one_cached_folder(
    registry_ws: Workspace, system_tmp: Path
) -> None:
    registry_ws.register_model("m", model())
    before = set(system_tmp.iterdir())
    for _ in range(100):
        loaded = registry_ws.load_model("models:/m/1")
    assert (loaded.predict(X) == [0, 0, 1, 1]).all()
    assert set(system_tmp.iterdir()) == before  # no folder per call in the temp directory
    cache = registry_ws.models.cache
    assert cache.root == registry_ws.root / ".loopml" / "model-cache"
    assert [p.name for p in cache.entries()] == [
        registry_ws.get_model_version("models:/m/1").digest
    ]
    assert [p.name for p in cache.root.iterdir()] == [cache.entries()[0].name]  # no temp left


def test_cached_files_are_read_only_and_a_damaged_entry_is_fetched_again(
    registry_ws: Workspace,
) -> None:
    mv = registry_ws.register_model("m", model())
    registry_ws.load_model(mv.uri)
    (entry,) = registry_ws.models.cache.entries()
    pickled = entry / "model.pkl"
    assert pickled.stat().st_mode & 0o222 == 0
    os.chmod(pickled, 0o644)
    pickled.write_bytes(b"truncated")
    loaded = registry_ws.load_model(mv.uri)  # not the damaged copy: fetched again
    assert (loaded.predict(X) == [0, 0, 1, 1]).all()
    assert pickled.stat().st_size > len(b"truncated")


def test_the_least_recently_used_packages_are_evicted(registry_ws: Workspace) -> None:
    ws = _with_registry_settings(registry_ws, "model_cache_max_models = 2\n")
    try:
        digests = [ws.register_model("m", model(c)).digest for c in (1.0, 0.5, 0.25)]
        assert len(set(digests)) == 3
        ws.load_model("models:/m/1")
        ws.load_model("models:/m/2")
        ws.load_model("models:/m/1")  # 1 is now more recently used than 2
        ws.load_model("models:/m/3")
        assert {p.name for p in ws.models.cache.entries()} == {digests[0], digests[2]}
        assert ws.load_model("models:/m/2") is not None  # evicted: fetched again
        assert len(ws.models.cache.entries()) == 2
    finally:
        ws.close()


def test_a_byte_budget_keeps_at_least_the_model_just_loaded(registry_ws: Workspace) -> None:
    ws = _with_registry_settings(registry_ws, "model_cache_max_bytes = 1\n")
    try:
        ws.register_model("m", model(1.0))
        ws.register_model("m", model(0.5))
        ws.load_model("models:/m/1")
        ws.load_model("models:/m/2")
        (entry,) = ws.models.cache.entries()
        assert entry.name == ws.get_model_version("models:/m/2").digest
        assert ws.models.cache.clear() == 1 and ws.models.cache.entries() == []
    finally:
        ws.close()


@pytest.mark.parametrize(
    "setting",
    [
        "model_cache_max_models = 0",
        "model_cache_max_bytes = '1 GB'",
        "model_cache_max_models = 1.5",
    ],
)
def test_bad_cache_settings_are_config_errors(sqlite_ws: Workspace, setting: str) -> None:
    with pytest.raises(InvalidConfig, match=r"\[registry\] model_cache_max_"):
        _with_registry_settings(sqlite_ws, setting + "\n")  # checked when the file is loaded


def test_a_workspace_of_urls_caches_in_the_temp_directory(
    workspace_factory: Callable[..., Workspace],
    system_tmp: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a folder without .loopml/
    ws = workspace_factory("sqlite-memory")
    ws.register_model("m", model())
    for _ in range(3):
        ws.load_model("models:/m/1")
    root = ws.models.cache.root
    assert root.parent.parent == system_tmp and root.name == "model-cache"
    assert len(ws.models.cache.entries()) == 1
    assert [p.name for p in system_tmp.iterdir()] == [root.parent.name]


def test_stale_temp_folders_are_cleaned(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache")
    stale = cache.root / ".tmp-abandoned"
    stale.mkdir(parents=True)
    (stale / "half.pkl").write_bytes(b"x")
    os.utime(stale, (0, 0))
    fresh = cache.root / ".tmp-in-progress"
    fresh.mkdir()

    def fill(folder: Path) -> list[tuple[str, str, int]]:
        (folder / "f").write_bytes(b"abc")
        return [("f", "d", 3)]

    assert (cache.folder("d" * 64, fill) / "f").read_bytes() == b"abc"
    assert not stale.exists() and fresh.exists()


@pytest.mark.slow
def test_concurrent_loads_of_one_package_in_threads(registry_ws: Workspace) -> None:
    mv = registry_ws.register_model("m", model())
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(5):
                assert (registry_ws.load_model(mv.uri).predict(X) == [0, 0, 1, 1]).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    cache = registry_ws.models.cache
    assert [p.name for p in cache.root.iterdir()] == [mv.digest]


@pytest.mark.slow
def test_concurrent_loads_of_one_package_in_processes(registry_ws: Workspace) -> None:
    mv = registry_ws.register_model("m", model())
    go = registry_ws.root / "go"
    code = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        import loopml
        ws = loopml.Workspace.open(sys.argv[1])
        go = Path(sys.argv[2])
        print("ready", flush=True)
        while not go.exists():  # a barrier: every child starts loading together
            time.sleep(0.005)
        for _ in range(10):
            ws.load_model("models:/m/1")
        ws.close()
        print("ok")
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(registry_ws.root), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outs
    cache = registry_ws.models.cache
    assert [p.name for p in cache.root.iterdir()] == [mv.digest]
