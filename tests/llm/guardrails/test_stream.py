"""The stream guard: a value split at every possible chunk boundary is redacted (or blocks)
exactly as in the whole text, and none of it is ever sent before it is judged."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.guardrails.policy import Policy, default_policy
from loopml.llm.guardrails.stream import StreamGuard
from loopml.llm.guardrails.verdict import GuardrailBlocked

BEFORE = "Here is what you asked for, written out in full so the stream is long enough. " * 2
AFTER = " That is all; let me know if you need anything else from the records today. " * 2
VALUES = {
    "card": "4111 1111 1111 1111",
    "card_zero_width": "4111\u200b1111\u200b1111\u200b1111",
    "card_full_width": "４１１１ １１１１ １１１１ １１１１",
    "email": "jane.doe@example.com",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "openai_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "aws": "AKIA\u200bIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----",
}


def run(guard: StreamGuard, chunks: Iterable[str]) -> str:
    return "".join(guard.feed(c) for c in chunks) + guard.finish()


def splits(text: str, cuts: Iterable[int]) -> list[str]:
    points = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in zip(points, points[1:], strict=False)]


@pytest.mark.parametrize("step", [1, 32])
@pytest.mark.parametrize("name", VALUES)
def test_a_value_split_at_every_boundary_is_redacted(name: str, step: int) -> None:
    policy = default_policy()
    value = VALUES[name]
    text = BEFORE + value + AFTER
    expected = policy.check_output(text).text
    assert expected is not None and value not in expected and "[" in expected
    start = len(BEFORE)
    for cut in range(1, len(text)):  # every two-chunk split
        assert run(StreamGuard(policy, step=step), splits(text, [cut])) == expected, cut
    for a in range(start, start + len(value) + 1):  # every three-chunk split inside the value
        for b in range(a + 1, start + len(value) + 1, 3):
            assert run(StreamGuard(policy, step=step), splits(text, [a, b])) == expected, (a, b)
    for size in range(1, 40):  # every chunk size
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert run(StreamGuard(policy, step=step), chunks) == expected, size


def test_output_is_released_while_the_stream_runs() -> None:
    guard = StreamGuard(default_policy(), step=8)
    text = BEFORE * 4
    early = "".join(guard.feed(text[i : i + 5]) for i in range(0, len(text), 5))
    assert len(early) >= len(text) - guard.window - guard.step
    assert early + guard.finish() == text


@pytest.mark.parametrize("name", ["card", "openai_key", "pem"])
def test_a_block_rule_stops_the_stream_before_any_of_the_value(name: str) -> None:
    policy = Policy.from_dict(
        "strict",
        {"rules": [{"detector": "pii", "action": "block"},
                   {"detector": "secrets", "action": "block"}]},
    )  # fmt: skip
    value = VALUES[name]
    text = BEFORE + value + AFTER
    for size in (1, 2, 3, 5, 11, 64):
        guard = StreamGuard(policy, step=4)
        sent = ""
        with pytest.raises(GuardrailBlocked) as error:
            for i in range(0, len(text), size):
                sent += guard.feed(text[i : i + size])
            sent += guard.finish()
        assert value[:4] not in sent[len(BEFORE) - 1 :], size
        assert error.value.stage == "output" and error.value.rule in ("pii", "secrets")
        with pytest.raises(GuardrailBlocked):  # the stream stays ended
            guard.feed("more")
        assert not guard.verdict().allowed


def test_findings_count_offsets_in_the_whole_stream() -> None:
    text = BEFORE + VALUES["email"] + AFTER
    guard = StreamGuard(default_policy())
    run(guard, [text[i : i + 5] for i in range(0, len(text), 5)])
    (finding,) = guard.findings
    assert finding.kind == "email" and text[finding.start : finding.end] == VALUES["email"]
    verdict = guard.verdict()
    assert verdict.allowed and verdict.redacted
    assert {r.rule for r in verdict.rules} == {"pii", "secrets_out"}
    assert "jane" not in json.dumps(verdict.to_dict())


def test_whole_text_checks_run_when_the_stream_ends() -> None:
    schema = {"type": "object", "required": ["answer"]}
    policy = Policy.from_dict(
        "json",
        {"rules": [{"detector": "json_schema", "action": "block", "options": {"schema": schema}}]},
    )
    guard = StreamGuard(policy)
    assert run(guard, ['{"ans', 'wer": 42}']) == '{"answer": 42}'
    guard = StreamGuard(policy)
    with pytest.raises(GuardrailBlocked, match="json_schema"):
        run(guard, ['{"other', '": 42}'])


def test_a_failing_rule_on_a_stream_fails_open_or_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    module = types.ModuleType("stream_hooks")
    module.explode = lambda text: 1 / 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stream_hooks", module)
    rule = {"detector": "injection", "action": "block", "stage": "output",
            "options": {"classifier": "stream_hooks:explode"}}  # fmt: skip
    closed = StreamGuard(Policy.from_dict("p", {"rules": [rule]}))
    with pytest.raises(GuardrailBlocked, match="fails closed"):
        run(closed, ["hello ", "world"])
    opened = StreamGuard(Policy.from_dict("p", {"rules": [{**rule, "on_error": "open"}]}))
    assert run(opened, ["hello ", "world"]) == "hello world"
    assert "ZeroDivisionError" in (opened.verdict().errors["injection"])


def test_misuse() -> None:
    with pytest.raises(InvalidInput, match="step"):
        StreamGuard(default_policy(), step=0)
    guard = StreamGuard(default_policy())
    guard.feed("hi")
    assert guard.finish() == "hi"
    with pytest.raises(InvalidInput, match="has finished"):
        guard.feed("again")
    assert StreamGuard(default_policy(), window=200).window == 200
    assert default_policy().window == 80


def test_a_value_held_for_long_is_rescanned_rarely(monkeypatch: pytest.MonkeyPatch) -> None:
    import loopml.llm.guardrails.stream as stream

    scans = []
    real = stream.normalize
    monkeypatch.setattr(stream, "normalize", lambda text: scans.append(len(text)) or real(text))
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" for _ in range(2000))
    text = BEFORE + "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----" + AFTER
    guard = StreamGuard(default_policy())
    sent = run(guard, [text[i : i + 5] for i in range(0, len(text), 5)])
    assert sent == BEFORE + "[PRIVATE_KEY]" + AFTER
    # About 20 scans of growing held text, not one per chunk (20,000 chunks): the work
    # stays within a small multiple of the stream's length.
    assert len(scans) < 60
    assert sum(scans) < 6 * len(text)


def test_pathological_inputs_scan_in_linear_time() -> None:
    policy = default_policy()
    for text in ("-" * 100_000, "![a](http://x?" * 5_000, "\n" * 50_000 + "system: x",
                 "a_" * 25_000 + "token", ("ignore" + " " * 1_000) * 50, "0 " * 50_000):  # fmt: skip
        policy.check_input([{"role": "user", "content": text}])
        policy.check_output(text)
