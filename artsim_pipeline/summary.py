"""A short, human summary of what the pipeline holds, read from the stored tables."""

from __future__ import annotations

import polars as pl

from artsim_pipeline import settings
from artsim_pipeline.core.sources import SOURCES


def _counts(df: pl.DataFrame, column: str) -> dict:
    return dict(df.group_by(column).len().sort(column).iter_rows())


def collect_summary() -> list[str]:
    from artsim_pipeline.resources.environment import build_resources

    store = build_resources(settings.artsim_env())["tables"]  # S3 in prod, $ARTSIM_HOME otherwise
    lines = []
    for source in SOURCES:
        raw = store.read_table("raw_objects", source, columns=["status"])
        if raw is not None:
            lines.append(f"raw_objects[{source}]: {raw.height} rows {_counts(raw, 'status')}")
        images = store.read_table("raw_images", source, columns=["status"])
        if images is not None:
            lines.append(f"raw_images[{source}]: {images.height} rows {_counts(images, 'status')}")
        artworks = store.read_table("artworks", source, columns=["artwork_id"])
        if artworks is not None:
            quarantine = store.read_table("artworks_quarantine", source, columns=["source_id"])
            lines.append(f"artworks[{source}]: {artworks.height} rows, quarantined {0 if quarantine is None else quarantine.height}")
    pairs = store.read_table("weak_pairs", columns=["rule", "split"])
    if pairs is not None:
        lines.append(f"weak_pairs: {pairs.height} pairs, by rule {_counts(pairs, 'rule')}, by split {_counts(pairs, 'split')}")
    from artsim_pipeline.core.images import EMBEDDING_BUCKET_KEYS

    chunks = [t for t in (store.read_table("image_embeddings", b, columns=["model_id"]) for b in EMBEDDING_BUCKET_KEYS) if t is not None]
    tables = {"image_embeddings": pl.concat(chunks, how="diagonal_relaxed") if chunks else None, "text_embeddings": store.read_table("text_embeddings", columns=["model_id"])}
    for key, table in tables.items():
        if table is not None:
            lines.append(f"{key}: {table.height} vectors {_counts(table, 'model_id')}")
    model = store.read_table("similarity_model")
    if model is not None:
        row = model.row(0, named=True)
        lines.append(f"similarity_model: MLflow run {row['mlflow_run_id']} (registered v{row['registered_version']}), "
                     f"{row['epochs_run']} epochs, best val mAP@10 {row['best_val_map_at_10']:.3f}")
    evaluation = store.read_table("similarity_evaluation")
    if evaluation is not None:
        lines.extend(_evaluation_lines(evaluation))
    for key in ("department_classifier", "period_classifier"):
        table = store.read_table(key)
        if table is not None:
            lines.append(f"{key}: {table.height} classes (accuracy and macro-F1 in the Dagster metadata and MLflow)")
    vectors = store.read_table("artwork_vectors", columns=["artwork_id", "vector_source"])
    if vectors is not None and vectors.height:
        lines.append(f"artwork_vectors: {vectors.height} works, vectors from the {vectors['vector_source'][0]} model")
        lines.extend(_example_query(vectors))
    if store.read_table("search_index", columns=["artwork_id"]) is not None:
        lines.extend(_example_search())
    return lines


def _example_search(query: str = "mother holding her infant") -> list[str]:
    """The top works for a paraphrase query (no work of the sample says "mother" or "infant")."""
    from artsim_pipeline.service import NotBuiltError, SimilarityService

    try:
        results = SimilarityService.for_environment().search(query, 5)
    except NotBuiltError as exc:
        return [f"(no example search: {exc})"]
    lines = [f"example: artsim search {query} -k 5"]
    for r in results:
        found_by = ", ".join(f"{name} #{rank}" for name, rank in r["ranks"].items())
        lines.append(f"    {r['score']:.3f}  {r['artwork_id']:<16} {(r['title'] or '')[:50]} ({found_by})")
    return lines


def _example_query(vectors: pl.DataFrame) -> list[str]:
    from artsim_pipeline.service import NotBuiltError, SimilarityService

    service = SimilarityService.for_environment()
    query = "met:436535" if vectors.filter(pl.col("artwork_id") == "met:436535").height else vectors["artwork_id"][0]
    try:
        results = service.similar(query, 5)
    except NotBuiltError as exc:
        return [f"(no example query: {exc})"]
    title = service.artworks.filter(pl.col("artwork_id") == query)["title"].item()
    lines = [f"example: artsim similar {query} -k 5   ({title})"]
    for r in results:
        lines.append(f"    {r['score']:.3f}  {r['artwork_id']:<16} {(r['title'] or '')[:60]} — {', '.join(r['artists'] or []) or 'unknown maker'}")
    return lines


def _evaluation_lines(evaluation: pl.DataFrame) -> list[str]:
    """Weak-pair recall@10 over all test works, and department / classification agreement of the
    10 nearest works per image kind, for each set of vectors."""
    def figures(group: str, criterion: str) -> str:
        rows = evaluation.filter((pl.col("group") == group) & (pl.col("criterion") == criterion))
        if rows.height == 0:
            return ""
        n = rows["n_queries"][0]
        return ", ".join(f"{r['model']} {r['value']:.3f}" for r in rows.iter_rows(named=True)) + f"  ({n} queries)"

    lines = [f"test weak-pair recall@10: {figures('all', 'weak_pair_recall_at_10')}"]
    for group in ("stand-in", "real photo"):
        for attribute in ("department", "classification"):
            text = figures(group, f"agreement_{attribute}")
            if text:
                lines.append(f"test {group} works, same {attribute} among the 10 nearest: {text}")
    return lines
