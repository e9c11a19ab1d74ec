"""The ``[server]`` section of ``loopml.toml``: the team server (``loopml server``).

::

    [server]
    host = "127.0.0.1"            # LOOPML_SERVER_HOST: the address `loopml server` binds
    port = 5000                   # LOOPML_SERVER_PORT
    workers = 1                   # LOOPML_SERVER_WORKERS: uvicorn worker processes
    auth = false                  # LOOPML_SERVER_AUTH: users, tokens and permissions
    default_permission = "none"   # LOOPML_SERVER_DEFAULT_PERMISSION: "none" or "read", what
                                  # a user without a grant on an experiment or model has
    max_request_bytes = 16777216  # LOOPML_SERVER_MAX_REQUEST_BYTES: larger API bodies get a 413
    max_artifact_bytes = 5368709120  # LOOPML_SERVER_MAX_ARTIFACT_BYTES: one uploaded artifact

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.server``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.exceptions import InvalidConfig

#: What ``default_permission`` may be: no access, or read access to everything.
DEFAULT_PERMISSIONS = ("none", "read")


def _default_permission(value: Any, where: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in DEFAULT_PERMISSIONS:
        raise InvalidConfig(
            f"{where} must be {' or '.join(repr(p) for p in DEFAULT_PERMISSIONS)}, got {value!r}"
        )
    return str(text)


@dataclass(frozen=True)
class ServerSettings:
    """Where ``loopml server`` listens, whether it asks who is calling, and its size limits."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "the address to bind; another than loopback needs auth or --insecure"},
    )
    port: int = field(default=5000, metadata={"min": 1, "help": "the TCP port"})
    workers: int = field(default=1, metadata={"min": 1, "help": "uvicorn worker processes"})
    auth: bool = field(
        default=False,
        metadata={"help": "require users and tokens (loopml users / loopml tokens)"},
    )
    default_permission: str = field(
        default="none",
        metadata={
            "parse": _default_permission,
            "help": "with auth, what a user has on an experiment or model without a grant: "
            "none (it looks absent) or read",
        },
    )
    max_request_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata={"min": 1, "unit": "bytes", "help": "a larger API request body gets a 413"},
    )
    max_artifact_bytes: int = field(
        default=5 * 1024 * 1024 * 1024,
        metadata={"min": 1, "unit": "bytes", "help": "a larger artifact upload gets a 413"},
    )
