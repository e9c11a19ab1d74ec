"""Alert rules: what ``[[monitor.alerts]]`` says, parsed and evaluated (pure: no database here).

A rule's ``when`` is one comparison of a computed metric with a number::

    max(psi) > 0.25            # the worst input feature (also min, mean)
    any(ks_pvalue < 0.01)      # some input feature (all: every one)
    psi[age] > 0.2             # one feature; psi["monthly fee"] for a name with spaces
    prediction_psi > 0.2       # prediction drift, same as psi[__prediction__]
    error_rate > 0.02          # a metric of the whole window: p99_ms, accuracy_drop, …

The comparison is ``>``, ``>=``, ``<`` or ``<=``. Per-feature metrics (:data:`FEATURE_METRICS`)
need an aggregate or a ``[feature]``; window metrics (:data:`WINDOW_METRICS`) take neither.
Aggregates run over the input features only (not ``__prediction__``); ``any(m > x)`` is the
same test as ``max(m) > x`` and ``all(m > x)`` as ``min(m) > x`` (mirrored for ``<``), and
the value they report is that extreme. A metric that a window doesn't have (or has as NaN)
makes the condition not evaluable there: it neither fires nor clears.

:class:`AlertRule` checks itself when it is built; :func:`parse_rules` reads the
``[[monitor.alerts]]`` tables and names the rule an error is in.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import Any, Literal

from loopml.exceptions import InvalidConfig

#: The feature name under which prediction drift is stored.
PREDICTION = "__prediction__"
#: Metrics computed per feature (and for ``__prediction__``).
FEATURE_METRICS = (
    "psi",
    "ks_stat",
    "ks_pvalue",
    "chi2",
    "chi2_pvalue",
    "js",
    "kl",
    "null_rate",
    "null_rate_change",
    "out_of_range",
    "unseen",
)
#: Metrics of a whole window (stored under feature ``""``).
WINDOW_METRICS = (
    "rows",
    "requests",
    "errors",
    "error_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "invalid_rows",
    "labels",
    "labels_unknown",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
    "accuracy_drop",
    "estimated_accuracy",
    # the online evaluation of LLM traffic (deployments llm:<route>, rag:<index>)
    "context_relevance",
    "groundedness",
    "answer_relevance",
    "evaluated",
)
AGGREGATES = ("max", "min", "mean", "any", "all")
SEVERITIES = ("info", "warning", "critical")
CHANNEL_SCHEMES = ("log", "stdout", "webhook:URL", "email:ADDRESS")
OPERATORS = (">", ">=", "<", "<=")

#: ``{feature: {metric: value}}`` of one window; feature ``""`` holds the window's metrics.
WindowMetrics = Mapping[str, Mapping[str, float | None]]


class InvalidAlertRule(InvalidConfig):
    """An alert rule (or its ``when``) is malformed; the message says where and how."""


@dataclass(frozen=True)
class Condition:
    """A parsed ``when``: ``aggregate(metric) op threshold`` over ``feature`` or the features.

    ``aggregate`` is None for one feature (``feature`` set, ``""`` for a window metric).
    """

    metric: str
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    aggregate: str | None = None
    feature: str | None = None

    def evaluate(self, metrics: WindowMetrics) -> Outcome | None:
        """Whether ``metrics`` (one window's) satisfy the condition; None: not evaluable.

        >>> c = parse_condition("max(psi) > 0.25")
        >>> c.evaluate({"age": {"psi": 0.4}, "fee": {"psi": 0.1}})
        Outcome(holds=True, value=0.4, feature='age')
        >>> c.evaluate({"": {"rows": 10.0}}) is None
        True
        """
        if self.aggregate is None:
            value = _number(metrics.get(self.feature or "", {}).get(self.metric))
            if value is None:
                return None
            return Outcome(self._holds(value), value, self.feature or None)
        values = [
            (number, feature)
            for feature, row in metrics.items()
            if feature not in ("", PREDICTION)
            and (number := _number(row.get(self.metric))) is not None
        ]
        if not values:
            return None
        if self.aggregate == "mean":
            value = math.fsum(v for v, _ in values) / len(values)
            return Outcome(self._holds(value), value, None)
        upward = self.op in (">", ">=")
        take_max = {"max": True, "min": False, "any": upward, "all": not upward}[self.aggregate]
        value, feature = (max if take_max else min)(values, key=lambda item: item[0])
        return Outcome(self._holds(value), value, feature)

    def _holds(self, value: float) -> bool:
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t}[self.op]

    @property
    def features(self) -> str | None:
        """The one feature the condition reads (``""``: the window's), None: all inputs."""
        return self.feature if self.aggregate is None else None

    def __str__(self) -> str:
        number = f"{self.threshold:g}"
        if self.aggregate in ("any", "all"):
            return f"{self.aggregate}({self.metric} {self.op} {number})"
        if self.aggregate is not None:
            return f"{self.aggregate}({self.metric}) {self.op} {number}"
        if self.feature:
            return f"{self.metric}[{self.feature}] {self.op} {number}"
        return f"{self.metric} {self.op} {number}"


@dataclass(frozen=True)
class Outcome:
    """A condition tested on one window: whether it ``holds``, the value it compared, and the
    feature that value came from (None for a window metric or a mean)."""

    holds: bool
    value: float
    feature: str | None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# -- the `when` language ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<op>>=|<=|==|!=|=|>|<)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<feature>\[\s*(?:"[^"]*"|'[^']*'|[^\]"']*)\s*\])
    """,
    re.VERBOSE,
)
_GRAMMAR = (
    "write AGG(METRIC) OP NUMBER (AGG: max, min, mean), any(METRIC OP NUMBER), "
    "METRIC[FEATURE] OP NUMBER or WINDOW_METRIC OP NUMBER, with OP one of >, >=, <, <="
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _error(text, pos, f"unexpected {text[pos]!r}")
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    return tokens


def _error(text: str, pos: int, what: str) -> InvalidAlertRule:
    return InvalidAlertRule(f"{what} at position {pos + 1}:\n  {text}\n  {' ' * pos}^\n{_GRAMMAR}")


def parse_condition(text: str) -> Condition:
    """Parse a rule's ``when``; raises :class:`InvalidAlertRule` pointing at the bad token.

    >>> parse_condition("psi[age] > 0.2")
    Condition(metric='psi', op='>', threshold=0.2, aggregate=None, feature='age')
    >>> str(parse_condition("prediction_psi >= 0.1"))
    'psi[__prediction__] >= 0.1'
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidAlertRule(f"a condition is needed: {_GRAMMAR}")
    return _parse(text)


@cache
def _parse(text: str) -> Condition:
    tokens = _tokens(text)
    end = _Token("end", "", len(text))
    at = 0

    def peek() -> _Token:
        return tokens[at] if at < len(tokens) else end

    def take(kind: str, what: str) -> _Token:
        nonlocal at
        token = peek()
        if token.kind != kind:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise _error(text, token.pos, f"expected {what}, found {found}")
        at += 1
        return token

    def comparison() -> tuple[Literal[">", ">=", "<", "<="], float]:
        token = take("op", "a comparison (>, >=, <, <=)")
        if token.text not in OPERATORS:
            raise _error(text, token.pos, f"{token.text!r} is not supported: use >, >=, < or <=")
        number = take("number", "a number")
        return token.text, float(number.text)  # type: ignore[return-value]

    head = take("name", "a metric or an aggregate (max, min, mean, any, all)")
    aggregate: str | None = None
    feature: str | None = None
    if peek().kind == "lparen":
        if head.text not in AGGREGATES:
            raise _error(
                text,
                head.pos,
                f"unknown aggregate {head.text!r}{_hint(head.text, AGGREGATES)}",
            )
        aggregate = head.text
        take("lparen", "'('")
        metric = take("name", "a metric")
        if aggregate in ("any", "all"):
            op, threshold = comparison()
            take("rparen", "')'")
        else:
            take("rparen", "')'")
            op, threshold = comparison()
    else:
        metric = head
        if peek().kind == "feature":
            raw = take("feature", "[FEATURE]").text[1:-1].strip()
            feature = raw[1:-1] if raw[:1] in ("'", '"') else raw
            if not feature:
                raise _error(text, metric.pos, "an empty [feature]")
        op, threshold = comparison()
    if peek().kind != "end":
        raise _error(text, peek().pos, f"unexpected {peek().text!r} after the comparison")

    name = metric.text
    if aggregate is None and feature is None and name.startswith("prediction_"):
        stripped = name.removeprefix("prediction_")
        if stripped in FEATURE_METRICS:
            name, feature = stripped, PREDICTION
    known = FEATURE_METRICS if (aggregate is not None or feature is not None) else WINDOW_METRICS
    if name not in known:
        if name in FEATURE_METRICS:
            raise _error(
                text,
                metric.pos,
                f"{name} is computed per feature: write max({name}), any({name} {op} "
                f"{threshold:g}) or {name}[FEATURE]",
            )
        if name in WINDOW_METRICS:
            raise _error(
                text,
                metric.pos,
                f"{name} is a metric of the whole window: write {name} {op} {threshold:g} "
                "without an aggregate or [feature]",
            )
        hint = _hint(name, known)
        raise _error(
            text, metric.pos, f"unknown metric {name!r}{hint or '. Known: ' + ', '.join(known)}"
        )
    return Condition(name, op, threshold, aggregate, "" if known is WINDOW_METRICS else feature)


def _hint(word: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """One ``[[monitor.alerts]]`` table: fire when ``when`` holds for ``for_windows``
    consecutive non-empty windows of a matching deployment, notify ``channels``.

    ``deployment`` is a name or a glob (``"*"``: every deployment, ``"churn-*"``).
    ``channels``: ``log``, ``stdout``, ``webhook:https://…``, ``email:ops@example.com``.
    """

    name: str
    when: str
    deployment: str = "*"
    for_windows: int = 1
    severity: str = "warning"
    channels: tuple[str, ...] = ("log",)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidAlertRule(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.deployment, str) or not self.deployment.strip():
            raise InvalidAlertRule(
                f'deployment must be a deployment name or "*", got {self.deployment!r}'
            )
        try:
            parse_condition(self.when)
        except InvalidAlertRule as exc:
            raise InvalidAlertRule(f"when = {_quoted(self.when)}: {exc}") from None
        if (
            not isinstance(self.for_windows, int)
            or isinstance(self.for_windows, bool)
            or self.for_windows < 1
        ):
            raise InvalidAlertRule(
                f"for = {self.for_windows!r}: the number of consecutive windows must be a "
                "whole number, at least 1"
            )
        if self.severity not in SEVERITIES:
            raise InvalidAlertRule(
                f"severity = {_quoted(self.severity)}: use one of {', '.join(SEVERITIES)}"
                f"{_hint(str(self.severity), SEVERITIES)}"
            )
        channels = self.channels
        if isinstance(channels, str) or not isinstance(channels, Sequence):
            raise InvalidAlertRule(f"channels must be a list of strings, got {channels!r}")
        object.__setattr__(self, "channels", tuple(channels))
        for channel in self.channels:
            check_channel(channel)

    @property
    def condition(self) -> Condition:
        """The parsed :attr:`when`."""
        return parse_condition(self.when)

    def matches(self, deployment: str) -> bool:
        """Whether the rule applies to ``deployment`` (its name or glob matches)."""
        return fnmatchcase(deployment, self.deployment)


def check_channel(channel: object) -> str:
    """``channel`` if it names a known kind of channel; raises :class:`InvalidAlertRule`."""
    if not isinstance(channel, str):
        raise InvalidAlertRule(f"a channel is a string, got {channel!r}")
    scheme, _, target = channel.partition(":")
    if channel in ("log", "stdout"):
        return channel
    if scheme == "webhook":
        if not re.match(r"^https?://[^\s/]+", target):
            raise InvalidAlertRule(
                f"channel {channel!r}: a webhook needs an http(s) URL, e.g. "
                "webhook:https://hooks.example/ml"
            )
        return channel
    if scheme == "email":
        if not re.match(r"^[^@\s,]+@[^@\s,]+$", target):
            raise InvalidAlertRule(
                f"channel {channel!r}: e-mail needs one address, e.g. email:ops@example.com"
            )
        return channel
    raise InvalidAlertRule(
        f"unknown channel {channel!r}{_hint(scheme, ('log', 'stdout', 'webhook', 'email'))}: "
        f"use {', '.join(CHANNEL_SCHEMES)}"
    )


_RULE_KEYS = {
    "name": "name",
    "deployment": "deployment",
    "when": "when",
    "for": "for_windows",
    "severity": "severity",
    "channels": "channels",
}


def parse_rule(table: Mapping[str, Any]) -> AlertRule:
    """One ``[[monitor.alerts]]`` table as an :class:`AlertRule` (TOML keys: ``name``,
    ``deployment``, ``when``, ``for``, ``severity``, ``channels``)."""
    if not isinstance(table, Mapping):
        raise InvalidAlertRule(f"must be a table (name = …, when = …), got {table!r}")
    for key in table:
        if key not in _RULE_KEYS:
            close = difflib.get_close_matches(str(key), list(_RULE_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InvalidAlertRule(f"unknown key {key!r}{hint} Valid: {', '.join(_RULE_KEYS)}.")
    for key in ("name", "when"):
        if key not in table:
            raise InvalidAlertRule(f"{key} is missing (every rule needs name and when)")
    return AlertRule(**{_RULE_KEYS[key]: value for key, value in table.items()})


def parse_rules(value: Any, where: str) -> tuple[AlertRule, ...]:
    """The ``[[monitor.alerts]]`` array as rules; ``where`` names it in an error, which
    points at the rule: ``loopml.toml [[monitor.alerts]] #2 "input drift": when = …``."""
    if isinstance(value, str) and where.startswith("LOOPML_"):
        raise InvalidAlertRule(
            f"{where}: alert rules can't be set from a variable; write [[monitor.alerts]] "
            "tables in loopml.toml."
        )
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidAlertRule(
            f"{where} must be an array of tables ([[monitor.alerts]]), got {value!r}"
        )
    file = where.rsplit(" [monitor]", 1)[0]
    rules: list[AlertRule] = []
    seen: dict[str, int] = {}
    for number, table in enumerate(value, start=1):
        name = table.get("name") if isinstance(table, Mapping) else None
        label = f"{file} [[monitor.alerts]] #{number}" + (
            f" {_quoted(name)}" if isinstance(name, str) else ""
        )
        try:
            rule = parse_rule(table)
        except InvalidAlertRule as exc:
            raise InvalidAlertRule(f"{label}: {exc}") from None
        if rule.name in seen:
            raise InvalidAlertRule(
                f"{label}: the name is already used by rule #{seen[rule.name]}; alerts are "
                "kept by rule name, so give each rule its own"
            )
        seen[rule.name] = number
        rules.append(rule)
    return tuple(rules)


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
