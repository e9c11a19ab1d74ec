"""``ws.deployments``: create, change (by strategy), read and roll back deployments; each
change is a new revision of the configuration (:mod:`loopml.serving.deployments`).

    ws.deployments.create("churn", "models:/churn@production")
    ws.deployments.canary("churn", "churn/4", steps=[5, 25, 50, 100],
                          aborts=["error_rate > 0.02", "p99_ms > 250"])
    ws.deployments.blue_green("churn", "churn/4"); ws.deployments.switch("churn")
    ws.deployments.rollback("churn", reason="bad canary")
    ws.deployments.report("pricing", mde=0.02)      # A/B or champion/challenger statistics
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from loopml.exceptions import Conflict
from loopml.serving.deployments import (
    Deployment,
    Variant,
    _latest_row,
    get,
    revision_of,
    save,
)
from loopml.serving.strategies import (
    DEFAULT_STEPS,
    Abort,
    _model_ref,
    ab,
    blue_green,
    canary,
    champion_challenger,
    check_steps,
    shadow,
    single,
    switch,
)
from loopml.serving.tables import deployments

if TYPE_CHECKING:
    from datetime import datetime

    from loopml.registry.gates import GatePolicy
    from loopml.serving.report import Report
    from loopml.workspace import Workspace


class Deployments:
    """``ws.deployments``: create, change, read and roll back deployments."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def create(
        self,
        name: str,
        model: str,
        *,
        key: str | None = None,
        feature_service: str | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """A single-model deployment of ``model`` (``churn@production`` follows the alias).
        An existing deployment of that name is a :class:`Conflict`."""
        deployment = Deployment(
            name, (Variant("primary", model),), key=key, feature_service=feature_service
        )
        self._check_model(model)
        if feature_service is not None:
            # the definitions the server will use (features.py, or those given to
            # ws.features.use): FeatureNotFound, with a hint, for a service they don't hold
            self.workspace.features.refs(feature_service)

        def tx(conn: Connection) -> Deployment:
            if _latest_row(conn, name) is not None:
                raise Conflict(
                    f"Deployment {name!r} exists; change it with `loopml deploy` commands or "
                    "roll it back."
                )
            return save(conn, deployment, reason=reason or "created", event="deployment.created")

        return self.workspace.db.transact(tx)

    def update(
        self,
        deployment: Deployment,
        *,
        reason: str | None = None,
        event: str = "deployment.changed",
    ) -> Deployment:
        """Store ``deployment`` (made from :meth:`get` with changes) as the next revision; a
        change made meanwhile by someone else is a :class:`Conflict`."""
        for variant in deployment.variants:
            self._check_model(variant.model)
        return self.workspace.db.transact(
            lambda conn: save(
                conn, deployment, reason=reason, expect_revision=deployment.revision, event=event
            )
        )

    def get(self, name: str) -> Deployment:
        """The newest revision of deployment ``name``."""
        with self.workspace.db.read() as conn:
            return get(conn, name)

    def revision(self, name: str) -> int:
        with self.workspace.db.read() as conn:
            return revision_of(conn, name)

    def list(self) -> Sequence[Deployment]:
        """The newest revision of every deployment, by name."""
        newest = (
            select(deployments.c.name, func.max(deployments.c.revision).label("revision"))
            .group_by(deployments.c.name)
            .subquery()
        )
        stmt = (
            select(deployments)
            .join(
                newest,
                (newest.c.name == deployments.c.name)
                & (newest.c.revision == deployments.c.revision),
            )
            .order_by(deployments.c.name)
        )
        with self.workspace.db.read() as conn:
            return [Deployment.from_row(r) for r in conn.execute(stmt).all()]

    def history(self, name: str) -> Sequence[Deployment]:
        """Every revision of ``name``, oldest first: what changed, who, when and why."""
        with self.workspace.db.read() as conn:
            get(conn, name)  # DeploymentNotFound with a hint
            rows = conn.execute(
                select(deployments)
                .where(deployments.c.name == name)
                .order_by(deployments.c.revision)
            ).all()
        return [Deployment.from_row(r) for r in rows]

    def rollback(self, name: str, *, reason: str | None = None) -> Deployment:
        """Make the configuration that served before the current one current again (as a new
        revision): the state before the current rollout, not its previous step — rolling a
        canary back sends all traffic to the primary, and a completed canary goes back to
        what served before it. Rollbacks walk back like undo (never to the state just rolled
        back from)."""

        def tx(conn: Connection) -> Deployment:
            rows = conn.execute(
                select(deployments)
                .where(deployments.c.name == name)
                .order_by(deployments.c.revision)
            ).all()
            if not rows:
                get(conn, name)  # raises DeploymentNotFound
            states = _states([Deployment.from_row(row) for row in rows])
            earlier = [d for d in states[:-1] if d.strategy != "canary"]  # steps: transitional
            if not earlier:
                current = states[-1]
                raise Conflict(
                    f"Deployment {name!r} has no earlier revision to roll back to: it serves "
                    f"what it served before its last change ({_serving_text(current)}). If a "
                    "promotion was the change, roll the model back: `loopml models rollback "
                    "NAME`."
                )
            previous = earlier[-1]
            why = reason or f"rollback to revision {previous.revision}"
            return save(conn, previous, reason=why, event="deployment.rolled_back")

        return self.workspace.db.transact(tx)

    # -- strategies: each applies the pure constructor of the same name to the newest
    # revision and stores the result (a change made meanwhile is a Conflict) ---------------

    def single(self, name: str, model: str, *, reason: str | None = None) -> Deployment:
        """Serve ``model`` alone (ends any strategy)."""
        return self._change(name, lambda d: single(d, model), reason or f"single {model}")

    def shadow(self, name: str, candidate: str, *, reason: str | None = None) -> Deployment:
        """Shadow ``candidate`` behind the primary (see :func:`shadow`)."""
        return self._change(
            name, lambda d: shadow(d, candidate), reason or f"shadow {_model_ref(candidate)}"
        )

    def canary(
        self,
        name: str,
        candidate: str,
        steps: Sequence[float] = DEFAULT_STEPS,
        *,
        step_duration: float = 600.0,
        min_requests: int = 200,
        aborts: Sequence[str] = (),
        reason: str | None = None,
    ) -> Deployment:
        """Start a canary of ``candidate`` at the first of ``steps`` (see :func:`canary`)."""
        # Bad input is refused before the store is read.
        check_steps(steps)
        for expression in aborts:
            Abort.parse(expression)
        return self._change(
            name,
            lambda d: canary(
                d,
                candidate,
                steps,
                step_duration=step_duration,
                min_requests=min_requests,
                aborts=aborts,
            ),
            reason or f"canary {_model_ref(candidate)}",
        )

    def blue_green(self, name: str, candidate: str, *, reason: str | None = None) -> Deployment:
        """Load ``candidate`` warm beside the live model (see :func:`blue_green`)."""
        return self._change(
            name,
            lambda d: blue_green(d, candidate),
            reason or f"blue-green: {_model_ref(candidate)} on standby",
        )

    def switch(self, name: str, *, reason: str | None = None) -> Deployment:
        """Blue-green: move all traffic to the standby side at once (see :func:`switch`)."""

        def why(d: Deployment) -> str:
            nxt = switch(d).primary
            return f"switch to {nxt.name} ({nxt.model})"

        return self._change(name, switch, reason, default_reason=why)

    def ab(
        self,
        name: str,
        variants: Mapping[str, tuple[str, float]],
        *,
        key: str | None = None,
        metric: str = "conversion",
        reason: str | None = None,
    ) -> Deployment:
        """Start a sticky A/B test (see :func:`ab`)."""
        return self._change(
            name,
            lambda d: ab(d, variants, key=key, metric=metric),
            reason or "a/b " + ", ".join(f"{n}={m}:{w:g}" for n, (m, w) in variants.items()),
        )

    def champion_challenger(
        self, name: str, challenger: str, *, reason: str | None = None
    ) -> Deployment:
        """Score ``challenger`` on every request beside the champion (see
        :func:`champion_challenger`)."""
        return self._change(
            name,
            lambda d: champion_challenger(d, challenger),
            reason or f"challenger {_model_ref(challenger)}",
        )

    def report(
        self,
        name: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        metric: str | None = None,
        mde: float | None = None,
        alpha: float = 0.05,
        power: float = 0.8,
    ) -> Report:
        """The statistics of A/B or champion/challenger deployment ``name``: per-variant
        outcomes from feedback, the right test, the always-valid sequential test and what to
        do next (see :mod:`loopml.serving.report`)."""
        from loopml.serving.report import report

        return report(
            name,
            since=since,
            until=until,
            metric=metric,
            mde=mde,
            alpha=alpha,
            power=power,
            workspace=self.workspace,
        )

    def promote_challenger(
        self,
        name: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        metric: str | None = None,
        mde: float | None = None,
        alpha: float = 0.05,
        power: float = 0.8,
        policy: GatePolicy | None = None,
        reason: str | None = None,
    ) -> tuple[Report, Deployment]:
        """Promote the challenger of ``name`` through the registry gate when its report
        recommends it (see :func:`loopml.serving.report.promote_challenger`)."""
        from loopml.serving.report import promote_challenger

        return promote_challenger(
            name,
            since=since,
            until=until,
            metric=metric,
            mde=mde,
            alpha=alpha,
            power=power,
            policy=policy,
            reason=reason,
            workspace=self.workspace,
        )

    def _change(
        self,
        name: str,
        make: Callable[[Deployment], Deployment],
        reason: str | None,
        *,
        default_reason: Callable[[Deployment], str] | None = None,
    ) -> Deployment:
        current = self.get(name)
        changed = make(current)
        if reason is None and default_reason is not None:
            reason = default_reason(current)
        return self.update(changed, reason=reason)

    def _check_model(self, model: str) -> None:
        ref = model if model.startswith("models:/") else f"models:/{model}"
        self.workspace.models.get(ref)  # ModelNotFound / ModelVersionNotFound with a hint


def _states(history: Sequence[Deployment]) -> list[Deployment]:
    """The configurations a deployment went through, oldest first, as an undo stack: one
    entry per setup (strategy and which model plays which part; a canary's steps are one
    setup, its last revision kept), and a return to an earlier setup (a rollback, an abort,
    a switch back) drops what came after it."""
    stack: list[tuple[tuple[Any, ...], Deployment]] = []
    for revision in history:
        setup = (
            revision.strategy,
            tuple((v.name, v.model, v.role) for v in revision.variants),
            revision.key,
            revision.feature_service,
        )
        at = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == setup), None)
        if at is not None:
            del stack[at:]
        stack.append((setup, revision))
    return [revision for _, revision in stack]


def _serving_text(deployment: Deployment) -> str:
    return ", ".join(
        f"{v.name} {v.model.removeprefix('models:/')} {v.weight:g}%" for v in deployment.variants
    )
