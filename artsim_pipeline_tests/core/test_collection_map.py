"""The 2-D projection and the self-contained collection map page."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.collection_map import (
    json_for_script,
    map_data,
    project_2d,
    render_map_html,
    safe_thumbnail,
    thumbnail_data_uri,
)

EVIL = "<script>alert(1)</script>"
PNG_1PX = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAH"
    "ggJ/PchI7wAAAABJRU5ErkJggg=="
)


def _embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="artsim-data">(.*?)</script>', page, re.S)
    assert m, "the data block is missing"
    return json.loads(m.group(1))


def _points(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    return pl.DataFrame(
        {
            "artwork_id": [f"met:{i}" if i % 2 else f"smk:KMS{i}/2" for i in range(n)],
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "title": [EVIL if i == 0 else f"Værk «{i}» & </script><!--" for i in range(n)],
            "artists": [["Hammershøi, Vilhelm", "<b>bold</b>"]] + [[f"Maker {i % 7}"] for i in range(1, n)],
            "source": ["smk" if i % 2 == 0 else "met" for i in range(n)],
            "department": [None if i % 5 == 0 else f"Dept {i % 3}" for i in range(n)],
            "cluster": [i % 4 for i in range(n)],
            "landing_url": [f"https://example.org/{i}" for i in range(n)],
        }
    )


def _two_clusters(n_each: int = 40, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two tight clusters around orthogonal directions (cosine distance ~1 apart), labels 0/1."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:2] * 3.0
    x = np.vstack([c + rng.normal(scale=0.3, size=(n_each, dim)) for c in centres])
    return x, np.repeat([0, 1], n_each)


def _separated(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> bool:
    """Every point's k nearest 2-D neighbours share its label, and the two centroids lie further
    apart than three times the larger cluster's mean radius."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    if not (labels[nn] == labels[:, None]).all():
        return False
    centroids = [coords[labels == c].mean(axis=0) for c in (0, 1)]
    radius = max(np.linalg.norm(coords[labels == c] - centroids[c], axis=1).mean() for c in (0, 1))
    return bool(np.linalg.norm(centroids[0] - centroids[1]) > 3 * radius)


def test_umap_is_the_default_deterministic_and_separates_clusters():
    x, labels = _two_clusters()
    coords, method = project_2d(x, seed=0)
    assert method == "umap" and coords.shape == (80, 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    assert np.array_equal(coords, project_2d(x, seed=0)[0])  # same input and seed, same map
    assert np.array_equal(coords, project_2d(x, seed=0, method="umap")[0])
    assert _separated(coords, labels)
    assert not _separated(np.random.default_rng(0).normal(size=coords.shape), labels)  # the check has teeth
    assert not np.array_equal(coords, project_2d(x, seed=1)[0])  # the seed is used
    other, method = project_2d(x, seed=0, n_neighbors=5, min_dist=0.5)  # the knobs reach UMAP
    assert method == "umap" and not np.array_equal(coords, other) and _separated(other, labels)


def test_exact_knn_graph_matches_brute_force():
    from artsim_pipeline.core.collection_map import _exact_knn, _matrix

    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 12))
    x[7] = x[3]  # a duplicate: each copy must still list itself first
    unit = _matrix(x).astype(np.float32)
    idx, dist = _exact_knn(unit, 6, batch=16)  # several batches
    assert idx.shape == dist.shape == (50, 6) and idx.dtype == np.int32 and dist.dtype == np.float32
    assert (idx[:, 0] == np.arange(50)).all() and (dist[:, 0] == 0).all()
    assert idx[3, 1] == 7 and idx[7, 1] == 3 and dist[3, 1] < 1e-6
    expected = 1 - unit @ unit.T
    for i in range(50):
        np.testing.assert_allclose(dist[i], np.sort(expected[i])[:6].clip(0), atol=1e-5)
        np.testing.assert_allclose(dist[i], expected[i, idx[i]].clip(0) * (idx[i] != i), atol=1e-5)
    assert (np.diff(dist, axis=1) >= -1e-7).all()


def test_fallback_projections_are_deterministic_and_named(monkeypatch):
    import artsim_pipeline.core.collection_map as cm

    rng = np.random.default_rng(0)
    tiny = rng.normal(size=(6, 8))
    coords, method = project_2d(tiny, seed=3)  # too few rows for UMAP or t-SNE
    assert method == "pca" and coords.shape == (6, 2) and coords.dtype == np.float32
    assert np.array_equal(coords, project_2d(tiny, seed=3)[0])
    assert project_2d(tiny, method="umap")[1] == "pca"  # asked for UMAP, too few rows: says what ran
    assert project_2d(rng.normal(size=(2, 8)))[1] == "pca"
    assert project_2d(rng.normal(size=(cm.umap_min_points() - 1, 8)))[1] == "pca"
    x, _ = _two_clusters(20, 8)
    coords, method = project_2d(x, seed=0, method="pca_tsne")
    assert method == "pca_tsne" and coords.shape == (40, 2) and np.isfinite(coords).all()
    again, method = project_2d(x, seed=0, method="tsne")  # the old name still works
    assert method == "pca_tsne" and np.array_equal(coords, again)
    again, method = project_2d(x, seed=0, n_neighbors=39, method="umap")  # 40 rows < 39 + 2
    assert method == "pca_tsne" and np.array_equal(coords, again)
    assert project_2d(x, method="pca")[1] == "pca"
    assert project_2d(np.zeros((0, 8)))[1] == "empty"
    assert project_2d(np.ones((1, 8)))[1] == "single"
    for bad in ({"method": "magic"}, {"n_neighbors": 1}, {"n_neighbors": 2.5}, {"min_dist": -0.1}, {"min_dist": 1.5}):
        with pytest.raises(ValueError):
            project_2d(x, **bad)
    # umap-learn missing (or numba broken): "auto" falls back, an explicit "umap" is an error
    monkeypatch.setattr(cm, "_import_umap", lambda: None)
    again, method = project_2d(x, seed=0)
    assert method == "pca_tsne" and np.array_equal(coords, again)
    with pytest.raises(ImportError):
        project_2d(x, method="umap")


def test_importing_the_module_does_not_import_umap():
    code = "import sys, artsim_pipeline.core.collection_map; print(sorted({'umap', 'numba', 'pynndescent', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_json_for_script_is_inert_and_round_trips():
    value = {"t": "</script><script>alert(1)</script> & <!-- \u2028 ok"}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_page_holds_every_point_and_is_self_contained():
    points = _points(60)
    ids = points["artwork_id"].to_list()
    neighbours = {a: [ids[(i + 1) % 60], ids[(i + 2) % 60], "met:not-on-map"] for i, a in enumerate(ids)}
    thumbs = {ids[0]: PNG_1PX, ids[1]: "thumbs/met_1.jpg"}
    page = render_map_html(points, neighbours, thumbs, title="Map <&> of SMK", method="tsne")
    data = _embedded(page)
    assert data["ids"] == ids and data["n"] == 60
    assert data["title"][0] == EVIL and data["maker"][0] == "Hammershøi, Vilhelm, <b>bold</b>"
    assert data["nb"][0] == [1, 2]  # indices into the points; unknown ids dropped
    assert data["thumb"][:3] == [PNG_1PX, "thumbs/met_1.jpg", None]
    assert set(data["colourBy"]) == {"museum", "department", "cluster"}
    assert data["colourBy"]["department"]["codes"][0] == -1
    # escaping: nothing a title holds can become markup
    assert EVIL not in page and "<b>bold</b>" not in page and "</script><!--" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<title>Map &lt;&amp;&gt; of SMK</title>" in page
    assert "innerHTML" not in page and "outerHTML" not in page and "document.write" not in page
    # self-contained: no external scripts, styles, links, fonts or imports
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)\s*=", page, re.I)
    assert not re.search(r"https?://|url\(|@import|//cdn", page, re.I)  # landing pages left out by default
    linked = render_map_html(points, neighbours, link_landing_pages=True)
    assert _embedded(linked)["url"][3] == "https://example.org/3"


def test_thumbnails_must_stay_local():
    assert safe_thumbnail(None) is None
    assert safe_thumbnail("../images/ab.jpg") == "../images/ab.jpg"
    for bad in ("https://evil.example/x.png", "//evil.example/x.png", "javascript:alert(1)",
                "data:text/html;base64,PHNjcmlwdD4=", "data:image/svg+xml,<svg/onload=alert(1)>"):
        with pytest.raises(ValueError):
            safe_thumbnail(bad)
    with pytest.raises(ValueError):
        render_map_html(_points(3), {}, {"smk:KMS0/2": "https://evil.example/x.png"})


def test_thumbnail_data_uri():
    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (300, 150), (200, 30, 30)).save(png, format="PNG")
    uri = thumbnail_data_uri(png.getvalue(), max_side=48)
    assert safe_thumbnail(uri) == uri

    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        assert im.size == (48, 24)


def test_bad_points_are_refused():
    with pytest.raises(ValueError):
        map_data(pl.DataFrame({"artwork_id": ["a"], "x": [0.0]}))
    with pytest.raises(ValueError):
        map_data(pl.DataFrame({"artwork_id": ["a", "a"], "x": [0.0, 1.0], "y": [0.0, 1.0]}))
    with pytest.raises(ValueError):
        map_data(pl.DataFrame({"artwork_id": ["a"], "x": [float("nan")], "y": [0.0]}))


def test_ten_thousand_points():
    n = 10_000
    rng = np.random.default_rng(2)
    points = pl.DataFrame(
        {"artwork_id": [f"met:{i}" for i in range(n)], "x": rng.normal(size=n), "y": rng.normal(size=n),
         "title": [f"Work {i}" for i in range(n)], "cluster": rng.integers(0, 40, size=n)}
    )
    neighbours = {f"met:{i}": [f"met:{(i + j) % n}" for j in range(1, 11)] for i in range(n)}
    page = render_map_html(points, neighbours, {})
    data = _embedded(page)
    assert data["n"] == n and len(data["nb"][n - 1]) == 10
    assert len(page) < 4_000_000  # columnar JSON keeps the page small
    assert "<canvas" in page
