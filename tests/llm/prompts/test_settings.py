"""``[prompts]`` in loopml.toml: protected labels, checked when the file is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.config import load_settings
from loopml.exceptions import InvalidConfig


def _write(folder: Path, text: str) -> Path:
    (folder / "loopml.toml").write_text(text)
    return folder


def test_protected_labels_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_settings(_write(tmp_path, ""), environ={}).prompts.protected_labels == ()
    _write(tmp_path, '[prompts]\nprotected_labels = ["production", "prod-eu"]\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.prompts.protected_labels == ("production", "prod-eu")
    env = {"LOOPML_PROMPTS_PROTECTED_LABELS": "production, staging"}
    assert load_settings(tmp_path, environ=env).prompts.protected_labels == (
        "production",
        "staging",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[prompts]\nprotected_labels = ["a/b"]\n', "Bad label 'a/b'"),
        ('[prompts]\nprotected_labels = ["latest"]\n', "'latest' is not a label"),
        ("[prompts]\nprotected_labels = 3\n", "must be a list of label names"),
        ('[prompts]\nprotected_label = ["x"]\n', "did you mean 'protected_labels'?"),
    ],
)
def test_a_bad_prompts_table_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        load_settings(_write(tmp_path, text), environ={})
    assert fragment in str(caught.value)
    assert "[prompts]" in str(caught.value)
