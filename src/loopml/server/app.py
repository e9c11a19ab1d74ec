"""The team server's app: each area's routes, ``/health``, ``/metrics``, MLflow's errors.

    app = create_app(Workspace.open("path/to/project"))   # uvicorn runs it

Each area mounts its routes from its own module, listed in :data:`ROUTES` as the URL
prefixes it is served under and a ``"module:function"`` whose function takes the
:class:`~loopml.server.context.ServerContext` and returns Starlette routes. A module that is
not there (not written yet, or an optional part) is left out; one that fails to import is an
error. Routes answer errors in MLflow's JSON shape (:mod:`loopml.server.errors`); unknown
paths under ``/api`` and ``/ajax-api`` get ``ENDPOINT_NOT_FOUND``.

``GET /health`` answers ``{"status": "ok"}``; ``GET /metrics`` is Prometheus text:
``loopml_server_requests_total`` and ``loopml_server_request_seconds`` by route, method and
status.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidConfig, LoopmlError
from loopml.server.context import OpenAccess, ServerContext
from loopml.server.errors import ApiError, error_body, error_response

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from loopml.server.context import Access
    from loopml.workspace import Workspace

logger = logging.getLogger(__name__)

MLFLOW = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
MLFLOW_ARTIFACTS = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")

#: (URL prefixes, "module:function"): the routes each area serves. The UI comes last: it
#: owns "/" and everything no API claimed.
ROUTES: tuple[tuple[tuple[str, ...], str], ...] = (
    (MLFLOW, "loopml.server.mlflow_api.tracking:routes"),
    (MLFLOW, "loopml.server.mlflow_api.registry:routes"),
    (MLFLOW, "loopml.server.mlflow_api.logged_models:routes"),
    (MLFLOW_ARTIFACTS, "loopml.server.mlflow_api.artifacts:routes"),
    (("/api/loopml",), "loopml.server.api:routes"),
    (("/api/loopml",), "loopml.server.auth.routes:routes"),
    (("",), "loopml.server.ui:routes"),
)

WORKSPACE_ENV = "LOOPML_WORKSPACE"
AUTH_ENV = "LOOPML_SERVER_AUTH"


def _available(target: str) -> bool:
    module = target.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def area_routes(ctx: ServerContext) -> list[BaseRoute]:
    """Every area's routes, mounted under its prefixes, in :data:`ROUTES` order."""
    from starlette.routing import Mount

    # One Mount per prefix: a Mount answers every path under its prefix (a 404 when none of
    # its routes matches), so a second Mount of the same prefix would never be reached.
    by_prefix: dict[str, list[BaseRoute]] = {}
    for prefixes, target in ROUTES:
        if not _available(target):
            continue
        module_name, _, function = target.partition(":")
        make = getattr(importlib.import_module(module_name), function)
        routes = make(ctx)
        for prefix in prefixes:
            by_prefix.setdefault(prefix, []).extend(routes)
    out: list[BaseRoute] = []
    for prefix, routes in by_prefix.items():
        if prefix:
            out.append(Mount(prefix, routes=routes))
        else:
            out.extend(routes)
    return out


def make_access(workspace: Workspace, auth: bool) -> Access:
    if not auth:
        return OpenAccess()
    if not _available("loopml.server.auth:AuthAccess"):
        raise InvalidConfig("this loopml has no users and tokens (loopml.server.auth)")
    from loopml.server.auth import AuthAccess

    access: Access = AuthAccess(workspace)
    return access


class _Metrics:
    """Prometheus counters of one app: requests and latency by route, method and status."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopml_server_requests",
            "Requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopml_server_request_seconds",
            "Time to answer a request, by route",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = [500]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                endpoint = scope.get("endpoint")
                route = (
                    f"{endpoint.__module__.rsplit('.', 1)[-1]}.{endpoint.__name__}"
                    if endpoint is not None and hasattr(endpoint, "__name__")
                    else "unmatched"
                )
                self.requests.labels(route, scope["method"], str(status[0])).inc()
                self.latency.labels(route).observe(time.perf_counter() - start)

        return measured


def create_app(
    workspace: Workspace,
    *,
    auth: bool | None = None,
    access: Access | None = None,
) -> Starlette:
    """The server's Starlette app over ``workspace``.

    ``auth`` overrides ``[server] auth``; ``access`` replaces the access checks entirely
    (tests). The metadata store is opened (and migrated) here, not on the first request.
    """
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    settings = workspace.settings.server
    if access is None:
        access = make_access(workspace, settings.auth if auth is None else auth)
    ctx = ServerContext(workspace=workspace, settings=settings, access=access)
    workspace.db.connect()
    metrics = _Metrics()

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def api_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, ApiError | LoopmlError):
            logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(exc)

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path.startswith(("/api/", "/ajax-api/")):
            body = error_body(
                "ENDPOINT_NOT_FOUND", f"no endpoint {request.method} {path} on this server"
            )
            return Response(body, 404, media_type="application/json")
        return Response(f"Not found: {path}\n", 404, media_type="text/plain")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        body = error_body(
            "ENDPOINT_NOT_FOUND", f"{request.method} is not allowed on {request.url.path}"
        )
        return Response(body, 405, media_type="application/json")

    routes: list[Any] = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *area_routes(ctx),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            LoopmlError: api_error,
            Exception: api_error,
            404: not_found,
            405: not_allowed,
        },
    )
    app.state.ctx = ctx
    # Outermost first: measure everything, then authenticate, then route.
    app.add_middleware(_Wrapped, wrap=access.middleware)
    app.add_middleware(_Wrapped, wrap=metrics.middleware)
    return app


class _Wrapped:
    """Starlette's ``add_middleware`` takes a class; this one applies a wrapping function."""

    def __init__(self, app: ASGIApp, wrap: Any) -> None:
        self.app = wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def app_from_env() -> Starlette:
    """The app of ``loopml server --workers N``: each worker process builds its own, over the
    workspace in ``LOOPML_WORKSPACE`` (``[server] auth`` / ``LOOPML_SERVER_AUTH`` decides auth)."""
    from loopml.heap import settle_for_serving
    from loopml.workspace import Workspace

    app = create_app(Workspace.open(os.environ.get(WORKSPACE_ENV) or None))
    settle_for_serving()
    return app
