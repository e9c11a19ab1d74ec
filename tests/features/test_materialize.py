"""Materialization: latest in-window, in-TTL values per entity into the online store;
partitioned on executors, resumable, idempotent; pushes to online and offline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import ModuleType

import pandas as pd
import pytest

from features.conftest import NOW, customer_stats, stats_view
from loopml import events
from loopml.features import (
    FileSource,
    InvalidEntityFrame,
    MaterializationFailed,
    OnlineStoreUnavailable,
)
from loopml.features import materialize as mat
from loopml.workspace import Workspace

FEATURES = ["customer_stats:avg_purchase", "customer_stats:n_orders"]


def online(ws: Workspace, ids: list[int]) -> dict[str, list[object]]:
    rows = [{"customer_id": i} for i in ids]
    return ws.features.get_online_features(FEATURES, rows).to_dict()


def test_materialize_loads_the_latest_value_known_at_end(feature_ws: Workspace) -> None:
    results = feature_ws.features.materialize(NOW - timedelta(days=1), NOW, partitions=3)
    assert [(r.view, r.rows, r.ran, r.skipped) for r in results] == [("customer_stats", 20, 3, 0)]
    got = online(feature_ws, [0, 7, 19, 99])
    assert got == {
        "customer_id": [0, 7, 19, 99],
        "avg_purchase": [4.0, 704.0, 1904.0, None],
        "n_orders": [4, 11, 23, None],
    }
    kinds = [e.kind for e in events.read(feature_ws.db, kinds="feature.materialized")]
    assert kinds == ["feature.materialized"]


@pytest.mark.slow
def test_end_in_the_past_takes_rows_known_then(feature_ws: Workspace) -> None:
    # the last row (1 h ago) was created 55 min ago: not known at NOW - 58 min
    feature_ws.features.materialize(NOW - timedelta(days=1), NOW - timedelta(minutes=58))
    assert online(feature_ws, [3])["avg_purchase"] == [303.0]


def test_values_older_than_the_ttl_at_end_are_skipped(
    feature_ws_factory: Callable[..., Workspace],
) -> None:
    ws = feature_ws_factory("sqlite", None, stats_view(ttl=timedelta(hours=3)))
    # at end = NOW - 2 h, the latest row (NOW - 7 h) is older than 3 h: nothing to load
    (result,) = ws.features.materialize(NOW - timedelta(days=2), NOW - timedelta(hours=2))
    assert result.rows == 0
    assert online(ws, [1])["avg_purchase"] == [None]


def test_expired_values_read_as_none(feature_ws_factory: Callable[..., Workspace]) -> None:
    ws = feature_ws_factory("sqlite", None, stats_view(ttl=timedelta(minutes=90)))
    ws.features.materialize(NOW - timedelta(days=1), NOW)
    assert online(ws, [1])["avg_purchase"] == [104.0]  # 1 h old
    ws.features.use(stats_view(ttl=timedelta(minutes=30)))  # now older than the TTL
    assert online(ws, [1])["avg_purchase"] == [None]


def test_materializing_twice_gives_the_same_values(feature_ws: Workspace) -> None:
    start = NOW - timedelta(days=1)
    feature_ws.features.materialize(start, NOW, partitions=4)
    first = online(feature_ws, list(range(20)))
    (again,) = feature_ws.features.materialize(start, NOW, partitions=4)
    assert (again.ran, again.skipped) == (0, 4)  # the same job: every partition is done
    feature_ws.features.materialize(start, NOW, partitions=2)  # another job: writes again
    assert online(feature_ws, list(range(20))) == first


def test_an_interrupted_materialization_resumes(
    feature_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mat.run_partition
    failed: list[int] = []

    def flaky(payload: bytes) -> int:
        import pickle

        task = pickle.loads(payload)
        if task.index in (1, 3) and task.index not in failed:
            failed.append(task.index)
            raise RuntimeError(f"Worker lost (partition {task.index}).")
        return real(payload)

    monkeypatch.setattr(mat, "run_partition", flaky)
    start = NOW - timedelta(days=1)
    with pytest.raises(MaterializationFailed, match="2 partition") as caught:
        feature_ws.features.materialize(start, NOW, partitions=4)
    assert "run the same materialization again" in str(caught.value)
    # in partition order, whichever failed first
    assert "(partition 1); customer_stats partition 3/4" in str(caught.value)
    assert ".." not in str(caught.value)
    assert mat.last_done_end(feature_ws.db, "customer_stats") is None
    assert events.read(feature_ws.db, kinds="feature.materialized") == []
    (result,) = feature_ws.features.materialize(start, NOW, partitions=4)
    assert (result.ran, result.skipped, result.rows) == (2, 2, 20)
    assert online(feature_ws, list(range(20)))["avg_purchase"] == [c * 100 + 4.0 for c in range(20)]
    assert mat.last_done_end(feature_ws.db, "customer_stats") == NOW


@pytest.mark.slow
def test_a_cause_every_partition_shares_is_said_once(
    feature_ws_factory: Callable[..., Workspace],
) -> None:
    missing = stats_view(source=FileSource("data/missing.parquet", timestamp_field="event_ts"))
    ws = feature_ws_factory("sqlite", None, missing)
    with pytest.raises(MaterializationFailed) as caught:
        ws.features.materialize(NOW - timedelta(days=1), NOW, partitions=8)
    message = str(caught.value)
    assert message.startswith("all 8 partitions of customer_stats failed: SourceNotFound: ")
    assert message.count("SourceNotFound") == 1 and "missing.parquet" in message
    assert "The others are done" not in message and "Nothing was materialized" in message


def test_a_shared_cause_of_some_partitions_names_them_and_the_done_rest(
    feature_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mat.run_partition

    def flaky(payload: bytes) -> int:
        import pickle

        if pickle.loads(payload).index in (0, 2):
            raise RuntimeError("Worker lost.")
        return real(payload)

    monkeypatch.setattr(mat, "run_partition", flaky)
    with pytest.raises(MaterializationFailed) as caught:
        feature_ws.features.materialize(NOW - timedelta(days=1), NOW, partitions=4)
    assert str(caught.value) == (
        "2 of 4 partitions of customer_stats (0, 2) failed: RuntimeError: Worker lost. The "
        "others are done; run the same materialization again to finish it."
    )


def test_incremental_starts_where_the_last_run_ended(
    feature_ws_factory: Callable[..., Workspace],
) -> None:
    ws = feature_ws_factory("sqlite")
    (first,) = ws.features.materialize_incremental(NOW - timedelta(hours=3))
    assert first.start == NOW - timedelta(hours=3) - timedelta(days=2)  # end - ttl
    assert online(ws, [2])["avg_purchase"] == [203.0]
    # a late correction of an old row (event 7 h ago), created just now
    late = pd.DataFrame(
        [
            {
                "customer_id": 2,
                "event_ts": NOW - timedelta(hours=7),
                "avg_purchase": -1.0,
                "n_orders": 0,
            }
        ]
    )
    ws.features.push("customer_stats", late, to="offline")
    (second,) = ws.features.materialize_incremental(NOW + timedelta(seconds=5))
    assert second.start == NOW - timedelta(hours=3)
    assert online(ws, [2])["avg_purchase"] == [204.0]  # the newest event still wins
    assert online(ws, [5])["avg_purchase"] == [504.0]


@pytest.mark.slow
def test_processes_executor(feature_ws_factory: Callable[..., Workspace]) -> None:
    ws = feature_ws_factory("sqlite")
    (result,) = ws.features.materialize(
        NOW - timedelta(days=1), NOW, executor="processes", partitions=2
    )
    assert result.rows == 20
    assert online(ws, [11])["n_orders"] == [15]


def test_redis_down_is_a_clear_error(feature_ws_factory: Callable[..., Workspace]) -> None:
    import socket

    from loopml.features.settings import FeaturesSettings

    ws = feature_ws_factory("sqlite")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws.settings = ws.settings.with_overrides(
        features=FeaturesSettings(online_store=f"redis://127.0.0.1:{port}/0")
    )
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
        ws.features.materialize(NOW - timedelta(days=1), NOW, partitions=2)
    with pytest.raises(OnlineStoreUnavailable, match="Start Redis"):
        online(ws, [1])


@pytest.mark.slow
def test_push_writes_online_and_the_offline_log(feature_ws: Workspace) -> None:
    fresh = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_ts": [NOW, NOW - timedelta(days=5)],  # the second is older than online
            "avg_purchase": [42.0, -1.0],
            "n_orders": [7, 0],
        }
    )
    feature_ws.features.materialize(NOW - timedelta(days=1), NOW)
    assert feature_ws.features.push("customer_stats", fresh) == 2
    got = online(feature_ws, [1, 2])
    assert got["avg_purchase"] == [42.0, 204.0]
    pushed = list(
        (feature_ws.root / ".loopml" / "features" / "pushed" / "customer_stats").iterdir()
    )
    assert len(pushed) == 1 and pushed[0].suffix == ".parquet"
    # training sets see the pushed row from now on, not before it was pushed
    later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)
    entity = pd.DataFrame(
        {"customer_id": [1, 1], "event_timestamp": [later, NOW - timedelta(minutes=1)]}
    )
    training = feature_ws.features.get_historical_features(entity, FEATURES)
    assert training["avg_purchase"].tolist() == [42.0, 104.0]


def test_push_checks_its_columns(feature_ws: Workspace) -> None:
    bad = pd.DataFrame({"customer_id": [1], "event_ts": [NOW], "avg_purchase": [1.0]})
    with pytest.raises(InvalidEntityFrame, match="'n_orders'"):
        feature_ws.features.push("customer_stats", bad)
    with pytest.raises(InvalidEntityFrame, match="no 'event_ts'"):
        bad = pd.DataFrame(
            {"customer_id": [1], "event_ts": [None], "avg_purchase": [1.0], "n_orders": [1]}
        )
        feature_ws.features.push("customer_stats", bad)


def test_partitions_cover_every_entity_once() -> None:
    view = stats_view()
    import duckdb

    con = duckdb.connect()
    con.register(
        "src",
        customer_stats(200).rename(
            columns={"event_ts": "__event_ts", "created_ts": "__created_ts"}
        ),
    )
    seen: list[int] = []
    for i in range(4):
        sql = mat.partition_sql(view, "SELECT * FROM src", 4, i, ttl_floor=False, late=False)
        rows = con.execute(sql, {"start": NOW - timedelta(days=9), "end": NOW}).fetchall()
        assert rows  # every slice gets some of 200 entities
        seen += [r[0] for r in rows]
    assert sorted(seen) == list(range(200))


@pytest.mark.slow
def test_ray_executor(
    feature_ws_factory: Callable[..., Workspace], ray_cluster: ModuleType
) -> None:
    """Partitions run as Ray tasks on a real local cluster and land in the same store."""
    ws = feature_ws_factory("sqlite")
    (result,) = ws.features.materialize(NOW - timedelta(days=1), NOW, executor="ray", partitions=3)
    assert (result.rows, result.ran) == (20, 3)
    assert online(ws, [11])["n_orders"] == [15]
