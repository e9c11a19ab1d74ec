"""LLM-as-judge: a registered judge prompt, called through the gateway (so its cost is
tracked), whose answer is read as a verdict.

The built-in judge prompt, :data:`JUDGE_PROMPT` (``loopml/judge``), is registered on first
use; a ``judge`` assertion may name another registered prompt (``prompt: my/judge@production``)
taking any of the variables ``rubric``, ``input``, ``output`` and ``expected``. A judge must
answer with a JSON object holding ``pass`` (true/false) and/or ``score`` (0 to 1), and
optionally ``reason``; an answer that holds no such object is a judge error: the case is
marked ``judge_error``, never passed.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopml.exceptions import LoopmlError

JUDGE_PROMPT = "loopml/judge"
JUDGE_TEMPLATE = [
    {
        "role": "system",
        "content": (
            "You grade the answer of an AI assistant against a rubric. Be strict and "
            "impartial. Reply with a single JSON object and nothing else, with the keys "
            '"pass" (true or false: does the answer satisfy the rubric), "score" (a number '
            'from 0 to 1) and "reason" (one short sentence).'
        ),
    },
    {
        "role": "user",
        "content": (
            "Rubric:\n{{ rubric }}\n\nThe request the assistant answered:\n{{ input }}\n\n"
            "A reference answer (may be empty):\n{{ expected }}\n\n"
            "The assistant's answer:\n{{ output }}"
        ),
    },
]
JUDGE_VARIABLES = ("rubric", "input", "output", "expected")


class JudgeUnavailable(LoopmlError):
    """A judge's model could not be reached: the suite is not scored (it fails, it never
    passes by default)."""


@dataclass(frozen=True)
class JudgeVerdict:
    passed: bool
    score: float | None
    reason: str


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_verdict(text: str, threshold: float = 0.5) -> JudgeVerdict | None:
    """The verdict in a judge's answer, or None when it holds none that can be read.

    >>> parse_verdict('Sure. {"pass": true, "score": 0.9, "reason": "polite"}')
    JudgeVerdict(passed=True, score=0.9, reason='polite')
    >>> parse_verdict("It looks fine to me") is None
    True
    """
    data: Any = None
    candidates = [text.strip()]
    match = _OBJECT.search(text)
    if match:
        candidates.append(match.group(0))
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, Mapping):
            break
        data = None
    if not isinstance(data, Mapping):
        return None
    passed, score = data.get("pass"), data.get("score")
    if isinstance(passed, str) and passed.lower() in ("true", "false", "pass", "fail"):
        passed = passed.lower() in ("true", "pass")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        score = None
    if not isinstance(passed, bool):
        if score is None:
            return None
        passed = score >= threshold
    return JudgeVerdict(
        passed, None if score is None else float(score), str(data.get("reason", ""))
    )


def judge_prompt_ref(workspace: Any) -> str:
    """``loopml/judge/N``: the built-in judge prompt, registered now if it is not yet."""
    from loopml.llm.prompts import register_prompt

    version = register_prompt(
        JUDGE_PROMPT,
        JUDGE_TEMPLATE,
        params={"temperature": 0},
        commit_message="loopml's built-in LLM-as-judge prompt",
        workspace=workspace,
    )
    return version.ref


def judge_variables(
    wanted: tuple[str, ...], *, rubric: str, input: str, output: str, expected: Any
) -> dict[str, str]:
    """The variables a judge prompt declares, out of the four a judge is given."""
    given = {
        "rubric": rubric,
        "input": input,
        "output": output,
        "expected": "" if expected is None else str(expected),
    }
    return {name: given.get(name, "") for name in wanted}


# -- pairwise: the candidate's answer against the current production version's ---------------

PAIRWISE_PROMPT = "loopml/pairwise"
PAIRWISE_TEMPLATE = [
    {
        "role": "system",
        "content": (
            "You compare two answers of AI assistants to the same request against a rubric. "
            "Be impartial: the order of the answers means nothing, nor does their length. "
            "Reply with a single JSON object and nothing else, with the keys "
            '"winner" ("A", "B" or "tie") and "reason" (one short sentence).'
        ),
    },
    {
        "role": "user",
        "content": (
            "Rubric:\n{{ rubric }}\n\nThe request:\n{{ input }}\n\n"
            "A reference answer (may be empty):\n{{ expected }}\n\n"
            "Answer A:\n{{ answer_a }}\n\nAnswer B:\n{{ answer_b }}"
        ),
    },
]


def pairwise_prompt_ref(workspace: Any) -> str:
    """``loopml/pairwise/N``: the built-in pairwise judge prompt, registered on first use."""
    from loopml.llm.prompts import register_prompt

    version = register_prompt(
        PAIRWISE_PROMPT,
        PAIRWISE_TEMPLATE,
        params={"temperature": 0},
        commit_message="loopml's built-in pairwise judge prompt",
        workspace=workspace,
    )
    return version.ref


def candidate_first(case_id: str, repeat: int) -> bool:
    """Whether the candidate's answer is shown as A (else B): fixed per case and repetition,
    half the cases each way, so a judge's liking for one position evens out.

    >>> [candidate_first(c, 0) for c in ("a", "b", "c", "d")]
    [False, True, False, True]
    """
    return zlib.crc32(f"{case_id}\x00{repeat}".encode()) % 2 == 0


def parse_winner(text: str) -> tuple[str, str] | None:
    """``(winner, reason)`` from a pairwise judge's answer — winner ``A``, ``B`` or ``tie``
    — or None when it holds no readable one.

    >>> parse_winner('{"winner": "b", "reason": "shorter"}')
    ('B', 'shorter')
    >>> parse_winner("B is better") is None
    True
    """
    match = _OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        return None
    winner = str(data.get("winner", "")).strip().upper()
    if winner not in ("A", "B", "TIE"):
        return None
    return ("tie" if winner == "TIE" else winner), str(data.get("reason", ""))
