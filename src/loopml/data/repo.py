"""Where data versioning works: the workspace root, its cache, its stat index, its settings.

Opening one reads ``loopml.toml`` through :mod:`loopml.config` (cheap) and nothing else: the
metadata database is opened only by ``gc``, the remote only by ``push``/``pull``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from loopml.config import STATE_DIR, Settings, find_config, load_settings
from loopml.data.cache import Cache
from loopml.data.errors import DataNotFound, LinkNotFollowed
from loopml.data.index import StatIndex
from loopml.data.parallel import threads_for
from loopml.data.pointers import find_pointers, is_pointer, pointer_path, target_path
from loopml.exceptions import InvalidInput

if TYPE_CHECKING:
    from loopml.data.links import Linker
    from loopml.workspace import Workspace

#: A ``workspace=`` argument: a Workspace, a folder with ``loopml.toml`` (or that file), or
#: None for the one found from the current directory. (Settings: loopml's own callers.)
WorkspaceLike: TypeAlias = "Workspace | str | os.PathLike[str] | Settings | None"
INDEX_FILE = "data-index.sqlite"


class DataRepo:
    """The data side of one workspace. Close it (or use ``with``) to release the index."""

    def __init__(self, settings: Settings, jobs: int | None = None) -> None:
        self.settings = settings
        self.root = settings.root
        self._root = os.fspath(self.root)
        self.state_dir = self.root / STATE_DIR
        self.index = StatIndex(self.state_dir / INDEX_FILE)
        self.cache = Cache(self.cache_dir(), self.index, self.key(self.cache_dir()) + "/")
        self.jobs = jobs  # None: chosen per operation (see threads)

    @classmethod
    def open(
        cls, workspace: WorkspaceLike = None, *, near: Path | None = None, jobs: int | None = None
    ) -> DataRepo:
        """The repo of ``workspace`` (a Workspace, a folder or its ``loopml.toml``), else the one
        whose ``loopml.toml`` is nearest above ``near``, else the current directory's."""
        if isinstance(workspace, Settings):
            return cls(workspace, jobs)
        settings = getattr(workspace, "settings", None)  # a Workspace (not imported: start-up)
        if isinstance(settings, Settings):
            return cls(settings, jobs)
        if isinstance(workspace, (str, os.PathLike)):
            return cls(load_settings(workspace), jobs)
        if workspace is not None:
            raise InvalidInput(
                f"workspace= takes a Workspace or the path of a folder with loopml.toml, "
                f"not {type(workspace).__name__}."
            )
        if near is not None:
            folder = Path(os.path.abspath(near))
            config = find_config(folder if folder.is_dir() else folder.parent)
            if config is not None:
                return cls(load_settings(config), jobs)
        return cls(load_settings(), jobs)

    def __enter__(self) -> DataRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.index.close()

    def threads(self, total_bytes: int, count: int) -> int:
        return threads_for(self.jobs, total_bytes, count)

    # -- settings --------------------------------------------------------------------------

    def cache_dir(self) -> Path:
        url = self.settings.artifacts_url
        if "://" not in url:  # a local blob folder: data versions share it
            return Path(url)
        return self.state_dir / "cache"

    def linker(self, link: str | list[str] | tuple[str, ...] | None = None) -> Linker:
        """The link strategies: ``link`` (``--link``), else ``[data] link``, else
        reflink → hardlink → copy (for ``add`` as for checkouts; without hardlinks as root)."""
        from loopml.data.links import Linker, parse_order

        if link is not None:
            return Linker(parse_order(link, "--link"))
        return Linker(self.settings.data.link)  # checked when loopml.toml was loaded

    # -- paths -----------------------------------------------------------------------------

    def key(self, path: Path | str) -> str:
        """The stat-index key of a path: relative to the root (posix), else absolute."""
        text = os.fspath(path)
        if text.startswith(self._root + os.sep):
            rel = text[len(self._root) + 1 :]
            return rel.replace(os.sep, "/") if os.sep != "/" else rel
        return text

    def target(self, path: str | os.PathLike[str]) -> Path:
        """The absolute data path for a user's path (or its pointer's), checked to be ours.

        A relative path is relative to the current directory, or else to the root. Its folders
        are resolved (a link among them must stay inside the workspace); its own name is not.
        """
        given = self._given(path)
        if given == self.root:
            raise InvalidInput(
                f"{path} is the workspace root ({self.root}), which can't be versioned itself; "
                "version a folder or file inside it, e.g. `loopml data add data/raw`."
            )
        if is_pointer(given):
            given = target_path(given)
        # Resolve the folder (symlinks such as /tmp → /private/tmp) but keep the name itself.
        target = given.parent.resolve() / given.name
        if target == self.root or self.root not in target.parents:
            link = _link_between(self.root, given)
            if link is not None:
                raise LinkNotFollowed(
                    f"{path} is reached through the symbolic link {link} → "
                    f"{os.path.realpath(link)}, which leads outside the workspace at "
                    f"{self.root}; only data inside the workspace can be versioned. Copy the "
                    "data into the workspace in place of the link."
                )
            raise InvalidInput(
                f"{target} is not inside the workspace at {self.root}; version data inside it."
            )
        for inner in (self.state_dir, self.cache_dir()):
            if target == inner or inner in target.parents:
                raise InvalidInput(
                    f"{path} is loopml's own state ({inner}); it can't be versioned."
                )
        return target

    def _given(self, path: str | os.PathLike[str]) -> Path:
        """A user's path made absolute and normalized (``..`` removed), nothing resolved."""
        if not os.fspath(path):
            raise InvalidInput(
                "The path is empty: name a file or folder inside the workspace "
                f"({self.root}), e.g. `data/raw`."
            )
        given = Path(os.path.abspath(path))
        if not Path(path).is_absolute() and not (given == self.root or self.root in given.parents):
            given = Path(os.path.abspath(self.root / path))  # relative to a workspace named
        return given

    def targets(self, paths: list[str] | tuple[str, ...] | None) -> list[Path]:
        """Versioned data named by ``paths`` (data paths, pointer files, or folders holding
        pointer files); every versioned path in the workspace when ``paths`` is empty (or
        names the workspace root)."""
        if not paths:
            return [target_path(p) for p in sorted(find_pointers(self.root))]
        found: list[Path] = []
        for path in paths:
            if self._given(path) == self.root:
                found.extend(target_path(p) for p in sorted(find_pointers(self.root)))
                continue
            target = self.target(path)
            if pointer_path(target).is_file():
                found.append(target)
                continue
            inner = sorted(find_pointers(target)) if target.is_dir() else []
            if not inner:
                raise DataNotFound(
                    f"{path} is not versioned: there is no pointer file {pointer_path(target)}"
                    + (
                        ""
                        if not target.exists()
                        else f". Version it with `loopml data add {path}`."
                    )
                )
            found.extend(target_path(p) for p in inner)
        return list(dict.fromkeys(found))

    def display(self, path: Path) -> str:
        """A path as the user sees it: relative to the current directory when below it."""
        try:
            return os.path.relpath(path)
        except ValueError:
            return os.fspath(path)


def _link_between(root: Path, path: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` down to ``path`` (``path`` itself
    included), if ``path`` is below ``root`` as written."""
    if root not in path.parents:
        return None
    for step in [*reversed(path.parents), path]:
        if root in step.parents and step.is_symlink():
            return step
    return None
