"""The one SQLAlchemy ``MetaData`` every area registers its tables on, and what they share.

Each area owns its tables, next to the code that reads and writes them::

    loopml/tracking/tables.py     experiments, runs, params, tags, metrics, latest_metrics,
                                  artifacts, run_inputs
    loopml/registry/tables.py     registered_models, model_versions, model_aliases, model_events
    loopml/pipelines/tables.py    pipeline_runs, task_runs, pipeline_partitions, trigger_state
    loopml/validation/tables.py   schemas
    loopml/features/tables.py     feature_definitions, feature_materializations
    loopml/serving/tables.py      deployments
    loopml/monitoring/tables.py   monitor_references, monitor_windows, monitor_metrics,
                                  alerts, alert_deliveries
    loopml/events.py              events
    loopml/server/auth/tables.py  users, api_tokens, permissions
    loopml/server/batches.py      client_batches
    loopml/server/mlflow_api/tables.py   logged_models, proxied_artifacts
    loopml/llm/tables.py          llm_keys, llm_counters, llm_requests, llm_spans, llm_policies

A module sees the tables it imports (and those they reference by foreign key: an area's
tables module imports the modules it points into). What needs the whole schema, Alembic's
``env.py`` and the test comparing migrations with these definitions, calls :func:`load_all`.
Alembic migrations in ``migrations/`` create the tables.

Times are integer milliseconds since the epoch (UTC). A metric value of NaN is stored as
NULL because SQLite cannot hold NaN; ``value IS NULL`` reads back as NaN.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

KEY = 250  # a name or key: experiment, run, metric, param, tag, model, alias, pipeline
RUN_ID = 32  # a tracking or pipeline run id (uuid4 hex)

#: Every module that defines tables on :data:`metadata`. A new area's ``tables.py`` goes
#: here; ``tests/store/test_tables.py`` fails while one is missing.
TABLE_MODULES = (
    "loopml.tracking.tables",
    "loopml.registry.tables",
    "loopml.pipelines.tables",
    "loopml.validation.tables",
    "loopml.features.tables",
    "loopml.serving.tables",
    "loopml.monitoring.tables",
    "loopml.events",
    "loopml.server.auth.tables",
    "loopml.server.batches",
    "loopml.server.mlflow_api.tables",
    "loopml.llm.tables",
)


def load_all() -> MetaData:
    """Import every area's tables and return :data:`metadata`, now holding the whole schema."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return metadata
