"""Every error loopml raises on purpose is a :class:`LoopmlError`.

Callers catch by what happened, and the builtin each class mixes in keeps
ordinary ``except`` clauses working::

    LoopmlError
    ├── NotFound (LookupError)
    │   ├── WorkspaceNotFound
    │   ├── StoreNotFound
    │   ├── ExperimentNotFound
    │   ├── RunNotFound
    │   ├── ArtifactNotFound
    │   ├── BlobNotFound
    │   ├── ModelNotFound
    │   └── ModelVersionNotFound
    ├── Conflict
    │   ├── ParamConflict
    │   ├── RunNotActive
    │   ├── AlreadyExists
    │   └── PromotionBlocked
    ├── InvalidInput (ValueError)
    │   ├── InvalidKey
    │   ├── InvalidValue
    │   ├── InvalidFilter
    │   └── InvalidConfig
    ├── StoreUnavailable (OSError)
    ├── CorruptBlob
    ├── ModelFilesMissing
    └── MissingDependency (ImportError)

Messages say what happened and what to do about it.
"""

from __future__ import annotations


class LoopmlError(Exception):
    """Root of every error loopml raises on purpose."""

    exit_code = 1


class NotFound(LookupError, LoopmlError):
    """Something asked for by name or id does not exist."""

    def __str__(self) -> str:  # LookupError quotes a single arg; we want the plain message.
        return str(self.args[0]) if self.args else ""


class WorkspaceNotFound(NotFound):
    """No ``loopml.toml`` above the current directory and no store URL configured."""


class StoreNotFound(NotFound):
    """The metadata store the settings name does not exist (and this command won't create it)."""


class ExperimentNotFound(NotFound):
    """No experiment with that name or id."""


class RunNotFound(NotFound):
    """No run with that id."""


class ArtifactNotFound(NotFound):
    """The run has no artifact at that path."""


class BlobNotFound(NotFound):
    """The blob store holds no object with that digest."""


class ModelNotFound(NotFound):
    """No registered model with that name."""


class ModelVersionNotFound(NotFound):
    """The model has no such version, alias or stage."""


class Conflict(LoopmlError):
    """The request contradicts what the store already holds."""


class ParamConflict(Conflict):
    """A param is immutable: the same key was logged again with another value."""


class RunNotActive(Conflict):
    """The run has ended (or is not running), so nothing more can be logged to it."""


class AlreadyExists(Conflict):
    """An object with that name exists already."""


class PromotionBlocked(Conflict):
    """The promotion gate failed (or awaits approval); ``verdict`` holds every check."""

    def __init__(self, message: str, verdict: object = None) -> None:
        super().__init__(message)
        self.verdict = verdict


class InvalidInput(ValueError, LoopmlError):
    """An argument is malformed."""


class InvalidKey(InvalidInput):
    """A param, metric, tag or artifact key is empty, too long or has illegal characters."""


class InvalidValue(InvalidInput):
    """A value has the wrong type or is too long."""


class InvalidFilter(InvalidInput):
    """A search filter or order-by does not parse; the message points at the offending token."""

    def __init__(self, message: str, text: str = "", position: int | None = None) -> None:
        self.text = text
        self.position = position
        if text and position is not None:
            message = f"{message}\n  {text}\n  {' ' * position}^"
        super().__init__(message)


class InvalidConfig(InvalidInput):
    """``loopml.toml`` or a ``LOOPML_*`` variable holds a value loopml can't use."""


class StoreUnavailable(OSError, LoopmlError):
    """The metadata database or the blob store could not be reached or stayed locked."""


class CorruptBlob(LoopmlError):
    """A blob's bytes no longer match the digest they are stored under."""


class ModelFilesMissing(LoopmlError):
    """A registered model's files are gone from, or corrupted in, the blob store."""


class MissingDependency(ImportError, LoopmlError):
    """An optional package is needed for this feature; the message gives the install command."""


def missing_dependency(package: str, extra: str, feature: str) -> MissingDependency:
    """Build the error for an optional import that failed."""
    return MissingDependency(
        f"{feature} needs the '{package}' package, which is not installed. "
        f"Install it with: pip install 'loopml[{extra}]'"
    )


class LoopmlWarning(UserWarning):
    """A warning from loopml (e.g. a library version differs from the recorded one)."""
