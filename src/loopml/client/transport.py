"""HTTP to a loopml server: one keep-alive connection pool, JSON in and out, streamed blobs.

Every request carries ``Authorization: Bearer $LOOPML_TOKEN`` when the variable is set. A
server that can't be reached (refused, reset, timed out, 502-504) is
:class:`~loopml.client.errors.ServerUnreachable`; any other error answer is turned back into
the :class:`~loopml.exceptions.LoopmlError` the server raised
(:func:`~loopml.client.errors.error_from_answer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import orjson

from loopml.client.errors import TOKEN_ENV, ServerUnreachable, error_from_answer
from loopml.exceptions import InvalidConfig

#: Where loopml's own endpoints live on a server.
API = "/api/loopml"
CHUNK = 1 << 20


def segment(value: str) -> str:
    """``value`` quoted as one path segment (a model name may hold spaces and ``:``)."""
    return quote(value, safe="")


class Transport:
    """Requests to the loopml server at ``url`` (``http://host:port``, optionally a path).

    Thread-safe: the metric sender thread and the training thread share the pool.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise InvalidConfig(f"Not a loopml server URL: {url!r} (expected http://host:port)")
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"User-Agent": "loopml-client", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60.0),
        )

    def __repr__(self) -> str:
        return f"Transport({self.url!r})"

    def close(self) -> None:
        self._client.close()

    # -- JSON --------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request to ``API + path``; → the answer's JSON (None when empty)."""
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._client.request(
                method, API + path, content=content, params=params, headers=headers, **extra
            )
        except self._httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response.status_code, response.content)

    def _answer(self, status: int, content: bytes) -> Any:
        data: Any = None
        if content:
            try:
                data = orjson.loads(content)
            except orjson.JSONDecodeError:
                data = {"message": content[:200].decode("utf-8", "replace")}
        if status >= 400:
            raise error_from_answer(self.url, status, data)
        return data

    def _unreachable(self, exc: BaseException) -> ServerUnreachable:
        return ServerUnreachable(
            f"The loopml server at {self.url} can't be reached ({type(exc).__name__}: {exc}). "
            "Is `loopml server` running there?"
        )

    # -- blobs -------------------------------------------------------------------------------

    def upload(self, path: str, file: str | os.PathLike[str], size: int) -> Any:
        """PUT a file to ``API + path``, streamed in 1 MiB chunks (never read whole)."""

        def chunks() -> Iterator[bytes]:
            with open(file, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        try:
            response = self._client.put(
                API + path,
                content=chunks(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
        except self._httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response.status_code, response.content)

    def upload_bytes(self, path: str, data: bytes) -> Any:
        try:
            response = self._client.put(
                API + path, content=data, headers={"Content-Type": "application/octet-stream"}
            )
        except self._httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response.status_code, response.content)

    def download(self, path: str, out: IO[bytes]) -> int:
        """GET ``API + path`` into ``out``, streamed; → the number of bytes."""
        size = 0
        try:
            with self._client.stream("GET", API + path) as response:
                if response.status_code >= 400:
                    response.read()
                    self._answer(response.status_code, response.content)
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
        except self._httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return size

    def exists(self, path: str) -> bool:
        """Whether ``HEAD API + path`` answers 200 (404: no)."""
        try:
            response = self._client.head(API + path)
        except self._httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code == 404:
            return False
        self._answer(response.status_code, b"")
        return True
