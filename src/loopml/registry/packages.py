"""A model version's files in the blob store: one blob per file plus a manifest blob whose
digest is the version's ``digest``. Loading fetches and verifies every file once, into the
local model cache (:mod:`loopml.registry.cache`)."""

from __future__ import annotations

import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from loopml.exceptions import BlobNotFound, CorruptBlob, ModelFilesMissing
from loopml.registry.cache import ModelCache
from loopml.registry.flavors import Flavor, flavor_named
from loopml.store.blobs import BlobStore
from loopml.store.manifest import manifest_digest

META_FILE = "loopml-model.json"


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_package(
    blobs: BlobStore, model: Any, flavor: Flavor, artifacts: dict[str, str], info: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Save ``model`` with ``flavor`` and store its files; returns (manifest digest, meta)."""
    with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
        folder = Path(tmp)
        flavor_meta = flavor.save(model, folder, artifacts)
        meta = {"flavor": flavor.name, "flavor_meta": flavor_meta, **info}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        entries = []
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            entries.append(
                (file.relative_to(folder).as_posix(), blobs.put_file(file), file.stat().st_size)
            )
        manifest = json.dumps({"files": entries}, sort_keys=True).encode()
        digest = blobs.put_bytes(manifest)
        assert digest  # the manifest blob's digest names the package
        meta["tree_digest"] = manifest_digest(entries)
    return digest, meta


def fetch_package(blobs: BlobStore, digest: str, label: str, cache: ModelCache) -> Path:
    """The folder of a model package, from ``cache`` (unpacked on first use: every file is
    fetched and verified then). The package's manifest must still be in the blob store."""

    def fill(folder: Path) -> list[tuple[str, str, int]]:
        manifest = json.loads(blobs.get_bytes(digest))
        entries = [(str(rel), str(d), int(size)) for rel, d, size in manifest["files"]]
        for rel, file_digest, _size in entries:
            blobs.get_file(file_digest, folder / rel)
        return entries

    try:
        if not blobs.exists(digest):
            raise BlobNotFound(f"Blob {digest} is not in the blob store {blobs.url}")
        return cache.folder(digest, fill)
    except (BlobNotFound, CorruptBlob) as exc:
        raise ModelFilesMissing(
            f"Cannot load {label}: its files are missing or corrupted in the blob store "
            f"({str(exc).rstrip('.')}). Restore the blob store, or register the model again."
        ) from exc


def load_package(folder: Path) -> tuple[Any, dict[str, Any]]:
    meta = json.loads((folder / META_FILE).read_text())
    flavor = flavor_named(meta["flavor"])
    return flavor.load(folder, meta.get("flavor_meta", {})), meta
