"""search_runs: filters, ordering and the result frame, on every metadata backend."""

from __future__ import annotations

import math

import pytest

from loopml.exceptions import ExperimentNotFound, InvalidFilter
from loopml.workspace import Workspace


@pytest.fixture
def populated(ws: Workspace) -> Workspace:
    rows = [
        ("rf", 0.91, "a", 100),
        ("rf", 0.85, "b", 200),
        ("lr", 0.95, "a", 50),
        ("lr", float("nan"), "b", 10),
        ("gb", 0.70, "c", 300),
    ]
    for i, (model, acc, team, trees) in enumerate(rows):
        with ws.start_run(experiment="exp1" if i < 4 else "exp2", name=f"run{i}") as run:
            run.log_params({"model": model, "trees": trees})
            run.log_metric("acc", acc)
            run.log_metric("val loss", 1 - acc if not math.isnan(acc) else acc)
            run.set_tag("team", team)
    with ws.start_run(experiment="exp2", name="failed") as run:
        run.end("FAILED")
    return ws


def names(frame) -> list[str]:  # type: ignore[no-untyped-def]
    return frame["name"].tolist()


def test_frame_shape(populated: Workspace) -> None:
    frame = populated.search_runs(experiments=["exp1"], order_by=["metrics.acc DESC"])
    assert names(frame) == ["run2", "run0", "run1", "run3"]  # NaN sorts last
    assert {"run_id", "experiment", "status", "start_time", "end_time"} <= set(frame.columns)
    assert {"params.model", "params.trees", "metrics.acc", "metrics.val loss", "tags.team"} <= set(
        frame.columns
    )
    assert frame["metrics.acc"].dtype == "float64"
    assert str(frame["start_time"].dtype).startswith("datetime64")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc > 0.9", {"run0", "run2"}),
        ("metrics.acc >= 0.85 and params.model = 'rf'", {"run0", "run1"}),
        ("params.model = 'lr' or tags.team = 'c'", {"run2", "run3", "run4"}),
        ("(params.model = 'lr' or params.model = 'gb') and metrics.acc < 0.9", {"run4"}),
        ("tags.team != 'a'", {"run1", "run3", "run4"}),
        ("params.model IN ('gb', 'lr')", {"run2", "run3", "run4"}),
        ("params.model NOT IN ('gb', 'lr')", {"run0", "run1"}),
        ("params.model LIKE 'r%'", {"run0", "run1"}),
        ("params.model ILIKE 'R%'", {"run0", "run1"}),
        ("attributes.status = 'failed'", {"failed"}),
        ("attributes.status = 'FINISHED' and metrics.acc < 0.8", {"run4"}),
        ("metrics.acc = nan", {"run3"}),
        ("metrics.`val loss` < 0.1", {"run2", "run0"}),
        ("params.trees = 100", {"run0"}),
        ("metrics.acc IS NULL", {"failed"}),
        ("attributes.name LIKE 'run%' and params.trees = '300'", {"run4"}),
    ],
)
@pytest.mark.slow
def test_filters(populated: Workspace, text: str, expected: set[str]) -> None:
    assert set(names(populated.search_runs(filter=text))) == expected


def test_order_by_param_and_limit(populated: Workspace) -> None:
    frame = populated.search_runs(
        experiments="exp1", order_by=["params.model ASC", "metrics.acc DESC"], max_results=3
    )
    assert names(frame) == ["run2", "run3", "run0"]


def test_default_order_is_newest_first(populated: Workspace) -> None:
    assert names(populated.search_runs(experiments=["exp2"])) == ["failed", "run4"]


def test_bad_filter_points_at_token(populated: Workspace) -> None:
    with pytest.raises(InvalidFilter) as info:
        populated.search_runs(filter="metrics.acc > 0.9 and params.model === 'x'")
    assert info.value.position is not None
    assert "^" in str(info.value)


def test_unknown_experiment(populated: Workspace) -> None:
    with pytest.raises(ExperimentNotFound):
        populated.search_runs(experiments=["nope"])


def test_empty_result_has_columns(populated: Workspace) -> None:
    frame = populated.search_runs(filter="metrics.acc > 5")
    assert frame.empty and "run_id" in frame.columns


def test_sql_injection_is_inert(populated: Workspace) -> None:
    frame = populated.search_runs(filter="params.model = 'x'' OR 1=1 --'")
    assert frame.empty
    assert len(populated.search_runs()) == 6


def test_frame_names_metrics_logged_as_nan(populated: Workspace) -> None:
    # The column can't tell a NaN-logged metric from a missing one; attrs can.
    frame = populated.search_runs()
    logged = frame.attrs["nan_metrics"]
    by_name = dict(zip(frame["name"], frame["run_id"], strict=True))
    assert logged[by_name["run3"]] == ["acc", "val loss"]
    assert set(logged) == {by_name["run3"]}


def test_records_agree_with_the_frame(populated: Workspace) -> None:
    """search_records is the same search without pandas: same runs, order and values."""
    query = {"filter": "params.model != 'gb'", "order_by": ["metrics.acc DESC"]}
    frame = populated.search_runs(**query)
    records = populated.runs.records(**query)
    assert [r["run_id"] for r in records] == frame["run_id"].tolist()
    for rec, (_, row) in zip(records, frame.iterrows(), strict=True):
        assert rec["start_time"] == row["start_time"].to_pydatetime()
        assert rec["start_time"].utcoffset() is not None
        assert rec["params"] == {"model": row["params.model"], "trees": row["params.trees"]}
        assert rec["tags"]["team"] == row["tags.team"]
        for key in ("acc", "val loss"):
            value = row[f"metrics.{key}"]
            assert (
                math.isnan(rec["metrics"][key])
                if math.isnan(value)
                else (rec["metrics"][key] == value)
            )
    assert populated.runs.records(filter="params.model = 'none'") == []


def test_metric_history_reads_a_timestamp_pandas_cannot_hold_as_nat(ws: Workspace) -> None:
    # A point stored before log_metric checked timestamps: reading it back must not raise.
    from sqlalchemy import insert

    from loopml.tracking.tables import metrics

    with ws.start_run(log_environment=False) as run:
        run.log_metric("loss", 0.5, step=0)
    ws.db.transact(
        lambda conn: conn.execute(
            insert(metrics).values(run_id=run.id, key="loss", value=0.4, step=1, timestamp=2**62)
        )
    )
    history = ws.metric_history(run.id, "loss")
    assert history["value"].tolist() == [0.5, 0.4]
    assert history["timestamp"].isna().tolist() == [False, True]


def test_pages_walk_the_records_in_order(populated: Workspace) -> None:
    everything = [r["run_id"] for r in populated.runs.records(order_by=["metrics.acc DESC"])]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = populated.runs.page(order_by=["metrics.acc DESC"], page_size=4, page_token=token)
        seen += [r["run_id"] for r in page.records]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert seen == everything and len(everything) == 6 and pages == 2
    exact = populated.runs.page(page_size=6)
    assert len(exact.records) == 6 and exact.next_page_token is None
    filtered = populated.runs.page(filter="params.model = 'rf'", page_size=1)
    assert [r["name"] for r in filtered.records] == ["run1"]
    second = populated.runs.page(
        filter="params.model = 'rf'", page_size=1, page_token=filtered.next_page_token
    )
    assert [r["name"] for r in second.records] == ["run0"] and second.next_page_token is None


@pytest.mark.parametrize("token", ["garbage", "eyJvZmZzZXQiOiAtMX0=", "e30="])
def test_a_page_token_loopml_did_not_give_is_refused(sqlite_ws: Workspace, token: str) -> None:
    with pytest.raises(InvalidFilter, match="Page token"):
        sqlite_ws.runs.page(page_token=token)


@pytest.mark.parametrize("size", [0, -1, 50_001, True])
def test_a_bad_page_size_is_refused(sqlite_ws: Workspace, size: int) -> None:
    with pytest.raises(InvalidFilter, match="page_size must be an integer"):
        sqlite_ws.runs.page(page_size=size)
