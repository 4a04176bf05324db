"""Benchmark: what `search_index` costs when 1% of the titles changed, against its former code.

For each size N: a home holding N synthetic works (`bench_search.synthetic_artworks`: titles,
makers, kinds and tags drawn from the bundled sample's values, in the sample's museums) and their
text vectors (`text_embeddings`: synthetic clustered unit vectors of `--dim` dimensions, 384 as
all-MiniLM-L6-v2's, under the text model's id; embedding N texts is not what is measured). The
search index is built once (the full build, timed), then the titles of 1% of the works change and
their text vectors with them (a new vector and text hash, as `text_embeddings` would store). The
home is copied twice and `search_index` materialised through Dagster on each copy, in this
process: once by the asset as it was at `--former` (read from git: every work tokenised in
Python, bm25s' own indexing, the recall check over 1000 queries every run), once by the current
asset. Prints the wall time of each materialisation, the step's own time (Dagster's step duration),
the ratio current / former, and the current run's own account (works tokenised, recall queries).
`--repeat` runs both again on fresh copies (the minimum is reported; the machine is shared).

`--keyword-only` (for sizes where building the vector index is out of reach here, the whole Met's
470,000 works) times only the keyword part, outside Dagster: the former (every work tokenised,
bm25s' indexing) against the current (`update_documents` over the tokens kept from before the
change, then the vectorised BM25), on the same retitled works.

    .venv/bin/python benchmarks/bench_search_update.py --sizes 50000 [--dim 384] [--former f19611b^]
    .venv/bin/python benchmarks/bench_search_update.py --sizes 470000 --keyword-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_search import loadavg, sample_artworks, synthetic_artworks  # noqa: E402

ASSET_MODULE = "artsim_pipeline/defs/indexing/search_assets.py"


def former_asset(commit: str):
    """The `search_index` asset as `commit` defined it (its module's source from git, run here)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{ASSET_MODULE}"], check=True, capture_output=True,
                            text=True).stdout
    module = sys.modules["former_search_assets"] = types.ModuleType("former_search_assets")  # Dagster reads its hints there
    exec(compile(source, f"{commit}:{ASSET_MODULE}", "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - our own code at that commit
    return module.search_index


def text_table(ids: list[str], vectors: np.ndarray, hashes: list[str], model_id: str) -> pl.DataFrame:
    return pl.DataFrame({"artwork_id": ids, "text_sha256": hashes, "model_id": [model_id] * len(ids)}).with_columns(
        pl.Series("vector", vectors, dtype=pl.Array(pl.Float32, vectors.shape[1])))


def write_home(home: Path, works: pl.DataFrame, texts: pl.DataFrame) -> None:
    from artsim_pipeline.resources.tables import TableStore

    tables = TableStore(base_dir=str(home / "storage"))
    for source in works["source"].unique().sort().to_list():
        tables.write_table(works.filter(pl.col("source") == source), "artworks", source)
    tables.write_table(texts, "text_embeddings")


def materialize_search(home: Path, asset=None) -> dict:
    """`search_index` materialised on `home` (by `asset`, or the current definition): wall and
    step seconds, and the materialisation's metadata."""
    from dagster import AssetKey, DagsterEventType, materialize

    os.environ["ARTSIM_HOME"] = str(home)
    from artsim_pipeline.definitions import build_defs

    defs = build_defs("sample")
    assets = list(defs.assets)
    if asset is not None:
        assets = [a for a in assets if AssetKey("search_index") not in (a.keys if hasattr(a, "keys") else {a.key})] + [asset]
    started = time.perf_counter()
    result = materialize(assets, selection=[AssetKey("search_index")], resources=defs.resources)
    wall = time.perf_counter() - started
    assert result.success
    [step] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS]
    [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey("search_index")]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    [check] = result.get_asset_check_evaluations()
    return {"wall_s": wall, "step_s": step.event_specific_data.duration_ms / 1000,
            "metadata": metadata, "check_passed": check.passed}


def retitle(works: pl.DataFrame, texts: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """`fraction` of the works with a new title (words of other titles) and a new text vector."""
    rng = np.random.default_rng(seed)
    n = works.height
    chosen = np.sort(rng.choice(n, max(1, round(n * fraction)), replace=False))
    titles = works["title"].to_list()
    donors = rng.integers(0, n, len(chosen))
    for i, donor in zip(chosen.tolist(), donors.tolist()):
        titles[i] = f"{titles[donor]} {titles[i].split()[0]} revised"
    changed = set(works["artwork_id"].gather(chosen).to_list())
    works = works.with_columns(pl.Series("title", titles))
    vectors = texts["vector"].to_numpy().copy()
    rows = np.flatnonzero(texts["artwork_id"].is_in(list(changed)).to_numpy())
    moved = vectors[rows] + rng.normal(0, 0.2, vectors[rows].shape).astype(np.float32)
    vectors[rows] = moved / np.linalg.norm(moved, axis=1, keepdims=True)
    hashes = texts["text_sha256"].to_list()
    for r in rows.tolist():
        hashes[r] = f"{hashes[r]}-revised"
    return works, text_table(texts["artwork_id"].to_list(), vectors, hashes, texts["model_id"][0]), len(chosen)


def bench_size(n: int, sample: pl.DataFrame, args, work: Path) -> dict:
    from artsim_pipeline.core.ann import synthetic_clustered_vectors
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID

    works = synthetic_artworks(n, sample)
    ids = works.sort("artwork_id")["artwork_id"].to_list()
    vectors = synthetic_clustered_vectors(n, dim=args.dim, n_clusters=max(10, n // 100), seed=1)
    texts = text_table(ids, vectors, [f"t{i}" for i in range(n)], TEXT_MODEL_ID)
    base = work / f"home_{n}"
    write_home(base, works, texts)
    full = materialize_search(base)
    print(f"full build of {n:,} works: {full['wall_s']:.1f} s (step {full['step_s']:.1f} s), load {loadavg()}", flush=True)
    works, texts, changed = retitle(works, texts, args.fraction, seed=2)
    write_home(base, works, texts)
    former = former_asset(args.former)
    runs: dict[str, list[dict]] = {"former": [], "current": []}
    for round_ in range(args.repeat):
        for name in ("former", "current"):
            home = work / f"{name}_{n}_{round_}"
            shutil.copytree(base, home, symlinks=True)
            runs[name].append(materialize_search(home, former if name == "former" else None))
            shutil.rmtree(home, ignore_errors=True)
            print(f"  {name:<8} wall {runs[name][-1]['wall_s']:6.2f} s  step {runs[name][-1]['step_s']:6.2f} s  "
                  f"(load {loadavg()})", flush=True)
    best = {name: {k: min(r[k] for r in rs) for k in ("wall_s", "step_s")} for name, rs in runs.items()}
    meta = runs["current"][-1]["metadata"]
    row = {"works": n, "changed": changed, "dim": args.dim, "full_build_wall_s": full["wall_s"], "full_build_step_s": full["step_s"],
           "former": best["former"], "current": best["current"],
           "ratio_wall": best["current"]["wall_s"] / best["former"]["wall_s"],
           "ratio_step": best["current"]["step_s"] / best["former"]["step_s"],
           "current_tokenised": meta["tokenised"], "current_recall_queries": meta["recall_queries"],
           "current_updates": meta["updates"], "checks_passed": all(r["check_passed"] for rs in runs.values() for r in rs)}
    print(f"{n:,} works, {changed:,} retitled: former step {best['former']['step_s']:.2f} s, current {best['current']['step_s']:.2f} s "
          f"-> {row['ratio_step']:.3f}x (wall {row['ratio_wall']:.3f}x); current tokenised {meta['tokenised']}, "
          f"recall over {meta['recall_queries']} queries; 1% run / full build (current) {best['current']['step_s'] / full['step_s']:.3f}")
    return row


def bench_keyword(n: int, sample: pl.DataFrame, args) -> dict:
    """The keyword part alone: former (tokenise all, bm25s) against current (kept tokens)."""
    from artsim_pipeline.core import keyword_index as kw

    works = synthetic_artworks(n, sample).sort("artwork_id")
    started = time.perf_counter()
    kept, stats = kw.update_documents(works, None, None)
    first_s = time.perf_counter() - started
    dummy = pl.DataFrame({"artwork_id": works["artwork_id"], "text_sha256": [""] * n, "model_id": [""] * n,
                          "vector": np.zeros((n, 1), np.float32)}, schema_overrides={"vector": pl.Array(pl.Float32, 1)})
    works, _, changed = retitle(works, dummy, args.fraction, seed=2)
    started = time.perf_counter()
    ids, documents = zip(*kw.iter_documents(works))
    former = kw.KeywordIndex.build(list(ids), list(documents))
    former_s = time.perf_counter() - started
    started = time.perf_counter()
    documents, done = kw.update_documents(works, kept, stats["tokenizer"])
    current = kw.KeywordIndex.from_documents(documents, done["tokenizer"])
    current_s = time.perf_counter() - started
    assert current.ids == former.ids and done["tokenised"] == changed
    for token in ("revised", "portrait", "gogh"):
        np.testing.assert_array_equal(current.retriever.get_scores([token]), former.retriever.get_scores([token]))
    print(f"{n:,} works, {changed:,} retitled, keyword part: former {former_s:.2f} s, current {current_s:.2f} s -> "
          f"{current_s / former_s:.3f}x (first tokenising of all: {first_s:.1f} s; load {loadavg()})", flush=True)
    return {"works": n, "changed": changed, "former_keyword_s": former_s, "current_keyword_s": current_s,
            "ratio": current_s / former_s, "first_tokenise_s": first_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000])
    parser.add_argument("--dim", type=int, default=384, help="text vector dimension (all-MiniLM-L6-v2: 384)")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--former", default="f19611b^", help="the commit whose search_index is the baseline")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keyword-only", action="store_true", help="time only the keyword part (no Dagster, no vectors)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("ARTSIM_ENV", "sample")
    os.environ.setdefault("DAGSTER_HOME", str(REPO))
    print(f"load average at the start: {loadavg()}; baseline: search_index at {args.former}", flush=True)
    sample = sample_artworks()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-search-update-") as tmp:
        for n in args.sizes:
            results.append(bench_keyword(n, sample, args) if args.keyword_only else bench_size(n, sample, args, Path(tmp)))
    print(f"load average at the end: {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
