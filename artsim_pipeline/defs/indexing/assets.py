"""Indexing: an hnswlib index over `artwork_vectors` that answers "which works are like this
one?", kept current incrementally, and the cross-museum near-duplicates it finds."""

import time

import numpy as np
import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset

from artsim_pipeline.core.ann import AnnConfig
from artsim_pipeline.core.features import combined_fingerprint, frame_fingerprint, vectors_matrix
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage

RECALL_GATE = 0.98


class AnnIndexConfig(Config):
    """hnswlib parameters (cosine on L2-normalised float32; defaults: `core.ann.AnnConfig`).

    `search_dim` > 0 builds the two-stage index (`core.ann.reduction`): hnswlib over the vectors
    projected to that many dimensions, `oversample` x k candidates re-ranked exactly with the full
    vectors stored as float16 (0: hnswlib holds the full vectors). The default 128 keeps the
    default model's 1,280-d vectors of 470,000 works under 1 GB served (README, *Measured*:
    recall@10 against exact search 1.000 on the sample's vectors); a changed value rebuilds the
    index, and `artsim serve` uses what the stored index was built with."""

    M: int = AnnConfig.M
    ef_construction: int = AnnConfig.ef_construction
    ef: int = AnnConfig.ef
    search_dim: int = 128
    oversample: int = AnnConfig.oversample
    recall_sample: int = 1000

    def ann_config(self) -> AnnConfig:
        return AnnConfig(M=self.M, ef_construction=self.ef_construction, ef=self.ef, search_dim=self.search_dim,
                         oversample=self.oversample)


@asset(
    group_name="indexing",
    kinds={"hnswlib", "parquet"},
    code_version="2",
    check_specs=[AssetCheckSpec("recall_at_10_vs_exact", asset="ann_index", blocking=True,
                                description=f"recall@10 against exact search on sampled queries >= {RECALL_GATE}")],
)
def ann_index(context: AssetExecutionContext, config: AnnIndexConfig, artwork_vectors: pl.DataFrame, storage: ArtsimStorage):
    """hnswlib index over `artwork_vectors` (files under `indexes/ann_index/` of the storage:
    index.bin, id_map.parquet, build_info.json; two-stage, also the float16 full vectors and the
    projection); the table is the id map. New artworks are added, gone ones marked deleted and
    moved vectors updated in place; only a new model (or vector source) or changed build
    parameters rebuild it. `artsim materialize` and the automation run it only when
    `artwork_vectors` holds different vectors (its data version); materialised by hand, it
    checks every vector and changes nothing that did not move."""
    from artsim_pipeline.core.ann import build_index, recall_vs_exact

    ids, vectors = vectors_matrix(artwork_vectors)
    run_ids = artwork_vectors["model_run_id"].unique().to_list()
    model_run_id = f"{run_ids[0]}:{artwork_vectors['vector_source'][0]}" if run_ids else None
    ann_config = config.ann_config()
    started = time.monotonic()
    index = artefacts.stored_ann_index(storage, ann_config)
    action: dict
    if index is not None:
        update = index.update(ids, vectors, model_run_id, config=ann_config)
        action = update.as_dict()
    else:
        index = build_index(ids, vectors, ann_config, model_run_id=model_run_id)
        action = {"added": len(ids), "deleted": 0, "updated": 0, "unchanged": 0, "rebuilt": True, "reason": "no index yet"}
    location = artefacts.save_ann_index(storage, index)
    seconds = time.monotonic() - started
    recall = recall_vs_exact(index, ids, vectors, sample=config.recall_sample, k=10)
    id_map = index.id_map()
    yield Output(
        id_map,
        # what the index answers with: its labels, the vectors and the model they come from
        data_version=DataVersion(combined_fingerprint(frame_fingerprint(id_map), frame_fingerprint(
            artwork_vectors.select("artwork_id", "vector")), str(model_run_id))),
        metadata={
            "live_items": len(ids),
            "dim": int(vectors.shape[1]) if vectors.size else 0,
            "search_dim": index.search_dim,
            "index": location,
            "seconds": round(seconds, 2),
            "rebuilt": bool(action.get("rebuilt")),
            "update": MetadataValue.json({k: v for k, v in action.items() if k != "seconds"}),
            "recall_at_10": round(recall, 4),
            "model_run_id": str(model_run_id),
            "build_info": MetadataValue.json(index.build_info),
        },
    )
    yield AssetCheckResult(check_name="recall_at_10_vs_exact", passed=recall >= RECALL_GATE,
                           metadata={"recall_at_10": recall, "gate": RECALL_GATE, "queries": min(config.recall_sample, len(ids))})


class NearDuplicatesConfig(Config):
    """The threshold is calibrated so that at most `max_false_positive_rate` of the known
    dissimilar (label 0) weak pairs would pass, and never below `min_threshold`."""

    min_threshold: float = 0.9
    max_false_positive_rate: float = 0.001
    k: int = 10


# what near_duplicates' candidate pairs are a function of, besides the inputs' content and the
# code (change it when that changes in a way the code fingerprint of _candidates_key cannot see)
CANDIDATES_VERSION = "1"


def _candidates_key(config: NearDuplicatesConfig, artwork_vectors: pl.DataFrame, weak_pairs: pl.DataFrame,
                    index_stamp: str | None) -> str:
    """The key of everything the candidate pairs depend on: the vectors, the labelled pairs the
    threshold is calibrated on, the stored index, the settings (no title or link) and the code
    of the search and the calibration (and what they call)."""
    from artsim_pipeline.core.code_version import code_fingerprint
    from artsim_pipeline.core.search import calibrate_threshold, near_duplicates as find_near_duplicates

    return combined_fingerprint(
        CANDIDATES_VERSION, code_fingerprint(_find_candidates, calibrate_threshold, find_near_duplicates),
        frame_fingerprint(artwork_vectors.select("artwork_id", "vector")),
        frame_fingerprint(weak_pairs.select("artwork_id_a", "artwork_id_b", "label")), str(index_stamp),
        f"{config.min_threshold!r}:{config.max_false_positive_rate!r}:{config.k}")


def _find_candidates(config: NearDuplicatesConfig, artwork_vectors: pl.DataFrame, weak_pairs: pl.DataFrame,
                     storage: ArtsimStorage) -> tuple[pl.DataFrame, dict]:
    """Cross-museum pairs above the calibrated threshold (every work queried in the index) and
    the figures of the calibration."""
    from artsim_pipeline.core.search import calibrate_threshold, near_duplicates as find_near_duplicates

    ids, vectors = vectors_matrix(artwork_vectors)
    index = artefacts.load_ann_index(storage)
    position = {artwork_id: i for i, artwork_id in enumerate(ids)}
    known = weak_pairs.filter(pl.col("artwork_id_a").is_in(ids) & pl.col("artwork_id_b").is_in(ids))

    def cosines(frame: pl.DataFrame) -> np.ndarray:
        a = np.array([position[x] for x in frame["artwork_id_a"].to_list()], dtype=np.int64)
        b = np.array([position[x] for x in frame["artwork_id_b"].to_list()], dtype=np.int64)
        return (vectors[a] * vectors[b]).sum(axis=1) if len(a) else np.zeros(0)

    positives, negatives = cosines(known.filter(pl.col("label") == 1)), cosines(known.filter(pl.col("label") == 0))
    calibrated = calibrate_threshold(positives if positives.size else [1.0], negatives,
                                     target_recall=0.5, max_false_positive_rate=config.max_false_positive_rate)
    threshold = max(config.min_threshold, calibrated)
    pairs = find_near_duplicates(index, ids, vectors, threshold, cross_source_only=True, k=config.k)
    return pairs, {"threshold": float(threshold), "calibrated_threshold": float(calibrated),
                   "negatives_used_for_calibration": int(negatives.size)}


@asset(group_name="indexing", kinds={"hnswlib", "parquet"}, code_version="1", deps=["ann_index"])
def near_duplicates(
    context: AssetExecutionContext,
    config: NearDuplicatesConfig,
    artwork_vectors: pl.DataFrame,
    weak_pairs: pl.DataFrame,
    artworks: pl.DataFrame,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """Pairs of works held by different museums whose vectors are nearly identical (the same
    print or cast in two collections), with both titles and links. The pairs are searched for
    again only when the vectors, the weak pairs, the index or the settings changed; otherwise
    (a retitled work) the stored pairs get the current titles and links."""
    inputs_key = _candidates_key(config, artwork_vectors, weak_pairs, artefacts.ann_index_stamp(storage))
    stored = artefacts.stored_near_duplicate_candidates(storage, inputs_key)
    if stored is not None:
        pairs, found = stored
    else:
        pairs, found = _find_candidates(config, artwork_vectors, weak_pairs, storage)
        artefacts.save_near_duplicate_candidates(storage, pairs, inputs_key, found)
    context.log.info("near_duplicates: %s", "stored pairs, titles joined again" if stored is not None else "searched the index")
    info = artworks.select("artwork_id", "title", "landing_url")
    table = (
        pairs.join(info.rename({"artwork_id": "artwork_id_a", "title": "title_a", "landing_url": "landing_url_a"}), on="artwork_id_a", how="left")
        .join(info.rename({"artwork_id": "artwork_id_b", "title": "title_b", "landing_url": "landing_url_b"}), on="artwork_id_b", how="left")
        .sort("score", descending=True)
    )
    return Output(
        table,
        data_version=DataVersion(frame_fingerprint(table)),
        metadata={
            "pairs": table.height,
            "threshold": round(found["threshold"], 4),
            "calibrated_threshold": round(found["calibrated_threshold"], 4),
            "negatives_used_for_calibration": int(found["negatives_used_for_calibration"]),
            "reused_pairs": stored is not None,
            "preview": markdown_table(table, ["score", "title_a", "source_a", "title_b", "source_b"]),
        },
    )
