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
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.config import STATE_DIR
from loopml.features import offline, registry
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
            loaded = load_module(target, self.root)
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
        """A DuckDB connection set up for feature work (UTC, spilling under ``.loopml``)."""
        return offline.connect(self.state_dir / "duckdb-tmp")

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
