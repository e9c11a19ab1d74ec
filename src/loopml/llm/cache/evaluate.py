"""False hits measured, not guessed: hit rate and false-hit rate of the semantic cache per
threshold, on labelled question pairs.

    report = evaluate(load_pairs(), thresholds=(0.8, 0.85, 0.9, 0.95))
    report.recommended            # the lowest threshold whose false-hit rate <= target

A pair counts as a hit at threshold ``t`` when the cosine similarity of its two questions'
embeddings is at least ``t`` and (with ``second_stage = "entities"``, the default) the two
name the same facts — exactly the test :meth:`Cache.lookup` applies to a candidate. The hit
rate is over the pairs that should match, the false-hit rate over those that should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loopml.exceptions import InvalidInput
from loopml.llm.cache.config import SecondStage
from loopml.llm.cache.embedders import Embedder, HashedEmbedder
from loopml.llm.cache.entities import same_entities
from loopml.llm.cache.pairs import Pair

#: Thresholds tried when none are given.
THRESHOLDS = tuple(round(0.6 + 0.02 * i, 2) for i in range(21))  # 0.60, 0.62 … 1.00


@dataclass(frozen=True)
class ThresholdResult:
    """How the cache does at one threshold."""

    threshold: float
    hit_rate: float  # of the pairs that should match, the share served
    false_hit_rate: float  # of the pairs that should not, the share served anyway
    hits: int
    false_hits: int


@dataclass(frozen=True)
class Evaluation:
    """Every threshold's result, and the one to use."""

    embedder: str
    second_stage: SecondStage
    target_false_hit: float
    should_match: int
    should_not_match: int
    results: list[ThresholdResult]
    #: The lowest threshold whose false-hit rate is at most the target (None: none is).
    recommended: float | None
    #: At the recommended threshold: false hits by what the near miss changed.
    false_hits_by_kind: dict[str, int] = field(default_factory=dict)

    def at(self, threshold: float) -> ThresholdResult:
        """The result at ``threshold`` (one of those evaluated)."""
        for result in self.results:
            if abs(result.threshold - threshold) < 1e-9:
                return result
        raise InvalidInput(f"threshold {threshold} was not evaluated")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what ``--json`` prints)."""
        return asdict(self)


def similarities(embedder: Embedder, pairs: Sequence[Pair]) -> np.ndarray[Any, Any]:
    """The cosine similarity of each pair's two questions under ``embedder``."""
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    position = {t: i for i, t in enumerate(texts)}

    async def embed_all() -> np.ndarray[Any, Any]:
        rows = []
        for start in range(0, len(texts), 256):
            rows.append(await embedder.embed(texts[start : start + 256]))
        return np.concatenate(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    if isinstance(embedder, HashedEmbedder):
        vectors = embedder.embed_sync(texts)
    else:
        vectors = asyncio.run(embed_all())
    a = vectors[[position[p.a] for p in pairs]]
    b = vectors[[position[p.b] for p in pairs]]
    return np.einsum("ij,ij->i", a, b)


def evaluate(
    pairs: Sequence[Pair],
    thresholds: Sequence[float] = THRESHOLDS,
    *,
    embedder: Embedder | None = None,
    second_stage: SecondStage = "entities",
    target_false_hit: float = 0.01,
) -> Evaluation:
    """Hit and false-hit rates per threshold (see the module); the default embedder is the
    hashed one."""
    if not pairs:
        raise InvalidInput("evaluate needs pairs: some that should match and some that should not")
    labels = np.array([p.match for p in pairs])
    should, should_not = int(labels.sum()), int((~labels).sum())
    if not should or not should_not:
        raise InvalidInput(
            f"evaluate needs both kinds of pairs; got {should} that should match and "
            f"{should_not} that should not"
        )
    bad = [t for t in thresholds if not 0 < t <= 1]
    if bad or not thresholds:
        raise InvalidInput(f"thresholds must be between 0 and 1, got {list(thresholds)}")
    if not 0 <= target_false_hit < 1:
        raise InvalidInput(f"the target false-hit rate must be in [0, 1), got {target_false_hit}")
    embedder = embedder or HashedEmbedder()
    scores = similarities(embedder, pairs)
    facts = (
        np.array([same_entities(p.a, p.b) for p in pairs])
        if second_stage == "entities"
        else np.ones(len(pairs), dtype=bool)
    )
    results = []
    for threshold in sorted(set(float(t) for t in thresholds)):
        served = (scores >= threshold - 1e-7) & facts
        hits = int((served & labels).sum())
        false_hits = int((served & ~labels).sum())
        results.append(
            ThresholdResult(
                threshold=threshold,
                hit_rate=hits / should,
                false_hit_rate=false_hits / should_not,
                hits=hits,
                false_hits=false_hits,
            )
        )
    recommended = next((r.threshold for r in results if r.false_hit_rate <= target_false_hit), None)
    by_kind: dict[str, int] = {}
    if recommended is not None:
        served = (scores >= recommended - 1e-7) & facts & ~labels
        for pair, wrong in zip(pairs, served, strict=True):
            if wrong:
                by_kind[pair.kind or "?"] = by_kind.get(pair.kind or "?", 0) + 1
    return Evaluation(
        embedder=embedder.name,
        second_stage=second_stage,
        target_false_hit=target_false_hit,
        should_match=should,
        should_not_match=should_not,
        results=results,
        recommended=recommended,
        false_hits_by_kind=by_kind,
    )


__all__ = ["THRESHOLDS", "Evaluation", "ThresholdResult", "evaluate", "similarities"]
