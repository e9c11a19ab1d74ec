"""Data remotes: named fsspec URLs in ``loopml.toml``, where ``push`` and ``pull`` send objects.

::

    [data]
    default_remote = "team"

    [data.remotes]
    team = "s3://bucket/datasets"                                        # just a URL
    local = { url = "/mnt/nas/loopml", auto_mkdir = true }               # URL + fsspec options

``loopml data remote add`` rewrites the ``[data]`` tables of ``loopml.toml`` (and only them:
every other line of the file is kept as it is), then checks that the file still parses to the
same settings before replacing it atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from loopml.config import CONFIG_FILE
from loopml.data.errors import clause
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.exceptions import InvalidConfig, InvalidInput

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOP_LEVEL_DATA = re.compile(r"^\s*[\"']?data[\"']?\s*[.=]")


@dataclass(frozen=True)
class Remote:
    """A named place for data objects: any fsspec URL plus its storage options."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    default: bool = False


def list_remotes(workspace: WorkspaceLike = None) -> list[Remote]:
    with DataRepo.open(workspace) as repo:
        return remotes_of(repo)


def remotes_of(repo: DataRepo) -> list[Remote]:
    table = repo.config.get("remotes", {})
    if not isinstance(table, dict):
        raise InvalidConfig(f"[data.remotes] in loopml.toml must be a table, got {table!r}")
    default = repo.config.get("default_remote")
    found = []
    for name, value in table.items():
        if isinstance(value, str):
            url, options = value, {}
        elif isinstance(value, dict) and isinstance(value.get("url"), str):
            options = {k: v for k, v in value.items() if k != "url"}
            url = value["url"]
        else:
            raise InvalidConfig(
                f"[data.remotes] {name} must be a URL or a table with a url, got {value!r}"
            )
        found.append(Remote(name, url, options, name == default))
    return found


def pick_remote(repo: DataRepo, name: str | None) -> Remote:
    """The remote called ``name``, else the default one, else the only one."""
    remotes = remotes_of(repo)
    names = ", ".join(r.name for r in remotes) or "none"
    if name is not None:
        for remote in remotes:
            if remote.name == name:
                return remote
        raise InvalidConfig(
            f"No data remote named {name!r} (configured: {names}). "
            f"Add it with `loopml data remote add {name} URL`."
        )
    for remote in remotes:
        if remote.default:
            return remote
    if len(remotes) == 1:
        return remotes[0]
    if not remotes:
        raise InvalidConfig(
            "No data remote is configured. Add one with "
            "`loopml data remote add NAME URL --default` (e.g. s3://bucket/datasets)."
        )
    raise InvalidConfig(
        f"Several data remotes are configured ({names}) and none is the default: pass "
        "--remote NAME, or choose one with `loopml data remote default NAME`."
    )


def add_remote(
    name: str,
    url: str,
    *,
    default: bool = False,
    options: dict[str, Any] | None = None,
    workspace: WorkspaceLike = None,
) -> Remote:
    """Add (or replace) the remote ``name`` in ``loopml.toml``."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"Bad remote name {name!r}: use 1-64 letters, digits, '-' or '_'.")
    if not url or url != url.strip():
        raise InvalidInput(f"Bad remote URL {url!r}")

    def change(data: dict[str, Any]) -> None:
        remotes = data.setdefault("remotes", {})
        remotes[name] = {"url": url, **options} if options else url
        if default or len(remotes) == 1:
            data["default_remote"] = name

    _update(workspace, change)
    with DataRepo.open(workspace) as repo:
        return pick_remote(repo, name)


def remove_remote(name: str, *, workspace: WorkspaceLike = None) -> None:
    def change(data: dict[str, Any]) -> None:
        remotes = data.get("remotes", {})
        if name not in remotes:
            raise InvalidConfig(
                f"No data remote named {name!r} (configured: {', '.join(remotes) or 'none'})."
            )
        del remotes[name]
        if data.get("default_remote") == name:
            del data["default_remote"]

    _update(workspace, change)


def set_default_remote(name: str, *, workspace: WorkspaceLike = None) -> None:
    def change(data: dict[str, Any]) -> None:
        if name not in data.get("remotes", {}):
            raise InvalidConfig(
                f"No data remote named {name!r}; add it with `loopml data remote add {name} URL`."
            )
        data["default_remote"] = name

    _update(workspace, change)


# -- loopml.toml ---------------------------------------------------------------------------


def _update(workspace: WorkspaceLike, change: Any) -> None:
    with DataRepo.open(workspace) as repo:
        path = repo.root / CONFIG_FILE
    if not path.is_file():
        raise InvalidConfig(
            f"No {CONFIG_FILE} in {path.parent}; create the workspace with `loopml init`."
        )
    text = path.read_text(encoding="utf-8")
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {clause(exc)}. Fix it first.") from exc
    data = before.get("data", {})
    if not isinstance(data, dict):
        raise InvalidConfig(f"{path}: [data] must be a table")
    change(data)
    new_text = rewrite_data_section(text, data)
    after = tomllib.loads(new_text)
    expected = {**before, "data": data}
    if after != expected:
        raise InvalidConfig(
            f"Could not update the [data] tables of {path} safely (unusual layout); "
            "edit the file by hand."
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(new_text, encoding="utf-8")
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rewrite_data_section(text: str, data: dict[str, Any]) -> str:
    """``text`` without its ``[data]``/``[data.*]`` tables, plus ``data`` rendered at the end."""
    kept: list[str] = []
    in_data = False
    seen_header = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            seen_header = True
            name = header[1].replace('"', "").replace("'", "").replace(" ", "")
            in_data = name == "data" or name.startswith("data.")
        elif not seen_header and _TOP_LEVEL_DATA.match(line):
            raise InvalidConfig(
                f"{CONFIG_FILE} sets data.* keys at the top level; move them under a [data] "
                "table, or edit the file by hand."
            )
        if not in_data:
            kept.append(line)
    body = "".join(kept).rstrip("\n")
    section = render_tables("data", data)
    return f"{body}\n\n{section}" if body else section


def render_tables(name: str, table: dict[str, Any], nested: bool = True) -> str:
    """``[name]`` with ``table``'s values; dict values become ``[name.key]`` tables one level
    down (``[data.remotes]``), inline tables below that (one line per remote)."""
    scalars = {k: v for k, v in table.items() if not (nested and isinstance(v, dict))}
    lines = [f"[{name}]"] + [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    out = "\n".join(lines) + "\n"
    for key, sub in table.items():
        if nested and isinstance(sub, dict):
            out += "\n" + render_tables(f"{name}.{_key(key)}", sub, nested=False)
    return out


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):  # JSON escapes are TOML escapes; TOML also forbids raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise InvalidConfig(f"Can't write {value!r} ({type(value).__name__}) to {CONFIG_FILE}")
