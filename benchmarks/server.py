"""Team-server benchmark: the same MLflow client script against ``mlflow server`` and against
``loopml server``, side by side in one run; and loopml's own HTTP client.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/server.py                 # full sizes (about 10 minutes on 2 busy cores)
    python benchmarks/server.py --quick         # small sizes (a couple of minutes)
    python benchmarks/server.py --cases search --runs 5000 --json /tmp/server.json

MLflow (the server and the client) runs from its own virtualenv, ``benchmarks/.venvs/mlflow``
(make it with ``benchmarks/setup_peer.sh mlflow``), so it never becomes a project dependency.

Both servers start at the beginning, each its own process on 127.0.0.1 over SQLite, with
its defaults otherwise:

* ``mlflow server --backend-store-uri sqlite:///… --artifacts-destination …`` (MLflow 3.x);
* ``loopml -w WORKSPACE server`` (one uvicorn worker, a SQLite workspace).

Each case is one MLflow client script (this file, ``--client CASE``, run by the MLflow venv's
Python with ``MLFLOW_TRACKING_URI`` set), run once against each server, MLflow's first:

1. ``log_metric``: ``mlflow.log_metric("loss", v, step=i)`` 10,000 times in one run (1,000
   with ``--quick``); the client sends each call synchronously, as it does by default;
2. ``log_batch``: 100,000 points as ``MlflowClient().log_batch`` calls of 1,000 metrics each
   (10,000 with ``--quick``), timed from ``create_run`` to ``set_terminated``;
3. ``search``: ``mlflow.search_runs`` (a DataFrame) over 10,000 runs x 20 params x 20 metrics
   (1,000 with ``--quick``) with ``metrics.m0 > 0.5 and params.p1 = 'v1'`` (~45 % match) and
   ``metrics.m1 DESC``, ``max_results=1000``; median of 5. ``MlflowClient.search_runs`` (no
   DataFrame) is timed too, for information. The runs are written into each store before its
   server starts, the same runs on both sides (``run_data.py``: same seed, same values), by
   bulk inserts (creating 10,000 runs through MLflow's server takes the better part of an
   hour); both answers must name the same runs in the same order (checked).

and one case of loopml's own client (this file, ``--loopml-client``, the project's Python,
``LOOPML_TRACKING_URI`` set to the loopml server):

4. ``loopml client``: ``loopml.log_metric("loss", v, step=i)`` 1,000,000 times in one run
   (100,000 with ``--quick``); the figure is the training loop's cost per call (the client
   queues points and a thread sends them in batches), and the total through the end of the
   run (everything sent and stored) for information. The points stored are counted.

and, for cases 1 to 3, the same client script a third time against a **replaying proxy**
(this file, ``--proxy``, standard library only) in front of loopml's server: it answers the
timed calls at once from what loopml's server answered (``{}`` for log-metric and log-batch,
the recorded bytes for a search body it has seen) and passes everything else (creating the
run, reading history) through. What that side measures is the MLflow client's own cost
(encoding, HTTP, decoding) with a server that takes no time at all, so MLflow's time over it
is the highest ratio *any* server could reach with this client: the "ceiling" column.

Targets (the issue's): loopml >= 10x MLflow's server on 1, 2 and 3; loopml's client < 5 us a
call. On a shared machine every figure moves with the load: read the ratios as provisional.
The exit code is 0 even when a target is missed (this is a report); it is 1 when a server
could not start or a client script failed. Only the standard library is imported at module
level: MLflow's venv has no loopml, and the project's interpreter has no MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
sys.path.insert(0, str(HERE))

import run_data  # noqa: E402  (standard library only: both interpreters import it)

CASES = ("log_metric", "log_batch", "search", "client")
SEARCH_FILTER = "metrics.m0 > 0.5 and params.p1 = 'v1'"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_MAX_RESULTS = 1000
SEARCH_REPEATS = 5
BATCH = 1000  # metrics per log_batch call (MLflow's own cap)
BATCH_KEYS = 100

# Sizes per case: (full, quick).
SIZES = {
    "log_metric": (10_000, 1_000),
    "log_batch": (100_000, 10_000),
    "search": (10_000, 1_000),
    "client": (1_000_000, 100_000),
}
TARGETS = {"log_metric": 10.0, "log_batch": 10.0, "search": 10.0, "client_us": 5.0}


# ----------------------------------------------------------------------------------------------
# Store setup (before the servers start): the same runs on both sides
# ----------------------------------------------------------------------------------------------


def spec_for(runs: int) -> run_data.RunSpec:
    return run_data.RunSpec(runs=runs, params=20, metrics=20, history=True)


def setup_loopml(workdir: Path, runs: int) -> None:
    """A workspace in ``workdir`` with the search case's runs (project interpreter)."""
    from loopml.workspace import Workspace

    ws = Workspace.init(workdir)
    try:
        if runs:
            run_data.fill(ws, spec_for(runs), experiment="search")
    finally:
        ws.close()


def setup_mlflow(workdir: Path, runs: int) -> None:
    """MLflow's SQLite store with the search case's runs (MLflow venv): MLflow creates its
    schema and the experiment, the runs go in by bulk inserts of the rows MLflow writes."""
    import mlflow

    db_path = workdir / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db_path}")
    client = mlflow.MlflowClient()
    exp_id = int(client.create_experiment("search", artifact_location=str(workdir / "art")))
    if not runs:
        return
    db = sqlite3.connect(db_path)
    with db:
        run_rows, params, metrics, tags = [], [], [], []
        for r in run_data.generate(spec_for(runs)):
            run_rows.append(
                (r.id, r.name, "UNKNOWN", "", "", "bench", "FINISHED", r.start_time,
                 r.start_time + 1000, "", "active", f"{workdir}/art/{r.id}/artifacts", exp_id)
            )  # fmt: skip
            params += [(k, v, r.id) for k, v in r.params.items()]
            metrics += [(k, v, r.start_time, r.id, 0, 0) for k, v in r.metrics.items()]
            tags += [(k, v, r.id) for k, v in r.tags.items()]
            tags.append(("mlflow.runName", r.name, r.id))
        db.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
            "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
            "artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            run_rows,
        )
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?,?,?,?,?,?)",
            metrics,
        )
        db.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?,?,?,?,?,?)",
            metrics,
        )
        db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
    db.close()


# ----------------------------------------------------------------------------------------------
# The MLflow client script (MLflow venv), the same against both servers
# ----------------------------------------------------------------------------------------------


def mlflow_client(case: str, size: int) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    out: dict[str, Any] = {"mlflow": mlflow.__version__, "n": size}
    if case == "log_metric":
        mlflow.set_experiment("log_metric")
        values = [i * 1e-3 for i in range(size)]
        with mlflow.start_run(run_name="log_metric") as run:
            t0 = time.perf_counter()
            for i, v in enumerate(values):
                mlflow.log_metric("loss", v, step=i)
            out["seconds"] = time.perf_counter() - t0
        history = client.get_metric_history(run.info.run_id, "loss")
        out["stored"] = len(history)
    elif case == "log_batch":
        exp = mlflow.set_experiment("log_batch")
        ts = int(time.time() * 1000)
        points = [Metric(f"m{p % BATCH_KEYS}", p * 1e-3, ts, p // BATCH_KEYS) for p in range(size)]
        batches = [points[i : i + BATCH] for i in range(0, size, BATCH)]
        t0 = time.perf_counter()
        run_id = client.create_run(exp.experiment_id, run_name="log_batch").info.run_id
        for batch in batches:
            client.log_batch(run_id, metrics=batch)
        client.set_terminated(run_id)
        out["seconds"] = time.perf_counter() - t0
        out["stored"] = sum(
            len(client.get_metric_history(run_id, f"m{k}")) for k in range(BATCH_KEYS)
        )
    elif case == "search":
        exp = client.get_experiment_by_name("search")
        assert exp is not None, "the search experiment is missing"
        kwargs: dict[str, Any] = dict(
            experiment_ids=[exp.experiment_id],
            filter_string=SEARCH_FILTER,
            order_by=SEARCH_ORDER,
            max_results=SEARCH_MAX_RESULTS,
        )
        frame = mlflow.search_runs(**kwargs)  # warm-up (and the answer to check)
        times = []
        for _ in range(SEARCH_REPEATS):
            t0 = time.perf_counter()
            frame = mlflow.search_runs(**kwargs)
            times.append(time.perf_counter() - t0)
        client_times = []
        found = []
        for _ in range(SEARCH_REPEATS):
            t0 = time.perf_counter()
            found = client.search_runs(**kwargs)
            client_times.append(time.perf_counter() - t0)
        out.update(
            seconds=statistics.median(times),
            times=times,
            client_seconds=statistics.median(client_times),
            rows=len(frame),
            # Both stores hold the same run ids (run_data.py's seeded generator).
            ids=[str(x) for x in frame["run_id"].tolist()],
            client_ids=[run.info.run_id for run in found],
            columns=sorted(str(c) for c in frame.columns),
        )
    else:
        raise ValueError(f"unknown case {case!r}")
    return out


# ----------------------------------------------------------------------------------------------
# The replaying proxy: the MLflow client's own cost, with a server that takes no time
# ----------------------------------------------------------------------------------------------

PROXY_CANNED = {"/log-metric": b"{}", "/log-batch": b"{}"}  # MLflow's own answer to both
PROXY_RECORDED = ("/runs/search",)  # answered from the recording once a body has been seen


def serve_proxy(upstream: str, port_file: Path) -> None:
    """Serve on a free port (written to ``port_file``) until killed; see the module's
    docstring. Keep-alive HTTP/1.1, as the MLflow client's session expects."""
    import http.client
    import http.server
    import urllib.parse

    target = urllib.parse.urlsplit(upstream)
    recorded: dict[tuple[str, bytes], tuple[int, bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one write per answer, no 40 ms delayed-ACK waits

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, body: bytes) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
            try:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection", "content-length")
                }
                conn.request(self.command, self.path, body=body or None, headers=headers)
                reply = conn.getresponse()
                return reply.status, reply.read()
            finally:
                conn.close()

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            for suffix, canned in PROXY_CANNED.items():
                if path.endswith(suffix):
                    return self.answer(200, canned)
            key = (self.path, body)
            if key in recorded:
                return self.answer(*recorded[key])
            status, payload = self.forward(body)
            if status == 200 and path.endswith(PROXY_RECORDED):
                recorded[key] = (status, payload)
            self.answer(status, payload)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)
    server.serve_forever()


# ----------------------------------------------------------------------------------------------
# loopml's own client (project interpreter), against the loopml server
# ----------------------------------------------------------------------------------------------


def loopml_client(size: int) -> dict[str, Any]:
    import loopml

    values = [i * 1e-3 for i in range(size)]
    t0 = time.perf_counter()
    with loopml.start_run(experiment="client", name="client", log_environment=False) as run:
        t1 = time.perf_counter()
        for i, v in enumerate(values):
            loopml.log_metric("loss", v, step=i)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    return {"n": size, "loop_seconds": t2 - t1, "total_seconds": t3 - t0, "run_id": run.id}


def count_points(workdir: Path, run_id: str) -> int:
    from sqlalchemy import func, select

    from loopml.tracking.tables import metrics
    from loopml.workspace import Workspace

    ws = Workspace.open(workdir)
    try:
        with ws.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(metrics).where(metrics.c.run_id == run_id)
                ).scalar_one()
            )
    finally:
        ws.close()


# ----------------------------------------------------------------------------------------------
# Driver (project interpreter)
# ----------------------------------------------------------------------------------------------


def mlflow_python() -> Path:
    return VENVS / "mlflow" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process on a free port, in its own process group (``mlflow server`` starts
    uvicorn or gunicorn as children)."""

    def __init__(self, name: str, command: list[str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"{name}.log", "w+")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LOOPML_"))}
        self.process = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in command],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}: {self.tail()}"
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as answer:
                    if answer.status == 200:
                        return None
            except OSError:
                pass
            time.sleep(0.3)
        return f"not ready after {timeout:.0f} s: {self.tail()}"

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return " | ".join(self.log.read().strip().splitlines()[-8:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def start_proxy(upstream: str, me: str, work: Path) -> Server | str:
    """The replaying proxy in front of ``upstream`` (a :class:`Server` on the port it picked),
    or why it did not start."""
    port_file = work / "proxy.port"
    proxy = Server(
        "proxy", [sys.executable, me, "--proxy", upstream, "--dir", str(port_file)], work, work
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proxy.process.poll() is not None or time.monotonic() > deadline:
            problem = (
                f"exited with {proxy.process.returncode}"
                if proxy.process.poll() is not None
                else "no port after 30 s"
            )
            proxy.stop()
            return f"{problem}: {proxy.tail()}"
        time.sleep(0.05)
    proxy.port = int(port_file.read_text())
    proxy.url = f"http://127.0.0.1:{proxy.port}"
    return proxy


def run_json(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> dict[str, Any]:
    """Run a worker; its last stdout line is its JSON result (or an ``error``)."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        return {"error": f"exit {proc.returncode}: {tail}"}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        return {"error": f"no result: {lines[-1][:200]}"}
    return result


ROUTES = {
    "log_metric": "tracking.log_metric",
    "log_batch": "tracking.log_batch",
    "search": "tracking.search_runs",
}


def route_times(url: str) -> dict[str, tuple[float, float]]:
    """Per route of loopml's server: (requests, seconds spent answering them) so far, from
    the ``loopml_server_request_seconds`` histogram on its ``/metrics``."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=30) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_sum{", 1), ("_count{", 0)):
            head = "loopml_server_request_seconds" + suffix
            if line.startswith(head) and 'route="' in line:
                route = line.split('route="', 1)[1].split('"', 1)[0]
                found.setdefault(route, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {route: (pair[0], pair[1]) for route, pair in found.items()}


def in_server(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], route: str
) -> float | None:
    """Mean seconds loopml's server spent on one request of ``route`` between two scrapes."""
    n0, s0 = before.get(route, (0.0, 0.0))
    n1, s1 = after.get(route, (0.0, 0.0))
    return (s1 - s0) / (n1 - n0) if n1 > n0 else None


def worker_env(side: str, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LOOPML_"))}
    if side == "loopml-client":
        env["LOOPML_TRACKING_URI"] = url
    else:
        env["MLFLOW_TRACKING_URI"] = url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:,.1f} ms" if x < 10 else f"{x:,.1f} s"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("case", "loopml", "mlflow", "ratio", "client alone", "ceiling", "target", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def report(results: dict[str, dict[str, Any]], sizes: dict[str, int]) -> list[dict[str, Any]]:
    """The table's rows as data: figure per side, ratio (MLflow's time / loopml's), verdict."""
    out = []
    labels = {
        "log_metric": f"1. log_metric x {sizes['log_metric']:,}",
        "log_batch": f"2. log_batch {sizes['log_batch']:,} points",
        "search": f"3. search_runs over {sizes['search']:,} runs",
    }
    for case, label in labels.items():
        if case not in results:
            continue
        mine = results[case].get("loopml", {}).get("seconds")
        theirs = results[case].get("mlflow", {}).get("seconds")
        alone = results[case].get("client alone", {}).get("seconds")
        speedup = ratio(theirs, mine)
        out.append(
            {
                "case": label,
                "loopml": mine,
                "mlflow": theirs,
                "alone": alone,
                "ceiling": ratio(theirs, alone),
                "ratio": speedup,
                "target": f">= {TARGETS[case]:.0f}x",
                "ok": None if speedup is None else speedup >= TARGETS[case],
            }
        )
        if case == "search":
            mine = results[case].get("loopml", {}).get("client_seconds")
            theirs = results[case].get("mlflow", {}).get("client_seconds")
            alone = results[case].get("client alone", {}).get("client_seconds")
            out.append(
                {
                    "case": "   MlflowClient.search_runs (no df)",
                    "loopml": mine,
                    "mlflow": theirs,
                    "alone": alone,
                    "ceiling": ratio(theirs, alone),
                    "ratio": ratio(theirs, mine),
                    "target": "info",
                    "ok": None,
                }
            )
    client = results.get("client", {}).get("loopml")
    if client is not None:
        per_call = (
            None if "loop_seconds" not in client else client["loop_seconds"] / client["n"] * 1e6
        )
        out.append(
            {
                "case": f"4. loopml client log_metric x {sizes['client']:,}, per call",
                "loopml": None if per_call is None else per_call / 1e6,
                "mlflow": None,
                "ratio": None,
                "target": f"< {TARGETS['client_us']:.0f} us",
                "ok": None if per_call is None else per_call < TARGETS["client_us"],
                "per_call_us": per_call,
            }
        )
        out.append(
            {
                "case": "   incl. end of run (all sent and stored)",
                "loopml": client.get("total_seconds"),
                "mlflow": None,
                "ratio": None,
                "target": "info",
                "ok": None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    ap.add_argument("--runs", type=int, default=None, help="runs in the search case")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per client script")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    # Worker entry points (this same file, run by one interpreter or the other).
    ap.add_argument("--setup", choices=["loopml", "mlflow"], help=argparse.SUPPRESS)
    ap.add_argument(
        "--client", choices=["log_metric", "log_batch", "search"], help=argparse.SUPPRESS
    )
    ap.add_argument("--loopml-client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--proxy", metavar="UPSTREAM", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.setup:
        (setup_loopml if args.setup == "loopml" else setup_mlflow)(args.dir, args.size)
        print(json.dumps({"ok": True}))
        return 0
    if args.client:
        print(json.dumps(mlflow_client(args.client, args.size)))
        return 0
    if args.loopml_client:
        print(json.dumps(loopml_client(args.size)))
        return 0
    if args.proxy:
        serve_proxy(args.proxy, args.dir)
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    sizes = {case: pair[1 if args.quick else 0] for case, pair in SIZES.items()}
    if args.runs is not None:
        sizes["search"] = args.runs
    peer = mlflow_python()
    if not peer.exists():
        print(f"{peer} is missing: run benchmarks/setup_peer.sh mlflow", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    loopml_dir, mlflow_dir = work / "loopml", work / "mlflow"
    loopml_dir.mkdir()
    mlflow_dir.mkdir()
    me = str(Path(__file__).resolve())
    runs = sizes["search"] if "search" in cases else 0
    errors: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    servers: dict[str, Server] = {}
    try:
        print(f"writing {runs:,} runs into each store ...", file=sys.stderr)
        for side, python in (("loopml", sys.executable), ("mlflow", str(peer))):
            cmd = [python, me, "--setup", side, "--dir", str(work / side), "--size", str(runs)]
            done = run_json(cmd, dict(os.environ), args.timeout, work / side)
            if "error" in done:
                errors[f"setup {side}"] = done["error"]
        if errors:
            raise RuntimeError("setup failed")
        mlflow_bin = VENVS / "mlflow" / "bin" / "mlflow"
        servers["mlflow"] = Server(
            "mlflow",
            [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{mlflow_dir}/mlflow.db",
             "--artifacts-destination", str(mlflow_dir / "artifacts"),
             "--host", "127.0.0.1", "--port", "{port}"],
            mlflow_dir,
            work,
        )  # fmt: skip
        loopml_bin = [sys.executable, "-m", "loopml.cli"]
        servers["loopml"] = Server(
            "loopml",
            [*loopml_bin, "-w", str(loopml_dir), "server", "--port", "{port}"],
            loopml_dir,
            work,
        )
        for name, server in servers.items():
            problem = server.wait_ready(180)
            if problem:
                errors[f"{name} server"] = problem
        if errors:
            raise RuntimeError("a server did not start")
        proxy = start_proxy(servers["loopml"].url, me, work)
        if isinstance(proxy, str):
            errors["replaying proxy"] = proxy
            raise RuntimeError("the proxy did not start")
        servers["client alone"] = proxy

        for case in cases:
            if case == "client":
                continue
            results[case] = {}
            for side in ("mlflow", "loopml", "client alone"):
                print(f"{case} against {side} ...", file=sys.stderr)
                cmd = [str(peer), me, "--client", case, "--size", str(sizes[case])]
                before = route_times(servers[side].url) if side == "loopml" else {}
                found = run_json(cmd, worker_env(side, servers[side].url), args.timeout, work)
                if side == "loopml":
                    after = route_times(servers[side].url)
                    found["server_per_request"] = in_server(before, after, ROUTES[case])
                if "error" in found:
                    errors[f"{case} on {side}"] = found["error"]
                results[case][side] = found
        if "client" in cases:
            print("loopml's client ...", file=sys.stderr)
            cmd = [sys.executable, me, "--loopml-client", "--size", str(sizes["client"])]
            url = servers["loopml"].url
            found = run_json(cmd, worker_env("loopml-client", url), args.timeout, work)
            if "error" in found:
                errors["loopml client"] = found["error"]
            else:
                found["stored"] = count_points(loopml_dir, found["run_id"])
            results["client"] = {"loopml": found}
    except RuntimeError:
        pass
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rows = report(results, sizes)
    notes = notes_for(results, sizes, rows)
    print()
    print_table(
        [
            (
                r["case"],
                f"{r['per_call_us']:.2f} us" if r.get("per_call_us") is not None else fmt_s(r["loopml"]),
                fmt_s(r["mlflow"]),
                "n/a" if r["ratio"] is None else f"{r['ratio']:.1f}x",
                fmt_s(r.get("alone")),
                "n/a" if r.get("ceiling") is None else f"{r['ceiling']:.1f}x",
                r["target"],
                "" if r["target"] == "info" else verdict(r["ok"]),
            )
            for r in rows
        ]
    )  # fmt: skip
    print()
    for note in notes:
        print(f"- {note}")
    for what, message in errors.items():
        print(f"! {what}: {message}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"sizes": sizes, "rows": rows, "results": results, "errors": errors}, indent=2
            )
        )
    return 1 if errors else 0


def notes_for(
    results: dict[str, dict[str, Any]], sizes: dict[str, int], rows: list[dict[str, Any]]
) -> list[str]:
    notes = []
    for case, expected in (("log_metric", sizes["log_metric"]), ("log_batch", sizes["log_batch"])):
        for side, found in results.get(case, {}).items():
            if side == "client alone":
                continue  # the proxy answers the timed calls itself: nothing is stored
            stored = found.get("stored")
            if stored is not None and stored != expected:
                notes.append(f"{case} on {side}: {stored:,} points stored of {expected:,}")
    search = results.get("search", {})
    mine, theirs = search.get("loopml", {}), search.get("mlflow", {})
    if "ids" in mine and "ids" in theirs:
        same = mine["ids"] == theirs["ids"] and mine["client_ids"] == theirs["client_ids"]
        notes.append(
            f"search: answers of {mine['rows']:,} and {theirs['rows']:,} runs; "
            + ("the same runs in the same order" if same else "THE RUNS DIFFER")
        )
        only_mlflow = sorted(set(theirs["columns"]) - set(mine["columns"]))
        only_loopml = sorted(set(mine["columns"]) - set(theirs["columns"]))
        if only_mlflow or only_loopml:
            notes.append(
                f"search: DataFrame columns only from MLflow's server: {only_mlflow or 'none'}; "
                f"only from loopml's: {only_loopml or 'none'}"
            )
    for case, unit in (("log_metric", "call"), ("log_batch", "call"), ("search", "search")):
        mine = results.get(case, {}).get("loopml", {})
        inside, seconds = mine.get("server_per_request"), mine.get("seconds")
        if inside is not None and seconds:
            per = seconds / (sizes[case] if case == "log_metric" else 1)
            if case == "log_batch":
                per = seconds / max(1, sizes[case] // BATCH)
            notes.append(
                f"{case}: {per * 1000:.2f} ms a {unit} seen by the MLflow client, of which "
                f"{inside * 1000:.2f} ms inside loopml's server (its /metrics); the rest is "
                "the client and HTTP"
            )
    client = results.get("client", {}).get("loopml", {})
    if "stored" in client:
        notes.append(f"loopml client: {client['stored']:,} points stored of {client['n']:,}")
    if any(r.get("ceiling") for r in rows):
        notes.append(
            "client alone: the same MLflow client script against a proxy that answers the timed "
            "calls at once (loopml's recorded answers); ceiling = MLflow's time / that time, the "
            "highest ratio any server could reach with this client"
        )
    notes.append("figures from one run on a shared machine: provisional")
    return notes


if __name__ == "__main__":
    sys.exit(main())
