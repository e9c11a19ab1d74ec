"""A small RAG help desk, end to end: the index's corpus registered, the prompt promoted to
production through an eval gate (a first cut is refused, the second passes), answers traced
with their retrieval and judged for groundedness off the response path, then the corpus
changes and `loopml rag check` reports the index stale.

    export OPENAI_API_KEY=sk-…
    python examples/rag_app/run.py [FOLDER]    # default: a fresh temporary folder

It sends about a dozen small requests (well under a cent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loopml.llm import Gateway
from loopml.llm.evals import EvalGate
from loopml.llm.prompts import LabelBlocked, register_prompt, set_label
from loopml.llm.rag import register_index
from loopml.llm.tracing import flush_traces
from loopml.workspace import Workspace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from app import INDEX, PROMPT, HelpDesk, Retriever  # noqa: E402

FIRST_CUT = [
    {"role": "system", "content": "You are the Northwind Bikes help desk. Answer in one sentence."},
    {"role": "user", "content": "{{ question }}"},
]
GROUNDED = [
    {
        "role": "system",
        "content": (
            "You are the Northwind Bikes help desk. Answer only from the context, in one "
            "sentence, quoting its figures exactly, and cite the ids in brackets of the "
            "passages you used, e.g. [refunds.md#1]. If the context does not say, say so."
        ),
    },
    {"role": "user", "content": "Context:\n{{ context }}\n\nQuestion: {{ question }}"},
]
QUESTIONS = [
    ("How long does a refund take to reach my card?", "ana"),
    ("Is delivery free in the UK?", "ben"),
    ("How do I reset my password?", "ana"),
    ("Can I get a refund on a custom-built frame?", "chloe"),
]


def loopml(folder: Path, *args: str, check: bool = True) -> int:
    print(f"\n$ loopml {' '.join(args)}", flush=True)
    cli = [sys.executable, "-m", "loopml.cli", "-w", str(folder), *args]
    return subprocess.run(cli, check=check).returncode


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("loopml.toml", "suite.yaml"):
        if not (folder / name).exists():
            shutil.copy(HERE / name, folder / name)
    corpus = folder / "corpus"
    if not corpus.exists():
        shutil.copytree(HERE / "corpus", corpus)
    ws = Workspace.init(folder)

    # 1. Build the index and record the corpus it was built from.
    retriever = Retriever(corpus)
    built = register_index(INDEX, corpus, workspace=ws)
    print(
        f"index {INDEX} version {built.version}: {len(retriever.chunks)} chunks from "
        f"{built.files} files, corpus {built.corpus[:12]}"
    )

    # 2. Two versions of the prompt; production is protected, so each must pass the suite.
    first = register_prompt(PROMPT, FIRST_CUT, model="helpdesk", params={"temperature": 0},
                            commit_message="first cut", workspace=ws)  # fmt: skip
    grounded = register_prompt(PROMPT, GROUNDED, model="helpdesk", params={"temperature": 0},
                               commit_message="answer from the retrieved context, cite it",
                               workspace=ws)  # fmt: skip
    with Gateway.from_config(workspace=ws) as gateway:
        gate = EvalGate.for_prompt(PROMPT, gateway=gateway)
        for version in (first, grounded):
            try:
                set_label(PROMPT, "production", version.version, gate=gate,
                          reason=version.commit_message, workspace=ws)  # fmt: skip
                print(f"gate: {version.ref} promoted to production")
            except LabelBlocked as blocked:
                print(f"gate: {version.ref} refused: {blocked}")

        # 3. The help desk answers; each answer is one trace: retrieval, then generation.
        desk = HelpDesk(retriever, gateway, built.version)
        replies = [desk.answer(question, user=user) for question, user in QUESTIONS]
        for (question, _), reply in zip(QUESTIONS, replies, strict=True):
            print(f"\nQ: {question}\nA: {reply.text}\n   cited {reply.cited or '-'}, "
                  f"trace {reply.trace_id}")  # fmt: skip
        # The judges of [gateway.online_eval] read the stored retrieval spans: store them,
        # then judge what was sampled now rather than after delay_s.
        flush_traces(ws)
        gateway.flush_online_evals()

    loopml(folder, "prompts", "history", PROMPT, "production")
    loopml(folder, "traces", "show", replies[0].trace_id)
    loopml(folder, "llm", "requests", "--prompt", PROMPT)
    loopml(folder, "rag", "online", "--index", INDEX)

    # 4. The corpus moves on without a rebuild: the index now answers from old text.
    refunds = corpus / "refunds.md"
    refunds.write_text(refunds.read_text().replace("30 days", "14 days"))
    (corpus / "servicing.md").unlink()
    (corpus / "rentals.md").write_text("# Rentals\n\nWe rent city bikes for 15 pounds a day.\n")
    status = loopml(folder, "rag", "check", INDEX, check=False)
    print(f"(exit status {status}: the index is stale; rebuild it, then register-index again)")
    if status != 1:
        raise SystemExit("expected `loopml rag check` to report the index stale")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-")))
