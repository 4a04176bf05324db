"""`artsim serve` with every museum of the registry: one neighbour section per museum, the museum
filter lists them all, and "same maker" holds across museums that spell the maker differently."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from artsim_pipeline.core.ann import build_index
from artsim_pipeline.core.sources import API_SOURCES, SOURCES
from artsim_pipeline.resources import artefacts as store
from artsim_pipeline.web.app import create_app
from artsim_pipeline_tests.search_home import write_search_index

# Courbet and Rembrandt as each museum writes them after normalisation
WORKS = [
    ("met:1", "Woman with a Parrot", ["Gustave Courbet"]),
    ("met:2", "Self-Portrait", ["Rembrandt (Rembrandt van Rijn)"]),
    ("smk:KMS1", "Landscape", ["Gustave Courbet"]),
    ("cma:137259", "Mme L... (Laure Borreau)", ["Gustave Courbet"]),
    ("cma:124089", "Portrait of a Woman", ["Rembrandt van Rijn"]),
    ("aic:1", "The Rock of Hautepierre", ["Gustave Courbet"]),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    rows = []
    for artwork_id, title, artists in WORKS:
        source, source_id = artwork_id.split(":", 1)
        rows.append(dict(artwork_id=artwork_id, source=source, source_id=source_id, title=title, artists=artists,
                         culture="French", classification="Painting", tags=[], date_begin=1860, date_end=1870,
                         date_text="1860s", department=None, landing_url=f"https://example.org/{source_id}", image_sha256=None))
    frame = pl.DataFrame(rows, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32})
    (home / "storage" / "artworks").mkdir(parents=True)
    for source in {r["source"] for r in rows}:
        frame.filter(pl.col("source") == source).write_parquet(home / "storage" / "artworks" / f"{source}.parquet")
    vectors = np.random.default_rng(0).normal(size=(len(rows), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [r["artwork_id"] for r in rows]
    pl.DataFrame({"artwork_id": ids, "vector": vectors.tolist()}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    store.write_ann_index(build_index(ids, vectors), home / "indexes" / "ann_index")
    write_search_index(home, frame)
    with TestClient(create_app(home)) as c:
        yield c


def test_a_work_page_has_a_section_per_museum_and_same_maker_across_them(client):
    page = client.get("/work/cma:137259").text
    for source in SOURCES:
        assert f"Most similar at {source}</h2>" in page
        assert f'<option value="{source}"' in page
    assert page.count("same maker: Gustave Courbet") == 3  # met:1, smk:KMS1 and aic:1, three spellings of one maker
    rembrandt = client.get("/work/cma:124089").text
    assert "same maker: Rembrandt van Rijn" in rembrandt  # the Met's "Rembrandt (Rembrandt van Rijn)"


@pytest.mark.parametrize("source", API_SOURCES)
def test_the_museum_filter_takes_every_museum(client, source):
    results = client.get("/api/similar/met:1", params={"k": 5, "source": source}).json()
    assert results and {r["source"] for r in results} == {source}
