"""The keyword index kept up to date (`core.keyword_index`): tokens reused for unchanged works and
made again for changed, new or differently tokenised ones; BM25 rebuilt from them, vectorised, to
exactly the scores of bm25s' own indexing and of a fresh build."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core import keyword_index as kw
from artsim_pipeline.core import text_search as ts
from artsim_pipeline_tests.search_home import search_works

SCHEMA = {"date_begin": pl.Int32, "date_end": pl.Int32, "object_type": pl.String, "medium": pl.String,
          "culture": pl.String, "department": pl.String}


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides=SCHEMA).sort("artwork_id")


def assert_same_scores(index: kw.KeywordIndex, reference: kw.KeywordIndex) -> None:
    """The same documents, vocabulary and, for every word, the same BM25 score of every document."""
    assert index.ids == reference.ids
    assert set(index.vocab) == set(reference.vocab)
    for token in reference.vocab:
        if token:
            np.testing.assert_array_equal(index.retriever.get_scores([token]), reference.retriever.get_scores([token]),
                                          err_msg=token)


def found(index: kw.KeywordIndex, query: str) -> list[str]:
    return [index.ids[d] for d in index.search(ts.query_tokens(query), 20)[0]]


def test_the_vectorised_build_scores_exactly_as_bm25s():
    rows = search_works() + [dict(search_works()[1], artwork_id=f"met:{100 + i}", source_id=str(100 + i),
                                  title="Irises irises " * i, tags=[]) for i in range(4)]  # repeated words, one empty title
    works = frame(rows)
    documents, _ = kw.update_documents(works, None, None)
    fast = kw.KeywordIndex.from_documents(documents)
    reference = kw.KeywordIndex.build(*zip(*kw.iter_documents(works)))
    assert_same_scores(fast, reference)
    for query in ("van Gogh cypresses", "irises", "madonna child", "KKSgb6775/3"):
        for all_terms in (False, True):
            a, b = fast.search(ts.query_tokens(query), 10, all_terms=all_terms), reference.search(ts.query_tokens(query), 10, all_terms=all_terms)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    assert "" in fast.vocab  # bm25s' empty token, as its own indexing adds it


def test_an_empty_collection_builds_an_index_that_finds_nothing():
    documents, stats = kw.update_documents(frame(search_works()).clear(), None, None)
    index = kw.KeywordIndex.from_documents(documents)
    assert len(index) == 0 and stats["tokenised"] == 0
    assert index.search(ts.query_tokens("irises"), 10)[0].size == 0


def test_kept_tokens_follow_adds_changes_and_deletions_like_a_fresh_build():
    before = frame(search_works())
    documents, stats = kw.update_documents(before, None, None)
    assert (stats["tokenised"], stats["reused"], stats["why_tokenised"]) == (15, 0, "no kept tokens")

    rows = {r["artwork_id"]: r for r in search_works()}
    rows["met:2"] = dict(rows["met:2"], title="Sunflowers")  # retitled: "irises" must no longer find it
    rows["met:11"] = dict(rows["met:11"], tags=["Cats", "Kittens"])
    rows["smk:KMS20"] = dict(rows["smk:KMS20"], artists=["Johan Thomas Lundbye"])
    rows["met:12"] = dict(rows["met:12"], source_id="12b")  # the museum's number, kept whole as an identifier
    del rows["smk:KMS22"]  # withdrawn
    rows["met:17"] = dict(rows["met:16"], artwork_id="met:17", source_id="17", title="Hippopotamus figurine", tags=["Hippopotamus"])
    after = frame(list(rows.values()))
    updated, stats = kw.update_documents(after, documents, stats["tokenizer"])
    assert (stats["tokenised"], stats["reused"], stats["removed"]) == (5, 10, 1)

    kept = kw.KeywordIndex.from_documents(updated)
    fresh_documents, _ = kw.update_documents(after, None, None)
    assert updated.equals(fresh_documents)
    assert_same_scores(kept, kw.KeywordIndex.from_documents(fresh_documents))
    assert_same_scores(kept, kw.KeywordIndex.build(*zip(*kw.iter_documents(after))))
    assert "met:2" not in found(kept, "irises") and found(kept, "sunflowers") == ["met:2"]
    assert "met:11" in found(kept, "kittens") and found(kept, "12b") == ["met:12"] and found(kept, "12") == []
    assert found(kept, "hippopotamus") == ["met:17"] and "smk:KMS22" not in kept.ids
    assert found(kept, "johan") == ["smk:KMS20"]


def test_a_changed_tokeniser_makes_every_kept_token_again(monkeypatch):
    works = frame(search_works())
    documents, stats = kw.update_documents(works, None, None)
    again, same = kw.update_documents(works, documents, stats["tokenizer"])
    assert (same["tokenised"], same["reused"]) == (0, 15) and again.equals(documents)

    def shouting_tokens(text: str) -> list[str]:
        return [w.upper() for w in kw._WORD.findall(text)]

    monkeypatch.setattr(kw, "keyword_tokens", shouting_tokens)
    assert kw.tokenizer_signature() != stats["tokenizer"]
    redone, changed = kw.update_documents(works, documents, stats["tokenizer"])
    assert (changed["tokenised"], changed["reused"], changed["why_tokenised"]) == (15, 0, "tokeniser changed")
    assert "IRISES" in redone.filter(pl.col("artwork_id") == "met:2")["tokens"][0].to_list()


def test_a_work_s_tokens_depend_only_on_the_kept_fields():
    """What `keyword_document` reads is what `keyword_sources` keeps (else a change of another
    field would leave stale tokens), and a change of any of them is seen."""

    class Recording(dict):
        def get(self, key, default=None):
            read.add(key)
            return super().get(key, default)

    read: set[str] = set()
    kw.keyword_document(Recording(search_works()[0]))
    assert read == set(kw.SOURCE_FIELDS)
    base = frame(search_works()[:1])
    documents, stats = kw.update_documents(base, None, None)
    for field, value in [("title", "Other"), ("artists", ["Other"]), ("classification", "Other"), ("object_type", "Other"),
                         ("medium", "Oil"), ("culture", "Other"), ("tags", ["Other"]), ("source_id", "1b"), ("date_text", "x")]:
        changed = base.with_columns(pl.Series(field, [value], dtype=base.schema[field]))
        _, redo = kw.update_documents(changed, documents, stats["tokenizer"])
        assert redo["tokenised"] == (0 if field == "date_text" else 1), field


def test_documents_repeating_a_work_are_refused():
    documents, _ = kw.update_documents(frame(search_works()), None, None)
    with pytest.raises(ValueError, match="repeat an artwork_id"):
        kw.KeywordIndex.from_documents(pl.concat([documents, documents.head(1)]))
