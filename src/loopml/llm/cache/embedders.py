"""Embedders: text → L2-normalised float32 vectors, for the semantic cache.

``[gateway.cache] embedder`` picks one:

- ``hashed`` (default): :class:`HashedEmbedder`, character 3–5-grams and words hashed into
  512 dimensions. Deterministic, no weights, no download, ~0.1 ms a question. It sees
  spelling, not meaning: paraphrases that share words match, synonyms don't. It is the
  lower-quality default that keeps the semantic cache working offline; measure yours with
  ``loopml llm cache evaluate``.
- ``gateway:<alias>``: the gateway's own ``/v1/embeddings`` route to any configured
  provider (OpenAI-compatible, Ollama, vLLM, TEI), through an async callable the gateway
  hands the cache.
- ``model2vec:/path`` or ``sentence-transformers:/path``: a local model, loaded from that
  path only (never downloaded), when the package is installed.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from loopml.exceptions import InvalidConfig, InvalidInput, MissingDependency

Vectors = npt.NDArray[np.float32]
#: ``async (model alias, texts) -> one vector per text``: the gateway's embeddings route.
EmbedCall = Callable[[str, list[str]], Awaitable[Sequence[Sequence[float]]]]

_WORD = re.compile(r"\w+")
#: English function words, left out before hashing: "how much is the X" and "X price" then
#: share what matters. (Measured on the shipped pairs: twice the hit rate at the same
#: false-hit rate.)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "does",
        "did",
        "i",
        "my",
        "me",
        "you",
        "your",
        "we",
        "our",
        "to",
        "of",
        "for",
        "in",
        "on",
        "at",
        "by",
        "with",
        "and",
        "or",
        "it",
        "this",
        "that",
        "what",
        "whats",
        "how",
        "can",
        "could",
        "would",
        "will",
        "should",
        "please",
        "tell",
        "give",
        "find",
        "about",
        "any",
        "there",
        "much",
        "many",
        "which",
        "when",
        "where",
        "who",
        "why",
    ]
)


class Embedder(Protocol):
    """Turns texts into unit vectors of ``dim`` dimensions (``dim`` is 0 until known)."""

    #: Stored with every entry: vectors of different embedders are never compared.
    name: str

    async def embed(self, texts: list[str]) -> Vectors:
        """One L2-normalised float32 row per text."""
        ...


def _unit(matrix: npt.NDArray[Any]) -> Vectors:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidInput(f"an embedder returned an array of shape {matrix.shape}, not rows")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


class HashedEmbedder:
    """Hashed character n-grams (3 to 5, within words padded by a space) and word unigrams
    (weighted ``word_weight``) of the words that are not :data:`STOP_WORDS`, signed-hashed with CRC-32 into ``dim`` float32 dimensions,
    sublinear counts, L2-normalised. Text is NFKC-normalised and case-folded first, so
    full-width digits and case don't matter.

    >>> e = HashedEmbedder()
    >>> v = e.vector("How do I reset my password?")
    >>> v.shape, round(float(v @ v), 3)
    ((512,), 1.0)
    >>> round(float(v @ e.vector("how can I reset my password")), 2) > 0.8
    True
    """

    def __init__(self, dim: int = 512, ngrams: tuple[int, int] = (3, 5), word_weight: float = 2.0):
        self.dim = dim
        self.ngrams = ngrams
        self.word_weight = word_weight
        self.name = f"hashed-{dim}-{ngrams[0]}{ngrams[1]}-v2"

    def _features(self, text: str) -> tuple[list[int], list[float]]:
        text = unicodedata.normalize("NFKC", text).casefold()
        words = _WORD.findall(text)
        words = [w for w in words if w not in STOP_WORDS] or words
        indexes: list[int] = []
        weights: list[float] = []
        low, high = self.ngrams
        for word in words:
            indexes.append(zlib.crc32(b"w" + word.encode()))
            weights.append(self.word_weight)
            padded = f" {word} ".encode()
            for n in range(low, high + 1):
                for start in range(0, max(len(padded) - n + 1, 1)):
                    indexes.append(zlib.crc32(padded[start : start + n]))
                    weights.append(1.0)
        return indexes, weights

    def vector(self, text: str) -> Vectors:
        """One text's unit vector (zeros for a text with no word in it)."""
        indexes, weights = self._features(text)
        out = np.zeros(self.dim, dtype=np.float32)
        if not indexes:
            return out
        hashed = np.asarray(indexes, dtype=np.uint64)
        buckets = (hashed % self.dim).astype(np.intp)
        signs = np.where((hashed >> np.uint64(31)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
        np.add.at(out, buckets, signs * np.asarray(weights, dtype=np.float32))
        out = np.sign(out) * np.log1p(np.abs(out))
        norm = float(np.linalg.norm(out))
        return (out / norm).astype(np.float32) if norm else out

    def embed_sync(self, texts: list[str]) -> Vectors:
        """The vectors of ``texts``, one row each (no event loop needed)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])

    async def embed(self, texts: list[str]) -> Vectors:
        return self.embed_sync(texts)


class GatewayEmbedder:
    """Vectors from the gateway's ``/v1/embeddings`` route for model alias ``alias``."""

    def __init__(self, alias: str, call: EmbedCall) -> None:
        self.alias = alias
        self.call = call
        self.name = f"gateway:{alias}"

    async def embed(self, texts: list[str]) -> Vectors:
        rows = await self.call(self.alias, texts)
        if len(rows) != len(texts):
            raise InvalidInput(
                f"the embeddings route {self.alias!r} returned {len(rows)} vectors for "
                f"{len(texts)} texts"
            )
        return _unit(np.asarray(rows, dtype=np.float32))


class _LocalModel:
    """A local model whose ``encode(texts)`` returns rows; loaded on first use, encoded in a
    thread (the model's forward pass never runs on the event loop)."""

    package = ""
    extra = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"{self.package}:{path}"
        self._model: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> Vectors:
        return _unit(np.asarray(self._model.encode(texts), dtype=np.float32))

    async def embed(self, texts: list[str]) -> Vectors:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)
        return await asyncio.to_thread(self._encode, texts)


def _missing(package: str, spec: str) -> MissingDependency:
    return MissingDependency(
        f"The cache's embedder {spec!r} needs the '{package}' package, which is not "
        f'installed. Install it with: pip install {package} (or use embedder = "hashed", '
        "which needs nothing)"
    )


class Model2VecEmbedder(_LocalModel):
    """A model2vec static model from a local folder (``StaticModel.from_pretrained``)."""

    package = "model2vec"

    def _load(self) -> Any:
        try:
            from model2vec import StaticModel
        except ImportError as exc:
            raise _missing("model2vec", self.name) from exc
        return StaticModel.from_pretrained(self.path)


class SentenceTransformersEmbedder(_LocalModel):
    """A sentence-transformers model from a local folder (never downloaded)."""

    package = "sentence-transformers"

    def _load(self) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise _missing("sentence-transformers", self.name) from exc
        return SentenceTransformer(self.path, local_files_only=True)

    def _encode(self, texts: list[str]) -> Vectors:
        return _unit(np.asarray(self._model.encode(texts, normalize_embeddings=True)))


def make_embedder(spec: str, call: EmbedCall | None = None) -> Embedder:
    """The embedder ``spec`` names (see the module); ``call`` is the gateway's embeddings
    route, needed by ``gateway:<alias>``. A missing package raises when the model is first
    used, with the install command.

    >>> make_embedder("hashed").name
    'hashed-512-35-v2'
    """
    kind, _, rest = spec.partition(":")
    if kind == "hashed" and not rest:
        return HashedEmbedder()
    if kind == "gateway" and rest:
        if call is None:
            raise InvalidConfig(
                f"embedder {spec!r} embeds through the gateway's /v1/embeddings route; it "
                "works inside the gateway (loopml gateway serve), which hands the cache that "
                'route. Elsewhere use embedder = "hashed" or a local model.'
            )
        return GatewayEmbedder(rest, call)
    if kind == "model2vec" and rest:
        return Model2VecEmbedder(rest)
    if kind == "sentence-transformers" and rest:
        return SentenceTransformersEmbedder(rest)
    raise InvalidConfig(
        f'unknown embedder {spec!r}: use "hashed", "gateway:<alias>", "model2vec:/path" or '
        '"sentence-transformers:/path"'
    )


__all__ = [
    "EmbedCall",
    "Embedder",
    "GatewayEmbedder",
    "HashedEmbedder",
    "Model2VecEmbedder",
    "SentenceTransformersEmbedder",
    "make_embedder",
]
