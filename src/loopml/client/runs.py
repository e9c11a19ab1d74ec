"""``ws.runs`` and ``ws.experiments`` of a workspace that is a loopml server.

:class:`RemoteRuns` is a :class:`loopml.tracking.Runs`, :class:`RemoteRun` a
:class:`loopml.tracking.Run` and :class:`RemoteExperiments` a
:class:`loopml.tracking.Experiments`: same methods, same signatures, same return types, so
training code does not change when ``LOOPML_TRACKING_URI`` points at a server.

Writes work while the server is away: the run id is made here, and starting a run, its
params, tags, metric batches, artifacts and its end are sent at once or, when the server
can't be reached, spooled and sent in order later (:mod:`loopml.client.spool`). What
depends on the server's answer (a changed param's :class:`~loopml.exceptions.ParamConflict`)
is raised at once when the server is up, and logged (the request kept under the spool's
``rejected/``) when it was spooled. Reads (``get``, ``search``, artifacts) need the server.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.client import wire
from loopml.client.errors import ServerUnreachable
from loopml.client.transport import segment
from loopml.client.writer import RemoteMetricWriter
from loopml.exceptions import ArtifactNotFound, Conflict
from loopml.store import liveness
from loopml.store.clock import now_ms
from loopml.tracking import experiments as experiments_module
from loopml.tracking import keys
from loopml.tracking.api import DEFAULT_EXPERIMENT_ENV, Experiments, Runs
from loopml.tracking.artifacts import ArtifactInfo, _clean_artifact_path, store_artifacts
from loopml.tracking.inputs import DatasetRef, dataset_ref
from loopml.tracking.keys import STEP_MAX, STEP_MIN
from loopml.tracking.runs import Run, RunStatus, generate_name
from loopml.tracking.search import RecordPage, RunRecord
from loopml.tracking.writer import MetricWriter, Point

if TYPE_CHECKING:
    import pandas as pd

    from loopml.client.session import Session
    from loopml.workspace import Workspace

#: ``Run.experiment_id`` of a run started while the server was away, until it is known.
UNKNOWN_EXPERIMENT = -1


class RemoteRun(Run):
    """A run logging through a loopml server (see the module's docstring)."""

    _api: RemoteRuns
    _experiment_id: int

    def __init__(
        self,
        api: RemoteRuns,
        run_id: str,
        name: str,
        experiment_id: int,
        experiment: str,
        parent_run_id: str | None = None,
    ) -> None:
        super().__init__(api, run_id, name, experiment_id, experiment, parent_run_id)
        self._add: Callable[[Point], None] | None = None

    @property
    def experiment_id(self) -> int:
        """The experiment's id; asked of the server when the run was started offline
        (:data:`UNKNOWN_EXPERIMENT` while it still can't be reached)."""
        if self._experiment_id == UNKNOWN_EXPERIMENT:
            with contextlib.suppress(ServerUnreachable):
                self._experiment_id = self._api._session.experiment_id(self.experiment)
        return self._experiment_id

    @experiment_id.setter
    def experiment_id(self, value: int) -> None:
        self._experiment_id = value

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: Any = None
    ) -> None:
        """Record one point: appended to the sender's queue, nothing else (see
        ``Run.log_metric`` for the arguments; the same checks, the common case first)."""
        if self.status is not RunStatus.RUNNING:
            self._check_active()
        keys.check_key(key, "metric key")  # a key seen before is one set lookup
        number: float | None
        if type(value) is float:
            number = None if value != value else value  # NaN is stored as NULL
        else:
            number = keys.metric_value(key, value)
        if step is None:
            step = self._next_step.get(key, 0)
        elif type(step) is not int or not STEP_MIN <= step <= STEP_MAX:
            step = keys.step_value(key, step)
        self._next_step[key] = step + 1
        ts = now_ms() if timestamp is None else keys.timestamp_ms(timestamp, key)
        add = self._add
        if add is None:
            add = self._add = self._api._writer().add
        add((self.id, key, number, step, ts))

    def _send(self, what: str, body: dict[str, Any]) -> Any:
        return self._api._session.outbox.send(
            {"method": "POST", "path": f"/runs/{segment(self.id)}/{what}", "body": body}
        )

    def log_params(self, values: dict[str, Any]) -> None:
        self._check_active()
        items = {keys.check_key(k, "param key"): keys.param_value(k, v) for k, v in values.items()}
        if items:
            self._send("params", {"params": items})

    def set_tags(self, values: dict[str, Any]) -> None:
        """Tags are mutable labels (a later value replaces an earlier one)."""
        items = {keys.check_key(k, "tag key"): keys.tag_value(k, v) for k, v in values.items()}
        if items:
            self._send("tags", {"tags": items})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> list[str]:
        """Store a file or a folder (every file under it) on the server, streamed; returns
        the artifact paths. While the server is away the bytes wait in the spool."""
        self._check_active()
        rows = store_artifacts(self._api._session.spooling_blobs, path, artifact_path)
        self._send("artifacts", {"artifacts": [list(r) for r in rows]})
        return [r[0] for r in rows]

    def _log_bytes(self, data: bytes, artifact_file: str) -> str:
        self._check_active()
        path = _clean_artifact_path(artifact_file)
        digest = self._api._session.spooling_blobs.put_bytes(data)
        self._send("artifacts", {"artifacts": [[path, digest, len(data)]]})
        return path

    def log_input(self, source: Any, name: str | None = None) -> DatasetRef:
        """Record a dataset this run read by its content hash (hashed here, on this machine)."""
        self._check_active()
        ref = dataset_ref(source, name)
        keys.check_key(ref.name, "input name")
        self._send(
            "inputs",
            {
                "name": ref.name,
                "digest": ref.digest,
                "source": ref.source,
                "size": ref.size,
                "file_count": ref.file_count,
                "created_at": now_ms(),
            },
        )
        return ref

    def record_seed(self, seed: int) -> None:
        self._send("seed", {"seed": seed})
        self.set_tag("loopml.seed", seed)

    def _record_end(self, status: RunStatus, error: str | None) -> None:
        """Send the run's end to the server (or spool it); ``end`` has sent its metrics."""
        self._send(
            "end",
            {
                "status": status.value,
                "error": error,
                "end_time": now_ms(),
                "owner": liveness.owner_token(),
            },
        )


class RemoteRuns(Runs):
    """``ws.runs`` through a loopml server (see the module's docstring)."""

    def __init__(self, workspace: Workspace, session: Session) -> None:
        super().__init__(workspace)
        self._session = session

    def _new_writer(self) -> MetricWriter:
        settings = self._ws.settings
        return RemoteMetricWriter(
            self._session.outbox,
            settings.flush_interval,
            settings.flush_max_points,
            heartbeat=self._heartbeat,
        )

    def _heartbeat(self) -> None:
        live = list(self._tracking.live)
        if live:
            self._session.transport.call(
                "POST", "/runs/heartbeat", {"run_ids": live, "owner": liveness.owner_token()}
            )

    def close(self) -> None:
        """End this workspace's live runs (FINISHED), send what is queued or spooled, and
        stop the sender thread."""
        super().close()
        self._session.drain()

    # -- starting and resuming -----------------------------------------------------------------

    def _create_run(
        self,
        experiment: str | None,
        name: str | None,
        user_tags: dict[str, Any] | None,
        parent: str | None,
        log_environment: bool | None,
    ) -> Run:
        exp_name = (
            experiment
            or os.environ.get(DEFAULT_EXPERIMENT_ENV)
            or experiments_module.DEFAULT_EXPERIMENT
        )
        keys.check_key(exp_name, "experiment name")
        run_id = uuid.uuid4().hex
        run_name = name or generate_name()
        env, diff, system_tags = self._environment(
            log_environment, self._session.spooling_blobs.put_bytes
        )
        extra = {
            keys.check_key(k, "tag key"): keys.tag_value(k, v) for k, v in (user_tags or {}).items()
        }
        answer = self._session.outbox.send(
            {
                "method": "POST",
                "path": "/runs",
                "body": {
                    "run_id": run_id,
                    "experiment": exp_name,
                    "name": run_name,
                    "parent_run_id": parent,
                    "tags": {**system_tags, **extra},
                    "environment": env,
                    "owner": liveness.owner_token(),
                    "start_time": now_ms(),
                },
            }
        )
        exp_id = int(answer["experiment_id"]) if answer else UNKNOWN_EXPERIMENT
        run = RemoteRun(self, run_id, run_name, exp_id, exp_name, parent)
        if diff:
            run.log_text(diff, "loopml/git.diff")
        return run

    def _resume(self, run_id: str) -> Run:
        if run_id in self._tracking.live:
            raise Conflict(f"Run {run_id} is already active in this process.")
        answer = self._session.outbox.send(
            {
                "method": "POST",
                "path": f"/runs/{segment(run_id)}/resume",
                "body": {"owner": liveness.owner_token()},
            },
            spool_ok=False,  # resuming needs the run as stored
        )
        record = wire.run_from_json(answer["run"])
        run = RemoteRun(
            self, run_id, record.name, record.experiment_id, record.experiment, record.parent_run_id
        )
        run._next_step.update({k: int(s) + 1 for k, s in answer.get("steps", {}).items()})
        return run

    # -- reading -------------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._session.transport.call("GET", path, params=params)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._session.transport.call("POST", path, body)

    def get(self, run_id: str) -> RunRecord:
        """One run as the server stores it."""
        return wire.run_from_json(self._get(f"/runs/{segment(run_id)}"))

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """A DataFrame of ``step``, ``timestamp``, ``value`` for one metric of one run."""
        import pandas as pd

        self.flush()
        rows = self._get(f"/runs/{segment(run_id)}/history", {"key": key})["points"]
        frame = pd.DataFrame(
            {
                "step": pd.Series([r[0] for r in rows], dtype="int64"),
                "timestamp": pd.to_datetime([r[1] for r in rows], unit="ms", utc=True),
                "value": pd.Series([wire.unnum(r[2]) for r in rows], dtype="float64"),
            }
        )
        return frame

    def _search_body(
        self,
        experiments: Iterable[str | int] | str | int | None,
        filter: str | None,
        order_by: Sequence[str] | str | None,
        include_deleted: bool,
    ) -> dict[str, Any]:
        if experiments is not None and not isinstance(experiments, str | int):
            experiments = list(experiments)
        if order_by is not None and not isinstance(order_by, str):
            order_by = list(order_by)
        return {
            "experiments": experiments,
            "filter": filter,
            "order_by": order_by,
            "include_deleted": include_deleted,
        }

    def search(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Runs as a DataFrame, one row each, with ``params.*``, ``metrics.*``, ``tags.*``
        (the columns and dtypes :meth:`loopml.tracking.Runs.search` gives)."""
        records = self.records(experiments, filter, order_by, max_results, include_deleted)
        return records_frame(records)

    def records(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """The runs :meth:`search` finds, as plain records (see ``Runs.records``)."""
        self.flush()
        body = self._search_body(experiments, filter, order_by, include_deleted)
        answer = self._post("/runs/search", {**body, "max_results": max_results})
        return [wire.listing_from_json(r) for r in answer["runs"]]

    def page(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        include_deleted: bool = False,
    ) -> RecordPage:
        """One page of :meth:`records`; pass its ``next_page_token`` for the next page."""
        self.flush()
        body = self._search_body(experiments, filter, order_by, include_deleted)
        answer = self._post(
            "/runs/search", {**body, "page_size": page_size, "page_token": page_token}
        )
        return RecordPage(
            [wire.listing_from_json(r) for r in answer["runs"]], answer.get("next_page_token")
        )

    def delete(self, run_id: str) -> None:
        """Soft-delete a run: hidden from search, kept in the store until restored."""
        self._post(f"/runs/{segment(run_id)}/delete", {})

    def restore(self, run_id: str) -> None:
        self._post(f"/runs/{segment(run_id)}/restore", {})

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        params = {"path": path} if path else None
        answer = self._get(f"/runs/{segment(run_id)}/artifacts", params)
        return [wire.artifact_from_json(a) for a in answer["artifacts"]]

    def download_artifacts(
        self, run_id: str, path: str | None = None, dst: str | os.PathLike[str] | None = None
    ) -> Path:
        """Copy a run's artifacts (or one file/folder of them) to ``dst``, streamed from the
        server; verifies digests."""
        items = self.list_artifacts(run_id, path)
        if not items:
            where = f" under {path!r}" if path else ""
            raise ArtifactNotFound(f"Run {run_id} has no artifact{where}.")
        root = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="loopml-artifacts-"))
        for item in items:
            self._session.blobs.get_file(item.digest, root / item.path)
        return root / _clean_artifact_path(path) if path else root


def records_frame(records: builtins.list[dict[str, Any]]) -> pd.DataFrame:
    """The DataFrame ``Runs.search`` gives, from the records ``Runs.records`` gives."""
    import math

    import pandas as pd

    info = pd.DataFrame(
        {
            "run_id": [r["run_id"] for r in records],
            "experiment_id": [r["experiment_id"] for r in records],
            "experiment": [r["experiment"] for r in records],
            "name": [r["name"] for r in records],
            "status": [r["status"] for r in records],
            "start_time": pd.to_datetime([r["start_time"] for r in records], utc=True),
            "end_time": pd.to_datetime([r["end_time"] for r in records], utc=True),
            "parent_run_id": [r["parent_run_id"] for r in records],
            "deleted": pd.Series([bool(r["deleted"]) for r in records], dtype=bool),
        }
    )
    parts = [info]
    for section in ("params", "metrics", "tags"):
        rows = [r[section] for r in records]
        if not any(rows):
            continue
        frame = pd.DataFrame.from_records(rows)
        frame = frame[sorted(frame.columns)]
        if section == "metrics":
            frame = frame.astype("float64")
        frame.columns = [f"{section}.{c}" for c in frame.columns]
        parts.append(frame)
    frame = pd.concat(parts, axis=1) if len(parts) > 1 else info
    frame.attrs["nan_metrics"] = {
        r["run_id"]: sorted(k for k, v in r["metrics"].items() if math.isnan(v))
        for r in records
        if any(math.isnan(v) for v in r["metrics"].values())
    }
    return frame


class RemoteExperiments(Experiments):
    """``ws.experiments`` through a loopml server."""

    def __init__(self, workspace: Workspace, session: Session) -> None:
        super().__init__(workspace)
        self._session = session

    def create(self, name: str, description: str | None = None) -> experiments_module.Experiment:
        """Create an experiment (raises AlreadyExists if the name is taken)."""
        answer = self._session.transport.call(
            "POST", "/experiments", {"name": name, "description": description}
        )
        return wire.experiment_from_json(answer)

    def get(self, name_or_id: str | int) -> experiments_module.Experiment:
        key = "id" if isinstance(name_or_id, int) else "name"
        answer = self._session.transport.call("GET", "/experiment", params={key: name_or_id})
        return wire.experiment_from_json(answer)

    def list(self) -> builtins.list[experiments_module.Experiment]:
        answer = self._session.transport.call("GET", "/experiments")
        return [wire.experiment_from_json(e) for e in answer["experiments"]]

    def rename(self, old: str | int, new: str) -> experiments_module.Experiment:
        key = "old_id" if isinstance(old, int) else "old"
        answer = self._session.transport.call("POST", "/experiments/rename", {key: old, "new": new})
        return wire.experiment_from_json(answer)
