"""``loopml data``: version datasets with pointer files in git and bytes in the cache.

Start-up matters here (``loopml data status`` runs in prompts and CI loops), so this module
imports click and :mod:`loopml.data`, which reads ``loopml.toml`` and the stat index with the
standard library; fsspec loads only for push/pull, the metadata database only for gc.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from loopml.cli.context import CliError, WorkspaceState
from loopml.exceptions import LoopmlError
from loopml.wording import counted as _count

F = TypeVar("F", bound=Callable[..., Any])

LINK_HELP = (
    "Link strategies to try in order, comma-separated, from reflink, hardlink, copy "
    '(default: [data] link in loopml.toml, else "reflink,hardlink,copy", or "reflink,copy" '
    "when running as root: read-only links don't stop root from editing the cache)."
)


NO_DATA = "No versioned data here. Version some with `loopml data add PATH`."


class DataGroup(click.Group):
    """Shows a :class:`LoopmlError` as one ``error:`` line even when run on its own, and an
    operating-system error (disk full, permission denied) the same way."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LoopmlError as exc:
            raise CliError.from_error(exc) from exc
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise CliError(f"{exc.strerror or exc}{where}") from exc


def _workspace() -> str | None:
    state = click.get_current_context().find_object(WorkspaceState)
    location = state.location if state is not None else None
    # A metadata-store URL names no folder; data versioning then works from the paths given.
    return location if location and "://" not in location else None


def _note(message: str) -> None:
    """A line for the user that is not the command's result (stderr, like warnings)."""
    click.echo(f"note: {message}", err=True)


def _in_workspace(path: Any) -> str:
    """A data path relative to the root of the workspace that holds it (posix), as the JSON
    output names paths whatever the current directory."""
    from pathlib import Path

    from loopml.config import CONFIG_FILE

    path = Path(path)
    for folder in path.parents:
        if (folder / CONFIG_FILE).is_file():
            return path.relative_to(folder).as_posix()
    return str(path)


def _size(n: int) -> str:
    """Sizes as every command prints them (``0 bytes``, ``1.0 kB``, ``2.1 GB``)."""
    from loopml.cli.render import format_size

    return format_size(n)


def _jobs_option(f: F) -> F:
    return click.option(
        "--jobs", "-j", type=click.IntRange(1, 256), help="Parallel threads (default: automatic)."
    )(f)


def _json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout."
    )(f)


@click.group(cls=DataGroup)
def data() -> None:
    """Version datasets: pointer files in git, bytes in the cache and on remotes.

    \b
      loopml data add data/raw          # writes data/raw.loopml; commit it
      loopml data status                # what changed since the pointer files
      loopml data checkout --rev v1.0   # restore the data of a git revision
      loopml data push / pull           # share versions through a remote
      loopml data verify                # hash every cached object again
    """


@data.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--link", metavar="ORDER", help=LINK_HELP)
@_jobs_option
def add(paths: tuple[str, ...], link: str | None, jobs: int | None) -> None:
    """Version files or folders: cache their bytes, write PATH.loopml, git-ignore PATH."""
    import shlex

    from loopml.cli.progress import progress_bar
    from loopml.data.versions import add as add_version

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    to_commit: dict[str, None] = {}  # the pointer files, then the .gitignore files beside them
    for path in paths:
        with progress_bar(f"Adding {path}") as tracker:
            version = add_version(
                path, link=link, workspace=_workspace(), jobs=jobs, progress=tracker, warn=warn
            )
        click.echo(
            f"Added {path}: {_count(version.files, 'file')}, {_size(version.size)}, "
            f"version {version.hash[:12]} → {path.rstrip('/')}.loopml"
        )
        to_commit[f"{path.rstrip('/')}.loopml"] = None
    for path in paths:
        gitignore = os.path.join(os.path.dirname(path.rstrip("/")), ".gitignore")
        to_commit[gitignore] = None
    click.echo(f"Commit the pointer files: git add {shlex.join(to_commit)}")


@data.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--verbose", "-v", is_flag=True, help="Also say how many files were hashed.")
@_json_option
@_jobs_option
def status(paths: tuple[str, ...], verbose: bool, as_json: bool, jobs: int | None) -> None:
    """Show files added, modified or deleted since the pointer files (default: all)."""
    from loopml.data.changes import status as data_status

    results = []
    for path in paths or (None,):
        results.extend(data_status(path, workspace=_workspace(), jobs=jobs))
    if as_json:
        from loopml.cli.render import emit_json

        rows = [
            {
                "path": _in_workspace(s.path),
                "hash": s.hash,
                "clean": s.clean,
                "added": list(s.added),
                "modified": list(s.modified),
                "deleted": list(s.deleted),
                "note": s.note,
                "files": s.files,
                "hashed": s.hashed,
            }
            for s in results
        ]
        emit_json(rows)
        return
    if not results:
        click.echo(NO_DATA)
    for s in results:
        name = os.path.relpath(s.path)
        hashed = f" (hashed {s.hashed} of {_count(s.files, 'file')})" if verbose else ""
        if s.clean:
            click.echo(f"{name}: up to date{hashed}")
            continue
        counts = f"{len(s.modified)} modified, {len(s.added)} added, {len(s.deleted)} deleted"
        click.echo(f"{name}: {s.note or counts}{hashed}")
        for label, rels, color in (
            ("modified", s.modified, "yellow"),
            ("added", s.added, "green"),
            ("deleted", s.deleted, "red"),
        ):
            for rel in rels:
                shown = f"{name}/{rel}" if rel else name
                click.echo(click.style(f"  {label + ':':<10}{shown}", fg=color))


@data.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rev", metavar="GITREV", help="Restore the version of this git revision.")
@click.option("--link", metavar="ORDER", help=LINK_HELP)
@click.option("--force", "-f", is_flag=True, help="Discard changes that are in no version.")
@click.option(
    "--verify",
    is_flag=True,
    help="Hash every object served and every file left in place, instead of trusting the "
    "stats recorded when they were hashed (finds bit rot; reads every byte).",
)
@_jobs_option
def checkout(
    paths: tuple[str, ...],
    rev: str | None,
    link: str | None,
    force: bool,
    verify: bool,
    jobs: int | None,
) -> None:
    """Restore data from the cache to match its pointer files (default: all).

    \b
    An object (or a file left in place) whose inode, size and mtime are those recorded when
    it was hashed is trusted without reading it; any other is hashed and refused if its
    bytes don't match. --verify hashes everything.
    """
    from loopml.cli.progress import progress_bar
    from loopml.data.restore import checkout as data_checkout

    for path in paths or (None,):
        with progress_bar(f"Checking out {path or 'data'}") as tracker:
            results = data_checkout(
                path,
                rev=rev,
                link=link,
                force=force,
                verify=verify,
                workspace=_workspace(),
                jobs=jobs,
                progress=tracker,
                warn=_note,
            )
        for r in results:
            how = ", ".join(f"{n} by {s}" for s, n in sorted(r.strategies.items()))
            click.echo(
                f"{os.path.relpath(r.path)}: {r.written} written{f' ({how})' if how else ''}, "
                f"{r.removed} removed, {r.unchanged} unchanged (version {r.hash[:12]})"
            )


@data.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_jobs_option
def unprotect(paths: tuple[str, ...], jobs: int | None) -> None:
    """Turn read-only linked files into writable copies, so they can be edited in place."""
    from loopml.data.restore import unprotect as data_unprotect

    for path in paths:
        n = data_unprotect(path, workspace=_workspace(), jobs=jobs)
        click.echo(f"{path}: {_count(n, 'file')} made writable copies")


@data.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--remote", "-r", metavar="NAME", help="Remote to push to (default: the default).")
@click.option(
    "--verify",
    is_flag=True,
    help="Hash every local object, and download and hash every object the remote already "
    "has, replacing a remote copy that fails (reads every byte on both sides).",
)
@_json_option
@_jobs_option
def push(
    paths: tuple[str, ...], remote: str | None, verify: bool, as_json: bool, jobs: int | None
) -> None:
    """Upload the cached objects of versions (default: all) that the remote lacks.

    \b
    Exits with 1 when an object a version needs is not in the local cache (so it could not
    be pushed); the others are pushed.
    """
    from loopml.cli.progress import progress_bar
    from loopml.data.transfer import push as data_push

    results = []
    for path in paths or (None,):
        with progress_bar(f"Pushing {path or 'data'}") as tracker:
            r = data_push(
                path,
                remote=remote,
                verify=verify,
                jobs=jobs,
                workspace=_workspace(),
                progress=tracker,
            )
        results.append(r)
        if as_json:
            continue
        checked = " (verified)" if verify else ""
        not_cached = f"; {len(r.missing)} not in the local cache" if r.missing else ""
        click.echo(
            f"Pushed {_count(r.transferred, 'object')} ({_size(r.bytes)}) to {r.remote}; "
            f"{r.present} already there{checked}{not_cached}."
        )
        if r.replaced:
            click.echo(
                f"Replaced {_count(len(r.replaced), 'object')} whose copy on {r.remote} was "
                f"corrupt: {', '.join(r.replaced[:5])}"
                + (f" and {len(r.replaced) - 5} more" if len(r.replaced) > 5 else "")
            )
    if as_json:
        from loopml.cli.render import emit_json

        emit_json(
            [
                {
                    "remote": r.remote,
                    "url": r.url,
                    "pushed": r.transferred,
                    "already_there": r.present,
                    "bytes": r.bytes,
                    "replaced": list(r.replaced),
                    "missing": [
                        {"object": d, "files": f}
                        for d, f in zip(r.missing, r.missing_files, strict=True)
                    ],
                }
                for r in results
            ]
        )
    missing = [(d, f) for r in results for d, f in zip(r.missing, r.missing_files, strict=True)]
    if missing:
        versions = list(dict.fromkeys(v for r in results for v in r.missing_versions))
        shown = ", ".join(f"{f} ({d[:12]}…)" for d, f in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        again = " ".join(os.path.relpath(v) for v in versions) or "PATH"
        click.echo(
            f"error: {_count(len(missing), 'object')} could not be pushed: "
            f"{'it is' if len(missing) == 1 else 'they are'} not in the local cache: "
            f"{shown}{more}. Add the files again if you still have them (`loopml data add "
            f"{again}`), or pull them from a remote that has them (`loopml data pull -r NAME "
            f"{again}`), then push again; the other objects were pushed.",
            err=True,
        )
        raise SystemExit(1)


@data.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--remote", "-r", metavar="NAME", help="Remote to pull from (default: the default).")
@click.option("--rev", metavar="GITREV", help="Pull the version of this git revision.")
@click.option("--no-checkout", is_flag=True, help="Only fill the cache; leave the files alone.")
@click.option("--link", metavar="ORDER", help=LINK_HELP)
@click.option("--force", "-f", is_flag=True, help="Discard changes that are in no version.")
@_jobs_option
def pull(
    paths: tuple[str, ...],
    remote: str | None,
    rev: str | None,
    no_checkout: bool,
    link: str | None,
    force: bool,
    jobs: int | None,
) -> None:
    """Download missing objects of versions (default: all), verify them, check them out."""
    from loopml.cli.progress import progress_bar
    from loopml.data.transfer import pull as data_pull

    for path in paths or (None,):
        with progress_bar(f"Pulling {path or 'data'}") as tracker:
            r = data_pull(
                path,
                remote=remote,
                rev=rev,
                checkout=not no_checkout,
                link=link,
                force=force,
                jobs=jobs,
                workspace=_workspace(),
                progress=tracker,
                warn=_note,
            )
        click.echo(
            f"Pulled {_count(r.transferred, 'object')} ({_size(r.bytes)}) from {r.remote}; "
            f"{r.present} already cached."
        )


@data.group(cls=DataGroup)
def remote() -> None:
    """Manage data remotes (stored under [data.remotes] in loopml.toml)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--default", "-d", "make_default", is_flag=True, help="Make it the default.")
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec storage option, e.g. -o endpoint_url=http://127.0.0.1:9000 (repeatable).",
)
def remote_add(name: str, url: str, make_default: bool, options: tuple[str, ...]) -> None:
    """Add (or replace) the remote NAME at URL (any fsspec URL or a folder)."""
    from loopml.data.remotes import add_remote

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--option takes KEY=VALUE, got {item!r}")
        parsed[key] = {"true": True, "false": False}.get(value.lower(), value)
    r = add_remote(name, url, default=make_default, options=parsed, workspace=_workspace())
    click.echo(f"Remote {r.name} → {r.url}{' (default)' if r.default else ''}")


@remote.command("list")
@_json_option
def remote_list(as_json: bool) -> None:
    """List the data remotes."""
    from loopml.data.remotes import list_remotes

    remotes = list_remotes(workspace=_workspace())
    if as_json:
        from loopml.cli.render import emit_json

        rows = [
            {"name": r.name, "url": r.url, "default": r.default, "options": r.options}
            for r in remotes
        ]
        emit_json(rows)
        return
    if not remotes:
        click.echo("No data remotes. Add one with `loopml data remote add NAME URL --default`.")
    for r in remotes:
        suffix = "\t(default)" if r.default else ""
        click.echo(f"{r.name}\t{r.url}{suffix}")


@remote.command("remove")
@click.argument("name")
def remote_remove(name: str) -> None:
    """Remove the remote NAME from loopml.toml (its objects stay where they are)."""
    from loopml.data.remotes import remove_remote

    remove_remote(name, workspace=_workspace())
    click.echo(f"Removed remote {name}.")


@remote.command("default")
@click.argument("name")
def remote_default(name: str) -> None:
    """Make NAME the remote push and pull use by default."""
    from loopml.data.remotes import set_default_remote

    set_default_remote(name, workspace=_workspace())
    click.echo(f"Default remote: {name}")


@data.command()
@click.option("--force", "-f", is_flag=True, help="Delete the objects (default: only list them).")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep objects written this recently (a writer may not have recorded them yet).",
)
@click.option(
    "--workspace-only",
    is_flag=True,
    help="Keep only what the pointer files in the workspace need; read no git revision.",
)
@click.option(
    "--all-commits",
    is_flag=True,
    help="Also keep what every commit needs (reachable from a ref or a reflog), not only "
    "HEAD and the commits of branches and tags.",
)
@_json_option
def gc(force: bool, grace: float, workspace_only: bool, all_commits: bool, as_json: bool) -> None:
    """Remove cache objects nothing references (dry run by default).

    \b
    Kept: what the pointer files need in the workspace and in git, at HEAD and at the
    commit of every branch, tag, remote branch and the stash (--all-commits: in every
    commit; --workspace-only: no git revision); blobs the metadata database records (run
    artifacts, registered models); objects younger than --grace. Push versions that only
    older commits name to a remote before collecting, or use --all-commits.
    """
    from loopml.data.collect import gc as data_gc

    if workspace_only and all_commits:
        raise CliError("--workspace-only and --all-commits contradict each other; choose one.")
    r = data_gc(
        force=force,
        grace_s=grace,
        workspace_only=workspace_only,
        all_commits=all_commits,
        workspace=_workspace(),
    )
    scope = _git_scope(r.git)
    if as_json:
        from loopml.cli.render import emit_json

        rows = {
            "removed" if force else "would_remove": list(r.removed),
            "bytes": r.bytes,
            "kept": r.kept,
            "kept_workspace": r.kept_workspace,
            "kept_git": r.kept_git,
            "kept_metadata": r.kept_metadata,
            "recent": r.recent,
            "dry_run": r.dry_run,
            "git": scope,
            "notes": list(r.notes),
        }
        emit_json(rows)
        return
    verb = "removed" if force else "would remove"
    for digest, size in zip(r.removed, r.sizes, strict=True):
        click.echo(f"{verb} {digest} ({_size(size)})")
    what = f"{_count(len(r.removed), 'object')} ({_size(r.bytes)})"
    why = f"pointer file in the workspace, {scope}, or the metadata database"
    if r.removed:
        click.echo(
            f"{'Removed' if force else 'Would remove'} {what} from {r.cache}: referenced by "
            f"no {why}."
        )
    else:
        click.echo(f"Nothing to remove from {r.cache} (pointer files read {scope}).")
    click.echo(
        f"Kept {_count(r.kept, 'object')}: {r.kept_workspace} for the workspace's pointer files, "
        f"{r.kept_git} only for git's, {r.kept_metadata} for the metadata database; "
        f"{r.recent} too recent to judge (--grace)."
    )
    for note in r.notes:
        click.echo(f"note: {note}.", err=True)
    if not force and r.removed:
        click.echo(f"Run `loopml data gc --force` to remove {what}.")


def _git_scope(history: Any) -> str:
    """Which git revisions gc read, in words: ``in git at HEAD, 2 branches and 1 tag (3
    commits)``."""
    if history is None:
        return "in git (not read: --workspace-only)"
    if history.note:
        return f"in git ({history.note})"
    parts = ["HEAD" if kind == "HEAD" else _count(n, kind) for kind, n in history.refs.items()]
    refs = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)
    commits = _count(history.commits, "commit")
    if history.all_commits:
        return f"in any git commit reachable from {refs or 'no ref'} ({commits})"
    return f"in git at {refs or 'no revision'} ({commits})"


@data.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rev", metavar="GITREV", help="Verify the version of this git revision.")
@_json_option
@_jobs_option
def verify(paths: tuple[str, ...], rev: str | None, as_json: bool, jobs: int | None) -> None:
    """Hash every cache object of the versions again (default: every pointer file).

    \b
    status and checkout trust an object whose stat hasn't changed since it was hashed;
    verify trusts nothing, so it also finds bytes that rotted on disk. It exits with 1
    when an object is missing or corrupt; `loopml data pull` then replaces them.
    """
    from loopml.data.integrity import verify as data_verify

    results = []
    for path in paths or (None,):
        results.extend(data_verify(path, rev=rev, workspace=_workspace(), jobs=jobs, warn=_note))
    if as_json:
        from loopml.cli.render import emit_json

        rows = [
            {
                "path": _in_workspace(r.path),
                "hash": r.hash,
                "ok": r.ok,
                "objects": r.objects,
                "bytes": r.size,
                "missing": list(r.missing),
                "corrupt": list(r.corrupt),
                "files": {d: list(rels) for d, rels in r.files.items()},
            }
            for r in results
        ]
        emit_json(rows)
    else:
        if not results:
            click.echo(NO_DATA)
        for r in results:
            name = os.path.relpath(r.path)
            if r.ok:
                click.echo(f"{name}: {_count(r.objects, 'object')}, {_size(r.size)}: all intact")
                continue
            click.echo(
                click.style(
                    f"{name}: {len(r.corrupt)} corrupt, {len(r.missing)} missing "
                    f"of {_count(r.objects, 'object')}",
                    fg="red",
                )
            )
            for label, digests in (("corrupt", r.corrupt), ("missing", r.missing)):
                for digest in digests:
                    rels = r.files.get(digest, ())
                    held = ", ".join(f"{name}/{rel}" if rel else name for rel in rels[:3])
                    if len(rels) > 3:
                        held += f" and {len(rels) - 3} more with the same bytes"
                    click.echo(
                        f"  {label + ':':<9}{held or f'the manifest of {name}'} ({digest[:12]}…)"
                    )
            click.echo(f"  Replace them from a remote: loopml data pull {name}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    data()
