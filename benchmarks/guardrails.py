"""Added latency of loopml's guardrails: the default policy on 1 KB prompts (input) and on
2 KB answers streamed in ~5-character chunks (output), p50 and p99 per request.

    python benchmarks/guardrails.py                # 2,000 requests
    python benchmarks/guardrails.py --quick        # 300 requests
    python benchmarks/guardrails.py --requests 5000 --json /tmp/guardrails.json

Each request: ``policy.check_input`` on one 1 KB user message, then a ``StreamGuard`` fed a
2 KB answer in chunks of 3-7 characters and finished, all in this process, timed with
``time.perf_counter_ns`` (no I/O: what the gateway adds to a request's CPU time). About one
prompt and one answer in ten carries a card number, an e-mail address or a key, so the
redaction paths run too; prompts never carry an injection or a secret (the default policy
blocks those, which would skip the output side).

The peer named by the issue, LLM Guard (its regex-based scanners), is not measured: llm-guard
0.3.16 declares ``torch>=2.4.0`` and ``transformers==4.51.3`` as hard dependencies, so the
peer-venv pattern of benchmarks/setup_peer.sh (pip requirements, installed with their
dependencies) cannot install it without torch. The output says so.

No ML classifier is installed here, so the figures are for the heuristics alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from loopml.llm.guardrails.policy import Policy, default_policy
from loopml.llm.guardrails.stream import StreamGuard

TARGET_P50_MS = 5.0
LLM_GUARD_NOTE = (
    "LLM Guard: not measured. llm-guard 0.3.16 requires torch>=2.4.0 and transformers==4.51.3 "
    "(hard dependencies), so benchmarks/setup_peer.sh's pattern cannot install it without torch."
)

SENTENCES = [
    "The quarterly report shows revenue grew by 12 percent compared with last year.",
    "Please summarise the main points of the attached meeting notes for the team.",
    "Our customers in the northern region asked for faster delivery times.",
    "The migration to the new database finished on Tuesday without downtime.",
    "Can you draft a polite reply declining the invitation to the conference?",
    "We measured latency at the 50th and 99th percentiles under steady load.",
    "The recipe needs two cups of flour, one egg and a pinch of salt.",
    "Explain the difference between supervised and unsupervised learning.",
    "Version 2.4.1 fixes the crash when the settings file is empty.",
    "The train leaves at 10:45 from platform 3 and arrives at noon.",
]
SENSITIVE = [
    "My card is 4111 1111 1111 1111, please update the subscription.",
    "Send the invoice to jane.doe@example.com before Friday.",
    "Call me on +44 20 7946 0958 after six.",
    "Wire it to IBAN GB82 WEST 1234 5698 7654 32 please.",
]
ANSWER_SENSITIVE = [
    *SENSITIVE,
    "The key in the config was sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z.",
]


def text_of(rng: random.Random, size: int, sensitive: list[str]) -> str:
    """``size`` characters of ordinary sentences; one in ten texts carries one sensitive one."""
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < size:
        parts.append(rng.choice(SENTENCES))
    if rng.random() < 0.1:
        parts.insert(rng.randrange(len(parts) - 1), rng.choice(sensitive))
    return " ".join(parts)[:size]


def chunks(rng: random.Random, text: str) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(3, 7)
        out.append(text[i : i + n])
        i += n
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(policy: Policy, requests: int, seed: int = 15) -> dict[str, Any]:
    rng = random.Random(seed)
    work = [
        (text_of(rng, 1024, SENSITIVE), chunks(rng, text_of(rng, 2048, ANSWER_SENSITIVE)))
        for _ in range(requests)
    ]
    # Warm up: compile the patterns, fill the normalizer's cache.
    for prompt, parts in work[:20]:
        policy.check_input([{"role": "user", "content": prompt}])
        guard = StreamGuard(policy)
        for part in parts:
            guard.feed(part)
        guard.finish()
    inputs, outputs, feeds, first_out = [], [], [], []
    blocked = redacted = 0
    for prompt, parts in work:
        started = time.perf_counter_ns()
        verdict = policy.check_input([{"role": "user", "content": prompt}])
        inputs.append((time.perf_counter_ns() - started) / 1e6)
        blocked += not verdict.allowed
        redacted += verdict.redacted
        guard = StreamGuard(policy)
        spent = 0
        arrived, first = 0, None
        for part in parts:
            t = time.perf_counter_ns()
            out = guard.feed(part)
            dt = time.perf_counter_ns() - t
            spent += dt
            feeds.append(dt / 1e3)
            arrived += len(part)
            if out and first is None:
                first = arrived
        t = time.perf_counter_ns()
        guard.finish()
        spent += time.perf_counter_ns() - t
        outputs.append(spent / 1e6)
        first_out.append(first if first is not None else arrived)
    totals = [a + b for a, b in zip(inputs, outputs, strict=True)]
    return {
        "requests": requests,
        "policy": policy.name,
        "window": policy.window,
        "input_ms": {"p50": percentile(inputs, 0.5), "p99": percentile(inputs, 0.99)},
        "output_stream_ms": {"p50": percentile(outputs, 0.5), "p99": percentile(outputs, 0.99)},
        "total_ms": {"p50": percentile(totals, 0.5), "p99": percentile(totals, 0.99)},
        "feed_us": {"p50": percentile(feeds, 0.5), "p99": percentile(feeds, 0.99)},
        "chars_before_first_output": statistics.median(first_out),
        "prompts_redacted": redacted,
        "prompts_blocked": blocked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 requests")
    parser.add_argument("--requests", type=int, help="requests to time (default 2000)")
    parser.add_argument("--json", dest="json_path", help="also write every figure here")
    args = parser.parse_args(argv)
    requests = args.requests or (300 if args.quick else 2000)
    result = run(default_policy(), requests)
    result["llm_guard"] = LLM_GUARD_NOTE
    rows = [
        ("input check, 1 KB prompt", result["input_ms"]),
        ("output stream, 2 KB in ~5-char chunks", result["output_stream_ms"]),
        ("input + output (added per request)", result["total_ms"]),
    ]
    print(f"guardrails: policy 'default', {requests} requests, stream window {result['window']}")
    print(f"{'case':42} {'p50 ms':>8} {'p99 ms':>8}  target")
    for name, figures in rows:
        print(f"{name:42} {figures['p50']:8.3f} {figures['p99']:8.3f}")
    verdict = "PASS" if result["total_ms"]["p50"] < TARGET_P50_MS else "FAIL"
    print(f"{'':42} {'':8} {'':8}  p50 < {TARGET_P50_MS:g} ms: {verdict}")
    print(
        f"one feed(): p50 {result['feed_us']['p50']:.1f} µs, p99 {result['feed_us']['p99']:.1f} µs; "
        f"first output after {result['chars_before_first_output']:.0f} characters (median)"
    )
    print(f"prompts redacted: {result['prompts_redacted']} of {requests}")
    print(LLM_GUARD_NOTE)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
