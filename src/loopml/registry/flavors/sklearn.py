"""scikit-learn (and anything with its fit/predict API), saved with pickle."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class SklearnFlavor:
    name = "sklearn"
    libraries: tuple[str, ...] = ("scikit-learn", "numpy", "scipy", "pandas")

    def matches(self, model: Any) -> bool:
        return callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))

    def save(self, model: Any, folder: Path, artifacts: dict[str, str]) -> dict[str, Any]:
        with (folder / "model.pkl").open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return {
            "file": "model.pkl",
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        with (folder / meta.get("file", "model.pkl")).open("rb") as fh:
            return pickle.load(fh)
