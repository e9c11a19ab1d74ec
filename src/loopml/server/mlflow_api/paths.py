"""Where a path of MLflow's artifacts API lives in loopml, and the file trees under one.

MLflow's client names artifacts by paths under ``mlflow-artifacts:/``:

- ``<experiment_id>/<run_id>/artifacts/<file>``: a run's artifact, kept in tracking's
  ``artifacts`` table (so ``loopml runs show`` lists it and ``ws.runs`` reads it);
- any other path under an experiment id (MLflow 3's logged models upload to
  ``<experiment_id>/models/<model_id>/artifacts/<file>``): kept in ``proxied_artifacts``.

Both name a blob of the workspace's blob store by its digest.

    >>> clean_path("1/abc/./artifacts//model/MLmodel")
    '1/abc/artifacts/model/MLmodel'
    >>> clean_path("1/../etc/passwd")  # doctest: +SKIP
    Traceback (most recent call last):
    ApiError: artifact path '1/../etc/passwd' has a '..' part: paths are relative ...

:func:`list_tree` is the public way for other parts (the registry's MLflow API) to read a
tree: ``list_tree(ws, "1/models/m-0123/artifacts")`` → ``{"MLmodel": (digest, size), ...}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import Connection, select

from loopml.server.errors import ApiError
from loopml.server.mlflow_api.tables import proxied_artifacts
from loopml.tracking.tables import artifacts, runs

if TYPE_CHECKING:
    from loopml.workspace import Workspace

_RUN_PATH = re.compile(r"^(\d+)/([0-9a-f]{32})/artifacts(?:/(.+))?$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def clean_path(raw: str) -> str:
    """A relative artifact path without empty or ``.`` parts; ``..`` (also percent-encoded),
    absolute paths, drive letters, backslashes and NUL are refused with a 400."""
    if not isinstance(raw, str):
        raise ApiError("INVALID_PARAMETER_VALUE", f"artifact path must be a string: {raw!r}")
    if "\\" in raw or "\x00" in raw:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"artifact path {raw!r} has a backslash or NUL: use '/' between folders",
        )
    if raw.startswith("/") or _DRIVE.match(raw):
        raise ApiError(
            "INVALID_PARAMETER_VALUE", f"artifact path {raw!r} is absolute: it must be relative"
        )
    parts = raw.split("/")
    for part in parts:
        decoded = part
        for _ in range(3):  # %2e%2e, %252e%252e, ...
            decoded = unquote(decoded)
        if part == ".":
            continue
        if decoded in {"..", "."} or ".." in decoded.replace("\\", "/").split("/"):
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"artifact path {raw!r} has a '..' part: paths are relative and stay inside "
                "their experiment",
            )
        if "\\" in decoded:
            raise ApiError(
                "INVALID_PARAMETER_VALUE", f"artifact path {raw!r} has an encoded backslash"
            )
    return "/".join(p for p in parts if p not in {"", "."})


@dataclass(frozen=True)
class Place:
    """Where a cleaned path lives: a run's artifact (``run_id`` and ``sub``, the path inside
    the run's artifacts, ``""`` for its root) or a proxied path (``run_id`` None)."""

    path: str
    experiment: str  # the first part: an experiment id ("0" is Default)
    run_id: str | None
    sub: str


def place_of(path: str) -> Place:
    """Where ``path`` (cleaned) lives; a path outside every experiment is a 400."""
    first = path.split("/", 1)[0]
    if not first.isdigit():
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"artifact path {path!r} does not start with an experiment id: this server keeps "
            "artifacts under mlflow-artifacts:/<experiment_id>/...",
        )
    match = _RUN_PATH.match(path)
    if match:
        return Place(path, match.group(1), match.group(2), match.group(3) or "")
    return Place(path, first, None, path)


def _under(column: Any, prefix: str) -> Any:
    return column.startswith(prefix + "/", autoescape=True) if prefix else column.is_not(None)


def tree(conn: Connection, prefix: str) -> dict[str, tuple[str, int]]:
    """Every file under the folder ``prefix`` (cleaned; ``""`` for all), relative to it:
    path → (digest, size). A run's artifacts show under ``<exp>/<run_id>/artifacts/``."""
    out: dict[str, tuple[str, int]] = {}
    place = place_of(prefix) if prefix else None
    if place is not None and place.run_id is not None:
        stmt = select(artifacts.c.path, artifacts.c.digest, artifacts.c.size).where(
            artifacts.c.run_id == place.run_id, _under(artifacts.c.path, place.sub)
        )
        cut = len(place.sub) + 1 if place.sub else 0
        for path, digest, size in conn.execute(stmt):
            out[path[cut:]] = (digest, size)
        return out
    cut = len(prefix) + 1 if prefix else 0
    for path, digest, size in conn.execute(
        select(
            proxied_artifacts.c.path, proxied_artifacts.c.digest, proxied_artifacts.c.size
        ).where(_under(proxied_artifacts.c.path, prefix))
    ):
        out[path[cut:]] = (digest, size)
    parts = prefix.split("/") if prefix else []
    if len(parts) <= 2:  # "", "<exp>" or "<exp>/<run_id>": the runs' artifacts are below
        below: Any = select(
            runs.c.experiment_id, runs.c.id, artifacts.c.path, artifacts.c.digest, artifacts.c.size
        ).join(runs, runs.c.id == artifacts.c.run_id)
        if parts:
            below = below.where(runs.c.experiment_id == int(parts[0]))
        if len(parts) == 2:
            below = below.where(runs.c.id == parts[1])
        for exp_id, run_id, path, digest, size in conn.execute(below):
            full = f"{exp_id}/{run_id}/artifacts/{path}"
            out[full[cut:]] = (digest, size)
    return out


def find_file(conn: Connection, path: str) -> tuple[str, int] | None:
    """The (digest, size) of the file at ``path`` (cleaned), or None."""
    place = place_of(path)
    if place.run_id is not None:
        if not place.sub:
            return None
        row = conn.execute(
            select(artifacts.c.digest, artifacts.c.size).where(
                artifacts.c.run_id == place.run_id, artifacts.c.path == place.sub
            )
        ).first()
    else:
        row = conn.execute(
            select(proxied_artifacts.c.digest, proxied_artifacts.c.size).where(
                proxied_artifacts.c.path == path
            )
        ).first()
    return None if row is None else (row[0], row[1])


def children(files: dict[str, tuple[str, int]], _prefix: str = "") -> list[dict[str, Any]]:
    """The first level of a tree (as :func:`tree` gives it) in MLflow's FileInfo shape:
    ``{"path": name, "is_dir": bool, "file_size": int}`` (no size on folders), sorted."""
    entries: dict[str, dict[str, Any]] = {}
    for rel, (_digest, size) in files.items():
        if not rel:
            continue
        head, sep, _rest = rel.partition("/")
        if sep:
            entries[head] = {"path": head, "is_dir": True}
        elif head not in entries:
            entries[head] = {"path": head, "is_dir": False, "file_size": size}
    return [entries[name] for name in sorted(entries)]


def list_tree(ws: Workspace, prefix: str) -> dict[str, tuple[str, int]]:
    """Every file under ``prefix`` (an artifact path such as ``"1/models/m-0123/artifacts"``
    or ``"1/<run_id>/artifacts/model"``), relative to it: path → (blob digest, size).

    What the registry's MLflow API reads a logged model's files with; the blobs are in
    ``ws.blobs``. An unknown prefix is an empty tree."""
    cleaned = clean_path(prefix) if prefix else ""
    with ws.db.read() as conn:
        return tree(conn, cleaned)
