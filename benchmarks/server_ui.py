"""The web UI at scale: the runs page of one experiment of 100,000 runs x 50 params x 50
metrics, and a metric of 1,000,000 points drawn from its downsampled history.

    python benchmarks/server_ui.py [--runs 100000] [--params 50] [--metrics 50]
                                   [--workspace /tmp/ui-bench] [--no-browser]

It makes (or reuses, with the same ``--workspace``) a SQLite workspace filled by
:func:`generate` (bulk SQLAlchemy core inserts into the tracking tables: minutes, not the
hours ``start_run`` would take), starts ``loopml server``'s app in a thread on 127.0.0.1 and
measures:

* the runs page's server time (its ``Server-Timing`` header) for the plain listing, a filter,
  an order by a metric, and both, an order by and a filter on a tag, an order by a param of
  few values; the median of ``--repeats`` requests each (target: under 300 ms);
* the time to a usable page in headless Chromium (Debian's ``chromium``, driven by Playwright):
  from navigation start to ``DOMContentLoaded`` with the runs table in the DOM (target: under
  1.5 s);
* the history of a 1,000,000-point metric for its chart: server time and points sent.

Figures are printed as a table; there is no peer for this one (MLflow's UI is a built React
app over its own search API, the ``search_runs`` benchmark in ``tracking.py`` covers that).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

CHUNK = 500  # runs per bulk insert

FILTER = "metrics.m0 > 0.5 and params.p1 = 'v1'"
ORDER = "metrics.m1 DESC"


def generate(
    ws: Any,
    runs: int = 100_000,
    params: int = 50,
    metrics: int = 50,
    experiment: str = "ui-bench",
    seed: int = 0,
    progress: bool = False,
    history: bool = True,
    first: int = 0,
) -> int:
    """Add ``runs`` finished runs to ``experiment`` (created if missing) of ``ws``, each with
    ``params`` params ``p0``.. (``p1`` is ``'v1'`` on 90 % of the runs), ``metrics`` metrics
    ``m0``.. (uniform in [0, 1), one point each, in ``metrics`` and ``latest_metrics``) and a
    ``team`` tag. Returns the experiment's id. Any metadata backend.

    ``history=False`` writes only ``latest_metrics`` (what listing, filtering and sorting
    read): a third fewer rows, but the runs' charts are empty. ``first`` numbers the runs
    from there (to add to an experiment that has ``first`` runs already)."""
    from loopml.exceptions import ExperimentNotFound
    from loopml.tracking.tables import latest_metrics, tags
    from loopml.tracking.tables import metrics as metrics_t
    from loopml.tracking.tables import params as params_t
    from loopml.tracking.tables import runs as runs_t

    try:
        exp_id = ws.experiments.get(experiment).id
    except ExperimentNotFound:
        exp_id = ws.experiments.create(experiment).id
    rng = random.Random(seed + first)
    start = int(time.time() * 1000) - (first + runs) * 1000
    done = first
    while done < first + runs:
        n = min(CHUNK, first + runs - done)
        run_rows, param_rows, metric_rows, latest_rows, tag_rows = [], [], [], [], []
        for i in range(done, done + n):
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            t0 = start + i * 1000
            run_rows.append(
                {
                    "id": run_id,
                    "experiment_id": exp_id,
                    "name": f"run-{i:06d}",
                    "status": "FINISHED",
                    "start_time": t0,
                    "end_time": t0 + 500,
                }
            )
            for k in range(params):
                value = ("v1" if rng.random() < 0.9 else "v0") if k == 1 else f"v{(i + k) % 7}"
                param_rows.append({"run_id": run_id, "key": f"p{k}", "value": value})
            for k in range(metrics):
                point = {"run_id": run_id, "key": f"m{k}", "value": rng.random(), "step": 0}
                point["timestamp"] = t0 + 400
                metric_rows.append(point)
                latest_rows.append(point)
            tag_rows.append({"run_id": run_id, "key": "team", "value": "abcde"[i % 5]})

        batch = [
            (runs_t, run_rows),
            (params_t, param_rows),
            (metrics_t, metric_rows if history else []),
            (latest_metrics, latest_rows),
            (tags, tag_rows),
        ]
        ws.db.transact(lambda conn, batch=batch: _insert_all(conn, batch))
        done += n
        if progress and done % 10_000 < CHUNK:
            print(f"  {done} runs", file=sys.stderr, flush=True)
    return int(exp_id)


def _insert_all(conn: Any, batch: list[tuple[Any, list[dict[str, Any]]]]) -> None:
    from sqlalchemy import insert

    for table, rows in batch:
        if rows:
            conn.execute(insert(table), rows)


def long_metric(ws: Any, run_id: str, key: str, points: int, seed: int = 0) -> None:
    """Add ``points`` points (steps 0..points-1, a noisy decaying curve) of metric ``key`` to
    run ``run_id`` and make the last one its latest value."""
    import math

    from sqlalchemy import delete, insert

    from loopml.tracking.tables import latest_metrics, metrics

    rng = random.Random(seed)
    t0 = int(time.time() * 1000)
    last: dict[str, Any] = {}
    for begin in range(0, points, 50_000):
        rows = []
        for step in range(begin, min(begin + 50_000, points)):
            value = math.exp(-step / max(points / 5, 1)) + rng.random() * 0.05
            last = {"run_id": run_id, "key": key, "value": value, "step": step}
            last["timestamp"] = t0 + step
            rows.append(last)
        ws.db.transact(lambda conn, rows=rows: conn.execute(insert(metrics), rows))

    def latest(conn: Any) -> None:
        conn.execute(
            delete(latest_metrics).where(
                latest_metrics.c.run_id == run_id, latest_metrics.c.key == key
            )
        )
        conn.execute(insert(latest_metrics), [last])

    ws.db.transact(latest)


def server_ms(response: Any) -> float:
    """The ``app;dur=`` figure of a response's ``Server-Timing`` header, in ms."""
    header = response.headers.get("server-timing", "")
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if name == "app" and rest.startswith("dur="):
            return float(rest[4:])
    raise ValueError(f"no Server-Timing app;dur= in {header!r}")


def serve(ws: Any) -> tuple[str, Any]:
    import socket

    import uvicorn

    from loopml.server.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ws), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server


def browser_ms(url: str, repeats: int) -> list[float]:
    """Navigation start → DOMContentLoaded with the runs table there, per load, in ms."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")  # warm-up
            for _ in range(repeats):
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector("#runs tbody tr")
                times.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.domContentLoadedEventEnd - n.startTime; }"
                    )
                )
        finally:
            browser.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--params", type=int, default=50)
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--points", type=int, default=1_000_000, help="the long metric's points")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workspace", default="/tmp/loopml-ui-bench")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--history",
        action="store_true",
        help="also write each metric's point to the metrics table (slower; charts work)",
    )
    args = parser.parse_args()

    import httpx

    from loopml.workspace import Workspace

    root = Path(args.workspace)
    marker = root / "bench.json"
    spec = {"runs": args.runs, "params": args.params, "metrics": args.metrics}
    info = json.loads(marker.read_text()) if marker.exists() else {}
    if info.get("spec") != spec or "long_run" not in info:
        if info.get("spec") != spec:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            Workspace.init(root).close()
            info = {"spec": spec, "generate_s": 0.0}
        ws = Workspace.open(root)
        # An interrupted generation goes on where it stopped.
        have = next((e.run_count for e in ws.experiments.list() if e.name == "ui-bench"), 0)
        began = time.perf_counter()
        info["experiment"] = generate(
            ws,
            args.runs - have,
            args.params,
            args.metrics,
            progress=True,
            history=args.history,
            first=have,
        )
        with ws.runs.start(experiment="ui-bench-long", name="long") as run:
            run.log_param("points", args.points)
            info["long_run"] = run.id
        long_metric(ws, info["long_run"], "loss", args.points)
        info["generate_s"] += time.perf_counter() - began
        marker.write_text(json.dumps(info))
    else:
        ws = Workspace.open(root)
        print(f"reusing {root}", file=sys.stderr)
    print(f"generated in {info['generate_s']:.0f} s", file=sys.stderr)

    url, server = serve(ws)
    rows = []
    try:
        base = f"{url}/experiments/{info['experiment']}"
        cases = {
            "runs page": {},
            "filter": {"filter": FILTER},
            "order by metric": {"order": ORDER},
            "filter + order": {"filter": FILTER, "order": ORDER},
            "order by tag (5 values)": {"order": "tags.team"},
            "filter on tag": {"filter": "tags.team = 'c'"},
            "order by param (7 values)": {"order": "params.p2 DESC"},
            "10 picked columns": {"cols": [f"metrics.m{k}" for k in range(5)]
                                  + [f"params.p{k}" for k in range(5)]},
        }  # fmt: skip
        with httpx.Client(timeout=120) as client:
            for name, query in cases.items():
                client.get(base, params=query)  # warm-up
                times = [server_ms(client.get(base, params=query)) for _ in range(args.repeats)]
                rows.append((name, statistics.median(times), 300.0, "ms server"))
            history = f"{url}/runs/{info['long_run']}/history"
            # The first read reduces the history in SQL; an ended run's is then cached.
            first = client.get(history, params={"key": "loss"})
            sent = len(first.json()["steps"])
            rows.append((f"{args.points:,}-point history, first ({sent} sent)",
                         server_ms(first), None, "ms server"))  # fmt: skip
            times = [server_ms(client.get(history, params={"key": "loss"})) for _ in range(3)]
            rows.append((f"{args.points:,}-point history, cached", statistics.median(times),
                         None, "ms server"))  # fmt: skip
        if not args.no_browser:
            times = browser_ms(base, args.repeats)
            rows.append(("Chromium: runs page usable", statistics.median(times), 1500.0, "ms"))
    finally:
        server.should_exit = True
    print(f"\nloopml UI, {args.runs:,} runs x {args.params} params x {args.metrics} metrics")
    print(f"{'case':<40}{'median':>12}  {'target':>10}  verdict")
    for name, value, target, unit in rows:
        verdict = "" if target is None else ("PASS" if value < target else "FAIL")
        shown = f"< {target:.0f}" if target is not None else ""
        print(f"{name:<40}{value:>9.1f} {unit:<4}{shown:>10}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
