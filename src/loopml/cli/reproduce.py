"""Reproducing a run from what it recorded: its exact package list, its uncommitted changes,
and the shell commands that re-create the checkout and re-run its command line."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import BlobNotFound, NotFound

if TYPE_CHECKING:
    from loopml.tracking import RunRecord
    from loopml.workspace import Workspace

#: Where a run started in a dirty git checkout keeps ``git diff HEAD``.
GIT_DIFF_ARTIFACT = "loopml/git.diff"


@dataclass(frozen=True)
class Bundle:
    """What :func:`write_bundle` wrote, and the commands that use it."""

    folder: Path
    requirements: Path
    package_count: int
    diff: Path | None
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def script(self, record: RunRecord) -> list[str]:
        """The bundle as shell lines: comments saying what was written, then the commands."""
        python = (record.environment or {}).get("python", {}).get("version", "?")
        lines = [
            f"# Reproduce run {record.id} ({record.name}) of experiment {record.experiment!r}.",
            f"# Wrote {self.requirements} ({self.package_count} packages, Python {python}).",
        ]
        if self.diff is not None:
            lines.append(f"# Wrote {self.diff} (the run's uncommitted changes).")
        lines.extend(f"# Note: {note}" for note in self.notes)
        return lines + self.commands


def write_bundle(ws: Workspace, record: RunRecord, folder: Path) -> Bundle:
    """Write ``requirements.txt`` (and ``git.diff`` when the run has one) into ``folder``."""
    env = record.environment
    if env is None:
        raise NotFound(
            f"Run {record.id} ({record.name}) was recorded without its environment "
            "(log_environment=False), so there is nothing to reproduce it from."
        )
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    requirements, count = _write_requirements(ws, record, env, folder)
    diff = _write_diff(ws, record, folder)
    commands, notes = _commands(env, requirements, diff)
    return Bundle(folder, requirements, count, diff, commands, notes)


def _write_requirements(
    ws: Workspace, record: RunRecord, env: dict[str, Any], folder: Path
) -> tuple[Path, int]:
    digest = env.get("packages_digest")
    if not digest:
        raise NotFound(f"Run {record.id} recorded no package list; cannot pin its packages.")
    try:
        packages = ws.blobs.get_bytes(digest).decode()
    except BlobNotFound as exc:
        raise BlobNotFound(
            f"The package list of run {record.id} (blob {digest}) is missing from the blob "
            f"store {ws.settings.artifacts_url}: was the store moved or pruned?"
        ) from exc
    pins = [line.strip() for line in packages.splitlines() if line.strip()]
    python = env.get("python", {}).get("version", "?")
    path = folder / "requirements.txt"
    path.write_text(
        f"# Packages of loopml run {record.id} ({record.name}), Python {python}.\n"
        + "".join(f"{pin}\n" for pin in pins)
    )
    return path, len(pins)


def _write_diff(ws: Workspace, record: RunRecord, folder: Path) -> Path | None:
    found = [
        a
        for a in ws.runs.list_artifacts(record.id, GIT_DIFF_ARTIFACT)
        if a.path == GIT_DIFF_ARTIFACT
    ]
    if not found:
        return None
    return ws.blobs.get_file(found[0].digest, folder / "git.diff")  # verifies the digest


def _commands(
    env: dict[str, Any], requirements: Path, diff: Path | None
) -> tuple[list[str], list[str]]:
    q = shlex.quote
    commands: list[str] = []
    notes: list[str] = []
    git = env.get("git")
    if not git:
        notes.append("the run was not in a git checkout, so there is no commit to check out.")
    elif not git.get("commit"):
        notes.append("the run's git checkout had no commit yet.")
    else:
        if git.get("root"):
            commands.append(f"cd {q(git['root'])}")
        commands.append(f"git checkout {q(git['commit'])}")
        if git.get("dirty"):
            if diff is not None:
                commands.append(f"git apply {q(str(diff))}")
            else:
                notes.append("the checkout had uncommitted changes, but no git.diff was recorded.")
    commands.append(f"pip install -r {q(str(requirements))}")
    argv = [str(a) for a in env.get("argv") or []]
    if not argv or argv[0] in {"", "-", "-c"}:
        notes.append("the run's command line was not recorded (interactive, stdin or python -c).")
    else:
        python = env.get("python", {}).get("executable") or "python"
        line = shlex.join([python, *argv])
        cwd = env.get("cwd")
        commands.append(f"cd {q(cwd)} && {line}" if cwd else line)
    return commands, notes
