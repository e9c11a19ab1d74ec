"""The LLM gateway in one script: a virtual key for team growth, requests routed between a
cheap and a frontier model, an application span around them, then the cost report and the
trace, as `loopml llm costs` and `loopml traces show` print them.

    export OPENAI_API_KEY=sk-… ANTHROPIC_API_KEY=sk-ant-…
    python examples/llm_gateway/run.py [FOLDER]     # default: a fresh temporary folder

It sends four small requests (well under a cent). Over HTTP instead of in-process:
`loopml gateway serve --config gateway.toml` in FOLDER and point any OpenAI SDK at
http://127.0.0.1:4000/v1 with the key it prints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loopml.llm import Gateway, trace
from loopml.llm.keys import create_key
from loopml.llm.tracing import inject_headers
from loopml.workspace import Workspace

HERE = Path(__file__).resolve().parent


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "gateway.toml"
    if not config.exists():
        shutil.copy(HERE / "gateway.toml", config)
    ws = Workspace.init(folder)
    key, secret = create_key(ws, name="support-bot", team="growth", models=["auto", "cheap"])
    print(f"virtual key {key.id} for team growth ({secret[:12]}…)")

    with Gateway.from_config(config, workspace=ws, require_key=True) as gw:
        with trace("answer a support question", workspace=ws) as root:
            with trace("retrieve documents", workspace=ws):
                documents = ["Refunds take 5 days.", "Plans renew monthly."]
            question = "How long do refunds take?"
            reply = gw.chat(
                {
                    "model": "auto",
                    "messages": [
                        {"role": "system", "content": " ".join(documents)},
                        {"role": "user", "content": question},
                    ],
                    "max_tokens": 60,
                    "metadata": {"tags": ["support"]},
                },
                api_key=secret,
                headers=inject_headers({}),
            )
            trace_id = format(root.get_span_context().trace_id, "032x")
        print("answer:", reply.body["choices"][0]["message"]["content"])
        print(f"  by {reply.deployment}, {reply.usage.total_tokens} tokens, ${reply.cost_usd:.6f}")
        for text in ("Say hi.", "Write one line about the sea.", "Name a colour."):
            chunks = gw.stream(
                {
                    "model": "cheap",
                    "stream": True,
                    "max_tokens": 30,
                    "messages": [{"role": "user", "content": text}],
                },
                api_key=secret,
            )
            print(
                "streamed:",
                "".join(
                    c["choices"][0]["delta"].get("content") or ""
                    for c in chunks
                    if c.get("choices")
                ),
            )
    ws.llm.flush_traces()
    ws.close()

    loopml = [sys.executable, "-m", "loopml.cli"]
    for argv in (
        ["llm", "costs", "--by", "model"],
        ["llm", "costs", "--by", "team"],
        ["traces", "show", trace_id],
    ):
        print(f"\n$ loopml {' '.join(argv)}")
        sys.stdout.flush()
        subprocess.run([*loopml, *argv], cwd=folder, check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-")))
