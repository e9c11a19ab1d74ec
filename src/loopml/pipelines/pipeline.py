"""Pipelines: a function whose task calls, made with the run's params, form a DAG.

    @pipeline(schedule="0 3 * * *", partition="day")
    def train_churn(day: str):
        raw = load(day)
        model = train(build_features(validate(raw)))
        return register(model, evaluate(model, raw))

The DAG is built once when the decorator runs, with placeholder params, so a cycle or a task
misused is reported at definition time; a run builds it again with the real params (Python
logic on params in the body is fine: it runs then).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import LoopmlError
from loopml.pipelines.dag import DAG
from loopml.pipelines.exceptions import PipelineDefinitionError, shown
from loopml.pipelines.tasks import (
    Call,
    Handle,
    NeedsValues,
    Param,
    building,
    current_builder,
)

if TYPE_CHECKING:
    from loopml.pipelines.runner import PipelineRun
    from loopml.pipelines.triggers import Trigger


@dataclass
class Build:
    """A pipeline's DAG for one set of params: the calls, their graph and what it returns."""

    pipeline: Pipeline
    params: dict[str, Any]
    calls: dict[str, Call]
    dag: DAG
    returned: Any

    def returned_nodes(self) -> list[str]:
        nodes: list[str] = []
        _handles(self.returned, nodes)
        return nodes


def _handles(value: Any, out: list[str]) -> None:
    if isinstance(value, Handle):
        out.append(value.node)
    elif isinstance(value, list | tuple):
        for item in value:
            _handles(item, out)
    elif isinstance(value, dict):
        for item in value.values():
            _handles(item, out)


#: The pipelines being expanded into the DAG being built, outermost first.
_EXPANDING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "loopml_pipelines_expanding", default=()
)


class Pipeline:
    """A function made a pipeline by :func:`pipeline`.

    Calling it runs it (``train_churn(day="2026-11-01")`` is ``run_pipeline(train_churn,
    params={...})``); called inside another pipeline, its tasks join that pipeline's DAG.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        schedule: str | None = None,
        triggers: Iterable[Trigger] = (),
        partition: str | None = None,
        partition_format: str = "%Y-%m-%d",
        experiment: str | None = None,
    ) -> None:
        from loopml.pipelines.triggers import Trigger, on_schedule

        self.fn = fn
        self.name = name or fn.__name__
        self.__name__ = self.name
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__wrapped__ = fn
        self.signature = inspect.signature(fn)
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
                raise PipelineDefinitionError(
                    f"Pipeline {self.name!r}: params are passed by name, so *{param.name} and "
                    "positional-only params are not supported."
                )
        if partition is not None and partition not in self.signature.parameters:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r}: partition={partition!r} is not one of its params "
                f"({', '.join(self.signature.parameters) or 'none'})."
            )
        self.partition = partition
        self.partition_format = partition_format
        self.experiment = experiment or self.name
        all_triggers: list[Trigger] = []
        if schedule is not None:
            all_triggers.append(on_schedule(schedule))
        for trig in triggers:
            if not isinstance(trig, Trigger):
                raise PipelineDefinitionError(
                    f"Pipeline {self.name!r}: triggers= takes on_schedule(...), on_new_data(...) "
                    f"and on_event(...), not {type(trig).__name__}."
                )
            all_triggers.append(trig)
        ids = [t.id for t in all_triggers]
        if len(set(ids)) != len(ids):
            raise PipelineDefinitionError(f"Pipeline {self.name!r} declares a trigger twice.")
        self.triggers: tuple[Trigger, ...] = tuple(all_triggers)
        self.ref = default_ref(fn, self.name)
        # Built now so that a cycle or a misused task is reported where the pipeline is
        # defined; None when the body needs real param values to decide its shape.
        self.template: Build | None = self._template()

    def __repr__(self) -> str:
        return f"<Pipeline {self.name} ({self.ref})>"

    @property
    def source_file(self) -> str | None:
        """The file that defines the pipeline (its git checkout is its runs' code version)."""
        module = sys.modules.get(self.fn.__module__)
        file = getattr(module, "__file__", None)
        return str(file) if file else None

    # -- params ----------------------------------------------------------------------------

    @property
    def param_names(self) -> list[str]:
        return list(self.signature.parameters)

    def defaults(self) -> dict[str, Any]:
        return {
            name: p.default
            for name, p in self.signature.parameters.items()
            if p.default is not inspect.Parameter.empty and p.kind != p.VAR_KEYWORD
        }

    def bind(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The full params of a run: ``params`` over the function's defaults, checked."""
        given = dict(params or {})
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in self.signature.parameters.values())
        unknown = [k for k in given if k not in self.signature.parameters]
        if unknown and not accepts_any:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} has no param {unknown[0]!r}; its params are: "
                f"{', '.join(self.param_names) or 'none'}."
            )
        values = {**self.defaults(), **given}
        missing = [
            name
            for name, p in self.signature.parameters.items()
            if p.kind != p.VAR_KEYWORD and name not in values
        ]
        if missing:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} needs a value for {'param' if len(missing) == 1 else 'params'} "
                f"{', '.join(missing)} "
                f"(e.g. --param {missing[0]}=VALUE)."
            )
        return values

    def coerce(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """Params given as strings (``--param day=2026-11-01``) converted by each param's
        annotation or default's type: int, float, bool, date, datetime, JSON lists/dicts."""
        out: dict[str, Any] = {}
        for key, text in raw.items():
            param = self.signature.parameters.get(key)
            kind: Any = None
            if param is not None:
                kind = param.annotation
                if isinstance(kind, str):  # from __future__ import annotations
                    kind = {
                        "int": int,
                        "float": float,
                        "bool": bool,
                        "str": str,
                        "date": date,
                        "datetime": datetime,
                        "list": list,
                        "dict": dict,
                    }.get(kind.split("|")[0].strip())
                if kind in (None, inspect.Parameter.empty) and param.default not in (
                    inspect.Parameter.empty,
                    None,
                ):
                    kind = type(param.default)
            out[key] = _convert(self.name, key, text, kind)
        return out

    def partition_of(self, params: Mapping[str, Any]) -> str | None:
        if self.partition is None:
            return None
        value = params.get(self.partition)
        if isinstance(value, datetime | date):
            return value.strftime(self.partition_format)
        return None if value is None else str(value)

    # -- building --------------------------------------------------------------------------

    def build(self, params: Mapping[str, Any] | None = None) -> Build:
        """Run the body with ``params`` (bound over the defaults) and return its DAG. An
        exception in the body is a :class:`PipelineDefinitionError` naming it and where."""
        values = self.bind(params)
        try:
            return self._build(values)
        except LoopmlError:
            raise
        except Exception as exc:
            raise PipelineDefinitionError(
                f"Building pipeline {self.name!r} failed: {type(exc).__name__}: {exc}"
                f"{self._where(exc)}. The body runs once, to define the DAG: it may only "
                "call tasks (and sub-pipelines) and pass their outputs on; do the work inside "
                "a @task."
            ) from exc

    def _where(self, exc: BaseException) -> str:
        """`` (file, line N)``: the body's deepest line in the exception's traceback."""
        code = getattr(self.fn, "__code__", None)
        if code is None:
            return ""
        lines = [
            frame.lineno
            for frame in traceback.extract_tb(exc.__traceback__)
            if frame.filename == code.co_filename
        ]
        if not lines:
            return ""
        path = Path(code.co_filename)
        with contextlib.suppress(ValueError):
            path = path.resolve().relative_to(Path.cwd().resolve())
        return f" ({path}, line {lines[-1]})"

    def _build(self, values: dict[str, Any]) -> Build:
        with building(self.name) as builder:
            returned = self.fn(**values)
        if not builder.calls:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} calls no @task: its body must call tasks "
                "(functions decorated with @task)."
            )
        deps = {node: list(call.deps) for node, call in builder.calls.items()}
        params = {node: list(call.params) for node, call in builder.calls.items()}
        dag = DAG(deps, params=params)
        return Build(self, values, builder.calls, dag, returned)

    def _template(self) -> Build | None:
        placeholders = {name: Param(name) for name in self.param_names}
        placeholders = {
            name: value
            for name, value in placeholders.items()
            if self.signature.parameters[name].kind != inspect.Parameter.VAR_KEYWORD
        }
        try:
            return self._build(placeholders)
        except PipelineDefinitionError:
            raise
        except NeedsValues:
            return None
        except Exception:  # the body does more than call tasks with params: build at run time
            return None

    def shape(self, params: Mapping[str, Any] | None = None) -> Build:
        """The DAG to show: built with ``params`` when given (or needed), else the template."""
        if params or self.template is None:
            return self.build(params)
        return self.template

    # -- running ---------------------------------------------------------------------------

    def __call__(self, *args: Any, **params: Any) -> Any:
        if args:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} takes its params by name: call "
                f"{self.name}({', '.join(f'{n}=...' for n in self.param_names) or ''})."
            )
        builder = current_builder()
        if builder is not None:  # a sub-pipeline: its calls join the outer DAG
            outer = _EXPANDING.get() or (builder.pipeline,)
            if self.name in outer:
                chain = " -> ".join((*outer[outer.index(self.name) :], self.name))
                raise PipelineDefinitionError(
                    f"Pipeline {self.name!r} calls itself ({chain}): a pipeline may call "
                    "other pipelines, not itself, directly or through another."
                )
            token = _EXPANDING.set((*outer, self.name))
            try:
                return self.fn(**self.bind(params))
            finally:
                _EXPANDING.reset(token)
        from loopml.pipelines.runner import run_pipeline

        return run_pipeline(self, params=params)

    def run(self, params: Mapping[str, Any] | None = None, **options: Any) -> PipelineRun:
        """``run_pipeline(self, params, **options)``."""
        from loopml.pipelines.runner import run_pipeline

        return run_pipeline(self, params=params, **options)


def _convert(pipeline: str, key: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind in (int, float):
            return kind(text)
        if kind is date:
            return date.fromisoformat(text)
        if kind is datetime:
            return datetime.fromisoformat(text)
        if kind in (list, dict):
            value = json.loads(text)
            if not isinstance(value, kind):
                raise ValueError(f"expected a JSON {kind.__name__}")
            return value
    except ValueError as exc:
        name = getattr(kind, "__name__", str(kind))
        article = "an" if name[:1].lower() in "aeiou" else "a"
        raise PipelineDefinitionError(
            f"Param {key!r} of pipeline {pipeline!r} must be {article} {name}: {shown(text)} is "
            f"not ({str(exc).rstrip('.')})."
        ) from exc
    return text


def default_ref(fn: Callable[..., Any], name: str) -> str:
    """How to find the pipeline again from another process: ``module:name``, or
    ``/path/to/file.py:name`` for a script or a file loaded by path."""
    module = sys.modules.get(fn.__module__)
    file = getattr(module, "__file__", None)
    by_path = fn.__module__ == "__main__" or fn.__module__.startswith("loopml_pipeline_file_")
    if by_path and file:
        return f"{Path(file).resolve()}:{name}"
    return f"{fn.__module__}:{name}"


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | None = None,
    triggers: Iterable[Trigger] = (),
    partition: str | None = None,
    partition_format: str = "%Y-%m-%d",
    experiment: str | None = None,
) -> Any:
    """Make a function a pipeline (``@pipeline`` or ``@pipeline(schedule="0 3 * * *")``).

    ``schedule`` is a cron expression (UTC) run by ``loopml scheduler run``; ``triggers``
    adds :func:`on_schedule`, :func:`on_new_data` and :func:`on_event` triggers.
    ``partition`` names the param that partitions its outputs (a rerun of a partition
    replaces the previous one; see :func:`backfill`). ``experiment`` is the tracking
    experiment of its runs (default: the pipeline name).
    """

    def wrap(function: Callable[..., Any]) -> Pipeline:
        return Pipeline(
            function,
            name=name,
            schedule=schedule,
            triggers=triggers,
            partition=partition,
            partition_format=partition_format,
            experiment=experiment,
        )

    if fn is not None:
        return wrap(fn)
    return wrap
