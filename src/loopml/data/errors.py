"""Errors of data versioning, each under the :mod:`loopml.exceptions` base callers catch::

    NotFound
    └── DataNotFound          the path, its pointer file, or the pointer in a git revision
    InvalidInput (ValueError)
    └── InvalidPointer        a pointer file that is not what ``loopml data add`` wrote
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


class InvalidPointer(InvalidInput):
    """A ``*.loopml`` pointer file is corrupted, edited by hand, or disagrees with its manifest."""


class UncommittedChanges(Conflict):
    """Checkout would overwrite or delete files whose content is in no cached version."""
