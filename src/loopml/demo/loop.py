"""The stages of ``loopml demo``: each does one part of the loop with loopml's own APIs and
checks that its part closed; one that did not raises :class:`StageFailed` naming it.

1. data: a workspace (a git repository), the project's files, the first batch of synthetic
   churn data versioned with ``loopml data add``;
2. features: definitions applied, a point-in-time-correct training set from the store;
3. train: the ``train_churn`` pipeline (validate → baseline and model → evaluate → register
   → gated promotion);
4. serve: ``loopml serve churn`` in a subprocess, requests over HTTP, labels fed back;
5. monitor: the past hours of traffic, quiet then drifted, in hourly windows; PSI above
   0.25 after the drift fires the alert rule (an ``alert`` event); the HTML report;
6. retrain: the drifted data becomes a new data version; the scheduler sees the alert event
   and runs the pipeline; the new version passes the gate (a dry run), then a canary ramps it
   up and completes, promoting it through the gate;
7. rollback: a bad candidate's canary is rolled back by the controller; ``loopml models
   rollback churn`` in one command, then the good version promoted again;
8. summary: what happened and the lineage of the Production version.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.demo import data as synth
from loopml.demo import project
from loopml.demo.narration import Narrator, Stage
from loopml.demo.traffic import Server, clean_environment, history_labels, log_history
from loopml.exceptions import InvalidInput, LoopmlError

if TYPE_CHECKING:
    import pandas as pd

    from loopml.workspace import Workspace

PIPELINE = "churn_pipeline.py:train_churn"
MODEL = "churn"
DEPLOYMENT = "churn"
DATASET = "data/churn"


class StageFailed(LoopmlError):
    """A stage of the demo did not close its part of the loop."""

    def __init__(self, stage: str, why: str) -> None:
        super().__init__(f"demo stage '{stage}' did not close: {why}")
        self.stage = stage
        self.why = why


class GitFailed(LoopmlError):
    """A git command of the demo's workspace failed."""


@dataclass(frozen=True)
class Scale:
    """How much the demo generates: ``--fast`` is the small one."""

    history_days: int  # of the first batch, before the monitored hours
    history_per_hour: int
    windows_before: int  # quiet hourly windows before the drift
    windows_after: int  # drifted ones
    per_window: int  # requests an hour in the monitored hours
    live_requests: int  # over HTTP, now
    canary_requests: int  # per round of canary traffic
    min_requests: int  # the canary's answered requests per step


FULL = Scale(14, 30, 4, 4, 300, 200, 240, 60)
FAST = Scale(5, 30, 2, 2, 240, 80, 160, 40)


@dataclass
class Timeline:
    """The simulated clock: hourly windows that end at the last full hour, the drift in the
    middle of them, the first batch before them."""

    now: datetime
    monitor_start: datetime
    drift: datetime
    monitor_end: datetime
    history_start: datetime

    @classmethod
    def make(cls, scale: Scale, now: datetime | None = None) -> Timeline:
        now = now or datetime.now(UTC)
        end = synth.hour_floor(now)
        drift = end - timedelta(hours=scale.windows_after)
        start = drift - timedelta(hours=scale.windows_before)
        return cls(
            now=now,
            monitor_start=start,
            drift=drift,
            monitor_end=end,
            history_start=start - timedelta(days=scale.history_days),
        )


@dataclass
class Demo:
    """One run of the demo in ``root`` (a new or empty folder)."""

    root: Path
    narrator: Narrator
    fast: bool = False
    seed: int = 7
    summary: dict[str, Any] = field(default_factory=dict)
    ws: Workspace | None = None
    server: Server | None = None
    git: bool = True

    def __post_init__(self) -> None:
        self.scale = FAST if self.fast else FULL
        self.notices = _Captured()
        self.time = Timeline.make(self.scale)
        self.stages: list[tuple[str, str, Callable[[Stage], None]]] = [
            ("data", "Generating and versioning the first batch", self.stage_data),
            ("features", "Applying features, building a training set", self.stage_features),
            ("train", "Running the training pipeline", self.stage_train),
            ("serve", "Serving over HTTP, sending traffic", self.stage_serve),
            ("monitor", "Monitoring the past hours", self.stage_monitor),
            ("retrain", "Retraining on the alert, canary", self.stage_retrain),
            ("rollback", "A bad candidate, and rollbacks", self.stage_rollback),
            ("summary", "Lineage and what to explore", self.stage_summary),
        ]

    # -- running ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.summary = {
            "workspace": str(self.root),
            "fast": self.fast,
            "seed": self.seed,
            "drift_time": self.time.drift.isoformat(),
            "monitored": {
                "start": self.time.monitor_start.isoformat(),
                "end": self.time.monitor_end.isoformat(),
                "window": "1h",
            },
            "stages": {},
        }
        self.narrator.say(f"loopml demo: the whole loop in {self.root}", style="bold")
        here = Path.cwd()
        alerts_log = logging.getLogger("loopml.monitoring.alerts")
        captured = self.notices
        alerts_log.addHandler(captured)
        propagate, alerts_log.propagate = (
            alerts_log.propagate,
            False,
        )  # the narration tells of the alert, not a log line
        # the embedded workspace of the demo, whatever the shell says; put back at the end
        hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("LOOPML_")}
        os.chdir(self.root)
        try:
            for number, (name, title, fn) in enumerate(self.stages, 1):
                with self.narrator.stage(number, name, title) as stage:
                    try:
                        fn(stage)
                    except StageFailed as exc:
                        raise StageFailed(name, self.kept(exc.why)) from exc
                    except LoopmlError as exc:
                        raise StageFailed(name, self.kept(str(exc))) from exc
                    except Exception as exc:  # a stage's own failure: name it, keep the cause
                        why = f"{type(exc).__name__}: {exc}"
                        raise StageFailed(name, self.kept(why)) from exc
                self.summary["stages"][name] = {"result": stage.line, "ok": True}
        finally:
            if self.server is not None:
                self.server.stop()
            if self.ws is not None:
                self.ws.close()
            os.chdir(here)
            os.environ.update(hidden)
            alerts_log.removeHandler(captured)
            alerts_log.propagate = propagate
        self.summary["alert_notices"] = captured.lines
        self.summary["seconds"] = round(time.monotonic() - started, 1)
        return self.summary

    def kept(self, why: str) -> str:
        """``why``, and where to look at what the demo did so far."""
        return f"{why.rstrip('.')}. The workspace is kept in {self.root}."

    @property
    def workspace(self) -> Workspace:
        assert self.ws is not None
        return self.ws

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            [
                "git",
                "-c",
                "user.name=loopml demo",
                "-c",
                "user.email=demo@loopml.invalid",
                "-c",
                "commit.gpgsign=false",
                *args,
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise GitFailed(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def commit(self, message: str, *paths: str) -> str | None:
        """Commit ``paths``; the new commit (None without git)."""
        if not self.git:
            return None
        self._git("add", "--", *paths)
        self._git("commit", "--quiet", "-m", message)
        return self._git("rev-parse", "HEAD")

    # -- 1. data ---------------------------------------------------------------------------

    def stage_data(self, stage: Stage) -> None:
        import loopml
        import loopml.data
        from loopml.validation import Schema

        self.git = shutil.which("git") is not None
        if self.git:
            self._git("init", "--quiet")
        else:
            stage.note("git is not installed: no commits, so runs record no code commit")
        stage.doing("loopml init")
        loopml.init(str(self.root)).close()
        with (self.root / "loopml.toml").open("a") as fh:
            fh.write(project.SETTINGS)
        (self.root / ".gitignore").write_text(project.GITIGNORE)
        (self.root / "features.py").write_text(project.FEATURES_PY)
        (self.root / "churn_pipeline.py").write_text(project.PIPELINE_PY)

        stage.doing("generating the first batch")
        scale, t = self.scale, self.time
        hours = int((t.monitor_start - t.history_start) / timedelta(hours=1))
        first = synth.customers(
            self.seed, t.history_start, hours=hours, per_hour=scale.history_per_hour
        )
        self.write_batch(1, first)
        contract = Schema.infer(first[[*synth.FEATURES, synth.LABEL]], bounds=False)
        contract.save(self.root / "contracts" / "churn.yaml")

        stage.doing(f"loopml data add {DATASET}")
        version = loopml.data.add(DATASET)
        commit = self.commit(
            "churn project: features, pipeline, contract, first data batch",
            "loopml.toml",
            ".gitignore",
            "features.py",
            "churn_pipeline.py",
            "contracts/churn.yaml",
            f"{DATASET}.loopml",
            *self.gitignores(),
        )
        self.ws = loopml.Workspace.open(self.root)
        loopml.set_default_workspace(self.ws)
        self.summary["data_versions"] = [
            {"batch": 1, "hash": version.hash, "rows": len(first), "commit": commit}
        ]
        self.summary["stages"]["data"] = {}
        stage.result(
            f"{len(first):,} customers over {scale.history_days} days → {DATASET} version "
            f"{version.hash[:12]}" + (f", committed {commit[:8]}" if commit else "")
        )
        stage.note(f"$ loopml data add {DATASET}")

    def write_batch(self, number: int, seen: pd.DataFrame, *, later: bool = True) -> None:
        folder = self.root / DATASET
        (folder / "profiles").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        name = f"batch-{number:03d}.parquet"
        synth.profiles(seen, seed=self.seed + number, later=later).to_parquet(
            folder / "profiles" / name, index=False
        )
        synth.labels(seen).to_parquet(folder / "labels" / name, index=False)

    def gitignores(self) -> list[str]:
        """The .gitignore files ``loopml data add`` wrote (they keep the data out of git)."""
        return [
            str(p.relative_to(self.root))
            for p in self.root.rglob(".gitignore")
            if ".loopml" not in p.parts and p.parent != self.root
        ]

    # -- 2. features -----------------------------------------------------------------------

    def stage_features(self, stage: Stage) -> None:
        import pandas as pd

        ws = self.workspace
        stage.doing("loopml features apply")
        ws.features.load()
        changes = ws.features.apply()
        labels = pd.read_parquet(self.root / DATASET / "labels" / "batch-001.parquet")
        stage.doing("point-in-time training set")
        training = ws.features.get_historical_features(labels, features="churn_v1")
        profiles = pd.read_parquet(self.root / DATASET / "profiles" / "batch-001.parquet")
        # the snapshot taken when the label row was seen, not the later one (which knows)
        merged = training.merge(
            profiles.rename(columns={"event_ts": "event_timestamp"}),
            on=["customer_id", "event_timestamp"],
            suffixes=("", "_then"),
        )
        exact = int((merged["support_calls"] == merged["support_calls_then"]).sum())
        if len(training) != len(labels) or exact != len(labels):
            raise StageFailed(
                "features",
                f"the training set has {len(training)} rows for {len(labels)} labels, "
                f"{exact} with the features known at their time",
            )
        later = len(profiles) - 2 * len(labels)
        self.summary["stages"]["features"] = {
            "applied": [f"{c.kind} {c.name}" for c in changes],
            "training_rows": len(training),
        }
        stage.result(
            f"{len(changes)} definitions applied (service churn_v1); training set of "
            f"{len(training):,} rows, each as known at its time ({later:,} later snapshots "
            "left out)"
        )
        stage.note("$ loopml features apply && loopml features show churn_v1")

    # -- 3. train --------------------------------------------------------------------------

    def stage_train(self, stage: Stage) -> None:
        ws = self.workspace
        stage.doing(f"loopml pipelines run {PIPELINE}")
        run = ws.pipelines.run(PIPELINE, raise_on_failure=False)
        if run.status != "FINISHED":
            raise StageFailed("train", f"pipeline run {run.id[:8]} {run.status}: {run.error}")
        outcome = run.result
        if not outcome or not outcome.get("promoted"):
            raise StageFailed("train", f"the gate did not promote the first model: {outcome}")
        record = ws.runs.get(run.tracking_run_id) if run.tracking_run_id else None
        metrics = record.metrics if record else {}
        self.summary["train"] = {
            "pipeline_run_id": run.id,
            "tracking_run_id": run.tracking_run_id,
            "version": outcome["version"],
            "metrics": metrics,
        }
        stage.result(
            f"pipeline run {run.id[:8]}: churn/{outcome['version']} passed the gate → "
            f"Production (accuracy {metrics.get('accuracy', float('nan')):.3f}, baseline "
            f"{metrics.get('baseline_accuracy', float('nan')):.3f})"
        )
        stage.note(f"$ loopml pipelines run {PIPELINE}")

    # -- 4. serve --------------------------------------------------------------------------

    def stage_serve(self, stage: Stage) -> None:
        ws = self.workspace
        stage.doing("loopml deploy create churn --model churn@production")
        deployment = ws.deployments.create(DEPLOYMENT, f"{MODEL}@production")
        self.server = Server(self.root, DEPLOYMENT)
        stage.doing(f"loopml serve churn --port {self.server.port}")
        self.server.start()
        live = self.live_customers(self.scale.live_requests, offset=0)
        stage.doing(f"sending {len(live)} requests")
        seen, answered = self.server.send(live, "live")
        if len(answered) != len(live):
            raise StageFailed("serve", f"answers: {dict(seen)} of {len(live)} requests")
        stage.doing("feeding labels back")
        taken = self.server.feed_back(live, "live", answered)
        self.summary["serve"] = {
            "url": self.server.url,
            "deployment_revision": deployment.revision,
            "requests": len(live),
            "answered": dict(seen),
            "labels": taken,
        }
        stage.result(
            f"{' '.join(self.server.command)}: {len(answered)} requests answered by "
            f"{', '.join(seen)}, then {taken} labels fed back"
        )

    def live_customers(self, rows: int, offset: int) -> pd.DataFrame:
        """Customers seen now (after the drift), with ids no other batch uses."""
        seed = self.seed + 1000 + offset
        return synth.customers(
            seed,
            self.time.now,
            hours=1,
            per_hour=rows,
            drifted=True,
            first_id=10_000_000 + offset * 100_000,
        )

    # -- 5. monitor ------------------------------------------------------------------------

    def stage_monitor(self, stage: Stage) -> None:
        from loopml.serving.labels import ingest_labels

        ws, t, scale = self.workspace, self.time, self.scale
        stage.doing("the past hours of traffic")
        before = synth.customers(
            self.seed + 100,
            t.monitor_start,
            hours=scale.windows_before,
            per_hour=scale.per_window,
            first_id=1_000_000,
        )
        after = synth.customers(
            self.seed + 200,
            t.drift,
            hours=scale.windows_after,
            per_hour=scale.per_window,
            drifted=True,
            first_id=2_000_000,
        )
        revision = ws.deployments.get(DEPLOYMENT).revision
        logged = log_history(ws, before, model=f"{MODEL}/1", revision=revision, seed=1)
        logged += log_history(ws, after, model=f"{MODEL}/1", revision=revision, seed=2)
        stage.doing("loopml labels ingest (labels known 2 hours later)")
        path = history_labels(
            _concat(before, after),
            self.root / ".loopml" / "demo-labels.csv",
            timedelta(hours=2),
            now=t.now,
        )
        ingested = ingest_labels(path, DEPLOYMENT, workspace=ws)
        # the drifted hours' customers, now labelled, are the next batch of data
        self.write_batch(2, after, later=False)

        stage.doing("loopml monitor run churn --window 1h")
        windows = ws.monitors.run(
            DEPLOYMENT, window="1h", since=t.monitor_start, until=t.monitor_end
        )
        alerts = ws.monitors.alerts(DEPLOYMENT)
        worst = [(w.start, _max_psi(w)) for w in windows]
        quiet = [psi for start, psi in worst if start < t.drift]
        if not alerts:
            raise StageFailed(
                "monitor", f"no alert fired; max PSI per window: {[round(p, 3) for _, p in worst]}"
            )
        alert = alerts[-1]
        if len(alerts) != 1 or alert.window_start < t.drift:
            raise StageFailed(
                "monitor",
                f"the alert fired for the window from {alert.window_start.isoformat()}, before "
                f"the drift at {t.drift.isoformat()}",
            )
        report = self.root / "report.html"
        stage.doing("loopml monitor report churn -o report.html")
        ws.monitors.report(DEPLOYMENT, report, since=t.monitor_start, until=t.monitor_end)
        event = next(iter(ws.events.read(kinds=["alert"], subject=DEPLOYMENT)), None)
        drifted = _drifted_features(windows, t.drift)
        accuracy = {
            when: _mean([w.value("accuracy") for w in windows if (w.start < t.drift) == early])
            for when, early in (("before", True), ("after", False))
        }
        self.summary["monitor"] = {
            "logged": logged,
            "labels_ingested": ingested.ingested,
            "windows": [{"start": s.isoformat(), "max_psi": round(p, 4)} for s, p in worst],
            "drifted_features": drifted,
            "accuracy": accuracy,
            "report": str(report),
        }
        self.summary["alert"] = {
            "id": alert.id,
            "rule": alert.rule,
            "severity": alert.severity,
            "value": alert.value,
            "window_start": alert.window_start.isoformat(),
            "fired_at": alert.fired_at.isoformat(),
            "event_id": event.id if event else None,
        }
        stage.result(
            f"{len(windows)} hourly windows: {len(quiet)} quiet before the drift (max PSI "
            f"{max(quiet, default=0):.2f}), then PSI {alert.value:.2f} on "
            f"{', '.join(drifted) or '?'} → alert #{alert.id} ({alert.severity}) for "
            f"{alert.window_start:%H:%M} UTC, event #{event.id if event else '?'}"
        )
        stage.note(
            f"labels of {ingested.ingested:,} requests arrived 2 hours after them: churn/1's "
            f"accuracy {_fmt(accuracy['before'])} before the drift, {_fmt(accuracy['after'])} "
            "after"
        )
        for notice in self.notices.lines:
            stage.note(f"alert channel 'log': {notice}")
        stage.note(f"report: {report}")

    # -- 6. retrain ------------------------------------------------------------------------

    def stage_retrain(self, stage: Stage) -> None:
        import loopml.data
        from loopml.pipelines.refs import load_pipeline
        from loopml.pipelines.scheduler import Scheduler

        ws = self.workspace
        stage.doing(f"loopml data add {DATASET} (the drifted, labelled hours)")
        version = loopml.data.add(DATASET)
        commit = self.commit(f"data: drifted batch 2 of {DATASET}", f"{DATASET}.loopml")
        self.summary["data_versions"].append(
            {
                "batch": 2,
                "hash": version.hash,
                "rows": self.scale.windows_after * self.scale.per_window,
                "commit": commit,
            }
        )
        stage.doing(f"loopml scheduler run {PIPELINE} --once")
        lines: list[str] = []
        scheduler = Scheduler([load_pipeline(PIPELINE, ws.root)], ws, log=lines.append)
        report = scheduler.run(once=True)
        runs = [r for r in ws.pipelines.runs() if r.trigger.startswith("event:alert")]
        if not runs or report.finished.get(runs[0].id) != "FINISHED":
            raise StageFailed(
                "retrain", f"the alert started no finished run: {report} {' | '.join(lines)}"
            )
        run = ws.pipelines.get_run(runs[0].id)
        candidate = int(run.output("promote")["version"])
        self.summary["retrain"] = {
            "pipeline_run_id": run.id,
            "trigger": runs[0].trigger,
            "tracking_run_id": run.tracking_run_id,
            "version": candidate,
        }
        stage.note(
            f"alert event → scheduler → pipeline run {run.id[:8]} ({runs[0].trigger}) → "
            f"churn/{candidate} on data {version.hash[:12]}"
        )
        # The gate first, before the candidate sees any traffic (a dry run: nothing moves);
        # the canary's completion runs it again and records it with the promotion.
        stage.doing(f"loopml models promote churn {candidate} --dry-run")
        precheck = ws.models.check_gate(MODEL, candidate)
        if not precheck.passed:
            failed = ", ".join(c.name for c in precheck.checks if not c.passed)
            raise StageFailed("retrain", f"the gate would block churn/{candidate}: {failed}")
        self.summary["retrain"]["gate_before_canary"] = True
        stage.note(
            f"$ loopml models promote churn {candidate} --dry-run → the gate passes "
            "(nothing moved); now the canary"
        )
        steps = self.canary(stage, candidate, "good")
        if ws.models.get(f"models:/{MODEL}@production").version != candidate:
            raise StageFailed("retrain", f"churn/{candidate} is not in Production: {steps}")
        assert self.server is not None
        self.server.wait_for_model(f"{MODEL}/{candidate}")
        gate = _beats_champion(ws.models.verdict(f"models:/{MODEL}/{candidate}"))
        self.summary["retrain"]["gate"] = gate
        stage.result(
            f"churn/{candidate} retrained by the alert, gate passed, canary "
            f"{' → '.join(s['action'] for s in steps)}, gate passed again at promotion"
            + (
                f" (accuracy {gate['score']:.3f} vs churn/{gate['champion_version']}'s "
                f"{gate['champion_score']:.3f} on the new holdout)"
                if gate
                else ""
            )
            + ": Production"
        )

    def canary(self, stage: Stage, candidate: int, what: str) -> list[dict[str, Any]]:
        """A canary of ``churn/CANDIDATE`` on the live server, watched until it completes
        or aborts; the controller's decisions."""
        from loopml.serving.controller import watch_once

        ws, server = self.workspace, self.server
        assert server is not None
        steps_done: list[dict[str, Any]] = []
        deployment = ws.deployments.canary(
            DEPLOYMENT,
            f"{MODEL}/{candidate}",
            [50, 100],
            step_duration=1.0,
            min_requests=self.scale.min_requests,
            aborts=["error_rate > 0.05"],
        )
        stage.note(
            f"$ loopml deploy canary churn --candidate churn/{candidate} --steps 50,100 "
            f"--step-duration 1s --min-requests {self.scale.min_requests} "
            "--abort 'error_rate > 0.05'"
        )
        revision = deployment.revision
        for round_ in range(8):
            server.wait_for_revision(revision)
            stage.doing(f"canary of churn/{candidate} ({what}): traffic, round {round_ + 1}")
            offset = 10 + candidate * 10 + round_
            seen, _ = server.send(self.live_customers(self.scale.canary_requests, offset), "c")
            time.sleep(1.0)  # the step's duration, and the server's log flush
            decision = watch_once(ws, DEPLOYMENT)
            steps_done.append(
                {
                    "candidate": f"{MODEL}/{candidate}",
                    "action": decision.action,
                    "reason": decision.reason,
                    "traffic": dict(seen),
                }
            )
            stage.note(f"watch: {decision.action}: {decision.reason}")
            if decision.action in ("abort", "complete"):
                break
            if decision.action == "advance" and decision.deployment is not None:
                revision = decision.deployment.revision
        self.summary.setdefault("deployment_steps", []).extend(steps_done)
        return steps_done

    # -- 7. rollback -----------------------------------------------------------------------

    def stage_rollback(self, stage: Stage) -> None:
        from loopml.demo.models import RaisesInTheSouth

        ws = self.workspace
        good = ws.models.get(f"models:/{MODEL}@production").version
        stage.doing("registering a deliberately bad candidate")
        model = ws.models.load(f"models:/{MODEL}/{good}")
        example = synth.customers(self.seed, self.time.now, hours=1, per_hour=20)
        example = example.loc[example["region"] != "south", synth.FEATURES].head(5)
        with ws.runs.start(experiment="churn-bad-candidates", name="raises-in-the-south"):
            bad = ws.models.register(
                MODEL,
                RaisesInTheSouth(model),
                input_example=example,
                description="deliberately bad: raises on customers in the south",
            ).version
        steps = self.canary(stage, bad, "bad")
        if steps[-1]["action"] != "abort":
            raise StageFailed("rollback", f"the bad canary of churn/{bad} was not aborted: {steps}")
        if ws.models.get(f"models:/{MODEL}@production").version != good:
            raise StageFailed("rollback", f"Production moved away from churn/{good}")

        stage.doing("loopml models rollback churn")
        back = self.cli("models", "rollback", MODEL, "--reason", "demo: one-command rollback")
        previous = ws.models.get(f"models:/{MODEL}@production").version
        assert self.server is not None
        self.server.wait_for_model(f"{MODEL}/{previous}")
        stage.note(f"$ loopml models rollback churn → {back}")
        stage.doing(f"loopml models promote churn {good}")
        forward = self.cli("models", "promote", MODEL, str(good))
        if ws.models.get(f"models:/{MODEL}@production").version != good:
            raise StageFailed("rollback", f"churn/{good} was not promoted again: {forward}")
        self.server.wait_for_model(f"{MODEL}/{good}")
        stage.note(f"$ loopml models promote churn {good} → gate passed again")
        self.summary["rollback"] = {
            "bad_version": bad,
            "canary": steps[-1]["reason"],
            "rolled_back_to": previous,
            "promoted_again": good,
        }
        stage.result(
            f"churn/{bad} (raises on some rows): canary aborted by the controller; "
            f"rollback → churn/{previous} in one command; churn/{good} promoted again"
        )

    def cli(self, *args: str) -> str:
        """``loopml ARGS`` in the workspace, as a user types it; its first output line."""
        done = subprocess.run(
            [sys.executable, "-m", "loopml.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=clean_environment(),
        )
        if done.returncode != 0:
            raise InvalidInput(
                f"`loopml {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}"
            )
        return (done.stdout.strip().splitlines() or [""])[0]

    # -- 8. summary ------------------------------------------------------------------------

    def stage_summary(self, stage: Stage) -> None:
        ws = self.workspace
        chain = ws.models.lineage(f"models:/{MODEL}@production")
        run = chain.get("run") or {}
        inputs = run.get("inputs") or []
        digests = [i.get("digest") for i in inputs]
        newest = self.summary["data_versions"][-1]
        if newest["hash"] not in digests:
            raise StageFailed(
                "summary",
                f"churn/{chain['version']} was trained on {digests}, not on the new data "
                f"version {newest['hash']}",
            )
        commit = (run.get("code") or {}).get("commit")
        gate = chain.get("gate") or {}
        self.summary["production"] = {
            "version": chain["version"],
            "uri": chain["uri"],
            "run_id": run.get("id"),
            "data_version": newest["hash"],
            "code_commit": commit,
            "features": chain.get("features"),
            "gate_passed": gate.get("passed"),
        }
        self.summary["report"] = self.summary["monitor"]["report"]
        self.summary["explore"] = EXPLORE
        stage.result(
            f"Production is churn/{chain['version']}: run {str(run.get('id'))[:8]}, data "
            f"{newest['hash'][:12]} (batch 2)" + (f", code {commit[:8]}" if commit else "")
        )


EXPLORE = [
    "loopml runs list",
    "loopml pipelines runs",
    "loopml models history churn",
    "loopml models lineage churn@production",
    "loopml alerts list",
    "loopml monitor show churn",
    "loopml deploy history churn",
    "loopml data status",
]


class _Captured(logging.Handler):
    """Keeps the alert channel's log lines for the summary instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _beats_champion(verdict: Any) -> dict[str, Any] | None:
    """The details of the gate's beats-champion check, when it ran."""
    if verdict is None:
        return None
    for check in verdict.checks:
        if check.name == "beats_champion" and check.details.get("champion_score") is not None:
            return dict(check.details)
    return None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and v == v]
    return sum(known) / len(known) if known else None


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def _max_psi(window: Any) -> float:
    values = [
        value
        for (feature, metric), value in window.metrics.items()
        if metric == "psi" and value == value
    ]
    return float(max(values, default=0.0))


def _drifted_features(windows: list[Any], drift: datetime) -> list[str]:
    """The features whose PSI went above 0.25 after the drift, worst first."""
    worst: dict[str, float] = {}
    for window in windows:
        if window.start < drift:
            continue
        for (feature, metric), value in window.metrics.items():
            if metric == "psi" and not feature.startswith("__") and value == value and value > 0.25:
                worst[feature] = max(worst.get(feature, 0.0), value)
    return sorted(worst, key=lambda f: -worst[f])
