"""Search by words: the index `artsim search`, the web app's search box and `/api/search` read.

One asset, `search_index`, stored under `indexes/search_index/` of the storage (S3 in prod):
a BM25 keyword index over every work's metadata, an hnswlib index over the works' metadata text
vectors (`text_embeddings`), and, when the image backbone is a dual image-text encoder (CLIP /
SigLIP), an hnswlib index over the works' image vectors that text queries reach through the
encoder's text tower. The vector indexes are updated incrementally, like `ann_index`; the
keyword index is rebuilt from each work's tokens, kept with it, so a run tokenises only the works
whose searched fields changed (`core.keyword_index`); the blocking recall check measures again
only when the text-vector index changed.
"""

import time
import zlib
from dataclasses import asdict

import numpy as np
import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from artsim_pipeline.core.ann import AnnConfig
from artsim_pipeline.core.features import as_matrix, combined_fingerprint, frame_fingerprint
from artsim_pipeline.core.text_search import FusionConfig
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.core.images import EMBEDDING_BUCKET_KEYS
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore

RECALL_GATE = 0.98


class SearchIndexConfig(Config):
    """hnswlib parameters of the vector indexes, and how the search fuses its rankings (stored
    with the index, so `artsim search` and `artsim serve` use what was configured here).
    Defaults: `core.ann.AnnConfig` and `core.text_search.FusionConfig`."""

    M: int = AnnConfig.M
    ef_construction: int = AnnConfig.ef_construction
    ef: int = AnnConfig.ef
    # recall@10 queries against exact search: after a build, and after an incremental update (250
    # queries = 2,500 neighbours: an index at 0.97 lies ~3 standard errors below the 0.98 gate)
    recall_sample: int = 1000
    update_recall_sample: int = 250
    keyword_weight: float = FusionConfig.keyword_weight
    text_weight: float = FusionConfig.text_weight
    image_weight: float = FusionConfig.image_weight
    rrf_k: int = FusionConfig.rrf_k
    candidates: int = FusionConfig.candidates
    min_text_similarity: float = FusionConfig.min_text_similarity
    min_image_similarity: float = FusionConfig.min_image_similarity
    keyword_all_terms: bool = FusionConfig.keyword_all_terms


def _vector_index(existing: dict, part: str, ids: list[str], vectors: np.ndarray, model_id: str, ann_config):
    """The stored index of `part` brought up to (ids, vectors), or a fresh one; and what was done.
    Changed build parameters (M, ef_construction) rebuild it, as a new model does."""
    from artsim_pipeline.core.ann import build_index

    index = existing.get(part)
    if index is not None:
        return index, index.update(ids, vectors, model_id, config=ann_config).as_dict()
    return build_index(ids, vectors, ann_config, model_run_id=model_id), {"added": len(ids), "rebuilt": True, "reason": "no index yet"}


def _untouched(update: dict) -> bool:
    """Whether an update left the stored vector index exactly as it was."""
    return not update.get("rebuilt") and not any(update.get(k) for k in ("added", "deleted", "updated"))


def _query_settings(index) -> dict:
    """The index settings a recall figure depends on (all but the thread count)."""
    return {k: v for k, v in asdict(index.config).items() if k != "num_threads"}


def text_recall(index, ids: list[str], matrix: np.ndarray, update: dict, measured: dict | None,
                config: SearchIndexConfig, seed: int) -> dict:
    """recall@10 of the text-vector index against exact search, and on what it rests: measured
    with `recall_sample` queries after a build, `update_recall_sample` after an incremental
    update; the figure `measured` before (stored with the index) when the index is untouched
    since, under the same settings."""
    from artsim_pipeline.core.ann import recall_vs_exact

    settings = _query_settings(index)
    if _untouched(update) and measured and measured.get("settings") == settings and measured.get("works") == len(ids):
        return {**measured, "reused": True}
    queries = config.recall_sample if update.get("rebuilt") else min(config.recall_sample, config.update_recall_sample)
    recall = recall_vs_exact(index, ids, matrix, sample=queries, seed=seed)
    return {"recall_at_10": recall, "queries": min(queries, len(ids)), "works": len(ids), "settings": settings,
            "after": "a build" if update.get("rebuilt") else "an incremental update", "reused": False}


def image_vectors(artworks: pl.DataFrame, tables: TableStore, model_id: str) -> tuple[list[str], np.ndarray]:
    """(artwork ids, image vectors of `model_id`) for the works whose image was embedded with it."""
    chunks = [t.filter(pl.col("model_id") == model_id).select("image_sha256", "vector")
              for t in (tables.read_table("image_embeddings", b) for b in EMBEDDING_BUCKET_KEYS) if t is not None]
    if not chunks:
        return [], np.zeros((0, 0), np.float32)
    vectors = pl.concat(chunks).unique("image_sha256")
    works = (artworks.select("artwork_id", "image_sha256").unique("artwork_id", keep="first", maintain_order=True)
             .join(vectors, on="image_sha256", how="inner").sort("artwork_id"))
    return works["artwork_id"].to_list(), as_matrix(works["vector"]) if works.height else np.zeros((0, 0), np.float32)


@asset(
    group_name="indexing",
    kinds={"hnswlib", "parquet"},
    code_version="1",
    deps=[AssetDep("image_embeddings", partition_mapping=AllPartitionMapping())],
    check_specs=[AssetCheckSpec("text_recall_at_10_vs_exact", asset="search_index", blocking=True,
                                description=f"recall@10 of the text-vector index against exact search >= {RECALL_GATE}")],
)
def search_index(
    context: AssetExecutionContext,
    config: SearchIndexConfig,
    artworks: pl.DataFrame,
    text_embeddings: pl.DataFrame,
    encoder: EncoderResource,
    storage: ArtsimStorage,
    tables: TableStore,
):
    """Find works by words: BM25 over each work's title, makers, kind, medium, culture, tags and
    numbers; hnswlib over its metadata text vectors (all-MiniLM-L6-v2); with a CLIP/SigLIP
    backbone, hnswlib over its image vectors for the encoder's text tower. Files under
    `indexes/search_index/`; the table lists each work and which rankings can find it. Only
    works whose searched fields changed are tokenised again (the tokens are kept with the index)."""
    from artsim_pipeline.core import keyword_index as kw
    from artsim_pipeline.core import text_search as ts

    started = time.monotonic()
    ann_config = AnnConfig(M=config.M, ef_construction=config.ef_construction, ef=config.ef)
    stored = artefacts.stored_search_index(storage, ann_config)
    works = artworks.unique("artwork_id", keep="first", maintain_order=True).sort("artwork_id")
    documents, tokens = kw.update_documents(works, stored.documents, stored.tokenizer)
    if tokens["tokenised"] and stored.documents_note:
        context.log.info(f"tokenising {tokens['tokenised']} works: {stored.documents_note}")
    keyword = kw.KeywordIndex.from_documents(documents, tokens["tokenizer"])
    ids = keyword.ids
    keyword_seconds = time.monotonic() - started

    text_model_id = encoder.text_model_id()
    texts = (text_embeddings.filter(pl.col("model_id") == text_model_id).unique("artwork_id")
             .join(works.select("artwork_id"), on="artwork_id", how="semi").sort("artwork_id"))
    text_ids, text_matrix = texts["artwork_id"].to_list(), as_matrix(texts["vector"])
    texts_fingerprint = frame_fingerprint(texts.select("artwork_id", "text_sha256"))
    parts, updates, indexes = [ts.KEYWORD_DIR], {}, {}
    if text_ids:
        indexes[ts.TEXT_DIR], updates[ts.TEXT_DIR] = _vector_index(
            stored.vector_indexes, ts.TEXT_DIR, text_ids, text_matrix, text_model_id, ann_config)
        parts.append(ts.TEXT_DIR)
    image_model_id = None
    if encoder.is_hf:
        backbone = encoder.load_backbone()
        if backbone.has_text_tower:
            image_model_id = backbone.model_id
            image_ids, image_matrix = image_vectors(works, tables, image_model_id)
            if image_ids:
                indexes[ts.IMAGE_DIR], updates[ts.IMAGE_DIR] = _vector_index(
                    stored.vector_indexes, ts.IMAGE_DIR, image_ids, image_matrix, image_model_id, ann_config)
                parts.append(ts.IMAGE_DIR)
    recall = {"recall_at_10": 1.0, "queries": 0, "reused": False}
    if text_ids:
        recall = text_recall(indexes[ts.TEXT_DIR], text_ids, text_matrix, updates[ts.TEXT_DIR], stored.info.get("text_recall"),
                             config, seed=zlib.crc32(texts_fingerprint.encode()))
    fusion = ts.FusionConfig(**{f: getattr(config, f) for f in ts.FusionConfig.__dataclass_fields__})
    info = {"parts": parts, "fusion": fusion.as_dict(), "works": len(ids), "text_model_id": text_model_id,
            "image_model_id": image_model_id, "backbone_spec": encoder.backbone if image_model_id else None,
            "vocabulary": len(keyword.vocab), "updates": updates, "tokens": tokens, "text_recall": recall}
    unchanged = [part for part, update in updates.items() if _untouched(update)]
    location = artefacts.save_search_index(storage, keyword, indexes, info, unchanged)
    seconds = time.monotonic() - started
    image_ids = indexes[ts.IMAGE_DIR].ids if ts.IMAGE_DIR in indexes else []
    table = pl.DataFrame({"artwork_id": ids}, schema={"artwork_id": pl.String}).with_columns(
        pl.col("artwork_id").is_in(texts["artwork_id"].implode()).alias("text_vector"),
        pl.col("artwork_id").is_in(pl.Series(image_ids, dtype=pl.String).implode()).alias("image_vector"))
    # the content searched: every work's tokens, the text vectors, the image vectors' model and the settings
    version = combined_fingerprint(frame_fingerprint(table), frame_fingerprint(documents.select("artwork_id", "tokens")),
                                   texts_fingerprint, str(image_model_id), repr(sorted(fusion.as_dict().items())))
    yield Output(
        table,
        data_version=DataVersion(version),
        metadata={
            "works": len(ids),
            "with_text_vector": len(text_ids),
            "with_image_vector": len(image_ids),
            "rankings": ", ".join(["keyword", *(["text"] if text_ids else []), *(["image"] if image_ids else [])]),
            "keyword_vocabulary": len(keyword.vocab),
            "tokenised": tokens["tokenised"],
            "tokens_reused": tokens["reused"],
            "keyword_seconds": round(keyword_seconds, 2),
            "seconds": round(seconds, 2),
            "updates": MetadataValue.json(updates),
            "fusion": MetadataValue.json(fusion.as_dict()),
            "text_recall_at_10": round(recall["recall_at_10"], 4),
            "recall_queries": recall["queries"],
            "recall_reused": recall["reused"],
            "index": location,
            "example_document": MetadataValue.md(f"`{' '.join(documents['tokens'][0])[:300]}`" if documents.height else "(none)"),
            "preview": markdown_table(table, ["artwork_id", "text_vector", "image_vector"]),
        },
    )
    yield AssetCheckResult(check_name="text_recall_at_10_vs_exact", passed=recall["recall_at_10"] >= RECALL_GATE,
                           metadata={"recall_at_10": recall["recall_at_10"], "gate": RECALL_GATE, "queries": recall["queries"],
                                     "reused": recall["reused"]})
