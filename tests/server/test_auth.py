"""``loopml server --auth``: users, tokens and permissions, against real servers on 127.0.0.1.

Authentication (401s, caching, what is stored, what is logged) is tested on the real app;
the permission rules (404 without read, 403 without the level, creators manage, admins see
everything) on the access seam behind a few small routes, through loopml's own grant
routes, and through the real MLflow client.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, select, update

from loopml.server.auth import access as access_module
from loopml.server.auth.access import AuthAccess
from loopml.server.auth.grants import grant, level_of
from loopml.server.auth.tables import api_tokens, users
from loopml.server.auth.tokens import create_token, revoke_token, token_hash
from loopml.server.auth.users import create_user
from loopml.server.context import EDIT, EXPERIMENT, MANAGE, MODEL, READ
from loopml.store.clock import now_ms
from loopml.workspace import Workspace
from server.conftest import free_port, start_server, wait_healthy

ADMIN_PASSWORD = "admin-password-1"
BOB_PASSWORD = "bob-password-22"


def basic(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def one_character_off(token: str) -> str:
    """The token with its last character changed (to a different one, always)."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def assert_401(answer: httpx.Response) -> None:
    assert answer.status_code == 401, (answer.status_code, answer.text)
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    challenges = answer.headers.get_list("www-authenticate")
    assert any(c.startswith("Bearer") for c in challenges)
    assert any(c.startswith("Basic") for c in challenges)


class Team:
    """A workspace with an admin (ada), bob and cy, each with a token."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        create_user(ws.db, "ada", password=ADMIN_PASSWORD, admin=True)
        create_user(ws.db, "bob", password=BOB_PASSWORD)
        create_user(ws.db, "cy", password=None)
        self.tokens = {
            name: create_token(ws.db, name, name="test")[1] for name in ("ada", "bob", "cy")
        }

    def as_(self, name: str) -> dict[str, str]:
        return bearer(self.tokens[name])


@pytest.fixture
def team(sqlite_ws: Workspace) -> Team:
    return Team(sqlite_ws)


# -- authentication ----------------------------------------------------------------------


def test_no_credentials_wrong_token_and_bad_headers_are_401(
    server: Callable[..., str], team: Team
) -> None:
    url = server(team.ws, auth=True)
    whoami = f"{url}/api/loopml/whoami"
    assert httpx.get(f"{url}/health").status_code == 200  # the one open door
    assert_401(httpx.get(whoami))
    assert_401(httpx.get(whoami, headers=bearer("lml_" + "x" * 43)))
    assert_401(httpx.get(whoami, headers=bearer(one_character_off(team.tokens["bob"]))))
    assert_401(httpx.get(whoami, headers={"Authorization": "Bearer"}))
    assert_401(httpx.get(whoami, headers={"Authorization": "Basic !!notbase64"}))
    # A token sent without its scheme is refused and not echoed back.
    answer = httpx.get(whoami, headers={"Authorization": team.tokens["bob"]})
    assert_401(answer)
    assert team.tokens["bob"] not in answer.text
    # Unknown paths need credentials too: nothing tells what exists.
    assert_401(httpx.get(f"{url}/api/2.0/mlflow/no-such-endpoint"))
    # And the right token is accepted.
    me = httpx.get(whoami, headers=team.as_("bob"))
    assert me.status_code == 200
    assert me.json() == {"name": "bob", "admin": False, "auth": True}


def test_passwords_right_wrong_and_unknown_users(server: Callable[..., str], team: Team) -> None:
    url = server(team.ws, auth=True)
    whoami = f"{url}/api/loopml/whoami"
    assert httpx.get(whoami, headers=basic("ada", ADMIN_PASSWORD)).json()["admin"] is True
    assert httpx.get(whoami, headers=basic("bob", BOB_PASSWORD)).json()["name"] == "bob"
    assert_401(httpx.get(whoami, headers=basic("bob", ADMIN_PASSWORD)))
    assert_401(httpx.get(whoami, headers=basic("bob", "")))
    assert_401(httpx.get(whoami, headers=basic("nobody", BOB_PASSWORD)))
    assert_401(httpx.get(whoami, headers=basic("cy", "")))  # a token-only user has no password
    # A remembered password stops working once it changes.
    from loopml.server.auth.users import set_password

    set_password(team.ws.db, "bob", "bob-new-password")
    deadline = time.monotonic() + 30
    while httpx.get(whoami, headers=basic("bob", BOB_PASSWORD)).status_code != 401:
        assert time.monotonic() < deadline, "the old password kept working"
        time.sleep(0.1)
    assert httpx.get(whoami, headers=basic("bob", "bob-new-password")).status_code == 200


def test_revoked_and_expired_tokens_are_401(server: Callable[..., str], team: Team) -> None:
    # The default cache: a revocation is seen within about a second.
    url = server(team.ws, auth=True)
    whoami = f"{url}/api/loopml/whoami"
    token, secret = create_token(team.ws.db, "bob", name="short-lived")
    assert httpx.get(whoami, headers=bearer(secret)).status_code == 200
    revoke_token(team.ws.db, token.id)
    deadline = time.monotonic() + 30
    while (answer := httpx.get(whoami, headers=bearer(secret))).status_code == 200:
        assert time.monotonic() < deadline, "the revoked token kept working"
        time.sleep(0.1)
    assert_401(answer)
    assert "revoked" in answer.json()["message"]

    token, secret = create_token(team.ws.db, "bob", expires_in=3600)
    assert httpx.get(whoami, headers=bearer(secret)).status_code == 200
    team.ws.db.transact(
        lambda conn: conn.execute(
            update(api_tokens).where(api_tokens.c.id == token.id).values(expires_at=now_ms() - 1)
        )
    )
    deadline = time.monotonic() + 30
    while (answer := httpx.get(whoami, headers=bearer(secret))).status_code == 200:
        assert time.monotonic() < deadline, "the expired token kept working"
        time.sleep(0.1)
    assert_401(answer)
    assert "expired" in answer.json()["message"]


def test_a_deleted_users_tokens_stop_working(server: Callable[..., str], team: Team) -> None:
    from loopml.server.auth.users import delete_user

    access = AuthAccess(team.ws, cache_seconds=0)
    url = server(team.ws, access=access)
    assert httpx.get(f"{url}/api/loopml/whoami", headers=team.as_("cy")).status_code == 200
    delete_user(team.ws.db, "cy")
    assert_401(httpx.get(f"{url}/api/loopml/whoami", headers=team.as_("cy")))


def test_a_tokens_last_use_is_recorded(server: Callable[..., str], team: Team) -> None:
    from loopml.server.auth.tokens import list_tokens

    url = server(team.ws, auth=True)
    (before,) = list_tokens(team.ws.db, "bob")
    assert before.last_used_at is None
    assert httpx.get(f"{url}/api/loopml/whoami", headers=team.as_("bob")).status_code == 200
    deadline = time.monotonic() + 30
    while (after := list_tokens(team.ws.db, "bob")[0]).last_used_at is None:
        assert time.monotonic() < deadline, "last_used_at was never written"
        time.sleep(0.05)
    assert after.last_used_at >= before.created_at


def test_authentication_is_cheap_per_request(
    server: Callable[..., str], team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token is looked up once while it is remembered; a password is hashed once."""
    access = AuthAccess(team.ws, cache_seconds=600)
    url = server(team.ws, access=access)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    scrypts = []
    real_verify = access_module.verify_password

    def counted_verify(password: str, stored: str) -> bool:
        scrypts.append(1)
        return real_verify(password, stored)

    monkeypatch.setattr(access_module, "verify_password", counted_verify)
    event.listen(team.ws.db.engine, "before_cursor_execute", count)
    try:
        with httpx.Client() as client:
            for _ in range(20):
                answer = client.get(f"{url}/api/loopml/whoami", headers=team.as_("bob"))
                assert answer.status_code == 200
            token_lookups = [s for s in statements if "api_tokens" in s and "SELECT" in s]
            assert len(token_lookups) == 1
            for _ in range(10):
                answer = client.get(f"{url}/api/loopml/whoami", headers=basic("bob", BOB_PASSWORD))
                assert answer.status_code == 200
    finally:
        event.remove(team.ws.db.engine, "before_cursor_execute", count)
    assert len(scrypts) == 1


def test_secrets_are_compared_in_constant_time(
    server: Callable[..., str], team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = server(team.ws, access=AuthAccess(team.ws, cache_seconds=0))
    assert httpx.get(f"{url}/api/loopml/whoami", headers=team.as_("bob")).status_code == 200
    digest = token_hash(team.tokens["bob"])
    assert (digest, digest) in compared
    compared.clear()
    answer = httpx.get(f"{url}/api/loopml/whoami", headers=basic("bob", BOB_PASSWORD))
    assert answer.status_code == 200
    assert any(isinstance(a, bytes) and len(a) == 32 for a, _ in compared)  # scrypt keys


def test_passwords_and_tokens_are_never_stored_in_clear(team: Team) -> None:
    with team.ws.db.read() as conn:
        user_rows = {row.name: row for row in conn.execute(select(users))}
        token_rows = list(conn.execute(select(api_tokens)))
    for name, password in (("ada", ADMIN_PASSWORD), ("bob", BOB_PASSWORD)):
        stored = user_rows[name].password_hash
        assert stored.startswith("scrypt$") and password not in stored
    assert user_rows["cy"].password_hash is None
    secrets = set(team.tokens.values())
    assert {row.token_hash for row in token_rows} == {token_hash(s) for s in secrets}
    for row in token_rows:
        assert not any(secret in str(value) for value in row for secret in secrets)
        assert row.prefix == next(s for s in secrets if token_hash(s) == row.token_hash)[:12]
    # Nor anywhere in the database's files.
    files = list(Path(team.ws.root, ".loopml").glob("*.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (*secrets, ADMIN_PASSWORD, BOB_PASSWORD):
            assert secret.encode() not in data


def test_tokens_and_passwords_never_reach_the_logs(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    from loopml.server.app import create_app

    caplog.set_level(logging.DEBUG)
    config = uvicorn.Config(
        create_app(team.ws, auth=True),
        host="127.0.0.1",
        port=free_port(),
        log_level="debug",
        log_config=None,  # uvicorn's loggers propagate to the root, where caplog listens
        access_log=True,
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    try:
        wait_healthy(url)
        secret = team.tokens["bob"]
        with httpx.Client() as client:
            client.get(f"{url}/api/loopml/whoami", headers=bearer(secret))
            client.get(f"{url}/api/loopml/whoami", headers=bearer(secret + "x"))
            client.get(f"{url}/api/loopml/whoami", headers={"Authorization": secret})
            client.get(f"{url}/api/loopml/whoami", headers=basic("bob", BOB_PASSWORD))
            client.get(f"{url}/api/loopml/whoami", headers=basic("bob", BOB_PASSWORD + "x"))
            client.post(f"{url}/api/loopml/auth/tokens", headers=bearer(secret), json={})
            client.post(
                f"{url}/api/loopml/auth/tokens",
                headers=bearer(secret),
                json={"expires_in": "soon"},  # an error answer
            )
    finally:
        instance.should_exit = True
        thread.join(10)
    logged = caplog.text
    assert "/api/loopml/whoami" in logged  # the access log was captured
    for leaked in (secret, BOB_PASSWORD, base64.b64encode(b"bob:" + BOB_PASSWORD.encode())):
        assert str(leaked if isinstance(leaked, str) else leaked.decode()) not in logged


def test_users_tokens_and_grants_on_every_metadata_backend(
    server: Callable[..., str], ws: Workspace
) -> None:
    from loopml.server.auth.grants import list_grants, revoke
    from loopml.server.auth.tokens import list_tokens
    from loopml.server.auth.users import delete_user, list_users

    team = Team(ws)
    assert [u.name for u in list_users(ws.db)] == ["ada", "bob", "cy"]
    grant(ws.db, "bob", MODEL, "churn", READ)
    grant(ws.db, "bob", MODEL, "churn", MANAGE)  # granting again replaces the level
    assert [g.level for g in list_grants(ws.db, user="bob")] == [MANAGE]
    url = server(ws, access=AuthAccess(ws, cache_seconds=0))
    grants = f"{url}/api/loopml/auth/grants"
    body = {"user": "cy", "kind": "model", "key": "churn", "level": "edit"}
    assert httpx.put(grants, json=body, headers=team.as_("cy")).status_code == 404
    assert httpx.put(grants, json=body, headers=team.as_("bob")).status_code == 200
    assert level_of(ws.db, "cy", MODEL, "churn") == EDIT
    revoke(ws.db, "cy", MODEL, "churn")
    token = list_tokens(ws.db, "bob")[0]
    revoke_token(ws.db, token.id)
    assert_401(httpx.get(f"{url}/api/loopml/whoami", headers=team.as_("bob")))
    delete_user(ws.db, "bob")
    assert [t.user for t in list_tokens(ws.db)] == ["ada", "cy"]
    assert list_grants(ws.db) == []


def test_grants_follow_a_renamed_model_and_go_with_a_deleted_one(team: Team) -> None:
    from loopml.server.auth.grants import drop_key, rename_key

    grant(team.ws.db, "bob", MODEL, "churn", EDIT)
    grant(team.ws.db, "cy", MODEL, "churn", READ)
    team.ws.db.transact(lambda conn: rename_key(conn, MODEL, "churn", "churn-v2"))
    assert level_of(team.ws.db, "bob", MODEL, "churn") is None
    assert level_of(team.ws.db, "bob", MODEL, "churn-v2") == EDIT
    assert level_of(team.ws.db, "cy", MODEL, "churn-v2") == READ
    team.ws.db.transact(lambda conn: drop_key(conn, MODEL, "churn-v2"))
    assert level_of(team.ws.db, "bob", MODEL, "churn-v2") is None
    assert level_of(team.ws.db, "cy", MODEL, "churn-v2") is None


# -- every endpoint needs credentials -----------------------------------------------------


def _fill(path: str) -> str:
    """A concrete URL path for a route's pattern: each ``{param}`` gets a plausible value."""
    import re

    def value(match: re.Match[str]) -> str:
        name, _, convertor = match.group(1).partition(":")
        return {"int": "1", "float": "1.0", "path": "a/b.txt", "uuid": "0" * 32}.get(convertor, "x")

    return re.sub(r"\{([^}]+)\}", value, path)


def _endpoints(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through Mounts, as the app has them."""
    from starlette.routing import Mount, Route, WebSocketRoute

    for route in routes:
        if isinstance(route, Mount):
            inner = route.routes
            if inner:
                yield from _endpoints(list(inner), prefix + route.path)
            else:  # a mounted app (static files): any path under it
                yield "GET", prefix + route.path + "/x.txt"
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                yield method, prefix + _fill(route.path)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", prefix + _fill(route.path)
        else:
            raise AssertionError(f"a route of an unknown type: {route!r}")


def _every_endpoint() -> list[tuple[str, str]]:
    """The routes of a real app with auth on, built when the tests are collected, so each
    area's new endpoints and pages are covered as they land."""
    from loopml.server.app import create_app

    folder = tempfile.mkdtemp(prefix="loopml-routes-")
    ws = Workspace.init(folder)
    try:
        app = create_app(ws, auth=True)
        found = sorted(set(_endpoints(list(app.routes))))
    finally:
        ws.close()
        shutil.rmtree(folder, ignore_errors=True)
    return found


ENDPOINTS = _every_endpoint()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, httpx.Client]]:
    """One server with auth on for every endpoint, and a keep-alive client to it."""
    from loopml.server.app import create_app

    ws = Workspace.init(tmp_path_factory.mktemp("auth-everywhere"))
    create_user(ws.db, "ada", password=ADMIN_PASSWORD, admin=True)
    url, stop = start_server(create_app(ws, auth=True))
    wait_healthy(url)
    with httpx.Client(base_url=url) as client:
        yield url, client
    stop()
    ws.close()


def test_the_route_listing_sees_every_area() -> None:
    paths = {path for _, path in ENDPOINTS}
    assert "/health" in paths and "/api/loopml/whoami" in paths
    assert len(ENDPOINTS) > 10


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_endpoint_needs_credentials(
    auth_server: tuple[str, httpx.Client], method: str, path: str
) -> None:
    _, client = auth_server
    if path == "/health" and method in ("GET", "HEAD"):
        assert client.request(method, path).status_code == 200
        return
    if method == "WEBSOCKET":
        pytest.fail(f"no test of websocket routes yet: {path}")
    # A body and a query that would pass validation, so only missing credentials stop it.
    answer = client.request(
        method,
        path,
        params={"experiment_id": "1", "name": "x", "run_id": "0" * 32, "path": "a"},
        json={} if method in ("POST", "PUT", "PATCH", "DELETE") else None,
    )
    assert answer.status_code == 401, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
    if method != "HEAD":
        assert answer.json()["error_code"] == "UNAUTHENTICATED"
    # And a wrong token is no better than none.
    answer = client.request(method, path, headers=bearer("lml_wrong"))
    assert answer.status_code == 401, f"{method} {path} with a wrong token: {answer.status_code}"


# -- permissions on the access seam -------------------------------------------------------


@pytest.fixture
def seam(team: Team) -> Iterator[tuple[str, AuthAccess]]:
    """A small app whose routes ask the access seam what the route modules ask it:
    ``GET /check/{kind}/{key}/{level}``, ``GET /readable/{kind}``, ``POST /create/{kind}/{key}``
    (records the caller as creator, then checks manage in the same request)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from loopml.server.errors import ApiError, error_response

    access = AuthAccess(team.ws, cache_seconds=0)

    async def check(request: Request) -> Response:
        p = request.path_params
        access.check(request, p["kind"], p["key"], p["level"])
        return JSONResponse({"ok": True})

    async def readable(request: Request) -> Response:
        keys = access.readable(request, request.path_params["kind"])
        return JSONResponse({"keys": None if keys is None else sorted(keys)})

    async def create(request: Request) -> Response:
        p = request.path_params
        access.created(request, p["kind"], p["key"])
        access.check(request, p["kind"], p["key"], MANAGE)
        return JSONResponse({"ok": True})

    async def api_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    app = Starlette(
        routes=[
            Route("/check/{kind}/{key}/{level}", check),
            Route("/readable/{kind}", readable),
            Route("/create/{kind}/{key}", create, methods=["POST"]),
        ],
        exception_handlers={ApiError: api_error},
    )
    url, stop = start_server(access.middleware(app))
    yield url, access
    stop()


def test_levels_404_without_read_403_without_the_level(
    seam: tuple[str, AuthAccess], team: Team
) -> None:
    url, _ = seam
    grant(team.ws.db, "bob", EXPERIMENT, "1", READ)
    grant(team.ws.db, "bob", MODEL, "churn", EDIT)

    def ask(user: str, kind: str, key: str, level: str) -> httpx.Response:
        return httpx.get(f"{url}/check/{kind}/{key}/{level}", headers=team.as_(user))

    assert ask("bob", EXPERIMENT, "1", READ).status_code == 200
    denied = ask("bob", EXPERIMENT, "1", EDIT)  # a read-only user writing
    assert denied.status_code == 403
    assert denied.json()["error_code"] == "PERMISSION_DENIED"
    assert ask("bob", MODEL, "churn", EDIT).status_code == 200
    assert ask("bob", MODEL, "churn", MANAGE).status_code == 403
    # No grant at all: the same 404 as something that does not exist.
    hidden = ask("cy", EXPERIMENT, "1", READ)
    missing = ask("cy", EXPERIMENT, "999", READ)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error_code"] == missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert ask("cy", EXPERIMENT, "1", EDIT).status_code == 404  # not a 403 either
    assert ask("cy", MODEL, "churn", READ).status_code == 404
    # Admins may do everything.
    assert ask("ada", EXPERIMENT, "1", MANAGE).status_code == 200
    assert ask("ada", MODEL, "anything", MANAGE).status_code == 200


def test_listings_leave_out_what_one_may_not_read(seam: tuple[str, AuthAccess], team: Team) -> None:
    url, _ = seam
    grant(team.ws.db, "bob", EXPERIMENT, "1", READ)
    grant(team.ws.db, "bob", EXPERIMENT, "2", MANAGE)
    grant(team.ws.db, "bob", MODEL, "churn", READ)

    def readable(user: str, kind: str) -> Any:
        answer = httpx.get(f"{url}/readable/{kind}", headers=team.as_(user))
        assert answer.status_code == 200
        return answer.json()["keys"]

    assert readable("bob", EXPERIMENT) == ["1", "2"]
    assert readable("bob", MODEL) == ["churn"]
    assert readable("cy", EXPERIMENT) == []
    assert readable("ada", EXPERIMENT) is None  # admins: everything


def test_the_creator_gets_manage(seam: tuple[str, AuthAccess], team: Team) -> None:
    url, _ = seam
    for kind, key in ((EXPERIMENT, "7"), (MODEL, "fraud")):
        answer = httpx.post(f"{url}/create/{kind}/{key}", headers=team.as_("cy"))
        assert answer.status_code == 200, answer.text
        assert level_of(team.ws.db, "cy", kind, key) == MANAGE
        assert httpx.get(f"{url}/check/{kind}/{key}/manage", headers=team.as_("cy")).is_success
        assert httpx.get(f"{url}/check/{kind}/{key}/read", headers=team.as_("bob")).status_code == (
            404
        )


def test_default_permission_read(team: Team) -> None:
    """``default_permission = "read"``: everyone reads everything, writing needs a grant."""
    from starlette.requests import Request

    from loopml.server.auth.access import GRANTS_SCOPE_KEY
    from loopml.server.context import PRINCIPAL_SCOPE_KEY, Principal
    from loopml.server.errors import ApiError

    ws = team.ws
    assert AuthAccess(ws).default_level is None  # "none" unless configured
    server = dataclasses.replace(ws.settings.server, default_permission="read")
    ws.settings = ws.settings.with_overrides(server=server)
    access = AuthAccess(ws)
    bob = Request(
        {
            "type": "http",
            "path": "/api/loopml/runs",
            PRINCIPAL_SCOPE_KEY: Principal("bob", user_id=2),
            GRANTS_SCOPE_KEY: {(EXPERIMENT, "2"): EDIT},
        }
    )
    access.check(bob, EXPERIMENT, "1", READ)
    with pytest.raises(ApiError) as denied:
        access.check(bob, EXPERIMENT, "1", EDIT)
    assert denied.value.status == 403  # it can be seen, so no pretending it is absent
    access.check(bob, EXPERIMENT, "2", EDIT)  # a grant above the default still counts
    assert access.readable(bob, EXPERIMENT) is None


# -- grants and tokens over HTTP -----------------------------------------------------------


def test_managers_grant_others_over_http(server: Callable[..., str], team: Team) -> None:
    url = server(team.ws, access=AuthAccess(team.ws, cache_seconds=0))
    grants = f"{url}/api/loopml/auth/grants"
    grant(team.ws.db, "bob", EXPERIMENT, "3", MANAGE)
    body = {"user": "cy", "kind": "experiment", "key": "3", "level": "read"}
    assert httpx.put(grants, json=body, headers=team.as_("cy")).status_code == 404  # no grant
    answer = httpx.put(grants, json=body, headers=team.as_("bob"))
    assert answer.status_code == 200, answer.text
    assert level_of(team.ws.db, "cy", EXPERIMENT, "3") == READ
    # Read is not enough to grant.
    assert httpx.put(
        grants, json={**body, "level": "manage"}, headers=team.as_("cy")
    ).status_code == (403)
    listed = httpx.get(grants, params={"kind": "experiment", "key": "3"}, headers=team.as_("bob"))
    assert {g["user"] for g in listed.json()["grants"]} == {"bob", "cy"}
    removed = httpx.delete(
        grants, params={"user": "cy", "kind": "experiment", "key": "3"}, headers=team.as_("bob")
    )
    assert removed.status_code == 200
    assert level_of(team.ws.db, "cy", EXPERIMENT, "3") is None
    # Only admins list every grant or manage users.
    assert httpx.get(grants, headers=team.as_("bob")).status_code == 403
    assert httpx.get(grants, headers=team.as_("ada")).status_code == 200
    assert httpx.get(f"{url}/api/loopml/auth/users", headers=team.as_("bob")).status_code == 403
    made = httpx.post(
        f"{url}/api/loopml/auth/users",
        json={"name": "dee", "password": "dee-password-1"},
        headers=team.as_("ada"),
    )
    assert made.status_code == 200 and made.json()["admin"] is False
    dee = httpx.get(f"{url}/api/loopml/whoami", headers=basic("dee", "dee-password-1"))
    assert dee.json()["name"] == "dee"


def test_a_user_creates_and_revokes_their_own_token(server: Callable[..., str], team: Team) -> None:
    url = server(team.ws, access=AuthAccess(team.ws, cache_seconds=0))
    tokens = f"{url}/api/loopml/auth/tokens"
    made = httpx.post(
        tokens, json={"name": "laptop", "expires_in": "7d"}, headers=basic("bob", BOB_PASSWORD)
    )
    assert made.status_code == 200, made.text
    secret = made.json()["token"]
    assert made.json()["expires_at"].endswith("+00:00")
    assert httpx.get(f"{url}/api/loopml/whoami", headers=bearer(secret)).json()["name"] == "bob"
    listed = httpx.get(tokens, headers=bearer(secret)).json()["tokens"]
    assert "laptop" in {t["name"] for t in listed}
    assert all("token" not in t for t in listed)
    # Someone else's token looks absent; one's own is revoked.
    token_id = made.json()["id"]
    assert httpx.delete(f"{tokens}/{token_id}", headers=team.as_("cy")).status_code == 404
    assert httpx.delete(f"{tokens}/{token_id}", headers=bearer(secret)).status_code == 200
    assert_401(httpx.get(f"{url}/api/loopml/whoami", headers=bearer(secret)))
    bad = httpx.post(tokens, json={"expires_in": "soon"}, headers=team.as_("bob"))
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_without_auth_nobody_manages_users_over_http(
    server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    url = server(sqlite_ws)
    me = httpx.get(f"{url}/api/loopml/whoami").json()
    assert me == {"name": "anonymous", "admin": True, "auth": False}
    answer = httpx.post(f"{url}/api/loopml/auth/users", json={"name": "eve"})
    assert answer.status_code == 400 and "without --auth" in answer.json()["message"]


def test_loopmls_own_client_signs_in_with_loopml_token(
    server: Callable[..., str], team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.client.errors import Unauthorized

    url = server(team.ws, access=AuthAccess(team.ws, cache_seconds=0))
    monkeypatch.setenv("LOOPML_TOKEN", team.tokens["cy"])
    remote = Workspace.open(url)
    try:
        with remote.start_run("cy-remote", log_environment=False) as run:
            run.log_params({"lr": 0.1})
            run.log_metric("loss", 0.5)
        exp_id = str(remote.experiments.get("cy-remote").id)
    finally:
        remote.close()
    assert level_of(team.ws.db, "cy", EXPERIMENT, exp_id) == MANAGE
    assert team.ws.runs.get(run.id).params == {"lr": "0.1"}

    monkeypatch.setenv("LOOPML_TOKEN", team.tokens["bob"])  # no grant: it looks absent
    remote = Workspace.open(url)
    try:
        assert "cy-remote" not in {e.name for e in remote.experiments.list()}
    finally:
        remote.close()
    monkeypatch.setenv("LOOPML_TOKEN", "lml_wrong")
    remote = Workspace.open(url)
    try:
        with pytest.raises(Unauthorized):
            remote.experiments.list()
    finally:
        remote.close()


# -- the real MLflow client ------------------------------------------------------------------


@pytest.fixture
def mlflow_auth(
    server: Callable[..., str], team: Team, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Callable[..., None], str]]:
    """→ (the ``MlflowClient`` class, ``sign_in(token=... | user=..., password=...)``, url)
    against a server with auth on (grants seen at once)."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    url = server(team.ws, access=AuthAccess(team.ws, cache_seconds=0))
    variables = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(url)

    def sign_in(token: str | None = None, user: str | None = None, password: str = "") -> None:
        for variable in variables:
            monkeypatch.delenv(variable, raising=False)
        if token is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        if user is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    yield MlflowClient, sign_in, url
    mlflow.set_tracking_uri(None)


def _error(call: Callable[[], Any]) -> Any:
    """The ``MlflowException`` that ``call()`` raises."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        call()
    return raised.value


def _error_code(call: Callable[[], Any]) -> str:
    return str(_error(call).error_code)


def test_the_mlflow_client_signs_in_with_a_token_or_a_password(
    mlflow_auth: tuple[Any, Callable[..., None], str], team: Team
) -> None:
    client_class, sign_in, url = mlflow_auth
    sign_in(token=team.tokens["cy"])
    client = client_class(url)
    exp_id = client.create_experiment("cy-team")
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_metric(run_id, "loss", 0.5, step=1)
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    assert level_of(team.ws.db, "cy", EXPERIMENT, exp_id) == MANAGE  # the creator manages it

    sign_in(user="bob", password=BOB_PASSWORD)
    client = client_class(url)
    mine = client.create_experiment("bob-team")
    names = {e.name for e in client.search_experiments()}
    assert "bob-team" in names and "cy-team" not in names  # listings leave it out
    assert client.get_experiment(mine).name == "bob-team"

    sign_in(user="bob", password="not-bobs-password")
    assert _error_code(lambda: client_class(url).search_experiments()) == "UNAUTHENTICATED"
    sign_in(token=team.tokens["bob"] + "x")
    assert _error_code(lambda: client_class(url).search_experiments()) == "UNAUTHENTICATED"
    sign_in()
    assert _error_code(lambda: client_class(url).search_experiments()) == "UNAUTHENTICATED"


def test_the_mlflow_client_meets_404_without_read_and_403_without_edit(
    mlflow_auth: tuple[Any, Callable[..., None], str], team: Team
) -> None:
    client_class, sign_in, url = mlflow_auth
    sign_in(token=team.tokens["cy"])
    cy = client_class(url)
    exp_id = cy.create_experiment("cy-private")
    run_id = cy.create_run(exp_id).info.run_id

    sign_in(token=team.tokens["bob"])
    bob = client_class(url)
    hidden = _error(lambda: bob.get_experiment(exp_id))
    unknown = _error(lambda: bob.get_experiment("987654"))
    assert hidden.error_code == unknown.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert hidden.message.replace(exp_id, "?") == unknown.message.replace("987654", "?")
    assert _error_code(lambda: bob.get_run(run_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert _error_code(lambda: bob.log_param(run_id, "x", "1")) == "RESOURCE_DOES_NOT_EXIST"

    grant(team.ws.db, "bob", EXPERIMENT, exp_id, READ)
    assert bob.get_experiment(exp_id).name == "cy-private"
    assert bob.get_run(run_id).info.run_id == run_id
    assert _error_code(lambda: bob.log_param(run_id, "x", "1")) == "PERMISSION_DENIED"
    assert _error_code(lambda: bob.create_run(exp_id)) == "PERMISSION_DENIED"
    grant(team.ws.db, "bob", EXPERIMENT, exp_id, EDIT)
    bob.log_param(run_id, "x", "1")

    sign_in(user="ada", password=ADMIN_PASSWORD)
    ada = client_class(url)
    assert "cy-private" in {e.name for e in ada.search_experiments()}  # admins see all
    assert ada.get_run(run_id).data.params == {"x": "1"}


def test_the_mlflow_client_and_registered_models(
    mlflow_auth: tuple[Any, Callable[..., None], str], team: Team
) -> None:
    client_class, sign_in, url = mlflow_auth
    sign_in(token=team.tokens["cy"])
    client_class(url).create_registered_model("cy-model")
    assert level_of(team.ws.db, "cy", MODEL, "cy-model") == MANAGE

    sign_in(user="bob", password=BOB_PASSWORD)
    bob = client_class(url)
    assert _error_code(lambda: bob.get_registered_model("cy-model")) == "RESOURCE_DOES_NOT_EXIST"
    assert "cy-model" not in {m.name for m in bob.search_registered_models()}
    grant(team.ws.db, "bob", MODEL, "cy-model", READ)
    assert bob.get_registered_model("cy-model").name == "cy-model"
    assert "cy-model" in {m.name for m in bob.search_registered_models()}
    update = lambda: bob.update_registered_model("cy-model", description="mine now")  # noqa: E731
    assert _error_code(update) == "PERMISSION_DENIED"
    grant(team.ws.db, "bob", MODEL, "cy-model", EDIT)
    update()
    assert bob.get_registered_model("cy-model").description == "mine now"


def test_renaming_a_model_over_mlflows_api_moves_its_grants_and_deleting_drops_them(
    server: Callable[..., str], team: Team
) -> None:
    url = server(team.ws, auth=True)
    api = f"{url}/api/2.0/mlflow/registered-models"
    created = httpx.post(f"{api}/create", json={"name": "churn"}, headers=team.as_("ada"))
    assert created.status_code == 200, created.text
    grant(team.ws.db, "bob", MODEL, "churn", READ)
    renamed = httpx.post(
        f"{api}/rename", json={"name": "churn", "new_name": "churn-v2"}, headers=team.as_("ada")
    )
    assert renamed.status_code == 200, renamed.text
    assert level_of(team.ws.db, "bob", MODEL, "churn-v2") == READ
    assert level_of(team.ws.db, "bob", MODEL, "churn") is None
    deleted = httpx.request(
        "DELETE", f"{api}/delete", json={"name": "churn-v2"}, headers=team.as_("ada")
    )
    assert deleted.status_code == 200, deleted.text
    assert level_of(team.ws.db, "bob", MODEL, "churn-v2") is None


def test_a_hidden_run_answers_word_for_word_as_a_missing_one(
    server: Callable[..., str], team: Team
) -> None:
    url = server(team.ws, auth=True)
    api = f"{url}/api/2.0/mlflow"
    exp = httpx.post(
        f"{api}/experiments/create", json={"name": "ada-only"}, headers=team.as_("ada")
    )
    assert exp.status_code == 200, exp.text
    run = httpx.post(
        f"{api}/runs/create",
        json={"experiment_id": exp.json()["experiment_id"]},
        headers=team.as_("ada"),
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    hidden = httpx.get(f"{api}/runs/get", params={"run_id": run_id}, headers=team.as_("bob"))
    missing_id = "0" * 32
    missing = httpx.get(f"{api}/runs/get", params={"run_id": missing_id}, headers=team.as_("bob"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["message"] == missing.json()["message"].replace(missing_id, run_id)
