"""Errors of data versioning, each under the :mod:`loopml.exceptions` base callers catch::

    NotFound
    └── DataNotFound          the path, its pointer file, or the pointer in a git revision
        ├── RevisionNotFound  ``--rev`` names no commit of the git repository
        └── NotInRevision     the revision exists but holds no such pointer file
    InvalidInput (ValueError)
    ├── InvalidPointer        a pointer file that is not what ``loopml data add`` wrote
    └── LinkNotFollowed       a symbolic link that leads out of the workspace, or that a
                              checkout would have to write through
    Conflict
    └── UncommittedChanges    checkout would discard data that is in no version

A cache object whose bytes no longer match its digest raises
:class:`loopml.exceptions.CorruptBlob`, a missing one :class:`loopml.exceptions.BlobNotFound`,
an unreachable remote :class:`loopml.exceptions.StoreUnavailable`.
"""

from __future__ import annotations

from loopml.exceptions import Conflict, InvalidInput, NotFound


class DataNotFound(NotFound):
    """No such data path, pointer file, or pointer file in that git revision."""


class RevisionNotFound(DataNotFound):
    """``--rev`` names no commit (or tree) of the git repository."""


class NotInRevision(DataNotFound):
    """The git revision exists, but the pointer file is not in it (added later, or removed)."""


class InvalidPointer(InvalidInput):
    """A ``*.loopml`` pointer file is corrupted, edited by hand, or disagrees with its manifest."""


class LinkNotFollowed(InvalidInput):
    """A data path is a symbolic link (or is reached through one) that loopml won't follow:
    it leads out of the workspace, or a checkout would have to write through it."""


class UncommittedChanges(Conflict):
    """Checkout would overwrite or delete files whose content is in no cached version."""
