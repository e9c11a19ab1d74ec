"""The in-memory vector index of the semantic cache: per partition, the unit vectors of its
entries, searched for the nearest ones above a threshold.

Measured on this project's 2-core machine with 100,000 entries of 512 dimensions in ONE
partition (the worst case; ``benchmarks/llm_cache.py``): a float32 brute-force product
takes 10–15 ms, bound by memory (200 MB read per query). So a partition keeps, beside the
vectors, a 512-bit sign code of each vector under a fixed random projection (SimHash: two
vectors at angle θ differ in each bit with probability θ/π), stored word-major. A query
first counts differing bits against every code (6 MB in 8 contiguous passes, ~0.4 ms) and
computes exact cosines only for the candidates whose bit distance is within the threshold's
angle plus 5 standard deviations of the estimate — at most :data:`RERANK` of them, the
nearest in bits. A true match is then missed with probability below 3·10⁻⁷ (unless over
:data:`RERANK` entries are nearer in bits) — a miss, never a false hit: every hit's
similarity is the exact cosine. p50 ~1 ms for 100,000 entries. Partitions under
:data:`EXACT_BELOW` entries (10 MB of vectors) are searched exactly.

usearch and hnswlib were considered: an HNSW graph answers in well under a millisecond too,
but neither is a loopml dependency, and this index needs no new one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Partitions smaller than this are searched by one exact matrix-vector product.
EXACT_BELOW = 5_000
#: Most candidates a large partition computes exact cosines for.
RERANK = 1024
BITS = 512
_SIGMAS = 5.0


@dataclass(frozen=True)
class Match:
    """The nearest entry found: its key and exact cosine similarity."""

    key: str
    similarity: float


def _projection(dim: int) -> npt.NDArray[np.float32]:
    # Fixed seed: every process codes vectors alike (codes never leave a process anyway).
    return np.random.default_rng(20261201).standard_normal((dim, BITS)).astype(np.float32)


class _Partition:
    """One partition's vectors, codes and keys; rows grow by doubling."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors = np.zeros((16, dim), dtype=np.float32)
        # Word-major (one row per 64-bit word of every code): counting differing bits is then
        # a few passes over contiguous arrays, 10x faster than a row per code.
        self.codes = np.zeros((BITS // 64, 16), dtype=np.uint64)
        self.keys: list[str] = []
        self.expires: list[float] = []  # ms since the epoch; inf: never
        self.rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(
        self,
        key: str,
        vector: npt.NDArray[np.float32],
        code: npt.NDArray[np.uint64],
        expires: float,
    ) -> None:
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == len(self.vectors):
                self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors)])
                self.codes = np.concatenate([self.codes, np.zeros_like(self.codes)], axis=1)
            self.keys.append(key)
            self.expires.append(expires)
            self.rows[key] = row
        self.vectors[row] = vector
        self.codes[:, row] = code
        self.expires[row] = expires

    def remove(self, key: str) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        last = len(self.keys) - 1
        if row != last:  # move the last row into the hole
            moved = self.keys[last]
            self.vectors[row] = self.vectors[last]
            self.codes[:, row] = self.codes[:, last]
            self.keys[row] = moved
            self.expires[row] = self.expires[last]
            self.rows[moved] = row
        self.keys.pop()
        self.expires.pop()
        return True


class VectorIndex:
    """Unit vectors by partition; thread-safe (the cache's sync thread adds while requests
    search).

    >>> index = VectorIndex(3)
    >>> index.add("p", "k1", np.array([1, 0, 0], np.float32))
    >>> [(m.key, round(m.similarity, 2)) for m in index.search("p", np.array([0.96, 0.28, 0], np.float32), 0.9)]
    [('k1', 0.96)]
    >>> index.search("other", np.array([1, 0, 0], np.float32), 0.9)
    []
    """

    def __init__(self, dim: int, *, exact_below: int = EXACT_BELOW) -> None:
        self.dim = dim
        self.exact_below = exact_below
        self._projection = _projection(dim)
        self._partitions: dict[str, _Partition] = {}
        self._where: dict[str, str] = {}  # key -> partition
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def code(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
        """The sign codes of ``vectors`` (rows), packed into 64-bit words."""
        bits = np.packbits((np.atleast_2d(vectors) @ self._projection) > 0, axis=1)
        return bits.view(np.uint64)

    def add(
        self,
        partition: str,
        key: str,
        vector: npt.NDArray[np.float32],
        expires_ms: float = math.inf,
    ) -> None:
        """Add (or replace) ``key``'s vector in ``partition``."""
        if vector.shape != (self.dim,):
            raise ValueError(f"vector of shape {vector.shape}, index of {self.dim} dimensions")
        code = self.code(vector)[0]
        with self._lock:
            old = self._where.get(key)
            if old is not None and old != partition:
                self._partitions[old].remove(key)
            part = self._partitions.get(partition)
            if part is None:
                part = self._partitions[partition] = _Partition(self.dim)
            part.add(key, vector, code, expires_ms)
            self._where[key] = partition

    def add_many(
        self,
        items: Iterable[tuple[str, str, npt.NDArray[np.float32], float]],
    ) -> None:
        """Add ``(partition, key, vector, expires_ms)`` items (a replica's catch-up)."""
        for partition, key, vector, expires in items:
            self.add(partition, key, vector, expires)

    def remove(self, keys: Iterable[str]) -> int:
        """Drop ``keys`` (unknown ones are ignored); returns how many were there."""
        removed = 0
        with self._lock:
            for key in keys:
                partition = self._where.pop(key, None)
                if partition is not None:
                    part = self._partitions[partition]
                    removed += part.remove(key)
                    if not part:
                        del self._partitions[partition]
        return removed

    def expired(self, now_ms: float) -> list[str]:
        """Keys whose entries expired by ``now_ms``."""
        with self._lock:
            return [
                key
                for part in self._partitions.values()
                for key, expires in zip(part.keys, part.expires, strict=True)
                if expires <= now_ms
            ]

    def search(
        self,
        partition: str,
        query: npt.NDArray[np.float32],
        threshold: float,
        *,
        k: int = 1,
        now_ms: float = 0,
    ) -> list[Match]:
        """Up to ``k`` entries of ``partition`` whose cosine similarity to ``query`` (a unit
        vector) is at least ``threshold``, most similar first. Entries expired by ``now_ms``
        are skipped."""
        with self._lock:
            part = self._partitions.get(partition)
            if part is None or not len(part):
                return []
            n = len(part)
            # einsum, not @: BLAS hands a matrix-vector product to its threads, and waking
            # them costs milliseconds on a busy machine; this is one core's SIMD loop.
            if n < self.exact_below:
                rows = np.arange(n)
                scores = np.einsum("ij,j->i", part.vectors[:n], query)
            else:
                rows = self._candidates(part, query, threshold)
                if not len(rows):
                    return []
                scores = np.einsum("ij,j->i", part.vectors[rows], query)
            above = np.flatnonzero(scores >= threshold)
            if not len(above):
                return []
            above = above[np.argsort(-scores[above], kind="stable")]
            out: list[Match] = []
            for i in above:
                row = int(rows[i])
                if part.expires[row] > now_ms:
                    out.append(Match(part.keys[row], float(scores[i])))
                    if len(out) == k:
                        break
            return out

    def _candidates(
        self, part: _Partition, query: npt.NDArray[np.float32], threshold: float
    ) -> npt.NDArray[np.intp]:
        n = len(part)
        code = self.code(query)[0]
        distance = np.zeros(n, dtype=np.uint16)
        for word in range(len(code)):
            np.add(distance, np.bitwise_count(part.codes[word, :n] ^ code[word]), out=distance)
        # Angle of the threshold, as a fraction of pi, plus a margin of _SIGMAS standard
        # deviations of the bit-count estimate.
        p = math.acos(max(-1.0, min(1.0, threshold))) / math.pi
        margin = _SIGMAS * math.sqrt(max(p * (1 - p), 0.02) / BITS)
        bound = int(BITS * min(1.0, p + margin))
        rows = np.flatnonzero(distance <= bound)
        if len(rows) > RERANK:
            nearest = np.argpartition(distance[rows], RERANK)[:RERANK]
            rows = rows[nearest]
        return rows


__all__ = ["EXACT_BELOW", "RERANK", "Match", "VectorIndex"]
