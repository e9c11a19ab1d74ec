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

The peer named by the issue, LLM Guard, runs its pattern-based scanners (no model to download)
on the same prompts and answers, in a subprocess of ``benchmarks/.venvs/llmguard/bin/python``
(``bash benchmarks/setup_peer.sh llmguard`` makes it: torch 2.13.0 CPU + llm-guard 0.3.16):
this file with ``--worker llmguard --cases FILE``, the cases written to a temporary JSON file,
``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` set so that nothing fetches weights. It
times ``scan_prompt`` on the prompt and ``scan_output`` on the whole answer, per request, the
same way. The rule sets are not the same (the output lists both):

- loopml, policy ``default``: injection heuristics (block), secrets by published formats and
  entropy (block), PII with checksums (email, phone, card with Luhn, IBAN mod-97, SSN, ...)
  (redact) on the prompt; PII and secrets (redact) on the stream, incrementally, chunk by chunk.
- LLM Guard: input ``BanSubstrings`` (injection phrases), ``Secrets`` (detect-secrets with its
  ~100 plugins; it writes each text to a temporary file), ``Regex`` (its own bundled card and
  e-mail patterns and an OpenAI-key pattern; no phone, no IBAN, no checksums; redact); output
  ``Regex`` (the same) and ``Secrets`` (the input scanner applied to the answer: there is no
  output Secrets scanner). LLM Guard has no streaming API: the answer is scanned once, whole.
  Its model-based scanners are skipped and named: ``PromptInjection``, ``Anonymize`` and
  ``Sensitive`` (DeBERTa/BERT from Hugging Face, not on disk), ``TokenLimit`` (tiktoken fetches
  its encoding), ``Sentiment`` (NLTK's lexicon is downloaded).

No ML classifier is installed for loopml either, so the figures are for the heuristics alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loopml is imported where it runs: the LLM Guard worker's venv lacks it
    from loopml.llm.guardrails.policy import Policy

HERE = Path(__file__).resolve().parent
LLMGUARD_PYTHON = HERE / ".venvs" / "llmguard" / "bin" / "python"
TARGET_P50_MS = 5.0
LLM_GUARD_MISSING = (
    "LLM Guard: not measured, benchmarks/.venvs/llmguard is missing; "
    "`bash benchmarks/setup_peer.sh llmguard` makes it (torch==2.13.0 CPU + llm-guard==0.3.16: "
    "llm-guard 0.3.16 requires torch>=2.4.0 and transformers==4.51.3)."
)
LOOPML_CHECKS = (
    "loopml (policy 'default'): input: injection heuristics (block), secrets by published "
    "formats + entropy (block), PII with checksums: email, phone, card+Luhn, IBAN mod-97, SSN, "
    "NINO, DNI/NIE, BSN, IP (redact); output: PII + secrets (redact), incrementally per chunk"
)
LLMGUARD_CHECKS = (
    "LLM Guard (no-model scanners): input: BanSubstrings (injection phrases), Secrets "
    "(detect-secrets, ~100 plugins, via a temp file), Regex (its bundled CREDIT_CARD_RE and "
    "EMAIL_ADDRESS_RE + an OpenAI-key pattern; no phone, no IBAN, no checksums; redact); "
    "output: Regex (same) + Secrets (the input scanner on the answer; there is no output "
    "one), on the whole answer once it is complete (no streaming API)"
)
# What the worker tries to build, offline, to show they need a model (named in the output).
MODEL_SCANNERS = ("PromptInjection", "Anonymize", "Sensitive")
# Not even tried: building them reaches for the network.
NETWORK_SCANNERS = {
    "TokenLimit": "tiktoken downloads its cl100k_base encoding",
    "Sentiment": "NLTK downloads its vader_lexicon",
}
INJECTION_PHRASES = [
    "ignore all previous instructions",
    "ignore previous instructions",
    "disregard the rules above",
    "disregard all prior instructions",
    "reveal your system prompt",
    "repeat the text above",
    "developer mode",
    "do anything now",
    "you are no longer bound by",
    "<|im_start|>",
    "[INST]",
    "<<SYS>>",
]
OPENAI_KEY_PATTERN = r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"

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


def make_work(requests: int, seed: int = 15) -> list[tuple[str, list[str]]]:
    """``requests`` (prompt, answer chunks) pairs; both sides get exactly these."""
    rng = random.Random(seed)
    return [
        (text_of(rng, 1024, SENSITIVE), chunks(rng, text_of(rng, 2048, ANSWER_SENSITIVE)))
        for _ in range(requests)
    ]


def figures(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}


def run(policy: Policy, work: list[tuple[str, list[str]]]) -> dict[str, Any]:
    from loopml.llm.guardrails.stream import StreamGuard

    requests = len(work)
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
        "input_ms": figures(inputs),
        "output_stream_ms": figures(outputs),
        "total_ms": figures(totals),
        "feed_us": figures(feeds),
        "chars_before_first_output": statistics.median(first_out),
        "prompts_redacted": redacted,
        "prompts_blocked": blocked,
    }


def llmguard_worker(cases_path: str) -> dict[str, Any]:
    """Run in benchmarks/.venvs/llmguard: LLM Guard's no-model scanners on the cases."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from importlib.metadata import version

    from llm_guard import input_scanners, output_scanners, scan_output, scan_prompt
    from llm_guard.input_scanners.anonymize_helpers.regex_patterns import DEFAULT_REGEX_PATTERNS
    from llm_guard.output_scanners.base import Scanner as OutputScanner
    from llm_guard.util import configure_logger
    from llm_guard.vault import Vault

    # Its scanners log every finding (to stdout by default): keep them to errors, on stderr.
    configure_logger("ERROR", stream=sys.stderr)

    with open(cases_path, encoding="utf-8") as f:
        work = [(prompt, "".join(parts)) for prompt, parts in json.load(f)]

    bundled = {p["name"]: p.get("expressions", []) for p in DEFAULT_REGEX_PATTERNS}
    patterns = [*bundled["CREDIT_CARD_RE"], *bundled["EMAIL_ADDRESS_RE"], OPENAI_KEY_PATTERN]

    class OutputSecrets(OutputScanner):
        """The input Secrets scanner on the answer (LLM Guard has no output Secrets)."""

        def __init__(self) -> None:
            self._secrets = input_scanners.Secrets(redact_mode="all")

        def scan(self, prompt: str, output: str) -> tuple[str, bool, float]:
            return self._secrets.scan(output)

    inputs = [
        input_scanners.BanSubstrings(INJECTION_PHRASES, match_type="str", redact=False),
        input_scanners.Secrets(redact_mode="all"),
        input_scanners.Regex(patterns, is_blocked=True, match_type="all", redact=True),
    ]
    outputs = [
        output_scanners.Regex(patterns, is_blocked=True, match_type="all", redact=True),
        OutputSecrets(),
    ]

    from llm_guard.input_scanners.anonymize_helpers.ner_mapping import (
        DEBERTA_AI4PRIVACY_v2_CONF,
    )
    from llm_guard.input_scanners.prompt_injection import V2_MODEL

    pii_model = DEBERTA_AI4PRIVACY_v2_CONF["DEFAULT_MODEL"].path
    builders = {  # name -> (build it, the model it loads by default)
        "PromptInjection": (lambda: input_scanners.PromptInjection(), V2_MODEL.path),
        "Anonymize": (lambda: input_scanners.Anonymize(Vault()), pii_model),
        "Sensitive": (lambda: output_scanners.Sensitive(), pii_model),
    }
    skipped: dict[str, str] = {}
    for name in MODEL_SCANNERS:
        build, model = builders[name]
        try:
            build()
            skipped[name] = f"built ({model} was on disk) but not measured"
        except Exception as exc:  # noqa: BLE001 - the reason is what we report
            skipped[name] = (
                f"needs the model {model} (Hugging Face; not on disk, offline: "
                f"{type(exc).__name__} on loading it)"
            )
    for name, why in NETWORK_SCANNERS.items():
        skipped[name] = f"not tried: {why}"

    def one(prompt: str, answer: str) -> tuple[int, int, bool, bool]:
        started = time.perf_counter_ns()
        clean, valid_in, _ = scan_prompt(inputs, prompt)
        middle = time.perf_counter_ns()
        _, valid_out, _ = scan_output(outputs, clean, answer)
        done = time.perf_counter_ns()
        return middle - started, done - middle, all(valid_in.values()), all(valid_out.values())

    for prompt, answer in work[:20]:  # warm up: compile the patterns, load the plugins
        one(prompt, answer)
    ins, outs, totals = [], [], []
    flagged_in = flagged_out = 0
    for prompt, answer in work:
        t_in, t_out, ok_in, ok_out = one(prompt, answer)
        ins.append(t_in / 1e6)
        outs.append(t_out / 1e6)
        totals.append((t_in + t_out) / 1e6)
        flagged_in += not ok_in
        flagged_out += not ok_out
    return {
        "version": version("llm-guard"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "requests": len(work),
        "input_ms": figures(ins),
        "output_ms": figures(outs),
        "total_ms": figures(totals),
        "prompts_flagged": flagged_in,
        "answers_flagged": flagged_out,
        "input_scanners": [type(x).__name__ for x in inputs],
        "output_scanners": ["Regex", "Secrets (input scanner on the answer)"],
        "skipped": skipped,
    }


def run_llmguard(work: list[tuple[str, list[str]]], timeout: float) -> dict[str, Any] | str:
    """LLM Guard's figures from its venv, or why there are none."""
    with tempfile.TemporaryDirectory(prefix="guardrails-") as tmp:
        cases = Path(tmp) / "cases.json"
        cases.write_text(json.dumps(work), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        cmd = [str(LLMGUARD_PYTHON), __file__, "--worker", "llmguard", "--cases", str(cases)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            return f"LLM Guard worker: timed out after {timeout:g} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return f"LLM Guard worker failed (exit {proc.returncode}):\n{tail}"
    return json.loads(lines[-1])


def ratio(peer: float, ours: float) -> str:
    return f"{peer / ours:.1f}x" if ours > 0 else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 requests")
    parser.add_argument("--requests", type=int, help="requests to time (default 2000)")
    parser.add_argument("--json", dest="json_path", help="also write every figure here")
    parser.add_argument("--timeout", type=float, default=1800, help="LLM Guard worker, seconds")
    parser.add_argument("--worker", choices=["llmguard"], help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(llmguard_worker(args.cases)))
        return 0

    from loopml.llm.guardrails.policy import default_policy

    requests = args.requests or (300 if args.quick else 2000)
    work = make_work(requests)
    result = run(default_policy(), work)
    peer: dict[str, Any] | str
    if LLMGUARD_PYTHON.exists():
        print(f"guardrails: running LLM Guard's worker ({LLMGUARD_PYTHON}) ...", flush=True)
        peer = run_llmguard(work, args.timeout)
    else:
        peer = LLM_GUARD_MISSING
    result["llm_guard"] = peer
    measured = isinstance(peer, dict)
    rows = [
        ("input check, 1 KB prompt", result["input_ms"], "input_ms"),
        ("output, 2 KB answer (~5-char chunks)", result["output_stream_ms"], "output_ms"),
        ("input + output (added per request)", result["total_ms"], "total_ms"),
    ]
    peer_name = f"LLM Guard {peer['version']}" if isinstance(peer, dict) else "LLM Guard"
    print(f"guardrails: policy 'default', {requests} requests, stream window {result['window']}")
    print(
        f"{'case':38} {'loopml p50':>10} {'p99':>8}  {peer_name + ' p50':>20} {'p99':>8}"
        f"  {'ratio p50':>9} {'p99':>7}  target (loopml)"
    )
    for name, ours, key in rows:
        line = f"{name:38} {ours['p50']:10.3f} {ours['p99']:8.3f}"
        if isinstance(peer, dict):
            theirs = peer[key]
            line += (
                f"  {theirs['p50']:20.3f} {theirs['p99']:8.3f}"
                f"  {ratio(theirs['p50'], ours['p50']):>9} {ratio(theirs['p99'], ours['p99']):>7}"
            )
        else:
            line += f"  {'n/a':>20} {'n/a':>8}  {'n/a':>9} {'n/a':>7}"
        print(line)
    verdict = "PASS" if result["total_ms"]["p50"] < TARGET_P50_MS else "FAIL"
    print(
        f"{'':38} {'':10} {'':8}  {'':20} {'':8}  {'':9} {'':7}  p50 < {TARGET_P50_MS:g} ms: {verdict}"
    )
    print("(ms per request; ratio = LLM Guard / loopml, above 1x: loopml is faster)")
    print(
        f"loopml one feed(): p50 {result['feed_us']['p50']:.1f} µs, p99 "
        f"{result['feed_us']['p99']:.1f} µs; first output after "
        f"{result['chars_before_first_output']:.0f} characters (median); "
        f"prompts redacted: {result['prompts_redacted']} of {requests}"
    )
    if isinstance(peer, dict):
        print(
            f"LLM Guard {peer['version']} (torch {peer['torch']}, transformers "
            f"{peer['transformers']}): prompts flagged {peer['prompts_flagged']} of {requests}, "
            f"answers flagged {peer['answers_flagged']} of {requests}"
        )
    print("what each side checks (not the same rules):")
    print(f"- {LOOPML_CHECKS}")
    print(f"- {LLMGUARD_CHECKS}")
    if isinstance(peer, dict):
        for name, why in peer["skipped"].items():
            print(f"- LLM Guard {name}: skipped, {why}")
    else:
        print(peer)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0 if measured or not LLMGUARD_PYTHON.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
