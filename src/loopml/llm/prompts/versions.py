"""Prompt versions in the metadata store (table ``llm_prompts``): immutable, numbered 1, 2,
… per name and content-addressed, so registering the same content again returns the
version it already is.

    v = register_prompt("support/answer", "Answer {{ question }} from {{ context }}.")
    v = get_prompt("support/answer@production")       # /3, @latest, or the name alone
    v.render(question="…", context="…")
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.prompts.refs import PromptRef, Split, check_name, choose
from loopml.llm.prompts.template import (
    Parsed,
    Template,
    check_template,
    check_variables,
    content_digest,
    render_text,
    variables_of,
)
from loopml.llm.tables import llm_prompt_label_history, llm_prompt_labels, llm_prompts
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from sqlalchemy import Connection


class PromptNotFound(NotFound):
    """No prompt of that name, or it has no such version or label; the message lists what
    there is."""


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt. ``labels`` are the labels pointing at it when it
    was read (at the time asked for, with ``at=``)."""

    name: str
    version: int
    digest: str
    template: Template
    model: str | None
    params: Mapping[str, Any]
    schema: Any
    commit_message: str | None
    created_by: str | None
    created_at: datetime
    labels: tuple[str, ...] = ()
    _parsed: tuple[Parsed, ...] = field(default=(), repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"text"`` or ``"chat"``."""
        return "text" if isinstance(self.template, str) else "chat"

    @property
    def ref(self) -> str:
        """``NAME/VERSION``: the reference that always means this version."""
        return f"{self.name}/{self.version}"

    @property
    def variables(self) -> tuple[str, ...]:
        """The template's variables, in order of first use."""
        return variables_of(self._parsed)

    def render(self, /, **variables: Any) -> str | list[dict[str, Any]]:
        """The text, or the chat's messages, with every variable filled in; a missing or an
        unknown variable is an :class:`InvalidInput` naming it.

        >>> get_prompt("support/answer").render(question="Where is my order?")  # doctest: +SKIP
        """
        check_variables(self.variables, variables, f"prompt {self.ref}")
        if isinstance(self.template, str):
            return render_text(self._parsed[0], variables)
        return [
            {**message, "content": render_text(parsed, variables)}
            for message, parsed in zip(self.template, self._parsed, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "kind": self.kind,
            "digest": self.digest,
            "template": self.template,
            "variables": list(self.variables),
            "model": self.model,
            "params": dict(self.params),
            "schema": self.schema,
            "commit_message": self.commit_message,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "labels": list(self.labels),
        }


def _actor() -> str:
    from loopml.registry.versions import actor

    return actor()


def _ms(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise InvalidInput(
            f"at= needs a time with its UTC offset (an aware datetime), got {at.isoformat()}"
        )
    return int(at.timestamp() * 1000)


def _row_to_version(row: Any, labels: tuple[str, ...] = ()) -> PromptVersion:
    template: Template = json.loads(row.template) if row.kind == "chat" else row.template
    _, parsed = check_template(template)
    created = to_datetime(row.created_at)
    assert created is not None
    return PromptVersion(
        name=row.name,
        version=int(row.version),
        digest=row.digest,
        template=template,
        model=row.model,
        params=json.loads(row.params) if row.params else {},
        schema=json.loads(row.output_schema) if row.output_schema else None,
        commit_message=row.commit_message,
        created_by=row.created_by,
        created_at=created,
        labels=labels,
        _parsed=parsed,
    )


def _check_content(
    template: Any, model: Any, params: Any, schema: Any
) -> tuple[str, Template, dict[str, Any]]:
    kind, _ = check_template(template)
    if model is not None and (not isinstance(model, str) or not model or len(model) > KEY):
        raise InvalidInput(
            f"model= is a model name (text, at most {KEY} characters), not {model!r}"
        )
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise InvalidInput(
            f"params= is a mapping of parameter names to values (temperature, max_tokens, …), "
            f"not {type(params).__name__}"
        )
    if schema is not None and not isinstance(schema, Mapping | list | bool):
        raise InvalidInput(f"schema= is a JSON schema (a mapping), not {type(schema).__name__}")
    plain: Template = (
        template if isinstance(template, str) else [dict(message) for message in template]
    )
    return kind, plain, dict(params)


def register_prompt(
    name: str,
    template: Template,
    *,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    schema: Any = None,
    commit_message: str | None = None,
    workspace: WorkspaceLike = None,
) -> PromptVersion:
    """Register ``template`` (text, or a list of ``{"role", "content"}`` messages) as the next
    version of prompt ``name``, with the model, parameters and output schema it is meant for.
    The same template, model, params and schema registered before return that version (the
    commit message of a repeat is ignored). The template is checked now: an unclosed ``{{``
    or a bad variable name is an :class:`InvalidInput` naming the message and character.

    >>> v = register_prompt("support/answer", [
    ...     {"role": "system", "content": "You answer from the context only."},
    ...     {"role": "user", "content": "{{ context }}\\n\\nQuestion: {{ question }}"},
    ... ], model="gpt-4o-mini", params={"temperature": 0})  # doctest: +SKIP
    >>> v.ref, v.variables  # doctest: +SKIP
    ('support/answer/1', ('context', 'question'))
    """
    check_name(name)
    try:
        kind, plain, plain_params = _check_content(template, model, params, schema)
    except InvalidInput as exc:
        raise InvalidInput(f"Prompt {name!r}: {exc}") from None
    digest = content_digest(plain, model, plain_params, schema)
    stored_template = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
    ws = resolve_workspace(workspace)
    who = _actor()

    def tx(conn: Connection) -> Any:
        found = conn.execute(
            select(llm_prompts).where(llm_prompts.c.name == name, llm_prompts.c.digest == digest)
        ).first()
        if found is not None:
            return found
        top = conn.execute(
            select(func.max(llm_prompts.c.version)).where(llm_prompts.c.name == name)
        ).scalar()
        values = {
            "name": name,
            "version": int(top or 0) + 1,
            "digest": digest,
            "kind": kind,
            "template": stored_template,
            "model": model,
            "params": json.dumps(plain_params, sort_keys=True) if plain_params else None,
            "output_schema": json.dumps(schema, sort_keys=True) if schema is not None else None,
            "commit_message": commit_message,
            "created_by": who,
            "created_at": now_ms(),
        }
        conn.execute(insert(llm_prompts).values(**values))
        return conn.execute(
            select(llm_prompts).where(
                llm_prompts.c.name == name, llm_prompts.c.version == values["version"]
            )
        ).one()

    for attempt in range(5):
        try:
            row = ws.db.transact(tx)
            break
        except IntegrityError:
            # Another writer took this version number (or registered the same content) at
            # the same moment: read again, then number after it.
            if attempt == 4:
                raise
    with ws.db.read() as conn:
        return _row_to_version(row, _labels_of(conn, name, int(row.version), None))


# -- reading ---------------------------------------------------------------------------------


def _names(conn: Connection) -> list[str]:
    return list(
        conn.execute(select(llm_prompts.c.name).distinct().order_by(llm_prompts.c.name)).scalars()
    )


def _no_prompt(conn: Connection, name: str) -> PromptNotFound:
    names = _names(conn)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
    return PromptNotFound(
        f"No prompt {name!r}.{hint} Registered: {shown or 'none'} "
        "(`loopml prompts register NAME --file F` adds one)."
    )


@dataclass(frozen=True)
class LabelState:
    """Where a label points: ``version``, and during an A/B test ``split`` — the versions
    sharing its traffic with their percent weights (``version`` is then the control, what a
    request without an end user gets)."""

    version: int
    split: Split | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "split": [list(pair) for pair in self.split] if self.split else None,
        }


def load_split(text: str | None) -> Split | None:
    """A stored split (JSON ``[[version, weight], ...]``; NULL: none)."""
    if not text:
        return None
    return tuple((int(v), w) for v, w in json.loads(text))


def dump_split(split: Split | None) -> str | None:
    return None if split is None else json.dumps([[v, w] for v, w in split])


def states_at(conn: Connection, name: str, at_ms: int | None) -> dict[str, LabelState]:
    """Every label of ``name`` → where it pointed at ``at_ms`` (now when None), by replaying
    the label history (moves a gate blocked moved nothing)."""
    if at_ms is None:
        rows = conn.execute(
            select(
                llm_prompt_labels.c.label, llm_prompt_labels.c.version, llm_prompt_labels.c.split
            ).where(llm_prompt_labels.c.name == name)
        ).all()
        return {
            label: LabelState(int(version), load_split(split))
            for label, version, split in sorted(rows, key=lambda row: row[0])
        }
    history = conn.execute(
        select(
            llm_prompt_label_history.c.label,
            llm_prompt_label_history.c.version,
            llm_prompt_label_history.c.split,
        )
        .where(
            llm_prompt_label_history.c.name == name,
            llm_prompt_label_history.c.created_at <= at_ms,
            llm_prompt_label_history.c.kind != "blocked",
        )
        .order_by(llm_prompt_label_history.c.id)
    ).all()
    state: dict[str, LabelState] = {}
    for label, version, split in history:
        state[label] = LabelState(int(version), load_split(split))
    return dict(sorted(state.items()))


def labels_at(conn: Connection, name: str, at_ms: int | None) -> dict[str, int]:
    """Every label of ``name`` → the version it pointed at ``at_ms`` (now when None); a label
    split between versions → its control version."""
    return {label: state.version for label, state in states_at(conn, name, at_ms).items()}


def _labels_of(conn: Connection, name: str, version: int, at_ms: int | None) -> tuple[str, ...]:
    return tuple(label for label, v in labels_at(conn, name, at_ms).items() if v == version)


def resolve(
    conn: Connection, ref: PromptRef, at_ms: int | None = None, key: str | None = None
) -> PromptVersion:
    """The version ``ref`` means now, or at ``at_ms`` (a version registered later did not
    exist then; a label pointed where its history says). A label split between versions
    gives the end user ``key`` their version of the split, and the control without a key."""
    query = select(llm_prompts).where(llm_prompts.c.name == ref.name)
    if at_ms is not None:
        query = query.where(llm_prompts.c.created_at <= at_ms)
    moment = to_datetime(at_ms)
    then = "" if moment is None else f" at {moment.isoformat(timespec='seconds')}"
    versions = [
        int(v) for v in conn.execute(query.with_only_columns(llm_prompts.c.version)).scalars()
    ]
    if not versions:
        if at_ms is not None and ref.name in _names(conn):
            raise PromptNotFound(f"Prompt {ref.name!r} had no version yet{then}.")
        raise _no_prompt(conn, ref.name)
    if ref.version is not None:
        wanted = ref.version
        if wanted not in versions:
            raise PromptNotFound(
                f"Prompt {ref.name!r} has no version {wanted}{then}; it has "
                f"{_span(sorted(versions))}."
            )
    elif ref.label is not None:
        states = states_at(conn, ref.name, at_ms)
        if ref.label not in states:
            shown = ", ".join(f"{label} → {s.version}" for label, s in states.items())
            raise PromptNotFound(
                f"Prompt {ref.name!r} has no label {ref.label!r}{then}; its labels: "
                f"{shown or 'none'} (`loopml prompts label {ref.name} {ref.label} VERSION` "
                "sets one)."
            )
        found = states[ref.label]
        wanted = found.version
        if found.split is not None and key is not None:
            wanted = choose(found.split, ref.name, ref.label, key)
    else:
        wanted = max(versions)
    row = conn.execute(
        select(llm_prompts).where(llm_prompts.c.name == ref.name, llm_prompts.c.version == wanted)
    ).one()
    return _row_to_version(row, _labels_of(conn, ref.name, wanted, at_ms))


def _span(versions: list[int]) -> str:
    if versions == list(range(1, len(versions) + 1)):
        return "version 1" if len(versions) == 1 else f"versions 1–{len(versions)}"
    return "versions " + ", ".join(map(str, versions))


def get_prompt(
    ref: str | PromptRef,
    *,
    at: datetime | None = None,
    key: str | None = None,
    workspace: WorkspaceLike = None,
) -> PromptVersion:
    """The version ``ref`` names: ``NAME`` or ``NAME@latest`` (the newest), ``NAME@LABEL``,
    ``NAME/VERSION``. With ``at`` (an aware datetime): what it named then — time travel
    through the labels' history. :class:`PromptNotFound` lists what exists.

    A label in an A/B test (:func:`~loopml.llm.prompts.split_label`) gives the end user
    ``key`` their version, the same one every time; without ``key``, its control version::

        get_prompt("support/answer@production", key="user-42")
    """
    parsed = PromptRef.parse(ref) if isinstance(ref, str) else ref
    at_ms = _ms(at)
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        return resolve(conn, parsed, at_ms, key)


@dataclass(frozen=True)
class PromptChoices:
    """What a reference resolves to now, for choosing per request (the gateway keeps one per
    reference for a few seconds): the control version, and a label's split with every
    version in it."""

    ref: PromptRef
    control: PromptVersion
    split: Split | None = None
    versions: Mapping[int, PromptVersion] = field(default_factory=dict)

    def choose(self, key: str | None) -> PromptVersion:
        """The version for the end user ``key`` (the control without a key or a split)."""
        if self.split is None or key is None or self.ref.label is None:
            return self.control
        return self.versions[choose(self.split, self.ref.name, self.ref.label, key)]


def prompt_choices(ref: str | PromptRef, *, workspace: WorkspaceLike = None) -> PromptChoices:
    """:class:`PromptChoices` of ``ref`` now (:class:`PromptNotFound` as :func:`get_prompt`)."""
    parsed = PromptRef.parse(ref) if isinstance(ref, str) else ref
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        control = resolve(conn, parsed)
        if parsed.label is None:
            return PromptChoices(parsed, control)
        split = states_at(conn, parsed.name, None)[parsed.label].split
        if split is None:
            return PromptChoices(parsed, control)
        versions = {
            v: control if v == control.version else resolve(conn, PromptRef(parsed.name, v))
            for v, _ in split
        }
        return PromptChoices(parsed, control, split, versions)


def list_versions(name: str, *, workspace: WorkspaceLike = None) -> list[PromptVersion]:
    """Every version of ``name``, oldest first, each with the labels pointing at it now."""
    check_name(name)
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        rows = conn.execute(
            select(llm_prompts).where(llm_prompts.c.name == name).order_by(llm_prompts.c.version)
        ).all()
        if not rows:
            raise _no_prompt(conn, name)
        labels = labels_at(conn, name, None)
    return [
        _row_to_version(row, tuple(k for k, v in labels.items() if v == row.version))
        for row in rows
    ]


def list_prompts(*, workspace: WorkspaceLike = None) -> list[dict[str, Any]]:
    """One summary per prompt, by name: versions, the latest, its labels, last change."""
    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        rows = conn.execute(
            select(
                llm_prompts.c.name,
                func.count(),
                func.max(llm_prompts.c.version),
                func.max(llm_prompts.c.created_at),
            )
            .group_by(llm_prompts.c.name)
            .order_by(llm_prompts.c.name)
        ).all()
        labels: dict[str, dict[str, int]] = {}
        splits: dict[str, dict[str, list[list[Any]]]] = {}
        for name, label, version, split in conn.execute(
            select(
                llm_prompt_labels.c.name,
                llm_prompt_labels.c.label,
                llm_prompt_labels.c.version,
                llm_prompt_labels.c.split,
            )
        ):
            labels.setdefault(name, {})[label] = int(version)
            found = load_split(split)
            if found is not None:
                splits.setdefault(name, {})[label] = [list(pair) for pair in found]
    return [
        {
            "name": name,
            "versions": int(count),
            "latest": int(latest),
            "labels": dict(sorted(labels.get(name, {}).items())),
            "splits": dict(sorted(splits.get(name, {}).items())),
            "updated_at": to_datetime(int(updated)),
        }
        for name, count, latest, updated in rows
    ]
