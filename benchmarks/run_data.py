"""Fill a loopml workspace with many runs fast, for search and UI benchmarks at scale.

Going through ``start_run``/``log_params`` costs about a millisecond per run; 100,000 runs x
100 values would take many minutes. This writes the tracking tables directly with bulk
SQLAlchemy core inserts (one ``executemany`` per table and chunk), the way the store itself
would have written them::

    python benchmarks/run_data.py /tmp/ws100k --runs 100000 --params 50 --metrics 50
    python benchmarks/run_data.py /tmp/ws10k --runs 10000 --history   # also metric points

or from Python (any metadata backend; the workspace must be migrated, as ``Workspace.init``
and ``Workspace.open`` do)::

    from run_data import fill, RunSpec
    fill(ws, RunSpec(runs=10_000, params=20, metrics=20), experiment="bench")

The values are deterministic (one seeded RNG): ``params.p1`` is ``'v1'`` on 90 % of the runs
(``'v0'`` on the rest), ``params.pK`` (K != 1) is ``f"v{(run + K) % 7}"``, every metric is
uniform in [0, 1), ``tags.team`` cycles through ``a``..``e``. So ``metrics.m0 > 0.5 and
params.p1 = 'v1'`` matches about 45 % of the runs. :func:`expected` recomputes a filter's
answer in Python for checks.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK_RUNS = 1_000  # runs per insert batch (x params/metrics rows each)


@dataclass(frozen=True)
class RunSpec:
    """How many runs, and how many params and metrics each gets."""

    runs: int = 10_000
    params: int = 20
    metrics: int = 20
    seed: int = 1234
    history: bool = False  # also one point per metric in the metrics table (step 0)


@dataclass(frozen=True)
class GeneratedRun:
    id: str
    name: str
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def generate(spec: RunSpec, start_ms: int | None = None) -> Iterator[GeneratedRun]:
    """The runs of ``spec``, oldest first, one millisecond apart."""
    rng = random.Random(spec.seed)
    base = int(time.time() * 1000) - spec.runs - 1000 if start_ms is None else start_ms
    for r in range(spec.runs):
        params = {f"p{k}": f"v{(r + k) % 7}" for k in range(spec.params)}
        if spec.params > 1:
            params["p1"] = "v0" if r % 10 == 0 else "v1"
        metrics = {f"m{k}": rng.random() for k in range(spec.metrics)}
        yield GeneratedRun(
            id=uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            name=f"run-{r:06d}",
            start_time=base + r,
            params=params,
            metrics=metrics,
            tags={"team": "abcde"[r % 5]},
        )


def expected(spec: RunSpec, m0_above: float = 0.5, p1: str = "v1") -> list[GeneratedRun]:
    """The runs matching ``metrics.m0 > m0_above and params.p1 = p1``, in generation order."""
    return [r for r in generate(spec) if r.metrics["m0"] > m0_above and r.params["p1"] == p1]


def fill(ws: Any, spec: RunSpec, experiment: str = "bench") -> int:
    """Insert the runs of ``spec`` into ``ws`` (a loopml Workspace) under ``experiment``
    (created when missing); returns the experiment's id. Each chunk of runs is one
    transaction: an interrupted fill leaves whole runs only."""
    from sqlalchemy import insert, select

    from loopml.tracking.tables import experiments, latest_metrics, metrics, params, runs, tags

    now = int(time.time() * 1000)

    def ensure_experiment(conn: Any) -> int:
        found = conn.execute(
            select(experiments.c.id).where(experiments.c.name == experiment)
        ).scalar()
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                insert(experiments)
                .values(name=experiment, created_at=now)
                .returning(experiments.c.id)
            ).scalar_one()
        )

    exp_id = ws.db.transact(ensure_experiment)
    batch: list[GeneratedRun] = []

    def flush(conn: Any) -> None:
        conn.execute(
            insert(runs),
            [
                {
                    "id": r.id,
                    "experiment_id": exp_id,
                    "name": r.name,
                    "status": "FINISHED",
                    "start_time": r.start_time,
                    "end_time": r.start_time + 1000,
                }
                for r in batch
            ],
        )
        conn.execute(
            insert(params),
            [{"run_id": r.id, "key": k, "value": v} for r in batch for k, v in r.params.items()],
        )
        points = [
            {"run_id": r.id, "key": k, "value": v, "step": 0, "timestamp": r.start_time}
            for r in batch
            for k, v in r.metrics.items()
        ]
        if points:
            conn.execute(insert(latest_metrics), points)
            if spec.history:
                conn.execute(insert(metrics), points)
        conn.execute(
            insert(tags),
            [{"run_id": r.id, "key": k, "value": v} for r in batch for k, v in r.tags.items()],
        )

    for run in generate(spec, start_ms=now - spec.runs - 1000):
        batch.append(run)
        if len(batch) >= CHUNK_RUNS:
            ws.db.transact(flush)
            batch = []
    if batch:
        ws.db.transact(flush)
    return exp_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path, help="folder of a new or existing workspace")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--params", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--experiment", default="bench")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--history", action="store_true", help="also fill the metrics table")
    args = parser.parse_args(argv)

    from loopml.workspace import Workspace

    path: Path = args.workspace
    ws = Workspace.init(path)  # keeps an existing workspace
    spec = RunSpec(args.runs, args.params, args.metrics, args.seed, args.history)
    t0 = time.perf_counter()
    try:
        exp_id = fill(ws, spec, args.experiment)
    finally:
        ws.close()
    print(
        f"{spec.runs} runs x {spec.params} params x {spec.metrics} metrics into experiment "
        f"{args.experiment!r} (id {exp_id}) of {path} in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
