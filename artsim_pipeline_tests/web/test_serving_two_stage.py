"""`artsim serve` over a two-stage `ann_index` (hnswlib over projected vectors, the full vectors
float16 in a file): `/api/similar` answers exact search's neighbours with their exact cosines,
reading the candidates' rows from that file; the service never loads the vectors table."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from artsim_pipeline.core.ann import AnnConfig, brute_force_topk, build_index, normalize, synthetic_clustered_vectors
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.artefacts.row_file import RowFile
from artsim_pipeline.service import SimilarityService
from artsim_pipeline.web.app import create_app

DIM, SEARCH_DIM = 96, 24
SCORE_TOLERANCE = 2e-3  # float16 full vectors


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_artworks):
    """The sample's artworks (met, smk) with low-rank clustered 96-d vectors under a two-stage
    index (no artwork_vectors table: serving must not need it)."""
    home = tmp_path_factory.mktemp("two-stage")
    (home / "storage" / "artworks").mkdir(parents=True)
    for source in ("met", "smk"):
        sample_artworks.filter(pl.col("source") == source).write_parquet(home / "storage" / "artworks" / f"{source}.parquet")
    ids = sample_artworks["artwork_id"].unique(maintain_order=True).to_list()
    rng = np.random.default_rng(4)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, 16)))
    vectors = normalize(synthetic_clustered_vectors(len(ids), 16, n_clusters=30, seed=4) @ basis.T.astype(np.float32)
                        + rng.standard_normal((len(ids), DIM)).astype(np.float32) * 0.01)
    index = build_index(ids, vectors, AnnConfig(num_threads=2, search_dim=SEARCH_DIM), model_run_id="run-1:backbone")
    artefacts.write_ann_index(index, home / "indexes" / "ann_index")
    return home, ids, vectors


def test_api_similar_answers_exact_neighbours_from_the_stored_float16_vectors(served):
    home, ids, vectors = served
    rng = np.random.default_rng(0)
    queries = rng.choice(len(ids), size=40, replace=False)
    exact, exact_scores = brute_force_topk(vectors, vectors[queries], 11)
    with TestClient(create_app(home)) as client:
        for q, row, scores in zip(queries, exact, exact_scores, strict=True):
            answer = client.get(f"/api/similar/{ids[q]}?k=10")
            assert answer.status_code == 200
            got = answer.json()
            expected = [(ids[i], s) for i, s in zip(row, scores, strict=True) if i != q][:10]
            # ties aside, the same works in the same order, with the full vectors' cosines
            for result, (artwork_id, score) in zip(got, expected, strict=True):
                assert abs(result["score"] - score) <= SCORE_TOLERANCE
                if result["artwork_id"] != artwork_id:
                    assert abs(float(vectors[ids.index(result["artwork_id"])] @ vectors[q]) - score) <= SCORE_TOLERANCE
        service = client.app.state.artsim.service
        assert service.index.two_stage and isinstance(service.index._s.full, RowFile)
        assert service.index.hnsw.dim == SEARCH_DIM and service.index.dim == DIM
        assert "vectors" not in service.__dict__


def test_the_served_vector_source_comes_from_the_index(served):
    home, _, _ = served
    service = SimilarityService(home)
    assert service.served_vector_source() == "backbone"  # there is no artwork_vectors table to read
    assert "vectors" not in service.__dict__
