"""Data remotes in loopml.toml: added, listed, chosen; the rest of the file kept intact."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import loopml.data
from loopml.config import load_settings
from loopml.data.remotes import pick_remote
from loopml.data.repo import DataRepo
from loopml.exceptions import InvalidConfig, InvalidInput


def test_add_list_default_remove(ws: Path) -> None:
    config = ws / "loopml.toml"
    config.write_text(
        config.read_text()
        + '\n[data]\nlink = ["copy"]  # my comment\n\n[registry]\nmodel_cache_max_models = 3\n'
    )
    before = tomllib.loads(config.read_text())
    first = loopml.data.add_remote("team", "s3://bucket/data")
    assert first.default, "the first remote becomes the default"
    loopml.data.add_remote("nas", "/mnt/nas", options={"auto_mkdir": True})
    remotes = {r.name: r for r in loopml.data.list_remotes()}
    assert remotes["nas"].options == {"auto_mkdir": True} and not remotes["nas"].default
    loopml.data.set_default_remote("nas")
    after = tomllib.loads(config.read_text())
    assert after["data"] == {
        "link": ["copy"],
        "default_remote": "nas",
        "remotes": {"team": "s3://bucket/data", "nas": {"url": "/mnt/nas", "auto_mkdir": True}},
    }
    assert {k: v for k, v in after.items() if k != "data"} == {
        k: v for k, v in before.items() if k != "data"
    }
    assert load_settings(ws).store_url.endswith("loopml.db")
    loopml.data.remove_remote("nas")
    assert [r.name for r in loopml.data.list_remotes()] == ["team"]
    with pytest.raises(InvalidConfig, match="No data remote named 'nas'"):
        loopml.data.remove_remote("nas")


def test_pick_remote(ws: Path) -> None:
    with DataRepo.open() as repo, pytest.raises(InvalidConfig, match="remote add NAME URL"):
        pick_remote(repo, None)
    loopml.data.add_remote("a", "memory://a")
    loopml.data.add_remote("b", "memory://b")
    with DataRepo.open() as repo:
        assert pick_remote(repo, None).name == "a"
        assert pick_remote(repo, "b").url == "memory://b"
        with pytest.raises(InvalidConfig, match=r"configured: a, b"):
            pick_remote(repo, "c")


def test_bad_remote_names(ws: Path) -> None:
    with pytest.raises(InvalidInput, match="Bad remote name"):
        loopml.data.add_remote("has space", "memory://x")
    with pytest.raises(InvalidInput, match="Bad remote URL"):
        loopml.data.add_remote("x", "")


def test_unusual_layout_is_refused(ws: Path) -> None:
    config = ws / "loopml.toml"
    config.write_text("data.link = ['copy']\n" + config.read_text())
    with pytest.raises(InvalidConfig, match="top level"):
        loopml.data.add_remote("a", "memory://a")
