"""Policy versions in the metadata store, on every backend: idempotent by content, a new
version on change, read back ready to judge."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from loopml.llm.guardrails.policy import Policy, default_policy
from loopml.llm.guardrails.versions import (
    PolicyNotFound,
    get_policy,
    policy_versions,
    register_policies,
    save_policy,
)
from loopml.llm.tables import llm_policies
from loopml.workspace import Workspace


def strict(action: str = "redact") -> Policy:
    return Policy.from_dict("strict", {"rules": [{"detector": "pii", "action": action}]})


def test_saving_the_same_rules_is_idempotent_and_a_change_is_a_new_version(ws: Workspace) -> None:
    assert save_policy(ws, strict()) == 1
    assert save_policy(ws, strict()) == 1
    assert save_policy(ws, strict("block")) == 2
    assert save_policy(ws, strict()) == 1  # back to the first rules: their version
    assert save_policy(ws, default_policy()) == 1  # versions count per name
    versions = policy_versions(ws, "strict")
    assert [(v.name, v.version) for v in versions] == [("strict", 1), ("strict", 2)]
    assert versions[0].digest == strict().digest
    assert versions[0].to_dict()["rules"] == ["pii"]
    assert [v.name for v in policy_versions(ws)] == ["default", "strict", "strict"]
    with ws.db.read() as conn:
        rows = conn.execute(select(llm_policies.c.body, llm_policies.c.digest)).all()
    assert len(rows) == 3


def test_a_stored_version_reads_back_ready_to_judge(ws: Workspace) -> None:
    save_policy(ws, strict())
    save_policy(ws, strict("block"))
    latest = get_policy(ws, "strict")
    assert latest.version == 2 and latest == strict("block")
    first = get_policy(ws, "strict", 1)
    v = first.check_input([{"role": "user", "content": "mail jo@example.com"}])
    assert v.version == 1 and v.messages is not None
    assert v.messages[0]["content"] == "mail [EMAIL]"
    with pytest.raises(PolicyNotFound, match="No guardrail policy 'nope'"):
        get_policy(ws, "nope")
    with pytest.raises(PolicyNotFound, match="No version 9 of guardrail policy 'strict'"):
        get_policy(ws, "strict", 9)


def test_register_policies_gives_each_its_version(ws: Workspace) -> None:
    save_policy(ws, strict("block"))
    registered = register_policies(ws, {"strict": strict(), "default": default_policy()})
    assert {n: p.version for n, p in registered.items()} == {"strict": 2, "default": 1}
    verdict = registered["strict"].check_output("mail jo@example.com")
    assert (verdict.policy, verdict.version) == ("strict", 2)
    assert register_policies(ws, {"strict": strict()})["strict"].version == 2


def test_concurrent_saves_agree_on_one_version(ws: Workspace) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def save() -> None:
        try:
            results.append(save_policy(ws, strict()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [1, 1, 1, 1]
    assert len(policy_versions(ws, "strict")) == 1


@pytest.mark.slow
def test_a_save_that_loses_a_race_returns_the_winners_version(
    workspace_factory: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas save one policy at once on PostgreSQL: the one whose insert collides
    reads the other's version instead of failing."""
    import loopml.llm.guardrails.versions as versions

    ws = workspace_factory("postgres")
    policy = strict()
    real_insert = versions.insert
    raced: list[bool] = []

    def insert_after_a_rival(table: Any) -> Any:
        if not raced:  # another replica commits the same version between our read and write
            raced.append(True)
            with ws.db.engine.begin() as conn:
                conn.execute(
                    real_insert(table).values(
                        name=policy.name, version=1, digest=policy.digest,
                        body=policy.canonical_json(), created_at=0,
                    )
                )  # fmt: skip
        return real_insert(table)

    monkeypatch.setattr(versions, "insert", insert_after_a_rival)
    assert save_policy(ws, policy) == 1
    assert raced == [True]
    assert [v.version for v in policy_versions(ws, "strict")] == [1]
