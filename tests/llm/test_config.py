"""[gateway] parsing: a good table becomes GatewayConfig; every mistake is an InvalidConfig
naming the entry and the fix."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loopml.config import load_settings
from loopml.exceptions import InvalidConfig
from loopml.llm.config import Budget, GatewayConfig, Limits, Price, load_gateway_config


def good() -> dict[str, Any]:
    return {
        "require_key": False,
        "log_content": "redact",
        "num_retries": 1,
        "budget_alerts": [1.0, 0.5, 0.8],
        "models": {
            "cheap": {
                "strategy": "least-busy",
                "fallbacks": ["frontier"],
                "context_window": 1000,
                "larger_context": "long",
                "deployments": [
                    {
                        "name": "cheap-a",
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "api_key_env": "OPENAI_API_KEY",
                        "weight": 3,
                    },
                    {
                        "name": "cheap-b",
                        "provider": "openai",
                        "model": "llama",
                        "base_url": "http://127.0.0.1:8000/v1/",
                        "price": "llama",
                        "headers": {"X-Team": "growth"},
                    },
                ],
            },
            "frontier": {"deployments": [{"provider": "anthropic", "model": "claude-sonnet-4"}]},
            "long": {
                "context_window": 200000,
                "deployments": [{"name": "long-a", "provider": "anthropic", "model": "claude"}],
            },
        },
        "routers": {
            "auto": {
                "default": "frontier",
                "rules": [
                    {"model": "cheap", "max_prompt_tokens": 2000},
                    {"model": "cheap", "tags": ["faq"], "classifier": "myapp.route:is_easy"},
                ],
            }
        },
        "teams": {
            "growth": {"budget": "50/month", "rpm": 600, "tpm": 200000},
            "ops": {"budget": {"amount": 2.5, "period": "day"}, "max_request_cost_usd": 0.5},
        },
        "users": {"rpm": 10, "budget": "2.5/day"},
        "prices": {"llama": {"input": 0, "output": 0}, "gpt-4o-mini": {"input": 0.1, "output": 1}},
    }


def test_a_full_table_parses() -> None:
    table = good()
    config = GatewayConfig.from_dict(table)
    cheap = config.models["cheap"]
    assert cheap.strategy == "least-busy"
    assert cheap.fallbacks == ("frontier",)
    assert cheap.larger_context == "long" and cheap.context_window == 1000
    a, b = cheap.deployments
    assert (a.name, a.group, a.provider, a.weight) == ("cheap-a", "cheap", "openai", 3.0)
    assert a.base_url == "https://api.openai.com/v1"
    assert b.base_url == "http://127.0.0.1:8000/v1"  # trailing slash dropped
    assert b.headers == {"X-Team": "growth"} and b.price == "llama"
    frontier = config.models["frontier"].deployments[0]
    assert frontier.name == "frontier/claude-sonnet-4"
    assert frontier.base_url == "https://api.anthropic.com"
    assert config.routers["auto"].rules[1].tags == ("faq",)
    assert config.routers["auto"].rules[1].classifier == "myapp.route:is_easy"
    assert config.teams["growth"] == Limits(rpm=600, tpm=200000, budget=Budget(50.0, "month"))
    assert config.teams["ops"].budget == Budget(2.5, "day")
    assert config.teams["ops"].max_request_cost_usd == 0.5
    assert config.user_limits == Limits(rpm=10, budget=Budget(2.5, "day"))
    assert config.prices["llama"] == Price(input=0.0, output=0.0)
    assert config.budget_alerts == (0.5, 0.8, 1.0)
    assert config.require_key is False and config.log_content == "redact"
    assert config.num_retries == 1 and config.timeout == 60.0
    assert config.raw == table and config.raw is not table


def test_an_empty_table_is_the_defaults() -> None:
    config = GatewayConfig.from_dict({})
    assert config == GatewayConfig()


def with_change(path: str, value: Any) -> dict[str, Any]:
    """``good()`` with the entry at a dotted path (``[i]`` indexes a list) set, or deleted
    when value is ``DELETE``."""
    table = copy.deepcopy(good())
    parts = path.replace("[", ".[").split(".")
    at: Any = table
    for part in parts[:-1]:
        at = at[int(part[1:-1])] if part.startswith("[") else at[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value is DELETE:
        del at[key]
    else:
        at[key] = value
    return table


DELETE = object()

CASES = [
    # (path, value, expected text in the message)
    ("timeot", 5, "[gateway]: unknown key 'timeot'; did you mean 'timeout'?"),
    ("timeout", "fast", "[gateway]: timeout must be a number > 0, got 'fast'"),
    ("timeout", -1, "timeout must be a number > 0"),
    ("require_key", "yes", "require_key must be true or false"),
    ("num_retries", -1, "num_retries must be an integer >= 0"),
    ("num_retries", 1.5, "num_retries must be an integer >= 0"),
    ("cooldown_failures", 0, "cooldown_failures must be a positive integer"),
    ("log_content", "some", 'unknown log_content \'some\'; use "full" or "redact" or "none"'),
    ("limits_url", "mysql://x", 'limits_url must be "" (count in the metadata store) or a redis'),
    ("otlp_endpoint", "collector:4318", "otlp_endpoint must be an http:// or https:// URL"),
    (
        "budget_alerts",
        [0.5, 1.5],
        "budget_alerts must be a list of fractions of a budget in (0, 1]",
    ),
    ("budget_alerts", [0, 0.5], "in (0, 1]"),
    (
        "models.cheap.deployments[1].provider",
        "opneai",
        "[gateway.models.cheap.deployments][1]: unknown provider 'opneai' (did you mean "
        '\'openai\'?); use "openai" or "anthropic"',
    ),
    (
        "models.cheap.deployments[0].model",
        DELETE,
        "[gateway.models.cheap.deployments][0]: missing model",
    ),
    ("models.cheap.deployments[0].weight", 0, "weight must be a number > 0, got 0"),
    ("models.cheap.deployments[0].weight", "3", "weight must be a number > 0"),
    ("models.cheap.deployments[0].modle", "x", "unknown key 'modle'; did you mean 'model'?"),
    (
        "models.cheap.deployments[0].api_key",
        "sk-abc",
        "[gateway.models.cheap.deployments][0]: never put keys in the config; set "
        'api_key_env = "VAR"',
    ),
    ("models.cheap.deployments[0].api_key_env", "sk-abc123", "must name an environment variable"),
    (
        "models.cheap.deployments[1].headers",
        {"Authorization": "Bearer x"},
        "never put keys in the config",
    ),
    ("models.cheap.deployments[1].base_url", "localhost:8000", "base_url must start with http://"),
    ("models.cheap.deployments[1].price", "lama", "unknown price 'lama'; did you mean 'llama'?"),
    ("models.cheap.deployments[1].name", "cheap-a", "deployment name 'cheap-a' is used twice"),
    (
        "models.long.deployments[0].name",
        "cheap-b",
        "[gateway.models.long.deployments][0]: deployment name 'cheap-b' is used twice",
    ),
    (
        "models.cheap.deployments",
        [],
        "[gateway.models.cheap]: a model group needs at least one deployment; add [[gateway.models.cheap.deployments]]",
    ),
    ("models.cheap.deployments", DELETE, "a model group needs at least one deployment"),
    ("models.cheap.deployments", {"provider": "openai"}, "deployments must be a list of tables"),
    (
        "models.cheap.strategy",
        "fastest",
        'unknown strategy \'fastest\'; use "weighted" or "least-busy" or "lowest-latency"',
    ),
    (
        "models.cheap.fallbacks",
        ["frontir"],
        "[gateway.models.cheap]: fallback 'frontir' is not a model group; did you mean 'frontier'?",
    ),
    ("models.cheap.fallbacks", ["cheap"], "fallbacks names the group itself"),
    ("models.cheap.larger_context", "lng", "larger_context 'lng' is not a model group"),
    ("models.cheap.context_window", DELETE, "larger_context needs context_window"),
    ("models.cheap.context_window", 0, "context_window must be a positive integer"),
    ("models.cheap.size", 1, "[gateway.models.cheap]: unknown key 'size'"),
    ("models.cheap", "gpt-4o", "[gateway.models.cheap]: must be a table"),
    (
        "routers.auto.default",
        "frontiers",
        "[gateway.routers.auto]: default 'frontiers' is not a model group",
    ),
    ("routers.auto.default", DELETE, "a router needs default"),
    (
        "routers.auto.rules[0].model",
        "chep",
        "[gateway.routers.auto.rules][0]: model 'chep' is not a model group",
    ),
    ("routers.auto.rules[0].max_prompt_tokens", DELETE, "a rule needs a condition"),
    (
        "routers.auto.rules[0].min_prompt_tokens",
        5000,
        "min_prompt_tokens 5000 is more than max_prompt_tokens 2000",
    ),
    (
        "routers.auto.rules[1].classifier",
        "myapp.route.is_easy",
        "classifier 'myapp.route.is_easy' must be \"module:function\"",
    ),
    ("routers.auto.rules[1].tags", [1], "tags must be a list of names"),
    (
        "routers.cheap",
        {"default": "frontier"},
        "[gateway.routers.cheap]: 'cheap' is both a router and a model group",
    ),
    (
        "teams.growth.budget",
        "50/week",
        "budget '50/week' is not a budget; write budget = \"50/month\"",
    ),
    ("teams.growth.budget", "fifty/month", "is not a budget"),
    ("teams.growth.budget", "0/month", "must be more than 0 USD"),
    (
        "teams.growth.budget",
        {"amount": 5, "period": "year"},
        "[gateway.teams.growth.budget]: unknown period 'year'",
    ),
    ("teams.growth.budget", {"amount": 5}, "needs amount and period"),
    ("teams.growth.rpm", 0, "[gateway.teams.growth]: rpm must be a positive integer"),
    ("teams.growth.rmp", 10, "unknown key 'rmp'; did you mean 'rpm'?"),
    ("users.tpm", "many", "[gateway.users]: tpm must be a positive integer"),
    ("prices.llama.input", -1, '[gateway.prices."llama"]: input must be a number >= 0'),
    ("prices.llama.output", DELETE, "a price needs output"),
    ("prices.llama.cached", 1, "unknown key 'cached'; did you mean 'cached_input'?"),
]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_every_mistake_names_the_entry_and_the_fix(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        GatewayConfig.from_dict(with_change(path, value), source="/w/loopml.toml")
    text = str(info.value)
    assert text.startswith("/w/loopml.toml ["), text
    assert message in text


def test_a_larger_context_circle_is_refused() -> None:
    table = good()
    table["models"]["long"]["larger_context"] = "cheap"
    with pytest.raises(InvalidConfig, match="goes round in a circle: cheap -> long -> cheap"):
        GatewayConfig.from_dict(table)


def test_a_router_pointing_at_a_missing_group_with_no_groups_says_how_to_add_one() -> None:
    with pytest.raises(InvalidConfig, match=r"add \[gateway.models.big\]"):
        GatewayConfig.from_dict({"routers": {"auto": {"default": "big"}}})


def test_a_price_known_without_its_date_or_prefix_is_accepted() -> None:
    deployment = {"provider": "openai", "model": "m", "price": "openai/gpt-4o-2024-08-06"}
    config = GatewayConfig.from_dict({"models": {"g": {"deployments": [deployment]}}})
    assert config.models["g"].deployments[0].price == "openai/gpt-4o-2024-08-06"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_from_a_file_under_gateway_or_at_the_top_level(tmp_path: Path) -> None:
    under = write(
        tmp_path,
        "a.toml",
        """
        [gateway.models.cheap]
        [[gateway.models.cheap.deployments]]
        provider = "openai"
        model = "gpt-4o-mini"
        """,
    )
    top = write(
        tmp_path,
        "b.toml",
        """
        timeout = 5
        [models.cheap]
        [[models.cheap.deployments]]
        provider = "openai"
        model = "gpt-4o-mini"
        """,
    )
    assert load_gateway_config(under).models["cheap"].deployments[0].model == "gpt-4o-mini"
    config = load_gateway_config(top)
    assert config.timeout == 5.0 and config.source == str(top)
    bad = write(tmp_path, "c.toml", 'models = {cheap = {strategy = "best"}}\n')
    with pytest.raises(InvalidConfig) as info:
        load_gateway_config(bad)
    # A file with the keys at its top level names them without [gateway.…].
    assert str(info.value).startswith(f"{bad} [models.cheap]: a model group needs")


def test_load_errors_for_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="No gateway config at"):
        load_gateway_config(tmp_path / "nope.toml")
    broken = write(tmp_path, "x.toml", "[gateway\n")
    with pytest.raises(InvalidConfig, match="is not valid TOML"):
        load_gateway_config(broken)


def test_load_from_the_workspace_settings(tmp_path: Path) -> None:
    write(
        tmp_path,
        "loopml.toml",
        """
        [gateway]
        num_retries = 4
        [gateway.models.cheap]
        [[gateway.models.cheap.deployments]]
        provider = "anthropic"
        model = "claude-haiku-4-5"
        prvider = "x"
        """,
    )
    settings = load_settings(tmp_path)
    with pytest.raises(InvalidConfig) as info:
        load_gateway_config(settings=settings)
    assert str(info.value).startswith(
        f"{tmp_path / 'loopml.toml'} [gateway.models.cheap.deployments][0]: unknown key 'prvider'"
    )
    text = (tmp_path / "loopml.toml").read_text().replace('prvider = "x"\n', "")
    (tmp_path / "loopml.toml").write_text(text)
    config = load_gateway_config(settings=load_settings(tmp_path))
    assert config.num_retries == 4
    assert config.models["cheap"].deployments[0].provider == "anthropic"
