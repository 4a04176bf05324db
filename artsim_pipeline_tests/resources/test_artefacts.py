"""The storage layout (`resources/artefacts/`): each stored artefact written and read back
where the layout says, locally (the S3 forms: `prod/`)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
from PIL import Image

from artsim_pipeline.core.ann import AnnConfig, AnnIndex, build_index, synthetic_clustered_vectors
from artsim_pipeline.core.images import check_image, image_relpath
from artsim_pipeline.core.raw_store import FetchResult, merge_results
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.artefacts import FetchCheckpoint, read_ann_index, write_ann_index
from artsim_pipeline.resources.storage import ArtsimStorage


def ok(source_id, text):
    return FetchResult(source_id, "ok", raw_json=text, modified="2024-01-01")


def png_bytes(width=32, height=16):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_valid_image_is_stored_once_by_content(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    content = png_bytes()
    checked = check_image(content)
    relpath = image_relpath(checked.sha256, checked.extension)
    artefacts.write_image(storage, relpath, content)
    first = artefacts.image_file(storage, relpath)
    artefacts.write_image(storage, relpath, content)
    second = artefacts.image_file(storage, relpath)
    assert first == second and first.read_bytes() == content
    assert first.name.startswith(checked.sha256)
    assert first.parent.parent == artefacts.local_images_dir(tmp_path)
    assert artefacts.stored_images(storage) == {relpath}
    assert artefacts.read_image(storage, relpath) == content and artefacts.read_image(storage, "00/none.png") is None


def test_fetch_state_round_trips_under_state(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    assert artefacts.read_state(storage, "raw_objects/met") == {}
    artefacts.write_state(storage, "raw_objects/met", {"cursor": "2024-01-01"})
    assert artefacts.read_state(storage, "raw_objects/met") == {"cursor": "2024-01-01"}
    assert (tmp_path / "state" / "raw_objects" / "met.json").is_file()


def test_the_fetch_journal_lives_under_the_local_home(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    assert FetchCheckpoint.of(storage, "raw_objects", "met").path == tmp_path / "checkpoints" / "raw_objects" / "met.jsonl"


def test_checkpoint_survives_a_cut_line_and_compacts_against_the_stored_table(tmp_path):
    path = tmp_path / "cp.jsonl"
    cp = FetchCheckpoint(path)
    cp.append(ok("1", '{"a":1}'))
    cp.append(ok("2", '{"a":2}'))
    cp.append(FetchResult("3", "error", error="timeout"))
    cp.close()
    with path.open("a") as handle:
        handle.write('{"source_id": "4", "sta')  # the process died mid-write
    assert [r.source_id for r in FetchCheckpoint(path).load()] == ["1", "2", "3"]
    stored, _ = merge_results(None, [ok("1", '{"a":1}')])
    pending = FetchCheckpoint(path).compact(stored)
    # 1 is already stored, 3 failed (so it is fetched again): only 2 is reused
    assert [r.source_id for r in pending] == ["2"]
    assert isinstance(pending[0].fetched_at, datetime) and pending[0].fetched_at.tzinfo == timezone.utc
    assert [r.source_id for r in FetchCheckpoint(path).load()] == ["2"]


# -- the similar-works index ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    x = synthetic_clustered_vectors(3000, 48, n_clusters=60, seed=3)
    return [("met:" if i % 3 else "smk:") + str(i) for i in range(3000)], x


@pytest.fixture(scope="module")
def built(data):
    ids, x = data
    return build_index(ids, x, AnnConfig(num_threads=2), model_run_id="run-1", model_version="v1")


def test_save_load_round_trip_gives_identical_results(built, data, tmp_path):
    ids, x = data
    target = write_ann_index(built, tmp_path / "ann")
    assert sorted(p.name for p in target.iterdir()) == [
        "build_info.json", "id_map.parquet", "index.bin"
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    idmap = pl.read_parquet(target / "id_map.parquet")
    assert idmap.schema == {"artwork_id": pl.String, "label": pl.Int64, "deleted": pl.Boolean}
    info = json.loads((target / "build_info.json").read_text())
    assert info["model_run_id"] == "run-1" and info["count"] == 3000

    loaded = read_ann_index(target)
    a_ids, a_sc = built.query(x[:200], 10)
    b_ids, b_sc = loaded.query(x[:200], 10)
    assert (a_ids == b_ids).all()
    np.testing.assert_array_equal(a_sc, b_sc)
    assert loaded.build_info["model_run_id"] == "run-1"

    write_ann_index(built, target)  # overwriting an existing directory also works
    assert read_ann_index(target).query(x[:3], 5)[0].tolist() == a_ids[:3, :5].tolist()


def test_failed_save_leaves_the_previous_index_intact(built, data, tmp_path, monkeypatch):
    ids, x = data
    target = write_ann_index(built, tmp_path / "ann")
    before = (target / "index.bin").read_bytes()

    def boom(self):
        raise OSError("disk full")

    monkeypatch.setattr(AnnIndex, "id_map", boom)
    with pytest.raises(OSError, match="disk full"):
        write_ann_index(built, target)
    assert [p.name for p in tmp_path.iterdir()] == ["ann"]  # temp dir cleaned up
    assert (target / "index.bin").read_bytes() == before
    monkeypatch.undo()
    assert len(read_ann_index(target)) == 3000


def test_the_stored_ann_index_is_found_under_its_key(built, tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    assert artefacts.stored_ann_index(storage) is None
    with pytest.raises(FileNotFoundError, match="no ann_index"):
        artefacts.load_ann_index(storage)
    artefacts.save_ann_index(storage, built)
    assert (tmp_path / "indexes" / "ann_index" / "index.bin").is_file()
    assert len(artefacts.load_ann_index(storage, AnnConfig(ef=50))) == 3000
    assert artefacts.index_stamps(storage)[0] is not None


# -- heads, the search index, the map -------------------------------------------------------------------


def test_a_head_round_trips_under_its_run(tmp_path):
    import torch

    from artsim_pipeline.core.ml.similarity import build_head

    storage = ArtsimStorage(home=str(tmp_path))
    head = build_head("identity", 8, 16, 8, 0.0)
    config = {"head": "identity", "input_dim": 8, "hidden_dim": 16, "out_dim": 8, "dropout": 0.0}
    key = artefacts.save_head(storage, "run-1", head, config)
    assert key == artefacts.head_key("run-1") == "models/similarity_model/run-1"
    assert (tmp_path / key / "head.pt").is_file()
    loaded, loaded_config = artefacts.load_head(storage, key)
    assert loaded_config == config and not loaded.training
    x = torch.randn(4, 8)
    head.eval()
    torch.testing.assert_close(loaded(x), head(x))
    with pytest.raises(FileNotFoundError, match="no model head"):
        artefacts.load_head(storage, artefacts.head_key("run-2"))


def test_the_keyword_index_saves_and_loads(tmp_path):
    from artsim_pipeline.core import text_search as ts

    keyword = ts.KeywordIndex.build(["met:1", "met:2", "smk:3"], [["van", "gogh", "cypress"], ["rembrandt", "van", "rijn"], ["gogh"]])
    docs, _ = keyword.search(ts.query_tokens("van Gogh cypresses"), 10)
    artefacts.write_keyword_index(keyword, tmp_path / "kw")
    again = artefacts.read_keyword_index(tmp_path / "kw")
    assert again.ids == keyword.ids
    np.testing.assert_array_equal(again.search(ts.query_tokens("van Gogh cypresses"), 10)[0], docs)


def test_the_search_index_is_stored_whole_with_its_info_last(built, tmp_path):
    from artsim_pipeline.core import text_search as ts

    storage = ArtsimStorage(home=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no search_index"):
        artefacts.load_search_index(storage)
    assert artefacts.stored_search_vector_indexes(storage) == {}
    keyword = ts.KeywordIndex.build(built.ids[:3], [["a"], ["b"], ["c"]])
    artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: built}, {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR]})
    directory = tmp_path / "indexes" / "search_index"
    assert sorted(p.name for p in directory.iterdir()) == ["keyword", "search_info.json", "text"]
    info, again, text, image = artefacts.load_search_index(storage)
    assert info["parts"] == ["keyword", "text"] and "built_at" in info
    assert again.ids == built.ids[:3] and len(text) == len(built) and image is None
    assert set(artefacts.stored_search_vector_indexes(storage)) == {ts.TEXT_DIR}
    artefacts.save_search_index(storage, keyword, {}, {"parts": [ts.KEYWORD_DIR]})  # a part no longer built is removed
    assert sorted(p.name for p in directory.iterdir()) == ["keyword", "search_info.json"]


def test_the_keyword_documents_are_kept_with_their_tokeniser_and_are_only_a_cache(tmp_path):
    from artsim_pipeline.core import keyword_index as kw
    from artsim_pipeline_tests.search_home import search_works

    works = pl.DataFrame(search_works(), schema_overrides={"object_type": pl.String, "medium": pl.String, "culture": pl.String,
                                                           "department": pl.String})
    documents, stats = kw.update_documents(works, None, None)
    keyword = kw.KeywordIndex.from_documents(documents, stats["tokenizer"])
    artefacts.write_keyword_index(keyword, tmp_path / "kw")
    kept, signature, note = artefacts.read_keyword_documents(tmp_path / "kw")
    assert kept.equals(documents) and signature == stats["tokenizer"] and note is None
    loaded = artefacts.read_keyword_index(tmp_path / "kw")  # what searching reads: the bm25s files, not the documents
    assert loaded.ids == keyword.ids and loaded.documents is None
    for query in ("van gogh cypresses", "KKSgb6775/3"):
        np.testing.assert_array_equal(loaded.search(kw.query_tokens(query), 10)[1], keyword.search(kw.query_tokens(query), 10)[1])

    path = tmp_path / "kw" / artefacts.KEYWORD_DOCUMENTS_FILE
    documents.drop("source").write_parquet(path)
    assert artefacts.read_keyword_documents(tmp_path / "kw")[0] is None
    assert "columns" in artefacts.read_keyword_documents(tmp_path / "kw")[2]
    path.write_bytes(b"not parquet")
    assert artefacts.read_keyword_documents(tmp_path / "kw")[2].startswith("kept tokens unreadable")
    path.unlink()
    assert artefacts.read_keyword_documents(tmp_path / "kw") == (None, None, "no kept tokens")


def test_an_unchanged_vector_part_is_left_as_stored(built, tmp_path):
    from artsim_pipeline.core import text_search as ts

    storage = ArtsimStorage(home=str(tmp_path))
    keyword = ts.KeywordIndex.build(built.ids[:3], [["a"], ["b"], ["c"]])
    text_dir = tmp_path / "indexes" / "search_index" / ts.TEXT_DIR
    artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: built}, {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR], "works": 3})
    first = text_dir.stat().st_ino
    artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: built}, {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR], "works": 4},
                                unchanged=[ts.TEXT_DIR])
    assert text_dir.stat().st_ino == first  # not written again
    stored = artefacts.stored_search_index(storage)
    assert stored.info["works"] == 4 and len(stored.vector_indexes[ts.TEXT_DIR]) == len(built)
    assert stored.documents is None and stored.documents_note == "no kept tokens"  # built by bm25s alone: no documents
    artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: built}, {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR]})
    assert text_dir.stat().st_ino != first
    (text_dir.parent / artefacts.SEARCH_INFO_FILE).write_text("{half written")
    assert artefacts.stored_search_index(storage).info == {}  # no recall figure to carry over: measured again


def test_the_collection_map_is_stored_under_maps(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    location = artefacts.save_collection_map(storage, "<html>map</html>")
    assert (tmp_path / "maps" / "collection_map.html").read_text() == "<html>map</html>"
    assert location.endswith("maps/collection_map.html")


# -- the fetch journal's form ----------------------------------------------------------------------------


def sample_met_texts(n: int) -> list[str]:
    from artsim_pipeline.sample import load_sample_raw_lines

    return load_sample_raw_lines("met")[:n]


def test_journal_lines_are_compressed_and_round_trip_every_field(tmp_path):
    texts = sample_met_texts(50)
    results = [FetchResult(str(i), "ok", raw_json=text, modified="2024-05-01T10:00:00Z") for i, text in enumerate(texts)]
    results.append(FetchResult("x", "error", raw_json='{"title": "Caf\u00e9 \udfff"}', error="nested too deeply: \u00e9", text_repairs=3))
    results.append(FetchResult("y", "gone", error="HTTP 404"))
    cp = FetchCheckpoint(tmp_path / "cp.jsonl")
    for result in results:
        cp.append(result)
    cp.close()
    assert FetchCheckpoint(tmp_path / "cp.jsonl").load() == results
    lines = (tmp_path / "cp.jsonl").read_bytes().splitlines()
    journal_bytes, text_bytes = sum(len(line) for line in lines[:50]), sum(len(t.encode()) for t in texts)
    assert journal_bytes < 0.6 * text_bytes  # the record's text compressed, the fields short
    with_dictionary = FetchCheckpoint(tmp_path / "met.jsonl", source="met")
    for result in results:
        with_dictionary.append(result)
    with_dictionary.close()
    assert FetchCheckpoint(tmp_path / "met.jsonl", source="met").load() == results
    met_bytes = sum(len(line) for line in (tmp_path / "met.jsonl").read_bytes().splitlines()[:50])
    assert met_bytes < 0.3 * text_bytes  # against a dictionary of the source's own records
    assert FetchCheckpoint(tmp_path / "met.jsonl", source="smk").load()[-1:] == results[-1:]  # another dictionary: only what has no text


def test_journal_lines_of_the_earlier_form_are_still_read(tmp_path):
    path = tmp_path / "cp.jsonl"
    path.write_text('{"source_id": "7", "status": "ok", "raw_json": "{\\"a\\": 1}", "error": null, "modified": "2024", '
                    '"fetched_at": "2024-01-02T03:04:05.123456+00:00", "text_repairs": 0}\n', encoding="utf-8")
    [result] = FetchCheckpoint(path).load()
    assert (result.source_id, result.raw_json, result.modified) == ("7", '{"a": 1}', "2024")
    assert result.fetched_at == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def test_a_cleared_journal_is_empty_and_takes_new_lines(tmp_path):
    cp = FetchCheckpoint(tmp_path / "cp.jsonl")
    cp.append(ok("1", '{"a":1}'))
    cp.clear()
    assert FetchCheckpoint(tmp_path / "cp.jsonl").load() == [] and not (tmp_path / "cp.jsonl").exists()
    cp.append(ok("2", '{"a":2}'))
    cp.close()
    assert [r.source_id for r in FetchCheckpoint(tmp_path / "cp.jsonl").load()] == ["2"]


def test_the_chunked_map_is_stored_manifest_last_and_old_parts_are_removed(tmp_path):
    from artsim_pipeline.core.collection_map.chunks import build_chunked_map, decode_chunk

    storage = ArtsimStorage(home=str(tmp_path))
    assert artefacts.read_map_manifest(storage) is None and artefacts.map_manifest_stamp(storage) is None

    def points(n, shift=0.0):
        return pl.DataFrame({"artwork_id": [f"met:{i}" for i in range(n)], "x": np.arange(n) + shift,
                             "y": np.zeros(n), "title": [f"Work {i}" for i in range(n)]})

    manifest, chunks, details = build_chunked_map(points(10), chunk_points=4)
    location = artefacts.save_chunked_map(storage, manifest, chunks, details)
    assert location.endswith("maps/collection_map/manifest.json")
    stored = artefacts.read_map_manifest(storage)
    assert stored["chunks"] == manifest["chunks"] and stored["details"].startswith("details-")
    for entry in stored["chunks"]:
        blob = artefacts.read_map_part(storage, f"chunks/{entry['file']}")
        assert blob == chunks[entry["file"]] and len(decode_chunk(blob, entry)["x"]) == entry["n"]
    assert artefacts.read_map_details(storage, stored).equals(details)
    for bad in ("manifest.json", "../maps/collection_map.html", "chunks/../manifest.json", f"chunks/{'0' * 24}.bin/..", ""):
        assert artefacts.read_map_part(storage, bad) is None, bad

    first_files = set(p.name for p in (tmp_path / "maps" / "collection_map" / "chunks").iterdir())
    manifest2, chunks2, details2 = build_chunked_map(points(6, shift=0.5), chunk_points=4)
    artefacts.save_chunked_map(storage, manifest2, chunks2, details2)
    folder = tmp_path / "maps" / "collection_map"
    assert set(p.name for p in (folder / "chunks").iterdir()) == set(chunks2) and not first_files & set(chunks2)
    assert [p.name for p in folder.glob("details-*.parquet")] == [artefacts.read_map_manifest(storage)["details"]]


def test_layout_and_cluster_state_round_trip_and_a_torn_pair_reads_as_none(tmp_path):
    from artsim_pipeline.core.clusters import update_clusters
    from artsim_pipeline.core.collection_map import project_2d
    from artsim_pipeline.core.collection_map.placement import update_layout

    storage = ArtsimStorage(home=str(tmp_path))
    assert artefacts.load_map_layout(storage) is None and artefacts.load_cluster_state(storage) is None
    x = synthetic_clustered_vectors(60, 8, n_clusters=3, seed=1)
    ids = [f"met:{i}" for i in range(60)]
    layout, _ = update_layout(ids, x, None, project=lambda v: project_2d(v, method="pca"), settings={"p": "pca"})
    artefacts.save_map_layout(storage, layout)
    back = artefacts.load_map_layout(storage)
    assert back.points.equals(layout.points) and back.info == layout.info
    state, _ = update_clusters(ids, x, None, n_clusters=3)
    artefacts.save_cluster_state(storage, state)
    again = artefacts.load_cluster_state(storage)
    assert again.labels.equals(state.labels) and again.info == state.info
    np.testing.assert_array_equal(again.centroids, state.centroids)
    # a crash between the data and its info: the next run starts from nothing (a full run)
    (tmp_path / "maps" / "collection_map" / "layout" / "layout.parquet").write_bytes(b"torn")
    assert artefacts.load_map_layout(storage) is None
