"""`loopml gateway`: virtual keys (create, list, show, revoke), config check, and bad input
as one `error:` line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from loopml.llm.config import Budget, Limits
from loopml.llm.counters import SqlCounters
from loopml.llm.keys import KeyCache, get_key
from loopml.llm.limits import Limiter
from loopml.workspace import Workspace

Invoke = Callable[..., Result]
Lines = Callable[[Result], list[str]]


def test_create_prints_the_secret_once(invoke: Invoke, workspace: Workspace) -> None:
    result = invoke(
        "gateway",
        "keys",
        "create",
        "--name",
        "search-app",
        "--team",
        "growth",
        "--budget",
        "50/month",
        "--rpm",
        "600",
        "--tpm",
        "200000",
        "--models",
        "gpt-4o-mini,claude-haiku",
        "--max-request-cost",
        "0.25",
        "--log-content",
        "redact",
        "--expires",
        "30d",
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert re.fullmatch(r"sk-lml-[A-Za-z0-9_-]{40}", secret)  # alone on stdout
    assert "not shown again" in result.stderr
    assert "team growth" in result.stderr and "budget 50/month" in result.stderr
    key = KeyCache(workspace).authenticate(secret)
    assert key.team == "growth"
    assert key.models == ("gpt-4o-mini", "claude-haiku")
    assert key.limits.rpm == 600 and key.limits.max_request_cost_usd == 0.25
    assert key.log_content == "redact"
    assert key.id in result.stderr


def test_create_warns_of_a_team_loopml_toml_does_not_declare(
    invoke: Invoke, workspace: Workspace
) -> None:
    toml = workspace.root / "loopml.toml"
    toml.write_text(toml.read_text() + '\n[gateway.teams.growth]\nbudget = "50/month"\n')
    typo = invoke("gateway", "keys", "create", "--team", "growht")
    assert typo.exit_code == 0, typo.output
    assert "warning: no team 'growht' in [gateway.teams]" in typo.stderr
    assert "(it has growth)" in typo.stderr
    declared = invoke("gateway", "keys", "create", "--team", "growth")
    assert declared.exit_code == 0 and "warning" not in declared.stderr


def test_create_json_list_show_revoke(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace
) -> None:
    assert "No keys" in invoke("gateway", "keys", "list").stdout
    made = invoke_json("gateway", "keys", "create", "--team", "growth", "--budget", "2.5/day")
    assert made["secret"].startswith("sk-lml-") and made["prefix"] == made["secret"][:12]
    assert made["budget"] == "2.5/day" and made["state"] == "active"
    other = invoke_json("gateway", "keys", "create", "--team", "search", "--rpm", "10")

    listed = invoke_json("gateway", "keys", "list")
    assert [k["id"] for k in listed] == [made["id"], other["id"]]
    assert all("secret" not in k for k in listed)
    assert datetime.fromisoformat(listed[0]["created_at"]).utcoffset() == timedelta(0)
    assert [k["id"] for k in invoke_json("gateway", "keys", "list", "--team", "search")] == [
        other["id"]
    ]
    table = invoke("gateway", "keys", "list").stdout
    assert made["id"] in table and "2.5/day" in table and made["secret"] not in table

    # Spend and use so far, as the gateway books them.
    limiter = Limiter(SqlCounters(workspace.db))
    key = get_key(workspace, made["id"])
    limiter.check_request([(f"key:{key.id}", key.limits)], estimated_tokens=5, estimated_cost=0.1)
    limiter.record([(f"key:{key.id}", key.limits)], tokens=50, cost_usd=1.0)
    shown = invoke_json("gateway", "keys", "show", made["prefix"])
    assert shown["id"] == made["id"]
    assert shown["remaining"]["budget"]["spent_usd"] == pytest.approx(1.0)
    assert shown["remaining"]["budget"]["left_usd"] == pytest.approx(1.5)
    assert shown["usage"] == {"requests": 0, "spent_usd": 0.0, "spent_usd_this_month": 0.0}
    text = invoke("gateway", "keys", "show", made["id"]).stdout
    assert "$2.50/day" in text and "$1.5000 left" in text

    result = invoke("gateway", "keys", "revoke", made["id"])
    assert result.exit_code == 0 and f"Revoked key {made['id']}" in result.stdout
    assert invoke("gateway", "keys", "revoke", made["id"]).exit_code == 0  # idempotent
    assert [k["id"] for k in invoke_json("gateway", "keys", "list")] == [other["id"]]
    everything = invoke_json("gateway", "keys", "list", "--all")
    assert [k["state"] for k in everything] == ["revoked", "active"]
    assert invoke_json("gateway", "keys", "show", made["id"])["revoked_at"] is not None


def test_show_includes_the_team_limits_of_the_config(
    invoke_json: Callable[..., Any], workspace: Workspace, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway.teams.growth]\nbudget = "50/month"\nrpm = 600\n')
    made = invoke_json("gateway", "keys", "create", "--team", "growth")
    team = Limits(budget=Budget(50.0, "month"))
    Limiter(SqlCounters(workspace.db)).record([("team:growth", team)], tokens=0, cost_usd=0.5)
    shown = invoke_json("gateway", "keys", "show", made["id"], "--config", str(config))
    assert shown["team_limits"]["name"] == "growth"
    assert shown["team_limits"]["remaining"]["rpm"] == {"limit": 600, "used": 0, "left": 600}
    assert shown["team_limits"]["remaining"]["budget"]["left_usd"] == pytest.approx(49.5)
    assert shown["remaining"] == {}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("keys", "create", "--budget", "50/week"), "'50/week' is not a budget"),
        (("keys", "create", "--rpm", "0"), "rpm must be a whole number above 0"),
        (("keys", "create", "--expires", "someday"), "'someday' is not an expiry"),
        (("keys", "show", "k_nosuch"), "No virtual key 'k_nosuch'"),
        (("keys", "revoke", "sk-lml-nope"), "No virtual key 'sk-lml-nope'"),
    ],
)
def test_bad_input_is_one_error_line(
    invoke: Invoke, error_lines: Lines, workspace: Workspace, args: tuple[str, ...], fragment: str
) -> None:
    (line,) = error_lines(invoke("gateway", *args))
    assert fragment in line
    assert invoke("gateway", "keys", "list", "--all", "--json").stdout.strip() == "[]"


GOOD = """\
[gateway.models.cheap]
fallbacks = ["frontier"]
[[gateway.models.cheap.deployments]]
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "LOOPML_TEST_NO_SUCH_KEY"
[gateway.models.frontier]
[[gateway.models.frontier.deployments]]
name = "frontier-anthropic"
provider = "anthropic"
model = "claude-sonnet"
"""


def test_check_shows_the_config(
    invoke: Invoke, workspace: Workspace, tmp_path: Path, error_lines: Lines
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")  # an empty config: what to add, its brackets kept
    empty = invoke("gateway", "check", "--config", str(config))
    assert "add [gateway.models.NAME] with its [[gateway.models.NAME.deployments]]" in empty.stdout
    config.write_text(GOOD)
    result = invoke("gateway", "check", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "cheap/gpt-4o-mini" in result.stdout and "frontier-anthropic" in result.stdout
    assert "LOOPML_TEST_NO_SUCH_KEY (not set)" in result.stdout
    assert "cheap falls back to frontier" in result.stdout
    data = json.loads(invoke("gateway", "check", "--config", str(config), "--json").stdout)
    assert [g["name"] for g in data["models"]] == ["cheap", "frontier"]
    assert data["models"][0]["deployments"][0]["api_key_set"] is False
    assert data["cache"] is None and data["guardrails"] is None

    config.write_text(
        GOOD
        + "\n[gateway.cache]\nsemantic = true\n[gateway.cache.routes.frontier]\nenabled = false\n"
        + '\n[gateway.guardrails]\ndefault = "default"\nroutes = { frontier = "none" }\n'
    )
    result = invoke("gateway", "check", "--config", str(config))
    assert "cache (workspace): cheap; semantic on cheap" in result.stdout
    assert "guardrails: default → default; route frontier → none" in result.stdout
    data = json.loads(invoke("gateway", "check", "--config", str(config), "--json").stdout)
    assert data["cache"]["routes"]["frontier"]["enabled"] is False
    assert data["guardrails"]["policies"] == ["default"]

    config.write_text(GOOD.replace('provider = "anthropic"', 'provider = "anthropc"'))
    (line,) = error_lines(invoke("gateway", "check", "--config", str(config)))
    assert "[gateway.models.frontier.deployments][0]" in line and "'anthropic'" in line
    (line,) = error_lines(invoke("gateway", "check", "--config", str(tmp_path / "nope.toml")))
    assert "No gateway config at" in line


def test_serve_refuses_a_bad_config_before_starting(
    invoke: Invoke, workspace: Workspace, tmp_path: Path, error_lines: Lines
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nlimits_url = "memcached://x"\n')
    (line,) = error_lines(invoke("gateway", "serve", "--config", str(config)))
    assert "limits_url" in line


def test_serve_refuses_a_busy_port_in_one_line_without_announcing_itself(
    invoke: Invoke, workspace: Workspace, error_lines: Lines
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("gateway", "serve", "--port", str(port))
    (line,) = error_lines(result)
    assert line == (
        f"error: Port {port} on 127.0.0.1 is in use (another server?): stop it or pass --port N."
    )
    assert "loopml gateway on" not in result.stderr


def test_serve_warns_of_a_provider_key_variable_that_is_not_set(
    invoke: Invoke, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    config = tmp_path / "gateway.toml"
    config.write_text(GOOD)
    monkeypatch.delenv("LOOPML_TEST_NO_SUCH_KEY", raising=False)
    with socket.socket() as busy:  # so that it stops right after the warnings
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("gateway", "serve", "--config", str(config), "--port", str(port))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: LOOPML_TEST_NO_SUCH_KEY is not set: deployment cheap/gpt-4o-mini (model "
        "group cheap) sends its provider no key (`loopml gateway check` lists every "
        "deployment's)."
    ]


def test_help_of_every_command(invoke: Invoke) -> None:
    for args in (
        ("gateway",),
        ("gateway", "serve"),
        ("gateway", "check"),
        ("gateway", "keys"),
        ("gateway", "keys", "create"),
        ("gateway", "keys", "list"),
        ("gateway", "keys", "show"),
        ("gateway", "keys", "revoke"),
    ):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.stdout
