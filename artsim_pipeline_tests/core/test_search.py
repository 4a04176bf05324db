import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.ann import AnnConfig, build_index, synthetic_clustered_vectors
from artsim_pipeline.core.search import (
    RESULT_KEYS,
    UnknownArtworkError,
    calibrate_threshold,
    near_duplicates,
    similar,
    similar_to_vector,
)

N = 1200


@pytest.fixture(scope="module")
def world():
    x = synthetic_clustered_vectors(N, 32, n_clusters=30, seed=5)
    ids = [("met:" if i % 2 else "smk:") + str(i) for i in range(N)]
    # three exact cross-museum duplicates: smk:0 == met:1, smk:2 == met:3, smk:4 == met:5
    for i in (0, 2, 4):
        x[i + 1] = x[i]
    artworks = pl.DataFrame(
        {
            "artwork_id": ids,
            "title": [f"Work {i}" for i in range(N)],
            "artists": [[f"Artist {i % 7}"] for i in range(N)],
            "source": [a.split(":")[0] for a in ids],
            "landing_url": [f"https://example.org/{a}" for a in ids],
        }
    )
    index = build_index(ids, x, AnnConfig(num_threads=2), model_run_id="r")
    lookup = dict(zip(ids, x, strict=True))
    return ids, x, index, lookup, artworks


def test_similar_never_returns_the_query_and_carries_metadata(world):
    ids, x, index, lookup, artworks = world
    for aid in ids[:50]:
        res = similar(aid, 10, index, lookup, artworks)
        assert len(res) == 10
        assert aid not in {r["artwork_id"] for r in res}
    res = similar("smk:0", 5, index, lookup, artworks)
    assert tuple(res[0]) == RESULT_KEYS
    assert res[0]["artwork_id"] == "met:1" and res[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert res[0]["title"] == "Work 1" and res[0]["artists"] == ["Artist 1"]
    assert res[0]["source"] == "met" and res[0]["landing_url"] == "https://example.org/met:1"
    assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)


def test_similar_respects_source(world):
    ids, x, index, lookup, artworks = world
    for src in ("met", "smk"):
        res = similar("smk:10", 15, index, lookup, artworks, source=src)
        assert len(res) == 15
        assert all(r["source"] == src and r["artwork_id"].startswith(src + ":") for r in res)
        assert "smk:10" not in {r["artwork_id"] for r in res}
    assert similar("smk:10", 3, index, lookup, artworks, source="nope") == []


def test_similar_unknown_id_raises_keyerror(world):
    ids, x, index, lookup, artworks = world
    with pytest.raises(UnknownArtworkError) as err:
        similar("met:does-not-exist", 5, index, lookup, artworks)
    assert isinstance(err.value, KeyError) and "met:does-not-exist" in str(err.value)


def test_similar_without_lookup_uses_the_index_and_accepts_vector_frames(world):
    ids, x, index, lookup, artworks = world
    expected = similar("met:7", 8, index, lookup, artworks)
    assert similar("met:7", 8, index, None, artworks) == expected
    frame = pl.DataFrame({"artwork_id": ids[:20], "vector": [v.tolist() for v in x[:20]]})
    assert [r["artwork_id"] for r in similar("met:7", 8, index, frame, artworks)] == [
        r["artwork_id"] for r in expected
    ]
    # works missing from the artworks frame still come back, with empty metadata
    res = similar("met:7", 3, index, lookup, None)
    assert res[0]["title"] is None and res[0]["artists"] == [] and res[0]["source"] in ("met", "smk")


def test_similar_to_vector(world):
    ids, x, index, lookup, artworks = world
    res = similar_to_vector(x[42] * 3.0, 4, index, artworks)  # scale does not matter
    assert res[0]["artwork_id"] == ids[42]
    res = similar_to_vector(x[42], 4, index, artworks, exclude_ids=[ids[42]], source="smk")
    assert len(res) == 4 and all(r["source"] == "smk" for r in res)


def test_near_duplicates_cross_source(world):
    ids, x, index, lookup, artworks = world
    pairs = near_duplicates(index, ids, x, threshold=0.999)
    assert pairs.columns == ["artwork_id_a", "artwork_id_b", "score", "source_a", "source_b"]
    got = set(zip(pairs["artwork_id_a"], pairs["artwork_id_b"], strict=True))
    assert {("met:1", "smk:0"), ("met:3", "smk:2"), ("met:5", "smk:4")} <= got
    assert (pairs["source_a"] != pairs["source_b"]).all()
    assert pairs.height == len(got)  # each pair once
    # same-source pairs appear only when asked for
    x2 = x.copy()
    x2[9] = x2[11]  # met:9 == met:11
    idx2 = build_index(ids, x2, AnnConfig(num_threads=2))
    assert ("met:11", "met:9") not in set(
        zip(*near_duplicates(idx2, ids, x2, 0.999)[["artwork_id_a", "artwork_id_b"]], strict=True)
    )
    within = near_duplicates(idx2, ids, x2, 0.999, cross_source_only=False)
    assert ("met:11", "met:9") in set(zip(within["artwork_id_a"], within["artwork_id_b"], strict=True))


def test_calibrate_threshold():
    pos = np.linspace(0.80, 0.99, 100)
    assert calibrate_threshold(pos, target_recall=0.95) == pytest.approx(pos[5])
    neg = np.linspace(0.0, 0.9, 1000)
    t = calibrate_threshold(pos, neg, target_recall=0.95, max_false_positive_rate=0.01)
    assert (neg >= t).mean() <= 0.01 and t > pos[5]
    assert calibrate_threshold(pos, np.array([0.1, 0.2])) == pytest.approx(pos[5])
    with pytest.raises(ValueError):
        calibrate_threshold([])
