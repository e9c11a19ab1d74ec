"""The examples in the RAG package's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "loopml.llm.rag.spans",
    "loopml.llm.rag.corpus",
    "loopml.llm.rag.quality",
    "loopml.llm.rag.judges",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
