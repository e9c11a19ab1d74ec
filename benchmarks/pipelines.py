"""Pipelines benchmark: loopml against Prefect 3 (and plain Python), side by side in one run.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/pipelines.py [--quick] [--cases sequential,concurrent,large,ray]

Prefect's side runs in ``benchmarks/.venvs/prefect/bin/python`` (make it with
``benchmarks/setup_peer.sh prefect``), so Prefect never becomes a project dependency. Both
sides are this very file, started as ``--worker {loopml,prefect} --case CASE``; each worker
works in a fresh temporary directory and prints one JSON line.

Cases (N trivial tasks, ``inc(x) = x + 1``, 200 by default):

* ``sequential``: a chain of N tasks, each consuming the previous output. Baseline: N plain
  Python calls. loopml with the ``threads`` (and ``inline``) executor; Prefect: a flow that
  calls the task N times.
* ``concurrent``: N independent tasks. Baseline: a ``ThreadPoolExecutor(8).map``. loopml
  with ``threads`` (8 workers); Prefect: ``task.submit`` N times (its thread pool), then
  ``.result()``.
* ``large``: a 10,000-task DAG (100 layers of 100 tasks, each reading two of the layer
  before), planned (the pipeline body run, the DAG checked) and run with ``threads``.
* ``ray``: N independent tasks on a local Ray cluster (2 CPUs): loopml's ``ray`` executor
  against raw ``ray.get([f.remote(i) ...])``.

Per-task overhead = (tool's wall time - baseline's wall time) / N, from the median of the
repeats. Every loopml run is a full, recorded run (pipeline run, task runs, tracking run,
outputs hashed and stored, cache looked up), with a fresh param so nothing is a cache hit.
Start-up (imports, creating the workspace, Prefect's first flow run which starts its
temporary server) is never timed. The exit code is 0 whenever every worker ran, even when a
target is missed (this is a report); 1 when a worker could not run.

Only the standard library is imported at module level: Prefect's venv has no loopml.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
CASES = ("sequential", "concurrent", "large", "ray")
PREFECT_CASES = ("sequential", "concurrent")
THREADS = 8
LAYERS, WIDTH = 100, 100

# Sizes per mode: (full, quick).
SIZES = {"tasks": (200, 100), "repeats": (5, 3), "prefect_repeats": (3, 2)}


def inc(x: int, salt: int = 0) -> int:
    return x + 1


def median_time(fn: Any, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def baselines(n: int, repeats: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    def plain() -> None:
        x = 0
        for _ in range(n):
            x = inc(x)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(inc, range(n)))  # start the threads

        def pooled() -> None:
            list(pool.map(inc, range(n)))

        plain_s, _ = median_time(plain, max(repeats, 20))
        pool_s, _ = median_time(pooled, max(repeats, 20))
    return {"plain_s": plain_s, "threadpool_s": pool_s}


# ----------------------------------------------------------------------------------------------
# loopml worker (project interpreter)
# ----------------------------------------------------------------------------------------------


def loopml_worker(case: str, n: int, repeats: int, workdir: Path) -> dict[str, Any]:
    import loopml
    from loopml.pipelines import pipeline, run_pipeline, task

    ws = loopml.Workspace.init(workdir)
    loopml.set_default_workspace(ws)
    out: dict[str, Any] = {"version": loopml.__version__, **baselines(n, repeats)}
    step = task(name="inc")(inc)

    @pipeline
    def chain(n: int, salt: int):
        x = 0
        for _ in range(n):
            x = step(x, salt)
        return x

    @pipeline
    def fan(n: int, salt: int):
        return [step(i, salt) for i in range(n)]

    salts = iter(range(1, 1_000_000))
    run_pipeline(chain, {"n": 5, "salt": 0})  # warm-up (stores the environment), not timed

    def timed(pipe: Any, executor: str, count: int = n, reps: int = repeats) -> list[float]:
        times = []
        for _ in range(reps):
            params = {"n": count, "salt": next(salts)}
            t0 = time.perf_counter()
            run = run_pipeline(pipe, params, executor=executor, max_workers=THREADS)
            times.append(time.perf_counter() - t0)
            assert run.ok and len(run.tasks) == count
        return times

    if case == "sequential":
        out["threads"] = timed(chain, "threads")
        out["inline"] = timed(chain, "inline")
    elif case == "concurrent":
        out["threads"] = timed(fan, "threads")
    elif case == "large":

        @task
        def node(*parents: int, i: int = 0) -> int:
            return i

        @pipeline
        def big(salt: int = 0):
            prev = [node(i=i + salt * 0) for i in range(WIDTH)]
            for layer in range(1, LAYERS):
                prev = [
                    node(prev[i], prev[(i + 1) % WIDTH], i=layer * WIDTH + i) for i in range(WIDTH)
                ]
            return prev[0]

        t0 = time.perf_counter()
        build = big.build({"salt": 1})
        plan_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        run = run_pipeline(big, {"salt": 1}, executor="threads", max_workers=THREADS)
        total_s = time.perf_counter() - t1
        assert run.ok and len(run.tasks) == LAYERS * WIDTH
        out.update(tasks=len(build.dag), plan_s=plan_s, run_s=total_s)
    elif case == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        remote_inc = ray.remote(inc)
        ray.get([remote_inc.remote(i) for i in range(n)])  # warm the workers

        def raw() -> None:
            ray.get([remote_inc.remote(i) for i in range(n)])

        raw_s, raw_times = median_time(raw, repeats)
        timed(fan, "ray", reps=1)  # warm loopml's remote function
        out.update(raw_ray_s=raw_s, raw_ray=raw_times, loopml_ray=timed(fan, "ray"))
        ray.shutdown()
    ws.close()
    return out


# ----------------------------------------------------------------------------------------------
# Prefect worker (benchmarks/.venvs/prefect)
# ----------------------------------------------------------------------------------------------


def prefect_worker(case: str, n: int, repeats: int, workdir: Path) -> dict[str, Any]:
    import logging

    import prefect
    from prefect import flow, task

    logging.getLogger("prefect").setLevel(logging.WARNING)
    out: dict[str, Any] = {"version": prefect.__version__, **baselines(n, repeats)}
    step = task(name="inc")(inc)

    @flow(log_prints=False)
    def chain(n: int, salt: int) -> int:
        x = 0
        for _ in range(n):
            x = step(x, salt)
        return x

    @flow(log_prints=False)
    def fan(n: int, salt: int) -> int:
        futures = [step.submit(i, salt) for i in range(n)]
        return sum(f.result() for f in futures)

    chain(5, 0)  # warm-up: starts Prefect's temporary server; not timed
    fan(5, 0)
    pipe = chain if case == "sequential" else fan
    times = []
    for salt in range(1, repeats + 1):
        t0 = time.perf_counter()
        pipe(n, salt)
        times.append(time.perf_counter() - t0)
    out["times"] = times
    return out


WORKERS = {"loopml": loopml_worker, "prefect": prefect_worker}


def run_worker(side: str, case: str, n: int, repeats: int) -> int:
    with tempfile.TemporaryDirectory(prefix=f"bench-pipelines-{side}-") as tmp:
        os.environ.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect-home"))
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        result = WORKERS[side](case, n, repeats, Path(tmp) / "ws")
    print(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------
# Orchestration (project interpreter)
# ----------------------------------------------------------------------------------------------


def peer_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def spawn(side: str, case: str, n: int, repeats: int, timeout: float) -> dict[str, Any]:
    python = Path(sys.executable) if side == "loopml" else peer_python(side)
    if not python.exists():
        return {"error": f"{python} not found: run benchmarks/setup_peer.sh {side}"}
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", side, "--case", case]
    cmd += ["--size", str(n), "--repeats", str(repeats)]
    print(f"  running {side:<8} {case} ...", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"exit code {proc.returncode}\n{tail}"}
    return dict(json.loads(lines[-1]))


Row = tuple[str, str, str, str, str, str]


def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:.3f} ms"


def secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def overhead(res: dict[str, Any], key: str, base: str, n: int) -> float | None:
    if "error" in res or key not in res or base not in res:
        return None
    values = res[key]
    total = statistics.median(values) if isinstance(values, list) else values
    return max(total - res[base], 0.0) / n


def build_rows(results: dict[str, dict[str, Any]], n: int) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for case, base, label in (
        ("sequential", "plain_s", "plain Python calls"),
        ("concurrent", "threadpool_s", f"ThreadPoolExecutor({THREADS})"),
    ):
        mine = results.get(f"loopml/{case}", {})
        peer = results.get(f"prefect/{case}", {})
        if not mine and not peer:
            continue
        ours = overhead(mine, "threads", base, n)
        theirs = overhead(peer, "times", base, n)
        times_ratio = None if not ours or theirs is None else theirs / ours
        rows.append(
            (
                f"{n} tasks {case}: overhead/task, threads",
                ms(ours),
                "",
                "",
                "< 1 ms",
                verdict(None if ours is None else ours < 0.001),
            )
        )
        rows.append(
            (
                f"  vs Prefect 3 ({case})",
                ms(ours),
                ms(theirs),
                ratio(times_ratio),
                ">= 20x",
                verdict(None if times_ratio is None else times_ratio >= 20),
            )
        )
        if case == "sequential":
            inline = overhead(mine, "inline", base, n)
            rows.append(("  loopml inline executor", ms(inline), "", "", "(info)", ""))
        for side, res in (("loopml", mine), ("Prefect", peer)):
            if "error" in res:
                notes.append(f"{side} {case} worker failed: {res['error']}")
            elif res:
                key = "threads" if side == "loopml" else "times"
                runs = ", ".join(f"{t * 1000:.0f}" for t in res.get(key, []))
                notes.append(
                    f"{side} {res.get('version', '?')} {case}: runs of {n} tasks took [{runs}] ms"
                    f"; {label} took {res[base] * 1000:.2f} ms"
                )
    large = results.get("loopml/large")
    if large is not None:
        ok = "error" not in large
        total = large["plan_s"] + large["run_s"] if ok else None
        rows.append(
            (
                f"{LAYERS * WIDTH:,}-task DAG planned + run",
                secs(total),
                "",
                "",
                "< 20 s",
                verdict(None if total is None else total < 20),
            )
        )
        if ok:
            rows.append(
                ("  planning (body run, DAG checked)", secs(large["plan_s"]), "", "", "(info)", "")
            )
            rows.append(("  run (threads, recorded)", secs(large["run_s"]), "", "", "(info)", ""))
        else:
            notes.append(f"loopml large worker failed: {large['error']}")
    ray_res = results.get("loopml/ray")
    if ray_res is not None:
        if "error" in ray_res:
            notes.append(f"loopml ray worker failed: {ray_res['error']}")
            rows.append(("Ray executor: overhead/task", "n/a", "", "", "(info)", "n/a"))
        else:
            over_raw = overhead(ray_res, "loopml_ray", "raw_ray_s", n)
            over_plain = overhead(ray_res, "loopml_ray", "threadpool_s", n)
            rows.append(
                ("Ray executor: overhead/task vs raw Ray", ms(over_raw), "", "", "(info)", "")
            )
            rows.append(("  vs a thread pool (all costs)", ms(over_plain), "", "", "(info)", ""))
            notes.append(
                f"ray: raw ray.get of {n} remote calls {ray_res['raw_ray_s'] * 1000:.0f} ms; "
                "loopml executor='ray' runs "
                + ", ".join(f"{t * 1000:.0f}" for t in ray_res["loopml_ray"])
                + " ms (local cluster, 2 CPUs)"
            )
    return rows, notes


def print_table(rows: list[Row]) -> None:
    header: Row = ("case", "loopml", "Prefect 3", "ratio", "target", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]

    def line(r: Row) -> str:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)]
        cells += [r[4].ljust(widths[4]), r[5]]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tasks and repeats")
    ap.add_argument("--tasks", type=int, default=None, help="tasks per run (default 200)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per worker")
    ap.add_argument("--json", type=Path, default=None, help="also write all results here")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    mode = 1 if args.quick else 0
    if args.worker:
        return run_worker(args.worker, args.case, args.size, args.repeats)
    n = args.tasks or SIZES["tasks"][mode]
    repeats = SIZES["repeats"][mode]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        results[f"loopml/{case}"] = spawn("loopml", case, n, repeats, args.timeout)
        if case in PREFECT_CASES:
            reps = SIZES["prefect_repeats"][mode]
            results[f"prefect/{case}"] = spawn("prefect", case, n, reps, args.timeout)
    rows, notes = build_rows(results, n)
    print()
    print(f"pipelines benchmark: {n} trivial tasks per run, {os.cpu_count()} CPUs")
    print()
    print_table(rows)
    if notes:
        print()
        for note in notes:
            print(f"- {note}")
    verdicts = [r[5] for r in rows if r[5]]
    print()
    print(
        f"verdicts: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{verdicts.count('n/a')} n/a"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
