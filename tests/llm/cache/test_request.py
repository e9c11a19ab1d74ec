"""Keys, partitions and modes: pure functions over request bodies."""

from __future__ import annotations

import pytest

from loopml.exceptions import InvalidConfig
from loopml.llm.cache import DEFAULT_IGNORE, NO_CACHE, NO_STORE, parse_cache_config, request_mode
from loopml.llm.cache.request import exact_key, normalize, semantic_view, tenant_of

IGNORE = frozenset(DEFAULT_IGNORE)


def key(body: dict, route: str = "cheap", tenant: str = "key:a", ignore=IGNORE) -> str:
    return exact_key(normalize(body, route, ignore), tenant)


BASE = {
    "model": "cheap",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "temperature": 0.2,
}


def test_key_ignores_order_formatting_defaults_and_listed_fields() -> None:
    same = [
        dict(reversed(list(BASE.items()))),
        {**BASE, "messages": [{"content": "  What is the capital of France?\n", "role": "user"}]},
        {**BASE, "top_p": 1.0, "n": 1, "frequency_penalty": 0, "presence_penalty": 0.0},
        {**BASE, "user": "alice", "metadata": {"tags": ["x"]}, "stream": True, "cache": True},
        {**BASE, "stream_options": {"include_usage": True}, "store": True, "seed": None},
        {**BASE, "model": "whatever-the-router-picked"},  # the route is the alias asked for
    ]
    for body in same:
        assert key(body) == key(BASE), body


def test_key_changes_with_what_changes_the_answer() -> None:
    different = [
        {**BASE, "temperature": 0.3},
        {**BASE, "messages": [{"role": "user", "content": "What is the capital of Spain?"}]},
        {**BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {**BASE, "tool_choice": "required"},
        {**BASE, "response_format": {"type": "json_object"}},
        {**BASE, "seed": 7},
        {**BASE, "stop": ["\n"]},
        {**BASE, "max_tokens": 10},
        {**BASE, "n": 2},
        {**BASE, "top_p": 0.5},
    ]
    keys = {key(b) for b in different}
    assert len(keys) == len(different) and key(BASE) not in keys
    assert key(BASE, route="frontier") != key(BASE)
    assert key(BASE, tenant="key:b") != key(BASE)


def test_configured_ignore_list_is_added_to_the_defaults() -> None:
    config = parse_cache_config({"ignore": ["seed"]})
    assert "user" in config.ignore and "seed" in config.ignore
    assert key({**BASE, "seed": 1}, ignore=config.ignore) == key(BASE, ignore=config.ignore)
    assert key({**BASE, "seed": 1}) != key(BASE)
    with pytest.raises(InvalidConfig, match="messages"):
        parse_cache_config({"ignore": ["messages"]})


def test_request_mode_from_cache_control_and_body() -> None:
    assert request_mode({"Cache-Control": "no-cache"}) == NO_CACHE
    assert request_mode({"cache-control": "max-age=0"}) == NO_CACHE
    assert request_mode({"Cache-Control": "no-cache, no-store"}) == NO_STORE
    assert request_mode({}, {"cache": False}) == NO_STORE
    assert request_mode({"Cache-Control": "no-cache"}, {"cache": False}) == NO_STORE
    mode = request_mode({"Cache-Control": "max-age=60"}, {"cache": True})
    assert mode.read and mode.write


def test_partition_holds_everything_but_the_embedded_text() -> None:
    def view(body: dict, tenant: str = "key:a", part: str = "last") -> tuple[str, str]:
        found = semantic_view(normalize(body, "cheap", IGNORE), tenant, part)  # type: ignore[arg-type]
        assert found is not None
        return found

    partition, text = view(BASE)
    assert text == "What is the capital of France?"
    other_question = {**BASE, "messages": [{"role": "user", "content": "Capital of France?"}]}
    assert view(other_question)[0] == partition
    with_system = {
        **BASE,
        "messages": [{"role": "system", "content": "Be terse."}, *BASE["messages"]],
    }
    assert view(with_system)[0] != partition
    assert (
        view({**BASE, "tools": [{"type": "function", "function": {"name": "f"}}]})[0] != partition
    )
    assert view({**BASE, "response_format": {"type": "json_object"}})[0] != partition
    assert view(BASE, tenant="key:b")[0] != partition
    # An earlier turn is context: "yes please" after two different answers is two questions.
    turns = {
        **BASE,
        "messages": [
            {"role": "user", "content": "Shall I book Paris?"},
            {"role": "assistant", "content": "Want the 9am flight?"},
            {"role": "user", "content": "yes please"},
        ],
    }
    changed = {
        **turns,
        "messages": [
            *turns["messages"][:1],
            {"role": "assistant", "content": "Train?"},
            turns["messages"][2],
        ],
    }
    assert view(turns)[1] == "yes please"
    assert view(turns)[0] != view(changed)[0]
    # "user": every user message is embedded; the assistant's turns stay in the partition.
    assert view(turns, part="user")[1] == "Shall I book Paris?\n\nyes please"
    # Images can't be embedded: no semantic view.
    image = {
        **BASE,
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
        ],
    }
    assert semantic_view(normalize(image, "cheap", IGNORE), "", "last") is None


def test_tenant_follows_the_partition_setting() -> None:
    assert tenant_of("key", "k1", "growth") == "key:k1"
    assert tenant_of("team", "k1", "growth") == "team:growth"
    assert tenant_of("team", "k1", None) == "key:k1"  # a key without a team stays alone
    assert tenant_of("none", "k1", "growth") == ""
    assert tenant_of("key", None, None) == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"routes": {"cheap": {"threshold": 1.7}}},
            r"\[gateway.cache.routes.cheap\]: threshold 1.7 is not between 0 and 1",
        ),
        ({"threshold": 0}, r"\[gateway.cache\]: threshold 0 is not between 0 and 1"),
        ({"backend": "memcached://x"}, "redis:// URL"),
        ({"embedder": "openai"}, "unknown embedder 'openai'"),
        ({"embedder": "gateway:"}, "needs what follows the colon"),
        ({"partition": "tenant"}, "unknown partition 'tenant'"),
        ({"max_entries": 0}, "max_entries must be a positive integer"),
        ({"ttl": -1}, "ttl must be a number >= 0"),
        ({"semantc": True}, "unknown key 'semantc'; did you mean 'semantic'"),
        ({"routes": {"cheap": {"embed": "all"}}}, "unknown embed 'all'"),
        ({"routes": {"cheap": "on"}}, r"routes.cheap\]: must be a table"),
    ],
)
def test_malformed_config_names_the_entry(table: dict, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        parse_cache_config(table)


def test_route_overrides_inherit_the_table_defaults() -> None:
    config = parse_cache_config(
        {
            "semantic": True,
            "threshold": 0.9,
            "ttl": 0,
            "routes": {"cheap": {"threshold": 0.97}, "raw": {"semantic": False}},
        }
    )
    assert config.route("cheap").threshold == 0.97 and config.route("cheap").semantic
    assert config.route("cheap").ttl is None  # 0: until evicted
    assert not config.route("raw").semantic and config.route("raw").threshold == 0.9
    assert config.route("unlisted") == config.defaults
    assert parse_cache_config(None) == parse_cache_config({})
