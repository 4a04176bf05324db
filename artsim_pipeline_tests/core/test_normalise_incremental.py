"""Incremental normalisation (``core/normalise/incremental.py``) gives exactly the full
normalisation's tables: real records of every source (Met, SMK, Cleveland, AIC, the MediaLab
export) and poisoned copies of them, through adds, edits, deletions, images that change and
records that turn bad and back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.normalise import incremental
from artsim_pipeline.core.normalise.incremental import FULL, INCREMENTAL, Normalised, Stored, normalise_incremental
from artsim_pipeline_tests.replay.paged import aic_info_config, load_shared_aic_records, load_shared_cma_records
from artsim_pipeline_tests.replay.server import shared_data_dir

SHARED = shared_data_dir()
pytestmark = pytest.mark.skipif(not (SHARED / "met" / "objects.jsonl").exists(), reason=f"no real records under {SHARED}")
FETCHED = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
RAW_SCHEMA = {"source_id": pl.String, "raw_json": pl.String, "fetched_at": pl.Datetime("us", "UTC"),
              "content_hash": pl.String, "status": pl.String, "error": pl.String}


# -- the records of each source -----------------------------------------------------------------


def met_records() -> list[tuple[str, str]]:
    lines = (SHARED / "met" / "objects.jsonl").read_text(encoding="utf-8").splitlines()[:150]
    exact = (SHARED / "met" / "objects_exact.jsonl").read_text(encoding="utf-8").splitlines()
    return [(str(json.loads(t)["objectID"]), t) for t in [*exact, *lines]]


def smk_records() -> list[tuple[str, str]]:
    items = {}
    for name in ("search_public_domain_has_image_2019.json", "search_title_interior.json",
                 "object_KMSst28_no_image.json", "object_KMS1_fall_of_the_titans.json"):
        for item in json.loads((SHARED / "smk" / "responses" / name).read_text(encoding="utf-8"))["items"]:
            items[item["object_number"]] = json.dumps(item, ensure_ascii=False)
    return list(items.items())


def cma_records() -> list[tuple[str, str]]:
    return [(str(r["id"]), json.dumps(r)) for r in load_shared_cma_records()]


def aic_records() -> list[tuple[str, str]]:
    info, config = aic_info_config()
    return [(str(r["id"]), json.dumps({"data": r, "info": info, "config": config})) for r in load_shared_aic_records()]


def medialab():
    from artsim_pipeline.core.exports.mapping import parse_mapping
    from artsim_pipeline.core.exports.text import read_export
    from artsim_pipeline.sample import bundled_export_dir

    folder = bundled_export_dir("met_medialab")
    mapping = parse_mapping((folder / "mapping.toml").read_text(encoding="utf-8"), where="mapping.toml")
    rows = read_export((folder / "records.csv").read_bytes(), mapping).rows
    return [(row.source_id, row.raw_json) for row in rows][:200], mapping


def edited(source: str, text: str, mapping=None) -> str:
    """The record with its title changed (still a good record)."""
    record = json.loads(text)
    if source == "smk":
        record["titles"] = [{"title": "An edited title", "language": "en"}, *(record.get("titles") or [])]
    elif source == "aic":
        record["data"]["title"] = "An edited title"
    elif source == "met_medialab":
        record[mapping.fields["title"].columns[0]] = "An edited title"
    else:
        record["title"] = "An edited title"
    return json.dumps(record, ensure_ascii=False)


def poisoned(records: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Poison beside the records: bad JSON, documents that are not records, deep nesting, a lone
    surrogate escape in a copy of a record, a copy of a record under another source id."""
    first = records[0][1]
    return [
        ("poison-1", "{"), ("poison-2", "[1, 2]"), ("poison-3", '"a string"'), ("poison-4", "null"),
        ("poison-5", "[" * 3000 + "]" * 3000), ("poison-6", first.replace('": "', '": "\\udfff', 1)),
        ("poison-7", first),
    ]


def raw_frame(rows: list[tuple[str, str]], gone: set[str] = frozenset()) -> pl.DataFrame:
    return pl.DataFrame(
        [(sid, text, FETCHED, str(hash(text)), "gone" if sid in gone else "ok", None) for sid, text in rows],
        schema=RAW_SCHEMA, orient="row",
    )


def met_images(rows: list[tuple[str, str]], salt: str = "") -> pl.DataFrame:
    images = []
    for sid, text in rows:
        try:
            url = json.loads(text).get("primaryImageSmall")
        except (ValueError, AttributeError, RecursionError):
            continue
        if url:
            images.append((sid, url, f"{hash(url + salt) & 0xFFFFFFFF:064x}", "ok"))
    return pl.DataFrame(images, schema={"source_id": pl.String, "url": pl.String, "sha256": pl.String, "status": pl.String},
                        orient="row")


# -- the comparison ----------------------------------------------------------------------------------


def stored_copy(result: Normalised) -> Stored:
    """What a run leaves in storage: the tables and the state through Parquet."""
    def parquet(frame: pl.DataFrame) -> pl.DataFrame:
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        buffer.seek(0)
        return pl.read_parquet(buffer)

    return Stored(parquet(result.artworks), parquet(result.quarantine), parquet(result.state), result.version)


def run_both(source, raw, images, stored, export=None, when=FETCHED, **options) -> Normalised:
    """The incremental run, checked against a full pass over the same records."""
    inc = normalise_incremental(source, raw, images, export=export, stored=stored, quarantined_at=when,
                                max_fresh_fraction=1.0, **options)
    full = normalise_incremental(source, raw, images, export=export, stored=None, quarantined_at=when)
    assert full.mode == FULL
    assert_frame_equal(inc.artworks, full.artworks)
    assert_frame_equal(inc.quarantine, full.quarantine)
    assert frame_fingerprint(inc.artworks) == frame_fingerprint(full.artworks)
    assert frame_fingerprint(inc.quarantine) == frame_fingerprint(full.quarantine)
    assert_frame_equal(inc.state, full.state)
    return inc


SOURCES = ["met", "smk", "cma", "aic", "met_medialab"]


def source_records(source):
    if source == "met_medialab":
        return medialab()
    return {"met": met_records, "smk": smk_records, "cma": cma_records, "aic": aic_records}[source](), None


@pytest.mark.parametrize("source", SOURCES)
def test_incremental_equals_full_through_adds_edits_deletions_and_quarantine_transitions(source):
    records, mapping = source_records(source)
    assert len(records) >= 15
    base, extra = records[:-3], records[-3:]
    poison = poisoned(records)
    rows = base + poison
    images = met_images(rows) if source == "met" else None

    first = normalise_incremental(source, raw_frame(rows), images, export=mapping, quarantined_at=FETCHED)
    assert first.mode == FULL and first.state is not None and first.quarantine.height >= 5

    # edits, adds, deletions (a row removed and a row gone), two good records turning bad
    ids = [sid for sid, _ in base]
    texts = dict(rows)
    for sid in ids[1:4]:
        texts[sid] = edited(source, texts[sid], mapping)
    for sid in ids[4:6]:
        texts[sid] = texts[sid][: len(texts[sid]) // 2]
    del texts[ids[6]]
    step = [*texts.items(), *extra[:2]]
    second = run_both(source, raw_frame(step, gone={ids[7]}), images, stored_copy(first), mapping,
                      when=FETCHED + timedelta(hours=1))
    assert second.mode == INCREMENTAL and 0 < second.renormalised < len(step) / 2
    bad = set(second.quarantine["source_id"])
    assert {ids[4], ids[5]} <= bad and ids[6] not in bad and ids[7] not in bad

    # the bad records turn good again, the deleted one comes back, images change
    texts.update({sid: dict(rows)[sid] for sid in ids[4:7]})
    step = [*texts.items(), *extra]
    images = met_images(step, salt="new") if source == "met" else None
    third = run_both(source, raw_frame(step), images, stored_copy(second), mapping, when=FETCHED + timedelta(hours=2))
    assert third.mode == INCREMENTAL
    assert not {ids[4], ids[5]} & set(third.quarantine["source_id"])
    if source == "met":
        assert third.artworks["image_sha256"].drop_nulls().is_in(images["sha256"].implode()).all()
        assert third.artworks["image_sha256"].is_not_null().sum() > 10

    # nothing changed: nothing is normalised again
    fourth = run_both(source, raw_frame(step), images, stored_copy(third), mapping, when=FETCHED + timedelta(hours=3))
    assert (fourth.mode, fourth.renormalised, fourth.reused) == (INCREMENTAL, 0, len(step))


def met_run(rows, stored=None, **options):
    return normalise_incremental("met", raw_frame(rows), None, stored=stored, quarantined_at=FETCHED, **options)


def test_duplicates_across_records_mean_a_full_pass_with_the_same_result():
    records = met_records()[:40]
    first = met_run(records)
    # a new record with the id of a kept one (a source id with a blank): the kept one may lose
    copy_of = (f" {records[3][0]}", edited("met", records[3][1]))
    second = run_both("met", raw_frame([*records, copy_of]), None, stored_copy(first))
    assert second.mode == FULL and "artwork id of a kept one" in second.reason
    assert "duplicate_id" in set(second.quarantine["rule"])
    # a kept duplicate_id loser: the winner may change with any record, so a full pass
    changed = [records[0], (records[1][0], edited("met", records[1][1])), *records[2:], copy_of]
    third = run_both("met", raw_frame(changed), None, stored_copy(second))
    assert third.mode == FULL and "duplicate_id loser" in third.reason


def test_a_changed_normaliser_or_changed_stored_tables_mean_a_full_pass(monkeypatch):
    records = met_records()[:30]
    first = met_run(records)
    stored = stored_copy(first)
    assert met_run(records, stored).mode == INCREMENTAL
    # a stored artwork edited behind the state's back: its row hash no longer matches
    tampered = Stored(stored.artworks.with_columns(pl.lit("edited").alias("title")), stored.quarantine, stored.state,
                      stored.version)
    result = run_both("met", raw_frame(records), None, tampered)
    assert result.mode == FULL and "not the ones the state describes" in result.reason
    # another export mapping, another source, another normaliser version
    assert incremental.normaliser_version("met") != incremental.normaliser_version("smk")
    monkeypatch.setattr(incremental, "NORMALISER_VERSION", "next")
    result = run_both("met", raw_frame(records), None, stored)
    assert result.mode == FULL and "normaliser changed" in result.reason


def test_the_code_fingerprint_follows_the_code_and_is_the_same_in_every_process():
    def one(x):
        return x + 1

    def other(x):
        return x + 2

    assert code_fingerprint(one) != code_fingerprint(other)
    assert code_fingerprint({"b", "a"}) == code_fingerprint({"a", "b"})
    here = incremental._code_fingerprint()
    code = "from artsim_pipeline.core.normalise.incremental import _code_fingerprint; print(_code_fingerprint())"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == here, "the version differs between processes: every run would be full"


def test_records_that_cannot_be_told_apart_are_normalised_in_full():
    records = met_records()[:10]
    rows = [*records, records[0]]  # one source id twice among the ok rows
    first = met_run(rows)
    assert first.state is None
    assert met_run(rows, Stored(first.artworks, first.quarantine, None, first.version)).mode == FULL


def test_an_edited_record_source_means_a_full_pass_with_the_new_ids(monkeypatch):
    """The review's reproduction: MET_RECORDS' id prefix edited after the tables were stored.
    Before the code fingerprint walked record sources, the version stayed and the incremental
    run mixed ``met:`` and ``metmuseum:`` ids."""
    import dataclasses

    from artsim_pipeline.core.museums import met

    records = met_records()[:40]
    incremental._code_fingerprint.cache_clear()
    stored = stored_copy(met_run(records))
    changed = [(records[0][0], edited("met", records[0][1])), *records[1:]]
    try:
        monkeypatch.setattr(met, "MET_RECORDS", dataclasses.replace(met.MET_RECORDS, id_prefix="metmuseum"))
        incremental._code_fingerprint.cache_clear()
        result = run_both("met", raw_frame(changed), None, stored)
        assert result.mode == FULL and "normaliser changed" in result.reason
        assert {a.split(":")[0] for a in result.artworks["artwork_id"]} == {"metmuseum"}
    finally:
        monkeypatch.undo()
        incremental._code_fingerprint.cache_clear()
    assert met_run(changed, stored).mode == INCREMENTAL  # the code as it was: reuse again


def test_an_export_mapping_s_version_is_the_same_in_every_process():
    """The mapping holds frozensets (vocabularies), whose repr order follows the hash seed: a
    version from repr made every new process's run a full pass."""
    code = ("from artsim_pipeline.core.exports.mapping import parse_mapping\n"
            "from artsim_pipeline.core.normalise.incremental import normaliser_version\n"
            "from artsim_pipeline.sample import bundled_export_dir\n"
            "folder = bundled_export_dir('met_medialab')\n"
            "mapping = parse_mapping((folder / 'mapping.toml').read_text(encoding='utf-8'), where='mapping.toml')\n"
            "assert any(rule.vocabulary for rule in mapping.fields.values())\n"
            "print(normaliser_version('met_medialab', mapping))")
    versions = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2", "3")
    }
    _, mapping = medialab()
    assert versions == {incremental.normaliser_version("met_medialab", mapping)}


def test_an_unreadable_stored_state_means_a_full_pass_that_says_why(tmp_path):
    from artsim_pipeline.defs.validation.assets import _stored
    from artsim_pipeline.resources import artefacts
    from artsim_pipeline.resources.storage import ArtsimStorage

    storage = ArtsimStorage(home=str(tmp_path))
    records = met_records()[:20]
    first = met_run(records)
    artefacts.write_normalise_state(storage, "met", first.state, first.version)
    state, version = artefacts.read_normalise_state(storage, "met")
    assert_frame_equal(state, first.state)
    assert version == first.version
    good = storage.objects.read_bytes("state/artworks/met.parquet")
    storage.objects.write_bytes("state/artworks/met.parquet", good[: len(good) // 2])  # cut short
    with pytest.raises(artefacts.UnreadableState, match="state/artworks/met.parquet"):
        artefacts.read_normalise_state(storage, "met")
    stored = _stored(None, storage, "met")  # the tables are not read when the state is unreadable
    result = run_both("met", raw_frame(records), None, stored)
    assert result.mode == FULL and result.reason.startswith("the stored state is unreadable")


def test_a_stored_state_of_another_schema_means_a_full_pass():
    records = met_records()[:20]
    first = stored_copy(met_run(records))
    other = Stored(first.artworks, first.quarantine, first.state.with_columns(pl.col("raw_key").cast(pl.String)),
                   first.version)
    result = run_both("met", raw_frame(records), None, other)
    assert result.mode == FULL and result.reason == "the stored state has another schema"
    assert met_run(records, first).mode == INCREMENTAL
