"""Ingestion: raw records and images pulled from the museum APIs, one partition per source."""


import time
from datetime import datetime, timezone

import polars as pl
from dagster import AssetExecutionContext, Backoff, Config, DataVersion, Jitter, MetadataValue, Output, RetryPolicy, asset

from artsim_pipeline.core import image_manifest
from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.images import ImageRejected, check_image, image_relpath
from artsim_pipeline.core.raw_store import apply_changes, merge_changes
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.defs.partitions import source_partitions
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.clients.base import bounded_parallel_map
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore, TableUpsert

PROGRESS_EVERY = 500
# A run that dies on the network is retried whole; the fetch journal makes the retry cheap.
NETWORK_RETRY = RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

RAW_IMAGES_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "url": pl.String(),
    "sha256": pl.String(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "status": pl.String(),
    "error": pl.String(),
    "path": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}


@asset(
    partitions_def=source_partitions,
    group_name="ingest",
    kinds={"polars", "parquet"},
    code_version="1",
    retry_policy=NETWORK_RETRY,
    pool="museum_api",
)
def raw_objects(
    context: AssetExecutionContext,
    museum_api: MuseumApiResource,
    storage: ArtsimStorage,
    tables: TableStore,
) -> Output[TableUpsert]:
    """API records exactly as received (verbatim JSON), one row per object, upserted by source id;
    for a collection export, each row as the JSON object column -> string, exactly as read.

    Incremental: only objects changed since the stored cursor are fetched (Met: `metadataDate`;
    SMK and exports: a full listing with content-hash change detection). Resumable: every fetch is
    journalled to a checkpoint, so a killed run restarted later does not fetch those objects again.
    An export's metadata also counts its text values decoded with the fallback encoding,
    repaired and undecodable. Only the rows a run changes are written (an upsert: see
    `resources/tables.py`); the journal is emptied once they are stored.
    """
    source = context.partition_key
    previous = tables.read_table("raw_objects", source)
    state_name = f"raw_objects/{source}"
    state = artefacts.read_state(storage, state_name)
    checkpoint = artefacts.FetchCheckpoint.of(storage, "raw_objects", source)
    resumed = checkpoint.compact(previous)
    client = museum_api.client(source)
    limiter = getattr(getattr(client, "http", None), "limiter", None)
    if limiter is not None:
        limiter.restore(state.get("rate_limit"))  # start from the rate the API tolerated last time
    started = time.monotonic()
    try:
        listing = client.list_ids(since=state.get("cursor"))
        already = {r.source_id for r in resumed}
        # objects that failed last time are tried again by id, even when an incremental listing
        # skips them: error rows, and failures that left an older good record in place
        retry_ids = set(previous.filter(pl.col("status") == "error")["source_id"].to_list()) if previous is not None else set()
        retry_ids |= {str(i) for i in state.get("retry_ids") or []}
        to_fetch = [i for i in dict.fromkeys([*listing.ids, *sorted(retry_ids)]) if i not in already]
        context.log.info(
            f"{source}: listing names {len(listing.ids)} objects (full={listing.full}, since={state.get('cursor')}); "
            f"{len(resumed)} reused from the checkpoint, {len(to_fetch)} to fetch"
        )
        results = list(resumed)
        for n, result in enumerate(client.fetch_objects(to_fetch), start=1):
            checkpoint.append(result)
            results.append(result)
            if n % PROGRESS_EVERY == 0:
                context.log.info(f"{source}: fetched {n}/{len(to_fetch)}")
    finally:
        checkpoint.close()
        stats = getattr(getattr(client, "http", None), "stats", None)
        client.close()
    elapsed = time.monotonic() - started
    changes, counts = merge_changes(previous, results, full_listing_ids=set(listing.ids) if listing.full else None)
    table = apply_changes(previous, changes)
    # The cursor always advances: what failed is remembered by id and fetched again next run, so
    # a record that keeps failing never makes every later run crawl the whole source again.
    failed = sorted({r.source_id for r in results if r.status == "error"})
    cursor = listing.cursor
    new_state = {"cursor": cursor, "retry_ids": failed, "updated_at": datetime.now(timezone.utc).isoformat()}
    if limiter is not None:
        new_state["rate_limit"] = {**limiter.state(), "learned_at": new_state["updated_at"]}
    elif state.get("rate_limit"):
        new_state["rate_limit"] = state["rate_limit"]
    artefacts.write_state(storage, state_name, new_state)
    if failed:
        context.log.warning(f"{source}: {len(failed)} objects failed and will be fetched again by id next run "
                            f"(first: {', '.join(failed[:5])})")
    status_counts = dict(table.group_by("status").len().iter_rows()) if table.height else {}
    metadata = {
        "rows": table.height,
        "ok": status_counts.get("ok", 0),
        "gone": status_counts.get("gone", 0),
        "errors_stored": status_counts.get("error", 0),
        **{f"this_run_{k}": v for k, v in counts.as_dict().items()},
        "listed": len(listing.ids),
        "full_listing": listing.full,
        "fetched_this_run": len(to_fetch),
        "reused_from_checkpoint": len(resumed),
        "cursor": str(cursor),
        "retry_next_run": len(failed),
        **{f"listing_{k}": v for k, v in listing.notes.items()},
        "fetch_seconds": round(elapsed, 2),
        "preview": markdown_table(table, ["source_id", "status", "modified", "content_hash", "error"]),
    }
    examples = getattr(client, "examples", None)
    if examples:
        metadata["text_repair_examples"] = MetadataValue.json(examples)
    if stats is not None:
        metadata.update({f"http_{k}": v for k, v in stats.as_dict().items()})
    if limiter is not None:
        metadata.update({"rate_limit_rps": round(limiter.rate, 3), "rate_limit_blocks": limiter.blocks,
                         "rate_limit_blocked_seconds": round(limiter.blocked_s, 1),
                         "rate_limit_changes": MetadataValue.json(limiter.changes[-20:])})
    # the data version is the content, not the fetch: a re-ingest that changed nothing leaves
    # everything downstream up to date
    return Output(TableUpsert(changes, ("source_id",), total_rows=table.height, after_write=checkpoint.clear),
                  metadata=metadata, data_version=DataVersion(frame_fingerprint(table.select("source_id", "status", "content_hash"))))


class RawImagesConfig(Config):
    """`verify_stored`: list the image store and download again the images the table says are
    stored but are not (a lifecycle rule or a hand removed them). Off by default: the previous
    table is the manifest, so a run does not list every stored image."""

    verify_stored: bool = False


@asset(
    partitions_def=source_partitions,
    group_name="ingest",
    kinds={"polars", "parquet"},
    code_version="1",
    retry_policy=NETWORK_RETRY,
    pool="museum_api",
)
def raw_images(
    context: AssetExecutionContext,
    config: RawImagesConfig,
    raw_objects: pl.DataFrame,
    museum_api: MuseumApiResource,
    storage: ArtsimStorage,
    tables: TableStore,
) -> Output[TableUpsert]:
    """One row per public-domain object image: URL, sha256, size and status; files content-addressed
    under `images/` of the storage (`$ARTSIM_HOME/images/`, or S3 in prod). Images already stored are not downloaded again; a failure is a
    row with its reason, never a failed run. The previous table is the manifest of what is stored
    (the image folder is not listed); only new rows and the rows of images no longer wanted are
    written. Only records whose text changed are parsed for their image URL: the others' URLs are
    kept in a memo (`cache/raw_images/<source>.parquet`) under the version of the URL code."""
    source = context.partition_key
    previous = tables.read_table("raw_images", source)
    client = museum_api.client(source)

    version = image_manifest.url_memo_version(client, source)
    memo = None
    try:  # a cache: whatever goes wrong reading it costs a parse of every record, never the run
        stored_memo = artefacts.read_url_memo(storage, source)
    except Exception as error:  # noqa: BLE001 - a damaged file, or a storage error
        context.log.warning(f"{source}: the image URL memo is unreadable ({error}); every record's image URL is parsed again")
        stored_memo = None
    if stored_memo is not None and stored_memo[1] == version:
        memo = stored_memo[0]
    ok = raw_objects.filter(pl.col("status") == "ok")
    urls, parsed = image_manifest.record_urls(ok, client.image_url, memo)
    wanted = image_manifest.wanted_images(urls)
    stored = artefacts.stored_images(storage) if config.verify_stored and previous is not None else None
    reused, to_fetch_frame = image_manifest.plan_images(wanted, previous, stored, RAW_IMAGES_SCHEMA)
    to_fetch = to_fetch_frame.rows()
    context.log.info(f"{source}: {len(wanted)} images wanted ({parsed} records parsed for their URL), "
                     f"{len(wanted) - len(to_fetch)} already stored, {len(to_fetch)} to download")

    def download(key: tuple[str, str]) -> dict:
        source_id, url = key
        row = {"source_id": source_id, "url": url, "sha256": None, "width": None, "height": None, "path": None, "error": None,
               "fetched_at": datetime.now(timezone.utc)}
        fetched = client.fetch_image(url)
        if fetched.content is None:
            return {**row, "status": fetched.status or ("not_found" if fetched.gone else "http_error"), "error": fetched.error}
        try:
            checked = check_image(fetched.content)
        except ImageRejected as exc:
            return {**row, "status": exc.status, "error": str(exc)}
        artefacts.write_image(storage, image_relpath(checked.sha256, checked.extension), fetched.content)
        return {**row, "status": "ok", "sha256": checked.sha256, "width": checked.width, "height": checked.height,
                "path": image_relpath(checked.sha256, checked.extension)}

    started = time.monotonic()
    downloaded: list[dict] = []
    workers = getattr(getattr(client, "http", None), "policy", None)
    try:
        for n, row in enumerate(bounded_parallel_map(download, to_fetch, workers.max_workers if workers else 1), start=1):
            downloaded.append(row)
            if n % PROGRESS_EVERY == 0:
                context.log.info(f"{source}: images {n}/{len(to_fetch)}")
    finally:
        client.close()
    elapsed = time.monotonic() - started

    downloaded_frame = pl.DataFrame(downloaded, schema=RAW_IMAGES_SCHEMA)
    table = image_manifest.images_table(reused, downloaded_frame, previous, wanted, RAW_IMAGES_SCHEMA)
    key = image_manifest.IMAGE_KEY
    dropped = previous.select(key).join(table.select(key), on=list(key), how="anti") if previous is not None else None
    fresh = urls.unique(subset=["source_id", "raw_hash"], keep="first", maintain_order=True)
    if parsed or memo is None or memo.height != fresh.height:  # a cache of a pure function: written when it changed
        try:  # not storing it must not lose the record of this run's downloads
            artefacts.write_url_memo(storage, source, fresh, version)
        except Exception as error:  # noqa: BLE001 - a storage error
            context.log.warning(f"{source}: the image URL memo was not stored ({error}); the next run parses every record again")
    new_status = downloaded_frame["status"].value_counts() if downloaded else None
    failures = {k: v for k, v in (dict(new_status.iter_rows()) if new_status is not None else {}).items() if k != "ok"}
    return Output(
        TableUpsert(downloaded_frame, key, deleted=dropped, total_rows=table.height),
        data_version=DataVersion(frame_fingerprint(table.select("source_id", "url", "status", "sha256"))),
        metadata={
            "rows": table.height,
            "ok": table.filter(pl.col("status") == "ok").height,
            "downloaded_this_run": len(downloaded) - sum(failures.values()),
            "reused": len(wanted) - len(to_fetch),
            "failed_this_run": sum(failures.values()),
            "failures_by_status": MetadataValue.json(failures),
            "images_per_second": round(len(downloaded) / elapsed, 1) if elapsed > 0 and downloaded else 0.0,
            "preview": markdown_table(table, ["source_id", "status", "width", "height", "sha256", "error"]),
        },
    )
