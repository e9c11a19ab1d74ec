"""``loopml users`` and ``loopml tokens``: who may use the team server (``loopml server
--auth``), and what they may do there.

These act on the workspace's metadata store directly, so they are run by an admin on a
machine that reaches it; a running server sees a change within a second or two.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import console, emit_json, format_time, json_option, table, text

if TYPE_CHECKING:
    from loopml.server.auth.grants import Grant
    from loopml.server.auth.tokens import ApiToken
    from loopml.server.auth.users import User
    from loopml.workspace import Workspace

LEVELS = ("read", "edit", "manage")


@click.group()
def users() -> None:
    """Users of the team server: create, list, delete, and grant them access to
    experiments and models (admins have access to everything)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("--password-stdin read an empty line: pipe the password in.")
        return password
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return value


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage users and every experiment and model.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)
@click.option(
    "--no-password",
    is_flag=True,
    help="A user that signs in with API tokens only (loopml tokens create).",
)
@pass_workspace
def create_user(
    ws: Workspace, name: str, admin: bool, password_stdin: bool, no_password: bool
) -> None:
    """Create user NAME, asking for a password (at least 8 characters) unless told
    otherwise. The password is stored as a scrypt hash."""
    from loopml.server.auth.users import check_name, create_user

    if password_stdin and no_password:
        raise CliError("--password-stdin and --no-password contradict each other: pick one.")
    check_name(name)  # before asking for a password
    password = None if no_password else _read_password(password_stdin)
    user = create_user(ws.db, name, password=password, admin=admin)
    role = "admin" if user.is_admin else "user"
    click.echo(f"Created {role} {user.name!r}.")
    if no_password:
        click.echo(f"Give them a token: loopml tokens create --user {user.name}")


def _user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "admin": user.is_admin,
        "password": user.has_password,
        "created_at": user.created_at,
    }


@users.command("list")
@json_option
@pass_workspace
def list_users(ws: Workspace, as_json: bool) -> None:
    """List users (never their passwords)."""
    from loopml.server.auth.users import list_users

    found = list_users(ws.db)
    if as_json:
        emit_json([_user_json(u) for u in found])
        return
    out = console()
    if not found:
        out.print("No users yet. Create the first admin: loopml users create NAME --admin")
        return
    grid = table("Name", "Admin", "Password", "Created")
    for u in found:
        grid.add_row(
            text(u.name),
            "yes" if u.is_admin else "",
            "yes" if u.has_password else "tokens only",
            format_time(u.created_at),
        )
    out.print(grid)


@users.command("delete")
@click.argument("name")
@pass_workspace
def delete_user(ws: Workspace, name: str) -> None:
    """Delete user NAME with their tokens and grants (the experiments and models they
    created stay)."""
    from loopml.server.auth.users import delete_user

    user = delete_user(ws.db, name)
    click.echo(f"Deleted user {user.name!r}, their tokens and their grants.")


@users.command("set-password")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)
@pass_workspace
def set_password(ws: Workspace, name: str, password_stdin: bool) -> None:
    """Change NAME's password (their tokens keep working)."""
    from loopml.server.auth.users import get_user, set_password

    get_user(ws.db, name)  # an unknown user fails before the prompt
    set_password(ws.db, name, _read_password(password_stdin))
    click.echo(f"Changed the password of {name!r}.")


def _target(ws: Workspace, experiment: str | None, model: str | None) -> tuple[str, str, str]:
    """(kind, key, label) of ``--experiment ID_OR_NAME`` or ``--model NAME``."""
    if (experiment is None) == (model is None):
        raise CliError("Name one thing: --experiment ID_OR_NAME or --model NAME.")
    if experiment is not None:
        from loopml.exceptions import ExperimentNotFound

        try:
            found = ws.experiments.get(experiment)
        except ExperimentNotFound:
            if not experiment.isdigit():
                raise
            found = ws.experiments.get(int(experiment))
        return "experiment", str(found.id), f"experiment {found.name!r} (id {found.id})"
    assert model is not None
    from sqlalchemy import select

    from loopml.exceptions import ModelNotFound
    from loopml.registry.tables import registered_models

    with ws.db.read() as conn:
        exists = conn.execute(
            select(registered_models.c.id).where(registered_models.c.name == model)
        ).first()
    if exists is None:
        raise ModelNotFound(f"No registered model {model!r}; `loopml models list` shows them.")
    return "model", model, f"model {model!r}"


def _target_options(f: Any) -> Any:
    f = click.option("--model", metavar="NAME", help="A registered model.")(f)
    return click.option("--experiment", metavar="ID_OR_NAME", help="An experiment, by name or id.")(
        f
    )


@users.command("grant")
@click.argument("name")
@_target_options
@click.option(
    "--level",
    required=True,
    type=click.Choice(LEVELS),
    help="read: see it; edit: also log runs / register versions; manage: also grant others.",
)
@pass_workspace
def grant(ws: Workspace, name: str, experiment: str | None, model: str | None, level: str) -> None:
    """Give user NAME a level on one experiment (and its runs) or registered model (and
    its versions). Granting again sets the new level."""
    from loopml.server.auth.grants import grant

    kind, key, label = _target(ws, experiment, model)
    grant(ws.db, name, kind, key, level)
    click.echo(f"{name} now has {level} access to {label}.")


@users.command("revoke-grant")
@click.argument("name")
@_target_options
@pass_workspace
def revoke_grant(ws: Workspace, name: str, experiment: str | None, model: str | None) -> None:
    """Take user NAME's grant on an experiment or model away."""
    from loopml.server.auth.grants import revoke

    kind, key, label = _target(ws, experiment, model)
    revoke(ws.db, name, kind, key)
    click.echo(f"{name} no longer has a grant on {label}.")


def _grant_json(item: Grant) -> dict[str, Any]:
    return {"user": item.user, "kind": item.kind, "key": item.key, "level": item.level}


@users.command("grants")
@click.argument("name", required=False)
@json_option
@pass_workspace
def list_grants(ws: Workspace, name: str | None, as_json: bool) -> None:
    """List grants, of user NAME only when given (experiments are shown by id)."""
    from loopml.server.auth.grants import list_grants

    found = list_grants(ws.db, user=name)
    if as_json:
        emit_json([_grant_json(item) for item in found])
        return
    out = console()
    if not found:
        out.print("No grants. Give one: loopml users grant NAME --experiment ID --level read")
        return
    grid = table("User", "Kind", "Key", "Level")
    for item in found:
        grid.add_row(text(item.user), item.kind, text(item.key), item.level)
    out.print(grid)


# -- tokens ------------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """API tokens of the team server's users: what scripts sign in with
    (MLFLOW_TRACKING_TOKEN, LOOPML_TOKEN). A token is shown once, when created."""


def _token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "prefix": token.prefix,
        "state": token.state,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }


@tokens.command("create")
@click.option("--user", "user", required=True, metavar="NAME", help="Whose token it is.")
@click.option("--name", metavar="TEXT", help="What it is for (ci, laptop, ...).")
@click.option(
    "--expires-in",
    metavar="DURATION",
    help="Lifetime: 30d, 12h, 90m, 2w or seconds.  [default: never expires]",
)
@json_option
@pass_workspace
def create_token(
    ws: Workspace, user: str, name: str | None, expires_in: str | None, as_json: bool
) -> None:
    """Create a token for a user and print it once: only its hash is kept, so copy it now.
    Alone on stdout, so `export MLFLOW_TRACKING_TOKEN=$(loopml tokens create --user NAME)`
    works."""
    from loopml.server.auth.tokens import create_token, parse_expiry

    seconds = parse_expiry(expires_in) if expires_in is not None else None
    token, secret = create_token(ws.db, user, name=name, expires_in=seconds)
    if as_json:
        emit_json({**_token_json(token), "token": secret})
        return
    click.echo(secret)
    until = f", expires {format_time(token.expires_at)}" if token.expires_at else ""
    click.echo(
        f"Token {token.id} ({token.name}) of {token.user}{until}. It is shown only now.",
        err=True,
    )


@tokens.command("list")
@click.option("--user", "user", metavar="NAME", help="Only this user's tokens.")
@json_option
@pass_workspace
def list_tokens(ws: Workspace, user: str | None, as_json: bool) -> None:
    """List tokens (their first characters, never the tokens), revoked and expired ones
    included."""
    from loopml.server.auth.tokens import list_tokens

    found = list_tokens(ws.db, user)
    if as_json:
        emit_json([_token_json(t) for t in found])
        return
    out = console()
    if not found:
        out.print("No tokens. Create one: loopml tokens create --user NAME")
        return
    grid = table("ID", "User", "Name", "Prefix", "State", "Created", "Expires", "Last used")
    for t in found:
        grid.add_row(
            str(t.id),
            text(t.user),
            text(t.name),
            t.prefix + "…",
            t.state,
            format_time(t.created_at),
            format_time(t.expires_at),
            format_time(t.last_used_at),
        )
    out.print(grid)


@tokens.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@pass_workspace
def revoke_token(ws: Workspace, token_id: int) -> None:
    """Revoke token ID (see `loopml tokens list`); servers refuse it within a second or
    two."""
    from loopml.server.auth.tokens import revoke_token

    token = revoke_token(ws.db, token_id)
    click.echo(f"Revoked token {token.id} ({token.name}) of {token.user}.")
