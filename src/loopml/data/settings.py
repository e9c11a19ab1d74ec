"""The ``[data]`` section of ``loopml.toml``: how files are linked, and where remotes are.

::

    [data]
    link = ["reflink", "hardlink", "copy"]   # LOOPML_DATA_LINK=copy,hardlink
    default_remote = "team"                  # LOOPML_DATA_DEFAULT_REMOTE

    [data.remotes]
    team = "s3://bucket/datasets"                              # just a URL
    nas = { url = "/mnt/nas/loopml", auto_mkdir = true }       # URL + fsspec options

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.exceptions import InvalidConfig


def _default_link() -> tuple[str, ...]:
    from loopml.data.links import default_order

    return default_order()


def _parse_link(value: Any, where: str) -> tuple[str, ...]:
    from loopml.data.links import parse_order

    return parse_order(value, where)


def _parse_remotes(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """``{name: {"url": ..., **fsspec options}}`` from ``[data.remotes]``."""
    if not isinstance(value, Mapping):
        raise InvalidConfig(f"{where} must be a table of remotes (name = URL), got {value!r}")
    remotes: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        if isinstance(spec, str) and spec:
            remotes[name] = {"url": spec}
        elif isinstance(spec, Mapping) and isinstance(spec.get("url"), str) and spec["url"]:
            remotes[name] = dict(spec)
        else:
            raise InvalidConfig(
                f"{where}: {name} must be a URL or a table with a url, got {spec!r}"
            )
    return remotes


@dataclass(frozen=True)
class DataSettings:
    """How data versioning links files, and the remotes ``push``/``pull`` use."""

    link: tuple[str, ...] = field(
        default_factory=_default_link,
        metadata={
            "parse": _parse_link,
            "help": "link strategies tried in order (reflink, hardlink, copy); "
            "as root the default leaves hardlink out",
        },
    )
    default_remote: str | None = field(
        default=None,
        metadata={"help": "the remote push and pull use when none is named"},
    )
    remotes: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict,
        metadata={"parse": _parse_remotes, "help": "named fsspec URLs (with options)"},
    )

    def problem(self) -> tuple[str, str] | None:
        """The first setting that contradicts another, as (key, message), else None."""
        if self.default_remote is not None and self.default_remote not in self.remotes:
            configured = ", ".join(self.remotes) or "none"
            return (
                "default_remote",
                f"{self.default_remote!r} is not a configured remote (configured: "
                f"{configured}); add it under [data.remotes] or choose another",
            )
        return None
