"""Alerts over stored windows: firing once after ``for`` windows, staying open, resolving,
firing again; empty windows; idempotence; deliveries to a real HTTP server and a real SMTP
server on 127.0.0.1 (down, then up: never lost); the ``alert`` event starting a pipeline."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from loopml import events
from loopml.monitoring import alerts as al
from loopml.monitoring.alerts import AlertNotFound, AlertRule
from loopml.monitoring.settings import MonitorSettings
from loopml.monitoring.tables import alert_deliveries, monitor_metrics, monitor_windows
from loopml.workspace import Workspace

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = 3_600_000
NOW = T0 + timedelta(days=30)

Metrics = dict[tuple[str, str], float | None]


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def add_window(
    ws: Workspace,
    index: int,
    metrics: Metrics | None = None,
    *,
    deployment: str = "churn",
    empty: bool = False,
) -> int:
    """Store window ``index`` (hours after T0) as `loopml monitor run` does, replacing a
    window of the same span: its row and ``{(feature, metric): value}``."""
    start = ms(T0) + index * HOUR

    def tx(conn: Any) -> int:
        conn.execute(
            delete(monitor_windows).where(
                monitor_windows.c.deployment == deployment, monitor_windows.c.start_at == start
            )
        )
        key = conn.execute(
            insert(monitor_windows).values(
                deployment=deployment,
                start_at=start,
                end_at=start + HOUR,
                rows=0 if empty else 100,
                status="empty" if empty else "ok",
                computed_at=start + HOUR,
            )
        ).inserted_primary_key
        window_id = int(key[0])
        for (feature, metric), value in (metrics or {}).items():
            conn.execute(
                insert(monitor_metrics).values(
                    window_id=window_id, feature=feature, metric=metric, value=value
                )
            )
        return window_id

    return ws.db.transact(tx)


def drift(psi: float) -> Metrics:
    return {("age", "psi"): psi, ("fee", "psi"): 0.01, ("", "error_rate"): 0.0}


def with_rules(ws: Workspace, *rules: AlertRule, **smtp: Any) -> Workspace:
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=rules, **smtp))
    return ws


RULE = AlertRule("input drift", "max(psi) > 0.25", deployment="churn", for_windows=2)


def kinds(changes: list[al.AlertChange]) -> list[tuple[str, int, str]]:
    """(kind, alert id, window start as hours after T0)."""
    return [(c.kind, c.alert.id, f"+{(ms(c.window_start) - ms(T0)) // HOUR}h") for c in changes]


@pytest.fixture
def aws(workspace_factory: Callable[..., Workspace]) -> Workspace:
    return with_rules(workspace_factory("sqlite-file"), RULE)


def test_fires_once_stays_open_resolves_and_fires_again(ws: Workspace) -> None:
    with_rules(ws, RULE)
    add_window(ws, 0, drift(0.4))
    assert al.evaluate(now=NOW, workspace=ws) == []  # one window of two
    add_window(ws, 1, drift(0.5))
    fired = al.evaluate(now=NOW, workspace=ws)
    assert kinds(fired) == [("fired", fired[0].alert.id, "+1h")]
    alert = fired[0].alert
    assert (alert.rule, alert.deployment, alert.severity, alert.open) == (
        "input drift",
        "churn",
        "warning",
        True,
    )
    assert alert.value == 0.5 and alert.condition == "max(psi) > 0.25"
    assert alert.window_start == T0 + timedelta(hours=1)
    assert "psi of age = 0.5" in alert.message and "for 2 windows" in alert.message
    assert al.evaluate(now=NOW, workspace=ws) == []  # idempotent

    add_window(ws, 2, drift(0.6))  # still drifted: stays open, no second alert
    assert al.evaluate(now=NOW, workspace=ws) == []
    add_window(ws, 3, drift(0.1))
    resolved = al.evaluate(now=NOW, workspace=ws)
    assert kinds(resolved) == [("resolved", alert.id, "+3h")]
    assert resolved[0].alert.resolved_at is not None and not resolved[0].alert.open
    assert al.evaluate(now=NOW, workspace=ws) == []

    add_window(ws, 4, drift(0.3))
    add_window(ws, 5, drift(0.1))  # one window over is not two
    add_window(ws, 6, drift(0.3))
    add_window(ws, 7, drift(0.35))
    again = al.evaluate(now=NOW, workspace=ws)
    assert [(c.kind, f"{c.window_start:%H}") for c in again] == [("fired", "07")]
    assert again[0].alert.id != alert.id
    assert [a.id for a in al.list_alerts(workspace=ws)] == [again[0].alert.id, alert.id]

    stored = events.read(ws.db, kinds=["alert", "alert.resolved"])
    assert [(e.kind, e.subject, e.payload["alert_id"]) for e in stored] == [  # type: ignore[index]
        ("alert", "churn", alert.id),
        ("alert.resolved", "churn", alert.id),
        ("alert", "churn", again[0].alert.id),
    ]
    assert stored[0].payload == {
        "alert_id": alert.id,
        "rule": "input drift",
        "severity": "warning",
        "condition": "max(psi) > 0.25",
        "value": 0.5,
        "window_start": "2026-11-01T01:00:00+00:00",
        "window_end": "2026-11-01T02:00:00+00:00",
    }
    assert set(stored[0].payload or {}) == set(events.KINDS["alert"].payload)


def test_all_windows_at_once_give_the_same_history(aws: Workspace) -> None:
    for i, psi in enumerate([0.4, 0.5, 0.6, 0.1, 0.3, 0.35, 0.4]):
        add_window(aws, i, drift(psi))
    changes = al.evaluate(now=NOW, workspace=aws)
    assert [(c.kind, f"{c.window_start:%H}") for c in changes] == [
        ("fired", "01"),
        ("resolved", "03"),
        ("fired", "05"),
    ]
    assert al.evaluate(now=NOW, workspace=aws) == []


def test_empty_windows_neither_fire_nor_resolve(aws: Workspace) -> None:
    add_window(aws, 0, drift(0.4))
    add_window(aws, 1, empty=True)  # no traffic: skipped, the run of windows goes on
    add_window(aws, 2, drift(0.4))
    assert [c.kind for c in al.evaluate(now=NOW, workspace=aws)] == ["fired"]
    add_window(aws, 3, empty=True)
    add_window(aws, 4, empty=True)
    assert al.evaluate(now=NOW, workspace=aws) == []
    assert al.list_alerts(open_only=True, workspace=aws)  # still open
    only_empty = with_rules(aws, AlertRule("quiet", "error_rate > 0.5", deployment="fraud"))
    for i in range(3):
        add_window(only_empty, i, deployment="fraud", empty=True)
    assert al.evaluate("fraud", now=NOW, workspace=only_empty) == []


def test_a_missing_metric_neither_fires_nor_resolves(aws: Workspace) -> None:
    with_rules(aws, AlertRule("age drift", "psi[age] > 0.25", for_windows=2))
    add_window(aws, 0, drift(0.4))
    add_window(aws, 1, {("fee", "psi"): 0.9})  # age is missing: breaks the run
    add_window(aws, 2, drift(0.4))
    assert al.evaluate(now=NOW, workspace=aws) == []
    add_window(aws, 3, drift(0.4))
    assert [c.kind for c in al.evaluate(now=NOW, workspace=aws)] == ["fired"]
    add_window(aws, 4, {("age", "psi"): None})  # NaN: not evaluable, does not clear
    assert al.evaluate(now=NOW, workspace=aws) == []
    add_window(aws, 5, drift(0.0))
    assert [c.kind for c in al.evaluate(now=NOW, workspace=aws)] == ["resolved"]


def test_recomputed_windows_and_open_windows(aws: Workspace) -> None:
    add_window(aws, 0, drift(0.4))
    add_window(aws, 1, drift(0.4))
    assert (
        al.evaluate(now=T0 + timedelta(hours=1), workspace=aws) == []
    )  # window 1 hasn't ended by then
    assert len(al.evaluate(now=NOW, workspace=aws)) == 1
    add_window(aws, 0, drift(0.45))  # rerunning windows replaces their rows (new ids)
    add_window(aws, 1, drift(0.45))
    assert al.evaluate(now=NOW, workspace=aws) == []
    assert len(al.list_alerts(workspace=aws)) == 1


def test_rules_match_deployments_by_name_or_glob(aws: Workspace) -> None:
    with_rules(
        aws,
        AlertRule("latency", "p99_ms > 250", deployment="churn-*", severity="critical"),
        AlertRule("errors", "error_rate > 0.02"),
    )
    for name in ("churn-eu", "churn-us", "fraud"):
        add_window(aws, 0, {("", "p99_ms"): 300.0, ("", "error_rate"): 0.01}, deployment=name)
    assert al.evaluate("fraud", now=NOW, workspace=aws) == []
    fired = al.evaluate(now=NOW, workspace=aws)
    assert sorted((c.alert.deployment, c.alert.rule, c.alert.severity) for c in fired) == [
        ("churn-eu", "latency", "critical"),
        ("churn-us", "latency", "critical"),
    ]
    assert [a.deployment for a in al.list_alerts(deployment="churn-us", workspace=aws)] == [
        "churn-us"
    ]


def test_ack_list_and_unknown_ids(aws: Workspace) -> None:
    add_window(aws, 0, drift(0.4))
    add_window(aws, 1, drift(0.4))
    (change,) = al.evaluate(now=NOW, workspace=aws)
    acked = al.ack(change.alert.id, by="ana", workspace=aws)
    assert (acked.status, acked.acked_by, acked.open) == ("acked", "ana", True)
    assert al.ack(change.alert.id, by="bo", workspace=aws).acked_by == "ana"  # the first ack stays
    assert al.list_alerts(open_only=True, workspace=aws)[0].status == "acked"
    assert al.list_alerts(since=datetime.now(UTC) + timedelta(hours=1), workspace=aws) == []
    with pytest.raises(AlertNotFound, match="No alert 999: `loopml alerts list`"):
        al.ack(999, workspace=aws)
    add_window(aws, 2, drift(0.0))
    al.evaluate(now=NOW, workspace=aws)
    assert al.list_alerts(open_only=True, workspace=aws) == []
    assert al.list_alerts(workspace=aws)[0].to_dict()["status"] == "resolved"


# -- deliveries ------------------------------------------------------------------------------


class Hook:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ml"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def fire(ws: Workspace, *channels: str) -> al.Alert:
    rule = AlertRule("errors", "error_rate > 0.02", severity="critical", channels=channels)
    ws.settings = ws.settings.with_overrides(
        monitor=replace(ws.settings.monitor, alerts=(rule,), smtp_from="loopml@example.com")
    )
    add_window(ws, 0, {("", "error_rate"): 0.05})
    (change,) = al.evaluate(now=NOW, workspace=ws)
    return change.alert


def test_webhook_gets_the_alert_as_json(aws: Workspace, hook: Hook) -> None:
    alert = fire(aws, f"webhook:{hook.url}")
    assert al.deliver_pending(workspace=aws) == 1
    assert al.deliver_pending(workspace=aws) == 0  # delivered once
    (body,) = hook.bodies
    assert body["notice"] == "fired" and body["text"].startswith("[CRITICAL] errors on churn")
    assert body["alert"] == {**alert.to_dict(), "status": "firing"}
    assert body["alert"]["window_start"] == "2026-11-01T00:00:00+00:00"
    add_window(aws, 1, {("", "error_rate"): 0.0})
    assert [c.kind for c in al.evaluate(now=NOW, workspace=aws)] == ["resolved"]
    assert al.deliver_pending(workspace=aws) == 1
    assert hook.bodies[1]["notice"] == "resolved" and hook.bodies[1]["alert"]["resolved_at"]
    assert [(d.notice, d.status, d.attempts) for d in al.deliveries(alert.id, workspace=aws)] == [
        ("fired", "delivered", 1),
        ("resolved", "delivered", 1),
    ]


def test_a_webhook_that_is_down_is_retried_on_the_next_call(aws: Workspace, hook: Hook) -> None:
    hook.status = 503
    alert = fire(aws, f"webhook:{hook.url}", "log")
    assert al.deliver_pending(backoff=0.01, workspace=aws) == 1  # the log line went out
    (down,) = [d for d in al.deliveries(alert.id, workspace=aws) if d.channel != "log"]
    assert (down.status, down.attempts) == ("undelivered", 3)
    assert down.last_error is not None and "HTTP 503" in down.last_error
    assert len(hook.bodies) == 3
    hook.status = 200
    assert al.deliver_pending(backoff=0.01, workspace=aws) == 1
    (up,) = [d for d in al.deliveries(alert.id, workspace=aws) if d.channel != "log"]
    assert (up.status, up.attempts, up.last_error) == ("delivered", 4, None)
    assert len(hook.bodies) == 4 and al.deliver_pending(workspace=aws) == 0


def test_a_webhook_nobody_listens_on(aws: Workspace, hook: Hook) -> None:
    url = hook.url
    hook.close()  # connection refused
    alert = fire(aws, f"webhook:{url}")
    assert al.deliver_pending(backoff=0.01, workspace=aws) == 0
    (delivery,) = al.deliveries(alert.id, workspace=aws)
    assert delivery.status == "undelivered" and "refused" in (delivery.last_error or "").lower()


def test_log_and_stdout(
    aws: Workspace, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    alert = fire(aws, "log", "stdout")
    with caplog.at_level(logging.INFO, logger="loopml.monitoring.alerts"):
        assert al.deliver_pending(workspace=aws) == 2
    (record,) = caplog.records
    assert record.levelno == logging.CRITICAL
    assert record.getMessage() == f"[CRITICAL] {alert.message} (alert {alert.id})"
    assert capsys.readouterr().out == f"[CRITICAL] {alert.message} (alert {alert.id})\n"


def start_smtp(**options: Any) -> tuple[Any, Any]:
    """A real SMTP server (aiosmtpd) on a free 127.0.0.1 port: (inbox, controller)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Inbox(Message):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[Any] = []

        def handle_message(self, message: Any) -> None:
            self.messages.append(message)

    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        inbox.port = probe.getsockname()[1]  # type: ignore[attr-defined]
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **options)  # type: ignore[attr-defined]
    controller.start()
    return inbox, controller


@pytest.fixture
def smtp() -> Iterator[Any]:
    inbox, controller = start_smtp()
    yield inbox
    controller.stop()


def test_email_through_a_real_smtp_server(
    workspace_factory: Callable[..., Workspace], smtp: Any
) -> None:
    ws = workspace_factory("sqlite-file")
    ws.settings = ws.settings.with_overrides(
        monitor=MonitorSettings(smtp_host="127.0.0.1", smtp_port=smtp.port)
    )
    alert = fire(ws, "email:oncall@example.com")
    assert al.deliver_pending(workspace=ws) == 1
    (message,) = smtp.messages
    assert message["To"] == "oncall@example.com" and message["From"] == "loopml@example.com"
    assert message["Subject"] == "[loopml] CRITICAL: errors on churn"
    body = message.get_payload(decode=True).decode()
    assert f"[CRITICAL] {alert.message} (alert {alert.id})" in body
    assert "window_start: 2026-11-01T00:00:00+00:00" in body


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_with_a_login(workspace_factory: Callable[..., Workspace]) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        assert isinstance(auth, LoginPassword)
        logins.append((auth.login, auth.password))
        return AuthResult(success=auth.password == b"s3cret")

    inbox, controller = start_smtp(
        authenticator=authenticate, auth_required=True, auth_require_tls=False
    )
    try:
        ws = workspace_factory("sqlite-file")
        settings = {"smtp_host": "127.0.0.1", "smtp_port": inbox.port, "smtp_user": "loopml"}
        ws.settings = ws.settings.with_overrides(
            monitor=MonitorSettings(**settings, smtp_password="s3cret")
        )
        fire(ws, "email:oncall@example.com")
        assert al.deliver_pending(workspace=ws) == 1 and len(inbox.messages) == 1
        assert logins[-1] == (b"loopml", b"s3cret")
    finally:
        controller.stop()


def test_email_to_a_server_that_is_down(workspace_factory: Callable[..., Workspace]) -> None:
    ws = workspace_factory("sqlite-file")
    ws.settings = ws.settings.with_overrides(
        monitor=MonitorSettings(smtp_host="127.0.0.1", smtp_port=1)
    )
    alert = fire(ws, "email:oncall@example.com")
    assert al.deliver_pending(backoff=0.01, workspace=ws) == 0
    (delivery,) = al.deliveries(alert.id, workspace=ws)
    assert (delivery.status, delivery.attempts) == ("undelivered", 3)
    with ws.db.read() as conn:
        assert conn.execute(select(alert_deliveries.c.status)).scalars().all() == ["undelivered"]


# -- the loop: an alert starts retraining ----------------------------------------------------


def test_the_alert_event_starts_a_pipeline(aws: Workspace) -> None:
    import loopml
    from loopml.pipelines import Scheduler, on_event, pipeline, task
    from loopml.pipelines import records as rec

    @task
    def retrain_model(reason: str) -> str:
        return reason

    @pipeline(triggers=[on_event("alert", subject="churn")])
    def retrain(reason: str = "alert"):
        retrain_model(reason)

    loopml.set_default_workspace(aws)
    sched = Scheduler([retrain], aws)
    assert sched.tick() == []
    add_window(aws, 0, drift(0.4))
    add_window(aws, 1, drift(0.4))
    (change,) = al.evaluate(now=NOW, workspace=aws)
    (claim,) = sched.tick()
    assert claim.pipeline.name == "retrain"
    detail = rec.get_run(aws.db, claim.run_id).trigger_detail
    assert detail is not None and detail["event"] == "alert" and detail["subject"] == "churn"
    assert detail["payload"]["alert_id"] == change.alert.id
    assert sched.tick() == []
