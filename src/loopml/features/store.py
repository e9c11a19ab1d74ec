"""``ws.features``: the feature store of one workspace.

    fs = ws.features                                   # definitions from features.py
    fs.apply()                                         # a version per changed definition
    training = fs.get_historical_features(entity_df, features=churn_v1)
    fs.materialize(start, end)                         # latest values → the online store
    fs.get_online_features(churn_v1, [{"customer_id": 1}])

Definitions come from the workspace's ``features.py`` (``[features] module``), or are given
with :meth:`FeatureStore.use`; they are loaded once per process and cached.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.config import STATE_DIR
from loopml.features import materialize as materialization
from loopml.features import offline, online, registry
from loopml.features.definitions import (
    Definition,
    Definitions,
    Entity,
    FeatureRef,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    Selection,
)
from loopml.features.errors import FeatureDefinitionError, FeatureNotFound
from loopml.namespaces import Namespace

if TYPE_CHECKING:
    import pandas as pd

    from loopml.workspace import Workspace

Features = FeatureService | str | Sequence[str | Selection] | Selection
PUSH_TARGETS = ("online_and_offline", "online", "offline")


class FeatureStore(Namespace):
    """Definitions, training sets, materialization and online lookups of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self._definitions: Definitions | None = None
        self._lock = threading.RLock()
        self._online: Any = None

    # -- definitions ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR / "features"

    def use(self, *items: Definition) -> FeatureStore:
        """Use these definitions (instead of the workspace's ``features.py``)."""
        with self._lock:
            self._definitions = Definitions(items)
        return self

    @property
    def definitions(self) -> Definitions:
        """The definitions in use: given with :meth:`use`, else the workspace's module."""
        if self._definitions is None:
            with self._lock:
                if self._definitions is None:
                    self._definitions = self.load()
        return self._definitions

    def load(self, module: str | None = None) -> Definitions:
        """The definitions a module holds (default: ``[features] module`` of the workspace)."""
        from loopml.exceptions import LoopmlError
        from loopml.pipelines.refs import load_module

        target = module or self.workspace.settings.features.module
        if (
            target.endswith(".py")
            and not (self.root / target).is_file()
            and not Path(target).is_file()
        ):
            raise FeatureNotFound(
                f"No feature definitions: {target} is not in the workspace ({self.root}). "
                "Write your entities, feature views and services there, or set "
                "[features] module in loopml.toml."
            )
        _forget_file_module(target, self.root)  # read the file as it is now
        try:
            loaded = load_module(target, self.root, "module")
        except LoopmlError as exc:
            raise FeatureDefinitionError(f"Feature definitions {target}: {exc}") from exc
        items = [
            value
            for value in vars(loaded).values()
            if isinstance(value, (Entity, FeatureView, OnDemandFeatureView, FeatureService))
        ]
        return Definitions(items)

    def apply(self, *, dry_run: bool = False) -> list[registry.Change]:
        """Store a new version of each definition that changed; returns what changed."""
        return registry.apply(self.workspace.db, list(self.definitions), dry_run=dry_run)

    def list(self, kind: str | None = None) -> builtins.list[registry.StoredDefinition]:
        """The latest applied version of every definition (of ``kind``)."""
        if kind is not None and kind not in registry.KINDS:
            raise FeatureNotFound(f"Unknown kind {kind!r}: one of {', '.join(registry.KINDS)}.")
        return registry.latest(self.workspace.db, kind)

    def history(self, name: str) -> builtins.list[registry.StoredDefinition]:
        """Every applied version of the definition named ``name``."""
        return registry.history(self.workspace.db, name)

    def service_version(self, service: FeatureService | str) -> str:
        """``"NAME:VERSION"`` of a feature service as applied now: what a model version
        records as its feature contract. A service changed since it was applied is an error
        (apply first), so a contract always names the exact features."""
        chosen = self.definitions.service(service) if isinstance(service, str) else service
        version = registry.current_version(self.workspace.db, chosen)
        if version is None:
            raise FeatureDefinitionError(
                f"Feature service {chosen.name!r} is not applied as it is defined now: run "
                "`loopml features apply` (or ws.features.apply()) first."
            )
        return f"{chosen.name}:{version}"

    def refs(self, features: Features) -> builtins.list[FeatureRef]:
        """``features`` as per-view selections (see :meth:`Definitions.resolve`)."""
        if isinstance(features, FeatureService):
            for ref in features.refs():
                self.definitions.add(ref.view)
        return self.definitions.resolve(features)

    # -- offline -------------------------------------------------------------------------------

    def source_context(self) -> offline.SourceContext:
        options = dict(self.workspace._storage_options) or None
        return offline.SourceContext(self.root, self.state_dir / "pushed", options)

    def connect(self) -> Any:
        """A DuckDB connection set up for feature work (UTC, spilling under ``.loopml``): a
        cursor of one in-memory database kept for the store (opening a database costs ~15 ms
        a call; a cursor, under 1 ms). A cursor has its own session: temporary views and
        registered frames of one call never meet another's."""
        base = self.__dict__.get("_duckdb")
        if base is None:
            with self._lock:
                base = self.__dict__.get("_duckdb")
                if base is None:
                    base = self.__dict__["_duckdb"] = offline.connect(self.state_dir / "duckdb-tmp")
        cursor = base.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def get_historical_features(
        self,
        entity_df: Any = None,
        features: Features | None = None,
        *,
        full_feature_names: bool = False,
        event_timestamp_column: str = offline.DEFAULT_TIMESTAMP_COLUMN,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
    ) -> pd.DataFrame:
        """A training set: ``entity_df`` (join keys and ``event_timestamp``) with each
        feature's value as it was known at each row's time; rows without a value get nulls,
        never dropped, in the entity frame's order. Without ``entity_df``, every entity and
        event time of the views between ``start`` and ``end``.

        >>> fs.get_historical_features(orders[["customer_id", "event_timestamp"]], churn_v1)
        """
        if features is None:
            raise FeatureNotFound("Name the features: a FeatureService, views or 'view:feature'.")
        refs = self.refs(features)
        con = self.connect()
        try:
            ctx = self.source_context()
            if entity_df is None:
                if start is None or end is None:
                    raise FeatureDefinitionError(
                        "Pass an entity frame, or start= and end= to take every entity and "
                        "event time between them."
                    )
                entity_df = offline.time_range_entities(
                    con, ctx, refs, _utc(start), _utc(end), event_timestamp_column
                )
            return offline.historical_features(
                con,
                ctx,
                refs,
                entity_df,
                full_feature_names=full_feature_names,
                timestamp_column=event_timestamp_column,
            )
        finally:
            con.close()

    # -- online --------------------------------------------------------------------------------

    @property
    def online_store(self) -> online.OnlineStore:
        """The online store (``[features] online_store``), opened on first use and kept."""
        store = self._online
        if store is None:
            with self._lock:
                if self._online is None:
                    self._online = online.open_online_store(
                        self.workspace.settings.features.online_store, self.root
                    )
                store = self._online
        return store

    def close(self) -> None:
        """Release the online store's connections and the DuckDB database (reopened if used
        again)."""
        with self._lock:
            if self._online is not None:
                self._online.close()
                self._online = None
            base = self.__dict__.pop("_duckdb", None)
            if base is not None:
                base.close()

    def online_plan(
        self, features: Features, full_feature_names: bool = False
    ) -> online.OnlinePlan:
        """The resolved lookup of ``features``, cached per feature list and definitions."""
        key: Any = (
            (tuple(features), full_feature_names)
            if type(features) is list
            else (features, full_feature_names)
        )
        plans: dict[Any, tuple[Any, online.OnlinePlan]] | None = self.__dict__.get("_online_plans")
        if plans is None:
            plans = self.__dict__.setdefault("_online_plans", {})
        cached = plans.get(key)
        if cached is not None and cached[0] is self._definitions:
            return cached[1]
        plan = self._build_online_plan(features, full_feature_names)
        with self._lock:
            if len(plans) > 1024:
                plans.clear()
            plans[key] = (self._definitions, plan)
        return plan

    def _build_online_plan(self, features: Features, full_feature_names: bool) -> online.OnlinePlan:
        refs = self.refs(features)
        stored, on_demand = offline.split_refs(refs)
        names = offline.output_names(refs, full_feature_names)
        lookups = []
        for ref in stored:
            view = ref.view
            assert isinstance(view, FeatureView)
            if not view.online:
                raise FeatureDefinitionError(
                    f"View {view.name!r} is not online (online=False): its features can't be "
                    "looked up online. Set online=True and materialize it."
                )
            lookups.append(
                online.ViewLookup(
                    view.name,
                    view.join_keys,
                    tuple(view.field(f) for f in ref.features),
                    tuple(names.get((view.name, f)) for f in ref.features),
                    None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000),
                )
            )
        keys = list(dict.fromkeys(k for lookup in lookups for k in lookup.join_keys))
        feature_names = [names[(ref.view.name, f)] for ref in refs for f in ref.features]
        return online.OnlinePlan(keys, lookups, on_demand, names, feature_names, full_feature_names)

    def get_online_features(
        self,
        features: Features,
        entity_rows: Sequence[Mapping[str, Any]],
        *,
        full_feature_names: bool = False,
    ) -> online.OnlineResponse:
        """The latest values of ``features`` for each entity row, from the online store:
        values older than their view's TTL now, and entities never materialized, are None;
        on-demand features are computed by their function from the stored values and the
        rows' request fields.

        >>> fs.get_online_features(churn_v1, [{"customer_id": 1}]).to_dict()
        {'customer_id': [1], 'avg_purchase_30d': [12.5], 'n_orders_7d': [3]}
        """
        plan = self.online_plan(features, full_feature_names)
        return plan.run(self.online_store, entity_rows, online.now_micros())

    def _online_views(
        self, views: Sequence[str | FeatureView] | str | FeatureView | None
    ) -> builtins.list[FeatureView]:
        if views is None:
            chosen = [
                v
                for v in self.definitions.views.values()
                if isinstance(v, FeatureView) and v.online
            ]
            if not chosen:
                raise FeatureNotFound(
                    "No online feature view is defined: define a FeatureView (online=True is "
                    "the default) in the features module."
                )
            return chosen
        if isinstance(views, (str, FeatureView)):
            views = [views]
        out = []
        for item in views:
            view = self.definitions.view(item) if isinstance(item, str) else item
            if not isinstance(view, FeatureView):
                raise FeatureDefinitionError(
                    f"{view.name!r} is an on-demand view: it is computed at lookup time, "
                    "not materialized."
                )
            if not view.online:
                raise FeatureDefinitionError(
                    f"View {view.name!r} is not online (online=False): set online=True to "
                    "materialize it."
                )
            out.append(view)
        return out

    def materialize(
        self,
        start: datetime | str,
        end: datetime | str,
        views: Sequence[str | FeatureView] | str | FeatureView | None = None,
        *,
        executor: str | Any = "threads",
        partitions: int | None = None,
        progress: Callable[..., None] | None = None,
    ) -> builtins.list[materialization.Materialized]:
        """Load each online view's latest value per entity with an event time between
        ``start`` and ``end`` (as known at ``end``, within the TTL at ``end``) into the online
        store, ``partitions`` slices of the entities run on ``executor``. Resumable: running
        the same call again skips the slices already done.

        ``progress`` is called with keywords only: ``total_files=`` the partitions to run,
        then ``files=1`` (and ``rows=``) as each ends."""
        chosen = self._online_views(views)
        first, last = _utc(start), _utc(end)
        if last < first:
            raise FeatureDefinitionError(
                f"materialize: end {last.isoformat()} is before start {first.isoformat()}."
            )
        return self._materialize(
            chosen, [(first, last, None)] * len(chosen), executor, partitions, progress
        )

    def materialize_incremental(
        self,
        end: datetime | str,
        views: Sequence[str | FeatureView] | str | FeatureView | None = None,
        *,
        executor: str | Any = "threads",
        partitions: int | None = None,
        progress: Callable[..., None] | None = None,
    ) -> builtins.list[materialization.Materialized]:
        """:meth:`materialize` each online view from where its last complete materialization
        ended (and rows created since), or from ``end - ttl`` (the beginning without a TTL)
        the first time, up to ``end``."""
        chosen = self._online_views(views)
        last = _utc(end)
        windows = []
        for view in chosen:
            first, late = materialization.incremental_start(self.workspace.db, view, last)
            windows.append((min(first, last), last, late))
        return self._materialize(chosen, windows, executor, partitions, progress)

    def _materialize(
        self,
        views: builtins.list[FeatureView],
        windows: builtins.list[tuple[datetime, datetime, datetime | None]],
        executor: Any,
        partitions: int | None,
        progress: Callable[..., None] | None,
    ) -> builtins.list[materialization.Materialized]:
        settings = self.workspace.settings.features
        return materialization.materialize_views(
            self.workspace.db,
            views,
            windows,
            context=self.source_context(),
            online_url=settings.online_store,
            root=self.root,
            partitions=partitions or settings.materialize_partitions,
            executor=executor,
            progress=progress,
        )

    def push(self, view: str | FeatureView, df: Any, *, to: str = "online_and_offline") -> int:
        """Write fresh feature rows of ``view`` (join keys, its timestamp field, every
        feature) to the online store (newer-wins) and/or append them to its offline log, so
        training sets see them from now on (their created time is now). Returns the rows.

        >>> fs.push("customer_stats", pd.DataFrame({"customer_id": [1], "event_ts": [now],
        ...     "avg_purchase_30d": [3.5], "n_orders_7d": [2]}))
        1
        """
        if to not in PUSH_TARGETS:
            raise FeatureDefinitionError(
                f"push(to={to!r}): use one of {', '.join(map(repr, PUSH_TARGETS))}."
            )
        chosen = self._online_views(view)[0] if "online" in to.split("_and_") else None
        if chosen is None:
            found = self.definitions.view(view) if isinstance(view, str) else view
            if not isinstance(found, FeatureView):
                raise FeatureDefinitionError(
                    f"{found.name!r} is an on-demand view: push to a FeatureView."
                )
            chosen = found
        return materialization.push(
            chosen,
            df,
            con=self.connect(),
            store=self.online_store if to != "offline" else None,
            pushed_dir=self.state_dir / "pushed" if to != "online" else None,
        )


def _utc(value: datetime | str) -> datetime:
    import pandas as pd

    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _forget_file_module(target: str, root: Path) -> None:
    """Drop an earlier import of the definitions file, so loading reads its current text."""
    import sys

    if not target.endswith(".py"):
        return
    path = Path(target) if Path(target).is_file() else root / target
    try:
        wanted = path.resolve()
    except OSError:
        return
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and name.startswith("loopml_pipeline_file_") and Path(file).resolve() == wanted:
            del sys.modules[name]
