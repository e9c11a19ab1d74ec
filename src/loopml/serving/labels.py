"""Delayed labels from a file: ``loopml labels ingest FILE --deployment NAME``.

The file (CSV, ``.csv.gz`` or Parquet; a local path or an fsspec URL) has a ``request_id``
column, a ``label`` or a ``reward`` column (or both) and optionally ``time`` (when the
outcome was known; ISO 8601, naive times are UTC; default: now). Each good row becomes a
feedback row of ``deployment``'s log, exactly as ``POST /feedback`` writes it: the label as
JSON text (a CSV label is read as JSON when it parses — ``1``, ``0.5``, ``true`` — else kept
as text), the reward as a number. Other columns are ignored.

A bad row (no request id, an unreadable time, a reward that is not a number, neither label
nor reward) is skipped and reported with its row number (1 is the first row under the
header); the good rows are written. A request id given twice in one file keeps its last row
(counted as ``duplicates``); given again in a later file, the newer label wins when read,
as for ``/feedback``. Request ids the prediction log of ``deployment`` doesn't hold are
counted (``unknown``), not refused: their predictions may be logged later, or elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.workspace import WorkspaceLike

#: Bad rows listed one by one in the result (all are counted).
SHOWN_BAD_ROWS = 20


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_labels` did."""

    deployment: str
    path: str
    rows: int  # rows in the file
    ingested: int  # feedback rows written
    bad: int  # rows skipped
    duplicates: int  # earlier rows of a request id given again in the file
    unknown: int  # ingested request ids the prediction log doesn't hold
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (row, why), the first few

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bad_rows"] = [{"row": row, "reason": why} for row, why in self.bad_rows]
        return out


def _read(path: str, storage_options: dict[str, Any] | None) -> tuple[pa.Table, bool]:
    """The file as an Arrow table, and whether it is CSV (its columns are then all text,
    parsed row by row here)."""
    import pyarrow as pa

    from loopml.serving.batch_input import InputNotFound, format_of, open_fs

    fs, where = open_fs(path, storage_options, "Reading labels from")
    kind = format_of(where)
    if kind is None:
        raise InvalidInput(f"{path}: labels are read from *.csv, *.csv.gz or *.parquet files.")
    if not fs.isfile(where):
        raise InputNotFound(f"No labels file at {path}.")
    try:
        with fs.open(where, "rb", compression="infer") as fh:
            if kind == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(fh), False
            import pyarrow.csv as pacsv

            header = pacsv.open_csv(fh).schema.names
        with fs.open(where, "rb", compression="infer") as fh:
            options = pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
            )
            return pacsv.read_csv(fh, convert_options=options), True
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"Cannot read {path} as a {kind} file: {exc}") from exc


def _label(value: Any, text: bool) -> Any:
    if text and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _reward(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"reward {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"reward {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"reward {value!r} is not a finite number")
    return number


def ingest_labels(
    path: str | os.PathLike[str],
    deployment: str,
    *,
    storage_options: dict[str, Any] | None = None,
    workspace: WorkspaceLike = None,
) -> IngestResult:
    """Record the labels (or rewards) of ``path`` as feedback on ``deployment``'s requests;
    see the module doc.

    >>> ingest_labels("labels/2026-12-01.csv", "churn-api")                # doctest: +SKIP
    """
    from loopml.serving.deployments import _NAME
    from loopml.serving.log import PredictionLogger, _utc, known_request_ids, to_json
    from loopml.workspace import resolve_workspace

    if not _NAME.match(deployment or ""):
        raise InvalidInput(f"Deployment name {deployment!r}: letters, digits, _ . - only.")
    shown = os.fspath(path)
    table, text = _read(shown, storage_options)
    names = table.column_names
    missing = [] if "request_id" in names else ["request_id"]
    if "label" not in names and "reward" not in names:
        missing.append("label (or reward)")
    if missing:
        raise InvalidInput(
            f"{shown} has no {' and no '.join(missing)} column: a labels file holds "
            f"request_id, label or reward, and optionally time. Its columns: {names}."
        )
    now = datetime.now(UTC)
    ws = resolve_workspace(workspace)
    good: dict[str, dict[str, Any]] = {}
    bad: list[tuple[int, str]] = []
    bad_count = duplicates = 0
    columns = {
        n: table.column(n).to_pylist()
        for n in ("request_id", "label", "reward", "time")
        if n in names
    }
    for i in range(table.num_rows):
        row = i + 1
        try:
            request_id = columns["request_id"][i]
            if request_id is None or str(request_id).strip() == "":
                raise ValueError("no request_id")
            label = columns["label"][i] if "label" in columns else None
            raw_reward = columns["reward"][i] if "reward" in columns else None
            if label is None and raw_reward is None:
                raise ValueError("neither label nor reward")
            reward = None if raw_reward is None else _reward(raw_reward)
            raw_time = columns["time"][i] if "time" in columns else None
            if raw_time is not None and not isinstance(raw_time, (str, datetime)):
                raise ValueError(f"time {raw_time!r} is not a time")
            try:
                at = now if raw_time is None else _utc(raw_time, "time")
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None
        except ValueError as exc:
            bad_count += 1
            if len(bad) < SHOWN_BAD_ROWS:
                bad.append((row, str(exc)))
            continue
        key = str(request_id).strip()
        if key in good:
            duplicates += 1
            del good[key]  # the last row of the file wins: keep insertion order by it
        good[key] = {
            "request_id": key,
            "time": at,
            "deployment": deployment,
            "label": None if label is None else to_json(_label(label, text)),
            "reward": reward,
        }
    if good:
        logger = PredictionLogger(ws.blobs, batch_rows=len(good) + 1)
        for feedback in good.values():
            logger.feedback(feedback)
        logger.flush()  # raises when it can't write: a lost label is never silent
    known = known_request_ids(ws, deployment, good) if good else set()
    return IngestResult(
        deployment=deployment,
        path=shown,
        rows=table.num_rows,
        ingested=len(good),
        bad=bad_count,
        duplicates=duplicates,
        unknown=len(good) - len(known),
        bad_rows=bad,
    )
