"""Feature store benchmark: loopml against Feast and the bare limits, side by side in one run.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/features.py                 # 10,000 entities x 100 times, 100,000 rows
    python benchmarks/features.py --quick         # 1,000 entities x 100 times, 10,000 rows
    python benchmarks/features.py --cases online --redis-url redis://127.0.0.1:6379/0

Feast runs from its own virtualenv, ``benchmarks/.venvs/feast`` (make it with
``benchmarks/setup_peer.sh feast``), so it never becomes a project dependency. Every
measurement is a fresh worker process (this file, ``--worker SIDE --case CASE``) that reads
the shared data (untimed), times the call, and prints one JSON line with the times and its
peak memory (``VmHWM``: the process's RSS high-water mark, imports and data included).

Cases:

* ``offline``: a training set. 10,000 entities x 100 event times = 1,000,000 feature rows of
  5 float features in one Parquet file; each entity's times are an hour apart with a random
  offset, and each row's created time is its event time plus a random 0-60 s delay (rows
  arrive a little after they happen, as real ones do). 100,000 entity rows at random times
  (about 2 % before the entity's first row: their features are null). TTL 1 day.
  ``ws.features.get_historical_features`` (FileSource with ``created_timestamp_field``)
  against Feast's local file offline store (``get_historical_features(...).to_df()``) and a
  bare DuckDB ``ASOF JOIN`` of the same file (event time only, to a DataFrame: the limit).
  Targets: loopml >= 20x faster than Feast, within 1.5x of the bare join.
  Correctness: the three results are compared row by row. loopml is as-of-known-time: an
  entity row that falls between a feature row's event time and its created time doesn't see
  that row yet (it was not known), and gets the one before; the bare join (and Feast, which
  uses the created time only to break ties) sees it. Those rows are counted independently
  ("late matches") and must be exactly the rows where loopml and the bare join differ.
* ``online``: 1,000 single-entity lookups of the 5 features, p50 and p99 per call, after
  materializing 10,000 entities x 10 event times (not timed): loopml SQLite
  (``ws.features.get_online_features``), loopml Redis (with ``--redis-url`` or
  ``$LOOPML_TEST_REDIS_URL``), Feast's SQLite online store, and a bare ``sqlite3`` primary-key
  lookup of the same values (the limit). Targets: loopml SQLite >= 5x faster than Feast
  (p50) and within 3x of the bare lookup (p50).

The exit code is 0 even when a target is missed (this is a report); it is 1 when a worker
could not run. Only the standard library is imported at module level: Feast's venv has no
loopml, and the project's interpreter has no Feast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
WORK = HERE / ".work" / "features"
CASES = ("offline", "online")
FEATURES = [f"f{i}" for i in range(5)]
BASE = datetime(2025, 1, 1, tzinfo=UTC)
STEP_S = 3600  # event times of one entity are an hour apart
MAX_DELAY_S = 60  # created = event + uniform [0, 60) s
TTL = timedelta(days=1)
OFFLINE_REPEATS = 3  # loopml and the bare join: median of 3 calls in one process
LOOKUPS = 1000
WARMUP = 50  # untimed lookups first, on every side

# (full, quick)
SIZES = {
    "entities": (10_000, 1_000),
    "times": (100, 100),
    "entity_rows": (100_000, 10_000),
    "online_entities": (10_000, 1_000),
    "online_times": (10, 10),
}

# ----------------------------------------------------------------------------------------------
# Data (generated once by the driver, with numpy and pyarrow from the project's interpreter)
# ----------------------------------------------------------------------------------------------


def make_features(path: Path, entities: int, times: int, seed: int, start: datetime = BASE) -> None:
    """``entities x times`` rows: entity_id, event_ts, created_ts, f0..f4 (UTC, µs)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(entities, dtype=np.int64), times)
    offset = rng.integers(0, STEP_S * 1_000_000, entities)  # each entity's phase in the hour
    step = np.tile(np.arange(times, dtype=np.int64), entities) * STEP_S * 1_000_000
    base = int(start.timestamp() * 1_000_000)
    event = base + np.repeat(offset, times) + step
    created = event + rng.integers(0, MAX_DELAY_S * 1_000_000, entities * times)
    columns = {
        "entity_id": ids,
        "event_ts": pa.array(event, pa.timestamp("us", tz="UTC")),
        "created_ts": pa.array(created, pa.timestamp("us", tz="UTC")),
        **{f: rng.standard_normal(entities * times) for f in FEATURES},
    }
    pq.write_table(pa.table(columns), path, row_group_size=128 * 1024)


def make_entity_rows(path: Path, entities: int, times: int, rows: int, seed: int) -> None:
    """``rows`` entity rows at random times from 2 h before the first feature row to the last."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    base = int(BASE.timestamp() * 1_000_000)
    start = base - 2 * STEP_S * 1_000_000
    end = base + times * STEP_S * 1_000_000
    table = pa.table(
        {
            "entity_id": rng.integers(0, entities, rows, dtype=np.int64),
            "event_timestamp": pa.array(
                rng.integers(start, end, rows), pa.timestamp("us", tz="UTC")
            ),
        }
    )
    pq.write_table(table, path)


def read_entities(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def peak_rss_mb() -> float:
    """This process's RSS high-water mark. ``VmHWM`` rather than ``ru_maxrss``: Linux keeps
    ``ru_maxrss`` across ``execve``, so a worker would report its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def save_result(frame: Any, path: Path) -> None:
    """The result's columns in the entity frame's order, for the driver to compare."""
    frame = frame[["entity_id", "event_timestamp", *FEATURES]].reset_index(drop=True)
    frame.to_parquet(path)


# ----------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------


def loopml_definitions(path: Path) -> tuple[Any, Any, Any]:
    from loopml.features import Entity, FeatureService, FeatureView, Field, FileSource

    entity = Entity("entity", join_keys=["entity_id"])
    view = FeatureView(
        "bench",
        entities=[entity],
        source=FileSource(
            str(path), timestamp_field="event_ts", created_timestamp_field="created_ts"
        ),
        ttl=TTL,
        schema=[Field(f, "float64") for f in FEATURES],
    )
    return entity, view, FeatureService("bench_service", [view])


def loopml_offline(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import loopml

    ws = loopml.Workspace.init(workdir)
    try:
        entity, view, service = loopml_definitions(Path(args.data))
        fs = ws.features.use(entity, view, service)
        entity_df = read_entities(Path(args.entities))
        before = peak_rss_mb()
        times, out = [], None
        for _ in range(OFFLINE_REPEATS):
            t0 = time.perf_counter()
            out = fs.get_historical_features(entity_df, service)
            times.append(time.perf_counter() - t0)
        assert out is not None
        peak = peak_rss_mb()
        save_result(out, Path(args.result))
        return {
            "version": loopml.__version__,
            "times": times,
            "rows": len(out),
            "rss_before_mb": before,
            "peak_mb": peak,
        }
    finally:
        ws.close()


def duckdb_offline(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    entity_df = read_entities(Path(args.entities))
    ttl_us = int(TTL.total_seconds() * 1_000_000)
    cols = ", ".join(
        f"CASE WHEN f.event_ts < e.event_timestamp - to_microseconds({ttl_us}) THEN NULL "
        f"ELSE f.{c} END AS {c}"
        for c in FEATURES
    )
    sql = (
        "WITH e AS (SELECT row_number() OVER () AS __row, * FROM entity_df) "
        f"SELECT e.entity_id, e.event_timestamp, {cols} FROM e "
        f"ASOF LEFT JOIN read_parquet('{args.data}') f "
        "ON e.entity_id = f.entity_id AND e.event_timestamp >= f.event_ts ORDER BY e.__row"
    )
    before = peak_rss_mb()
    times, out = [], None
    for _ in range(OFFLINE_REPEATS):
        t0 = time.perf_counter()
        con.register("entity_df", entity_df)
        out = con.execute(sql).df()
        con.unregister("entity_df")
        times.append(time.perf_counter() - t0)
    assert out is not None
    peak = peak_rss_mb()
    save_result(out, Path(args.result))
    return {
        "version": duckdb.__version__,
        "times": times,
        "rows": len(out),
        "rss_before_mb": before,
        "peak_mb": peak,
    }


def duckdb_store_config() -> Any:
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig  # needs feast[duckdb]

    return DuckDBOfflineStoreConfig()


def feast_store(workdir: Path, data: Path, offline: str = "file") -> tuple[Any, Any]:
    """A local Feast repository in ``workdir`` with the benchmark's entity and view applied;
    ``offline``: "file" (Feast's default local offline store, on Dask) or "duckdb"."""
    import feast
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    config = RepoConfig(
        project="bench",
        registry=str(workdir / "registry.db"),
        provider="local",
        online_store=SqliteOnlineStoreConfig(path=str(workdir / "online.db")),
        offline_store=duckdb_store_config()
        if offline == "duckdb"
        else DaskOfflineStoreConfig(type="file"),
        entity_key_serialization_version=3,
        repo_path=str(workdir),
    )
    store = feast.FeatureStore(config=config)
    entity = feast.Entity(name="entity", join_keys=["entity_id"])
    source = feast.FileSource(
        path=str(data), timestamp_field="event_ts", created_timestamp_column="created_ts"
    )
    view = feast.FeatureView(
        name="bench",
        entities=[entity],
        ttl=TTL,
        schema=[feast.Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
        online=True,
    )
    store.apply([entity, view])
    return store, feast


def feast_offline(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    offline = "duckdb" if args.worker == "feast_duckdb" else "file"
    store, feast = feast_store(workdir, Path(args.data), offline)
    entity_df = read_entities(Path(args.entities))
    refs = [f"bench:{f}" for f in FEATURES]
    before = peak_rss_mb()
    t0 = time.perf_counter()
    out = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mb()
    # Feast returns its own row order (and drops rows): put it back in the entity frame's
    # order, matching on (entity_id, event_timestamp), for the comparison only.
    save_result(out, Path(args.result))
    return {
        "version": feast.__version__,
        "times": [elapsed],
        "rows": len(out),
        "rss_before_mb": before,
        "peak_mb": peak,
    }


def materialize_window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    """The online data's span: it ends just before now, so its values are within the TTL."""
    start = datetime.fromisoformat(args.start)
    return start - timedelta(days=1), datetime.fromisoformat(args.end)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3  # µs

    return {"p50_us": at(0.50), "p99_us": at(0.99), "mean_us": statistics.mean(ordered) / 1e3}


def lookup_ids(entities: int) -> list[int]:
    import random

    rng = random.Random(7)
    return [rng.randrange(entities) for _ in range(LOOKUPS + WARMUP)]


def loopml_online(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import loopml

    prefix = f"loopml-bench-{os.getpid()}"  # this run's own keys, deleted at the end
    if args.redis_url:
        sep = "&" if "?" in args.redis_url else "?"
        os.environ["LOOPML_FEATURES_ONLINE_STORE"] = f"{args.redis_url}{sep}prefix={prefix}"
    ws = loopml.Workspace.init(workdir)
    try:
        entity, view, service = loopml_definitions(Path(args.data))
        fs = ws.features.use(entity, view, service)
        t0 = time.perf_counter()
        fs.materialize(*materialize_window(args))
        materialize_s = time.perf_counter() - t0
        ids = lookup_ids(args.entities_n)
        values = []
        samples = []
        for i, key in enumerate(ids):
            t0 = time.perf_counter_ns()
            got = fs.get_online_features(service, [{"entity_id": key}]).to_dict()
            t1 = time.perf_counter_ns()
            if i >= WARMUP:
                samples.append(t1 - t0)
                values.append(got["f0"][0])
        store = "redis" if args.redis_url else "sqlite"
        return {
            "version": loopml.__version__,
            "store": store,
            "materialize_s": materialize_s,
            "values": values,
            "peak_mb": peak_rss_mb(),
            **percentiles(samples),
        }
    finally:
        ws.close()
        if args.redis_url:
            import redis

            client = redis.Redis.from_url(args.redis_url)
            for keys in batched(client.scan_iter(f"{prefix}:*", count=1000), 1000):
                client.delete(*keys)


def batched(items: Any, n: int) -> Any:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def feast_online(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    store, feast = feast_store(workdir, Path(args.data))
    t0 = time.perf_counter()
    store.materialize(*materialize_window(args))
    materialize_s = time.perf_counter() - t0
    refs = [f"bench:{f}" for f in FEATURES]
    ids = lookup_ids(args.entities_n)
    values, samples = [], []
    for i, key in enumerate(ids):
        t0 = time.perf_counter_ns()
        got = store.get_online_features(features=refs, entity_rows=[{"entity_id": key}]).to_dict()
        t1 = time.perf_counter_ns()
        if i >= WARMUP:
            samples.append(t1 - t0)
            values.append(got["f0"][0])
    return {
        "version": feast.__version__,
        "materialize_s": materialize_s,
        "values": values,
        "peak_mb": peak_rss_mb(),
        **percentiles(samples),
    }


def sqlite_online(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The limit: the latest row per entity in a table keyed by entity_id, one SELECT each."""
    import sqlite3

    import duckdb

    latest = (
        duckdb.connect()
        .execute(
            f"SELECT entity_id, {', '.join(FEATURES)} FROM read_parquet('{args.data}') "
            "QUALIFY row_number() OVER (PARTITION BY entity_id "
            "ORDER BY event_ts DESC, created_ts DESC) = 1"
        )
        .fetchall()
    )
    db = sqlite3.connect(workdir / "bare.sqlite")
    db.execute(
        "CREATE TABLE v (entity_id INTEGER PRIMARY KEY, "
        + ", ".join(f"{f} REAL" for f in FEATURES)
        + ")"
    )
    db.executemany(f"INSERT INTO v VALUES ({', '.join('?' * (len(FEATURES) + 1))})", latest)
    db.commit()
    sql = f"SELECT {', '.join(FEATURES)} FROM v WHERE entity_id = ?"
    ids = lookup_ids(args.entities_n)
    values, samples = [], []
    for i, key in enumerate(ids):
        t0 = time.perf_counter_ns()
        row = db.execute(sql, (key,)).fetchone()
        got = dict(zip(FEATURES, row, strict=True)) if row else dict.fromkeys(FEATURES)
        t1 = time.perf_counter_ns()
        if i >= WARMUP:
            samples.append(t1 - t0)
            values.append(got["f0"])
    return {
        "version": sqlite3.sqlite_version,
        "values": values,
        "peak_mb": peak_rss_mb(),
        **percentiles(samples),
    }


WORKERS = {
    ("loopml", "offline"): loopml_offline,
    ("duckdb", "offline"): duckdb_offline,
    ("feast", "offline"): feast_offline,
    ("feast_duckdb", "offline"): feast_offline,
    ("loopml", "online"): loopml_online,
    ("feast", "online"): feast_online,
    ("sqlite", "online"): sqlite_online,
}


def run_worker(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-features-{args.worker}-", dir=args.workdir))
    old = os.getcwd()
    os.chdir(workdir)  # whatever a library writes to ./ lands in the temp dir
    try:
        result = WORKERS[(args.worker, args.case)](args, workdir)
    finally:
        os.chdir(old)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def peer_python(side: str) -> Path:
    if side in ("loopml", "duckdb", "sqlite"):
        return Path(sys.executable)
    return VENVS / side.split("_")[0] / "bin" / "python"


def spawn(
    side: str, case: str, extra: list[str], timeout: float, label: str = ""
) -> dict[str, Any]:
    python = peer_python(side)
    if not python.exists():
        peer = side.split("_")[0]
        return {"error": f"{python} not found: run `benchmarks/setup_peer.sh {peer}`"}
    env = {k: v for k, v in os.environ.items() if k != "LOOPML_FEATURES_ONLINE_STORE"}
    env.update(FEAST_USAGE="False", DO_NOT_TRACK="true", PYTHONHASHSEED="0")
    if side.startswith("feast"):
        env.pop("PYTHONPATH", None)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", side, "--case", case]
    cmd += ["--workdir", str(WORK), *extra]
    print(f"  {case:<8} {label or side:<14} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f" timed out after {timeout:.0f} s")
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            print(f" done in {wall:.1f} s")
            return json.loads(line)  # type: ignore[no-any-return]
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    print(f" FAILED (exit {proc.returncode})")
    print("    " + tail.replace("\n", "\n    "))
    return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else '?'}"}


def compare_offline(data: Path, entities: Path, results: dict[str, Path]) -> list[str]:
    """Row-by-row agreement of the three results, and the late matches that explain it."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    notes = []
    # Late matches, computed independently: the latest row by event time at t was created
    # after t. loopml must not see it; the bare join (event time only) does.
    late = con.execute(
        f"WITH e AS (SELECT row_number() OVER () AS r, * FROM read_parquet('{entities}')) "
        f"SELECT count(*) FROM e ASOF JOIN read_parquet('{data}') f "
        "ON e.entity_id = f.entity_id AND e.event_timestamp >= f.event_ts "
        "WHERE f.created_ts > e.event_timestamp"
    ).fetchall()[0][0]
    no_row = con.execute(
        f"SELECT count(*) FROM read_parquet('{entities}') e WHERE NOT EXISTS (SELECT 1 FROM "
        f"read_parquet('{data}') f WHERE f.entity_id = e.entity_id "
        "AND f.event_ts <= e.event_timestamp)"
    ).fetchall()[0][0]
    total = con.execute(f"SELECT count(*) FROM read_parquet('{entities}')").fetchall()[0][0]
    notes.append(
        f"offline: {total:,} entity rows; {no_row:,} have no feature row at or before their time "
        f"(nulls expected); {late:,} fall between their latest row's event and created time "
        "(late matches: loopml gives the previous row, as known then)."
    )

    def differ(a: Path, b: Path) -> tuple[int, int]:
        same = " AND ".join(f"a.{f} IS NOT DISTINCT FROM b.{f}" for f in FEATURES)
        return con.execute(
            f"WITH a AS (SELECT row_number() OVER () AS r, * FROM read_parquet('{a}')), "
            f"b AS (SELECT row_number() OVER () AS r, * FROM read_parquet('{b}')) "
            f"SELECT count(*) FILTER (WHERE NOT ({same})), count(*) FROM a JOIN b USING (r) "
            "WHERE a.entity_id = b.entity_id AND a.event_timestamp = b.event_timestamp"
        ).fetchall()[0]

    if "loopml" in results and "duckdb" in results:
        diff, n = differ(results["loopml"], results["duckdb"])
        verdict = "exactly the late matches" if diff == late else f"expected {late:,}: CHECK"
        notes.append(
            f"offline: loopml vs bare join: {diff:,} of {n:,} rows differ ({verdict}); every "
            "other row is identical."
        )
    for peer in ("feast", "feast_duckdb"):
        if peer not in results or "duckdb" not in results:
            continue
        # Feast's order is its own: match rows on (entity_id, event_timestamp) (the entity rows
        # are unique on these with near certainty; duplicates are counted and left out).
        same = " AND ".join(f"a.{f} IS NOT DISTINCT FROM b.{f}" for f in FEATURES)
        rows = con.execute(
            f"WITH a AS (SELECT * FROM read_parquet('{results[peer]}') QUALIFY "
            "count(*) OVER (PARTITION BY entity_id, event_timestamp) = 1), "
            f"b AS (SELECT * FROM read_parquet('{results['duckdb']}') QUALIFY "
            "count(*) OVER (PARTITION BY entity_id, event_timestamp) = 1) "
            f"SELECT count(*) FILTER (WHERE NOT ({same})), count(*), "
            f"(SELECT count(*) FROM read_parquet('{results[peer]}')) FROM a JOIN b "
            "USING (entity_id, event_timestamp)"
        ).fetchall()[0]
        notes.append(
            f"offline: {peer} returned {rows[2]:,} of {total:,} rows ({total - rows[2]:,} dropped); "
            f"of the {rows[1]:,} it kept, {rows[0]:,} differ from the bare join (Feast uses the "
            "created time only to break ties, so it sees the late rows too)."
        )
    return notes


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.3f} s"


def fmt_us(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f} µs"


def fmt_mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} MB"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return a / b if b else float("inf")


def get(res: dict[str, Any], key: str) -> float | None:
    if "error" in res or key not in res:
        return None
    value = res[key]
    return statistics.median(value) if isinstance(value, list) else float(value)


Row = tuple[str, str, str, str, str, str]


def print_table(rows: list[Row], header: Row) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    aligns = ["<", ">", ">", ">", "<", "<"]

    def line(r: Row) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths, strict=True)).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def run_offline(sizes: dict[str, int], timeout: float) -> tuple[list[Row], list[str], dict]:
    data, entities = WORK / "features.parquet", WORK / "entities.parquet"
    make_features(data, sizes["entities"], sizes["times"], seed=1)
    make_entity_rows(
        data.with_name("entities.parquet"),
        sizes["entities"],
        sizes["times"],
        sizes["entity_rows"],
        seed=2,
    )
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Path] = {}
    for side in ("loopml", "duckdb", "feast", "feast_duckdb"):
        out = WORK / f"result-{side}.parquet"
        extra = ["--data", str(data), "--entities", str(entities), "--result", str(out)]
        results[side] = spawn(side, "offline", extra, timeout)
        if "error" not in results[side]:
            outputs[side] = out
    lo, dk, fe = results["loopml"], results["duckdb"], results["feast"]
    t_lo, t_dk, t_fe = get(lo, "times"), get(dk, "times"), get(fe, "times")
    speedup, over = div(t_fe, t_lo), div(t_lo, t_dk)
    rows: list[Row] = [
        (
            "offline: time vs Feast",
            fmt_s(t_lo),
            fmt_s(t_fe),
            fmt_ratio(speedup),
            ">= 20x",
            verdict(None if speedup is None else speedup >= 20),
        ),
        (
            "offline: time vs bare DuckDB",
            fmt_s(t_lo),
            fmt_s(t_dk),
            fmt_ratio(over),
            "<= 1.5x",
            verdict(None if over is None else over <= 1.5),
        ),
        (
            "  vs Feast duckdb store",
            fmt_s(t_lo),
            fmt_s(get(results["feast_duckdb"], "times")),
            fmt_ratio(div(get(results["feast_duckdb"], "times"), t_lo)),
            "(info)",
            "",
        ),
        (
            "offline: peak RSS vs Feast",
            fmt_mb(get(lo, "peak_mb")),
            fmt_mb(get(fe, "peak_mb")),
            fmt_ratio(div(get(lo, "peak_mb"), get(fe, "peak_mb"))),
            "(info)",
            "",
        ),
        (
            "offline: peak RSS vs bare",
            fmt_mb(get(lo, "peak_mb")),
            fmt_mb(get(dk, "peak_mb")),
            fmt_ratio(div(get(lo, "peak_mb"), get(dk, "peak_mb"))),
            "(info)",
            "",
        ),
        (
            "offline: rows returned",
            str(lo.get("rows", "n/a")),
            str(fe.get("rows", "n/a")),
            "",
            f"{sizes['entity_rows']:,}",
            verdict(None if "rows" not in lo else lo["rows"] == sizes["entity_rows"]),
        ),
    ]
    notes = [
        f"offline: {sizes['entities']:,} entities x {sizes['times']} times = "
        f"{sizes['entities'] * sizes['times']:,} feature rows ({data.stat().st_size / 1e6:.1f} MB "
        f"Parquet), {sizes['entity_rows']:,} entity rows, TTL {TTL.days} day(s).",
    ]
    for side, res in results.items():
        if "times" in res:
            ts = ", ".join(f"{t:.3f}" for t in res["times"])
            notes.append(
                f"offline: {side} {res.get('version', '?')}: calls [{ts}] s; RSS "
                f"{res['rss_before_mb']:,.0f} MB before the calls (imports, entity frame), "
                f"{res['peak_mb']:,.0f} MB peak."
            )
        else:
            notes.append(f"offline: {side} did not run: {res['error']}")
    if outputs:
        notes += compare_offline(data, entities, outputs)
    return rows, notes, results


def run_online(
    sizes: dict[str, int], timeout: float, redis_url: str | None
) -> tuple[list[Row], list[str], dict]:
    data = WORK / "online.parquet"
    # Online values are looked up now and expire after the TTL: the data ends just before now.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=sizes["online_times"] + 2)
    make_features(data, sizes["online_entities"], sizes["online_times"], seed=3, start=start)
    extra = ["--data", str(data), "--entities-n", str(sizes["online_entities"])]
    extra += ["--start", start.isoformat(), "--end", end.isoformat()]
    results: dict[str, dict[str, Any]] = {
        "loopml": spawn("loopml", "online", extra, timeout, "loopml sqlite"),
    }
    if redis_url:
        results["redis"] = spawn(
            "loopml", "online", [*extra, "--redis-url", redis_url], timeout, "loopml redis"
        )
    results["feast"] = spawn("feast", "online", extra, timeout, "feast sqlite")
    results["sqlite"] = spawn("sqlite", "online", extra, timeout, "bare sqlite3")
    lo, fe, bare = results["loopml"], results["feast"], results["sqlite"]
    rd = results.get("redis", {"error": "no --redis-url or $LOOPML_TEST_REDIS_URL"})
    rows: list[Row] = []
    for q in ("p50", "p99"):
        key = f"{q}_us"
        a, b, c, r = get(lo, key), get(fe, key), get(bare, key), get(rd, key)
        speedup, over = div(b, a), div(a, c)
        main_q = q == "p50"
        rows += [
            (
                f"online {q}: sqlite vs Feast",
                fmt_us(a),
                fmt_us(b),
                fmt_ratio(speedup),
                ">= 5x" if main_q else "(info)",
                verdict(None if speedup is None else speedup >= 5) if main_q else "",
            ),
            (
                f"online {q}: sqlite vs bare",
                fmt_us(a),
                fmt_us(c),
                fmt_ratio(over),
                "<= 3x" if main_q else "(info)",
                verdict(None if over is None else over <= 3) if main_q else "",
            ),
            (
                f"online {q}: redis vs Feast",
                fmt_us(r),
                fmt_us(b),
                fmt_ratio(div(b, r)),
                "(info)",
                "",
            ),
        ]
    notes = [
        f"online: {sizes['online_entities']:,} entities x {sizes['online_times']} times "
        f"materialized (not timed), then {LOOKUPS:,} single-entity lookups of {len(FEATURES)} "
        f"features after {WARMUP} warm-up lookups; per-call figures from perf_counter_ns."
    ]
    for side, res in results.items():
        if "p50_us" in res:
            mat = f", materialize {res['materialize_s']:.2f} s" if "materialize_s" in res else ""
            notes.append(
                f"online: {side} {res.get('version', '?')}: mean {res['mean_us']:.1f} µs, "
                f"p50 {res['p50_us']:.1f} µs, p99 {res['p99_us']:.1f} µs{mat}; "
                f"peak RSS {res['peak_mb']:,.0f} MB."
            )
        else:
            notes.append(f"online: {side} did not run: {res['error']}")
    reference = bare.get("values")
    for side in ("loopml", "redis", "feast"):
        got = results.get(side, {}).get("values")
        if reference is not None and got is not None:
            same = sum(1 for x, y in zip(got, reference, strict=True) if x == y)
            notes.append(
                f"online: {side} returned the bare lookup's f0 in {same:,} of {len(got):,}."
            )
    return rows, notes, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: offline,online")
    ap.add_argument(
        "--redis-url",
        default=None,
        help="also measure loopml's Redis online store (default $LOOPML_TEST_REDIS_URL)",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    ap.add_argument("--json", type=Path, default=None, help="also write all results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--entities", help=argparse.SUPPRESS)
    ap.add_argument("--entities-n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--start", help=argparse.SUPPRESS)
    ap.add_argument("--end", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:  # a worker uses Redis only when told to: the SQLite run must not
        return run_worker(args)
    args.redis_url = args.redis_url or os.environ.get("LOOPML_TEST_REDIS_URL")

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(cases) - set(CASES):
        ap.error(f"unknown case(s): {', '.join(sorted(set(cases) - set(CASES)))}")
    if importlib.util.find_spec("loopml") is None:
        print(f"`import loopml` fails in {sys.executable}: run `pip install -e .`")
        return 1
    mode = 1 if args.quick else 0
    sizes = {k: v[mode] for k, v in SIZES.items()}
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print(
        f"features benchmark ({'quick' if args.quick else 'full'}), Python {sys.version.split()[0]}"
    )
    rows: list[Row] = []
    notes: list[str] = []
    results: dict[str, Any] = {}
    try:
        if "offline" in cases:
            r, n, results["offline"] = run_offline(sizes, args.timeout)
            rows += r
            notes += n
        if "online" in cases:
            r, n, results["online"] = run_online(sizes, args.timeout, args.redis_url)
            rows += r
            notes += n
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    versions = {
        side: next(
            (s[side]["version"] for s in results.values() if "version" in s.get(side, {})), "?"
        )
        for side in ("loopml", "feast")
    }
    print()
    header = ("case", f"loopml {versions['loopml']}", "peer", "ratio", "target", "verdict")
    print_table(rows, header)
    print(f"\n(peer: Feast {versions['feast']}, or the bare limit the row names)\n")
    for n in notes:
        print(f"- {n}")
    verdicts = [r[5] for r in rows if r[5]]
    print(
        f"\nverdicts: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{verdicts.count('n/a')} n/a"
    )
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "results": results}, indent=2))
    crashed = any(
        "error" in res
        for side in results.values()
        for res in side.values()
        if isinstance(res, dict)
    )
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
