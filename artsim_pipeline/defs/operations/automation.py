"""Unattended operation: nightly re-ingestion, weekly retraining, retraining when the labels
change, and an alert when a run fails."""

from datetime import datetime, timedelta, timezone

from dagster import (
    AssetKey,
    AssetSelection,
    AssetsDefinition,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    FreshnessPolicy,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    run_failure_sensor,
    schedule,
    sensor,
)

from artsim_pipeline.defs.partitions import embedding_buckets, source_partitions
from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.resources.alerts import send_alert
from artsim_pipeline.resources.storage import ArtsimStorage

# Ingestion starts on the schedule; everything after it follows its inputs declaratively.
SCHEDULED_ROOTS = {AssetKey("raw_objects")}

# The nightly ingest must have updated the raw tables within a day (warn) or 26 hours (fail: a
# day plus slack for a slow run). Dagster's freshness daemon (`freshness: enabled` in
# dagster.yaml) evaluates the policy and the UI shows the state on the asset.
RAW_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))
RAW_ASSETS = {AssetKey("raw_objects"), AssetKey("raw_images")}


def follows_inputs() -> AutomationCondition:
    """Dagster's `eager()`, but triggered by a changed *data version* of an input (or a new code
    version) rather than by any new materialisation: a nightly re-ingest that finds nothing new
    starts nothing downstream. It also waits until the inputs' blocking checks have passed."""
    changed = (
        AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
        | AutomationCondition.code_version_changed()
    ).with_label("input data or code changed")
    return (
        AutomationCondition.eager().replace("any_deps_updated", changed)
        & AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("follows_inputs")


def _operated(spec):
    if spec.key in RAW_ASSETS:
        spec = spec.replace_attributes(freshness_policy=RAW_FRESHNESS)
    if spec.key not in SCHEDULED_ROOTS:
        spec = spec.replace_attributes(automation_condition=follows_inputs())
    return spec


def with_automation(assets: list) -> list:
    """Every materialisable asset except the scheduled roots gets `follows_inputs()`; the raw
    tables get their freshness policy."""
    return [asset.map_asset_specs(_operated) if isinstance(asset, AssetsDefinition) and asset.is_materializable else asset
            for asset in assets]

ingest_job = define_asset_job(
    "ingest_sources",
    selection=AssetSelection.assets("raw_objects", "raw_images", "artworks", "artworks_quarantine"),
    partitions_def=source_partitions,
    description="Re-ingest one museum incrementally and validate it.",
)

retrain_job = define_asset_job(
    "retrain_similarity",
    selection=AssetSelection.assets("similarity_model").downstream(),
    description="Train the similarity model again and rebuild what follows it (evaluation, vectors, index, maps).",
)


def automation_sensors(gpu_tags: dict[str, str]) -> list:
    """The sensors that evaluate `follows_inputs()`: one for the embedding chunks, whose runs carry
    the GPU tags (as the `embed_images` job's do), one for everything else. Stopped until turned
    on in the UI, like the schedules."""
    embeddings = AssetSelection.assets("image_embeddings")
    return [
        AutomationConditionSensorDefinition("automate_embeddings", target=embeddings, run_tags=gpu_tags,
                                            description="Embeds new images (on the GPU where there is one)."),
        AutomationConditionSensorDefinition("automate_pipeline", target=AssetSelection.all(include_sources=True) - embeddings,
                                            description="Every other asset follows its inputs (follows_inputs())."),
    ]


def embed_images_job(tags: dict[str, str]):
    """All embedding chunks, with the tags that give the run a GPU on the cluster (`settings.gpu_run_tags`)."""
    return define_asset_job(
        "embed_images",
        selection=AssetSelection.assets("image_embeddings"),
        partitions_def=embedding_buckets,
        tags=tags,
        description="Embed the images of one sha256 bucket (on a GPU where the deployment has one).",
    )


@schedule(job=ingest_job, cron_schedule="0 3 * * *", execution_timezone="UTC", default_status=DefaultScheduleStatus.STOPPED)
def nightly_ingest(context: ScheduleEvaluationContext):
    """Every night, one run per museum; incremental, so an unchanged collection costs one listing."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for source in SOURCES:
        yield RunRequest(run_key=f"{source}-{day}", partition_key=source, tags={"artsim/trigger": "nightly"})


@schedule(job=retrain_job, cron_schedule="0 5 * * 0", execution_timezone="UTC", default_status=DefaultScheduleStatus.STOPPED)
def weekly_retrain(context: ScheduleEvaluationContext):
    """Every Sunday: retrain on the current pairs (new images and records accumulate all week)."""
    return RunRequest(run_key=context.scheduled_execution_time.strftime("%G-W%V"), tags={"artsim/trigger": "weekly"})


@sensor(job=retrain_job, minimum_interval_seconds=300, default_status=DefaultSensorStatus.STOPPED)
def retrain_on_new_labels(context: SensorEvaluationContext):
    """Requests retraining when `weak_pairs` holds different pairs than at the last request
    (its content fingerprint changed); the cursor makes it fire once per change."""
    event = context.instance.get_latest_materialization_event(AssetKey("weak_pairs"))
    if event is None or event.asset_materialization is None:
        return SkipReason("weak_pairs has never been materialised")
    fingerprint = event.asset_materialization.metadata.get("fingerprint")
    fingerprint = fingerprint.value if fingerprint is not None else None
    if not fingerprint:
        return SkipReason("the latest weak_pairs materialisation carries no fingerprint")
    if fingerprint == context.cursor:
        return SkipReason(f"weak_pairs unchanged ({fingerprint})")
    context.update_cursor(fingerprint)
    return RunRequest(run_key=f"weak_pairs-{fingerprint}", tags={"artsim/trigger": "labels-changed", "artsim/weak_pairs": fingerprint})


refresh_pairs_job = define_asset_job(
    "refresh_weak_pairs", selection=AssetSelection.assets("pair_mining_fields", "weak_pairs"),
    description="Mine the weak pairs again (with new curator picks), from the current artworks."
)


@sensor(job=refresh_pairs_job, minimum_interval_seconds=120, default_status=DefaultSensorStatus.STOPPED)
def pairs_from_new_judgments(context: SensorEvaluationContext, storage: ArtsimStorage):
    """Turns new curator judgments (from `artsim serve`) into pairs: when the judgments journal
    has grown since the cursor, `weak_pairs` is mined again; `retrain_on_new_labels` then retrains."""
    from artsim_pipeline.resources.artefacts import stored_judgments

    count = len(stored_judgments(storage))
    seen = int(context.cursor or 0)
    if count <= seen:
        return SkipReason(f"no new judgments ({count})")
    context.update_cursor(str(count))
    return RunRequest(run_key=f"judgments-{count}", tags={"artsim/trigger": "curator-feedback"})


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING)
def alert_on_run_failure(context: RunFailureSensorContext):
    """Sends an alert for every failed run through `send_alert` (a log line by default)."""
    run = context.dagster_run
    message = (
        f"artsim run {run.run_id} ({run.job_name}) failed at {datetime.now(timezone.utc).isoformat()}: "
        f"{context.failure_event.message}"
    )
    send_alert(message, {"run_id": run.run_id, "job": run.job_name})
    context.log.error(message)


SCHEDULES = [nightly_ingest, weekly_retrain]
SENSORS = [retrain_on_new_labels, pairs_from_new_judgments, alert_on_run_failure]
JOBS = [ingest_job, retrain_job, refresh_pairs_job]
