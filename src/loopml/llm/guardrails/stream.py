"""Output rules on a stream, as it arrives: a value split across chunks is never delivered
unredacted.

:class:`StreamGuard` holds back the last ``window`` characters (normalized, so zero-width
characters don't stretch a value past it) of what has arrived. Each time ``step`` more
characters have arrived it scans what is held, plus a little of what was already sent for
context, and releases everything up to ``window`` characters from the end, except that it
never cuts through a finding (a key still growing, a PEM block whose END line has not come):
the cut moves back to the finding's start. A value no longer than the window is therefore
complete, with its right-hand context, before any of it is released, and is redacted (or
blocks the stream) exactly as it would in the whole text. While a value keeps growing past
the window (a PEM block), the held text is scanned again only each time it has grown by half,
so however long it gets the guard's work stays linear in the stream's length.

    guard = StreamGuard(policy)
    for delta in deltas:
        send(guard.feed(delta))       # may be "" while it holds back
    send(guard.finish())              # the rest, checked to the end

A block rule raises :class:`~loopml.llm.guardrails.policy.GuardrailBlocked` (the gateway ends
the stream with an error event). Whole-text checks (``json_schema``, ``groundedness``,
``max_tokens``) run once in :meth:`StreamGuard.finish`, on the whole answer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from loopml.exceptions import InvalidInput
from loopml.llm.guardrails.findings import Finding, SpanDetector, TextCheck
from loopml.llm.guardrails.normalize import normalize
from loopml.llm.guardrails.policy import Policy, Rule
from loopml.llm.guardrails.verdict import GuardrailBlocked, RuleResult, Verdict, error_text, redact

logger = logging.getLogger("loopml.llm.guardrails")

#: Characters already sent that are scanned again as left context (keywords before a number,
#: word boundaries).
CONTEXT = 64
#: Characters that must arrive before the held text is scanned again.
DEFAULT_STEP = 32


class StreamGuard:
    """A policy's output rules applied to one stream (see the module's docstring)."""

    def __init__(
        self,
        policy: Policy,
        *,
        context: Any = None,
        window: int | None = None,
        step: int = DEFAULT_STEP,
    ) -> None:
        if step < 1:
            raise InvalidInput(f"step must be at least 1 character, got {step!r}")
        rules = policy.rules_for("output")
        self.policy = policy
        self.window = window if window is not None else policy.window
        self.step = step
        self.context = context
        self._span_rules = [r for r in rules if isinstance(r.impl, SpanDetector)]
        self._check_rules = [r for r in rules if isinstance(r.impl, TextCheck)]
        self._pending = ""  # arrived, not yet released
        self._left = ""  # the last CONTEXT characters released (as they arrived)
        self._released = 0  # characters of the stream released so far
        self._whole: list[str] | None = [] if self._check_rules else None
        self._findings: list[Finding] = []
        self._ns: dict[str, int] = {r.name: 0 for r in rules}
        self._errors: dict[str, str] = {}
        self._blocked: GuardrailBlocked | None = None
        self._finished = False
        # Held text is scanned again once it reaches this length: window + step normally,
        # half as much again as held after a scan that could release nothing (a key or PEM
        # block still growing), so a long held value costs linear, not quadratic, time.
        self._next_scan = self.window + self.step

    # -- the stream ----------------------------------------------------------------------

    def feed(self, delta: str) -> str:
        """Take the next piece of the answer; return what may be sent now (often "")."""
        self._check_open()
        if not delta:
            return ""
        self._pending += delta
        if self._whole is not None:
            self._whole.append(delta)
        if len(self._pending) < self._next_scan:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """The stream ended: return the rest, checked, and run the whole-text checks."""
        self._check_open()
        out = self._release(final=True)
        self._finished = True
        if self._whole is not None:
            self._check_whole("".join(self._whole))
        return out

    @property
    def findings(self) -> tuple[Finding, ...]:
        """What the rules found so far; offsets count characters of the whole stream."""
        return tuple(self._findings)

    def verdict(self) -> Verdict:
        """The stream's verdict so far (for the request log and the trace)."""
        blocked = self._blocked
        return Verdict(
            policy=self.policy.name,
            version=self.policy.version,
            stage="output",
            allowed=blocked is None,
            blocked_by=blocked.rule if blocked else None,
            reason=blocked.message if blocked else None,
            findings=tuple(self._findings),
            rules=tuple(
                RuleResult(
                    r.name,
                    r.detector,
                    r.action,
                    self._ns[r.name] / 1000,
                    sum(f.rule == r.name for f in self._findings),
                    self._errors.get(r.name),
                )
                for r in self._span_rules + self._check_rules
            ),  # fmt: skip
            redacted=any(
                f.rule == r.name and r.action == "redact"
                for f in self._findings
                for r in self._span_rules
            ),
        )

    # -- inside --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._blocked is not None:
            raise self._blocked
        if self._finished:
            raise InvalidInput("this stream's guard has finished; start a new StreamGuard")

    def _release(self, final: bool) -> str:
        text = self._left + self._pending
        base = len(self._left)  # where the pending text starts in ``text``
        norm = normalize(text)
        found: list[tuple[Rule, Finding]] = []
        for rule in self._span_rules:
            assert isinstance(rule.impl, SpanDetector)
            started = time.perf_counter_ns()
            try:
                hits = rule.impl.scan(norm, rule.name)
            except Exception as exc:
                self._ns[rule.name] += time.perf_counter_ns() - started
                self._failed(rule, exc)
                continue
            self._ns[rule.name] += time.perf_counter_ns() - started
            found.extend((rule, f) for f in hits if f.end > base)
        if final:
            cut = len(text)
        else:
            held = len(norm.text) - self.window
            cut = norm.position(held) if held > 0 else 0
            moved = True
            while moved:  # never cut through a finding: move the cut back to its start
                moved = False
                for _, f in found:
                    if f.start < cut < f.end:
                        cut, moved = f.start, True
            if cut <= base:
                self._next_scan = max(self.window + self.step, len(self._pending) * 3 // 2)
                return ""
            self._next_scan = self.window + self.step
        spans: list[tuple[int, int, str]] = []
        for rule, f in found:
            if f.end > cut:
                continue  # held back: judged again when more has arrived
            start = max(f.start, base)
            at = self._released - base
            self._findings.append(
                Finding(f.rule, f.kind, start + at, f.end + at, f.score, detail=f.detail)
            )
            if rule.action == "block":
                self._block(rule, f.kind)
            elif rule.action == "redact":
                spans.append((start - base, f.end - base, rule.replacement_for(f.kind)))
        released = self._pending[: cut - base]
        self._pending = self._pending[cut - base :]
        self._left = (self._left + released)[-CONTEXT:]
        self._released += len(released)
        return redact(released, spans) if spans else released

    def _check_whole(self, text: str) -> None:
        for rule in self._check_rules:
            assert isinstance(rule.impl, TextCheck)
            started = time.perf_counter_ns()
            try:
                hits = rule.impl.check_text(text, rule.name, context=self.context)
            except Exception as exc:
                self._ns[rule.name] += time.perf_counter_ns() - started
                self._failed(rule, exc)
                continue
            self._ns[rule.name] += time.perf_counter_ns() - started
            for f in hits or ():
                self._findings.append(f)
                if rule.action == "block":
                    self._block(rule, f.kind)

    def _failed(self, rule: Rule, exc: Exception) -> None:
        self._errors[rule.name] = error_text(exc)
        closed = rule.on_error == "closed"
        logger.warning(
            "guardrail rule %r of policy %r failed on a stream (%s); failing %s",
            rule.name,
            self.policy.name,
            self._errors[rule.name],
            "closed: the stream ends" if closed else "open: the stream goes on",
        )
        if closed:
            self._raise(
                rule,
                f"guardrail rule {rule.name!r} of policy {self.policy.name!r} failed "
                f"({type(exc).__name__}) and fails closed",
                (),
            )

    def _block(self, rule: Rule, kind: str) -> None:
        self._raise(
            rule,
            f"blocked by guardrail rule {rule.name!r} of policy {self.policy.name!r} "
            f"(output stream): {kind}",
            (kind,),
        )

    def _raise(self, rule: Rule, message: str, kinds: tuple[str, ...]) -> None:
        self._blocked = GuardrailBlocked(
            message,
            rule=rule.name,
            policy=self.policy.name,
            version=self.policy.version,
            stage="output",
            kinds=kinds,
        )
        raise self._blocked
