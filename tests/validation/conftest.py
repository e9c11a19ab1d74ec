"""Factories for validation tests: realistic frames generated with numpy, fixed seeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

COUNTRIES = ["DE", "FR", "US"]


def _make_frame(n: int = 1_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "user_id": rng.permutation(n) + 1_000,
            "age": rng.integers(18, 90, n),
            "income": income,
            "score": rng.random(n),
            "country": pd.Series(rng.choice(COUNTRIES, n), dtype="str"),
            "email": pd.Series([f"user{i}@example.com" for i in range(n)], dtype="str"),
            "plan": pd.Categorical(rng.choice(["free", "pro"], n)),
            "active": rng.random(n) < 0.5,
            "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
        }
    )


@pytest.fixture
def make_frame() -> Callable[..., pd.DataFrame]:
    """``make_frame(n=1000, seed=0)`` → a mixed-dtype frame that passes ``make_schema()``."""
    return _make_frame


@pytest.fixture
def make_schema() -> Callable[..., Any]:
    """``make_schema(**overrides)`` → the hand-written contract of ``make_frame`` frames."""
    from loopml.validation import Column, Schema

    def make(**options: Any) -> Schema:
        columns = {
            "user_id": Column(dtype="int", nullable=False, unique=True, min=0),
            "age": Column(dtype="int", nullable=False, min=18, max=120),
            "income": Column(dtype="float", nullable=True, min=0),
            "score": Column(dtype="float", nullable=False, min=0.0, max=1.0),
            "country": Column(dtype="string", nullable=False, allowed=COUNTRIES),
            "email": Column(dtype="string", nullable=False, regex=r"[a-z0-9]+@[a-z]+\.com"),
            "plan": Column(dtype="category", allowed=["free", "pro"]),
            "active": Column(dtype="bool", nullable=False),
            "signup": Column(dtype="datetime", min="2024-01-01", max="2025-01-01"),
        }
        columns.update(options.pop("columns", {}))
        return Schema(columns, **options)

    return make
