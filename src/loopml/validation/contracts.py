"""Data contracts: a :class:`Schema` attached to a dataset version or a model version.

    ws.attach_schema(schema, dataset="data/raw")            # the data version of data/raw
    ws.attach_schema(schema, model="models:/churn/3")       # the version's feature contract
    ws.get_schema(dataset="data/raw.loopml")                # → Schema | None
    ws.register_model("churn", clf, schema=schema)          # attached at registration

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
from loopml.store.tables import schemas

if TYPE_CHECKING:
    from loopml.store.blobs import BlobStore
    from loopml.store.db import Database
    from loopml.validation.schema import Schema

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


class ContractsAPI:
    """Attach validation schemas to dataset and model versions, and read them back."""

    if TYPE_CHECKING:  # provided by Workspace

        @property
        def db(self) -> Database: ...

        @property
        def blobs(self) -> BlobStore: ...

        def get_model_version(self, uri: str) -> Any: ...

    def attach_schema(
        self, schema: Schema, *, dataset: Any = None, model: str | None = None
    ) -> str:
        """Attach ``schema`` to a dataset version (a path, pointer file, DataFrame or data
        hash) or a model version (``models:/NAME/VERSION`` or an alias); replaces an earlier
        one. Returns the subject it was attached to."""
        kind, subject = _subject(dataset, model, self.get_model_version)
        digest = self.blobs.put_bytes(schema.to_json().encode())
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

        self.db.transact(tx)
        return f"{kind}:{subject}"

    def get_schema(self, *, dataset: Any = None, model: str | None = None) -> Schema | None:
        """The schema attached to a dataset or model version, or None."""
        from loopml.validation.schema import Schema

        kind, subject = _subject(dataset, model, self.get_model_version)
        with self.db.read() as conn:
            digest = conn.execute(
                select(schemas.c.digest).where(
                    schemas.c.subject_kind == kind, schemas.c.subject == subject
                )
            ).scalar()
        if digest is None:
            return None
        return Schema.from_json(self.blobs.get_bytes(digest))
