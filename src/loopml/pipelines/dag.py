"""The DAG of a pipeline as plain data: ordering, cycle detection, execution frontier and
rendering (text and Mermaid). Pure: no tasks are run and no store is touched here.

>>> dag = DAG({"load": [], "clean": ["load"], "train": ["clean"], "report": ["clean"]})
>>> dag.order
('load', 'clean', 'train', 'report')
>>> frontier = Frontier(dag)
>>> frontier.ready()
['load']
>>> frontier.complete("load")
['clean']
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loopml.pipelines.exceptions import CycleError, PipelineDefinitionError


class DAG:
    """Nodes and their dependencies, checked to be acyclic; ``order`` is topological, ties
    broken by the order the nodes were given in (so a pipeline prints as it was written)."""

    def __init__(
        self,
        deps: Mapping[str, Iterable[str]],
        labels: Mapping[str, str] | None = None,
        params: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.deps: dict[str, tuple[str, ...]] = {
            node: tuple(dict.fromkeys(ds)) for node, ds in deps.items()
        }
        self.labels = dict(labels or {})
        #: node → the pipeline params it reads (shown as inputs when rendering)
        self.params = {node: tuple(ps) for node, ps in (params or {}).items()}
        for node, ds in self.deps.items():
            for dep in ds:
                if dep not in self.deps:
                    raise PipelineDefinitionError(
                        f"Task {node!r} depends on {dep!r}, which is not a task of this pipeline."
                        f" Known tasks: {', '.join(self.deps) or 'none'}."
                    )
        self.dependents: dict[str, list[str]] = {node: [] for node in self.deps}
        for node, ds in self.deps.items():
            for dep in ds:
                self.dependents[dep].append(node)
        self.order: tuple[str, ...] = topological_order(self.deps)

    def __len__(self) -> int:
        return len(self.deps)

    def __contains__(self, node: object) -> bool:
        return node in self.deps

    def roots(self) -> list[str]:
        return [n for n in self.order if not self.deps[n]]

    def leaves(self) -> list[str]:
        return [n for n in self.order if not self.dependents[n]]

    def descendants(self, node: str) -> list[str]:
        """Every node downstream of ``node``, in topological order."""
        seen: set[str] = set()
        stack = list(self.dependents[node])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.dependents[current])
        return [n for n in self.order if n in seen]

    def label(self, node: str) -> str:
        return self.labels.get(node, node)


def topological_order(deps: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by input order; raises :class:`CycleError` naming the
    cycle (``a → b → a``) when there is one."""
    index = {node: i for i, node in enumerate(deps)}
    missing = [0] * len(index)
    dependents: list[list[int]] = [[] for _ in index]
    for node, ds in deps.items():
        i = index[node]
        for dep in dict.fromkeys(ds):
            missing[i] += 1
            dependents[index[dep]].append(i)
    names = list(deps)
    heap = [i for i, count in enumerate(missing) if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(names[i])
        for j in dependents[i]:
            missing[j] -= 1
            if missing[j] == 0:
                heapq.heappush(heap, j)
    if len(order) != len(names):
        done = set(order)
        cycle = find_cycle({n: ds for n, ds in deps.items() if n not in done})
        path = " → ".join(cycle)
        raise CycleError(
            f"The pipeline's tasks form a cycle: {path}. A task can't depend, directly or "
            "through others, on its own output: remove one of these dependencies.",
            cycle,
        )
    return tuple(order)


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among ``deps`` as a path whose first and last node are the same ([] if none)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in deps:
        if state.get(start):
            continue
        path: list[str] = [start]
        iters = [iter(deps.get(start, ()))]
        state[start] = 1
        while iters:
            dep = next(iters[-1], None)
            if dep is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and dep in deps:
                state[dep] = 1
                path.append(dep)
                iters.append(iter(deps[dep]))
    return []


@dataclass
class Frontier:
    """Which nodes may start now, as nodes complete or fail.

    ``ready()`` hands out each node once, when all its dependencies completed; ``fail(node)``
    returns the descendants that can no longer run (they are *skipped*) while independent
    branches go on; ``finished`` is true when nothing is left to hand out or to wait for.
    """

    dag: DAG
    _missing: dict[str, int] = field(init=False)
    _ready: list[str] = field(init=False)
    _outstanding: int = field(init=False)
    _dead: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._missing = {node: len(ds) for node, ds in self.dag.deps.items()}
        self._ready = [n for n in self.dag.order if self._missing[n] == 0]
        self._outstanding = len(self.dag.deps)

    def ready(self) -> list[str]:
        """Nodes whose dependencies all completed, not handed out before."""
        ready, self._ready = self._ready, []
        return ready

    def complete(self, node: str) -> list[str]:
        """Mark ``node`` done; returns the nodes that became ready (also kept for ``ready``)."""
        self._outstanding -= 1
        newly = []
        for child in self.dag.dependents[node]:
            self._missing[child] -= 1
            if self._missing[child] == 0 and child not in self._dead:
                newly.append(child)
        self._ready.extend(newly)
        return newly

    def fail(self, node: str) -> list[str]:
        """Mark ``node`` failed; returns its descendants not yet skipped (now skipped)."""
        self._outstanding -= 1
        skipped = [d for d in self.dag.descendants(node) if d not in self._dead]
        self._dead.update(skipped)
        self._outstanding -= len(skipped)
        return skipped

    @property
    def finished(self) -> bool:
        return self._outstanding <= 0


# -- rendering -------------------------------------------------------------------------------

STATUS_MARKS = {
    "COMPLETED": "✓",
    "CACHED": "↺",
    "FAILED": "✗",
    "SKIPPED": "–",
    "RUNNING": "…",
    "PENDING": " ",
}


def render_text(
    dag: DAG, title: str | None = None, statuses: Mapping[str, str] | None = None
) -> str:
    """One line per task in execution order, with what it reads::

    pipeline train_churn (3 tasks)
      load       ← param day
      clean      ← load
      train      ← clean
    """
    lines = [] if title is None else [f"{title} ({len(dag)} task{'s' * (len(dag) != 1)})"]
    width = max((len(dag.label(n)) for n in dag.order), default=0)
    for node in dag.order:
        inputs = [dag.label(d) for d in dag.deps[node]]
        inputs += [f"param {p}" for p in dag.params.get(node, ())]
        mark = ""
        if statuses is not None:
            status = statuses.get(node, "PENDING")
            mark = f"{STATUS_MARKS.get(status, '?')} "
        arrow = f"  ← {', '.join(inputs)}" if inputs else ""
        lines.append(f"  {mark}{dag.label(node):<{width}}{arrow}".rstrip())
    return "\n".join(lines)


_MERMAID_CLASSES = {
    "COMPLETED": "fill:#d4f7d4,stroke:#2b8a3e",
    "CACHED": "fill:#e7f0fd,stroke:#1c7ed6",
    "FAILED": "fill:#ffe3e3,stroke:#c92a2a",
    "SKIPPED": "fill:#f1f3f5,stroke:#868e96,stroke-dasharray:3 3",
    "RUNNING": "fill:#fff3bf,stroke:#f08c00",
}
_UNSAFE_LABEL = re.compile(r'["\[\]{}()<>|#;`]')


def render_mermaid(dag: DAG, statuses: Mapping[str, str] | None = None) -> str:
    """A Mermaid ``flowchart`` of the DAG; pipeline params are drawn as rounded inputs and,
    with ``statuses``, tasks are coloured by status."""
    ids = {node: f"t{i}" for i, node in enumerate(dag.order)}
    lines = ["flowchart TD"]
    params = list(dict.fromkeys(p for node in dag.order for p in dag.params.get(node, ())))
    param_ids = {p: f"p{i}" for i, p in enumerate(params)}
    for param, pid in param_ids.items():
        lines.append(f'    {pid}(["{_mermaid_label(param)}"])')
    for node in dag.order:
        lines.append(f'    {ids[node]}["{_mermaid_label(dag.label(node))}"]')
    for node in dag.order:
        for param in dag.params.get(node, ()):
            lines.append(f"    {param_ids[param]} -.-> {ids[node]}")
        for dep in dag.deps[node]:
            lines.append(f"    {ids[dep]} --> {ids[node]}")
    if statuses:
        used = sorted({s for s in statuses.values() if s in _MERMAID_CLASSES})
        for status in used:
            lines.append(f"    classDef {status.lower()} {_MERMAID_CLASSES[status]}")
        for node in dag.order:
            current = statuses.get(node)
            if current is not None and current in _MERMAID_CLASSES:
                lines.append(f"    class {ids[node]} {current.lower()}")
    return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    return _UNSAFE_LABEL.sub(lambda m: f"#{ord(m.group())};", text)
