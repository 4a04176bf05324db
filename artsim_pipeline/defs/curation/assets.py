"""For curators: clusters of the collection and an interactive map of it."""

from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset

from artsim_pipeline.core.features import vectors_matrix
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage

class ClustersConfig(Config):
    """k-means on the artwork vectors; None picks about sqrt(n / 2) clusters."""

    n_clusters: Optional[int] = None
    seed: int = 0


@asset(group_name="curation", kinds={"scikitlearn", "parquet"}, code_version="1")
def clusters(context: AssetExecutionContext, config: ClustersConfig, artwork_vectors: pl.DataFrame, artworks: pl.DataFrame) -> Output[pl.DataFrame]:
    """Cluster membership of every artwork (artwork_id, cluster, distance to the centroid), with a
    summary per cluster in the metadata: size, top makers, departments, cultures, date span and
    representative works."""
    from artsim_pipeline.core.clusters import cluster_vectors, summarise_clusters

    ids, vectors = vectors_matrix(artwork_vectors)
    labels = cluster_vectors(ids, vectors, n_clusters=config.n_clusters, seed=config.seed)
    summary = summarise_clusters(labels, artworks)
    return Output(
        labels,
        metadata={
            "clusters": summary.height,
            "artworks": labels.height,
            "largest": int(summary["size"].max()) if summary.height else 0,
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


@asset(group_name="curation", kinds={"html"}, code_version="2", deps=["ann_index"])
def collection_map(
    context: AssetExecutionContext,
    config: CollectionMapConfig,
    artwork_vectors: pl.DataFrame,
    artworks: pl.DataFrame,
    clusters: pl.DataFrame,
    raw_images: pl.DataFrame,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """A 2-D map of the collection (UMAP, cosine, seeded; PCA + t-SNE for tiny collections or on request) as one self-contained
    HTML page: thumbnails, colour by museum / department / cluster, hover for title and maker,
    click for the nearest works. The table holds each work's map coordinates."""
    from artsim_pipeline.core.collection_map import project_2d, render_map_html, thumbnail_data_uri

    ids, vectors = vectors_matrix(artwork_vectors)
    coords, method = project_2d(vectors, seed=config.seed, method=config.projection,
                                n_neighbors=config.umap_n_neighbors, min_dist=config.umap_min_dist)
    points = (
        pl.DataFrame({"artwork_id": ids, "x": coords[:, 0].astype(np.float32), "y": coords[:, 1].astype(np.float32)})
        .join(clusters.select("artwork_id", "cluster"), on="artwork_id", how="left")
        .join(artworks.select("artwork_id", "title", "artists", "source", "department", "date_text", "image_sha256", "landing_url"),
              on="artwork_id", how="left")
    )
    index = artefacts.load_ann_index(storage)
    found, _ = index.query(vectors, config.neighbours, exclude_ids=None)
    neighbours = {a: [n for n in row if n and n != a][: config.neighbours] for a, row in zip(ids, found.tolist())}
    paths = dict(raw_images.filter(pl.col("status") == "ok").select("sha256", "path").unique("sha256").iter_rows())
    thumbnails = {}
    for artwork_id, sha in points.select("artwork_id", "image_sha256").iter_rows():
        image = artefacts.read_image(storage, paths[sha]) if sha in paths else None
        if image is not None:
            thumbnails[artwork_id] = thumbnail_data_uri(image, max_side=config.thumbnail_px)
    html = render_map_html(points.drop("image_sha256"), neighbours, thumbnails, method=method, link_landing_pages=True)
    location = artefacts.save_collection_map(storage, html)
    map_link = MetadataValue.url(Path(location).as_uri()) if storage.objects.is_local else MetadataValue.url(location)
    return Output(
        points.select("artwork_id", "x", "y", "cluster"),
        metadata={
            "map": map_link,
            "html_path": MetadataValue.path(location),
            "projection": method,
            "points": points.height,
            "with_thumbnail": len(thumbnails),
            "html_megabytes": round(len(html.encode("utf-8")) / 1e6, 2),
        },
    )
