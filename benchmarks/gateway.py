"""LLM gateway benchmark: loopml's gateway against LiteLLM's proxy, both in front of the same
fake provider, side by side in one run.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/gateway.py                 # 2,000 requests a case and side, c=1 and c=20
    python benchmarks/gateway.py --quick         # 300 requests a case and side
    python benchmarks/gateway.py --requests 5000 --concurrency 50 --json /tmp/gateway.json
    python benchmarks/gateway.py --sides direct,litellm --cases stream
    python benchmarks/gateway.py --memory        # also RSS after 1,000 and 100,000 requests
    python benchmarks/gateway.py --rate 100,300  # also open loop at 100 and 300 requests/s
    python benchmarks/gateway.py --sides direct,loopml --cases non-stream --concurrency 1 \
        --requests 500 --online-eval 0.1           # added p50 with 10% judged online vs none

LiteLLM runs from its own virtualenv, ``benchmarks/.venvs/litellm`` (make it with
``benchmarks/setup_peer.sh litellm``: ``litellm[proxy]==1.108.*``), so it never becomes a
project dependency.

Sides, each its own process on 127.0.0.1:

* ``direct``: the fake provider itself (``benchmarks/fake_llm.py``: an OpenAI-compatible
  server on raw asyncio with zero added delay): the limit;
* ``loopml``: ``python -m loopml.cli -w WS gateway serve --config CFG --port P`` over a fresh
  temporary workspace, with a virtual key (``loopml gateway keys create --rpm 1000000 --budget
  1000000/month``), so that every request is authenticated, rate-limited, budget-checked,
  priced and logged (the request log on, with content), as in production; one worker
  process unless ``--loopml-workers N`` (``--workers N``: the replicas share keys, limits
  and budgets through the workspace's store);
* ``litellm``: ``litellm --config CFG --port P --num_workers 1`` with the same model
  (``openai/gpt-4o-mini`` at the fake provider's ``api_base``) and a master key. LiteLLM's
  virtual keys, budgets and spend logs need its PostgreSQL database and Prisma (whose engine
  binaries are downloaded at first use: not possible offline), so it runs without them: it does
  less work per request than loopml does here, which favours LiteLLM.

Every side gets the same request body (``model`` is the side's name for the same fake model),
``POST /v1/chat/completions``, non-streaming and streaming (SSE, ``stream_options.include_usage``
set). The load generator runs in this process: raw keep-alive HTTP/1.1 on asyncio streams, the
request bytes built once, ``--concurrency`` connections each sending back to back from a
shared count; every case runs at each concurrency given (default ``1,20``: c=1 shows a
gateway's own cost per request, c=20 adds queueing behind it). It is not httpx on purpose: httpx costs ~0.3 ms of client CPU a request, which on
a 2-core machine would be taken from the servers being measured; this client costs ~0.05 ms
(its CPU per request is printed). Every answer is checked (status 200; a ``choices`` object,
or a stream ending in ``data: [DONE]``).

With ``--rate R[,R...]``, every case also runs **open loop**: the i-th request is due at
``i / R`` seconds and is sent then over the first free of the largest ``--concurrency``
connections, and its latency counts from when it was due (waiting for a free connection
included: no coordinated omission, as wrk2 does it). A closed loop at c=20 keeps 20 requests
queued at every moment, so its latency is mostly queueing: by Little's law, 20 / throughput,
i.e. the server's CPU per request times 20 on a saturated machine. An open loop below
saturation shows what a request pays at that load instead. A side that can't keep up with
``R`` falls behind, and its latencies grow with the run (reported as they are).

All servers run at once. Each case is split into ``--rounds`` rounds (10) after a warm-up,
and each round sends its share to every side in turn, the order rotating, so that load from
elsewhere on a shared machine falls on all sides alike. Throughput is requests over the
rounds' summed wall time; percentiles are over every request. *Added* latency is a side's
percentile minus the direct side's same percentile (paired by percentile). ``CPU/req`` is the
CPU time (user + system, from ``/proc``) the side's server process tree spent per request:
unlike latency it hardly moves with load from elsewhere on a shared machine.

With ``--online-eval SHARE``, a second loopml side, ``loopml-eval``, runs the same config
plus ``[gateway.online_eval]`` sampling ``SHARE`` of the requests, judged by a model group
``judge`` on the same fake provider (three evaluators, so about ``3 × SHARE`` judge calls a
request, each logged), over a workspace of its own; its added p50 is compared with the
``loopml`` side's, measured in the same rounds (the target: unchanged, within
``TARGET_ONLINE_EVAL_MS``).

Also measured:

* in-process (``--no-inprocess`` skips it): ``loopml.llm.Gateway.from_config(...).achat(body,
  api_key=KEY)`` (the same workspace, config and key as the server) against a bare
  ``aiohttp.ClientSession.post`` + ``.json()`` of the same body to the fake provider (aiohttp
  is the gateway's own client: the difference is the gateway's work), sequentially,
  in 10 alternating blocks; the median per call, and the CPU per call (the event loop's thread,
  and the gateway's other threads: log writer, bookkeeping, limiter);
* memory (``--memory``): the RSS (``VmRSS`` in ``/proc/PID/status``, summed over the server's
  process tree) of each gateway after 1,000 requests and after ``--memory-requests`` (100,000;
  LiteLLM ``--memory-peer-requests``, 10,000, for information), at the largest concurrency,
  in rounds of 10,000 alternating non-streaming and streaming.

Targets (the issue's): loopml adds <= 2 ms at p50 and <= 5 ms at p99 over direct; LiteLLM's
added p50 >= 5x loopml's; the in-process path adds < 0.3 ms; RSS after 100,000 requests
within 50 MB of RSS after 1,000. The exit code is 0 when every side ran and answered
correctly, even when a target is missed (this is a report); 1 when a side could not start or
answered anything else. Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
WORK = HERE / ".work" / "gateway"
FAKE = HERE / "fake_llm.py"
MODEL = "bench"  # the alias clients ask loopml and LiteLLM for
UPSTREAM = "gpt-4o-mini"  # the model name sent to the fake provider (priced by both gateways)
MASTER_KEY = "sk-litellm-bench-master"
PROVIDER_KEY = "sk-fake-provider"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the benchmark in five words."},
]
SIDES = ("direct", "loopml", "litellm")
CASES = ("non-stream", "stream")
WARMUP = 100
TARGET_P50_MS = 2.0
TARGET_P99_MS = 5.0
TARGET_RATIO = 5.0
TARGET_INPROCESS_MS = 0.3
TARGET_GROWTH_MB = 50.0
TARGET_ONLINE_EVAL_MS = 0.25  # online evaluation at --online-eval may move added p50 this much
EVAL_SIDE = "loopml-eval"

# ----------------------------------------------------------------------------------------------
# Server processes
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peer_env(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(
        PYTHONHASHSEED="0",
        PYTHONWARNINGS="ignore",
        DO_NOT_TRACK="true",
        FAKE_LLM_KEY=PROVIDER_KEY,
    )
    if side == "litellm":
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{VENVS / 'litellm' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # No network: the shipped cost map, no telemetry, quiet logs, no DB.
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_TELEMETRY="False",
            LITELLM_LOG="ERROR",
            LITELLM_MODE="PRODUCTION",
            DISABLE_ADMIN_UI="True",
        )
        env.pop("DATABASE_URL", None)
    return env


class Server:
    """One server process on a free port, in its own process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path):
        self.name = name
        self.port = free_port()
        self.log_path = WORK / f"{name}.log"
        self.log = open(self.log_path, "w+")  # noqa: SIM115
        cmd = [c.replace("{port}", str(self.port)) for c in command]
        self.process = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, path: str, headers: dict[str, str], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode()
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}: {self.tail()}"
            try:
                status, body, _ = asyncio.run(one_request(self.port, request))
                if status == 200:
                    return None
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.25)
        return f"not ready after {timeout:.0f} s ({last}): {self.tail()}"

    def tail(self, n: int = 8) -> str:
        self.log.flush()
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()
        return " | ".join(lines[-n:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and all its descendants, in seconds."""
        return tree_cpu_seconds(self.process.pid)

    def rss_mb(self) -> float:
        """VmRSS of the process and all its descendants, in MB."""
        return tree_rss_kb(self.process.pid) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def process_tree() -> dict[int, tuple[int, list[str]]]:
    """Every process: pid -> (parent pid, the fields of /proc/PID/stat after the name)."""
    out: dict[int, tuple[int, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), fields)
    return out


def descendants(root: int, tree: dict[int, tuple[int, list[str]]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in tree.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    tree = process_tree()
    ticks = 0
    for pid in descendants(root, tree):
        if pid in tree:
            fields = tree[pid][1]
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / CLOCK_TICKS


def tree_rss_kb(root: int) -> int:
    total = 0
    for pid in descendants(root, process_tree()):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def start_fake() -> Server:
    server = Server("direct", [sys.executable, str(FAKE), "--port", "{port}"], peer_env("x"), WORK)
    return server


def loopml_config(fake_port: int, online_eval: float | None = None) -> str:
    judged = ""
    if online_eval is not None:
        judged = f"""
[gateway.models.judge]

[[gateway.models.judge.deployments]]
name = "fake-judge"
provider = "openai"
model = "{UPSTREAM}"
base_url = "http://127.0.0.1:{fake_port}/v1"
api_key_env = "FAKE_LLM_KEY"

[gateway.online_eval]
sample = {online_eval}
judge_model = "judge"
routes = ["{MODEL}"]
delay_s = 0.0  # no retrieval span to wait for: judge during the measured rounds
"""
    return f"""\
[gateway]
require_key = true
log_content = "full"
log_flush_interval = 1.0
timeout = 30.0
num_retries = 0

[gateway.models.{MODEL}]
strategy = "weighted"

[[gateway.models.{MODEL}.deployments]]
name = "fake"
provider = "openai"
model = "{UPSTREAM}"
base_url = "http://127.0.0.1:{fake_port}/v1"
api_key_env = "FAKE_LLM_KEY"
{judged}"""


def litellm_config(fake_port: int) -> str:
    return f"""\
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{UPSTREAM}
      api_base: http://127.0.0.1:{fake_port}/v1
      api_key: os.environ/FAKE_LLM_KEY
litellm_settings:
  num_retries: 0
  request_timeout: 30
  set_verbose: false
  json_logs: false
  telemetry: false
general_settings:
  master_key: {MASTER_KEY}
"""


def setup_loopml(
    workdir: Path, fake_port: int, timeout: float, online_eval: float | None = None
) -> tuple[Path, str]:
    """A workspace, the config file and a virtual key; (config path, key secret).
    Raises RuntimeError with the CLI's own words when a step fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    ws = workdir / "ws"
    config = workdir / "gateway.toml"
    config.write_text(loopml_config(fake_port, online_eval))
    env = peer_env("loopml")
    cli = [sys.executable, "-m", "loopml.cli"]
    steps = [
        [*cli, "init", str(ws)],
        [*cli, "-w", str(ws), "gateway", "check", "--config", str(config)],
        [*cli, "-w", str(ws), "gateway", "keys", "create", "--name", "bench"]
        + ["--rpm", "1000000", "--budget", "1000000/month", "--json"],
    ]
    out = ""
    for cmd in steps:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout
        )
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(
                f"`{' '.join(cmd[2:])}` failed ({proc.returncode}): {' | '.join(said)}"
            )
        out = proc.stdout
    secret = find_secret(out)
    if secret is None:
        raise RuntimeError(
            f"no key secret (sk-lml-…) in the output of `keys create`: {out[:300]!r}"
        )
    return config, secret


def find_secret(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for field in ("secret", "key", "api_key", "token"):
            value = data.get(field)
            if isinstance(value, str) and value.startswith(("sk-lml-", "lml_")):
                return value
    match = re.search(r"(?:sk-lml-|\blml_)[A-Za-z0-9_\-]+", text)
    return match.group(0) if match else None


def start_loopml(workdir: Path, config: Path, name: str = "loopml", workers: int = 1) -> Server:
    cmd = [sys.executable, "-m", "loopml.cli", "-w", str(workdir / "ws"), "gateway", "serve"]
    cmd += ["--config", str(config), "--host", "127.0.0.1", "--port", "{port}"]
    cmd += ["--workers", str(workers)]
    return Server(name, cmd, peer_env("loopml"), workdir)


def start_litellm(workdir: Path, fake_port: int) -> Server:
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(fake_port))
    exe = VENVS / "litellm" / "bin" / "litellm"
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", "{port}"]
    cmd += ["--num_workers", "1"]
    return Server("litellm", cmd, peer_env("litellm"), workdir)


# ----------------------------------------------------------------------------------------------
# The load generator: raw keep-alive HTTP/1.1 on asyncio streams
# ----------------------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, int]:
    """One response: its status, body and the perf_counter_ns when its first body bytes
    arrived. Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at)
        length = int(lower[at + 15 : end])
        body = await reader.readexactly(length) if length else b""
        return status, body, time.perf_counter_ns()
    if b"transfer-encoding: chunked" not in lower:
        raise ConnectionError(f"neither Content-Length nor chunked: {head[:300]!r}")
    parts: list[bytes] = []
    first = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the empty line after the last chunk
            return status, b"".join(parts), first
        parts.append((await reader.readexactly(size + 2))[:-2])
        if not first:
            first = time.perf_counter_ns()


async def open_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def one_request(port: int, request: bytes) -> tuple[int, bytes, int]:
    reader, writer = await open_connection(port)
    try:
        writer.write(request)
        return await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


def http_request(path: str, body: dict[str, Any], key: str | None) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def check(stream: bool, status: int, body: bytes) -> bool:
    if status != 200:
        return False
    if stream:
        return body.rstrip().endswith(b"data: [DONE]") and b'"error"' not in body
    return b'"choices"' in body


async def load_async(
    port: int,
    request: bytes,
    stream: bool,
    total: int,
    concurrency: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """``total`` requests over ``concurrency`` keep-alive connections: back to back (closed
    loop), or with ``rate``, the i-th request due at ``i / rate`` seconds (open loop) and timed
    from when it was due, so that waiting for a free connection counts (no coordinated
    omission)."""
    connections = [await open_connection(port) for _ in range(min(concurrency, total))]
    latencies: list[int] = []
    firsts: list[int] = []
    statuses: dict[str, int] = {}
    bad: list[str] = []
    left = [total]
    start = time.perf_counter_ns()
    interval = int(1e9 / rate) if rate else 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while left[0] > 0:
            index = total - left[0]
            left[0] -= 1
            if interval:
                due = start + index * interval
                wait = due - time.perf_counter_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                t0 = due
            else:
                t0 = time.perf_counter_ns()
            writer.write(request)
            status, body, first = await read_response(reader)
            t1 = time.perf_counter_ns()
            latencies.append(t1 - t0)
            if stream and first:
                firsts.append(first - t0)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if not check(stream, status, body) and len(bad) < 3:
                bad.append(f"{status}: {body[:300]!r}")

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(worker(r, w) for r, w in connections), return_exceptions=True)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for _, writer in connections:
        writer.close()
    failures = [f"{type(e).__name__}: {e}" for e in results if isinstance(e, BaseException)]
    return {
        "samples": latencies,
        "firsts": firsts,
        "seconds": wall,
        "cpu": cpu,
        "statuses": statuses,
        "bad": bad,
        "failures": failures,
    }


def load(
    server: Server,
    request: bytes,
    stream: bool,
    total: int,
    concurrency: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """``total`` requests to ``server``: the figures of :func:`load_async`, and the server's
    own CPU seconds over them (its process tree's, from /proc)."""
    cpu0 = server.cpu_seconds()
    out = asyncio.run(load_async(server.port, request, stream, total, concurrency, rate))
    out["server_cpu"] = server.cpu_seconds() - cpu0
    return out


def quantile(sorted_samples: list[int], q: float) -> float:
    index = q * (len(sorted_samples) - 1)
    low = int(index)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (index - low)


def summary(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    samples = sorted(x for c in chunks for x in c["samples"])
    firsts = sorted(x for c in chunks for x in c["firsts"])
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
        "ttfb_p50_ms": quantile(firsts, 0.50) / 1e6 if firsts else None,
        "round_rps": [len(c["samples"]) / c["seconds"] for c in chunks if c["seconds"]],
        "statuses": dict(sorted(statuses.items())),
        "generator_cpu_us": sum(c["cpu"] for c in chunks) / done * 1e6 if done else None,
        "server_cpu_ms": (
            sum(c["server_cpu"] for c in chunks) / done * 1e3
            if done and all("server_cpu" in c for c in chunks)
            else None
        ),
        "bad": [b for c in chunks for b in c["bad"]][:3],
        "failures": [f for c in chunks for f in c["failures"]][:3],
    }


def bodies(side: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": UPSTREAM if side == "direct" else MODEL,
        "messages": MESSAGES,
        "max_tokens": 32,
        "user": "bench-user",
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def measure_all(
    servers: dict[str, Server],
    keys: dict[str, str | None],
    cases: list[tuple[str, bool, int, float | None]],
    total: int,
    rounds: int,
) -> dict[str, Any]:
    """Every case (label, streaming, concurrency, open-loop rate or None) on every side,
    interleaved by rounds with the order rotating."""
    out: dict[str, dict[str, Any]] = {name: {} for name in servers}
    names = list(servers)
    for case, stream, concurrency, rate in cases:
        requests = {
            n: http_request("/v1/chat/completions", bodies(n, stream), keys.get(n)) for n in names
        }
        for name in names:
            load(servers[name], requests[name], stream, WARMUP, concurrency)
        chunks: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        per_round = [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]
        print(f"  {case:<16} {rounds} rounds of {per_round[0]} requests per side ...", end="")
        sys.stdout.flush()
        t0 = time.perf_counter()
        for i, n in enumerate(per_round):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                chunks[name].append(
                    load(servers[name], requests[name], stream, n, concurrency, rate)
                )
        print(f" {time.perf_counter() - t0:.0f} s")
        for name in names:
            out[name][case] = summary(chunks[name])
    return out


def measure_memory(
    servers: dict[str, Server],
    keys: dict[str, str | None],
    totals: dict[str, int],
    concurrency: int,
) -> dict[str, Any]:
    """RSS of each gateway after 1,000 requests and after ``totals[name]``, interleaved by
    rounds of 10,000 (streaming and not, alternating)."""
    out: dict[str, Any] = {}
    names = [n for n in servers if n != "direct"]
    if not names:
        return out
    requests = {
        (n, s): http_request("/v1/chat/completions", bodies(n, s), keys.get(n))
        for n in names
        for s in (False, True)
    }
    sent = {n: 0 for n in names}
    bad = {n: 0 for n in names}

    def send(name: str, n: int, stream: bool) -> None:
        r = load(servers[name], requests[(name, stream)], stream, n, concurrency)
        sent[name] += len(r["samples"])
        bad[name] += sum(v for k, v in r["statuses"].items() if k != "200") + len(r["failures"])

    for name in names:
        send(name, 500, False)
        send(name, 500, True)
        out[name] = {"rss_1k_mb": servers[name].rss_mb()}
    step, i = 10_000, 0
    goal = {n: max(totals.get(n, 0), sent[n]) for n in names}
    print(f"  memory: {', '.join(f'{n} {goal[n]:,}' for n in names)} requests ...", end="")
    sys.stdout.flush()
    t0 = time.perf_counter()
    while any(sent[n] < goal[n] for n in names):
        for name in names:
            if sent[name] < goal[name]:
                send(name, min(step, goal[name] - sent[name]), i % 2 == 1)
        i += 1
    print(f" {time.perf_counter() - t0:.0f} s")
    for name in names:
        out[name].update(requests=sent[name], rss_end_mb=servers[name].rss_mb(), errors=bad[name])
        out[name]["growth_mb"] = out[name]["rss_end_mb"] - out[name]["rss_1k_mb"]
    return out


# ----------------------------------------------------------------------------------------------
# In-process: Gateway.achat against a bare aiohttp call (the client the gateway itself uses)
# ----------------------------------------------------------------------------------------------


def inprocess(args: argparse.Namespace) -> None:
    """Prints one JSON line: the median µs per call of ``Gateway.achat`` and of a bare
    ``aiohttp.ClientSession.post(...).json()`` of the same body (aiohttp is the gateway's own
    HTTP client, so the difference is the gateway's work), sequential, in alternating blocks."""
    import aiohttp

    import loopml
    from loopml.llm import Gateway

    workdir = Path(args.workdir)
    ws = loopml.Workspace.open(workdir / "ws")
    gateway = Gateway.from_config(workdir / "gateway.toml", workspace=ws)
    key = os.environ.get("BENCH_LOOPML_KEY") or None
    url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
    body, gw_body = bodies("direct", False), bodies("loopml", False)
    blocks, size = 10, max(20, args.requests // 10)

    async def run() -> dict[str, Any]:
        gw_us: list[float] = []
        bare_us: list[float] = []
        # CPU: the event loop's thread (the response path) per phase, and the other threads'
        # (the gateway's log writer, bookkeeping and limiter threads) over the whole run.
        cpu = {"gw_main": 0.0, "bare_main": 0.0, "others": 0.0}

        async def bare(client: aiohttp.ClientSession) -> None:
            async with client.post(url, json=body) as answer:
                await answer.json()

        async with aiohttp.ClientSession() as client, contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(gateway.aclose)
            for _ in range(50):  # warm both paths
                await bare(client)
                await gateway.achat(dict(gw_body), api_key=key)
            await asyncio.sleep(1.5)  # let the warm-up's log rows and books be written
            p0 = time.process_time()
            for _ in range(blocks):
                m0 = time.thread_time()
                for _ in range(size):
                    t0 = time.perf_counter_ns()
                    await bare(client)
                    bare_us.append((time.perf_counter_ns() - t0) / 1e3)
                m1 = time.thread_time()
                for _ in range(size):
                    t0 = time.perf_counter_ns()
                    await gateway.achat(dict(gw_body), api_key=key)
                    gw_us.append((time.perf_counter_ns() - t0) / 1e3)
                m2 = time.thread_time()
                cpu["bare_main"] += m1 - m0
                cpu["gw_main"] += m2 - m1
            m3 = time.thread_time()
            await asyncio.sleep(2 * gateway.config.log_flush_interval + 0.5)  # the last writes
            main = cpu["bare_main"] + cpu["gw_main"] + time.thread_time() - m3
            cpu["others"] = time.process_time() - p0 - main
        n = len(gw_us)
        return {
            "calls": n,
            "gateway_us": statistics.median(gw_us),
            "bare_us": statistics.median(bare_us),
            "gateway_p99_us": quantile(sorted(int(x) for x in gw_us), 0.99),
            "bare_p99_us": quantile(sorted(int(x) for x in bare_us), 0.99),
            "gateway_cpu_main_us": cpu["gw_main"] / n * 1e6,
            "bare_cpu_us": cpu["bare_main"] / n * 1e6,
            "gateway_cpu_background_us": cpu["others"] / n * 1e6,
        }

    try:
        out = asyncio.run(run())
    finally:
        ws.close()
    sys.stdout.write(json.dumps(out) + "\n")


def measure_inprocess(workdir: Path, fake_port: int, key: str, requests: int) -> dict[str, Any]:
    """Run :func:`inprocess` in a subprocess (over the loopml side's workspace and key)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inprocess", "--workdir", str(workdir)]
    cmd += ["--port", str(fake_port), "--requests", str(requests)]
    env = {**peer_env("loopml"), "BENCH_LOOPML_KEY": key}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-4:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def fig(results: dict[str, Any], side: str, case: str, key: str) -> float | None:
    value = results.get(side, {}).get(case, {}).get(key)
    return None if value is None else float(value)


def added(results: dict[str, Any], side: str, case: str, key: str) -> float | None:
    a, d = fig(results, side, case, key), fig(results, "direct", case, key)
    return None if a is None or d is None else a - d


def ms(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+,.2f} ms" if signed else f"{x:,.2f} ms"


def is_stream(case: str) -> bool:
    return case.startswith("stream")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(
    results: dict[str, Any],
    cases: list[str],
    inproc: dict[str, Any],
    memory: dict[str, Any],
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    figures: list[tuple[str, ...]] = []
    for case in cases:
        for side in (*SIDES, EVAL_SIDE):
            if case not in results.get(side, {}):
                continue
            rps = fig(results, side, case, "rps")
            figures.append(
                (
                    case,
                    side,
                    "n/a" if rps is None else f"{rps:,.0f}/s",
                    ms(fig(results, side, case, "p50_ms")),
                    ms(fig(results, side, case, "p99_ms")),
                    "" if side == "direct" else ms(added(results, side, case, "p50_ms"), True),
                    "" if side == "direct" else ms(added(results, side, case, "p99_ms"), True),
                    ms(fig(results, side, case, "ttfb_p50_ms")) if is_stream(case) else "",
                    ms(fig(results, side, case, "server_cpu_ms")),
                )
            )
    targets: list[tuple[str, ...]] = []
    for case in cases:
        a50 = added(results, "loopml", case, "p50_ms")
        a99 = added(results, "loopml", case, "p99_ms")
        l50 = added(results, "litellm", case, "p50_ms")
        targets.append(
            (
                case,
                "loopml added p50",
                ms(a50, True),
                f"<= {TARGET_P50_MS:g} ms",
                verdict(None if a50 is None else a50 <= TARGET_P50_MS),
            )
        )
        targets.append(
            (
                case,
                "loopml added p99",
                ms(a99, True),
                f"<= {TARGET_P99_MS:g} ms",
                verdict(None if a99 is None else a99 <= TARGET_P99_MS),
            )
        )
        ratio: float | None = None
        text = "n/a"
        if a50 is not None and l50 is not None:
            ratio = l50 / a50 if a50 > 0 else float("inf")
            text = f"{ratio:.1f}x" if a50 > 0 else "inf (loopml adds <= 0)"
        targets.append(
            (
                case,
                "LiteLLM added p50 / loopml's",
                text,
                f">= {TARGET_RATIO:g}x",
                verdict(None if ratio is None else ratio >= TARGET_RATIO),
            )
        )
    for case in cases:
        if case not in results.get(EVAL_SIDE, {}):
            continue
        a50 = added(results, "loopml", case, "p50_ms")
        e50 = added(results, EVAL_SIDE, case, "p50_ms")
        moved = None if a50 is None or e50 is None else e50 - a50
        targets.append(
            (
                case,
                "added p50 with online eval - without",
                ms(moved, True),
                f"<= {TARGET_ONLINE_EVAL_MS:g} ms",
                verdict(None if moved is None else moved <= TARGET_ONLINE_EVAL_MS),
            )
        )
    if inproc and "error" not in inproc:
        extra = (inproc["gateway_us"] - inproc["bare_us"]) / 1000
        targets.append(
            (
                "in-process",
                "achat over bare aiohttp, median",
                ms(extra, True),
                f"< {TARGET_INPROCESS_MS:g} ms",
                verdict(extra < TARGET_INPROCESS_MS),
            )
        )
        cpu = inproc["gateway_cpu_main_us"] + inproc["gateway_cpu_background_us"]
        targets.append(
            (
                "in-process",
                "achat CPU over bare aiohttp, all threads",
                ms((cpu - inproc["bare_cpu_us"]) / 1000, True),
                "(info)",
                "",
            )
        )
    for side, m in memory.items():
        growth = m.get("growth_mb")
        targets.append(
            (
                "memory",
                f"{side} RSS growth, 1k -> {m.get('requests', 0):,} req",
                "n/a" if growth is None else f"{growth:+,.1f} MB",
                f"<= {TARGET_GROWTH_MB:g} MB" if side == "loopml" else "(info)",
                verdict(None if growth is None else growth <= TARGET_GROWTH_MB)
                if side == "loopml"
                else "",
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
    out = {"loopml": "?", "litellm": "?"}
    try:
        import loopml

        out["loopml"] = loopml.__version__
    except ImportError:
        pass
    python = VENVS / "litellm" / "bin" / "python"
    if python.exists():
        proc = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        )
        out["litellm"] = proc.stdout.strip() or "?"
    return out


def notes_for(results: dict[str, Any], errors: dict[str, str], total: int) -> list[str]:
    notes = [
        f"{total:,} requests a case and side; c = concurrent keep-alive connections; latency "
        "is each request's round trip, queueing included; added = the side's percentile "
        "minus the direct side's; CPU/req = the server process tree's CPU time a request "
        "(from /proc: robust to a busy machine, where latencies are not).",
    ]
    cpu = [
        r["generator_cpu_us"]
        for res in results.values()
        for r in res.values()
        if isinstance(r, dict) and r.get("generator_cpu_us")
    ]
    if cpu:
        notes.append(
            f"the load generator's CPU time per request: {statistics.median(cpu):.0f} µs median, "
            f"{max(cpu):.0f} µs at most (it shares the machine's cores with the servers)."
        )
    for name, res in results.items():
        for case, r in res.items():
            spread = r.get("round_rps") or []
            if spread and not is_stream(case):
                notes.append(
                    f"{name}: {case}, throughput of the {len(spread)} rounds "
                    f"{min(spread):,.0f}–{max(spread):,.0f} req/s: how much the machine moved."
                )
            if set(r.get("statuses", {})) - {"200"} or r.get("bad") or r.get("failures"):
                notes.append(
                    f"{name} {case}: statuses {r['statuses']}; "
                    f"{(r.get('bad') or []) + (r.get('failures') or [])}"
                )
    for name, problem in errors.items():
        notes.append(f"{name} did not run: {problem}")
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 requests a case and side")
    ap.add_argument("--requests", type=int, default=None, help="requests a case and side (2000)")
    ap.add_argument(
        "--concurrency", default="1,20", help="connections, one or more comma-separated (1,20)"
    )
    ap.add_argument("--rounds", type=int, default=10, help="rounds each case is split into (10)")
    ap.add_argument(
        "--rate",
        default="",
        help="also run each case open loop at these requests/s (comma-separated), over the "
        "largest --concurrency connections",
    )
    ap.add_argument("--sides", default=",".join(SIDES), help="subset of " + ",".join(SIDES))
    ap.add_argument("--cases", default=",".join(CASES), help="subset of " + ",".join(CASES))
    ap.add_argument("--memory", action="store_true", help="RSS after 1,000 and N requests")
    ap.add_argument(
        "--memory-requests", type=int, default=100_000, help="N for --memory, loopml (100,000)"
    )
    ap.add_argument(
        "--memory-peer-requests",
        type=int,
        default=10_000,
        help="N for --memory, LiteLLM (10,000: it serves ~30 requests/s on 2 busy cores)",
    )
    ap.add_argument(
        "--online-eval",
        type=float,
        default=None,
        metavar="SHARE",
        help="also run loopml with [gateway.online_eval] sampling SHARE (0..1) of requests",
    )
    ap.add_argument(
        "--loopml-workers", type=int, default=1, help="loopml gateway worker processes (1)"
    )
    ap.add_argument("--no-inprocess", action="store_true", help="skip the in-process case")
    ap.add_argument("--timeout", type=float, default=120, help="seconds for a server to start")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--keep", action="store_true", help="keep benchmarks/.work/gateway")
    ap.add_argument("--inprocess", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inprocess:
        inprocess(args)
        return 0

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(sides) - set(SIDES) or not sides:
        ap.error(f"--sides: choose from {', '.join(SIDES)} (got {args.sides!r})")
    if set(cases) - set(CASES) or not cases:
        ap.error(f"--cases: choose from {', '.join(CASES)} (got {args.cases!r})")
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        concurrencies = []
    if not concurrencies or min(concurrencies) < 1:
        ap.error(f"--concurrency: whole numbers >= 1, comma-separated (got {args.concurrency!r})")
    if args.online_eval is not None and not 0 < args.online_eval <= 1:
        ap.error(f"--online-eval: a share in (0, 1] (got {args.online_eval})")
    if args.online_eval is not None and "loopml" not in sides:
        ap.error("--online-eval compares with the loopml side: keep loopml in --sides")
    if args.rounds < 1 or (args.requests is not None and args.requests < args.rounds):
        ap.error("--rounds must be >= 1 and --requests >= --rounds")
    try:
        rates = [float(r) for r in args.rate.split(",") if r.strip()]
    except ValueError:
        rates = [0.0]
    if any(r <= 0 for r in rates):
        ap.error(f"--rate: requests per second > 0, comma-separated (got {args.rate!r})")
    labels: list[tuple[str, bool, int, float | None]] = [
        (f"{kind}, c={c}", kind == "stream", c, None) for kind in cases for c in concurrencies
    ]
    labels += [
        (f"{kind}, {r:g}/s (<= {max(concurrencies)} open)", kind == "stream", max(concurrencies), r)
        for kind in cases
        for r in rates
    ]
    if "direct" not in sides:
        sides.insert(0, "direct")  # the reference every added figure is measured against
    total = args.requests or (300 if args.quick else 2000)
    rounds = min(args.rounds, 5) if args.quick and args.requests is None else args.rounds
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print(
        f"gateway benchmark: {total:,} requests a case and side at concurrency "
        f"{args.concurrency} after {WARMUP} warm-up, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    errors: dict[str, str] = {}
    results: dict[str, Any] = {}
    inproc: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    servers: dict[str, Server] = {}
    keys: dict[str, str | None] = {"direct": PROVIDER_KEY, "litellm": MASTER_KEY}
    try:
        fake = start_fake()
        problem = fake.wait_ready("/health", {}, args.timeout)
        if problem:
            print(f"  the fake provider did not start: {problem}")
            return 1
        servers["direct"] = fake
        print(f"  direct (fake provider) ready on port {fake.port}", flush=True)
        if "loopml" in sides:
            try:
                config, keys["loopml"] = setup_loopml(WORK, fake.port, args.timeout)
                server = start_loopml(WORK, config, workers=args.loopml_workers)
                auth = {"Authorization": f"Bearer {keys['loopml']}"}
                problem = server.wait_ready("/v1/models", auth, args.timeout)
                if problem:
                    server.stop()
                    raise RuntimeError(problem)
                servers["loopml"] = server
                print(f"  loopml gateway ready on port {server.port}", flush=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors["loopml"] = str(exc)
                print(f"  loopml: {exc}", flush=True)
        if args.online_eval is not None:
            try:
                where = WORK / "eval"
                config, keys[EVAL_SIDE] = setup_loopml(
                    where, fake.port, args.timeout, args.online_eval
                )
                server = start_loopml(where, config, EVAL_SIDE)
                auth = {"Authorization": f"Bearer {keys[EVAL_SIDE]}"}
                problem = server.wait_ready("/v1/models", auth, args.timeout)
                if problem:
                    server.stop()
                    raise RuntimeError(problem)
                servers[EVAL_SIDE] = server
                print(
                    f"  loopml gateway with online eval at {args.online_eval:g} ready on port "
                    f"{server.port}",
                    flush=True,
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors[EVAL_SIDE] = str(exc)
                print(f"  {EVAL_SIDE}: {exc}", flush=True)
        if "litellm" in sides:
            if not (VENVS / "litellm" / "bin" / "litellm").exists():
                errors["litellm"] = (
                    "no benchmarks/.venvs/litellm: run benchmarks/setup_peer.sh litellm"
                )
            else:
                server = start_litellm(WORK, fake.port)
                problem = server.wait_ready("/health/liveliness", {}, args.timeout)
                if problem:
                    errors["litellm"] = problem
                    server.stop()
                else:
                    servers["litellm"] = server
                    print(f"  LiteLLM proxy ready on port {server.port}", flush=True)
            if "litellm" in errors:
                print(f"  litellm: {errors['litellm']}", flush=True)
        results = measure_all(servers, keys, labels, total, rounds)
        if "loopml" in servers and not args.no_inprocess:
            print("  in-process: Gateway.achat against bare aiohttp ...", flush=True)
            inproc = measure_inprocess(WORK, fake.port, keys["loopml"] or "", min(total, 2000))
        if args.memory:
            totals = {"loopml": args.memory_requests, "litellm": args.memory_peer_requests}
            memory = measure_memory(servers, keys, totals, max(concurrencies))
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)

    notes = notes_for(results, errors, total)
    if inproc.get("error"):
        notes.append(f"the in-process case did not run: {inproc['error']}")
    elif inproc:
        notes.append(
            f"in-process, {inproc['calls']:,} sequential calls each: Gateway.achat "
            f"{inproc['gateway_us']:.0f} µs median ({inproc['gateway_p99_us']:.0f} p99), bare "
            f"aiohttp {inproc['bare_us']:.0f} µs ({inproc['bare_p99_us']:.0f} p99). CPU per call: "
            f"achat {inproc['gateway_cpu_main_us']:.0f} µs on the event loop's thread plus "
            f"{inproc['gateway_cpu_background_us']:.0f} µs on the gateway's other threads (log "
            f"writer, bookkeeping, limiter), bare aiohttp {inproc['bare_cpu_us']:.0f} µs."
        )
    for side, m in memory.items():
        notes.append(
            f"{side}: RSS {m['rss_1k_mb']:,.1f} MB after 1,000 requests, {m['rss_end_mb']:,.1f} "
            f"MB after {m['requests']:,} ({m['errors']} errors)."
        )
    v = versions()
    figures, targets = report(results, [label for label, *_ in labels], inproc, memory)
    print()
    print_table(
        ("case", "side", "req/s", "p50", "p99", "added p50", "added p99", "TTFB p50", "CPU/req"),
        figures,
        "<<>>>>>>>",
    )
    print()
    print_table(("case", "target", "figure", "target", "verdict"), targets, "<<><<")
    print(f"\n(loopml {v['loopml']}, LiteLLM {v['litellm']})\n")
    for note in notes:
        print(f"- {note}")
    verdicts = [t[4] for t in targets]
    print(
        f"\nverdicts: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{verdicts.count('n/a')} n/a"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "requests": total,
                    "concurrency": concurrencies,
                    "versions": v,
                    "results": results,
                    "inprocess": inproc,
                    "memory": memory,
                    "errors": errors,
                    "targets": [
                        dict(zip(("case", "target", "figure", "goal", "verdict"), t, strict=True))
                        for t in targets
                    ],
                },
                indent=2,
            )
        )
    bad = any(
        set(r.get("statuses", {})) - {"200"} or r.get("bad") or r.get("failures")
        for res in results.values()
        for r in res.values()
        if isinstance(r, dict)
    )
    bad = bad or any(m.get("errors") for m in memory.values())
    return 1 if errors or bad or inproc.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
