"""The ``[features]`` section of ``loopml.toml``: where definitions and online values live.

::

    [features]
    module = "features.py"                 # LOOPML_FEATURES_MODULE: the definitions
    online_store = ""                      # LOOPML_FEATURES_ONLINE_STORE: "" = SQLite in
                                           #   .loopml/online.sqlite, or redis://host:6379/0
    materialize_partitions = 8             # LOOPML_FEATURES_MATERIALIZE_PARTITIONS

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.features``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeaturesSettings:
    """Where the feature definitions are, and the online store."""

    module: str = field(
        default="features.py",
        metadata={
            "help": "the Python module (file in the workspace, or package.module) "
            "defining entities, feature views and services"
        },
    )
    online_store: str = field(
        default="",
        metadata={
            "help": "online store URL: empty for SQLite in .loopml/online.sqlite, "
            "sqlite:///path, or redis://host:port/db"
        },
    )
    materialize_partitions: int = field(
        default=8,
        metadata={"min": 1, "help": "entity partitions a materialization is split into"},
    )
