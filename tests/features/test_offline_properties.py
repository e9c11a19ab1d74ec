"""Training sets agree with the nested-loop reference (``reference.py``) on random data: ties
on event time, TTL edges, rows created late, missing entities, entity times before all data,
two join keys, two views, naive, aware and mixed entity times, DataFrame and Parquet sources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import reference
from loopml.features import DataFrameSource, Entity, FeatureView, Field, FileSource
from loopml.workspace import Workspace

# Property runs take seconds each: the whole suite runs them, the fast lane does not.
pytestmark = pytest.mark.slow

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PARIS = timezone(timedelta(hours=2))
EXAMPLES = settings(max_examples=35, deadline=None, database=None)

customer = Entity("customer", join_keys=["cid"])
store = Entity("store", join_keys=["sid"])


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """One workspace for every example: retrieval reads no metadata, only the definitions
    given with ``use``."""
    ws = Workspace.init(tmp_path_factory.mktemp("features-props"))
    yield ws
    ws.close()


def minute(n: int) -> datetime:
    return BASE + timedelta(minutes=n)


# -- random data ---------------------------------------------------------------------------------


@st.composite
def feature_rows(draw: st.DrawFn, two_keys: bool, created: bool = True) -> list[dict[str, Any]]:
    """Rows with few keys and times, so ties, TTL edges and late rows are common; never two
    rows equal in keys, event and created time (which of those is returned is undefined;
    without a created field, equal in keys and event time)."""
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2),  # cid
                st.integers(0, 1) if two_keys else st.just(0),  # sid
                st.integers(0, 12),  # event minute
                # created: None (the event time), or minutes late
                st.one_of(st.none(), st.integers(0, 5)) if created else st.none(),
            ),
            max_size=14,
            unique_by=lambda r: (r[0], r[1], r[2], r[2] + (r[3] or 0)),
        )
    )
    rows = []
    for i, (cid, sid, event, late) in enumerate(raw):
        rows.append(
            {
                "cid": cid,
                "sid": sid,
                "event_ts": minute(event),
                "created_ts": None if late is None else minute(event + late),
                "x": i + 0.5,  # unique: says which row was picked
                "n": 100 + i,
            }
        )
    return rows


entity_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # cid 3 has no feature rows
        st.integers(0, 1),
        st.integers(-3, 20),  # before all data, inside, after
    ),
    min_size=1,
    max_size=10,
)
ttls = st.sampled_from([None, 1, 2, 4])
time_styles = st.sampled_from(["aware_utc", "aware_paris", "naive", "mixed"])


def entity_frame(rows: list[tuple[int, int, int]], style: str) -> pd.DataFrame:
    """The entity frame with its times written in ``style``; ``label`` is passed through."""
    times: list[Any] = []
    for i, (_, _, t) in enumerate(rows):
        utc = minute(t)
        if style == "aware_utc":
            times.append(utc)
        elif style == "aware_paris" or (style == "mixed" and i % 2):
            times.append(utc.astimezone(PARIS))
        else:
            times.append(utc.replace(tzinfo=None))
    column: Any
    if style == "mixed":
        column = pd.Series(times, dtype=object)
    elif style == "naive":
        column = pd.to_datetime(times)
    else:
        column = pd.Series(pd.to_datetime(times, utc=True)).dt.tz_convert(
            "UTC" if style == "aware_utc" else "Europe/Paris"
        )
    return pd.DataFrame(
        {
            "cid": [r[0] for r in rows],
            "sid": [r[1] for r in rows],
            "event_timestamp": column,
            "label": [f"row{i}" for i in range(len(rows))],
        }
    )


def source_frame(rows: list[dict[str, Any]], naive: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows or [],
        columns=["cid", "sid", "event_ts", "created_ts", "x", "n"],
    )
    frame["cid"] = frame["cid"].astype("int64")
    frame["sid"] = frame["sid"].astype("int64")
    frame["x"] = frame["x"].astype("float64")
    frame["n"] = frame["n"].astype("int64")
    for column in ("event_ts", "created_ts"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
        if naive:
            frame[column] = frame[column].dt.tz_localize(None)
    return frame


def make_source(
    kind: str, frame: pd.DataFrame, folder: Path, created: bool
) -> DataFrameSource | FileSource:
    created_field = "created_ts" if created else None
    if kind == "dataframe":
        return DataFrameSource(frame, "event_ts", created_field)
    path = folder / f"{uuid4().hex}.parquet"
    frame.to_parquet(path, index=False)
    return FileSource(str(path), "event_ts", created_field)


def check(result: pd.DataFrame, expected: list[dict[str, Any]], entity: pd.DataFrame) -> None:
    features = [c for c in expected[0] if c not in entity.columns]
    assert list(result.columns) == [*entity.columns, *features]
    assert len(result) == len(entity)
    assert result["label"].tolist() == entity["label"].tolist()
    assert result["cid"].tolist() == entity["cid"].tolist()
    for i, want in enumerate(expected):
        for feature in features:
            got = result[feature].iloc[i]
            if want[feature] is None:
                assert pd.isna(got), (i, feature, got, want)
            else:
                assert not pd.isna(got) and got == want[feature], (i, feature, got, want)


def as_reference_rows(entity: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {**row, "event_timestamp": pd.Timestamp(row["event_timestamp"]).to_pydatetime()}
        for row in entity.to_dict("records")
    ]


# -- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dataframe", "parquet"])
@EXAMPLES
@given(
    data=st.booleans().flatmap(lambda c: st.tuples(st.just(c), feature_rows(False, c))),
    entities=entity_rows,
    ttl=ttls,
    style=time_styles,
    naive_source=st.booleans(),
)
def test_one_view_matches_the_reference(
    shared_ws: Workspace,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    data: tuple[bool, list[dict[str, Any]]],
    entities: list[tuple[int, int, int]],
    ttl: int | None,
    style: str,
    naive_source: bool,
) -> None:
    created, rows = data
    ttl_delta = None if ttl is None else timedelta(minutes=ttl)
    frame = source_frame(rows, naive_source)
    view = FeatureView(
        "stats",
        entities=[customer],
        source=make_source(kind, frame, tmp_path_factory.getbasetemp(), created),
        schema=[Field("x", "float64"), Field("n", "int64")],
        ttl=ttl_delta,
    )
    entity = entity_frame(entities, style)
    result = shared_ws.features.use(view).get_historical_features(entity, ["stats:x", "stats:n"])
    expected = reference.historical_features(
        as_reference_rows(entity),
        [
            reference.ReferenceView(
                "stats",
                ("cid",),
                ("x", "n"),
                rows,
                "event_ts",
                "created_ts" if created else None,
                ttl_delta,
            )
        ],
    )
    check(result, expected, entity)


@pytest.mark.parametrize("kind", ["dataframe", "parquet"])
@EXAMPLES
@given(
    rows_a=feature_rows(two_keys=False),
    rows_b=feature_rows(two_keys=True, created=False),
    entities=entity_rows,
    ttl_a=ttls,
    ttl_b=ttls,
    style=time_styles,
)
def test_two_views_and_two_join_keys_match_the_reference(
    shared_ws: Workspace,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    entities: list[tuple[int, int, int]],
    ttl_a: int | None,
    ttl_b: int | None,
    style: str,
) -> None:
    folder = tmp_path_factory.getbasetemp()
    delta_a = None if ttl_a is None else timedelta(minutes=ttl_a)
    delta_b = None if ttl_b is None else timedelta(minutes=ttl_b)
    by_customer = FeatureView(
        "by_customer",
        entities=[customer],
        source=make_source(kind, source_frame(rows_a, False), folder, True),
        schema=[Field("x", "float64")],
        ttl=delta_a,
    )
    # The second view has no created field: its rows are known at their event time.
    frame_b = source_frame(rows_b, False).rename(columns={"x": "y"}).drop(columns="created_ts")
    by_pair = FeatureView(
        "by_pair",
        entities=[customer, store],
        source=make_source(kind, frame_b, folder, False),
        schema=[Field("y", "float64")],
        ttl=delta_b,
    )
    entity = entity_frame(entities, style)
    result = shared_ws.features.use(by_customer, by_pair).get_historical_features(
        entity, [by_customer, by_pair]
    )
    expected = reference.historical_features(
        as_reference_rows(entity),
        [
            reference.ReferenceView(
                "by_customer", ("cid",), ("x",), rows_a, "event_ts", "created_ts", delta_a
            ),
            reference.ReferenceView(
                "by_pair",
                ("cid", "sid"),
                ("y",),
                [{**r, "y": r["x"]} for r in rows_b],
                "event_ts",
                None,
                delta_b,
            ),
        ],
    )
    check(result, expected, entity)


# Integer keys alike in their low 32 bits (the as-of join partitions on those), and strings.
WIDE_IDS = [0, 1, 2**32, 2**32 + 1, -1, 2**32 - 1]


@st.composite
def keyed_rows(draw: st.DrawFn, keys: st.SearchStrategy[tuple[Any, Any]]) -> list[dict[str, Any]]:
    """Rows keyed by ``(cid, sid)`` from ``keys``, with created times (None or minutes late)
    and no two equal in keys, event and created time."""
    raw = draw(
        st.lists(
            st.tuples(keys, st.integers(0, 12), st.one_of(st.none(), st.integers(0, 5))),
            max_size=14,
            unique_by=lambda r: (r[0], r[1], r[1] + (r[2] or 0)),
        )
    )
    return [
        {
            "cid": cid,
            "sid": sid,
            "event_ts": minute(event),
            "created_ts": None if late is None else minute(event + late),
            "x": i + 0.5,
        }
        for i, ((cid, sid), event, late) in enumerate(raw)
    ]


@EXAMPLES
@given(
    rows_a=keyed_rows(st.tuples(st.sampled_from(WIDE_IDS), st.just("a"))),
    rows_b=keyed_rows(st.tuples(st.sampled_from(WIDE_IDS[:3]), st.sampled_from(["a", "b", None]))),
    asked=st.lists(
        st.tuples(
            st.sampled_from([*WIDE_IDS, 7]), st.sampled_from(["a", "b"]), st.integers(-2, 20)
        ),
        min_size=1,
        max_size=10,
    ),
    ttl_a=ttls,
    ttl_b=ttls,
)
def test_wide_and_string_keys_of_two_late_views_match_the_reference(
    shared_ws: Workspace,
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    asked: list[tuple[int, str, int]],
    ttl_a: int | None,
    ttl_b: int | None,
) -> None:
    def frame(rows: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame:
        out = pd.DataFrame(rows or [], columns=[*keys, "event_ts", "created_ts", "x"])
        out["cid"] = out["cid"].astype("int64")
        out["x"] = out["x"].astype("float64")
        for column in ("event_ts", "created_ts"):
            out[column] = pd.to_datetime(out[column], utc=True)
        return out

    delta_a = None if ttl_a is None else timedelta(minutes=ttl_a)
    delta_b = None if ttl_b is None else timedelta(minutes=ttl_b)
    by_customer = FeatureView(
        "by_customer",
        entities=[customer],
        source=DataFrameSource(frame(rows_a, ["cid"]), "event_ts", "created_ts"),
        schema=[Field("x", "float64")],
        ttl=delta_a,
    )
    shop = Entity("shop", join_keys=["sid"])
    by_pair = FeatureView(
        "by_pair",
        entities=[customer, shop],
        source=DataFrameSource(
            frame(rows_b, ["cid", "sid"]).rename(columns={"x": "y"}), "event_ts", "created_ts"
        ),
        schema=[Field("y", "float64")],
        ttl=delta_b,
    )
    entity = pd.DataFrame(
        {
            "cid": [a[0] for a in asked],
            "sid": [a[1] for a in asked],
            "event_timestamp": [minute(a[2]) for a in asked],
            "label": [f"row{i}" for i in range(len(asked))],
        }
    )
    result = shared_ws.features.use(by_customer, by_pair).get_historical_features(
        entity, [by_customer, by_pair]
    )
    expected = reference.historical_features(
        as_reference_rows(entity),
        [
            reference.ReferenceView(
                "by_customer", ("cid",), ("x",), rows_a, "event_ts", "created_ts", delta_a
            ),
            reference.ReferenceView(
                "by_pair",
                ("cid", "sid"),
                ("y",),
                [{**r, "y": r["x"]} for r in rows_b],
                "event_ts",
                "created_ts",
                delta_b,
            ),
        ],
    )
    check(result, expected, entity)
