"""Data contracts: a :class:`Schema` attached to a dataset version or a model version.

    ws.schemas.attach(schema, dataset="data/raw")           # the data version of data/raw
    ws.schemas.attach(schema, model="models:/churn/3")      # the version's feature contract
    ws.schemas.get(dataset="data/raw.loopml")               # → Schema | None
    ws.models.register("churn", clf, schema=schema)         # attached at registration

The schema's JSON lives in the blob store; the metadata DB maps the subject (a data hash,
or ``name/version``) to it. The promotion gate validates the holdout against the candidate's
contract.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from loopml.exceptions import InvalidInput
from loopml.store.clock import now_ms
from loopml.store.db import upsert
from loopml.validation.tables import schemas

if TYPE_CHECKING:
    from loopml.validation.schema import Schema
    from loopml.workspace import Workspace

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _subject(dataset: Any, model: str | None, resolve_model: Any) -> tuple[str, str]:
    if (dataset is None) == (model is None):
        raise InvalidInput(
            "Name exactly one subject: dataset=PATH_OR_HASH or model='models:/NAME/V'"
        )
    if model is not None:
        version = resolve_model(model)
        return "model", f"{version.name}/{version.version}"
    if isinstance(dataset, str) and _DIGEST.match(dataset):
        return "dataset", dataset
    from loopml.tracking.inputs import dataset_ref

    return "dataset", dataset_ref(dataset).digest


class Schemas:
    """``ws.schemas``: attach validation schemas to dataset and model versions, read them."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def attach(self, schema: Schema, *, dataset: Any = None, model: str | None = None) -> str:
        """Attach ``schema`` to a dataset version (a path, pointer file, DataFrame or data
        hash) or a model version (``models:/NAME/VERSION`` or an alias); replaces an earlier
        one. Returns the subject it was attached to."""
        kind, subject = _subject(dataset, model, self._ws.models.get)
        digest = self._ws.blobs.put_bytes(schema.to_json().encode())
        row = {
            "subject_kind": kind,
            "subject": subject,
            "digest": digest,
            "created_at": now_ms(),
        }

        def tx(conn: Connection) -> None:
            stmt = upsert(conn.dialect.name, schemas).values(**row)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[schemas.c.subject_kind, schemas.c.subject],
                    set_={"digest": digest, "created_at": row["created_at"]},
                )
            )

        self._ws.db.transact(tx)
        return f"{kind}:{subject}"

    def get(self, *, dataset: Any = None, model: str | None = None) -> Schema | None:
        """The schema attached to a dataset or model version, or None."""
        from loopml.validation.schema import Schema

        kind, subject = _subject(dataset, model, self._ws.models.get)
        with self._ws.db.read() as conn:
            digest = conn.execute(
                select(schemas.c.digest).where(
                    schemas.c.subject_kind == kind, schemas.c.subject == subject
                )
            ).scalar()
        if digest is None:
            return None
        return Schema.from_json(self._ws.blobs.get_bytes(digest))
