"""The `artworks` multi-asset: normalisation, quarantine and great-expectations checks in Dagster."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
from dagster import AssetKey, materialize

from artsim_pipeline.core.raw_store import merge_results
from artsim_pipeline.defs.validation.assets import CHECK_GROUPS, artworks
from artsim_pipeline.resources.clients.base import FetchResult
from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline.defs.ingest.assets import RAW_IMAGES_SCHEMA, raw_images, raw_objects
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage


def store_raw(home, source, results, images=None):
    store = TableStore(base_dir=str(home / "storage"))
    table, _ = merge_results(None, results)
    store.write_table(table, "raw_objects", source)
    store.write_table(pl.DataFrame(images or [], schema=RAW_IMAGES_SCHEMA), "raw_images", source)
    return store


def run_artworks(store, source):
    assets = [raw_objects, raw_images, artworks]  # the raw tables are read from the store, not recomputed
    resources = {"io_manager": PolarsParquetIOManager(store=store), "tables": store, "storage": ArtsimStorage(home=store.base_dir),
                 "museum_api": MuseumApiResource()}
    result = materialize(assets, partition_key=source, resources=resources,
                         selection=[AssetKey("artworks"), AssetKey("artworks_quarantine")], raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result, checks


def met_ok(record):
    return FetchResult(str(record["objectID"]), "ok", raw_json=json.dumps(record), modified=record.get("metadataDate"))


def test_bad_records_are_quarantined_with_reasons_and_nothing_is_dropped(artsim_home, shared_met_records):
    good = shared_met_records[:30]
    wrong_type = dict(shared_met_records[30], constituents="Vincent van Gogh")  # a string where a list belongs
    not_json = FetchResult("31", "ok", raw_json='{"objectID": 31, "title": "cut sh')
    no_id = dict(shared_met_records[32])
    no_id.pop("objectID")
    results = [met_ok(r) for r in good] + [met_ok(wrong_type), not_json, FetchResult("32", "ok", raw_json=json.dumps(no_id))]
    results.append(FetchResult("99", "gone", error="HTTP 404"))  # not ok: neither artwork nor quarantined
    store = store_raw(artsim_home, "met", results)
    result, checks = run_artworks(store, "met")
    assert result.success
    table = store.read_table("artworks", "met")
    quarantine = store.read_table("artworks_quarantine", "met")
    assert table.height + quarantine.height == 33
    assert table["artwork_id"].n_unique() == table.height
    reasons = {row["source_id"]: row for row in quarantine.iter_rows(named=True)}
    assert reasons["31"]["rule"] == "invalid_json" and reasons["31"]["reason"]
    assert reasons["32"]["rule"] == "missing_id"
    assert checks["nothing_dropped"].passed
    assert checks["schema_and_identity"].passed and checks["dates_plausible"].passed and checks["urls_well_formed"].passed
    wrong = str(wrong_type["objectID"])
    assert wrong in reasons or table.filter(pl.col("source_id") == wrong).height == 1  # coerced or quarantined, never lost
    # the same records again: the quarantine is re-stamped, but its content, and so its data
    # version, is the same
    again, _ = run_artworks(store, "met")
    assert store.read_table("artworks_quarantine", "met")["quarantined_at"][0] > quarantine["quarantined_at"][0]
    assert data_version(again, "artworks_quarantine") == data_version(result, "artworks_quarantine")


def data_version(result, key: str) -> str:
    [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey(key)]
    return event.materialization.tags["dagster/data_version"]


def test_a_broken_table_fails_the_blocking_checks(artsim_home, shared_met_records, monkeypatch):
    """The normaliser never emits such a table; the checks are the guard if it ever does."""
    from artsim_pipeline.defs.validation import assets as validation_assets

    real_normalise = validation_assets.normalise

    def broken_normalise(source, raw_objects, raw_images=None, export=None):
        table, quarantine = real_normalise(source, raw_objects, raw_images, export=export)
        broken = pl.concat([table, table.head(1)])  # a duplicate artwork_id
        broken = broken.with_columns(
            pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(3000, pl.Int32)).otherwise(pl.col("date_begin")).alias("date_begin"),
            pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("ftp://x/y.jpg")).otherwise(pl.col("image_url")).alias("image_url"),
        )
        return broken, quarantine

    monkeypatch.setattr(validation_assets, "normalise", broken_normalise)
    store = store_raw(artsim_home, "met", [met_ok(r) for r in shared_met_records[:5]])
    result, checks = run_artworks(store, "met")
    for name in ("schema_and_identity", "dates_plausible", "urls_well_formed", "nothing_dropped"):
        assert not checks[name].passed, name
        assert checks[name].severity.value == "ERROR"
        assert next(s for s in artworks.check_specs if s.name == name).blocking
    assert checks["schema_and_identity"].metadata["failed_rows"].value >= 2


def test_load_asset_value_returns_the_polars_frame_for_each_source(artsim_home):
    from artsim_pipeline.definitions import build_defs

    from artsim_pipeline.core.sources import SOURCES

    defs = build_defs("sample")
    for source in SOURCES:
        keys = [AssetKey(k) for k in ("raw_objects", "raw_images", "artworks", "artworks_quarantine")]
        result = materialize(list(defs.assets), selection=keys, partition_key=source, resources=defs.resources)
        blocking = [c for c in result.get_asset_check_evaluations() if c.severity.value == "ERROR"]
        assert result.success and len(blocking) == 4 and all(c.passed for c in blocking), source
    for source, minimum in (("met", 1500), ("smk", 20), ("met_medialab", 428)):
        df = defs.load_asset_value("artworks", partition_key=source)
        assert isinstance(df, pl.DataFrame) and df.height >= minimum
        raw = defs.load_asset_value("raw_objects", partition_key=source)
        quarantine = defs.load_asset_value("artworks_quarantine", partition_key=source)
        assert raw.filter(pl.col("status") == "ok").height == df.height + quarantine.height
    met = defs.load_asset_value("artworks", partition_key="met")
    assert met["department"].n_unique() >= 12
    assert met.filter(pl.col("image_sha256").is_not_null()).height > 1000
    # the real photographs: every one of the 428 records keeps its image (two share one)
    real = defs.load_asset_value("artworks", partition_key="met_medialab")
    assert real["image_sha256"].is_not_null().all() and real["image_sha256"].n_unique() == 427
    assert real["artwork_id"].str.starts_with("met_medialab:").all() and real["department"].n_unique() == 7


def test_artworks_alone_can_be_selected(artsim_home, shared_met_records):
    """`dagster asset materialize --select artworks` (or selecting it alone in the UI) runs the
    multi-asset for `artworks` and its checks only: the quarantine table is not written."""
    store = store_raw(artsim_home, "met", [met_ok(r) for r in shared_met_records[:10]])
    resources = {"io_manager": PolarsParquetIOManager(store=store), "tables": store, "storage": ArtsimStorage(home=store.base_dir),
                 "museum_api": MuseumApiResource()}
    result = materialize([raw_objects, raw_images, artworks], partition_key="met", resources=resources, selection=[AssetKey("artworks")])
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {AssetKey("artworks")}
    assert store.read_table("artworks", "met").height == 10 and store.read_table("artworks_quarantine", "met") is None
    assert {c.check_name for c in result.get_asset_check_evaluations()} == set(CHECK_GROUPS)

    alone = materialize([raw_objects, raw_images, artworks], partition_key="met", resources=resources,
                        selection=[AssetKey("artworks_quarantine")])
    assert alone.success and store.read_table("artworks_quarantine", "met").height == 0
    assert not alone.get_asset_check_evaluations()  # the checks belong to artworks


def test_a_run_normalises_only_the_changed_records_and_stores_the_full_passs_tables(artsim_home, shared_met_records):
    """The second run re-normalises the one edited record and the new one (the rest is reused
    from the stored tables); what it stores is what normalising everything gives. A run that
    writes only one table leaves no usable state: the next one normalises everything."""
    from artsim_pipeline.core.normalise import normalise

    def materialization(result):
        [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey("artworks")]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    records = [met_ok(r) for r in shared_met_records[:40]] + [FetchResult("7", "ok", raw_json="{")]
    store = store_raw(artsim_home, "met", records)
    first, _ = run_artworks(store, "met")
    assert materialization(first)["normalisation"] == "full"

    edited = dict(shared_met_records[5], title="A title edited by a curator")
    changed = [*records[:5], met_ok(edited), *records[6:], met_ok(shared_met_records[40])]
    raw = store_raw(artsim_home, "met", changed).read_table("raw_objects", "met")
    second, checks = run_artworks(store, "met")
    meta = materialization(second)
    assert second.success and checks["nothing_dropped"].passed
    assert (meta["normalisation"], meta["normalised_records"], meta["reused_records"]) == ("incremental", 2, 40)
    expected, expected_quarantine = normalise("met", raw, store.read_table("raw_images", "met"))
    assert store.read_table("artworks", "met").equals(expected)
    assert store.read_table("artworks_quarantine", "met").drop("quarantined_at").equals(expected_quarantine.drop("quarantined_at"))

    resources = {"io_manager": PolarsParquetIOManager(store=store), "tables": store, "storage": ArtsimStorage(home=store.base_dir),
                 "museum_api": MuseumApiResource()}
    store_raw(artsim_home, "met", records)
    assert materialize([raw_objects, raw_images, artworks], partition_key="met", resources=resources,
                       selection=[AssetKey("artworks")]).success
    third, _ = run_artworks(store, "met")
    assert materialization(third)["normalisation"] == "full"
