"""Policy versions in the metadata store (table ``llm_policies``): immutable and
content-addressed, so saving the same rules again is a no-op that returns the same version,
and any change makes the next version. A request's log names the version that judged it.

    version = save_policy(ws, policy)          # 1; again with the same rules: 1
    policy = get_policy(ws, "strict")          # the latest; get_policy(ws, "strict", 1)
    policies = register_policies(ws, policies) # each saved, each carrying its version
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import NotFound
from loopml.llm.guardrails.policy import Policy
from loopml.llm.tables import llm_policies
from loopml.store.clock import now_ms, to_datetime

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.workspace import Workspace


class PolicyNotFound(NotFound):
    """No stored guardrail policy (or version) with that name."""


@dataclass(frozen=True)
class PolicyVersion:
    """One stored version of a policy (``created_at`` in epoch ms)."""

    name: str
    version: int
    digest: str
    created_at: int
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        moment = to_datetime(self.created_at)
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "created_at": moment.isoformat() if moment else None,
            "rules": [r.get("name") for r in self.body.get("rules", [])],
        }


def save_policy(ws: Workspace, policy: Policy) -> int:
    """The version of ``policy``'s rules in the store, stored as the next version when these
    exact rules (by digest) were never saved under this name."""
    digest = policy.digest
    body = policy.canonical_json()

    def tx(conn: Connection) -> int:
        found = conn.execute(
            select(llm_policies.c.version).where(
                llm_policies.c.name == policy.name, llm_policies.c.digest == digest
            )
        ).first()
        if found is not None:
            return int(found.version)
        top = conn.execute(
            select(func.max(llm_policies.c.version)).where(llm_policies.c.name == policy.name)
        ).scalar()
        version = int(top or 0) + 1
        conn.execute(
            insert(llm_policies).values(
                name=policy.name, version=version, digest=digest, body=body, created_at=now_ms()
            )
        )
        return version

    try:
        return ws.db.transact(tx)
    except IntegrityError:
        # Another replica saved a version at the same moment: read (or number after) it.
        return ws.db.transact(tx)


def register_policies(ws: Workspace, policies: Mapping[str, Policy]) -> dict[str, Policy]:
    """Every policy stored (or found, when unchanged) and returned carrying its version, so
    each verdict names the version that judged it: what a gateway does when it loads or
    reloads its config.

    >>> policies = register_policies(ws, policies_from_config(config.raw.get("guardrails")))  # doctest: +SKIP
    """
    return {name: p.with_version(save_policy(ws, p)) for name, p in policies.items()}


def _row(row: Any) -> PolicyVersion:
    return PolicyVersion(row.name, int(row.version), row.digest, int(row.created_at),
                         json.loads(row.body))  # fmt: skip


def policy_versions(ws: Workspace, name: str | None = None) -> list[PolicyVersion]:
    """Stored versions, by name then version (every policy's when ``name`` is None)."""
    query = select(llm_policies).order_by(llm_policies.c.name, llm_policies.c.version)
    if name is not None:
        query = query.where(llm_policies.c.name == name)
    with ws.db.read() as conn:
        return [_row(r) for r in conn.execute(query)]


def get_policy(ws: Workspace, name: str, version: int | None = None) -> Policy:
    """A stored policy (the latest version when ``version`` is None), ready to judge."""
    query = select(llm_policies).where(llm_policies.c.name == name)
    if version is None:
        query = query.order_by(llm_policies.c.version.desc()).limit(1)
    else:
        query = query.where(llm_policies.c.version == version)
    with ws.db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        what = f"version {version} of " if version is not None else ""
        raise PolicyNotFound(
            f"No {what}guardrail policy {name!r} is stored; saved versions are listed by "
            "`loopml llm guardrails versions`."
        )
    stored = _row(row)
    return Policy.from_dict(
        name, stored.body, where=f"llm_policies {name} v{stored.version}", version=stored.version
    )
