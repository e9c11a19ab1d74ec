"""`loopml users` and `loopml tokens`: the team server's users, grants and API tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from click.testing import Result
from sqlalchemy import select

from loopml.server.auth.grants import level_of
from loopml.server.auth.passwords import verify_password
from loopml.server.auth.tables import users
from loopml.server.auth.tokens import token_hash
from loopml.workspace import Workspace

Invoke = Callable[..., Result]
Lines = Callable[[Result], list[str]]


def _password_hash(ws: Workspace, name: str) -> str | None:
    with ws.db.read() as conn:
        return conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()


def test_create_list_and_delete_users(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace
) -> None:
    assert "No users yet" in invoke("users", "list").stdout
    result = invoke("users", "create", "ada", "--admin", "--password-stdin", input="pw-of-ada-1\n")
    assert result.exit_code == 0, result.output
    assert "Created admin 'ada'" in result.stdout
    # Prompted twice (with confirmation) when not piped.
    result = invoke("users", "create", "bob", input="pw-of-bob-1\npw-of-bob-1\n")
    assert result.exit_code == 0, result.output
    assert invoke("users", "create", "cy", "--no-password").exit_code == 0

    listed = invoke_json("users", "list")
    assert [(u["name"], u["admin"], u["password"]) for u in listed] == [
        ("ada", True, True),
        ("bob", False, True),
        ("cy", False, False),
    ]
    assert datetime.fromisoformat(listed[0]["created_at"]).utcoffset() == timedelta(0)
    table = invoke("users", "list").stdout
    assert "ada" in table and "tokens only" in table

    stored = _password_hash(workspace, "bob")
    assert stored is not None and "pw-of-bob-1" not in stored
    assert verify_password("pw-of-bob-1", stored)

    result = invoke("users", "delete", "cy")
    assert result.exit_code == 0 and "Deleted user 'cy'" in result.stdout
    assert [u["name"] for u in invoke_json("users", "list")] == ["ada", "bob"]


def test_user_errors(invoke: Invoke, error_lines: Lines, workspace: Workspace) -> None:
    assert invoke("users", "create", "ada", "--no-password").exit_code == 0
    (line,) = error_lines(invoke("users", "create", "ada", "--no-password"))
    assert "exists already" in line
    (line,) = error_lines(invoke("users", "create", "a:b", "--no-password"))
    assert "'a:b'" in line and "letters" in line
    (line,) = error_lines(invoke("users", "create", "bob", "--password-stdin", input="short\n"))
    assert "at least 8 characters" in line
    (line,) = error_lines(invoke("users", "create", "bob", "--password-stdin", input="\n"))
    assert "empty" in line
    (line,) = error_lines(invoke("users", "delete", "nobody"))
    assert "No user 'nobody'" in line and "ada" in line
    mismatch = invoke("users", "create", "bob", input="pw-one-1234\npw-two-1234\n" * 3)
    assert mismatch.exit_code != 0


def test_set_password(invoke: Invoke, workspace: Workspace) -> None:
    invoke("users", "create", "bob", "--password-stdin", input="first-password\n")
    result = invoke("users", "set-password", "bob", "--password-stdin", input="second-password\n")
    assert result.exit_code == 0, result.output
    stored = _password_hash(workspace, "bob")
    assert stored is not None
    assert verify_password("second-password", stored)
    assert not verify_password("first-password", stored)


def test_grants_on_experiments_and_models(
    invoke: Invoke,
    invoke_json: Callable[..., Any],
    error_lines: Lines,
    workspace: Workspace,
    make_run: Callable[..., str],
) -> None:
    make_run("churn")
    exp_id = str(workspace.experiments.get("churn").id)
    invoke("users", "create", "bob", "--no-password")
    result = invoke("users", "grant", "bob", "--experiment", "churn", "--level", "read")
    assert result.exit_code == 0, result.output
    assert f"read access to experiment 'churn' (id {exp_id})" in result.stdout
    assert level_of(workspace.db, "bob", "experiment", exp_id) == "read"
    # By id too; granting again sets the new level.
    assert invoke("users", "grant", "bob", "--experiment", exp_id, "--level", "edit").exit_code == 0
    assert level_of(workspace.db, "bob", "experiment", exp_id) == "edit"

    (line,) = error_lines(invoke("users", "grant", "bob", "--model", "fraud", "--level", "read"))
    assert "No registered model 'fraud'" in line
    (line,) = error_lines(invoke("users", "grant", "bob", "--level", "read"))
    assert "--experiment" in line and "--model" in line
    (line,) = error_lines(
        invoke("users", "grant", "nobody", "--experiment", "churn", "--level", "read")
    )
    assert "No user 'nobody'" in line
    bad_level = invoke("users", "grant", "bob", "--experiment", "churn", "--level", "owner")
    assert bad_level.exit_code == 2 and "owner" in bad_level.stderr

    assert invoke_json("users", "grants") == [
        {"user": "bob", "kind": "experiment", "key": exp_id, "level": "edit"}
    ]
    assert invoke_json("users", "grants", "bob")[0]["level"] == "edit"
    assert invoke("users", "revoke-grant", "bob", "--experiment", "churn").exit_code == 0
    assert level_of(workspace.db, "bob", "experiment", exp_id) is None
    assert invoke_json("users", "grants") == []
    (line,) = error_lines(invoke("users", "revoke-grant", "bob", "--experiment", "churn"))
    assert "no grant" in line


def test_grant_on_a_model(invoke: Invoke, workspace: Workspace) -> None:
    from sqlalchemy import insert

    from loopml.registry.tables import registered_models

    workspace.db.transact(
        lambda conn: conn.execute(insert(registered_models).values(name="fraud", created_at=0))
    )
    invoke("users", "create", "bob", "--no-password")
    result = invoke("users", "grant", "bob", "--model", "fraud", "--level", "manage")
    assert result.exit_code == 0, result.output
    assert level_of(workspace.db, "bob", "model", "fraud") == "manage"


def test_tokens_create_list_revoke(
    invoke: Invoke, invoke_json: Callable[..., Any], error_lines: Lines, workspace: Workspace
) -> None:
    invoke("users", "create", "bob", "--no-password")
    assert "No tokens" in invoke("tokens", "list").stdout
    result = invoke("tokens", "create", "--user", "bob", "--name", "ci", "--expires-in", "30d")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()  # alone on stdout: $(loopml tokens create ...) works
    assert secret.startswith("lml_") and len(secret) > 40
    assert "shown only now" in result.stderr

    (listed,) = invoke_json("tokens", "list")
    assert listed["user"] == "bob" and listed["name"] == "ci" and listed["state"] == "active"
    assert listed["prefix"] == secret[:12]
    assert secret not in str(listed)
    created = datetime.fromisoformat(listed["created_at"])
    expires = datetime.fromisoformat(listed["expires_at"])
    assert created.utcoffset() == timedelta(0)
    assert expires - created == timedelta(days=30)
    assert listed["revoked_at"] is None and listed["last_used_at"] is None
    assert listed["prefix"] in invoke("tokens", "list").stdout

    as_json = invoke_json("tokens", "create", "--user", "bob")
    assert as_json["token"].startswith("lml_") and as_json["expires_at"] is None
    assert [t["id"] for t in invoke_json("tokens", "list", "--user", "bob")] == [
        listed["id"],
        as_json["id"],
    ]

    result = invoke("tokens", "revoke", str(listed["id"]))
    assert result.exit_code == 0 and "Revoked token" in result.stdout
    states = {t["id"]: t["state"] for t in invoke_json("tokens", "list")}
    assert states == {listed["id"]: "revoked", as_json["id"]: "active"}

    from loopml.server.auth.tables import api_tokens

    with workspace.db.read() as conn:
        hashes = set(conn.execute(select(api_tokens.c.token_hash)).scalars())
    assert hashes == {token_hash(secret), token_hash(as_json["token"])}

    (line,) = error_lines(invoke("tokens", "create", "--user", "nobody"))
    assert "No user 'nobody'" in line
    (line,) = error_lines(invoke("tokens", "create", "--user", "bob", "--expires-in", "soon"))
    assert "'soon' is not a duration" in line
    (line,) = error_lines(invoke("tokens", "revoke", "999"))
    assert "No token with id 999" in line


def test_deleting_a_user_takes_their_tokens_and_grants(
    invoke: Invoke,
    invoke_json: Callable[..., Any],
    workspace: Workspace,
    make_run: Callable[..., str],
) -> None:
    make_run("churn")
    invoke("users", "create", "bob", "--no-password")
    invoke("tokens", "create", "--user", "bob")
    invoke("users", "grant", "bob", "--experiment", "churn", "--level", "read")
    assert invoke("users", "delete", "bob").exit_code == 0
    assert invoke_json("tokens", "list") == []
    assert invoke_json("users", "grants") == []


def test_server_with_auth_and_no_users_says_how_to_add_one(
    invoke: Invoke, error_lines: Lines, workspace: Workspace
) -> None:
    (line,) = error_lines(invoke("server", "--auth"))
    assert "no users yet" in line and "loopml users create NAME --admin" in line
