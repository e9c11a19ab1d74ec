"""Hit and false-hit rates on the shipped pairs: the figures docs/cache.md quotes are
floors and ceilings here, so a change that makes the cache answer wrongly more often fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.cache import DEFAULT_THRESHOLD, HashedEmbedder
from loopml.llm.cache.evaluate import evaluate
from loopml.llm.cache.pairs import SHIPPED, generate, load_pairs, write


def test_the_shipped_pairs_are_the_generated_ones(tmp_path: Path) -> None:
    shipped = load_pairs()
    assert shipped == generate()
    assert SHIPPED.stat().st_size < 1_000_000
    matches = sum(p.match for p in shipped)
    assert matches == len(shipped) - matches >= 1000
    kinds = {p.kind for p in shipped if not p.match}
    assert {"product", "city", "date", "number", "person", "intent"} <= kinds
    write(shipped[:3], tmp_path / "few.jsonl")
    assert load_pairs(tmp_path / "few.jsonl") == shipped[:3]


def test_hashed_embedder_on_the_shipped_pairs() -> None:
    report = evaluate(load_pairs())
    assert report.embedder == HashedEmbedder().name
    # The default threshold: most near misses refused, a fair share of paraphrases served.
    at_default = report.at(DEFAULT_THRESHOLD)
    assert at_default.false_hit_rate <= 0.002
    assert at_default.hit_rate >= 0.40
    # The recommendation for a 1% target.
    assert report.recommended == pytest.approx(0.74)
    chosen = report.at(0.74)
    assert chosen.false_hit_rate <= 0.01
    assert chosen.hit_rate >= 0.55
    # Rates only fall as the threshold rises.
    rates = [r.hit_rate for r in report.results]
    assert rates == sorted(rates, reverse=True)


def test_the_entity_check_is_what_keeps_near_misses_out() -> None:
    pairs = load_pairs()
    without = evaluate(pairs, second_stage="none")
    with_check = evaluate(pairs)
    assert without.at(DEFAULT_THRESHOLD).false_hit_rate >= 0.15
    assert with_check.at(DEFAULT_THRESHOLD).false_hit_rate <= 0.002
    assert without.at(DEFAULT_THRESHOLD).hit_rate == with_check.at(DEFAULT_THRESHOLD).hit_rate
    assert without.recommended is not None and without.recommended >= 0.9


def test_no_threshold_meets_an_impossible_target() -> None:
    report = evaluate(load_pairs(), thresholds=[0.5, 0.6], target_false_hit=0.0)
    assert report.recommended is None and report.false_hits_by_kind == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": "x", "b": "y"}\n', r'needs "a" and "b" \(texts\) and "match"'),
        ("not json\n", "not JSON"),
        ("\n", "holds no pairs"),
    ],
)
def test_bad_pairs_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        load_pairs(path)


def test_evaluate_refuses_one_sided_pairs_and_bad_thresholds(tmp_path: Path) -> None:
    pairs = load_pairs()
    with pytest.raises(InvalidInput, match="both kinds"):
        evaluate([p for p in pairs if p.match])
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        evaluate(pairs, thresholds=[1.5])
    assert json.dumps(evaluate(pairs[:200], thresholds=[0.9]).to_dict())
