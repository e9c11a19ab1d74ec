"""Checks of a whole text: a token limit, a JSON schema, groundedness in a context.

They judge an answer (or, for ``max_tokens``, a conversation) as a whole, so their rules
block or flag; there is no span to redact. In a stream they run once, on the whole answer,
when it ends.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from loopml.exceptions import InvalidConfig
from loopml.llm.guardrails.findings import Finding, TextCheck
from loopml.llm.guardrails.options import Options, load_function
from loopml.llm.tokens import count_messages, count_text


class MaxTokensCheck(TextCheck):
    """More tokens than ``limit`` (estimated with :mod:`loopml.llm.tokens`): a conversation
    at input, an answer at output."""

    name: ClassVar[str] = "max_tokens"
    options: ClassVar[tuple[str, ...]] = ("limit",)

    def __init__(self, options: Options) -> None:
        limit = options.integer("limit", None)
        if limit is None:
            raise InvalidConfig(f"{options.where}: the max_tokens detector needs limit = N")
        self.limit = limit

    def _finding(self, rule: str, tokens: int) -> list[Finding]:
        if tokens <= self.limit:
            return []
        return [Finding(rule, "max_tokens", 0, 0, 1.0, detail=f"{tokens} tokens > {self.limit}")]

    def check_messages(self, messages: Sequence[Mapping[str, Any]], rule: str) -> list[Finding]:
        return self._finding(rule, count_messages(messages))

    def check_text(self, text: str, rule: str, *, context: Any = None) -> list[Finding] | None:
        return self._finding(rule, count_text(text))


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


class JsonSchemaCheck(TextCheck):
    """An answer that is not JSON, or not valid for ``schema`` (a table in the policy) or
    ``schema_file`` (a path to a JSON Schema file). A ```json fence around the JSON is
    accepted. ``reask = true`` lets the gateway ask the model once more, with the error, before
    the rule's action applies (see :meth:`loopml.llm.guardrails.policy.Policy.check_output`)."""

    name: ClassVar[str] = "json_schema"
    options: ClassVar[tuple[str, ...]] = ("schema", "schema_file", "reask")
    stages: ClassVar[frozenset[str]] = frozenset({"output"})

    def __init__(self, options: Options) -> None:
        try:
            import jsonschema
        except ImportError as exc:
            from loopml.exceptions import MissingDependency

            raise MissingDependency(
                f"{options.where}: the json_schema detector needs the 'jsonschema' package, "
                "which is not installed. Install it with: pip install jsonschema"
            ) from exc
        if ("schema" in options) == ("schema_file" in options):
            raise InvalidConfig(
                f"{options.where}: the json_schema detector needs exactly one of schema = {{…}} "
                'or schema_file = "path/to/schema.json"'
            )
        if "schema" in options:
            schema = options.table["schema"]
            if not isinstance(schema, Mapping):
                raise options.fail("schema", f"must be a table (a JSON Schema), got {schema!r}")
            schema = json.loads(json.dumps(schema))
        else:
            path = Path(options.string("schema_file") or "").expanduser()
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise options.fail(
                    "schema_file", f"cannot read a JSON schema from {path}: {exc}"
                ) from None
        validator_class = jsonschema.validators.validator_for(schema)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "schema" if "schema" in options else "schema_file"
            raise options.fail(where, f"is not a valid JSON Schema: {exc.message}") from None
        self.schema = schema
        self.validator = validator_class(schema)
        self.reask = options.boolean("reask", False)

    def errors(self, text: str) -> list[tuple[str, str]]:
        """``(where, message)`` of each problem, for the findings and for a re-ask."""
        fenced = _FENCE.match(text)
        try:
            value = json.loads(fenced.group(1) if fenced else text)
        except ValueError as exc:
            return [("$", f"not JSON: {exc}")]
        problems = []
        for error in sorted(self.validator.iter_errors(value), key=lambda e: list(e.path)):
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
            problems.append((f"{path}: {error.validator}", f"{path}: {error.message}"))
        return problems

    def check_text(self, text: str, rule: str, *, context: Any = None) -> list[Finding] | None:
        return [
            Finding(rule, "invalid_json" if where == "$" else "schema_violation", 0, 0, 1.0,
                    detail=where if where != "$" else "not JSON")
            for where, _ in self.errors(text)
        ]  # fmt: skip


class GroundednessCheck(TextCheck):
    """An answer a function judges not grounded in its context. ``function`` names
    ``module:function(answer, context) -> float | bool``; a float under ``threshold`` (0.5)
    or False is a finding. Given no context (``check_output(text)`` without ``context=``),
    the rule does not apply."""

    name: ClassVar[str] = "groundedness"
    options: ClassVar[tuple[str, ...]] = ("function", "threshold")
    stages: ClassVar[frozenset[str]] = frozenset({"output"})

    def __init__(self, options: Options) -> None:
        self.spec = options.function("function", required=True) or ""
        self.threshold = options.number("threshold", 0.5, high=1.0)
        self._function: Callable[[str, Any], Any] | None = None

    def check_text(self, text: str, rule: str, *, context: Any = None) -> list[Finding] | None:
        if context is None:
            return None
        if self._function is None:
            self._function = load_function(self.spec)
        value = self._function(text, context)
        if isinstance(value, bool):
            score = 1.0 if value else 0.0
        elif isinstance(value, int | float) and math.isfinite(value):
            score = float(value)
        else:
            raise TypeError(f"{self.spec} returned {value!r}; it must return a number or a bool")
        if score >= self.threshold:
            return []
        return [
            Finding(rule, "ungrounded", 0, 0, 1.0 - score,
                    detail=f"groundedness {score:.3g} < {self.threshold:g}")
        ]  # fmt: skip
