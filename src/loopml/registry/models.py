"""The generic python-function model: subclass :class:`PythonModel` for anything that
isn't a scikit-learn estimator.

    class Ensemble(loopml.models.PythonModel):
        def load_context(self, context):
            self.weights = json.loads(Path(context.artifacts["weights"]).read_text())
        def predict(self, model_input):
            return model_input["x"] * self.weights["a"]
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelContext:
    """What a loaded model gets: local paths of the artifacts it was registered with."""

    artifacts: dict[str, str] = field(default_factory=dict)


class PythonModel(abc.ABC):
    """Base class for custom models: override ``predict`` (and ``load_context`` if needed)."""

    def load_context(self, context: ModelContext) -> None:  # noqa: B027 - optional hook
        """Called once after loading, with the local paths of the model's artifacts."""

    @abc.abstractmethod
    def predict(self, model_input: Any) -> Any:
        """Return predictions for ``model_input`` (usually a pandas DataFrame)."""
