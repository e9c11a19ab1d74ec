"""The data pages: the versioned paths of the workspace (its ``*.loopml`` pointer files) and
each path's versions through git history (one per commit that changed its pointer).

Data versions are pointer files in git, not rows in the metadata store, so these pages read
the server's workspace folder; a server whose workspace is not a git checkout shows each
path's current version only.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.server.ui.render import PageNotFound, Renderer, page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext

#: Commits of a pointer's history shown.
MAX_VERSIONS = 100


def parse_log(text: str) -> list[dict[str, Any]]:
    """``git log --format=%H%x1f%aI%x1f%an%x1f%s`` lines → commits.

    >>> parse_log("abc\\x1f2026-11-01T10:00:00+01:00\\x1fAda\\x1fnew data\\n")[0]["author"]
    'Ada'
    """
    out = []
    for line in text.splitlines():
        parts = line.split("\x1f")
        if len(parts) != 4:
            continue
        commit, date, author, subject = parts
        out.append(
            {
                "commit": commit,
                "at": datetime.fromisoformat(date),
                "author": author,
                "subject": subject,
            }
        )
    return out


class DataPages:
    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer

    def versioned(self) -> list[dict[str, Any]]:
        """Each versioned path under the workspace with its current pointer."""
        from loopml.data.pointers import find_pointers, read_pointer, target_path

        root = Path(self.ws.root)
        found = []
        for pointer in find_pointers(root):
            entry: dict[str, Any] = {
                "path": target_path(pointer).relative_to(root).as_posix(),
                "pointer": pointer,
            }
            try:
                entry["current"] = read_pointer(pointer)
            except Exception as exc:  # a broken pointer file is shown, not fatal
                entry["error"] = str(exc)
            found.append(entry)
        return found

    def history(self, pointer: Path) -> tuple[list[dict[str, Any]], str | None]:
        """(versions newest first, a note when git history can't be read)."""
        from loopml.data.git import pointer_at_rev

        try:
            done = subprocess.run(
                [
                    "git",
                    "log",
                    f"-n{MAX_VERSIONS}",
                    "--format=%H%x1f%aI%x1f%an%x1f%s",
                    "--",
                    pointer.name,
                ],
                cwd=pointer.parent,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            return [], f"git history can't be read: {exc}"
        if done.returncode != 0:
            return [], "the workspace is not a git checkout: only the current version is known"
        versions = []
        for commit in parse_log(done.stdout):
            try:
                commit["pointer"] = pointer_at_rev(pointer, commit["commit"])
            except Exception:  # deleted in that commit, or not a valid pointer then
                commit["pointer"] = None
            versions.append(commit)
        return versions, None

    async def data(self, request: Request) -> Response:
        return self.renderer.page(
            "data.html", nav="data", paths=await self.ctx.call(self.versioned)
        )

    async def versions(self, request: Request) -> Response:
        path = request.query_params.get("path", "")
        # Only a path the listing shows: never a file the query names.
        entry = next((e for e in await self.ctx.call(self.versioned) if e["path"] == path), None)
        if entry is None:
            raise PageNotFound(f"{path!r} is not a versioned path of this workspace.")
        versions, note = await self.ctx.call(self.history, entry["pointer"])
        return self.renderer.page(
            "data_versions.html", nav="data", entry=entry, versions=versions, note=note
        )

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        wrap = page(self.renderer)
        return [
            Route("/data", wrap(self.data), methods=["GET"]),
            Route("/data/versions", wrap(self.versions), methods=["GET"]),
        ]
