"""Tracking benchmark: loopml against MLflow, side by side in one run.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/tracking.py [--quick] [--runs N] [--cases log_metric,batch,search]

loopml's side runs in a subprocess of that same interpreter; MLflow's side runs in a
subprocess of ``benchmarks/.venvs/mlflow/bin/python`` (make it with
``benchmarks/setup_peer.sh mlflow``), so MLflow never becomes a project dependency.
Both sides are this very file, started as ``--worker {loopml,mlflow} --case CASE``; a worker
works in a fresh temporary directory, on SQLite, and prints one JSON line of results.

For each case the two workers run one after the other (loopml, then MLflow), and a table of
figures, ratios, targets and PASS/FAIL verdicts is printed at the end. The exit code is 0 even
when a target is missed (this is a report); it is 1 only when a worker could not run at all.

Only the standard library is imported at module level: the MLflow venv has no loopml, and the
project's interpreter has no MLflow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
CASES = ("log_metric", "batch", "search")

SEARCH_FILTER = "metrics.m0 > 0.5 and params.p1 = 'v1'"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_MAX_RESULTS = 1000
SEARCH_REPEATS = 5
N_PARAMS = 20
N_METRICS = 20
BATCH_KEYS = 100  # metrics per step in the batched case
MLFLOW_BATCH = 1000  # points per MlflowClient.log_batch call (MLflow's own cap)

# Sizes per mode: (full, quick).
SIZES = {
    "loopml_log_metric_calls": (200_000, 20_000),
    "mlflow_log_metric_calls": (300, 100),
    "loopml_batch_steps": (5_000, 500),  # x BATCH_KEYS points
    "mlflow_batch_points": (50_000, 10_000),
    "search_runs": (10_000, 1_000),
}

# ----------------------------------------------------------------------------------------------
# Shared data generation (identical on both sides: same seed, same code, same Python)
# ----------------------------------------------------------------------------------------------


def search_rows(n_runs: int) -> list[tuple[str, dict[str, str], dict[str, float]]]:
    """The runs of the search case: (name, params, metrics) for each.

    ``params.p1 = 'v1'`` holds for 90 % of runs and ``metrics.m0 > 0.5`` for about half, so
    about 45 % of the runs match the filter.
    """
    rng = random.Random(1234)
    rows = []
    for r in range(n_runs):
        params = {f"p{k}": f"v{(r + k) % 7}" for k in range(N_PARAMS)}
        params["p1"] = "v0" if r % 10 == 0 else "v1"
        metrics = {f"m{k}": rng.random() for k in range(N_METRICS)}
        rows.append((f"run-{r:06d}", params, metrics))
    return rows


def expected_matches(n_runs: int) -> int:
    hits = sum(1 for _, p, m in search_rows(n_runs) if m["m0"] > 0.5 and p["p1"] == "v1")
    return min(hits, SEARCH_MAX_RESULTS)


# ----------------------------------------------------------------------------------------------
# loopml worker (project interpreter)
# ----------------------------------------------------------------------------------------------


def loopml_worker(case: str, size: int, workdir: Path) -> dict[str, Any]:
    import loopml

    ws = loopml.Workspace.init(workdir)
    out: dict[str, Any] = {"version": getattr(loopml, "__version__", "?")}
    try:
        if case == "log_metric":
            values = [i * 1e-3 for i in range(size)]
            with ws.start_run(experiment="bench", name="log_metric", log_environment=False) as run:
                t0 = time.perf_counter()
                for i, v in enumerate(values):
                    run.log_metric("loss", v, step=i)
                t1 = time.perf_counter()
            t2 = time.perf_counter()
            out.update(n=size, calls_s=t1 - t0, total_s=t2 - t0)
        elif case == "batch":
            keys = [f"m{k}" for k in range(BATCH_KEYS)]
            payloads = [{k: i + j * 1e-3 for j, k in enumerate(keys)} for i in range(size)]
            t0 = time.perf_counter()
            with ws.start_run(experiment="bench", name="batch", log_environment=False) as run:
                for i, payload in enumerate(payloads):
                    run.log_metrics(payload, step=i)
            t1 = time.perf_counter()
            out.update(n=size * BATCH_KEYS, total_s=t1 - t0)
        elif case == "search":
            t0 = time.perf_counter()
            for name, params, metrics in search_rows(size):
                with ws.start_run(experiment="bench", name=name, log_environment=False) as run:
                    run.log_params(params)
                    run.log_metrics(metrics, step=0)
            populate_s = time.perf_counter() - t0
            times = []
            df = None
            for _ in range(SEARCH_REPEATS):
                t0 = time.perf_counter()
                df = ws.search_runs(
                    experiments=["bench"],
                    filter=SEARCH_FILTER,
                    order_by=SEARCH_ORDER,
                    max_results=SEARCH_MAX_RESULTS,
                )
                times.append(time.perf_counter() - t0)
            assert df is not None
            names = None
            for col in ("name", "run_name", "tags.mlflow.runName"):
                if col in df.columns:
                    names = [str(x) for x in df[col].tolist()]
                    break
            out.update(n=size, populate_s=populate_s, times=times, rows=len(df), names=names)
        else:
            raise ValueError(f"unknown case {case!r}")
    finally:
        ws.close()
    return out


# ----------------------------------------------------------------------------------------------
# MLflow worker (benchmarks/.venvs/mlflow/bin/python)
# ----------------------------------------------------------------------------------------------


def mlflow_worker(case: str, size: int, workdir: Path) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    # Creating the DB (schema migrations) happens here, outside any timing.
    exp = mlflow.set_experiment("bench")
    client = MlflowClient()
    out: dict[str, Any] = {"version": mlflow.__version__}

    if case == "log_metric":
        values = [i * 1e-3 for i in range(size)]
        mlflow.start_run(run_name="log_metric")
        t0 = time.perf_counter()
        for i, v in enumerate(values):
            mlflow.log_metric("loss", v, step=i)
        t1 = time.perf_counter()
        mlflow.end_run()
        t2 = time.perf_counter()
        out.update(n=size, calls_s=t1 - t0, total_s=t2 - t0)
    elif case == "batch":
        keys = [f"m{k}" for k in range(BATCH_KEYS)]
        ts = int(time.time() * 1000)
        points = [
            Metric(
                keys[p % BATCH_KEYS], p // BATCH_KEYS + (p % BATCH_KEYS) * 1e-3, ts, p // BATCH_KEYS
            )
            for p in range(size)
        ]
        batches = [points[i : i + MLFLOW_BATCH] for i in range(0, size, MLFLOW_BATCH)]
        t0 = time.perf_counter()
        run_id = client.create_run(exp.experiment_id, run_name="batch").info.run_id
        for batch in batches:
            client.log_batch(run_id, metrics=batch)
        client.set_terminated(run_id)
        t1 = time.perf_counter()
        out.update(n=size, total_s=t1 - t0)
    elif case == "search":
        t0 = time.perf_counter()
        for name, params, metrics in search_rows(size):
            run_id = client.create_run(exp.experiment_id, run_name=name).info.run_id
            ts = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            client.set_terminated(run_id)
        populate_s = time.perf_counter() - t0
        kwargs: dict[str, Any] = dict(
            experiment_ids=[exp.experiment_id],
            filter_string=SEARCH_FILTER,
            order_by=SEARCH_ORDER,
            max_results=SEARCH_MAX_RESULTS,
        )
        times = []
        df = None
        for _ in range(SEARCH_REPEATS):
            t0 = time.perf_counter()
            df = mlflow.search_runs(**kwargs)  # pandas DataFrame, like loopml
            times.append(time.perf_counter() - t0)
        assert df is not None
        client_times = []
        for _ in range(SEARCH_REPEATS):
            t0 = time.perf_counter()
            client.search_runs(**kwargs)  # list of Run objects, no DataFrame
            client_times.append(time.perf_counter() - t0)
        out.update(
            n=size,
            populate_s=populate_s,
            times=times,
            client_times=client_times,
            rows=len(df),
            names=[str(x) for x in df["tags.mlflow.runName"].tolist()],
        )
    else:
        raise ValueError(f"unknown case {case!r}")
    return out


WORKERS = {"loopml": loopml_worker, "mlflow": mlflow_worker}


def run_worker(side: str, case: str, size: int) -> int:
    """Entry point of a worker process: one case, fresh temp dir, one JSON line on stdout."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{side}-{case}-"))
    old_cwd = os.getcwd()
    os.chdir(workdir)  # anything a library writes to ./ lands in the temp dir
    try:
        result = WORKERS[side](case, size, workdir)
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(workdir, ignore_errors=True)
    result.update(side=side, case=case)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------------------------------------
# Driver (project interpreter)
# ----------------------------------------------------------------------------------------------


def peer_python(peer: str) -> Path:
    if os.name == "nt":
        return VENVS / peer / "Scripts" / "python.exe"
    return VENVS / peer / "bin" / "python"


def spawn(side: str, case: str, size: int, timeout: float) -> dict[str, Any]:
    """Run one worker; return its JSON result, or {"error": ...}."""
    python = Path(sys.executable) if side == "loopml" else peer_python(side)
    if not python.exists():
        return {"error": f"{python} not found: run `benchmarks/setup_peer.sh {side}`"}
    env = dict(os.environ)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        GIT_PYTHON_REFRESH="quiet",
        PYTHONHASHSEED="0",
    )
    if side != "loopml":
        env.pop("PYTHONPATH", None)  # keep the project's paths out of the peer's interpreter
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", side, "--case", case]
    cmd += ["--size", str(size)]
    print(f"  {side:<7} {case:<10} size={size:<7} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f" timed out after {timeout:.0f} s")
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                break
            print(f" done in {wall:.1f} s")
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    print(f" FAILED (exit {proc.returncode})")
    print("    " + tail.replace("\n", "\n    "))
    return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else '?'}"}


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}/s"


def fmt_ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:,.1f} ms"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def rate(res: dict[str, Any], key: str) -> float | None:
    if "error" in res or key not in res:
        return None
    return res["n"] / res[key] if res[key] > 0 else float("inf")


def div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return a / b if b else float("inf")


def median_of(res: dict[str, Any], key: str = "times") -> float | None:
    if "error" in res or key not in res:
        return None
    return statistics.median(res[key])


Row = tuple[str, str, str, str, str, str]


def build_rows(
    results: dict[str, dict[str, dict[str, Any]]], plan: dict[str, tuple[int, int]]
) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    if "log_metric" in results:
        lo, ml = results["log_metric"]["loopml"], results["log_metric"]["mlflow"]
        a, b = rate(lo, "calls_s"), rate(ml, "calls_s")
        r = div(a, b)
        rows.append(
            (
                "log_metric calls/s",
                fmt_rate(a),
                fmt_rate(b),
                fmt_ratio(r),
                ">= 100x",
                verdict(None if r is None else r >= 100),
            )
        )
        a2, b2 = rate(lo, "total_s"), rate(ml, "total_s")
        rows.append(
            (
                "  incl. end_run/flush",
                fmt_rate(a2),
                fmt_rate(b2),
                fmt_ratio(div(a2, b2)),
                "(info)",
                "",
            )
        )
        notes.append(
            f"log_metric: loopml {plan['log_metric'][0]} calls, MLflow {plan['log_metric'][1]} calls "
            "(mlflow.log_metric, synchronous), one run each."
        )
    if "batch" in results:
        lo, ml = results["batch"]["loopml"], results["batch"]["mlflow"]
        a, b = rate(lo, "total_s"), rate(ml, "total_s")
        r = div(a, b)
        rows.append(
            (
                "batched points/s (flushed)",
                fmt_rate(a),
                fmt_rate(b),
                fmt_ratio(r),
                ">= 20x",
                verdict(None if r is None else r >= 20),
            )
        )
        notes.append(
            f"batch: loopml {plan['batch'][0] * BATCH_KEYS} points as log_metrics of {BATCH_KEYS} keys per "
            f"step, timed through end_run; MLflow {plan['batch'][1]} points via "
            f"MlflowClient.log_batch of {MLFLOW_BATCH}, timed from create_run to set_terminated."
        )
    if "search" in results:
        lo, ml = results["search"]["loopml"], results["search"]["mlflow"]
        a, b = median_of(lo), median_of(ml)
        speedup = div(b, a)
        rows.append(
            (
                "search_runs median",
                fmt_ms(a),
                fmt_ms(b),
                fmt_ratio(speedup),
                "< 150 ms",
                verdict(None if a is None else a < 0.150),
            )
        )
        rows.append(
            (
                "search_runs speedup",
                fmt_ms(a),
                fmt_ms(b),
                fmt_ratio(speedup),
                ">= 10x",
                verdict(None if speedup is None else speedup >= 10),
            )
        )
        bc = median_of(ml, "client_times")
        rows.append(
            (
                "  vs MlflowClient (no df)",
                fmt_ms(a),
                fmt_ms(bc),
                fmt_ratio(div(bc, a)),
                "(info)",
                "",
            )
        )
        n_lo, n_ml = lo.get("rows"), ml.get("rows")
        same = None if n_lo is None or n_ml is None else n_lo == n_ml
        rows.append(
            (
                "search_runs rows returned",
                str(n_lo) if n_lo is not None else "n/a",
                str(n_ml) if n_ml is not None else "n/a",
                "",
                "equal",
                verdict(same),
            )
        )
        n_runs = plan["search"][0]
        notes.append(
            f"search: {n_runs} runs x {N_PARAMS} params x {N_METRICS} metrics; filter "
            f'"{SEARCH_FILTER}", order_by {SEARCH_ORDER}, max_results {SEARCH_MAX_RESULTS}; '
            f"median of {SEARCH_REPEATS} searches (population not timed). MLflow figure is "
            "mlflow.search_runs (DataFrame, like loopml's)."
        )
        if isinstance(n_runs, int):
            notes.append(f"search: expected rows {expected_matches(n_runs)}.")
        for side, res in (("loopml", lo), ("MLflow", ml)):
            if "times" in res:
                ts = ", ".join(f"{t * 1e3:.1f}" for t in res["times"])
                notes.append(
                    f"search: {side} searches [{ts}] ms; population {res['populate_s']:.1f} s."
                )
        if lo.get("names") is not None and ml.get("names") is not None:
            same_order = lo["names"] == ml["names"]
            notes.append(
                "search: run names in result order "
                + ("identical on both sides." if same_order else "DIFFER between the sides.")
            )
    for case, sides in results.items():
        for side, res in sides.items():
            if "error" in res:
                notes.append(f"{case}: {side} did not run: {res['error']}")
    return rows, notes


def print_table(rows: list[Row], header: Row) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    aligns = ["<", ">", ">", ">", "<", "<"]

    def line(r: Row) -> str:
        cells = (f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths, strict=True))
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--runs", type=int, default=None, help="runs in the search case")
    ap.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}"
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    ap.add_argument("--json", type=Path, default=None, help="also write all results here")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return run_worker(args.worker, args.case, args.size)

    mode = 1 if args.quick else 0
    sizes = {k: v[mode] for k, v in SIZES.items()}
    if args.runs is not None:
        sizes["search_runs"] = args.runs
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}")

    plan = {
        "log_metric": (sizes["loopml_log_metric_calls"], sizes["mlflow_log_metric_calls"]),
        "batch": (sizes["loopml_batch_steps"], sizes["mlflow_batch_points"]),
        "search": (sizes["search_runs"], sizes["search_runs"]),
    }
    print(
        f"tracking benchmark ({'quick' if args.quick else 'full'}), Python {sys.version.split()[0]}"
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    # Fail fast, once, when loopml is not importable by this interpreter.
    no_loopml = None
    if importlib.util.find_spec("loopml") is None:
        no_loopml = {"error": f"`import loopml` fails in {sys.executable}: run `pip install -e .`"}
        print(f"  loopml  skipped: {no_loopml['error']}")
    for case in cases:
        lo_size, ml_size = plan[case]
        results[case] = {
            "loopml": no_loopml or spawn("loopml", case, lo_size, args.timeout),
            "mlflow": spawn("mlflow", case, ml_size, args.timeout),
        }

    versions = {
        side: next((r[side]["version"] for r in results.values() if "version" in r[side]), "?")
        for side in ("loopml", "mlflow")
    }
    rows, notes = build_rows(results, plan)
    print()
    header = (
        "case",
        f"loopml {versions['loopml']}",
        f"MLflow {versions['mlflow']}",
        "ratio",
        "target",
        "verdict",
    )
    print_table(rows, header)
    print()
    for n in notes:
        print(f"- {n}")
    verdicts = [r[5] for r in rows if r[5]]
    print()
    print(
        f"verdicts: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{verdicts.count('n/a')} n/a"
    )
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "results": results}, indent=2))
    crashed = any("error" in res for sides in results.values() for res in sides.values())
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
