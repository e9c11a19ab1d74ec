"""Data versioning: DVC-style pointer files in git, bytes in the content-addressed cache.

::

    import loopml.data

    v = loopml.data.add("data/raw")           # DataVersion(path, hash, size, files)
    loopml.data.status("data/raw")            # [DataStatus(added=…, modified=…, deleted=…)]
    loopml.data.checkout("data/raw", rev="v1.0")
    loopml.data.push(remote="team"); loopml.data.pull("data/raw")
    with loopml.data.open("data/labels.csv", rev="HEAD~3") as fh: ...
    loopml.data.gc(force=True)
    loopml.data.verify()                      # hash every object again: finds bit rot

A version's hash is the BLAKE3 of the file, or of the folder's sorted manifest: the same hash
``log_input`` records on a run, so lineage joins on exact data. The same functions back the
``loopml data`` commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.data.changes import DataStatus, status
    from loopml.data.collect import GcResult, gc
    from loopml.data.errors import DataNotFound, InvalidPointer, UncommittedChanges
    from loopml.data.integrity import VerifyResult, verify
    from loopml.data.remotes import (
        Remote,
        add_remote,
        list_remotes,
        remove_remote,
        set_default_remote,
    )
    from loopml.data.restore import CheckoutResult, checkout, unprotect
    from loopml.data.restore import open_version as open
    from loopml.data.transfer import TransferResult, pull, push
    from loopml.data.versions import DataVersion, add

# Imported on first use: `loopml data status` loads only the modules status needs.
_LAZY = {
    "CheckoutResult": ("loopml.data.restore", "CheckoutResult"),
    "checkout": ("loopml.data.restore", "checkout"),
    "unprotect": ("loopml.data.restore", "unprotect"),
    "open": ("loopml.data.restore", "open_version"),
    "DataNotFound": ("loopml.data.errors", "DataNotFound"),
    "InvalidPointer": ("loopml.data.errors", "InvalidPointer"),
    "UncommittedChanges": ("loopml.data.errors", "UncommittedChanges"),
    "GcResult": ("loopml.data.collect", "GcResult"),
    "gc": ("loopml.data.collect", "gc"),
    "Remote": ("loopml.data.remotes", "Remote"),
    "add_remote": ("loopml.data.remotes", "add_remote"),
    "list_remotes": ("loopml.data.remotes", "list_remotes"),
    "remove_remote": ("loopml.data.remotes", "remove_remote"),
    "set_default_remote": ("loopml.data.remotes", "set_default_remote"),
    "DataStatus": ("loopml.data.changes", "DataStatus"),
    "status": ("loopml.data.changes", "status"),
    "TransferResult": ("loopml.data.transfer", "TransferResult"),
    "pull": ("loopml.data.transfer", "pull"),
    "push": ("loopml.data.transfer", "push"),
    "DataVersion": ("loopml.data.versions", "DataVersion"),
    "add": ("loopml.data.versions", "add"),
    "VerifyResult": ("loopml.data.integrity", "VerifyResult"),
    "verify": ("loopml.data.integrity", "verify"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'loopml.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = [
    "CheckoutResult",
    "DataNotFound",
    "DataStatus",
    "DataVersion",
    "GcResult",
    "InvalidPointer",
    "Remote",
    "TransferResult",
    "UncommittedChanges",
    "VerifyResult",
    "add",
    "add_remote",
    "checkout",
    "gc",
    "list_remotes",
    "open",
    "pull",
    "push",
    "remove_remote",
    "set_default_remote",
    "status",
    "unprotect",
    "verify",
]
