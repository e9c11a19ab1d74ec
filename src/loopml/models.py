"""Custom models for the registry: ``loopml.models.PythonModel`` and its ``ModelContext``."""

from loopml.registry.models import ModelContext, PythonModel

__all__ = ["ModelContext", "PythonModel"]
