"""Evaluation of the similarity head on criteria it was and was not trained on, and the gate
that decides whether curators are served its vectors."""

import math

import numpy as np
import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, DataVersion, MetadataValue, Output, asset

from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.defs.training.assets import features_for, model_row
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.mlflow_tracking import MlflowResource
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage

EVALUATION_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "group": pl.String(), "criterion": pl.String(), "value": pl.Float64(), "n_queries": pl.Int64(),
    "stderr": pl.Float64(), "diff_vs_backbone": pl.Float64(), "diff_stderr": pl.Float64(),
}
STAND_IN_GROUP = "stand-in"
REAL_PHOTO_GROUP = "real photo"


def image_groups(artworks: pl.DataFrame, real_sources: set[str]) -> dict[str, set[str]]:
    """Artwork ids whose images are real photographs, and those whose images are stand-ins."""
    is_real = pl.col("source").is_in(sorted(real_sources))
    return {
        STAND_IN_GROUP: set(artworks.filter(~is_real)["artwork_id"].to_list()),
        REAL_PHOTO_GROUP: set(artworks.filter(is_real)["artwork_id"].to_list()),
    }


def wide_table(table: pl.DataFrame) -> pl.DataFrame:
    """One row per group x criterion, one column per model, with the queries behind it and the
    trained head's paired difference to the backbone (the table shown in the UI)."""
    values = table.pivot(on="model", index=["group", "criterion"], values="value")
    extra = table.filter(pl.col("model") == "trained").select(
        "group", "criterion", "n_queries",
        (pl.col("diff_vs_backbone").round(3).cast(pl.String) + pl.lit(" ± ") + pl.col("diff_stderr").round(3).cast(pl.String))
        .alias("trained_minus_backbone"),
    )
    models = [m for m in ("trained", "backbone", "random") if m in values.columns]
    return values.join(extra, on=["group", "criterion"], how="left").select(
        "group", "criterion", "n_queries", *[pl.col(m).round(3) for m in models], "trained_minus_backbone")


@asset(
    group_name="training",
    kinds={"mlflow"},
    code_version="3",
    check_specs=[
        AssetCheckSpec("trained_beats_backbone", asset="similarity_evaluation",
                       description="test weak-pair recall@10 of the trained model above the raw backbone's"),
        AssetCheckSpec("trained_keeps_metadata_agreement", asset="similarity_evaluation",
                       description="no agreement criterion (department, classification, culture, period; stand-in and "
                                   "real-photo works) worse than the backbone by more than its standard error"),
    ],
)
def similarity_evaluation(
    context: AssetExecutionContext,
    similarity_model: pl.DataFrame,
    weak_pairs: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    model_text_features: pl.DataFrame,
    training_labels: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
    storage: ArtsimStorage,
    museum_api: MuseumApiResource,
):
    """The trained head, the raw backbone and random vectors on the test split's works: weak-pair
    recall@1/5/10 and mAP@10 (the training signal) and metadata agreement precision@10 for
    department, classification, culture and period (criteria training did not optimise as a
    ranking), for all works, stand-in works and real-photo works, each with its number of
    queries; plus the mean rank of curators' picks on held-out judgments. One row per
    model x group x criterion; logged into the model's MLflow run with plots."""
    from artsim_pipeline.core.ml.agreement import attribute_labels, evaluation_rows, gate_from_rows
    from artsim_pipeline.core.ml.similarity import apply_head, fuse_features

    model = model_row(similarity_model)
    head, _ = artefacts.load_head(storage, model["head_key"])
    features = features_for(model["fusion"], training_labels, image_embeddings, model_text_features, encoder)
    raw = fuse_features(features.image, features.text, model["fusion"])
    trained = apply_head(head, raw)
    random = np.random.default_rng(0).standard_normal(trained.shape).astype(np.float32)
    vector_sets = {"trained": trained, "backbone": raw, "random": random}
    groups = image_groups(training_labels, museum_api.real_image_sources())
    rows = evaluation_rows(features.ids, vector_sets, weak_pairs, attribute_labels(training_labels, features.ids), groups)
    table = pl.DataFrame(rows, schema=EVALUATION_SCHEMA).with_columns(mlflow_run_id=pl.lit(model["mlflow_run_id"]))
    decision = gate_from_rows(rows)
    wide = wide_table(table)

    compared = {"trained": trained, "backbone": raw}
    previous = previous_registered_head(mlflow_tracking, storage, model, raw.shape[1])
    if previous is not None:
        compared["previous"] = apply_head(previous[0], raw)
    pick_ranks = curator_mean_ranks(storage, weak_pairs, features.ids, compared)
    if previous is not None:
        pick_ranks["previous_model_version"] = previous[1]
    hists = log_evaluation(mlflow_tracking, model["mlflow_run_id"], table, wide, decision, pick_ranks,
                           features.ids, compared, weak_pairs)

    def figure(model_name: str, criterion: str, group: str = "all") -> float:
        hit = table.filter((pl.col("model") == model_name) & (pl.col("group") == group) & (pl.col("criterion") == criterion))
        return round(hit["value"].item(), 4) if hit.height else math.nan

    gain = figure("trained", "weak_pair_recall_at_10") - figure("backbone", "weak_pair_recall_at_10")
    yield Output(
        table,
        data_version=DataVersion(frame_fingerprint(table)),
        metadata={
            "evaluation": MetadataValue.md(_markdown(wide)),
            "vectors_served": "trained" if decision.serve_trained else "backbone",
            "gate": decision.reason,
            "trained_recall_at_10": figure("trained", "weak_pair_recall_at_10"),
            "backbone_recall_at_10": figure("backbone", "weak_pair_recall_at_10"),
            "random_recall_at_10": figure("random", "weak_pair_recall_at_10"),
            "recall_at_10_gain_points": round(100 * gain, 1),
            "real_photo_department_agreement": MetadataValue.json(
                {m: figure(m, "agreement_department", REAL_PHOTO_GROUP) for m in vector_sets}),
            "auc_trained_vs_backbone": MetadataValue.json({k: round(h["auc"], 4) for k, h in hists.items()}),
            "curator_mean_rank_of_pick": MetadataValue.json(pick_ranks),
            "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(model["mlflow_experiment_id"], model["mlflow_run_id"])),
        },
    )
    yield AssetCheckResult(
        check_name="trained_beats_backbone",
        passed=gain > 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"trained_recall_at_10": figure("trained", "weak_pair_recall_at_10"),
                  "backbone_recall_at_10": figure("backbone", "weak_pair_recall_at_10"), "gain_points": round(100 * gain, 2)},
    )
    agreement_failures = [f for f in decision.failed if not f.startswith("weak-pair")]
    yield AssetCheckResult(
        check_name="trained_keeps_metadata_agreement",
        passed=not agreement_failures,
        severity=AssetCheckSeverity.WARN,
        metadata={"criteria_checked": decision.checked, "failed": MetadataValue.json(agreement_failures)},
    )


def _markdown(wide: pl.DataFrame) -> str:
    lines = ["| " + " | ".join(wide.columns) + " |", "|" + "---|" * len(wide.columns)]
    for row in wide.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return "\n".join(lines)


def log_evaluation(mlflow_tracking: MlflowResource, run_id: str, table: pl.DataFrame, wide: pl.DataFrame, decision,
                   pick_ranks: dict, ids: list[str], compared: dict[str, np.ndarray], weak_pairs: pl.DataFrame) -> dict:
    """Every figure as a metric of the model's run (``test_<model>_<criterion>`` over all works,
    ``test_<model>_<group>_<criterion>`` per group), the tables, the gate and the plots."""
    from artsim_pipeline.core.ml.metrics import plot_recall_curve, plot_similarity_histograms, recall_curve, similarity_histograms

    metrics: dict[str, float] = {}
    for r in table.iter_rows(named=True):
        name = r["criterion"].removeprefix("weak_pair_")
        group = "" if r["group"] == "all" else r["group"].replace(" ", "_").replace("-", "_") + "_"
        metrics[f"test_{r['model']}_{group}{name}"] = float(r["value"])
        if r["model"] == "trained" and not math.isnan(r["diff_vs_backbone"]):
            metrics[f"test_trained_minus_backbone_{group}{name}"] = float(r["diff_vs_backbone"])
    metrics["gate_serves_trained"] = float(decision.serve_trained)
    if pick_ranks["judgments"]:
        metrics.update({f"curator_mean_rank_{k}": float(v) for k, v in pick_ranks.items() if isinstance(v, (int, float))})
    core = {name: compared[name] for name in ("trained", "backbone")}
    curves = {name: recall_curve(ids, vectors, weak_pairs, "test") for name, vectors in core.items()}
    hists = {name: similarity_histograms(ids, vectors, weak_pairs, "test") for name, vectors in core.items()}
    mlflow_tracking.log_to_run(
        run_id, metrics=metrics, tags={"artsim.gate": decision.reason[:5000]},
        pngs={"evaluation/recall_at_k.png": plot_recall_curve(curves),
              "evaluation/similarity_histograms.png": plot_similarity_histograms(hists)},
        tables={"evaluation/evaluation_table.json": table.drop("mlflow_run_id").to_pandas(),
                "evaluation/evaluation_summary.json": wide.to_pandas()})
    return hists


def previous_registered_head(mlflow_tracking: MlflowResource, storage: ArtsimStorage, model: dict, input_dim: int):
    """(head, version) of the registered model version before this one, when it takes the same
    inputs: curators' picks are then ranked before and after retraining on the same judgments."""
    current = int(model["registered_version"]) if str(model.get("registered_version") or "").isdigit() else None
    older = [(version, run_id) for version, run_id in mlflow_tracking.registered_versions()
             if run_id != model["mlflow_run_id"] and (current is None or version < current)]
    for version, run_id in sorted(older, reverse=True):
        try:
            head, config = artefacts.load_head(storage, artefacts.head_key(run_id))
        except FileNotFoundError:
            continue
        same_inputs = (config.get("input_dim") == input_dim and config.get("fusion") == model["fusion"]
                       and config.get("image_model_id") == model["image_model_id"]
                       and config.get("text_model_id") == model["text_model_id"])
        if same_inputs:
            return head, str(version)
    return None


def curator_mean_ranks(storage: ArtsimStorage, weak_pairs: pl.DataFrame, ids: list[str], vectors: dict[str, np.ndarray]) -> dict:
    """Training-the-Archive's metric on held-out judgments (anchors outside the train split):
    the mean rank each set of vectors gives the curator's pick among the 8 candidates."""
    from artsim_pipeline.core.feedback import mean_rank_of_pick
    from artsim_pipeline.resources.artefacts import judgments_table

    judgments = judgments_table(storage)
    train_ids = set(weak_pairs.filter(pl.col("split") == "train")["artwork_id_a"].to_list()) | set(
        weak_pairs.filter(pl.col("split") == "train")["artwork_id_b"].to_list())
    held_out = judgments.filter(~pl.col("anchor_id").is_in(list(train_ids))) if judgments.height else judgments
    out: dict = {"judgments": held_out.height}
    if held_out.height:
        for name, matrix in vectors.items():
            lookup = dict(zip(ids, matrix))
            out[name] = float(mean_rank_of_pick(lookup, held_out))
    return out
