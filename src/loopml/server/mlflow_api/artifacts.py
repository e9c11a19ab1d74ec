"""MLflow's proxied artifacts API (``/api/2.0/mlflow-artifacts``) over loopml's blob store.

``mlflow-artifacts:/<path>`` is served at ``/api/2.0/mlflow-artifacts/artifacts/<path>``:

- ``PUT`` uploads one file: the body is streamed to a temporary file (never held in memory,
  at most ``[server] max_artifact_bytes``), put in the blob store, and only then recorded, so
  an upload cut off half-way leaves nothing visible;
- ``GET`` downloads one file, streamed from the blob store and checked against its digest
  (a corrupted blob breaks the download off instead of serving wrong bytes);
- ``GET /artifacts?path=<folder>`` lists a folder: ``{"files": [{"path", "is_dir",
  "file_size"}]}`` (names relative to the folder, as MLflow answers);
- ``DELETE`` removes a file or a folder's files from the listing (the blobs stay: other
  records may name the same bytes).

Paths under ``<experiment_id>/<run_id>/artifacts/`` are the run's loopml artifacts (``loopml
runs show`` lists them, ``ws.runs.download_artifacts`` reads them); any other path under an
experiment id (MLflow 3's ``<exp>/models/<model_id>/artifacts/...``) is kept in
``proxied_artifacts``. Paths with ``..`` (also percent-encoded), absolute paths and
backslashes are refused with a 400. Reading needs read access to the path's experiment,
writing and deleting edit access. :func:`loopml.server.mlflow_api.paths.list_tree` reads a
tree from Python.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import blake3
from sqlalchemy import Connection, delete, select

from loopml.server.context import EDIT, EXPERIMENT, READ, Level, ServerContext
from loopml.server.errors import ApiError
from loopml.server.http import reply
from loopml.server.mlflow_api.paths import Place, children, clean_path, find_file, place_of, tree
from loopml.server.mlflow_api.tables import proxied_artifacts
from loopml.store.blobs import CHUNK
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.tracking.artifacts import upsert_artifacts
from loopml.tracking.experiments import DEFAULT_EXPERIMENT, experiment_id
from loopml.tracking.tables import artifacts, experiments, runs

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.store.blobs import BlobStore

logger = logging.getLogger(__name__)


class ArtifactsApi:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.limit = ctx.settings.max_artifact_bytes

    # -- where and who ---------------------------------------------------------------------

    def experiment_of(self, place: Place) -> int:
        """The loopml experiment id of a path ("0" is Default); a run path whose run is in
        another experiment, or does not exist, is RESOURCE_DOES_NOT_EXIST."""
        number = int(place.experiment)
        if number == 0:
            number = experiment_id(self.ws.db, DEFAULT_EXPERIMENT)
        with self.ws.db.read() as conn:
            if place.run_id is not None:
                found = conn.execute(
                    select(runs.c.experiment_id).where(runs.c.id == place.run_id)
                ).scalar()
                if found is None or found != number:
                    raise ApiError(
                        "RESOURCE_DOES_NOT_EXIST",
                        f"Run {place.run_id} not found in experiment {place.experiment}",
                    )
            elif (
                conn.execute(select(experiments.c.id).where(experiments.c.id == number)).first()
                is None
            ):
                raise ApiError(
                    "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with ID {number}"
                )
        return number

    async def authorize(self, request: Request, raw: str, level: Level) -> Place:
        place = place_of(clean_path(raw))
        exp_id = await self.ctx.call(self.experiment_of, place)
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), level)
        return place

    # -- endpoints -------------------------------------------------------------------------

    async def list_files(self, request: Request) -> Response:
        raw = request.query_params.get("path", "")
        cleaned = clean_path(raw) if raw else ""
        if cleaned:
            await self.authorize(request, cleaned, READ)
        readable = self.ctx.access.readable(request, EXPERIMENT)

        def find() -> list[dict[str, Any]]:
            with self.ws.db.read() as conn:
                if cleaned and find_file(conn, cleaned) is not None:
                    return []  # a file, not a folder: MLflow lists nothing
                entries = children(tree(conn, cleaned))
            if not cleaned and readable is not None:
                entries = [e for e in entries if e["path"] in readable]
            return entries

        return reply({"files": await self.ctx.call(find)})

    async def download(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        place = await self.authorize(request, request.path_params["path"], READ)

        def find() -> tuple[str, int] | None:
            with self.ws.db.read() as conn:
                return find_file(conn, place.path)

        found = await self.ctx.call(find)
        if found is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No artifact file at {place.path!r}")
        digest, size = found
        media = mimetypes.guess_type(place.path)[0] or "application/octet-stream"
        return StreamingResponse(
            stream_blob(self.ws.blobs, digest),
            media_type=media,
            headers={"Content-Length": str(size)},
        )

    async def upload(self, request: Request) -> Response:
        from starlette.requests import ClientDisconnect

        place = await self.authorize(request, request.path_params["path"], EDIT)
        if place.run_id is not None and not place.sub:
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"{place.path!r} is the run's artifact folder: upload files under it",
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise self.too_large(int(declared))
        fd, tmp = tempfile.mkstemp(prefix="loopml-upload-")
        try:
            hasher = blake3.blake3()
            size = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > self.limit:
                            raise self.too_large(size)
                        hasher.update(chunk)
                        out.write(chunk)
            except ClientDisconnect:
                logger.info("upload of %s cut off after %d bytes: nothing stored", place.path, size)
                return reply({}, 400)
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise ApiError(
                    "INVALID_PARAMETER_VALUE",
                    f"upload of {place.path!r} ended after {size} of {declared} bytes",
                )
            digest = await self.ctx.call(self.ws.blobs.put_file, tmp)
            if digest != hasher.hexdigest():  # the file changed under us: never record it
                raise ApiError("INTERNAL_ERROR", f"upload of {place.path!r} changed while stored")
            await self.ctx.call(self.ws.db.transact, lambda conn: record(conn, place, digest, size))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return reply({})

    def too_large(self, size: int) -> ApiError:
        return ApiError(
            "REQUEST_TOO_LARGE",
            f"artifact of {size} bytes is over the server's limit of {self.limit} bytes "
            "([server] max_artifact_bytes)",
        )

    async def delete_files(self, request: Request) -> Response:
        place = await self.authorize(request, request.path_params["path"], EDIT)

        def tx(conn: Connection) -> int:
            if place.run_id is not None:
                stmt = delete(artifacts).where(artifacts.c.run_id == place.run_id)
                if place.sub:
                    stmt = stmt.where(
                        (artifacts.c.path == place.sub)
                        | artifacts.c.path.startswith(place.sub + "/", autoescape=True)
                    )
            else:
                stmt = delete(proxied_artifacts).where(
                    (proxied_artifacts.c.path == place.path)
                    | proxied_artifacts.c.path.startswith(place.path + "/", autoescape=True)
                )
            return int(conn.execute(stmt).rowcount)

        if not await self.ctx.call(self.ws.db.transact, tx):
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No artifact at {place.path!r}")
        return reply({})

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        return [
            Route("/artifacts", self.list_files, methods=["GET"]),
            Route("/artifacts/{path:path}", self.download, methods=["GET"]),
            Route("/artifacts/{path:path}", self.upload, methods=["PUT"]),
            Route("/artifacts/{path:path}", self.delete_files, methods=["DELETE"]),
        ]


def record(conn: Connection, place: Place, digest: str, size: int) -> None:
    """Make an uploaded file visible, in the caller's transaction."""
    if place.run_id is not None:
        deleted = conn.execute(select(runs.c.deleted_at).where(runs.c.id == place.run_id)).first()
        if deleted is None:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Run with id={place.run_id} not found")
        upsert_artifacts(conn, place.run_id, [(place.sub, digest, size)])
        return
    stmt = upsert(conn.dialect.name, proxied_artifacts)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[proxied_artifacts.c.path],
            set_={"digest": stmt.excluded.digest, "size": stmt.excluded.size},
        ),
        [{"path": place.path, "digest": digest, "size": size, "created_at": now_ms()}],
    )


def stream_blob(blobs: BlobStore, digest: str) -> Iterator[bytes]:
    """The blob's bytes in chunks, the last one held back until the digest is checked: a
    corrupted blob ends the response short (the client sees a broken download). The blob is
    opened here, so a missing one is an error before anything is sent."""
    from loopml.exceptions import BlobNotFound

    path = blobs.path_of(digest)
    try:
        source: Any = open(path, "rb") if blobs.is_local else blobs.fs.open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise BlobNotFound(f"Blob {digest} is not in the blob store {blobs.url}.") from None
    return _chunks(source, digest)


def _chunks(source: Any, digest: str) -> Iterator[bytes]:
    hasher = blake3.blake3()
    with source:
        pending = source.read(CHUNK)
        while pending:
            hasher.update(pending)
            chunk = source.read(CHUNK)
            if not chunk:
                break
            yield pending
            pending = chunk
        if hasher.hexdigest() != digest:
            logger.error("blob %s is corrupted: download broken off", digest)
            raise OSError(f"blob {digest} is corrupted")
        if pending:
            yield pending


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The proxied artifacts endpoints (see the module's docstring)."""
    return ArtifactsApi(ctx).routes()
