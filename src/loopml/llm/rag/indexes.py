"""The RAG index registry: which corpus each build of an index came from, and whether the
corpus has moved on since (the index is stale) — including the share of recent answers that
were served from a document whose source has changed or vanished.

    register_index("docs", source="knowledge/**/*.md")      # after building the index
    report = check_index("docs", days=7)                     # later, e.g. in a nightly job
    report.stale, report.changes.changed, report.served_stale

A stale check emits ``rag.index_stale`` (once per build and corpus state), which a
pipeline's ``on_event("rag.index_stale", subject="docs")`` turns into a re-index.
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from loopml.events import emit, events
from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.rag.corpus import (
    Changes,
    CorpusFile,
    Manifest,
    compare,
    corpus_bytes,
    corpus_digest,
    scan,
    scan_new,
)
from loopml.llm.rag.spans import Retrieval, stored_retrievals
from loopml.llm.tables import llm_rag_documents, llm_rag_indexes
from loopml.store.blobs import hash_file
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY
from loopml.wording import shown
from loopml.workspace import WorkspaceLike, resolve_workspace

STALE_EVENT = "rag.index_stale"


class IndexNotFound(NotFound):
    """No index of that name (or no such version); the message lists what exists."""


@dataclass(frozen=True)
class IndexVersion:
    """One registered build of an index."""

    name: str
    version: int
    source: str
    root: str
    corpus: str  # the manifest's BLAKE3 digest
    files: int
    bytes: int
    created_by: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StaleDocument:
    """A document an answer was served from whose source differs now."""

    source: str
    why: str  # changed | vanished
    answers: int


@dataclass(frozen=True)
class IndexCheck:
    """What :func:`check_index` found."""

    index: IndexVersion
    current: str  # the corpus digest now
    changes: Changes
    days: float
    answers: int  # retrieval spans of the window that named a document source
    stale_answers: int  # … of which at least one document's source changed or vanished
    stale_documents: tuple[StaleDocument, ...] = field(default=())
    event_id: int | None = None  # the rag.index_stale event written by this check

    @property
    def stale(self) -> bool:
        return self.changes.stale

    @property
    def served_stale(self) -> float | None:
        """The share of recent answers served stale (None: no answer named a source)."""
        return self.stale_answers / self.answers if self.answers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index.name,
            "version": self.index.version,
            "source": self.index.source,
            "corpus": self.index.corpus,
            "current": self.current,
            "stale": self.stale,
            "added": list(self.changes.added),
            "changed": list(self.changes.changed),
            "deleted": list(self.changes.deleted),
            "days": self.days,
            "answers": self.answers,
            "stale_answers": self.stale_answers,
            "served_stale": self.served_stale,
            "stale_documents": [asdict(d) for d in self.stale_documents],
            "event_id": self.event_id,
        }


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > KEY:
        raise InvalidInput(
            f"An index name is a non-empty string of at most {KEY} characters, got {shown(name)}."
        )
    return name


def _actor() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def register_index(
    name: str, source: str | os.PathLike[str], *, workspace: WorkspaceLike = None
) -> IndexVersion:
    """Record the corpus index ``name`` was just built from — every file ``source`` (a file,
    a folder, or a glob such as ``"docs/**/*.md"``) names: path, BLAKE3, size, mtime — as
    its next version. The manifest is also stored as a blob under its digest. A source
    naming no file is a :class:`~loopml.llm.rag.corpus.SourceNotFound` naming it."""
    _check_name(name)
    absolute, root, manifest = scan_new(source, f"the source of index {name!r}")
    ws = resolve_workspace(workspace)
    digest = ws.blobs.put_bytes(corpus_bytes(manifest))
    assert digest == corpus_digest(manifest)
    who = _actor()
    created = now_ms()

    def tx(conn: Connection) -> int:
        top = conn.execute(
            select(func.max(llm_rag_indexes.c.version)).where(llm_rag_indexes.c.name == name)
        ).scalar()
        version = int(top or 0) + 1
        conn.execute(
            insert(llm_rag_indexes).values(
                name=name,
                version=version,
                source=absolute,
                root=str(root),
                corpus=digest,
                files=len(manifest),
                bytes=sum(f.size for f in manifest.values()),
                created_by=who,
                created_at=created,
            )
        )
        conn.execute(
            insert(llm_rag_documents),
            [
                {
                    "name": name,
                    "version": version,
                    "path": path,
                    "digest": f.digest,
                    "size": f.size,
                    "mtime_ns": f.mtime_ns,
                }
                for path, f in manifest.items()
            ],
        )
        return version

    for attempt in range(5):
        try:
            version = ws.db.transact(tx)
            break
        except IntegrityError:  # another writer took this version number: number after it
            if attempt == 4:
                raise
    return get_index(name, version, workspace=ws)


def _row_to_index(row: Any) -> IndexVersion:
    return IndexVersion(
        name=row.name,
        version=int(row.version),
        source=row.source,
        root=row.root,
        corpus=row.corpus,
        files=int(row.files),
        bytes=int(row.bytes),
        created_by=row.created_by,
        created_at=to_datetime(int(row.created_at)) or datetime.now(),
    )


def get_index(
    name: str, version: int | None = None, *, workspace: WorkspaceLike = None
) -> IndexVersion:
    """Version ``version`` of index ``name`` (the latest when None); raises
    :class:`IndexNotFound` listing the indexes (or versions) there are."""
    ws = resolve_workspace(workspace)
    stmt = select(llm_rag_indexes).where(llm_rag_indexes.c.name == name)
    if version is None:
        stmt = stmt.order_by(llm_rag_indexes.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(llm_rag_indexes.c.version == version)
    with ws.db.read() as conn:
        row = conn.execute(stmt).first()
        if row is not None:
            return _row_to_index(row)
        names = list(
            conn.execute(
                select(llm_rag_indexes.c.name).distinct().order_by(llm_rag_indexes.c.name)
            ).scalars()
        )
    if name in names:
        raise IndexNotFound(f"Index {name!r} has no version {version}: see `loopml rag indexes`.")
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    there = f" Indexes: {', '.join(names[:20])}." if names else " There is none yet."
    raise IndexNotFound(
        f"No index {name!r}.{hint}{there} Register one with "
        "`loopml rag register-index NAME --source PATH_OR_GLOB`."
    )


def list_indexes(*, workspace: WorkspaceLike = None) -> list[IndexVersion]:
    """The latest version of every index, by name."""
    ws = resolve_workspace(workspace)
    latest = (
        select(llm_rag_indexes.c.name, func.max(llm_rag_indexes.c.version).label("version"))
        .group_by(llm_rag_indexes.c.name)
        .subquery()
    )
    stmt = (
        select(llm_rag_indexes)
        .join(
            latest,
            (llm_rag_indexes.c.name == latest.c.name)
            & (llm_rag_indexes.c.version == latest.c.version),
        )
        .order_by(llm_rag_indexes.c.name)
    )
    with ws.db.read() as conn:
        return [_row_to_index(row) for row in conn.execute(stmt).all()]


def index_manifest(name: str, version: int, *, workspace: WorkspaceLike = None) -> Manifest:
    """The manifest recorded for version ``version`` of index ``name``."""
    ws = resolve_workspace(workspace)
    stmt = select(
        llm_rag_documents.c.path,
        llm_rag_documents.c.digest,
        llm_rag_documents.c.size,
        llm_rag_documents.c.mtime_ns,
    ).where(llm_rag_documents.c.name == name, llm_rag_documents.c.version == version)
    with ws.db.read() as conn:
        return {
            row.path: CorpusFile(row.digest, int(row.size), int(row.mtime_ns))
            for row in conn.execute(stmt).all()
        }


def check_index(
    name: str,
    *,
    days: float = 7.0,
    version: int | None = None,
    emit_event: bool = True,
    workspace: WorkspaceLike = None,
) -> IndexCheck:
    """Compare the corpus index ``name`` (its latest version, or ``version``) was built from
    with the corpus now: documents added, changed and deleted; and, over the retrieval spans
    of the last ``days``, the share of answers served from a document whose source has
    changed or vanished since (its hash in the span, else in the manifest of the version it
    names, differs from the file now).

    A stale index emits ``rag.index_stale`` (subject: the index name) unless one was already
    emitted for this build and this state of the corpus, or ``emit_event`` is False.
    """
    if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
        raise InvalidInput(f"days is a positive number, got {shown(days)}.")
    ws = resolve_workspace(workspace)
    index = get_index(name, version, workspace=ws)
    built = index_manifest(name, index.version, workspace=ws)
    now = scan(index.source, Path(index.root), built, int(index.created_at.timestamp() * 1e9))
    changes = compare(built, now)
    current = corpus_digest(now)

    since_us = int((time.time() - days * 86_400) * 1e6)
    retrievals = stored_retrievals(ws, index=name, since_us=since_us)
    answers, stale_answers, stale_documents = _served_stale(
        retrievals, index, built, now, lambda v: index_manifest(name, v, workspace=ws)
    )
    event_id = None
    if changes.stale and emit_event:
        payload = {
            "version": index.version,
            "corpus": index.corpus,
            "current": current,
            "added": len(changes.added),
            "changed": len(changes.changed),
            "deleted": len(changes.deleted),
            "served_stale": stale_answers / answers if answers else None,
        }
        event_id = ws.db.transact(lambda conn: _emit_once(conn, name, payload))
    return IndexCheck(
        index=index,
        current=current,
        changes=changes,
        days=float(days),
        answers=answers,
        stale_answers=stale_answers,
        stale_documents=stale_documents,
        event_id=event_id,
    )


def _emit_once(conn: Connection, name: str, payload: dict[str, Any]) -> int | None:
    """Emit ``rag.index_stale`` unless the last one of ``name`` reported the same build and
    corpus state (a check run every hour fires one re-index, not 24)."""
    last = conn.execute(
        select(events.c.payload)
        .where(events.c.kind == STALE_EVENT, events.c.subject == name)
        .order_by(events.c.id.desc())
        .limit(1)
    ).scalar()
    if last:
        before = json.loads(last)
        seen = (before.get("version"), before.get("current"))
        if seen == (payload["version"], payload["current"]):
            return None
    return emit(conn, STALE_EVENT, name, payload)


def _served_stale(
    retrievals: list[Retrieval],
    index: IndexVersion,
    built: Manifest,
    now: Manifest,
    manifest_of: Any,
) -> tuple[int, int, tuple[StaleDocument, ...]]:
    """``(answers, stale answers, stale documents)``: an answer counts when one of its
    documents (those it cited, when the span says) names a source; it was served stale when
    one such source's content now differs from what was served, or is gone."""
    root = Path(index.root)
    manifests: dict[int, Manifest] = {index.version: built}
    counts: dict[tuple[str, str], int] = {}
    answers = stale_answers = 0
    for retrieval in retrievals:
        cited = set(retrieval.cited_ids) if retrieval.cited_ids is not None else None
        served = [
            d
            for d in retrieval.documents
            if d.source is not None and (cited is None or d.id in cited)
        ]
        if not served:
            continue
        answers += 1
        stale_here = set()
        for doc in served:
            assert doc.source is not None
            rel = _relative(doc.source, root)
            expected = doc.source_hash
            if expected is None:
                v = retrieval.index_version or index.version
                if v not in manifests:
                    manifests[v] = manifest_of(v)
                known = manifests[v].get(rel)
                expected = known.digest if known is not None else None
            found = now.get(rel)
            digest = found.digest if found is not None else _outside(rel)
            if digest is None:
                why = "vanished"
            elif expected is not None and digest != expected:
                why = "changed"
            else:
                continue
            stale_here.add((rel, why))
        if stale_here:
            stale_answers += 1
            for key in stale_here:
                counts[key] = counts.get(key, 0) + 1
    documents = tuple(
        StaleDocument(source, why, n)
        for (source, why), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return answers, stale_answers, documents


def _relative(source: str, root: Path) -> str:
    """A span's document source as a manifest path: relative to the index's root."""
    path = Path(source)
    if path.is_absolute():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return path.as_posix()
    return path.as_posix()


def _outside(path: str) -> str | None:
    """The BLAKE3 of a served file outside the index's corpus (None: not a file now)."""
    if not os.path.isabs(path) or not os.path.isfile(path):
        return None
    try:
        return hash_file(path)
    except OSError:
        return None
