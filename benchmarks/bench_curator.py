"""Benchmark: the curator-facing pages in headless Chromium (Playwright over /usr/bin/chromium).

(a) Collection map, time to first render. ``render_map_html`` over ``--points`` (default 10,000)
    synthetic works (2-D Gaussian blobs, titles, makers, museum/department/cluster, 10
    neighbours each, and a distinct ~1 KB 40x40 JPEG ``data:`` thumbnail per work), written to a
    file and loaded with ``file://`` in a fresh browser context per run. An init script (run
    before the page's own) hooks ``CanvasRenderingContext2D.prototype.fill`` and starts a
    ``requestAnimationFrame`` loop; reported, in the page's clock (0 = navigation start):

    - ``first fill``: the first ``ctx.fill()`` of the page's ``draw()`` (the embedded JSON has
      been parsed and the dots are being drawn);
    - ``first frame inked``: the first animation frame at which ``getImageData`` over the canvas
      shows a non-transparent pixel - the frame that presents the drawn map (the headline);
    - ``FCP`` (Paint Timing's first-contentful-paint: may be the header text, painted while the
      big JSON is still parsing), ``DOMContentLoaded`` and ``load`` event ends, the HTML size.

    The same page with ``--baseline-points`` (1,000) is the baseline; the ratio is 10k / 1k.
    Thumbnails are not drawn at the initial zoom (over 400 visible points), so at first render
    they only cost bytes to parse.

(b) Similar works over HTTP. A home with ``--works`` (10,000) synthetic works (256-d clustered
    vectors from ``synthetic_clustered_vectors``, an hnswlib index via ``build_index``), served
    by ``artsim serve`` in a subprocess on a free 127.0.0.1 port. Over ``--requests`` (200)
    distinct random ids, sequentially, after a warm-up:

    - ``GET /api/similar/{id}?k=10`` by ``fetch()`` inside Chromium (time to the parsed JSON),
      and by Python ``http.client`` on one keep-alive connection;
    - ``GET /work/{id}`` as a browser navigation (Navigation Timing: response end, and load
      event end, both from navigation start);
    - baseline: ``SimilarityService(home).similar(id, 10)`` called in this process (and, for the
      work page, its two per-museum ``similar(id, 8, source=...)`` calls), same ids.

    The ratio p50(HTTP) / p50(in-process) is the cost of HTTP + the app + the browser.

(c) Collection map projection. ``project_2d`` (UMAP: cosine, seeded, exact kNN graph up to
    ``UMAP_EXACT_KNN_MAX`` rows) over ``--projection-sizes`` (2,000 and 10,000)
    ``synthetic_clustered_vectors`` of ``--dim`` (256), each size in a fresh Python process so
    the first call pays numba's JIT compilation as the ``collection_map`` asset does: ``import
    umap`` (pynndescent's numba cache is read from ``__pycache__`` or ``$NUMBA_CACHE_DIR``;
    ~40 s when that cache is cold), the first call and a second call on the same vectors, wall
    and CPU seconds, and whether the two calls gave identical coordinates. No browser needed.

    .venv/bin/python benchmarks/bench_curator.py
    .venv/bin/python benchmarks/bench_curator.py --points 10000 --runs 7 --json out.json
    .venv/bin/python benchmarks/bench_curator.py --skip-map --skip-http   # (c) only

Wall-clock on whatever the machine has; browser, server and this process share its cores (load
average printed at start and end). Needs /usr/bin/chromium (scripts/install-browser.sh).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from artsim_pipeline_tests.servers import CHROMIUM, CHROMIUM_ARGS, artsim_serve  # noqa: E402
from benchmarks.bench_search import loadavg  # noqa: E402 - one definition for every benchmark

# runs before the page's scripts: timestamps of the first canvas fill and the first inked frame
FIRST_RENDER_HOOK = """(() => {
  const t = window.__artsimBench = {fill: null, inked: null};
  const proto = CanvasRenderingContext2D.prototype, fill = proto.fill;
  proto.fill = function () {
    const r = fill.apply(this, arguments);
    if (t.fill === null) t.fill = performance.now();
    return r;
  };
  function tick() {
    const c = document.getElementById("map");
    if (t.fill !== null && c && c.width) {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) if (d[i]) { t.inked = performance.now(); return; }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();"""


def pct(values: list[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def launch(playwright):
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# -- (a) the collection map ------------------------------------------------------------------------


def synthetic_thumbnails(n: int, seed: int = 0, side: int = 40) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, 3)
        img = np.stack([a * xx + (255 - a) * yy, b * (1 - xx), c * yy + 40 * rng.random((side, side))], axis=-1)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=70)
        out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def synthetic_map_html(n: int, seed: int = 0) -> str:
    from artsim_pipeline.core.collection_map import render_map_html

    rng = np.random.default_rng(seed)
    n_blobs = max(1, n // 200)
    centres = rng.uniform(-50, 50, (n_blobs, 2))
    blob = rng.integers(0, n_blobs, n)
    xy = centres[blob] + rng.normal(0, 3, (n, 2))
    ids = [("met" if i % 5 < 3 else "smk") + f":{i}" for i in range(n)]
    departments = [f"Department {d}" for d in range(12)]
    points = pl.DataFrame({
        "artwork_id": ids,
        "x": xy[:, 0],
        "y": xy[:, 1],
        "title": [f"Synthetic work {i} ({'landscape' if i % 3 else 'portrait'})" for i in range(n)],
        "artists": [[f"Painter {i % 500}"] for i in range(n)],
        "source": [a.split(":")[0] for a in ids],
        "department": [departments[i % 12] for i in range(n)],
        "cluster": blob.tolist(),
        "date_text": [str(1500 + i % 400) for i in range(n)],
    })
    members: dict[int, list[int]] = {}
    for i, b in enumerate(blob.tolist()):
        members.setdefault(b, []).append(i)
    neighbours = {}
    for i, a in enumerate(ids):
        pool = members[int(blob[i])]
        picks = rng.choice(pool, size=min(11, len(pool)), replace=False)
        neighbours[a] = [ids[j] for j in picks if j != i][:10]
    thumbs = dict(zip(ids, synthetic_thumbnails(n, seed), strict=True))
    return render_map_html(points, neighbours, thumbs, method="synthetic")


def bench_map(browser, sizes: list[int], runs: int, workdir: Path) -> dict[int, dict]:
    results = {}
    for n in sizes:
        path = workdir / f"map-{n}.html"
        t0 = time.perf_counter()
        path.write_text(synthetic_map_html(n), encoding="utf-8")
        print(f"  map with {n:,} points: {path.stat().st_size / 1e6:.1f} MB of HTML "
              f"(built in {time.perf_counter() - t0:.1f} s)", flush=True)
        samples = []
        for run in range(runs + 1):  # run 0 is a warm-up, not counted
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(FIRST_RENDER_HOOK)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load", timeout=120_000)
            page.wait_for_function("() => window.__artsimBench.inked !== null", timeout=120_000)
            t = page.evaluate("""() => {
                const nav = performance.getEntriesByType("navigation")[0];
                const fcp = performance.getEntriesByName("first-contentful-paint")[0];
                return {fill: window.__artsimBench.fill, inked: window.__artsimBench.inked,
                        fcp: fcp ? fcp.startTime : NaN,
                        dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd};
            }""")
            shown = page.inner_text("#bar .sub")
            context.close()
            if errors:
                raise RuntimeError(f"the map page raised: {errors}")
            if not shown.startswith(f"{n:,} works"):
                raise RuntimeError(f"the map page shows {shown!r}")
            if run:
                samples.append(t)
        results[n] = {
            "html_mb": path.stat().st_size / 1e6,
            **{k: statistics.median(s[k] for s in samples) for k in ("fill", "inked", "fcp", "dcl", "load")},
            "inked_min": min(s["inked"] for s in samples),
            "inked_max": max(s["inked"] for s in samples),
        }
    return results


# -- (b) similar works over HTTP -------------------------------------------------------------------


def build_home(home: Path, n: int, dim: int, seed: int = 0) -> list[str]:
    from artsim_pipeline.core.ann import build_index, synthetic_clustered_vectors
    from artsim_pipeline.resources.artefacts import write_ann_index

    ids = [("met" if i % 5 < 3 else "smk") + f":{i}" for i in range(n)]
    rows = pl.DataFrame({
        "artwork_id": ids,
        "source": [a.split(":")[0] for a in ids],
        "source_id": [a.split(":")[1] for a in ids],
        "title": [f"Synthetic work {i}" for i in range(n)],
        "artists": [[f"Painter {i % 500}"] for i in range(n)],
        "culture": [None] * n,
        "classification": [["Paintings", "Drawings", "Prints"][i % 3] for i in range(n)],
        "department": [f"Department {i % 12}" for i in range(n)],
        "tags": [[f"tag{i % 40}", f"tag{i % 7}"] for i in range(n)],
        "date_begin": [1500 + i % 400 for i in range(n)],
        "date_end": [1510 + i % 400 for i in range(n)],
        "date_text": [str(1500 + i % 400) for i in range(n)],
        "landing_url": [f"https://example.org/{i}" for i in range(n)],
        "image_sha256": [None] * n,
    }, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32, "culture": pl.String,
                         "image_sha256": pl.String})
    (home / "storage" / "artworks").mkdir(parents=True)
    for src in ("met", "smk"):
        rows.filter(pl.col("source") == src).write_parquet(home / "storage" / "artworks" / f"{src}.parquet")
    vecs = synthetic_clustered_vectors(n, dim=dim, n_clusters=max(1, n // 50), seed=seed)
    pl.DataFrame({"artwork_id": ids, "vector": vecs.tolist()}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    write_ann_index(build_index(ids, vecs), home / "indexes" / "ann_index")
    return ids


FETCH_JS = """async ([paths, warm]) => {
  const out = [];
  for (let i = 0; i < paths.length; i++) {
    const t0 = performance.now();
    const r = await fetch(paths[i], {cache: "no-store"});
    const body = await r.json();
    const t1 = performance.now();
    if (r.status !== 200 || !Array.isArray(body) || body.length !== 10) throw new Error(paths[i] + " -> " + r.status);
    if (i >= warm) out.push(t1 - t0);
  }
  return out;
}"""


def bench_http(browser, home: Path, ids: list[str], n_requests: int, warm: int, workdir: Path) -> dict[str, list[float]]:
    from artsim_pipeline.resources.museum_api import SOURCES
    from artsim_pipeline.service import SimilarityService

    rng = np.random.default_rng(1)
    sample = [ids[i] for i in rng.choice(len(ids), size=n_requests + warm, replace=False)]
    warm_ids, ids_timed = sample[:warm], sample[warm:]
    out: dict[str, list[float]] = {}

    # in-process baseline
    service = SimilarityService(home)
    for a in warm_ids:
        service.similar(a, 10)
    times = []
    for a in ids_timed:
        t0 = time.perf_counter()
        res = service.similar(a, 10)
        times.append((time.perf_counter() - t0) * 1e3)
        assert len(res) == 10
    out["in-process similar(k=10)"] = times
    times = []
    for a in ids_timed:
        t0 = time.perf_counter()
        for s in SOURCES:
            service.similar(a, 8, source=s)
        times.append((time.perf_counter() - t0) * 1e3)
    out["in-process 2 x similar(k=8, source)"] = times

    with artsim_serve(home, workdir) as base:
        path = lambda a: "/api/similar/" + quote(a, safe=":") + "?k=10"  # noqa: E731
        # Python client, one keep-alive connection
        conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=30)
        times = []
        for i, a in enumerate(warm_ids + ids_timed):
            t0 = time.perf_counter()
            conn.request("GET", path(a))
            r = conn.getresponse()
            body = json.loads(r.read())
            dt = (time.perf_counter() - t0) * 1e3
            assert r.status == 200 and len(body) == 10, (r.status, body)
            if i >= warm:
                times.append(dt)
        conn.close()
        out["http.client GET /api/similar"] = times

        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(base + "/", wait_until="load")
        out["Chromium fetch /api/similar"] = page.evaluate(FETCH_JS, [[path(a) for a in warm_ids + ids_timed], warm])

        response_end, load_end = [], []
        for i, a in enumerate(warm_ids + ids_timed):
            resp = page.goto(base + "/work/" + quote(a, safe=":"), wait_until="load")
            assert resp is not None and resp.status == 200
            t = page.evaluate("""() => { const n = performance.getEntriesByType("navigation")[0];
                                          return [n.responseEnd - n.startTime, n.loadEventEnd - n.startTime]; }""")
            if i >= warm:
                response_end.append(t[0])
                load_end.append(t[1])
        page.goto(base + "/work/" + quote(ids_timed[0], safe=":"))
        cards = page.locator(".card .score").count()
        assert cards == 16, f"expected 8 + 8 similar works on the page, saw {cards}"
        context.close()
        out["Chromium /work page: response end"] = response_end
        out["Chromium /work page: load event end"] = load_end
    return out


# -- (c) the map's 2-D projection ------------------------------------------------------------------

PROJECTION_CHILD = """
import json, sys, time
import numpy as np
from artsim_pipeline.core.ann import synthetic_clustered_vectors
from artsim_pipeline.core.collection_map import _import_umap, project_2d
n, dim = int(sys.argv[1]), int(sys.argv[2])
x = synthetic_clustered_vectors(n, dim, n_clusters=max(2, n // 50), seed=0)
out = {}
def timed(name, fn):
    w, c = time.perf_counter(), time.process_time()
    value = fn()
    out[name] = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}
    return value
timed("import umap", _import_umap)
first, method = timed("first call", lambda: project_2d(x, seed=0))
second, _ = timed("second call", lambda: project_2d(x, seed=0))
out.update(method=method, identical=bool(np.array_equal(first, second)))
print(json.dumps(out))
"""


def bench_projection(sizes: list[int], dim: int) -> dict[int, dict]:
    out = {}
    for n in sizes:
        proc = subprocess.run([sys.executable, "-c", PROJECTION_CHILD, str(n), str(dim)], capture_output=True,
                              text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"projection of {n} vectors failed:\n{proc.stderr[-2000:]}")
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--baseline-points", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=5, help="map loads per size (after one warm-up)")
    ap.add_argument("--works", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--skip-map", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--projection-sizes", type=int, nargs="+", default=[2_000, 10_000])
    ap.add_argument("--skip-projection", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    report: dict = {"loadavg_start": loadavg(), "cpus": os.cpu_count()}
    print(f"load average {report['loadavg_start']} on {os.cpu_count()} CPUs; Chromium {CHROMIUM}", flush=True)
    if not args.skip_projection:
        print(f"(c) map projection: dim {args.dim}, a fresh process per size", flush=True)
        projections = bench_projection(args.projection_sizes, args.dim)
        report["projection"] = {str(k): v for k, v in projections.items()}
        print(f"\n  {'vectors':>8} {'method':>8} {'import umap':>16} {'first call':>16} {'second call':>16} "
              f"{'identical':>9}   (wall / CPU s)")
        for n, r in projections.items():
            cells = " ".join(f"{r[k]['wall_s']:>7.1f} / {r[k]['cpu_s']:<6.1f}" for k in ("import umap", "first call", "second call"))
            print(f"  {n:>8,} {r['method']:>8} {cells} {str(r['identical']):>9}")
        print(flush=True)
    if args.skip_map and args.skip_http:
        return finish(report, args.json)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_curator_") as tmp, sync_playwright() as p:
        workdir = Path(tmp)
        browser = launch(p)
        report["chromium"] = browser.version
        if not args.skip_map:
            print("(a) collection map: time to first render", flush=True)
            maps = bench_map(browser, [args.baseline_points, args.points], args.runs, workdir)
            report["map"] = {str(k): v for k, v in maps.items()}
            base, big = maps[args.baseline_points], maps[args.points]
            print(f"\n  median of {args.runs} loads, ms from navigation start (page clock)")
            print(f"  {'points':>8} {'HTML MB':>8} {'first fill':>11} {'inked frame':>12} {'(min-max)':>15} {'FCP':>6} {'DOMContentLoaded':>17} {'load':>8}")
            for n, r in maps.items():
                print(f"  {n:>8,} {r['html_mb']:>8.1f} {r['fill']:>11.0f} {r['inked']:>12.0f} "
                      f"{r['inked_min']:>7.0f}-{r['inked_max']:<7.0f} {r['fcp']:>6.0f} {r['dcl']:>17.0f} {r['load']:>8.0f}")
            print(f"  ratio {args.points:,} / {args.baseline_points:,}: first fill x{big['fill'] / base['fill']:.1f}, "
                  f"inked frame x{big['inked'] / base['inked']:.1f}\n", flush=True)
        if not args.skip_http:
            print(f"(b) similar works: {args.works:,} works, dim {args.dim}, {args.requests} requests "
                  f"(+{args.warmup} warm-up)", flush=True)
            home = workdir / "home"
            t0 = time.perf_counter()
            ids = build_home(home, args.works, args.dim)
            print(f"  home built in {time.perf_counter() - t0:.1f} s", flush=True)
            http_times = bench_http(browser, home, ids, args.requests, args.warmup, workdir)
            report["http_ms"] = {k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "n": len(v)} for k, v in http_times.items()}
            sim_base = pct(http_times["in-process similar(k=10)"], 0.5)
            work_base = pct(http_times["in-process 2 x similar(k=8, source)"], 0.5)
            print(f"\n  {'what':<40} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p50 / in-process':>17}")
            for k, v in http_times.items():
                ref = work_base if ("/work" in k or "2 x" in k) else sim_base
                print(f"  {k:<40} {len(v):>4} {pct(v, 0.5):>8.2f} {pct(v, 0.95):>8.2f} {pct(v, 0.5) / ref:>16.1f}x")
        browser.close()
    return finish(report, args.json)


def finish(report: dict, json_path: Path | None) -> int:
    report["loadavg_end"] = loadavg()
    print(f"\nload average {report['loadavg_end']}")
    if json_path:
        json_path.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
