"""Benchmark: `artsim serve` in bounded memory (#18 item 5): the two-stage `ann_index` (hnswlib
over projected vectors, float16 full vectors re-ranking) against the full-dimensional index.

Builds a synthetic collection of N works directly in storage (no pipeline run): the bundled
sample's real API records (every API source), normalised as `artworks` holds them and replicated
under new ids (``<source>:s<i>``) to N rows, one Parquet partition per museum; clustered unit
vectors of `--dim` dimensions (default 1,280: the default model's) as `artwork_vectors`; and two
`ann_index`es over them, each in a home of its own that shares the tables:

- ``full``: hnswlib holds the full vectors (`search_dim` 0: the index as it was before);
- ``two-stage``: hnswlib over the vectors projected to `--search-dim` dimensions, `oversample` x k
  candidates re-ranked with the full vectors, float16, read row by row from their file (`core.ann.reduction`).

It prints each index's build time, files and recall@10 against exact search (1,000 queries),
then starts `artsim serve` (the web app as shipped) over each home in its own process, twice:
the first start writes the serving copies, the restart finds them. With ``--old-path`` it also
starts the former serving path first (``old``: `/api/similar` calls `core.search.similar` with
the whole `artwork_vectors` and `artworks` tables as frames; its `/work` page holds what the
former page held: a dict of every artworks row, the search catalogue).

For each server it prints the peak RSS (VmHWM) after the `/api/similar` requests and after one
`/work` page, the first request (loading), and `/api/similar` p50/p95 over loopback for the same
ids, as ratios to the first baseline; how many answers have the same ids as the baseline's and
the largest score difference; and the sizes on disk.

    .venv/bin/python benchmarks/bench_serve.py --works 470000
    .venv/bin/python benchmarks/bench_serve.py --works 470000 --dim 64 --old-path --variants full
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_search import loadavg, sample_artworks  # noqa: E402 - the same real rows to replicate


VARIANTS = ("full", "two-stage")


def build_tables(home: Path, n: int, dim: int) -> tuple[dict, list[str], np.ndarray]:
    """artworks (per museum) and artwork_vectors of n works under `home/storage`."""
    from artsim_pipeline.core.ann import synthetic_clustered_vectors

    sample = sample_artworks()
    t0 = time.perf_counter()
    works = sample[np.arange(n) % sample.height].with_columns(
        pl.Series("source_id", [f"s{i}" for i in range(n)]))
    works = works.with_columns((pl.col("source") + ":" + pl.col("source_id")).alias("artwork_id"))
    (home / "storage" / "artworks").mkdir(parents=True)
    for source in works["source"].unique().sort().to_list():
        works.filter(pl.col("source") == source).write_parquet(home / "storage" / "artworks" / f"{source}.parquet")
    ids = works["artwork_id"].to_list()
    del works
    vectors = synthetic_clustered_vectors(n, dim=dim, n_clusters=max(10, n // 100), seed=1)
    pl.DataFrame({"artwork_id": ids, "vector": pl.Series(vectors).cast(pl.List(pl.Float32)),
                  "vector_source": ["trained"] * n}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    return {"sample_rows": sample.height, "tables_s": time.perf_counter() - t0}, ids, vectors


def build_indexes(home: Path, ids: list[str], vectors: np.ndarray, threads: int, variants: dict[str, int]) -> dict:
    """For each variant (name -> search_dim) a home `home/<name>` sharing the tables, with its
    ann_index: build seconds and recall@10 against exact search."""
    from artsim_pipeline.core.ann import AnnConfig, build_index, recall_vs_exact
    from artsim_pipeline.resources.artefacts import write_ann_index

    indexes = {}
    for name, search_dim in variants.items():
        shutil.rmtree(home / name, ignore_errors=True)
        t0 = time.perf_counter()
        index = build_index(ids, vectors, AnnConfig(num_threads=threads, search_dim=search_dim))
        (home / name).mkdir()
        (home / name / "storage").symlink_to(home / "storage")
        write_ann_index(index, home / name / "indexes" / "ann_index")
        seconds = time.perf_counter() - t0
        recall = recall_vs_exact(index, ids, vectors, sample=1000, k=10)
        indexes[name] = {"search_dim": index.search_dim, "build_s": seconds, "recall_at_10": recall}
        print(f"index {name}: hnswlib over {index.search_dim} of {vectors.shape[1]} dimensions, built and written in "
              f"{seconds:.1f} s, recall@10 against exact search {recall:.4f} (load {loadavg()})", flush=True)
        del index
    return indexes


# -- the servers ---------------------------------------------------------------------------------------


def old_path_server(home: str, port: int) -> None:
    """`/api/similar` as served before: `core.search.similar` over the whole tables as frames."""
    import uvicorn
    from fastapi import FastAPI, Query
    from fastapi.responses import JSONResponse, Response

    from artsim_pipeline.core.search import UnknownArtworkError, similar
    from artsim_pipeline.core.sources import SOURCES
    from artsim_pipeline.service import SimilarityService

    service = SimilarityService(Path(home))
    app = FastAPI()

    @app.get("/api/similar/{artwork_id:path}")
    def api_similar(artwork_id: str, k: int = Query(10, ge=1, le=100)):
        try:
            return similar(artwork_id, k, service.index, service.vectors, service.artworks)
        except UnknownArtworkError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    kept: dict = {}

    @app.get("/work/{artwork_id:path}")
    def work_page(artwork_id: str):
        """What the former work page held and computed (its template left out): a dict of every
        artworks row, the search catalogue for the filter form's kinds, 8 neighbours per museum."""
        if "works" not in kept:
            frame = service.artworks.unique("artwork_id", keep="first", maintain_order=True)
            kept["works"] = {row["artwork_id"]: row for row in frame.iter_rows(named=True)}
        kinds = service.catalog.kinds()[:300]
        sections = {m: similar(artwork_id, 8, service.index, service.vectors, service.artworks, source=m) for m in SOURCES}
        return {"kinds": len(kinds), "sections": {m: len(v) for m, v in sections.items()}}

    @app.get("/favicon.ico")
    def ready():
        return Response(status_code=204)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """The `old` path's server, or `artsim serve` over the home of variant `kind`."""
    port = free_port()
    if kind != "old":
        home = home / kind
    env = dict(os.environ, ARTSIM_HOME=str(home), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    if kind == "old":
        cmd = [sys.executable, __file__, "_old_server", str(home / "full"), str(port)]
    else:  # `artsim serve`, as the console script runs it
        cmd = [sys.executable, "-c", "import sys; from artsim_pipeline.cli import main; sys.exit(main())",
               "serve", "--port", str(port)]
    process = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{kind} server exited with {process.returncode}: see {log}")
        try:
            with urllib.request.urlopen(base + "/favicon.ico", timeout=2):
                return process, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{kind} server did not answer: see {log}")


def memory_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current resident memory; RssFile is pages of mapped files (the serving
    copies, libraries), which the kernel can drop and read again, RssAnon the process's own."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:", "RssAnon:", "RssFile:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def get(base: str, path: str) -> list[dict]:
    with urllib.request.urlopen(base + path, timeout=600) as response:
        return json.loads(response.read())


def measure(kind: str, home: Path, log: Path, paths: list[str], rounds: int) -> dict:
    process, base = start(kind, home, log)
    try:
        t0 = time.perf_counter()
        first = get(base, paths[0])
        first_s = time.perf_counter() - t0
        answers = {p: get(base, p) for p in paths}  # warm-up, and the answers compared
        times = []
        for _ in range(rounds):
            for p in paths:
                t0 = time.perf_counter()
                get(base, p)
                times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1000
        memory = memory_mb(process.pid)
        # then one work page: the old one held a dict of every row and the search catalogue
        with urllib.request.urlopen(base + paths[0].replace("/api/similar/", "/work/").split("?")[0], timeout=600) as page:
            page.read()
        memory["after_work_page"] = memory_mb(process.pid)["VmHWM"]
    finally:
        process.terminate()
        process.wait(30)
    assert first == answers[paths[0]]
    return {"first_request_s": first_s, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "peak_rss_mb": memory.get("VmHWM", float("nan")), "rss_mb": memory.get("VmRSS", float("nan")),
            "rss_anon_mb": memory.get("RssAnon", float("nan")), "rss_file_mb": memory.get("RssFile", float("nan")),
            "peak_after_work_page_mb": memory.get("after_work_page"),
            "requests": len(ms), "answers": answers}


def compare_answers(a: dict, b: dict) -> dict:
    """How many of `b`'s answers list the same works as `a`'s, in the same order (with the same
    rows apart from the score), and the largest score difference among those."""
    same, score_diff = 0, 0.0
    for path, left in a.items():
        right = b[path]
        if [{**x, "score": 0} for x in left] == [{**y, "score": 0} for y in right]:
            same += 1
            score_diff = max([score_diff] + [abs(x["score"] - y["score"]) for x, y in zip(left, right)])
    return {"same_lists": same, "lists": len(a), "max_score_diff": score_diff}


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--works", type=int, default=470_000)
    parser.add_argument("--dim", type=int, default=1280, help="vector dimensions (1,280: the default model's)")
    parser.add_argument("--search-dim", type=int, default=128, help="dimensions hnswlib searches in the two-stage index")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"indexes to build and serve, of {VARIANTS}")
    parser.add_argument("--old-path", action="store_true", help="also serve the former path (whole tables in memory) over the full index")
    parser.add_argument("--queries", type=int, default=200, help="distinct ids asked for")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="hnswlib build threads (0: every core)")
    parser.add_argument("--home", help="build the collection here and keep it (reused when it holds one of --works works)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    print(f"load average at the start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        names = [v for v in args.variants.split(",") if v]
        if unknown := set(names) - set(VARIANTS):
            raise SystemExit(f"unknown variants {sorted(unknown)}: choose from {VARIANTS}")
        if args.old_path and "full" not in names:
            names.insert(0, "full")  # the old path serves the full index
        variants = {name: (0 if name == "full" else args.search_dim) for name in names}
        wanted = {"works": args.works, "dim": args.dim}
        stored = json.loads((home / "bench.json").read_text()) if (home / "bench.json").exists() else {}
        if {k: v for k, v in stored.items() if k in wanted} == wanted:  # the same tables: reused
            built = stored
            vectors_file = home / "storage" / "artwork_vectors.parquet"
            ids = pl.read_parquet(vectors_file, columns=["artwork_id"])["artwork_id"].to_list()
            missing = {name: d for name, d in variants.items() if built["indexes"].get(name, {}).get("search_dim_asked") != d}
            if missing:
                vectors = np.stack(pl.read_parquet(vectors_file, columns=["vector"])["vector"].to_numpy()).astype(np.float32)
            for name in names:  # the first start writes the serving copies
                shutil.rmtree(home / name / "cache", ignore_errors=True)
        else:
            shutil.rmtree(home, ignore_errors=True)
            built, ids, vectors = build_tables(home, args.works, args.dim)
            built |= wanted | {"indexes": {}}
            missing = variants
        if missing:
            for name, figures in build_indexes(home, ids, vectors, args.threads, missing).items():
                built["indexes"][name] = figures | {"search_dim_asked": missing[name]}
            del vectors
            (home / "bench.json").write_text(json.dumps(built))
        print(f"{args.works:,} works ({built['sample_rows']} real records replicated), {args.dim}-d vectors: "
              f"tables {built['tables_s']:.1f} s (load {loadavg()})", flush=True)
        for name in names:
            figures = built["indexes"][name]
            print(f"  {name}: hnswlib over {figures['search_dim']} dimensions, built and written in {figures['build_s']:.1f} s, "
                  f"recall@10 against exact search {figures['recall_at_10']:.4f}", flush=True)
        rng = np.random.default_rng(0)
        paths = [f"/api/similar/{a}?k={args.k}" for a in rng.choice(ids, size=min(args.queries, len(ids)), replace=False)]
        del ids
        log = Path(tmp) / "servers.log"
        runs = {}
        servers = [("old", "old path")] if args.old_path else []
        servers += [(name, f"{name}, {start}") for name in names for start in ("first start", "restart")]
        for kind, label in servers:
            runs[label] = measure(kind, home, log, paths, args.rounds)
            r = runs[label]
            print(f"{label:<26} peak RSS {r['peak_rss_mb']:7.0f} MB  first request {r['first_request_s']:6.2f} s  "
                  f"/api/similar p50 {r['p50_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms  ({r['requests']} requests, load {loadavg()})\n"
                  f"{'':<26} then RSS {r['rss_mb']:.0f} MB: anonymous {r['rss_anon_mb']:.0f}, mapped files {r['rss_file_mb']:.0f}"
                  + f"; peak after one /work page {r['peak_after_work_page_mb']:.0f} MB",
                  flush=True)
        base_label = list(runs)[0]
        base = runs[base_label]
        agreement = {}
        for label in list(runs)[1:]:
            r = runs[label]
            agreement[label] = compare_answers(base["answers"], r["answers"])
            a = agreement[label]
            print(f"{label}: peak RSS {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x {base_label}, "
                  f"p50 {r['p50_ms'] / base['p50_ms']:.2f}x, p95 {r['p95_ms'] / base['p95_ms']:.2f}x; "
                  f"peak RSS after one /work page {r['peak_after_work_page_mb'] / base['peak_after_work_page_mb']:.2f}x; "
                  f"answers the same as {base_label}'s: {a['same_lists']} of {a['lists']} (largest score difference "
                  f"{a['max_score_diff']:.1e})")
        sizes = {"artworks": size_mb(home / "storage" / "artworks"), "artwork_vectors": size_mb(home / "storage" / "artwork_vectors.parquet")}
        for name in names:
            index_dir = home / name / "indexes" / "ann_index"
            sizes[f"ann_index {name}"] = size_mb(index_dir)
            for part in sorted(index_dir.iterdir()):
                if part.stat().st_size > 2**20:
                    sizes[f"  {name} {part.name}"] = size_mb(part)
            sizes[f"serving copies {name}"] = size_mb(home / name / "cache" / "serving")
        print("on disk: " + ", ".join(f"{what} {mb:.0f} MB" for what, mb in sizes.items()))
        print(f"load average at the end: {loadavg()}")
        if args.json:
            out = {"works": args.works, "dim": args.dim, **built, "sizes_mb": sizes, "agreement": agreement,
                   "runs": {label: {k: v for k, v in r.items() if k != "answers"} for label, r in runs.items()}}
            Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_old_server":
        old_path_server(sys.argv[2], int(sys.argv[3]))
    else:
        main()
