"""Data validation benchmark: ``Schema.validate`` on 1,000,000 rows x 20 columns, against pandera.

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/validation.py [--rows N] [--repeats N] [--no-peer] [--json PATH]

The table is 6 int columns (an id that must be unique, one nullable ``Int64``), 7 float
columns (four with NaNs), 6 string columns (four with allowed values, two with a regex, one
nullable) and a bool column, with a few hundred bad values planted in five columns so that
the failure reports are exercised too. It is generated once from a fixed seed and written to
Parquet; each side reads that file before its clock starts.

Both sides run as subprocesses of this very file (``--worker loopml|pandera``), loopml with the
project's interpreter and pandera with ``benchmarks/.venvs/pandera/bin/python`` (make it with
``python3 -m venv benchmarks/.venvs/pandera && benchmarks/.venvs/pandera/bin/pip install
'pandera[pandas]' pyarrow``; the peer is optional and skipped when that venv is missing). The
two schemas are built from the one spec table below, and each worker validates the frame once
untimed, then ``--repeats`` times timed (``time.perf_counter``), and prints one JSON line with
the median, the minimum and how many failing rows it found per column.

The target is loopml's median under 1 s on a DataFrame (PASS/FAIL); the pyarrow Table figure
and the ratio to pandera (``validate(df, lazy=True)``, which like loopml collects every failure)
are for information. The exit code is 0 even when the target is missed (this is a report); it
is 1 only when the loopml worker could not run.

Only the standard library is imported at module level: the pandera venv has no loopml.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PANDERA_PYTHON = HERE / ".venvs" / "pandera" / "bin" / "python"
TARGET_S = 1.0

COUNTRIES = ["DE", "FR", "US", "GB", "ES", "IT", "NL", "PL", "SE", "JP"]
PLANS = ["free", "basic", "pro", "enterprise"]
CHANNELS = ["web", "ios", "android", "email", "partner", "store"]
DEVICES = ["desktop", "mobile", "tablet", "tv", "other"]
EMAIL = r"[a-z0-9._]+@[a-z0-9-]+\.[a-z]{2,}"
SKU = r"[A-Z]{3}-[0-9]{5}"

# One spec, read by both sides: name -> rules (loopml Column keywords).
SPEC: dict[str, dict[str, Any]] = {
    "id": {"dtype": "int", "nullable": False, "min": 0, "unique": True},
    "age": {"dtype": "int", "nullable": False, "min": 18, "max": 100},
    "tenure_days": {"dtype": "int", "nullable": False, "min": 0, "max": 10_000},
    "n_orders": {"dtype": "int", "nullable": True, "min": 0, "max": 1_000},
    "n_logins": {"dtype": "int", "nullable": False, "min": 0, "max": 100_000},
    "zip3": {"dtype": "int", "nullable": False, "min": 0, "max": 999},
    "score": {"dtype": "float", "nullable": False, "min": 0.0, "max": 1.0},
    "income": {"dtype": "float", "nullable": True, "min": 0.0, "max": 1e7},
    "balance": {"dtype": "float", "nullable": True, "min": -1e6, "max": 1e6},
    "ratio": {"dtype": "float", "nullable": True, "min": 0.0, "max": 1.0},
    "lat": {"dtype": "float", "nullable": False, "min": -90.0, "max": 90.0},
    "lon": {"dtype": "float", "nullable": False, "min": -180.0, "max": 180.0},
    "discount": {"dtype": "float", "nullable": True, "min": 0.0, "max": 1.0},
    "country": {"dtype": "string", "nullable": False, "allowed": COUNTRIES},
    "plan": {"dtype": "string", "nullable": False, "allowed": PLANS},
    "channel": {"dtype": "string", "nullable": True, "allowed": CHANNELS},
    "device": {"dtype": "string", "nullable": False, "allowed": DEVICES},
    "email": {"dtype": "string", "nullable": False, "regex": EMAIL},
    "sku": {"dtype": "string", "nullable": False, "regex": SKU},
    "churned": {"dtype": "bool", "nullable": False},
}


# ----------------------------------------------------------------------------------------------
# Data (project interpreter only)
# ----------------------------------------------------------------------------------------------


def make_data(n: int, path: Path) -> dict[str, int]:
    """Write the benchmark table to ``path`` (Parquet); return the bad values planted per column."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(42)

    def with_nans(values: Any, share: float) -> Any:
        return np.where(rng.random(n) < share, np.nan, values)

    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    sku = pd.Series(
        ["".join(t) for t in rng.choice(letters, size=(1000, 3))], dtype="str"
    ).to_numpy()[rng.integers(0, 1000, n)]
    sku = (
        pd.Series(sku, dtype="str")
        + "-"
        + pd.Series(rng.integers(10_000, 100_000, n)).astype("str")
    )
    email = (
        pd.Series(rng.integers(0, 10_000_000, n)).astype("str").radd("user")
        + "@"
        + pd.Series(rng.choice(["example", "mail-1", "corp"], n), dtype="str")
        + "."
        + pd.Series(rng.choice(["com", "de", "io"], n), dtype="str")
    )
    n_orders = pd.array(rng.integers(0, 500, n), dtype="Int64")
    n_orders[rng.random(n) < 0.05] = pd.NA
    df = pd.DataFrame(
        {
            "id": rng.permutation(n).astype("int64"),
            "age": rng.integers(18, 101, n),
            "tenure_days": rng.integers(0, 5_000, n),
            "n_orders": n_orders,
            "n_logins": rng.integers(0, 50_000, n),
            "zip3": rng.integers(0, 1000, n),
            "score": rng.random(n),
            "income": with_nans(rng.lognormal(10, 1, n).clip(0, 9e6), 0.1),
            "balance": with_nans(rng.normal(0, 1e4, n), 0.05),
            "ratio": with_nans(rng.random(n), 0.2),
            "lat": rng.uniform(-90, 90, n),
            "lon": rng.uniform(-180, 180, n),
            "discount": with_nans(rng.random(n) * 0.5, 0.3),
            "country": pd.Series(rng.choice(COUNTRIES, n), dtype="str"),
            "plan": pd.Series(rng.choice(PLANS, n), dtype="str"),
            "channel": pd.Series(
                np.where(rng.random(n) < 0.1, None, rng.choice(CHANNELS, n)), dtype="str"
            ),
            "device": pd.Series(rng.choice(DEVICES, n), dtype="str"),
            "email": email,
            "sku": sku,
            "churned": rng.random(n) < 0.2,
        }
    )
    planted = {"age": 300, "score": 200, "country": 150, "email": 100, "lat": 50}
    for column, count in planted.items():
        rows = rng.choice(n, size=count, replace=False)
        bad: Any = {
            "age": 7,
            "score": np.nan,
            "country": "XX",
            "email": "not-an-email",
            "lat": 95.0,
        }
        df.loc[rows, column] = bad[column]
    df.to_parquet(path, index=False)
    return planted


# ----------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------


def _time(fn: Any, repeats: int) -> tuple[list[float], Any]:
    result = fn()  # warm-up, untimed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def worker_loopml(data: Path, repeats: int) -> dict[str, Any]:
    import pandas as pd
    import pyarrow.parquet as pq

    import loopml
    from loopml.validation import Column, Schema

    schema = Schema({name: Column(**rules) for name, rules in SPEC.items()})
    table = pq.read_table(data)
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame)
    times, report = _time(lambda: schema.validate(df), repeats)
    arrow_times, arrow_report = _time(lambda: schema.validate(table), repeats)
    return {
        "version": loopml.__version__,
        "rows": len(df),
        "columns": df.shape[1],
        "times": times,
        "arrow_times": arrow_times,
        "failing_rows": _loopml_counts(report),
        "arrow_failing_rows": _loopml_counts(arrow_report),
        "report": str(report),
    }


def _loopml_counts(report: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for failure in report.failures:
        counts[failure.column] = counts.get(failure.column, 0) + (failure.failing_rows or 0)
    return counts


def worker_pandera(data: Path, repeats: int) -> dict[str, Any]:
    import pandas as pd
    import pandera
    import pandera.pandas as pa

    columns = {}
    for name, rules in SPEC.items():
        checks = []
        if "min" in rules:
            checks.append(pa.Check.ge(rules["min"]))
        if "max" in rules:
            checks.append(pa.Check.le(rules["max"]))
        if "allowed" in rules:
            checks.append(pa.Check.isin(rules["allowed"]))
        if "regex" in rules:
            checks.append(pa.Check.str_matches(rf"(?:{rules['regex']})\Z"))  # match() + \Z
        dtype: Any = {"int": "int64", "float": float, "bool": bool, "string": str}[rules["dtype"]]
        if name == "n_orders":
            dtype = "Int64"
        columns[name] = pa.Column(
            dtype, checks=checks, nullable=rules["nullable"], unique=rules.get("unique", False)
        )
    schema = pa.DataFrameSchema(columns)
    df = pd.read_parquet(data)

    def validate() -> dict[str, int]:
        try:
            schema.validate(df, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            counts = cases.groupby("column")["index"].nunique()
            return {str(k): int(v) for k, v in counts.items()}
        return {}

    times, counts = _time(validate, repeats)
    return {
        "version": pandera.__version__,
        "rows": len(df),
        "columns": df.shape[1],
        "times": times,
        "failing_rows": counts,
    }


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def run_worker(python: Path | str, side: str, data: Path, repeats: int) -> dict[str, Any] | str:
    cmd = [str(python), __file__, "--worker", side, "--data", str(data), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true", help="skip pandera")
    parser.add_argument("--json", type=Path, help="write every raw figure here as well")
    parser.add_argument("--worker", choices=["loopml", "pandera"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        work = worker_loopml if args.worker == "loopml" else worker_pandera
        print(json.dumps(work(args.data, args.repeats)))
        return 0

    with tempfile.TemporaryDirectory(prefix="loopml-bench-validation-") as tmp:
        data = Path(tmp) / "table.parquet"
        print(f"generating {args.rows:,} rows x {len(SPEC)} columns ...", flush=True)
        planted = make_data(args.rows, data)
        print("loopml worker ...", flush=True)
        ours = run_worker(sys.executable, "loopml", data, args.repeats)
        peer: dict[str, Any] | str | None = None
        if args.no_peer:
            peer = None
        elif PANDERA_PYTHON.exists():
            print("pandera worker ...", flush=True)
            peer = run_worker(PANDERA_PYTHON, "pandera", data, max(1, min(args.repeats, 3)))
        else:
            peer = f"no venv at {PANDERA_PYTHON} (see this file's docstring to make one)"

    if isinstance(ours, str):
        print(f"loopml worker failed: {ours}")
        return 1
    median = statistics.median(ours["times"])
    arrow_median = statistics.median(ours["arrow_times"])
    verdict = "PASS" if median < TARGET_S else "FAIL"
    rows: list[tuple[str, str, str, str, str, str]] = []
    peer_median = None
    if isinstance(peer, dict):
        peer_median = statistics.median(peer["times"])
    peer_name = f"pandera {peer['version']}" if isinstance(peer, dict) else "pandera"
    rows.append(
        (
            "validate DataFrame, median",
            f"{median * 1000:,.0f} ms",
            f"{peer_median * 1000:,.0f} ms" if peer_median else "n/a",
            f"{peer_median / median:.1f}x" if peer_median else "n/a",
            f"< {TARGET_S:g} s",
            verdict,
        )
    )
    rows.append(("  min", f"{min(ours['times']) * 1000:,.0f} ms", "", "", "(info)", ""))
    rows.append(
        ("validate Arrow Table, median", f"{arrow_median * 1000:,.0f} ms", "", "", "(info)", "")
    )
    header = ("case", f"loopml {ours['version']}", peer_name, "ratio", "target", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    print()
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    print(
        f"table: {ours['rows']:,} rows x {ours['columns']} columns; repeats: {len(ours['times'])}"
    )
    print("loopml times (s):", ", ".join(f"{t:.3f}" for t in ours["times"]))
    print("planted bad values:", planted)
    print("failing rows found by loopml:", ours["failing_rows"])
    if ours["arrow_failing_rows"] != ours["failing_rows"]:
        print("  (Arrow Table input found:", ours["arrow_failing_rows"], ")")
    if isinstance(peer, dict):
        print("pandera times (s):", ", ".join(f"{t:.3f}" for t in peer["times"]))
        print("failing rows found by pandera:", peer["failing_rows"])
    elif peer:
        print(f"pandera: n/a ({peer})")
    print()
    print(ours["report"])
    print()
    print(f"verdict: {verdict} (median {median:.3f} s against the {TARGET_S:g} s target)")
    if args.json:
        args.json.write_text(
            json.dumps({"loopml": ours, "pandera": peer, "planted": planted}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
