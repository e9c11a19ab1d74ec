"""The model registry: versions with signatures and lineage, stages and aliases, a
promotion gate that scores candidate and champion on the same holdout, rollback, and an
append-only history that answers "what was in Production then"."""

from loopml.registry.api import RegistryAPI
from loopml.registry.gates import CheckResult, GatePolicy, Verdict
from loopml.registry.models import ModelContext, PythonModel
from loopml.registry.signature import Signature, infer_signature
from loopml.registry.versions import ModelEvent, ModelRef, ModelVersion

__all__ = [
    "CheckResult",
    "GatePolicy",
    "ModelContext",
    "ModelEvent",
    "ModelRef",
    "ModelVersion",
    "PythonModel",
    "RegistryAPI",
    "Signature",
    "Verdict",
    "infer_signature",
]
