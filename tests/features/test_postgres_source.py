"""A feature view over a PostgreSQL table or query (the real test server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from loopml.features import (
    Entity,
    FeatureDefinitionError,
    FeatureView,
    Field,
    PostgresSource,
    SourceNotFound,
)
from loopml.workspace import Workspace
from services import drop_postgres_database, fresh_postgres_url

T0 = pd.Timestamp("2026-03-01", tz="UTC")


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = fresh_postgres_url()
    engine = create_engine(url)
    pd.DataFrame(
        {
            "driver_id": [7, 7, 8],
            "ts": [T0, T0 + timedelta(hours=2), T0],
            "rating": [4.5, 4.9, 3.0],
        }
    ).to_sql("driver_stats", engine, index=False)
    engine.dispose()
    yield url
    drop_postgres_database(url)


def _view(source: PostgresSource) -> FeatureView:
    driver = Entity("driver", ["driver_id"])
    return FeatureView("drivers", [driver], source, [Field("rating")], ttl=timedelta(days=1))


@pytest.mark.slow
def test_a_view_reads_a_postgres_table_or_query(tmp_path: Path, pg_url: str) -> None:
    ws = Workspace.init(tmp_path)
    entities = pd.DataFrame(
        {
            "driver_id": [7, 7, 8, 9],
            "event_timestamp": [T0 + timedelta(hours=h) for h in (1, 3, 1, 1)],
        }
    )
    table = _view(PostgresSource("ts", table="driver_stats", url=pg_url))
    out = ws.features.use(table).get_historical_features(entities, [table])
    assert out["rating"].tolist()[:3] == [4.5, 4.9, 3.0] and pd.isna(out["rating"][3])

    query = _view(
        PostgresSource(
            "ts", query="SELECT driver_id, ts, rating * 2 AS rating FROM driver_stats", url=pg_url
        )
    )
    doubled = ws.features.use(query).get_historical_features(entities, [query])
    assert doubled["rating"].tolist()[:3] == [9.0, 9.8, 6.0]
    secret = PostgresSource("ts", table="t", url="postgresql+psycopg://me:s3cret@db/features")
    assert secret.spec()["url"] == "postgresql+psycopg://me:***@db/features"


@pytest.mark.slow
def test_postgres_source_errors_are_clear(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path)
    entities = pd.DataFrame({"driver_id": [7], "event_timestamp": [T0]})
    missing = _view(PostgresSource("ts", table="no_such_table", url=pg_url))
    with pytest.raises(SourceNotFound, match="no_such_table"):
        ws.features.use(missing).get_historical_features(entities, [missing])
    monkeypatch.delenv("LOOPML_FEATURES_POSTGRES_URL", raising=False)
    no_url = _view(PostgresSource("ts", table="driver_stats"))
    with pytest.raises(FeatureDefinitionError, match="LOOPML_FEATURES_POSTGRES_URL"):
        ws.features.use(no_url).get_historical_features(entities, [no_url])
    monkeypatch.setenv("LOOPML_FEATURES_POSTGRES_URL", pg_url)
    assert ws.features.get_historical_features(entities, [no_url])["rating"].tolist() == [4.5]
    with pytest.raises(FeatureDefinitionError, match="table= or query="):
        PostgresSource("ts")
