"""Search by words (`core.text_search`): tokens, filters, BM25, rank fusion, the fused search with
the real all-MiniLM-L6-v2, and the image ranking through a tiny CLIP's text tower."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core import text_search as ts
from artsim_pipeline.core.ann import build_index
from artsim_pipeline_tests.search_home import save_tiny_clip, search_works


@pytest.fixture(scope="module")
def works() -> pl.DataFrame:
    return pl.DataFrame(search_works(), schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32, "object_type": pl.String,
                                                          "medium": pl.String, "culture": pl.String, "department": pl.String})


@pytest.fixture(scope="module")
def catalog(works) -> ts.Catalog:
    return ts.Catalog(works)


@pytest.fixture(scope="module")
def text_vectors(works) -> np.ndarray:
    from artsim_pipeline.core.ml.text import artwork_text
    from artsim_pipeline.resources.models import embed_texts

    return embed_texts([artwork_text(r) for r in works.iter_rows(named=True)])


@pytest.fixture(scope="module")
def search(works, catalog, text_vectors) -> ts.TextSearch:
    from artsim_pipeline.resources.models import embed_texts

    keyword = ts.KeywordIndex.build(*zip(*ts.iter_documents(works)))
    return ts.TextSearch(catalog, keyword, build_index(works["artwork_id"].to_list(), text_vectors), lambda q: embed_texts([q])[0])


def ids(results) -> list[str]:
    return [r["artwork_id"] for r in results]


# -- tokens ----------------------------------------------------------------------------------------


def test_tokens_fold_case_accents_and_plurals():
    assert ts.fold("Interiør, Strandgade – Hammershøi Æbler") == "interior, strandgade – hammershoi aebler"
    assert ts.keyword_tokens("The Cats and the Lions") == ["cat", "lion"]
    # the ASCII shortcut folds exactly as the full path (NFKD, no combining marks, casefold) does
    import unicodedata

    def full(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text)
        return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()

    for text in ["Mother And CHILD, 1890-95", "KKSgb6775/3", "  tabs\tand\nnewlines ", "".join(map(chr, range(128)))]:
        assert ts.fold(text) == full(text)
    assert ts.identifier_key(" KKSgb6775/3 ") == "kksgb6775/3"
    doc = ts.keyword_document({"artwork_id": "smk:KKSgb6775/3", "source_id": "KKSgb6775/3", "title": "Landskab",
                               "artists": ["Vincent van Gogh"], "tags": ["Cypresses"], "classification": "tegning"})
    assert {"landskab", "vincent", "gogh", "cypress", "tegn", "kksgb6775/3", "smk:kksgb6775/3"} <= set(doc)
    assert ts.query_tokens("KKSgb6775/3")[-1] == "kksgb6775/3"
    assert "kksgb6775/3" not in ts.query_tokens("landscape KKSgb6775/3")  # only a query with no spaces is an identifier


def test_filters_from_user_input():
    assert ts.SearchFilters.clean(" ", "", None, "") == ts.SearchFilters()
    assert not ts.SearchFilters.clean().active
    f = ts.SearchFilters.clean("met", "  Paintings ", "-500", 1700)
    assert f == ts.SearchFilters("met", "Paintings", -500, 1700) and f.active
    with pytest.raises(ts.SearchQueryError, match="'from' is after 'to'"):
        ts.SearchFilters.clean(date_from=1800, date_to=1700)
    with pytest.raises(ts.SearchQueryError, match="must be a year"):
        ts.SearchFilters.clean(date_from="1800s")
    for empty in ("", "   ", None):
        with pytest.raises(ts.SearchQueryError, match="empty"):
            ts.clean_query(empty)


# -- the catalogue's filters ------------------------------------------------------------------------


def test_filters_by_museum_kind_and_overlapping_years(catalog):
    def allowed(**kw):
        return {catalog.ids[i] for i in np.flatnonzero(catalog.mask(ts.SearchFilters(**kw)))}

    assert catalog.mask(ts.SearchFilters()) is None
    assert allowed(source="smk") == {a for a in catalog.ids if a.startswith("smk:")}
    # kind: classification or object type, any case, on the normalised value
    assert allowed(kind="MALERI") == {"smk:KMS1", "smk:KMS20", "smk:KMS21"}
    assert allowed(kind="ewer") == allowed(kind="Ceramics") == {"met:12"}
    # years: the work's span overlaps the asked range; undated works never pass a year filter
    assert allowed(date_from=1885, date_to=1889) == {"met:1", "smk:KKSgb6775/3"}
    assert allowed(date_to=-500) == {"met:3"}
    assert "smk:KMS22" not in allowed(date_from=-10_000)
    assert allowed(source="met", kind="paintings", date_from=1700) == {"met:1", "met:2", "met:10"}


def test_impossible_filters_say_why(catalog):
    with pytest.raises(ts.SearchQueryError, match="did you mean Paintings"):
        catalog.mask(ts.SearchFilters(kind="Paintngs"))
    with pytest.raises(ts.SearchQueryError, match="no works from museum 'louvre'"):
        catalog.mask(ts.SearchFilters(source="louvre"))
    with pytest.raises(ts.SearchQueryError, match="no work matches these filters"):
        catalog.mask(ts.SearchFilters(source="smk", kind="Paintings"))
    assert catalog.kinds()[0] == ("Paintings", 5)


# -- BM25 and the fusion ---------------------------------------------------------------------------------


def test_keyword_index_ranks(works):
    keyword = ts.KeywordIndex.build(*zip(*ts.iter_documents(works)))
    docs, scores = keyword.search(ts.query_tokens("van Gogh cypresses"), 10)
    found = [keyword.ids[d] for d in docs]
    assert found[:2] == ["met:1", "smk:KKSgb6775/3"]  # both words beat one
    # "van" alone matches Rembrandt van Rijn too: plain BM25 ranks every partial match
    assert set(found) == {"met:1", "met:2", "smk:KKSgb6775/3", "met:15"} and list(scores) == sorted(scores, reverse=True)
    both, _ = keyword.search(ts.query_tokens("van Gogh cypresses"), 10, all_terms=True)
    assert {keyword.ids[d] for d in both} == {"met:1", "smk:KKSgb6775/3"}
    assert len(keyword.search(ts.query_tokens("van Gogh cypresses qwzx"), 10, all_terms=True)[0]) == 2  # unknown words ignored
    assert keyword.search(ts.query_tokens("pachyderm"), 10)[0].size == 0  # no shared word: nothing
    mask = np.array([a.startswith("smk:") for a in keyword.ids])
    assert [keyword.ids[d] for d in keyword.search(ts.query_tokens("gogh"), 10, mask)[0]] == ["smk:KKSgb6775/3"]
    # saving and loading it: resources/test_artefacts.py


def test_reciprocal_rank_fusion():
    fused = ts.reciprocal_rank_fusion({"a": ["x", "y", "z"], "b": ["y", "w"], "c": ["q"]}, {"a": 1.0, "b": 2.0, "c": 0.0}, rrf_k=10)
    scores = dict(fused)
    assert [item for item, _ in fused] == ["y", "w", "x", "z"]  # "q" weighs nothing
    assert scores["y"] == pytest.approx(1 / 12 + 2 / 11) and scores["w"] == pytest.approx(2 / 12)
    assert scores["x"] == pytest.approx(1 / 11)


# -- the search, with the real text model ---------------------------------------------------------------------


def test_paraphrases_are_found_by_meaning_not_by_words(search):
    """No work has the word "feline", "infant" or "pachyderm"; the meaning ranking finds them."""
    feline = search.search("feline", 3)
    assert {"met:11", "met:16"} <= set(ids(feline)) and all("text" in r["ranks"] for r in feline)
    assert search.search("feline", 3, only={"keyword"}) == []
    assert set(ids(search.search("mother holding her infant", 2))) == {"met:13", "smk:KMS21"}
    assert ids(search.search("pachyderm", 1)) == ["met:12"]
    top = search.search("feline", 5)
    assert set(top[0]) == {*ts.RESULT_KEYS, "ranks"} and ts.public(top[0]).keys() == set(ts.RESULT_KEYS)
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True) and 0 < top[-1]["score"] <= 1


def test_exact_names_and_numbers_still_win(search):
    assert ids(search.search("KMS1", 3))[0] == "smk:KMS1"
    assert ids(search.search("kksgb6775/3", 1)) == ["smk:KKSgb6775/3"]
    first = search.search("Irises", 3)[0]
    assert first["artwork_id"] == "met:2" and first["score"] == 1.0 and first["ranks"]["exact"] == 1
    assert ids(search.search("Hammershoi", 1)) == ["smk:KMS1"]  # "Hammershøi", typed without the ø
    assert set(ids(search.search("van gogh", 3))) == {"met:1", "met:2", "smk:KKSgb6775/3"}


def test_filters_apply_to_every_ranking(search):
    only_smk = search.search("feline", 10, ts.SearchFilters(source="smk"))
    assert only_smk and all(r["source"] == "smk" for r in only_smk) and ids(only_smk)[0] == "smk:KMS20"
    dated = search.search("van gogh", 10, ts.SearchFilters(date_from=1890))
    assert ids(dated)[0] == "met:2" and "met:1" not in ids(dated) and "smk:KKSgb6775/3" not in ids(dated)
    assert "smk:KMS1" not in ids(search.search("KMS1", 3, ts.SearchFilters(source="met")))
    with pytest.raises(ts.SearchQueryError):
        search.search("feline", 10, ts.SearchFilters(kind="Photographs"))
    with pytest.raises(ts.SearchQueryError, match="empty"):
        search.search("  ", 10)


def test_fusion_config_weights_and_floor(search):
    try:
        search.config = ts.FusionConfig(keyword_weight=0.0)
        assert all("keyword" not in r["ranks"] for r in search.search("van gogh cypresses", 10))
        search.config = ts.FusionConfig(min_text_similarity=0.99)
        assert search.search("feline", 10) == []  # nothing is that close
    finally:
        search.config = ts.FusionConfig()


# -- pixels: a dual image-text encoder's text tower -------------------------------------------------------------


def test_text_queries_reach_image_vectors_through_a_clip_text_tower(tmp_path, works, catalog, text_vectors):
    """A tiny CLIP built from a config, saved and loaded through `from_pretrained`: queries are
    embedded by its text tower and matched against image vectors in the same space."""
    from artsim_pipeline.resources.models import load_backbone
    from artsim_pipeline.resources.models import embed_texts

    clip = load_backbone(f"hf:{save_tiny_clip(tmp_path / 'clip')}")
    assert clip.has_text_tower and clip.pooling == "image_embeds"
    query = clip.embed_text(["a striped vessel"])
    assert query.shape == (1, clip.dim) and np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(clip.embed_text(["a striped vessel", "x"])[0], query[0], atol=1e-5)  # padding-independent
    rng = np.random.default_rng(0)
    image_vectors = rng.normal(size=(works.height, clip.dim)).astype(np.float32)
    target = works["artwork_id"].to_list().index("smk:KMS22")  # "Study of clouds": no word of the query
    image_vectors[target] = query[0] + 0.05 * image_vectors[target] / np.linalg.norm(image_vectors[target])
    keyword = ts.KeywordIndex.build(*zip(*ts.iter_documents(works)))
    search = ts.TextSearch(catalog, keyword, build_index(works["artwork_id"].to_list(), text_vectors), lambda q: embed_texts([q])[0],
                           build_index(works["artwork_id"].to_list(), image_vectors), lambda q: clip.embed_text([q])[0])
    assert search.rankers == ["keyword", "text", "image"]
    pictured = search.search("a striped vessel", 3, only={"image"})
    assert pictured[0]["artwork_id"] == "smk:KMS22"
    exact = (image_vectors / np.linalg.norm(image_vectors, axis=1, keepdims=True)) @ query[0]
    assert ids(pictured) == [works["artwork_id"][int(i)] for i in np.argsort(-exact)[:3]]
    assert "smk:KMS22" in ids(search.search("a striped vessel", 5))  # fused: found by the picture alone
    search.config = ts.FusionConfig(image_weight=0.0)
    assert all("image" not in r["ranks"] for r in search.search("a striped vessel", 15))


def test_a_vision_only_backbone_has_no_text_tower(tiny_vit):
    from artsim_pipeline.resources.models import load_backbone

    vit = load_backbone(f"hf:{tiny_vit}")
    assert not vit.has_text_tower
    with pytest.raises(ValueError, match="no text tower"):
        vit.embed_text(["anything"])
