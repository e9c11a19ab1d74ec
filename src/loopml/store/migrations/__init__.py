"""Alembic migrations for the metadata schema, applied automatically when a store opens.

To add one: edit the owning area's ``tables.py`` (``loopml/tracking/tables.py``, ...; a new
area's module goes in ``TABLE_MODULES`` in ``loopml/store/tables.py``), then write
``versions/NNNN_<what>.py`` with ``revision = "NNNN"`` and ``down_revision`` set to the
previous head. Nothing else: :func:`head_revision` finds the new head by itself, and
``tests/store/test_db.py`` checks that the migrated schema matches the tables.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from sqlalchemy import Connection

from loopml.exceptions import LoopmlError

HERE = Path(__file__).parent
VERSIONS = HERE / "versions"

# ``revision = "0005"`` / ``down_revision: str | None = "0004"`` at the start of a line, as
# Alembic's template writes them (with or without the annotation, maybe a trailing comment).
_ASSIGNMENT = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*([^#\n]*?)\s*(?:#.*)?$", re.MULTILINE
)


class MigrationsBroken(LoopmlError):
    """The migration scripts do not form one chain: a broken checkout or package."""


def _config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}


@functools.cache
def head_revision() -> str:
    """The newest migration, the revision a store opened by this loopml must be at.

    Read from the scripts' text, not through Alembic: every command opens a store and
    compares its revision with this, and importing Alembic costs about half a second.
    ``tests/store/test_db.py`` checks the answer against Alembic's own.
    """
    return head_of(VERSIONS)


def head_of(folder: Path) -> str:
    """The one revision in ``folder``'s migration scripts that no other script revises."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        found = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found.get("down_revision", "None"))
        except (KeyError, ValueError, SyntaxError) as exc:
            raise MigrationsBroken(
                f'The migration {path} has no plain `revision = "..."` and `down_revision = '
                '"..."` lines (string literals). Write them as Alembic\'s template does.'
            ) from exc
        revisions.add(revision)
        revised.update([down] if isinstance(down, str) else (down or ()))
    heads = sorted(revisions - revised)
    if len(heads) != 1:
        raise MigrationsBroken(
            f"The migrations in {folder} have {len(heads)} heads ({', '.join(heads) or 'none'}),"
            " not one: set each new migration's down_revision to the previous head."
        )
    return heads[0]


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``conn`` (inside the caller's transaction)."""
    from alembic import command

    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
