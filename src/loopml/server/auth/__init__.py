"""Users, API tokens and permissions of the team server (``loopml server --auth``).

- :mod:`~loopml.server.auth.users`: users with scrypt-hashed passwords, admins;
- :mod:`~loopml.server.auth.tokens`: API tokens, stored as SHA-256, revocable, expiring;
- :mod:`~loopml.server.auth.grants`: read / edit / manage per experiment and model;
- :class:`AuthAccess` (:mod:`~loopml.server.auth.access`): the server's access seam, which
  authenticates every request and answers the routes' permission checks;
- ``routes``: ``/api/loopml/whoami``, a user's own tokens, users and grants over HTTP.

``AuthAccess`` is imported on first use, so the store can load this package's tables alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.server.auth.access import AuthAccess

__all__ = ["AuthAccess"]


def __getattr__(name: str) -> Any:
    if name == "AuthAccess":
        from loopml.server.auth.access import AuthAccess

        return AuthAccess
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
