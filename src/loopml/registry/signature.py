"""Model signatures: the input columns and dtypes a model expects, and what it returns.
Inferred from an input example; compared when a version replaces the Production one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Signature:
    inputs: tuple[tuple[str, str], ...]  # (column, dtype); for arrays: (f"[{i}]", dtype)
    outputs: tuple[tuple[str, str], ...]

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": n, "dtype": d} for n, d in self.inputs],
            "outputs": [{"name": n, "dtype": d} for n, d in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple((i["name"], i["dtype"]) for i in data.get("inputs", [])),
            outputs=tuple((o["name"], o["dtype"]) for o in data.get("outputs", [])),
        )


def _describe(value: Any, default_name: str) -> tuple[tuple[str, str], ...]:
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return tuple((str(c), str(t)) for c, t in value.dtypes.items())
    if isinstance(value, pd.Series):
        return ((str(value.name or default_name), str(value.dtype)),)
    array = np.asarray(value)
    if array.ndim == 2:
        return tuple((f"[{i}]", str(array.dtype)) for i in range(array.shape[1]))
    return ((default_name, str(array.dtype)),)


def infer_signature(input_example: Any, output_example: Any = None) -> Signature:
    outputs = _describe(output_example, "prediction") if output_example is not None else ()
    return Signature(inputs=_describe(input_example, "input"), outputs=outputs)


def compatibility_problems(candidate: Signature, current: Signature) -> list[str]:
    """Why ``candidate`` can't take ``current``'s traffic (empty when compatible)."""
    problems: list[str] = []
    current_types = dict(current.inputs)
    candidate_types = dict(candidate.inputs)
    missing = [c for c in current_types if c not in candidate_types]
    extra = [c for c in candidate_types if c not in current_types]
    if missing:
        problems.append(f"drops input columns {missing}")
    if extra:
        problems.append(f"needs new input columns {extra}")
    for column, dtype in candidate_types.items():
        if column in current_types and current_types[column] != dtype:
            problems.append(f"column {column!r} is {dtype}, Production has {current_types[column]}")
    return problems
