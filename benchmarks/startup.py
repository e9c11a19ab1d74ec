"""Start-up benchmark: how long a user waits for a listing command, loopml against MLflow.

    python benchmarks/startup.py [--runs 20] [--repeats 7] [--json out.json]

Both tools get a small workspace of ``--runs`` finished runs (one experiment, a few params
and metrics, SQLite), then each command is started as a fresh process ``--repeats`` times
and the median wall time is reported:

- ``loopml --version`` (the floor: interpreter plus click)
- ``loopml runs list`` against ``mlflow runs list --experiment-id <id>``
- ``loopml experiments list`` against ``mlflow experiments search``

MLflow runs from ``benchmarks/.venvs/mlflow`` (``benchmarks/setup_peer.sh mlflow``); it is
never a project dependency. Target: ``loopml runs list`` under 0.4 s on this workspace.
The exit code is 0 even when a target is missed (a report); 1 when a side could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MLFLOW_PY = HERE / ".venvs" / "mlflow" / "bin" / "python"
TARGET_RUNS_LIST_S = 0.4

SEED_LOOPML = """
import loopml, sys
ws = loopml.Workspace.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    with ws.start_run("bench", log_environment=False) as run:
        run.log_params({"lr": 0.01 * i, "depth": i % 7})
        run.log_metrics({"acc": i / 100, "loss": 1 / (i + 1)})
ws.close()
"""

SEED_MLFLOW = """
import mlflow, sys
mlflow.set_tracking_uri(sys.argv[1])
exp = mlflow.set_experiment("bench")
for i in range(int(sys.argv[2])):
    with mlflow.start_run():
        mlflow.log_params({"lr": 0.01 * i, "depth": i % 7})
        mlflow.log_metrics({"acc": i / 100, "loss": 1 / (i + 1)})
print(exp.experiment_id)
"""


def timed(cmd: list[str], cwd: Path, env: dict[str, str], repeats: int) -> dict[str, Any]:
    """Median wall time of ``cmd`` started ``repeats`` times (after one warm-up run)."""
    times: list[float] = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            return {"error": f"exit {proc.returncode}: {tail[0] if tail else '?'}"}
        if i:  # the first run warms the page cache
            times.append(elapsed)
    return {"median_s": statistics.median(times), "min_s": min(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    loopml_bin = Path(sys.executable).with_name("loopml")
    if not loopml_bin.exists():
        print(f"{loopml_bin} not found: pip install -e . first", file=sys.stderr)
        return 1
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("PYTHONPATH", None)
    work = Path(tempfile.mkdtemp(prefix="loopml-startup-"))
    results: dict[str, Any] = {}
    try:
        lw = work / "loopml"
        lw.mkdir()
        subprocess.run([str(loopml_bin), "init", str(lw)], check=True, capture_output=True)
        subprocess.run(
            [sys.executable, "-c", SEED_LOOPML, str(lw), str(args.runs)], check=True, env=env
        )
        results["loopml --version"] = timed([str(loopml_bin), "--version"], lw, env, args.repeats)
        results["loopml runs list"] = timed(
            [str(loopml_bin), "runs", "list"], lw, env, args.repeats
        )
        results["loopml experiments list"] = timed(
            [str(loopml_bin), "experiments", "list"], lw, env, args.repeats
        )

        if MLFLOW_PY.exists():
            mw = work / "mlflow"
            mw.mkdir()
            uri = f"sqlite:///{mw / 'mlflow.db'}"
            seeded = subprocess.run(
                [str(MLFLOW_PY), "-c", SEED_MLFLOW, uri, str(args.runs)],
                capture_output=True,
                text=True,
                env=env,
                cwd=mw,
            )
            if seeded.returncode != 0:
                results["mlflow"] = {"error": seeded.stderr.strip().splitlines()[-1:]}
            else:
                exp_id = seeded.stdout.strip().splitlines()[-1]
                menv = {**env, "MLFLOW_TRACKING_URI": uri}
                mlflow_bin = str(MLFLOW_PY.with_name("mlflow"))
                results["mlflow runs list"] = timed(
                    [mlflow_bin, "runs", "list", "--experiment-id", exp_id], mw, menv, args.repeats
                )
                results["mlflow experiments search"] = timed(
                    [mlflow_bin, "experiments", "search"], mw, menv, args.repeats
                )
        else:
            results["mlflow"] = {"error": "run `benchmarks/setup_peer.sh mlflow` first"}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str) -> float | None:
        value = results.get(key, {}).get("median_s")
        return float(value) if value is not None else None

    rows = [
        ("runs list", med("loopml runs list"), med("mlflow runs list")),
        ("experiments list", med("loopml experiments list"), med("mlflow experiments search")),
        ("--version (floor)", med("loopml --version"), None),
    ]
    print(f"\nStart-up, {args.runs} runs, median of {args.repeats} fresh processes")
    print(f"{'command':<20} {'loopml':>9} {'MLflow':>9} {'ratio':>7}  target")
    for name, ours, theirs in rows:
        ratio = f"{theirs / ours:.1f}x" if ours and theirs else "-"
        target = ""
        if name == "runs list" and ours is not None:
            ok = ours < TARGET_RUNS_LIST_S
            target = f"< {TARGET_RUNS_LIST_S} s {'PASS' if ok else 'FAIL'}"
        fmt = lambda x: f"{x:.3f} s" if x is not None else "-"  # noqa: E731
        print(f"{name:<20} {fmt(ours):>9} {fmt(theirs):>9} {ratio:>7}  {target}")
    for key, value in results.items():
        if "error" in value:
            print(f"{key}: {value['error']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if "error" in results.get("loopml runs list", {}) else 0


if __name__ == "__main__":
    sys.exit(main())
