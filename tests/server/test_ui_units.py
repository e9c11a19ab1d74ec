"""The web UI's pure parts: downsampling, the graph layout, the runs table's columns and
orders, artifact folders, gate verdict rows, lineage, the history read from the store."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.exceptions import InvalidFilter
from loopml.server.ui.downsample import lttb
from loopml.server.ui.graph import Node, layout, render_svg
from loopml.server.ui.models import lineage_graph, verdict_rows
from loopml.server.ui.pipelines import dag_graph
from loopml.server.ui.render import number, search_key, seconds, url, when
from loopml.server.ui.series import metric_series
from loopml.server.ui.tracking import Column, child_folders, order_toggle
from loopml.workspace import Workspace

# -- downsampling ------------------------------------------------------------------------------


def test_lttb_keeps_the_ends_and_the_spike_of_a_long_series() -> None:
    n = 1_000_000
    xs = np.arange(n)
    ys = np.sin(xs / 5000.0)
    ys[654_321] = 50.0  # one spike LTTB must not drop
    steps, values = lttb(xs, ys, 1000)
    assert len(steps) == len(values) == 1000
    assert steps[0] == 0 and steps[-1] == n - 1
    assert 654_321 in steps and max(values) == 50.0
    assert steps == sorted(steps) and all(isinstance(s, int) for s in steps)


def test_lttb_returns_a_short_series_whole_and_drops_nan() -> None:
    assert lttb([1, 2, 3], [0.5, math.nan, 1.5], 10) == ([1, 3], [0.5, 1.5])
    with pytest.raises(ValueError, match="at least 3"):
        lttb([1, 2], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="one length"):
        lttb([1, 2], [1.0], 10)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=300),
    st.integers(min_value=3, max_value=50),
)
def test_lttb_picks_existing_points_in_order(values: list[float], threshold: int) -> None:
    steps, picked = lttb(list(range(len(values))), values, threshold)
    assert len(steps) == min(len(values), threshold)
    assert steps == sorted(set(steps))
    assert all(values[s] == pytest.approx(v) for s, v in zip(steps, picked, strict=True))


# -- graphs ------------------------------------------------------------------------------------


def test_layers_follow_the_longest_path_and_rows_follow_inputs() -> None:
    lay = layout(
        ["load", "features", "labels", "train", "report"],
        [
            ("load", "features"),
            ("load", "labels"),
            ("features", "train"),
            ("labels", "train"),
            ("load", "report"),
            ("train", "report"),
        ],
    )
    assert lay.layers == {"load": 0, "features": 1, "labels": 1, "train": 2, "report": 3}
    xs = {n: p[0] for n, p in lay.positions.items()}
    assert xs["load"] < xs["features"] == xs["labels"] < xs["train"] < xs["report"]
    ys = {p[1] for n, p in lay.positions.items() if lay.layers[n] == 1}
    assert len(ys) == 2  # two boxes in one column never overlap
    assert lay.width > 0 and lay.height > 0


def test_layout_refuses_cycles_and_unknown_nodes() -> None:
    with pytest.raises(ValueError, match="cycle"):
        layout(["a", "b"], [("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="not in the graph"):
        layout(["a"], [("a", "zzz")])


def test_svg_escapes_labels_and_links() -> None:
    svg = render_svg(
        [Node("a", "<script>x</script>", "d&d", "run", '/runs/"x'), Node("b", "ok")], [("a", "b")]
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "d&amp;d" in svg
    assert 'href="/runs/&quot;x"' in svg
    assert svg.count('class="edge"') == 1 and svg.count('class="node"') == 2


def test_a_pipeline_dag_draws_its_edges_or_just_its_tasks() -> None:
    svg = dag_graph({"a": (), "b": ("a",)}, ["a", "b"], {}, {"a": "COMPLETED", "b": "FAILED"})
    assert svg.count('class="edge"') == 1 and "#f8d4d4" in svg  # FAILED's colour
    assert dag_graph(None, ["a", "b"], {}).count('class="edge"') == 0


def test_lineage_runs_from_data_and_commit_through_the_run_to_the_model() -> None:
    lineage = {
        "model": "churn",
        "version": 3,
        "stage": "Production",
        "run": {
            "id": "r" * 32,
            "name": "train",
            "inputs": [{"name": "raw", "digest": "ab" * 32}, {"name": "labels", "digest": "cd"}],
            "code": {"commit": "c0ffee" * 6, "dirty": True},
        },
    }
    nodes, edges = lineage_graph(lineage, "/runs/rrr")
    assert [n.id for n in nodes] == ["model", "run", "data:raw", "data:labels", "commit"]
    assert ("run", "model") in edges and ("data:raw", "run") in edges
    assert ("commit", "run") in edges
    assert nodes[-1].detail == "git (dirty)" and nodes[1].href == "/runs/rrr"
    alone, no_edges = lineage_graph({"model": "m", "version": 1, "run": None}, None)
    assert [n.id for n in alone] == ["model"] and no_edges == []


def test_verdict_rows_put_candidate_and_champion_side_by_side() -> None:
    rows = verdict_rows(
        {
            "checks": [
                {
                    "name": "beats_champion",
                    "passed": False,
                    "details": {"metric": "auc", "score": 0.7, "champion_score": 0.8},
                },
                {"name": "latency", "passed": True, "details": {"p95_ms": 3.0}},
            ]
        }
    )
    assert rows[0]["candidate"] == 0.7 and rows[0]["champion"] == 0.8 and not rows[0]["passed"]
    assert rows[1]["candidate"] is None and rows[1]["details"] == {"p95_ms": 3.0}


# -- the runs table ----------------------------------------------------------------------------


def test_columns_are_spelled_as_the_filter_language_wants() -> None:
    assert Column.parse("metrics.acc").name == "metrics.acc"
    assert Column.parse("metrics.val loss").name == "metrics.`val loss`"
    assert Column.parse("params.a.b").name == "params.`a.b`"
    with pytest.raises(InvalidFilter, match="params.NAME"):
        Column.parse("acc")
    with pytest.raises(InvalidFilter):
        Column.parse("attributes.status")
    assert search_key("tags.team") == "tags.team"


def test_a_header_click_sorts_descending_then_ascending() -> None:
    acc = Column.parse("metrics.acc")
    assert order_toggle([], acc) == ("metrics.acc DESC", "")
    assert order_toggle(["metrics.acc DESC"], acc) == ("metrics.acc ASC", "↓")
    assert order_toggle(["metrics.acc ASC"], acc) == ("metrics.acc DESC", "↑")
    assert order_toggle(["params.lr DESC"], acc) == ("metrics.acc DESC", "")


def test_child_folders_lists_one_level() -> None:
    paths = ["model/MLmodel", "model/data/x.pkl", "notes.txt", "plots/a.png"]
    assert child_folders(paths, "") == (["model", "plots"], ["notes.txt"])
    assert child_folders(paths, "model") == (["model/data"], ["model/MLmodel"])
    assert child_folders(paths, "nope") == ([], [])


def test_shown_values() -> None:
    moment = datetime(2026, 12, 1, 6, 3, 34, 900_000, tzinfo=UTC)
    assert when(moment) == "2026-12-01T06:03:34+00:00"
    assert when(moment.astimezone(timezone(timedelta(hours=2)))) == "2026-12-01T08:03:34+02:00"
    assert when(None) == ""
    assert seconds(0.4213) == "0.42 s" and seconds(185) == "3 min 5 s"
    assert seconds(7260) == "2 h 1 min" and seconds(None) == ""
    assert number(math.nan) == "NaN" and number(0.123456789) == "0.123457"
    assert number(-math.inf) == "-inf" and number(None) == ""
    assert url("/x", a="1 2", b=None, c=["p", "q"]) == "/x?a=1+2&c=p&c=q"
    assert url("/x") == "/x"


# -- a history read from the store -------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_metric_series_short_and_bucketed(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    sqlite_ws = workspace_factory(store)  # the bucketing SQL must work on both
    with sqlite_ws.runs.start(experiment="e") as run:
        for step in range(50):
            run.log_metric("short", float(step), step=step)
        for step in range(10_000):
            # A flat line with one spike at step 7777 and one dip at step 2222.
            value = 100.0 if step == 7777 else (-100.0 if step == 2222 else 1.0)
            run.log_metric("long", value, step=step)
        run.log_metric("nan", math.nan, step=0)
    short = metric_series(sqlite_ws.db, run.id, "short", 1000)
    assert short.steps == list(range(50)) and short.values[-1] == 49.0 and short.total == 50
    long = metric_series(sqlite_ws.db, run.id, "long", 100)  # 10,000 steps > 4 x 100
    assert long.total == 10_000 and len(long.steps) <= 100
    assert max(long.values) == 100.0 and min(long.values) == -100.0
    assert long.steps == sorted(long.steps) and long.steps[0] == 0 and long.steps[-1] == 9999
    nan = metric_series(sqlite_ws.db, run.id, "nan")
    assert nan.total == 1 and nan.steps == []  # a chart can't place NaN
    assert metric_series(sqlite_ws.db, run.id, "never").total == 0


@pytest.mark.parametrize("blobs", ["file", "s3"])
def test_a_long_text_artifact_previews_its_beginning(
    blobs: str,
    db_url_factory: Callable[[str], str],
    blob_url_factory: Callable[[str], tuple[str, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    from loopml.server.context import ServerContext
    from loopml.server.ui.render import Renderer
    from loopml.server.ui.tracking import PREVIEW_BYTES, TrackingPages

    artifacts_url, options = blob_url_factory(blobs)
    ws = Workspace.open(
        store_url=db_url_factory("sqlite-file"), artifacts_url=artifacts_url, **options
    )
    try:
        text = "a" + "é" * PREVIEW_BYTES  # two bytes each: the cut falls inside an "é"
        (tmp_path / "long.log").write_text(text, encoding="utf-8")
        with ws.runs.start(experiment="e") as run:
            run.log_artifact(tmp_path / "long.log")
        item = ws.runs.list_artifacts(run.id)[0]
        pages = TrackingPages(ServerContext(ws, ws.settings.server), Renderer())
        shown = pages.preview(item.path, item.digest, item.size)
        assert shown["kind"] == "text" and shown["cut"]
        assert shown["text"] == "a" + "é" * ((PREVIEW_BYTES - 2) // 2)
        # A large artifact is sent in chunks: a file from a local store, a stream from S3.
        response = pages._stream(item.digest, "text/plain", {})
        if blobs == "file":
            assert Path(response.path).read_bytes() == text.encode()  # type: ignore[attr-defined]
        else:

            async def body() -> bytes:
                return b"".join([c async for c in response.body_iterator])  # type: ignore[attr-defined]

            assert asyncio.run(body()) == text.encode()
    finally:
        ws.close()


@pytest.mark.parametrize(
    "module",
    [
        "loopml.server.ui.downsample",
        "loopml.server.ui.graph",
        "loopml.server.ui.tracking",
        "loopml.server.ui.models",
        "loopml.server.ui.pipelines",
        "loopml.server.ui.data",
    ],
)
def test_the_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
