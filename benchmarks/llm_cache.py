"""LLM cache benchmark: lookup latency with 100,000 cached entries, and the hashed embedder's
hit and false-hit rates on the shipped labelled pairs.

Run it with the project's interpreter::

    bash benchmarks/setup_peer.sh gptcache         # once: benchmarks/.venvs/gptcache
    python benchmarks/llm_cache.py                 # 100,000 entries, 2,000 lookups a case
    python benchmarks/llm_cache.py --quick         # 20,000 entries, 500 lookups
    python benchmarks/llm_cache.py --entries 20000 --lookups 500 --json /tmp/cache.json

What it does, in one process, on a fresh temporary workspace (SQLite + local blob store, the
embedded default):

1. fills the cache with ``--entries`` answers in ONE semantic partition (the worst case for
   the index: every lookup searches all of them) — distinct generated support questions,
   embedded by the hashed embedder, bulk-inserted, then loaded into the in-memory index by
   the cache's own replica poll (``Cache.sync``), as a second gateway replica would;
2. times ``await cache.lookup(...)`` (the gateway's call) for exact hits (the same request
   again) and semantic hits (a paraphrase), p50 and p99 over ``--lookups`` each, and, apart,
   the embedding of the question alone and the index search alone;
3. evaluates the hashed embedder on ``loopml/llm/cache/pairs.jsonl`` (2,640 pairs): hit rate
   and false-hit rate at the default threshold and at the one recommended for 1% false hits,
   with the entity check and without it.

Peers. GPTCache 0.1.44 runs for real, in ``benchmarks/.venvs/gptcache`` (this file as
``--worker gptcache`` under that interpreter): ``Cache.init`` with a SQLite scalar store, a
faiss vector store, ``SearchDistanceEvaluation`` and ``Config(similarity_threshold=…)``,
``gptcache.adapter.api.put``/``get``. Its embedding function returns the vector loopml's
hashed embedder gave for the text (computed here, handed over in a ``.npy`` file), so only the
matching differs; its default ONNX embedder would download a model from the Hugging Face hub.
On the pairs it stores one pair's first question, asks the second, then drops that vector:
each pair alone, as loopml's evaluation does. At its default threshold (0.8) and at the one
that amounts to loopml's recommended cosine 0.74 (0.87: see :func:`run_gptcache`). Its
``get()`` latency is timed with the same ``--entries`` questions bulk-imported
(``data_manager.import_data``) and the same paraphrases looked up.

LiteLLM's semantic cache (``RedisSemanticCache``) stores vectors through redisvl, which needs
Redis Stack's RediSearch module (``FT.CREATE``/``FT.SEARCH``); the test Redis here is plain
Redis 7 with no modules, and no Redis Stack can be installed offline, so it cannot run. It
serves the nearest vector above one cosine threshold, with no check of the facts named: the
"cosine only" rows apply that rule to the same vectors (loopml's arithmetic, labelled so).

No figure here is asserted anywhere; the targets (the issue's) are printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # loopml is imported where it runs: the GPTCache worker's venv lacks it
    from loopml.llm.cache import Cache
    from loopml.workspace import Workspace

HERE = Path(__file__).resolve().parent
GPTCACHE_PYTHON = HERE / ".venvs" / "gptcache" / "bin" / "python"
GPTCACHE_MISSING = (
    "GPTCache: not measured, benchmarks/.venvs/gptcache is missing; "
    "`bash benchmarks/setup_peer.sh gptcache` makes it (gptcache==0.1.44, faiss-cpu, sqlalchemy)."
)
#: GPTCache's own default, ``gptcache.config.Config(similarity_threshold=0.8)``.
GPTCACHE_DEFAULT = 0.8
#: loopml's recommended threshold on the shipped pairs (<= 1% false hits), cosine.
LOOPML_RECOMMENDED = 0.74

TEMPLATES = [
    "How do I {verb} my {thing} on {service} when I am in {city}?",
    "What is the {aspect} of the {product} sold in {city}?",
    "Can you explain the {aspect} for order {number} of a {product}?",
    "Why does my {product} {problem} after using {service}?",
    "Is the {product} {aspect} different in {city} for ticket {number}?",
]
WORDS = {
    "verb": ["reset", "change", "update", "delete", "recover", "export", "verify", "link"],
    "thing": ["password", "email", "account", "address", "subscription", "payment card"],
    "aspect": ["price", "warranty", "battery life", "shipping time", "return policy", "weight"],
    "problem": ["overheat", "restart", "lose signal", "drain the battery", "freeze", "lag"],
}


def ask(text: str) -> dict[str, Any]:
    return {"model": "cheap", "messages": [{"role": "user", "content": text}]}


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100},
    }


def questions(n: int, rng: random.Random) -> list[str]:
    from loopml.llm.cache.pairs import CITIES, PRODUCTS, SERVICES

    out: set[str] = set()
    products = [p for pair in PRODUCTS for p in pair]
    cities = [c for pair in CITIES for c in pair]
    while len(out) < n:
        template = rng.choice(TEMPLATES)
        out.add(
            template.format(
                verb=rng.choice(WORDS["verb"]),
                thing=rng.choice(WORDS["thing"]),
                aspect=rng.choice(WORDS["aspect"]),
                problem=rng.choice(WORDS["problem"]),
                service=rng.choice(SERVICES),
                city=rng.choice(cities),
                product=rng.choice(products),
                number=rng.randint(10_000, 9_999_999),
            )
        )
    return sorted(out)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def fill(ws: Workspace, cache: Cache, texts: list[str]) -> dict[str, float]:
    """Bulk-insert one entry per text (as Cache.store would write it); returns timings."""
    from sqlalchemy import insert

    from loopml.llm.cache import HashedEmbedder
    from loopml.llm.cache.request import canonical, exact_key, normalize, semantic_view
    from loopml.llm.tables import llm_cache_entries
    from loopml.store.blobs import hash_bytes

    embedder = HashedEmbedder()
    started = time.perf_counter()
    vectors = embedder.embed_sync(texts)
    embed_s = time.perf_counter() - started
    body = answer("A cached answer.")
    payload = json.dumps(body).encode()
    checksum = hash_bytes(payload)
    rows = []
    for text, vector in zip(texts, vectors, strict=True):
        normalized = normalize(ask(text), "cheap", cache.config.ignore)
        view = semantic_view(normalized, "", "last")
        assert view is not None
        rows.append(
            {
                "key": exact_key(normalized, ""),
                "partition": view[0],
                "route": "cheap",
                "tenant": "",
                "request": canonical(normalized).decode(),
                "query": view[1],
                "body": payload,
                "body_blob": None,
                "checksum": checksum,
                "embedding": vector.tobytes(),
                "embedder": embedder.name,
                "request_id": None,
                "cost_usd": 0.002,
                "hits": 0,
                "created_at": 1,
                "last_hit_at": 1,
                "expires_at": None,
            }
        )
    started = time.perf_counter()
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        ws.db.transact(lambda conn, chunk=chunk: conn.execute(insert(llm_cache_entries), chunk))
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    cache.sync()
    sync_s = time.perf_counter() - started
    return {"embed_s": embed_s, "insert_s": insert_s, "index_load_s": sync_s}


async def time_lookups(cache: Cache, bodies: list[dict[str, Any]], kind: str) -> list[float]:
    samples = []
    for body in bodies:
        started = time.perf_counter()
        hit = await cache.lookup(body, tenant="", route="cheap")
        samples.append(time.perf_counter() - started)
        if hit is None or hit.kind != kind:
            raise SystemExit(f"expected a {kind} hit for {body['messages'][-1]['content']!r}")
    return samples


def speed_inputs(entries: int, lookups: int) -> tuple[list[str], list[str], list[str]]:
    """The cached questions, the ones looked up again, and their paraphrases (the same words,
    casing and punctuation changed, "please" added): the same on loopml's and GPTCache's side."""
    rng = random.Random(7)
    texts = questions(entries, rng)
    chosen = rng.sample(texts, lookups)
    return texts, chosen, [t.lower().rstrip("?") + " please" for t in chosen]


def measure(entries: int, lookups: int) -> dict[str, Any]:
    from loopml.llm.cache import Cache, HashedEmbedder, parse_cache_config
    from loopml.llm.cache.config import DEFAULT_THRESHOLD
    from loopml.workspace import Workspace

    texts, chosen, paraphrased = speed_inputs(entries, lookups)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        cache = Cache(ws, parse_cache_config({"semantic": True, "threshold": DEFAULT_THRESHOLD}))
        loading = fill(ws, cache, texts)
        assert cache._index is not None and len(cache._index) == entries
        paraphrases = [ask(t) for t in paraphrased]
        exact = [ask(t) for t in chosen]

        async def run() -> dict[str, Any]:
            await cache.lookup(exact[0], tenant="", route="cheap")  # warm-up: threads, engine
            exact_s = await time_lookups(cache, exact, "exact")
            semantic_s = await time_lookups(cache, paraphrases, "semantic")
            embedder = cache.embedder
            embed_s = []
            for body in paraphrases:
                started = time.perf_counter()
                await embedder.embed([body["messages"][-1]["content"]])
                embed_s.append(time.perf_counter() - started)
            return {"exact": exact_s, "semantic": semantic_s, "embed": embed_s}

        timed = asyncio.run(run())
        index = cache._index
        partition = next(iter(index._partitions))
        search_s = []
        for body in paraphrases:
            vector = HashedEmbedder().vector(body["messages"][-1]["content"])
            started = time.perf_counter()
            index.search(partition, vector, DEFAULT_THRESHOLD)
            search_s.append(time.perf_counter() - started)
        brute = index._partitions[partition]
        matrix = brute.vectors[: len(brute)]
        brute_s = []
        for body in paraphrases[:200]:
            vector = HashedEmbedder().vector(body["messages"][-1]["content"])
            started = time.perf_counter()
            int(np.argmax(matrix @ vector))
            brute_s.append(time.perf_counter() - started)
        cache.close()
        ws.close()
    return {
        "entries": entries,
        "lookups": lookups,
        "loading": loading,
        "exact_hit": percentiles(timed["exact"]),
        "semantic_hit": percentiles(timed["semantic"]),
        "embedding_alone": percentiles(timed["embed"]),
        "index_search_alone": percentiles(search_s),
        "numpy_brute_force": percentiles(brute_s),
    }


def quality() -> dict[str, Any]:
    from loopml.llm.cache.config import DEFAULT_THRESHOLD
    from loopml.llm.cache.evaluate import evaluate
    from loopml.llm.cache.pairs import load_pairs

    pairs = load_pairs()
    grid = [round(0.6 + 0.01 * i, 2) for i in range(41)]
    checked = evaluate(pairs, grid)
    cosine = evaluate(pairs, grid, second_stage="none")

    def row(report: Any, threshold: float) -> dict[str, float]:
        result = report.at(threshold)
        return {
            "threshold": threshold,
            "hit_rate": result.hit_rate,
            "false_hit_rate": result.false_hit_rate,
        }

    return {
        "pairs": len(pairs),
        "default": row(checked, DEFAULT_THRESHOLD),
        "recommended": row(checked, checked.recommended) if checked.recommended else None,
        "cosine_only_at_0.8": row(cosine, 0.8),
        "cosine_only_recommended": row(cosine, cosine.recommended) if cosine.recommended else None,
        # what GPTCache's two settings amount to (cosine 0.60 and 0.74), to check its rows by
        "cosine_only_at_0.6": row(cosine, 0.6),
        "cosine_only_at_0.74": row(cosine, LOOPML_RECOMMENDED),
    }


def gptcache_worker(folder: str) -> dict[str, Any]:
    """Run in benchmarks/.venvs/gptcache: the real GPTCache library (sqlite + faiss, its
    ``SearchDistanceEvaluation``) fed the vectors loopml's hashed embedder gave, so only the
    matching differs. Reads ``texts.json`` and ``vectors.npy`` from ``folder``."""
    from importlib.metadata import version

    from gptcache import Cache as GPTCache
    from gptcache import Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    root = Path(folder)
    data = json.loads((root / "texts.json").read_text(encoding="utf-8"))
    matrix = np.load(root / "vectors.npy")
    table = dict(zip(data["vocab"], matrix, strict=True))

    def embed(text: str, **_: Any) -> Any:
        return table[text]  # the hashed embedder's vector, computed on loopml's side

    def make(name: str, threshold: float, max_size: int) -> Any:
        cache = GPTCache()
        cache.init(
            pre_embedding_func=get_prompt,  # what gptcache.adapter.api.put/get require
            embedding_func=embed,
            data_manager=get_data_manager(
                CacheBase("sqlite", sql_url=f"sqlite:///{root / name}.db"),
                VectorBase("faiss", dimension=matrix.shape[1], index_path=str(root / name)),
                max_size=max_size,  # default 1000: an LRU would evict the bulk of the entries
            ),
            similarity_evaluation=SearchDistanceEvaluation(),
            config=Config(similarity_threshold=threshold),
        )
        return cache

    pairs = data["pairs"]
    quality: dict[str, Any] = {}
    for threshold in data["thresholds"]:
        # One pair at a time, as loopml's evaluation does: store a, ask b, then drop a's vector
        # so that no other pair's question can answer.
        cache = make(f"pairs-{threshold}", threshold, len(pairs) + 10)
        served, samples = [], []
        for i, (a, b) in enumerate(pairs):
            put(a, f"answer {i}", cache_obj=cache)
            started = time.perf_counter()
            got = get(b, cache_obj=cache)
            samples.append(time.perf_counter() - started)
            served.append(got == f"answer {i}")
            found = cache.data_manager.v.search(table[a], top_k=1) or []
            cache.data_manager.v.delete([hit[1] for hit in found])
        assert cache.data_manager.v.count() == 0
        quality[str(threshold)] = {"served": served, "get_one_entry": percentiles(samples)}
    entries, lookups = data["entries"], data["lookups"]
    cache = make("speed", GPTCACHE_DEFAULT, len(entries) + 10)
    started = time.perf_counter()
    cache.data_manager.import_data(
        entries,
        ["A cached answer."] * len(entries),
        [table[t] for t in entries],
        [None] * len(entries),
    )
    import_s = time.perf_counter() - started
    get(lookups[0], cache_obj=cache)  # warm-up
    samples, hits = [], 0
    for text in lookups:
        started = time.perf_counter()
        got = get(text, cache_obj=cache)
        samples.append(time.perf_counter() - started)
        hits += got is not None
    return {
        "version": version("gptcache"),
        "faiss": version("faiss-cpu"),
        "quality": quality,
        "speed": {"import_s": import_s, "hits": hits, "get": percentiles(samples)},
    }


def run_gptcache(entries: int, lookups: int, timeout: float) -> dict[str, Any] | str:
    """GPTCache's figures from its venv (the same pairs, questions and vectors), or why there
    are none."""
    from loopml.llm.cache import HashedEmbedder
    from loopml.llm.cache.pairs import load_pairs

    pairs = load_pairs()
    texts, _, paraphrased = speed_inputs(entries, lookups)
    vocab = sorted({p.a for p in pairs} | {p.b for p in pairs} | set(texts) | set(paraphrased))
    # GPTCache's threshold is not a cosine. SearchDistanceEvaluation scores a candidate
    # max_distance - distance = 4 - d, where d is faiss's squared L2 distance ("IDMap,Flat",
    # METRIC_L2) and, for unit vectors, d = 2 - 2 cos. The adapter serves when the score is at
    # least (max - min) * similarity_threshold = 4 s, i.e. 2 - 2 cos <= 4 - 4 s, i.e.
    # cos >= 2 s - 1. Its default 0.8 is then cosine >= 0.60; loopml's 0.74 is s = 0.87.
    thresholds = [GPTCACHE_DEFAULT, round((1 + LOOPML_RECOMMENDED) / 2, 4)]
    with tempfile.TemporaryDirectory(prefix="llm-cache-gptcache-") as tmp:
        root = Path(tmp)
        np.save(root / "vectors.npy", HashedEmbedder().embed_sync(vocab))
        (root / "texts.json").write_text(
            json.dumps(
                {
                    "vocab": vocab,
                    "pairs": [[p.a, p.b] for p in pairs],
                    "thresholds": thresholds,
                    "entries": texts,
                    "lookups": paraphrased,
                }
            ),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cmd = [str(GPTCACHE_PYTHON), __file__, "--worker", "gptcache", "--folder", tmp]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            return f"GPTCache worker: timed out after {timeout:g} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return f"GPTCache worker failed (exit {proc.returncode}):\n{tail}"
    out: dict[str, Any] = json.loads(lines[-1])
    labels = np.array([p.match for p in pairs])
    rows = []
    for threshold in thresholds:
        figures = out["quality"][str(threshold)]
        served = np.array(figures["served"])
        rows.append(
            {
                "similarity_threshold": threshold,
                "threshold": round(2 * threshold - 1, 4),  # the cosine it amounts to
                "hit_rate": float((served & labels).sum() / labels.sum()),
                "false_hit_rate": float((served & ~labels).sum() / (~labels).sum()),
                "get_one_entry": figures["get_one_entry"],
            }
        )
    out["rows"] = rows
    del out["quality"]
    return out


def print_report(result: dict[str, Any]) -> None:
    speed, q = result["speed"], result["quality"]
    print(
        f"\nLookups with {speed['entries']:,} entries in one partition ({speed['lookups']:,} each)"
    )
    print(
        f"  loading: embed {speed['loading']['embed_s']:.1f} s, insert {speed['loading']['insert_s']:.1f} s, "
        f"index load by the replica poll {speed['loading']['index_load_s']:.1f} s"
    )
    rows = [
        ("exact hit (cache.lookup)", speed["exact_hit"], "p50 < 2 ms"),
        ("semantic hit (cache.lookup, incl. embedding)", speed["semantic_hit"], "p50 < 10 ms"),
        ("  of which: embedding the question", speed["embedding_alone"], "reported apart"),
        ("  of which: index search", speed["index_search_alone"], ""),
        ("NumPy brute force, same vectors (reference)", speed["numpy_brute_force"], ""),
    ]
    gpt = result.get("gptcache")
    if isinstance(gpt, dict):
        rows.append(
            (f"GPTCache {gpt['version']} get() hit (faiss {gpt['faiss']})", gpt["speed"]["get"], "")
        )
    print(f"  {'case':<48} {'p50 ms':>8} {'p99 ms':>8}  target")
    for name, figures, target in rows:
        verdict = ""
        if target.startswith("p50 <"):
            limit = float(target.split("<")[1].split()[0])
            verdict = "PASS" if figures["p50_ms"] < limit else "FAIL"
        print(
            f"  {name:<48} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}  {target} {verdict}"
        )
    print(f"\nHashed embedder on the shipped pairs ({q['pairs']:,})")
    print(f"  {'rule':<58} {'threshold':>9} {'hit rate':>9} {'false hits':>10}")
    named = [
        ("loopml default (cosine + entity check)", q["default"]),
        ("loopml recommended for <= 1% (cosine + entity check)", q["recommended"]),
        ("cosine only, 0.8 (LiteLLM's rule, same vectors)", q["cosine_only_at_0.8"]),
        ("cosine only, lowest threshold with <= 1% false hits", q["cosine_only_recommended"]),
    ]
    if isinstance(gpt, dict):
        for gpt_row, label in zip(gpt["rows"], ["its default", "loopml's 0.74"], strict=True):
            s = gpt_row["similarity_threshold"]
            named.append(
                (f"GPTCache {gpt['version']}, similarity_threshold {s:.2f} ({label})", gpt_row)
            )
    for name, row in named:
        if row is None:
            print(f"  {name:<58} {'none':>9}")
            continue
        print(
            f"  {name:<58} {row['threshold']:>9.2f} {row['hit_rate'] * 100:>8.1f}% "
            f"{row['false_hit_rate'] * 100:>9.2f}%"
        )
    if isinstance(gpt, dict):
        print(
            f"\nGPTCache {gpt['version']}: sqlite + faiss, SearchDistanceEvaluation, fed the "
            "hashed embedder's vectors; each pair alone (put a, get b). Its threshold is on "
            "4 - squared L2 distance: similarity_threshold s serves cosine >= 2 s - 1. "
            f"get() timed over {result['speed']['lookups']:,} "
            f"paraphrases with {result['speed']['entries']:,} entries bulk-imported "
            f"({gpt['speed']['import_s']:.1f} s), {gpt['speed']['hits']:,} served; its "
            "embedding step is a dict look-up of the precomputed vector. The threshold column "
            "of its rows is the cosine it amounts to. Check, cosine only on loopml's side at "
            f"0.60: {q['cosine_only_at_0.6']['hit_rate'] * 100:.1f}% / "
            f"{q['cosine_only_at_0.6']['false_hit_rate'] * 100:.2f}%, at 0.74: "
            f"{q['cosine_only_at_0.74']['hit_rate'] * 100:.1f}% / "
            f"{q['cosine_only_at_0.74']['false_hit_rate'] * 100:.2f}%."
        )
    else:
        print(f"\n{gpt}")
    print(
        "LiteLLM not run: its RedisSemanticCache needs Redis Stack's RediSearch module "
        "(redisvl FT.CREATE); the test Redis is plain Redis 7 with no modules, and no Redis "
        "Stack can be installed offline. It serves the nearest vector above one cosine "
        "threshold, with no check of the facts named: the 'cosine only' rows."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 entries, 500 lookups")
    parser.add_argument("--entries", type=int, help="cached entries (default 100,000)")
    parser.add_argument("--lookups", type=int, help="lookups a case (default 2,000)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--timeout", type=float, default=1800, help="GPTCache worker, seconds")
    parser.add_argument("--worker", choices=["gptcache"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(gptcache_worker(args.folder)))
        return
    entries = args.entries or (20_000 if args.quick else 100_000)
    lookups = args.lookups or (500 if args.quick else 2_000)
    if lookups > entries:
        sys.exit("--lookups must not exceed --entries")
    result: dict[str, Any] = {"speed": measure(entries, lookups), "quality": quality()}
    if GPTCACHE_PYTHON.exists():
        print(f"llm_cache: running GPTCache's worker ({GPTCACHE_PYTHON}) ...", flush=True)
        result["gptcache"] = run_gptcache(entries, lookups, args.timeout)
    else:
        result["gptcache"] = GPTCACHE_MISSING
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if isinstance(result["gptcache"], str) and GPTCACHE_PYTHON.exists():
        sys.exit(1)  # the venv is there but its worker failed (the tail of its stderr is printed)


if __name__ == "__main__":
    main()
