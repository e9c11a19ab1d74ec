"""The index registry on every metadata backend: manifests of a folder, a glob and a file;
added, changed and deleted documents; the served-stale share from real stored retrieval
spans; the rag.index_stale event (once per build and corpus state)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.events import read
from loopml.exceptions import InvalidInput
from loopml.llm.rag import (
    IndexNotFound,
    SourceNotFound,
    check_index,
    get_index,
    index_manifest,
    list_indexes,
    record_retrieval,
    register_index,
    retrieval_span,
    stored_retrievals,
)
from loopml.llm.tracing import close_traces, flush_traces, inject_headers, trace
from loopml.store.blobs import hash_file
from loopml.store.manifest import manifest_digest
from loopml.workspace import Workspace


@pytest.fixture(autouse=True)
def _app_traces_closed() -> Iterator[None]:
    yield
    close_traces()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "faq").mkdir(parents=True)
    (root / "faq" / "refunds.md").write_text("Refunds within 30 days.\n")
    (root / "faq" / "hours.md").write_text("Open 9 to 5.\n")
    (root / "policy.md").write_text("Be kind.\n")
    (root / "notes.txt").write_text("not markdown\n")
    return root


def _age(path: Path, seconds: float = 60) -> None:
    """Move a file's mtime into the past, so the check may trust its stat."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_folder_is_registered_with_its_manifest_and_versions(ws: Workspace, corpus: Path) -> None:
    first = register_index("docs", corpus, workspace=ws)
    assert (first.name, first.version, first.files) == ("docs", 1, 4)
    assert first.root == str(corpus) and first.source == str(corpus)
    manifest = index_manifest("docs", 1, workspace=ws)
    assert sorted(manifest) == ["faq/hours.md", "faq/refunds.md", "notes.txt", "policy.md"]
    refunds = corpus / "faq" / "refunds.md"
    assert manifest["faq/refunds.md"].digest == hash_file(refunds)
    assert manifest["faq/refunds.md"].size == refunds.stat().st_size
    assert manifest["faq/refunds.md"].mtime_ns == refunds.stat().st_mtime_ns
    # the corpus version is a data-versioning manifest digest, stored as a blob
    entries = [(p, f.digest, f.size) for p, f in manifest.items()]
    assert first.corpus == manifest_digest(entries)
    assert ws.blobs.get_bytes(first.corpus).startswith(b"faq/hours.md\t")
    second = register_index("docs", corpus, workspace=ws)
    assert second.version == 2 and second.corpus == first.corpus
    assert get_index("docs", workspace=ws).version == 2
    assert get_index("docs", 1, workspace=ws) == first
    assert [(i.name, i.version) for i in list_indexes(workspace=ws)] == [("docs", 2)]


def test_globs_and_single_files(ws: Workspace, corpus: Path) -> None:
    index = register_index("md", str(corpus / "**" / "*.md"), workspace=ws)
    assert index.root == str(corpus) and index.files == 3
    assert sorted(index_manifest("md", 1, workspace=ws)) == [
        "faq/hours.md",
        "faq/refunds.md",
        "policy.md",
    ]
    shallow = register_index("top", str(corpus / "*.md"), workspace=ws)
    assert list(index_manifest("top", 1, workspace=ws)) == ["policy.md"] and shallow.files == 1
    one = register_index("one", corpus / "policy.md", workspace=ws)
    assert one.root == str(corpus) and list(index_manifest("one", 1, workspace=ws)) == ["policy.md"]


def test_a_missing_source_or_index_is_an_error_naming_it(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match=r"No file or folder '.*nowhere'.*index 'docs'"):
        register_index("docs", tmp_path / "nowhere", workspace=ws)
    with pytest.raises(SourceNotFound, match=r"The glob '.*\*\.pdf'.*holds no file"):
        register_index("docs", str(tmp_path / "*.pdf"), workspace=ws)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFound, match="The folder .*empty.* holds no file"):
        register_index("docs", tmp_path / "empty", workspace=ws)
    with pytest.raises(IndexNotFound, match="No index 'docs'. There is none yet"):
        check_index("docs", workspace=ws)
    with pytest.raises(InvalidInput, match="index name"):
        register_index("", tmp_path, workspace=ws)
    assert read(ws.db) == []


def test_check_reports_added_changed_deleted_and_emits_once(ws: Workspace, corpus: Path) -> None:
    for path in corpus.rglob("*"):
        _age(path)
    register_index("docs", corpus, workspace=ws)
    fresh = check_index("docs", workspace=ws)
    assert not fresh.stale and fresh.current == fresh.index.corpus and fresh.event_id is None
    assert (fresh.answers, fresh.served_stale) == (0, None)

    (corpus / "faq" / "refunds.md").write_text("Refunds within 14 days.\n")
    (corpus / "policy.md").unlink()
    (corpus / "faq" / "shipping.md").write_text("Ships in 2 days.\n")
    report = check_index("docs", workspace=ws)
    assert report.stale
    assert report.changes.added == ("faq/shipping.md",)
    assert report.changes.changed == ("faq/refunds.md",)
    assert report.changes.deleted == ("policy.md",)
    assert report.event_id is not None
    (event,) = read(ws.db, kinds="rag.index_stale")
    assert event.subject == "docs" and event.id == report.event_id
    assert event.payload == {
        "version": 1,
        "corpus": report.index.corpus,
        "current": report.current,
        "added": 1,
        "changed": 1,
        "deleted": 1,
        "served_stale": None,
    }
    # the same state checked again fires nothing new; a further change does
    assert check_index("docs", workspace=ws).event_id is None
    (corpus / "notes.txt").write_text("changed too\n")
    assert check_index("docs", workspace=ws).event_id is not None
    assert len(read(ws.db, kinds="rag.index_stale")) == 2
    # re-indexing makes the index fresh again
    register_index("docs", corpus, workspace=ws)
    assert not check_index("docs", workspace=ws).stale


def test_a_same_size_edit_within_the_same_second_is_still_seen(ws: Workspace, corpus: Path) -> None:
    register_index("docs", corpus, workspace=ws)
    hours = corpus / "faq" / "hours.md"
    st = hours.stat()
    hours.write_text("Open 8 to 5.\n")  # same size
    os.utime(hours, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    assert check_index("docs", workspace=ws).changes.changed == ("faq/hours.md",)


def test_served_stale_share_from_stored_retrieval_spans(ws: Workspace, corpus: Path) -> None:
    index = register_index("docs", corpus, workspace=ws)
    refunds, hours, policy = (
        corpus / "faq" / "refunds.md",
        corpus / "faq" / "hours.md",
        corpus / "policy.md",
    )

    def doc(path: Path, **extra: object) -> dict[str, object]:
        return {"id": path.stem + "#0", "score": 0.9, "source": str(path), **extra}

    # 1: with hashes, cites refunds (changed below); 2: relative source without hash, cites
    # policy (deleted below); 3: hours only (unchanged); 4: retrieves refunds but cites hours
    with trace("answer", workspace=ws):
        record_retrieval(
            "refunds?",
            [
                doc(refunds, source_hash=hash_file(refunds)),
                doc(hours, source_hash=hash_file(hours)),
            ],
            index="docs",
            index_version=index.version,
        )
    with retrieval_span(
        "rules?", [{"id": "p", "source": "policy.md"}], index="docs", index_version=1, workspace=ws
    ):
        pass
    with retrieval_span("hours?", [doc(hours)], index="docs", workspace=ws):
        pass
    with retrieval_span(
        "when?", [doc(refunds), doc(hours)], index="docs", cited=["hours#0"], workspace=ws
    ):
        pass
    with retrieval_span("other", [doc(refunds)], index="elsewhere", workspace=ws):
        pass
    flush_traces(ws)
    assert [r.query for r in stored_retrievals(ws, index="docs")] == [
        "refunds?",
        "rules?",
        "hours?",
        "when?",
    ]

    refunds.write_text("Refunds within 14 days.\n")
    policy.unlink()
    report = check_index("docs", days=1, workspace=ws)
    assert (report.answers, report.stale_answers) == (4, 2)
    assert report.served_stale == 0.5
    assert [(d.source, d.why, d.answers) for d in report.stale_documents] == [
        ("faq/refunds.md", "changed", 1),
        ("policy.md", "vanished", 1),
    ]
    (event,) = read(ws.db, kinds="rag.index_stale")
    assert event.payload is not None and event.payload["served_stale"] == 0.5


def test_retrieval_attributes_and_the_trace_they_share(ws: Workspace) -> None:
    with trace("answer", workspace=ws) as parent:
        with retrieval_span(
            "q",
            ["a", {"id": "b", "score": 1.5, "timestamp": "2026-12-01T00:00:00Z"}],
            index="docs",
            index_version=2,
            workspace=ws,
        ):
            headers = inject_headers()
        trace_id = f"{parent.get_span_context().trace_id:032x}"
    # a gateway call made with these headers joins the same trace
    assert headers["traceparent"].split("-")[1] == trace_id
    flush_traces(ws)
    (found,) = stored_retrievals(ws)
    assert found.trace_id == trace_id and found.index_version == 2 and found.query == "q"
    assert [(d.id, d.score, d.timestamp) for d in found.documents] == [
        ("a", None, None),
        ("b", 1.5, "2026-12-01T00:00:00Z"),
    ]
    with pytest.raises(InvalidInput, match="there is none"):
        record_retrieval("q", ["a"], index="docs")
    with (
        pytest.raises(InvalidInput, match=r"document 0 \('a'\) has unknown key\(s\) url"),
        retrieval_span("q", [{"id": "a", "url": "x"}], index="docs", workspace=ws),
    ):
        pass
