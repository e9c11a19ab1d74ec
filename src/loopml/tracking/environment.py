"""What a run records about where it ran: interpreter, platform, host, command line, packages,
git state, hardware. Captured once per process (except the git state, which can change).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import getpass
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import psutil


def _run(cmd: list[str], cwd: str | None = None, timeout: float = 10) -> str | None:
    try:
        out = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _requirement(dist: metadata.Distribution, name: str) -> str:
    """A pip requirement line that reinstalls ``dist``: ``name==version``, or where it came
    from for editable, VCS and local installs (PEP 610 ``direct_url.json``)."""
    try:
        raw = dist.read_text("direct_url.json")
        origin = json.loads(raw) if raw else None
    except (OSError, ValueError):
        origin = None
    if not isinstance(origin, dict) or "url" not in origin:
        return f"{name}=={dist.version}"
    url = origin["url"]
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id"):
        return f"{name} @ {vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}"
    if (origin.get("dir_info") or {}).get("editable"):
        return f"{name} @ {url}  # installed editable"
    return f"{name} @ {url}"


@functools.cache
def installed_packages() -> tuple[str, ...]:
    """Sorted requirement lines (``name==version``, or the source of editable, VCS and local
    installs) for every distribution importable here."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = _requirement(dist, name)
    return tuple(seen[key] for key in sorted(seen))


def packages_text() -> str:
    return "\n".join(installed_packages()) + "\n"


def packages_digest() -> str:
    return blake3.blake3(packages_text().encode()).hexdigest()


@functools.cache
def gpus() -> list[dict[str, str]]:
    """GPU model and driver from ``nvidia-smi``; empty when there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    result = []
    for line in (out or "").strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2:
            result.append(
                {"name": parts[0], "driver": parts[1], "memory": parts[2] if len(parts) > 2 else ""}
            )
    return result


@functools.cache
def _static() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "host": socket.gethostname(),
        "user": user,
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": gpus(),
    }


def git_state(cwd: str | None = None) -> dict[str, Any] | None:
    """Commit, branch, dirty flag and diff of the git checkout around ``cwd``; None outside git."""
    if shutil.which("git") is None:
        return None
    top = _run(["git", "rev-parse", "--show-toplevel"], cwd=cwd)
    if top is None:
        return None
    commit = (_run(["git", "rev-parse", "HEAD"], cwd=cwd) or "").strip() or None
    branch = (_run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=cwd) or "").strip() or None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd) or ""
    dirty = bool(status.strip())
    diff = _run(["git", "diff", "HEAD"], cwd=cwd) if dirty and commit else None
    remote = (_run(["git", "config", "--get", "remote.origin.url"], cwd=cwd) or "").strip()
    return {
        "root": top.strip(),
        "commit": commit,
        "branch": branch,
        "dirty": dirty,
        "diff": diff,
        "remote": remote or None,
    }


#: The file that defines the code of the run being started, when loopml knows it better than
#: the call stack does: the pipeline runner sets it to the pipeline's module while it starts
#: the pipeline's tracking run (from the CLI, the scheduler or Python).
_CODE_FILE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "loopml_code_file", default=None
)


@contextlib.contextmanager
def code_file(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within this block, runs record the git state of the checkout around ``path``."""
    token = _CODE_FILE.set(os.fspath(path) if path else None)
    try:
        yield
    finally:
        _CODE_FILE.reset(token)


@functools.cache
def _not_user_code() -> tuple[str, ...]:
    """Folders whose files are not the user's code: loopml itself, the standard library,
    installed packages and console scripts (the environment's ``bin/loopml``)."""
    import sysconfig

    folders = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # loopml/
    keys = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars)
        folders.update(paths[key] for key in keys if key in paths)
    return tuple(os.path.join(os.path.realpath(f), "") for f in folders if f)


def _user_file(filename: str) -> bool:
    if not filename or filename.startswith("<") or not os.path.isfile(filename):
        return False
    real = os.path.realpath(filename)
    return not real.startswith(_not_user_code())


def calling_file() -> str | None:
    """The file of the innermost frame on the stack that is the user's code (not loopml,
    the standard library or an installed package), or None (an interactive session)."""
    frame = sys._getframe(1)
    while frame is not None:
        if _user_file(frame.f_code.co_filename):
            return frame.f_code.co_filename
        frame = frame.f_back  # type: ignore[assignment]
    return None


def source_dir() -> str:
    """The folder whose git checkout is the run's code version: the pipeline's module for a
    pipeline run, else the user's code that started the run (a script, a test, a module it
    imports), else the working directory (a notebook, ``python -c``)."""
    file = _CODE_FILE.get() or calling_file()
    if file:
        return os.path.dirname(os.path.abspath(file))
    return os.getcwd()


def capture(cwd: str | None = None) -> dict[str, Any]:
    """Everything about this process and machine a run records (the git diff included)."""
    env = dict(_static())
    env["argv"] = list(sys.argv)
    env["cwd"] = cwd or os.getcwd()
    env["packages_digest"] = packages_digest()
    env["package_count"] = len(installed_packages())
    env["git"] = git_state(cwd or source_dir())
    return env


def for_run(
    store_packages: Callable[[bytes], object] | None,
) -> tuple[dict[str, Any], str | None, dict[str, str]]:
    """What a run being started records about where it runs: the :func:`capture` record
    (without the git diff), the git diff (None when the checkout is clean or there is none),
    and the run's system tags (``loopml.git.commit``/``branch``/``dirty``, ``loopml.user``,
    ``loopml.host``, ``loopml.source``, the empty ones left out).

    ``store_packages``, when given, is called with the installed-package list, the blob
    that ``packages_digest`` names (the caller stores it once per store, and passes None
    once it has).
    """
    env = capture()
    diff: str | None = None
    tags: dict[str, str] = {}
    git = env.get("git")
    if git:
        diff = git.pop("diff", None)
        tags.update(
            {
                "loopml.git.commit": git.get("commit") or "",
                "loopml.git.branch": git.get("branch") or "",
                "loopml.git.dirty": str(bool(git.get("dirty"))).lower(),
            }
        )
    tags.update(
        {
            "loopml.user": env.get("user") or "",
            "loopml.host": env.get("host") or "",
            "loopml.source": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "",
        }
    )
    # No empty tags: a repository without commits has no commit or branch to show.
    tags = {k: v for k, v in tags.items() if v}
    if store_packages is not None:
        store_packages(packages_text().encode())
    return env, diff, tags
