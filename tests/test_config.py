"""Workspace discovery and settings."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest

import loopml
from loopml.config import SchedulerSettings, load_settings, parse_config, url_settings
from loopml.data.links import default_order
from loopml.exceptions import InvalidConfig, WorkspaceNotFound
from loopml.registry.settings import RegistrySettings
from loopml.tracking.settings import TrackingSettings
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


# -- typed sections ------------------------------------------------------------------------


def _config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "loopml.toml").write_text(body)
    return tmp_path / "loopml.toml"


def test_each_area_reads_its_own_typed_section(tmp_path: Path) -> None:
    _config(
        tmp_path,
        "[tracking]\nflush_interval = 2\nflush_max_points = 10\ncapture_environment = false\n"
        '[data]\nlink = ["copy", "hardlink", "copy"]\ndefault_remote = "team"\n'
        '[data.remotes]\nteam = "s3://bucket/x"\nnas = { url = "/mnt/nas", auto_mkdir = true }\n'
        "[registry]\nmodel_cache_max_models = 3\nmodel_cache_max_bytes = 1_000\n"
        '[scheduler]\npipelines = ["flow.py:flow"]\n'
        '[gates.churn]\nmetric = "f1"\n',
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.tracking == TrackingSettings(2.0, 10, False)
    assert isinstance(settings.tracking.flush_interval, float)
    # the flat names of earlier versions still read the same values
    assert (settings.flush_interval, settings.flush_max_points) == (2.0, 10)
    assert settings.capture_environment is False
    assert settings.data.link == ("copy", "hardlink")
    assert settings.data.remotes == {
        "team": {"url": "s3://bucket/x"},
        "nas": {"url": "/mnt/nas", "auto_mkdir": True},
    }
    assert settings.data.default_remote == "team"
    assert settings.registry == RegistrySettings(3, 1000)
    assert settings.scheduler == SchedulerSettings(("flow.py:flow",))
    assert settings.gates == {"churn": {"metric": "f1"}}
    assert settings.config_path == tmp_path / "loopml.toml"
    assert settings.sources["tracking.flush_interval"] == "loopml.toml"
    assert settings.sources.get("registry.model_cache_max_bytes") == "loopml.toml"
    assert "tracking.flush_interval" not in load_settings(_empty(tmp_path), environ={}).sources


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir(exist_ok=True)
    _config(folder, "")
    return folder


def test_defaults_without_a_section(tmp_path: Path) -> None:
    settings = load_settings(_empty(tmp_path), environ={})
    assert settings.tracking == TrackingSettings()
    assert settings.registry == RegistrySettings()
    assert settings.data.link == default_order()
    assert settings.data.remotes == {} and settings.data.default_remote is None
    assert settings.gates == {}
    keys = [key for key, _, _ in settings.effective()]
    assert keys[:3] == ["store.url", "artifacts.url", "tracking.flush_interval"]
    assert {source for _, _, source in settings.effective()} == {"default"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[data]\nlink = ["hardlnk"]\n',
            r"loopml.toml \[data\] link: unknown link strategy 'hardlnk'; choose from reflink, "
            "hardlink, copy",
        ),
        (
            "[tracking]\nflush_intervl = 2\n",
            r"loopml.toml \[tracking\]: unknown key 'flush_intervl'; did you mean "
            r"'flush_interval'\? Valid: flush_interval, flush_max_points, capture_environment",
        ),
        ("[registry]\nsize = 2\n", r"\[registry\]: unknown key 'size'\. Valid: model_cache_max"),
        (
            "[trackng]\nflush_interval = 2\n",
            r"loopml.toml: unknown table \[trackng\]; did you mean \[tracking\]\? Valid: "
            r"\[store\], .*\[gates.NAME\]",
        ),
        ("[xyz]\nx = 1\n", r"unknown table \[xyz\]\. Valid"),
        ("verbose = true\n", r"unknown table \[verbose\]"),
        ("[gates]\nchurn = 1\n", r"\[gates\] must hold named tables \(\[gates.churn\]"),
        (
            "[tracking]\ncapture_environment = 1\n",
            r"\[tracking\] capture_environment must be true or false, got 1",
        ),
        ("[tracking]\nflush_interval = nan\n", r"flush_interval must be a positive number"),
        ("[tracking]\nflush_interval = true\n", r"flush_interval must be a positive number"),
        (
            "[tracking]\nflush_max_points = 1.5\n",
            r"flush_max_points must be a whole number, at least 1, got 1.5",
        ),
        ("[scheduler]\npipelines = 3\n", r"\[scheduler\] pipelines must be a list of strings"),
        ("[store]\nurl = 3\n", r"\[store\] url must be a string, got 3"),
        ('[artifacts]\nurl = ""\n', r"\[artifacts\] url must not be empty"),
        ("[data]\nremotes = 3\n", r"\[data\] remotes must be a table of remotes"),
        ("[data.remotes]\nx = { path = 1 }\n", r"x must be a URL or a table with a url"),
        (
            '[data]\ndefault_remote = "team"\n[data.remotes]\nnas = "/mnt"\n',
            r"\[data\] default_remote: 'team' is not a configured remote \(configured: nas\)",
        ),
    ],
)
def test_bad_values_name_the_file_the_table_and_the_key(
    tmp_path: Path, content: str, message: str
) -> None:
    path = _config(tmp_path, content)
    with pytest.raises(InvalidConfig, match=message) as info:
        load_settings(tmp_path, environ={})
    assert str(info.value).startswith(str(path))


def test_environment_overrides_every_scalar_key(tmp_path: Path) -> None:
    _config(tmp_path, '[tracking]\nflush_interval = 2.0\n[data.remotes]\nnas = "/mnt"\n')
    env = {
        "LOOPML_TRACKING_FLUSH_INTERVAL": "0.5",
        "LOOPML_TRACKING_FLUSH_MAX_POINTS": "1_000",
        "LOOPML_TRACKING_CAPTURE_ENVIRONMENT": "off",
        "LOOPML_DATA_LINK": "copy, hardlink",
        "LOOPML_DATA_DEFAULT_REMOTE": "nas",
        "LOOPML_REGISTRY_MODEL_CACHE_MAX_MODELS": "3",
        "LOOPML_SCHEDULER_PIPELINES": "a.py:x,b.py:y",
        "LOOPML_REGISTRY_MODEL_CACHE_MAX_BYTES": "",  # empty: not set
    }
    settings = load_settings(tmp_path, environ=env)
    assert settings.tracking == TrackingSettings(0.5, 1000, False)
    assert settings.data.link == ("copy", "hardlink")
    assert settings.data.default_remote == "nas"
    assert settings.registry == RegistrySettings(model_cache_max_models=3)
    assert settings.scheduler.pipelines == ("a.py:x", "b.py:y")
    assert settings.sources["tracking.flush_interval"] == "LOOPML_TRACKING_FLUSH_INTERVAL"
    assert settings.sources["data.link"] == "LOOPML_DATA_LINK"
    assert "registry.model_cache_max_bytes" not in settings.sources


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOOPML_TRACKING_FLUSH_INTERVAL", "fast", "must be a positive number of seconds"),
        ("LOOPML_TRACKING_FLUSH_INTERVAL", "0", "must be a positive number of seconds"),
        ("LOOPML_TRACKING_FLUSH_MAX_POINTS", "1e3", "must be a whole number, at least 1"),
        ("LOOPML_TRACKING_CAPTURE_ENVIRONMENT", "maybe", "must be true or false"),
        ("LOOPML_DATA_LINK", "copy,symlink", "unknown link strategy 'symlink'"),
        ("LOOPML_DATA_DEFAULT_REMOTE", "team", "'team' is not a configured remote"),
        ("LOOPML_FLUSH_INTERVAL", "-1", "must be a positive number of seconds"),
    ],
)
def test_a_bad_variable_is_named(tmp_path: Path, variable: str, value: str, message: str) -> None:
    _config(tmp_path, "")
    with (
        pytest.raises(InvalidConfig, match=f"^{variable}:? {message}") as info,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", FutureWarning)
        load_settings(tmp_path, environ={variable: value})
    if "number" in message:
        assert str(info.value).endswith(f", got {value!r}")  # the text as it was set


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "LOOPML_TRACKING_FLUSH_INTERVL",
            "LOOPML_TRACKING_FLUSH_INTERVL is not a loopml setting; did you mean "
            "LOOPML_TRACKING_FLUSH_INTERVAL?",
        ),
        ("LOOPML_REGISTRY_SIZE", r"LOOPML_REGISTRY_SIZE is not a loopml setting\. "),
        (
            "LOOPML_DATA_REMOTES",
            r"LOOPML_DATA_REMOTES: \[data\] remotes is a table and can't be set from a variable",
        ),
    ],
)
def test_a_mistyped_variable_of_a_known_section_is_an_error(
    tmp_path: Path, variable: str, message: str
) -> None:
    _config(tmp_path, "")
    with pytest.raises(InvalidConfig, match=f"^{message}"):
        load_settings(tmp_path, environ={variable: "x"})
    others = {"LOOPML_EXPERIMENT": "x", "LOOPML_TEST_POSTGRES_URL": "x", "LOOPML_CI_DIR": "x"}
    assert load_settings(tmp_path, environ=others).flush_interval == 1.0  # not settings


def test_the_old_flush_interval_variable_still_works(tmp_path: Path) -> None:
    _config(tmp_path, "[tracking]\nflush_interval = 2.0\n")
    with pytest.warns(FutureWarning, match="set LOOPML_TRACKING_FLUSH_INTERVAL instead"):
        settings = load_settings(tmp_path, environ={"LOOPML_FLUSH_INTERVAL": "0.25"})
    assert settings.flush_interval == 0.25
    assert settings.sources["tracking.flush_interval"] == "LOOPML_FLUSH_INTERVAL"
    both = {"LOOPML_FLUSH_INTERVAL": "0.25", "LOOPML_TRACKING_FLUSH_INTERVAL": "0.5"}
    assert load_settings(tmp_path, environ=both).flush_interval == 0.5  # the new name wins


def test_arguments_beat_variables_beat_the_file(tmp_path: Path) -> None:
    _config(tmp_path, '[store]\nurl = "sqlite:///a.db"\n[artifacts]\nurl = "blobs"\n')
    env = {"LOOPML_STORE_URL": "sqlite:///b.db", "LOOPML_ARTIFACTS_URL": "memory://env"}
    settings = load_settings(tmp_path, environ=env)
    assert settings.store_url == f"sqlite:///{tmp_path.resolve() / 'b.db'}"
    assert settings.sources["store.url"] == "LOOPML_STORE_URL"
    settings = load_settings(tmp_path, store_url="sqlite:///c.db", environ=env)
    assert settings.store_url == f"sqlite:///{tmp_path.resolve() / 'c.db'}"
    assert settings.sources["store.url"] == "argument"
    assert settings.sources["artifacts.url"] == "LOOPML_ARTIFACTS_URL"


def test_with_overrides_takes_the_flat_names_checked(tmp_path: Path) -> None:
    settings = load_settings(_empty(tmp_path), environ={})
    fast = settings.with_overrides(flush_interval=0.2, store_url=None)
    assert fast.tracking == replace(settings.tracking, flush_interval=0.2)
    assert fast.sources["tracking.flush_interval"] == "argument"
    assert fast.store_url == settings.store_url and settings.flush_interval == 1.0
    moved = settings.with_overrides(artifacts_url="memory://x")
    assert moved.artifacts_url == "memory://x" and moved.sources["artifacts.url"] == "argument"
    with pytest.raises(InvalidConfig, match="flush_interval= must be a positive number"):
        settings.with_overrides(flush_interval=0)
    with pytest.raises(InvalidConfig, match="Unknown setting 'flush_intervl'; did you mean"):
        settings.with_overrides(flush_intervl=2)


def test_one_scheduled_pipeline_may_be_a_string(tmp_path: Path) -> None:
    _config(tmp_path, '[scheduler]\npipelines = "flow.py:flow"\n')
    assert load_settings(tmp_path, environ={}).scheduler.pipelines == ("flow.py:flow",)


def test_the_old_extra_dict_still_reads(tmp_path: Path) -> None:
    _config(tmp_path, '[scheduler]\npipelines = ["f.py:p"]\n[gates.g]\nmetric = "f1"\n')
    extra = load_settings(tmp_path, environ={}).extra
    assert extra["scheduler"] == {"pipelines": ["f.py:p"]}
    assert extra["gates"] == {"g": {"metric": "f1"}}
    assert extra["registry"] == {"model_cache_max_models": 16, "model_cache_max_bytes": 4 * 10**9}


def test_url_settings_take_variables_too(tmp_path: Path) -> None:
    env = {"LOOPML_TRACKING_FLUSH_INTERVAL": "0.5", "LOOPML_ARTIFACTS_URL": "memory://a"}
    settings = url_settings("postgresql+psycopg://u@h/db", environ=env)
    assert settings.flush_interval == 0.5 and settings.artifacts_url == "memory://a"
    assert settings.sources["store.url"] == "argument" and settings.config_path is None
    with pytest.raises(InvalidConfig, match="needs artifacts_url= too"):
        url_settings("postgresql+psycopg://u@h/db", environ={})


def test_parse_config_checks_new_content(tmp_path: Path) -> None:
    path = _config(tmp_path, "")
    assert parse_config("[tracking]\nflush_interval = 3\n", path).flush_interval == 3.0
    with pytest.raises(InvalidConfig, match="would not be valid TOML"):
        parse_config("[tracking", path)
    with pytest.raises(InvalidConfig, match=r"unknown table \[nope\]"):
        parse_config("[nope]\n", path)
