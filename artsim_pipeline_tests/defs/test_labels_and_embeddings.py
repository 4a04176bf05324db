"""`weak_pairs`, `image_embeddings` and `text_embeddings` materialised through Dagster."""

from __future__ import annotations

import numpy as np
import polars as pl
from dagster import AssetKey, materialize

from artsim_pipeline.core.images import check_image, image_relpath
from artsim_pipeline.core.features import as_matrix
from artsim_pipeline.defs.ingest.assets import RAW_IMAGES_SCHEMA
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.sample import sample_image_bytes
from artsim_pipeline_tests.conftest import save_tiny_vit


def resources(home, **encoder):
    """The sample environment's resources (ARTSIM_HOME is `home`) with a chosen encoder."""
    from artsim_pipeline.definitions import build_defs

    assert str(home) in build_defs("sample").resources["tables"].base_dir
    res = {**build_defs("sample").resources, "encoder": EncoderResource(**encoder)}
    return res["tables"], res


def graph_assets():
    """Every asset of the code location: upstream tables are read from the store, not recomputed."""
    from artsim_pipeline.definitions import build_defs

    return list(build_defs("sample").assets)


def metadata(result, key):
    [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_weak_pairs_from_the_sample_pass_every_check_and_follow_config(artsim_home, sample_artworks):
    store, res = resources(artsim_home)
    for source in ("met", "smk"):
        store.write_table(sample_artworks.filter(pl.col("source") == source), "artworks", source)
    result = materialize(graph_assets(), selection=[AssetKey("pair_mining_fields"), AssetKey("weak_pairs")], resources=res)
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    pairs = store.read_table("weak_pairs")
    meta = metadata(result, "weak_pairs")
    assert meta["rows"] == pairs.height > 1000 and meta["positives"] > 0
    assert set(pairs["split"].unique()) == {"train", "val", "test"}
    ids = set(sample_artworks["artwork_id"].to_list())
    assert set(pairs["artwork_id_a"]).issubset(ids) and set(pairs["artwork_id_b"]).issubset(ids)
    # config reaches the miner: no tag rule, twice the negatives
    config = {"ops": {"weak_pairs": {"config": {"shared_tags_weight": 0.0, "negatives_per_positive": 2.0}}}}
    again = materialize(graph_assets(), selection=[AssetKey("pair_mining_fields"), AssetKey("weak_pairs")], resources=res, run_config=config)
    pairs2 = store.read_table("weak_pairs")
    assert again.success and "shared_tags" not in set(pairs2["rule"])
    assert 1.6 < (pairs2["label"] == 0).sum() / (pairs2["label"] == 1).sum() < 2.4


def write_images(home, store, n=12, corrupt=1):
    """n sample images stored like raw_images does, plus `corrupt` files that no longer decode."""
    from artsim_pipeline.resources.clients.met import met_image_url
    from artsim_pipeline.sample import load_sample_records

    rows = []
    records = [r for r in load_sample_records("met") if met_image_url(r)][:n]
    root = home / "images"
    for record in records:
        content = sample_image_bytes(met_image_url(record))
        checked = check_image(content)
        artefacts.write_image(ArtsimStorage(home=str(home)), image_relpath(checked.sha256, checked.extension), content)
        rows.append({"source_id": str(record["objectID"]), "url": met_image_url(record), "sha256": checked.sha256, "width": checked.width,
                     "height": checked.height, "status": "ok", "error": None, "path": image_relpath(checked.sha256, checked.extension), "fetched_at": None})
    for i in range(corrupt):  # a stored file that no longer decodes (disk corruption, truncated copy)
        sha = f"{i:064x}"
        (root / sha[:2]).mkdir(parents=True, exist_ok=True)
        (root / image_relpath(sha, "jpg")).write_bytes(b"\xff\xd8\xff garbage")
        rows.append({**rows[0], "source_id": f"bad{i}", "sha256": sha, "path": image_relpath(sha, "jpg")})
    store.write_table(pl.DataFrame(rows, schema=RAW_IMAGES_SCHEMA), "raw_images", "met")
    return len({r["sha256"] for r in rows}) - corrupt


def embed_all_chunks(assets, res) -> dict:
    """Materialise every image_embeddings chunk; returns the summed counts."""
    from artsim_pipeline.defs.partitions import embedding_buckets

    totals: dict = {"embedded_this_run": 0, "failures": 0, "reused": 0}
    counts = list(totals)
    for bucket in embedding_buckets.get_partition_keys():
        result = materialize(assets, selection=[AssetKey("image_embeddings")], resources=res, partition_key=bucket)
        meta = metadata(result, "image_embeddings")
        for key in counts:
            totals[key] += meta[key]
        totals["dim"] = meta["dim"]
        [event] = result.get_asset_materialization_events()
        totals.setdefault("data_versions", {})[bucket] = event.materialization.tags["dagster/data_version"]
    return totals


def all_chunks(store) -> pl.DataFrame:
    from artsim_pipeline.defs.partitions import embedding_buckets

    return pl.concat([store.read_table("image_embeddings", b) for b in embedding_buckets.get_partition_keys()], how="diagonal_relaxed")


def test_image_embeddings_are_incremental_per_backbone_and_skip_broken_files(artsim_home, tiny_vit, tmp_path):
    from artsim_pipeline.defs.partitions import sha_bucket

    store, res = resources(artsim_home, backbone=f"hf:{tiny_vit}", batch_size=4, num_workers=0)
    good = write_images(artsim_home, store)
    assets = graph_assets()
    first = embed_all_chunks(assets, res)
    assert (first["embedded_this_run"], first["failures"], first["reused"]) == (good, 1, 0)
    table = all_chunks(store)
    vectors = as_matrix(table["vector"])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert table["image_sha256"].n_unique() == good
    for bucket_table_row in table.iter_rows(named=True):  # every vector sits in its sha's chunk
        assert store.read_table("image_embeddings", sha_bucket(bucket_table_row["image_sha256"])).filter(
            pl.col("image_sha256") == bucket_table_row["image_sha256"]).height == 1
    second = embed_all_chunks(assets, res)
    assert (second["embedded_this_run"], second["reused"]) == (0, good)
    # another backbone: embedded again, kept apart by model_id
    other = save_tiny_vit(tmp_path / "other_vit", hidden_size=48, seed=1)
    _, res2 = resources(artsim_home, backbone=f"hf:{other}", batch_size=4, num_workers=0)
    third = embed_all_chunks(assets, res2)
    assert third["embedded_this_run"] == good and third["dim"] == 48
    table = all_chunks(store)
    assert table.height == 2 * good and table["model_id"].n_unique() == 2
    widths = table.group_by("model_id").agg(pl.col("vector").list.len().first().alias("w"))
    assert sorted(widths["w"].to_list()) == [32, 48]
    assert all(third["data_versions"][b] != second["data_versions"][b] for b in second["data_versions"])
    # back to the first backbone: nothing to embed and the table stays the same, but what the
    # model reads changed back, so the data versions must too (training, vectors, index follow)
    fourth = embed_all_chunks(assets, res)
    assert (fourth["embedded_this_run"], fourth["reused"]) == (0, good) and all_chunks(store).height == 2 * good
    assert fourth["data_versions"] == second["data_versions"]
    assert all(fourth["data_versions"][b] != third["data_versions"][b] for b in third["data_versions"])


def test_text_embeddings_embed_only_changed_texts(artsim_home, sample_artworks):
    store, res = resources(artsim_home)
    subset = sample_artworks.filter(pl.col("source") == "met").head(16)
    store.write_table(subset, "artworks", "met")
    assets = graph_assets()
    first = metadata(materialize(assets, selection=[AssetKey("text_embeddings")], resources=res), "text_embeddings")
    assert first["embedded_this_run"] == 16
    table = store.read_table("text_embeddings")
    assert np.allclose(np.linalg.norm(as_matrix(table["vector"]), axis=1), 1.0, atol=1e-5) and as_matrix(table["vector"]).shape[1] == 384
    changed = subset.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("A wholly new title")).otherwise(pl.col("title")).alias("title"))
    store.write_table(changed, "artworks", "met")
    second = metadata(materialize(assets, selection=[AssetKey("text_embeddings")], resources=res), "text_embeddings")
    assert (second["embedded_this_run"], second["reused"], second["rows"]) == (1, 15, 16)


def test_text_embeddings_build_texts_only_where_their_fields_changed(artsim_home, sample_artworks, monkeypatch):
    """Texts are built in Python only for works whose text fields changed (any of them, not only
    the title); the stored text hashes are those of `artwork_text` for every work; with nothing
    changed no text is built and the model is not loaded."""
    from artsim_pipeline.core.ml.text import artwork_text
    from artsim_pipeline.resources import models
    from artsim_pipeline.resources.clients.base import content_hash

    store, res = resources(artsim_home)
    subset = sample_artworks.filter(pl.col("source") == "met").head(16)
    store.write_table(subset, "artworks", "met")
    assets = graph_assets()

    def run():
        return metadata(materialize(assets, selection=[AssetKey("text_embeddings")], resources=res), "text_embeddings")

    assert (run()["texts_built"], store.read_table("text_embeddings")["text_key"].null_count()) == (16, 0)

    def no_model(*args, **kwargs):
        raise AssertionError("the text model was loaded with no text to embed")

    with monkeypatch.context() as patched:
        patched.setattr(models, "embed_texts", no_model)
        unchanged = run()
    assert (unchanged["texts_built"], unchanged["embedded_this_run"], unchanged["reused"]) == (0, 0, 16)

    with_medium = subset["medium"].is_not_null().arg_true()[1]
    row = pl.int_range(pl.len())
    changed = subset.with_columns(
        pl.when(row == 0).then(pl.col("tags").list.concat(pl.lit(["Newly tagged"]))).otherwise(pl.col("tags")).alias("tags"),
        # only whitespace: another field value, the same text (and vector)
        pl.when(row == with_medium).then(pl.col("medium") + "  ").otherwise(pl.col("medium")).alias("medium"),
    )
    store.write_table(changed, "artworks", "met")
    third = run()
    assert (third["texts_built"], third["embedded_this_run"], third["reused"]) == (2, 1, 15)
    table = store.read_table("text_embeddings")
    expected = {r["artwork_id"]: content_hash(artwork_text(r)) for r in changed.iter_rows(named=True)}
    assert dict(zip(table["artwork_id"], table["text_sha256"], strict=True)) == expected


def test_curator_picks_become_high_weight_pairs_in_the_anchor_split(artsim_home, sample_artworks):
    from artsim_pipeline.resources.artefacts import record_judgment
    from artsim_pipeline.defs.operations.automation import pairs_from_new_judgments
    from dagster import RunRequest, SkipReason, build_sensor_context

    store, res = resources(artsim_home)
    for source in ("met", "smk"):
        store.write_table(sample_artworks.filter(pl.col("source") == source), "artworks", source)
    assert materialize(graph_assets(), selection=[AssetKey("pair_mining_fields"), AssetKey("weak_pairs")], resources=res).success
    mined = store.read_table("weak_pairs")
    same = mined.filter(pl.col("label") == 0).head(2)  # two works the miner calls dissimilar, same split
    cross = (mined.filter(pl.col("split") == "train").row(0, named=True), mined.filter(pl.col("split") == "test").row(0, named=True))
    others = [i for i in sample_artworks["artwork_id"].to_list()[:40]]
    row = same.row(0, named=True)
    record_judgment(artsim_home, row["artwork_id_a"], [row["artwork_id_b"], *[o for o in others if o not in row.values()][:7]], row["artwork_id_b"], "curator-1")
    # a pick across splits would leak a maker into two splits: it is counted, not used
    anchor, pick = cross[0]["artwork_id_a"], cross[1]["artwork_id_a"]
    record_judgment(artsim_home, anchor, [pick, *[o for o in others if o not in (anchor, pick)][:7]], pick, "curator-1")

    sensor = pairs_from_new_judgments(context := build_sensor_context(instance=None, cursor="0", resources={"storage": res["storage"]}))
    assert isinstance(sensor, RunRequest) and context.cursor == "2"
    assert isinstance(pairs_from_new_judgments(build_sensor_context(cursor="2", resources={"storage": res["storage"]})), SkipReason)

    result = materialize(graph_assets(), selection=[AssetKey("pair_mining_fields"), AssetKey("weak_pairs")], resources=res)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    meta = metadata(result, "weak_pairs")
    assert (meta["curator_pairs"], meta["curator_picks_not_usable"]) == (1, 1)
    pairs = store.read_table("weak_pairs")
    picked = pairs.filter(pl.col("rule") == "curator_pick").row(0, named=True)
    assert (picked["artwork_id_a"], picked["artwork_id_b"], picked["label"], picked["split"]) == (row["artwork_id_a"], row["artwork_id_b"], 1, row["split"])
    assert picked["weight"] == 2.0
    # the curator's judgment replaces the miner's negative for that pair
    assert pairs.filter((pl.col("artwork_id_a") == row["artwork_id_a"]) & (pl.col("artwork_id_b") == row["artwork_id_b"])).height == 1
