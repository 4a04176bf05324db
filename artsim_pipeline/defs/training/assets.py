"""Training: a similarity head learned from the weak pairs, its evaluation, the vectors it gives
every artwork, and metadata classifiers. Every training materialisation is one MLflow run."""

from datetime import datetime, timezone
from typing import Optional

import numpy as np
import polars as pl
from pydantic import Field
from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from artsim_pipeline.core.features import ArtworkFeatures, artwork_features, frame_fingerprint
from artsim_pipeline.core.ml.classifiers import ClassifierConfig
from artsim_pipeline.core.ml.train_config import TrainConfig, pipeline_train_config
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.mlflow_tracking import MlflowResource
from artsim_pipeline.resources.storage import ArtsimStorage


_PIPELINE = pipeline_train_config()


class SimilarityTrainingConfig(Config):
    """Hyper-parameters of the similarity head. The defaults are the pipeline's:
    `core.ml.train_config.TrainConfig` with `PIPELINE_CHOICES` (measured on the real photographs,
    README "Measured"): a residual head that starts as the raw backbone, metadata as auxiliary
    targets, a term that keeps the backbone's neighbourhoods, and an epoch picked so that val
    metadata agreement does not drop."""

    fusion: str = _PIPELINE.fusion
    lr: float = _PIPELINE.lr
    weight_decay: float = _PIPELINE.weight_decay
    batch_size: int = _PIPELINE.batch_size
    max_epochs: int = _PIPELINE.max_epochs
    patience: int = _PIPELINE.patience
    temperature: float = _PIPELINE.temperature
    neg_margin: float = _PIPELINE.neg_margin
    hidden_dim: int = _PIPELINE.hidden_dim
    out_dim: int = _PIPELINE.out_dim
    dropout: float = _PIPELINE.dropout
    seed: int = _PIPELINE.seed
    num_threads: Optional[int] = _PIPELINE.num_threads
    accelerator: str = _PIPELINE.accelerator
    init: str = Field(default=_PIPELINE.init, description='"identity": a residual head that starts as the raw backbone; '
                                                          '"pca": the centred, whitened backbone metric; "random"')
    whiten: float = _PIPELINE.whiten
    residual_scale: float = _PIPELINE.residual_scale
    rule_weights: dict[str, float] = Field(default_factory=lambda: dict(_PIPELINE.rule_weights or {}),
                                           description="loss multipliers per rule (on top of the pair weights)")
    aux_weight: float = Field(default=_PIPELINE.aux_weight, description="weight of the metadata classifiers trained beside the head (0: off)")
    aux_attributes: list[str] = Field(default_factory=lambda: ["department", "classification", "culture", "period"],
                                      description="metadata used as auxiliary targets (train-split works) and to pick the "
                                                  "epoch (val-split works); test labels are never read")
    preserve_weight: float = Field(default=_PIPELINE.preserve_weight,
                                   description="weight of the term that keeps the backbone's neighbourhoods (0: off)")
    preserve_temperature: float = _PIPELINE.preserve_temperature
    monitor: str = Field(default=_PIPELINE.monitor, description="early-stopping metric: val mAP@10 minus a penalty for any "
                                                                "drop of val metadata agreement below the backbone's")
    agreement_penalty: float = _PIPELINE.agreement_penalty

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.model_dump(exclude={"aux_attributes"}))


def image_model_id(image_embeddings: pl.DataFrame, encoder: EncoderResource) -> str:
    """The configured backbone's model id, which must be in the embedding table."""
    model_id = encoder.image_model_id()
    if image_embeddings.filter(pl.col("model_id") == model_id).height == 0:
        raise ValueError(f"image_embeddings holds no vectors of {model_id}; materialise image_embeddings first")
    return model_id


def uses_text(fusion: str) -> bool:
    return fusion in ("text", "concat")


def features_for(fusion: str, training_labels, image_embeddings, text_features, encoder: EncoderResource) -> ArtworkFeatures:
    """The model inputs of every artwork of `training_labels` that has them; a fusion with text
    needs `model_text_features` materialised for it."""
    if uses_text(fusion) and (text_features is None or text_features.height == 0):
        raise ValueError(f"fusion={fusion!r} reads text vectors, but model_text_features holds none: materialise it with "
                         f"the same fusion (ops: model_text_features: config: fusion: {fusion})")
    return artwork_features(
        training_labels, image_embeddings, text_features,
        image_model_id=image_model_id(image_embeddings, encoder) if fusion in ("image", "concat") else None,
        text_model_id=encoder.text_model_id() if fusion in ("text", "concat") else None,
        fusion=fusion,
    )


class ModelTextFeaturesConfig(Config):
    """The fusion the similarity model is trained with (set it to the same value as
    `similarity_model`'s): only a fusion with text (`text`, `concat`) passes the vectors on."""

    fusion: str = _PIPELINE.fusion


@asset(group_name="training", kinds={"polars", "parquet"}, code_version="1")
def model_text_features(config: ModelTextFeaturesConfig, text_embeddings: pl.DataFrame,
                        encoder: EncoderResource) -> Output[pl.DataFrame]:
    """The metadata text vectors the similarity model reads: those of the configured text model
    when the configured fusion uses text, otherwise none (data version `unused`). An image-only
    model therefore does not depend on titles and descriptions, while the graph stays the same
    for every fusion."""
    columns = {"artwork_id": pl.String, "text_sha256": pl.String, "model_id": pl.String, "vector": pl.List(pl.Float32)}
    if not uses_text(config.fusion):
        return Output(pl.DataFrame(schema=columns), data_version=DataVersion("unused"),
                      metadata={"rows": 0, "fusion": config.fusion})
    table = (text_embeddings.filter(pl.col("model_id") == encoder.text_model_id()).select(list(columns))
             .unique("artwork_id", keep="first").sort("artwork_id"))
    fingerprint = frame_fingerprint(table.select("artwork_id", "text_sha256", "model_id"))
    return Output(table, data_version=DataVersion(fingerprint),
                  metadata={"rows": table.height, "fusion": config.fusion, "fingerprint": fingerprint})


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="3")
def similarity_model(
    context: AssetExecutionContext,
    config: SimilarityTrainingConfig,
    weak_pairs: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    model_text_features: pl.DataFrame,
    training_labels: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """A projection head trained with PyTorch Lightning on the train split of `weak_pairs`
    (weighted InfoNCE + mined negatives, early stopping on val); one MLflow run per
    materialisation, model registered. The table is one row describing the model. It reads
    only what training uses (`training_labels`, not `artworks`; text vectors only through
    `model_text_features`), so a retitled work does not retrain it."""
    from artsim_pipeline.core.ml.agreement import attribute_labels
    from artsim_pipeline.core.ml.similarity import fuse_features, train_similarity

    train_config = config.train_config()
    if not uses_text(config.fusion) and model_text_features.height:
        context.log.warning(f"fusion={config.fusion!r} reads no text, but model_text_features holds text vectors: set its "
                            "fusion to the same value, or every title change retrains this model for nothing")
    features = features_for(config.fusion, training_labels, image_embeddings, model_text_features, encoder)
    inputs = fuse_features(features.image, features.text, config.fusion)
    data_versions = {
        "weak_pairs": frame_fingerprint(weak_pairs),
        # the vectors of the current backbone, as image_embeddings' data version counts them
        "image_embeddings": frame_fingerprint(image_embeddings.filter(pl.col("model_id") == encoder.image_model_id())
                                              .select("image_sha256", "model_id")),
        "model_text_features": frame_fingerprint(model_text_features.select("artwork_id", "text_sha256", "model_id")),
        "training_labels": frame_fingerprint(training_labels),
    }
    image_model = image_model_id(image_embeddings, encoder) if config.fusion != "text" else None
    with mlflow_tracking.start_run(mlflow_tracking.similarity_experiment, f"similarity-{context.run_id[:8]}",
                                   {"dagster_run_id": context.run_id, "asset": "similarity_model"}) as run:
        mlflow_tracking.log_params({**train_config.to_dict(), "image_model_id": image_model,
                                    "text_model_id": encoder.text_model_id() if config.fusion != "image" else None,
                                    "n_artworks": len(features.ids), "input_dim": inputs.shape[1]})
        mlflow_tracking.log_params({f"data_version.{k}": v for k, v in data_versions.items()})
        context.log.info(f"training on {len(features.ids)} artworks x {inputs.shape[1]} dims, {weak_pairs.height} pairs")
        aux_labels = {name: values for name, values in attribute_labels(training_labels, features.ids).items() if name in config.aux_attributes}
        mlflow_tracking.log_params({"aux_attributes": ",".join(sorted(aux_labels))})
        result = train_similarity(features.ids, features.image, weak_pairs, train_config, X_text=features.text, aux_labels=aux_labels)
        mlflow_tracking.log_history(result.history)
        mlflow_tracking.log_metrics(getattr(result, "initial_metrics", None) or {}, prefix="initial_")
        mlflow_tracking.log_metrics({"best_epoch": result.best_epoch, "best_" + result.monitor: result.best_score,
                                     "seconds_per_epoch": result.seconds_per_epoch, "fit_seconds": result.fit_seconds})
        head_config = {"head": train_config.init, "input_dim": result.input_dim, "hidden_dim": train_config.hidden_dim,
                       "out_dim": int(result.head.out_dim),
                       "dropout": train_config.dropout, "fusion": config.fusion, "image_model_id": image_model,
                       "text_model_id": encoder.text_model_id()}
        stored_head = artefacts.save_head(storage, run.info.run_id, result.head, head_config)
        mlflow_tracking.log_dict(head_config, "model_config.json")
        mlflow_tracking.log_dict({"history": result.history, "counts": result.counts}, "training_history.json")
        info = mlflow_tracking.log_torch_model(result.head, inputs[:4])
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    last = result.history[-1] if result.history else {}
    row = {
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": experiment_id,
        "model_uri": info.model_uri,
        "registered_version": str(getattr(info, "registered_model_version", "") or ""),
        "head_key": stored_head,
        "fusion": config.fusion,
        "image_model_id": image_model,
        "backbone_spec": encoder.backbone,
        "text_model_id": encoder.text_model_id(),
        "input_dim": result.input_dim,
        "out_dim": int(result.head.out_dim),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_map_at_10": float(result.best_score),
        "seconds_per_epoch": float(result.seconds_per_epoch),
        "trained_at": datetime.now(timezone.utc),
    }
    table = pl.DataFrame([row])
    return Output(
        table,
        data_version=DataVersion(frame_fingerprint(table)),
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


@asset(group_name="training", kinds={"pytorch", "parquet"}, code_version="3")
def artwork_vectors(
    context: AssetExecutionContext,
    similarity_model: pl.DataFrame,
    similarity_evaluation: pl.DataFrame,
    image_embeddings: pl.DataFrame,
    model_text_features: pl.DataFrame,
    training_labels: pl.DataFrame,
    encoder: EncoderResource,
    storage: ArtsimStorage,
) -> Output[pl.DataFrame]:
    """The vectors the index serves, keyed by artwork_id: the trained head applied to every
    artwork that has the model's inputs, when the evaluation's gate allows it (it beats the raw
    backbone on weak-pair recall and loses no metadata-agreement criterion by more than its
    standard error); otherwise the raw (fused) backbone vectors. `vector_source` says which, and
    the metadata says why."""
    from artsim_pipeline.core.ml.similarity import apply_head, fuse_features

    from artsim_pipeline.core.ml.agreement import gate_from_rows

    model = model_row(similarity_model)
    decision = gate_from_rows(similarity_evaluation.to_dicts())
    use_trained = decision.serve_trained
    features = features_for(model["fusion"], training_labels, image_embeddings, model_text_features, encoder)
    raw = fuse_features(features.image, features.text, model["fusion"])
    vectors = apply_head(artefacts.load_head(storage, model["head_key"])[0], raw) if use_trained else raw
    source = "trained" if use_trained else "backbone"
    if not use_trained:
        context.log.warning(f"serving the raw backbone vectors, not the trained head's: {decision.reason}")
    table = pl.DataFrame({"artwork_id": features.ids}).with_columns(
        pl.Series("vector", list(vectors.astype(np.float32)), dtype=pl.List(pl.Float32)),
        vector_source=pl.lit(source),
        model_run_id=pl.lit(model["mlflow_run_id"]),
    )
    missing = training_labels.height - table.height
    return Output(
        table,
        # the vectors themselves: the same vectors again leave the index and the map up to date
        data_version=DataVersion(frame_fingerprint(table)),
        metadata={
            "rows": table.height,
            "dim": int(vectors.shape[1]),
            "vector_source": source,
            "gate": decision.reason,
            "model_run_id": model["mlflow_run_id"],
            "artworks_without_inputs": missing,
        },
    )


_CLASSIFIER = ClassifierConfig()


class ClassifierTrainingConfig(Config):
    """Settings of the metadata classifiers (defaults: `core.ml.classifiers.ClassifierConfig`)."""

    hidden_dim: int = _CLASSIFIER.hidden_dim
    epochs: int = _CLASSIFIER.epochs
    lr: float = _CLASSIFIER.lr
    min_class_count: int = _CLASSIFIER.min_class_count
    test_fraction: float = _CLASSIFIER.test_fraction
    seed: int = _CLASSIFIER.seed
    period_scheme: str = "epoch"

    def classifier_config(self) -> ClassifierConfig:
        return ClassifierConfig(**self.model_dump(exclude={"period_scheme"}))


def _train_classifier_asset(context, task: str, labels: list, X: np.ndarray, config: ClassifierTrainingConfig,
                            mlflow_tracking: MlflowResource, extra_params: dict) -> Output[pl.DataFrame]:
    from artsim_pipeline.core.ml.classifiers import plot_confusion_matrix, train_classifier

    classifier_config = config.classifier_config()
    with mlflow_tracking.start_run(mlflow_tracking.classifier_experiment, f"{task}-{context.run_id[:8]}",
                                   {"dagster_run_id": context.run_id, "asset": f"{task}_classifier", "task": task}) as run:
        mlflow_tracking.log_params({**classifier_config.to_dict(), **extra_params, "task": task})
        result = train_classifier(X, labels, classifier_config, task=task)
        mlflow_tracking.log_metrics(result.metrics())
        mlflow_tracking.log_png(plot_confusion_matrix(result.confusion, result.classes, title=f"{task}: confusion matrix (test split)"),
                                f"figures/{task}_confusion_matrix.png")
        mlflow_tracking.log_dict({"per_class": result.per_class, "dropped": result.dropped}, f"{task}_per_class.json")
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    per_class = pl.DataFrame(result.per_class).with_columns(task=pl.lit(task), mlflow_run_id=pl.lit(run_id))
    return Output(
        per_class,
        data_version=DataVersion(frame_fingerprint(per_class)),
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


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="2")
def department_classifier(
    context: AssetExecutionContext,
    config: ClassifierTrainingConfig,
    image_embeddings: pl.DataFrame,
    training_labels: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
) -> Output[pl.DataFrame]:
    """A Met department classifier on the image embeddings (what intake staff asked for):
    per-class precision/recall/F1 against a majority-class baseline; one MLflow run. Retrained
    only when the images or the labels it reads change."""
    met = training_labels.filter(pl.col("source") == "met")
    features = features_for("image", met, image_embeddings, None, encoder)
    departments = dict(zip(met["artwork_id"].to_list(), met["department"].to_list()))
    return _train_classifier_asset(context, "department", [departments[i] for i in features.ids], features.image, config,
                                   mlflow_tracking, {"image_model_id": image_model_id(image_embeddings, encoder)})


@asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version="2")
def period_classifier(
    context: AssetExecutionContext,
    config: ClassifierTrainingConfig,
    image_embeddings: pl.DataFrame,
    training_labels: pl.DataFrame,
    encoder: EncoderResource,
    mlflow_tracking: MlflowResource,
) -> Output[pl.DataFrame]:
    """A period classifier (art-historical epoch from the dates) on the image embeddings."""
    from artsim_pipeline.core.ml.classifiers import period_label

    features = features_for("image", training_labels, image_embeddings, None, encoder)
    dates = {r["artwork_id"]: (r["date_begin"], r["date_end"]) for r in training_labels.select("artwork_id", "date_begin", "date_end").iter_rows(named=True)}
    labels = [period_label(*dates[i], scheme=config.period_scheme) for i in features.ids]
    return _train_classifier_asset(context, "period", labels, features.image, config, mlflow_tracking,
                                   {"image_model_id": image_model_id(image_embeddings, encoder), "period_scheme": config.period_scheme})
