"""The gateway's cache and guardrails, measured through the gateway itself (in-process), and
the two parts' own benchmarks run after it.

    python benchmarks/llm_cache_guardrails.py             # 500 requests a case, then both parts
    python benchmarks/llm_cache_guardrails.py --quick     # 200 a case; the parts' quick runs
    python benchmarks/llm_cache_guardrails.py --only-gateway

Two fake providers (benchmarks/fake_llm.py) on 127.0.0.1: one answering at once, one after
300 ms (a real model's time). One ``Gateway`` over a fresh workspace, routes:

* ``plain``: no cache, no guardrails (the gateway's base overhead);
* ``cached``: the 300 ms provider behind ``[gateway.cache]`` (exact and semantic, hashed
  embedder), primed with ``--entries`` distinct questions;
* ``guarded``: the built-in ``default`` policy (injection and secrets blocked, PII redacted).

Printed: the direct call to each provider, the plain route's added latency (the base), an
exact hit and a semantic hit on the cached route (p50/p99; a hit never reaches the 300 ms
provider), and what the default policy adds on a 1 KB prompt. Then
``benchmarks/llm_cache.py`` (lookups with 100,000 entries, hit and false-hit rates on the
labelled pairs) and ``benchmarks/guardrails.py`` (the default policy on 1 KB prompts and 2 KB
streamed answers, and LLM Guard when its venv exists) run as they are. No figure is asserted;
the issue's targets are printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from fake_llm import start as start_fake_provider  # benchmarks/fake_llm.py, beside this

HERE = Path(__file__).resolve().parent
SLOW = 0.3  # seconds the slow provider takes to answer


def config(fast: int, slow: int) -> dict[str, Any]:
    def group(name: str, port: int) -> dict[str, Any]:
        return {
            "deployments": [
                {
                    "name": name,
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key_env": "FAKE_LLM_KEY",
                }
            ]
        }

    return {
        "require_key": False,
        "num_retries": 0,
        "models": {
            "plain": group("plain-d", fast),
            "guarded": group("guarded-d", fast),
            "cached": group("cached-d", slow),
        },
        "cache": {"enabled": False, "semantic": True, "routes": {"cached": {"enabled": True}}},
        "guardrails": {"routes": {"guarded": "default"}},
    }


PRODUCTS = ["Pro plan", "Team plan", "mobile app", "API", "invoice", "password", "export"]
ASKS = [
    "How do I change my {p}?",
    "Where can I find the {p} settings?",
    "Why is my {p} not working since update {n}?",
    "What does the {p} cost for {n} seats?",
]


def questions(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add(rng.choice(ASKS).format(p=rng.choice(PRODUCTS), n=rng.randint(2, 99_999)))
    return sorted(out)


def paraphrase(text: str) -> str:
    return text.lower().rstrip("?") + " please"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import loopml
    from loopml.llm import Gateway

    fast_proc, fast = start_fake_provider(0.0)
    slow_proc, slow = start_fake_provider(SLOW)
    os.environ.setdefault("FAKE_LLM_KEY", "sk-fake")
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-"))
    ws = loopml.Workspace.init(work / "ws")
    gw = Gateway.from_config(config(fast, slow), workspace=ws)
    n = args.requests
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:

            async def direct(port: int) -> None:
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=body
                ) as r:
                    await r.json()

            async def timed(make: Any, count: int) -> list[float]:
                samples = []
                for i in range(count):
                    t0 = time.perf_counter()
                    await make(i)
                    samples.append((time.perf_counter() - t0) * 1000)
                return samples

            def ask(model: str, text: str) -> dict[str, Any]:
                return {"model": model, "messages": [{"role": "user", "content": text}]}

            for _ in range(50):  # warm both paths
                await direct(fast)
                await gw.achat(ask("plain", "warm up"))
            out["direct_fast"] = await timed(lambda i: direct(fast), n)
            out["plain"] = await timed(lambda i: gw.achat(ask("plain", f"q {i}")), n)
            out["direct_slow"] = await timed(lambda i: direct(slow), 10)

            primed = questions(args.entries)
            print(f"  priming the cache with {len(primed):,} answers (300 ms each, 200 at once)")
            for start in range(0, len(primed), 200):
                await asyncio.gather(
                    *(gw.achat(ask("cached", q)) for q in primed[start : start + 200])
                )
            await gw.aflush_cache()
            picks = [primed[i % len(primed)] for i in range(n)]
            replies: list[Any] = []

            async def hit(i: int, texts: list[str]) -> None:
                replies.append(await gw.achat(ask("cached", texts[i])))

            out["exact"] = await timed(lambda i: hit(i, picks), n)
            out["exact_kinds"] = [r.cache for r in replies]
            replies.clear()
            near = [paraphrase(q) for q in picks]
            out["semantic"] = await timed(lambda i: hit(i, near), n)
            out["semantic_kinds"] = [r.cache for r in replies]

            prompt = " ".join(
                ["Please summarise the customer's message below and suggest a reply."]
                + ["The parcel arrived late and the box was damaged on one side."] * 16
            )[:1024]
            out["guarded"] = await timed(lambda i: gw.achat(ask("guarded", f"{i} {prompt}")), n)
            out["unguarded"] = await timed(lambda i: gw.achat(ask("plain", f"{i} {prompt}")), n)
    finally:
        await gw.aclose()
        ws.close()
        for proc in (fast_proc, slow_proc):
            proc.terminate()
            proc.wait(10)
    return out


def report(out: dict[str, Any]) -> None:
    def row(name: str, samples: list[float], note: str = "") -> None:
        print(
            f"  {name:<38} p50 {statistics.median(samples):8.2f} ms"
            f"   p99 {pct(samples, 0.99):8.2f} ms   {note}"
        )

    base = statistics.median(out["plain"]) - statistics.median(out["direct_fast"])
    print("\nthrough the gateway (in-process), sequential requests")
    row("direct: fast fake provider", out["direct_fast"])
    row("gateway: plain route (no cache/guards)", out["plain"], f"base overhead {base:+.2f} ms")
    row("direct: slow fake provider (300 ms)", out["direct_slow"])
    exact_ok = sum(k == "exact" for k in out["exact_kinds"])
    semantic_ok = sum(k == "semantic" for k in out["semantic_kinds"])
    exact_added = statistics.median(out["exact"]) - statistics.median(out["direct_fast"])
    row(
        "gateway: exact hit",
        out["exact"],
        f"{exact_ok}/{len(out['exact_kinds'])} hits; {exact_added - base:+.2f} ms over the base "
        "(target < 2 ms)",
    )
    row(
        "gateway: semantic hit (paraphrase)",
        out["semantic"],
        f"{semantic_ok}/{len(out['semantic_kinds'])} semantic hits; target < 10 ms at 100,000 "
        "entries: see llm_cache.py below",
    )
    guard = statistics.median(out["guarded"]) - statistics.median(out["unguarded"])
    row(
        "gateway: default policy, 1 KB prompt",
        out["guarded"],
        f"{guard:+.2f} ms over the same route unguarded (target < 5 ms)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 requests a case")
    parser.add_argument("--requests", type=int, default=None, help="requests a case (500)")
    parser.add_argument("--entries", type=int, default=2_000, help="answers primed (2,000)")
    parser.add_argument("--only-gateway", action="store_true", help="skip the parts' scripts")
    args = parser.parse_args(argv)
    args.requests = args.requests or (200 if args.quick else 500)
    print(f"cache and guardrails through the gateway: {args.requests} requests a case")
    report(asyncio.run(run(args)))
    if args.only_gateway:
        return 0
    parts = [
        [str(HERE / "llm_cache.py")]
        + (["--entries", "20000", "--lookups", "500"] if args.quick else []),
        [str(HERE / "guardrails.py")] + (["--quick"] if args.quick else []),
    ]
    for part in parts:
        print(f"\n$ python benchmarks/{Path(part[0]).name} {' '.join(part[1:])}", flush=True)
        subprocess.run([sys.executable, *part], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
