"""Serving benchmark: loopml's model server against ``mlflow models serve`` and a bare
Starlette app, side by side in one run.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/serving.py               # 2,000 requests a case (about 3 minutes)
    python benchmarks/serving.py --quick       # 300 requests a case
    python benchmarks/serving.py --requests 5000 --json /tmp/serving.json

MLflow runs from its own virtualenv, ``benchmarks/.venvs/mlflow`` (make it with
``benchmarks/setup_peer.sh mlflow``), so it never becomes a project dependency.

The model is the same everywhere: a scikit-learn ``LogisticRegression`` on 20 float features,
trained by each side from the same generated data (same seed, same scikit-learn), and every
server must return the same predictions for the same 100 rows (checked, in the notes).

Servers, each its own process on 127.0.0.1, one after the other:

* ``loopml single``: a deployment of the model alone, the prediction log on (every request
  logged, as always);
* ``loopml single (no log)``: the same with the prediction log's rows dropped before they are
  built (this file patches the server's ``record`` to count metrics only): what routing and
  logging are measured against;
* ``loopml canary``: a canary of a second version at 5 % (95/5), the log on;
* ``mlflow``: ``mlflow models serve -m MODEL --env-manager local`` (one uvicorn worker, its
  default), with the model's signature, so it checks the inputs as loopml does;
* ``bare``: a Starlette app that parses the same JSON into a DataFrame and calls
  ``model.predict`` in the request handler, on the same uvicorn: the limit.

The loopml servers are ``create_app`` under ``uvicorn.run(app, host, port,
log_level="warning")``, which is what ``loopml serve`` runs. loopml and the bare app get
``POST /predict`` with ``{"columns": [...], "data": [[...]]}``; MLflow gets the same rows as
``POST /invocations`` with ``{"dataframe_split": {...}}``.

All servers run at once (idle between their turns). The load generator runs in this
process: raw keep-alive HTTP/1.1 over sockets on loopback, the request bytes built once, one
thread per connection; ``--requests`` requests a case per server after 100 warm-up ones,
sequentially (one connection) and at concurrency 8 (8 connections, each sending its share
back to back). Each case is split into ``--rounds`` rounds (10), and each round sends its
share to every server in turn, the order rotating: on a shared machine a burst of load from
elsewhere then falls on every server alike instead of on whichever ran at the time.
Throughput is the requests over the rounds' summed wall time; p50 and p99 are over every
request. The generator reports its own CPU time per request, to show it is not the
bottleneck (it should be a small fraction of the bare app's p50).

Targets (the issue's): loopml canary with logging >= 3x MLflow's throughput and within 1.5x
of the bare app's; routing + logging (canary against single without the log) under 0.3 ms
at p50. On a shared machine the p50 difference of two servers moves by more than that from
one round to the next, so the same cost is also timed in-process (``--overhead``: the
server's ``routing`` and ``record`` on the canary deployment, per request), where it is
measured to the microsecond.

The exit code is 0 even when a target is missed (this is a report); it is 1 when a server
could not start or answered with errors. Only the standard library is imported at module
level: MLflow's venv has no loopml, and the project's interpreter has no MLflow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
WORK = HERE / ".work" / "serving"
FEATURES = [f"f{i}" for i in range(20)]
SEED = 0
WARMUP = 100
CONCURRENCY = 8
BATCH_ROWS = 100
CANARY_SHARE = 5.0  # percent of the traffic on the canary

# ----------------------------------------------------------------------------------------------
# The model (trained the same way on every side)
# ----------------------------------------------------------------------------------------------


def make_data() -> tuple[Any, Any]:
    """The training set: 5,000 rows x 20 float features, a binary label."""
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=5000, n_features=len(FEATURES), n_informative=10, random_state=SEED
    )


def train(c: float = 1.0) -> tuple[Any, Any]:
    """The model and the training features as a DataFrame."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x, y = make_data()
    frame = pd.DataFrame(x, columns=FEATURES)
    return LogisticRegression(C=c, max_iter=1000).fit(frame, y), frame


def request_rows(n: int, offset: int = 0) -> list[list[float]]:
    """``n`` rows of request values (from the training distribution, 6 decimals)."""
    x, _ = make_data()
    return [[round(float(v), 6) for v in x[(offset + i) % len(x)]] for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Server processes (this file, --server SIDE; MLflow's own CLI)
# ----------------------------------------------------------------------------------------------


def setup_loopml(workdir: Path) -> None:
    """A workspace with ``bench/1`` (the champion) and ``bench/2`` (the canary's candidate),
    and the deployments ``single`` and ``canary`` (bench/2 at 5 %)."""
    import loopml

    ws = loopml.Workspace.init(workdir)
    model, frame = train()
    candidate, _ = train(c=0.5)
    ws.models.register("bench", model, input_example=frame.head())
    ws.models.register("bench", candidate, input_example=frame.head())
    ws.deployments.create("single", "bench/1")
    ws.deployments.create("canary", "bench/1")
    ws.deployments.canary(
        "canary", "bench/2", [CANARY_SHARE, 100.0], step_duration=86400.0, min_requests=10**9
    )
    ws.close()


def setup_mlflow(workdir: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model, frame = train()
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(
        model, str(workdir / "model"), signature=signature, pip_requirements=["scikit-learn"]
    )


def serve_loopml(args: argparse.Namespace) -> None:
    import uvicorn

    import loopml
    from loopml.serving.app import ModelServer, create_app

    if args.log == "off":
        # Count the metrics as usual; build and queue no log row.
        def record(self: ModelServer, served: Any, loaded: Any, *rest: Any, **kw: Any) -> None:
            started, error = rest[3], rest[4]
            labels = (self.name, loaded.label, loaded.variant.name)
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe(time.perf_counter() - started)
            if error is not None:
                self.errors.labels(*labels).inc()

        ModelServer.record = record  # type: ignore[method-assign]
    ws = loopml.Workspace.open(args.workdir)
    app = create_app(ws, args.deployment)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def serve_bare(args: argparse.Namespace) -> None:
    import json as jsonlib

    import pandas as pd
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    model, _ = train()

    async def predict(request: Request) -> Response:
        body = jsonlib.loads(await request.body())
        frame = pd.DataFrame(body["data"], columns=body["columns"])
        out = {"predictions": model.predict(frame).tolist()}
        return Response(jsonlib.dumps(out), media_type="application/json")

    async def ping(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def overhead(args: argparse.Namespace) -> None:
    """In-process: the time the server spends per request on routing (``routing``: the
    sticky hash and the variant) and on logging (``record``: metrics, the row, its JSON) for
    the canary deployment, against scoring alone; median of 7 repeats of 2,000 requests.
    Prints one JSON line."""
    import uuid

    import loopml
    from loopml.serving.app import ModelServer

    ws = loopml.Workspace.open(args.workdir)
    server = ModelServer(ws, "canary")
    server.refresh()
    served = server.served
    assert served is not None
    columns = FEATURES
    out: dict[str, Any] = {}
    for rows in (1, BATCH_ROWS):
        records = [dict(zip(columns, r, strict=True)) for r in request_rows(rows)]
        ids = [uuid.uuid4().hex for _ in range(2000)]
        loaded = served.loaded["primary"]
        outputs = server.score(served, loaded, records)
        route, record, score = [], [], []
        for _ in range(7):
            t0 = time.perf_counter()
            for rid in ids:
                server.routing(served, rid)
            t1 = time.perf_counter()
            for rid in ids:
                server.record(served, loaded, rid, records, outputs, t1, None)
            t2 = time.perf_counter()
            for _ in ids[:200]:
                server.score(served, loaded, records)
            t3 = time.perf_counter()
            server.log._rows = {k: [] for k in server.log._rows}  # nothing is written here
            route.append((t1 - t0) / len(ids) * 1e6)
            record.append((t2 - t1) / len(ids) * 1e6)
            score.append((t3 - t2) / 200 * 1e6)
        out[str(rows)] = {
            "routing_us": statistics.median(route),
            "record_us": statistics.median(record),
            "score_us": statistics.median(score),
        }
    ws.close()
    sys.stdout.write(json.dumps(out) + "\n")


def measure_overhead(workdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--overhead", "--workdir", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=peer_env("loopml"))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_setup(side: str, workdir: Path, timeout: float) -> str | None:
    """Prepare ``side``'s model in ``workdir``; None, or why it failed."""
    python = peer_python(side)
    if not python.exists():
        return f"{python} not found: run `benchmarks/setup_peer.sh {side}`"
    cmd = [str(python), str(Path(__file__).resolve()), "--setup", side, "--workdir", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=peer_env(side), timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        return f"setup of {side} failed (exit {proc.returncode}): " + " | ".join(tail)
    return None


def peer_python(side: str) -> Path:
    return Path(sys.executable) if side == "loopml" else VENVS / side / "bin" / "python"


def peer_env(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        GIT_PYTHON_REFRESH="quiet",
        PYTHONHASHSEED="0",
        PYTHONWARNINGS="ignore",
    )
    if side != "loopml":
        env.pop("PYTHONPATH", None)
        # MLflow's CLI starts `uvicorn` from PATH: the one of its venv, not the project's.
        env["PATH"] = f"{VENVS / side / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.pop("VIRTUAL_ENV", None)
    return env


class Server:
    """One server process on a free port, in its own process group (MLflow's CLI starts
    uvicorn as a child)."""

    def __init__(self, name: str, command: list[str], side: str, cwd: Path, ready_path: str):
        self.name = name
        self.port = free_port()
        self.ready_path = ready_path
        self.log = open(WORK / f"{name.replace(' ', '_').replace(',', '')}.log", "w+")  # noqa: SIM115
        cmd = [c.replace("{port}", str(self.port)) for c in command]
        self.process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=peer_env(side),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        request = (
            f"GET {self.ready_path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
        ).encode()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}: {self.tail()}"
            try:
                conn = Connection(self.port)
                try:
                    status, _ = conn.roundtrip(request)
                finally:
                    conn.close()
                if status == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.2)
        return f"not ready after {timeout:.0f} s: {self.tail()}"

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()
        return " | ".join(lines[-8:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# ----------------------------------------------------------------------------------------------
# The load generator: raw keep-alive HTTP/1.1 over blocking sockets
# ----------------------------------------------------------------------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; its status and body (the answer must carry Content-Length)."""
        self.sock.sendall(request)
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buffer += chunk
            end = buffer.find(b"\r\n\r\n")
        head = buffer[:end].lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise ConnectionError(f"no Content-Length in {head[:200]!r}")
        length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
        stop = end + 4 + length
        while len(buffer) < stop:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buffer += chunk
        self.buffer = buffer[stop:]
        return int(buffer[9:12]), buffer[end + 4 : stop]

    def close(self) -> None:
        self.sock.close()


def http_request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def load(port: int, request: bytes, total: int, concurrency: int) -> dict[str, Any]:
    """``total`` requests over ``concurrency`` connections: every latency (ns), the wall and
    generator CPU seconds, the statuses and any connection failure."""
    share = [
        total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)
    ]
    latencies: list[list[int]] = [[] for _ in range(concurrency)]
    statuses: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    connections = [Connection(port) for _ in range(concurrency)]
    gate = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        conn, mine, seen = connections[i], latencies[i], {}
        gate.wait()
        try:
            for _ in range(share[i]):
                t0 = time.perf_counter_ns()
                status, _ = conn.roundtrip(request)
                mine.append(time.perf_counter_ns() - t0)
                seen[status] = seen.get(status, 0) + 1
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        with lock:
            for k, v in seen.items():
                statuses[str(k)] = statuses.get(str(k), 0) + v

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for conn in connections:
        conn.close()
    samples = [x for part in latencies for x in part]
    return {
        "samples": samples,
        "seconds": wall,
        "cpu": cpu,
        "statuses": statuses,
        "failures": failures,
    }


def summary(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's figures from its rounds: throughput over the rounds' summed wall time,
    latency percentiles over every request."""
    samples = sorted(x for c in chunks for x in c["samples"])
    seconds = sum(c["seconds"] for c in chunks)
    statuses: dict[str, int] = {}
    for c in chunks:
        for k, v in c["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    done = len(samples)
    return {
        "requests": done,
        "seconds": seconds,
        "rps": done / seconds if seconds else None,
        "p50_ms": quantile(samples, 0.50) / 1e6 if samples else None,
        "p99_ms": quantile(samples, 0.99) / 1e6 if samples else None,
        "round_rps": [len(c["samples"]) / c["seconds"] for c in chunks if c["seconds"]],
        "statuses": dict(sorted(statuses.items())),
        "generator_cpu_us": sum(c["cpu"] for c in chunks) / done * 1e6 if done else None,
        "failures": [f for c in chunks for f in c["failures"]],
    }


def quantile(sorted_samples: list[int], q: float) -> float:
    index = q * (len(sorted_samples) - 1)
    low = int(index)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (index - low)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

SERVERS = ("loopml single", "loopml single (no log)", "loopml canary", "mlflow", "bare")
CASES = (("1 row", 1, 1), ("1 row", 1, CONCURRENCY), ("100 rows", BATCH_ROWS, 1))
CASES += (("100 rows", BATCH_ROWS, CONCURRENCY),)


def bodies(rows: int, mlflow: bool) -> bytes:
    split = {"columns": FEATURES, "data": request_rows(rows)}
    return json.dumps({"dataframe_split": split} if mlflow else split).encode()


def measure_all(servers: dict[str, Server], total: int, rounds: int) -> dict[str, Any]:
    """Every case on every server, interleaved: each case runs in ``rounds`` rounds, and
    each round sends its share to every server in turn (the order rotating), so a burst of
    load from elsewhere on the machine falls on all of them alike."""
    out: dict[str, dict[str, Any]] = {name: {} for name in servers}
    requests: dict[tuple[str, int], bytes] = {}
    for name, server in servers.items():
        is_mlflow = name == "mlflow"
        path = "/invocations" if is_mlflow else "/predict"
        for rows in {r for _, r, _ in CASES}:
            requests[(name, rows)] = http_request(server.port, path, bodies(rows, is_mlflow))
        check = Connection(server.port)
        status, body = check.roundtrip(requests[(name, BATCH_ROWS)])
        check.close()
        out[name]["check"] = {"status": status, "predictions": json.loads(body).get("predictions")}
    names = list(servers)
    for label, rows, concurrency in CASES:
        key = f"{label}, c={concurrency}"
        for name in names:
            load(servers[name].port, requests[(name, rows)], WARMUP, concurrency)
        chunks: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        per_round = [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]
        print(f"  {key:<16} {rounds} rounds of {per_round[0]} requests per server ...", end="")
        t0 = time.perf_counter()
        for i, n in enumerate(per_round):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                chunks[name].append(
                    load(servers[name].port, requests[(name, rows)], n, concurrency)
                )
        print(f" {time.perf_counter() - t0:.0f} s")
        for name in names:
            out[name][key] = summary(chunks[name])
    return out


def start(name: str, loopml_dir: Path, mlflow_dir: Path) -> Server:
    me = str(Path(__file__).resolve())
    if name.startswith("loopml"):
        deployment = "canary" if "canary" in name else "single"
        log = "off" if "no log" in name else "on"
        cmd = [sys.executable, me, "--server", "loopml", "--workdir", str(loopml_dir)]
        cmd += ["--deployment", deployment, "--log", log, "--port", "{port}"]
        return Server(name, cmd, "loopml", loopml_dir, "/ready")
    if name == "mlflow":
        mlflow = VENVS / "mlflow" / "bin" / "mlflow"
        cmd = [str(mlflow), "models", "serve", "-m", str(mlflow_dir / "model")]
        cmd += ["--env-manager", "local", "--host", "127.0.0.1", "--port", "{port}"]
        return Server(name, cmd, "mlflow", mlflow_dir, "/ping")
    cmd = [sys.executable, me, "--server", "bare", "--port", "{port}"]
    return Server(name, cmd, "loopml", WORK, "/ping")


def fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}/s" if unit == "rps" else f"{x:,.2f} ms"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def figure(results: dict[str, Any], name: str, case: str, key: str) -> float | None:
    value = results.get(name, {}).get(case, {}).get(key)
    return None if value is None else float(value)


def report(
    results: dict[str, Any], overheads: dict[str, Any]
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The figures table (every server and case) and the targets table."""
    figures: list[tuple[str, ...]] = []
    for label, _, concurrency in CASES:
        case = f"{label}, c={concurrency}"
        for name in SERVERS:
            rps = figure(results, name, case, "rps")
            figures.append(
                (
                    case,
                    name,
                    fmt(rps, "rps"),
                    fmt(figure(results, name, case, "p50_ms"), "ms"),
                    fmt(figure(results, name, case, "p99_ms"), "ms"),
                    f"{ratio(rps, figure(results, 'mlflow', case, 'rps')) or 0:.2f}x"
                    if rps
                    else "n/a",
                    f"{ratio(rps, figure(results, 'bare', case, 'rps')) or 0:.2f}x"
                    if rps
                    else "n/a",
                )
            )
    targets: list[tuple[str, ...]] = []
    for label, _, concurrency in CASES:
        case = f"{label}, c={concurrency}"
        canary = figure(results, "loopml canary", case, "rps")
        vs_mlflow = ratio(canary, figure(results, "mlflow", case, "rps"))
        vs_bare = ratio(figure(results, "bare", case, "rps"), canary)
        added = None
        p50_canary = figure(results, "loopml canary", case, "p50_ms")
        p50_single = figure(results, "loopml single (no log)", case, "p50_ms")
        if p50_canary is not None and p50_single is not None:
            added = p50_canary - p50_single
        targets += [
            (
                case,
                "canary throughput vs MLflow",
                "n/a" if vs_mlflow is None else f"{vs_mlflow:.2f}x",
                ">= 3x",
                verdict(None if vs_mlflow is None else vs_mlflow >= 3),
            ),
            (
                case,
                "bare throughput vs canary",
                "n/a" if vs_bare is None else f"{vs_bare:.2f}x",
                "<= 1.5x",
                verdict(None if vs_bare is None else vs_bare <= 1.5),
            ),
            (
                case,
                "routing + logging at p50",
                "n/a" if added is None else f"{added:+.3f} ms",
                "< 0.3 ms" if concurrency == 1 else "(info)",
                verdict(None if added is None else added < 0.3) if concurrency == 1 else "",
            ),
        ]
    for rows, spent in sorted(overheads.items(), key=lambda item: int(item[0])):
        if not isinstance(spent, dict):
            continue
        cost = spent["routing_us"] + spent["record_us"]
        targets.append(
            (
                f"{rows} row{'s' if rows != '1' else ''}, in-process",
                "routing + logging per request",
                f"{cost / 1000:.3f} ms",
                "< 0.3 ms",
                verdict(cost < 300),
            )
        )
    return figures, targets


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], aligns: str) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths, strict=True)).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def versions() -> dict[str, str]:
    out = {"loopml": "?", "mlflow": "?"}
    try:
        import loopml

        out["loopml"] = loopml.__version__
    except ImportError:
        pass
    python = VENVS / "mlflow" / "bin" / "python"
    if python.exists():
        proc = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
            capture_output=True,
            text=True,
        )
        out["mlflow"] = proc.stdout.strip() or "?"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 requests a case")
    ap.add_argument("--requests", type=int, default=None, help="requests a case (default 2000)")
    ap.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    ap.add_argument("--rounds", type=int, default=10, help="rounds each case is split into")
    ap.add_argument("--timeout", type=float, default=120, help="seconds for a server to start")
    ap.add_argument("--json", type=Path, default=None, help="also write all results here")
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    ap.add_argument("--overhead", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--server", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--deployment", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.overhead:
        overhead(args)
        return 0
    if args.setup:
        (setup_loopml if args.setup == "loopml" else setup_mlflow)(Path(args.workdir))
        return 0
    if args.server:
        (serve_loopml if args.server == "loopml" else serve_bare)(args)
        return 0

    # A SIGTERM to the driver still stops the servers (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if importlib.util.find_spec("loopml") is None:
        print(f"`import loopml` fails in {sys.executable}: run `pip install -e .`")
        return 1
    joined = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(joined) - set(SERVERS))
    if unknown:
        ap.error(f"unknown server(s): {unknown}; choose from {list(SERVERS)}")
    total = args.requests or (300 if args.quick else 2000)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    loopml_dir, mlflow_dir = WORK / "loopml", WORK / "mlflow"
    loopml_dir.mkdir()
    mlflow_dir.mkdir()
    load_avg = os.getloadavg()[0]
    print(
        f"serving benchmark: {total:,} requests a case after {WARMUP} warm-up, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load_avg:.2f}"
    )
    results: dict[str, Any] = {}
    overheads: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        needs = {"loopml"} if any(n.startswith("loopml") for n in joined) else set()
        needs |= {"mlflow"} if "mlflow" in joined else set()
        for side in sorted(needs):
            print(f"  setting up {side} ...", flush=True)
            problem = run_setup(side, loopml_dir if side == "loopml" else mlflow_dir, 600)
            if problem:
                errors[side] = problem
        if "loopml canary" in joined and "loopml" not in errors:
            print("  timing routing and logging in-process ...", flush=True)
            overheads = measure_overhead(loopml_dir)
        servers: dict[str, Server] = {}
        try:
            for name in joined:
                side = "mlflow" if name == "mlflow" else ("loopml" if name != "bare" else "bare")
                if side in errors:
                    errors[name] = errors[side]
                    continue
                server = start(name, loopml_dir, mlflow_dir)
                problem = server.wait_ready(args.timeout)
                if problem:
                    errors[name] = problem
                    print(f"  {name}: {problem}")
                    server.stop()
                    continue
                servers[name] = server
                print(f"  {name} ready on port {server.port}", flush=True)
            results = measure_all(servers, total, args.rounds) if servers else {}
        finally:
            for server in servers.values():
                server.stop()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    notes = notes_for(results, errors, total)
    if "error" in overheads:
        notes.append(f"the in-process timing did not run: {overheads.pop('error')}")
    for rows, spent in overheads.items():
        notes.append(
            f"in-process, {rows} row(s), canary deployment: routing {spent['routing_us']:.1f} µs, "
            f"logging (metrics, row, JSON of inputs and outputs) {spent['record_us']:.1f} µs, "
            f"scoring (check + predict) {spent['score_us']:.1f} µs per request."
        )
    v = versions()
    figures, targets = report(results, overheads)
    print()
    print_table(
        ("case", "server", "req/s", "p50", "p99", "vs MLflow", "vs bare"), figures, "<<>>>>>"
    )
    print()
    print_table(("case", "target", "figure", "target", "verdict"), targets, "<<><<")
    print(f"\n(loopml {v['loopml']}, MLflow {v['mlflow']})\n")
    for note in notes:
        print(f"- {note}")
    verdicts = [t[4] for t in targets]
    print(
        f"\nverdicts: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{verdicts.count('n/a')} n/a"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"requests": total, "results": results, "overheads": overheads}, indent=2)
        )
    bad = any(
        set(r.get("statuses", {})) - {"200"} or r.get("failures")
        for res in results.values()
        for r in res.values()
        if isinstance(r, dict) and "statuses" in r
    )
    return 1 if errors or bad else 0


def notes_for(results: dict[str, Any], errors: dict[str, str], total: int) -> list[str]:
    notes = [
        f"{total:,} requests a case ({CONCURRENCY} connections at c={CONCURRENCY}); latency is "
        "each request's round trip on its connection (at c=8 it includes queueing).",
        f"canary: bench/2 answers keys in the low {CANARY_SHARE:g}% of the hash buckets; the "
        "request id, generated per request, is the key.",
    ]
    cpu = [
        r["generator_cpu_us"]
        for res in results.values()
        for k, r in res.items()
        if k.startswith("1 row") and isinstance(r, dict) and r.get("generator_cpu_us")
    ]
    bare = figure(results, "bare", "1 row, c=1", "p50_ms")
    if cpu:
        share = f" ({max(cpu) / 1000 / bare:.0%} of the bare app's p50)" if bare else ""
        notes.append(
            f"the load generator's CPU time per single-row request: {statistics.median(cpu):.0f} "
            f"µs median, {max(cpu):.0f} µs at most{share}."
        )
    for name, res in results.items():
        spread = res.get("1 row, c=1", {}).get("round_rps") or []
        if spread:
            notes.append(
                f"{name}: 1 row, c=1, throughput of the {len(spread)} rounds "
                f"{min(spread):,.0f}–{max(spread):,.0f} req/s (median "
                f"{statistics.median(spread):,.0f}): how much the machine moved under the run."
            )
    reference = results.get("bare", {}).get("check", {}).get("predictions")
    for name, res in results.items():
        check = res.get("check", {})
        same = reference is not None and check.get("predictions") == reference
        notes.append(
            f"{name}: the 100-row check answered {check.get('status')}, predictions "
            + ("equal to the bare app's" if same else "NOT equal to the bare app's")
            + ("" if reference is not None else " (no bare run)")
        )
        for case, r in res.items():
            if isinstance(r, dict) and (set(r.get("statuses", {})) - {"200"} or r.get("failures")):
                notes.append(f"{name} {case}: statuses {r['statuses']} {r['failures'][:3]}")
    for name, problem in errors.items():
        notes.append(f"{name} did not run: {problem}")
    return notes


if __name__ == "__main__":
    sys.exit(main())
