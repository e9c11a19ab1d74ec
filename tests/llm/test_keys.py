"""Virtual keys: created with a secret shown once and stored hashed, listed, found by id or
prefix, revoked, expired; and the gateway's cached check of a secret."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.config import Budget, Limits
from loopml.llm.errors import AuthenticationFailed
from loopml.llm.keys import (
    KeyCache,
    KeyNotFound,
    create_key,
    get_key,
    list_keys,
    parse_budget,
    parse_expiry,
    revoke_key,
)
from loopml.llm.tables import llm_keys
from loopml.store.clock import now_ms
from loopml.workspace import Workspace


def test_a_key_is_stored_hashed_and_its_secret_returned_once(ws: Workspace) -> None:
    key, secret = create_key(
        ws,
        name="growth-app",
        team="growth",
        models="gpt-4o-mini, claude-haiku",
        rpm=600,
        tpm=200_000,
        budget="50/month",
        max_request_cost_usd=0.5,
        log_content="redact",
        tags={"app": "search"},
        expires="30d",
    )
    assert re.fullmatch(r"sk-lml-[A-Za-z0-9_-]{40}", secret)
    assert key.prefix == secret[:12]
    assert key.id.startswith("k_")
    assert key.models == ("gpt-4o-mini", "claude-haiku")
    assert key.limits == Limits(
        rpm=600, tpm=200_000, budget=Budget(50.0, "month"), max_request_cost_usd=0.5
    )
    assert key.log_content == "redact"
    assert dict(key.tags) == {"app": "search"}
    assert key.expires_at is not None
    assert abs(key.expires_at - key.created_at - 30 * 86_400_000) < 5
    with ws.db.read() as conn:
        row = conn.execute(select(llm_keys).where(llm_keys.c.id == key.id)).one()
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(v) for v in row]
    assert get_key(ws, key.id) == key
    assert get_key(ws, key.prefix) == key


def test_to_dict_shows_iso_times_with_offset(sqlite_ws: Workspace) -> None:
    key, _ = create_key(sqlite_ws, budget="2.5/day", expires="2099-01-01")
    data = key.to_dict()
    assert data["budget"] == "2.5/day"
    assert data["expires_at"] == "2099-01-01T00:00:00+00:00"
    assert datetime.fromisoformat(data["created_at"]).utcoffset() == timedelta(0)
    assert data["revoked_at"] is None
    assert data["state"] == "active"
    assert data["models"] is None


def test_list_by_team_and_revoked_only_when_asked(ws: Workspace) -> None:
    a, _ = create_key(ws, team="growth")
    b, _ = create_key(ws, team="search")
    c, _ = create_key(ws, team="growth")

    def ordered(*keys: Any) -> list[str]:  # by creation time; keys of one millisecond by id
        return [k.id for k in sorted(keys, key=lambda k: (k.created_at, k.id))]

    assert [k.id for k in list_keys(ws)] == ordered(a, b, c)
    assert [k.id for k in list_keys(ws, team="growth")] == ordered(a, c)
    revoke_key(ws, a.id)
    assert [k.id for k in list_keys(ws, team="growth")] == [c.id]
    assert [k.id for k in list_keys(ws, include_revoked=True)] == ordered(a, b, c)


def test_revoke_is_idempotent(sqlite_ws: Workspace) -> None:
    key, _ = create_key(sqlite_ws)
    first = revoke_key(sqlite_ws, key.id)
    assert first.revoked_at is not None
    assert not first.active(now_ms())
    assert revoke_key(sqlite_ws, key.id).revoked_at == first.revoked_at
    assert first.to_dict()["state"] == "revoked"


def test_unknown_key_names_it(sqlite_ws: Workspace) -> None:
    with pytest.raises(KeyNotFound, match="'k_nosuch'.*keys list"):
        get_key(sqlite_ws, "k_nosuch")
    with pytest.raises(NotFound):
        revoke_key(sqlite_ws, "k_nosuch")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"budget": "50/week"}, "not a budget"),
        ({"budget": "lots"}, "not a budget"),
        ({"budget": "0/day"}, "more than 0"),
        ({"rpm": 0}, "rpm must be a whole number above 0"),
        ({"tpm": 1.5}, "tpm must be"),
        ({"max_request_cost_usd": -1}, "max_request_cost_usd"),
        ({"log_content": "some"}, "full, redact, none"),
        ({"expires": "soon"}, "not an expiry"),
        ({"expires": "2001-01-01"}, "in the future"),
        ({"models": " , "}, "names no model"),
        ({"name": ""}, "name must be 1 to"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    sqlite_ws: Workspace, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(fragment)):
        create_key(sqlite_ws, **kwargs)  # type: ignore[arg-type]
    assert list_keys(sqlite_ws, include_revoked=True) == []


def test_parsers() -> None:
    assert parse_budget("$50 / Monthly") == Budget(50.0, "month")
    assert parse_budget(Budget(2.0, "day")) == Budget(2.0, "day")
    assert parse_expiry("12h", now=0) == 12 * 3_600_000
    assert parse_expiry(timedelta(minutes=1), now=0) == 60_000
    assert parse_expiry(datetime(1970, 1, 1, 1, tzinfo=UTC), now=0) == 3_600_000
    assert parse_expiry("1970-01-01T02:00:00+01:00", now=0) == 3_600_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_authenticates_and_says_why_it_refuses(sqlite_ws: Workspace) -> None:
    key, secret = create_key(sqlite_ws, team="growth")
    cache = KeyCache(sqlite_ws)
    assert cache.authenticate(secret) == key
    for missing in (None, ""):
        with pytest.raises(AuthenticationFailed, match="Authorization: Bearer sk-lml-"):
            cache.authenticate(missing)
    with pytest.raises(AuthenticationFailed, match="no such virtual key") as info:
        cache.authenticate("sk-lml-" + "x" * 40)
    assert info.value.status == 401
    assert "x" * 20 not in info.value.message  # never echoes the secret back


def test_revocation_takes_effect_within_ttl(sqlite_ws: Workspace) -> None:
    key, secret = create_key(sqlite_ws)
    clock = FakeClock()
    cache = KeyCache(sqlite_ws, ttl=5.0, clock=clock)
    assert cache.authenticate(secret).id == key.id
    revoked = revoke_key(sqlite_ws, key.id)
    clock.now += 4.0
    assert cache.authenticate(secret).id == key.id  # cached: still within ttl
    clock.now += 1.5
    with pytest.raises(AuthenticationFailed, match="revoked at") as info:
        cache.authenticate(secret)
    assert datetime.fromtimestamp(revoked.revoked_at / 1000, tz=UTC).isoformat() in str(  # type: ignore[operator]
        info.value
    )
    # A second replica's cache reads the store and refuses at once.
    with pytest.raises(AuthenticationFailed, match="revoked"):
        KeyCache(sqlite_ws).authenticate(secret)


def test_an_unknown_secret_is_remembered_only_briefly(sqlite_ws: Workspace) -> None:
    template, _ = create_key(sqlite_ws)
    secret = "sk-lml-" + "k" * 40
    clock = FakeClock()
    cache = KeyCache(sqlite_ws, ttl=60.0, clock=clock)
    with pytest.raises(AuthenticationFailed, match="no such virtual key"):
        cache.authenticate(secret)
    # The key is created now (by another process): its hash appears in the store.
    with sqlite_ws.db.engine.begin() as conn:
        conn.execute(
            llm_keys.insert().values(
                id="k_late",
                key_hash=hashlib.sha256(secret.encode()).hexdigest(),
                prefix=secret[:12],
                created_at=template.created_at,
            )
        )
    with pytest.raises(AuthenticationFailed):
        cache.authenticate(secret)  # the refusal is still remembered…
    clock.now += 1.5
    assert cache.authenticate(secret).id == "k_late"  # … for about a second, not the ttl


def test_expiry_is_checked_on_every_request(sqlite_ws: Workspace) -> None:
    key, secret = create_key(sqlite_ws, expires="1h")
    cache = KeyCache(sqlite_ws, ttl=3600)
    assert cache.authenticate(secret).id == key.id
    # Let the key's expiry pass in the store; the cached entry must see it too.
    with sqlite_ws.db.engine.begin() as conn:
        conn.execute(
            llm_keys.update().where(llm_keys.c.id == key.id).values(expires_at=now_ms() - 1000)
        )
    # Put the expired key in the cache as if it had been read just now (ttl: an hour).
    digest = hashlib.sha256(secret.encode()).hexdigest()
    cache._cache[digest] = (cache._cache[digest][0], get_key(sqlite_ws, key.id))
    with pytest.raises(AuthenticationFailed, match="expired at"):
        cache.authenticate(secret)
    with pytest.raises(AuthenticationFailed, match="expired at"):
        KeyCache(sqlite_ws).authenticate(secret)
