"""Generic python-function models (``PythonModel`` subclasses or any object with
``predict``), saved with cloudpickle so classes defined in a script load elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from loopml.registry.models import ModelContext, PythonModel


class PyFuncFlavor:
    name = "python_function"
    libraries: tuple[str, ...] = ("cloudpickle", "numpy", "pandas")

    def matches(self, model: Any) -> bool:
        return isinstance(model, PythonModel) or callable(getattr(model, "predict", None))

    def save(self, model: Any, folder: Path, artifacts: dict[str, str]) -> dict[str, Any]:
        import cloudpickle

        with (folder / "model.pkl").open("wb") as fh:
            cloudpickle.dump(model, fh)
        stored: dict[str, str] = {}
        for name, source in artifacts.items():
            src = Path(source)
            dest = folder / "artifacts" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest)
            else:
                shutil.copyfile(src, dest)
            stored[name] = f"artifacts/{name}"
        return {"file": "model.pkl", "artifacts": stored}

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        import cloudpickle

        with (folder / meta.get("file", "model.pkl")).open("rb") as fh:
            model = cloudpickle.load(fh)
        if isinstance(model, PythonModel):
            paths = {k: str(folder / v) for k, v in meta.get("artifacts", {}).items()}
            model.load_context(ModelContext(artifacts=paths))
        return model
