"""``/api/loopml/blobs/{digest}``: the server's content-addressed blob store over HTTP.

``PUT`` streams the body to a temporary file while hashing it, refuses it unless its BLAKE3
is the digest in the URL (an interrupted or altered upload leaves nothing behind), then
stores it atomically; ``HEAD`` says whether a blob is there; ``GET`` streams it.

Blobs belong to no single experiment or model, so there is no per-object permission: with
``--auth`` only an authenticated caller gets here, and a blob is only found by its 256-bit
digest, which the caller learns from a run or model version it may read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import blake3

from loopml.exceptions import BlobNotFound, InvalidInput
from loopml.server.api.endpoint import endpoint
from loopml.server.errors import ApiError
from loopml.server.http import reply
from loopml.store.blobs import CHUNK, check_digest

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from starlette.responses import FileResponse, StreamingResponse
    from starlette.routing import Route

    blobs = ctx.workspace.blobs
    limit = ctx.settings.max_artifact_bytes

    def digest_of(request: Request) -> str:
        return check_digest(str(request.path_params["digest"]))

    @endpoint
    async def put_blob(request: Request) -> Response:
        digest = digest_of(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(
                "REQUEST_TOO_LARGE",
                f"blob of {declared} bytes is over the server's limit of {limit} bytes "
                "([server] max_artifact_bytes)",
            )
        if await ctx.call(blobs.exists, digest):
            async for _chunk in request.stream():  # read it out; it is stored already
                pass
            return reply({"digest": digest, "stored": False})
        fd, tmp = tempfile.mkstemp(prefix="loopml-upload-")
        try:
            hasher = blake3.blake3()
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(
                            "REQUEST_TOO_LARGE",
                            f"blob is over the server's limit of {limit} bytes "
                            "([server] max_artifact_bytes)",
                        )
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise InvalidInput(
                    f"The uploaded bytes ({size}) do not hash to {digest}: the upload was cut "
                    "short or altered. Nothing was stored; send it again."
                )
            await ctx.call(blobs.put_file, tmp)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return reply({"digest": digest, "stored": True})

    @endpoint
    async def get_blob(request: Request) -> Response:
        digest = digest_of(request)
        if not await ctx.call(blobs.exists, digest):
            raise BlobNotFound(f"Blob {digest} is not in the server's blob store.")
        if blobs.is_local:
            return FileResponse(blobs.path_of(digest), media_type="application/octet-stream")

        def chunks() -> Iterator[bytes]:
            with blobs.fs.open(blobs.path_of(digest), "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return [
        Route("/blobs/{digest}", put_blob, methods=["PUT"]),
        Route("/blobs/{digest}", get_blob, methods=["GET", "HEAD"]),
    ]
