"""Grading against the maturity levels of the MLOps chapter: pure functions over the evidence
:mod:`loopml.status.collect` read from the metadata store.

**Level 0, manual.** Models are registered and promoted by hand; nothing shows a pipeline
produced them. Every workspace is at least level 0.

**Level 1, automated training pipeline.** The model has a version in Production, and the
tracked run that registered it belongs to a pipeline run (the version's run is a pipeline
run's tracking run, or a run nested under one, tagged ``loopml.pipeline``).

**Level 2, continuous training** (CI/CD/CT with monitoring-triggered retraining): level 1,
and all of

* *monitoring with alert rules*: a deployment serves the model, at least one monitoring
  window of it is computed, and a ``[[monitor.alerts]]`` rule matches it;
* *retraining on alerts*: a pipeline is triggered by ``on_event("alert", subject=...)``
  for that deployment (or ``subject="*"``), as recorded by a scheduler that watched it or by a
  run it started;
* *guarded promotion*: a gate — a ``[gates.MODEL]`` policy in ``loopml.toml``, or a
  passing, not forced verdict for the Production version whose policy checks something
  (a holdout, ``min_score``, ``beat_champion``, latency, fairness, behavioural checks or
  approval) — or a canary: a deployment of the model has run the canary strategy.

The workspace's level is its most mature model's; with no model it is level 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from loopml.status.records import Maturity, ModelStatus

TOP = 2


def grade(model: ModelStatus) -> Maturity:
    """The level ``model`` reaches, with its evidence, and what is missing for the next one.

    >>> grade(ModelStatus("churn", versions=1, latest=1)).missing
    ('no version of churn is in Production: promote one (`loopml models promote churn 1`)',)
    """
    name = model.name
    evidence: list[str] = []
    if model.production is None:
        return Maturity(
            0,
            (f"{name} has {model.versions} registered version(s)",),
            (
                f"no version of {name} is in Production: promote one "
                f"(`loopml models promote {name} {model.latest or 'N'}`)",
            ),
            name,
        )
    held = f"{name}/{model.production}"
    trained = model.trained_by
    if trained is None or trained.pipeline is None:
        how = f"run {trained.run_id[:8]}" if trained else "no tracked run"
        return Maturity(
            0,
            (f"{held} is in Production",),
            (
                f"{held} in Production was registered outside a pipeline ({how}): register "
                f"it from a @pipeline task (`loopml pipelines run FILE:PIPELINE`) and promote "
                "that version",
            ),
            name,
        )
    evidence.append(f"{held} in Production was registered by pipeline {trained.pipeline}")
    missing: list[str] = []
    if not model.deployments:
        missing.append(
            f"{name} is not deployed, so nothing watches it: "
            f"`loopml deploy create {name} --model {name}@production`"
        )
    else:
        names = [d.name for d in model.deployments]
        ruled = [d for d in names if model.alert_rules.get(d)]
        watched = [w.deployment for w in model.windows]
        if not ruled:
            missing.append(
                f"no alert rule watches deployment {names[0]}: add a [[monitor.alerts]] table "
                f'with deployment = "{names[0]}" and when = "max(psi) > 0.25" to loopml.toml'
            )
        else:
            evidence.append(
                f"alert rule {model.alert_rules[ruled[0]][0]!r} watches deployment {ruled[0]}"
            )
        if not watched:
            missing.append(
                f"deployment {names[0]} has no monitoring window yet: run "
                f"`loopml monitor run {names[0]}` (from cron or the scheduler)"
            )
        else:
            evidence.append(f"deployment {watched[0]} is monitored")
        if not model.retrain_triggers:
            missing.append(
                f"no drift alert is wired to a retraining trigger: declare the training "
                f'pipeline with on_event("alert", subject="{names[0]}") and keep '
                "`loopml scheduler run` going"
            )
        else:
            evidence.append(f"an alert retrains it: {model.retrain_triggers[0]}")
    if model.gate is None and model.canary is None:
        missing.append(
            f"promotion of {name} is not guarded: add a [gates.{name}] policy with a holdout "
            f"to loopml.toml, or roll out with `loopml deploy canary`"
        )
    else:
        evidence.append(model.gate or model.canary or "")
    if missing:
        return Maturity(1, tuple(evidence), tuple(missing), name)
    return Maturity(2, tuple(evidence), (), name)


def grade_workspace(models: Sequence[ModelStatus]) -> Maturity:
    """The workspace's level: its most mature model's (ties: the first by name), with that
    model's evidence and missing lines. No model: level 0, and what to run first.

    >>> grade_workspace([]).missing[0]
    'nothing is registered yet: train and register a model from a @pipeline task, then run it with `loopml pipelines run FILE:PIPELINE`'
    """
    if not models:
        return Maturity(
            0,
            (),
            (
                "nothing is registered yet: train and register a model from a @pipeline "
                "task, then run it with `loopml pipelines run FILE:PIPELINE`",
            ),
        )
    best = max(models, key=lambda m: m.maturity.level)
    return replace(best.maturity, model=best.name)
