"""Registering a model version from files rather than from a Python object.

MLflow's client uploads a model as a folder of files (``MLmodel``, ``model.pkl``, ...) that
land in the blob store one by one; :func:`register_files` makes them a loopml model version
without reading or copying them: the version's package is a manifest naming those blobs plus
loopml's own ``loopml-model.json``. The version is then like any other: ``loopml models
versions`` lists it, ``ws.models.load`` fetches it, the gate scores it, lineage links its run.

    entries = [("MLmodel", digest1, 412), ("model.pkl", digest2, 1630)]
    mv = register_files(ws, "churn", entries, flavor="mlflow", run_id=run.id)

:func:`register_folder` does the same for a folder on disk (its files are stored first).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from loopml.exceptions import InvalidInput, ModelFilesMissing
from loopml.registry import versions as v
from loopml.registry.flavors import flavor_named
from loopml.registry.packages import META_FILE, load_package
from loopml.registry.signature import Signature
from loopml.store.manifest import manifest_digest

if TYPE_CHECKING:
    from loopml.workspace import Workspace

Entry = tuple[str, str, int]  # (relative posix path, blob digest, size)


def _clean(entries: Iterable[tuple[str, str, int]]) -> list[Entry]:
    out: dict[str, Entry] = {}
    for rel, digest, size in entries:
        path = str(rel).replace("\\", "/").strip("/")
        parts = path.split("/")
        if not path or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"Model file path {rel!r} is not a relative path inside the model")
        if path == META_FILE:
            raise InvalidInput(f"A model's files can't include {META_FILE}: loopml writes it")
        if path in out:
            raise InvalidInput(f"Model file {path!r} is listed twice")
        out[path] = (path, str(digest), int(size))
    if not out:
        raise InvalidInput("A model version needs at least one file; none were given")
    return sorted(out.values())


def register_files(
    ws: Workspace,
    name: str,
    entries: Iterable[tuple[str, str, int]],
    *,
    flavor: str,
    run_id: str | None = None,
    signature: Signature | None = None,
    environment: dict[str, Any] | None = None,
    description: str | None = None,
    flavor_meta: dict[str, Any] | None = None,
    check_load: bool = False,
    with_version: Callable[[Connection, int, int], None] | None = None,
) -> v.ModelVersion:
    """Register a new version of ``name`` whose files are blobs already in ``ws.blobs``.

    ``entries`` are ``(path in the model, blob digest, size)``. Every blob must exist
    (:class:`ModelFilesMissing` otherwise: nothing is registered). ``flavor`` names how the
    files load (``"mlflow"`` for an MLflow model folder). ``check_load=True`` loads the model
    once before registering, so a version that can't load is refused.
    ``with_version(conn, model_id, version)`` writes more rows in the registration's own
    transaction (:func:`loopml.registry.versions.create_version`).
    """
    chosen = flavor_named(flavor)
    files = _clean(entries)
    missing = [path for path, digest, _ in files if not ws.blobs.exists(digest)]
    if missing:
        raise ModelFilesMissing(
            f"Cannot register {name!r}: files not in the blob store {ws.blobs.url}: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    if run_id is not None:
        ws.runs.get(run_id)  # RunNotFound for a bad id
    environment = environment or {
        "python": platform.python_version(),
        "libraries": {},
    }
    meta = {
        "flavor": chosen.name,
        "flavor_meta": flavor_meta or {},
        "name": name,
        "run_id": run_id,
        "environment": environment,
        "tree_digest": manifest_digest(files),
    }
    meta_bytes = json.dumps(meta, indent=2, default=str).encode()
    meta_digest = ws.blobs.put_bytes(meta_bytes)
    package = sorted([*[list(e) for e in files], [META_FILE, meta_digest, len(meta_bytes)]])
    digest = ws.blobs.put_bytes(json.dumps({"files": package}, sort_keys=True).encode())
    if check_load:
        from loopml.registry.packages import fetch_package

        folder = fetch_package(ws.blobs, digest, f"the new version of {name!r}", ws.models.cache)
        load_package(folder)
    return v.create_version(
        ws.db,
        name,
        flavor=chosen.name,
        digest=digest,
        run_id=run_id,
        signature=signature,
        environment=environment,
        description=description,
        with_version=with_version,
    )


def mlflow_details(folder: Path) -> tuple[Signature | None, dict[str, Any]]:
    """The signature and environment (Python, library pins) an MLflow model folder records."""
    from loopml.registry.flavors.mlflow import MlflowFlavor, read_mlmodel, signature_of

    mlmodel = read_mlmodel(folder)
    found = signature_of(mlmodel)
    signature = Signature.from_dict(found) if found else None
    python = platform.python_version()
    pyfunc = mlmodel["flavors"].get("python_function") or {}
    if isinstance(pyfunc, dict) and pyfunc.get("python_version"):
        python = str(pyfunc["python_version"])
    libraries: dict[str, str] = {}
    requirements = folder / "requirements.txt"
    if requirements.is_file():
        wanted = set(MlflowFlavor.libraries)
        for line in requirements.read_text().splitlines():
            package, sep, pinned = line.strip().partition("==")
            if sep and package.strip().lower() in wanted:
                libraries[package.strip().lower()] = pinned.strip()
    return signature, {"python": python, "libraries": libraries}


def register_folder(
    ws: Workspace,
    name: str,
    folder: str | os.PathLike[str],
    *,
    flavor: str = "mlflow",
    run_id: str | None = None,
    description: str | None = None,
) -> v.ModelVersion:
    """Register the model folder ``folder`` (for ``flavor="mlflow"``, a folder with an
    ``MLmodel`` file) as a new version of ``name``: its files are stored in the blob store,
    then :func:`register_files`."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder")
    signature, environment = mlflow_details(root) if flavor == "mlflow" else (None, None)
    entries = [
        (p.relative_to(root).as_posix(), ws.blobs.put_file(p), p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return register_files(
        ws,
        name,
        entries,
        flavor=flavor,
        run_id=run_id,
        signature=signature,
        environment=environment,
        description=description,
    )


def unpacked(
    ws: Workspace, entries: Iterable[Entry], only: Iterable[str] | None = None
) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder holding ``entries``' blobs at their paths (those in ``only``, when
    given: to read small metadata files such as ``MLmodel`` before registering); remove it
    with ``.cleanup()``."""
    wanted = set(only) if only is not None else None
    tmp = tempfile.TemporaryDirectory(prefix="loopml-files-")
    try:
        for rel, digest, _size in entries:
            if wanted is None or rel in wanted:
                ws.blobs.get_file(digest, Path(tmp.name) / rel)
    except BaseException:
        tmp.cleanup()
        raise
    return tmp
