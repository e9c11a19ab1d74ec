"""Workspace discovery and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

import loopml
from loopml.config import load_settings
from loopml.exceptions import InvalidConfig, WorkspaceNotFound
from loopml.workspace import Workspace


def test_init_creates_files_and_discovery_walks_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path)
    assert (tmp_path / "loopml.toml").is_file()
    assert (tmp_path / ".loopml" / "loopml.db").is_file()
    assert ws.settings.store_url == f"sqlite:///{tmp_path.resolve() / '.loopml' / 'loopml.db'}"
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    found = Workspace.open()
    assert found.root == tmp_path.resolve()
    assert found.settings.artifacts_url == str(tmp_path.resolve() / ".loopml" / "blobs")
    ws.close()
    found.close()


def test_init_keeps_an_existing_config(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text("[tracking]\nflush_interval = 2.5\n")
    ws = Workspace.init(tmp_path)
    assert ws.settings.flush_interval == 2.5
    assert (tmp_path / "loopml.toml").read_text().startswith("[tracking]")
    ws.close()


def test_no_workspace_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFound, match="loopml init"):
        Workspace.open()
    with pytest.raises(WorkspaceNotFound, match="loopml init"):
        Workspace.open(tmp_path / "missing")


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path).close()
    other = tmp_path / "other.db"
    monkeypatch.setenv("LOOPML_STORE_URL", f"sqlite:///{other}")
    monkeypatch.setenv("LOOPML_ARTIFACTS_URL", "memory://elsewhere")
    settings = load_settings(tmp_path)
    assert settings.store_url == f"sqlite:///{other}"
    assert settings.artifacts_url == "memory://elsewhere"
    monkeypatch.chdir(tmp_path.parent)  # no loopml.toml here; the variable suffices
    assert load_settings().store_url == f"sqlite:///{other}"


def test_relative_urls_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text(
        '[store]\nurl = "sqlite:///meta/x.db"\n[artifacts]\nurl = "bytes"\n'
    )
    settings = load_settings(tmp_path)
    assert settings.store_url == f"sqlite:///{tmp_path.resolve() / 'meta' / 'x.db'}"
    assert settings.artifacts_url == str(tmp_path.resolve() / "bytes")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[store\nurl=1", "not valid TOML"),
        ("store = 3\n", r"\[store\] must be a table"),
        ("[tracking]\nflush_interval = -1\n", "positive number"),
    ],
)
def test_bad_config(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "loopml.toml").write_text(content)
    with pytest.raises(InvalidConfig, match=message):
        load_settings(tmp_path)


def test_explicit_urls(tmp_path: Path) -> None:
    ws = Workspace.open(store_url="sqlite://", artifacts_url=str(tmp_path / "b"))
    with ws.start_run(log_environment=False) as run:
        run.log_text("x", "x.txt")
    assert ws.get_run(run.id).status == "FINISHED"
    ws.close()
    with pytest.raises(InvalidConfig, match="artifacts_url"):
        Workspace.open("postgresql+psycopg://u@127.0.0.1/db")


def test_module_init_sets_default(tmp_path: Path) -> None:
    ws = loopml.init(str(tmp_path))
    assert loopml.default_workspace() is ws
    ws.close()
