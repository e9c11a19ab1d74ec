"""``loopml features``: apply with diffs, list, show, skew-check, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli
from loopml.workspace import Workspace

FEATURES = """
from datetime import timedelta
from loopml.features import Entity, FeatureView, Field, FileSource, FeatureService

customer = Entity("customer", join_keys=["customer_id"])
stats = FeatureView(
    "customer_stats", entities=[customer],
    source=FileSource("data/customer_stats.parquet", timestamp_field="event_ts",
                      created_timestamp_field="created_ts"),
    ttl=timedelta(days={ttl}),
    schema=[Field("avg_purchase_30d", "float64"), Field("n_orders_7d", "int64")],
)
churn_v1 = FeatureService("churn_v1", [stats[["avg_purchase_30d", "n_orders_7d"]]])
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="loopml")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    Workspace.init(root).close()
    (root / "data").mkdir()
    t = pd.Timestamp("2026-01-01", tz="UTC")
    pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_ts": [t, t],
            "created_ts": [t, t],
            "avg_purchase_30d": [1.5, 2.5],
            "n_orders_7d": [1, 2],
        }
    ).to_parquet(root / "data" / "customer_stats.parquet")
    (root / "features.py").write_text(FEATURES.format(ttl=30))
    monkeypatch.chdir(root)
    return root


@pytest.mark.slow
def test_apply_versions_definitions_and_says_what_changed(project: Path) -> None:
    first = run("features", "apply")
    assert first.exit_code == 0, first.output
    assert "+ feature view customer_stats: new, is version 1" in first.output
    assert "+ feature service churn_v1: new, is version 1" in first.output
    again = run("features", "apply")
    assert "Everything is applied already." in again.output

    (project / "features.py").write_text(FEATURES.format(ttl=7))
    dry = run("features", "apply", "--dry-run")
    assert "~ feature view customer_stats: changed, would be version 2" in dry.output
    assert "~ ttl_seconds: 2592000.0 → 604800.0" in dry.output
    assert json.loads(run("features", "list", "--json").output)[1]["version"] == 1
    applied = json.loads(run("features", "apply", "--json").output)
    assert [c["status"] for c in applied] == ["unchanged", "changed", "unchanged"]

    listed = json.loads(run("features", "list", "--json").output)
    assert [(d["kind"], d["name"], d["version"]) for d in listed] == [
        ("entity", "customer", 1),
        ("feature_view", "customer_stats", 2),
        ("feature_service", "churn_v1", 1),
    ]
    table = run("features", "list")
    assert "customer_stats" in table.output and "avg_purchase_30d float64" in table.output
    shown = run("features", "show", "customer_stats")
    assert "version 1" in shown.output and "version 2" in shown.output
    assert "~ ttl_seconds: 2592000.0 → 604800.0" in shown.output
    history = json.loads(run("features", "show", "customer_stats", "--json").output)
    assert [v["version"] for v in history] == [1, 2]
    views = json.loads(run("features", "list", "--kind", "feature_view", "--json").output)
    assert [v["name"] for v in views] == ["customer_stats"]


@pytest.mark.slow
def test_skew_check_reports_and_fails_over_the_limit(project: Path) -> None:
    assert run("features", "apply").exit_code == 0
    log = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_timestamp": ["2026-01-02", "2026-01-02"],
            "avg_purchase_30d": [1.5, 9.9],
            "n_orders_7d": [1, 2],
        }
    )
    log.to_csv(project / "served.csv", index=False)
    result = run("features", "skew-check", "--service", "churn_v1", "--log", "served.csv")
    assert result.exit_code == 0, result.output
    assert "50.00%" in result.output and "9.9 vs 2.5" in result.output
    data = json.loads(
        run(
            "features", "skew-check", "--service", "churn_v1", "--log", "served.csv", "--json"
        ).output
    )
    assert data["features"][0]["mismatches"] == 1 and data["features"][1]["rate"] == 0.0
    strict = run(
        "features",
        "skew-check",
        "--service",
        "churn_v1",
        "--log",
        "served.csv",
        "--max-rate",
        "0.1",
    )
    assert strict.exit_code == 1
    assert "error: avg_purchase_30d differs in 50.00% of served rows" in strict.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("features", "show", "customer_stat"), "Did you mean 'customer_stats'"),
        (("features", "skew-check", "--service", "churn", "--log", "x.csv"), "churn_v1"),
        (("features", "skew-check", "--service", "churn_v1", "--log", "x.csv"), "No serving log"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_error_line(project: Path, args: tuple[str, ...], fragment: str) -> None:
    assert run("features", "apply").exit_code == 0
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_broken_features_module_is_one_error_line(project: Path) -> None:
    (project / "features.py").write_text("import nosuchmodule\n")
    result = run("features", "apply")
    assert result.exit_code == 1
    assert "features.py" in result.stderr and "nosuchmodule" in result.stderr
    assert "pipeline" not in result.stderr  # it is the feature definitions' module
    (project / "features.py").write_text(FEATURES.format(ttl=0))
    zero = run("features", "apply")
    assert zero.exit_code == 1 and "ttl must be a positive timedelta" in zero.stderr


@pytest.mark.slow
def test_materialize_is_resumable_and_reported(project: Path) -> None:
    assert run("features", "apply").exit_code == 0
    first = run("features", "materialize", "2026-01-01T00:00:00Z", "2026-01-31T00:00:00Z")
    assert first.exit_code == 0, first.output
    assert "customer_stats" in first.output and "Partitions run" in first.output
    again = json.loads(
        run(
            "features", "materialize", "2026-01-01T00:00:00Z", "2026-01-31T00:00:00Z", "--json"
        ).output
    )
    assert [(r["view"], r["ran"], r["skipped"]) for r in again] == [("customer_stats", 0, 8)]
    later = json.loads(
        run("features", "materialize-incremental", "2026-02-01T00:00:00Z", "--json").output
    )
    assert later[0]["start"] == "2026-01-31T00:00:00+00:00" and later[0]["ran"] == 8
    with Workspace.open(project) as ws:
        stored = ws.features.online_store.read(
            "customer_stats", ["1"], list(ws.features.definitions.view("customer_stats").schema)
        )
    assert stored[0] is not None
    bad = run("features", "materialize", "2026-01-01", "2026-01-31", "--view", "customer_stat")
    assert bad.exit_code == 1 and "customer_stats" in bad.stderr
