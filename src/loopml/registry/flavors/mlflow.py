"""MLflow model directories (an ``MLmodel`` file and the files it names), as the MLflow
client logs them: a version registered through ``loopml server``'s MLflow API is one.

Loading: with the ``mlflow`` package importable (``mlflow-skinny`` is enough) the folder is
loaded with ``mlflow.pyfunc.load_model``, so every MLflow flavor predicts as it does under
MLflow. Without it, a model with the ``sklearn`` flavor is unpickled directly (pickle or
cloudpickle, as ``MLmodel`` says); any other flavor needs MLflow installed
(:class:`~loopml.exceptions.MissingDependency`).

Such a package is never made from a Python object (``ws.models.register``): it is registered
from its files, :func:`loopml.registry.trees.register_files`.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidInput, MissingDependency, ModelFilesMissing

MLMODEL = "MLmodel"

#: MLflow's column types → the NumPy dtype names loopml's signatures use.
_COLUMN_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """The ``MLmodel`` file of an MLflow model folder, parsed; :class:`InvalidInput` when it
    is missing or not a YAML mapping."""
    import yaml

    path = folder / MLMODEL
    if not path.is_file():
        raise InvalidInput(
            f"{folder} is not an MLflow model: it has no {MLMODEL} file "
            "(log the model with mlflow.<flavor>.log_model)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise InvalidInput(f"{path} has no 'flavors' mapping: not an MLflow model file")
    return data


def signature_of(mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    """The MLmodel's input/output schema as a loopml signature dict (``Signature.from_dict``),
    or None when it has none or it is not column- or 2-d tensor-based.

    >>> signature_of({"signature": {"inputs": '[{"type": "double", "name": "x"}]',
    ...                              "outputs": '[{"type": "long"}]'}})
    {'inputs': [{'name': 'x', 'dtype': 'float64'}], 'outputs': [{'name': 'prediction', 'dtype': 'int64'}]}
    """
    raw = mlmodel.get("signature")
    if not isinstance(raw, dict) or not raw.get("inputs"):
        return None
    try:
        inputs = _schema(raw["inputs"], "input")
        outputs = _schema(raw["outputs"], "prediction") if raw.get("outputs") else []
    except (ValueError, TypeError, KeyError):
        return None
    if inputs is None or outputs is None:
        return None
    return {"inputs": inputs, "outputs": outputs}


def _schema(text: str, default: str) -> list[dict[str, str]] | None:
    specs = json.loads(text) if isinstance(text, str) else text
    out: list[dict[str, str]] = []
    for spec in specs:
        if spec.get("type") == "tensor":
            tensor = spec["tensor-spec"]
            shape = tensor.get("shape") or []
            if len(specs) != 1 or len(shape) != 2 or shape[1] < 0:
                return [{"name": spec.get("name") or default, "dtype": tensor["dtype"]}]
            return [{"name": f"[{i}]", "dtype": tensor["dtype"]} for i in range(shape[1])]
        dtype = _COLUMN_TYPES.get(spec.get("type", ""))
        if dtype is None:
            return None
        out.append({"name": spec.get("name") or default, "dtype": dtype})
    return out


class MlflowFlavor:
    """A folder MLflow's client logged; loaded through MLflow's pyfunc when it is installed."""

    name = "mlflow"
    libraries: tuple[str, ...] = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")

    def matches(self, model: Any) -> bool:
        return False  # a Python object is never saved as an MLflow folder by loopml

    def save(self, model: Any, folder: Path, artifacts: dict[str, str]) -> dict[str, Any]:
        raise InvalidInput(
            "loopml does not write MLflow model folders; register the files MLflow logged "
            "(loopml.registry.trees.register_files) or the model object itself"
        )

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        model_dir = folder / meta.get("path", "")
        mlmodel = read_mlmodel(model_dir)
        try:
            import mlflow.pyfunc
        except ImportError:
            return self._load_without_mlflow(model_dir, mlmodel)
        return mlflow.pyfunc.load_model(str(model_dir))

    def _load_without_mlflow(self, model_dir: Path, mlmodel: dict[str, Any]) -> Any:
        sklearn = mlmodel["flavors"].get("sklearn")
        if not isinstance(sklearn, dict):
            flavors = ", ".join(sorted(mlmodel["flavors"]))
            raise MissingDependency(
                f"This MLflow model has the flavors {flavors}; loading it needs MLflow: "
                "pip install mlflow-skinny"
            )
        fmt = sklearn.get("serialization_format", "cloudpickle")
        path = model_dir / str(sklearn.get("pickled_model", "model.pkl"))
        if not path.is_file():
            raise ModelFilesMissing(f"The MLflow model's pickle {path.name} is not in its files")
        if fmt == "cloudpickle":
            import cloudpickle

            with path.open("rb") as fh:
                return cloudpickle.load(fh)
        if fmt == "pickle":
            with path.open("rb") as fh:
                return pickle.load(fh)
        raise MissingDependency(
            f"This scikit-learn model is serialized as {fmt!r}; loading it needs MLflow: "
            "pip install mlflow-skinny"
        )
