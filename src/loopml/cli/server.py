"""``loopml server``: the team server (MLflow's REST API, loopml's API, the web UI)."""

from __future__ import annotations

import ipaddress
import os
import signal
from typing import TYPE_CHECKING

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.serve import _stopped
from loopml.heap import settle_for_serving

if TYPE_CHECKING:
    from loopml.workspace import Workspace


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option(
    "--host", default=None, help="The address to bind.  [default: [server] host, 127.0.0.1]"
)
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="[default: [server] port, 5000]"
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 256),
    help="Worker processes.  [default: [server] workers, 1]",
)
@click.option(
    "--auth/--no-auth",
    default=None,
    help="Require users and tokens (loopml users, loopml tokens).  [default: [server] auth]",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow binding an address other than loopback without --auth.",
)
@pass_workspace
def server(
    ws: Workspace,
    host: str | None,
    port: int | None,
    workers: int | None,
    auth: bool | None,
    insecure: bool,
) -> None:
    """Serve this workspace to a team: MLflow's REST API under /api/2.0/mlflow (point
    MLFLOW_TRACKING_URI at it), loopml's own API (LOOPML_TRACKING_URI), the web UI at /,
    GET /health and /metrics. SIGTERM finishes the requests in flight and exits with 0."""
    import uvicorn

    from loopml.server.app import AUTH_ENV, WORKSPACE_ENV, create_app

    settings = ws.settings.server
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    workers = workers if workers is not None else settings.workers
    auth = auth if auth is not None else settings.auth
    if not auth and not insecure and not is_loopback(host):
        raise CliError(
            f"refusing to serve {host} without --auth: anyone who can reach it could read and "
            "change every run and model. Use --auth (create users with `loopml users create`), "
            "or --insecure if the network is trusted."
        )
    if auth:
        from loopml.server.auth.users import has_users

        if not has_users(ws.db):
            raise CliError(
                "--auth is on but this workspace has no users yet, so nobody could sign in. "
                "Create the first admin: `loopml users create NAME --admin`."
            )
    from loopml.ports import ensure_port_free

    ensure_port_free(host, port)
    signal.signal(signal.SIGTERM, _stopped)
    click.echo(f"loopml server on http://{host}:{port} (auth {'on' if auth else 'off'})", err=True)
    if workers == 1:
        app = create_app(ws, auth=auth)
        settle_for_serving()
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    ws.db.connect()  # create and migrate once, not in every worker at the same time
    os.environ[WORKSPACE_ENV] = str(ws.root)
    os.environ[AUTH_ENV] = "true" if auth else "false"
    uvicorn.run(
        "loopml.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )
