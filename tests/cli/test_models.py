"""``loopml models``: the registry from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from loopml.workspace import Workspace


@pytest.fixture
def two_versions(workspace: Workspace) -> Workspace:
    x, y = make_classification(n_samples=400, n_features=4, random_state=1)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame.iloc[300:].assign(label=y[300:]).to_csv(workspace.root / "holdout.csv", index=False)
    with (workspace.root / "loopml.toml").open("a") as fh:
        fh.write(
            '\n[gates.churn]\nmetric = "accuracy"\nholdout = "holdout.csv"\nlabel = "label"\n'
            "margin = 0.01\n"
        )
    ws = Workspace.open(workspace.root)
    with ws.start_run(experiment="churn") as run:
        run.log_param("C", 1.0)
        ws.register_model(
            "churn", LogisticRegression().fit(frame[:300], y[:300]), input_example=frame.head()
        )
    ws.register_model(
        "churn", DummyClassifier().fit(frame[:300], y[:300]), input_example=frame.head()
    )
    ws.close()
    return workspace


def test_list_versions_show(two_versions: Workspace, invoke_json: Callable[..., Any]) -> None:
    (model,) = invoke_json("models", "list")
    assert model["name"] == "churn" and model["versions"] == 2 and model["production"] is None
    versions = invoke_json("models", "versions", "churn")
    assert [v["version"] for v in versions] == [1, 2]
    shown = invoke_json("models", "show", "churn/1")
    assert shown["stage"] == "None" and shown["signature"]["inputs"][0]["name"] == "a"


def test_gate_from_config_blocks_and_passes(
    two_versions: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    ok = invoke("models", "promote", "churn", "1")
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.stdout and "now in Production" in ok.stdout
    blocked = invoke("models", "promote", "churn", "2")
    assert blocked.exit_code == 1
    assert "beats_champion" in blocked.stdout and "FAIL" in blocked.stdout
    assert blocked.stderr.startswith("error: Promotion of churn/2 blocked")
    assert "Traceback" not in blocked.output
    assert invoke_json("models", "show", "churn@production")["version"] == 1
    forced = invoke("models", "promote", "churn", "2", "--force")
    assert forced.exit_code == 1 and "needs a reason" in forced.stderr
    forced = invoke("models", "promote", "churn", "2", "--force", "--reason", "incident 7")
    assert forced.exit_code == 0, forced.output
    assert invoke_json("models", "show", "churn@production")["version"] == 2
    back = invoke("models", "rollback", "churn", "--reason", "regression")
    assert back.exit_code == 0 and "churn/1" in back.stdout
    history = invoke_json("models", "history", "churn")
    assert [e["kind"] for e in history].count("gate") == 3
    assert any(e["kind"] == "override" and e["reason"] == "incident 7" for e in history)
    text = invoke("models", "history", "churn")
    assert "rollback" in text.stdout and "regression" in text.stdout


def test_time_travel_alias_and_lineage(
    two_versions: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    before = datetime.now(UTC).isoformat()
    assert invoke("models", "promote", "churn", "1").exit_code == 0
    then = invoke_json("models", "show", "churn", "--at", before)
    assert then["production"] is None
    now = invoke_json("models", "show", "churn", "--at", datetime.now(UTC).isoformat())
    assert now["production"] == 1
    assert invoke("models", "alias", "set", "churn", "champion", "1").exit_code == 0
    assert invoke_json("models", "show", "churn@champion")["version"] == 1
    chain = invoke_json("models", "lineage", "churn@production")
    assert chain["run"]["params"] == {"C": "1.0"} and chain["gate"]["passed"]
    assert chain["promotions"][0]["stage"] == "Production"
    tree = invoke("models", "lineage", "models:/churn@production")
    assert "params: C=1.0" in tree.stdout and "gate: PASS" in tree.stdout
    assert invoke("models", "alias", "delete", "churn", "champion").exit_code == 0
    missing = invoke("models", "show", "churn@champion")
    assert missing.exit_code == 1 and "no alias or stage 'champion'" in missing.stderr
    bad = invoke("models", "show", "churn", "--at", "yesterday")
    assert bad.exit_code == 1 and "ISO time" in bad.stderr


def test_approval_flow(two_versions: Workspace, invoke: Callable[..., Result]) -> None:
    toml = two_versions.root / "loopml.toml"
    toml.write_text(toml.read_text() + "require_approval = true\n")
    waiting = invoke("models", "promote", "churn", "1")
    assert waiting.exit_code == 1 and "awaits approval" in waiting.stderr
    approved = invoke("models", "approve", "churn", "1", "--reason", "reviewed")
    assert approved.exit_code == 0 and "Production" in approved.stdout


def test_unknown_model(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    result = invoke("models", "versions", "ghost")
    assert result.exit_code == 1 and result.stderr.startswith("error: No registered model")
    json_result = invoke("models", "list", "--json")
    assert json.loads(json_result.stdout) == []
