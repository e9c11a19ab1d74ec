"""MLflow's search filters for registered models, model versions and logged models (pure):
clauses joined by ``AND``, each ``name``, ``run_id``, ``source_path``, ``version_number`` or
``tags.<key>`` with ``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IN (...)``, ``NOT IN (...)`` or a
comparison; sorting and page tokens over the matching records.

    clauses = parse_filter("name LIKE 'churn%' AND tags.team = 'ml'", fields)
    found = [r for r in records if matches(r, clauses)]
    rows, token = page(sort_records(found, order_by, default), max_results, page_token)
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loopml.exceptions import InvalidInput

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<ident>(?:`[^`]+`|[A-Za-z_]\w*)(?:\.(?:`[^`]+`|\w+))*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    """One ``field op value`` of a filter; ``field`` is ``name``, ``tags.<key>``, ...."""

    field: str
    op: str
    value: Any


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse_filter(
    text: str | None, fields: Iterable[str], prefixes: Iterable[str] = ("tags",)
) -> list[Clause]:
    """Parse an MLflow search filter into clauses (joined by AND): ``fields`` are the plain
    names it may use, ``prefixes`` the dict-valued ones (``tags.<key>``, ``params.<key>``).

    >>> parse_filter("name LIKE 'churn%' and tags.team = 'ml'", ["name"])
    [Clause(field='name', op='LIKE', value='churn%'), Clause(field='tags.team', op='=', value='ml')]
    >>> parse_filter("run_id IN ('a', 'b')", ["run_id"])
    [Clause(field='run_id', op='IN', value=('a', 'b'))]
    """
    allowed = set(fields)
    groups = tuple(prefixes)
    if not text or not text.strip():
        return []
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidInput(
                f"Invalid filter {text!r}: can't read it at position {pos}: {text[pos : pos + 20]!r}"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    clauses: list[Clause] = []
    i = 0

    def want(ok: bool, what: str) -> None:
        if not ok:
            got = tokens[i][1] if i < len(tokens) else "the end"
            raise InvalidInput(f"Invalid filter {text!r}: expected {what}, got {got!r}")

    while True:
        want(i < len(tokens) and tokens[i][0] == "ident", "a field such as name or tags.<key>")
        field = tokens[i][1].replace("`", "")
        head, dot, key = field.partition(".")
        head = head.lower()
        if dot and (head in groups or head + "s" in groups) and key:
            field = f"{head if head in groups else head + 's'}.{key}"
        elif field.lower() in allowed:
            field = field.lower()
        else:
            known = [*sorted(allowed), *(f"{g}.<key>" for g in groups)]
            raise InvalidInput(
                f"Invalid filter {text!r}: unknown field {field!r}; use {', '.join(known)}"
            )
        i += 1
        want(i < len(tokens), "an operator")
        kind, word = tokens[i]
        op = word.upper()
        if kind == "ident" and op == "NOT":
            i += 1
            want(i < len(tokens) and tokens[i][1].upper() == "IN", "IN after NOT")
            op = "NOT IN"
        elif kind == "op":
            op = "!=" if word == "<>" else word
        elif not (kind == "ident" and op in {"LIKE", "ILIKE", "IN"}):
            want(False, "=, !=, LIKE, ILIKE, IN or a comparison")
        i += 1
        value: Any
        if op in {"IN", "NOT IN"}:
            want(i < len(tokens) and tokens[i][1] == "(", "'(' and a list of values")
            i += 1
            items: list[Any] = []
            while True:
                want(i < len(tokens) and tokens[i][0] in {"str", "num"}, "a quoted value")
                kind, word = tokens[i]
                items.append(_unquote(word) if kind == "str" else word)
                i += 1
                want(i < len(tokens) and tokens[i][1] in {",", ")"}, "',' or ')'")
                i += 1
                if tokens[i - 1][1] == ")":
                    break
            value = tuple(items)
        else:
            want(i < len(tokens) and tokens[i][0] in {"str", "num"}, "a value")
            kind, word = tokens[i]
            value = _unquote(word) if kind == "str" else float(word)
            i += 1
        clauses.append(Clause(field, op, value))
        if i == len(tokens):
            return clauses
        want(tokens[i][0] == "ident" and tokens[i][1].upper() == "AND", "AND")
        i += 1


def _like(pattern: str, value: str, insensitive: bool) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return (
        re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if insensitive else re.DOTALL)
        is not None
    )


def matches(record: dict[str, Any], clauses: list[Clause]) -> bool:
    """Does ``record`` (field → value, ``tags`` a dict) satisfy every clause?

    >>> matches({"name": "churn", "tags": {}}, parse_filter("name ILIKE 'CH%'", ["name"]))
    True
    """
    for c in clauses:
        group, dot, key = c.field.partition(".")
        if dot and isinstance(record.get(group), dict):
            found = record[group].get(key)
        else:
            found = record.get(c.field)
        if found is None:
            if c.op in {"!=", "NOT IN"}:
                continue
            return False
        if isinstance(found, int | float) and not isinstance(found, bool):
            values = c.value if isinstance(c.value, tuple) else (c.value,)
            try:
                nums = [float(x) for x in values]
            except ValueError:
                raise InvalidInput(f"{c.field} is a number; compare it with numbers") from None
            ok = _compare(float(found), c.op, nums)
        else:
            text = str(found)
            if c.op == "LIKE":
                ok = _like(str(c.value), text, False)
            elif c.op == "ILIKE":
                ok = _like(str(c.value), text, True)
            elif c.op in {"IN", "NOT IN"}:
                ok = (text in {str(x) for x in c.value}) == (c.op == "IN")
            elif c.op in {"=", "!="}:
                ok = (text == _text(c.value)) == (c.op == "=")
            else:
                raise InvalidInput(f"{c.field} is text: compare it with =, !=, LIKE, ILIKE or IN")
        if not ok:
            return False
    return True


def _text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _compare(found: float, op: str, values: list[float]) -> bool:
    if op in {"IN", "NOT IN"}:
        return (found in values) == (op == "IN")
    if op in {"LIKE", "ILIKE"}:
        raise InvalidInput("LIKE compares text, not numbers")
    x = values[0]
    return {
        "=": found == x,
        "!=": found != x,
        "<": found < x,
        "<=": found <= x,
        ">": found > x,
        ">=": found >= x,
    }[op]


def sort_records(
    records: list[dict[str, Any]], order_by: list[str], fields: dict[str, str]
) -> list[dict[str, Any]]:
    """Sort by ``order_by`` (``"name ASC"``, ``"version_number DESC"``); ``fields`` maps the
    names MLflow accepts to record keys. Stable: later keys break ties of earlier ones."""
    keys: list[tuple[str, bool]] = []
    for item in order_by:
        parts = item.strip().split()
        if not parts:
            continue
        name = parts[0].replace("`", "")
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        if name not in fields or direction not in {"ASC", "DESC"} or len(parts) > 2:
            raise InvalidInput(
                f"Invalid order_by {item!r}: use one of {', '.join(sorted(fields))} "
                "with ASC or DESC"
            )
        keys.append((fields[name], direction == "DESC"))
    out = list(records)
    for key, desc in reversed(keys):
        out.sort(key=_sort_key(key), reverse=desc)
    return out


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    def get(record: dict[str, Any]) -> tuple[bool, Any]:
        value = record.get(key)
        return (value is None, value)

    return get


def page(
    records: list[dict[str, Any]], max_results: int, token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``records`` and the token of the next (None on the last page)."""
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(
                f"Invalid page_token {token!r}: pass the one a search returned"
            ) from None
    chunk = records[offset : offset + max_results]
    more = offset + max_results < len(records)
    next_token = (
        base64.urlsafe_b64encode(json.dumps({"offset": offset + max_results}).encode()).decode()
        if more
        else None
    )
    return chunk, next_token


# -- reading loopml's records in MLflow's shapes ---------------------------------------------
