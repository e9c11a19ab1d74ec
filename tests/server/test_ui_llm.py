"""The web UI's LLM gateway pages (traces, a trace's waterfall, the cost report, one request)
over a real server, with data recorded by a real in-process gateway in front of the fake
provider and by the request log directly; one click-through in headless Chromium."""

from __future__ import annotations

import doctest
import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from llm.fake_provider import FakeProvider, start_fake_provider
from loopml.llm.logs import RequestLog, RequestRecord
from loopml.llm.tracing import SpanRecord
from loopml.llm.types import Attempt, Usage
from loopml.server.ui import llm as ui_llm
from loopml.workspace import Workspace
from services import chromium, require_module

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN = "00f067aa0ba902b7"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    provider = start_fake_provider()
    yield provider
    provider.stop()


def config(fake: FakeProvider) -> dict[str, Any]:
    def deployment(name: str, model: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai",
            "model": model,
            "base_url": fake.base_url(name, "openai"),
            "api_key_env": "FAKE_PROVIDER_KEY",
        }

    return {
        "require_key": False,
        "log_flush_interval": 0.05,
        "num_retries": 3,
        "models": {
            "cheap": {"fallbacks": ["backup"], "deployments": [deployment("ui-a", "fake-small")]},
            "backup": {"deployments": [deployment("ui-b", "fake-small")]},
        },
        "prices": {"fake-small": {"input": 1.0, "output": 2.0}},
    }


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@pytest.fixture
def gateway_trace(
    sqlite_ws: Workspace, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A trace made by a real gateway: an application's span (stored by the request log),
    under it the gateway's chat whose first attempt (ui-a) failed with a 500 and whose
    second (ui-b, the fallback group's) answered."""
    from loopml.llm.gateway import Gateway

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    fake.reset()
    fake.fail("ui-a", "500", times=1)
    gw = Gateway.from_config(config(fake), workspace=sqlite_ws)
    began = datetime.now(UTC)
    try:
        reply = gw.chat(
            {"model": "cheap", "messages": [{"role": "user", "content": "hello <b>there</b>"}]},
            headers={"traceparent": f"00-{TRACE}-{APP_SPAN}-01"},
        )
        gw.log.flush()
    finally:
        gw.close()
    ended = datetime.now(UTC)
    with RequestLog(sqlite_ws, flush_interval=3600) as log:
        log.add_spans(
            [
                SpanRecord(
                    TRACE,
                    APP_SPAN,
                    None,
                    "rag answer",
                    "internal",
                    us(began) - 5_000,
                    us(ended) + 5_000,
                    "ok",
                    {"rag.k": 5},
                )
            ]
        )
    fake.reset()
    return {"request_id": reply.request_id, "attempts": reply.attempts, "cost": reply.cost_usd}


def get(url: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params or None, timeout=30)


def rows_of(page: str, table_id: str) -> list[str]:
    """The <tr> blocks of the table with id ``table_id``."""
    match = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.DOTALL)
    assert match, f"no table #{table_id}"
    return re.findall(r"<tr.*?</tr>", match.group(0), re.DOTALL)


def test_traces_list_a_waterfall_and_the_request(
    server: Callable[..., str], sqlite_ws: Workspace, gateway_trace: dict[str, Any]
) -> None:
    url = server(sqlite_ws)
    listing = get(url, "/traces")
    assert listing.status_code == 200
    (row,) = rows_of(listing.text, "traces")[1:]
    assert f'href="/traces/{TRACE}"' in row
    assert "rag answer" in row
    assert re.search(r"<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00</time>", row)
    assert ui_llm.usd(gateway_trace["cost"]) in row
    assert 'class="on">Traces' in listing.text

    page = get(url, f"/traces/{TRACE}")
    assert page.status_code == 200
    spans = rows_of(page.text, "waterfall")[1:]
    names = [re.search(r'class="span-name"[^>]*>(?:└ )?([^<]+?) <small', s).group(1) for s in spans]
    assert names[0] == "rag answer" and names[1] == "gateway chat"
    attempts = [s for s, n in zip(spans, names, strict=True) if n.startswith("attempt")]
    assert len(attempts) == len(gateway_trace["attempts"]) == 2
    # The failed attempt is marked, the one that answered is not; depths indent.
    assert "span-error" in attempts[0] and "✗ error" in attempts[0]
    assert "span-error" not in attempts[1]
    assert 'data-depth="0"' in spans[0] and 'data-depth="1"' in spans[1]
    assert 'data-depth="2"' in attempts[0]
    assert "deployment: ui-a" in attempts[0] and "deployment: ui-b" in attempts[1]
    assert "attempt: 1" in attempts[0] and "attempt: 2" in attempts[1]
    assert "failure: server" in attempts[0] and "failure" not in attempts[1]
    # Bars: the root spans the whole trace; the others lie inside it.
    bars = [re.search(r"left: ([\d.]+)%; width: ([\d.]+)%", s).groups() for s in spans]
    assert bars[0] == ("0.0", "100.0")
    for left, width in bars[1:]:
        assert float(left) > 0 and float(left) + float(width) <= 100.0
    request_id = gateway_trace["request_id"]
    assert f'href="/llm/requests/{request_id}"' in spans[1]

    detail = get(url, f"/llm/requests/{request_id}")
    assert detail.status_code == 200
    text = detail.text
    assert f'<code id="request-id">{request_id}</code>' in text
    chain = rows_of(text, "attempts")[1:]
    assert len(chain) == 2 and "server" in chain[0] and "500" in chain[0] and "ok" in chain[1]
    assert "hello &lt;b&gt;there&lt;/b&gt;" in text and "<b>there</b>" not in text
    assert "echo: hello &lt;b&gt;there&lt;/b&gt;" in text
    assert ui_llm.usd(gateway_trace["cost"]) in text
    assert f'href="/traces/{TRACE}"' in text
    # A unique prefix of a trace id finds it too.
    assert get(url, f"/traces/{TRACE[:10]}").status_code == 200


@pytest.fixture
def logged(sqlite_ws: Workspace) -> Workspace:
    """Requests of two teams and models over two days; an old trace and a new one whose span
    is named like markup; a request whose messages are markup."""
    return populate(sqlite_ws)


def populate(ws: Workspace) -> Workspace:
    """What :func:`logged` holds, written into ``ws``."""
    old, new = NOW - timedelta(days=3), NOW - timedelta(minutes=5)

    def rec(ident: str, when: datetime, **fields: Any) -> RequestRecord:
        values: dict[str, Any] = {
            "id": ident,
            "created_at": int(when.timestamp() * 1000),
            "endpoint": "chat",
            "model_requested": "cheap",
            "model_used": "gpt-4o-mini",
            "status": 200,
            "latency_ms": 12.0,
            "usage": Usage(100, 10),
            "cost_usd": 0.25,
            "team": "growth",
        }
        values.update(fields)
        return RequestRecord(**values)

    with RequestLog(ws, flush_interval=3600) as log:
        log.add(rec("1" * 32, old, team="search", cost_usd=1.5, usage=Usage(1000, 100)))
        log.add(rec("2" * 32, new, tags=["faq"]))
        log.add(
            rec(
                "3" * 32,
                new,
                model_used="claude-sonnet",
                status=502,
                error="every deployment failed <b>",
                attempts=[Attempt("front", "anthropic", "claude-sonnet", "server", 3.0, 500)],
                request={"messages": [{"role": "user", "content": "<script>alert(1)</script>"}]},
                response=None,
                usage=Usage(0, 0),
                cost_usd=0.0,
            )
        )
        log.add_spans(
            [
                SpanRecord("a" * 32, "1" * 16, None, "nightly batch", "internal",
                           us(old), us(old) + 1_000_000, "ok"),
                SpanRecord("b" * 32, "2" * 16, None, "<script>alert(2)</script>", "internal",
                           us(new), us(new) + 40_000, "error",
                           {"error": "boom <i>", "loopml.cost_usd": 0.5}),
                SpanRecord("b" * 32, "3" * 16, "2" * 16, "child", "client",
                           us(new) + 10_000, us(new) + 10_000, "ok"),
            ]
        )  # fmt: skip
    return ws


def test_since_filters_the_traces(server: Callable[..., str], logged: Workspace) -> None:
    url = server(logged)
    everything = get(url, "/traces").text
    assert everything.index("b" * 12) < everything.index("a" * 12)  # newest first
    recent = get(url, "/traces", since="1h").text
    assert "b" * 12 in recent and "a" * 12 not in recent
    assert 'value="1h"' in recent
    moment = (NOW - timedelta(days=1)).isoformat(timespec="seconds")
    assert moment.endswith("+00:00")
    # A "+" typed into the URL arrives as a space: the offset still reads.
    by_time = httpx.get(f"{url}/traces?since={moment}", timeout=30)
    assert by_time.status_code == 200
    assert "b" * 12 in by_time.text and "a" * 12 not in by_time.text
    nothing = get(url, "/traces", since="1s").text
    assert "No traces since 1s" in nothing
    bad = get(url, "/traces", since="yesterday")
    assert bad.status_code == 400 and "yesterday" in bad.text and "7d" in bad.text


def test_markup_in_spans_and_messages_is_shown_as_text(
    server: Callable[..., str], logged: Workspace
) -> None:
    url = server(logged)
    for path in ("/traces", f"/traces/{'b' * 32}", f"/llm/requests/{'3' * 32}"):
        answer = get(url, path)
        assert answer.status_code == 200, path
        assert "<script>alert" not in answer.text, path
    trace = get(url, f"/traces/{'b' * 32}").text
    assert html.escape("<script>alert(2)</script>", quote=False) in trace
    assert "error: boom &lt;i&gt;" in trace and "span-error" in trace
    request = get(url, f"/llm/requests/{'3' * 32}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in request
    assert "every deployment failed &lt;b&gt;" in request
    assert 'id="request-status">502<' in request
    assert "No response logged (the request failed)" in request
    assert "team growth" in request and "refusal" not in request


def test_cost_report_with_a_total_row(server: Callable[..., str], logged: Workspace) -> None:
    url = server(logged)
    page = get(url, "/llm/costs")
    assert page.status_code == 200
    body = rows_of(page.text, "costs")
    groups = [re.search(r"<td>(.*?)</td>", r).group(1) for r in body[1:-1]]
    assert groups == ["gpt-4o-mini", "claude-sonnet"]  # most expensive first
    total = body[-1]
    assert 'id="costs-total"' in total and "$1.75" in total and ">3<" in total
    teams = rows_of(get(url, "/llm/costs", by="team", since="1d").text, "costs")
    assert [re.search(r"<td>(.*?)</td>", r).group(1) for r in teams[1:-1]] == ["growth"]
    assert "$0.25" in teams[-1] and ">2<" in teams[-1]
    days = rows_of(get(url, "/llm/costs", by="day").text, "costs")
    assert len(days) == 4 and (NOW - timedelta(days=3)).date().isoformat() in days[1]
    tags = get(url, "/llm/costs", by="tag").text
    assert "faq" in tags and "untagged requests are left out" in tags
    bad = get(url, "/llm/costs", by="colour")
    assert bad.status_code == 400 and "colour" in bad.text and "team" in bad.text
    empty = get(url, "/llm/costs", since="1s").text
    assert "No gateway requests since 1s" in empty


def test_the_request_log_filtered(server: Callable[..., str], logged: Workspace) -> None:
    url = server(logged)
    ids = lambda page: re.findall(r'href="/llm/requests/(\w+)"', page)  # noqa: E731
    everything = get(url, "/llm/requests")
    assert everything.status_code == 200
    assert set(ids(everything.text)) == {"1" * 32, "2" * 32, "3" * 32}
    assert ids(everything.text)[-1] == "1" * 32  # newest first: the old one last
    assert ids(get(url, "/llm/requests", team="search").text) == ["1" * 32]
    assert ids(get(url, "/llm/requests", errors="1").text) == ["3" * 32]
    assert set(ids(get(url, "/llm/requests", since="1d").text)) == {"2" * 32, "3" * 32}
    assert ids(get(url, "/llm/requests", model="claude-sonnet").text) == ["3" * 32]
    none = get(url, "/llm/requests", user="nobody").text
    assert ids(none) == [] and "No gateway requests match" in none


def test_without_the_llm_extra_the_pages_say_what_to_install(
    server: Callable[..., str], logged: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    url = server(logged)
    monkeypatch.setitem(sys.modules, "loopml.llm.reports", None)  # its import fails
    answer = get(url, "/traces")
    assert answer.status_code == 501
    assert "pip install &#39;loopml[llm]&#39;" in answer.text


@pytest.mark.postgres
def test_the_pages_on_postgresql(
    server: Callable[..., str], workspace_factory: Callable[..., Workspace]
) -> None:
    url = server(populate(workspace_factory("postgres")))
    traces = get(url, "/traces", since="1h")
    assert traces.status_code == 200 and "b" * 12 in traces.text and "a" * 12 not in traces.text
    trace = get(url, f"/traces/{'b' * 32}")
    assert trace.status_code == 200 and len(rows_of(trace.text, "waterfall")) == 3
    tags = rows_of(get(url, "/llm/costs", by="tag").text, "costs")
    assert "faq" in tags[1] and "$0.25" in tags[-1]
    days = rows_of(get(url, "/llm/costs", by="day").text, "costs")
    assert "$1.75" in days[-1]
    assert get(url, f"/llm/requests/{'3' * 32}").status_code == 200
    assert get(url, "/traces/" + "9" * 32).status_code == 404


def test_unknown_ids_get_the_404_page(server: Callable[..., str], logged: Workspace) -> None:
    url = server(logged)
    for path in ("/traces/" + "9" * 32, "/llm/requests/nosuchrequest"):
        answer = get(url, path)
        assert answer.status_code == 404, path
        assert 'id="error-message"' in answer.text and "No " in answer.text


def test_with_auth_the_pages_need_a_signed_in_user(
    server: Callable[..., str], logged: Workspace
) -> None:
    from loopml.server.auth.tokens import create_token
    from loopml.server.auth.users import create_user

    create_user(logged.db, "bob", password=None)
    _, secret = create_token(logged.db, "bob", name="test")
    url = server(logged, auth=True)
    for path in ("/traces", f"/traces/{'b' * 32}", "/llm/costs", f"/llm/requests/{'2' * 32}"):
        assert get(url, path).status_code == 401, path
        signed = httpx.get(url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        assert signed.status_code == 200, path


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(ui_llm)
    assert result.attempted > 0 and result.failed == 0


def test_waterfall_of_an_instant_trace() -> None:
    rows = ui_llm.waterfall(
        {
            "duration_ms": 0.0,
            "roots": [
                {"name": "x", "offset_ms": 0.0, "duration_ms": 0.0, "attributes": None,
                 "children": []}
            ],
        }
    )  # fmt: skip
    assert [(r["left"], r["width"], r["details"], r["others"]) for r in rows] == [
        (0.0, 100.0, [], {})
    ]


@pytest.mark.slow
def test_click_from_traces_into_a_waterfall_in_chromium(
    server: Callable[..., str], sqlite_ws: Workspace, gateway_trace: dict[str, Any]
) -> None:
    browser_path = chromium()
    sync_api = require_module("playwright.sync_api")
    url = server(sqlite_ws)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None,
            )
            page.goto(url + "/", wait_until="load")
            page.click("header nav a:has-text('Traces')")
            page.wait_for_selector("#traces")
            page.click("a.trace-link")
            page.wait_for_selector("#waterfall")
            assert page.inner_text("#trace-id") == TRACE
            rows = page.locator("#waterfall tr.span-row")
            assert rows.count() >= 5  # app span, gateway chat, router, two attempts
            assert page.locator("#waterfall tr.span-error").count() == 1
            # The bars are drawn: the root's fills the track, the others are narrower.
            widths = page.eval_on_selector_all(
                "#waterfall .bar", "bars => bars.map(b => b.getBoundingClientRect().width)"
            )
            track = page.eval_on_selector(
                "#waterfall .track", "t => t.getBoundingClientRect().width"
            )
            assert widths[0] == pytest.approx(track, abs=1)
            assert all(0 < w < track for w in widths[1:])
            page.click("a.request-link")
            page.wait_for_selector("#attempts")
            assert page.inner_text("#request-id") == gateway_trace["request_id"]
        finally:
            browser.close()
    assert problems == []
