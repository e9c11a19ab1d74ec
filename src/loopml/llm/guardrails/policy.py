"""A guardrail policy: named rules, each a detector with an action, a stage and a failure mode.

Declared under ``[gateway.guardrails.policies.NAME]``::

    [gateway.guardrails.policies.strict]
    description = "support bot"
    stream_window = 96              # characters a stream holds back (default: the rules' need)

    [[gateway.guardrails.policies.strict.rules]]
    detector = "pii"                # pii | secrets | injection | banned | regex
                                    # | max_tokens | json_schema | groundedness
    action = "redact"               # block | redact | flag
    stage = "both"                  # input | output | both (default depends on the detector)
    on_error = "open"               # open | closed (default: closed for block, open otherwise)
    name = "pii"                    # default: the detector's name; unique in the policy
    roles = ["user", "tool"]        # input messages checked (default: all; injection: user, tool)
    replacement = "[{kind}]"        # what a redacted span becomes ({kind}: CREDIT_CARD, EMAIL…)
    options = { entities = ["email", "credit_card", "iban"] }

A malformed policy raises :class:`~loopml.exceptions.InvalidConfig` naming the entry, e.g.
``gateway.guardrails.policies.strict.rules[2].action: 'blok' is not one of block, redact, flag
(did you mean 'block'?)``.

:meth:`Policy.check_input` judges a request's messages and :meth:`Policy.check_output` an
answer; each returns a :class:`Verdict` (allowed or blocked, by which rule, the redacted
messages or text, the findings without the values, each rule's latency in µs).
:class:`~loopml.llm.guardrails.stream.StreamGuard` applies the output rules to a stream.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from loopml.exceptions import InvalidConfig
from loopml.llm.guardrails.detectors import DETECTORS, build
from loopml.llm.guardrails.findings import Finding, SpanDetector, TextCheck
from loopml.llm.guardrails.normalize import Normalized, normalize
from loopml.llm.guardrails.options import Options, not_one_of
from loopml.llm.guardrails.verdict import (
    RuleResult,
    Verdict,
    error_text,
    redact,
)

logger = logging.getLogger("loopml.llm.guardrails")

Action = Literal["block", "redact", "flag"]
Stage = Literal["input", "output", "both"]
ACTIONS = ("block", "redact", "flag")
STAGES = ("input", "output", "both")
ON_ERROR = ("open", "closed")
_POLICY_KEYS = ("description", "rules", "stream_window")
_RULE_KEYS = (
    "name",
    "detector",
    "action",
    "stage",
    "on_error",
    "roles",
    "replacement",
    "options",
)
_DEFAULT_STAGE = {"injection": "input", "json_schema": "output", "groundedness": "output"}
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
DEFAULT_REPLACEMENT = "[{kind}]"
#: The fewest characters a stream holds back, whatever the rules say.
MIN_STREAM_WINDOW = 32

#: ``default``: what a gateway with no policy configured can still use.
DEFAULT_POLICY_BODY: dict[str, Any] = {
    "description": "PII redacted both ways, secrets and injections blocked on input, "
    "secrets redacted on output",
    "rules": [
        {"name": "injection", "detector": "injection", "action": "block", "stage": "input"},
        {"name": "secrets", "detector": "secrets", "action": "block", "stage": "input"},
        {"name": "pii", "detector": "pii", "action": "redact", "stage": "both"},
        {"name": "secrets_out", "detector": "secrets", "action": "redact", "stage": "output"},
    ],
}


@dataclass(frozen=True)
class Rule:
    """One rule of a policy, checked (build it with :meth:`Policy.from_dict`)."""

    name: str
    detector: str
    action: Action
    stage: Stage
    on_error: Literal["open", "closed"]
    options: Mapping[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] | None = None  # None: every role
    replacement: str = DEFAULT_REPLACEMENT
    impl: SpanDetector | TextCheck | None = field(default=None, compare=False, repr=False)

    def applies_to(self, stage: str) -> bool:
        return self.stage == "both" or self.stage == stage

    @property
    def spans(self) -> bool:
        """True when the rule's findings are spans (so it can redact)."""
        return isinstance(self.impl, SpanDetector)

    def replacement_for(self, kind: str) -> str:
        return self.replacement.replace("{kind}", kind.upper())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "detector": self.detector,
            "action": self.action,
            "stage": self.stage,
            "on_error": self.on_error,
        }
        if self.roles is not None:
            data["roles"] = list(self.roles)
        if self.replacement != DEFAULT_REPLACEMENT:
            data["replacement"] = self.replacement
        if self.options:
            data["options"] = json.loads(json.dumps(self.options, sort_keys=True))
        return data


#: ``reask(answer, problems) -> new answer``: asks the model once more (see check_output).
Reask = Callable[[str, str], str]
AsyncReask = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class Policy:
    """Named rules, run in order (see the module's docstring for the TOML shape)."""

    name: str
    rules: tuple[Rule, ...]
    description: str = ""
    stream_window: int | None = None
    #: The stored version (:func:`loopml.llm.guardrails.versions.save_policy`), when known.
    version: int | None = field(default=None, compare=False)
    _scans: _ScanCache = field(
        default_factory=lambda: _ScanCache(), compare=False, repr=False, init=False
    )

    # -- building -----------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, name: str, table: Any, *, where: str | None = None, version: int | None = None
    ) -> Policy:
        """A checked policy from its table as written (``where``: how errors name it,
        ``gateway.guardrails.policies.NAME`` by default)."""
        where = where or f"gateway.guardrails.policies.{name}"
        if not isinstance(table, Mapping):
            raise InvalidConfig(f"{where}: a policy must be a table with rules, got {table!r}")
        for key in table:
            if key not in _POLICY_KEYS:
                raise InvalidConfig(f"{where}: unknown key {not_one_of(key, _POLICY_KEYS)}")
        rules_table = table.get("rules")
        if not isinstance(rules_table, list) or not rules_table:
            raise InvalidConfig(
                f"{where}.rules: a policy needs a list of rules, e.g. "
                f'[[{where}.rules]] detector = "pii" action = "redact"; got {rules_table!r}'
            )
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(rules_table):
            rule = _parse_rule(entry, f"{where}.rules[{i}]")
            if rule.name in seen:
                raise InvalidConfig(
                    f"{where}.rules[{i}].name: {rule.name!r} is also the name of "
                    f'rules[{seen[rule.name]}]; give each rule its own name = "…"'
                )
            seen[rule.name] = i
            rules.append(rule)
        description = table.get("description", "")
        if not isinstance(description, str):
            raise InvalidConfig(f"{where}.description: must be a string, got {description!r}")
        window = table.get("stream_window")
        if window is not None and (
            isinstance(window, bool) or not isinstance(window, int) or window < MIN_STREAM_WINDOW
        ):
            raise InvalidConfig(
                f"{where}.stream_window: must be a whole number of characters >= "
                f"{MIN_STREAM_WINDOW}, got {window!r}"
            )
        return cls(name, tuple(rules), description, window, version)

    def body(self) -> dict[str, Any]:
        """The policy as a canonical table (defaults filled in): what is stored and hashed."""
        data: dict[str, Any] = {"rules": [r.to_dict() for r in self.rules]}
        if self.description:
            data["description"] = self.description
        if self.stream_window is not None:
            data["stream_window"] = self.stream_window
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`canonical_json`: the same rules give the same digest."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def with_version(self, version: int | None) -> Policy:
        return replace(self, version=version)

    def rules_for(self, stage: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.applies_to(stage))

    @property
    def window(self) -> int:
        """Characters (normalized) a stream holds back: the policy's ``stream_window`` or the
        longest lookahead its output rules need."""
        if self.stream_window is not None:
            return self.stream_window
        need = [
            r.impl.lookahead for r in self.rules_for("output") if isinstance(r.impl, SpanDetector)
        ]
        return max([MIN_STREAM_WINDOW, *need])

    # -- judging ------------------------------------------------------------------------

    def check_input(
        self, messages: Sequence[Mapping[str, Any]], *, stop_at_block: bool = True
    ) -> Verdict:
        """Judge a request's messages (OpenAI chat shape: ``content`` a string or a list of
        parts). With ``stop_at_block=False`` every rule runs even after one blocked (what
        evaluation needs)."""
        texts: list[tuple[int, int | None, str, str]] = []  # message, part, role, text
        for i, message in enumerate(messages):
            role = str(message.get("role", "user"))
            content = message.get("content")
            if isinstance(content, str):
                texts.append((i, None, role, content))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        texts.append((i, j, role, part["text"]))
                    elif isinstance(part, str):
                        texts.append((i, j, role, part))
        normalized: dict[int, Normalized] = {}
        run = _Run(self, "input")
        for rule in self.rules_for("input"):
            started = time.perf_counter_ns()
            findings: list[Finding] = []
            try:
                if isinstance(rule.impl, SpanDetector):
                    roles = rule.roles if rule.roles is not None else rule.impl.default_roles
                    cacheable = rule.impl.deterministic
                    for k, (_, _, role, text) in enumerate(texts):
                        if roles is not None and role not in roles:
                            continue
                        key = (rule.name, _digest(text)) if cacheable else None
                        found = self._scans.get(key) if key is not None else None
                        if found is None:
                            if k not in normalized:
                                normalized[k] = normalize(text)
                            found = tuple(rule.impl.scan(normalized[k], rule.name))
                            if key is not None:
                                self._scans.put(key, found)
                        findings.extend(replace(f, message=k) for f in found)
                elif isinstance(rule.impl, TextCheck):
                    findings = rule.impl.check_messages(messages, rule.name)
            except Exception as exc:
                run.failed(rule, exc, time.perf_counter_ns() - started)
            else:
                run.done(rule, findings, time.perf_counter_ns() - started)
            if run.blocked_by is not None and stop_at_block:
                break
        verdict = run.verdict()
        # Findings' ``message`` indexed texts so far; point them at messages.
        located = tuple(
            replace(f, message=texts[f.message][0]) if f.message is not None else f
            for f in verdict.findings
        )
        if not run.spans or not verdict.allowed:
            return replace(verdict, messages=messages, findings=located)
        redacted = [dict(m) for m in messages]
        by_text: dict[int, list[tuple[int, int, str]]] = {}
        for k, start, end, label in run.spans:
            by_text.setdefault(k, []).append((start, end, label))
        for k, spans in by_text.items():
            index, slot, _, text = texts[k]
            new = redact(text, spans)
            if slot is None:
                redacted[index]["content"] = new
            else:
                parts = list(redacted[index]["content"])
                part = parts[slot]
                parts[slot] = {**part, "text": new} if isinstance(part, Mapping) else new
                redacted[index]["content"] = parts
        return replace(verdict, messages=redacted, findings=located, redacted=True)

    def check_output(
        self,
        text: str,
        *,
        context: Any = None,
        reask: Reask | None = None,
        stop_at_block: bool = True,
    ) -> Verdict:
        """Judge an answer. ``context`` goes to groundedness rules. When a ``json_schema``
        rule with ``reask = true`` fails and ``reask`` is given, ``reask(answer, problems)``
        is called once for a new answer, which is judged instead (``verdict.reasked``)."""
        verdict, problems = self._check_output(text, context, reask is not None, stop_at_block)
        if problems is None or reask is None:
            return verdict
        again = reask(text, problems)
        verdict, _ = self._check_output(again, context, False, stop_at_block)
        return replace(verdict, reasked=True)

    async def acheck_output(
        self,
        text: str,
        *,
        context: Any = None,
        reask: AsyncReask | Reask | None = None,
        stop_at_block: bool = True,
    ) -> Verdict:
        """:meth:`check_output` for the gateway's event loop: ``reask`` may be async."""
        verdict, problems = self._check_output(text, context, reask is not None, stop_at_block)
        if problems is None or reask is None:
            return verdict
        again = reask(text, problems)
        if inspect.isawaitable(again):
            again = await again
        verdict, _ = self._check_output(str(again), context, False, stop_at_block)
        return replace(verdict, reasked=True)

    def _check_output(
        self, text: str, context: Any, may_reask: bool, stop_at_block: bool
    ) -> tuple[Verdict, str | None]:
        run = _Run(self, "output")
        norm: Normalized | None = None
        for rule in self.rules_for("output"):
            started = time.perf_counter_ns()
            findings: list[Finding] | None = []
            try:
                if isinstance(rule.impl, SpanDetector):
                    if norm is None:
                        norm = normalize(text)
                    findings = rule.impl.scan(norm, rule.name)
                elif isinstance(rule.impl, TextCheck):
                    findings = rule.impl.check_text(text, rule.name, context=context)
                    if (
                        findings
                        and may_reask
                        and getattr(rule.impl, "reask", False)
                        and hasattr(rule.impl, "errors")
                    ):
                        problems = "; ".join(m for _, m in rule.impl.errors(text))
                        return run.verdict(), problems
            except Exception as exc:
                run.failed(rule, exc, time.perf_counter_ns() - started)
            else:
                if findings is None:
                    run.skipped(rule, time.perf_counter_ns() - started)
                else:
                    run.done(rule, findings, time.perf_counter_ns() - started)
            if run.blocked_by is not None and stop_at_block:
                break
        verdict = run.verdict()
        if run.spans and verdict.allowed:
            new = redact(text, [(s, e, label) for _, s, e, label in run.spans])
            return replace(verdict, text=new, redacted=True), None
        return replace(verdict, text=text), None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest, **self.body()}


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _ScanCache:
    """Findings of deterministic span rules on input texts seen lately, by the text's
    128-bit digest: a conversation's earlier messages come back with every request and are
    scanned once (a miss costs a hash, about 1 µs a KB; a hit saves the scan)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: dict[tuple[str, bytes], tuple[Finding, ...]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> tuple[Finding, ...] | None:
        return self._items.get(key)

    def put(self, key: tuple[str, bytes], found: tuple[Finding, ...]) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                del self._items[next(iter(self._items))]  # the oldest
            self._items[key] = found


class _Run:
    """What the rules of one check have found so far."""

    def __init__(self, policy: Policy, stage: str) -> None:
        self.policy = policy
        self.stage = stage
        self.findings: list[Finding] = []
        self.results: list[RuleResult] = []
        self.spans: list[tuple[int, int, int, str]] = []  # text, start, end, replacement
        self.blocked_by: str | None = None
        self.reason: str | None = None

    def done(self, rule: Rule, findings: list[Finding], ns: int) -> None:
        self.results.append(
            RuleResult(rule.name, rule.detector, rule.action, ns / 1000, len(findings))
        )
        if not findings:
            return
        self.findings.extend(findings)
        if rule.action == "block" and self.blocked_by is None:
            kinds = ", ".join(sorted({f.kind for f in findings}))
            self.blocked_by = rule.name
            self.reason = (
                f"blocked by guardrail rule {rule.name!r} of policy {self.policy.name!r} "
                f"({self.stage}): {kinds}"
            )
        elif rule.action == "redact":
            for f in findings:
                if f.end > f.start:
                    self.spans.append(
                        (f.message or 0, f.start, f.end, rule.replacement_for(f.kind))
                    )

    def failed(self, rule: Rule, exc: Exception, ns: int) -> None:
        error = error_text(exc)
        self.results.append(RuleResult(rule.name, rule.detector, rule.action, ns / 1000, 0, error))
        closed = rule.on_error == "closed"
        logger.warning(
            "guardrail rule %r of policy %r failed (%s); failing %s",
            rule.name,
            self.policy.name,
            error,
            "closed: blocked" if closed else "open: allowed",
        )
        if closed and self.blocked_by is None:
            self.blocked_by = rule.name
            self.reason = (
                f"guardrail rule {rule.name!r} of policy {self.policy.name!r} failed "
                f"({type(exc).__name__}) and fails closed"
            )

    def skipped(self, rule: Rule, ns: int) -> None:
        self.results.append(
            RuleResult(rule.name, rule.detector, rule.action, ns / 1000, 0, skipped=True)
        )

    def verdict(self) -> Verdict:
        return Verdict(
            policy=self.policy.name,
            version=self.policy.version,
            stage=self.stage,
            allowed=self.blocked_by is None,
            blocked_by=self.blocked_by,
            reason=self.reason,
            findings=tuple(self.findings),
            rules=tuple(self.results),
        )


def _parse_rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise InvalidConfig(
            f'{where}: a rule must be a table (detector = "pii", action = "redact"), got {entry!r}'
        )
    for key in entry:
        if key not in _RULE_KEYS:
            raise InvalidConfig(f"{where}: unknown key {not_one_of(key, _RULE_KEYS)}")
    detector = entry.get("detector")
    if detector is None:
        raise InvalidConfig(f"{where}: a rule needs detector = one of {', '.join(DETECTORS)}")
    if detector not in DETECTORS:
        raise InvalidConfig(f"{where}.detector: {not_one_of(detector, list(DETECTORS))}")
    action = entry.get("action")
    if action is None:
        raise InvalidConfig(f"{where}: a rule needs action = one of {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise InvalidConfig(f"{where}.action: {not_one_of(action, ACTIONS)}")
    stage = entry.get("stage", _DEFAULT_STAGE.get(detector, "both"))
    if stage not in STAGES:
        raise InvalidConfig(f"{where}.stage: {not_one_of(stage, STAGES)}")
    on_error = entry.get("on_error", "closed" if action == "block" else "open")
    if on_error not in ON_ERROR:
        raise InvalidConfig(f"{where}.on_error: {not_one_of(on_error, ON_ERROR)}")
    name = entry.get("name", detector)
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise InvalidConfig(f"{where}.name: must be 1 to 64 characters, got {name!r}")
    roles: tuple[str, ...] | None = None
    if "roles" in entry:
        value = entry["roles"]
        if not isinstance(value, list) or not value:
            raise InvalidConfig(f"{where}.roles: must be a list of roles, got {value!r}")
        for role in value:
            if role not in ROLES:
                raise InvalidConfig(f"{where}.roles: {not_one_of(role, ROLES)}")
        roles = tuple(value)
    replacement = entry.get("replacement", DEFAULT_REPLACEMENT)
    if not isinstance(replacement, str):
        raise InvalidConfig(f"{where}.replacement: must be a string, got {replacement!r}")
    cls = DETECTORS[detector]
    options_table = entry.get("options", {})
    impl = build(detector, Options(options_table, f"{where}.options", cls.options))
    if isinstance(impl, TextCheck):
        if action == "redact":
            raise InvalidConfig(
                f"{where}.action: the {detector} detector judges a whole text, so it can "
                "block or flag, not redact"
            )
        wanted = {"input", "output"} if stage == "both" else {stage}
        if not wanted <= impl.stages:
            raise InvalidConfig(
                f"{where}.stage: the {detector} detector checks "
                f"{' and '.join(sorted(impl.stages))} only; set stage = "
                f'"{sorted(impl.stages)[0]}"'
            )
    return Rule(
        name=name,
        detector=detector,
        action=action,
        stage=stage,
        on_error=on_error,
        options=dict(options_table) if isinstance(options_table, Mapping) else {},
        roles=roles,
        replacement=replacement,
        impl=impl,
    )


def default_policy() -> Policy:
    """The built-in ``default`` policy (see :data:`DEFAULT_POLICY_BODY`)."""
    return Policy.from_dict("default", DEFAULT_POLICY_BODY, where="built-in policy 'default'")


def policies_from_config(
    guardrails: Mapping[str, Any] | None, *, where: str = "gateway.guardrails"
) -> dict[str, Policy]:
    """Every policy under ``guardrails["policies"]`` (the raw ``[gateway.guardrails]``
    table), plus the built-in ``default`` unless the table declares its own."""
    policies: dict[str, Policy] = {}
    table = (guardrails or {}).get("policies", {})
    if not isinstance(table, Mapping):
        raise InvalidConfig(
            f"{where}.policies: must be a table of policies ([{where}.policies.NAME]), "
            f"got {table!r}"
        )
    for name, body in table.items():
        policies[str(name)] = Policy.from_dict(str(name), body, where=f"{where}.policies.{name}")
    if "default" not in policies:
        policies["default"] = default_policy()
    return policies
