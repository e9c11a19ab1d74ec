"""What MLflow's tracking API takes and answers, value by value: its limits and reserved tag
names, the request fields (text, integers, lists, metric numbers, keys, params, tags, points)
checked as MLflow's server checks them, the rows a point logged for a logged model adds, and
MLflow's run filter in loopml's language."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select, update

from loopml.exceptions import InvalidInput
from loopml.server.errors import ApiError
from loopml.server.mlflow_api.tables import (
    logged_models,
    mlflow_run_models,
)
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.tracking import keys

# MLflow's limits (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_RESULTS = 50_000
DEFAULT_SEARCH_RUNS = 1000
DEFAULT_SEARCH_EXPERIMENTS = 1000

RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"
LOG_MODEL_TAG = "mlflow.log-model.history"

TERMINAL_STATUSES = {"FINISHED", "FAILED", "KILLED"}
RUN_STATUSES = {"RUNNING", "SCHEDULED", *TERMINAL_STATUSES}
VIEW_TYPES = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


# -- request values --------------------------------------------------------------------------


def bad(message: str) -> ApiError:
    return ApiError("INVALID_PARAMETER_VALUE", message)


def text(body: dict[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    """A string field of the request (MLflow's "Missing value for required parameter")."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise bad(f"Missing value for required parameter '{name}'.")
        return default
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else value
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise bad(f"Parameter '{name}' must be a string, got {type(value).__name__}.")
    return str(value)


def integer(body: dict[str, Any], name: str, default: int | None = None) -> int | None:
    """An int64 field (protobuf JSON writes them as numbers or as strings of digits)."""
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise bad(f"Parameter '{name}' must be an integer, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
        return int(value)
    raise bad(f"Parameter '{name}' must be an integer, got {value!r}.")


def string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str | int):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    raise bad(f"Parameter '{name}' must be a list of strings, got {value!r}.")


def metric_number(key: str, value: Any) -> float | None:
    """A metric value as stored: a float, or None for NaN (``"NaN"``, ``"Infinity"`` and
    numbers as strings are protobuf JSON's spellings)."""
    if isinstance(value, bool) or value is None:
        raise bad(f"Got invalid value {value!r} for metric '{key}': expected a number.")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise bad(
                f"Got invalid value {value!r} for metric '{key}': expected a number."
            ) from None
    else:
        raise bad(f"Got invalid value {value!r} for metric '{key}': expected a number.")
    return None if math.isnan(number) else number


def metric_json(value: float | None) -> float | str:
    """A stored metric value in protobuf JSON: NaN and infinities are strings there."""
    if value is None or value != value:
        return "NaN"
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return value


def check_key(key: Any, what: str) -> str:
    try:
        return keys.check_key(key, what)
    except InvalidInput as exc:
        raise bad(str(exc)) from None


def model_metrics(
    run_id: str, items: list[Any], points: list[tuple[str, str, float | None, int, int]]
) -> list[tuple[str, dict[str, Any]]]:
    """The points of a request that name a logged model (``model_id``), as (model id,
    MLflow Metric) pairs; usually none."""
    out = []
    for item, (_run, key, value, step, ts) in zip(items, points, strict=True):
        model_id = item.get("model_id") if isinstance(item, dict) else None
        if not model_id:
            continue
        metric: dict[str, Any] = {
            "key": key,
            "value": metric_json(value),
            "timestamp": ts,
            "step": step,
            "run_id": run_id,
            "model_id": str(model_id),
        }
        for extra in ("dataset_name", "dataset_digest"):
            if item.get(extra):
                metric[extra] = str(item[extra])
        out.append((str(model_id), metric))
    return out


def add_model_metrics(conn: Connection, pairs: list[tuple[str, dict[str, Any]]]) -> None:
    """Append metrics to logged models' ``metrics`` (a JSON list of MLflow Metrics, what the
    logged-models API answers with), in the caller's transaction; an unknown logged model is
    RESOURCE_DOES_NOT_EXIST."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for model_id, metric in pairs:
        by_model.setdefault(model_id, []).append(metric)
    for model_id, new in by_model.items():
        row = conn.execute(
            select(logged_models.c.metrics).where(logged_models.c.id == model_id)
        ).first()
        if row is None:
            raise ApiError(
                "RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' not found."
            )
        current = json.loads(row[0]) if row[0] else []
        conn.execute(
            update(logged_models)
            .where(logged_models.c.id == model_id)
            .values(metrics=json.dumps(current + new), updated_at=now_ms())
        )


def link_models(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record logged models a run used or produced (``mlflow_run_models`` rows), in the
    caller's transaction; logging one again updates its step."""
    stmt = upsert(conn.dialect.name, mlflow_run_models)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                mlflow_run_models.c.run_id,
                mlflow_run_models.c.model_id,
                mlflow_run_models.c.direction,
            ],
            set_={"step": stmt.excluded.step},
        ),
        rows,
    )


def run_name(name: str) -> str:
    """A run name: any text (as in MLflow and loopml), up to the name column's 250
    characters."""
    if len(name) > keys.MAX_KEY:
        raise bad(f"The run name {name[:40]!r}… is {len(name)} characters; the limit is 250.")
    return name


def param_text(key: str, value: Any) -> str:
    return _text("param", keys.param_value, key, value)


def tag_text(key: str, value: Any) -> str:
    return _text("tag", keys.tag_value, key, value)


def _text(kind: str, check: Callable[[str, Any], str], key: str, value: Any) -> str:
    """A param's or tag's value as stored, or MLflow's INVALID_PARAMETER_VALUE saying why."""
    if value is None:
        raise bad(f"Missing value for {kind} '{key}'.")
    try:
        return check(key, value)
    except InvalidInput as exc:
        raise bad(str(exc)) from None


def point(run_id: str, item: dict[str, Any]) -> tuple[str, str, float | None, int, int]:
    """One MLflow metric ``{key, value, timestamp, step}`` as loopml's writer takes it."""
    if not isinstance(item, dict):
        raise bad(f"A metric must be an object with key, value, timestamp and step: {item!r}")
    key = check_key(item.get("key"), "metric key")
    value = metric_number(key, item.get("value"))
    step = integer(item, "step", 0)
    timestamp = integer(item, "timestamp")
    assert step is not None
    if timestamp is None:
        raise bad(f"Missing value for required parameter 'timestamp' of metric '{key}'.")
    if not keys.STEP_MIN <= step <= keys.STEP_MAX:
        raise bad(f"The step of metric '{key}' ({step}) is outside the 64-bit range.")
    if not keys.TIMESTAMP_MIN_MS <= timestamp < keys.TIMESTAMP_MAX_MS:
        raise bad(
            f"The timestamp of metric '{key}' ({timestamp}) is not milliseconds between "
            "1970 and 2262."
        )
    return (run_id, key, value, step, timestamp)


def points_of(run_id: str, items: list[Any]) -> list[tuple[str, str, float | None, int, int]]:
    """:func:`point` for each item, with the usual case (a float value, integer or digit
    string step and timestamp, a key seen before) checked inline: a 1000-point batch spends
    most of its parsing time here otherwise."""
    out: list[tuple[str, str, float | None, int, int]] = []
    append = out.append
    step_min, step_max = keys.STEP_MIN, keys.STEP_MAX
    ts_min, ts_max = keys.TIMESTAMP_MIN_MS, keys.TIMESTAMP_MAX_MS
    for item in items:
        if type(item) is dict:
            value = item.get("value")
            step = item.get("step", 0)
            ts = item.get("timestamp")
            if type(step) is str and step.isdigit():
                step = int(step)
            if type(ts) is str and ts.isdigit():
                ts = int(ts)
            if (
                type(value) is float
                and type(step) is int
                and type(ts) is int
                and step_min <= step <= step_max
                and ts_min <= ts < ts_max
            ):
                key = check_key(item.get("key"), "metric key")
                append((run_id, key, None if value != value else value, step, ts))
                continue
        append(point(run_id, item))
    return out


def key_values(items: Any, what: str) -> list[tuple[Any, Any]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad(f"'{what}' must be a list of objects with key and value.")
    return [(i.get("key"), i.get("value")) for i in items]


def translate_filter(text_: str | None) -> str | None:
    """MLflow's run filter (or one ``order_by`` item) in loopml's language:
    ``attributes.user_id`` is the ``mlflow.user`` tag, ``attributes.created`` the start time
    and the ``mlflow.runName`` tag the run's name; the rest is the same."""
    if not text_ or not text_.strip():
        return None
    text_ = _RUN_NAME_TAG_RE.sub("attributes.run_name", text_)
    return re.sub(
        r"(?i)\b(?:attributes|attribute|attr|run)\.(?:`(\w+)`|\"(\w+)\"|(\w+))",
        _translate_attribute,
        text_,
    )


_RUN_NAME_TAG_RE = re.compile(
    r"\b(?:tags|tag)\.(?:`mlflow\.runName`|\"mlflow\.runName\"|mlflow\.runName\b)"
)


def _translate_attribute(match: re.Match[str]) -> str:
    name = next(g for g in match.groups() if g)
    lowered = name.lower()
    if lowered == "user_id":
        return f"tags.`{USER_TAG}`"
    if lowered in {"created", "creation_time"}:
        return "attributes.start_time"
    return f"attributes.{name}"
