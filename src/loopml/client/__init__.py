"""loopml's own client of a loopml server: a workspace whose store URL is ``http(s)://``.

    LOOPML_TRACKING_URI=http://127.0.0.1:5000 python train.py      # or [store] url = "http://…"
    ws = Workspace.open("http://127.0.0.1:5000")                     # or explicitly

``ws.runs``, ``ws.experiments`` and ``ws.models`` are then :class:`RemoteRuns`,
:class:`RemoteExperiments` and :class:`RemoteModels`: the same methods as locally, sent to
the server's ``/api/loopml`` endpoints. ``LOOPML_TOKEN`` is sent as ``Authorization: Bearer``.
Metrics are queued and sent in batches by a background thread; whatever can't be sent
while the server is away waits in a spool on disk and is sent in order later
(:mod:`loopml.client.spool` says where it lives). Areas the server does not serve yet raise
:class:`NotServed`.
"""

from loopml.client.errors import NotServed, ServerUnreachable, Unauthorized
from loopml.client.models import RemoteModels
from loopml.client.runs import RemoteExperiments, RemoteRun, RemoteRuns
from loopml.client.session import Session, forget_sessions, session_for
from loopml.client.spool import SPOOL_ENV, spool_folder

__all__ = [
    "SPOOL_ENV",
    "NotServed",
    "RemoteExperiments",
    "RemoteModels",
    "RemoteRun",
    "RemoteRuns",
    "ServerUnreachable",
    "Session",
    "Unauthorized",
    "forget_sessions",
    "session_for",
    "spool_folder",
]
