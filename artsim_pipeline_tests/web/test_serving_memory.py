"""Serving in bounded memory: `/api/similar` and the pages read the query vector from the index
and only the result rows from memory-mapped serving copies of `artworks`, never the whole table,
and answer exactly what the full-table path answered."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from artsim_pipeline.core.ann import build_index, synthetic_clustered_vectors
from artsim_pipeline.core.search import ArtworkRows, UnknownArtworkError, similar, similar_to_vector
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline.service import SimilarityService
from artsim_pipeline.web.app import create_app

SCORE_TOLERANCE = 1e-3  # float16 resolution near 1: what a half-precision copy of the vectors would allow


@pytest.fixture(scope="module")
def home(tmp_path_factory, sample_artworks):
    """The bundled sample's artworks (met, smk), clustered vectors, their index, as stored."""
    home = tmp_path_factory.mktemp("serving")
    (home / "storage" / "artworks").mkdir(parents=True)
    for source in ("met", "smk"):
        sample_artworks.filter(pl.col("source") == source).write_parquet(home / "storage" / "artworks" / f"{source}.parquet")
    ids = sample_artworks["artwork_id"].unique(maintain_order=True).to_list()
    vectors = synthetic_clustered_vectors(len(ids), 32, n_clusters=40, seed=3)
    pl.DataFrame({"artwork_id": ids, "vector": vectors.tolist()}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    artefacts.write_ann_index(build_index(ids, vectors), home / "indexes" / "ann_index")
    return home


@pytest.fixture(scope="module")
def full_tables(home):
    """What serving used to hold: every artworks row and every vector, as frames."""
    artworks = pl.concat([pl.read_parquet(home / "storage" / "artworks" / f"{s}.parquet") for s in ("met", "smk")],
                         how="diagonal_relaxed")
    return artworks, pl.read_parquet(home / "storage" / "artwork_vectors.parquet")


def _same(new: list[dict], old: list[dict]) -> None:
    assert [r["artwork_id"] for r in new] == [r["artwork_id"] for r in old]
    for a, b in zip(new, old, strict=True):
        assert abs(a["score"] - b["score"]) <= SCORE_TOLERANCE
        assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}


def test_similar_answers_what_the_full_table_path_answered(home, full_tables):
    artworks, vectors = full_tables
    service = SimilarityService(home)
    ids = vectors["artwork_id"].to_list()
    rng = np.random.default_rng(0)
    for aid in rng.choice(ids, size=120, replace=False).tolist():
        for source in (None, "met", "smk"):
            _same(service.similar(aid, 10, source=source),
                  similar(aid, 10, service.index, vectors, artworks, source=source))
    query = rng.normal(size=32).astype(np.float32)
    _same(service.similar_to_vector(query, 12), similar_to_vector(query, 12, service.index, artworks))
    assert "artworks" not in service.__dict__ and "vectors" not in service.__dict__  # neither table was loaded


def test_rows_are_the_artworks_rows(home, full_tables):
    artworks, _ = full_tables
    rows = SimilarityService(home).artwork_rows
    expected = artworks.unique("artwork_id", keep="first", maintain_order=True)
    assert len(rows) == expected.height
    for row in expected.iter_rows(named=True):
        assert rows.row(row["artwork_id"]) == row
    assert rows.row("met:no-such-work") is None and "smk:nope" not in rows and "nope" not in rows
    some = expected["artwork_id"].to_list()[:5]
    assert rows.having_rows(["met:nope", *some, "x:1"]) == some


def test_unknown_ids_give_the_same_errors(home, full_tables):
    artworks, vectors = full_tables
    service = SimilarityService(home)
    for unknown in ("met:does-not-exist", "smk:", "nope"):
        with pytest.raises(UnknownArtworkError) as new:
            service.similar(unknown, 5)
        with pytest.raises(UnknownArtworkError) as old:
            similar(unknown, 5, service.index, vectors, artworks)
        assert str(new.value) == str(old.value)
    with TestClient(create_app(home)) as client:
        answer = client.get("/api/similar/met:does-not-exist")
    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown artwork id 'met:does-not-exist': no vector for it and not in the index",
                             "detail": "unknown artwork id 'met:does-not-exist': no vector for it and not in the index",
                             "artwork_id": "met:does-not-exist"}


def test_serving_reads_only_the_rows_it_answers_with(home, monkeypatch):
    """Once the serving copies exist, no table is read again, and a request reads k rows."""
    with TestClient(create_app(home)) as client:
        assert client.get("/api/similar/met:436535?k=3").status_code in (200, 404)  # writes the copies if missing
        reads: list[tuple] = []
        real = TableStore.read_table
        monkeypatch.setattr(TableStore, "read_table", lambda self, *a, **kw: reads.append(a) or real(self, *a, **kw))
        service = client.app.state.artsim.service
        ids = service.index.ids[:20]
        before = service.artwork_rows.rows_read
        for aid in ids:
            answer = client.get(f"/api/similar/{aid}?k=7")
            assert answer.status_code == 200 and len(answer.json()) == 7
        assert service.artwork_rows.rows_read - before == 7 * len(ids)  # the results' rows, nothing more
        assert client.get(f"/api/similar/{ids[0]}?k=5&source=smk").status_code == 200
        assert reads == []
        assert isinstance(service.artwork_rows, ArtworkRows)
        assert "artworks" not in service.__dict__ and "vectors" not in service.__dict__
    # a new process finds the copies stored and reads no table either
    fresh = SimilarityService(home)
    assert fresh.similar(ids[0], 4) and reads == []


def test_a_changed_artworks_table_is_served_from_a_new_copy(tmp_path, sample_artworks):
    home = tmp_path
    works = sample_artworks.filter(pl.col("source") == "smk")
    (home / "storage" / "artworks").mkdir(parents=True)
    works.write_parquet(home / "storage" / "artworks" / "smk.parquet")
    ids = works["artwork_id"].to_list()
    artefacts.write_ann_index(build_index(ids, synthetic_clustered_vectors(len(ids), 8, n_clusters=3)), home / "indexes" / "ann_index")
    with TestClient(create_app(home)) as client:
        first = client.get(f"/api/similar/{ids[0]}?k=1").json()[0]
        renamed = works.with_columns(pl.concat_str(pl.lit("Renamed: "), pl.col("title").fill_null("")).alias("title"))
        renamed.write_parquet(home / "storage" / "artworks" / "smk.parquet")
        again = client.get(f"/api/similar/{ids[0]}?k=1").json()[0]
    assert again["artwork_id"] == first["artwork_id"] and again["title"].startswith("Renamed: ")
    copies = list((home / artefacts.SERVING_ARTWORKS_DIR).glob("smk-*.arrow"))
    assert len(copies) == 1  # the stale copy is gone


def test_serving_copies_are_written_in_sorted_batches(tmp_path, sample_artworks, monkeypatch):
    """Rows go out in batches (never a sorted copy of the whole table); duplicates keep their first row."""
    works = sample_artworks.filter(pl.col("source") == "smk")
    duplicate = works.head(1).with_columns(pl.lit("a later copy").alias("title"))
    frame = pl.concat([works.reverse(), duplicate], how="diagonal_relaxed")
    monkeypatch.setattr(artefacts.serving, "SERVING_BATCH_ROWS", 7)
    table = artefacts.read_serving_artworks(artefacts.write_serving_artworks(frame, tmp_path / "smk.arrow"))
    assert table.column("artwork_id").num_chunks > 1
    assert table.column("artwork_id").to_pylist() == sorted(works["artwork_id"].to_list())
    rows = ArtworkRows({"smk": table})
    for row in frame.unique("artwork_id", keep="first", maintain_order=True).iter_rows(named=True):
        assert rows.row(row["artwork_id"]) == row
    assert rows.row(duplicate["artwork_id"][0])["title"] != "a later copy"


def test_the_work_page_needs_neither_the_table_nor_the_search_catalogue(home, full_tables):
    """Its kinds (the filter form) come from the serving copies, counted as the catalogue counts them."""
    from artsim_pipeline.core.text_search import Catalog

    artworks, _ = full_tables
    with TestClient(create_app(home)) as client:
        service = client.app.state.artsim.service
        work = service.index.ids[0]
        page = client.get(f"/work/{work}")
        assert page.status_code == 200
        assert "artworks" not in service.__dict__ and "catalog" not in service.__dict__
        assert service.artwork_rows.kinds() == Catalog(artworks).kinds()
        assert client.get(f"/work/{work}?type=Paintings").status_code in (200, 422)  # a filter does build it
        assert "catalog" in service.__dict__


def test_the_search_form_alone_does_not_build_the_search_catalogue(home, full_tables):
    artworks, _ = full_tables
    with TestClient(create_app(home)) as client:
        service = client.app.state.artsim.service
        page = client.get("/")
        assert page.status_code == 200
        assert f"Search the {artworks['artwork_id'].n_unique():,} works" in page.text
        assert "artworks" not in service.__dict__ and "catalog" not in service.__dict__
