"""Virtual keys: what clients of the gateway authenticate with (``Authorization: Bearer``
for OpenAI clients, ``x-api-key`` for Anthropic ones), each with its own models, rate
limits, budget and content-logging policy.

A key's secret is ``sk-lml-`` and 40 random URL-safe characters (240 bits). It is shown once,
when created; the store keeps only its SHA-256 and its first 12 characters
(:attr:`VirtualKey.prefix`) to tell keys apart in listings. A key can expire and can be
revoked; a revoked key stays listed (``include_revoked=True``).

    key, secret = create_key(ws, team="growth", budget="50/month", rpm=600, expires="30d")
    revoke_key(ws, key.id)

The gateway checks keys through :class:`KeyCache`, which remembers each answer for a few
seconds: a revocation takes effect within that time (``ttl``, 5 s by default) on every
gateway replica.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.config import _BUDGET, _PERIOD_WORDS, LOG_CONTENT, Budget, Limits
from loopml.llm.errors import AuthenticationFailed
from loopml.llm.tables import llm_keys
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.workspace import Workspace

SECRET_PREFIX = "sk-lml-"
PREFIX_CHARS = 12  # "sk-lml-" and 5 random characters: enough to tell keys apart
#: How long an unknown secret's refusal is remembered (seconds): short, so a key created
#: right after a typo works at once, yet a client retrying a bad key in a loop costs no query.
NEGATIVE_TTL = 1.0
#: At most this many secrets are remembered; past it, stale answers are dropped first.
MAX_CACHED = 10_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class KeyNotFound(NotFound):
    """No virtual key with that id or prefix."""


@dataclass(frozen=True)
class VirtualKey:
    """A virtual key as stored (never its secret). Times are epoch milliseconds."""

    id: str
    prefix: str
    name: str | None
    team: str | None
    models: tuple[str, ...] | None  # None: every model
    limits: Limits
    log_content: str | None  # full | redact | none; None: the gateway's setting
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0
    expires_at: int | None = None
    revoked_at: int | None = None

    def active(self, now_ms: int) -> bool:
        """True when the key is neither revoked nor expired at ``now_ms``."""
        return self.revoked_at is None and (self.expires_at is None or now_ms < self.expires_at)

    def state(self, now: int | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and (now_ms() if now is None else now) >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 with their offset, the budget as ``"50/month"``."""
        budget = self.limits.budget
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "team": self.team,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "budget": format_budget(budget) if budget is not None else None,
            "max_request_cost_usd": self.limits.max_request_cost_usd,
            "log_content": self.log_content,
            "tags": dict(self.tags),
            "state": self.state(),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
        }


def _iso(ms: int | None) -> str | None:
    moment = to_datetime(ms)
    return moment.isoformat() if moment is not None else None


def key_hash(secret: str) -> str:
    """The hex SHA-256 the store keeps of a key's secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def format_budget(budget: Budget) -> str:
    """``Budget(50.0, "month")`` → ``"50/month"`` (what :func:`parse_budget` reads back)."""
    return f"{budget.amount_usd:g}/{budget.period}"


def parse_budget(value: Budget | str) -> Budget:
    """A budget from ``"50/month"``, ``"2.5/day"`` or ``"$50 / monthly"`` (USD).

    >>> parse_budget("2.5/day")
    Budget(amount_usd=2.5, period='day')
    """
    if isinstance(value, Budget):
        budget = value
    else:
        match = _BUDGET.fullmatch(str(value).strip().lower())
        period = _PERIOD_WORDS.get(match.group(2)) if match else None
        if match is None or period is None:
            raise InvalidInput(
                f"{value!r} is not a budget: write USD per day or month, e.g. 50/month or 2.5/day."
            )
        budget = Budget(amount_usd=float(match.group(1)), period=period)  # type: ignore[arg-type]
    if not math.isfinite(budget.amount_usd) or budget.amount_usd <= 0:
        raise InvalidInput(f"A budget must be more than 0 USD, got {value!r}.")
    if budget.period not in ("day", "month"):
        raise InvalidInput(f"A budget's period is day or month, got {budget.period!r}.")
    return budget


def parse_expiry(value: str | timedelta | datetime, *, now: int | None = None) -> int:
    """When a key given ``expires=value`` at ``now`` (ms) expires, in epoch ms: a duration
    (``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, a :class:`timedelta`) from now, or a moment
    (``"2026-12-31"``, ``"2026-12-31T18:00:00+01:00"``, a :class:`datetime`; without an
    offset it is UTC). It must lie in the future.

    >>> parse_expiry("1d", now=0)
    86400000
    >>> parse_expiry("1970-01-02", now=0)
    86400000
    """
    start = now_ms() if now is None else now
    if isinstance(value, timedelta):
        at = start + round(value.total_seconds() * 1000)
    elif isinstance(value, datetime):
        at = _moment_ms(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            at = start + round(float(match.group(1)) * _UNITS[match.group(2)] * 1000)
        else:
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise InvalidInput(
                    f"{value!r} is not an expiry: give a duration (30d, 12h, 90m, 2w) or an "
                    "ISO date or time (2026-12-31, 2026-12-31T18:00:00+01:00)."
                ) from None
            at = _moment_ms(moment)
    else:
        raise InvalidInput(
            f"expires must be a duration string, a timedelta or a datetime, got {value!r}."
        )
    if at <= start:
        raise InvalidInput(f"A key's expiry must lie in the future, got {value!r}.")
    return at


def _moment_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


# -- the store ----------------------------------------------------------------------------


def _positive_int(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"{name} must be a whole number above 0, got {value!r}.")
    return value


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > KEY:
        raise InvalidInput(f"A key's {name} must be 1 to {KEY} characters, got {value!r}.")
    return value


def _models(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(m).strip() for m in items if str(m).strip()))
    if not names:
        raise InvalidInput(
            f"models names no model ({value!r}): give model names, e.g. gpt-4o-mini,claude-haiku, "
            "or leave it out to allow every model."
        )
    return names


def _tags(value: Mapping[str, Any] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"tags must be a mapping of names to values, got {value!r}.")
    return {str(k): str(v) for k, v in value.items()}


def _to_key(row: Any) -> VirtualKey:
    budget = (
        Budget(amount_usd=row.budget_usd, period=row.budget_period)
        if row.budget_usd is not None and row.budget_period is not None
        else None
    )
    return VirtualKey(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        team=row.team,
        models=tuple(json.loads(row.models)) if row.models is not None else None,
        limits=Limits(
            rpm=row.rpm,
            tpm=row.tpm,
            budget=budget,
            max_request_cost_usd=row.max_request_cost_usd,
        ),
        log_content=row.log_content,
        tags=json.loads(row.tags) if row.tags else {},
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def create_key(
    ws: Workspace,
    *,
    name: str | None = None,
    team: str | None = None,
    models: Iterable[str] | str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget: Budget | str | None = None,
    max_request_cost_usd: float | None = None,
    log_content: str | None = None,
    tags: Mapping[str, Any] | None = None,
    expires: str | timedelta | datetime | None = None,
) -> tuple[VirtualKey, str]:
    """A new virtual key → (the key, its secret). The secret is shown only now: hand it over,
    the store keeps only its hash.

    ``models``: the model names (groups or routers) the key may ask for (None: all);
    ``rpm``/``tpm``: requests and tokens per minute; ``budget``: USD per day or month
    (``"50/month"``); ``max_request_cost_usd``: the most one request may cost (estimated
    before dispatch); ``log_content``: ``full``, ``redact`` or ``none`` (None: the gateway's
    ``log_content``); ``expires``: ``"30d"``, ``"12h"``, an ISO date, a timedelta or datetime.
    """
    created = now_ms()
    if max_request_cost_usd is not None and (
        isinstance(max_request_cost_usd, bool)
        or not isinstance(max_request_cost_usd, int | float)
        or not math.isfinite(max_request_cost_usd)
        or max_request_cost_usd <= 0
    ):
        raise InvalidInput(
            f"max_request_cost_usd must be a number of USD above 0, got {max_request_cost_usd!r}."
        )
    if log_content is not None and log_content not in LOG_CONTENT:
        raise InvalidInput(
            f"log_content must be one of {', '.join(LOG_CONTENT)}, got {log_content!r}."
        )
    parsed_budget = parse_budget(budget) if budget is not None else None
    allowed = _models(models)
    key_tags = _tags(tags)
    values = {
        "name": _text("name", name),
        "team": _text("team", team),
        "models": json.dumps(list(allowed)) if allowed is not None else None,
        "rpm": _positive_int("rpm", rpm),
        "tpm": _positive_int("tpm", tpm),
        "budget_usd": parsed_budget.amount_usd if parsed_budget else None,
        "budget_period": parsed_budget.period if parsed_budget else None,
        "max_request_cost_usd": (
            float(max_request_cost_usd) if max_request_cost_usd is not None else None
        ),
        "log_content": log_content,
        "tags": json.dumps(key_tags, sort_keys=True) if key_tags else None,
        "created_at": created,
        "expires_at": parse_expiry(expires, now=created) if expires is not None else None,
    }
    secret = SECRET_PREFIX + secrets.token_urlsafe(30)
    key_id = "k_" + secrets.token_hex(8)

    def tx(conn: Connection) -> Any:
        conn.execute(
            llm_keys.insert().values(
                id=key_id, key_hash=key_hash(secret), prefix=secret[:PREFIX_CHARS], **values
            )
        )
        return conn.execute(select(llm_keys).where(llm_keys.c.id == key_id)).one()

    return _to_key(ws.db.transact(tx)), secret


def list_keys(
    ws: Workspace, *, team: str | None = None, include_revoked: bool = False
) -> list[VirtualKey]:
    """Keys, oldest first: of ``team`` only when given; revoked ones only with
    ``include_revoked`` (expired ones are listed, marked by their state)."""
    stmt = select(llm_keys).order_by(llm_keys.c.created_at, llm_keys.c.id)
    if team is not None:
        stmt = stmt.where(llm_keys.c.team == team)
    if not include_revoked:
        stmt = stmt.where(llm_keys.c.revoked_at.is_(None))
    with ws.db.read() as conn:
        return [_to_key(row) for row in conn.execute(stmt)]


def get_key(ws: Workspace, key_id_or_prefix: str) -> VirtualKey:
    """The key with that id (``k_…``) or secret prefix (``sk-lml-…``, as listings show it)."""
    wanted = str(key_id_or_prefix).strip()
    stmt = select(llm_keys).where(or_(llm_keys.c.id == wanted, llm_keys.c.prefix == wanted))
    with ws.db.read() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        raise KeyNotFound(
            f"No virtual key {wanted!r}: give a key's id (k_…) or prefix (sk-lml-…); "
            "`loopml gateway keys list --all` shows them."
        )
    if len(rows) > 1:
        raise InvalidInput(
            f"{wanted!r} is the prefix of {len(rows)} keys ("
            + ", ".join(row.id for row in rows)
            + "): give the key's id instead."
        )
    return _to_key(rows[0])


def revoke_key(ws: Workspace, key_id: str) -> VirtualKey:
    """Revoke a key (by id or prefix) for good; revoking it again changes nothing. Gateways
    refuse it within their key cache's ``ttl`` (5 s by default)."""
    key = get_key(ws, key_id)
    if key.revoked_at is not None:
        return key

    def tx(conn: Connection) -> Any:
        conn.execute(
            update(llm_keys)
            .where(llm_keys.c.id == key.id, llm_keys.c.revoked_at.is_(None))
            .values(revoked_at=now_ms())
        )
        return conn.execute(select(llm_keys).where(llm_keys.c.id == key.id)).one()

    return _to_key(ws.db.transact(tx))


# -- the gateway's per-request check --------------------------------------------------------


class KeyCache:
    """Authenticates secrets for the gateway, remembering each answer for ``ttl`` seconds
    (an unknown secret's refusal for at most :data:`NEGATIVE_TTL`), so a request with a known
    key costs a dictionary lookup, not a query.

    A key revoked (or created) in the store is seen within ``ttl`` seconds by every gateway
    process; an expiry is checked on every request, cached or not.
    """

    def __init__(self, ws: Workspace, ttl: float = 5.0, *, clock: Any = time.monotonic) -> None:
        self.ws = ws
        self.ttl = float(ttl)
        self._clock = clock
        # sha256 → (monotonic deadline, the key, or the refusal to raise again)
        self._cache: dict[str, tuple[float, VirtualKey | AuthenticationFailed]] = {}
        self._lock = threading.Lock()

    def authenticate(self, secret: str | None) -> VirtualKey:
        """The active key whose secret this is; else :class:`AuthenticationFailed` saying why
        (missing, unknown, revoked and when, expired and when)."""
        if not secret:
            raise AuthenticationFailed(
                "Missing API key: send Authorization: Bearer sk-lml-… (or x-api-key for "
                "Anthropic clients); create one with `loopml gateway keys create`."
            )
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is None or hit[0] <= now:
            hit = self._load(secret, digest, now)
        answer = hit[1]
        if isinstance(answer, AuthenticationFailed):
            raise AuthenticationFailed(answer.message)
        if answer.expires_at is not None and now_ms() >= answer.expires_at:
            raise AuthenticationFailed(_expired(answer))
        return answer

    def invalidate(self) -> None:
        """Forget every cached answer (the next request of each key reads the store)."""
        with self._lock:
            self._cache.clear()

    def _load(
        self, secret: str, digest: str, now: float
    ) -> tuple[float, VirtualKey | AuthenticationFailed]:
        with self.ws.db.read() as conn:
            row = conn.execute(select(llm_keys).where(llm_keys.c.key_hash == digest)).first()
        answer: VirtualKey | AuthenticationFailed
        ttl = self.ttl
        if row is None:
            shown = secret[:PREFIX_CHARS] + "…" if secret.startswith(SECRET_PREFIX) else "that key"
            answer = AuthenticationFailed(
                f"Invalid API key {shown}: no such virtual key; check the key, or create one "
                "with `loopml gateway keys create`."
            )
            ttl = min(ttl, NEGATIVE_TTL)
        else:
            key = _to_key(row)
            if key.revoked_at is not None:
                answer = AuthenticationFailed(
                    f"API key {key.prefix}… (id {key.id}) was revoked at {_iso(key.revoked_at)}; "
                    "ask for a new key."
                )
            else:
                answer = key
        entry = (now + ttl, answer)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                stale = [d for d, (deadline, _) in self._cache.items() if deadline <= now]
                for d in stale:
                    del self._cache[d]
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[digest] = entry
        return entry


def _expired(key: VirtualKey) -> str:
    return (
        f"API key {key.prefix}… (id {key.id}) expired at {_iso(key.expires_at)}; ask for a new key."
    )
