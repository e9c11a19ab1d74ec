"""Alembic migrations for the metadata schema, applied automatically when a store opens.

To add one: edit ``loopml/store/tables.py``, then write ``versions/NNNN_<what>.py`` with
``down_revision`` set to the previous head, and bump ``HEAD_REVISION`` in ``store/db.py``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection

HERE = Path(__file__).parent


def _config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``conn`` (inside the caller's transaction)."""
    from alembic import command

    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
