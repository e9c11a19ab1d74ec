"""What ``loopml status`` reports: plain frozen records, each with ``to_dict()`` (times as
ISO 8601 with their offset), made by :mod:`loopml.status.collect` and graded by
:mod:`loopml.status.maturity`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class TrainingRun:
    """The tracked run that registered a version, and the pipeline run it belonged to."""

    run_id: str
    pipeline: str | None = None
    pipeline_run: str | None = None
    trigger: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "pipeline_run": self.pipeline_run,
            "trigger": self.trigger,
        }


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment's newest revision: its strategy, canary step and traffic split."""

    name: str
    revision: int
    strategy: str
    #: variant name → (model reference, traffic weight in percent, role)
    variants: tuple[tuple[str, str, float, str], ...]
    changed_at: datetime | None = None
    #: ``(index from 0, steps in percent)`` of a canary; None for other strategies.
    canary_step: tuple[int, tuple[float, ...]] | None = None

    def step_text(self) -> str | None:
        """``step 2 of 4 (5, 25, 50, 100%)`` for a canary."""
        if self.canary_step is None:
            return None
        index, steps = self.canary_step
        return f"step {index + 1} of {len(steps)} ({', '.join(f'{s:g}' for s in steps)}%)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "revision": self.revision,
            "strategy": self.strategy,
            "variants": [
                {"name": n, "model": m, "weight": w, "role": r} for n, m, w, r in self.variants
            ],
            "changed_at": _iso(self.changed_at),
            "canary_step": (
                {"step": self.canary_step[0] + 1, "steps": list(self.canary_step[1])}
                if self.canary_step is not None
                else None
            ),
        }


@dataclass(frozen=True)
class WindowStatus:
    """The latest computed monitoring window of a deployment and its verdict: ``empty`` (no
    answered request), ``drift`` (an input feature's PSI above the upper PSI band, 0.25 by
    default) or ``ok``."""

    deployment: str
    start: datetime
    end: datetime
    verdict: str
    rows: int
    model: str | None = None
    worst_feature: str | None = None
    worst_psi: float | None = None
    windows: int = 1  # how many windows the deployment has in all

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "verdict": self.verdict,
            "rows": self.rows,
            "model": self.model,
            "worst_feature": self.worst_feature,
            "worst_psi": self.worst_psi,
            "windows": self.windows,
        }


@dataclass(frozen=True)
class AlertStatus:
    """An open (unresolved) alert."""

    id: int
    rule: str
    deployment: str
    severity: str
    status: str  # firing | acked
    fired_at: datetime
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "deployment": self.deployment,
            "severity": self.severity,
            "status": self.status,
            "fired_at": _iso(self.fired_at),
            "message": self.message,
        }


@dataclass(frozen=True)
class DataChange:
    """An input of the model's last training run with versions newer than the one it read:
    each ``(hash, first seen, where seen)``; where is ``run RUNID``, ``event`` (a
    ``data.version_added`` event) or ``pointer`` (the ``*.loopml`` file in the workspace)."""

    name: str
    source: str | None
    trained: str
    newer: tuple[tuple[str, datetime | None, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "trained": self.trained,
            "newer": [
                {"hash": digest, "seen_at": _iso(seen), "seen_in": where}
                for digest, seen, where in self.newer
            ],
        }


@dataclass(frozen=True)
class Maturity:
    """A maturity level (0 manual, 1 automated training pipeline, 2 continuous training),
    the evidence for it, and one line per thing missing for the next level."""

    level: int
    evidence: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    model: str | None = None  # the model graded (None: the workspace)

    NAMES = ("manual", "automated training pipeline", "continuous training")

    @property
    def name(self) -> str:
        return self.NAMES[self.level]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "model": self.model,
            "evidence": list(self.evidence),
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class ModelStatus:
    """One registered model: what is in Production and since when, where it is deployed, how
    its deployments are watched, what retrains it, what guards its promotion, and the data
    versions added since its last training run."""

    name: str
    versions: int
    latest: int | None
    production: int | None = None
    production_since: datetime | None = None
    production_how: str | None = None  # gate passed, approved, override, rollback, stage
    aliases: dict[str, int] = field(default_factory=dict)
    trained_by: TrainingRun | None = None  # of the Production version (else the latest)
    deployments: tuple[DeploymentStatus, ...] = ()
    windows: tuple[WindowStatus, ...] = ()  # the latest window of each deployment
    open_alerts: tuple[AlertStatus, ...] = ()
    #: deployment → names of the ``[[monitor.alerts]]`` rules that match it
    alert_rules: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``"PIPELINE (event:alert:SUBJECT)"`` for each pipeline an alert of a deployment starts
    retrain_triggers: tuple[str, ...] = ()
    gate: str | None = None  # what guards promotion through the gate, if anything
    canary: str | None = None  # the deployment that rolled a version out as a canary
    new_data: tuple[DataChange, ...] = ()
    trained_at: datetime | None = None  # start of the last training run
    maturity: Maturity = field(default_factory=lambda: Maturity(0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "latest": self.latest,
            "production": self.production,
            "production_since": _iso(self.production_since),
            "production_how": self.production_how,
            "aliases": dict(self.aliases),
            "trained_by": self.trained_by.to_dict() if self.trained_by else None,
            "trained_at": _iso(self.trained_at),
            "deployments": [d.to_dict() for d in self.deployments],
            "monitoring": [w.to_dict() for w in self.windows],
            "open_alerts": [a.to_dict() for a in self.open_alerts],
            "alert_rules": {k: list(v) for k, v in self.alert_rules.items()},
            "retrain_triggers": list(self.retrain_triggers),
            "gate": self.gate,
            "canary": self.canary,
            "new_data": [c.to_dict() for c in self.new_data],
            "maturity": self.maturity.to_dict(),
        }


@dataclass(frozen=True)
class PipelineStatus:
    """A pipeline the store knows (it ran, or a scheduler watches its triggers)."""

    name: str
    triggers: tuple[str, ...] = ()
    #: trigger id → the next time a schedule fires (schedules only)
    next_runs: dict[str, datetime] = field(default_factory=dict)
    running: tuple[str, ...] = ()  # ids of QUEUED and RUNNING runs
    runs: int = 0
    last_run: tuple[str, str, datetime] | None = None  # (id, status, created at)
    last_failure: tuple[str, datetime, str | None] | None = None  # (id, when, error)
    experiment_id: int | None = None  # of the latest run's tracking run (for access checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "triggers": list(self.triggers),
            "next_runs": {k: _iso(v) for k, v in self.next_runs.items()},
            "running": list(self.running),
            "runs": self.runs,
            "last_run": (
                {"id": self.last_run[0], "status": self.last_run[1], "at": _iso(self.last_run[2])}
                if self.last_run
                else None
            ),
            "last_failure": (
                {
                    "id": self.last_failure[0],
                    "at": _iso(self.last_failure[1]),
                    "error": self.last_failure[2],
                }
                if self.last_failure
                else None
            ),
        }


@dataclass(frozen=True)
class BudgetStatus:
    """Spend of a virtual key or a team in its budget's current period."""

    subject: str  # key:NAME or team:NAME
    amount_usd: float
    period: str  # day | month
    spent_usd: float

    @property
    def fraction(self) -> float:
        return self.spent_usd / self.amount_usd if self.amount_usd else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "budget_usd": self.amount_usd,
            "period": self.period,
            "spent_usd": self.spent_usd,
            "fraction": self.fraction,
        }


@dataclass(frozen=True)
class LlmStatus:
    """What the LLM gateway logged this calendar month (UTC), and spend against budgets."""

    requests: int
    cost_usd: float
    since: datetime
    budgets: tuple[BudgetStatus, ...] = ()
    all_time_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "requests": self.requests,
            "cost_usd": self.cost_usd,
            "all_time_requests": self.all_time_requests,
            "budgets": [b.to_dict() for b in self.budgets],
        }


@dataclass(frozen=True)
class WorkspaceStatus:
    """Where the loop stands: per model, the pipelines, LLM spend, and the maturity grade."""

    at: datetime
    models: tuple[ModelStatus, ...]
    pipelines: tuple[PipelineStatus, ...]
    llm: LlmStatus | None
    maturity: Maturity

    @property
    def empty(self) -> bool:
        """Nothing registered, run or logged yet."""
        return not self.models and not self.pipelines and self.llm is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "models": [m.to_dict() for m in self.models],
            "pipelines": [p.to_dict() for p in self.pipelines],
            "llm": self.llm.to_dict() if self.llm else None,
            "maturity": self.maturity.to_dict(),
        }
