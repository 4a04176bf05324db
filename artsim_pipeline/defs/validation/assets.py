"""Validation: raw records normalised into the cross-museum `artworks` schema, checked with
great-expectations; records that cannot be normalised go to `artworks_quarantine` with reasons."""

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    DataVersion,
    MetadataValue,
    Output,
    multi_asset,
)

from artsim_pipeline import settings
from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.normalise import normalise
from artsim_pipeline.core.normalise.incremental import Stored, normalise_incremental
from artsim_pipeline.core.sources import is_export
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.defs.partitions import source_partitions
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore

# The GX outcomes, grouped into the checks a person sees in the UI. Blocking checks stop
# everything downstream of a broken table; the warnings are reported with counts.
CHECK_GROUPS: dict[str, tuple[str, bool, str]] = {
    "schema_and_identity": ("error", True, "contract columns and dtypes; artwork_id present, unique, well formed; required fields"),
    "dates_plausible": ("error", True, "date_begin <= date_end; years within the plausible range"),
    "urls_well_formed": ("error", True, "landing and image URLs are http(s)"),
    "nothing_dropped": ("error", True, "every ok raw record is either an artwork or quarantined"),
    "source_warnings": ("warn", False, "non-canonical Met departments; public-domain works without an image"),
}


def _lone_surrogates(raw_objects: pl.DataFrame) -> int:
    """How many lone surrogates the ok records' JSON decodes to (normalisation replaces them)."""
    from artsim_pipeline.core.text import lone_surrogate_escapes

    suspects = raw_objects.filter((pl.col("status") == "ok") & pl.col("raw_json").str.contains(r"\\u[dD][89a-fA-F]"))
    return sum(lone_surrogate_escapes(text) for text in suspects["raw_json"].to_list())


def _stored(tables: TableStore, storage: ArtsimStorage, source: str) -> Stored:
    """The stored tables of ``source`` and the normalisation state written beside them (an
    unreadable state: none, and the reason, so that a full pass runs and says why)."""
    try:
        state = artefacts.read_normalise_state(storage, source)
    except artefacts.UnreadableState as error:
        return Stored(None, None, None, None, problem=f"the stored state is unreadable: {error}")
    if state is None:
        return Stored(None, None, None, None)
    return Stored(tables.read_table("artworks", source), tables.read_table("artworks_quarantine", source), *state)


def check_group(outcome_name: str) -> str:
    if outcome_name.startswith("date_"):
        return "dates_plausible"
    if outcome_name.endswith("_well_formed"):
        return "urls_well_formed"
    if outcome_name in ("met_department_canonical", "public_domain_has_image"):
        return "source_warnings"
    return "schema_and_identity"


@multi_asset(
    outs={
        "artworks": AssetOut(
            description="The normalised, validated cross-museum schema (one row per artwork).",
            io_manager_key="io_manager",
            is_required=False,
            kinds={"polars", "parquet"},
            code_version="1",
        ),
        "artworks_quarantine": AssetOut(
            description="Records that could not be normalised or failed a row-level rule: raw id, rule, readable reason.",
            io_manager_key="io_manager",
            is_required=False,
            kinds={"polars", "parquet"},
            code_version="1",
        ),
    },
    ins={"raw_objects": AssetIn(), "raw_images": AssetIn()},
    partitions_def=source_partitions,
    group_name="validation",
    can_subset=True,  # `--select artworks` alone works: only the selected tables (and checks) are written
    check_specs=[
        AssetCheckSpec(name, asset="artworks", blocking=blocking, description=description)
        for name, (_, blocking, description) in CHECK_GROUPS.items()
    ],
)
def artworks(context: AssetExecutionContext, raw_objects: pl.DataFrame, raw_images: pl.DataFrame,
             museum_api: MuseumApiResource, tables: TableStore, storage: ArtsimStorage):
    """Normalise one source's raw records, quarantine what breaks a row rule, then validate
    the table with great-expectations (offline, ephemeral context). Only records new or changed
    since the stored tables were made are normalised again, when that gives the same tables
    (`core/normalise/incremental.py`). Either table can be materialised alone; the checks run
    with `artworks`."""
    from artsim_pipeline.core.expectations import validate_artworks

    selected = context.selected_output_names
    source = context.partition_key
    both = {"artworks", "artworks_quarantine"} <= set(selected)
    # a collection export is read through its mapping (where its files are depends on the mode)
    export = museum_api.export_mapping(source) if is_export(source) else None
    # reuse needs both stored tables to be the ones the state describes: a run that writes only
    # one of them normalises everything (and the state no longer matches what is stored)
    result = normalise_incremental(source, raw_objects, raw_images, export=export, normaliser=normalise,
                                   stored=_stored(tables, storage, source) if both else None)
    table, quarantine = result.artworks, result.quarantine
    context.log.info(f"{source}: {result.mode} normalisation ({result.reason}); {result.renormalised} records "
                     f"normalised, {result.reused} reused")
    raw_ok = raw_objects.filter(pl.col("status") == "ok").height
    text_repairs = _lone_surrogates(raw_objects)
    if text_repairs:
        context.log.warning(f"{source}: {text_repairs} lone surrogates in stored records were replaced with U+FFFD")
    by_rule = dict(quarantine.group_by("rule").len().sort("rule").iter_rows()) if quarantine.height else {}

    if "artworks_quarantine" in selected:
        yield Output(
            quarantine,
            output_name="artworks_quarantine",
            # which records are quarantined and why, not when: each run stamps its own time
            data_version=DataVersion(frame_fingerprint(quarantine.drop("quarantined_at"))),
            metadata={
                "rows": quarantine.height,
                "by_rule": MetadataValue.json(by_rule),
                "preview": markdown_table(quarantine, ["source_id", "rule", "reason"]),
            },
        )
    if "artworks" not in selected:
        return
    yield Output(
        table,
        output_name="artworks",
        # each output's data version is its content: the same records normalised again leave
        # everything after them up to date
        data_version=DataVersion(frame_fingerprint(table)),
        metadata={
            "rows": table.height,
            "raw_ok": raw_ok,
            "normalisation": result.mode,
            "normalised_records": result.renormalised,
            "reused_records": result.reused,
            "quarantined": quarantine.height,
            "text_repairs": text_repairs,
            "with_image": table.filter(pl.col("image_sha256").is_not_null()).height,
            "public_domain": table.filter(pl.col("is_public_domain")).height,
            "departments": table["department"].n_unique(),
            "preview": markdown_table(table, ["artwork_id", "title", "artists", "date_text", "department", "culture"]),
        },
    )
    if both:  # both tables are stored by now (each output is written as it is yielded)
        artefacts.write_normalise_state(storage, source, result.state, result.version)

    settings.silence_great_expectations()
    outcomes = validate_artworks(table, source)
    grouped: dict[str, list] = {name: [] for name in CHECK_GROUPS}
    for outcome in outcomes:
        grouped[check_group(outcome.name)].append(outcome)
    for name, members in grouped.items():
        if name == "nothing_dropped":
            continue
        failed = [o for o in members if not o.passed]
        severity = AssetCheckSeverity.WARN if CHECK_GROUPS[name][0] == "warn" else AssetCheckSeverity.ERROR
        yield AssetCheckResult(
            check_name=name,
            asset_key="artworks",
            passed=not failed,
            severity=severity,
            metadata={
                "expectations": len(members),
                "failed_expectations": len(failed),
                "failed_rows": sum(o.failed_count for o in failed),
                "results": MetadataValue.json({o.name: {"passed": o.passed, "failed_count": o.failed_count} for o in members}),
                **({"first_failure": MetadataValue.json(failed[0].details)} if failed else {}),
            },
        )
    accounted = table.height + quarantine.height
    yield AssetCheckResult(
        check_name="nothing_dropped",
        asset_key="artworks",
        passed=accounted == raw_ok,
        metadata={"raw_ok": raw_ok, "artworks": table.height, "quarantined": quarantine.height},
    )
