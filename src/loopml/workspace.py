"""The workspace: one metadata database and one blob store, opened lazily from settings,
and one namespace per area over them.

    ws = Workspace.open()
    with ws.runs.start(experiment="churn") as run: ...      # tracking
    ws.experiments.list()
    ws.models.promote("churn", 4)                           # registry (through the gate)
    ws.schemas.attach(schema, dataset="data/raw")           # data contracts
    ws.data.add("data/raw")                                 # data versioning
    ws.pipelines.run("pipelines.py:train")                  # pipelines
    ws.events.read(kinds="model.promoted")                  # the event log

A namespace is a small class in its own area package that receives the workspace; no area
declares another's methods. The module-level functions (``loopml.start_run``, ...) and the
same names on the workspace (``ws.start_run``) forward to the namespaces with the same,
type-checked signatures (:class:`Shortcut`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from loopml.config import Settings, load_settings, write_default_config
from loopml.registry.api import Models
from loopml.store.blobs import BlobStore
from loopml.store.db import Database
from loopml.tracking.api import Experiments, Runs
from loopml.validation.contracts import Schemas

if TYPE_CHECKING:
    from loopml.client.session import Session
    from loopml.data.namespace import Data
    from loopml.events import Events
    from loopml.features.store import FeatureStore
    from loopml.llm.namespace import LLM
    from loopml.monitoring.namespace import Monitors
    from loopml.pipelines.namespace import Pipelines
    from loopml.serving.namespace import Deployments
    from loopml.status import WorkspaceStatus

P = ParamSpec("P")
R = TypeVar("R")
N = TypeVar("N")


class Shortcut(Generic[P, R]):
    """``ws.start_run`` is ``ws.runs.start``: a name on the workspace that forwards to a
    namespace's method with that method's exact signature (mypy checks calls through it).
    The module-level functions are made from the same shortcuts (:func:`forward`)."""

    def __init__(self, namespace: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self.namespace = namespace
        self.method = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Shortcut[P, R]: ...

    @overload
    def __get__(self, obj: Workspace, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(
        self, obj: Workspace | None, owner: type | None = None
    ) -> Shortcut[P, R] | Callable[P, R]:
        if obj is None:
            return self
        return self.bind(obj)

    def bind(self, workspace: Workspace) -> Callable[P, R]:
        method: Callable[P, R] = getattr(getattr(workspace, self.namespace), self.method)
        return method


def forward(shortcut: Shortcut[P, R]) -> Callable[P, R]:
    """A module-level function calling ``shortcut`` on the default workspace."""

    # The namespace method last called, by the namespace object it was bound from: the
    # training loop's `loopml.log_metric` skips two getattrs and a bound-method per call.
    bound: list[Any] = [None, None]

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        workspace = _default if _default is not None else default_workspace()
        namespace = workspace._namespaces.get(shortcut.namespace)
        if namespace is None or namespace is not bound[0]:
            method = shortcut.bind(workspace)
            bound[:] = [workspace._namespaces.get(shortcut.namespace), method]
            return method(*args, **kwargs)
        method = bound[1]
        return method(*args, **kwargs)

    call.__name__ = call.__qualname__ = shortcut.name
    call.__doc__ = (
        f"``Workspace.{shortcut.namespace}.{shortcut.method}`` on the default workspace.\n\n"
        + (shortcut.__doc__ or "")
    )
    return call


class Workspace:
    """Where loopml keeps facts (metadata DB) and bytes (blob store), with one namespace per
    area: :attr:`runs`, :attr:`experiments`, :attr:`models`, :attr:`schemas`, :attr:`data`,
    :attr:`pipelines`, :attr:`events`, :attr:`features`.

    >>> ws = Workspace.open()                 # the nearest loopml.toml above the cwd
    >>> ws = Workspace.open("path/to/project")
    >>> ws = Workspace.open(store_url="sqlite://", artifacts_url="memory://tmp")
    >>> ws = Workspace.open("http://127.0.0.1:5000")   # a `loopml server` (see is_remote)
    Nothing is opened until first used.

    A workspace whose store URL is ``http(s)://`` (``LOOPML_TRACKING_URI``, ``[store] url``
    or the URL given here) is a loopml server: :attr:`runs`, :attr:`experiments` and
    :attr:`models` are the same namespaces over HTTP (:mod:`loopml.client`), :attr:`blobs`
    is the server's blob store, and :attr:`db` and the areas the server does not serve yet
    raise :class:`~loopml.client.NotServed`.
    """

    def __init__(self, settings: Settings, *, create: bool = True, **storage_options: Any) -> None:
        self.settings = settings
        self.create = create
        self._storage_options = storage_options
        self._db: Database | None = None
        self._blobs: BlobStore | None = None
        self._lock = threading.RLock()
        self._namespaces: dict[str, Any] = {}

    @property
    def is_remote(self) -> bool:
        """Whether this workspace is a loopml server (its store URL is ``http(s)://``)."""
        return self.settings.store_url.startswith(("http://", "https://"))

    def _session(self) -> Session:
        from loopml.client.session import session_for

        return session_for(self.settings.store_url)

    def _not_served(self, what: str) -> None:
        if self.is_remote:
            from loopml.client.errors import not_served

            raise not_served(what)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        store_url: str | None = None,
        artifacts_url: str | None = None,
        create: bool = True,
        **storage_options: Any,
    ) -> Workspace:
        """Open a workspace: a folder with ``loopml.toml``, or explicit URLs.

        A SQLite metadata store that does not exist yet is created on first use (a fresh
        clone has ``loopml.toml`` but no ``.loopml/``); ``create=False`` makes that an error
        (:class:`~loopml.exceptions.StoreNotFound`), as read-only CLI commands do.
        """
        if path is not None and "://" in str(path) and store_url is None:
            store_url, path = str(path), None
        if store_url is not None and path is None:
            settings = _url_settings(store_url, artifacts_url)
        else:
            settings = load_settings(path, store_url=store_url, artifacts_url=artifacts_url)
        return cls(settings, create=create, **storage_options)

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Workspace:
        """Create ``loopml.toml`` and ``.loopml/`` in ``path`` (kept if present) and open it."""
        folder = Path(path)
        write_default_config(folder)
        ws = cls.open(folder)
        ws.db.connect()  # create and migrate the metadata store now
        return ws

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def db(self) -> Database:
        """The metadata database (not on a remote workspace: the server has it)."""
        if self._db is None:
            self._not_served(f"The metadata database (ws.db) of {self.settings.store_url}")
            with self._lock:
                if self._db is None:
                    self._db = Database(self.settings.store_url, create=self.create)
        return self._db

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            with self._lock:
                if self._blobs is None and self.is_remote:
                    self._blobs = self._session().blobs
                elif self._blobs is None:
                    self._blobs = BlobStore(self.settings.artifacts_url, **self._storage_options)
        return self._blobs

    # -- the areas' namespaces, made on first use --------------------------------------------

    def _namespace(self, name: str, make: Callable[[Workspace], N]) -> N:
        found = self._namespaces.get(name)
        if found is None:
            with self._lock:
                found = self._namespaces.get(name)
                if found is None:
                    found = self._namespaces[name] = make(self)
        return found

    @property
    def runs(self) -> Runs:
        """Start, log to, read, search and delete runs (:class:`loopml.tracking.Runs`)."""
        found = self._namespaces.get("runs")  # made once; this is every later call
        if found is not None:
            return found
        if self.is_remote:
            from loopml.client.runs import RemoteRuns

            return self._namespace("runs", lambda ws: RemoteRuns(ws, ws._session()))
        return self._namespace("runs", Runs)

    @property
    def experiments(self) -> Experiments:
        """Create, list and rename experiments (:class:`loopml.tracking.Experiments`)."""
        found = self._namespaces.get("experiments")  # made once; this is every later call
        if found is not None:
            return found
        if self.is_remote:
            from loopml.client.runs import RemoteExperiments

            return self._namespace("experiments", lambda ws: RemoteExperiments(ws, ws._session()))
        return self._namespace("experiments", Experiments)

    @property
    def models(self) -> Models:
        """The model registry (:class:`loopml.registry.Models`)."""
        found = self._namespaces.get("models")  # made once; this is every later call
        if found is not None:
            return found
        if self.is_remote:
            from loopml.client.models import RemoteModels

            return self._namespace("models", lambda ws: RemoteModels(ws, ws._session()))
        return self._namespace("models", Models)

    @property
    def schemas(self) -> Schemas:
        """Data contracts on dataset and model versions (:class:`loopml.validation.Schemas`)."""
        self._not_served("ws.schemas (data contracts)")
        return self._namespace("schemas", Schemas)

    @property
    def data(self) -> Data:
        """Versioned data in this workspace (:class:`loopml.data.Data`)."""
        self._not_served("ws.data (versioned data)")
        from loopml.data.namespace import Data

        return self._namespace("data", Data)

    @property
    def pipelines(self) -> Pipelines:
        """Run, resume, backfill and inspect pipelines (:class:`loopml.pipelines.Pipelines`)."""
        self._not_served("ws.pipelines")
        from loopml.pipelines.namespace import Pipelines

        return self._namespace("pipelines", Pipelines)

    @property
    def events(self) -> Events:
        """The event log every area writes and the scheduler reads (:class:`loopml.events.Events`)."""
        self._not_served("ws.events (the event log)")
        from loopml.events import Events

        return self._namespace("events", Events)

    @property
    def features(self) -> FeatureStore:
        """The feature store (:class:`loopml.features.FeatureStore`)."""
        self._not_served("ws.features (the feature store)")
        from loopml.features.store import FeatureStore

        return self._namespace("features", FeatureStore)

    @property
    def deployments(self) -> Deployments:
        """What servers serve, with every revision (:class:`loopml.serving.Deployments`)."""
        self._not_served("ws.deployments")
        from loopml.serving.namespace import Deployments

        return self._namespace("deployments", Deployments)

    @property
    def monitors(self) -> Monitors:
        """Reference profiles, monitoring windows and their metrics, alerts
        (:class:`loopml.monitoring.namespace.Monitors`)."""
        self._not_served("ws.monitors (monitoring)")
        from loopml.monitoring.namespace import Monitors

        return self._namespace("monitors", Monitors)

    @property
    def llm(self) -> LLM:
        """The LLM gateway's request log, spend and traces (:class:`loopml.llm.namespace.LLM`)."""
        self._not_served("ws.llm (the LLM gateway's log)")
        from loopml.llm.namespace import LLM

        return self._namespace("llm", LLM)

    def status(self, *, model: str | None = None) -> WorkspaceStatus:
        """Where the loop stands, graded against the maturity levels
        (:func:`loopml.status.workspace_status`): ``ws.status().maturity.missing``."""
        self._not_served("ws.status()")
        from loopml.status import workspace_status

        return workspace_status(self, model=model)

    # -- the module-level functions' names, forwarding to the namespaces ---------------------

    start_run = Shortcut("runs", Runs.start)
    end_run = Shortcut("runs", Runs.end)
    active_run = Shortcut("runs", Runs.active)
    log_param = Shortcut("runs", Runs.log_param)
    log_params = Shortcut("runs", Runs.log_params)
    log_metric = Shortcut("runs", Runs.log_metric)
    log_metrics = Shortcut("runs", Runs.log_metrics)
    set_tag = Shortcut("runs", Runs.set_tag)
    set_tags = Shortcut("runs", Runs.set_tags)
    log_artifact = Shortcut("runs", Runs.log_artifact)
    log_text = Shortcut("runs", Runs.log_text)
    log_dict = Shortcut("runs", Runs.log_dict)
    log_input = Shortcut("runs", Runs.log_input)
    seed_everything = Shortcut("runs", Runs.seed_everything)
    flush = Shortcut("runs", Runs.flush)
    get_run = Shortcut("runs", Runs.get)
    metric_history = Shortcut("runs", Runs.metric_history)
    search_runs = Shortcut("runs", Runs.search)
    delete_run = Shortcut("runs", Runs.delete)
    restore_run = Shortcut("runs", Runs.restore)
    list_artifacts = Shortcut("runs", Runs.list_artifacts)
    download_artifacts = Shortcut("runs", Runs.download_artifacts)
    create_experiment = Shortcut("experiments", Experiments.create)
    get_experiment = Shortcut("experiments", Experiments.get)
    list_experiments = Shortcut("experiments", Experiments.list)
    rename_experiment = Shortcut("experiments", Experiments.rename)
    register_model = Shortcut("models", Models.register)
    load_model = Shortcut("models", Models.load)
    promote = Shortcut("models", Models.promote)
    approve = Shortcut("models", Models.approve)
    rollback = Shortcut("models", Models.rollback)
    set_alias = Shortcut("models", Models.set_alias)
    get_model_version = Shortcut("models", Models.get)
    lineage = Shortcut("models", Models.lineage)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """End live runs of this workspace, flush metrics, release connections."""
        runs: Runs | None = self._namespaces.get("runs")
        if runs is not None:
            runs.close()
        features = self._namespaces.get("features")
        if features is not None:
            features.close()  # the online store's connections
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.is_remote:
            return f"Workspace(server={self.settings.store_url!r})"
        return f"Workspace(store={self.db.safe_url!r}, artifacts={self.settings.artifacts_url!r})"


WorkspaceLike = Workspace | str | os.PathLike[str] | None
"""What every public ``workspace=`` parameter takes: a :class:`Workspace`, the path of a
folder with ``loopml.toml`` (or a store URL), or None for the default workspace."""

_opened: dict[str, Workspace] = {}


def resolve_workspace(workspace: WorkspaceLike) -> Workspace:
    """The :class:`Workspace` meant by a ``workspace=`` argument. A path is opened once per
    process and reused, so repeated calls share one store connection."""
    if isinstance(workspace, Workspace):
        return workspace
    if workspace is None:
        return default_workspace()
    if not isinstance(workspace, (str, os.PathLike)):
        from loopml.exceptions import InvalidInput

        raise InvalidInput(
            f"workspace= takes a Workspace or the path of a folder with loopml.toml, "
            f"not {type(workspace).__name__}."
        )
    text = os.fspath(workspace)
    key = text if "://" in text else os.path.abspath(text)
    with _default_lock:
        found = _opened.get(key)
        if found is None:
            found = _opened[key] = Workspace.open(text)
    return found


def _url_settings(store_url: str, artifacts_url: str | None) -> Settings:
    from loopml.config import url_settings

    return url_settings(store_url, artifacts_url)


_default: Workspace | None = None
_default_lock = threading.Lock()


def default_workspace() -> Workspace:
    """The workspace the module-level functions use: discovered from the cwd and LOOPML_*."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Workspace.open()
    return _default


def set_default_workspace(workspace: Workspace | None) -> None:
    """Make ``workspace`` the one module-level functions use (None: discover again)."""
    global _default
    with _default_lock:
        _default = workspace
