"""The examples in the cache's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "loopml.llm.cache.config",
    "loopml.llm.cache.request",
    "loopml.llm.cache.embedders",
    "loopml.llm.cache.entities",
    "loopml.llm.cache.index",
    "loopml.llm.cache.stream",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
