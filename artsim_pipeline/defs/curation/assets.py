"""For curators: clusters of the collection and an interactive map of it, both updated
incrementally when only some works are new or changed (see core/incremental.py)."""

from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset

from artsim_pipeline.core.features import frame_fingerprint, vectors_matrix
from artsim_pipeline.core.incremental import MAX_INCREMENTAL_FRACTION
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage

SINGLE_FILE_MAX_POINTS = 20_000  # above this the self-contained page is too heavy; the chunked map remains


class ClustersConfig(Config):
    """k-means on the artwork vectors; None picks about sqrt(n / 2) clusters. New or changed works
    join the nearest stored centroid unless `full_recluster`, changed settings or drift say fit again."""

    n_clusters: Optional[int] = None
    seed: int = 0
    full_recluster: bool = False
    max_incremental_fraction: float = MAX_INCREMENTAL_FRACTION
    max_distance_ratio: float = 1.5


@asset(group_name="curation", kinds={"scikitlearn", "parquet"}, code_version="2")
def clusters(context: AssetExecutionContext, config: ClustersConfig, artwork_vectors: pl.DataFrame,
             artworks: pl.DataFrame, storage: ArtsimStorage) -> Output[pl.DataFrame]:
    """Cluster membership of every artwork (artwork_id, cluster, distance to the centroid), with a
    summary per cluster in the metadata: size, top makers, departments, cultures, date span and
    representative works. The metadata says whether the run fitted again (`full`) or assigned only
    new and changed works (`incremental`), and why. The summary is made again only when the
    labels or the metadata it counts changed; a retitled work only refreshes the titles."""
    from artsim_pipeline.core.clusters import (LABELS_SCHEMA, summarise_clusters, summary_inputs_key, update_clusters,
                                               with_current_titles)

    ids, vectors = vectors_matrix(artwork_vectors)
    state, plan = update_clusters(
        ids, vectors, artefacts.load_cluster_state(storage), n_clusters=config.n_clusters, seed=config.seed,
        force_full=config.full_recluster, max_incremental_fraction=config.max_incremental_fraction,
        max_distance_ratio=config.max_distance_ratio)
    if plan.full or plan.fresh or plan.removed:  # otherwise the stored state is this one
        artefacts.save_cluster_state(storage, state)
    labels = state.labels.select(list(LABELS_SCHEMA))
    summary_key = summary_inputs_key(labels, artworks)
    stored_summary = artefacts.stored_cluster_summary(storage, summary_key)
    if stored_summary is not None:
        summary = with_current_titles(stored_summary, artworks)
    else:
        summary = summarise_clusters(labels, artworks)
        artefacts.save_cluster_summary(storage, summary, summary_key)
    context.log.info("clusters: %s run (%s)", plan.mode, plan.reason)
    return Output(
        labels,
        data_version=DataVersion(frame_fingerprint(labels)),
        metadata={
            "clusters": summary.height,
            "artworks": labels.height,
            "largest": int(summary["size"].max()) if summary.height else 0,
            "run": plan.mode,
            "run_reason": plan.reason,
            "assigned_incrementally": len(plan.fresh),
            "incremental_fraction": round(plan.incremental_fraction, 4),
            "summary_reused": stored_summary is not None,
            "summary": markdown_table(summary, list(summary.columns), rows=50),
        },
    )


class CollectionMapConfig(Config):
    seed: int = 0
    projection: str = "auto"  # "auto" (UMAP unless the collection is tiny) | "umap" | "pca_tsne" | "pca"
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    neighbours: int = 8
    thumbnail_px: int = 64
    full_layout: bool = False  # lay the whole map out again (e.g. from a weekly schedule's run config)
    max_incremental_fraction: float = MAX_INCREMENTAL_FRACTION
    place_k: int = 10  # a new work goes to the weighted mean position of its k nearest placed works
    single_file_max_points: int = SINGLE_FILE_MAX_POINTS
    chunk_points: int = 65_536


def _single_file_page(points: pl.DataFrame, vectors: np.ndarray, ids: list[str], method: str,
                      config: CollectionMapConfig, storage: ArtsimStorage) -> tuple[str, int]:
    """The self-contained page (thumbnails and nearest works embedded) and how many thumbnails it holds."""
    from artsim_pipeline.core.collection_map import render_map_html, thumbnail_data_uri

    index = artefacts.load_ann_index(storage)
    found, _ = index.query(vectors, config.neighbours, exclude_ids=None)
    neighbours = {a: [n for n in row if n and n != a][: config.neighbours] for a, row in zip(ids, found.tolist())}
    thumbnails = {}
    for artwork_id, path in points.select("artwork_id", "image_path").iter_rows():
        image = artefacts.read_image(storage, path) if path else None
        if image is not None:
            thumbnails[artwork_id] = thumbnail_data_uri(image, max_side=config.thumbnail_px)
    page = render_map_html(points.drop("image_path"), neighbours, thumbnails, method=method, link_landing_pages=True)
    return page, len(thumbnails)


def _too_large_page(n: int, limit: int) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>artsim collection map</title></head>"
            f"<body><p>The collection has {n:,} works, more than the {limit:,} a single-file map holds. Run "
            "<code>artsim serve</code> and open <code>/map</code> for the chunked map.</p></body></html>")


@asset(group_name="curation", kinds={"html"}, code_version="3", deps=["ann_index"])
def collection_map(
    context: AssetExecutionContext,
    config: CollectionMapConfig,
    artwork_vectors: pl.DataFrame,
    artworks: pl.DataFrame,
    clusters: pl.DataFrame,
    raw_images: pl.DataFrame,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """A 2-D map of the collection (UMAP, cosine, seeded; PCA + t-SNE for tiny collections or on
    request). New or changed works are placed among their nearest works on the existing map, which
    is laid out again only when asked or past the drift limit. Written as a chunked map (binary
    point chunks, a manifest, details on demand; `artsim serve` shows it at /map) and, for
    collections up to `single_file_max_points`, as one self-contained HTML page too. The table
    holds each work's map coordinates."""
    from artsim_pipeline.core.collection_map import project_2d
    from artsim_pipeline.core.collection_map.chunks import build_chunked_map
    from artsim_pipeline.core.collection_map.placement import update_layout

    ids, vectors = vectors_matrix(artwork_vectors)
    settings = {"projection": config.projection, "seed": config.seed, "n_neighbors": config.umap_n_neighbors,
                "min_dist": config.umap_min_dist}

    def project(unit: np.ndarray) -> tuple[np.ndarray, str]:
        return project_2d(unit, seed=config.seed, method=config.projection, n_neighbors=config.umap_n_neighbors,
                          min_dist=config.umap_min_dist)

    loaded: list = []  # the index is read only when new or changed works are placed

    def search(queries: np.ndarray, k: int):
        if not loaded:
            loaded.append(artefacts.load_ann_index(storage))
        return loaded[0].query(queries, k)

    has_index = artefacts.ann_index_stamp(storage) is not None
    layout, plan = update_layout(ids, vectors, artefacts.load_map_layout(storage), project=project, settings=settings,
                                 search=search if has_index else None, k=config.place_k, force_full=config.full_layout,
                                 max_incremental_fraction=config.max_incremental_fraction)
    if plan.full or plan.fresh or plan.removed:  # otherwise the stored layout is this one
        artefacts.save_map_layout(storage, layout)
    method = layout.info["method"]
    context.log.info("collection_map: %s layout (%s)", plan.mode, plan.reason)
    paths = raw_images.filter(pl.col("status") == "ok").select("sha256", "path").unique("sha256")
    points = (
        layout.points.select("artwork_id", "x", "y")
        .join(clusters.select("artwork_id", "cluster"), on="artwork_id", how="left")
        .join(artworks.select("artwork_id", "title", "artists", "source", "department", "date_text", "image_sha256",
                              "landing_url"), on="artwork_id", how="left")
        .join(paths.rename({"sha256": "image_sha256", "path": "image_path"}), on="image_sha256", how="left")
        .drop("image_sha256")
    )
    manifest, chunks, details = build_chunked_map(
        points, chunk_points=config.chunk_points, seed=config.seed, method=method,
        extra={"layout": plan.mode, "layout_reason": plan.reason})
    manifest_location = artefacts.save_chunked_map(storage, manifest, chunks, details)
    with_thumbnail = 0
    if points.height <= config.single_file_max_points:
        page, with_thumbnail = _single_file_page(points, vectors, ids, method, config, storage)
    else:
        page = _too_large_page(points.height, config.single_file_max_points)
    location = artefacts.save_collection_map(storage, page)
    map_link = MetadataValue.url(Path(location).as_uri()) if storage.objects.is_local else MetadataValue.url(location)
    table = points.select("artwork_id", "x", "y", "cluster")
    return Output(
        table,
        data_version=DataVersion(frame_fingerprint(table)),
        metadata={
            "map": map_link,
            "html_path": MetadataValue.path(location),
            "chunked_map": MetadataValue.path(manifest_location),
            "projection": method,
            "layout": plan.mode,
            "layout_reason": plan.reason,
            "placed_incrementally": len(plan.fresh),
            "removed": plan.removed,
            "incremental_fraction": round(plan.incremental_fraction, 4),
            "points": points.height,
            "with_thumbnail": with_thumbnail,
            "single_file_page": points.height <= config.single_file_max_points,
            "html_megabytes": round(len(page.encode("utf-8")) / 1e6, 2),
            "chunked_megabytes": round(sum(len(b) for b in chunks.values()) / 1e6, 2),
            "chunks": len(chunks),
        },
    )
