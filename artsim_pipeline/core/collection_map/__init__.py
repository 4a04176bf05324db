"""A 2-D map of the collection in the learned similarity space, as one offline HTML page.

- :func:`project_2d` - vectors to 2-D: UMAP (cosine, fixed ``random_state``) by default; the
  deterministic fallback is PCA (to 50 dimensions) + t-SNE from scikit-learn, or plain PCA-2 for
  tiny inputs, used when there are too few rows for UMAP or ``umap-learn`` cannot be imported
  (or when asked for); it says which method it used.
- :func:`render_map_html` - one self-contained interactive page (inline CSS and JS, no network
  access at all): a canvas with one dot (or thumbnail, when zoomed in) per work, colour by
  museum / department / cluster, title and maker on hover, click to list the nearest works.

Safety: every value inserted into the page is either HTML-escaped (the page title) or part of
one JSON document inside ``<script type="application/json">`` in which ``<``, ``>``, ``&``,
U+2028 and U+2029 are written as ``\\uXXXX`` escapes, so no title can close the script
element; the page's JS only ever sets ``textContent`` (never ``innerHTML``), and only
``data:image/...`` or relative thumbnail URLs are accepted.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.sources import SOURCES, source_label

UMAP_N_NEIGHBORS = 15  # umap-learn's default: local structure over ~15 neighbours
UMAP_MIN_DIST = 0.1  # umap-learn's default: how tightly points may pack in the map
# Up to this many rows UMAP gets an exact cosine kNN graph computed here with numpy (~1 s for
# 10,000 x 256), which also spares numba compiling pynndescent's NNDescent (~30 s of CPU in every
# new process); above it UMAP builds its own approximate graph with NNDescent.
UMAP_EXACT_KNN_MAX = 20_000
TSNE_MIN_POINTS = 30  # fewer points than this: PCA-2 (t-SNE needs perplexity < n)
PCA_DIMS = 50

METHODS = ("auto", "umap", "pca_tsne", "pca")
_ALIASES = {"tsne": "pca_tsne"}  # the name used before "pca_tsne"; still accepted

_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/=]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def _import_umap() -> Any | None:
    """The ``umap`` module, or None when it cannot be imported (missing, or a broken
    numba/llvmlite). Imported here, never at module import: it costs ~2-3 s of CPU, and ~20 s
    the very first time (numba compiles pynndescent's ``cache=True`` functions and stores them
    in ``__pycache__`` next to them, or under ``$NUMBA_CACHE_DIR`` when that is set)."""
    numba_log = logging.getLogger("numba")
    if numba_log.level == logging.NOTSET:
        # numba logs ~20,000 DEBUG records while compiling UMAP's kernels: keep them out of any
        # DEBUG-level log setup (an explicit level set on the "numba" logger is left alone)
        numba_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # umap/__init__ warns (ImportWarning) that ParametricUMAP needs TensorFlow: not used
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return umap


def umap_min_points(n_neighbors: int = UMAP_N_NEIGHBORS) -> int:
    """The fewest rows UMAP is used for: ``n_neighbors + 2`` (each point needs its
    ``n_neighbors`` neighbours plus room for the spectral initialisation); fewer go to the
    fallback."""
    return max(4, n_neighbors + 2)


def _matrix(vectors: Any) -> np.ndarray:
    from artsim_pipeline.core.features import as_matrix

    from artsim_pipeline.core.vectors import l2_normalise

    return l2_normalise(as_matrix(vectors), zero_rows="keep", dtype=np.float64)


def _fallback(n: int) -> str:
    return "pca_tsne" if n >= TSNE_MIN_POINTS else "pca"


def project_2d(
    vectors: Any,
    seed: int = 0,
    method: str = "auto",
    *,
    n_neighbors: int = UMAP_N_NEIGHBORS,
    min_dist: float = UMAP_MIN_DIST,
) -> tuple[np.ndarray, str]:
    """``(coords, method_used)``: an ``(n, 2)`` float32 array and the method that made it.

    Rows are L2-normalised first; the same input and seed always give the same coordinates.

    - ``"umap"``: ``umap.UMAP(n_neighbors, min_dist, metric="cosine", random_state=seed,
      init="spectral", n_jobs=1)`` (a fixed ``random_state`` makes UMAP single-threaded, which
      is what makes it reproducible), given the exact kNN graph up to ``UMAP_EXACT_KNN_MAX``
      rows. Inputs with fewer than :func:`umap_min_points` rows use the fallback instead, and
      say so in ``method_used``. ImportError if ``umap-learn`` is not importable. The first
      call in a process spends ~7-10 s of CPU on numba compiling UMAP's kernels (not
      cacheable: umap-learn does not ask numba to cache them).
    - ``"pca_tsne"`` (the fallback; ``"tsne"`` is accepted as an old name for it): PCA to
      ``min(50, dim, n)`` components, then ``TSNE(perplexity=min(30, (n-1)/3), init="pca",
      random_state=seed)``; under 4 rows, ``"pca"``.
    - ``"pca"``: the first two principal components (signs fixed).
    - ``"auto"`` (the default): ``"umap"`` when ``umap-learn`` is importable and there are at
      least :func:`umap_min_points` rows, else ``"pca_tsne"`` from ``TSNE_MIN_POINTS`` rows,
      else ``"pca"``.

    ``method_used`` is one of ``"umap"``, ``"pca_tsne"``, ``"pca"``, or ``"empty"`` (n=0) /
    ``"single"`` (n=1, the origin).
    """
    method = _ALIASES.get(method, method)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
        raise ValueError("n_neighbors must be an integer >= 2")
    if not (0.0 <= float(min_dist) <= 1.0):
        raise ValueError("min_dist must be in [0, 1]")
    x = _matrix(vectors)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2), np.float32), "empty"
    if n == 1:
        return np.zeros((1, 2), np.float32), "single"
    umap = None
    if method in ("auto", "umap"):
        if n < umap_min_points(int(n_neighbors)):
            method = _fallback(n)  # too few rows for UMAP (and no need to import it)
        else:
            umap = _import_umap()
            if umap is None and method == "umap":
                raise ImportError("method='umap' needs umap-learn, which cannot be imported")
            method = "umap" if umap is not None else _fallback(n)
    if method == "pca_tsne" and n < 4:
        method = "pca"
    if method == "pca":
        return _pca(x, 2, seed), "pca"
    if method == "umap":
        return _umap(umap, x, seed, int(n_neighbors), float(min_dist)), "umap"
    return _pca_tsne(x, seed), "pca_tsne"


def _exact_knn(x: np.ndarray, k: int, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-nearest neighbours of unit rows (each row's own index first, distance 0):
    ``(indices int32 (n, k), distances float32 (n, k))``, batched so memory stays ~batch x n."""
    n = x.shape[0]
    idx = np.empty((n, k), dtype=np.int32)
    dist = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sims = x[start:stop] @ x.T
        rows = np.arange(stop - start)
        sims[rows, rows + start] = np.inf  # self first, even among duplicates
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        d = 1.0 - np.take_along_axis(part_sims, order, axis=1)
        d[:, 0] = 0.0
        dist[start:stop] = np.maximum(d, 0.0)
    return idx, dist


def _umap(umap: Any, x: np.ndarray, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    precomputed = (None, None, None)
    if x.shape[0] <= UMAP_EXACT_KNN_MAX:
        precomputed = (*_exact_knn(x32, n_neighbors), None)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric="cosine",
        init="spectral",
        random_state=seed,
        n_jobs=1,  # what random_state forces anyway; saying it avoids umap's warning
        precomputed_knn=precomputed,
    )
    with warnings.catch_warnings():
        # without an NNDescent index UMAP cannot .transform() new points: never needed here
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        out = np.asarray(reducer.fit_transform(x32), dtype=np.float32)
    if not np.isfinite(out).all():  # never seen; a map with NaNs would be blank, so refuse it
        raise FloatingPointError("UMAP produced non-finite coordinates")
    return out


def _pca_tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = x.shape[0]
    reduced = _pca(x, min(PCA_DIMS, x.shape[1], n), seed)
    tsne = TSNE(
        n_components=2,
        perplexity=float(min(30.0, max(1.0, (n - 1) / 3))),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return np.asarray(tsne.fit_transform(reduced), dtype=np.float32)


def _pca(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(n_components, x.shape[0], x.shape[1])
    out = PCA(n_components=k, random_state=seed, svd_solver="full").fit_transform(x)
    if out.shape[1] < n_components:  # a 1-D input: pad so callers always get n_components
        out = np.hstack([out, np.zeros((out.shape[0], n_components - out.shape[1]))])
    # fix each component's sign (SVD sign is arbitrary): largest |value| positive
    signs = np.sign(out[np.abs(out).argmax(axis=0), np.arange(out.shape[1])])
    return (out * np.where(signs == 0, 1, signs)).astype(np.float32)


# -- rendering -------------------------------------------------------------------------------------


def json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&``, U+2028/U+2029
    escaped as ``\\uXXXX`` (still valid JSON, decoding to the same value)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def safe_thumbnail(url: str | None) -> str | None:
    """``url`` if it is a ``data:image/...;base64`` URI or a relative URL, else ValueError.

    Absolute URLs (``http:``, ``javascript:``, protocol-relative ``//host``) are refused: the
    page must work offline and never load anything from elsewhere.
    """
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ValueError("a thumbnail must be a string")
    if url.startswith("data:"):
        if _DATA_URI.match(url):
            return url
        raise ValueError("a data: thumbnail must be a base64 png/jpeg/gif/webp image")
    if _SCHEME.match(url) or url.startswith("//") or url.startswith("\\") or any(ord(c) < 32 for c in url):
        raise ValueError(f"thumbnail {url[:60]!r} is not a relative URL")
    return url


def thumbnail_data_uri(content: bytes, max_side: int = 64, quality: int = 70) -> str:
    """A small JPEG ``data:`` URI of an image (its file's bytes; longest side ``max_side``
    pixels), for ``render_map_html(thumbnails=...)``: about 1.5-3 KB per work at 64 px."""
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        image.load()
        rgb = image.convert("RGB")
    rgb.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _text_column(points: pl.DataFrame, name: str) -> list[str | None]:
    if name not in points.columns:
        return [None] * points.height
    col = points[name]
    if col.dtype == pl.List:
        return [", ".join(str(v) for v in (vals or []) if v) or None for vals in col.to_list()]
    return [None if v is None else str(v) for v in col.to_list()]


def _categories(values: list[str | None], order: Sequence[str] = ()) -> tuple[list[str], list[int]]:
    """(category names, code per point; -1 for missing), names ordered by frequency, or first
    in ``order`` (museums: the registry's order, so a museum keeps its colour on every map)."""
    counts: dict[str, int] = {}
    for v in values:
        if v is not None and v != "":
            counts[v] = counts.get(v, 0) + 1
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(counts, key=lambda k: (rank.get(k, len(rank)), -counts[k], k))
    code = {name: i for i, name in enumerate(names)}
    return names, [code.get(v, -1) if v not in (None, "") else -1 for v in values]


def map_data(
    points_df: pl.DataFrame,
    neighbours: Mapping[str, Sequence[str]] | None = None,
    thumbnails: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON document the page embeds (columnar, for 10,000+ points)."""
    for col in ("artwork_id", "x", "y"):
        if col not in points_df.columns:
            raise ValueError(f"points_df needs a {col!r} column")
    ids = [str(a) for a in points_df["artwork_id"].to_list()]
    if len(set(ids)) != len(ids):
        raise ValueError("artwork ids in points_df must be unique")
    xs = [float(v) for v in points_df["x"].cast(pl.Float64).to_list()]
    ys = [float(v) for v in points_df["y"].cast(pl.Float64).to_list()]
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("x and y must be finite numbers")
    position = {a: i for i, a in enumerate(ids)}
    thumbnails = thumbnails or {}
    neighbours = neighbours or {}
    source = _text_column(points_df, "source")
    if all(s is None for s in source):
        source = [a.split(":", 1)[0] if ":" in a else None for a in ids]
    colour_fields = {"museum": source}
    if "department" in points_df.columns:
        colour_fields["department"] = _text_column(points_df, "department")
    if "cluster" in points_df.columns:
        colour_fields["cluster"] = [
            None if v is None else f"cluster {v}" for v in points_df["cluster"].to_list()
        ]
    colour_by = {}
    for name, values in colour_fields.items():
        names, codes = _categories(values, SOURCES if name == "museum" else ())
        if name == "museum":  # the legend names each museum as the source registry does
            names = [f"{source_label(key)} ({key})" if source_label(key) != key else key for key in names]
        colour_by[name] = {"names": names, "codes": codes}
    maker_col = "artists" if "artists" in points_df.columns else "maker"
    return {
        "n": len(ids),
        "ids": ids,
        "x": [round(v, 5) for v in xs],
        "y": [round(v, 5) for v in ys],
        "title": _text_column(points_df, "title"),
        "maker": _text_column(points_df, maker_col),
        "museum": source,
        "date": _text_column(points_df, "date_text"),
        "url": [u if u and re.match(r"^https?://", u) else None for u in _text_column(points_df, "landing_url")],
        "thumb": [safe_thumbnail(thumbnails.get(a)) for a in ids],
        "nb": [[position[b] for b in neighbours.get(a, ()) if b in position and b != a] for a in ids],
        "colourBy": colour_by,
    }


def render_map_html(
    points_df: pl.DataFrame,
    neighbours: Mapping[str, Sequence[str]] | None = None,
    thumbnails: Mapping[str, str] | None = None,
    title: str = "artsim collection map",
    method: str | None = None,
    link_landing_pages: bool = False,
) -> str:
    """One self-contained HTML page (a string) showing ``points_df`` on an interactive canvas.

    ``points_df``: ``artwork_id``, ``x``, ``y`` (e.g. from :func:`project_2d`) and, optionally,
    ``title``, ``artists`` (list) or ``maker``, ``source``, ``department``, ``cluster``,
    ``date_text``, ``landing_url`` (only with ``link_landing_pages=True``: then http(s) landing
    pages are offered as "museum page" links on click; they are never loaded by the page).
    ``neighbours``: ``artwork_id -> nearest artwork ids`` (best first) listed on click;
    ids not on the map are ignored. ``thumbnails``: ``artwork_id -> data:image URI or relative
    URL``, drawn instead of dots once zoomed in. ``method`` (e.g. "tsne") is shown in the
    header. The page loads nothing from the network.
    """
    if not link_landing_pages and "landing_url" in points_df.columns:
        points_df = points_df.drop("landing_url")
    data = map_data(points_df, neighbours, thumbnails)
    data["method"] = method
    subtitle = f"{data['n']:,} works" + (f" · projection: {method}" if method else "")
    return (
        _PAGE.replace("%%TITLE%%", html.escape(title))
        .replace("%%SUBTITLE%%", html.escape(subtitle))
        .replace("%%DATA%%", json_for_script(data))
    )


# the look both map pages share: this single-file page and the chunked viewer (viewer.py)
MAP_CSS = """html,body{margin:0;height:100%;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;background:#fafafa}
#bar{position:absolute;top:0;left:0;right:0;height:44px;display:flex;gap:14px;align-items:center;padding:0 12px;background:#fff;border-bottom:1px solid #ddd;z-index:2}
#bar h1{font-size:16px;margin:0}
#bar .sub{color:#666}
#wrap{position:absolute;top:45px;left:0;right:320px;bottom:0}
canvas{display:block;width:100%;height:100%;cursor:crosshair}
#side{position:absolute;top:45px;right:0;width:320px;bottom:0;overflow:auto;background:#fff;border-left:1px solid #ddd;padding:10px;box-sizing:border-box}
#side h2{font-size:15px;margin:4px 0}
#side ol{padding-left:20px}
#side li{cursor:pointer;margin:3px 0}
#side li:hover{text-decoration:underline}
#legend div{display:flex;align-items:center;gap:6px;font-size:12px}
#legend span.sw{display:inline-block;width:10px;height:10px;border-radius:50%}
#tip{position:absolute;pointer-events:none;background:rgba(20,20,20,.88);color:#fff;padding:5px 8px;border-radius:4px;max-width:320px;font-size:12px;display:none;z-index:3}
.muted{color:#777}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'">
<title>%%TITLE%%</title>
<style>
""" + MAP_CSS + """</style>
</head>
<body>
<div id="bar"><h1>%%TITLE%%</h1><span class="sub">%%SUBTITLE%%</span>
<label>colour by <select id="colour"></select></label>
<label>find <input id="find" type="search" placeholder="title or maker"></label>
<button id="reset" type="button">reset view</button></div>
<div id="wrap"><canvas id="map"></canvas></div>
<div id="side"><div id="detail"><p class="muted">Hover a point for its title and maker; click it to list its nearest works. Drag to pan, scroll to zoom.</p></div><h2>Legend</h2><div id="legend"></div></div>
<div id="tip"></div>
<script type="application/json" id="artsim-data">%%DATA%%</script>
<script>
(function(){
"use strict";
var D=JSON.parse(document.getElementById("artsim-data").textContent);
var N=D.n, canvas=document.getElementById("map"), ctx=canvas.getContext("2d");
var tip=document.getElementById("tip"), detail=document.getElementById("detail");
var legend=document.getElementById("legend"), colourSel=document.getElementById("colour");
var PALETTE=["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#17becf","#bcbd22","#7f7f7f","#393b79","#e7969c","#637939","#8c6d31","#843c39","#7b4173","#3182bd","#31a354","#756bb1"];
var OTHER="#c8c8c8";
var minX=Infinity,maxX=-Infinity,minY=Infinity,maxY=-Infinity,i;
for(i=0;i<N;i++){minX=Math.min(minX,D.x[i]);maxX=Math.max(maxX,D.x[i]);minY=Math.min(minY,D.y[i]);maxY=Math.max(maxY,D.y[i]);}
if(!N){minX=maxX=minY=maxY=0;}
var view={s:1,tx:0,ty:0}, W=0, H=0, dpr=window.devicePixelRatio||1;
var selected=-1, hover=-1, matches=null, field=null, colours=[];
var images={};
function el(tag,text,cls){var e=document.createElement(tag);if(text!=null)e.textContent=text;if(cls)e.className=cls;return e;}
function clear(node){while(node.firstChild)node.removeChild(node.firstChild);}
function fit(){
  var spanX=(maxX-minX)||1, spanY=(maxY-minY)||1, pad=24;
  view.s=Math.min((W-2*pad)/spanX,(H-2*pad)/spanY);
  view.tx=(W-view.s*(minX+maxX))/2; view.ty=(H+view.s*(minY+maxY))/2;
}
function sx(j){return view.tx+view.s*D.x[j];}
function sy(j){return view.ty-view.s*D.y[j];}
function resize(){
  var r=canvas.parentNode.getBoundingClientRect(); var first=!W;
  W=Math.max(50,r.width); H=Math.max(50,r.height);
  canvas.width=Math.round(W*dpr); canvas.height=Math.round(H*dpr);
  ctx.setTransform(dpr,0,0,dpr,0,0); if(first)fit(); draw();
}
function setField(name){
  field=name; var c=D.colourBy[name]; colours=[];
  // every museum gets its own colour (past the palette: hues a golden angle apart); other fields fold their tail into "other"
  var all=(name==="museum");
  for(var k=0;k<c.names.length;k++)colours.push(k<PALETTE.length?PALETTE[k]:(all?"hsl("+Math.round((k*137.508)%360)+",60%,45%)":OTHER));
  clear(legend);
  var shown=all?c.names.length:Math.min(c.names.length,PALETTE.length);
  for(var k2=0;k2<shown;k2++){var row=el("div");var sw=el("span",null,"sw");sw.style.background=colours[k2];row.appendChild(sw);row.appendChild(el("span",c.names[k2]));legend.appendChild(row);}
  if(c.names.length>shown||c.codes.indexOf(-1)>=0){var row2=el("div");var sw2=el("span",null,"sw");sw2.style.background=OTHER;row2.appendChild(sw2);row2.appendChild(el("span",c.names.length>shown?"other / unknown":"unknown"));legend.appendChild(row2);}
  draw();
}
function colourOf(j){var code=D.colourBy[field].codes[j];return code>=0?colours[code]:OTHER;}
function thumb(j){
  var src=D.thumb[j]; if(!src)return null;
  var im=images[j]; if(!im){im=new Image();im.onload=function(){schedule();};im.src=src;images[j]=im;}
  return im.complete&&im.naturalWidth?im:null;
}
var pending=false;
function schedule(){if(!pending){pending=true;requestAnimationFrame(function(){pending=false;draw();});}}
function draw(){
  ctx.clearRect(0,0,W,H);
  var visible=[], j, x, y;
  for(j=0;j<N;j++){x=sx(j);y=sy(j);if(x>=-40&&x<=W+40&&y>=-40&&y<=H+40)visible.push(j);}
  var r=Math.max(1.5,Math.min(6,3*Math.sqrt(view.s/ (fitScale||view.s))));
  var useThumbs=visible.length<=400;
  if(selected>=0){
    ctx.strokeStyle="rgba(0,0,0,.35)";ctx.lineWidth=1;ctx.beginPath();
    var nb=D.nb[selected];
    for(var q=0;q<nb.length;q++){ctx.moveTo(sx(selected),sy(selected));ctx.lineTo(sx(nb[q]),sy(nb[q]));}
    ctx.stroke();
  }
  var byColour={};
  for(var v=0;v<visible.length;v++){j=visible[v];var c=colourOf(j);(byColour[c]=byColour[c]||[]).push(j);}
  var dim=matches!==null;
  for(var colour in byColour){
    var list=byColour[colour]; ctx.fillStyle=colour; ctx.globalAlpha=dim?0.15:0.85; ctx.beginPath();
    for(var m=0;m<list.length;m++){j=list[m];if(dim&&matches[j])continue;x=sx(j);y=sy(j);ctx.moveTo(x+r,y);ctx.arc(x,y,r,0,6.2832);}
    ctx.fill();
    if(dim){ctx.globalAlpha=1;ctx.beginPath();for(m=0;m<list.length;m++){j=list[m];if(!matches[j])continue;x=sx(j);y=sy(j);ctx.moveTo(x+r+1,y);ctx.arc(x,y,r+1,0,6.2832);}ctx.fill();}
  }
  ctx.globalAlpha=1;
  if(useThumbs){
    var size=Math.max(24,Math.min(96,view.s/(fitScale||view.s)*16));
    for(v=0;v<visible.length;v++){j=visible[v];var im=thumb(j);if(!im)continue;
      var ar=im.naturalWidth/im.naturalHeight, w=ar>=1?size:size*ar, h=ar>=1?size/ar:size;
      x=sx(j);y=sy(j);ctx.drawImage(im,x-w/2,y-h/2,w,h);ctx.strokeStyle=colourOf(j);ctx.lineWidth=2;ctx.strokeRect(x-w/2,y-h/2,w,h);}
  }
  function ring(j,colour,width){ctx.strokeStyle=colour;ctx.lineWidth=width;ctx.beginPath();ctx.arc(sx(j),sy(j),r+4,0,6.2832);ctx.stroke();}
  if(selected>=0){ring(selected,"#000",2.5);for(var q2=0;q2<D.nb[selected].length;q2++)ring(D.nb[selected][q2],"#444",1.2);}
  if(hover>=0)ring(hover,"#d00",2);
}
var fitScale=0;
function nearest(px,py){
  var best=-1, bd=144, j, dx, dy, d;
  for(j=0;j<N;j++){dx=sx(j)-px;dy=sy(j)-py;d=dx*dx+dy*dy;if(d<bd){bd=d;best=j;}}
  return best;
}
function label(j){var t=D.title[j]||"(untitled)";return t;}
function makerLine(j){var parts=[];if(D.maker[j])parts.push(D.maker[j]);if(D.date[j])parts.push(D.date[j]);if(D.museum[j])parts.push(D.museum[j]);return parts.join(" · ");}
function showDetail(j){
  clear(detail); if(j<0){detail.appendChild(el("p","Click a point to list its nearest works.","muted"));return;}
  detail.appendChild(el("h2",label(j)));
  var ml=makerLine(j); if(ml)detail.appendChild(el("div",ml,"muted"));
  detail.appendChild(el("div",D.ids[j],"muted"));
  if(D.url[j]){var a=el("a","museum page");a.href=D.url[j];a.target="_blank";a.rel="noopener noreferrer";detail.appendChild(a);}
  detail.appendChild(el("h2","Nearest works"));
  var nb=D.nb[j];
  if(!nb.length){detail.appendChild(el("p","none on this map","muted"));return;}
  var ol=el("ol");
  nb.forEach(function(k){var li=el("li",label(k));var s=makerLine(k);if(s){li.appendChild(el("div",s,"muted"));}
    li.addEventListener("click",function(){select(k,true);});ol.appendChild(li);});
  detail.appendChild(ol);
}
function select(j,centre){
  selected=j; showDetail(j);
  if(centre&&j>=0){view.tx+=W/2-sx(j);view.ty+=H/2-sy(j);}
  draw();
}
var drag=null;
canvas.addEventListener("mousedown",function(e){drag={x:e.clientX,y:e.clientY,tx:view.tx,ty:view.ty,moved:false};});
window.addEventListener("mouseup",function(e){
  if(drag&&!drag.moved){var r=canvas.getBoundingClientRect();select(nearest(e.clientX-r.left,e.clientY-r.top),false);}
  drag=null;});
canvas.addEventListener("mousemove",function(e){
  var r=canvas.getBoundingClientRect(), px=e.clientX-r.left, py=e.clientY-r.top;
  if(drag){var dx=e.clientX-drag.x, dy=e.clientY-drag.y;if(Math.abs(dx)+Math.abs(dy)>3)drag.moved=true;
    if(drag.moved){view.tx=drag.tx+dx;view.ty=drag.ty+dy;tip.style.display="none";schedule();return;}}
  var j=nearest(px,py);
  if(j!==hover){hover=j;schedule();}
  if(j<0){tip.style.display="none";return;}
  clear(tip); tip.appendChild(el("b",label(j))); var ml=makerLine(j); if(ml){tip.appendChild(el("div",ml));}
  tip.style.display="block"; tip.style.left=(e.clientX+14)+"px"; tip.style.top=(e.clientY+14)+"px";
});
canvas.addEventListener("mouseleave",function(){hover=-1;tip.style.display="none";schedule();});
canvas.addEventListener("wheel",function(e){
  e.preventDefault(); var r=canvas.getBoundingClientRect(), px=e.clientX-r.left, py=e.clientY-r.top;
  var f=Math.exp(-e.deltaY*0.0015); view.tx=px-(px-view.tx)*f; view.ty=py-(py-view.ty)*f; view.s*=f; schedule();
},{passive:false});
document.getElementById("reset").addEventListener("click",function(){fit();draw();});
document.getElementById("find").addEventListener("input",function(e){
  var q=e.target.value.trim().toLowerCase();
  if(!q){matches=null;draw();return;}
  matches=new Uint8Array(N);
  for(var j=0;j<N;j++){var t=((D.title[j]||"")+" "+(D.maker[j]||"")).toLowerCase();if(t.indexOf(q)>=0)matches[j]=1;}
  draw();
});
Object.keys(D.colourBy).forEach(function(name){var o=el("option",name);o.value=name;colourSel.appendChild(o);});
colourSel.addEventListener("change",function(){setField(colourSel.value);});
window.addEventListener("resize",resize);
field=Object.keys(D.colourBy)[0];
resize(); fitScale=view.s; setField(field);
})();
</script>
</body>
</html>
"""
