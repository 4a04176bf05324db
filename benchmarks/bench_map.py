"""Benchmark: the collection map at Met scale, and incremental placement against a full layout.

1. **Files and first draw.** ``--n`` points (default 470,000) synthesised from the bundled Met
   sample (titles, makers, departments, dates, landing pages and stand-in images replicated;
   vectors: a centre per department plus per-record and per-copy noise, 64-d; coordinates: the
   first two principal components, since how the layout was made does not change the files or
   the drawing). The chunked map is built and stored through ``resources/artefacts/``, served
   by the real app (``web/map_routes.py``) and opened in the project's headless Chromium
   (``/usr/bin/chromium``, ``scripts/install-browser.sh``). Printed: the files written and their
   sizes, seconds from navigation to the first drawn chunk (in-page ``performance.now()``) and to
   every chunk drawn, the JS heap and the browser's memory (PSS of its processes). Baseline, in the same
   process: the single-file page (``render_map_html``, with 64 px thumbnails and 8 nearest works
   per work, as the asset wrote it) at ``--baseline-n`` (default 50,000, where it still opens),
   against the chunked map at the same size.
2. **Incremental placement.** ``--layout-n`` works (default 50,000) laid out with UMAP (numba's
   compilation paid on a small warm-up first), then ``--new-fraction`` (1%) new works placed into
   that layout with the ANN index (``core/collection_map/placement.py``), against laying out
   all of them again: seconds and the ratio.

    .venv/bin/python benchmarks/bench_map.py [--n 470000] [--baseline-n 50000] [--layout-n 50000] [--skip-layout]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

from artsim_pipeline.core.collection_map import render_map_html, thumbnail_data_uri
from artsim_pipeline.core.collection_map.chunks import build_chunked_map
from artsim_pipeline.core.images import image_relpath
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.sample import load_sample_records, sample_image_bytes

CHROMIUM = os.environ.get("ARTSIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-proxy-server", "--enable-precise-memory-info"]
DIM = 64


def sample_works(storage: ArtsimStorage) -> tuple[pl.DataFrame, dict[str, bytes]]:
    """The Met sample's works (one row per record) with their stand-in image stored; and the
    image bytes by stored path."""
    rows, images = [], {}
    for record in load_sample_records("met"):
        data = sample_image_bytes(record.get("primaryImageSmall") or record.get("primaryImage") or "")
        path = None
        if data:
            import hashlib

            path = image_relpath(hashlib.sha256(data).hexdigest(), "jpg")
            if path not in images:
                artefacts.write_image(storage, path, data)
                images[path] = data
        rows.append({"title": record.get("title"), "maker": record.get("artistDisplayName") or None,
                     "department": record.get("department"), "date_text": record.get("objectDate"),
                     "landing_url": record.get("objectURL"), "image_path": path})
    return pl.DataFrame(rows), images


def synthesise(works: pl.DataFrame, n: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """``n`` points replicating the sample's works, and their vectors."""
    rng = np.random.default_rng(seed)
    take = np.arange(n) % works.height
    departments = works["department"].fill_null("").to_list()
    names = sorted(set(departments))
    dept = np.asarray([names.index(d) for d in departments])
    centres = rng.normal(size=(len(names), DIM)) * 3
    per_record = rng.normal(size=(works.height, DIM))
    vectors = (centres[dept][take] + per_record[take] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)
    if "maker" in works.columns:
        works = works.with_columns(pl.concat_list(pl.col("maker")).list.drop_nulls().alias("artists"))
    frame = works[take].with_columns(
        pl.Series("artwork_id", [f"met:{i}" for i in range(n)]),
        pl.Series("source", np.where(np.arange(n) % 4 == 0, "smk", "met")),
        pl.Series("cluster", (dept[take] % 30).astype(np.int32)),
    )
    return frame, vectors


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20_000)], full_matrices=False)
    return (centred @ vt[:2].T).astype(np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_pss_mb() -> float:
    """Proportional set size of this process's Chromium descendants (MB, shared pages split
    between the processes that share them, so the sum is not inflated), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text().lower():
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def serve(home: Path) -> tuple[str, object]:
    import uvicorn

    from artsim_pipeline.web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(home), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def open_chunked(browser, url: str, n_chunks: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.goto(url + "/map", wait_until="commit")
    page.wait_for_function("() => window.artsimMap && window.artsimMap.firstDrawMs !== null", timeout=120_000)
    first = page.evaluate("() => window.artsimMap.firstDrawMs") / 1000
    page.wait_for_function(f"() => window.artsimMap.loadedChunks === {n_chunks}", timeout=300_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    every = page.evaluate("() => performance.now()") / 1000
    drawn = page.evaluate("() => window.artsimMap.drawnPoints")
    error = page.evaluate("() => window.artsimMap.error")
    heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["JSHeapUsedSize"] / 2**20
    pss = browser_pss_mb()
    context.close()
    return {"first_draw_s": first, "all_drawn_s": every, "drawn": drawn, "js_heap_mb": heap, "browser_pss_mb": pss,
            "error": error}


def open_single_file(browser, path: Path) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    start = time.perf_counter()
    try:
        page.goto(path.as_uri(), wait_until="load", timeout=300_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        drawn_s = page.evaluate("() => performance.now()") / 1000  # the page draws while it loads
        heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["JSHeapUsedSize"] / 2**20
    except Exception as exc:  # noqa: BLE001 - a page that does not open is the result
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
        drawn_s, heap = float("nan"), float("nan")
    pss = browser_pss_mb()
    context.close()
    return {"first_draw_s": drawn_s, "wall_s": time.perf_counter() - start, "js_heap_mb": heap, "browser_pss_mb": pss,
            "errors": errors}


def write_chunked(home: Path, points: pl.DataFrame) -> tuple[dict, float, dict[str, int]]:
    storage = ArtsimStorage(home=str(home))
    start = time.perf_counter()
    manifest, chunks, details = build_chunked_map(points, method="pca (synthetic)")
    artefacts.save_chunked_map(storage, manifest, chunks, details)
    seconds = time.perf_counter() - start
    folder = home / "maps" / "collection_map"
    sizes = {
        "manifest.json": (folder / "manifest.json").stat().st_size,
        f"chunks/*.bin ({len(chunks)} files)": sum(p.stat().st_size for p in (folder / "chunks").iterdir()),
        "details-*.parquet": sum(p.stat().st_size for p in folder.glob("details-*.parquet")),
    }
    return artefacts.read_map_manifest(storage), seconds, sizes


def single_file_page(points: pl.DataFrame, images: dict[str, bytes], path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    uris = {p: thumbnail_data_uri(data, max_side=64) for p, data in images.items()}
    ids = points["artwork_id"].to_list()
    dept = points["cluster"].to_numpy()
    by_cluster: dict[int, list[int]] = {}
    for i, c in enumerate(dept.tolist()):
        by_cluster.setdefault(c, []).append(i)
    neighbours = {}
    for members in by_cluster.values():
        for j, i in enumerate(members):
            neighbours[ids[i]] = [ids[members[(j + s) % len(members)]] for s in range(1, 9)]
    thumbs = {a: uris[p] for a, p in zip(ids, points["image_path"].to_list(), strict=True) if p}
    html = render_map_html(points.drop("image_path"), neighbours, thumbs, method="pca (synthetic)", link_landing_pages=True)
    path.write_text(html, encoding="utf-8")
    return time.perf_counter() - start, path.stat().st_size


def bench_files_and_draw(args) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        root = Path(tmp)
        sample_home = root / "sample"
        works, images = sample_works(ArtsimStorage(home=str(sample_home)))
        big, vectors = synthesise(works, args.n)
        big = big.with_columns(pl.Series("x", (xy := pca_2d(vectors))[:, 0]), pl.Series("y", xy[:, 1]))
        small = big.head(args.baseline_n)
        homes = {}
        print("chunked map files (built and stored through resources/artefacts/):")
        for label, points in (("baseline_n", small), ("n", big)):
            home = root / label
            (home / "images").parent.mkdir(parents=True, exist_ok=True)
            os.symlink(sample_home / "images", home / "images")
            manifest, seconds, sizes = write_chunked(home, points)
            total = sum(sizes.values())
            homes[label] = (home, manifest, total)
            print(f"  {points.height:>9,} works: built + stored in {seconds:5.1f} s; "
                  + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()) + f"; total {total / 1e6:.1f} MB "
                  f"({total / points.height:.1f} B/work, of which drawn data {sizes[next(k for k in sizes if k.startswith('chunks'))] / points.height:.1f} B/work)")
        page_path = root / "single_file.html"
        seconds, size = single_file_page(small, images, page_path)
        print(f"  single-file page at {small.height:,} works: {size / 1e6:.1f} MB ({size / small.height:.0f} B/work), "
              f"rendered in {seconds:.1f} s")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                home, manifest, _ = homes["baseline_n"]
                url, server = serve(home)
                open_chunked(browser, url, len(manifest["chunks"]))  # warm-up: the browser's first page pays its start
                server.should_exit = True
                results = {}
                for label in ("baseline_n", "n"):
                    home, manifest, _ = homes[label]
                    url, server = serve(home)
                    results[label] = open_chunked(browser, url, len(manifest["chunks"]))
                    server.should_exit = True
                single = open_single_file(browser, page_path)
            finally:
                browser.close()
        print("\nheadless Chromium, 1280x800 (seconds from navigation; memory after every chunk is drawn):")
        print(f"  {'map':<34}{'works':>9}{'first draw':>12}{'all drawn':>11}{'JS heap':>10}{'browser PSS':>13}")
        print(f"  {'single-file page (baseline)':<34}{small.height:>9,}{single['first_draw_s']:>11.2f}s{single['first_draw_s']:>10.2f}s"
              f"{single['js_heap_mb']:>8.0f}MB{single['browser_pss_mb']:>11.0f}MB" + (f"  errors: {single['errors']}" if single['errors'] else ""))
        for label, points in (("baseline_n", small), ("n", big)):
            r = results[label]
            print(f"  {'chunked map':<34}{points.height:>9,}{r['first_draw_s']:>11.2f}s{r['all_drawn_s']:>10.2f}s"
                  f"{r['js_heap_mb']:>8.0f}MB{r['browser_pss_mb']:>11.0f}MB" + (f"  error: {r['error']}" if r["error"] else ""))
        same = results["baseline_n"]
        print(f"\nat {small.height:,} works: first draw single-file / chunked = {single['first_draw_s'] / same['first_draw_s']:.1f}x, "
              f"bytes = {size / homes['baseline_n'][2]:.1f}x")
        print(f"at {big.height:,} works the chunked map drew first in {results['n']['first_draw_s']:.2f} s "
              f"(target 2 s), every point ({results['n']['drawn']:,} in view) in {results['n']['all_drawn_s']:.2f} s")


def bench_layout(args) -> None:
    from artsim_pipeline.core.ann import build_index
    from artsim_pipeline.core.collection_map import project_2d
    from artsim_pipeline.core.collection_map.placement import update_layout

    works = pl.DataFrame({"department": [f"d{i % 19}" for i in range(2000)]})
    _, vectors = synthesise(works, args.layout_n + int(args.layout_n * args.new_fraction), seed=1)
    n_old = args.layout_n
    ids = [f"met:{i}" for i in range(len(vectors))]
    settings = {"projection": "umap", "seed": 0}

    def project(v):
        return project_2d(v, seed=0, method="umap")

    start = time.perf_counter()
    project_2d(vectors[:500], method="umap")  # numba compiles UMAP's kernels once per process
    print(f"\nlayout: UMAP warm-up (numba compilation, paid once per process) {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    layout, plan = update_layout(ids[:n_old], vectors[:n_old], None, project=project, settings=settings)
    initial = time.perf_counter() - start
    start = time.perf_counter()
    index = build_index(ids, vectors)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    placed, plan_inc = update_layout(ids, vectors, layout, project=project, settings=settings,
                                     search=lambda q, k: index.query(q, k))
    incremental = time.perf_counter() - start
    assert plan_inc.mode == "incremental"
    start = time.perf_counter()
    _, plan_full = update_layout(ids, vectors, layout, project=project, settings=settings, force_full=True)
    full = time.perf_counter() - start
    print(f"  {n_old:,} works laid out with UMAP: {initial:.1f} s")
    print(f"  + {len(ids) - n_old:,} new works ({args.new_fraction:.0%}): incremental placement {incremental:.2f} s "
          f"(ANN index over all {len(ids):,}, which ann_index builds anyway: {index_s:.1f} s); "
          f"full UMAP layout of all {len(ids):,}: {full:.1f} s")
    print(f"  full / incremental = {full / incremental:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=470_000)
    parser.add_argument("--baseline-n", type=int, default=50_000)
    parser.add_argument("--layout-n", type=int, default=50_000)
    parser.add_argument("--new-fraction", type=float, default=0.01)
    parser.add_argument("--skip-layout", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    if not args.skip_browser:
        bench_files_and_draw(args)
    if not args.skip_layout:
        bench_layout(args)


if __name__ == "__main__":
    main()
