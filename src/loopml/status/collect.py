"""Reading the status from the metadata store: a handful of queries in one read transaction
(no model is loaded, no log is scanned), plus the workspace's settings (alert rules, gate
policies, team budgets) and the ``*.loopml`` pointer files of the last training run's inputs.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, select

from loopml.status.maturity import grade, grade_workspace
from loopml.status.records import (
    AlertStatus,
    BudgetStatus,
    DataChange,
    DeploymentStatus,
    LlmStatus,
    ModelStatus,
    PipelineStatus,
    TrainingRun,
    WindowStatus,
    WorkspaceStatus,
)
from loopml.store.clock import to_datetime

if TYPE_CHECKING:
    from loopml.workspace import Workspace, WorkspaceLike

#: Gate policy settings that make a gate check more than the signature.
GUARDING = (
    "holdout",
    "min_score",
    "beat_champion",
    "latency_p95_ms",
    "fairness_max_gap",
    "checks",
    "require_approval",
)
#: Tags a pipeline puts on its tracking run (loopml.pipelines.runner).
PIPELINE_TAG, PIPELINE_RUN_TAG = "loopml.pipeline", "loopml.pipeline_run"
#: Runs up a chain of nested runs looked at for the pipeline tags.
MAX_NESTING = 5


def workspace_status(
    workspace: WorkspaceLike = None, *, model: str | None = None
) -> WorkspaceStatus:
    """Where the loop stands: per registered model (only ``model`` when given), what is in
    Production and since when, its deployments and canary step, the latest monitoring window's
    verdict and open alerts, what retrains it, what guards its promotion and the data versions
    added since its last training run; the pipelines (triggers, running, last failure); LLM
    spend against budgets; and the maturity grade (:mod:`loopml.status.maturity`).

    >>> status = workspace_status(ws)                       # doctest: +SKIP
    >>> status.maturity.level, status.maturity.missing      # doctest: +SKIP
    (1, ('no drift alert is wired to a retraining trigger: ...',))

    A ``model`` that is not registered is a :class:`~loopml.exceptions.ModelNotFound` naming
    the registered ones.
    """
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        names = _model_names(conn)
        if model is not None and model not in names:
            from loopml.exceptions import ModelNotFound

            known = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
            raise ModelNotFound(
                f"No model {model!r} in this workspace; registered models: {known or 'none'}."
            )
        chosen = [model] if model is not None else names
        pipelines = _pipelines(conn)
        models = tuple(_model(ws, conn, name, pipelines) for name in chosen)
        llm = _llm(ws, conn) if model is None else None
    if model is not None:
        wanted = {p for m in models for p in _pipelines_of(m)}
        pipelines = [p for p in pipelines if p.name in wanted]
    return WorkspaceStatus(
        at=datetime.now(UTC),
        models=models,
        pipelines=tuple(pipelines),
        llm=llm,
        maturity=grade_workspace(models),
    )


def _pipelines_of(model: ModelStatus) -> set[str]:
    found = {t.split(" (", 1)[0] for t in model.retrain_triggers}
    if model.trained_by is not None and model.trained_by.pipeline is not None:
        found.add(model.trained_by.pipeline)
    return found


# -- models -----------------------------------------------------------------------------------


def _model_names(conn: Connection) -> list[str]:
    from loopml.registry.tables import registered_models

    return list(
        conn.execute(select(registered_models.c.name).order_by(registered_models.c.name)).scalars()
    )


def _model(
    ws: Workspace, conn: Connection, name: str, pipelines: Sequence[PipelineStatus]
) -> ModelStatus:
    from loopml.registry.tables import model_aliases, model_events, model_versions
    from loopml.registry.tables import registered_models as models
    from loopml.registry.versions import PRODUCTION

    mid = conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one()
    rows = conn.execute(
        select(
            model_versions.c.version,
            model_versions.c.stage,
            model_versions.c.run_id,
            model_versions.c.created_at,
        )
        .where(model_versions.c.model_id == mid)
        .order_by(model_versions.c.version)
    ).all()
    aliases = dict(
        conn.execute(
            select(model_aliases.c.alias, model_aliases.c.version).where(
                model_aliases.c.model_id == mid
            )
        ).all()
    )
    production = next((r for r in rows if r.stage == PRODUCTION), None)
    latest = rows[-1] if rows else None
    since = how = gate = None
    if production is not None:
        moved = conn.execute(
            select(model_events.c.kind, model_events.c.reason, model_events.c.created_at)
            .where(
                model_events.c.model_id == mid,
                model_events.c.target == PRODUCTION,
                model_events.c.to_version == production.version,
                model_events.c.kind.in_(("stage", "override", "rollback")),
            )
            .order_by(model_events.c.id.desc())
            .limit(1)
        ).first()
        if moved is not None:
            since = to_datetime(moved.created_at)
            how = _how(moved.kind, moved.reason)
        gate = _gate(ws, conn, mid, name, production.version)
        if how == "gate passed" and gate is None:
            how = "promoted; its gate checked only the signature"
    trained = production if production is not None else latest
    trained_by = _training_run(conn, trained.run_id) if trained and trained.run_id else None
    with_run = next((r for r in reversed(rows) if r.run_id), None)
    trained_at, new_data = (
        _new_data(ws, conn, with_run.run_id) if with_run is not None else (None, ())
    )
    deployments = _deployments(conn, name)
    deployment_names = [d.name for d in deployments]
    rules = {
        d: tuple(r.name for r in ws.settings.monitor.alerts if r.matches(d))
        for d in deployment_names
    }
    status = ModelStatus(
        name=name,
        versions=len(rows),
        latest=latest.version if latest else None,
        production=production.version if production else None,
        production_since=since,
        production_how=how,
        aliases=aliases,
        trained_by=trained_by,
        deployments=deployments,
        windows=_windows(ws, conn, deployment_names),
        open_alerts=_open_alerts(conn, deployment_names),
        alert_rules={d: r for d, r in rules.items() if r},
        retrain_triggers=_alert_triggers(pipelines, deployment_names),
        gate=gate,
        canary=_canary(conn, deployment_names),
        new_data=new_data,
        trained_at=trained_at,
    )
    return replace(status, maturity=grade(status))


def _how(kind: str, reason: str | None) -> str:
    if kind == "override":
        return "forced"
    if kind == "rollback":
        return "rollback"
    return reason if reason in ("gate passed", "approved") else (reason or "moved by hand")


def _gate(ws: Workspace, conn: Connection, mid: int, name: str, version: int) -> str | None:
    """What guards promotion through the gate: a configured policy, or the policy of the
    Production version's last verdict when it passed without force and checks something."""
    from loopml.registry.tables import model_events

    if name in ws.settings.gates:
        return f"gate policy [gates.{name}] in loopml.toml"
    verdict = conn.execute(
        select(model_events.c.verdict)
        .where(
            model_events.c.model_id == mid,
            model_events.c.kind == "gate",
            model_events.c.version == version,
        )
        .order_by(model_events.c.id.desc())
        .limit(1)
    ).scalar()
    if not verdict:
        return None
    data = json.loads(verdict)
    policy = data.get("policy") or {}
    checks = [key for key in GUARDING if policy.get(key) not in (None, False, [], ())]
    if not data.get("passed") or data.get("forced") or not checks:
        return None
    return f"{name}/{version} passed the gate ({', '.join(checks)})"


def _training_run(conn: Connection, run_id: str) -> TrainingRun:
    """The pipeline run ``run_id`` belongs to: as its tracking run, or nested under one."""
    from loopml.pipelines.tables import pipeline_runs
    from loopml.tracking.tables import runs, tags

    current: str | None = run_id
    for _ in range(MAX_NESTING):
        if current is None:
            break
        found = conn.execute(
            select(pipeline_runs.c.id, pipeline_runs.c.pipeline, pipeline_runs.c.trigger).where(
                pipeline_runs.c.tracking_run_id == current
            )
        ).first()
        if found is not None:
            return TrainingRun(run_id, found.pipeline, found.id, found.trigger)
        tagged = dict(
            conn.execute(
                select(tags.c.key, tags.c.value).where(
                    tags.c.run_id == current, tags.c.key.in_((PIPELINE_TAG, PIPELINE_RUN_TAG))
                )
            ).all()
        )
        if PIPELINE_TAG in tagged:
            return TrainingRun(run_id, tagged[PIPELINE_TAG], tagged.get(PIPELINE_RUN_TAG))
        current = conn.execute(select(runs.c.parent_run_id).where(runs.c.id == current)).scalar()
    return TrainingRun(run_id)


def _new_data(
    ws: Workspace, conn: Connection, run_id: str
) -> tuple[datetime | None, tuple[DataChange, ...]]:
    """The inputs of run ``run_id`` with newer versions: recorded by later runs, announced by
    ``data.version_added`` events, or in the workspace's pointer files now."""
    from loopml.events import events
    from loopml.tracking.tables import run_inputs, runs

    started = conn.execute(select(runs.c.start_time).where(runs.c.id == run_id)).scalar()
    inputs = conn.execute(
        select(run_inputs.c.name, run_inputs.c.digest, run_inputs.c.source).where(
            run_inputs.c.run_id == run_id
        )
    ).all()
    if started is None or not inputs:
        return to_datetime(started), ()
    changes = []
    for item in inputs:
        newer: dict[str, tuple[datetime | None, str]] = {}
        same = run_inputs.c.name == item.name
        if item.source:
            same = same | (run_inputs.c.source == item.source)
        later = conn.execute(
            select(run_inputs.c.digest, run_inputs.c.run_id, run_inputs.c.created_at)
            .where(same, run_inputs.c.created_at > started, run_inputs.c.digest != item.digest)
            .order_by(run_inputs.c.created_at)
        ).all()
        for row in later:
            newer.setdefault(row.digest, (to_datetime(row.created_at), f"run {row.run_id[:8]}"))
        subjects = [s for s in (item.source, item.name, _relative(ws, item.source)) if s]
        for event in conn.execute(
            select(events.c.payload, events.c.created_at)
            .where(
                events.c.kind == "data.version_added",
                events.c.subject.in_(subjects),
                events.c.created_at > started,
            )
            .order_by(events.c.id)
        ):
            digest = (json.loads(event.payload) if event.payload else {}).get("hash")
            if digest and digest != item.digest:
                newer.setdefault(digest, (to_datetime(event.created_at), "event"))
        current = _pointer_hash(ws, item.source)
        if current is not None and current != item.digest:
            newer.setdefault(current, (None, "pointer"))
        if newer:
            changes.append(
                DataChange(
                    item.name,
                    item.source,
                    item.digest,
                    tuple((digest, seen, where) for digest, (seen, where) in newer.items()),
                )
            )
    return to_datetime(started), tuple(changes)


def _relative(ws: Workspace, source: str | None) -> str | None:
    if not source:
        return None
    try:
        return Path(source).resolve().relative_to(Path(ws.root).resolve()).as_posix()
    except (ValueError, OSError):
        return None


def _pointer_hash(ws: Workspace, source: str | None) -> str | None:
    """The data version a ``*.loopml`` pointer file of ``source`` holds now (None: none)."""
    if not source:
        return None
    from loopml.data.pointers import is_pointer, pointer_path, read_pointer

    path = Path(source)
    if not path.is_absolute():
        path = Path(ws.root) / path
    pointer = path if is_pointer(path) else pointer_path(path)
    try:
        return read_pointer(pointer).hash if pointer.is_file() else None
    except Exception:  # a broken pointer file is `loopml data status`'s business, not ours
        return None


# -- deployments and monitoring --------------------------------------------------------------


def _serves(model_ref: str, name: str) -> bool:
    from loopml.registry.versions import ModelRef

    try:
        return ModelRef.parse(model_ref).name == name
    except Exception:
        return False


def _newest_deployments(conn: Connection) -> list[Any]:
    from loopml.serving.deployments import Deployment
    from loopml.serving.tables import deployments

    newest = (
        select(deployments.c.name, func.max(deployments.c.revision).label("revision"))
        .group_by(deployments.c.name)
        .subquery()
    )
    rows = conn.execute(
        select(deployments)
        .join(
            newest,
            and_(newest.c.name == deployments.c.name, newest.c.revision == deployments.c.revision),
        )
        .order_by(deployments.c.name)
    ).all()
    return [Deployment.from_row(r) for r in rows]


def _deployments(conn: Connection, name: str) -> tuple[DeploymentStatus, ...]:
    found = []
    for d in _newest_deployments(conn):
        if not any(_serves(v.model, name) for v in d.variants):
            continue
        step = None
        if d.strategy == "canary" and "steps" in d.settings:
            steps = tuple(float(s) for s in d.settings["steps"])
            step = (int(d.settings.get("step", 0)), steps)
        found.append(
            DeploymentStatus(
                d.name,
                d.revision,
                d.strategy,
                tuple((v.name, v.model, v.weight, v.role) for v in d.variants),
                d.created_at,
                step,
            )
        )
    return tuple(found)


def _canary(conn: Connection, deployment_names: Sequence[str]) -> str | None:
    """``deployment NAME rolled out by canary`` when a revision of one of them ran a canary."""
    from loopml.serving.tables import deployments

    if not deployment_names:
        return None
    rows = conn.execute(
        select(deployments.c.name, deployments.c.config)
        .where(deployments.c.name.in_(list(deployment_names)))
        .order_by(deployments.c.revision.desc())
    ).all()
    for row in rows:
        if json.loads(row.config).get("strategy") == "canary":
            return f"deployment {row.name} rolls versions out as a canary"
    return None


def _windows(
    ws: Workspace, conn: Connection, deployment_names: Sequence[str]
) -> tuple[WindowStatus, ...]:
    from loopml.monitoring.tables import monitor_metrics, monitor_windows
    from loopml.monitoring.windows import EMPTY, PREDICTION, WINDOW

    high = float(ws.settings.monitor.psi_bands[1])
    found = []
    for name in deployment_names:
        count = conn.execute(
            select(func.count()).where(monitor_windows.c.deployment == name)
        ).scalar_one()
        row = conn.execute(
            select(monitor_windows)
            .where(monitor_windows.c.deployment == name)
            .order_by(monitor_windows.c.start_at.desc(), monitor_windows.c.end_at.desc())
            .limit(1)
        ).first()
        if row is None:
            continue
        psi = [
            (feature, float(value))
            for feature, value in conn.execute(
                select(monitor_metrics.c.feature, monitor_metrics.c.value).where(
                    monitor_metrics.c.window_id == row.id, monitor_metrics.c.metric == "psi"
                )
            )
            if feature not in (WINDOW, PREDICTION) and value is not None and math.isfinite(value)
        ]
        worst = max(psi, key=lambda item: item[1]) if psi else None
        if row.status == EMPTY:
            verdict = "empty"
        elif worst is not None and worst[1] > high:
            verdict = "drift"
        else:
            verdict = "ok"
        found.append(
            WindowStatus(
                name,
                to_datetime(row.start_at) or datetime.now(UTC),
                to_datetime(row.end_at) or datetime.now(UTC),
                verdict,
                int(row.rows),
                f"{row.model}/{row.version}" if row.model and row.version else row.model,
                worst[0] if worst else None,
                worst[1] if worst else None,
                int(count),
            )
        )
    return tuple(found)


def _open_alerts(conn: Connection, deployment_names: Sequence[str]) -> tuple[AlertStatus, ...]:
    from loopml.monitoring.tables import alerts

    if not deployment_names:
        return ()
    rows = conn.execute(
        select(alerts)
        .where(alerts.c.deployment.in_(list(deployment_names)), alerts.c.resolved_at.is_(None))
        .order_by(alerts.c.fired_at.desc(), alerts.c.id.desc())
    ).all()
    return tuple(
        AlertStatus(
            int(r.id),
            r.rule,
            r.deployment,
            r.severity,
            "acked" if r.acked_at is not None else "firing",
            to_datetime(r.fired_at) or datetime.now(UTC),
            r.message,
        )
        for r in rows
    )


def _alert_triggers(
    pipelines: Sequence[PipelineStatus], deployment_names: Sequence[str]
) -> tuple[str, ...]:
    """``PIPELINE (event:alert:SUBJECT)`` for each alert trigger covering a deployment."""
    found = []
    for pipe in pipelines:
        for trigger in pipe.triggers:
            kind, _, subject = trigger.partition(":")[2].partition(":")
            if (
                trigger.startswith("event:")
                and kind == "alert"
                and (subject == "*" or subject in deployment_names)
                and deployment_names
            ):
                found.append(f"{pipe.name} ({trigger})")
    return tuple(found)


# -- pipelines --------------------------------------------------------------------------------

#: Pipeline run triggers that are not a trigger declared on the pipeline.
_BY_HAND = ("manual", "backfill")


def _pipelines(conn: Connection) -> list[PipelineStatus]:
    """Every pipeline that ran or whose triggers a scheduler watches: six grouped queries."""
    from loopml.pipelines.records import FAILED, QUEUED, RUNNING
    from loopml.pipelines.tables import pipeline_runs as pr
    from loopml.pipelines.tables import trigger_state
    from loopml.tracking.tables import runs

    triggers: dict[str, set[str]] = defaultdict(set)
    for pipeline, trigger in conn.execute(
        select(trigger_state.c.pipeline, trigger_state.c.trigger)
    ):
        triggers[pipeline].add(trigger)
    for pipeline, trigger in conn.execute(
        select(pr.c.pipeline, pr.c.trigger).where(pr.c.trigger.not_in(_BY_HAND)).distinct()
    ):
        triggers[pipeline].add(trigger)
    counts: dict[str, int] = {
        pipeline: int(count)
        for pipeline, count in conn.execute(
            select(pr.c.pipeline, func.count()).group_by(pr.c.pipeline)
        )
    }
    running: dict[str, list[str]] = defaultdict(list)
    for pipeline, run_id in conn.execute(
        select(pr.c.pipeline, pr.c.id)
        .where(pr.c.status.in_((QUEUED, RUNNING)))
        .order_by(pr.c.created_at)
    ):
        running[pipeline].append(run_id)
    last_run = {
        row.pipeline: row
        for row in conn.execute(
            _newest(pr, pr.c.pipeline, None)
            .add_columns(runs.c.experiment_id)
            .outerjoin(runs, runs.c.id == pr.c.tracking_run_id)
        )
    }
    last_failure = {row.pipeline: row for row in conn.execute(_newest(pr, pr.c.pipeline, FAILED))}
    now = datetime.now(UTC)
    found = []
    for name in sorted(set(triggers) | set(counts)):
        last = last_run.get(name)
        failed = last_failure.get(name)
        ids = sorted(triggers.get(name, ()))
        found.append(
            PipelineStatus(
                name=name,
                triggers=tuple(ids),
                next_runs={t: n for t in ids if (n := _next_run(t, now)) is not None},
                running=tuple(running.get(name, ())),
                runs=int(counts.get(name, 0)),
                last_run=(
                    (last.id, last.status, to_datetime(last.created_at) or now) if last else None
                ),
                last_failure=(
                    (
                        failed.id,
                        to_datetime(failed.end_time or failed.created_at) or now,
                        _first_line(failed.error),
                    )
                    if failed
                    else None
                ),
                experiment_id=last.experiment_id if last is not None else None,
            )
        )
    return found


def _newest(table: Any, group: Any, status: str | None) -> Any:
    """The newest row of ``table`` per ``group`` (of ``status`` when given)."""
    inner = select(group.label("grp"), func.max(table.c.created_at).label("newest"))
    if status is not None:
        inner = inner.where(table.c.status == status)
    sub = inner.group_by(group).subquery()
    stmt = select(table).join(sub, and_(sub.c.grp == group, sub.c.newest == table.c.created_at))
    if status is not None:
        stmt = stmt.where(table.c.status == status)
    return stmt


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else None


def _next_run(trigger: str, now: datetime) -> datetime | None:
    """When a ``schedule:CRON[ TZ]`` trigger fires next (None for other triggers)."""
    if not trigger.startswith("schedule:"):
        return None
    words = trigger.removeprefix("schedule:").split()
    fields = 1 if words and words[0].startswith("@") else 5
    cron, tz = " ".join(words[:fields]), " ".join(words[fields:]) or "UTC"
    try:
        from loopml.pipelines.triggers import Schedule

        return Schedule(cron, tz).next_after(now)
    except Exception:  # a trigger id written by another version of loopml
        return None


# -- LLM spend --------------------------------------------------------------------------------


def _llm(ws: Workspace, conn: Connection) -> LlmStatus | None:
    """This month's spend and each budget's spend in its period; None when the gateway has
    logged nothing and no key has a budget."""
    from loopml.llm.limits import period_start
    from loopml.llm.tables import llm_keys, llm_requests

    r = llm_requests
    total = conn.execute(select(func.count()).select_from(r)).scalar_one()
    keys = conn.execute(
        select(
            llm_keys.c.id,
            llm_keys.c.name,
            llm_keys.c.prefix,
            llm_keys.c.budget_usd,
            llm_keys.c.budget_period,
        )
        .where(llm_keys.c.budget_usd.is_not(None), llm_keys.c.revoked_at.is_(None))
        .order_by(llm_keys.c.name, llm_keys.c.id)
    ).all()
    teams = list(_team_budgets(ws))
    if not total and not keys and not teams:
        return None
    now = time.time()
    starts = {period: period_start(period, now) for period in ("day", "month")}
    month_requests, month_cost = conn.execute(
        select(func.count(), func.coalesce(func.sum(r.c.cost_usd), 0.0)).where(
            r.c.created_at >= starts["month"]
        )
    ).one()

    def spent(column: Any, values: Iterable[str], period: str) -> dict[str, float]:
        wanted = list(values)
        if not wanted:
            return {}
        return {
            group: float(cost or 0.0)
            for group, cost in conn.execute(
                select(column, func.sum(r.c.cost_usd))
                .where(column.in_(wanted), r.c.created_at >= starts[period])
                .group_by(column)
            )
        }

    budgets = []
    for period in ("day", "month"):
        by_key = spent(r.c.key_id, (k.id for k in keys if k.budget_period == period), period)
        for k in keys:
            if k.budget_period == period:
                label = f"key:{k.name or k.prefix}"
                budgets.append(
                    BudgetStatus(label, float(k.budget_usd), period, by_key.get(k.id, 0.0))
                )
        by_team = spent(r.c.team, (t for t, _, p in teams if p == period), period)
        for team, amount, team_period in teams:
            if team_period == period:
                budgets.append(BudgetStatus(f"team:{team}", amount, period, by_team.get(team, 0.0)))
    budgets.sort(key=lambda b: -b.fraction)
    return LlmStatus(
        requests=int(month_requests),
        cost_usd=float(month_cost or 0.0),
        since=datetime.fromtimestamp(starts["month"] / 1000, UTC),
        budgets=tuple(budgets),
        all_time_requests=int(total),
    )


def _team_budgets(ws: Workspace) -> Iterable[tuple[str, float, str]]:
    """``(team, USD, period)`` of each ``[gateway.teams.NAME] budget`` that parses."""
    from loopml.exceptions import InvalidInput
    from loopml.llm.keys import parse_budget

    teams = ws.settings.gateway.get("teams") or {}
    if not isinstance(teams, dict):
        return
    for team, table in sorted(teams.items()):
        value = table.get("budget") if isinstance(table, dict) else None
        if isinstance(value, dict):
            value = f"{value.get('amount')}/{value.get('period')}"
        if value is None:
            continue
        try:
            budget = parse_budget(str(value))
        except InvalidInput:
            continue  # the gateway reports a bad budget when it loads its configuration
        yield str(team), budget.amount_usd, budget.period
