"""The RAG judges: context relevance, groundedness and answer relevance, as registered judge
prompts read into a :class:`~loopml.llm.evals.judge.JudgeVerdict`.

One set of judges serves both eval suites (the ``groundedness``, ``context_relevance`` and
``answer_relevance`` assertions) and the online evaluation of sampled gateway traffic
(:mod:`loopml.llm.rag.online`). Each is a prompt registered on first use under
``loopml/<kind>`` (re-registering the same text is a no-op), taking the variables
``question``, ``context`` and ``answer``; a suite or the gateway's config may name another
registered prompt taking (any of) the same variables.

- **context relevance**: how much of the retrieved context bears on the question (the
  retriever's precision, judged);
- **groundedness**: the judge lists the answer's factual claims and marks each supported by
  the context or not; the score is the supported share (an answer that makes no claim —
  "I don't know" — scores 1: it asserts nothing unsupported);
- **answer relevance**: whether the answer addresses the question asked.

A judge answers with one JSON object; an answer that holds none (or no usable score) is a
judge error, never a pass::

    >>> parse_rag_verdict("groundedness",
    ...     '{"claims": [{"claim": "30 days", "supported": true},'
    ...     ' {"claim": "free", "supported": false}], "reason": "one claim unsupported"}')
    JudgeVerdict(passed=True, score=0.5, reason='one claim unsupported')
    >>> parse_rag_verdict("answer_relevance", "Looks relevant to me") is None
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from loopml.exceptions import InvalidInput
from loopml.llm.evals.judge import JudgeVerdict, parse_verdict

#: The RAG evaluators, in the order they are reported.
KINDS = ("context_relevance", "groundedness", "answer_relevance")
#: The variables a RAG judge prompt may take.
VARIABLES = ("question", "context", "answer")

_REPLY = (
    "Reply with a single JSON object and nothing else, with the keys {keys}. Judge only by "
    "the text given; do not use outside knowledge."
)

TEMPLATES: dict[str, list[dict[str, str]]] = {
    "context_relevance": [
        {
            "role": "system",
            "content": (
                "You grade the retrieval step of a question-answering system: how much of the "
                "retrieved context is relevant to the question. "
                + _REPLY.format(
                    keys='"score" (a number from 0 to 1: the share of the context that helps '
                    'answer the question) and "reason" (one short sentence)'
                )
            ),
        },
        {
            "role": "user",
            "content": "Question:\n{{ question }}\n\nRetrieved context:\n{{ context }}",
        },
    ],
    "groundedness": [
        {
            "role": "system",
            "content": (
                "You check whether an answer is grounded in the context it was given. List "
                "every factual claim the answer makes and mark each one supported (stated or "
                "directly implied by the context) or not. "
                + _REPLY.format(
                    keys='"claims" (a list of objects with "claim" and "supported": true or '
                    'false) and "reason" (one short sentence)'
                )
            ),
        },
        {
            "role": "user",
            "content": (
                "Context:\n{{ context }}\n\nQuestion:\n{{ question }}\n\nAnswer:\n{{ answer }}"
            ),
        },
    ],
    "answer_relevance": [
        {
            "role": "system",
            "content": (
                "You grade whether an answer addresses the question that was asked (not "
                "whether it is correct). "
                + _REPLY.format(
                    keys='"score" (a number from 0 to 1) and "reason" (one short sentence)'
                )
            ),
        },
        {"role": "user", "content": "Question:\n{{ question }}\n\nAnswer:\n{{ answer }}"},
    ],
}

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def check_kind(kind: object) -> str:
    """``kind`` when it names a RAG judge, else an error listing them."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown RAG evaluator {kind!r}: use one of {', '.join(KINDS)}.")
    return str(kind)


def prompt_name(kind: str) -> str:
    """``loopml/<kind>``: the name the built-in judge prompt of ``kind`` is registered under."""
    return f"loopml/{check_kind(kind)}"


def rag_judge_ref(kind: str, workspace: Any) -> str:
    """``loopml/<kind>/N``: the built-in judge prompt of ``kind``, registered now if it is
    not yet (registering the same text again is a no-op)."""
    from loopml.llm.prompts import register_prompt

    version = register_prompt(
        prompt_name(kind),
        TEMPLATES[kind],
        params={"temperature": 0},
        commit_message=f"loopml's built-in {kind.replace('_', ' ')} judge",
        workspace=workspace,
    )
    return version.ref


def rag_variables(
    wanted: tuple[str, ...], *, question: str, context: str, answer: str
) -> dict[str, str]:
    """The variables a RAG judge prompt declares, out of the three a judge is given."""
    given = {"question": question, "context": context, "answer": answer}
    return {name: given.get(name, "") for name in wanted}


def _claims(text: str) -> tuple[list[bool], str] | None:
    match = _OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("claims"), list):
        return None
    marks: list[bool] = []
    for claim in data["claims"]:
        supported = claim.get("supported") if isinstance(claim, Mapping) else None
        if isinstance(supported, str) and supported.lower() in ("true", "false"):
            supported = supported.lower() == "true"
        if not isinstance(supported, bool):
            return None
        marks.append(supported)
    return marks, str(data.get("reason", ""))


def parse_rag_verdict(kind: str, text: str, threshold: float = 0.5) -> JudgeVerdict | None:
    """The verdict in a RAG judge's answer (``passed``: score ≥ ``threshold``), or None when
    it holds none that can be read.

    Groundedness reads ``claims`` (the supported share is the score; no claim scores 1) and
    falls back to a ``score``; the other two read ``score`` (or ``pass``) like any judge.

    >>> parse_rag_verdict("groundedness", '{"claims": [], "reason": "no claim"}').score
    1.0
    >>> parse_rag_verdict("context_relevance", '{"score": 0.2, "reason": "off topic"}')
    JudgeVerdict(passed=False, score=0.2, reason='off topic')
    """
    check_kind(kind)
    if kind == "groundedness":
        found = _claims(text)
        if found is not None:
            marks, reason = found
            score = sum(marks) / len(marks) if marks else 1.0
            return JudgeVerdict(score >= threshold, score, reason)
    verdict = parse_verdict(text, threshold)
    if verdict is None:
        return None
    if verdict.score is not None:
        return JudgeVerdict(verdict.score >= threshold, verdict.score, verdict.reason)
    return JudgeVerdict(verdict.passed, 1.0 if verdict.passed else 0.0, verdict.reason)
