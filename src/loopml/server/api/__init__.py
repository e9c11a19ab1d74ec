"""loopml's own API, under ``/api/loopml``: what ``LOOPML_TRACKING_URI=http://…`` talks to
(:mod:`loopml.client`).

- ``runs``: create (idempotent by the client's run id), resume, metric batches (idempotent
  by batch id), params, tags, artifacts, inputs, seed, end, heartbeat; get, history,
  search, delete, restore, artifact listings;
- ``experiments``: create, get, list, rename;
- ``models``: register a version, list, get, versions, history, state at a time, verdict,
  lineage, aliases, promote (the server's gate), approve, roll back;
- ``blobs/{digest}``: content-addressed bytes, streamed up (checked against the digest) and
  down.

Bodies and answers are JSON (:mod:`loopml.client.wire`); errors are MLflow's shape plus
``error_class``, the :class:`~loopml.exceptions.LoopmlError` the client raises again.
Every route asks ``ctx.access`` first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The routes of loopml's API (mounted under ``/api/loopml`` by the app)."""
    from loopml.server.api import blobs, experiments, models, runs

    return [
        *runs.routes(ctx),
        *experiments.routes(ctx),
        *models.routes(ctx),
        *blobs.routes(ctx),
    ]
