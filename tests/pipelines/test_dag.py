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


@pytest.mark.slow
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


# -- behaviour pinned down by mutation testing (python tools/mutation.py src/loopml/pipelines/dag.py
#    tests/pipelines/test_dag.py) ---------------------------------------------------------------


def test_a_node_waits_for_all_its_dependencies_even_when_listed_before_them() -> None:
    dag = DAG({"load": [], "report": ["load", "train"], "train": ["load"]})
    assert dag.order == ("load", "train", "report")


def test_membership_and_labels() -> None:
    dag = DAG({"a": [], "b": ["a"]}, labels={"a": "load data"})
    assert "a" in dag and "b" in dag and "c" not in dag
    assert dag.label("a") == "load data" and dag.label("b") == "b"
    assert render_text(dag) == "  load data\n  b          ← load data"


def test_unknown_dependency_message_lists_the_known_tasks() -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        DAG({"a": [], "b": ["nope"]})
    assert str(info.value) == (
        "Task 'b' depends on 'nope', which is not a task of this pipeline. Known tasks: a, b."
    )


def test_cycle_message_names_the_cycle_from_the_first_task_on_it() -> None:
    with pytest.raises(CycleError) as info:
        DAG({"d": [], "a": ["c"], "b": ["a"], "c": ["b"], "e": ["a"]})
    assert info.value.cycle == ["a", "c", "b", "a"]
    assert str(info.value) == (
        "The pipeline's tasks form a cycle: a → c → b → a. A task can't depend, directly or "
        "through others, on its own output: remove one of these dependencies."
    )


@pytest.mark.parametrize(
    ("deps", "cycle"),
    [
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        # the search goes on after a finished branch, and after a start already visited
        ({"a": ["b", "c"], "b": [], "c": ["a"]}, ["a", "c", "a"]),
        ({"a": ["b"], "b": [], "c": ["d"], "d": ["c"]}, ["c", "d", "c"]),
        # a dependency outside ``deps`` (a task already ordered) is no part of a cycle
        ({"a": ["done", "b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"a": ["done"], "b": ["a", "b"]}, ["b", "b"]),
        # a cycle hanging below a node reached twice
        ({"x": ["y", "z"], "y": ["z"], "z": ["w"], "w": ["z"]}, ["z", "w", "z"]),
    ],
)
def test_find_cycle_returns_one_cycle_first_node_repeated(
    deps: dict[str, list[str]], cycle: list[str]
) -> None:
    assert find_cycle(deps) == cycle


@pytest.mark.parametrize(
    "deps",
    [
        {},
        {"a": ["ext"]},
        {"a": [], "b": ["a"], "c": ["a", "b"]},
        {"a": ["b", "c"], "b": ["c"], "c": []},
    ],
)
def test_find_cycle_is_empty_only_without_a_cycle(deps: dict[str, list[str]]) -> None:
    assert find_cycle(deps) == []


def test_finished_counts_failed_and_skipped_nodes_exactly_once() -> None:
    frontier = Frontier(diamond())
    assert frontier.ready() == ["load", "solo"]
    assert frontier.fail("load") == ["left", "right", "join"]
    assert not frontier.finished  # solo is still running
    assert frontier.ready() == []
    frontier.complete("solo")
    assert frontier.finished


def test_failing_two_branches_skips_their_common_descendant_once() -> None:
    frontier = Frontier(diamond())
    frontier.ready()
    frontier.complete("load")
    assert frontier.ready() == ["left", "right"]
    assert frontier.fail("left") == ["join"]
    assert frontier.fail("right") == []
    assert not frontier.finished
    frontier.complete("solo")
    assert frontier.finished


def test_render_text_exact_layout() -> None:
    assert render_text(diamond(), title="pipeline demo") == (
        "pipeline demo (5 tasks)\n"
        "  load   ← param day\n"
        "  left   ← load\n"
        "  right  ← load\n"
        "  join   ← left, right\n"
        "  solo"
    )
    marked = render_text(
        diamond(), statuses={"load": "COMPLETED", "left": "WEIRD", "solo": "CACHED"}
    )
    assert marked == (
        "  ✓ load   ← param day\n"
        "  ? left   ← load\n"
        "    right  ← load\n"  # no status yet: PENDING, a blank mark
        "    join   ← left, right\n"
        "  ↺ solo"
    )


def test_render_text_counts_tasks_in_the_title() -> None:
    assert render_text(DAG({"only": []}), title="p") == "p (1 task)\n  only"
    assert render_text(DAG({}), title="p") == "p (0 tasks)"
    assert render_text(DAG({})) == ""


def test_render_mermaid_exact_output() -> None:
    statuses = {"load": "COMPLETED", "left": "FAILED", "right": "PENDING", "join": "SKIPPED"}
    assert render_mermaid(diamond(), statuses=statuses).splitlines() == [
        "flowchart TD",
        '    p0(["day"])',
        '    t0["load"]',
        '    t1["left"]',
        '    t2["right"]',
        '    t3["join"]',
        '    t4["solo"]',
        "    p0 -.-> t0",
        "    t0 --> t1",
        "    t0 --> t2",
        "    t1 --> t3",
        "    t2 --> t3",
        "    classDef completed fill:#d4f7d4,stroke:#2b8a3e",
        "    classDef failed fill:#ffe3e3,stroke:#c92a2a",
        "    classDef skipped fill:#f1f3f5,stroke:#868e96,stroke-dasharray:3 3",
        "    class t0 completed",
        "    class t1 failed",
        "    class t3 skipped",
    ]
    assert "class" not in render_mermaid(diamond())
