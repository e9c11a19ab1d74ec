"""The team server: MLflow's REST API, loopml's own API and the web UI over one workspace.

    loopml server --port 5000                     # SQLite + local files, as the workspace says
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python train.py

:func:`loopml.server.app.create_app` builds the Starlette app. Each area mounts its routes
from its own module, listed in :data:`loopml.server.app.ROUTES`; the server's own parts:

    app.py        the app: routes collected per area, /health, /metrics, size limits
    context.py    what every route gets: the workspace, the settings, the access checks
    errors.py     MLflow's JSON error shape and the codes loopml's errors map to
    settings.py   the [server] section of loopml.toml

Importing this package imports nothing heavy (``loopml.config`` reads its settings).
"""

from __future__ import annotations

__all__: list[str] = []
