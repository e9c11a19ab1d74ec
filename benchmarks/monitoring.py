"""Drift benchmark: ``loopml.monitoring.drift`` against Evidently's data-drift preset and a bare
NumPy/SciPy computation of the same statistics (the limit).

Run it with the project's interpreter (the one where ``pip install -e .`` put loopml)::

    python benchmarks/monitoring.py [--cases 100k,1m] [--repeats N] [--no-peer] [--json PATH]

Cases: a reference and a current frame of 100,000 rows x 20 float columns of which 5 are
shifted in the current frame (``100k``), and of 1,000,000 x 50 with 12 shifted (``1m``).
Columns are normal, log-normal, uniform and rounded (heavy ties) in turn; a shift moves the mean
by 0.2-0.5 standard deviations or widens the spread by half. Each case is generated once from a fixed
seed and written to Parquet; each side reads the files before its clock starts.

Rows, each a fresh subprocess of this file (``--worker SIDE``):

- ``loopml``: ``loopml.monitoring.drift(reference, current)``: the profile (10 frozen quantile
  bins per column) built from the reference, then per column PSI and its band, KS against
  every reference value, JS, KL, null rates and the out-of-range share.
- ``evidently``: ``Report([DataDriftPreset()]).run(current, reference)`` in
  ``benchmarks/.venvs/evidently`` (``benchmarks/setup_peer.sh evidently``; skipped when the
  venv is missing), which picks its own test per column.
- ``bare``: per column ``scipy.stats.ks_2samp(reference, current)`` plus PSI over
  ``np.quantile`` bins of the reference (10 bins, same smoothing), no pandas, nothing else:
  the least work that gives the same two numbers, hence the limit.
- ``loopml, stored reference`` (information): ``compare(profile, current, sample=...)`` with
  the profile built beforehand and KS against a 5,000-row reference sample, which is what
  ``loopml monitor run`` does per window.
- ``monitor report`` (target: under 2 MB): the current frame cut into 24 windows, each
  compared with the stored profile and summarised as ``loopml monitor run`` stores it, drawn
  by ``loopml.monitoring.report``: its size in bytes (it plots aggregates, never rows).

Each side runs once untimed (Evidently: on the first 1,000 rows, to load its modules), then
``--repeats`` times timed (``time.perf_counter``; Evidently once on the 1m case, where a run
takes minutes),
and reports the median and the columns it flags (loopml and bare: PSI at least 0.1, the
moderate and significant bands; Evidently: its own per-column verdict). The KS statistics and PSI values of loopml
and bare are compared column by column (they must be equal).

Targets: loopml at least 10x faster than Evidently, and within 2x of bare (PASS/FAIL). The
exit code is 0 even when a target is missed (this is a report); 1 when the loopml or bare
worker could not run.

Only the standard library is imported at module level: the Evidently venv has no loopml.
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
EVIDENTLY_PYTHON = HERE / ".venvs" / "evidently" / "bin" / "python"
CASES = {"100k": (100_000, 20, 5), "1m": (1_000_000, 50, 12)}
BINS = 10
EPS = 1e-4  # loopml's PSI smoothing (loopml.monitoring.stats.EPS), used by bare alike
TARGET_VS_PEER = 10.0
TARGET_VS_BARE = 2.0
REPORT_WINDOWS = 24  # the current frame cut into hourly windows for the report-size figure
TARGET_REPORT_BYTES = 2_000_000


# ----------------------------------------------------------------------------------------------
# Data (project interpreter only)
# ----------------------------------------------------------------------------------------------


def make_data(rows: int, columns: int, shifted: int, folder: Path) -> list[str]:
    """Write ``reference.parquet`` and ``current.parquet``; return the shifted columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)

    def column(j: int) -> Any:
        kind = j % 4
        if kind == 0:
            return rng.normal(0, 1, rows)
        if kind == 1:
            return rng.lognormal(0, 0.5, rows)
        if kind == 2:
            return rng.uniform(0, 10, rows)
        return np.round(rng.normal(10, 3, rows))  # heavy ties

    names = [f"f{j:02d}" for j in range(columns)]
    moved = set(rng.choice(columns, size=shifted, replace=False).tolist())
    reference = pd.DataFrame({n: column(j) for j, n in enumerate(names)})
    current_columns = {}
    for j, n in enumerate(names):
        values = column(j)
        if j in moved and j % 3 == 0:  # a wider spread, same mean
            values = values.mean() + (values - values.mean()) * 1.5
        elif j in moved:  # the mean moves by 0.2-0.5 standard deviations
            values = values + (0.2 + 0.3 * rng.random()) * values.std()
        current_columns[n] = values
    current = pd.DataFrame(current_columns)
    reference.to_parquet(folder / "reference.parquet", index=False)
    current.to_parquet(folder / "current.parquet", index=False)
    return sorted(names[j] for j in moved)


# ----------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------


def _time(fn: Any, repeats: int, warm: Any = None) -> tuple[list[float], Any]:
    (warm or fn)()  # untimed
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def worker_loopml(folder: Path, repeats: int) -> dict[str, Any]:
    import pandas as pd

    import loopml
    from loopml.monitoring import build_profile, compare, drift
    from loopml.monitoring.profile import sample_of

    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    times, table = _time(lambda: drift(reference, current, bins=BINS), repeats)
    profile = build_profile(reference, bins=BINS)
    sample = sample_of(reference, 5000)
    stored_times, _ = _time(lambda: compare(profile, current, sample=sample), repeats)
    by_feature = table.set_index("feature")
    report_bytes = report_size(profile, sample, current)
    return {
        "version": loopml.__version__,
        "times": times,
        "stored_times": stored_times,
        "flagged": sorted(by_feature.index[by_feature["band"] != "none"].tolist()),
        "ks": {k: float(v) for k, v in by_feature["ks_stat"].items()},
        "ks_pvalue": {k: float(v) for k, v in by_feature["ks_pvalue"].items()},
        "psi": {k: float(v) for k, v in by_feature["psi"].items()},
        "peak_rss_mb": _peak_rss_mb(),
        "report_bytes": report_bytes,
    }


def report_size(profile: Any, sample: Any, current: Any) -> int:
    """Bytes of ``loopml monitor report`` over the current frame cut into
    :data:`REPORT_WINDOWS` windows, each compared with the stored profile and summarised as
    ``loopml monitor run`` stores it (per-bin shares, not rows)."""
    from datetime import UTC, datetime, timedelta

    from loopml.monitoring import compare
    from loopml.monitoring.profile import Reference
    from loopml.monitoring.report import ReportData, render
    from loopml.monitoring.windows import WindowResult, _record

    start = datetime(2026, 11, 1, tzinfo=UTC)
    reference = Reference("bench", 1, profile, profile.rows, "reference.parquet", start)
    size = -(-len(current) // REPORT_WINDOWS)
    windows = []
    for i in range(REPORT_WINDOWS):
        chunk = current.iloc[i * size : (i + 1) * size]
        metrics: dict[tuple[str, str], float] = {("", "rows"): float(len(chunk))}
        features = {d.feature: _record(d, metrics) for d in compare(profile, chunk, sample=sample)}
        begin = start + timedelta(hours=i)
        windows.append(
            WindowResult(
                "bench",
                begin,
                begin + timedelta(hours=1),
                "ok",
                len(chunk),
                "bench/1",
                metrics,
                summary={"features": features},
            )
        )
    return len(render(ReportData("bench", windows, reference, [])).encode())


def bare_drift(reference: Any, current: Any) -> dict[str, tuple[float, float, float]]:
    """KS and PSI per column with NumPy and SciPy alone: the limit."""
    import numpy as np
    from scipy.stats import ks_2samp

    levels = np.linspace(0, 1, BINS + 1)[1:-1]
    out = {}
    for name in reference:
        a, b = reference[name], current[name]
        ks = ks_2samp(a, b)
        edges = np.unique(np.quantile(a, levels))
        p = np.bincount(np.searchsorted(edges, a), minlength=edges.size + 1) / a.size + EPS
        q = np.bincount(np.searchsorted(edges, b), minlength=edges.size + 1) / b.size + EPS
        p, q = p / p.sum(), q / q.sum()
        psi = float(np.sum((q - p) * np.log(q / p)))
        out[name] = (float(ks.statistic), float(ks.pvalue), psi)
    return out


def worker_bare(folder: Path, repeats: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq
    import scipy

    def columns(path: Path) -> dict[str, Any]:
        table = pq.read_table(path)
        return {n: np.ascontiguousarray(table[n].to_numpy()) for n in table.column_names}

    reference, current = columns(folder / "reference.parquet"), columns(folder / "current.parquet")
    times, result = _time(lambda: bare_drift(reference, current), repeats)
    return {
        "version": f"numpy {np.__version__}, scipy {scipy.__version__}",
        "times": times,
        "flagged": sorted(k for k, v in result.items() if v[2] >= 0.1),
        "ks": {k: v[0] for k, v in result.items()},
        "ks_pvalue": {k: v[1] for k, v in result.items()},
        "psi": {k: v[2] for k, v in result.items()},
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_evidently(folder: Path, repeats: int) -> dict[str, Any]:
    import evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")

    def run(cur: Any, ref: Any) -> Any:
        return Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)

    times, snapshot = _time(
        lambda: run(current, reference),
        repeats,
        warm=lambda: run(current.head(1000), reference.head(1000)),
    )
    flagged = []
    for metric in snapshot.dict().get("metrics", []):
        name = str(metric.get("metric_name", ""))
        config = metric.get("config", {}) or {}
        column = config.get("column")
        value = metric.get("value")
        threshold = config.get("threshold")
        if "ValueDrift" in name and column is not None and isinstance(value, int | float):
            method = str(config.get("method", "")).lower()
            # p-value tests flag below the threshold, distances above it
            is_p_value = "p_value" in method or "test" in method
            drifted = value < threshold if is_p_value else value >= threshold
            if drifted:
                flagged.append(column)
    return {
        "version": evidently.__version__,
        "times": times,
        "flagged": sorted(flagged),
        "peak_rss_mb": _peak_rss_mb(),
    }


WORKERS = {"loopml": worker_loopml, "bare": worker_bare, "evidently": worker_evidently}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def run_worker(
    python: Path | str, side: str, folder: Path, repeats: int, timeout: float
) -> dict[str, Any] | str:
    cmd = [str(python), __file__, "--worker", side, "--data", str(folder)]
    cmd += ["--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s"
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _median(result: dict[str, Any] | str | None, key: str = "times") -> float | None:
    return statistics.median(result[key]) if isinstance(result, dict) else None


def _fmt(seconds: float | None) -> str:
    return f"{seconds:,.3f} s" if seconds is not None else "n/a"


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    rows, columns, shifted = CASES[case]
    with tempfile.TemporaryDirectory(prefix="loopml-bench-monitoring-") as tmp:
        folder = Path(tmp)
        print(f"[{case}] generating 2 x {rows:,} rows x {columns} columns ...", flush=True)
        moved = make_data(rows, columns, shifted, folder)
        print(f"[{case}] loopml worker ...", flush=True)
        ours = run_worker(sys.executable, "loopml", folder, args.repeats, args.timeout)
        print(f"[{case}] bare worker ...", flush=True)
        bare = run_worker(sys.executable, "bare", folder, args.repeats, args.timeout)
        peer: dict[str, Any] | str | None
        if args.no_peer:
            peer = None
        elif EVIDENTLY_PYTHON.exists():
            print(f"[{case}] evidently worker ...", flush=True)
            peer_repeats = 1 if rows >= 1_000_000 else args.repeats
            peer = run_worker(EVIDENTLY_PYTHON, "evidently", folder, peer_repeats, args.timeout)
        else:
            peer = f"no venv at {EVIDENTLY_PYTHON} (benchmarks/setup_peer.sh evidently)"
    return {"case": case, "shifted": moved, "loopml": ours, "bare": bare, "evidently": peer}


def report(result: dict[str, Any]) -> list[tuple[str, ...]]:
    case, ours, bare, peer = result["case"], result["loopml"], result["bare"], result["evidently"]
    mine, limit, theirs = _median(ours), _median(bare), _median(peer)
    stored = _median(ours, "stored_times")
    rows: list[tuple[str, ...]] = []
    if mine is not None and theirs is not None:
        ratio = theirs / mine
        verdict = "PASS" if ratio >= TARGET_VS_PEER else "FAIL"
        rows.append(
            (
                f"{case}: vs Evidently",
                _fmt(mine),
                _fmt(theirs),
                f"{ratio:.1f}x faster",
                f">= {TARGET_VS_PEER:g}x",
                verdict,
            )
        )
    else:
        rows.append(
            (f"{case}: vs Evidently", _fmt(mine), "n/a", "n/a", f">= {TARGET_VS_PEER:g}x", "n/a")
        )
    if mine is not None and limit is not None:
        ratio = mine / limit
        verdict = "PASS" if ratio <= TARGET_VS_BARE else "FAIL"
        rows.append(
            (
                f"{case}: vs bare NumPy/SciPy",
                _fmt(mine),
                _fmt(limit),
                f"{ratio:.2f}x the time",
                f"<= {TARGET_VS_BARE:g}x",
                verdict,
            )
        )
    if stored is not None:
        rows.append(
            (f"{case}: stored reference (5,000-row sample)", _fmt(stored), "", "", "(info)", "")
        )
    size = ours.get("report_bytes") if isinstance(ours, dict) else None
    if size is not None:
        verdict = "PASS" if size < TARGET_REPORT_BYTES else "FAIL"
        rows.append(
            (
                f"{case}: monitor report, {REPORT_WINDOWS} windows",
                f"{size / 1e6:.2f} MB",
                "",
                "",
                f"< {TARGET_REPORT_BYTES / 1e6:g} MB",
                verdict,
            )
        )
    return rows


def notes(result: dict[str, Any]) -> list[str]:
    lines = [f"[{result['case']}] shifted columns: {', '.join(result['shifted'])}"]
    for side in ("loopml", "bare", "evidently"):
        value = result[side]
        if isinstance(value, dict):
            times = ", ".join(f"{t:.3f}" for t in value["times"])
            rss = value.get("peak_rss_mb")
            lines.append(
                f"  {side} ({value['version']}): times {times} s; peak RSS "
                f"{rss:,.0f} MB; flags {len(value['flagged'])}: {', '.join(value['flagged'])}"
            )
        elif value:
            lines.append(f"  {side}: n/a ({value})")
    ours, bare = result["loopml"], result["bare"]
    if isinstance(ours, dict) and isinstance(bare, dict):
        ks = max(abs(ours["ks"][k] - bare["ks"][k]) for k in bare["ks"])
        ks_p = max(abs(ours["ks_pvalue"][k] - bare["ks_pvalue"][k]) for k in bare["ks"])
        psi = max(abs(ours["psi"][k] - bare["psi"][k]) for k in bare["psi"])
        lines.append(
            f"  loopml vs bare, largest difference per column: KS statistic {ks:.3g}, "
            f"KS p-value {ks_p:.3g}, PSI {psi:.3g}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cases", default="100k,1m", help="comma-separated: 100k, 1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip Evidently")
    parser.add_argument("--timeout", type=float, default=1800, help="per worker, seconds")
    parser.add_argument("--json", type=Path, help="write every raw figure here as well")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.repeats)))
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}", flush=True)
    results = [run_case(case, args) for case in cases]
    header = ("case", "loopml", "peer", "ratio", "target", "verdict")
    rows = [r for result in results for r in report(result)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    print()
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    for result in results:
        print("\n".join(notes(result)))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [r for r in results for side in ("loopml", "bare") if isinstance(r[side], str)]
    for r in failed:
        print(f"[{r['case']}] a worker failed: loopml={r['loopml']!s:.300} bare={r['bare']!s:.300}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
