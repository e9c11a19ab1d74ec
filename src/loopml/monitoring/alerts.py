"""Alerts: the ``[[monitor.alerts]]`` rules evaluated over the computed windows, fired once,
resolved when their condition clears, and sent to their channels.

    changes = loopml.monitoring.alerts.evaluate("churn", workspace=ws)  # after `monitor run`
    loopml.monitoring.alerts.deliver_pending(workspace=ws)       # log, stdout, webhook, e-mail
    loopml.monitoring.alerts.list_alerts(open_only=True, workspace=ws)
    loopml.monitoring.alerts.ack(7, by="ana", workspace=ws)

**Firing.** For each rule and each deployment it matches, :func:`evaluate` walks the computed
windows (``monitor_windows`` with their ``monitor_metrics``) in start order. A rule with
``for = N`` fires when N consecutive non-empty windows satisfy its condition; an empty
window (no traffic) is skipped, neither firing nor clearing; a window where the condition
can't be evaluated (its metric is missing) breaks the run of windows but clears nothing.
Firing writes an ``alerts`` row, one ``alert_deliveries`` row per channel and an ``alert``
event (subject: the deployment) in one transaction, so the scheduler's
``on_event("alert", subject=...)`` triggers see it: that is how drift starts retraining.
The alert stays open until a window where the condition is false: then ``resolved_at`` is
set, its channels get a "resolved" notice and an ``alert.resolved`` event is written.

**Idempotent.** The state of a rule is replayed from its latest alert's firing window on
every call, so evaluating the same windows twice changes nothing, and a recomputed window
never duplicates an alert (an alert is known by its rule, deployment and window).

**Delivery.** :func:`deliver_pending` sends every notice not yet delivered: ``log`` (a line
on the ``loopml.monitoring.alerts`` logger), ``stdout`` (a line), ``webhook:URL`` (a JSON
POST, :func:`notice_payload`), ``email:ADDRESS`` (through ``[monitor] smtp_host``). Each
notice gets up to three attempts with a short backoff; a notice still failing is marked
``undelivered`` with its attempts and last error and retried on the next call, so none is
lost. Delivery is at least once: two processes delivering at the same moment may both send.
"""

from __future__ import annotations

import json
import logging
import smtplib
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, insert, select, text, update

from loopml import events
from loopml.exceptions import InvalidInput, NotFound
from loopml.monitoring.rules import PREDICTION, AlertRule, Condition, Outcome
from loopml.monitoring.tables import alert_deliveries, alerts, monitor_metrics, monitor_windows
from loopml.store.clock import now_ms, to_datetime
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from loopml.monitoring.settings import MonitorSettings
    from loopml.serving.deployments import Deployment

__all__ = [
    "Alert",
    "AlertChange",
    "AlertNotFound",
    "AlertRule",
    "Delivery",
    "ack",
    "deliver_pending",
    "deliveries",
    "evaluate",
    "get_alert",
    "list_alerts",
    "notice_payload",
    "notice_text",
]

logger = logging.getLogger(__name__)

#: PostgreSQL: evaluations of one (rule, deployment) hold this advisory lock (with the pair's
#: hash) so two concurrent `monitor run`s can't both fire the same alert.
_PG_ALERT_LOCK = 7215012
#: Attempts per delivery in one call, and the first pause between them (doubling).
ATTEMPTS = 3
BACKOFF = 0.25
#: Seconds a webhook or SMTP server gets to answer.
TIMEOUT = 10.0

Notice = Literal["fired", "resolved"]
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class AlertNotFound(NotFound):
    """No alert with that id."""


@dataclass(frozen=True)
class Alert:
    """One firing of a rule on a deployment: open until :attr:`resolved_at`."""

    id: int
    rule: str
    deployment: str
    severity: str
    condition: str
    value: float | None
    message: str
    window_start: datetime
    window_end: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None

    @property
    def open(self) -> bool:
        """Whether the condition still holds (not resolved)."""
        return self.resolved_at is None

    @property
    def status(self) -> str:
        """``firing``, ``acked`` (firing, acknowledged) or ``resolved``."""
        if self.resolved_at is not None:
            return "resolved"
        return "acked" if self.acked_at is not None else "firing"

    @classmethod
    def from_row(cls, row: Any) -> Alert:
        return cls(
            id=int(row.id),
            rule=row.rule,
            deployment=row.deployment,
            severity=row.severity,
            condition=row.condition,
            value=row.value,
            message=row.message,
            window_start=_datetime(row.window_start),
            window_end=_datetime(row.window_end),
            fired_at=_datetime(row.fired_at),
            resolved_at=to_datetime(row.resolved_at),
            acked_at=to_datetime(row.acked_at),
            acked_by=row.acked_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; times as ISO 8601 with their offset."""
        return {
            "id": self.id,
            "rule": self.rule,
            "deployment": self.deployment,
            "severity": self.severity,
            "status": self.status,
            "condition": self.condition,
            "value": self.value,
            "message": self.message,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "fired_at": self.fired_at.isoformat(),
            "resolved_at": _iso(self.resolved_at),
            "acked_at": _iso(self.acked_at),
            "acked_by": self.acked_by,
        }


@dataclass(frozen=True)
class AlertChange:
    """What :func:`evaluate` did: an alert ``fired`` or ``resolved`` at a window."""

    kind: Notice
    alert: Alert
    window_start: datetime
    window_end: datetime
    value: float | None


@dataclass(frozen=True)
class Delivery:
    """One notice of an alert to one channel, and how sending it went."""

    id: int
    alert_id: int
    channel: str
    notice: Notice
    status: str  # pending | delivered | undelivered
    attempts: int
    last_error: str | None
    updated_at: datetime


def _datetime(ms: int) -> datetime:
    value = to_datetime(ms)
    assert value is not None
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _ms(value: datetime | int | None) -> int:
    if value is None:
        return now_ms()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(
                f"now={value!r} has no time zone: pass an aware datetime "
                "(datetime.now(UTC)) so the windows it closes are unambiguous."
            )
        return int(value.timestamp() * 1000)
    return int(value)


# -- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    id: int
    start_at: int
    end_at: int
    empty: bool


def check_rule_features(deployment: Deployment, *, workspace: WorkspaceLike = None) -> None:
    """Check the ``[[monitor.alerts]]`` rules that apply to ``deployment`` and name one
    feature (``psi[monthly] > 0.2``) against the reference profiles of the versions it
    serves: a feature that none of them has would never fire. A rule that names this
    deployment raises :class:`InvalidAlertRule` (with "did you mean"); one that matches it
    by a glob (``"*"``) may be meant for other deployments' models, so it warns.

    Nothing is checked when no served version has a reference (its windows carry no drift).
    """
    import difflib
    import warnings

    from loopml.exceptions import LoopmlWarning
    from loopml.monitoring.profile import get_reference
    from loopml.monitoring.rules import InvalidAlertRule

    ws = resolve_workspace(workspace)
    named = [
        rule
        for rule in ws.settings.monitor.alerts
        if rule.matches(deployment.name) and rule.condition.feature not in (None, "", PREDICTION)
    ]
    if not named:
        return
    columns: dict[str, None] = {}
    labels = []
    for variant in deployment.variants:
        try:
            version = ws.models.get(variant.model)
        except (NotFound, InvalidInput):
            continue
        reference = get_reference(version.name, version.version, workspace=ws)
        if reference is None:
            continue
        labels.append(f"{version.name}/{version.version}")
        columns.update(dict.fromkeys(reference.profile.features))
    if not labels:
        return
    for rule in named:
        condition = rule.condition
        feature = condition.feature or ""
        if feature in columns:
            continue
        close = difflib.get_close_matches(feature, list(columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        where = " and ".join(dict.fromkeys(labels))
        message = (
            f'[[monitor.alerts]] "{rule.name}": when = "{rule.when}" names feature '
            f"{feature!r}, which the reference of {where} (served by {deployment.name!r}) "
            f"doesn't have: it has {', '.join(columns)}{hint}"
        )
        if rule.deployment == deployment.name:
            raise InvalidAlertRule(message)
        warnings.warn(
            f"{message} The rule matches {deployment.name!r} by {rule.deployment!r}; for "
            "this deployment it never fires.",
            LoopmlWarning,
            stacklevel=2,
        )


def evaluate(
    deployment: str | None = None,
    *,
    now: datetime | int | None = None,
    rules: Iterable[AlertRule] | None = None,
    workspace: WorkspaceLike = None,
) -> list[AlertChange]:
    """Fire and resolve the alerts of every rule over the windows computed so far (those
    that ended by ``now``), for ``deployment`` or every deployment with windows.

    ``rules`` defaults to ``[[monitor.alerts]]`` of the workspace's settings. Returns what
    changed, in window order; running it again over the same windows returns nothing.
    """
    ws = resolve_workspace(workspace)
    rules = tuple(ws.settings.monitor.alerts if rules is None else rules)
    at = _ms(now)
    if not rules:
        return []
    stmt = select(monitor_windows.c.deployment).distinct().order_by(monitor_windows.c.deployment)
    if deployment is not None:
        stmt = stmt.where(monitor_windows.c.deployment == deployment)
    with ws.db.read() as conn:
        names = [row.deployment for row in conn.execute(stmt)]
    changes: list[AlertChange] = []
    for name in names:
        for rule in rules:
            if rule.matches(name):
                changes.extend(ws.db.transact(partial(_replay, rule=rule, deployment=name, at=at)))
    changes.sort(key=lambda change: (change.window_end, change.alert.id))
    return changes


def _replay(conn: Connection, *, rule: AlertRule, deployment: str, at: int) -> list[AlertChange]:
    """Walk ``deployment``'s windows for ``rule`` from its latest alert's window, firing and
    resolving as the windows say; the stored alerts make the walk idempotent."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"{rule.name}\0{deployment}".encode()) - 2**31
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _PG_ALERT_LOCK, "b": key})
    latest_row = conn.execute(
        select(alerts)
        .where(alerts.c.rule == rule.name, alerts.c.deployment == deployment)
        .order_by(alerts.c.window_start.desc(), alerts.c.id.desc())
        .limit(1)
    ).first()
    latest = Alert.from_row(latest_row) if latest_row is not None else None
    after = latest_row.window_start if latest_row is not None else None
    windows = _windows(conn, deployment, after, at)
    if not windows:
        return []
    metrics = _metrics(conn, rule.condition, deployment, after, at)
    condition = rule.condition
    # The walk starts right after the latest alert's firing window, in the state that
    # firing left: "firing" (whether or not that alert has been resolved since).
    firing: Alert | None = latest
    streak = 0
    changes: list[AlertChange] = []
    for window in windows:
        if window.empty:
            continue
        outcome = condition.evaluate(metrics.get(window.id, {}))
        if firing is not None:
            if outcome is None or outcome.holds:
                continue
            if firing.open:
                changes.append(_resolve(conn, rule, firing, window, outcome))
            firing, streak = None, 0
            continue
        streak = streak + 1 if outcome is not None and outcome.holds else 0
        if outcome is not None and streak >= rule.for_windows:
            change = _fire(conn, rule, deployment, window, outcome)
            changes.append(change)
            firing, streak = change.alert, 0
    return changes


def _windows(conn: Connection, deployment: str, after: int | None, at: int) -> list[_Window]:
    stmt = (
        select(
            monitor_windows.c.id,
            monitor_windows.c.start_at,
            monitor_windows.c.end_at,
            monitor_windows.c.status,
        )
        .where(monitor_windows.c.deployment == deployment, monitor_windows.c.end_at <= at)
        .order_by(monitor_windows.c.start_at, monitor_windows.c.end_at)
    )
    if after is not None:
        stmt = stmt.where(monitor_windows.c.start_at > after)
    return [
        _Window(int(r.id), int(r.start_at), int(r.end_at), r.status == "empty")
        for r in conn.execute(stmt)
    ]


def _metrics(
    conn: Connection, condition: Condition, deployment: str, after: int | None, at: int
) -> dict[int, dict[str, dict[str, float | None]]]:
    """``{window id: {feature: {metric: value}}}`` of the one metric ``condition`` reads."""
    stmt = (
        select(monitor_metrics.c.window_id, monitor_metrics.c.feature, monitor_metrics.c.value)
        .join(monitor_windows, monitor_windows.c.id == monitor_metrics.c.window_id)
        .where(
            monitor_windows.c.deployment == deployment,
            monitor_windows.c.end_at <= at,
            monitor_metrics.c.metric == condition.metric,
        )
    )
    if after is not None:
        stmt = stmt.where(monitor_windows.c.start_at > after)
    if condition.features is not None:
        stmt = stmt.where(monitor_metrics.c.feature == condition.features)
    else:
        stmt = stmt.where(monitor_metrics.c.feature.not_in(["", PREDICTION]))
    found: dict[int, dict[str, dict[str, float | None]]] = {}
    for row in conn.execute(stmt):
        found.setdefault(int(row.window_id), {})[row.feature] = {condition.metric: row.value}
    return found


def _describe(rule: AlertRule, outcome: Outcome) -> str:
    condition = rule.condition
    what = condition.metric
    if condition.aggregate == "mean":
        what = f"mean {condition.metric}"
    elif outcome.feature == PREDICTION:
        what = f"{condition.metric} of the predictions"
    elif outcome.feature:
        what = f"{condition.metric} of {outcome.feature}"
    return f"{what} = {outcome.value:.4g}"


def _fire(
    conn: Connection, rule: AlertRule, deployment: str, window: _Window, outcome: Outcome
) -> AlertChange:
    at = now_ms()
    windows = f"for {rule.for_windows} windows" if rule.for_windows > 1 else "in the window"
    message = (
        f"{rule.name} on {deployment}: {rule.condition} {windows} ending "
        f"{_datetime(window.end_at).isoformat()} ({_describe(rule, outcome)})"
    )
    row = {
        "rule": rule.name,
        "deployment": deployment,
        "severity": rule.severity,
        "condition": str(rule.condition),
        "value": outcome.value,
        "message": message,
        "window_start": window.start_at,
        "window_end": window.end_at,
        "fired_at": at,
    }
    key = conn.execute(insert(alerts).values(**row)).inserted_primary_key
    assert key is not None
    alert = Alert.from_row(conn.execute(select(alerts).where(alerts.c.id == int(key[0]))).one())
    _queue(conn, alert.id, rule.channels, "fired", at)
    events.emit(conn, "alert", deployment, _payload(alert, window, outcome.value))
    return AlertChange("fired", alert, alert.window_start, alert.window_end, outcome.value)


def _resolve(
    conn: Connection, rule: AlertRule, alert: Alert, window: _Window, outcome: Outcome
) -> AlertChange:
    at = now_ms()
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert.id, alerts.c.resolved_at.is_(None))
        .values(resolved_at=at)
    )
    row = conn.execute(select(alerts).where(alerts.c.id == alert.id)).one()
    resolved = Alert.from_row(row)
    _queue(conn, alert.id, rule.channels, "resolved", at)
    events.emit(conn, "alert.resolved", alert.deployment, _payload(resolved, window, outcome.value))
    return AlertChange(
        "resolved",
        resolved,
        _datetime(window.start_at),
        _datetime(window.end_at),
        outcome.value,
    )


def _payload(alert: Alert, window: _Window, value: float | None) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "condition": alert.condition,
        "value": value,
        "window_start": _datetime(window.start_at).isoformat(),
        "window_end": _datetime(window.end_at).isoformat(),
    }


def _queue(
    conn: Connection, alert_id: int, channels: Sequence[str], notice: Notice, at: int
) -> None:
    for channel in channels:
        conn.execute(
            insert(alert_deliveries).values(
                alert_id=alert_id,
                channel=channel,
                notice=notice,
                status="pending",
                attempts=0,
                last_error=None,
                updated_at=at,
            )
        )


# -- delivery --------------------------------------------------------------------------------


def notice_text(alert: Alert, notice: Notice) -> str:
    """The one line a channel shows for a notice."""
    if notice == "resolved":
        return (
            f"[RESOLVED] {alert.rule} on {alert.deployment}: {alert.condition} cleared "
            f"(alert {alert.id}, fired {alert.fired_at.isoformat()})"
        )
    return f"[{alert.severity.upper()}] {alert.message} (alert {alert.id})"


def notice_payload(alert: Alert, notice: Notice) -> dict[str, Any]:
    """What a webhook receives: ``notice`` (``fired`` or ``resolved``), ``text`` and the
    alert (:meth:`Alert.to_dict`)."""
    return {"notice": notice, "text": notice_text(alert, notice), "alert": alert.to_dict()}


def deliver_pending(
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    workspace: WorkspaceLike = None,
) -> int:
    """Send every notice not yet delivered (pending, or undelivered on an earlier call);
    returns how many were delivered now. Each gets ``attempts`` tries ``backoff`` seconds
    apart (doubling); one still failing stays ``undelivered`` for the next call."""
    ws = resolve_workspace(workspace)
    settings = ws.settings.monitor
    stmt = (
        select(
            alerts,
            alert_deliveries.c.id.label("delivery_id"),
            alert_deliveries.c.channel,
            alert_deliveries.c.notice,
        )
        .join(alerts, alerts.c.id == alert_deliveries.c.alert_id)
        .where(alert_deliveries.c.status.in_(["pending", "undelivered"]))
        .order_by(alert_deliveries.c.id)
    )
    with ws.db.read() as conn:
        rows = conn.execute(stmt).all()
    delivered = 0
    for row in rows:
        alert = Alert.from_row(row)
        tries, error = 0, None
        for tries in range(1, max(1, attempts) + 1):
            try:
                _send(row.channel, alert, row.notice, settings)
                error = None
                break
            except Exception as exc:  # a channel's failure is recorded, never raised
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if tries < attempts:
                    time.sleep(backoff * 2 ** (tries - 1))
        status = "delivered" if error is None else "undelivered"
        delivered += error is None
        if error is not None:
            logger.warning(
                "alert %s: the %s notice to %s was not delivered after %d attempts (%s); "
                "it is retried on the next delivery",
                alert.id,
                row.notice,
                row.channel,
                tries,
                error,
            )
        ws.db.transact(
            partial(_record, delivery_id=row.delivery_id, status=status, tries=tries, error=error)
        )
    return delivered


def _record(
    conn: Connection, *, delivery_id: int, status: str, tries: int, error: str | None
) -> None:
    conn.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.id == delivery_id)
        .values(
            status=status,
            attempts=alert_deliveries.c.attempts + tries,
            last_error=error,
            updated_at=now_ms(),
        )
    )


def _send(channel: str, alert: Alert, notice: Notice, settings: MonitorSettings) -> None:
    if channel == "log":
        level = logging.INFO if notice == "resolved" else _LEVELS.get(alert.severity, 30)
        logger.log(level, "%s", notice_text(alert, notice))
    elif channel == "stdout":
        print(notice_text(alert, notice), file=sys.stdout, flush=True)
    elif channel.startswith("webhook:"):
        _post(channel.removeprefix("webhook:"), notice_payload(alert, notice))
    elif channel.startswith("email:"):
        _mail(channel.removeprefix("email:"), alert, notice, settings)
    else:
        raise ValueError(f"unknown channel {channel!r}: use log, stdout, webhook:URL or email:ADDR")


def _post(url: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "loopml-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"{url}: {exc.reason}") from None


def _mail(address: str, alert: Alert, notice: Notice, settings: MonitorSettings) -> None:
    if not settings.smtp_host:
        raise OSError("no SMTP server: set [monitor] smtp_host (or LOOPML_MONITOR_SMTP_HOST)")
    message = EmailMessage()
    state = "resolved" if notice == "resolved" else alert.severity.upper()
    message["Subject"] = f"[loopml] {state}: {alert.rule} on {alert.deployment}"
    message["From"] = settings.smtp_from
    message["To"] = address
    lines = [notice_text(alert, notice), ""]
    lines += [f"{key}: {value}" for key, value in alert.to_dict().items() if value is not None]
    message.set_content("\n".join(lines) + "\n")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


# -- reading and acknowledging ---------------------------------------------------------------


def list_alerts(
    *,
    deployment: str | None = None,
    open_only: bool = False,
    since: datetime | None = None,
    workspace: WorkspaceLike = None,
) -> list[Alert]:
    """Alerts, newest first: of ``deployment``, only the unresolved ones (``open_only``),
    fired at or after ``since``."""
    ws = resolve_workspace(workspace)
    stmt = select(alerts).order_by(alerts.c.fired_at.desc(), alerts.c.id.desc())
    if deployment is not None:
        stmt = stmt.where(alerts.c.deployment == deployment)
    if open_only:
        stmt = stmt.where(alerts.c.resolved_at.is_(None))
    if since is not None:
        stmt = stmt.where(alerts.c.fired_at >= _ms(since))
    with ws.db.read() as conn:
        return [Alert.from_row(row) for row in conn.execute(stmt)]


def get_alert(
    alert_id: int,
    *,
    workspace: WorkspaceLike = None,
) -> Alert:
    """Alert ``alert_id``; :class:`AlertNotFound` when there is none."""
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        return _get(conn, alert_id)


def _get(conn: Connection, alert_id: int) -> Alert:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise AlertNotFound(
            f"No alert {alert_id}: `loopml alerts list` shows the alerts and their ids."
        )
    return Alert.from_row(row)


def ack(
    alert_id: int,
    *,
    by: str | None = None,
    workspace: WorkspaceLike = None,
) -> Alert:
    """Acknowledge alert ``alert_id`` (someone is on it): it stays open until its condition
    clears, but shows as ``acked``. Acknowledging twice keeps the first."""
    ws = resolve_workspace(workspace)
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise InvalidInput(f"An alert id is a whole number, got {alert_id!r}.")
    who = by or _actor()

    def tx(conn: Connection) -> Alert:
        _get(conn, alert_id)
        conn.execute(
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.acked_at.is_(None))
            .values(acked_at=now_ms(), acked_by=who)
        )
        return _get(conn, alert_id)

    return ws.db.transact(tx)


def _actor() -> str:
    from loopml.registry.versions import actor

    return actor()


def deliveries(
    alert_id: int | None = None,
    *,
    workspace: WorkspaceLike = None,
) -> list[Delivery]:
    """The notices of ``alert_id`` (or of every alert), oldest first, with how they went."""
    ws = resolve_workspace(workspace)
    stmt = select(alert_deliveries).order_by(alert_deliveries.c.id)
    if alert_id is not None:
        stmt = stmt.where(alert_deliveries.c.alert_id == alert_id)
    with ws.db.read() as conn:
        return [
            Delivery(
                id=int(r.id),
                alert_id=int(r.alert_id),
                channel=r.channel,
                notice=r.notice,
                status=r.status,
                attempts=int(r.attempts),
                last_error=r.last_error,
                updated_at=_datetime(r.updated_at),
            )
            for r in conn.execute(stmt)
        ]
