"""The demo's deliberately bad candidate."""

from __future__ import annotations

from typing import Any

from loopml.registry import PythonModel


class RaisesInTheSouth(PythonModel):
    """A good model, except that it raises on any customer in the south (a case it was never
    tested on): the canary controller must roll it back."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, model_input: Any) -> Any:
        if (model_input["region"] == "south").any():
            raise ValueError("region 'south': this version was never tested on such rows")
        return self.model.predict(model_input)
