"""Eval suites: cases (variables, an optional expected answer, assertions) and thresholds,
read from YAML or JSONL, inline or from a dataset file.

A YAML suite::

    name: support-smoke
    prompt: support/answer@staging      # the default of --prompt
    model: cheap                        # the default of --model
    params: {temperature: 0}            # added to every request
    judge_model: frontier               # the judges' model (default: the case's)
    thresholds: {min_pass_rate: 0.9, max_cost_per_case: 0.002}
    assert:                             # applied to every case
      - {type: latency, max_ms: 3000}
    cases:
      - id: greet
        variables: {question: "Hi?"}
        expected: "Hello"
        assert:
          - {type: contains}            # value defaults to the case's expected
          - {type: judge, rubric: "Polite and short"}
      - id: refund                      # a RAG case: the retrieved text is a variable
        variables: {question: "Refund?", context: "Refunds within 30 days."}
        assert: [{type: groundedness, threshold: 0.8}]   # context: NAME for another one
    dataset: more_cases.jsonl           # and/or cases from a file, one JSON object a line
    # dataset: {path: cases.jsonl, rev: v1.0}   a version kept by `loopml data add` (git rev)

A ``.jsonl`` suite is cases alone, one a line. A malformed case is an
:class:`~loopml.exceptions.InvalidInput` naming the file, the case and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidInput

#: Assertion types and the options each takes (besides ``type``, ``name`` and ``weight``).
ASSERTION_OPTIONS: dict[str, tuple[str, ...]] = {
    "exact": ("value", "ignore_case", "strip"),
    "contains": ("value", "ignore_case"),
    "not_contains": ("value", "ignore_case"),
    "regex": ("value", "flags"),
    "is_json": (),
    "json_schema": ("schema",),
    "numeric": ("value", "abs_tol", "rel_tol"),
    "similar": ("value", "threshold"),
    "latency": ("max_ms",),
    "cost": ("max_usd",),
    "judge": ("rubric", "prompt", "model", "threshold"),
    "pairwise": ("rubric", "against", "prompt", "model"),
    "groundedness": ("context", "question", "threshold", "prompt", "model"),
    "context_relevance": ("context", "question", "threshold", "prompt", "model"),
    "answer_relevance": ("context", "question", "threshold", "prompt", "model"),
}
#: The RAG judges (:mod:`loopml.llm.rag.judges`), and those of them judging the context.
RAG_TYPES = ("groundedness", "context_relevance", "answer_relevance")
_NEEDS_CONTEXT = ("groundedness", "context_relevance")
#: Options each type must have (``value`` may come from the case's ``expected`` instead).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "json_schema": ("schema",),
    "latency": ("max_ms",),
    "cost": ("max_usd",),
    "judge": ("rubric",),
    "pairwise": ("rubric",),
}
_NEEDS_VALUE = ("exact", "contains", "not_contains", "regex", "numeric", "similar")
THRESHOLDS = ("min_pass_rate", "max_cost_per_case", "max_latency_ms", "max_judge_errors")
_SUITE_KEYS = (
    "name",
    "description",
    "prompt",
    "model",
    "params",
    "judge_model",
    "thresholds",
    "assert",
    "cases",
    "dataset",
    "experiment",
)
_CASE_KEYS = ("id", "variables", "expected", "assert", "tags", "human")
#: A human's label of a case (for ``loopml evals calibrate``): did the answer deserve to pass.
_HUMAN = {True: True, False: False, "pass": True, "fail": False, "passed": True, "failed": False}


@dataclass(frozen=True)
class Assertion:
    """One check of a case's answer: ``type`` (see :data:`ASSERTION_OPTIONS`) and its
    options; ``name`` labels it in the summary (default: the type)."""

    type: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, **self.options}


@dataclass(frozen=True)
class Case:
    """One case: the prompt's ``variables``, an optional ``expected`` answer, its assertions
    (the suite's default assertions first)."""

    id: str
    variables: Mapping[str, Any]
    expected: Any = None
    assertions: tuple[Assertion, ...] = ()
    tags: tuple[str, ...] = ()
    #: A human's verdict on the answer (``human: pass``/``fail``), to calibrate judges.
    human: bool | None = None


@dataclass(frozen=True)
class Suite:
    """A named list of cases with the defaults of a run and its pass/fail thresholds."""

    name: str
    cases: tuple[Case, ...]
    prompt: str | None = None
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    judge_model: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    experiment: str | None = None
    #: The dataset file the cases came from, ``PATH@REV`` for a versioned one.
    dataset: str | None = None
    path: str | None = None
    digest: str = ""

    @property
    def assertion_names(self) -> list[str]:
        """Every assertion name used by some case, in first-use order."""
        seen: dict[str, None] = {}
        for case in self.cases:
            for a in case.assertions:
                seen.setdefault(a.name, None)
        return list(seen)


def _where(source: str, case: str | None = None, key: str | None = None) -> str:
    out = source
    if case is not None:
        out += f", case {case}"
    if key is not None:
        out += f", field {key!r}"
    return out


def parse_assertion(raw: Any, where: str, index: int, has_expected: bool) -> Assertion:
    """One assertion from its mapping; an error names ``where``, its index and the field."""
    here = f"{where}, assertion {index + 1}"
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{here}: an assertion is a mapping with a 'type', got {raw!r}")
    kind = raw.get("type")
    if kind not in ASSERTION_OPTIONS:
        import difflib

        close = difflib.get_close_matches(str(kind), list(ASSERTION_OPTIONS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidInput(
            f"{here}: unknown assertion type {kind!r}.{hint} Valid: {', '.join(ASSERTION_OPTIONS)}"
        )
    options = {k: v for k, v in raw.items() if k not in ("type", "name")}
    for key in options:
        if key not in ASSERTION_OPTIONS[kind]:
            valid = ", ".join(ASSERTION_OPTIONS[kind]) or "none"
            raise InvalidInput(f"{here} ({kind}): unknown field {key!r}; valid: {valid}")
    for key in _REQUIRED.get(kind, ()):
        if options.get(key) in (None, ""):
            raise InvalidInput(f"{here} ({kind}): field {key!r} is required")
    if kind in _NEEDS_VALUE and "value" not in options and not has_expected:
        raise InvalidInput(
            f"{here} ({kind}): field 'value' is required (or give the case an 'expected')"
        )
    _check_options(kind, options, here)
    name = raw.get("name") or kind
    if not isinstance(name, str):
        raise InvalidInput(f"{here}: field 'name' must be text, got {name!r}")
    return Assertion(type=kind, name=name, options=options)


def _number(value: Any, key: str, here: str, *, minimum: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise InvalidInput(f"{here}: field {key!r} must be a number ≥ {minimum}, got {value!r}")


def _check_options(kind: str, options: Mapping[str, Any], here: str) -> None:
    import re

    if kind == "regex" and "value" in options:
        try:
            re.compile(str(options["value"]))
        except re.error as exc:
            raise InvalidInput(f"{here} (regex): field 'value' is not a regex: {exc}") from None
    if kind == "json_schema":
        from jsonschema import SchemaError, validators

        schema = options["schema"]
        if not isinstance(schema, Mapping | bool):
            raise InvalidInput(f"{here} (json_schema): field 'schema' must be a JSON schema")
        try:
            validators.validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            raise InvalidInput(f"{here} (json_schema): invalid schema: {exc.message}") from None
    for key in ("abs_tol", "rel_tol", "max_ms", "max_usd"):
        if key in options:
            _number(options[key], key, f"{here} ({kind})")
    for key in ("threshold",):
        if key in options:
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidInput(
                    f"{here} ({kind}): field 'threshold' must be between 0 and 1, got {value!r}"
                )
    if kind in ("judge", "pairwise") and not isinstance(options["rubric"], str):
        raise InvalidInput(f"{here} ({kind}): field 'rubric' must be text")
    for key in ("against", "prompt", "model", "context", "question"):
        if key in options and not (isinstance(options[key], str) and options[key]):
            raise InvalidInput(f"{here} ({kind}): field {key!r} must be text")


def _check_rag_variables(assertion: Assertion, variables: Mapping[str, Any], here: str) -> None:
    """A RAG judge's case must hold the retrieved text (``context``, or the variable its
    ``context:`` names) and any ``question:`` variable it names."""
    if assertion.type not in RAG_TYPES:
        return
    options = assertion.options
    wanted = []
    if assertion.type in _NEEDS_CONTEXT or "context" in options:
        wanted.append(("context", str(options.get("context", "context"))))
    if "question" in options:
        wanted.append(("question", str(options["question"])))
    for role, name in wanted:
        if name not in variables:
            what = (
                "the retrieved text the answer is judged against"
                if role == "context"
                else ("the question")
            )
            raise InvalidInput(
                f"{here} ({assertion.type}): the case has no variable {name!r} ({what}); add "
                f"it to the case's variables, or name the variable that holds it with "
                f"'{role}:'."
            )


def parse_case(raw: Any, where: str, position: int, defaults: Sequence[Any] = ()) -> Case:
    """One case from its mapping; ``position`` (1-based) names it when it has no ``id``."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}, case #{position}: a case is a mapping, got {raw!r}")
    case_id = raw.get("id", f"#{position}")
    if not isinstance(case_id, str | int) or isinstance(case_id, bool) or str(case_id) == "":
        raise InvalidInput(f"{_where(where, f'#{position}', 'id')}: must be text, got {case_id!r}")
    case_id = str(case_id)
    label = f"{case_id!r}" if not case_id.startswith("#") else case_id
    for key in raw:
        if key not in _CASE_KEYS:
            raise InvalidInput(
                f"{_where(where, label, str(key))}: unknown field; valid: {', '.join(_CASE_KEYS)}"
            )
    variables = raw.get("variables", {})
    if not isinstance(variables, Mapping) or not all(isinstance(k, str) for k in variables):
        raise InvalidInput(
            f"{_where(where, label, 'variables')}: must be a mapping of variable names to "
            f"values, got {variables!r}"
        )
    has_expected = raw.get("expected") is not None
    asserts = raw.get("assert", [])
    if not isinstance(asserts, list):
        raise InvalidInput(f"{_where(where, label, 'assert')}: must be a list of assertions")
    parsed = [
        parse_assertion(a, _where(where, label), i, has_expected) for i, a in enumerate(asserts)
    ]
    own = [
        parse_assertion(a, _where(where, label), i, has_expected) for i, a in enumerate(defaults)
    ]
    for i, a in enumerate(own):
        _check_rag_variables(a, variables, f"{_where(where, label)}, assertion {i + 1}")
    for i, a in enumerate(parsed):
        _check_rag_variables(a, variables, f"{_where(where, label)}, assertion {i + 1}")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput(f"{_where(where, label, 'tags')}: must be a list of text")
    human = raw.get("human")
    if human is not None and not (
        isinstance(human, bool) or (isinstance(human, str) and human in _HUMAN)
    ):
        raise InvalidInput(
            f"{_where(where, label, 'human')}: a human label is pass or fail, got {human!r}"
        )
    return Case(
        id=case_id,
        human=None if human is None else _HUMAN[human],
        variables=dict(variables),
        expected=raw.get("expected"),
        assertions=(*own, *parsed),
        tags=tuple(tags),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"No suite file {str(path)!r}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder; give the suite's YAML or JSONL file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None


def _jsonl(text: str, source: str) -> list[Any]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{source}, line {number}: not JSON ({exc.msg})") from None
    return rows


def suite_from_dict(data: Any, source: str = "the suite", base: Path | None = None) -> Suite:
    """A suite from its mapping (as YAML holds it); ``base`` resolves ``dataset``."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: a suite is a mapping with 'cases' (or a JSONL of cases)")
    for key in data:
        if key not in _SUITE_KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), _SUITE_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidInput(
                f"{source}: unknown field {key!r}.{hint} Valid: {', '.join(_SUITE_KEYS)}"
            )
    defaults = data.get("assert", [])
    if not isinstance(defaults, list):
        raise InvalidInput(f"{source}: field 'assert' must be a list of assertions")
    raw_cases = data.get("cases", [])
    if not isinstance(raw_cases, list):
        raise InvalidInput(f"{source}: field 'cases' must be a list of cases")
    cases = [parse_case(c, source, i + 1, defaults) for i, c in enumerate(raw_cases)]
    dataset = data.get("dataset")
    dataset_ref: str | None = None
    if dataset is not None:
        rev = None
        if isinstance(dataset, Mapping):
            unknown = set(dataset) - {"path", "rev"}
            if unknown or not isinstance(dataset.get("path"), str):
                raise InvalidInput(
                    f"{source}: field 'dataset' is a file path, or {{path: ..., rev: ...}} "
                    "for a version of a file versioned with `loopml data add`"
                )
            rev = dataset.get("rev")
            if rev is not None and not isinstance(rev, str):
                raise InvalidInput(f"{source}: dataset.rev is a git revision (text), got {rev!r}")
            dataset = dataset["path"]
        if not isinstance(dataset, str):
            raise InvalidInput(f"{source}: field 'dataset' must be a file path")
        path = (base or Path.cwd()) / dataset
        rows = _dataset_rows(path, rev)
        dataset_ref = dataset if rev is None else f"{dataset}@{rev}"
        offset = len(cases)
        where = str(path) if rev is None else f"{path}@{rev}"
        cases += [parse_case(c, where, offset + i + 1, defaults) for i, c in enumerate(rows)]
    if not cases:
        raise InvalidInput(f"{source}: the suite has no cases ('cases:' or 'dataset:')")
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise InvalidInput(f"{source}, case {case.id!r}: field 'id' is used twice")
        seen.add(case.id)
    thresholds = data.get("thresholds", {}) or {}
    if not isinstance(thresholds, Mapping):
        raise InvalidInput(f"{source}: field 'thresholds' must be a mapping")
    for key, value in thresholds.items():
        if key not in THRESHOLDS:
            raise InvalidInput(
                f"{source}: unknown threshold {key!r}; valid: {', '.join(THRESHOLDS)}"
            )
        _number(value, key, f"{source}, thresholds")
    if "min_pass_rate" in thresholds and thresholds["min_pass_rate"] > 1:
        raise InvalidInput(f"{source}: thresholds.min_pass_rate is a share from 0 to 1")
    params = data.get("params", {}) or {}
    if not isinstance(params, Mapping):
        raise InvalidInput(f"{source}: field 'params' must be a mapping (temperature, …)")
    for key in ("name", "prompt", "model", "judge_model", "experiment"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidInput(f"{source}: field {key!r} must be text, got {data[key]!r}")
    digest = hashlib.blake2b(
        json.dumps(
            {
                "cases": [
                    [c.id, dict(c.variables), c.expected, [a.to_dict() for a in c.assertions]]
                    for c in cases
                ],
                "params": dict(params),
                "thresholds": dict(thresholds),
            },
            sort_keys=True,
            default=str,
        ).encode(),
        digest_size=16,
    ).hexdigest()
    return Suite(
        name=str(data.get("name") or Path(source).stem),
        cases=tuple(cases),
        prompt=data.get("prompt"),
        model=data.get("model"),
        params=dict(params),
        judge_model=data.get("judge_model"),
        thresholds={k: float(v) for k, v in thresholds.items()},
        experiment=data.get("experiment"),
        dataset=dataset_ref,
        path=source,
        digest=digest,
    )


def _dataset_rows(path: Path, rev: str | None = None) -> list[Any]:
    """The cases in ``path``; with ``rev``, in the version of it that git revision's
    ``loopml data`` pointer names (read from the data cache)."""
    if rev is None:
        text = _read(path)
    else:
        import loopml.data

        opened = loopml.data.open(path, rev=rev)
        if isinstance(opened, Path):
            raise InvalidInput(f"{path}@{rev} is a folder; a dataset is one file of cases")
        with opened as fh:
            try:
                text = fh.read().decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"{path}@{rev} is not UTF-8 text") from None
    if path.suffix.lower() == ".jsonl":
        return _jsonl(text, str(path))
    data = _yaml(text, str(path))
    if isinstance(data, Mapping) and "cases" in data:
        data = data["cases"]
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: a dataset is a list of cases (YAML/JSON) or JSONL")
    return data


def _yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidInput(f"{source} is not valid YAML{at}: {exc}") from None


def load_suite(path: str | Path) -> Suite:
    """The suite in ``path``: YAML (``.yaml``/``.yml``/``.json``) or JSONL (cases only).

    >>> suite = load_suite("evals/support.yaml")  # doctest: +SKIP
    >>> suite.name, len(suite.cases)  # doctest: +SKIP
    ('support-smoke', 40)
    """
    path = Path(path)
    text = _read(path)
    if path.suffix.lower() == ".jsonl":
        return suite_from_dict({"cases": _jsonl(text, str(path))}, str(path), path.parent)
    return suite_from_dict(_yaml(text, str(path)), str(path), path.parent)
