"""Training sets on purpose-built data: every kind of source and transform, on-demand views,
retrieval by time range, and every bad input with the message it gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from loopml.features import (
    DataFrameSource,
    Entity,
    FeatureDefinitionError,
    FeatureNotFound,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    InvalidEntityFrame,
    OnDemandFeatureView,
    RequestSource,
    SourceNotFound,
    SqlSource,
)
from loopml.features.offline import narrowing
from loopml.workspace import Workspace

DAY = timedelta(days=1)
T0 = datetime(2024, 5, 1, tzinfo=UTC)
customer = Entity("customer", join_keys=["customer_id"])


def at(days: float) -> datetime:
    return T0 + days * DAY


def stats_frame() -> pd.DataFrame:
    """Customer 1 at days 1 and 3 (the day-3 value corrected on day 5), customer 2 at day 2;
    each row known an hour after its event."""
    hour = timedelta(hours=1)
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2],
            "event_ts": [at(1), at(3), at(3), at(2)],
            "created_ts": [at(1) + hour, at(3) + hour, at(5), at(2) + hour],
            "spend": [1.0, 3.0, 30.0, 2.0],
            "orders": [10, 30, 300, 20],
        }
    )


def stats_view(source: object = None, **options: object) -> FeatureView:
    return FeatureView(
        "stats",
        entities=[customer],
        source=source or DataFrameSource(stats_frame(), "event_ts", "created_ts"),  # type: ignore[arg-type]
        schema=[Field("spend", "float64"), Field("orders", "int64")],
        **options,  # type: ignore[arg-type]
    )


def entities(*rows: tuple[int, datetime]) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]}
    )


def spend(frame: pd.DataFrame, column: str = "spend") -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in frame[column]]


@pytest.fixture
def ws(sqlite_ws: Workspace) -> Workspace:
    return sqlite_ws


# -- point in time -----------------------------------------------------------------------------


def test_values_are_the_latest_known_at_each_row_time(ws: Workspace) -> None:
    view = stats_view()
    frame = entities(
        (1, at(0.5)),  # before any data
        (1, at(1) + timedelta(minutes=30)),  # true but not known yet
        (1, at(2)),
        (1, at(4)),  # day 3 known, its correction not yet
        (1, at(6)),  # the correction is known
        (2, at(9)),
        (3, at(9)),  # no data at all
    )
    result = ws.features.use(view).get_historical_features(frame, ["stats:spend", "stats:orders"])
    assert spend(result) == [None, None, 1.0, 3.0, 30.0, 2.0, None]
    assert result["orders"].isna().tolist() == [True, True, False, False, False, False, True]
    assert result["orders"].dropna().astype(int).tolist() == [10, 30, 300, 20]


def test_ttl_keeps_a_value_exactly_ttl_old_and_drops_an_older_one(ws: Workspace) -> None:
    view = stats_view(ttl=timedelta(days=2))
    frame = entities(
        (2, at(4)),  # exactly two days after day 2
        (2, at(4) + timedelta(microseconds=1)),
        (1, at(5)),  # day 3's correction, created day 5, exactly 2 days old
    )
    result = ws.features.use(view).get_historical_features(frame, ["stats:spend"])
    assert spend(result) == [2.0, None, 30.0]


def test_later_created_row_wins_a_tie_on_event_time_once_known(ws: Workspace) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1],
            "event_ts": [at(1), at(1)],
            "created_ts": [at(3), at(2)],  # the later correction comes first in the file
            "spend": [1.3, 1.2],
            "orders": [13, 12],
        }
    )
    view = stats_view(DataFrameSource(frame, "event_ts", "created_ts"))
    result = ws.features.use(view).get_historical_features(
        entities((1, at(1.5)), (1, at(2.5)), (1, at(3.5))), ["stats:spend"]
    )
    assert spend(result) == [None, 1.2, 1.3]


def test_late_rows_are_recomputed_in_place_keeping_integer_values(ws: Workspace) -> None:
    # Every as-of match has a value (an int64 column), but two rows' matches were created
    # after their time: one falls back to the older known row, one has none known at all.
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3],
            "event_ts": [at(1), at(2), at(2), at(1)],
            "created_ts": [at(1), at(3), at(3), at(1)],
            "spend": [1.0, 2.0, 20.0, 5.0],
            "orders": [10, 20, 200, 50],
        }
    )
    view = stats_view(DataFrameSource(frame, "event_ts", "created_ts"))
    result = ws.features.use(view).get_historical_features(
        entities((3, at(4)), (1, at(2.5)), (2, at(2.5)), (1, at(4))),
        ["stats:spend", "stats:orders"],
    )
    assert spend(result) == [5.0, 1.0, None, 2.0]
    assert [None if pd.isna(v) else int(v) for v in result["orders"]] == [50, 10, None, 20]


def test_duplicate_rows_without_created_field_give_one_of_them(ws: Workspace) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "event_ts": [at(1), at(1), at(0)],
            "spend": [1.0, 1.5, 0.5],
            "orders": [1, 2, 0],
        }
    )
    view = stats_view(DataFrameSource(frame, "event_ts"))
    result = ws.features.use(view).get_historical_features(
        entities((1, at(2)), (1, at(0.5))), ["stats:spend", "stats:orders"]
    )
    assert result["spend"].iloc[0] in {1.0, 1.5}
    # Both features come from the same row, never one from each.
    assert (result["spend"].iloc[0], result["orders"].iloc[0]) in {(1.0, 1), (1.5, 2)}
    assert spend(result)[1] == 0.5


def test_output_keeps_entity_order_length_and_columns_with_nulls(ws: Workspace) -> None:
    frame = entities((3, at(9)), (2, at(9)), (1, at(0)), (2, at(9)), (1, at(6)), (7, at(1)))
    frame["label"] = ["a", "b", "c", "d", "e", "f"]
    frame.index = [50, 40, 30, 20, 10, 0]
    result = ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])
    assert list(result.columns) == ["customer_id", "event_timestamp", "label", "spend"]
    assert result["label"].tolist() == ["a", "b", "c", "d", "e", "f"]
    assert result["customer_id"].tolist() == [3, 2, 1, 2, 1, 7]
    assert spend(result) == [None, 2.0, None, 2.0, 30.0, None]
    assert list(result.index) == list(range(6))


def test_an_arrow_entity_table_and_a_named_timestamp_column(ws: Workspace) -> None:
    frame = entities((1, at(2)), (2, at(3))).rename(columns={"event_timestamp": "asked_at"})
    result = ws.features.use(stats_view()).get_historical_features(
        pa.Table.from_pandas(frame), ["stats:spend"], event_timestamp_column="asked_at"
    )
    assert spend(result) == [1.0, 2.0]


def test_keys_alike_in_their_low_32_bits_never_share_values(ws: Workspace) -> None:
    # The as-of join partitions on 32 bits of an integer key: 7 and 7 + 2**32 (and -1 and
    # 2**32 - 1) land together, and a match of the other key is recomputed, never returned.
    big, minus = 7 + 2**32, 2**32 - 1
    frame = pd.DataFrame(
        {
            "customer_id": [7, big, -1, minus],
            "event_ts": [at(1), at(2), at(1), at(2)],
            "created_ts": [at(1), at(2), at(1), at(2)],
            "spend": [1.0, 2.0, 3.0, 4.0],
            "orders": [1, 2, 3, 4],
        }
    )
    view = stats_view(DataFrameSource(frame, "event_ts", "created_ts"))
    result = ws.features.use(view).get_historical_features(
        entities((7, at(3)), (big, at(1.5)), (big, at(3)), (-1, at(3)), (minus, at(1.5))),
        ["stats:spend", "stats:orders"],
    )
    assert spend(result) == [1.0, None, 2.0, 3.0, None]


def test_string_and_two_part_keys(ws: Workspace) -> None:
    shop = Entity("shop", join_keys=["shop"])
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "a", None],
            "shop": [1, 2, 1, 1, 1],
            "event_ts": [at(1), at(1), at(1), at(2), at(0)],
            "created_ts": [at(1), at(1), at(1), at(4), at(0)],
            "spend": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    view = FeatureView(
        "pairs",
        entities=[customer, shop],
        source=DataFrameSource(frame, "event_ts", "created_ts"),
        schema=[Field("spend", "float64")],
    )
    asked = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "a", None],
            "shop": [1, 2, 1, 2, 1, 1],
            "event_timestamp": [at(3), at(3), at(3), at(3), at(5), at(3)],
        }
    )
    result = ws.features.use(view).get_historical_features(asked, ["pairs:spend"])
    # (a, 1) at day 3: day 2's row isn't known until day 4; a null key matches nothing.
    assert spend(result) == [1.0, 2.0, 3.0, None, 4.0, None]


def test_keys_of_other_types_in_the_entity_frame_still_join(ws: Workspace) -> None:
    # Float keys in the entity frame (integers with a gap read by pandas) against integer
    # keys in the source: joined on the values, not on a 32-bit image of them.
    frame = pd.DataFrame(
        {"customer_id": [1.0, 2.0, float("nan")], "event_timestamp": [at(2), at(3), at(3)]}
    )
    result = ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])
    assert spend(result) == [1.0, 2.0, None]


def test_narrowing_of_join_keys() -> None:
    assert narrowing([("BIGINT", "BIGINT")]) == "int"
    assert narrowing([("UBIGINT", "UBIGINT")]) == "uint"
    assert narrowing([("HUGEINT", "HUGEINT")]) == "hash"
    assert narrowing([("INTEGER", "INTEGER")]) is None  # already short
    assert narrowing([("VARCHAR", "VARCHAR")]) == "hash"
    assert narrowing([("BIGINT", "BIGINT"), ("VARCHAR", "VARCHAR")]) == "hash"
    assert narrowing([("DOUBLE", "BIGINT")]) is None  # types differ: DuckDB casts
    assert narrowing([("DOUBLE", "DOUBLE")]) is None  # -0.0 = 0.0 but hashes apart


# -- entity frames that can't be joined --------------------------------------------------------


def test_entity_frame_without_a_join_key(ws: Workspace) -> None:
    frame = pd.DataFrame({"cust": [1], "event_timestamp": [at(1)]})
    with pytest.raises(InvalidEntityFrame, match=r"no join key column 'customer_id'.*cust"):
        ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])


def test_entity_frame_without_a_timestamp_column(ws: Workspace) -> None:
    frame = pd.DataFrame({"customer_id": [1], "ts": [at(1)]})
    with pytest.raises(
        InvalidEntityFrame, match=r"no timestamp column 'event_timestamp'.*event_timestamp_column="
    ):
        ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])


def test_entity_frame_that_is_not_a_frame(ws: Workspace) -> None:
    with pytest.raises(InvalidEntityFrame, match="pandas DataFrame or Arrow table, not list"):
        ws.features.use(stats_view()).get_historical_features([{"customer_id": 1}], ["stats:spend"])


def test_naive_and_aware_times_mixed_are_read_as_utc(ws: Workspace) -> None:
    paris = timezone(timedelta(hours=2))
    times = pd.Series(
        [
            datetime(2024, 5, 3, 12, 0),  # naive: UTC
            datetime(2024, 5, 2, 2, 30, tzinfo=paris),  # 00:30 UTC: day 1 not known yet
            "2024-05-04T03:00:00+02:00",  # 01:00 UTC: day 3 known just then
        ],
        dtype=object,
    )
    frame = pd.DataFrame({"customer_id": [1, 1, 1], "event_timestamp": times})
    result = ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])
    assert spend(result) == [1.0, None, 3.0]
    assert result["event_timestamp"].tolist() == [
        pd.Timestamp("2024-05-03 12:00", tz="UTC"),
        pd.Timestamp("2024-05-02 00:30", tz="UTC"),
        pd.Timestamp("2024-05-04 01:00", tz="UTC"),
    ]


def test_aware_times_in_another_zone_are_converted(ws: Workspace) -> None:
    frame = entities((2, at(2))).astype({"event_timestamp": "datetime64[us, Asia/Tokyo]"})
    # 09:00 in Tokyo on 3 May is midnight UTC: day 2's row is not known until 01:00 UTC.
    result = ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])
    assert spend(result) == [None]
    later = entities((2, at(2) + timedelta(hours=1))).astype(
        {"event_timestamp": "datetime64[us, Asia/Tokyo]"}
    )
    assert spend(ws.features.get_historical_features(later, ["stats:spend"])) == [2.0]


def test_unparseable_timestamps(ws: Workspace) -> None:
    frame = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": ["2024-05-02", "soon"]})
    with pytest.raises(
        InvalidEntityFrame, match="'event_timestamp' holds values that aren't times"
    ):
        ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])


def test_missing_timestamps(ws: Workspace) -> None:
    frame = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [at(1), pd.NaT]})
    with pytest.raises(InvalidEntityFrame, match=r"1 row\(s\) of the entity frame have no"):
        ws.features.use(stats_view()).get_historical_features(frame, ["stats:spend"])


# -- naming features ---------------------------------------------------------------------------


def test_unknown_feature_suggests_close_names(ws: Workspace) -> None:
    fs = ws.features.use(stats_view())
    with pytest.raises(
        FeatureNotFound, match=r"'stats' has no feature 'spnd'\. Did you mean 'spend'"
    ):
        fs.get_historical_features(entities((1, at(1))), ["stats:spnd"])
    with pytest.raises(FeatureNotFound, match=r"No feature view 'stat'\. Did you mean 'stats'"):
        fs.get_historical_features(entities((1, at(1))), ["stat:spend"])
    with pytest.raises(FeatureNotFound, match=r"No feature service 'stats_v1'"):
        fs.get_historical_features(entities((1, at(1))), "stats_v1")


@pytest.mark.parametrize("name", ["stats:", "stats", ":"])
def test_malformed_feature_reference(ws: Workspace, name: str) -> None:
    with pytest.raises(FeatureNotFound, match=r"name it as VIEW:FEATURE"):
        ws.features.use(stats_view()).get_historical_features(
            entities((1, at(1))), [name, "stats:spend"]
        )


def test_no_features_named(ws: Workspace) -> None:
    fs = ws.features.use(stats_view())
    with pytest.raises(FeatureNotFound, match="Name the features"):
        fs.get_historical_features(entities((1, at(1))))
    with pytest.raises(FeatureNotFound, match="No features asked for"):
        fs.get_historical_features(entities((1, at(1))), [])


def test_bare_name_collision_needs_full_feature_names(ws: Workspace) -> None:
    other = pd.DataFrame({"customer_id": [1], "event_ts": [at(0)], "spend": [9.0]})
    refunds = FeatureView(
        "refunds",
        entities=[customer],
        source=DataFrameSource(other, "event_ts"),
        schema=[Field("spend")],
    )
    fs = ws.features.use(stats_view(), refunds)
    frame = entities((1, at(3)), (2, at(3)))
    with pytest.raises(
        FeatureDefinitionError,
        match=r"'spend' comes from both 'stats' and 'refunds'.*full_feature_names=True",
    ):
        fs.get_historical_features(frame, ["stats:spend", "refunds:spend"])
    result = fs.get_historical_features(
        frame, ["stats:spend", "refunds:spend"], full_feature_names=True
    )
    assert list(result.columns) == [
        "customer_id",
        "event_timestamp",
        "stats__spend",
        "refunds__spend",
    ]
    assert spend(result, "stats__spend") == [1.0, 2.0]
    assert spend(result, "refunds__spend") == [9.0, None]


def test_a_feature_service_and_view_selections(ws: Workspace) -> None:
    view = stats_view()
    service = FeatureService("churn_v1", [view[["orders"]]])
    fs = ws.features.use(view, service)
    frame = entities((1, at(2)))
    assert fs.get_historical_features(frame, service)["orders"].tolist() == [10]
    assert list(fs.get_historical_features(frame, "churn_v1").columns)[-1] == "orders"
    both = fs.get_historical_features(frame, [view[["spend"]], "stats:orders"])
    assert list(both.columns) == ["customer_id", "event_timestamp", "spend", "orders"]


# -- sources -----------------------------------------------------------------------------------


def test_missing_source_file(ws: Workspace) -> None:
    view = stats_view(FileSource("data/nowhere.parquet", "event_ts", "created_ts"))
    with pytest.raises(
        SourceNotFound, match=r"'data/nowhere.parquet' matches no parquet file.*looked in"
    ):
        ws.features.use(view).get_historical_features(entities((1, at(1))), ["stats:spend"])


def test_source_missing_a_column(ws: Workspace) -> None:
    frame = stats_frame().drop(columns="orders")
    view = stats_view(DataFrameSource(frame, "event_ts", "created_ts"))
    with pytest.raises(FeatureDefinitionError, match=r"view 'stats' has no column 'orders'"):
        ws.features.use(view).get_historical_features(entities((1, at(1))), ["stats:spend"])
    wrong_time = stats_view(DataFrameSource(stats_frame(), "ts", "created_ts"))
    with pytest.raises(FeatureDefinitionError, match=r"has no column 'ts'"):
        ws.features.use(wrong_time).get_historical_features(entities((1, at(1))), ["stats:spend"])


def test_source_query_that_fails(ws: Workspace) -> None:
    view = stats_view(SqlSource("select * from no_such_table", "event_ts"))
    with pytest.raises(FeatureDefinitionError, match=r"source of view 'stats' can't be read"):
        ws.features.use(view).get_historical_features(entities((1, at(1))), ["stats:spend"])


def write(ws: Workspace, relative: str, frame: pd.DataFrame) -> Path:
    path = ws.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if relative.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


EXPECTED = [None, 1.0, 30.0, 2.0]
PROBE = ((1, at(0)), (1, at(2)), (1, at(6)), (2, at(6)))


def test_parquet_file_relative_to_the_workspace(ws: Workspace) -> None:
    write(ws, "data/stats.parquet", stats_frame())
    view = stats_view(FileSource("data/stats.parquet", "event_ts", "created_ts"))
    assert (
        spend(ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"]))
        == EXPECTED
    )


def test_glob_and_folder_of_parquet_files(ws: Workspace) -> None:
    frame = stats_frame()
    write(ws, "data/parts/a.parquet", frame.iloc[:2])
    write(ws, "data/parts/b.parquet", frame.iloc[2:])
    for path in ("data/parts/*.parquet", "data/parts"):
        view = stats_view(FileSource(path, "event_ts", "created_ts"))
        result = ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"])
        assert spend(result) == EXPECTED, path


def test_csv_file(ws: Workspace) -> None:
    frame = stats_frame()
    for column in ("event_ts", "created_ts"):
        frame[column] = frame[column].map(lambda t: t.isoformat())
    path = write(ws, "data/stats.csv", frame)
    view = stats_view(FileSource(str(path), "event_ts", "created_ts"))
    assert view.source.spec()["format"] == "csv"
    assert (
        spend(ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"]))
        == EXPECTED
    )


def test_an_empty_csv_source_is_called_empty(ws: Workspace) -> None:
    (ws.root / "data").mkdir(exist_ok=True)
    (ws.root / "data" / "empty.csv").write_text("")
    view = stats_view(FileSource("data/empty.csv", "event_ts", "created_ts"))
    with pytest.raises(FeatureDefinitionError) as caught:
        ws.features.use(view).get_historical_features(entities((1, at(1))), ["stats:spend"])
    assert str(caught.value).startswith(
        "The source of view 'stats' is empty: 'data/empty.csv' has no header line and no rows"
    )
    assert "column0" not in str(caught.value)
    # an empty file beside others holds no rows: the others are read
    frame = stats_frame()
    for column in ("event_ts", "created_ts"):
        frame[column] = frame[column].map(lambda t: t.isoformat())
    write(ws, "data/parts/a.csv", frame)
    (ws.root / "data" / "parts" / "b.csv").write_text("\n")
    view = stats_view(FileSource("data/parts/*.csv", "event_ts", "created_ts"))
    result = ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"])
    assert spend(result) == EXPECTED


def test_sql_source(ws: Workspace) -> None:
    path = write(ws, "data/raw.parquet", stats_frame().rename(columns={"spend": "amount"}))
    query = f"select *, amount as spend from read_parquet('{path}');"
    view = stats_view(SqlSource(query, "event_ts", "created_ts"))
    assert not view.source.spec()["query"].endswith(";")
    assert (
        spend(ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"]))
        == EXPECTED
    )


def test_transform_sql_runs_over_the_source(ws: Workspace) -> None:
    view = stats_view(
        transform_sql="select customer_id, event_ts, created_ts, spend * 2 as spend, orders "
        "from source where orders < 300"
    )
    result = ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"])
    # Without the correction (filtered out), day 3's first value stands.
    assert spend(result) == [None, 2.0, 6.0, 4.0]


def test_python_transform_runs_over_the_source(ws: Workspace) -> None:
    def with_orders(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(spend=frame["spend"] + frame["orders"])

    view = stats_view(transform=with_orders)
    result = ws.features.use(view).get_historical_features(entities(*PROBE), ["stats:spend"])
    assert spend(result) == [None, 11.0, 330.0, 22.0]


def test_on_demand_view_over_stored_features_and_request_fields(ws: Workspace) -> None:
    view = stats_view()
    request = RequestSource("order", [Field("amount", "float64")])

    def ratio(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"amount_vs_spend": frame["amount"] / frame["spend"]})

    on_demand = OnDemandFeatureView(
        "ratios",
        sources=[view[["spend"]], request],
        schema=[Field("amount_vs_spend")],
        function=ratio,
    )
    fs = ws.features.use(view, on_demand)
    frame = entities((1, at(2)), (2, at(6)), (3, at(6)))
    frame["amount"] = [5.0, 4.0, 1.0]
    result = fs.get_historical_features(frame, ["ratios:amount_vs_spend", "stats:orders"])
    assert list(result.columns) == [
        "customer_id",
        "event_timestamp",
        "amount",
        "amount_vs_spend",
        "orders",
    ]
    assert spend(result, "amount_vs_spend") == [5.0, 2.0, None]
    # The stored input is fetched for the function but not returned unless asked for.
    assert "spend" not in result.columns
    full = fs.get_historical_features(frame, [on_demand], full_feature_names=True)
    assert spend(full, "ratios__amount_vs_spend") == [5.0, 2.0, None]
    # Another view's feature with the input's bare name is not taken for the input.
    other = pd.DataFrame({"customer_id": [1, 2], "event_ts": [at(0), at(0)], "spend": [-1.0, -1.0]})
    refunds = FeatureView(
        "refunds",
        entities=[customer],
        source=DataFrameSource(other, "event_ts"),
        schema=[Field("spend")],
    )
    mixed = fs.use(view, on_demand, refunds).get_historical_features(
        frame, ["refunds:spend", "ratios:amount_vs_spend"]
    )
    assert spend(mixed) == [-1.0, -1.0, None]
    assert spend(mixed, "amount_vs_spend") == [5.0, 2.0, None]
    with pytest.raises(InvalidEntityFrame, match="needs the request field 'amount'"):
        fs.get_historical_features(frame.drop(columns="amount"), [on_demand])


def test_on_demand_function_missing_a_column(ws: Workspace) -> None:
    view = stats_view()
    broken = OnDemandFeatureView(
        "broken", sources=[view], schema=[Field("double")], function=lambda f: f[["spend"]]
    )
    with pytest.raises(FeatureDefinitionError, match="'broken' returned no column 'double'"):
        ws.features.use(view, broken).get_historical_features(entities((1, at(2))), [broken])


# -- by time range -----------------------------------------------------------------------------


def test_time_range_takes_every_entity_and_event_time(ws: Workspace) -> None:
    fs = ws.features.use(stats_view())
    result = fs.get_historical_features(features=["stats:spend"], start=at(1.5), end=at(3))
    assert list(result.columns) == ["customer_id", "event_timestamp", "spend"]
    # Day 2 (customer 2) and day 3 (customer 1, once: rows with the same key and time are one
    # entity row), each with what was known at its event time: nothing yet, an hour early.
    assert result["customer_id"].tolist() == [2, 1]
    assert result["event_timestamp"].tolist() == [pd.Timestamp(at(2)), pd.Timestamp(at(3))]
    assert spend(result) == [None, 1.0]
    naive = fs.get_historical_features(
        features=["stats:spend"], start="2024-05-02 12:00", end="2024-05-03 12:00"
    )
    assert naive["customer_id"].tolist() == [2]


def test_time_range_needs_start_and_end(ws: Workspace) -> None:
    with pytest.raises(FeatureDefinitionError, match="start= and end="):
        ws.features.use(stats_view()).get_historical_features(features=["stats:spend"], start=at(1))
