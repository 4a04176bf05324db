"""Embeddings: image vectors from a pretrained backbone and metadata text vectors, computed once.

Both tables are caches keyed by content and model: a run embeds only what it has not embedded
with the current model, and vectors of different models never mix (downstream filters by
`model_id`).
"""

import time
from datetime import datetime, timezone

import numpy as np
import polars as pl
from dagster import AllPartitionMapping, AssetExecutionContext, AssetIn, DataVersion, MetadataValue, Output, asset

from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.defs.partitions import embedding_buckets, sha_bucket
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore


def vectors_frame(keys: dict[str, list], vectors: np.ndarray) -> pl.DataFrame:
    """Key columns plus a float32 list `vector` (lists, so vectors of models of different
    widths can share one cache table) and the time they were embedded."""
    return pl.DataFrame(keys).with_columns(
        pl.Series("vector", list(vectors.astype(np.float32)), dtype=pl.List(pl.Float32)),
        embedded_at=pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")),
    )


def merge_cache(*parts: pl.DataFrame | None) -> pl.DataFrame | None:
    present = [p for p in parts if p is not None and p.height]
    return pl.concat(present, how="diagonal_relaxed") if present else None


@asset(
    group_name="embeddings",
    kinds={"pytorch", "parquet"},
    code_version="1",
    partitions_def=embedding_buckets,
    ins={"raw_images": AssetIn(partition_mapping=AllPartitionMapping())},
    # one GPU (or the CPU) is shared by every chunk: `dagster instance concurrency set gpu 1`
    pool="gpu",
)
def image_embeddings(
    context: AssetExecutionContext,
    raw_images: pl.DataFrame,
    encoder: EncoderResource,
    storage: ArtsimStorage,
    tables: TableStore,
) -> Output[pl.DataFrame]:
    """Backbone vectors (L2-normalised float32) keyed by image sha256 and model id, in chunks by
    sha256 bucket; only images not yet embedded with the current backbone and preprocessing
    are embedded."""
    bucket = context.partition_key
    previous = tables.read_table("image_embeddings", bucket)
    backbone = encoder.load_backbone()
    model_id = backbone.model_id
    images = (
        raw_images.filter((pl.col("status") == "ok") & pl.col("path").is_not_null())
        .unique("sha256", keep="first")
        .filter(pl.col("sha256").map_elements(sha_bucket, return_dtype=pl.String) == bucket)
        .sort("sha256")
    )
    done: set[str] = set()
    if previous is not None and previous.height:
        done = set(previous.filter(pl.col("model_id") == model_id)["image_sha256"].to_list())
    todo = images.filter(~pl.col("sha256").is_in(list(done)))
    items: list[tuple[str, str]] = []
    failures: list[tuple[str, str]] = []
    for sha, path in todo.select("sha256", "path").iter_rows():
        local = artefacts.image_file(storage, path)  # a cached download when the images are on S3
        if local is None:
            failures.append((sha, f"image file {path} is not in storage"))
        else:
            items.append((sha, str(local)))
    context.log.info(f"{model_id} [{bucket}]: {images.height} images, {len(done)} already embedded, {len(items)} to embed")

    last_report = [time.monotonic()]

    def progress(done_count: int, total: int) -> None:
        if time.monotonic() - last_report[0] > 10 or done_count == total:
            context.log.info(f"embedded {done_count}/{total}")
            last_report[0] = time.monotonic()

    ips = 0.0
    if items:
        result = encoder.embed_image_files(items, backbone, progress=progress)
        new = vectors_frame({"image_sha256": [str(k) for k in result.keys], "model_id": [model_id] * len(result.keys)}, result.vectors)
        failures += [(str(k), reason) for k, reason in result.failures]
        ips = result.images_per_second
        device = result.device
    else:
        new = None
        device = "none"
    table = merge_cache(previous, new)
    if table is None:
        table = vectors_frame({"image_sha256": [], "model_id": []}, np.zeros((0, backbone.dim), np.float32))
    current = table.filter(pl.col("model_id") == model_id)
    for sha, reason in failures[:20]:
        context.log.warning(f"image {sha} could not be embedded: {reason}")
    return Output(
        table,
        # the data version is which images are embedded with the current model: a chunk that
        # embedded nothing new leaves training, the classifiers and the search up to date, and
        # switching back to a backbone whose vectors are still stored makes them stale (the
        # table, holding both models' rows, is the same then)
        data_version=DataVersion(f"{model_id}:{frame_fingerprint(current.select('image_sha256'))}"),
        metadata={
            "model_id": model_id,
            "dim": backbone.dim,
            "device": device,
            "embedded_this_run": 0 if new is None else new.height,
            "reused": len(done),
            "failures": len(failures),
            "images_per_second": round(ips, 1),
            "vectors_for_model": current.height,
            "rows": table.height,
            "failures_preview": MetadataValue.json(dict(failures[:10])),
        },
    )


@asset(group_name="embeddings", kinds={"pytorch", "parquet"}, code_version="1")
def text_embeddings(
    context: AssetExecutionContext,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    tables: TableStore,
) -> Output[pl.DataFrame]:
    """all-MiniLM-L6-v2 vectors of each artwork's title, makers, medium, kind, culture and tags, keyed by
    artwork id, text hash and model; unchanged texts are not embedded again, and texts are only
    built (in Python) for works whose text fields changed (`text_key`)."""
    from artsim_pipeline.core.ml.text import artwork_text, texts_wanted

    model_id = encoder.text_model_id()
    previous = tables.read_table("text_embeddings")
    if previous is not None and previous.height:
        previous = previous.filter(pl.col("model_id") == model_id)
        if "text_key" not in previous.columns:  # a table from before text keys: every text is built once
            previous = previous.with_columns(pl.lit(None, dtype=pl.UInt64).alias("text_key"))
    # works whose text fields are unchanged keep their stored text hash; only the others' texts are built
    wanted, texts = texts_wanted(artworks, previous)
    reusable = pl.DataFrame(schema={"artwork_id": pl.String, "text_sha256": pl.String})
    if previous is not None and previous.height:
        reusable = previous.drop("text_key").join(wanted, on=["artwork_id", "text_sha256"], how="inner", maintain_order="left")
    todo = wanted.join(reusable.select("artwork_id", "text_sha256"), on=["artwork_id", "text_sha256"], how="anti")
    started = time.monotonic()
    vectors = np.zeros((0, 0), np.float32)
    if todo.height:  # only then is the model loaded
        vectors = encoder.embed_texts([texts[a] for a in todo["artwork_id"].to_list()])
    seconds = time.monotonic() - started
    new = vectors_frame({"artwork_id": todo["artwork_id"].to_list(), "text_sha256": todo["text_sha256"].to_list(),
                         "model_id": [model_id] * todo.height, "text_key": todo["text_key"]}, vectors)
    table = merge_cache(reusable, new)
    if table is None:
        table = new
    example = artwork_text(artworks.row(0, named=True)) if artworks.height else ""
    return Output(
        table.sort("artwork_id"),
        data_version=DataVersion(frame_fingerprint(table.select("artwork_id", "text_sha256", "model_id"))),
        metadata={
            "model_id": model_id,
            "rows": table.height,
            "embedded_this_run": todo.height,
            "reused": reusable.height,
            "texts_built": len(texts),
            "texts_per_second": round(todo.height / seconds, 1) if todo.height and seconds > 0 else 0.0,
            "example_text": MetadataValue.md(f"`{example[:300]}`"),
            "preview": markdown_table(table.select("artwork_id", "model_id", "text_sha256"), ["artwork_id", "model_id", "text_sha256"]),
        },
    )
