"""What every route of the server gets: the workspace, the settings and the access checks.

Access is a seam with two implementations: :class:`OpenAccess` (``loopml server`` without
``--auth``: everyone is an anonymous admin) and ``loopml.server.auth.AuthAccess`` (users,
tokens and per-experiment / per-model permissions). Routes never look at headers for
credentials themselves; they ask the context::

    ctx.access.check(request, EXPERIMENT, str(experiment_id), EDIT)   # ApiError 403 / 404
    ctx.access.readable(request, EXPERIMENT)                          # None: all of them

The authentication middleware (installed by the auth implementation) puts the caller on the
request's scope as ``scope["loopml.principal"]`` before any route runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp

    from loopml.server.settings import ServerSettings
    from loopml.workspace import Workspace

T = TypeVar("T")

Kind = Literal["experiment", "model"]
Level = Literal["read", "edit", "manage"]
EXPERIMENT: Kind = "experiment"
MODEL: Kind = "model"
READ: Level = "read"
EDIT: Level = "edit"
MANAGE: Level = "manage"
#: Each level includes the ones before it.
LEVELS: tuple[Level, ...] = (READ, EDIT, MANAGE)

PRINCIPAL_SCOPE_KEY = "loopml.principal"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of the server, or ``anonymous`` when auth is off."""

    name: str
    is_admin: bool = False
    user_id: int | None = None


ANONYMOUS = Principal("anonymous", is_admin=True)


class Access(Protocol):
    """Who may do what. Every route that reads or changes an experiment (and its runs) or a
    registered model (and its versions) calls :meth:`check` first."""

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap the app: authenticate each request (401 when it must and can't)."""
        ...

    def principal(self, conn: HTTPConnection) -> Principal:
        """The caller of this request."""
        ...

    def check(self, conn: HTTPConnection, kind: Kind, key: str, level: Level) -> None:
        """Raise :class:`~loopml.server.errors.ApiError` unless the caller has ``level`` on
        the experiment (``key`` = its id, as a string) or model (``key`` = its name).
        Without read access the answer is the same 404 an unknown one gets."""
        ...

    def readable(self, conn: HTTPConnection, kind: Kind) -> set[str] | None:
        """The keys the caller may read, for filtering listings; None means all."""
        ...

    def created(self, conn: HTTPConnection, kind: Kind, key: str) -> None:
        """Record that the caller created this experiment or model (it gets manage)."""
        ...


class OpenAccess:
    """No auth: every request is :data:`ANONYMOUS`, allowed everything."""

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return app

    def principal(self, conn: HTTPConnection) -> Principal:
        return ANONYMOUS

    def check(self, conn: HTTPConnection, kind: Kind, key: str, level: Level) -> None:
        return None

    def readable(self, conn: HTTPConnection, kind: Kind) -> set[str] | None:
        return None

    def created(self, conn: HTTPConnection, kind: Kind, key: str) -> None:
        return None


@dataclass
class ServerContext:
    """Handed to each area's ``routes(ctx)``."""

    workspace: Workspace
    settings: ServerSettings
    access: Access = field(default_factory=OpenAccess)
    #: Things a route module keeps between requests (caches), by the module's name.
    state: dict[str, Any] = field(default_factory=dict)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking store code in the thread pool, off the event loop."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn, *args, **kwargs)
