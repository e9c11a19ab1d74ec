"""Deployments: what a server serves, as revisions of a configuration in the metadata DB.

A :class:`Deployment` names its variants (a model reference each, a traffic weight and a
role), its strategy and the request field that keys sticky assignment. Every change writes a
new revision (with who and why) and a ``deployment.*`` event; every server replica polls the
newest revision and follows it, so two replicas over one workspace always agree. Rollback
writes a copy of the previous revision.

    ws.deployments.create("churn", "models:/churn@production")
    ws.deployments.get("churn").variants[0].model        # 'models:/churn@production'
    ws.deployments.history("churn")                       # every revision, newest last
    ws.deployments.rollback("churn", reason="bad canary")

Strategies are pure constructors from the current revision to the next (:func:`shadow`,
:func:`canary`, :func:`blue_green`, :func:`switch`, :func:`ab`, :func:`champion_challenger`,
:func:`single`); ``ws.deployments.<strategy>(name, ...)`` applies one and stores it::

    ws.deployments.canary("churn", "churn/4", steps=[5, 25, 50, 100],
                          aborts=["error_rate > 0.02", "p99_ms > 250"])
    ws.deployments.blue_green("churn", "churn/4"); ws.deployments.switch("churn")
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from loopml import events
from loopml.exceptions import Conflict, InvalidInput, NotFound
from loopml.serving.tables import deployments
from loopml.store.clock import now_ms, to_datetime

if TYPE_CHECKING:
    from loopml.workspace import Workspace

#: Strategies a deployment can run; each fixes which roles its variants may have.
STRATEGIES = ("single", "shadow", "canary", "blue-green", "ab", "champion-challenger")
#: ``primary`` answers, ``candidate`` gets a share of the traffic, ``shadow`` scores every
#: request off the response path (shadow and champion/challenger), ``standby`` is loaded warm
#: with no traffic (blue-green), ``variant`` is one arm of an A/B test.
ROLES = ("primary", "candidate", "shadow", "standby", "variant")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DeploymentNotFound(NotFound):
    """No deployment of that name."""


@dataclass(frozen=True)
class Variant:
    """One model a deployment serves: its name (``primary``, ``canary``, ``a``...), the
    model reference (``models:/churn@production`` follows the alias), the share of traffic
    it answers (0–100) and its role."""

    name: str
    model: str
    weight: float = 100.0
    role: str = "primary"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise InvalidInput(f"Variant name {self.name!r}: letters, digits, _ . - only.")
        model = self.model if self.model.startswith("models:/") else f"models:/{self.model}"
        object.__setattr__(self, "model", model)
        if self.role not in ROLES:
            raise InvalidInput(f"Variant role {self.role!r}: one of {', '.join(ROLES)}.")
        if not 0 <= float(self.weight) <= 100:
            raise InvalidInput(f"Variant {self.name!r}: weight {self.weight} is not 0–100.")
        object.__setattr__(self, "weight", float(self.weight))


@dataclass(frozen=True)
class Deployment:
    """One revision of a deployment's configuration."""

    name: str
    variants: tuple[Variant, ...]
    strategy: str = "single"
    revision: int = 0
    key: str | None = None  # the request field that keys sticky assignment (else request id)
    feature_service: str | None = None  # fill the models' features from the online store
    settings: Mapping[str, Any] = field(default_factory=dict)  # strategy settings (steps, ...)
    created_at: datetime | None = None
    actor: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise InvalidInput(
                f"Deployment name {self.name!r}: a letter or digit, then letters, digits, "
                "_ . - (at most 128)."
            )
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"Strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}.")
        variants = tuple(self.variants)
        if not variants:
            raise InvalidInput(f"Deployment {self.name!r} serves no model.")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise InvalidInput(f"Deployment {self.name!r} repeats a variant name: {names}.")
        answering = [v for v in variants if v.role in {"primary", "candidate", "variant"}]
        if not answering or abs(sum(v.weight for v in answering) - 100.0) > 1e-6:
            raise InvalidInput(
                f"Deployment {self.name!r}: the weights of the variants that answer "
                f"({', '.join(f'{v.name}={v.weight:g}' for v in answering) or 'none'}) must "
                "add up to 100."
            )
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "settings", dict(self.settings))

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise InvalidInput(f"Deployment {self.name!r} has no variant {name!r}.")

    @property
    def primary(self) -> Variant:
        """The variant that answers when nothing else does."""
        for variant in self.variants:
            if variant.role == "primary":
                return variant
        return max(self.variants, key=lambda v: v.weight)

    def config(self) -> dict[str, Any]:
        """The stored JSON (without revision and who/when/why)."""
        return {
            "strategy": self.strategy,
            "variants": [asdict(v) for v in self.variants],
            "key": self.key,
            "feature_service": self.feature_service,
            "settings": dict(self.settings),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "revision": self.revision,
            **self.config(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "actor": self.actor,
            "reason": self.reason,
        }

    @classmethod
    def from_row(cls, row: Any) -> Deployment:
        config = json.loads(row.config)
        return cls(
            name=row.name,
            variants=tuple(Variant(**v) for v in config["variants"]),
            strategy=config.get("strategy", "single"),
            revision=row.revision,
            key=config.get("key"),
            feature_service=config.get("feature_service"),
            settings=config.get("settings") or {},
            created_at=to_datetime(row.created_at),
            actor=row.actor,
            reason=row.reason,
        )


def _latest_row(conn: Connection, name: str) -> Any:
    return conn.execute(
        select(deployments)
        .where(deployments.c.name == name)
        .order_by(deployments.c.revision.desc())
        .limit(1)
    ).first()


def save(
    conn: Connection,
    deployment: Deployment,
    *,
    reason: str | None = None,
    expect_revision: int | None = None,
    event: str = "deployment.changed",
) -> Deployment:
    """Write ``deployment`` as the next revision (in ``conn``'s transaction) with an event.
    ``expect_revision`` guards against a concurrent change: a different current revision
    is a :class:`Conflict`."""
    from loopml.registry.versions import actor

    row = _latest_row(conn, deployment.name)
    current = row.revision if row is not None else 0
    if expect_revision is not None and current != expect_revision:
        raise Conflict(
            f"Deployment {deployment.name!r} changed meanwhile (now revision {current}); "
            "look at `loopml deploy status` and try again."
        )
    revision = current + 1
    who = actor()
    at = now_ms()
    try:
        conn.execute(
            insert(deployments).values(
                name=deployment.name,
                revision=revision,
                config=json.dumps(deployment.config(), sort_keys=True),
                actor=who,
                reason=reason,
                created_at=at,
            )
        )
    except IntegrityError as exc:
        # Another process wrote this revision between our read and our insert (PostgreSQL
        # reads committed data; the unique (name, revision) index decides who won).
        raise Conflict(
            f"Deployment {deployment.name!r} changed meanwhile (revision {revision} was "
            "written by someone else); look at `loopml deploy status` and try again."
        ) from exc
    events.emit(
        conn,
        event,
        deployment.name,
        {"revision": revision, "strategy": deployment.strategy, "reason": reason},
    )
    return replace(
        deployment, revision=revision, created_at=to_datetime(at), actor=who, reason=reason
    )


def get(conn: Connection, name: str) -> Deployment:
    row = _latest_row(conn, name)
    if row is None:
        known = [r[0] for r in conn.execute(select(deployments.c.name).distinct()).all()]
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DeploymentNotFound(
            f"No deployment {name!r}.{hint} Create it with `loopml deploy create {name} "
            "--model NAME@production`."
        )
    return Deployment.from_row(row)


def revision_of(conn: Connection, name: str) -> int:
    """The newest revision number (0: no such deployment): what replicas poll."""
    value = conn.execute(
        select(func.max(deployments.c.revision)).where(deployments.c.name == name)
    ).scalar()
    return int(value or 0)


# -- strategies: pure constructors from the current revision to the next -------------------

#: What an abort condition of a canary may watch (on the current step's logged traffic).
ABORT_METRICS = ("error_rate", "p99_ms", "p50_ms", "prediction_psi", "accuracy")
_ABORT_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
# METRIC, then any run of operator symbols (checked after, to name a wrong one), then the rest.
_ABORT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([^\w\s.+-]+)?\s*(.*?)\s*$")
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
AB_METRICS = ("conversion", "value")


@dataclass(frozen=True)
class Abort:
    """A canary abort condition, ``METRIC OP NUMBER``: the canary rolls back when it holds.

    >>> Abort.parse("error_rate > 0.02")
    Abort(metric='error_rate', op='>', threshold=0.02)
    >>> Abort.parse("p99_ms>=250").holds(300.0), str(Abort.parse("p99_ms>=250"))
    (True, 'p99_ms >= 250')
    """

    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, expression: str) -> Abort:
        match = _ABORT.match(expression or "")
        metric, op, number = match.groups() if match else ("", None, "")
        if not metric:
            raise InvalidInput(
                f"Abort condition {expression!r}: write METRIC OP NUMBER, e.g. 'error_rate > 0.02'."
            )
        if metric not in ABORT_METRICS:
            import difflib

            close = difflib.get_close_matches(metric, ABORT_METRICS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidInput(
                f"Abort condition {expression!r}: unknown metric {metric!r}.{hint} One of "
                f"{', '.join(ABORT_METRICS)}."
            )
        if op not in _ABORT_OPS:
            shown = repr(op) if op else "none"
            raise InvalidInput(
                f"Abort condition {expression!r}: operator {shown} is not one of "
                f"{' '.join(_ABORT_OPS)}; write e.g. '{metric} > 0.5'."
            )
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise InvalidInput(
                f"Abort condition {expression!r}: {number or 'nothing'!r} after {op!r} is not "
                f"a finite number; write e.g. '{metric} {op} 0.5'."
            )
        return cls(metric, op, threshold)

    def holds(self, value: float) -> bool:
        """Whether ``value`` of :attr:`metric` meets the condition (the canary aborts)."""
        return _ABORT_OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


def _model_ref(model: str) -> str:
    return model if model.startswith("models:/") else f"models:/{model}"


def _new_model(current: Deployment, model: str, what: str) -> str:
    ref = _model_ref(model)
    if ref == current.primary.model:
        raise InvalidInput(
            f"Deployment {current.name!r} already serves {ref} from its primary; name another "
            f"version as the {what}."
        )
    return ref


def single(current: Deployment, model: str) -> Deployment:
    """``model`` answers every request alone (``churn@production`` follows the alias)."""
    return replace(current, variants=(Variant("primary", model),), strategy="single", settings={})


def shadow(current: Deployment, candidate: str) -> Deployment:
    """The primary answers; ``candidate`` scores every request off the response path."""
    ref = _new_model(current, candidate, "shadow candidate")
    return replace(
        current,
        variants=(
            Variant("primary", current.primary.model),
            Variant("shadow", ref, weight=0, role="shadow"),
        ),
        strategy="shadow",
        settings={},
    )


def check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    """``steps`` as floats if they rise strictly within 1–100; :class:`InvalidInput` else.

    >>> check_steps([5, 25, 50, 100])
    (5.0, 25.0, 50.0, 100.0)
    """
    try:
        values = tuple(float(s) for s in steps)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"Canary steps {list(steps)!r}: percentages of traffic, e.g. 5,25,50,100."
        ) from None
    if not values:
        raise InvalidInput("A canary needs at least one step, e.g. 5,25,50,100.")
    outside = [f"{v:g}" for v in values if not 1 <= v <= 100]
    if outside:
        raise InvalidInput(
            f"Canary steps {', '.join(f'{v:g}' for v in values)}: {', '.join(outside)} not "
            "within 1–100 (percent of traffic)."
        )
    for before, after in itertools.pairwise(values):
        if after <= before:
            raise InvalidInput(
                f"Canary steps {', '.join(f'{v:g}' for v in values)}: each step must be larger "
                f"than the one before ({after:g} follows {before:g})."
            )
    return values


def canary(
    current: Deployment,
    candidate: str,
    steps: Sequence[float] = DEFAULT_STEPS,
    *,
    step_duration: float = 600.0,
    min_requests: int = 200,
    aborts: Sequence[str] = (),
) -> Deployment:
    """``candidate`` answers ``steps[0]`` percent of the traffic, the primary the rest. A
    controller moves it along ``steps`` (each held ``step_duration`` seconds and at least
    ``min_requests`` requests) and rolls it back when one of ``aborts`` holds."""
    values = check_steps(steps)
    parsed = [str(Abort.parse(a)) for a in aborts]
    if not (isinstance(step_duration, int | float) and 0 < step_duration < math.inf):
        raise InvalidInput(f"Canary step duration {step_duration!r}: a positive number of seconds.")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
        raise InvalidInput(f"Canary min_requests {min_requests!r}: a whole number, 0 or more.")
    ref = _new_model(current, candidate, "canary candidate")
    settings = {
        "steps": list(values),
        "step": 0,
        "step_duration_s": float(step_duration),
        "min_requests": min_requests,
        "aborts": parsed,
    }
    return canary_step(
        replace(
            current,
            variants=(
                Variant("primary", current.primary.model),
                Variant("canary", ref, weight=0, role="candidate"),
            ),
            strategy="canary",
            settings=settings,
        ),
        0,
    )


def canary_step(current: Deployment, step: int) -> Deployment:
    """The canary at step ``step`` (an index into its steps): the candidate answers that
    share of the traffic. What a controller stores to advance it."""
    if current.strategy != "canary":
        raise InvalidInput(
            f"Deployment {current.name!r} runs {current.strategy}, not a canary; start one "
            f"with `loopml deploy canary {current.name} --candidate REF`."
        )
    steps = list(current.settings["steps"])
    if not 0 <= step < len(steps):
        raise InvalidInput(f"Canary of {current.name!r} has steps 0–{len(steps) - 1}, not {step}.")
    share = float(steps[step])
    variants = tuple(
        replace(v, weight=share if v.role == "candidate" else 100.0 - share)
        if v.role in ("primary", "candidate")
        else v
        for v in current.variants
    )
    return replace(current, variants=variants, settings={**current.settings, "step": step})


def blue_green(current: Deployment, candidate: str) -> Deployment:
    """The live model stays ``blue`` and answers everything; ``candidate`` is loaded warm as
    ``green`` with no traffic until :func:`switch`."""
    ref = _new_model(current, candidate, "green side")
    return replace(
        current,
        variants=(
            Variant("blue", current.primary.model),
            Variant("green", ref, weight=0, role="standby"),
        ),
        strategy="blue-green",
        settings={},
    )


def switch(current: Deployment) -> Deployment:
    """Blue-green: the standby side answers 100% at once, the live one becomes standby (a
    second switch moves it back)."""
    if current.strategy != "blue-green":
        raise InvalidInput(
            f"Deployment {current.name!r} runs {current.strategy}, not blue-green: nothing to "
            f"switch. Start with `loopml deploy blue-green {current.name} --candidate REF`."
        )
    swapped = {"primary": ("standby", 0.0), "standby": ("primary", 100.0)}
    variants = tuple(
        replace(v, role=swapped[v.role][0], weight=swapped[v.role][1]) if v.role in swapped else v
        for v in current.variants
    )
    return replace(current, variants=variants)


def ab(
    current: Deployment,
    variants: Mapping[str, tuple[str, float]],
    *,
    key: str | None = None,
    metric: str = "conversion",
) -> Deployment:
    """A sticky A/B split: ``{"a": ("churn/3", 50), "b": ("churn/4", 50)}`` (weights add up
    to 100), keyed by request field ``key`` (else the deployment's key, else the request
    id); ``metric`` is the outcome the report tests: ``conversion`` (binary) or ``value``."""
    if metric not in AB_METRICS:
        raise InvalidInput(f"A/B metric {metric!r}: one of {', '.join(AB_METRICS)}.")
    if len(variants) < 2:
        raise InvalidInput(
            f"An A/B test needs at least two variants, got {len(variants)}: e.g. "
            "a=churn/3:50 b=churn/4:50."
        )
    arms = tuple(
        Variant(name, model, weight=weight, role="variant")
        for name, (model, weight) in variants.items()
    )
    total = sum(v.weight for v in arms)
    if abs(total - 100.0) > 1e-6:
        raise InvalidInput(
            f"A/B weights {', '.join(f'{v.name}={v.weight:g}' for v in arms)} add up to "
            f"{total:g}, not 100."
        )
    models = [v.model for v in arms]
    if len(set(models)) != len(models):
        raise InvalidInput(f"A/B variants serve the same model twice: {models}.")
    return replace(
        current,
        variants=arms,
        strategy="ab",
        key=key if key is not None else current.key,
        settings={"metric": metric},
    )


def champion_challenger(current: Deployment, challenger: str) -> Deployment:
    """The primary becomes the ``champion`` and answers everything; ``challenger`` scores
    every request off the response path, to be compared on the same requests."""
    ref = _new_model(current, challenger, "challenger")
    return replace(
        current,
        variants=(
            Variant("champion", current.primary.model),
            Variant("challenger", ref, weight=0, role="shadow"),
        ),
        strategy="champion-challenger",
        settings={},
    )


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
        """Make the previous revision's configuration current again (as a new revision)."""

        def tx(conn: Connection) -> Deployment:
            rows = conn.execute(
                select(deployments)
                .where(deployments.c.name == name)
                .order_by(deployments.c.revision.desc())
                .limit(2)
            ).all()
            if not rows:
                get(conn, name)  # raises DeploymentNotFound
            if len(rows) < 2:
                raise Conflict(f"Deployment {name!r} has no earlier revision to roll back to.")
            previous = Deployment.from_row(rows[1])
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
