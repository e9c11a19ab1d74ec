"""The report of a prompt A/B test: the versions a label is split between
(:func:`~loopml.llm.prompts.split_label`), compared on what their requests earned, with the
statistics of a serving A/B test (:mod:`loopml.serving.stats`).

    report = prompt_ab("support/answer", "production")                # or `loopml prompts ab`
    report.recommendation, report.summary
    print(report.render()); report.to_dict()                          # plain text / --json

The requests are the gateway's (``llm_requests``) made from each version (their ``prompt`` is
``NAME/VERSION``) through the label (``prompt_label``; a request that named the version
itself, an eval suite's or a pinned client's, is not the test's traffic) since the split
started (``since`` overrides it), answered without error.
The metric is

- ``feedback`` (default): feedback named ``feedback_name`` (``user``) on the request
  (:mod:`loopml.llm.feedback`; the newest of a request wins);
- ``online:EVALUATOR``: the online evaluator's score of the request (``llm_online_evals``,
  status ``ok``), e.g. ``online:groundedness``;
- ``eval``: the pass rate of the eval-suite runs recorded for each version (tracked runs
  tagged ``loopml.evals.prompt``), every case one outcome; offline runs, so not windowed
  and without a sequential test.

Outcomes that are all 0 or 1 (thumbs) are compared with a two-proportion z test, others
(ratings, scores) with Welch's t test; each version against the control (the label's
version), with the mSPRT's always-valid p-value over the outcomes in request order. A
comparison is decided when the always-valid p-value crosses ``alpha`` (valid however often
the report is read) or, with ``mde``, when the planned sample is reached — exactly as
``loopml deploy report`` decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, or_, select

from loopml.exceptions import InvalidInput
from loopml.llm.prompts.refs import PromptRef, Split, check_label, check_name, split_text
from loopml.llm.prompts.versions import load_split, resolve, states_at
from loopml.llm.tables import (
    llm_feedback,
    llm_online_evals,
    llm_prompt_label_history,
    llm_requests,
)
from loopml.serving import stats
from loopml.serving.report import MIN_OUTCOMES, Comparison, compare_arms, comparison_lines
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: The metrics besides ``online:EVALUATOR``.
METRICS = ("feedback", "eval")
ONLINE = "online:"
#: The tag an eval-suite run carries: the NAME/VERSION it evaluated.
EVAL_TAG = "loopml.evals.prompt"


@dataclass(frozen=True)
class VersionOutcome:
    """One version's share of the test: its weight in the split (None: not in it now),
    requests answered, distinct end users, outcomes known, their mean and standard
    deviation."""

    version: int
    ref: str
    weight: float | None
    requests: int
    users: int
    outcomes: int
    mean: float | None = None
    sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ref": self.ref,
            "weight": self.weight,
            "requests": self.requests,
            "users": self.users,
            "outcomes": self.outcomes,
            "mean": self.mean,
            "sd": self.sd,
        }


@dataclass(frozen=True)
class PromptABReport:
    """What :func:`prompt_ab` found: one :class:`VersionOutcome` per version of the split
    (the control first; a version the test held earlier has no weight), one
    :class:`~loopml.serving.report.Comparison` per other version. ``recommendation`` is ``not enough data``, ``keep
    collecting``, ``winner`` (``winner`` names the version) or ``no difference``;
    ``summary`` says it in a sentence, with the command that ends the test."""

    name: str
    label: str
    metric: str
    split: Split | None
    control: int
    since: datetime | None
    until: datetime | None
    alpha: float
    power: float
    mde: float | None
    versions: tuple[VersionOutcome, ...]
    comparisons: tuple[Comparison, ...]
    recommendation: str
    summary: str
    winner: int | None = None
    notes: tuple[str, ...] = ()
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name,
            "label": self.label,
            "metric": self.metric,
            "split": [list(pair) for pair in self.split] if self.split else None,
            "control": self.control,
            "since": when(self.since),
            "until": when(self.until),
            "generated_at": when(self.generated_at),
            "alpha": self.alpha,
            "power": self.power,
            "mde": self.mde,
            "versions": [v.to_dict() for v in self.versions],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "recommendation": self.recommendation,
            "winner": self.winner,
            "summary": self.summary,
            "notes": list(self.notes),
        }

    def render(self, time: Any = None) -> str:
        """The report as plain text; ``time`` formats a datetime (default: ISO, UTC)."""
        show = time or (lambda m: m.isoformat(timespec="seconds") if m else "-")
        split = split_text(self.split) if self.split else f"{self.control} (not split now)"
        window = f"{show(self.since)} .. {show(self.until) if self.until else 'now'}"
        lines = [
            f"{self.name}@{self.label}: prompt A/B test {split}, metric {self.metric}",
            f"  requests from {window}; alpha {self.alpha:g}, power {self.power:g}"
            + (f", minimum detectable effect {self.mde:g}" if self.mde is not None else ""),
            "",
            f"  {'version':<8} {'weight':>7} {'requests':>9} {'users':>7} {'outcomes':>9} "
            f"{'mean':>10}",
        ]
        for v in self.versions:
            weight = "-" if v.weight is None else f"{v.weight:g}%"
            mean = "-" if v.mean is None else f"{v.mean:.4g}"
            control = " (control)" if v.version == self.control else ""
            lines.append(
                f"  {v.version:<8} {weight:>7} {v.requests:>9} {v.users:>7} {v.outcomes:>9} "
                f"{mean:>10}{control}"
            )
        for c in self.comparisons:
            lines += comparison_lines(c, unit="per version", mde=self.mde, power=self.power)
        lines += ["", f"  {self.recommendation}: {self.summary}"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def check_metric(metric: object) -> str:
    """``feedback``, ``eval`` or ``online:EVALUATOR``."""
    if isinstance(metric, str) and (
        metric in METRICS or (metric.startswith(ONLINE) and len(metric) > len(ONLINE))
    ):
        return metric
    raise InvalidInput(
        f"Unknown metric {metric!r}: feedback (the requests' feedback), online:EVALUATOR "
        "(an online evaluator's score, like online:groundedness) or eval (eval-suite runs)"
    )


def _started(conn: Connection, name: str, label: str) -> tuple[int | None, Split | None, list[int]]:
    """When the label's latest A/B test started (the first of its run of split moves), its
    latest split, and every version its splits held since then (re-weighted or swapped);
    (None, None, []) when it never had one."""
    rows = conn.execute(
        select(llm_prompt_label_history.c.split, llm_prompt_label_history.c.created_at)
        .where(
            llm_prompt_label_history.c.name == name,
            llm_prompt_label_history.c.label == label,
            llm_prompt_label_history.c.kind != "blocked",
        )
        .order_by(llm_prompt_label_history.c.id)
    ).all()
    start: int | None = None
    latest: Split | None = None
    previous: Split | None = None
    held: list[int] = []
    for split_json, at in rows:
        split = load_split(split_json)
        if split is not None:
            latest = split
            if previous is None:
                start, held = int(at), []
            held += [v for v, _ in split if v not in held]
        previous = split
    return start, latest, held


def prompt_ab(
    name: str,
    label: str = "production",
    *,
    metric: str = "feedback",
    feedback_name: str = "user",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float | None = None,
    workspace: WorkspaceLike = None,
) -> PromptABReport:
    """Compare the versions ``NAME@LABEL`` is split between (see the module). ``since`` /
    ``until``: an aware datetime, ISO text or a duration back from now (``7d``); ``since``
    defaults to when the split started. ``mde`` (the smallest difference worth finding,
    in the metric's units) adds the planned sample that lets a test end with "no
    difference"."""
    import numpy as np

    from loopml.llm.reports import _ms

    check_name(name)
    check_label(label)
    metric = check_metric(metric)
    alpha = stats.check_alpha(alpha)
    power = stats.check_alpha(power, "power")
    if mde is not None:
        mde = stats.check_mde(mde)
    ws = resolve_workspace(workspace)
    since_ms, until_ms = _ms(since, "since"), _ms(until, "until")
    with ws.db.read() as conn:
        resolve(conn, PromptRef(name, label=label))  # PromptNotFound names the labels
        state = states_at(conn, name, None)[label]
        started, last_split, held = _started(conn, name, label)
        split = state.split or last_split
        if since_ms is None:
            since_ms = started
        control = state.version
        order = [control]
        for v in [*(v for v, _ in split or ()), *held]:
            if v not in order:
                order.append(v)
        refs = {f"{name}/{v}": v for v in order}
        made = _through(label)
        requests = _requests(conn, list(refs), made, since_ms, until_ms)
        binary: bool
        if metric == "eval":
            outcomes, timeline = _eval_outcomes(conn, refs)
            binary = True
        else:
            values = (
                _feedback(conn, list(refs), made, feedback_name, since_ms, until_ms)
                if metric == "feedback"
                else _online(conn, list(refs), made, metric[len(ONLINE) :], since_ms, until_ms)
            )
            outcomes = {v: [] for v in order}
            timeline = []
            for request_id, _, _, ref in requests:
                if request_id in values:
                    outcomes[refs[ref]].append(values[request_id])
                    timeline.append((refs[ref], values[request_id]))
            binary = all(y in (0.0, 1.0) for y in values.values())
    weights = dict(state.split or ())
    counts = {v: 0 for v in order}
    users: dict[int, set[str]] = {v: set() for v in order}
    for _, _, user, ref in requests:
        counts[refs[ref]] += 1
        if user:
            users[refs[ref]].add(user)
    versions = tuple(
        VersionOutcome(
            version=v,
            ref=f"{name}/{v}",
            weight=weights.get(v),
            requests=counts[v],
            users=len(users[v]),
            outcomes=len(outcomes[v]),
            mean=float(np.mean(outcomes[v])) if outcomes[v] else None,
            sd=float(np.std(outcomes[v], ddof=1)) if len(outcomes[v]) > 1 else None,
        )
        for v in order
    )
    comparisons = [
        compare_arms(
            control,
            v,
            outcomes[control],
            outcomes[v],
            timeline if metric != "eval" else None,  # eval runs have no request order
            binary=binary,
            alpha=alpha,
            power=power,
            mde=mde,
        )
        for v in order[1:]
    ]
    notes = []
    if split is None:
        notes.append(
            f"{name}@{label} was never split between versions: `loopml prompts split {name} "
            f"{label} {control}=50 VERSION=50` starts a test."
        )
    elif state.split is None:
        notes.append(
            f"{name}@{label} is no longer split (it points at {control}); this is its last test."
        )
    if metric == "eval":
        notes.append(
            "eval: every recorded eval-suite run of each version counts, whenever it ran; "
            "no sequential test (the cases are not in request order)."
        )
    if len(order) > 2:
        notes.append(
            f"{len(order) - 1} versions are each compared with {control}: with several "
            "comparisons, one may cross alpha by chance; a stricter alpha "
            f"(e.g. {alpha / (len(order) - 1):.3g}) keeps the overall rate."
        )
    recommendation, winner, summary = _summary(name, label, metric, comparisons, versions)
    return PromptABReport(
        name=name,
        label=label,
        metric=metric,
        split=state.split,
        control=control,
        since=_time(since_ms),
        until=_time(until_ms),
        alpha=alpha,
        power=power,
        mde=mde,
        versions=versions,
        comparisons=tuple(comparisons),
        recommendation=recommendation,
        summary=summary,
        winner=winner,
        notes=tuple(notes),
    )


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _window(query: Any, since_ms: int | None, until_ms: int | None) -> Any:
    if since_ms is not None:
        query = query.where(llm_requests.c.created_at >= since_ms)
    if until_ms is not None:
        query = query.where(llm_requests.c.created_at < until_ms)
    return query


def _through(label: str) -> ColumnElement[bool]:
    """Requests whose prompt was resolved through ``label`` (the A/B test's traffic), not
    those that named a version directly; rows logged before the label was recorded (NULL,
    schema 0021) count as the label's."""
    column = llm_requests.c.prompt_label
    return or_(column == label, column.is_(None))


def _requests(
    conn: Connection,
    refs: list[str],
    made: ColumnElement[bool],
    since_ms: int | None,
    until_ms: int | None,
) -> list[tuple[str, int, str | None, str]]:
    """(id, created_at, user, prompt) of the answered requests made from ``refs`` (as
    ``made`` says), oldest first."""
    query = select(
        llm_requests.c.id, llm_requests.c.created_at, llm_requests.c.user, llm_requests.c.prompt
    ).where(llm_requests.c.prompt.in_(refs), made, llm_requests.c.status < 400)
    query = _window(query, since_ms, until_ms).order_by(
        llm_requests.c.created_at, llm_requests.c.id
    )
    return [(r.id, int(r.created_at), r.user, r.prompt) for r in conn.execute(query)]


def _feedback(
    conn: Connection,
    refs: list[str],
    made: ColumnElement[bool],
    name: str,
    since_ms: int | None,
    until_ms: int | None,
) -> dict[str, float]:
    """Request id → its newest feedback ``name``."""
    query = (
        select(llm_feedback.c.request_id, llm_feedback.c.value)
        .join(llm_requests, llm_requests.c.id == llm_feedback.c.request_id)
        .where(llm_requests.c.prompt.in_(refs), made, llm_feedback.c.name == name)
    )
    query = _window(query, since_ms, until_ms).order_by(llm_feedback.c.id)
    return {r.request_id: float(r.value) for r in conn.execute(query)}


def _online(
    conn: Connection,
    refs: list[str],
    made: ColumnElement[bool],
    evaluator: str,
    since_ms: int | None,
    until_ms: int | None,
) -> dict[str, float]:
    """Request id → the online evaluator's score (judged ``ok``)."""
    query = (
        select(llm_online_evals.c.request_id, llm_online_evals.c.score)
        .join(llm_requests, llm_requests.c.id == llm_online_evals.c.request_id)
        .where(
            llm_requests.c.prompt.in_(refs),
            made,
            llm_online_evals.c.evaluator == evaluator,
            llm_online_evals.c.status == "ok",
            llm_online_evals.c.score.is_not(None),
        )
    )
    query = _window(query, since_ms, until_ms)
    return {
        r.request_id: float(r.score) for r in conn.execute(query) if math.isfinite(float(r.score))
    }


def _eval_outcomes(
    conn: Connection, refs: dict[str, int]
) -> tuple[dict[int, list[float]], list[tuple[int, float]]]:
    """Each version's eval cases as outcomes (1 passed, 0 not), from the ``passed`` and
    ``cases`` metrics of its recorded suite runs."""
    from loopml.tracking.tables import latest_metrics, runs, tags

    query = (
        select(tags.c.value, latest_metrics.c.key, latest_metrics.c.value)
        .join(runs, runs.c.id == tags.c.run_id)
        .join(latest_metrics, latest_metrics.c.run_id == tags.c.run_id)
        .where(
            tags.c.key == EVAL_TAG,
            tags.c.value.in_(list(refs)),
            runs.c.deleted_at.is_(None),
            latest_metrics.c.key.in_(["passed", "cases"]),
        )
        .order_by(runs.c.start_time, runs.c.id)
        .add_columns(runs.c.id)
    )
    per_run: dict[str, tuple[int, dict[str, float]]] = {}
    for ref, key, value, run_id in conn.execute(query):
        per_run.setdefault(run_id, (refs[ref], {}))[1][key] = float(value or 0)
    outcomes: dict[int, list[float]] = {v: [] for v in refs.values()}
    for version, figures in per_run.values():
        passed, cases = int(figures.get("passed", 0)), int(figures.get("cases", 0))
        outcomes[version] += [1.0] * passed + [0.0] * max(cases - passed, 0)
    return outcomes, []


def _summary(
    name: str,
    label: str,
    metric: str,
    comparisons: Sequence[Comparison],
    versions: Sequence[VersionOutcome],
) -> tuple[str, int | None, str]:
    end = f"`loopml prompts label {name} {label} VERSION` ends the test"
    if not comparisons or any(c.verdict == "not enough data" for c in comparisons):
        counts = ", ".join(f"{v.version}: {v.outcomes}" for v in versions)
        how = (
            "send feedback with the request ids (POST /v1/feedback or `loopml llm feedback`)"
            if metric == "feedback"
            else "wait for more outcomes"
        )
        return (
            "not enough data",
            None,
            f"too few outcomes to compare yet ({counts}; at least {MIN_OUTCOMES} per "
            f"version in a split of two or more): {how}.",
        )
    if any(c.verdict == "keep collecting" for c in comparisons):
        return "keep collecting", None, "not decided yet, keep the split running."
    better = [c for c in comparisons if c.verdict == "better"]
    means = {v.version: v.mean if v.mean is not None else -math.inf for v in versions}
    if better:
        best = max((int(c.treatment) for c in better), key=lambda v: means[v])
        return (
            "winner",
            best,
            f"{name}/{best} is better than {name}/{comparisons[0].control} on {metric}: "
            + end.replace("VERSION", str(best))
            + ".",
        )
    control = int(comparisons[0].control)
    if all(c.verdict == "worse" for c in comparisons):
        return (
            "winner",
            control,
            f"{name}/{control} (the control) is better than every other version on {metric}: "
            + end.replace("VERSION", str(control))
            + ".",
        )
    return (
        "no difference",
        None,
        f"no version differs from {name}/{control} by the minimum detectable effect on "
        f"{metric}; keep either: {end}.",
    )
