"""Tasks: functions whose calls inside a ``@pipeline`` build its DAG instead of running.

    @task(retries=2, retry_delay=1.0, timeout=600)
    def load(day: str) -> pd.DataFrame: ...

Inside a pipeline, ``load(day)`` returns a :class:`Handle` to the future output; passing a
handle to another task makes it a dependency. Outside a pipeline, calling a task is a
:class:`PipelineDefinitionError`; ``load.fn(day)`` calls the plain function.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from loopml.pipelines.exceptions import PipelineDefinitionError
from loopml.pipelines.fingerprint import Fingerprint, fingerprint

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskSpec:
    """How a task runs: its name, retry policy, timeout and whether its output is cached.

    A failed attempt is retried ``retries`` times, waiting ``retry_delay * backoff**n``
    seconds (at most ``max_retry_delay``) before retry ``n+1``. ``timeout`` (seconds) fails
    an attempt that runs longer. ``cache=False`` always runs it. ``version`` pins the cache
    key: without it the key follows the task's code and what it uses (see
    :mod:`loopml.pipelines.fingerprint`); with it, only the version (and the inputs) count,
    so bump it when a change should recompute.
    """

    name: str
    retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 2.0
    max_retry_delay: float = 300.0
    timeout: float | None = None
    cache: bool = True
    version: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.retries, int) or self.retries < 0:
            problems.append(f"retries must be an integer >= 0, got {self.retries!r}")
        if self.retry_delay < 0 or self.max_retry_delay < 0:
            problems.append("retry_delay and max_retry_delay must be >= 0 seconds")
        if self.backoff < 1:
            problems.append(f"backoff must be >= 1, got {self.backoff!r}")
        if self.timeout is not None and not self.timeout > 0:
            problems.append(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if problems:
            raise PipelineDefinitionError(f"Task {self.name!r}: " + "; ".join(problems) + ".")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 is the first retry)."""
        if attempt <= 1:
            return 0.0
        return min(self.retry_delay * self.backoff ** (attempt - 2), self.max_retry_delay)


class Handle:
    """The future output of a task call inside a pipeline: pass it to other tasks.

    It is not the value: using it in Python logic while the pipeline is being defined
    (``if handle:``, ``handle + 1``, iterating) is a :class:`PipelineDefinitionError`.
    """

    __slots__ = ("node", "task")

    def __init__(self, node: str, task: str) -> None:
        self.node = node
        self.task = task

    def __repr__(self) -> str:
        return f"<Handle {self.node}>"

    def _misuse(self, what: str) -> PipelineDefinitionError:
        return PipelineDefinitionError(
            f"{what} the output of task {self.node!r} while the pipeline is being defined: it is "
            "a handle to a value that does not exist yet. Pass it to another @task and do the "
            "work there."
        )

    def __bool__(self) -> bool:
        raise self._misuse("Cannot test")

    def __iter__(self) -> Iterator[Any]:
        raise self._misuse("Cannot iterate over")

    def __len__(self) -> int:
        raise self._misuse("Cannot take the length of")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._misuse(f"Cannot read attribute {name!r} of")

    def __getitem__(self, key: Any) -> Any:
        raise self._misuse("Cannot index")

    def _compute(self, *_: Any) -> Any:
        raise self._misuse("Cannot compute with")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _compute
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _compute
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __lt__ = __le__ = __gt__ = _compute
    __ge__ = __int__ = __float__ = __index__ = __round__ = _compute


class Param:
    """A placeholder for a pipeline param while the DAG is built without values."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<param {self.name}>"

    def _defer(self, *_: Any, **__: Any) -> Any:
        raise NeedsValues(self.name)

    __bool__ = __len__ = __iter__ = __getitem__ = __eq__ = __lt__ = __gt__ = _defer
    __add__ = __radd__ = __sub__ = __mul__ = __str__ = __format__ = __int__ = _defer
    __float__ = __contains__ = __call__ = _defer
    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NeedsValues(self.name)


class NeedsValues(Exception):
    """The pipeline body computes with a param: its DAG can only be built with values."""


@dataclass
class Call:
    """One task call recorded while building a pipeline."""

    node: str
    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    after: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()


@dataclass
class Builder:
    """Collects the calls of one pipeline build (see :func:`building`)."""

    pipeline: str
    calls: dict[str, Call] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def add(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], after: Any
    ) -> Handle:
        name = task.spec.name
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        node = name if count == 1 else f"{name}-{count}"
        while node in self.calls:  # a task named like "load-2" by hand
            count += 1
            self._counts[name] = count
            node = f"{name}-{count}"
        deps: dict[str, None] = {}
        params: dict[str, None] = {}
        _collect(args, deps, params)
        _collect(kwargs, deps, params)
        ordered = tuple(_after_nodes(after, self, node))
        for dep in ordered:
            deps.setdefault(dep, None)
        self.calls[node] = Call(node, task, args, kwargs, ordered, tuple(deps), tuple(params))
        return Handle(node, name)


def _after_nodes(after: Any, builder: Builder, node: str) -> Iterator[str]:
    if after is None:
        return
    items = after if isinstance(after, list | tuple | set) else [after]
    for item in items:
        if isinstance(item, Handle):
            yield item.node
        elif isinstance(item, str):
            yield item  # may name a later call: checked (and cycles found) when the DAG is built
        else:
            raise PipelineDefinitionError(
                f"Task {node!r} of pipeline {builder.pipeline!r}: after= takes task handles or "
                f"node names, not {type(item).__name__}."
            )


def _collect(value: Any, deps: dict[str, None], params: dict[str, None]) -> None:
    if isinstance(value, Handle):
        deps.setdefault(value.node, None)
    elif isinstance(value, Param):
        params.setdefault(value.name, None)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect(item, deps, params)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, deps, params)


_BUILDER: contextvars.ContextVar[Builder | None] = contextvars.ContextVar(
    "loopml_pipeline_builder", default=None
)


@contextmanager
def building(pipeline: str) -> Iterator[Builder]:
    """Within this block, task calls are recorded into the yielded builder."""
    builder = Builder(pipeline)
    token = _BUILDER.set(builder)
    try:
        yield builder
    finally:
        _BUILDER.reset(token)


def current_builder() -> Builder | None:
    return _BUILDER.get()


class Task(Generic[P, R]):
    """A function made a pipeline step by :func:`task`; ``.fn`` is the plain function."""

    def __init__(self, fn: Callable[P, R], spec: TaskSpec) -> None:
        self.fn = fn
        self.spec = spec
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.spec.name}>"

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        builder = _BUILDER.get()
        if builder is None:
            raise PipelineDefinitionError(
                f"Task {self.spec.name!r} was called outside a @pipeline. Tasks only run as steps "
                f"of a pipeline: call it inside a function decorated with @pipeline and run "
                f"that with run_pipeline(...), or call the plain function with "
                f"{self.spec.name}.fn(...)."
            )
        after = kwargs.pop("after", None) if "after" not in self._parameters else None
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"Task {self.spec.name!r} called with arguments it does not take: {exc}."
            ) from exc
        return builder.add(self, args, kwargs, after)  # type: ignore[return-value]

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    @functools.cached_property
    def _parameters(self) -> frozenset[str]:
        return frozenset(self._signature.parameters)

    def fingerprint(self) -> Fingerprint:
        """What the task's result depends on besides its arguments: its source, the
        module-level values, project functions and classes it uses and the versions of the
        packages it calls; or only its ``version`` when one is pinned. Computed afresh on each
        call (a module-level value may have changed)."""
        return fingerprint(self.fn, self.spec.version, self.spec.name)

    def arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[str], list[Any]]:
        """The call's arguments as (labels, values): a positional argument is labelled by
        its parameter's name (``*args`` items as ``args[0]``, …), a keyword one by its name.
        (Cheaper than binding the signature: it runs for every node of a run.)"""
        names = self._positional_names
        labels = [
            names[i] if i < len(names) else f"{self._var_positional}[{i - len(names)}]"
            for i in range(len(args))
        ]
        return [*labels, *kwargs], [*args, *kwargs.values()]

    @functools.cached_property
    def _positional_names(self) -> list[str]:
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in self._signature.parameters.values() if p.kind in kinds]

    @functools.cached_property
    def _var_positional(self) -> str:
        for p in self._signature.parameters.values():
            if p.kind == inspect.Parameter.VAR_POSITIONAL:
                return p.name
        return "args"


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    backoff: float = 2.0,
    max_retry_delay: float = 300.0,
    timeout: float | None = None,
    cache: bool = True,
    version: str = "",
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    backoff: float = 2.0,
    max_retry_delay: float = 300.0,
    timeout: float | None = None,
    cache: bool = True,
    version: str = "",
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a pipeline task (``@task`` or ``@task(retries=2, timeout=60)``).

    Inside a pipeline a call returns a :class:`Handle`; ``after=handle_or_node`` adds an
    ordering-only dependency. See :class:`TaskSpec` for the options.
    """

    def wrap(function: Callable[P, R]) -> Task[P, R]:
        if not callable(function) or isinstance(function, Task):
            raise PipelineDefinitionError(
                f"@task decorates a plain function, not {type(function).__name__}."
            )
        if inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function):
            raise PipelineDefinitionError(
                f"@task {function.__name__!r}: async and generator functions are not supported; "
                "return a value (a list instead of yielding items)."
            )
        spec = TaskSpec(
            name=name or function.__name__,
            retries=retries,
            retry_delay=retry_delay,
            backoff=backoff,
            max_retry_delay=max_retry_delay,
            timeout=timeout,
            cache=cache,
            version=version,
        )
        return Task(function, spec)

    if fn is not None:
        return wrap(fn)
    return wrap
