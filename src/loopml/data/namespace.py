"""``ws.data``: the data-versioning functions of :mod:`loopml.data`, on one workspace.

ws.data.add("data/raw")          # == loopml.data.add("data/raw", workspace=ws)
ws.data.status()
"""

from __future__ import annotations

from loopml.data.changes import status
from loopml.data.collect import gc
from loopml.data.integrity import verify
from loopml.data.remotes import add_remote, list_remotes, remove_remote, set_default_remote
from loopml.data.restore import checkout, open_version, unprotect
from loopml.data.transfer import pull, push
from loopml.data.versions import add
from loopml.namespaces import Namespace, WithWorkspace


class Data(Namespace):
    """Versioned data in one workspace; each method is the :mod:`loopml.data` function of
    the same name with ``workspace=`` filled in."""

    add = WithWorkspace(add)
    status = WithWorkspace(status)
    checkout = WithWorkspace(checkout)
    unprotect = WithWorkspace(unprotect)
    open = WithWorkspace(open_version)
    push = WithWorkspace(push)
    pull = WithWorkspace(pull)
    gc = WithWorkspace(gc)
    verify = WithWorkspace(verify)
    list_remotes = WithWorkspace(list_remotes)
    add_remote = WithWorkspace(add_remote)
    remove_remote = WithWorkspace(remove_remote)
    set_default_remote = WithWorkspace(set_default_remote)
