"""``loopml config show``, and ``loopml data remote add`` keeping loopml.toml as written."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from loopml.config import write_default_config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with loopml.toml (and no metadata store yet), the current directory."""
    folder = tmp_path / "project"
    write_default_config(folder)
    monkeypatch.chdir(folder)
    return folder


def _shown(invoke: Callable[..., Result], *args: str) -> dict[str, dict[str, object]]:
    """The settings ``loopml ARGS --json`` shows (ARGS default: ``config show``)."""
    result = invoke(*(args if "config" in args else (*args, "config", "show")), "--json")
    assert result.exit_code == 0, result.output
    shown: dict[str, dict[str, object]] = json.loads(result.stdout)["settings"]
    return shown


def test_show_says_where_each_value_came_from(
    project: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project / "loopml.toml"
    config.write_text(config.read_text() + "\n[registry]\nmodel_cache_max_models = 4\n")
    monkeypatch.setenv("LOOPML_DATA_LINK", "copy")
    shown = _shown(invoke)
    assert shown["registry.model_cache_max_models"] == {"value": 4, "source": "loopml.toml"}
    assert shown["tracking.flush_interval"] == {"value": 1.0, "source": "loopml.toml"}
    assert shown["tracking.flush_max_points"] == {"value": 50000, "source": "default"}
    assert shown["data.link"] == {"value": ["copy"], "source": "LOOPML_DATA_LINK"}
    assert shown["store.url"] == {
        "value": f"sqlite:///{project.resolve() / '.loopml' / 'loopml.db'}",
        "source": "loopml.toml",
    }
    result = invoke("config", "show")
    assert result.exit_code == 0, result.output
    assert f"Workspace {project.resolve()} ({project.resolve() / 'loopml.toml'})" in result.stdout
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[4:]}
    assert lines["data.link"] == ['["copy"]', "LOOPML_DATA_LINK"]
    assert lines["data.default_remote"] == ["(none)", "default"]
    assert lines["tracking.capture_environment"] == ["true", "default"]


def test_show_one_section_or_one_key(project: Path, invoke: Callable[..., Result]) -> None:
    assert list(_shown(invoke, "config", "show", "registry")) == [
        "registry.model_cache_max_models",
        "registry.model_cache_max_bytes",
    ]
    result = invoke("config", "show", "tracking.flush_interval", "--json")
    assert json.loads(result.stdout)["settings"] == {
        "tracking.flush_interval": {"value": 1.0, "source": "loopml.toml"}
    }
    result = invoke("config", "show", "trackin")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: No setting 'trackin'; did you mean 'tracking'?")


def test_show_masks_secrets(
    project: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_MONITOR_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("LOOPML_SERVING_API_KEYS", "key-one,key-two")
    shown = _shown(invoke)
    assert shown["monitor.smtp_password"]["value"] == "***"
    assert shown["serving.api_keys"]["value"] == ["***", "***"]
    table = invoke("config", "show").stdout
    assert "hunter2" not in table and "key-one" not in table
    assert (
        _shown(invoke, "config", "show", "monitor.smtp_host")["monitor.smtp_host"]["value"] is None
    )


def test_show_never_creates_the_metadata_store(
    project: Path, invoke: Callable[..., Result]
) -> None:
    assert _shown(invoke)["artifacts.url"]["value"] == str(project.resolve() / ".loopml/blobs")
    assert not (project / ".loopml" / "loopml.db").exists()
    assert not (project / ".loopml" / "blobs").exists()


def test_show_of_a_store_url_given_as_the_workspace(
    tmp_path: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_ARTIFACTS_URL", "memory://shared")
    shown = _shown(invoke, "-w", "postgresql+psycopg://u@127.0.0.1:1/none")
    assert shown["store.url"] == {
        "value": "postgresql+psycopg://u@127.0.0.1:1/none",
        "source": "argument",
    }
    assert shown["artifacts.url"] == {"value": "memory://shared", "source": "LOOPML_ARTIFACTS_URL"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[registry]\nmodel_cache_max_models = 0\n", "[registry] model_cache_max_models must"),
        ("[registry]\nmodel_cache_max_model = 2\n", "did you mean 'model_cache_max_models'?"),
        ('[gates.churn]\nmetric = "acuracy"\n', "[gates.churn]: unknown metric 'acuracy'"),
    ],
)
def test_show_reports_a_bad_setting_in_one_line(
    project: Path, invoke: Callable[..., Result], content: str, message: str
) -> None:
    config = project / "loopml.toml"
    config.write_text(config.read_text() + "\n" + content)
    result = invoke("config", "show")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {config.resolve()}")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_show_reports_a_bad_variable(
    project: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TRACKING_CAPTURE_ENVIRONMENT", "sometimes")
    result = invoke("config", "show")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: LOOPML_TRACKING_CAPTURE_ENVIRONMENT must be true or false (or 1/0), "
        "got 'sometimes'.\n"
    )


COMMENTED = """\
# Our team's workspace: keep these notes.
[store]
url = "sqlite:///.loopml/loopml.db"   # local metadata

[data]
# copies only: the NFS mount can't hardlink
link = ["copy"]  # see INFRA-12

[data.remotes]
old = "/mnt/old"  # retired next quarter

# gates reviewed by the risk team
[gates.churn]
metric = "accuracy"
"""


def test_remote_add_keeps_comments_and_layout(project: Path, invoke: Callable[..., Result]) -> None:
    config = project / "loopml.toml"
    config.write_text(COMMENTED)
    result = invoke("data", "remote", "add", "team", "s3://bucket/data", "--default")
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert text == COMMENTED.replace(
        'link = ["copy"]  # see INFRA-12\n',
        'link = ["copy"]  # see INFRA-12\ndefault_remote = "team"\n',
    ).replace(
        'old = "/mnt/old"  # retired next quarter\n',
        'old = "/mnt/old"  # retired next quarter\nteam = "s3://bucket/data"\n',
    )
    assert invoke("data", "remote", "remove", "old").exit_code == 0
    text = config.read_text()
    assert "# retired next quarter" not in text and "old =" not in text
    for comment in ("# Our team's", "# local metadata", "# see INFRA-12", "# gates reviewed"):
        assert comment in text
    assert tomllib.loads(text)["data"] == {
        "link": ["copy"],
        "default_remote": "team",
        "remotes": {"team": "s3://bucket/data"},
    }


def test_remote_add_to_a_file_without_a_data_table(
    project: Path, invoke: Callable[..., Result]
) -> None:
    config = project / "loopml.toml"
    before = config.read_text()
    result = invoke("data", "remote", "add", "nas", "/mnt/nas", "-o", "auto_mkdir=true")
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert text.startswith(before.rstrip("\n") + "\n\n[data]\n")
    assert tomllib.loads(text)["data"] == {
        "default_remote": "nas",
        "remotes": {"nas": {"url": "/mnt/nas", "auto_mkdir": True}},
    }
    assert 'nas = {url = "/mnt/nas", auto_mkdir = true}' in text  # one line per remote


def test_a_remote_that_would_break_the_settings_is_refused(
    project: Path, invoke: Callable[..., Result]
) -> None:
    config = project / "loopml.toml"
    config.write_text(config.read_text() + "\n[data]\nlink = ['copy']\n")
    before = config.read_text()
    result = invoke("data", "remote", "default", "nowhere")
    assert result.exit_code == 1
    assert "No data remote named 'nowhere'" in result.stderr
    assert config.read_text() == before
