"""The feature store's errors, each a :class:`~loopml.exceptions.LoopmlError`::

NotFound
├── FeatureNotFound         a view, feature or service that is not defined (names close ones)
└── SourceNotFound          a view's source file, glob or table that is not there
InvalidInput
├── FeatureDefinitionError  a definition that cannot work (bad field type, no join key, ...)
└── InvalidEntityFrame      an entity frame without a join key or timestamp column, or with
                            timestamps that can't be read
StoreUnavailable
└── OnlineStoreUnavailable  the online store (Redis, SQLite file) cannot be reached
"""

from __future__ import annotations

from loopml.exceptions import InvalidInput, LoopmlError, NotFound, StoreUnavailable


class FeatureNotFound(NotFound):
    """A feature view, feature, or feature service that is not defined."""


class SourceNotFound(NotFound):
    """A view's source (file, glob, table) is not there."""


class FeatureDefinitionError(InvalidInput):
    """A feature definition that can't work."""


class InvalidEntityFrame(InvalidInput):
    """An entity frame the store can't join on."""


class OnlineStoreUnavailable(StoreUnavailable):
    """The online store can't be reached."""


class MaterializationFailed(LoopmlError):
    """Some partitions of a materialization failed; the DONE ones are kept, so running the
    same materialization again does only the rest."""
