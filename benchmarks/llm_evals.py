"""Eval-suite benchmark: 500 cases against a provider that takes 200 ms an answer, with 16
calls in flight, then the same suite again with a warm call cache; promptfoo as the peer.

Run it with the project's interpreter::

    python benchmarks/llm_evals.py                       # 500 cases, 0.2 s, concurrency 16
    python benchmarks/llm_evals.py --cases 100 --json /tmp/evals.json

What it does, in one process, on a fresh temporary workspace (SQLite + local blob store):

1. starts ``benchmarks/fake_llm.py --delay 0.2`` (an OpenAI-compatible server on 127.0.0.1);
2. registers a prompt and runs a suite of ``--cases`` cases (two assertions each) through
   the in-process gateway with ``--concurrency`` calls in flight — the whole of
   ``loopml evals run``: rendering, the gateway (routing, accounting, request log, traces),
   scoring and the tracked run with its artifact. The limit is cases × delay / concurrency
   (500 × 0.2 / 16 ≈ 6.3 s);
3. runs it again with the first run's call cache (a warm cache): no upstream call;
4. promptfoo (npm, installed into ``benchmarks/.venvs/promptfoo`` with
   ``npm install --prefix benchmarks/.venvs/promptfoo promptfoo``), when it is there: the same
   cases, provider and concurrency (``-j``), without its cache and then with it. When it is
   not installed the table says why it was not measured.

No figure here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fake_llm import start as start_fake_provider  # benchmarks/fake_llm.py, beside this

HERE = Path(__file__).resolve().parent
PROMPTFOO = HERE / ".venvs" / "promptfoo" / "node_modules" / ".bin" / "promptfoo"
ANSWER_WORD = "Hello"  # benchmarks/fake_llm.py answers "Hello from the fake provider."


def gateway_config(port: int) -> dict[str, Any]:
    return {
        "require_key": False,
        "num_retries": 0,
        "log_flush_interval": 0.5,
        "models": {
            "bench": {
                "deployments": [
                    {
                        "name": "bench-d",
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "base_url": f"http://127.0.0.1:{port}/v1",
                        "api_key_env": "FAKE_LLM_KEY",
                    }
                ]
            }
        },
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }


def suite_data(cases: int) -> dict[str, Any]:
    return {
        "name": "bench",
        "thresholds": {"min_pass_rate": 1.0},
        "assert": [
            {"type": "contains", "value": ANSWER_WORD},
            {"type": "latency", "max_ms": 5000},
        ],
        "cases": [
            {"id": f"c{i}", "variables": {"q": f"question number {i}"}} for i in range(cases)
        ],
    }


def run_loopml(port: int, cases: int, concurrency: int) -> dict[str, Any]:
    from loopml.llm.evals import CallCache, run_suite
    from loopml.llm.evals.suites import suite_from_dict
    from loopml.llm.gateway import Gateway
    from loopml.llm.prompts import register_prompt
    from loopml.workspace import Workspace

    os.environ["FAKE_LLM_KEY"] = "sk-bench"
    folder = Path(tempfile.mkdtemp(prefix="loopml-evals-bench-"))
    ws = Workspace.init(folder)
    try:
        register_prompt("bench/qa", "Answer briefly: {{ q }}", model="bench", workspace=ws)
        suite = suite_from_dict(suite_data(cases), "bench.yaml")
        gw = Gateway.from_config(gateway_config(port), workspace=ws)
        cache = CallCache()
        try:
            started = time.perf_counter()
            cold = run_suite(suite, "bench/qa/1", gateway=gw, concurrency=concurrency, cache=cache)
            cold_wall = time.perf_counter() - started
            started = time.perf_counter()
            warm = run_suite(suite, "bench/qa/1", gateway=gw, concurrency=concurrency, cache=cache)
            warm_wall = time.perf_counter() - started
        finally:
            gw.close()
        return {
            "cold_wall_s": cold_wall,
            "cold_calls_wall_s": cold.wall_s,  # the cases alone, without the tracked run
            "cold_pass_rate": cold.pass_rate,
            "cold_upstream_calls": cold.upstream_calls,
            "max_in_flight": cold.max_in_flight,
            "warm_wall_s": warm_wall,
            "warm_upstream_calls": warm.upstream_calls,
            "warm_pass_rate": warm.pass_rate,
            "run_id": cold.run_id,
        }
    finally:
        ws.close()
        shutil.rmtree(folder, ignore_errors=True)


def run_promptfoo(port: int, cases: int, concurrency: int) -> dict[str, Any]:
    if not PROMPTFOO.exists():
        return {
            "skipped": (
                f"promptfoo is not installed at {PROMPTFOO.relative_to(HERE.parent)}; "
                "install it with `npm install --prefix benchmarks/.venvs/promptfoo promptfoo`"
            )
        }
    folder = Path(tempfile.mkdtemp(prefix="promptfoo-bench-"))
    config = {
        "prompts": ["Answer briefly: {{q}}"],
        "providers": [
            {
                "id": "openai:chat:gpt-4o-mini",
                "config": {"apiBaseUrl": f"http://127.0.0.1:{port}/v1", "apiKey": "sk-bench"},
            }
        ],
        "defaultTest": {"assert": [{"type": "contains", "value": ANSWER_WORD}]},
        "tests": [{"vars": {"q": f"question number {i}"}} for i in range(cases)],
    }
    path = folder / "promptfooconfig.json"
    path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_CONFIG_DIR": str(folder / "home"),
        "PROMPTFOO_CACHE_PATH": str(folder / "cache"),
        "OPENAI_API_KEY": "sk-bench",
    }
    out: dict[str, Any] = {}
    try:
        for label, extra in (("cold", ["--no-cache"]), ("fill", []), ("warm", [])):
            command = [str(PROMPTFOO), "eval", "-c", str(path), "-j", str(concurrency),
                       "--no-write", "--no-table", "--no-progress-bar", *extra]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            wall = time.perf_counter() - started
            if done.returncode not in (0, 100):  # 100: some assertions failed
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                return {"skipped": f"promptfoo eval failed ({done.returncode}): {' | '.join(tail)}"}
            out[f"{label}_wall_s"] = wall
        return out
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"promptfoo could not run: {exc}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    limit = args.cases * args.delay / args.concurrency
    proc, port = start_fake_provider(args.delay)
    try:
        ours = run_loopml(port, args.cases, args.concurrency)
        peer = run_promptfoo(port, args.cases, args.concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rows = [
        ("cold suite, wall s", ours["cold_wall_s"], peer.get("cold_wall_s"), f"≈ {limit:.2f} (limit)"),
        ("warm call cache, wall s", ours["warm_wall_s"], peer.get("warm_wall_s"), "near 0"),
        ("warm call cache, upstream calls", ours["warm_upstream_calls"], None, "0"),
    ]  # fmt: skip
    print(
        f"eval suite: {args.cases} cases, provider delay {args.delay * 1000:.0f} ms, "
        f"concurrency {args.concurrency} (max in flight seen: {ours['max_in_flight']}); "
        f"pass rate {ours['cold_pass_rate']:.0%} / {ours['warm_pass_rate']:.0%}; the cases "
        f"alone {ours['cold_calls_wall_s']:.2f} s, the rest is recording the tracked run"
    )
    print(f"{'case':34} {'loopml':>10} {'promptfoo':>10} {'ratio':>7}  target")
    for name, mine, theirs, target in rows:
        ratio = f"{theirs / mine:.2f}x" if theirs and mine else "-"
        shown = f"{theirs:10.2f}" if isinstance(theirs, float) else f"{'-':>10}"
        print(f"{name:34} {mine:10.2f} {shown} {ratio:>7}  {target}")
    verdict = "PASS" if ours["cold_wall_s"] <= limit * 1.15 else "FAIL"
    print(f"cold wall {ours['cold_wall_s']:.2f} s vs limit {limit:.2f} s (+15%): {verdict}")
    if "skipped" in peer:
        print(f"promptfoo not measured: {peer['skipped']}")
    if args.json:
        args.json.write_text(json.dumps({"loopml": ours, "promptfoo": peer, "limit_s": limit}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
