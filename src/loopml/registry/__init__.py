"""The model registry: versions with signatures and lineage, stages and aliases, a
promotion gate that scores candidate and champion on the same holdout, rollback, and an
append-only history that answers "what was in Production then".

Names are imported on first use, so opening a workspace (and every CLI command) does not
import pandas and NumPy for the gate until a gate runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.checks import CheckResult
    from loopml.registry.api import Models
    from loopml.registry.gates import GatePolicy, Verdict
    from loopml.registry.models import ModelContext, PythonModel
    from loopml.registry.signature import Signature, infer_signature
    from loopml.registry.versions import ModelEvent, ModelRef, ModelVersion

_LAZY = {
    "CheckResult": "loopml.checks",  # the one class; loopml.validation exports it too
    "GatePolicy": "loopml.registry.gates",
    "ModelContext": "loopml.registry.models",
    "ModelEvent": "loopml.registry.versions",
    "ModelRef": "loopml.registry.versions",
    "ModelVersion": "loopml.registry.versions",
    "PythonModel": "loopml.registry.models",
    "Models": "loopml.registry.api",
    "Signature": "loopml.registry.signature",
    "Verdict": "loopml.registry.gates",
    "infer_signature": "loopml.registry.signature",
}

__all__ = [
    "CheckResult",
    "GatePolicy",
    "ModelContext",
    "ModelEvent",
    "ModelRef",
    "ModelVersion",
    "PythonModel",
    "Models",
    "Signature",
    "Verdict",
    "infer_signature",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
