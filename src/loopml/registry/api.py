"""The registry's namespace, ``ws.models`` (:class:`Models`)."""

from __future__ import annotations

import builtins
import difflib
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from loopml.exceptions import (
    Conflict,
    InvalidInput,
    LoopmlWarning,
    PromotionBlocked,
    RunNotFound,
)
from loopml.registry import versions as v
from loopml.registry.cache import CacheLimits, ModelCache, default_root
from loopml.registry.flavors import flavor_for, flavor_named
from loopml.registry.models import ModelContext, PythonModel
from loopml.registry.packages import fetch_package, library_versions, load_package, save_package
from loopml.registry.tables import model_versions

if TYPE_CHECKING:
    from loopml.config import Settings
    from loopml.registry import gates
    from loopml.registry.flavors import Flavor
    from loopml.registry.signature import Signature
    from loopml.store.blobs import BlobStore
    from loopml.store.db import Database
    from loopml.workspace import Workspace


@dataclass(frozen=True)
class _Package:
    """A model packaged for registration (:meth:`Models._package`)."""

    model: Any
    flavor: Flavor
    digest: str
    signature: Signature | None
    environment: dict[str, Any]


class Models:
    """``ws.models``: register, load, promote (through the gate), alias, roll back and trace
    model versions.

    >>> mv = ws.models.register("churn", clf, input_example=X_test[:5])
    >>> ws.models.promote("churn", mv.version)       # the gate decides
    >>> model = ws.models.load("models:/churn@production")
    """

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._cache: ModelCache | None = None

    @property
    def db(self) -> Database:
        return self._ws.db

    @property
    def blobs(self) -> BlobStore:
        return self._ws.blobs

    @property
    def settings(self) -> Settings:
        return self._ws.settings

    # -- registering and loading -------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        input_example: Any = None,
        *,
        artifacts: dict[str, str] | None = None,
        description: str | None = None,
        flavor: str | None = None,
        schema: Any = None,
        features: Any = None,
        reference_data: Any = None,
    ) -> v.ModelVersion:
        """Register a new version of ``name``: the model object, or a pickled model that run
        ``run_id`` logged at ``artifact_path``. Records signature, run and library versions;
        ``schema`` (a :class:`loopml.validation.Schema`) becomes the version's feature
        contract, which the gate checks the holdout against. ``features`` (a
        :class:`loopml.features.FeatureService` or its name, applied as it is now) records
        the service's version: the features this model reads, shown by ``lineage`` and
        checked on the gate's holdout. ``reference_data`` (the training data: a DataFrame, a
        pyarrow Table or a .parquet/.csv path) stores the version's reference profile for
        monitoring, with a profile of the model's predictions on a sample of it
        (:func:`loopml.monitoring.set_reference`).

        >>> mv = ws.models.register("churn", clf, input_example=X_test[:5])
        >>> mv.version, mv.uri
        (1, 'models:/churn/1')
        """
        if run_id is None:
            active = self._ws.runs.active()
            run_id = active.id if active is not None else None
        if run_id is not None:
            self._ws.runs.get(run_id)  # RunNotFound for a bad id
        reference = None
        if reference_data is not None:  # bad data is refused before anything is registered
            from loopml.monitoring.profile import as_frame

            reference = as_frame(reference_data)
        feature_service = (
            self._ws.features.service_version(features) if features is not None else None
        )
        package = self._package(
            name, model, run_id, artifact_path, input_example, artifacts, flavor
        )
        version = v.create_version(
            self.db,
            name,
            flavor=package.flavor.name,
            digest=package.digest,
            run_id=run_id,
            signature=package.signature,
            environment=package.environment,
            description=description,
            feature_service=feature_service,
        )
        if schema is not None:
            self._ws.schemas.attach(schema, model=version.uri)
        if reference is not None:
            from loopml.monitoring.profile import set_reference

            source = reference_data if isinstance(reference_data, (str, os.PathLike)) else None
            set_reference(
                version.uri,
                reference,
                source=os.fspath(source) if source is not None else None,
                # A PythonModel predicts once its context is loaded: let the registry do it.
                model=None if isinstance(package.model, PythonModel) else package.model,
                workspace=self._ws,
            )
        return version

    def _package(
        self,
        name: str,
        model: Any,
        run_id: str | None,
        artifact_path: str | None,
        input_example: Any,
        artifacts: dict[str, str] | None,
        flavor: str | None,
    ) -> _Package:
        """Package a version of ``name`` into :attr:`blobs`: the model (or the pickle that
        run ``run_id`` logged at ``artifact_path``), its flavor, the signature inferred from
        ``input_example`` and the Python and library versions (what ``register`` records)."""
        from loopml.registry.signature import infer_signature

        if model is None:
            if run_id is None or artifact_path is None:
                raise InvalidInput("register_model needs a model, or run_id and artifact_path")
            model = self._model_from_artifact(run_id, artifact_path)
        chosen = flavor_named(flavor) if flavor else flavor_for(model)
        signature = None
        if input_example is not None:
            if isinstance(model, PythonModel):
                model.load_context(ModelContext(artifacts=dict(artifacts or {})))
            output = model.predict(input_example)
            signature = infer_signature(input_example, output)
        environment = {
            "python": platform.python_version(),
            "libraries": library_versions(chosen.libraries),
        }
        digest, _meta = save_package(
            self.blobs,
            model,
            chosen,
            artifacts or {},
            {"name": name, "run_id": run_id, "environment": environment},
        )
        return _Package(model, chosen, digest, signature, environment)

    def _model_from_artifact(self, run_id: str, artifact_path: str) -> Any:
        import pickle

        with tempfile.TemporaryDirectory() as tmp:
            path = self._ws.runs.download_artifacts(run_id, artifact_path, dst=tmp)
            if path.is_dir():
                candidates = sorted(path.glob("*.pkl"))
                if not candidates:
                    raise InvalidInput(f"No .pkl model file under artifact {artifact_path!r}")
                path = candidates[0]
            with path.open("rb") as fh:
                return pickle.load(fh)

    def load(self, uri: str) -> Any:
        """Load ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME@production``.

        The package is fetched (every file's hash verified) and unpacked once into the model
        cache, then reused (:mod:`loopml.registry.cache`); its manifest must still be in the
        blob store. A warning names libraries whose installed version differs from the one
        recorded at registration.
        """
        version = self.get(uri)
        folder = fetch_package(self.blobs, version.digest, f"{version.uri} ({uri})", self.cache)
        model, _meta = load_package(folder)
        recorded = version.environment.get("libraries", {})
        current = library_versions(tuple(recorded))
        drift = {
            k: (recorded[k], current.get(k)) for k in recorded if current.get(k) != recorded[k]
        }
        if (
            version.environment.get("python", platform.python_version())
            != platform.python_version()
        ):
            drift["python"] = (version.environment["python"], platform.python_version())
        if drift:
            listing = ", ".join(
                f"{k} {old} → {new or 'missing'}" for k, (old, new) in drift.items()
            )
            warnings.warn(
                f"{version.uri} was registered with other library versions: {listing}. "
                "Predictions may differ; `loopml runs reproduce` pins the original ones.",
                LoopmlWarning,
                stacklevel=2,
            )
        return model

    @property
    def cache(self) -> ModelCache:
        """Where :meth:`load` keeps unpacked packages (see :mod:`loopml.registry.cache`)."""
        cache = self._cache
        if cache is None:
            from loopml.config import STATE_DIR

            limits = CacheLimits.from_settings(self.settings.registry)
            cache = ModelCache(default_root(self.settings.root, STATE_DIR), limits)
            self._cache = cache
        return cache

    # -- reading ---------------------------------------------------------------------------

    def get(self, uri: str) -> v.ModelVersion:
        return v.get_version(self.db, uri)

    def list(self) -> builtins.list[dict[str, Any]]:
        return v.list_models(self.db)

    def versions(self, name: str) -> builtins.list[v.ModelVersion]:
        return v.list_versions(self.db, name)

    def history(self, name: str) -> builtins.list[v.ModelEvent]:
        """Every registration, stage and alias move, gate verdict, approval and rollback."""
        return v.events(self.db, name)

    def state_at(self, name: str, at: datetime) -> dict[str, Any]:
        """Time travel: which version was Production (and each alias) at ``at``."""
        return v.state_at(self.db, name, at)

    def verdict(self, uri: str) -> gates.Verdict | None:
        """The latest gate verdict recorded for a version."""
        from loopml.registry import gates

        version = self.get(uri)
        for event in reversed(v.events(self.db, version.name)):
            if event.kind == "gate" and event.version == version.version and event.verdict:
                return gates.Verdict.from_dict(event.verdict)
        return None

    # -- aliases and stages ----------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        v.set_alias(self.db, name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        v.delete_alias(self.db, name, alias)

    def policy(self, name: str) -> gates.GatePolicy | None:
        """The policy in ``loopml.toml`` under ``[gates.<name>]``, if any."""
        from loopml.config import CONFIG_FILE
        from loopml.registry import gates

        configured = self.settings.gates  # a table of tables, checked when loaded
        if name not in configured:
            return None
        config = self.settings.root / CONFIG_FILE
        return gates.GatePolicy.from_dict(dict(configured[name]), f"{config} [gates.{name}]")

    def promote(
        self,
        name: str,
        version: int,
        to: str = "production",
        *,
        policy: gates.GatePolicy | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> gates.Verdict | None:
        """Move ``version`` to a stage. Production goes through the gate: the pointer moves
        only if every check passes (raises :class:`PromotionBlocked` otherwise, leaving the
        version where it was). ``force=True`` needs a ``reason`` and is recorded as an
        override. Returns the verdict (None for other stages)."""
        from loopml.registry import gates

        stage = v.stage_name(to)
        if force and not (reason and reason.strip()):
            raise InvalidInput("A forced promotion needs a reason (--reason '...'); it is recorded")
        if self.get(f"models:/{name}/{version}").stage == stage:
            raise Conflict(f"{name}/{version} is already in {stage}: nothing to promote")
        if stage != v.PRODUCTION:
            self.db.transact(lambda conn: v.move_stage(conn, name, version, stage, reason=reason))
            return None
        chosen = policy or self._configured_gate(name)
        for _ in range(3):
            verdict, champion = self._evaluate(name, version, chosen, force=force)
            if force:
                verdict = gates.Verdict(**{**verdict.__dict__, "forced": True, "reason": reason})

            def tx(
                conn: Connection, verdict: gates.Verdict = verdict, champion: int | None = champion
            ) -> bool | None:
                return self._record_and_move(conn, name, version, verdict, champion, force, reason)

            moved = self.db.transact(tx)
            if moved is not None:
                break  # Production did not change under us
        else:
            raise Conflict(f"Production of {name!r} kept changing during evaluation; try again")
        if force or (verdict.passed and not verdict.awaiting_approval):
            return verdict
        if verdict.awaiting_approval:
            raise PromotionBlocked(
                f"{name}/{version} passed the gate and awaits approval: "
                f"`loopml models approve {name} {version}`",
                verdict,
            )
        raise PromotionBlocked(
            f"Promotion of {name}/{version} blocked by the gate; it stays where it was.\n"
            + verdict.summary(),
            verdict,
        )

    def check_gate(
        self, name: str, version: int, *, policy: gates.GatePolicy | None = None
    ) -> gates.Verdict:
        """Run the gate on ``version`` as a promotion to Production would — against the
        current champion, on the same holdout — and return the verdict, moving and recording
        nothing: the check before a canary sends the candidate real traffic (the promotion at
        the canary's end runs the gate again and records it)."""

        chosen = policy or self._configured_gate(name)
        verdict, _ = self._evaluate(name, version, chosen)
        return verdict

    def _configured_gate(self, name: str) -> gates.GatePolicy:
        """``[gates.<name>]`` of loopml.toml; without one, a gate of the checks every version
        can take (the signature's), with a warning: a misspelt section would otherwise
        switch the gate off without a word."""
        from loopml.registry import gates

        found = self.policy(name)
        if found is not None:
            return found
        others = sorted(set(self.settings.gates) - {m["name"] for m in self.list()})
        hint = ""
        if others:
            close = difflib.get_close_matches(name, others, n=1)
            hint = (
                f" ([gates.{close[0]}] names no registered model: a typo for {name}?)"
                if close
                else f" ({', '.join(f'[gates.{o}]' for o in others)} name no registered model)"
            )
        warnings.warn(
            f"No gate is configured for {name!r}: only the signature is checked. Add "
            f"[gates.{name}] to loopml.toml (metric, holdout, label) to score candidates "
            f"against the champion{hint}.",
            LoopmlWarning,
            stacklevel=3,
        )
        return gates.GatePolicy(beat_champion=False)

    def _evaluate(
        self, name: str, version: int, policy: gates.GatePolicy, *, force: bool = False
    ) -> tuple[gates.Verdict, int | None]:
        """Score the candidate; a holdout that can't be used is an error before anything is
        recorded (forced promotions record it as a failed ``holdout`` check instead)."""
        from loopml.registry import gates

        candidate_version = self.get(f"models:/{name}/{version}")
        candidate = self.load(candidate_version.uri)
        champion_version: v.ModelVersion | None = None
        try:
            found = self.get(f"models:/{name}@production")
            champion_version = found if found.version != version else None
        except LookupError:
            champion_version = None
        champion = self.load(champion_version.uri) if champion_version else None
        holdout = None
        holdout_digest = None
        holdout_error: Exception | None = None
        if policy.holdout:
            path = Path(policy.holdout)
            if not path.is_absolute():
                path = self.settings.root / path
            try:
                holdout = gates.read_holdout(path, policy.label)
                from loopml.tracking.inputs import dataset_ref

                holdout_digest = dataset_ref(path).digest
            except InvalidInput as exc:
                if not force:
                    raise
                holdout_error = exc
        metrics: dict[str, float] = {}
        if candidate_version.run_id:
            try:
                metrics = self._ws.runs.get(candidate_version.run_id).metrics
            except RunNotFound:
                metrics = {}
        verdict = gates.evaluate(
            policy,
            name=name,
            version=version,
            candidate=candidate,
            candidate_signature=candidate_version.signature,
            candidate_metrics=metrics,
            champion=champion,
            champion_version=champion_version.version if champion_version else None,
            champion_signature=champion_version.signature if champion_version else None,
            holdout=holdout,
            holdout_digest=holdout_digest,
            root=self.settings.root,
            contract=self._ws.schemas.get(model=candidate_version.uri),
            feature_contract=self._feature_contract(candidate_version),
        )
        if holdout_error is not None:
            failed = gates.CheckResult("holdout", False, {"error": str(holdout_error)})
            verdict = gates.Verdict(
                **{**verdict.__dict__, "passed": False, "checks": (failed, *verdict.checks)}
            )
        return verdict, verdict.champion

    def _feature_contract(self, version: v.ModelVersion) -> tuple[str, builtins.list[str]] | None:
        """``(SERVICE:VERSION, feature columns)`` of the version's feature service, if any."""
        if version.feature_service is None:
            return None
        from loopml.features.registry import service_features

        return version.feature_service, service_features(self.db, version.feature_service)

    def _record_and_move(
        self,
        conn: Connection,
        name: str,
        version: int,
        verdict: gates.Verdict,
        champion: int | None,
        force: bool,
        reason: str | None,
    ) -> bool | None:
        mid = v.model_id(conn, name)
        if conn.dialect.name == "postgresql":
            v._lock_model(conn, mid)
        current = conn.execute(
            select(model_versions.c.version).where(
                model_versions.c.model_id == mid, model_versions.c.stage == v.PRODUCTION
            )
        ).scalar()
        if current == version:
            current = None
        if current != champion:
            return None  # someone promoted meanwhile: evaluate again against the new champion
        v.record_event(conn, mid, "gate", version=version, verdict=verdict.to_dict(), reason=reason)
        if force:
            v.move_stage(
                conn,
                name,
                version,
                v.PRODUCTION,
                kind="override",
                reason=reason,
                verdict=verdict.to_dict(),
            )
            return True
        if verdict.passed and not verdict.awaiting_approval:
            v.move_stage(conn, name, version, v.PRODUCTION, reason="gate passed")
            return True
        if verdict.awaiting_approval:
            v.record_event(conn, mid, "approval_requested", version=version)
        return False

    def approve(self, name: str, version: int, reason: str | None = None) -> gates.Verdict:
        """Approve a version whose gate passed with ``require_approval``; moves Production."""
        verdict = self.verdict(f"models:/{name}/{version}")
        if verdict is None or not verdict.passed:
            raise Conflict(
                f"{name}/{version} has no passing gate verdict to approve; "
                f"run `loopml models promote {name} {version}` first"
            )

        def tx(conn: Connection) -> None:
            mid = v.model_id(conn, name)
            current = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_id == mid, model_versions.c.stage == v.PRODUCTION
                )
            ).scalar()
            if current == version:
                raise Conflict(f"{name}/{version} is already in Production")
            if current != verdict.champion:
                raise Conflict(
                    f"Production of {name!r} changed since the gate ran (now version {current}); "
                    f"promote {version} again"
                )
            v.record_event(conn, mid, "approved", version=version, reason=reason)
            v.move_stage(conn, name, version, v.PRODUCTION, reason=reason or "approved")

        self.db.transact(tx)
        return verdict

    def rollback(self, name: str, reason: str | None = None) -> int:
        """Move Production back to the version that held it before; returns that version.
        Rollbacks walk back like undo: rolling back twice from 3 (after 1 → 2 → 3) gives 2,
        then 1, never the version just rolled back from."""
        held: list[int] = []  # the Production holders still to go back through, oldest first
        for e in v.events(self.db, name):
            if e.target != v.PRODUCTION or e.to_version is None:
                continue
            if e.kind == "rollback":
                while held and held[-1] != e.to_version:
                    held.pop()
                if not held:
                    held.append(e.to_version)
            elif e.kind in {"stage", "override"}:
                held.append(e.to_version)

        def tx(conn: Connection) -> int:
            mid = v.model_id(conn, name)
            current = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_id == mid, model_versions.c.stage == v.PRODUCTION
                )
            ).scalar()
            if current is None:
                raise Conflict(f"{name!r} has no Production version to roll back")
            earlier = list(held)
            while earlier and earlier[-1] == current:
                earlier.pop()
            if not earlier:
                raise Conflict(
                    f"{name!r} has no earlier Production version to roll back to (each one "
                    f"before {name}/{current} was rolled back from already); promote the "
                    f"version you want: `loopml models promote {name} VERSION`"
                )
            target = earlier[-1]
            v.move_stage(
                conn,
                name,
                target,
                v.PRODUCTION,
                kind="rollback",
                reason=reason or f"rollback from version {current}",
            )
            return target

        return self.db.transact(tx)

    # -- lineage ---------------------------------------------------------------------------

    def _features_lineage(self, version: v.ModelVersion) -> dict[str, Any] | None:
        contract = self._feature_contract(version)
        if contract is None:
            return None
        service, _, number = contract[0].rpartition(":")
        return {"service": service, "version": int(number), "features": contract[1]}

    def lineage(self, uri: str) -> dict[str, Any]:
        """version → run → params, metrics, code commit, environment, input data versions →
        gate verdict → who promoted it."""
        version = self.get(uri)
        run: dict[str, Any] | None = None
        if version.run_id:
            try:
                record = self._ws.runs.get(version.run_id)
                env = record.environment or {}
                git = env.get("git") or {}
                run = {
                    "id": record.id,
                    "name": record.name,
                    "experiment": record.experiment,
                    "status": record.status,
                    "params": record.params,
                    "metrics": record.metrics,
                    "seed": record.seed,
                    "code": {
                        "commit": git.get("commit"),
                        "branch": git.get("branch"),
                        "dirty": git.get("dirty"),
                        "remote": git.get("remote"),
                    },
                    "environment": {
                        "python": (env.get("python") or {}).get("version"),
                        "platform": (env.get("platform") or {}).get("platform"),
                        "host": env.get("host"),
                        "packages_digest": env.get("packages_digest"),
                    },
                    "inputs": record.inputs,
                }
            except RunNotFound:
                run = {"id": version.run_id, "missing": True}
        events = [e for e in v.events(self.db, version.name) if e.version == version.version]
        verdicts = [e for e in events if e.kind == "gate"]
        promotions = [
            {
                "kind": e.kind,
                "stage": e.target,
                "actor": e.actor,
                "at": e.created_at.isoformat(),
                "reason": e.reason,
                "replaced": e.from_version,
            }
            for e in events
            if e.kind in {"stage", "override", "rollback", "approved"}
        ]
        return {
            "model": version.name,
            "version": version.version,
            "uri": version.uri,
            "stage": version.stage,
            "aliases": list(version.aliases),
            "flavor": version.flavor,
            "digest": version.digest,
            "signature": version.signature.to_dict() if version.signature else None,
            "environment": version.environment,
            "features": self._features_lineage(version),
            "registered_at": version.created_at.isoformat(),
            "run": run,
            "gate": verdicts[-1].verdict if verdicts else None,
            "promotions": promotions,
        }
