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

The strategies that change a deployment are :mod:`loopml.serving.strategies`; the
``ws.deployments`` namespace is :mod:`loopml.serving.namespace`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
    pass

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
