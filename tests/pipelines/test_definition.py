"""Defining pipelines: task calls build the DAG; misuse is a clear error at definition time."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from loopml.exceptions import LoopmlWarning
from loopml.pipelines import (
    CycleError,
    InvalidSchedule,
    Pipeline,
    PipelineDefinitionError,
    PipelineNotFound,
    load_pipeline,
    on_event,
    on_new_data,
    on_schedule,
    pipeline,
    task,
)


@task
def load(day: str) -> list[int]:
    return [1, 2, 3]


@task(retries=2, retry_delay=0.5, timeout=10)
def clean(rows: list[int]) -> list[int]:
    return [r for r in rows if r]


@task
def train(rows: list[int], lr: float = 0.1) -> float:
    return sum(rows) * lr


@task
def report(model: float, rows: list[int]) -> str:
    return f"{model} on {len(rows)}"


@pipeline(schedule="0 3 * * *", partition="day")
def churn(day: str, lr: float = 0.1):
    rows = clean(load(day))
    model = train(rows, lr=lr)
    return report(model, rows)


def test_calls_build_the_dag_at_definition_time() -> None:
    assert isinstance(churn, Pipeline)
    build = churn.template
    assert build is not None
    assert build.dag.order == ("load", "clean", "train", "report")
    assert build.dag.deps["report"] == ("train", "clean")
    assert build.dag.params["load"] == ("day",)
    assert build.dag.params["train"] == ("lr",)
    assert build.returned_nodes() == ["report"]
    assert [t.id for t in churn.triggers] == ["schedule:0 3 * * *"]
    assert churn.ref.endswith(":churn")


def test_task_spec_and_plain_function() -> None:
    assert clean.spec.retries == 2 and clean.spec.timeout == 10
    assert clean.spec.delay_before(2) == 0.5 and clean.spec.delay_before(3) == 1.0
    assert clean.fn([0, 1]) == [1]
    assert clean.__name__ == "clean"


def test_task_called_outside_a_pipeline_is_a_clear_error() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"'load' was called outside a @pipeline"):
        load("2026-11-01")
    with pytest.raises(PipelineDefinitionError, match=r"load\.fn\(\.\.\.\)"):
        load("2026-11-01")


def test_cycle_is_reported_when_the_pipeline_is_defined() -> None:
    with pytest.raises(CycleError, match="clean → train → clean|train → clean → train"):

        @pipeline
        def circular(day: str):
            rows = clean(load(day), after="train")
            train(rows)


def test_handle_used_as_a_value_is_a_clear_error() -> None:
    with pytest.raises(PipelineDefinitionError, match="Cannot test the output of task 'load'"):

        @pipeline
        def branching(day: str):
            rows = load(day)
            if rows:
                clean(rows)


def test_wrong_arguments_and_bad_options() -> None:
    with pytest.raises(PipelineDefinitionError, match="does not take"):

        @pipeline
        def wrong(day: str):
            load(day, 3)

    with pytest.raises(PipelineDefinitionError, match="retries must be"):
        task(retries=-1)(lambda: 1)
    with pytest.raises(PipelineDefinitionError, match="timeout must be"):
        task(timeout=0)(lambda: 1)
    with pytest.raises(PipelineDefinitionError, match="calls no @task"):

        @pipeline
        def empty(day: str):
            return day

    with pytest.raises(PipelineDefinitionError, match="partition='month' is not one of"):
        pipeline(partition="month")(lambda day: load(day))


def test_malformed_cron_is_rejected_at_definition() -> None:
    with pytest.raises(InvalidSchedule, match="Not a cron expression: '61 \\* \\* \\* \\*'"):

        @pipeline(schedule="61 * * * *")
        def hourly(day: str):
            load(day)

    with pytest.raises(InvalidSchedule, match="five fields"):
        on_schedule("every day")
    with pytest.raises(InvalidSchedule, match="Unknown time zone"):
        on_schedule("0 3 * * *", tz="Mars/Olympus")
    assert isinstance(InvalidSchedule("x"), ValueError)


def test_triggers_are_declared_on_the_pipeline() -> None:
    with pytest.warns(LoopmlWarning, match=r"on_new_data\('data/raw'\): there is no such"):

        @pipeline(triggers=[on_new_data("data/raw"), on_event("alert", subject="churn")])
        def retrain(day: str = "latest"):
            load(day)

    assert [t.id for t in retrain.triggers] == ["data:data/raw", "event:alert:churn"]
    with pytest.raises(PipelineDefinitionError, match="triggers= takes"):
        pipeline(triggers=["0 3 * * *"])(lambda day: load(day))  # type: ignore[list-item]


def test_repeated_task_calls_get_numbered_nodes_and_sub_pipelines_inline() -> None:
    @pipeline
    def inner(day: str):
        return clean(load(day))

    @pipeline
    def outer(day: str):
        a = inner(day=day)
        b = inner(day="2026-01-01")
        return report(train(a), b)

    assert outer.template is not None
    assert outer.template.dag.order == ("load", "clean", "load-2", "clean-2", "train", "report")


def test_body_computing_with_params_is_built_at_run_time() -> None:
    @pipeline
    def dynamic(days: int = 3):
        parts = [load(f"2026-11-0{i + 1}") for i in range(days)]
        return report(train(parts[0]), parts[-1])

    assert dynamic.template is None  # needs the value of `days`
    assert len(dynamic.build({"days": 2}).dag) == 4
    assert len(dynamic.shape({"days": 3}).dag) == 5


def test_params_are_bound_and_coerced() -> None:
    @pipeline
    def typed(day: date, n: int = 1, ratio: float = 0.5, dry: bool = False, tags: list = ()):  # type: ignore[assignment]
        load(day)

    assert typed.coerce({"day": "2026-11-01", "n": "3", "ratio": "2", "dry": "yes"}) == {
        "day": date(2026, 11, 1),
        "n": 3,
        "ratio": 2.0,
        "dry": True,
    }
    assert typed.coerce({"tags": '["a"]'}) == {"tags": ["a"]}
    with pytest.raises(PipelineDefinitionError, match="'n' of pipeline 'typed' must be an int"):
        typed.coerce({"n": "three"})
    with pytest.raises(PipelineDefinitionError, match="needs a value for param"):
        typed.bind({})
    with pytest.raises(PipelineDefinitionError, match="has no param 'nope'"):
        typed.bind({"day": "x", "nope": 1})
    assert typed.partition_of({"day": date(2026, 1, 1)}) is None


@pytest.mark.slow
def test_load_pipeline_by_module_and_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = textwrap.dedent(
        """
        from loopml.pipelines import pipeline, task

        @task
        def one() -> int:
            return 1

        @pipeline
        def first():
            one()

        @pipeline(name="renamed")
        def second():
            one()
        """
    )
    (tmp_path / "pkg_flows.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    by_file = load_pipeline("pkg_flows.py:first")
    assert by_file.name == "first"
    assert by_file.ref == f"{(tmp_path / 'pkg_flows.py').resolve()}:first"
    assert load_pipeline(f"{tmp_path / 'pkg_flows.py'}:renamed").name == "renamed"
    assert load_pipeline("pkg_flows:second").name == "renamed"
    with pytest.raises(PipelineNotFound, match="several pipelines"):
        load_pipeline("pkg_flows.py")
    with pytest.raises(PipelineNotFound, match="'third' in pkg_flows is not defined there"):
        load_pipeline("pkg_flows:third")
    with pytest.raises(PipelineNotFound, match="Cannot import module 'no_such_mod'"):
        load_pipeline("no_such_mod:x")
    with pytest.raises(PipelineNotFound, match="No file missing.py"):
        load_pipeline("missing.py:x")
