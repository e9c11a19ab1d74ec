"""The pure DAG core: ordering, cycles, the execution frontier, rendering."""

from __future__ import annotations

import pytest

from loopml.pipelines.dag import DAG, Frontier, find_cycle, render_mermaid, render_text
from loopml.pipelines.exceptions import CycleError, PipelineDefinitionError


def diamond() -> DAG:
    return DAG(
        {"load": [], "left": ["load"], "right": ["load"], "join": ["left", "right"], "solo": []},
        params={"load": ["day"]},
    )


def test_order_is_topological_and_keeps_definition_order_for_ties() -> None:
    dag = diamond()
    assert dag.order == ("load", "left", "right", "join", "solo")
    assert dag.roots() == ["load", "solo"]
    assert dag.leaves() == ["join", "solo"]
    assert dag.descendants("load") == ["left", "right", "join"]


def test_cycle_is_named_with_its_path() -> None:
    with pytest.raises(CycleError) as info:
        DAG({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    assert info.value.cycle[0] == info.value.cycle[-1]
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert "a → " in str(info.value) or "b → " in str(info.value)
    assert isinstance(info.value, ValueError)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="x → x"):
        DAG({"x": ["x"]})


def test_unknown_dependency_is_reported() -> None:
    with pytest.raises(PipelineDefinitionError, match="'b' depends on 'nope'"):
        DAG({"a": [], "b": ["nope"]})


def test_find_cycle_on_acyclic_graph() -> None:
    assert find_cycle({"a": [], "b": ["a"]}) == []


def test_frontier_hands_out_nodes_when_inputs_complete() -> None:
    frontier = Frontier(diamond())
    assert frontier.ready() == ["load", "solo"]
    assert frontier.ready() == []
    assert frontier.complete("load") == ["left", "right"]
    frontier.ready()
    assert frontier.complete("left") == []
    assert frontier.complete("right") == ["join"]
    frontier.complete("solo")
    assert not frontier.finished
    frontier.complete("join")
    assert frontier.finished


def test_failure_skips_descendants_and_independent_branches_go_on() -> None:
    frontier = Frontier(diamond())
    frontier.ready()
    frontier.complete("load")
    frontier.ready()
    assert frontier.fail("left") == ["join"]
    assert frontier.complete("right") == []  # join is skipped, never handed out
    frontier.complete("solo")
    assert frontier.finished


def test_ten_thousand_nodes_plan_fast() -> None:
    deps = {f"n{i}": [f"n{i - 1}"] if i % 100 else [] for i in range(10_000)}
    dag = DAG(deps)
    assert len(dag.order) == 10_000


def test_render_text_lists_inputs() -> None:
    out = render_text(diamond(), title="pipeline demo")
    assert out.splitlines()[0] == "pipeline demo (5 tasks)"
    assert "join   ← left, right" in out
    assert "load   ← param day" in out
    marked = render_text(diamond(), statuses={"load": "COMPLETED", "left": "FAILED"})
    assert "✓ load" in marked and "✗ left" in marked


def test_render_mermaid() -> None:
    out = render_mermaid(diamond(), statuses={"load": "COMPLETED", "left": "FAILED"})
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    p0(["day"])' in lines
    assert '    t0["load"]' in lines
    assert "    t0 --> t1" in lines and "    t1 --> t3" in lines
    assert "    p0 -.-> t0" in lines
    assert "    class t1 failed" in lines and "    class t0 completed" in lines


def test_mermaid_escapes_labels() -> None:
    out = render_mermaid(DAG({'we"ird[1]': []}))
    assert "we#34;ird#91;1#93;" in out
