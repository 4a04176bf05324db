"""Training: a similarity head learned from the weak pairs, its evaluation, the vectors it gives
every artwork, and metadata classifiers. Every training materialisation is one MLflow run."""

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl
from pydantic import Field
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)

from artsim_pipeline.core.features import ArtworkFeatures, artwork_features, frame_fingerprint
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.mlflow_tracking import MlflowResource
from artsim_pipeline.resources.storage import ArtsimStorage

# The backbone's model id is recorded with the embeddings; training reads it from there.
RETRIEVAL_COLUMNS = ["model", "recall_at_1", "recall_at_5", "recall_at_10", "map_at_10", "n_queries"]


class SimilarityTrainingConfig(Config):
    """Hyper-parameters of the similarity head (defaults: `core.ml.similarity.TrainConfig`)."""

    fusion: str = "image"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 5
    temperature: float = 0.07
    neg_margin: float = 0.2
    hidden_dim: int = 512
    out_dim: int = 256
    dropout: float = 0.1
    seed: int = 0
    num_threads: Optional[int] = None
    accelerator: str = "auto"
    init: str = Field(default="pca", description='"pca": start as the centred, whitened backbone metric; "random"')
    whiten: float = 1.0
    residual_scale: float = 1.0
    rule_weights: dict[str, float] = Field(default_factory=lambda: {"shared_tags": 3.0},
                                           description="loss multipliers per rule (on top of the pair weights)")

    def train_config(self):
        from artsim_pipeline.core.ml.similarity import TrainConfig

        return TrainConfig(**self.model_dump())


def image_model_id(image_embeddings: pl.DataFrame, encoder: EncoderResource) -> str:
    """The configured backbone's model id, which must be in the embedding table."""
    model_id = encoder.image_model_id()
    if image_embeddings.filter(pl.col("model_id") == model_id).height == 0:
        raise ValueError(f"image_embeddings holds no vectors of {model_id}; materialise image_embeddings first")
    return model_id


def features_for(fusion: str, artworks, image_embeddings, text_embeddings, encoder: EncoderResource) -> ArtworkFeatures:
    return artwork_features(
        artworks, image_embeddings, text_embeddings,
        image_model_id=image_model_id(image_embeddings, encoder) if fusion in ("image", "concat") else None,
        text_model_id=encoder.text_model_id() if fusion in ("text", "concat") else None,
        fusion=fusion,
    )


def save_head(head, directory: Path, config: dict) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), directory / "head.pt")
    (directory / "head_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


def head_key(run_id: str) -> str:
    """Where `similarity_model` stores a run's head in `ArtsimStorage` (the row's `head_key`)."""
    return f"models/similarity_model/{run_id}"


def load_stored_head(storage: ArtsimStorage, key: str):
    """The head stored under `key` (fetched from S3 when the storage is remote)."""
    directory = storage.fetch_dir(key)
    if directory is None:
        raise FileNotFoundError(f"no model head under {storage.objects.uri(key)}")
    return load_head(directory)


def load_head(directory: str | Path):
    """The projection head saved by `save_head` in `directory`."""
    import torch

    from artsim_pipeline.core.ml.similarity import ProjectionHead

    directory = Path(directory)
    config = json.loads((directory / "head_config.json").read_text())
    head = ProjectionHead(config["input_dim"], config["hidden_dim"], config["out_dim"], config["dropout"])
    head.load_state_dict(torch.load(directory / "head.pt", map_location="cpu", weights_only=True))
    return head.eval(), config


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="1")
def similarity_model(
    context: AssetExecutionContext,
    config: SimilarityTrainingConfig,
    weak_pairs: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    text_embeddings: pl.DataFrame,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """A projection head trained with PyTorch Lightning on the train split of `weak_pairs`
    (weighted InfoNCE + mined negatives, early stopping on val); one MLflow run per
    materialisation, model registered. The table is one row describing the model."""
    import mlflow

    from artsim_pipeline.core.ml import tracking
    from artsim_pipeline.core.ml.similarity import fuse_features, train_similarity

    train_config = config.train_config()
    features = features_for(config.fusion, artworks, image_embeddings, text_embeddings, encoder)
    inputs = fuse_features(features.image, features.text, config.fusion)
    data_versions = {
        "weak_pairs": frame_fingerprint(weak_pairs),
        "image_embeddings": frame_fingerprint(image_embeddings.select("image_sha256", "model_id")),
        "text_embeddings": frame_fingerprint(text_embeddings.select("artwork_id", "text_sha256", "model_id")),
        "artworks": frame_fingerprint(artworks.select("artwork_id", "image_sha256")),
    }
    image_model = image_model_id(image_embeddings, encoder) if config.fusion != "text" else None
    with mlflow_tracking.start_run(mlflow_tracking.similarity_experiment, f"similarity-{context.run_id[:8]}",
                                   {"dagster_run_id": context.run_id, "asset": "similarity_model"}) as run:
        tracking.log_params_flat({**train_config.to_dict(), "image_model_id": image_model,
                                  "text_model_id": encoder.text_model_id() if config.fusion != "image" else None,
                                  "n_artworks": len(features.ids), "input_dim": inputs.shape[1]})
        tracking.log_params_flat({f"data_version.{k}": v for k, v in data_versions.items()})
        context.log.info(f"training on {len(features.ids)} artworks x {inputs.shape[1]} dims, {weak_pairs.height} pairs")
        result = train_similarity(features.ids, features.image, weak_pairs, train_config, X_text=features.text)
        tracking.log_history(result.history)
        tracking.log_metrics_flat(getattr(result, "initial_metrics", None) or {}, prefix="initial_")
        tracking.log_metrics_flat({"best_epoch": result.best_epoch, "best_" + result.monitor: result.best_score,
                                   "seconds_per_epoch": result.seconds_per_epoch, "fit_seconds": result.fit_seconds})
        head_config = {"input_dim": result.input_dim, "hidden_dim": train_config.hidden_dim, "out_dim": train_config.out_dim,
                       "dropout": train_config.dropout, "fusion": config.fusion, "image_model_id": image_model,
                       "text_model_id": encoder.text_model_id()}
        with storage.staged_dir(head_key(run.info.run_id)) as staged:
            save_head(result.head, staged, head_config)
        mlflow.log_dict(head_config, "model_config.json")
        mlflow.log_dict({"history": result.history, "counts": result.counts}, "training_history.json")
        info = tracking.log_torch_model(result.head, inputs[:4], registered_model_name=mlflow_tracking.registered_model_name)
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    last = result.history[-1] if result.history else {}
    row = {
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": experiment_id,
        "model_uri": info.model_uri,
        "registered_version": str(getattr(info, "registered_model_version", "") or ""),
        "head_key": head_key(run_id),
        "fusion": config.fusion,
        "image_model_id": image_model,
        "backbone_spec": encoder.backbone,
        "text_model_id": encoder.text_model_id(),
        "input_dim": result.input_dim,
        "out_dim": train_config.out_dim,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_map_at_10": float(result.best_score),
        "seconds_per_epoch": float(result.seconds_per_epoch),
        "trained_at": datetime.now(timezone.utc),
    }
    return Output(
        pl.DataFrame([row]),
        metadata={
            "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(experiment_id, run_id)),
            "mlflow_run_id": run_id,
            "registered_model": f"{mlflow_tracking.registered_model_name} v{row['registered_version']}",
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "best_val_map_at_10": round(float(result.best_score), 4),
            "val_recall_at_10": round(float(last.get("val_recall_at_10", float("nan"))), 4),
            "seconds_per_epoch": round(result.seconds_per_epoch, 2),
            "artworks": len(features.ids),
            "pairs_used": MetadataValue.json(result.counts),
            "data_versions": MetadataValue.json(data_versions),
        },
    )


def model_row(similarity_model: pl.DataFrame) -> dict:
    if similarity_model.height != 1:
        raise ValueError(f"similarity_model must hold exactly one model row, found {similarity_model.height}")
    return similarity_model.row(0, named=True)


@asset(
    group_name="training",
    kinds={"mlflow"},
    code_version="1",
    check_specs=[AssetCheckSpec("trained_beats_backbone", asset="similarity_evaluation",
                                description="test recall@10 of the trained model above the raw backbone's")],
)
def similarity_evaluation(
    context: AssetExecutionContext,
    similarity_model: pl.DataFrame,
    weak_pairs: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    text_embeddings: pl.DataFrame,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
    storage: ArtsimStorage,
):
    """recall@1/5/10 and mAP@10 on the held-out test split for the trained model, the raw
    backbone and random vectors, and the mean rank of curators' picks on held-out judgments
    (lower is better, chance 4.5); logged into the model's MLflow run with plots."""
    import mlflow

    from artsim_pipeline.core.ml.metrics import (
        evaluate_retrieval, plot_recall_curve, plot_similarity_histograms, random_vectors_baseline, recall_curve,
        similarity_histograms,
    )
    from artsim_pipeline.core.ml.similarity import apply_head, fuse_features

    model = model_row(similarity_model)
    head, _ = load_stored_head(storage, model["head_key"])
    features = features_for(model["fusion"], artworks, image_embeddings, text_embeddings, encoder)
    raw = fuse_features(features.image, features.text, model["fusion"])
    trained = apply_head(head, raw)
    rows = []
    for name, vectors in (("trained", trained), ("backbone", raw)):
        rows.append({"model": name, **evaluate_retrieval(features.ids, vectors, weak_pairs, split="test")})
    rows.append({"model": "random", **random_vectors_baseline(features.ids, weak_pairs, split="test", dim=trained.shape[1])})
    table = pl.DataFrame(rows).select(RETRIEVAL_COLUMNS).with_columns(mlflow_run_id=pl.lit(model["mlflow_run_id"]))
    by_model = {r["model"]: r for r in table.iter_rows(named=True)}
    compared = {"trained": trained, "backbone": raw}
    previous = previous_registered_head(mlflow_tracking, storage, model, raw.shape[1])
    if previous is not None:
        compared["previous"] = apply_head(previous[0], raw)
    pick_ranks = curator_mean_ranks(storage, weak_pairs, features.ids, compared)
    if previous is not None:
        pick_ranks["previous_model_version"] = previous[1]
    with tempfile.TemporaryDirectory() as tmp:
        curves = {name: recall_curve(features.ids, vectors, weak_pairs, "test") for name, vectors in (("trained", trained), ("backbone", raw))}
        hists = {name: similarity_histograms(features.ids, vectors, weak_pairs, "test") for name, vectors in (("trained", trained), ("backbone", raw))}
        figures = [plot_recall_curve(curves, Path(tmp) / "recall_at_k.png"), plot_similarity_histograms(hists, Path(tmp) / "similarity_histograms.png")]
        # a client bound to our store: no global MLflow state is changed in the calling process
        client = mlflow.MlflowClient(mlflow_tracking.tracking_uri)
        run_id = model["mlflow_run_id"]
        for r in rows:
            for k, v in r.items():
                if k != "model":
                    client.log_metric(run_id, f"test_{r['model']}_{k}", float(v))
        if pick_ranks["judgments"]:
            for k, v in pick_ranks.items():
                if isinstance(v, (int, float)):
                    client.log_metric(run_id, f"curator_mean_rank_{k}", float(v))
        for figure in figures:
            client.log_artifact(run_id, str(figure), "evaluation")
        client.log_table(run_id, table.to_pandas(), "evaluation/test_retrieval.json")
    gain = by_model["trained"]["recall_at_10"] - by_model["backbone"]["recall_at_10"]
    yield Output(
        table,
        metadata={
            "table": markdown_table(table, RETRIEVAL_COLUMNS),
            "trained_recall_at_10": round(by_model["trained"]["recall_at_10"], 4),
            "backbone_recall_at_10": round(by_model["backbone"]["recall_at_10"], 4),
            "random_recall_at_10": round(by_model["random"]["recall_at_10"], 4),
            "recall_at_10_gain_points": round(100 * gain, 1),
            "auc_trained_vs_backbone": MetadataValue.json({k: round(h["auc"], 4) for k, h in hists.items()}),
            "curator_mean_rank_of_pick": MetadataValue.json(pick_ranks),
            "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(model["mlflow_experiment_id"], model["mlflow_run_id"])),
        },
    )
    yield AssetCheckResult(
        check_name="trained_beats_backbone",
        passed=gain > 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"trained_recall_at_10": by_model["trained"]["recall_at_10"],
                  "backbone_recall_at_10": by_model["backbone"]["recall_at_10"], "gain_points": round(100 * gain, 2)},
    )


def previous_registered_head(mlflow_tracking: MlflowResource, storage: ArtsimStorage, model: dict, input_dim: int):
    """(head, version) of the registered model version before this one, when it takes the same
    inputs: curators' picks are then ranked before and after retraining on the same judgments."""
    import mlflow

    client = mlflow.MlflowClient(mlflow_tracking.tracking_uri)
    versions = client.search_model_versions(f"name='{mlflow_tracking.registered_model_name}'")
    current = int(model["registered_version"]) if str(model.get("registered_version") or "").isdigit() else None
    older = [v for v in versions if v.run_id != model["mlflow_run_id"] and (current is None or int(v.version) < current)]
    for version in sorted(older, key=lambda v: int(v.version), reverse=True):
        try:
            head, config = load_stored_head(storage, head_key(version.run_id))
        except FileNotFoundError:
            continue
        same_inputs = (config.get("input_dim") == input_dim and config.get("fusion") == model["fusion"]
                       and config.get("image_model_id") == model["image_model_id"]
                       and config.get("text_model_id") == model["text_model_id"])
        if same_inputs:
            return head, str(version.version)
    return None


def curator_mean_ranks(storage: ArtsimStorage, weak_pairs: pl.DataFrame, ids: list[str], vectors: dict[str, np.ndarray]) -> dict:
    """Training-the-Archive's metric on held-out judgments (anchors outside the train split):
    the mean rank each set of vectors gives the curator's pick among the 8 candidates."""
    from artsim_pipeline.core.feedback import load_judgments, mean_rank_of_pick

    judgments = load_judgments(storage.judgments_home())
    train_ids = set(weak_pairs.filter(pl.col("split") == "train")["artwork_id_a"].to_list()) | set(
        weak_pairs.filter(pl.col("split") == "train")["artwork_id_b"].to_list())
    held_out = judgments.filter(~pl.col("anchor_id").is_in(list(train_ids))) if judgments.height else judgments
    out: dict = {"judgments": held_out.height}
    if held_out.height:
        for name, matrix in vectors.items():
            lookup = dict(zip(ids, matrix))
            out[name] = float(mean_rank_of_pick(lookup, held_out))
    return out


@asset(group_name="training", kinds={"pytorch", "parquet"}, code_version="1")
def artwork_vectors(
    context: AssetExecutionContext,
    similarity_model: pl.DataFrame,
    similarity_evaluation: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    text_embeddings: pl.DataFrame,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """The trained model applied to every artwork that has the model's inputs, keyed by
    artwork_id. When the evaluation says the trained model does not beat the raw backbone, the
    raw (fused) backbone vectors are used instead and `vector_source` says so."""
    from artsim_pipeline.core.ml.similarity import apply_head, fuse_features

    model = model_row(similarity_model)
    scores = {r["model"]: r["recall_at_10"] for r in similarity_evaluation.iter_rows(named=True)}
    use_trained = scores.get("trained", 0.0) > scores.get("backbone", 0.0)
    features = features_for(model["fusion"], artworks, image_embeddings, text_embeddings, encoder)
    raw = fuse_features(features.image, features.text, model["fusion"])
    vectors = apply_head(load_stored_head(storage, model["head_key"])[0], raw) if use_trained else raw
    source = "trained" if use_trained else "backbone"
    if not use_trained:
        context.log.warning("the trained model does not beat the raw backbone on test recall@10: using backbone vectors")
    table = pl.DataFrame({"artwork_id": features.ids}).with_columns(
        pl.Series("vector", list(vectors.astype(np.float32)), dtype=pl.List(pl.Float32)),
        vector_source=pl.lit(source),
        model_run_id=pl.lit(model["mlflow_run_id"]),
    )
    missing = artworks.height - table.height
    return Output(
        table,
        metadata={
            "rows": table.height,
            "dim": int(vectors.shape[1]),
            "vector_source": source,
            "model_run_id": model["mlflow_run_id"],
            "artworks_without_inputs": missing,
        },
    )


class ClassifierTrainingConfig(Config):
    """Settings of the metadata classifiers (defaults: `core.ml.classifiers.ClassifierConfig`)."""

    hidden_dim: int = 0
    epochs: int = 100
    lr: float = 1e-2
    min_class_count: int = 10
    test_fraction: float = 0.25
    seed: int = 0
    period_scheme: str = "epoch"


def _train_classifier_asset(context, task: str, labels: list, X: np.ndarray, config: ClassifierTrainingConfig,
                            mlflow_tracking: MlflowResource, extra_params: dict) -> Output[pl.DataFrame]:
    from artsim_pipeline.core.ml import tracking
    from artsim_pipeline.core.ml.classifiers import ClassifierConfig, plot_confusion_matrix, train_classifier

    classifier_config = ClassifierConfig(hidden_dim=config.hidden_dim, epochs=config.epochs, lr=config.lr,
                                         min_class_count=config.min_class_count, test_fraction=config.test_fraction, seed=config.seed)
    with mlflow_tracking.start_run(mlflow_tracking.classifier_experiment, f"{task}-{context.run_id[:8]}",
                                   {"dagster_run_id": context.run_id, "asset": f"{task}_classifier", "task": task}) as run:
        tracking.log_params_flat({**classifier_config.to_dict(), **extra_params, "task": task})
        result = train_classifier(X, labels, classifier_config, task=task)
        tracking.log_metrics_flat(result.metrics())
        with tempfile.TemporaryDirectory() as tmp:
            figure = plot_confusion_matrix(result.confusion, result.classes, Path(tmp) / f"{task}_confusion_matrix.png",
                                           title=f"{task}: confusion matrix (test split)")
            tracking.log_figure_files([figure])
        import mlflow

        mlflow.log_dict({"per_class": result.per_class, "dropped": result.dropped}, f"{task}_per_class.json")
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    per_class = pl.DataFrame(result.per_class).with_columns(task=pl.lit(task), mlflow_run_id=pl.lit(run_id))
    return Output(
        per_class,
        metadata={
            "accuracy": round(result.accuracy, 4),
            "macro_f1": round(result.macro_f1, 4),
            "baseline_accuracy": round(result.baseline_accuracy, 4),
            "baseline_macro_f1": round(result.baseline_macro_f1, 4),
            "majority_class": result.majority_class,
            "classes": len(result.classes),
            "n_train": result.n_train,
            "n_test": result.n_test,
            "per_class": markdown_table(per_class, list(per_class.columns), rows=25),
            "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(experiment_id, run_id)),
        },
    )


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="1")
def department_classifier(
    context: AssetExecutionContext,
    config: ClassifierTrainingConfig,
    image_embeddings: pl.DataFrame,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
) -> Output[pl.DataFrame]:
    """A Met department classifier on the image embeddings (what intake staff asked for):
    per-class precision/recall/F1 against a majority-class baseline; one MLflow run."""
    met = artworks.filter(pl.col("source") == "met")
    features = features_for("image", met, image_embeddings, None, encoder)
    departments = dict(zip(met["artwork_id"].to_list(), met["department"].to_list()))
    return _train_classifier_asset(context, "department", [departments[i] for i in features.ids], features.image, config,
                                   mlflow_tracking, {"image_model_id": image_model_id(image_embeddings, encoder)})


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="1")
def period_classifier(
    context: AssetExecutionContext,
    config: ClassifierTrainingConfig,
    image_embeddings: pl.DataFrame,
    artworks: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
) -> Output[pl.DataFrame]:
    """A period classifier (art-historical epoch from the dates) on the image embeddings."""
    from artsim_pipeline.core.ml.classifiers import period_label

    features = features_for("image", artworks, image_embeddings, None, encoder)
    dates = {r["artwork_id"]: (r["date_begin"], r["date_end"]) for r in artworks.select("artwork_id", "date_begin", "date_end").iter_rows(named=True)}
    labels = [period_label(*dates[i], scheme=config.period_scheme) for i in features.ids]
    return _train_classifier_asset(context, "period", labels, features.image, config, mlflow_tracking,
                                   {"image_model_id": image_model_id(image_embeddings, encoder), "period_scheme": config.period_scheme})
