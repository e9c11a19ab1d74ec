"""The model server: a deployment's registry models over HTTP (``loopml serve``).

    app = create_app(ws, "churn")           # a Starlette app; uvicorn runs it

Endpoints:

- ``POST /predict``: ``{"records": [{...}, ...]}`` or ``{"columns": [...], "data": [[...]]}``
  → ``{"predictions": [...], "request_id": "...", "model": "churn/4", "variant": "primary"}``.
  An ``X-Request-Id`` header is used as the request id (else one is made) and echoed back.
- ``POST /invocations``: MLflow's bodies (``dataframe_split``, ``dataframe_records``,
  ``inputs``, ``instances``), or ``Content-Type: text/csv`` (a header row, then rows; values
  typed by the signature) → ``{"predictions": [...]}``, as MLflow answers.
- ``POST /feedback``: ``{"request_id": ..., "label": ...}`` or ``{"request_id": ...,
  "reward": 1.0}`` → 202. The id must be one this server answered (it remembers the last
  ``RECENT_IDS``) or one in the deployment's prediction log; any other is a 404 naming it.
  With several replicas, a request another replica answered reaches the log at its next
  flush: feedback sent sooner gets the 404, and is accepted when retried after ``[serving]
  log_flush_interval``.
- ``GET /health`` (alive), ``GET /ready`` (503 until the primary's model is loaded:
  ``loading``, or ``failed`` naming why — then ``/predict`` is a 503 saying so; a request
  arriving while it loads waits up to ``[serving] load_wait`` seconds),
  ``GET /metrics`` (Prometheus), ``GET /deployment`` (the configuration served, with its
  revision and the model version each variant resolved to).

Inputs are checked against the answering model version's signature: missing or extra
columns and values of the wrong type (an integer beyond its column's range, NaN or an
infinity) are a 422 naming them and the row; a body that is not JSON, of the wrong shape or
without rows, a 400; a body over ``[serving] max_body_bytes`` a 413 (``BodyTooLarge``); a
model that raises on inputs with missing values a 422 naming them (``MissingValues``), and
otherwise a 500 carrying the request id. With ``[serving] api_keys`` set, ``/predict``,
``/invocations`` and ``/feedback`` need ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``
(401 otherwise). No endpoint changes a deployment.

The server polls the deployment's revision (and the versions its model references resolve
to) every ``poll_interval`` seconds and follows a change without a restart. A variant whose
model fails to load gets no traffic and a ``deployment.model_failed`` event; if it is the
primary, the previous models keep serving. Every scored request (including shadow scores) is
queued to the prediction log (:mod:`loopml.serving.log`), written off the response path.

A request is scored in a worker thread, except when its model answered requests of that
size (rows, to the power of two) in under ``INLINE_MAX_S`` on average: handing such a
request to a thread and back costs more than the model, so it is scored on the event loop.
A slow answer moves that size back to the threads at once (the average jumps), and a
deployment with a feature service always uses the threads (the online store is I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from loopml.exceptions import InvalidInput, LoopmlError, NotFound, StoreUnavailable
from loopml.heap import settle_for_serving
from loopml.serving.deployments import Deployment, Variant
from loopml.serving.log import PredictionLogger, to_json
from loopml.serving.requests import (
    BadRequest,
    BodyTooLarge,
    CsvRows,
    MissingValues,
    _outputs,
    check_rows,
    missing_values,
    one_line,
    parse_csv,
    parse_invocations,
    parse_predict,
    typed_csv_rows,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from loopml.registry.signature import Signature
    from loopml.workspace import Workspace

logger = logging.getLogger(__name__)

#: Environment variables the ``--workers N`` factory reads (:func:`app_from_env`).
DEPLOYMENT_ENV = "LOOPML_SERVE_DEPLOYMENT"
POLL_ENV = "LOOPML_SERVE_POLL_INTERVAL"
#: The request ids a server remembers for ``/feedback`` (older ones are looked up in the log).
RECENT_IDS = 100_000
#: Requests of a size whose model answers under this (moving average) are scored inline.
#: Scoring is CPU work under the GIL: a worker thread adds no parallelism, only a hop each
#: way (~0.5 ms on a busy machine) and keeps the loop free for /health while a slow model
#: runs. Up to 10 ms inline, a health check waits at most that long.
INLINE_MAX_S = 0.010
_SMOOTHING = 0.2  # weight of the newest time in the moving average


@dataclass(frozen=True)
class Loaded:
    """A variant whose model is loaded: the version its reference resolved to."""

    variant: Variant
    model_uri: str  # models:/churn/4
    model: Any
    signature: Signature | None

    @property
    def label(self) -> str:
        return self.model_uri.removeprefix("models:/")


@dataclass(frozen=True)
class Served:
    """One revision of a deployment with the variants that loaded (those that didn't get
    no traffic)."""

    deployment: Deployment
    loaded: Mapping[str, Loaded]
    failed: Mapping[str, str] = field(default_factory=dict)  # variant -> error
    resolved: tuple[tuple[str, str], ...] = ()  # (variant, models:/name/version)


@dataclass(frozen=True)
class Routing:
    """Which loaded variant answers a request, and which score it off the response path."""

    answer: str
    shadows: tuple[str, ...] = ()


def _route(deployment: Deployment, key: str) -> Routing:
    """The variant that answers the request keyed ``key`` (and those that shadow it): a pure
    function of the configuration and the key, so replicas agree."""
    from loopml.serving.router import assign

    routing = assign(deployment, key)
    return Routing(routing.variant.name, tuple(v.name for v in routing.off_path))


class RecentIds:
    """The last ``size`` request ids, for a constant-time "did I answer this?"."""

    def __init__(self, size: int = RECENT_IDS) -> None:
        self.size = size
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def add(self, request_id: str) -> None:
        if request_id in self._ids:
            return
        if len(self._order) >= self.size:
            self._ids.discard(self._order.popleft())
        self._order.append(request_id)
        self._ids.add(request_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


class ModelServer:
    """The state behind :func:`create_app`: the served revision, the loaded models (cached
    by version), the prediction log and the metrics."""

    def __init__(self, workspace: Workspace, name: str, *, poll_interval: float = 1.0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.workspace = workspace
        self.name = name
        self.poll_interval = poll_interval
        self.settings = workspace.settings.serving
        keys = os.environ.get("LOOPML_SERVING_API_KEYS")
        self.api_keys = tuple(k.strip() for k in keys.split(",") if k.strip()) if keys else ()
        self.api_keys = self.api_keys or tuple(self.settings.api_keys)
        self.deployment = workspace.deployments.get(name)  # DeploymentNotFound, with a hint
        self.served: Served | None = None
        self.models: dict[str, Any] = {}  # models:/name/version -> model, kept across revisions
        self.reported: set[tuple[int, str, str]] = set()  # failures already recorded as events
        self.log = PredictionLogger.for_workspace(workspace)
        self.registry = CollectorRegistry()
        labels = ("deployment", "model", "variant")
        self.requests = Counter(
            "loopml_requests", "Requests scored", labels, registry=self.registry
        )
        self.errors = Counter(
            "loopml_errors", "Requests whose model raised", labels, registry=self.registry
        )
        self.latency = Histogram(
            "loopml_request_latency_seconds",
            "Time to score a request (parse, check, predict)",
            labels,
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.pending: set[asyncio.Task[None]] = set()
        self.recent = RecentIds()
        # (model uri, rows.bit_length()) -> moving average of score() in seconds
        self.timings: dict[tuple[str, int], float] = {}
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self.polling = False  # the lifespan started the poller that loads the models
        self.tried = asyncio.Event()  # set once the first load has been tried

    async def wait_loaded(self) -> Served | None:
        """What is served, waiting up to ``[serving] load_wait`` seconds for the first load:
        with ``--workers N`` each worker loads its own models, and a request the kernel hands
        to one still loading should wait for it, not fail while the others are ready."""
        if self.served is None and self.polling and self.settings.load_wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tried.wait(), self.settings.load_wait)
        return self.served

    # -- loading ---------------------------------------------------------------------------

    def _resolve(self, deployment: Deployment) -> tuple[tuple[str, str], ...]:
        out = []
        for variant in deployment.variants:
            try:
                out.append((variant.name, self.workspace.models.get(variant.model).uri))
            except LoopmlError as exc:
                out.append((variant.name, f"error: {exc}"))
        return tuple(out)

    def refresh(self) -> bool:
        """Follow the deployment's newest revision (and the versions its references resolve
        to now); True when what is served changed. Blocking: run it in a thread."""
        served = self.served
        revision = self.workspace.deployments.revision(self.name)
        deployment = (
            served.deployment
            if served is not None and revision == served.deployment.revision
            else self.workspace.deployments.get(self.name)
        )
        resolved = self._resolve(deployment)
        if served is not None and (deployment.revision, resolved) == (
            served.deployment.revision,
            served.resolved,
        ):
            return False
        loaded: dict[str, Loaded] = {}
        failed: dict[str, str] = {}
        for variant, (_, uri) in zip(deployment.variants, resolved, strict=True):
            try:
                if uri.startswith("error: "):
                    raise NotFound(uri.removeprefix("error: "))
                version = self.workspace.models.get(uri)
                model = self.models.get(uri)
                if model is None:
                    model = self.workspace.models.load(uri)
                    self.models[uri] = model
                loaded[variant.name] = Loaded(variant, uri, model, version.signature)
            except Exception as exc:
                failed[variant.name] = f"{type(exc).__name__}: {exc}"
                self._report(deployment, variant, uri, failed[variant.name])
        primary = deployment.primary.name
        if primary not in loaded and served is not None:
            # The new primary can't serve: keep the previous models until a revision that can.
            self.served = Served(served.deployment, served.loaded, failed, served.resolved)
            return False
        self.served = Served(deployment, loaded, failed, resolved)
        self.deployment = deployment
        in_use = {item.model_uri for item in loaded.values()}
        for uri in [u for u in self.models if u not in in_use]:
            del self.models[uri]
        return True

    def not_loaded(self, served: Served) -> str:
        """Why ``served`` can't answer: its primary failed to load (and nothing was served
        before it, or the previous models would still answer)."""
        primary = served.deployment.primary
        why = served.failed.get(primary.name, "it is not loaded")
        return (
            f"Deployment {self.name!r} can't answer: its primary model {primary.model} failed "
            f"to load: {why.rstrip('.')}. Point the deployment at a model that loads "
            f"(`loopml deploy rollback {self.name}`, or move the alias it follows): the server "
            "follows the change; or restart it once the model can load."
        )

    def _report(self, deployment: Deployment, variant: Variant, uri: str, error: str) -> None:
        key = (deployment.revision, variant.name, uri)
        if key in self.reported:
            return
        self.reported.add(key)
        logger.warning(
            "deployment %s: variant %s (%s) failed to load: %s", self.name, variant.name, uri, error
        )
        try:
            self.workspace.events.emit(
                "deployment.model_failed",
                self.name,
                {
                    "revision": deployment.revision,
                    "variant": variant.name,
                    "model": variant.model if uri.startswith("error: ") else uri,
                    "error": error[:500],
                },
            )
        except LoopmlError as exc:  # the event is a report; serving goes on without it
            logger.warning("could not record the failure of %s: %s", variant.name, exc)

    async def poll(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # a DB hiccup: keep serving, try again next tick
                logger.warning("deployment %s: could not check for changes: %s", self.name, exc)
            self.tried.set()
            await asyncio.sleep(self.poll_interval)

    # -- scoring ---------------------------------------------------------------------------

    def routing(self, served: Served, key: str) -> Routing:
        routing = _route(served.deployment, key)
        answer = routing.answer if routing.answer in served.loaded else None
        if answer is None:
            answer = served.deployment.primary.name
        shadows = tuple(s for s in routing.shadows if s in served.loaded and s != answer)
        return Routing(answer, shadows)

    def features(self, served: Served, rows: list[Any], loaded: Loaded) -> list[Any]:
        """``rows`` with the signature's columns they lack filled from the online store, when
        the deployment names a feature service (blocking)."""
        service = served.deployment.feature_service
        if not service or loaded.signature is None or not rows:
            return rows
        if not all(isinstance(r, Mapping) for r in rows):
            return rows
        wanted = [c for c, _ in loaded.signature.inputs]
        if all(all(c in r for c in wanted) for r in rows):
            return rows
        response = self.workspace.features.get_online_features(service, rows).to_dict()
        filled = []
        for i, row in enumerate(rows):
            full = dict(row)
            for column, values in response.items():
                if column in wanted and column not in full:
                    full[column] = values[i]
            # Entity keys and request fields the model doesn't take are not its inputs.
            filled.append({k: v for k, v in full.items() if k in wanted or k not in response})
        return filled

    def score(self, served: Served, loaded: Loaded, rows: list[Any]) -> list[Any]:
        """Check ``rows`` against the model's signature and predict (blocking)."""
        started = time.perf_counter()
        try:
            rows = self.features(served, rows, loaded)
            frame = check_rows(rows, loaded.signature)
            try:
                predictions = loaded.model.predict(frame)
            except Exception as exc:
                empty = missing_values(frame)
                if empty is None:
                    raise
                raise MissingValues(
                    f"The model {loaded.label} failed on inputs with missing values ({empty}): "
                    f"{_error(exc)}. Send a value for each."
                ) from exc
            return _outputs(predictions)
        finally:
            key = (loaded.model_uri, len(rows).bit_length())
            took = time.perf_counter() - started
            before = self.timings.get(key)
            self.timings[key] = took if before is None else before + _SMOOTHING * (took - before)

    def inline(self, served: Served, loaded: Loaded, rows: list[Any]) -> bool:
        """Whether to score ``rows`` on the event loop (see the module doc)."""
        if served.deployment.feature_service:
            return False
        took = self.timings.get((loaded.model_uri, len(rows).bit_length()))
        return took is not None and took < INLINE_MAX_S

    def knows(self, request_id: str) -> bool:
        """Whether ``request_id`` was answered by this server or is in the prediction log
        (blocking: the log is read when the id isn't a recent one of this server)."""
        if request_id in self.recent:
            return True
        from loopml.serving.log import known_request_ids

        return bool(known_request_ids(self.workspace, self.name, [request_id]))

    def _metrics(self, loaded: Loaded) -> tuple[Any, Any, Any]:
        key = (loaded.label, loaded.variant.name)
        children = self._children.get(key)
        if children is None:
            labels = (self.name, *key)
            children = (
                self.requests.labels(*labels),
                self.errors.labels(*labels),
                self.latency.labels(*labels),
            )
            self._children[key] = children
        return children

    def record(
        self,
        served: Served,
        loaded: Loaded,
        request_id: str,
        rows: Any,
        outputs: Any,
        started: float,
        error: str | None,
        *,
        shadow: bool = False,
    ) -> None:
        elapsed = time.perf_counter() - started
        if not shadow:
            requests, errors, latency = self._metrics(loaded)
            requests.inc()
            latency.observe(elapsed)
            if error is not None:
                errors.inc()
            self.recent.add(request_id)
        self.log.log(
            {
                "request_id": request_id,
                "time": datetime.now(UTC),
                "deployment": self.name,
                "revision": served.deployment.revision,
                "model": loaded.label,
                "variant": loaded.variant.name,
                "shadow": shadow,
                # Encoded to JSON by the log's writer thread, off the response path.
                "inputs": rows,
                "outputs": outputs,
                "latency_ms": elapsed * 1000.0,
                "error": error,
            }
        )

    async def shadow(self, served: Served, name: str, request_id: str, rows: list[Any]) -> None:
        loaded = served.loaded[name]
        started = time.perf_counter()
        try:
            outputs = await asyncio.to_thread(self.score, served, loaded, rows)
        except Exception as exc:
            self.record(served, loaded, request_id, rows, None, started, _error(exc), shadow=True)
        else:
            self.record(served, loaded, request_id, rows, outputs, started, None, shadow=True)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(str(exc))}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _strict_dumps(value: Any) -> bytes:
    """``value`` as strict JSON: NaN and infinities (JSON has no such numbers) become null."""
    return orjson.dumps(value, default=_json_default, option=_ORJSON_OPTIONS)


def create_app(
    workspace: Workspace, deployment_name: str, *, poll_interval: float = 1.0
) -> Starlette:
    """The Starlette app serving deployment ``deployment_name`` of ``workspace`` (see the
    module doc). An unknown deployment raises :class:`DeploymentNotFound` here; the models
    load in the background once the app starts (``GET /ready`` says when)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response
    from starlette.routing import Route

    server = ModelServer(workspace, deployment_name, poll_interval=poll_interval)
    max_body = server.settings.max_body_bytes

    def reply(body: Any, status: int = 200, request_id: str | None = None) -> Response:
        headers = {"X-Request-Id": request_id} if request_id else None
        return Response(_strict_dumps(body), status, headers, media_type="application/json")

    def error(status: int, exc: BaseException | str, request_id: str | None = None) -> Response:
        kind = type(exc).__name__ if isinstance(exc, BaseException) else _ERROR_NAMES[status]
        body = {"error": kind, "detail": str(exc)}
        if request_id:
            body["request_id"] = request_id
        return reply(body, status, request_id)

    def authorized(request: Request) -> bool:
        if not server.api_keys:
            return True
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            return False
        return any(hmac.compare_digest(given.encode(), k.encode()) for k in server.api_keys)

    async def read_body(request: Request, request_id: str | None = None) -> bytes:
        """The body (at most ``max_body`` bytes); raises :class:`_Refused` with the response
        to send."""
        if not authorized(request):
            raise _Refused(
                error(
                    401,
                    "An API key is needed: Authorization: Bearer KEY or X-API-Key: KEY.",
                    request_id,
                )
            )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise _Refused(_too_large(int(length), request_id))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise _Refused(_too_large(size, request_id))
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(request: Request, request_id: str | None = None) -> Any:
        """The body as JSON; raises :class:`_Refused` with the response to send."""
        raw = await read_body(request, request_id)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # NaN, Infinity: not JSON, but Python's reader (and MLflow's) takes them
        try:
            return json.loads(raw)
        except ValueError as exc:
            not_json = BadRequest(f"The body is not JSON: {exc}")
            raise _Refused(error(400, not_json, request_id)) from exc

    def _too_large(size: int, request_id: str | None) -> Response:
        too_large = BodyTooLarge(
            f"The body is {size} bytes or more; the limit is {max_body} ([serving] "
            "max_body_bytes). Send fewer rows per request."
        )
        return error(413, too_large, request_id)

    async def predict_rows(
        request: Request, parse: Any, *, takes_csv: bool = False
    ) -> tuple[Response | None, str, Served | None, Loaded | None, list[Any]]:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        rows: list[Any]
        try:
            if takes_csv and media == "text/csv":
                rows = parse_csv(await read_body(request, request_id))
            else:
                rows = parse(await read_json(request, request_id))
        except _Refused as refused:
            return refused.response, request_id, None, None, []
        except BadRequest as exc:
            return error(400, exc, request_id), request_id, None, None, []
        served = server.served or await server.wait_loaded()
        if served is None:
            return (
                error(503, "The models are still loading.", request_id),
                request_id,
                None,
                None,
                [],
            )
        key_field = served.deployment.key
        key = request_id
        if key_field and rows and isinstance(rows[0], Mapping) and key_field in rows[0]:
            key = str(rows[0][key_field])
        routing = server.routing(served, key)
        loaded = served.loaded.get(routing.answer)
        if loaded is None:  # the primary failed to load and nothing was served before it
            return error(503, server.not_loaded(served), request_id), request_id, None, None, []
        if isinstance(rows, CsvRows):  # text: typed by the columns of the model answering
            rows = typed_csv_rows(rows, loaded.signature)
        if key_field:
            rows = _without_key(rows, key_field, loaded.signature)
        started = time.perf_counter()
        try:
            if server.inline(served, loaded, rows):
                outputs = server.score(served, loaded, rows)
            else:
                outputs = await run_in_threadpool(server.score, served, loaded, rows)
        except (InvalidInput, NotFound) as exc:
            return error(422, exc, request_id), request_id, None, None, []
        except StoreUnavailable as exc:
            server.record(served, loaded, request_id, rows, None, started, _error(exc))
            return error(503, exc, request_id), request_id, None, None, []
        except Exception as exc:
            server.record(served, loaded, request_id, rows, None, started, _error(exc))
            logger.exception("request %s: the model %s raised", request_id, loaded.label)
            return (
                error(
                    500,
                    f"The model {loaded.label} failed on this request: {_error(exc)}",
                    request_id,
                ),
                request_id,
                None,
                None,
                [],
            )
        server.record(served, loaded, request_id, rows, outputs, started, None)
        for name in routing.shadows:
            task = asyncio.create_task(server.shadow(served, name, request_id, rows))
            server.pending.add(task)
            task.add_done_callback(server.pending.discard)
        return None, request_id, served, loaded, outputs

    async def predict(request: Request) -> Response:
        refused, request_id, _served, loaded, outputs = await predict_rows(request, parse_predict)
        if refused is not None or loaded is None:
            assert refused is not None
            return refused
        return reply(
            {
                "predictions": outputs,
                "request_id": request_id,
                "model": loaded.label,
                "variant": loaded.variant.name,
            },
            request_id=request_id,
        )

    async def invocations(request: Request) -> Response:
        refused, request_id, _served, loaded, outputs = await predict_rows(
            request, parse_invocations, takes_csv=True
        )
        if refused is not None or loaded is None:
            assert refused is not None
            return refused
        return reply({"predictions": outputs}, request_id=request_id)

    async def feedback(request: Request) -> Response:
        try:
            body = await read_json(request)
        except _Refused as refused:
            return refused.response
        if not isinstance(body, Mapping):
            return error(400, BadRequest('The body must be {"request_id": ..., "label": ...}.'))
        unknown = sorted(set(body) - {"request_id", "label", "reward"})
        request_id = body.get("request_id")
        problem = None
        if unknown:
            problem = f"Unknown field(s) {unknown}: give request_id and label or reward."
        elif not isinstance(request_id, str) or not request_id:
            problem = '"request_id" must be the id of the request (a string).'
        elif "label" not in body and "reward" not in body:
            problem = 'Give "label" (any JSON value) or "reward" (a number).'
        elif "reward" in body and (
            isinstance(body["reward"], bool) or not isinstance(body["reward"], (int, float))
        ):
            problem = f'"reward" must be a number, got {body["reward"]!r}.'
        if problem:
            return error(422, InvalidInput(problem))
        assert isinstance(request_id, str)
        try:
            known = await asyncio.to_thread(server.knows, request_id)
        except Exception as exc:  # the log can't be read now: say so, don't guess
            unreadable = StoreUnavailable(
                f"The prediction log of {server.name!r} can't be read to find request "
                f"{request_id!r} ({_error(exc)}); retry later."
            )
            return error(503, unreadable)
        if not known:
            interval = server.settings.log_flush_interval
            return error(
                404,
                NotFound(
                    f"No request {request_id!r}: this server did not answer it and the "
                    f"prediction log of {server.name!r} doesn't hold it. If another replica "
                    f"answered it in the last {interval:g}s, its log isn't written yet: retry "
                    f"after [serving] log_flush_interval ({interval:g}s)."
                ),
            )
        server.log.feedback(
            {
                "request_id": request_id,
                "time": datetime.now(UTC),
                "deployment": server.name,
                "label": to_json(body["label"]) if "label" in body else None,
                "reward": float(body["reward"]) if "reward" in body else None,
            }
        )
        return reply({"status": "accepted", "request_id": request_id}, 202)

    async def health(request: Request) -> Response:
        return reply({"status": "ok"})

    async def ready(request: Request) -> Response:
        served = server.served
        if served is None:
            return reply({"status": "loading", "deployment": server.name}, 503)
        up = served.deployment.primary.name in served.loaded
        return reply(
            {
                "status": "ready" if up else "failed",
                "revision": served.deployment.revision,
                "loaded": sorted(served.loaded),
                "failed": dict(served.failed),
                **({} if up else {"detail": server.not_loaded(served)}),
            },
            200 if up else 503,
        )

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(
            generate_latest(server.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def deployment(request: Request) -> Response:
        served = server.served
        current = served.deployment if served is not None else server.deployment
        body = current.to_dict()
        body["models"] = {
            name: item.label for name, item in (served.loaded.items() if served else ())
        }
        body["failed"] = dict(served.failed) if served else {}
        return reply(body)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.log.start()
        poller = asyncio.create_task(server.poll())
        server.polling = True
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            if server.pending:  # shadow scores of answered requests are logged too
                await asyncio.gather(*server.pending, return_exceptions=True)
            await asyncio.to_thread(server.log.close)

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/feedback", feedback, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/deployment", deployment, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.server = server
    return app


#: The ``error`` of an answer whose problem is not an exception of its own, by status.
_ERROR_NAMES = {
    401: "Unauthorized",
    404: "NotFound",
    500: "ModelFailed",
    503: "Unavailable",
}


class _Refused(Exception):
    """Carries the error response for a request refused before it is read."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def app_from_env() -> Starlette:
    """The app of ``loopml serve --workers N``: each worker process builds its own, for the
    deployment in ``LOOPML_SERVE_DEPLOYMENT`` of the workspace in ``LOOPML_WORKSPACE``."""
    from loopml.workspace import Workspace

    name = os.environ.get(DEPLOYMENT_ENV)
    if not name:
        raise InvalidInput(f"{DEPLOYMENT_ENV} names no deployment: run `loopml serve NAME`.")
    workspace = Workspace.open(os.environ.get("LOOPML_WORKSPACE") or None)
    app = create_app(workspace, name, poll_interval=float(os.environ.get(POLL_ENV, "1.0")))
    settle_for_serving()
    return app


def _without_key(rows: list[Any], key_field: str, signature: Any) -> list[Any]:
    """``rows`` without the deployment's sticky-assignment field when the model does not take
    it as an input (it routes the request; it is not a feature). A model whose signature
    lists it, or one without a signature, gets the rows as they are."""
    if signature is None or any(column == key_field for column, _ in signature.inputs):
        return rows
    if not any(isinstance(row, Mapping) and key_field in row for row in rows):
        return rows
    return [
        {k: v for k, v in row.items() if k != key_field} if isinstance(row, Mapping) else row
        for row in rows
    ]
