"""Run a suite against a prompt version: cases concurrently (at most ``concurrency`` calls in
flight), ``repeat`` times each, identical calls made once per run, every case recorded in
one tracked run.

    result = run_suite(load_suite("evals/support.yaml"), "support/answer/4", model="cheap")
    result.pass_rate, result.run_id, result.threshold_failures()

The run's params name the suite, the prompt version and the model; its metrics are the pass
rate, each assertion's pass rate, cost and latency; its artifact ``evals/cases.json`` holds
every case's input, output and scores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.exceptions import InvalidInput
from loopml.llm.evals.assertions import (
    ERROR,
    FAILED,
    JUDGE_ERROR,
    PASSED,
    Answer,
    Score,
    case_status,
    check,
)
from loopml.llm.evals.judge import (
    JudgeUnavailable,
    candidate_first,
    judge_prompt_ref,
    judge_variables,
    pairwise_prompt_ref,
    parse_verdict,
    parse_winner,
)
from loopml.llm.evals.suites import RAG_TYPES, Assertion, Case, Suite
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from loopml.llm.gateway import Gateway
    from loopml.llm.prompts import PromptVersion
    from loopml.workspace import Workspace

T = TypeVar("T")
#: The experiment eval runs are recorded in unless the suite or the caller names another.
EXPERIMENT = "evals"
ARTIFACT = "evals/cases.json"


@dataclass(frozen=True)
class Reply:
    """One call's outcome (kept in the call cache)."""

    text: str | None
    latency_ms: float
    cost_usd: float
    error: str | None = None
    unavailable: bool = False  # the provider could not be reached (not the request's fault)


class CallCache:
    """Identical calls of a run, made once: the first caller's call is shared with the
    others, also while it is in flight. Reuse one across runs to replay them (a warm cache).
    Keyed by the prompt version, variables, model, parameters and the repetition."""

    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Future[Reply]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(body: Mapping[str, Any], repeat: int) -> str:
        raw = json.dumps([body, repeat], sort_keys=True, default=str)
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()

    async def get(self, key: str, call: Callable[[], Awaitable[Reply]]) -> tuple[Reply, bool]:
        """``(reply, cached)``: the reply kept under ``key``, else ``call()``'s (a failed
        call is not kept, so a later run tries again)."""
        found = self._calls.get(key)
        if found is not None and (found.done() or found.get_loop() is asyncio.get_running_loop()):
            self.hits += 1
            return (found.result() if found.done() else await asyncio.shield(found)), True
        self.misses += 1
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            reply = await call()
        except BaseException as exc:
            self._calls.pop(key, None)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        if reply.error is not None:
            self._calls.pop(key, None)
        future.set_result(reply)
        return reply, False


@dataclass
class CaseResult:
    """One case in one repetition: what was sent and said, and how it scored."""

    case_id: str
    repeat: int
    variables: Mapping[str, Any]
    expected: Any
    status: str
    output: str | None = None
    scores: list[Score] = field(default_factory=list)
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    judge_cost_usd: float = 0.0
    cached: bool = False
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "repeat": self.repeat,
            "variables": dict(self.variables),
            "expected": self.expected,
            "status": self.status,
            "output": self.output,
            "scores": [s.to_dict() for s in self.scores],
            "latency_ms": round(self.latency_ms, 3),
            "cost_usd": self.cost_usd,
            "judge_cost_usd": self.judge_cost_usd,
            "cached": self.cached,
            "error": self.error,
        }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


@dataclass
class Comparison:
    """Case by case against a baseline run of the same suite: a regression passed there and
    not here, an improvement the other way round."""

    baseline: str
    baseline_pass_rate: float
    pass_rate: float
    regressions: list[tuple[str, int, str, str]]
    improvements: list[tuple[str, int, str, str]]
    baseline_run_id: str | None = None

    @property
    def delta(self) -> float:
        return self.pass_rate - self.baseline_pass_rate

    def to_dict(self) -> dict[str, Any]:
        def rows(items: list[tuple[str, int, str, str]]) -> list[dict[str, Any]]:
            return [
                {"case": c, "repeat": r, "baseline": before, "candidate": after}
                for c, r, before, after in items
            ]

        return {
            "baseline": self.baseline,
            "baseline_run_id": self.baseline_run_id,
            "baseline_pass_rate": self.baseline_pass_rate,
            "pass_rate": self.pass_rate,
            "delta": self.delta,
            "regressions": rows(self.regressions),
            "improvements": rows(self.improvements),
        }


@dataclass
class SuiteResult:
    """A suite's run: every case, the figures over them, and the tracked run's id."""

    suite: Suite
    prompt: str
    model: str | None
    cases: list[CaseResult]
    wall_s: float = 0.0
    upstream_calls: int = 0
    cached_calls: int = 0
    max_in_flight: int = 0
    repeat: int = 1
    concurrency: int = 16
    run_id: str | None = None
    comparison: Comparison | None = None

    def _count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def pass_rate(self) -> float:
        return self._count(PASSED) / len(self.cases) if self.cases else 0.0

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.cases)

    @property
    def judge_cost_usd(self) -> float:
        return sum(c.judge_cost_usd for c in self.cases)

    @property
    def cost_per_case(self) -> float:
        return self.cost_usd / len(self.cases) if self.cases else 0.0

    def latency_ms(self, q: float) -> float:
        return _percentile([c.latency_ms for c in self.cases if c.status != ERROR], q)

    def assertion_pass_rates(self) -> dict[str, float]:
        """Each assertion name → the share of the cases that ran it where it passed."""
        totals: dict[str, list[int]] = {}
        for case in self.cases:
            for score in case.scores:
                seen = totals.setdefault(score.name, [0, 0])
                seen[0] += score.passed is True
                seen[1] += 1
        return {name: ok / n for name, (ok, n) in totals.items() if n}

    def metrics(self) -> dict[str, float]:
        figures = {
            "pass_rate": self.pass_rate,
            "cases": float(len(self.cases)),
            "passed": float(self._count(PASSED)),
            "failed": float(self._count(FAILED)),
            "errors": float(self._count(ERROR)),
            "judge_errors": float(self._count(JUDGE_ERROR)),
            "cost_usd": self.cost_usd,
            "cost_per_case": self.cost_per_case,
            "judge_cost_usd": self.judge_cost_usd,
            "latency_p50_ms": self.latency_ms(0.5),
            "latency_p95_ms": self.latency_ms(0.95),
            "upstream_calls": float(self.upstream_calls),
            "cached_calls": float(self.cached_calls),
            "wall_s": self.wall_s,
        }
        for name, rate in self.assertion_pass_rates().items():
            figures[f"assert/{name}/pass_rate"] = rate
        if self.comparison is not None:
            figures["baseline_pass_rate"] = self.comparison.baseline_pass_rate
            figures["regressions"] = float(len(self.comparison.regressions))
            figures["improvements"] = float(len(self.comparison.improvements))
        return figures

    def threshold_failures(self, thresholds: Mapping[str, float] | None = None) -> list[str]:
        """What breaks the suite's ``thresholds`` (or those given), one line each."""
        limits = self.suite.thresholds if thresholds is None else thresholds
        failures = []
        if "min_pass_rate" in limits and self.pass_rate < limits["min_pass_rate"]:
            failures.append(
                f"pass rate {self.pass_rate:.1%} is below min_pass_rate "
                f"{limits['min_pass_rate']:.1%}"
            )
        if "max_cost_per_case" in limits and self.cost_per_case > limits["max_cost_per_case"]:
            failures.append(
                f"cost per case ${self.cost_per_case:.6f} is above max_cost_per_case "
                f"${limits['max_cost_per_case']:g}"
            )
        p95 = self.latency_ms(0.95)
        if "max_latency_ms" in limits and p95 > limits["max_latency_ms"]:
            failures.append(
                f"p95 latency {p95:.0f} ms is above max_latency_ms {limits['max_latency_ms']:g}"
            )
        judge_errors = self._count(JUDGE_ERROR)
        if "max_judge_errors" in limits and judge_errors > limits["max_judge_errors"]:
            failures.append(
                f"{judge_errors} judge errors, more than max_judge_errors "
                f"{limits['max_judge_errors']:g}"
            )
        return failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "suite_path": self.suite.path,
            "prompt": self.prompt,
            "model": self.model,
            "run_id": self.run_id,
            "repeat": self.repeat,
            "metrics": self.metrics(),
            "assertions": self.assertion_pass_rates(),
            "threshold_failures": self.threshold_failures(),
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "cases": [c.to_dict() for c in self.cases],
        }


def compare(result: SuiteResult, baseline: SuiteResult) -> Comparison:
    """``result`` case by case against ``baseline`` (the same suite on another version)."""
    before = {(c.case_id, c.repeat): c.status for c in baseline.cases}
    regressions, improvements = [], []
    for case in result.cases:
        was = before.get((case.case_id, case.repeat))
        if was is None:
            continue
        if was == PASSED and case.status != PASSED:
            regressions.append((case.case_id, case.repeat, was, case.status))
        elif was != PASSED and case.status == PASSED:
            improvements.append((case.case_id, case.repeat, was, case.status))
    return Comparison(
        baseline=baseline.prompt,
        baseline_pass_rate=baseline.pass_rate,
        pass_rate=result.pass_rate,
        regressions=regressions,
        improvements=improvements,
        baseline_run_id=baseline.run_id,
    )


def _as_text(rendered: str | list[dict[str, Any]]) -> str:
    if isinstance(rendered, str):
        return rendered
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in rendered)


def _reply_text(body: Mapping[str, Any]) -> str:
    try:
        content = body["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def _context_text(value: Any) -> str:
    """The retrieved text a case holds: text as is, a list of chunks (text, or mappings
    with ``text``/``content``) joined by blank lines, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for chunk in value:
            if isinstance(chunk, Mapping):
                chunk = chunk.get("text", chunk.get("content", chunk))
            parts.append(chunk if isinstance(chunk, str) else json.dumps(chunk, default=str))
        return "\n\n".join(parts)
    return json.dumps(value, default=str)


def _question(case: Case, options: Mapping[str, Any], messages: str | list[dict[str, Any]]) -> str:
    """The question a RAG judge is given: the case variable ``question:`` names (default
    ``question``), else the rendered prompt's last user message."""
    name = str(options.get("question", "question"))
    if name in case.variables:
        return _context_text(case.variables[name])
    if isinstance(messages, str):
        return messages
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            return content if isinstance(content, str) else json.dumps(content, default=str)
    return _as_text(messages)


def _claim_count(text: str) -> tuple[int, int] | None:
    """``(supported, total)`` when a groundedness judge's answer lists claims (the verdict
    itself is read by :func:`~loopml.llm.rag.judges.parse_rag_verdict`)."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        return None
    claims = data.get("claims") if isinstance(data, Mapping) else None
    if not isinstance(claims, list) or not claims:
        return None
    marks = [str(c.get("supported")).lower() if isinstance(c, Mapping) else "" for c in claims]
    return marks.count("true"), len(claims)


class _Runner:
    """One run's state: the gateway, the call cache, the limit and the in-flight count."""

    def __init__(
        self,
        ws: Workspace,
        gateway: Gateway,
        suite: Suite,
        version: PromptVersion,
        model: str | None,
        cache: CallCache,
        concurrency: int,
    ) -> None:
        self.ws, self.gateway, self.suite, self.version = ws, gateway, suite, version
        self.model, self.cache = model, cache
        self.limit = asyncio.Semaphore(concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.upstream = 0
        self._judge_refs: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._baselines: dict[str, PromptVersion | None] = {}

    async def _send(self, body: dict[str, Any]) -> Reply:
        from loopml.llm.errors import BadRequest, GatewayError

        async with self.limit:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.upstream += 1
            started = time.perf_counter()
            try:
                response = await self.gateway.achat(body)
            except BadRequest as exc:
                return Reply(None, 0.0, 0.0, f"{type(exc).__name__}: {exc}")
            except GatewayError as exc:
                return Reply(None, 0.0, 0.0, f"{type(exc).__name__}: {exc}", unavailable=True)
            finally:
                self.in_flight -= 1
            latency = (time.perf_counter() - started) * 1000
            return Reply(_reply_text(response.body), latency, float(response.cost_usd or 0.0))

    async def call(self, body: dict[str, Any], repeat: int) -> tuple[Reply, bool]:
        return await self.cache.get(CallCache.key(body, repeat), lambda: self._send(body))

    def prepare(self) -> None:
        """Resolve (and register, for the built-in one) every judge prompt, and load what
        the checks need (the embedder, the schema validators), before the cases run: doing
        it inside the loop would stall the calls in flight and inflate their latency."""
        from loopml.llm.evals.assertions import similarity, validator

        for case in self.suite.cases:
            for assertion in case.assertions:
                if assertion.type == "judge":
                    self._judge_ref(assertion.options.get("prompt"))
                elif assertion.type == "pairwise":
                    self._judge_ref(assertion.options.get("prompt"), pairwise=True)
                    self._baseline(assertion.options.get("against", "production"))
                elif assertion.type in RAG_TYPES:
                    self._judge_ref(assertion.options.get("prompt"), rag=assertion.type)
                elif assertion.type == "similar":
                    similarity("", "")
                elif assertion.type == "json_schema":
                    validator(assertion.options["schema"])

    def _judge_ref(
        self, prompt: str | None, pairwise: bool = False, rag: str | None = None
    ) -> tuple[str, tuple[str, ...]]:
        """The judge prompt's reference and variables: ``prompt``, else the built-in one of
        the check (registered on first use)."""
        from loopml.llm.prompts import get_prompt
        from loopml.llm.rag.judges import rag_judge_ref

        kind = rag or ("pairwise" if pairwise else "judge")
        key = f"{kind}:{prompt or ''}"
        if key not in self._judge_refs:
            if prompt is not None:
                ref = prompt
            elif rag is not None:
                ref = rag_judge_ref(rag, self.ws)
            else:
                ref = pairwise_prompt_ref(self.ws) if pairwise else judge_prompt_ref(self.ws)
            version = get_prompt(ref, workspace=self.ws)
            self._judge_refs[key] = (version.ref, version.variables)
        return self._judge_refs[key]

    def _baseline(self, against: str) -> PromptVersion | None:
        """The version a pairwise check compares with: ``against`` is a label of the
        candidate's prompt (``production``) or a whole reference; None when the label points
        nowhere yet."""
        from loopml.llm.prompts import PromptNotFound, get_prompt

        if against not in self._baselines:
            if against.isdigit():
                ref = f"{self.version.name}/{against}"
            elif "@" in against or "/" in against:
                ref = against
            else:
                ref = f"{self.version.name}@{against}"
            try:
                self._baselines[against] = get_prompt(ref, workspace=self.ws)
            except PromptNotFound:
                if "@" not in ref:
                    raise
                self._baselines[against] = None
        return self._baselines[against]

    def _judge_model(self, options: Mapping[str, Any]) -> str | None:
        return options.get("model") or self.suite.judge_model or self.model or self.version.model

    async def _ask(
        self, ref: str, variables: dict[str, str], model: str | None, repeat: int
    ) -> tuple[Reply, float]:
        """A judge's call (cached like any other): its reply and what it cost this case.
        A judge that can't be reached raises :class:`JudgeUnavailable`."""
        body: dict[str, Any] = {"prompt": ref, "variables": variables}
        if model:
            body["model"] = model
        reply, cached = await self.call(body, repeat)
        if reply.unavailable:
            raise JudgeUnavailable(
                f"The judge ({ref}, model {model or 'of the prompt'}) could not be reached: "
                f"{reply.error}. The suite {self.suite.name!r} is not scored; check the "
                "judge model's provider (`loopml gateway status`) and run it again."
            )
        return reply, 0.0 if cached else reply.cost_usd

    async def judge(
        self, assertion: Assertion, case: Case, rendered: str, output: str, repeat: int
    ) -> Score:
        options = assertion.options
        ref, wanted = self._judge_ref(options.get("prompt"))
        variables = judge_variables(
            wanted,
            rubric=str(options["rubric"]),
            input=rendered,
            output=output,
            expected=case.expected,
        )
        reply, cost = await self._ask(ref, variables, self._judge_model(options), repeat)
        if reply.error is not None:
            return Score(
                assertion.name, "judge", None, None, f"the judge's call failed: {reply.error}", cost
            )
        verdict = parse_verdict(reply.text or "", float(options.get("threshold", 0.5)))
        if verdict is None:
            shown = (reply.text or "")[:80]
            return Score(
                assertion.name,
                "judge",
                None,
                None,
                f"no verdict in the judge's answer {shown!r}",
                cost,
            )
        return Score(assertion.name, "judge", verdict.passed, verdict.score, verdict.reason, cost)

    async def pairwise(
        self,
        assertion: Assertion,
        case: Case,
        rendered: str,
        output: str,
        body: dict[str, Any],
        repeat: int,
    ) -> Score:
        """The candidate's answer against the baseline version's to the same case, judged
        side by side; passes on a win or a tie."""
        options = assertion.options
        baseline = self._baseline(options.get("against", "production"))
        name = assertion.name
        if baseline is None:
            return Score(name, "pairwise", True, None, "no baseline version to compare with")
        if baseline.ref == self.version.ref:
            return Score(name, "pairwise", True, 0.5, f"the candidate is {baseline.ref}")
        theirs, cached = await self.call({**body, "prompt": baseline.ref}, repeat)
        spent = 0.0 if cached else theirs.cost_usd  # the baseline's answer, costed to the check
        if theirs.error is not None or theirs.text is None:
            return Score(name, "pairwise", None, None, f"{baseline.ref} failed: {theirs.error}")
        first = candidate_first(case.id, repeat)
        a, b = (output, theirs.text) if first else (theirs.text, output)
        ref, wanted = self._judge_ref(options.get("prompt"), pairwise=True)
        given = {
            "rubric": str(options["rubric"]),
            "input": rendered,
            "expected": "" if case.expected is None else str(case.expected),
            "answer_a": a,
            "answer_b": b,
        }
        variables = {key: given.get(key, "") for key in wanted}
        reply, cost = await self._ask(ref, variables, self._judge_model(options), repeat)
        cost += spent
        if reply.error is not None:
            return Score(
                name, "pairwise", None, None, f"the judge's call failed: {reply.error}", cost
            )
        found = parse_winner(reply.text or "")
        if found is None:
            shown = (reply.text or "")[:80]
            return Score(
                name, "pairwise", None, None, f"no winner in the judge's answer {shown!r}", cost
            )
        winner, reason = found
        ours = "A" if first else "B"
        if winner == "tie":
            return Score(name, "pairwise", True, 0.5, f"tie with {baseline.ref}: {reason}", cost)
        won = winner == ours
        verdict = "beats" if won else "loses to"
        return Score(
            name, "pairwise", won, 1.0 if won else 0.0, f"{verdict} {baseline.ref}: {reason}", cost
        )

    async def rag(
        self,
        assertion: Assertion,
        case: Case,
        messages: str | list[dict[str, Any]],
        output: str,
        repeat: int,
    ) -> Score:
        """A RAG judge (groundedness, context or answer relevance) on the case's retrieved
        text (the variable ``context:`` names), its question and the answer."""
        from loopml.llm.rag.judges import parse_rag_verdict, rag_variables

        options, kind, name = assertion.options, assertion.type, assertion.name
        held = str(options.get("context", "context"))
        if held not in case.variables and (kind != "answer_relevance" or "context" in options):
            # A loaded suite refuses such a case; one built in Python is not judged.
            return Score(name, kind, None, None, f"the case has no variable {held!r}")
        ref, wanted = self._judge_ref(options.get("prompt"), rag=kind)
        variables = rag_variables(
            wanted,
            question=_question(case, options, messages),
            context=_context_text(case.variables.get(held)),
            answer=output,
        )
        reply, cost = await self._ask(ref, variables, self._judge_model(options), repeat)
        if reply.error is not None:
            return Score(name, kind, None, None, f"the judge's call failed: {reply.error}", cost)
        text = reply.text or ""
        verdict = parse_rag_verdict(kind, text, float(options.get("threshold", 0.5)))
        if verdict is None:
            return Score(
                name, kind, None, None, f"no verdict in the judge's answer {text[:80]!r}", cost
            )
        detail = verdict.reason
        if kind == "groundedness":
            claims = _claim_count(text)
            if claims is not None and verdict.score == claims[0] / claims[1]:
                supported, total = claims
                counted = f"{supported} of {total} claim{'' if total == 1 else 's'} supported"
                detail = f"{counted}: {detail}" if detail else counted
        return Score(name, kind, verdict.passed, verdict.score, detail, cost)

    async def case(self, case: Case, repeat: int) -> CaseResult:
        result = CaseResult(case.id, repeat, case.variables, case.expected, ERROR)
        try:
            messages = self.version.render(**case.variables)
            rendered = _as_text(messages)
        except InvalidInput as exc:
            result.error = str(exc)
            return result
        body: dict[str, Any] = {
            **self.suite.params,
            "prompt": self.version.ref,
            "variables": dict(case.variables),
        }
        if self.model:
            body["model"] = self.model
        reply, cached = await self.call(body, repeat)
        result.cached = cached
        if reply.error is not None or reply.text is None:
            result.error = reply.error
            return result
        result.output, result.latency_ms = reply.text, reply.latency_ms
        result.cost_usd = 0.0 if cached else reply.cost_usd
        answer = Answer(reply.text, reply.latency_ms, reply.cost_usd)
        scores = []
        for assertion in case.assertions:
            if assertion.type == "judge":
                scores.append(await self.judge(assertion, case, rendered, reply.text, repeat))
            elif assertion.type == "pairwise":
                scores.append(
                    await self.pairwise(assertion, case, rendered, reply.text, body, repeat)
                )
            elif assertion.type in RAG_TYPES:
                scores.append(await self.rag(assertion, case, messages, reply.text, repeat))
            else:
                scores.append(check(assertion, case, answer))
        result.scores = scores
        result.judge_cost_usd = sum(s.cost_usd for s in scores)
        result.status = case_status(scores)
        return result


async def arun_suite(
    suite: Suite,
    prompt: str | None = None,
    *,
    model: str | None = None,
    repeat: int = 1,
    concurrency: int = 16,
    gateway: Gateway | None = None,
    cache: CallCache | None = None,
    track: bool = True,
    experiment: str | None = None,
    workspace: WorkspaceLike = None,
) -> SuiteResult:
    """Run ``suite`` on the prompt ``prompt`` names (``NAME/VERSION``, ``NAME@LABEL``;
    default: the suite's ``prompt``) through ``gateway`` (default: one made from the
    workspace's ``[gateway]``). Raises :class:`JudgeUnavailable` when a judge's provider is
    down: an unscored suite fails, it never passes."""
    from loopml.llm.gateway import Gateway
    from loopml.llm.prompts import get_prompt

    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InvalidInput(f"repeat is a whole number ≥ 1, got {repeat!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInput(f"concurrency is a whole number ≥ 1, got {concurrency!r}")
    ref = prompt or suite.prompt
    if not ref:
        raise InvalidInput(
            f"Which prompt does suite {suite.name!r} evaluate? Pass --prompt NAME/VERSION "
            "(or NAME@LABEL), or set 'prompt:' in the suite"
        )
    ws = gateway.workspace if gateway is not None else resolve_workspace(workspace)
    version = get_prompt(ref, workspace=ws)
    chosen = model or suite.model
    if chosen is None and version.model is None:
        raise InvalidInput(
            f"Prompt {version.ref} names no model: pass --model (a model of the gateway), or "
            "set 'model:' in the suite"
        )
    own = gateway is None
    gw = Gateway.from_config(None, workspace=ws) if gateway is None else gateway
    cache = CallCache() if cache is None else cache
    runner = _Runner(ws, gw, suite, version, chosen, cache, concurrency)
    try:
        runner.prepare()
    except BaseException:
        if own:
            await gw.aclose()
        raise
    started = time.perf_counter()
    try:
        tasks = [runner.case(case, r) for r in range(repeat) for case in suite.cases]
        try:
            async with asyncio.TaskGroup() as group:
                futures = [group.create_task(t) for t in tasks]
        except* JudgeUnavailable as group_error:
            raise group_error.exceptions[0] from None
        cases = [f.result() for f in futures]
    finally:
        if own:
            await gw.aclose()
    result = SuiteResult(
        suite=suite,
        prompt=version.ref,
        model=chosen or version.model,
        cases=cases,
        wall_s=time.perf_counter() - started,
        upstream_calls=runner.upstream,
        cached_calls=sum(1 for c in cases if c.cached),
        max_in_flight=runner.max_in_flight,
        repeat=repeat,
        concurrency=concurrency,
    )
    if track:
        record(result, ws, experiment=experiment)
    return result


def record(
    result: SuiteResult,
    ws: Workspace,
    *,
    experiment: str | None = None,
    extra: Mapping[str, float] | None = None,
) -> str:
    """Record ``result`` as one tracked run (params, metrics and ``extra`` metrics, the cases
    as an artifact); returns its id, also set on ``result.run_id``."""
    suite = result.suite
    runs = ws.runs
    run = runs.start(
        experiment=experiment or suite.experiment or EXPERIMENT,
        name=f"eval {suite.name} {result.prompt}",
        tags={"loopml.evals.suite": suite.name, "loopml.evals.prompt": result.prompt},
        nested=runs.active() is not None,
        log_environment=False,
    )
    with run:
        run.log_params(
            {
                "suite": suite.name,
                "suite_path": suite.path or "",
                "suite_digest": suite.digest,
                "dataset": suite.dataset or "",
                "prompt": result.prompt,
                "model": result.model or "",
                "repeat": result.repeat,
                "concurrency": result.concurrency,
                "cases": len(suite.cases),
            }
        )
        run.log_metrics({**result.metrics(), **(extra or {})})
        result.run_id = run.id
        run.log_dict(result.to_dict(), ARTIFACT)
    return run.id


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code, also when this thread already runs an
    event loop (then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def on_gateway(gateway: Gateway | None, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` from synchronous code: on ``gateway``'s own event loop when one is given
    (the loop of its synchronous calls: its connections are pooled across runs and closed
    with it), else on a loop of its own."""
    if gateway is None:
        return run_sync(coro)
    return gateway._run(coro)


def run_suite(suite: Suite, prompt: str | None = None, **kwargs: Any) -> SuiteResult:
    """:func:`arun_suite` from synchronous code."""
    return on_gateway(kwargs.get("gateway"), arun_suite(suite, prompt, **kwargs))
