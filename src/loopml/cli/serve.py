"""``loopml serve DEPLOYMENT``: serve a deployment's registry models over HTTP."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

import click

from loopml.cli.context import pass_workspace
from loopml.heap import settle_for_serving

if TYPE_CHECKING:
    from loopml.workspace import Workspace


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM's handler around uvicorn: uvicorn handles the signal itself while it serves
    (drains, shuts the app down, writes the log) and then raises it again to end the process
    the default way, with status -15. Here that second raise, or a SIGTERM before serving
    began, ends it with status 0: the server stopped as asked."""
    raise SystemExit(0)


@click.command()
@click.argument("deployment")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes; each loads the models and follows the deployment on its own.",
)
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds between checks for a new revision of the deployment.",
)
@pass_workspace
def serve(
    ws: Workspace, deployment: str, host: str, port: int, workers: int, poll_interval: float
) -> None:
    """Serve DEPLOYMENT over HTTP: POST /predict, /invocations and /feedback; GET /health,
    /ready, /metrics and /deployment. A change to the deployment (`loopml deploy ...`) is
    followed within seconds, without a restart; SIGTERM finishes the requests in flight and
    writes the prediction log, then exits with status 0."""
    import uvicorn

    from loopml.ports import ensure_port_free
    from loopml.serving.app import DEPLOYMENT_ENV, POLL_ENV, create_app

    ensure_port_free(host, port)  # before the models load: one error line, not uvicorn's
    signal.signal(signal.SIGTERM, _stopped)
    if workers == 1:
        app = create_app(ws, deployment, poll_interval=poll_interval)  # DeploymentNotFound
        settle_for_serving()
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    ws.deployments.get(deployment)  # an unknown name fails here, not in every worker
    os.environ[DEPLOYMENT_ENV] = deployment
    os.environ[POLL_ENV] = str(poll_interval)
    os.environ["LOOPML_WORKSPACE"] = str(ws.root)
    uvicorn.run(
        "loopml.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )
