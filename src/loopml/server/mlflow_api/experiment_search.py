"""MLflow's experiment search: its filter (``name LIKE 'x%' AND tags.team = 'a'``) and order
over the few experiments a workspace has, in Python."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from loopml.server.mlflow_api.values import bad


def experiment_filter(text_: str | None) -> Callable[[dict[str, Any]], bool]:
    """MLflow's experiment filter (``name LIKE 'x%' AND tags.team = 'a'``, with
    ``creation_time`` / ``last_update_time`` comparisons) as a predicate."""
    if not text_ or not text_.strip():
        return lambda _e: True
    from loopml.tracking.filter import tokenize

    tokens = tokenize(text_)
    clauses: list[Callable[[dict[str, Any]], bool]] = []
    i = 0
    while i < len(tokens):
        if clauses:
            if tokens[i].kind != "and":
                raise bad(f"Invalid experiment filter {text_!r}: clauses are joined by AND.")
            i += 1
        if i + 3 > len(tokens):
            raise bad(f"Invalid experiment filter {text_!r}: expected key, operator, value.")
        key_tok, op_tok, value_tok = tokens[i], tokens[i + 1], tokens[i + 2]
        op = op_tok.text.lower()
        if op_tok.kind not in {"op", "like", "ilike"}:
            raise bad(f"Invalid experiment filter {text_!r}: unknown operator {op_tok.text!r}.")
        if value_tok.kind == "string":
            value: Any = value_tok.text[1:-1].replace("''", "'")
        elif value_tok.kind == "number":
            value = float(value_tok.text)
        else:
            raise bad(f"Invalid experiment filter {text_!r}: {value_tok.text!r} is not a value.")
        clauses.append(_experiment_clause(key_tok.text, op, value, text_))
        i += 3
    return lambda e: all(c(e) for c in clauses)


def _like(pattern: str, case: bool) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("^" + "".join(parts) + "$", 0 if case else re.IGNORECASE)


def _experiment_clause(
    key: str, op: str, value: Any, text_: str
) -> Callable[[dict[str, Any]], bool]:
    prefix, _, name = key.partition(".")
    if not name:
        prefix, name = "attribute", key
    name = name.strip('`"')
    prefix = prefix.lower()
    if prefix in {"attribute", "attributes", "attr"} and name in {
        "name",
        "creation_time",
        "last_update_time",
    }:

        def get(e: dict[str, Any]) -> Any:
            return e[name]
    elif prefix in {"tag", "tags"}:

        def get(e: dict[str, Any]) -> Any:
            return next((t["value"] for t in e["tags"] if t["key"] == name), None)
    else:
        raise bad(
            f"Invalid experiment filter {text_!r}: {key!r} is not name, creation_time, "
            "last_update_time or tags.<key>."
        )
    if op in {"like", "ilike"}:
        regex = _like(str(value), op == "like")
        return lambda e: (v := get(e)) is not None and regex.match(str(v)) is not None
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    fn = compare[op]

    def test(e: dict[str, Any]) -> bool:
        v = get(e)
        if v is None:
            return False
        try:
            return fn(type(value)(v), value)
        except (TypeError, ValueError):
            return False

    return test


def experiment_order(
    clauses: list[str],
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """MLflow's experiment order (``name``, ``experiment_id``, ``creation_time``,
    ``last_update_time``, each ASC or DESC); default: newest first, as MLflow."""
    fields: list[tuple[str, bool]] = []
    for clause in clauses:
        words = clause.split()
        if not words or len(words) > 2:
            raise bad(f"Invalid order_by clause {clause!r}.")
        field_ = words[0].split(".", 1)[-1].strip('`"')
        if field_ not in {"name", "experiment_id", "creation_time", "last_update_time"}:
            raise bad(
                f"Invalid order_by clause {clause!r}: order by name, experiment_id, "
                "creation_time or last_update_time."
            )
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in {"ASC", "DESC"}:
            raise bad(f"Invalid order_by clause {clause!r}: expected ASC or DESC.")
        fields.append((field_, direction == "DESC"))
    if not fields:
        fields = [("creation_time", True), ("experiment_id", False)]
    elif all(f != "experiment_id" for f, _ in fields):
        fields.append(("experiment_id", False))

    def sort_key(e: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for f, desc in fields:
            v: Any = int(e["experiment_id"]) if f == "experiment_id" else e[f]
            if isinstance(v, str):
                out.append(_Reverse(v) if desc else v)
            else:
                out.append(-v if desc else v)
        return tuple(out)

    return sort_key


class _Reverse:
    """A string that sorts backwards (DESC on a text field)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Reverse) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)
