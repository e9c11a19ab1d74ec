"""The run-search filter language, parsed into a small AST (pure: no database here).

    metrics.accuracy > 0.9 and params.model = 'rf'
    (tags.team != 'a' or attributes.status IN ('FINISHED', 'RUNNING'))
    params.optimizer LIKE 'ad%' and metrics.`val loss` <= 0.2

Keys are ``metrics.*``, ``params.*``, ``tags.*`` or ``attributes.*`` (``run.`` works too); a
key with spaces or dots is quoted with backticks or double quotes. The SQL compiler in
``search.py`` turns the AST into bound parameters; values are never pasted into SQL.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from loopml.exceptions import InvalidFilter

Kind = Literal["metric", "param", "tag", "attribute"]

PREFIXES: dict[str, Kind] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}

ATTRIBUTES = {
    "run_id": "id",
    "id": "id",
    "name": "name",
    "run_name": "name",
    "status": "status",
    "start_time": "start_time",
    "end_time": "end_time",
    "experiment_id": "experiment_id",
    "parent_run_id": "parent_run_id",
}
NUMERIC_ATTRIBUTES = {"start_time", "end_time", "experiment_id"}

COMPARATORS = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[^\W\d]\w*(?:\.(?:`[^`]+`|"[^"]+"|[\w\-/:]+(?:\.[\w\-/:]+)*))?)
    """,
    re.VERBOSE | re.IGNORECASE,
)

KEYWORDS = {"and", "or", "not", "in", "like", "ilike", "is", "null"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Key:
    kind: Kind
    name: str


@dataclass(frozen=True)
class Comparison:
    key: Key
    op: str  # = != < <= > >= like ilike in not in is null / is not null
    value: str | float | tuple[str | float, ...] | None


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    items: tuple[Expr, ...]


Expr = Comparison | BoolOp


@dataclass(frozen=True)
class OrderBy:
    key: Key
    descending: bool


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidFilter(f"Unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "ident" and word.lower() in KEYWORDS:
                kind = word.lower()
            tokens.append(Token(kind, word, pos))
        pos = m.end()
    return tokens


def _unquote_string(raw: str) -> str:
    body = raw[1:-1]
    if raw[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def parse_key(token: Token, text: str) -> Key:
    if "." not in token.text:
        raise InvalidFilter(
            f"{token.text!r} needs a prefix: metrics.{token.text}, params.{token.text}, "
            f"tags.{token.text} or attributes.{token.text}",
            text,
            token.pos,
        )
    prefix, name = token.text.split(".", 1)
    kind = PREFIXES.get(prefix.lower())
    if kind is None:
        hint = difflib.get_close_matches(prefix.lower(), PREFIXES, n=1)
        extra = f" Did you mean {hint[0]!r}?" if hint else ""
        raise InvalidFilter(
            f"Unknown key prefix {prefix!r}: use metrics., params., tags. or attributes.{extra}",
            text,
            token.pos,
        )
    if name[:1] in {"`", '"'}:
        name = name[1:-1]
    if kind == "attribute":
        column = ATTRIBUTES.get(name.lower())
        if column is None:
            raise InvalidFilter(
                f"Unknown attribute {name!r}; valid: {', '.join(sorted(set(ATTRIBUTES)))}",
                text,
                token.pos,
            )
        name = column
    return Key(kind, name)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise InvalidFilter(
                f"Filter ends early: expected {expected}", self.text, len(self.text)
            )
        self.i += 1
        return tok

    def error(self, message: str, tok: Token | None) -> InvalidFilter:
        return InvalidFilter(message, self.text, tok.pos if tok else len(self.text))

    def parse(self) -> Expr:
        if not self.tokens:
            raise InvalidFilter("The filter is empty", self.text, 0)
        expr = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise self.error(f"Unexpected {tok.text!r}: expected AND, OR or the end", tok)
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.i += 1
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_atom()]
        while (tok := self.peek()) is not None and tok.kind == "and":
            self.i += 1
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def parse_atom(self) -> Expr:
        tok = self.next("a comparison or '('")
        if tok.kind == "lparen":
            expr = self.parse_or()
            close = self.next("')'")
            if close.kind != "rparen":
                raise self.error(f"Expected ')' but found {close.text!r}", close)
            return expr
        if tok.kind != "ident":
            raise self.error(f"Expected a key like metrics.accuracy, found {tok.text!r}", tok)
        key = parse_key(tok, self.text)
        return self.parse_comparison(key, tok)

    def parse_comparison(self, key: Key, key_tok: Token) -> Comparison:
        tok = self.next("a comparison operator")
        negate = False
        if tok.kind == "not":
            negate = True
            tok = self.next("IN, LIKE or ILIKE after NOT")
            if tok.kind not in {"in", "like", "ilike"}:
                raise self.error(f"Expected IN, LIKE or ILIKE after NOT, found {tok.text!r}", tok)
        if tok.kind == "op":
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            value_tok = self.next("a value")
            value = self.value(value_tok)
            self.check(key, op, value, value_tok)
            return Comparison(key, op, value)
        if tok.kind in {"like", "ilike"}:
            value_tok = self.next("a quoted pattern")
            if value_tok.kind != "string":
                raise self.error(f"{tok.text.upper()} needs a quoted pattern", value_tok)
            op = ("not " if negate else "") + tok.kind
            if key.kind == "metric":
                raise self.error(f"{tok.text.upper()} does not apply to metrics", tok)
            return Comparison(key, op, _unquote_string(value_tok.text))
        if tok.kind == "in":
            open_tok = self.next("'('")
            if open_tok.kind != "lparen":
                raise self.error(
                    f"IN needs a parenthesised list, found {open_tok.text!r}", open_tok
                )
            values: list[str | float] = []
            while True:
                value_tok = self.next("a value")
                values.append(self.value(value_tok))
                self.check(key, "=", values[-1], value_tok)
                sep = self.next("',' or ')'")
                if sep.kind == "rparen":
                    break
                if sep.kind != "comma":
                    raise self.error(f"Expected ',' or ')' in the IN list, found {sep.text!r}", sep)
            return Comparison(key, "not in" if negate else "in", tuple(values))
        if tok.kind == "is":
            nxt = self.next("NULL or NOT NULL")
            if nxt.kind == "not":
                nxt = self.next("NULL")
                negate = True
            if nxt.kind != "null":
                raise self.error(f"Expected NULL, found {nxt.text!r}", nxt)
            return Comparison(key, "is not null" if negate else "is null", None)
        raise self.error(
            f"Expected an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS) after "
            f"{key_tok.text!r}, found {tok.text!r}",
            tok,
        )

    def value(self, tok: Token) -> str | float:
        if tok.kind == "string":
            return _unquote_string(tok.text)
        if tok.kind == "number":
            return tok.text
        raise self.error(f"Expected a quoted string or a number, found {tok.text!r}", tok)

    def check(self, key: Key, op: str, value: str | float, tok: Token) -> None:
        numeric = key.kind == "metric" or (
            key.kind == "attribute" and key.name in NUMERIC_ATTRIBUTES
        )
        if numeric:
            try:
                float(value)
            except ValueError:
                raise self.error(
                    f"{key.kind}s.{key.name} is numeric; {value!r} is not a number", tok
                ) from None
        elif op in {"<", "<=", ">", ">="} and key.kind in {"param", "tag"}:
            raise self.error(
                f"{op} does not apply to {key.kind}s (they are strings); use =, !=, LIKE or IN",
                tok,
            )


def parse_filter(text: str | None) -> Expr | None:
    """Parse a filter string; ``None`` or blank means no filter."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def parse_order_by(clauses: Sequence[str] | str | None) -> list[OrderBy]:
    """Parse ``["metrics.acc DESC", "attributes.start_time"]`` (default ascending)."""
    if clauses is None:
        return []
    if isinstance(clauses, str):
        clauses = [clauses]
    result: list[OrderBy] = []
    for clause in clauses:
        tokens = tokenize(clause)
        if not tokens or tokens[0].kind != "ident":
            raise InvalidFilter("order_by needs a key like metrics.accuracy", clause, 0)
        key = parse_key(tokens[0], clause)
        comma = next((tok for tok in tokens if tok.kind == "comma"), None)
        if comma is not None:
            raise InvalidFilter(
                "One key per order-by clause: on the command line repeat -o/--order-by "
                "(-o 'metrics.acc DESC' -o 'params.lr'); in Python pass a list "
                "(order_by=['metrics.acc DESC', 'params.lr'])",
                clause,
                comma.pos,
            )
        descending = False
        if len(tokens) > 1:
            direction = tokens[1].text.upper()
            if direction not in {"ASC", "DESC"}:
                raise InvalidFilter(
                    f"Expected ASC or DESC after {tokens[0].text}, got {tokens[1].text!r}",
                    clause,
                    tokens[1].pos,
                )
            if len(tokens) > 2:
                raise InvalidFilter(
                    f"Unexpected {tokens[2].text!r} after {direction}: one key per order-by "
                    "clause; on the command line repeat -o/--order-by, in Python pass a list",
                    clause,
                    tokens[2].pos,
                )
            descending = direction == "DESC"
        result.append(OrderBy(key, descending))
    return result
