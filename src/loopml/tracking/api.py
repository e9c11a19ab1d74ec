"""The tracking area's namespaces: ``ws.runs`` (:class:`Runs`) and ``ws.experiments``
(:class:`Experiments`). The module-level functions in ``loopml`` (``loopml.start_run``,
``loopml.log_metric``, ...) forward to them on the default workspace."""

from __future__ import annotations

import builtins
import contextlib
import os
import random
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from loopml.exceptions import Conflict, RunNotFound
from loopml.store import liveness
from loopml.tracking import experiments, search, shutdown
from loopml.tracking.artifacts import ArtifactInfo, download_artifacts, list_artifacts
from loopml.tracking.runs import (
    Run,
    RunStatus,
    generate_name,
    heartbeat,
    insert_running,
    now_ms,
    reap_dead_runs,
    reopen,
)
from loopml.tracking.search import RecordPage, RunRecord
from loopml.tracking.tables import runs
from loopml.tracking.writer import MetricWriter

if TYPE_CHECKING:
    import pandas as pd

    from loopml.store.blobs import BlobStore
    from loopml.store.db import Database
    from loopml.workspace import Workspace

DEFAULT_EXPERIMENT_ENV = "LOOPML_EXPERIMENT"


#: Each thread's active runs, per store (see :meth:`Runs._stack`).
_THREAD = threading.local()


class _TrackingState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, Run] = {}
        self.writer: MetricWriter | None = None
        self.packages_stored = False


class Runs:
    """``ws.runs``: start, log to, read, search and delete runs.

    >>> with ws.runs.start(experiment="churn") as run:
    ...     run.log_metric("loss", 0.3, step=1)
    >>> ws.runs.search(filter="metrics.loss < 0.5")
    """

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._tracking = _TrackingState()
        self._store_key: str | None = None  # the store's URL, once read (see _stack)

    @property
    def db(self) -> Database:
        return self._ws.db

    @property
    def blobs(self) -> BlobStore:
        return self._ws.blobs

    # -- internals used by Run -------------------------------------------------------------

    def _writer(self) -> MetricWriter:
        writer = self._tracking.writer
        if writer is None:
            with self._tracking.lock:
                if self._tracking.writer is None:
                    self._tracking.writer = self._new_writer()
                writer = self._tracking.writer
        return writer

    def _new_writer(self) -> MetricWriter:
        """The metric writer of this workspace's runs (made once, on first use)."""
        settings = self._ws.settings
        return MetricWriter(
            self.db,
            settings.flush_interval,
            settings.flush_max_points,
            heartbeat=lambda: heartbeat(self.db, list(self._tracking.live)),
        )

    def _stack(self) -> list[Run]:
        """This thread's active runs in this workspace's store, innermost last: one stack
        per store, whichever :class:`Workspace` object started them (``loopml.start_run``
        uses the default one, a script's ``ws = Workspace.open()`` is another)."""
        stacks: dict[str, list[Run]] | None = getattr(_THREAD, "stacks", None)
        if stacks is None:
            stacks = _THREAD.stacks = {}
        key = self._store_key
        if key is None:
            url = self._ws.settings.store_url  # a server's URL for a remote workspace
            if url.startswith("sqlite") and url.partition("://")[2] in ("", "/", "/:memory:"):
                url += f"#{uuid.uuid4().hex}"  # an in-memory database is this workspace's alone
            key = self._store_key = url
        return stacks.setdefault(key, [])

    def _forget(self, run: Run) -> None:
        self._tracking.live.pop(run.id, None)
        stack = self._stack()
        if run in stack:
            stack.remove(run)

    def _shutdown(self, status: str, error: str | None) -> None:
        for run in list(self._tracking.live.values()):
            run.end(status, error=error)
        self.flush()

    def close(self) -> None:
        """End this workspace's live runs (FINISHED) and stop the metric writer."""
        self._shutdown("FINISHED", None)
        writer = self._tracking.writer
        if writer is not None:
            writer.close()
            self._tracking.writer = None

    def flush(self) -> int:
        """Write every buffered metric point now; returns how many were written."""
        writer = self._tracking.writer
        return writer.flush() if writer is not None else 0

    # -- runs ------------------------------------------------------------------------------

    def start(
        self,
        experiment: str | None = None,
        name: str | None = None,
        tags: dict[str, Any] | None = None,
        nested: bool = False,
        *,
        run_id: str | None = None,
        log_environment: bool | None = None,
        log_system_metrics: bool = False,
        system_metrics_interval: float = 10.0,
    ) -> Run:
        """Start (or, with ``run_id``, resume) a run; use it as a context manager.

        >>> with ws.runs.start(experiment="churn", tags={"team": "growth"}) as run:
        ...     run.log_param("lr", 0.01)
        ...     run.log_metric("loss", 0.3, step=1)
        """
        stack = self._stack()
        if stack and not nested:
            raise Conflict(
                f"Run {stack[-1].id} ({stack[-1].name}) is still active. End it first, or pass "
                "nested=True to start a child run."
            )
        parent = stack[-1].id if stack else None
        if run_id is not None:
            run = self._resume(run_id)
        else:
            run = self._create_run(experiment, name, tags, parent, log_environment)
        stack.append(run)
        self._tracking.live[run.id] = run
        shutdown.register(self)
        self._writer().start()  # its thread keeps the run's heartbeat
        if log_system_metrics:
            from loopml.tracking.system_metrics import SystemMetricsSampler

            run._sampler = SystemMetricsSampler(
                lambda values, step: run.log_metrics(values, step=step), system_metrics_interval
            ).start()
        return run

    def _create_run(
        self,
        experiment: str | None,
        name: str | None,
        user_tags: dict[str, Any] | None,
        parent: str | None,
        log_environment: bool | None,
    ) -> Run:
        exp_name = (
            experiment or os.environ.get(DEFAULT_EXPERIMENT_ENV) or experiments.DEFAULT_EXPERIMENT
        )
        exp_id = experiments.experiment_id(self.db, exp_name)
        run_id = uuid.uuid4().hex
        run_name = name or generate_name()
        env, diff, system_tags = self._environment(log_environment, self.blobs.put_bytes)
        from loopml.tracking import keys

        extra = {
            keys.check_key(k, "tag key"): keys.tag_value(k, v) for k, v in (user_tags or {}).items()
        }

        def tx(conn: Connection) -> None:
            insert_running(
                conn,
                run_id,
                exp_id,
                run_name,
                start=now_ms(),
                parent=parent,
                owner=liveness.owner_token(),
                tags={**system_tags, **extra},
                environment=env,
            )

        self.db.transact(tx)
        run = Run(self, run_id, run_name, exp_id, exp_name, parent)
        if diff:
            run.log_text(diff, "loopml/git.diff")
        return run

    def _environment(
        self, log_environment: bool | None, put_bytes: Callable[[bytes], object]
    ) -> tuple[dict[str, Any] | None, str | None, dict[str, str]]:
        """The environment record, git diff and system tags of a run being started
        (:func:`loopml.tracking.environment.for_run`), or ``(None, None, {})`` when the run
        does not capture them (``log_environment``, else the ``capture_environment``
        setting). The package list goes to ``put_bytes`` once per workspace."""
        settings = self._ws.settings
        capture = settings.capture_environment if log_environment is None else log_environment
        if not capture:
            return None, None, {}
        from loopml.tracking import environment  # psutil and friends: only when capturing

        stored = self._tracking.packages_stored
        found = environment.for_run(None if stored else put_bytes)
        self._tracking.packages_stored = True
        return found

    def _resume(self, run_id: str) -> Run:
        record = search.get_run(self.db, run_id)
        if record.deleted:
            raise Conflict(f"Run {run_id} is deleted; restore it before resuming.")
        if run_id in self._tracking.live:
            raise Conflict(f"Run {run_id} is already active in this process.")
        reopen(self.db, run_id, liveness.owner_token())
        run = Run(
            self, run_id, record.name, record.experiment_id, record.experiment, record.parent_run_id
        )
        history = search.metric_steps(self.db, run_id)
        run._next_step.update({k: s + 1 for k, s in history.items()})
        return run

    @contextlib.contextmanager
    def activate(self, run: Run) -> Iterator[Run]:
        """Make ``run`` (started elsewhere, say in another thread) this thread's active run
        for the block, so ``loopml.log_metric`` and friends land on it; it is not ended."""
        stack = self._stack()
        if stack and stack[-1] is run:
            yield run
            return
        stack.append(run)
        try:
            yield run
        finally:
            if run in stack:
                stack.remove(run)

    def active(self) -> Run | None:
        """The innermost active run of this thread, or None."""
        stack = self._stack()
        return stack[-1] if stack else None

    def end(self, status: str = "FINISHED") -> None:
        """End the innermost active run of this thread."""
        run = self.active()
        if run is not None:
            run.end(status)

    def _run(self) -> Run:
        """The active run, started on first use like MLflow's fluent API."""
        return self.active() or self.start()

    # Logging to the active run (module-level ``loopml.log_metric`` etc. land here).

    def log_param(self, key: str, value: Any) -> None:
        self._run().log_param(key, value)

    def log_params(self, values: dict[str, Any]) -> None:
        self._run().log_params(values)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: Any = None
    ) -> None:
        stacks = getattr(_THREAD, "stacks", None)  # _run(), inlined: a hot path
        stack = stacks.get(self._store_key) if stacks else None
        run = stack[-1] if stack else self._run()
        run.log_metric(key, value, step, timestamp)

    def log_metrics(
        self, values: dict[str, float], step: int | None = None, timestamp: Any = None
    ) -> None:
        self._run().log_metrics(values, step, timestamp)

    def set_tag(self, key: str, value: Any) -> None:
        self._run().set_tag(key, value)

    def set_tags(self, values: dict[str, Any]) -> None:
        self._run().set_tags(values)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> list[str]:
        return self._run().log_artifact(path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> str:
        return self._run().log_text(text, artifact_file)

    def log_dict(self, value: Any, artifact_file: str) -> str:
        return self._run().log_dict(value, artifact_file)

    def log_input(self, source: Any, name: str | None = None) -> Any:
        return self._run().log_input(source, name)

    def seed_everything(self, seed: int) -> int:
        """Seed ``random``, NumPy and (if imported) torch; record the seed on the active run."""
        seed_globals(seed)
        run = self.active()
        if run is not None:
            run.record_seed(seed)
        return seed

    # -- reading ---------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """One run as stored. A RUNNING run whose process is gone is marked KILLED first
        (see :func:`loopml.tracking.runs.reap_dead_runs`)."""
        record = search.get_run(self.db, run_id)
        if record.status == RunStatus.RUNNING and reap_dead_runs(self.db, [run_id]):
            record = search.get_run(self.db, run_id)
        return record

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """A DataFrame of ``step``, ``timestamp``, ``value`` for one metric of one run."""
        self.flush()
        return search.metric_history(self.db, run_id, key)

    def search(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Runs as a DataFrame, one row each, with ``params.*``, ``metrics.*``, ``tags.*``.

        >>> ws.runs.search(filter="metrics.acc > 0.9 and params.model = 'rf'",
        ...                order_by=["metrics.acc DESC"])
        """
        self.flush()
        reap_dead_runs(self.db)  # a run whose process died is KILLED, not RUNNING forever
        return search.search_runs(
            self.db, experiments, filter, order_by, max_results, include_deleted
        )

    def records(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """The runs :meth:`search` finds, as plain records (no pandas): ``run_id``,
        ``name``, ``experiment``, ``status``, times, ``duration`` and ``params``/``metrics``/
        ``tags`` dicts. What listings (the CLI, the server) page through."""
        self.flush()
        reap_dead_runs(self.db)
        return search.search_records(
            self.db, experiments, filter, order_by, max_results, include_deleted
        )

    def page(
        self,
        experiments: Iterable[str | int] | str | int | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        include_deleted: bool = False,
    ) -> RecordPage:
        """One page of :meth:`records`; pass its ``next_page_token`` for the next page.

        >>> page = ws.runs.page(filter="metrics.acc > 0.9", page_size=50)
        >>> while page.next_page_token:
        ...     page = ws.runs.page(filter="metrics.acc > 0.9", page_size=50,
        ...                         page_token=page.next_page_token)
        """
        self.flush()
        reap_dead_runs(self.db)
        return search.search_page(
            self.db, experiments, filter, order_by, page_size, page_token, include_deleted
        )

    def delete(self, run_id: str) -> None:
        """Soft-delete a run: hidden from search, kept in the store until restored."""
        self._set_deleted(run_id, now_ms())

    def restore(self, run_id: str) -> None:
        self._set_deleted(run_id, None)

    def _set_deleted(self, run_id: str, value: int | None) -> None:
        def tx(conn: Connection) -> None:
            found = conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first()
            if found is None:
                raise RunNotFound(f"No run {run_id!r}.")
            conn.execute(update(runs).where(runs.c.id == run_id).values(deleted_at=value))

        self.db.transact(tx)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        search.get_run(self.db, run_id)  # RunNotFound for a bad id
        return list_artifacts(self.db, run_id, path)

    def download_artifacts(
        self, run_id: str, path: str | None = None, dst: str | os.PathLike[str] | None = None
    ) -> Path:
        """Copy a run's artifacts (or one file/folder of them) to ``dst``; verifies digests."""
        search.get_run(self.db, run_id)
        return download_artifacts(self.db, self.blobs, run_id, path, dst)


class Experiments:
    """``ws.experiments``: create, find, list and rename experiments."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def create(self, name: str, description: str | None = None) -> experiments.Experiment:
        """Create an experiment (raises AlreadyExists if the name is taken)."""
        return experiments.create_experiment(self._ws.db, name, description)

    def get(self, name_or_id: str | int) -> experiments.Experiment:
        return experiments.get_experiment(self._ws.db, name_or_id)

    def list(self) -> builtins.list[experiments.Experiment]:
        return experiments.list_experiments(self._ws.db)

    def rename(self, old: str | int, new: str) -> experiments.Experiment:
        return experiments.rename_experiment(self._ws.db, old, new)


def seed_globals(seed: int) -> None:
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
