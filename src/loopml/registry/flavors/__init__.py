"""Model flavors: how a kind of model is saved to files and loaded back.

A flavor is a small seam: ``matches(model)``, ``save(model, folder) -> meta`` and
``load(folder, meta) -> model``; ``libraries`` names the packages whose versions are
recorded at registration and compared at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from loopml.exceptions import InvalidInput


class Flavor(Protocol):
    name: str
    libraries: tuple[str, ...]

    def matches(self, model: Any) -> bool: ...

    def save(self, model: Any, folder: Path, artifacts: dict[str, str]) -> dict[str, Any]: ...

    def load(self, folder: Path, meta: dict[str, Any]) -> Any: ...


def flavors() -> list[Flavor]:
    from loopml.registry.flavors.mlflow import MlflowFlavor
    from loopml.registry.flavors.pyfunc import PyFuncFlavor
    from loopml.registry.flavors.sklearn import SklearnFlavor

    # MlflowFlavor matches no Python object: it loads folders MLflow's client logged.
    return [SklearnFlavor(), PyFuncFlavor(), MlflowFlavor()]


def flavor_for(model: Any) -> Flavor:
    for flavor in flavors():
        if flavor.matches(model):
            return flavor
    kind = type(model).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise InvalidInput(
        f"Cannot register {article} {kind}: it is neither a scikit-learn-style estimator "
        "(fit/predict) nor a loopml.models.PythonModel, and has no predict method"
    )


def flavor_named(name: str) -> Flavor:
    for flavor in flavors():
        if flavor.name == name:
            return flavor
    raise InvalidInput(f"Unknown model flavor {name!r}; known: sklearn, python_function, mlflow")
