"""Data remotes: named fsspec URLs in ``loopml.toml``, where ``push`` and ``pull`` send objects.

::

    [data]
    default_remote = "team"

    [data.remotes]
    team = "s3://bucket/datasets"                                        # just a URL
    local = { url = "/mnt/nas/loopml", auto_mkdir = true }               # URL + fsspec options

``loopml data remote add`` edits ``loopml.toml`` through tomlkit, so every comment and line
it does not change is kept as it is; it checks that the new file holds valid settings, and the
same tables outside ``[data]``, before replacing it atomically.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.config import CONFIG_FILE, parse_config
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.exceptions import InvalidConfig, InvalidInput
from loopml.wording import clause

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
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
    """The configured remotes; a relative folder (``../team-remote``) is relative to the
    workspace, as written in its loopml.toml, wherever the command runs from."""
    data = repo.settings.data  # checked when loopml.toml was loaded
    return [
        Remote(
            name,
            _anchored(str(spec["url"]), repo.root),
            {k: v for k, v in spec.items() if k != "url"},
            name == data.default_remote,
        )
        for name, spec in data.remotes.items()
    ]


def _anchored(url: str, root: Path) -> str:
    if "://" in url or os.path.isabs(os.path.expanduser(url)):
        return url
    return os.path.normpath(root / url)


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

    def change(data: MutableMapping[str, Any]) -> None:
        import tomlkit

        if "remotes" not in data:  # a new [data.remotes] table, followed by a blank line
            data["remotes"] = tomlkit.parse("[data.remotes]\n\n")["data"]["remotes"]
        remotes = data["remotes"]
        if options:
            spec = tomlkit.inline_table()  # one line per remote
            spec.update({"url": url, **options})
            _put(remotes, name, spec)
        else:
            _put(remotes, name, url)
        if default or len(remotes) == 1:
            _put(data, "default_remote", name)

    _update(workspace, change)
    with DataRepo.open(workspace) as repo:
        return pick_remote(repo, name)


def remove_remote(name: str, *, workspace: WorkspaceLike = None) -> None:
    def change(data: MutableMapping[str, Any]) -> None:
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
    def change(data: MutableMapping[str, Any]) -> None:
        if name not in data.get("remotes", {}):
            raise InvalidConfig(
                f"No data remote named {name!r}; add it with `loopml data remote add {name} URL`."
            )
        _put(data, "default_remote", name)

    _update(workspace, change)


# -- loopml.toml ---------------------------------------------------------------------------


def _update(workspace: WorkspaceLike, change: Callable[[MutableMapping[str, Any]], None]) -> None:
    """Apply ``change`` to the ``[data]`` table of ``loopml.toml``, keeping the rest as it is."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    with DataRepo.open(workspace) as repo:  # the current file must hold valid settings
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
    _refuse_top_level_data(text)
    if "data" not in before:
        text = f"{text.rstrip()}\n\n[data]\n" if text.strip() else "[data]\n"
    try:
        doc = tomlkit.parse(text)
        change(doc["data"])
        new_text = tomlkit.dumps(doc).rstrip("\n") + "\n"
    except TOMLKitError as exc:
        raise InvalidConfig(f"Can't write that to {path}: {exc}") from exc
    parse_config(new_text, path, environ={})  # the new content, on its own, must be valid
    after = tomllib.loads(new_text)
    if {k: v for k, v in after.items() if k != "data"} != {
        k: v for k, v in before.items() if k != "data"
    }:
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


def _put(table: Any, key: str, value: Any) -> None:
    """``table[key] = value``, a new key placed right after the table's last key rather than
    after the comments that end the table (tomlkit counts a comment above the next table's
    header as the end of this one)."""
    from tomlkit.items import AoT, Table

    if key in table:
        table[key] = value
        return
    container = table.value
    keys = [k.key for k, v in container.body if k is not None and not isinstance(v, Table | AoT)]
    if keys:
        container._insert_after(keys[-1], key, value)
    else:
        table[key] = value


def _refuse_top_level_data(text: str) -> None:
    """``data.link = …`` above every table header: refused, as tomlkit would edit it in place
    into a layout that is easy to misread."""
    for line in text.splitlines():
        if _HEADER.match(line):
            return
        if _TOP_LEVEL_DATA.match(line):
            raise InvalidConfig(
                f"{CONFIG_FILE} sets data.* keys at the top level; move them under a [data] "
                "table, or edit the file by hand."
            )
