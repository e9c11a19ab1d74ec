"""The online store contract: every backend (SQLite, Redis) passes the same tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from loopml.features import Field, OnlineStoreUnavailable
from loopml.features.online import (
    OnlineRow,
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    entity_key,
    open_online_store,
    to_micros,
)

FIELDS = (Field("x", "float64"), Field("n", "int64"))
T0 = to_micros(datetime(2024, 5, 1, tzinfo=UTC))


def row(key: str, event: int, created: int | None = None, **values: object) -> OnlineRow:
    return OnlineRow(key, event, event if created is None else created, values)


def test_write_then_read(online_store: OnlineStore) -> None:
    assert online_store.write("v", [row("1", T0, x=1.5, n=3), row("2", T0, x=2.5, n=4)]) == 2
    one, two = online_store.read("v", ["1", "2"], FIELDS)
    assert one is not None and one.values == [1.5, 3] and one.event_us == T0
    assert two is not None and two.values == [2.5, 4]
    assert online_store.read("v", ["2"], FIELDS)[0] == two


def test_missing_keys_read_as_none_in_order(online_store: OnlineStore) -> None:
    online_store.write("v", [row("1", T0, x=1.0, n=1)])
    found = online_store.read("v", ["nope", "1", "nope"], FIELDS)
    assert found[0] is None and found[2] is None
    assert found[1] is not None and found[1].values == [1.0, 1]
    assert online_store.read("other_view", ["1"], FIELDS) == [None]
    assert online_store.read("v", ["2"], FIELDS) == [None]


def test_newer_event_wins_and_older_is_ignored(online_store: OnlineStore) -> None:
    online_store.write("v", [row("1", T0 + 10, x=2.0, n=2)])
    online_store.write("v", [row("1", T0, x=1.0, n=1)])  # older: ignored
    assert online_store.read("v", ["1"], FIELDS)[0].values == [2.0, 2]  # type: ignore[union-attr]
    online_store.write("v", [row("1", T0 + 20, x=3.0, n=3)])
    assert online_store.read("v", ["1"], FIELDS)[0].values == [3.0, 3]  # type: ignore[union-attr]


def test_equal_event_time_is_decided_by_created_time(online_store: OnlineStore) -> None:
    online_store.write("v", [row("1", T0, T0 + 5, x=1.0, n=1)])
    online_store.write("v", [row("1", T0, T0 + 1, x=9.0, n=9)])  # same event, created earlier
    assert online_store.read("v", ["1"], FIELDS)[0].values == [1.0, 1]  # type: ignore[union-attr]
    online_store.write("v", [row("1", T0, T0 + 7, x=2.0, n=2)])  # a later correction
    assert online_store.read("v", ["1"], FIELDS)[0].values == [2.0, 2]  # type: ignore[union-attr]


def test_a_batch_with_one_key_twice_keeps_the_newest(online_store: OnlineStore) -> None:
    online_store.write("v", [row("1", T0 + 5, x=5.0, n=5), row("1", T0, x=0.0, n=0)])
    assert online_store.read("v", ["1"], FIELDS)[0].values == [5.0, 5]  # type: ignore[union-attr]


def test_writing_twice_changes_nothing(online_store: OnlineStore) -> None:
    rows = [row(str(i), T0 + i, x=float(i), n=i) for i in range(50)]
    online_store.write("v", rows)
    first = online_store.read("v", [str(i) for i in range(50)], FIELDS)
    online_store.write("v", rows)
    assert online_store.read("v", [str(i) for i in range(50)], FIELDS) == first


def test_multiple_join_keys(online_store: OnlineStore) -> None:
    online_store.write(
        "v",
        [
            row(entity_key([1, "a"]), T0, x=1.0, n=1),
            row(entity_key([1, "b"]), T0, x=2.0, n=2),
            row(entity_key([2, "a"]), T0, x=3.0, n=3),
        ],
    )
    keys = [entity_key([1, "b"]), entity_key([2, "a"]), entity_key([2, "b"])]
    got = online_store.read("v", keys, FIELDS)
    assert [g.values if g else None for g in got] == [[2.0, 2], [3.0, 3], None]


def test_types_round_trip(online_store: OnlineStore) -> None:
    stamp = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    fields = (
        Field("f", "float64"),
        Field("i", "int64"),
        Field("s", "string"),
        Field("b", "bool"),
        Field("t", "timestamp"),
        Field("z", "float64"),
        Field("big", "int64"),
        Field("nan", "float64"),
    )
    values = {
        "f": 0.1,
        "i": -7,
        "s": 'héllo, "quoted" \n',
        "b": False,
        "t": stamp,
        "z": None,
        "big": 2**62 + 1,
        "nan": float("nan"),
    }
    online_store.write("v", [OnlineRow("k", T0, T0, values)])
    got = online_store.read("v", ["k"], fields)[0]
    assert got is not None
    f, i, s, b, t, z, big, nan = got.values
    assert (f, i, s, b, t, z, big) == (0.1, -7, values["s"], False, stamp, None, 2**62 + 1)
    assert type(i) is int and type(b) is bool and type(f) is float
    assert nan != nan  # NaN stays NaN
    # a field the row never had (added to the view later) reads as None
    assert online_store.read("v", ["k"], (Field("new", "int64"),))[0].values == [None]  # type: ignore[union-attr]


def test_entity_keys_are_the_same_for_equal_ids() -> None:
    import numpy as np

    assert entity_key([1]) == entity_key([np.int64(1)]) == entity_key([1.0]) == entity_key(["1"])
    assert entity_key([2**62 + 1]) == str(2**62 + 1)  # no float rounding
    assert entity_key([1, "a"]) != entity_key(["1a"])


def test_delete_keys_and_clear_a_view(online_store: OnlineStore) -> None:
    online_store.write("v", [row(str(i), T0, x=1.0, n=i) for i in range(5)])
    online_store.write("w", [row("1", T0, x=1.0, n=1)])
    online_store.delete("v", ["0", "1"])
    got = online_store.read("v", [str(i) for i in range(5)], FIELDS)
    assert [g is None for g in got] == [True, True, False, False, False]
    online_store.delete("v")
    assert online_store.read("v", [str(i) for i in range(5)], FIELDS) == [None] * 5
    assert online_store.read("w", ["1"], FIELDS)[0] is not None  # other views are kept
    online_store.write("v", [row("0", T0 - 100, x=1.0, n=0)])  # a cleared view takes any time
    assert online_store.read("v", ["0"], FIELDS)[0] is not None


def test_big_batch(online_store: OnlineStore) -> None:
    n = 12_000
    assert online_store.write("v", (row(str(i), T0 + i, x=i / 2, n=i) for i in range(n))) == n
    keys = [str(i) for i in range(0, n, 7)]
    got = online_store.read("v", keys, FIELDS)
    assert all(
        g is not None and g.values == [int(k) / 2, int(k)] for k, g in zip(keys, got, strict=True)
    )


@pytest.mark.slow
def test_concurrent_writers_keep_the_newest(online_store: OnlineStore) -> None:
    """Eight threads write the same 200 keys with interleaved times: the newest always wins."""
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for rnd in range(5):
                event = T0 + rnd * 8 + w
                online_store.write(
                    "v", [row(str(k), event, x=float(event), n=w) for k in range(200)]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    newest = T0 + 4 * 8 + 7
    got = online_store.read("v", [str(k) for k in range(200)], FIELDS)
    assert all(
        g is not None and g.event_us == newest and g.values == [float(newest), 7] for g in got
    )


def test_open_by_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    default = open_online_store("", tmp_path)
    assert isinstance(default, SqliteOnlineStore)
    assert default.path == tmp_path / ".loopml" / "online.sqlite"
    relative = open_online_store("sqlite:///state/o.sqlite", tmp_path)
    assert isinstance(relative, SqliteOnlineStore) and relative.path == tmp_path / "state/o.sqlite"
    redis = open_online_store("redis://localhost:6379/1?prefix=team", tmp_path)
    assert isinstance(redis, RedisOnlineStore) and redis.prefix == "team"
    from loopml.exceptions import InvalidConfig

    with pytest.raises(InvalidConfig, match="redis://host:port/db"):
        open_online_store("mongodb://x", tmp_path)


def test_redis_down_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisOnlineStore(f"redis://:secret@127.0.0.1:{port}/0")
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}") as caught:
        store.read("v", ["1"], FIELDS)
    assert "secret" not in str(caught.value) and "Start Redis" in str(caught.value)
    with pytest.raises(OnlineStoreUnavailable):
        store.write("v", [row("1", T0, x=1.0, n=1)])
