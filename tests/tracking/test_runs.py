"""The tracking contract, run on every metadata backend (the ``ws`` fixture)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml.exceptions import (
    Conflict,
    ExperimentNotFound,
    InvalidKey,
    InvalidValue,
    ParamConflict,
    RunNotActive,
    RunNotFound,
)
from loopml.workspace import Workspace


def test_run_lifecycle(ws: Workspace) -> None:
    with ws.start_run(experiment="exp", name="first", tags={"team": "a"}) as run:
        assert ws.active_run() is run
        run.log_params({"lr": 0.01, "layers": 3})
        run.log_metric("loss", 0.5, step=0)
        run.log_metric("loss", 0.25, step=1)
    assert ws.active_run() is None
    record = ws.get_run(run.id)
    assert record.status == "FINISHED"
    assert record.name == "first"
    assert record.experiment == "exp"
    assert record.params == {"layers": "3", "lr": "0.01"}
    assert record.metrics == {"loss": 0.25}
    assert record.tags["team"] == "a"
    assert record.end_time is not None and record.duration is not None and record.duration >= 0


def test_exception_marks_run_failed_with_traceback(ws: Workspace) -> None:
    with pytest.raises(ZeroDivisionError), ws.start_run() as run:
        run.log_metric("before", 1.0)
        _ = 1 / 0
    record = ws.get_run(run.id)
    assert record.status == "FAILED"
    assert record.error is not None and "ZeroDivisionError" in record.error
    assert record.metrics == {"before": 1.0}  # buffered points were flushed


def test_keyboard_interrupt_marks_run_killed(ws: Workspace) -> None:
    with pytest.raises(KeyboardInterrupt), ws.start_run() as run:
        raise KeyboardInterrupt
    assert ws.get_run(run.id).status == "KILLED"


def test_end_run_with_status(ws: Workspace) -> None:
    run = ws.start_run()
    ws.end_run(status="killed")
    assert ws.get_run(run.id).status == "KILLED"
    run.end()  # a second end does nothing
    assert ws.get_run(run.id).status == "KILLED"


def test_a_run_whose_end_cannot_be_recorded_is_no_longer_active(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sqlite_ws.start_run()

    def refuse(status: object, error: object) -> None:
        raise RuntimeError("the store is gone")

    monkeypatch.setattr(run, "_record_end", refuse)
    with pytest.raises(RuntimeError, match="the store is gone"):
        run.end()
    assert sqlite_ws.active_run() is None  # a new run can start in this thread
    with sqlite_ws.start_run() as second:
        second.log_metric("loss", 1.0)
    assert sqlite_ws.get_run(second.id).status == "FINISHED"


def test_params_are_immutable(ws: Workspace) -> None:
    with ws.start_run() as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)  # same value again is fine
        with pytest.raises(ParamConflict, match="'lr' is '0.1', not '0.2'"):
            run.log_param("lr", 0.2)
        with pytest.raises(ParamConflict):
            run.log_params({"new": 1, "lr": 0.3})
        assert ws.get_run(run.id).params == {"lr": "0.1"}  # the batch was all-or-nothing


def test_tags_are_mutable(ws: Workspace) -> None:
    with ws.start_run() as run:
        run.set_tag("stage", "dev")
        run.set_tags({"stage": "prod", "owner": "me"})
    tags = ws.get_run(run.id).tags
    assert tags["stage"] == "prod" and tags["owner"] == "me"


def test_logging_to_a_finished_run_is_refused(ws: Workspace) -> None:
    with ws.start_run() as run:
        pass
    for call in (
        lambda: run.log_metric("m", 1.0),
        lambda: run.log_metrics({"m": 1.0}),
        lambda: run.log_param("p", 1),
        lambda: run.log_text("x", "a.txt"),
    ):
        with pytest.raises(RunNotActive, match="FINISHED"):
            call()


def test_nan_and_inf_are_stored_as_such(ws: Workspace) -> None:
    with ws.start_run() as run:
        run.log_metric("nan", float("nan"))
        run.log_metric("inf", float("inf"))
        run.log_metric("ninf", -math.inf)
        run.log_metric("np", np.float32(0.5))
        run.log_metric("npnan", np.float64("nan"))
    metrics = ws.get_run(run.id).metrics
    assert math.isnan(metrics["nan"]) and math.isnan(metrics["npnan"])
    assert metrics["inf"] == math.inf and metrics["ninf"] == -math.inf
    assert metrics["np"] == 0.5
    history = ws.metric_history(run.id, "nan")
    assert history["value"].isna().all() and len(history) == 1


@pytest.mark.parametrize("value", ["0.5", None, [1.0], {"a": 1}, complex(1, 2)])
@pytest.mark.slow
def test_non_numeric_metric_values_are_refused(ws: Workspace, value: object) -> None:
    with ws.start_run() as run, pytest.raises(InvalidValue, match="must be a number"):
        run.log_metric("m", value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["", "a" * 251, "bad\nkey", "semi;colon", "/abs", "a/../b", " padded", "smile🙂"]
)
@pytest.mark.slow
def test_illegal_keys_are_refused(ws: Workspace, key: str) -> None:
    with ws.start_run() as run:
        with pytest.raises(InvalidKey):
            run.log_metric(key, 1.0)
        with pytest.raises(InvalidKey):
            run.log_param(key, 1)
        with pytest.raises(InvalidKey):
            run.set_tag(key, 1)


def test_non_ascii_letters_in_keys_are_accepted(ws: Workspace) -> None:
    # As MLflow takes them: letters and digits of any script.
    with ws.start_run() as run:
        run.log_param("скорость обучения", 0.01)
        run.log_metric("точность", 0.9)
        run.set_tag("équipe", "données")
    record = ws.get_run(run.id)
    assert record.params == {"скорость обучения": "0.01"}
    assert record.metrics == {"точность": 0.9}
    assert record.tags["équipe"] == "données"
    found = ws.search_runs(filter="metrics.точность > 0.5 and tags.équipe = 'données'")
    assert found["run_id"].tolist() == [run.id]


@pytest.mark.slow
def test_a_refused_key_names_its_bad_characters_in_order(ws: Workspace) -> None:
    with ws.start_run() as run, pytest.raises(InvalidKey) as info:
        run.log_metric("loss 🙂 ☃", 1.0)
    # Each bad character once, as it appears (sorting them scrambled words).
    assert "contains '🙂' '☃':" in str(info.value)


def test_key_errors_use_the_right_article(ws: Workspace) -> None:
    with pytest.raises(InvalidKey, match="^An experiment name must be a non-empty string"):
        ws.create_experiment("")
    with ws.start_run() as run, pytest.raises(InvalidKey, match="^A metric key must be"):
        run.log_metric("", 1.0)


def test_unknown_experiment_lists_the_known_ones_quoted(ws: Workspace) -> None:
    ws.create_experiment("v1.")
    with pytest.raises(ExperimentNotFound) as info:
        ws.get_experiment("v2")
    assert str(info.value) == "No experiment 'v2'. Known experiments: 'v1.'."  # not "v1.."


def test_out_of_range_step_and_timestamp_are_refused_at_the_call(ws: Workspace) -> None:
    # The repro of the bug: these were accepted, then every flush failed and the run ended
    # with no metrics at all, the good points before and after included.
    with ws.start_run() as run:
        run.log_metric("loss", 0.5, step=1)
        with pytest.raises(InvalidValue, match="64-bit range"):
            run.log_metric("loss", 0.4, step=2**63)
        with pytest.raises(InvalidValue, match="is out of range"):
            run.log_metric("loss", 0.4, timestamp=1e30)
        with pytest.raises(InvalidValue, match="looks like milliseconds.*timestamp=ms / 1000"):
            run.log_metric("loss", 0.4, timestamp=1_700_000_000_000)  # MLflow's unit
        with pytest.raises(InvalidValue, match="64-bit range"):
            run.log_metrics({"a": 1.0, "b": 2.0}, step=-(2**63) - 1)
        with pytest.raises(InvalidValue, match="out of range"):
            run.log_metrics({"a": 1.0}, timestamp=math.nan)
        run.log_metric("loss", 0.3, step=3, timestamp=1_700_000_000.5)
        run.log_metric("loss", 0.2, step=2**63 - 1)
    history = ws.metric_history(run.id, "loss")
    assert history["value"].tolist() == [0.5, 0.3, 0.2]
    assert history["step"].tolist() == [1, 3, 2**63 - 1]
    assert history["timestamp"][1] == pd.Timestamp(1_700_000_000.5, unit="s", tz="UTC")
    record = ws.get_run(run.id)
    assert record.status == "FINISHED" and record.metrics == {"loss": 0.2}
    assert "loopml.rejected_metrics" not in record.tags


def test_overlong_param_value(ws: Workspace) -> None:
    with ws.start_run() as run, pytest.raises(InvalidValue, match="limit is 6000"):
        run.log_param("p", "x" * 6001)


def test_metric_history_and_auto_steps(ws: Workspace) -> None:
    with ws.start_run() as run:
        for value in (3.0, 2.0, 1.0):
            run.log_metric("loss", value)
        run.log_metrics({"a": 1.0, "b": 2.0}, step=10)
        run.log_metric("t", 1.0, timestamp=1_700_000_000.5)
    history = ws.metric_history(run.id, "loss")
    assert list(history.columns) == ["step", "timestamp", "value"]
    assert history["step"].tolist() == [0, 1, 2]
    assert history["value"].tolist() == [3.0, 2.0, 1.0]
    assert str(history["timestamp"].dtype).startswith("datetime64[") and "UTC" in str(
        history["timestamp"].dtype
    )
    t = ws.metric_history(run.id, "t")
    assert t["timestamp"][0] == pd.Timestamp(1_700_000_000_500, unit="ms", tz="UTC")
    assert ws.metric_history(run.id, "nope").empty
    with pytest.raises(RunNotFound):
        ws.metric_history("0" * 32, "loss")


def test_latest_metric_is_highest_step_not_last_logged(ws: Workspace) -> None:
    with ws.start_run() as run:
        run.log_metric("m", 5.0, step=5)
        run.log_metric("m", 1.0, step=1)
    assert ws.get_run(run.id).metrics["m"] == 5.0


def test_nested_runs(ws: Workspace) -> None:
    with ws.start_run(name="parent") as parent:
        with pytest.raises(Conflict, match="nested=True"):
            ws.start_run()
        with ws.start_run(name="child", nested=True) as child:
            assert ws.active_run() is child
        assert ws.active_run() is parent
    assert ws.get_run(child.id).parent_run_id == parent.id


@pytest.mark.slow
def test_resume_a_run(ws: Workspace) -> None:
    with ws.start_run() as run:
        run.log_metric("loss", 1.0)
    with ws.start_run(run_id=run.id) as again:
        again.log_metric("loss", 0.5)
    history = ws.metric_history(run.id, "loss")
    assert history["step"].tolist() == [0, 1]
    assert ws.get_run(run.id).status == "FINISHED"


def test_experiments(ws: Workspace) -> None:
    created = ws.create_experiment("alpha", description="first")
    assert created.name == "alpha"
    with pytest.raises(Conflict):
        ws.create_experiment("alpha")
    with ws.start_run(experiment="alpha"):
        pass
    with ws.start_run(experiment="beta"):
        pass
    listing = {e.name: e.run_count for e in ws.list_experiments()}
    assert listing == {"alpha": 1, "beta": 1}
    renamed = ws.rename_experiment("alpha", "gamma")
    assert renamed.id == created.id and renamed.name == "gamma"
    with pytest.raises(ExperimentNotFound, match="Known experiments"):
        ws.get_experiment("alpha")
    with pytest.raises(Conflict):
        ws.rename_experiment("gamma", "beta")


def test_delete_and_restore(ws: Workspace) -> None:
    with ws.start_run(experiment="e") as run:
        pass
    ws.delete_run(run.id)
    assert ws.search_runs(experiments=["e"]).empty
    assert len(ws.search_runs(experiments=["e"], include_deleted=True)) == 1
    assert ws.get_run(run.id).deleted
    ws.restore_run(run.id)
    assert ws.search_runs(experiments=["e"])["run_id"].tolist() == [run.id]
    with pytest.raises(RunNotFound):
        ws.delete_run("f" * 32)


def test_unknown_run(ws: Workspace) -> None:
    with pytest.raises(RunNotFound, match="loopml runs list"):
        ws.get_run("nope")


def test_seed_everything_seeds_and_records(ws: Workspace) -> None:
    with ws.start_run() as run:
        ws.seed_everything(1234)
        a = (random.random(), np.random.rand())
        ws.seed_everything(1234)
        b = (random.random(), np.random.rand())
    assert a == b
    record = ws.get_run(run.id)
    assert record.seed == 1234 and record.tags["loopml.seed"] == "1234"


def test_log_input_records_dataset_hash(ws: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    (data / "b.csv").write_text("x\n2\n")
    frame = pd.DataFrame({"x": [1, 2]})
    with ws.start_run() as run:
        folder = run.log_input(data)
        same = run.log_input(data, name="again")
        df_ref = run.log_input(frame, name="frame")
    assert folder.digest == same.digest and folder.file_count == 2
    inputs = {i["name"]: i for i in ws.get_run(run.id).inputs}
    assert inputs["data"]["digest"] == folder.digest
    assert inputs["frame"]["digest"] == df_ref.digest
    (data / "b.csv").write_text("x\n3\n")
    with ws.start_run() as run2:
        changed = run2.log_input(data)
    assert changed.digest != folder.digest


def test_module_level_api_uses_default_workspace(default_ws: Workspace) -> None:
    with loopml.start_run(experiment="fluent") as run:
        loopml.log_param("a", 1)
        loopml.log_metric("m", 2.0)
        loopml.set_tag("t", "v")
    record = loopml.get_run(run.id)
    assert record.params == {"a": "1"} and record.metrics == {"m": 2.0}
    loopml.log_metric("auto", 1.0)  # starts a run, like MLflow
    auto = loopml.active_run()
    assert auto is not None
    loopml.end_run()
    assert default_ws.get_run(auto.id).metrics == {"auto": 1.0}


def test_activate_run_in_another_thread(sqlite_ws: Workspace) -> None:
    import threading

    with sqlite_ws.start_run() as run:

        def work() -> None:
            assert sqlite_ws.active_run() is None  # active runs are per thread
            with sqlite_ws.runs.activate(run):
                sqlite_ws.log_metric("from_thread", 1.0)
            assert sqlite_ws.active_run() is None

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert sqlite_ws.get_run(run.id).metrics == {"from_thread": 1.0}
