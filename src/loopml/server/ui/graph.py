"""Graphs drawn as SVG on the server: a pipeline's DAG, a model's lineage.

A simple layered layout, left to right: each node's layer is the longest path to it from a
node with no inputs, and within a layer nodes are ordered by the average position of their
inputs (one barycenter pass), so edges mostly run straight. Pure functions::

    >>> lay = layout(["a", "b", "c"], [("a", "b"), ("a", "c"), ("b", "c")])
    >>> lay.layers
    {'a': 0, 'b': 1, 'c': 2}
    >>> svg = render_svg([Node("a", "load"), Node("b", "train")], [("a", "b")])
    >>> svg.startswith("<svg") and "train" in svg
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

NODE_W = 170
NODE_H = 44
GAP_X = 60
GAP_Y = 22
MARGIN = 12

#: Fill colour per node status or kind (anything else is grey).
COLOURS = {
    "COMPLETED": "#d9f2dd",
    "FINISHED": "#d9f2dd",
    "CACHED": "#dde8f7",
    "RUNNING": "#fff2c6",
    "PENDING": "#eeeeee",
    "FAILED": "#f8d4d4",
    "KILLED": "#f8d4d4",
    "SKIPPED": "#eeeeee",
    "model": "#e6dcf7",
    "run": "#d9f2dd",
    "data": "#dde8f7",
    "commit": "#fff2c6",
}


@dataclass(frozen=True)
class Node:
    """One box: ``id`` (unique), its ``label``, a second line (``detail``), a ``kind`` or
    status that picks its colour, and a link."""

    id: str
    label: str
    detail: str = ""
    kind: str = ""
    href: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where each node goes: its layer (column) and row, and the drawing's size."""

    layers: dict[str, int]
    rows: dict[str, int]
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    width: int = 0
    height: int = 0


def _layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    inputs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        inputs[b].append(a)
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(node: str) -> int:
        if node in layer:
            return layer[node]
        if node in visiting:
            raise ValueError(f"the graph has a cycle through {node!r}")
        visiting.add(node)
        value = max((depth(a) + 1 for a in inputs[node]), default=0)
        visiting.discard(node)
        layer[node] = value
        return value

    for n in nodes:
        depth(n)
    return layer


def layout(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> Layout:
    """Layer and order ``nodes`` (ids, in their given order) linked by ``edges`` (from, to).

    Raises ValueError when an edge names an unknown node or the edges form a cycle.
    """
    nodes = list(dict.fromkeys(nodes))
    known = set(nodes)
    edge_list = list(dict.fromkeys(edges))
    for a, b in edge_list:
        if a not in known or b not in known:
            raise ValueError(f"edge {a!r} -> {b!r} names a node that is not in the graph")
    layer = _layers(nodes, edge_list)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(layer[n], []).append(n)
    row: dict[str, int] = {}
    for index in sorted(columns):
        column = columns[index]
        if index > 0:
            # Barycenter: the average row of a node's inputs; ties keep the given order.
            given = {n: i for i, n in enumerate(column)}

            def weight(node: str, given: dict[str, int] = given) -> tuple[float, int]:
                ins = [row[a] for a, b in edge_list if b == node and a in row]
                return (sum(ins) / len(ins) if ins else float("inf"), given[node])

            column.sort(key=weight)
        for i, n in enumerate(column):
            row[n] = i
    tallest = max((len(c) for c in columns.values()), default=0)
    height = 2 * MARGIN + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    positions: dict[str, tuple[int, int]] = {}
    for index, column in columns.items():
        # Centre each column vertically.
        used = len(column) * NODE_H + (len(column) - 1) * GAP_Y
        top = MARGIN + (height - 2 * MARGIN - used) // 2
        for i, n in enumerate(column):
            positions[n] = (MARGIN + index * (NODE_W + GAP_X), top + i * (NODE_H + GAP_Y))
    width = 2 * MARGIN + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    return Layout(layer, row, positions, width, height)


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_svg(nodes: Sequence[Node], edges: Iterable[tuple[str, str]], title: str = "") -> str:
    """The graph as an inline ``<svg>`` element; every label is escaped."""
    edge_list = list(edges)
    lay = layout([n.id for n in nodes], edge_list)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'width="{lay.width}" height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}"'
        f' aria-label="{escape(title or "graph")}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#777"/></marker></defs>',
    ]
    for a, b in edge_list:
        ax, ay = lay.positions[a]
        bx, by = lay.positions[b]
        x1, y1 = ax + NODE_W, ay + NODE_H // 2
        x2, y2 = bx, by + NODE_H // 2
        mid = (x1 + x2) // 2
        parts.append(
            f'<path class="edge" d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" '
            'fill="none" stroke="#777" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        x, y = lay.positions[node.id]
        fill = COLOURS.get(node.kind, "#eeeeee")
        box = (
            f'<g class="node" data-id="{escape(node.id)}"><title>{escape(node.label)}'
            f"{escape(' — ' + node.detail) if node.detail else ''}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" '
            'stroke="#888"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="13" font-weight="600">'
            f"{escape(_clip(node.label))}</text>"
        )
        if node.detail:
            box += (
                f'<text x="{x + 8}" y="{y + 35}" font-size="11" fill="#555">'
                f"{escape(_clip(node.detail, 28))}</text>"
            )
        box += "</g>"
        if node.href:
            box = f'<a href="{escape(node.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return "".join(parts)
