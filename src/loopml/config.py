"""Settings: ``loopml.toml`` (found by walking up from the current directory) plus
``LOOPML_*`` environment variables, which win.

A workspace folder looks like::

    project/
      loopml.toml          # committed
      .loopml/loopml.db    # metadata (SQLite, WAL)
      .loopml/blobs/       # content-addressed blobs

``loopml.toml``::

    [store]
    url = "sqlite:///.loopml/loopml.db"   # relative paths are relative to this file
    [artifacts]
    url = ".loopml/blobs"                 # any fsspec URL: s3://bucket/prefix, memory://x
    [tracking]
    flush_interval = 1.0                  # seconds between background metric flushes
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidConfig, WorkspaceNotFound

CONFIG_FILE = "loopml.toml"
STATE_DIR = ".loopml"
DEFAULT_STORE = f"sqlite:///{STATE_DIR}/loopml.db"
DEFAULT_ARTIFACTS = f"{STATE_DIR}/blobs"

DEFAULT_TOML = f"""\
# loopml workspace. Relative paths are relative to this file.
# LOOPML_STORE_URL and LOOPML_ARTIFACTS_URL override the two URLs below.

[store]
# Metadata database: SQLite by default; postgresql+psycopg://user@host/db for teams.
url = "{DEFAULT_STORE}"

[artifacts]
# Content-addressed blob store: a folder by default; s3://bucket/prefix for teams.
url = "{DEFAULT_ARTIFACTS}"

[tracking]
# Seconds between background flushes of buffered metrics (at most this much is lost on SIGKILL).
flush_interval = 1.0
"""


@dataclass(frozen=True)
class Settings:
    """Where a workspace keeps its facts and bytes, and how tracking behaves."""

    root: Path
    store_url: str
    artifacts_url: str
    flush_interval: float = 1.0
    flush_max_points: int = 50_000
    capture_environment: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def find_config(start: Path | None = None) -> Path | None:
    """Return the nearest ``loopml.toml`` at or above ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _resolve_store_url(url: str, root: Path) -> str:
    # sqlite:///relative/path is relative to the workspace root, not to the cwd.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith(("file:", ":memory:")):
            return prefix + str((root / rest).resolve())
    return url


def _resolve_artifacts_url(url: str, root: Path) -> str:
    if "://" in url:
        if url.startswith("file://"):
            return str(Path(url[len("file://") :]).resolve())
        return url
    path = Path(url)
    return str(path if path.is_absolute() else (root / path).resolve())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}. Fix the file or delete it.") from exc
    except UnicodeDecodeError as exc:
        raise InvalidConfig(
            f"{path} is not UTF-8 text (byte {exc.start} is not valid UTF-8): TOML files must "
            "be UTF-8. Save it as UTF-8 and try again."
        ) from exc
    except OSError as exc:
        raise InvalidConfig(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InvalidConfig(f"{path}: [{name}] must be a table, got {value!r}")
    return value


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    store_url: str | None = None,
    artifacts_url: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Settings for the workspace at ``path`` (a folder or a ``loopml.toml``), or discovered.

    Explicit arguments beat ``LOOPML_STORE_URL`` / ``LOOPML_ARTIFACTS_URL``, which beat the file.
    """
    env = os.environ if environ is None else environ
    store_url = store_url or env.get("LOOPML_STORE_URL") or None
    artifacts_url = artifacts_url or env.get("LOOPML_ARTIFACTS_URL") or None

    config_path: Path | None
    if path is not None:
        p = Path(path).expanduser()
        config_path = p if p.name == CONFIG_FILE else p / CONFIG_FILE
        if not config_path.is_file():
            if store_url is None and not p.is_dir():
                raise WorkspaceNotFound(
                    f"No workspace at {p}: the folder does not exist. "
                    f"Create one with `loopml init {p}`."
                )
            if store_url is None:
                raise WorkspaceNotFound(
                    f"No {CONFIG_FILE} in {p}. Create a workspace there with `loopml init {p}`."
                )
            config_path = None
        root = (config_path.parent if config_path else p).resolve()
    else:
        config_path = find_config()
        if config_path is None and store_url is None:
            raise WorkspaceNotFound(
                f"No {CONFIG_FILE} in {Path.cwd()} or any folder above it, and LOOPML_STORE_URL "
                "is not set. Run `loopml init` to create a workspace here."
            )
        root = config_path.parent.resolve() if config_path else Path.cwd().resolve()

    data = _read_toml(config_path) if config_path else {}
    store = _section(data, "store", config_path or root)
    artifacts = _section(data, "artifacts", config_path or root)
    tracking = _section(data, "tracking", config_path or root)

    flush_interval = tracking.get("flush_interval", 1.0)
    if not isinstance(flush_interval, int | float) or flush_interval <= 0:
        raise InvalidConfig(
            f"[tracking] flush_interval must be a positive number of seconds, got {flush_interval!r}"
        )
    env_interval = env.get("LOOPML_FLUSH_INTERVAL")
    if env_interval:
        try:
            flush_interval = float(env_interval)
        except ValueError as exc:
            raise InvalidConfig(
                f"LOOPML_FLUSH_INTERVAL must be a number of seconds, got {env_interval!r}"
            ) from exc
    capture = tracking.get("capture_environment", True)

    final_store = store_url or store.get("url") or DEFAULT_STORE
    final_artifacts = artifacts_url or artifacts.get("url") or DEFAULT_ARTIFACTS
    if not isinstance(final_store, str) or not isinstance(final_artifacts, str):
        raise InvalidConfig("[store] url and [artifacts] url must be strings")
    return Settings(
        root=root,
        store_url=_resolve_store_url(final_store, root),
        artifacts_url=_resolve_artifacts_url(final_artifacts, root),
        flush_interval=float(flush_interval),
        capture_environment=bool(capture),
        extra={k: v for k, v in data.items() if k not in {"store", "artifacts", "tracking"}},
    )


def ensure_state_dir(folder: Path) -> Path:
    """Create ``folder/.loopml/`` with the ``.gitignore`` that keeps it out of git."""
    state = folder / STATE_DIR
    state.mkdir(exist_ok=True)
    gitignore = state / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    return state


def write_default_config(folder: Path) -> Path:
    """Create ``loopml.toml`` and ``.loopml/`` in ``folder``; keep an existing file as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    ensure_state_dir(folder)
    path = folder / CONFIG_FILE
    if not path.exists():
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(DEFAULT_TOML)
        os.replace(tmp, path)
    return path
