"""The tutorials of the documentation site run as written, so they can't rot.

Each tutorial page is followed top to bottom in one fresh, empty folder, the way a new user
follows it:

- a ```` ```python ```` block runs as a script (``python -``) in that folder;
- a ```` ```console ```` block runs each ``$ …`` line in bash (the other lines are the output
  it shows, not checked: ids and times differ); a ```` ```bash ```` block runs as one script;
- a block with a ``title="PATH"`` writes PATH (a ``loopml.toml`` block is added to the end
  of the file ``loopml init`` wrote, as the page tells the reader to);
- ```` ```text ````, ```` ```toml ```` without a title and the like are shown, not run.

``<!-- docs-test: skip -->`` right before a block leaves it out (it needs a paid API, say);
:data:`SKIPPED` counts them per page, so a new skip is a decision. ``<!-- docs-test:
background port=8000 -->`` before a console block starts its command in the background (a
server) for the rest of the page, on a free port that replaces 8000 in the page's later blocks,
and waits until that port answers.

A page in :data:`FAKE_PROVIDER` (the LLM gateway's) calls LLM providers, which a test can't
reach: for it the harness starts the tests' fake provider (``tests/llm/fake_provider.py``, a
real HTTP server on 127.0.0.1 speaking OpenAI's and Anthropic's APIs), replaces the
providers' URLs in the page's blocks (``https://api.openai.com/v1`` and
``https://api.anthropic.com``) with the fake's, and sets ``OPENAI_API_KEY`` and
``ANTHROPIC_API_KEY`` to dummy keys, as ``tests/examples/test_llm_gateway.py`` does for the
example. Everything else on the page (the gateway, its keys, the SDKs, the CLI) is real.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from llm.fake_provider import FakeProvider, start_fake_provider

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: The tutorial pages, in the order of the site's navigation.
TUTORIALS = [
    "index.md",
    "getting-started.md",
    "tracking.md",
    "data.md",
    "registry.md",
    "pipelines.md",
    "features.md",
    "serving.md",
    "monitoring.md",
    "server.md",
    "gateway.md",
]

#: Blocks marked ``<!-- docs-test: skip -->``, per page (a page not listed skips none); each
#: skip of server.md and gateway.md says why in a comment above its mark.
SKIPPED: dict[str, int] = {
    "index.md": 1,
    "getting-started.md": 1,
    "server.md": 4,
    "gateway.md": 4,
}

#: The pages followed with a fake LLM provider, and the provider URLs of theirs it replaces:
#: the URL in the page → (deployment name on the fake, its flavour).
FAKE_PROVIDER: dict[str, dict[str, tuple[str, str]]] = {
    "gateway.md": {
        "https://api.openai.com/v1": ("openai", "openai"),
        "https://api.anthropic.com": ("anthropic", "anthropic"),
    },
}

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
_MARK = re.compile(r"<!--\s*docs-test:\s*(?P<what>[\w-]+)(?P<args>[^>]*?)\s*-->\s*$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str
    title: str | None = None
    mark: str | None = None
    args: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"docs/{self.page}, line {self.line} (```{self.lang})"


def blocks(page: str) -> list[Block]:
    """The page's fenced blocks in order, with their title and docs-test mark."""
    return parse(page, (DOCS / page).read_text(encoding="utf-8"))


def parse(page: str, text: str) -> list[Block]:
    """The fenced blocks of ``text`` (the Markdown of ``page``)."""
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        title = _TITLE.search(match.group("attrs"))
        indent = match.group("indent")
        body = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match.group("body").split("\n")
        )
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                lang=match.group("lang"),
                body=body,
                title=title.group("title") if title else None,
                mark=mark.group("what") if mark else None,
                args=dict(arg.split("=", 1) for arg in mark.group("args").split()) if mark else {},
            )
        )
    return found


def console_commands(body: str) -> list[str]:
    """The ``$ …`` lines of a console block (a line ending in ``\\`` continues)."""
    commands: list[str] = []
    pending: str | None = None
    for line in body.splitlines():
        if pending is not None:
            pending += "\n" + line
        elif line.startswith("$ "):
            pending = line[2:]
        else:
            continue
        if not pending.endswith("\\"):
            commands.append(pending)
            pending = None
    return commands


def _env() -> dict[str, str]:
    """A new user's environment: no workspace or store chosen by the test session, the
    virtualenv's ``python`` and ``loopml`` first on PATH, git with an identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "PYTEST_"))}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(
        GIT_AUTHOR_NAME="Docs Test",
        GIT_AUTHOR_EMAIL="docs@example.com",
        GIT_COMMITTER_NAME="Docs Test",
        GIT_COMMITTER_EMAIL="docs@example.com",
        NO_COLOR="1",
        COLUMNS="120",
    )
    return env


def substitute(body: str, mapping: dict[str, str]) -> str:
    """``body`` with each key of ``mapping`` replaced by its value, in one pass (a value put in
    is never replaced again) and never inside a longer number (port 8000 is replaced in
    ``:8000/``, not in ``18000``)."""
    if not mapping:
        return body
    keys = "|".join(re.escape(key) for key in sorted(mapping, key=len, reverse=True))
    return re.sub(rf"(?<!\d)(?:{keys})(?!\d)", lambda m: mapping[m.group(0)], body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[str], log: IO[str], block: Block) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"{block.where}: the background command exited:\n{log.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{block.where}: nothing answered on port {port} within 120 s")


def _check(done: subprocess.CompletedProcess[str], block: Block, code: str) -> None:
    if done.returncode != 0:
        pytest.fail(
            f"{block.where} failed (exit {done.returncode}):\n{code}\n"
            f"--- output ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )


def follow(
    page: str,
    folder: Path,
    found: list[Block] | None = None,
    *,
    replace: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, int]:
    """Do what ``page`` says (or the blocks ``found`` in it) in ``folder``; counts of the
    blocks run, written and skipped. ``replace`` maps text of the page's blocks to what the
    test runs instead (a provider's URL), ``env`` adds to a new user's environment."""
    env = {**_env(), **(env or {})}
    counts = {"run": 0, "written": 0, "skipped": 0}
    ports: dict[str, str] = {}
    background: list[tuple[subprocess.Popen[str], IO[str]]] = []
    try:
        for block in blocks(page) if found is None else found:
            body = substitute(block.body, {**ports, **(replace or {})})
            if block.mark == "skip":
                counts["skipped"] += 1
                continue
            if block.title is not None:
                target = folder / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                if block.title == "loopml.toml" and target.exists():
                    body = target.read_text(encoding="utf-8") + "\n" + body
                target.write_text(body, encoding="utf-8")
                counts["written"] += 1
                continue
            if block.lang == "python":
                done = subprocess.run(
                    [sys.executable, "-"],
                    input=body,
                    cwd=folder,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=_BLOCK_TIMEOUT_S,
                )
                _check(done, block, body)
                counts["run"] += 1
            elif block.lang == "console" and block.mark == "background":
                doc_port = block.args["port"]
                ports[doc_port] = str(_free_port())
                (command,) = console_commands(substitute(body, {doc_port: ports[doc_port]}))
                # Its output goes to a file outside the folder: a pipe nobody reads
                # would fill up and stop the server.
                log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below)
                process = subprocess.Popen(
                    ["bash", "-c", "exec " + command],
                    cwd=folder,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                background.append((process, log))
                _wait_for_port(int(ports[doc_port]), process, log, block)
                counts["run"] += 1
            elif block.lang in ("console", "bash"):
                commands = console_commands(body) if block.lang == "console" else [body]
                for command in commands:
                    done = subprocess.run(
                        ["bash", "-euo", "pipefail", "-c", command],
                        cwd=folder,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=_BLOCK_TIMEOUT_S,
                    )
                    _check(done, block, command)
                counts["run"] += 1
    finally:
        for process, log in background:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    return counts


@contextmanager
def _fake_provider(page: str) -> Iterator[FakeProvider | None]:
    """A fake LLM provider running while ``page`` is followed, if it is in FAKE_PROVIDER."""
    if page not in FAKE_PROVIDER:
        yield None
        return
    fake = start_fake_provider()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS)
def test_tutorial_runs_as_written(page: str, tmp_path: Path) -> None:
    with _fake_provider(page) as fake:
        urls = FAKE_PROVIDER.get(page, {})
        replace = {url: fake.base_url(*where) for url, where in urls.items()} if fake else {}
        env = {"OPENAI_API_KEY": "sk-docs-test", "ANTHROPIC_API_KEY": "sk-ant-docs-test"}
        counts = follow(page, tmp_path, replace=replace, env=env if fake else None)
        for name, _ in urls.values():
            assert fake is not None and fake.calls(name), (
                f"docs/{page}: no request reached the fake provider's {name!r} deployment"
            )
    assert counts["run"] > 0, f"docs/{page} has no block the test runs"
    assert counts["skipped"] == SKIPPED.get(page, 0), (
        f"docs/{page} skips {counts['skipped']} blocks; SKIPPED says {SKIPPED.get(page, 0)}"
    )


def test_every_tutorial_is_a_page_of_the_site() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    for page in TUTORIALS:
        assert (DOCS / page).is_file(), page
        assert f" {page}\n" in nav, f"{page} is not in mkdocs.yml's nav"


def test_blocks_are_found_with_their_marks() -> None:
    text = (
        "Intro\n\n```python\nprint(1)\n```\n\n<!-- docs-test: skip -->\n```console\n"
        "$ loopml gateway serve --port 4000\n```\n\n"
        '```toml title="loopml.toml"\n[x]\ny = 1\n```\n\n'
        "<!-- docs-test: background port=8000 -->\n```console\n$ loopml serve a --port 8000\n```\n"
        "\n- a list item:\n\n    ```console\n    $ echo a \\\n      b\n    output\n    ```\n"
    )
    found = parse("parse-check.md", text)
    assert [(b.lang, b.mark, b.title) for b in found] == [
        ("python", None, None),
        ("console", "skip", None),
        ("toml", None, "loopml.toml"),
        ("console", "background", None),
        ("console", None, None),
    ]
    assert found[3].args == {"port": "8000"}
    assert console_commands(found[4].body) == ["echo a \\\n  b"]
    assert shlex.split(console_commands(found[1].body)[0])[:2] == ["loopml", "gateway"]


def test_ports_and_urls_are_replaced_once_and_whole() -> None:
    body = "curl http://127.0.0.1:5000/x http://127.0.0.1:5001 18000 https://api.openai.com/v1/"
    mapping = {"5000": "50012", "5001": "40001", "https://api.openai.com/v1": "http://h:5001/o/v1"}
    assert substitute(body, mapping) == (
        "curl http://127.0.0.1:50012/x http://127.0.0.1:40001 18000 http://h:5001/o/v1/"
    )


def test_a_rotted_block_fails_naming_its_line(tmp_path: Path) -> None:
    text = (
        "# Rot\n\n```console\n$ loopml init\n```\n\n"
        '```python title="helper.py"\nVALUE = 1\n```\n\n'
        "```python\nimport helper\nassert helper.VALUE == 1\n```\n\n"
        "<!-- docs-test: skip -->\n```console\n$ loopml gateway serve\n```\n\n"
        "```console\n$ loopml runs list --no-such-option\n```\n"
    )
    with pytest.raises(pytest.fail.Exception, match=r"docs/rot.md, line 21 \(```console\)"):
        follow("rot.md", tmp_path, parse("rot.md", text))
    assert (tmp_path / "loopml.toml").is_file() and (tmp_path / "helper.py").is_file()
