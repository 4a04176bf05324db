"""What a retitle costs `near_duplicates`, `clusters` and `weak_pairs`: the near-duplicates reuse
their stored pairs (only titles and links are joined again) until the vectors, the weak pairs,
the index or the settings change; the clusters' summary is made again only when the labels or
the metadata it counts change; `weak_pairs` reads `pair_mining_fields`, whose data version a
retitle leaves alone, so it is not stale. Every reuse is checked against a full recomputation."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
from dagster import AssetKey, DagsterInstance, materialize

from artsim_pipeline.core.ann import AnnConfig, build_index
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage

DIM, N = 16, 30


def _world(rng):
    """30 Met and 30 SMK works; met:i and smk:i for i < 10 are the same object (nearly equal
    vectors), the rest unrelated."""
    ids = [f"met:{i}" for i in range(N)] + [f"smk:{i}" for i in range(N)]
    base = rng.normal(size=(2 * N, DIM)).astype(np.float32)
    base[N:N + 10] = base[:10] + rng.normal(scale=0.01, size=(10, DIM)).astype(np.float32)
    artworks = pl.DataFrame({
        "artwork_id": ids, "source": [a.split(":")[0] for a in ids], "source_id": [a.split(":")[1] for a in ids],
        "title": [f"Work {a}" for a in ids], "artists": [[f"Maker {i % 7}"] for i in range(2 * N)],
        "department": ["Prints" if i % 2 else "Paintings" for i in range(2 * N)], "culture": [None] * (2 * N),
        "classification": ["Print"] * (2 * N), "date_begin": [1800 + i for i in range(2 * N)],
        "date_end": [1810 + i for i in range(2 * N)], "tags": [[] for _ in range(2 * N)],
        "landing_url": [f"https://example.org/{a}" for a in ids],
    }, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32, "culture": pl.String, "tags": pl.List(pl.String)})
    return ids, base, artworks


def _store_artworks(tables, artworks: pl.DataFrame) -> None:
    for source in ("met", "smk"):
        tables.write_table(artworks.filter(pl.col("source") == source), "artworks", source)


def _store_vectors(home, tables, ids: list[str], vectors: np.ndarray, config: AnnConfig | None = None, index: bool = True) -> None:
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # artwork_vectors are unit vectors
    tables.write_table(pl.DataFrame({"artwork_id": ids, "vector": vectors.tolist()},
                                    schema={"artwork_id": pl.String, "vector": pl.List(pl.Float32)}), "artwork_vectors")
    if index:
        artefacts.save_ann_index(ArtsimStorage(home=str(home)), build_index(ids, vectors, config or AnnConfig()))


def _stored_world(home, seed: int):
    """The sample's definitions with a `_world` stored: its artworks, vectors and their index
    (and the generator, to move vectors with later)."""
    from artsim_pipeline.definitions import build_defs

    rng = np.random.default_rng(seed)
    defs = build_defs("sample")
    tables = defs.resources["tables"]
    ids, vectors, artworks = _world(rng)
    _store_artworks(tables, artworks)
    _store_vectors(home, tables, ids, vectors)
    return defs, tables, rng, ids, vectors, artworks


def _run(defs, keys: list[str], config: dict | None = None, instance=None) -> dict:
    result = materialize(list(defs.assets), selection=[AssetKey(k) for k in keys], resources=defs.resources,
                         run_config={"ops": config} if config else None, instance=instance)
    assert result.success
    return {e.event_specific_data.materialization.asset_key.to_user_string():
            {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def _pairs(tables) -> pl.DataFrame:
    return tables.read_table("near_duplicates").sort("artwork_id_a", "artwork_id_b")


def test_near_duplicates_reuse_their_pairs_only_while_vectors_pairs_and_index_are_unchanged(artsim_home):
    defs, tables, rng, ids, vectors, artworks = _stored_world(artsim_home, 0)
    tables.write_table(pl.DataFrame({  # weak pairs of unrelated works: the threshold stays at min_threshold
        "artwork_id_a": [f"met:{i}" for i in range(10, 20)], "artwork_id_b": [f"smk:{i}" for i in range(20, 30)],
        "label": [0, 1] * 5, "rule": ["easy_negative", "same_artist"] * 5, "weight": [1.0] * 10, "split": ["train"] * 10,
    }, schema_overrides={"label": pl.Int8, "weight": pl.Float32}), "weak_pairs")

    first = _run(defs, ["near_duplicates"])["near_duplicates"]
    assert first["reused_pairs"] is False and first["pairs"] == 10
    assert set(zip(*_pairs(tables)[["artwork_id_a", "artwork_id_b"]], strict=True)) == {(f"met:{i}", f"smk:{i}") for i in range(10)}

    # a retitle: the stored pairs, with the new title; the same table as a full search
    retitled = artworks.with_columns(pl.when(pl.col("artwork_id") == "smk:3").then(pl.lit("A new title"))
                                     .otherwise(pl.col("title")).alias("title"))
    _store_artworks(tables, retitled)
    second = _run(defs, ["near_duplicates"])["near_duplicates"]
    assert second["reused_pairs"] is True and second["threshold"] == first["threshold"]
    reused = _pairs(tables)
    assert reused.filter(pl.col("artwork_id_b") == "smk:3")["title_b"].to_list() == ["A new title"]
    shutil.rmtree(artsim_home / "models" / "near_duplicates")
    assert _run(defs, ["near_duplicates"])["near_duplicates"]["reused_pairs"] is False
    assert _pairs(tables).equals(reused)

    # moved vectors (smk:4 no longer like met:4, smk:20 now like met:20) and their index: searched again
    moved = vectors.copy()
    moved[N + 4] = rng.normal(size=DIM)
    moved[N + 20] = vectors[20] + rng.normal(scale=0.01, size=DIM)
    _store_vectors(artsim_home, tables, ids, moved, index=False)  # the vectors alone (the threshold reads them)
    assert _run(defs, ["near_duplicates"])["near_duplicates"]["reused_pairs"] is False
    _store_vectors(artsim_home, tables, ids, moved)
    third = _run(defs, ["near_duplicates"])["near_duplicates"]
    assert third["reused_pairs"] is False
    found = set(zip(*_pairs(tables)[["artwork_id_a", "artwork_id_b"]], strict=True))
    assert ("met:20", "smk:20") in found and ("met:4", "smk:4") not in found and len(found) == 10

    # the same vectors in another index, other settings, other weak pairs: each searched again
    _store_vectors(artsim_home, tables, ids, moved, AnnConfig(M=8))
    assert _run(defs, ["near_duplicates"])["near_duplicates"]["reused_pairs"] is False
    assert _run(defs, ["near_duplicates"])["near_duplicates"]["reused_pairs"] is True
    strict = _run(defs, ["near_duplicates"], {"near_duplicates": {"config": {"min_threshold": 0.99999}}})["near_duplicates"]
    assert strict["reused_pairs"] is False and strict["pairs"] < 10
    weak = tables.read_table("weak_pairs")
    tables.write_table(pl.concat([weak, weak.head(1).with_columns(pl.lit("met:21").alias("artwork_id_a"))]), "weak_pairs")
    assert _run(defs, ["near_duplicates"], {"near_duplicates": {"config": {"min_threshold": 0.99999}}})[
        "near_duplicates"]["reused_pairs"] is False


def test_the_clusters_summary_is_reused_for_a_retitle_and_made_again_for_other_metadata(artsim_home):
    defs, tables, *_, artworks = _stored_world(artsim_home, 1)
    first = _run(defs, ["clusters"])["clusters"]
    assert first["summary_reused"] is False

    representative = tables.read_table("clusters").sort("distance", "artwork_id")["artwork_id"][0]
    retitled = artworks.with_columns(pl.when(pl.col("artwork_id") == representative).then(pl.lit("Retitled by a curator"))
                                     .otherwise(pl.col("title")).alias("title"))
    _store_artworks(tables, retitled)
    second = _run(defs, ["clusters"])["clusters"]
    assert second["summary_reused"] is True and "Retitled by a curator" in second["summary"]
    assert second["summary"] == first["summary"].replace(f"Work {representative}", "Retitled by a curator")
    shutil.rmtree(artsim_home / "models" / "clusters" / "summary")
    again = _run(defs, ["clusters"])["clusters"]
    assert again["summary_reused"] is False and again["summary"] == second["summary"]

    # another department is counted again, not reused
    _store_artworks(tables, retitled.with_columns(pl.lit("Drawings").alias("department")))
    third = _run(defs, ["clusters"])["clusters"]
    assert third["summary_reused"] is False and "Drawings" in third["summary"] and "Paintings" not in third["summary"]


def test_a_retitle_leaves_weak_pairs_up_to_date_and_a_new_maker_does_not(artsim_home, sample_artworks):
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.materialize import _stale_or_missing

    defs = build_defs("sample")
    tables = defs.resources["tables"]
    graph = defs.resolve_asset_graph()
    artworks = sample_artworks.filter(pl.col("source").is_in(["met", "smk"]))
    _store_artworks(tables, artworks)
    instance = DagsterInstance.ephemeral()
    keys = {AssetKey("weak_pairs")}
    first = _run(defs, ["pair_mining_fields", "weak_pairs"], instance=instance)
    assert "title" not in tables.read_table("pair_mining_fields").columns
    assert _stale_or_missing(instance, graph, keys, None) == set()

    _store_artworks(tables, artworks.with_columns((pl.col("title") + " (retitled)").alias("title")))
    same = _run(defs, ["pair_mining_fields"], instance=instance)["pair_mining_fields"]
    assert same["fingerprint"] == first["pair_mining_fields"]["fingerprint"]
    assert _stale_or_missing(instance, graph, keys, None) == set()

    first_id = artworks["artwork_id"][0]
    _store_artworks(tables, artworks.with_columns(pl.when(pl.col("artwork_id") == first_id).then(pl.lit(["Someone New"]))
                                                  .otherwise(pl.col("artists")).alias("artists")))
    changed = _run(defs, ["pair_mining_fields"], instance=instance)["pair_mining_fields"]
    assert changed["fingerprint"] != same["fingerprint"]
    assert _stale_or_missing(instance, graph, keys, None) == keys


def test_every_write_of_the_ann_index_changes_its_stamp_even_within_one_second(tmp_path):
    """near_duplicates keys its stored pairs on the stamp: the same ids and counts written twice in
    one second (build info timed to the second) must still read as two different indexes."""
    storage = ArtsimStorage(home=str(tmp_path))
    vectors = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    ids = [f"met:{i}" for i in range(20)]
    index = build_index(ids, vectors, AnnConfig())
    artefacts.save_ann_index(storage, index)
    first = artefacts.ann_index_stamp(storage)
    artefacts.save_ann_index(storage, index)  # the same index, the same build info to the second
    assert first is not None and artefacts.ann_index_stamp(storage) != first
