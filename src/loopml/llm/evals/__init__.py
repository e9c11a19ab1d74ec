"""Eval suites for prompts: cases with assertions (exact, contains, regex, JSON, JSON
schema, numeric closeness, similarity, latency and cost ceilings, LLM-as-judge, pairwise
against the production version, and the RAG judges: groundedness, context relevance and
answer relevance), run concurrently through the gateway and recorded as one
tracked run; comparison against another version; judge calibration against human labels
(accuracy, Cohen's kappa); and :class:`EvalGate`, the promotion gate of protected labels.

    from loopml.llm.evals import load_suite, run_suite

    result = run_suite(load_suite("evals/support.yaml"), "support/answer/4", model="cheap")
    print(result.pass_rate, result.assertion_pass_rates(), result.run_id)

On the command line: ``loopml evals run SUITE --prompt NAME/VERSION`` (see docs/evals.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.llm.evals.calibration import Agreement, agreement, calibrate
    from loopml.llm.evals.gate import EvalGate, EvalGatePolicy, gate_for
    from loopml.llm.evals.judge import JudgeUnavailable
    from loopml.llm.evals.runner import (
        CallCache,
        CaseResult,
        Comparison,
        SuiteResult,
        arun_suite,
        compare,
        run_suite,
    )
    from loopml.llm.evals.suites import Assertion, Case, Suite, load_suite

_LAZY = {
    "Agreement": "loopml.llm.evals.calibration",
    "agreement": "loopml.llm.evals.calibration",
    "calibrate": "loopml.llm.evals.calibration",
    "Assertion": "loopml.llm.evals.suites",
    "CallCache": "loopml.llm.evals.runner",
    "Case": "loopml.llm.evals.suites",
    "CaseResult": "loopml.llm.evals.runner",
    "Comparison": "loopml.llm.evals.runner",
    "EvalGate": "loopml.llm.evals.gate",
    "EvalGatePolicy": "loopml.llm.evals.gate",
    "JudgeUnavailable": "loopml.llm.evals.judge",
    "Suite": "loopml.llm.evals.suites",
    "SuiteResult": "loopml.llm.evals.runner",
    "arun_suite": "loopml.llm.evals.runner",
    "compare": "loopml.llm.evals.runner",
    "gate_for": "loopml.llm.evals.gate",
    "load_suite": "loopml.llm.evals.suites",
    "run_suite": "loopml.llm.evals.runner",
}

__all__ = [
    "Agreement",
    "Assertion",
    "CallCache",
    "Case",
    "CaseResult",
    "Comparison",
    "EvalGate",
    "EvalGatePolicy",
    "JudgeUnavailable",
    "Suite",
    "SuiteResult",
    "agreement",
    "arun_suite",
    "calibrate",
    "compare",
    "gate_for",
    "load_suite",
    "run_suite",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
