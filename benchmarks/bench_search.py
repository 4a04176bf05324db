"""Benchmark: search by words (``artsim search``, ``/api/search``), quality and latency.

Quality (``quality``): the bundled sample (2,019 works) normalised as ``artworks`` holds it, its
metadata texts embedded with all-MiniLM-L6-v2 as ``text_embeddings`` does, and the search built
the way the ``search_index`` asset builds it. ``PARAPHRASES`` are queries that share no word
(nor stem) with the tags they target, each with its relevance rule: a work is relevant when it
carries one of the rule's tags. The script checks that no query shares a word with its tags,
then prints precision@10 of the keyword ranking alone (BM25), the text-vector ranking alone and
the fused ranking, and the same for known-item queries (a work's exact title or museum number:
hit@1), where keyword search is the baseline the fusion must not lose to.

Latency (``latency``): ``artsim serve`` over a home holding N synthetic works (titles, makers,
kinds, tags and dates drawn from the sample's vocabularies; text vectors from
``synthetic_clustered_vectors``, since embedding 500,000 texts on two CPU cores is out of reach:
the *query* is still embedded by the real model), timed over loopback for a fixed query mix with
and without filters: p50/p95 of ``/api/search``, against ``/api/similar`` (one ANN lookup, the
same HTTP stack) in the same process as the baseline. Also the index build time (BM25 and hnswlib
separately) and memory (the server's RSS after warm-up; index files on disk).

    .venv/bin/python benchmarks/bench_search.py quality
    .venv/bin/python benchmarks/bench_search.py latency --sizes 10000 500000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (query, tags that make a work relevant). Case-insensitive; no query word is in its tags.
PARAPHRASES: list[tuple[str, set[str]]] = [
    ("feline", {"Cats", "Lions", "Leopards", "Tigers"}),
    ("pachyderm", {"Elephants"}),
    ("mother holding her infant", {"Madonna and Child", "Virgin Mary"}),
    ("warriors in combat", {"Battles", "Soldiers", "Knights"}),
    ("steed", {"Horses"}),
    ("canine companion", {"Dogs"}),
    ("feathered creatures", {"Birds", "Eagles", "Falcons", "Hawks", "Cranes"}),
    ("heavenly messengers with wings", {"Angels", "Putti"}),
    ("blooms and blossoms", {"Flowers"}),
    ("fabulous beasts of legend", {"Dragons", "Griffins", "Unicorns", "Centaurs", "Sphinx", "Mythical Creatures"}),
    ("enlightened one seated in meditation", {"Buddha", "Buddhism", "Bodhisattvas", "Avalokiteshvara"}),
    ("unclothed woman", {"Female Nudes"}),
    ("sailing ships at sea", {"Boats", "Seascapes"}),
    ("two-wheeled war wagons", {"Chariots"}),
    ("stalking prey with hounds", {"Hunting"}),
]
RANKINGS = {"keyword": {"keyword"}, "semantic": {"text"}, "fused": None}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def sample_artworks() -> pl.DataFrame:
    from artsim_pipeline.core.normalise import normalise
    from artsim_pipeline.core.raw_store import merge_results
    from artsim_pipeline.resources.clients.snapshot import SnapshotClient
    from artsim_pipeline.sample import SOURCES  # the museums whose API records the sample bundles

    frames = []
    for source in SOURCES:
        client = SnapshotClient.from_bundled_sample(source)
        raw, _ = merge_results(None, client.fetch_objects(client.list_ids().ids))
        frames.append(normalise(source, raw)[0])
    return pl.concat(frames, how="diagonal_relaxed").unique("artwork_id", keep="first", maintain_order=True).sort("artwork_id")


def build_search(artworks: pl.DataFrame, text_vectors: np.ndarray, config=None):
    from artsim_pipeline.core import text_search as ts
    from artsim_pipeline.core.ann import build_index
    from artsim_pipeline.resources.models import embed_texts

    ids = artworks["artwork_id"].to_list()
    keyword = ts.KeywordIndex.build(*zip(*ts.iter_documents(artworks)))
    text_index = build_index(ids, text_vectors)
    return ts.TextSearch(ts.Catalog(artworks), keyword, text_index, lambda q: embed_texts([q])[0], config=config)


def shares_a_word(query: str, tags: set[str]) -> set[str]:
    from artsim_pipeline.core.text_search import fold, keyword_tokens

    words = lambda s: set(re.findall(r"\w+", fold(s)))  # noqa: E731
    q = words(query) | set(keyword_tokens(query))
    t = set().union(*(words(x) | set(keyword_tokens(x)) for x in tags))
    return q & t


def quality(args) -> dict:
    from artsim_pipeline.core.ml.text import artwork_text
    from artsim_pipeline.resources.models import embed_texts

    for query, tags in PARAPHRASES:
        common = shares_a_word(query, tags)
        if common:
            raise SystemExit(f"query {query!r} shares {common} with its tags: not a paraphrase")
    artworks = sample_artworks()
    cache = Path(args.cache)
    texts = [artwork_text(r) for r in artworks.iter_rows(named=True)]
    if cache.exists() and json.loads(cache.with_suffix(".json").read_text()) == artworks["artwork_id"].to_list():
        vectors = np.load(cache)
    else:
        t0 = time.perf_counter()
        vectors = embed_texts(texts)
        print(f"embedded {len(texts)} texts in {time.perf_counter() - t0:.1f} s")
        np.save(cache, vectors)
        cache.with_suffix(".json").write_text(json.dumps(artworks["artwork_id"].to_list()))
    search = build_search(artworks, vectors)
    tags_of = {r["artwork_id"]: {t.casefold() for t in (r["tags"] or [])} for r in artworks.select("artwork_id", "tags").iter_rows(named=True)}
    table: dict[str, list[float]] = {name: [] for name in RANKINGS}
    print(f"\n{'query':<40} {'relevant':>8}  " + "  ".join(f"{n:>8}" for n in RANKINGS))
    for query, tags in PARAPHRASES:
        wanted = {t.casefold() for t in tags}
        relevant = sum(1 for v in tags_of.values() if v & wanted)
        row = []
        for name, only in RANKINGS.items():
            hits = search.search(query, 10, only=only)
            p = sum(1 for h in hits if tags_of[h["artwork_id"]] & wanted) / 10
            table[name].append(p)
            row.append(p)
        print(f"{query:<40} {relevant:>8}  " + "  ".join(f"{p:>8.2f}" for p in row))
    means = {name: float(np.mean(v)) for name, v in table.items()}
    print(f"{'mean precision@10':<40} {'':>8}  " + "  ".join(f"{means[n]:>8.3f}" for n in RANKINGS))
    base = means["keyword"] or float("nan")
    print(f"ratios to keyword-only: semantic {means['semantic'] / base:.2f}x, fused {means['fused'] / base:.2f}x"
          if means["keyword"] else "keyword-only precision is 0: ratios undefined")
    makers = maker_queries(search, artworks, args.makers)
    known = known_items(search, artworks, args.known)
    return {"precision_at_10": means, "per_query": {q: {n: table[n][i] for n in RANKINGS} for i, (q, _) in enumerate(PARAPHRASES)},
            "maker_precision": makers, "known_item_hit_at_1": known}


def maker_queries(search, artworks: pl.DataFrame, n: int) -> dict:
    """The other side of the fusion: a maker's name typed in (the `n` makers with most works, at
    least 4); relevant = works by that maker; precision at min(10, the maker's works)."""
    makers_of = {r["artwork_id"]: set(r["artists"] or []) for r in artworks.select("artwork_id", "artists").iter_rows(named=True)}
    counts = artworks.select(pl.col("artists").explode()).drop_nulls().group_by("artists").len()
    top = counts.filter(pl.col("len") >= 4).sort(["len", "artists"], descending=[True, False]).head(n)
    out = {}
    for name, only in RANKINGS.items():
        scores = []
        for maker, count in top.iter_rows():
            k = min(10, count)
            scores.append(sum(1 for h in search.search(maker, k, only=only) if maker in makers_of[h["artwork_id"]]) / k)
        out[name] = float(np.mean(scores))
    print(f"maker queries ({top.height} makers) precision  " + "  ".join(f"{name} {v:.3f}" for name, v in out.items()))
    return out


def known_items(search, artworks: pl.DataFrame, n: int) -> dict:
    """hit@1 when the query is a work's exact title (titles held by one work only) or number."""
    titles = artworks.filter(pl.col("title").is_not_null()).group_by("title").agg(pl.col("artwork_id")).filter(pl.col("artwork_id").list.len() == 1)
    picks = titles.sample(min(n, titles.height), seed=0)
    numbers = artworks.sample(min(n, artworks.height), seed=1)
    out = {}
    for kind, pairs in (("title", [(r["title"], r["artwork_id"][0]) for r in picks.iter_rows(named=True)]),
                        ("museum number", [(r["source_id"], r["artwork_id"]) for r in numbers.iter_rows(named=True)])):
        row = {}
        for name, only in RANKINGS.items():
            hits = [search.search(q, 1, only=only) for q, _ in pairs]
            row[name] = float(np.mean([bool(h) and h[0]["artwork_id"] == a for h, (_, a) in zip(hits, pairs)]))
        out[kind] = row
        print(f"known item by {kind:<14} hit@1  " + "  ".join(f"{name} {v:.2f}" for name, v in row.items()))
    return out


# -- latency -------------------------------------------------------------------------------------------


def synthetic_artworks(n: int, sample: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """n works whose titles, makers, kinds, tags and dates are drawn from the sample's values."""
    rng = np.random.default_rng(seed)
    words = sorted({w for t in sample["title"].drop_nulls().to_list() for w in re.findall(r"[A-Za-z]{3,}", t)})
    makers = sorted({a for lst in sample["artists"].to_list() for a in (lst or [])})
    kinds = sample["classification"].drop_nulls().unique().sort().to_list()
    tags = sorted({t for lst in sample["tags"].to_list() for t in (lst or [])})
    cultures = sample["culture"].drop_nulls().unique().sort().to_list()
    sources = sample["source"].unique().sort().to_list()
    begin = rng.integers(-2000, 2020, n)
    title_words = rng.integers(0, len(words), (n, 4))
    return pl.DataFrame({
        "artwork_id": [f"{sources[i % len(sources)]}:syn{i}" for i in range(n)],
        "source": [sources[i % len(sources)] for i in range(n)],
        "source_id": [f"syn{i}" for i in range(n)],
        "title": [" ".join(words[j] for j in row[: 2 + i % 3]) for i, row in enumerate(title_words)],
        "artists": [[makers[j]] for j in rng.integers(0, len(makers), n)],
        "classification": [kinds[j] for j in rng.integers(0, len(kinds), n)],
        "object_type": [None] * n,
        "medium": [None] * n,
        "culture": [cultures[j] for j in rng.integers(0, len(cultures), n)],
        "tags": [[tags[j] for j in row] for row in rng.integers(0, len(tags), (n, 2))],
        "date_begin": begin.astype(np.int32),
        "date_end": (begin + rng.integers(0, 50, n)).astype(np.int32),
        "landing_url": [f"https://example.org/syn{i}" for i in range(n)],
        "image_sha256": [None] * n,
    }, schema_overrides={"object_type": pl.String, "medium": pl.String, "image_sha256": pl.String})


def build_home(home: Path, n: int, sample: pl.DataFrame) -> dict:
    """Artworks, an ann_index and a search_index for n synthetic works under `home`."""
    from artsim_pipeline.core import text_search as ts
    from artsim_pipeline.core.ann import build_index, synthetic_clustered_vectors
    from artsim_pipeline.resources.artefacts import write_search_index, write_ann_index

    artworks = synthetic_artworks(n, sample)
    (home / "storage" / "artworks").mkdir(parents=True, exist_ok=True)
    for source in artworks["source"].unique().to_list():
        artworks.filter(pl.col("source") == source).write_parquet(home / "storage" / "artworks" / f"{source}.parquet")
    ids = artworks["artwork_id"].to_list()
    out: dict = {"works": n}
    t0 = time.perf_counter()
    keyword = ts.KeywordIndex.build(*zip(*ts.iter_documents(artworks)))
    out["bm25_build_s"] = time.perf_counter() - t0
    vectors = synthetic_clustered_vectors(n, dim=384, n_clusters=max(10, n // 100), seed=1)
    t0 = time.perf_counter()
    text_index = build_index(ids, vectors)
    out["hnsw_build_s"] = time.perf_counter() - t0
    directory = home / "indexes" / "search_index"
    # synthetic vectors are not MiniLM's: no similarity floor, or every query would return nothing
    fusion = ts.FusionConfig(min_text_similarity=-1.0).as_dict()
    write_search_index(directory, keyword, {ts.TEXT_DIR: text_index},
                       {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR], "fusion": fusion, "works": n,
                        "text_model_id": "sentence-transformers/all-MiniLM-L6-v2"})
    write_ann_index(build_index(ids, synthetic_clustered_vectors(n, dim=64, n_clusters=max(10, n // 100), seed=2)), home / "indexes" / "ann_index")
    pl.DataFrame({"artwork_id": ids[:1], "vector": [[1.0] * 64]}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    out["index_mb"] = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20
    return out


QUERIES = ["feline", "mother holding her infant", "warriors in combat", "Rembrandt", "landscape with river",
           "portrait of a woman", "pachyderm", "blue and white porcelain"]
FILTERS = [{}, {"type": "Paintings"}, {"from": "1500", "to": "1700"}, {"source": "met"}]


def time_endpoint(base: str, paths: list[str], rounds: int) -> np.ndarray:
    times = []
    for _ in range(rounds):
        for path in paths:
            t0 = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=120) as response:
                response.read()
                assert response.status == 200, path
            times.append(time.perf_counter() - t0)
    return np.asarray(times) * 1000


def serve_rss_mb(home: Path) -> float:
    """Resident memory of the `artsim serve` process whose ARTSIM_HOME is `home`."""
    wanted = f"ARTSIM_HOME={home}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"serve" not in (proc / "cmdline").read_bytes() or wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return float("nan")


def latency(args) -> dict:
    from artsim_pipeline_tests.servers import artsim_serve

    sample = sample_artworks()
    results = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-search-{n}-") as tmp:
            home = Path(tmp) / "home"
            print(f"\n== {n:,} works (load {loadavg()}) ==", flush=True)
            built = build_home(home, n, sample)
            print(f"build: BM25 {built['bm25_build_s']:.1f} s, hnswlib {built['hnsw_build_s']:.1f} s, files {built['index_mb']:.0f} MB", flush=True)
            with artsim_serve(home, Path(tmp) / "serve") as base:
                paths = [f"/api/search?{urllib.parse.urlencode({'q': q, 'k': 10, **f})}" for q in QUERIES for f in FILTERS]
                t0 = time.perf_counter()
                time_endpoint(base, paths[:1], 1)  # loads the index and the text model
                first = time.perf_counter() - t0
                time_endpoint(base, paths, 1)  # warm-up
                search_ms = time_endpoint(base, paths, args.rounds)
                sample_ids = ["met:syn0", "smk:syn1"] if "smk" in sample["source"].to_list() else ["met:syn0"]
                similar_ms = time_endpoint(base, [f"/api/similar/{a}?k=10" for a in sample_ids], args.rounds * len(paths) // 2)
                rss = serve_rss_mb(home)
            row = {**built, "first_query_s": first, "server_rss_mb": rss,
                   "search_p50_ms": float(np.percentile(search_ms, 50)), "search_p95_ms": float(np.percentile(search_ms, 95)),
                   "similar_p50_ms": float(np.percentile(similar_ms, 50)), "similar_p95_ms": float(np.percentile(similar_ms, 95))}
            print(f"first query (loads index + model): {first:.1f} s; server RSS after the queries {rss:.0f} MB")
            print(f"/api/search  p50 {row['search_p50_ms']:.1f} ms  p95 {row['search_p95_ms']:.1f} ms  ({len(search_ms)} requests)")
            print(f"/api/similar p50 {row['similar_p50_ms']:.1f} ms  p95 {row['similar_p95_ms']:.1f} ms  (baseline)")
            print(f"ratio search/similar: p50 {row['search_p50_ms'] / row['similar_p50_ms']:.1f}x, p95 {row['search_p95_ms'] / row['similar_p95_ms']:.1f}x")
            results[n] = row
    print(f"\nload average at the end: {loadavg()}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "artsim-bench-search-vectors.npy"))
    q.add_argument("--known", type=int, default=100, help="known-item queries of each kind")
    q.add_argument("--makers", type=int, default=25, help="maker-name queries")
    lat = sub.add_parser("latency")
    lat.add_argument("--sizes", type=int, nargs="+", default=[10_000, 500_000])
    lat.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    print(f"load average at the start: {loadavg()}")
    out = quality(args) if args.what == "quality" else latency(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
