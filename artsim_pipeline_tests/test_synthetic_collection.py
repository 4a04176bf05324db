"""The synthetic Met collections of `benchmarks/bench_scale.py` (built by `benchmarks/synthetic.py`):
real records under new, unique ids, each with its own image, as valid as the records they copy;
and the figures the benchmark derives from `artsim materialize` output."""

from __future__ import annotations

import hashlib
import io
import json
import math
from datetime import datetime, timezone

import pytest

from benchmarks import synthetic
from benchmarks.bench_scale import growth_exponent, parse_stage_lines

CHANGED_FIELDS = {"objectID", "primaryImage", "primaryImageSmall", "additionalImages", "objectURL", "accessionNumber"}


@pytest.fixture(scope="module")
def real():
    """40 real Met records of the shared data (so a collection of 100 holds copies 0, 1 and 2)."""
    return synthetic.load_real_records()[:40]


@pytest.fixture(scope="module")
def collection(real, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("synthetic")
    return data_dir, synthetic.write_collection(data_dir, 100, real)


def _raw_objects(records):
    from artsim_pipeline.core.raw_store import FetchResult, merge_results

    results = [FetchResult(source_id=str(r["objectID"]), status="ok", raw_json=json.dumps(r), modified=r["metadataDate"])
               for r in records]
    return merge_results(None, results)[0]


def test_ids_urls_and_accession_numbers_are_new_and_unique(real, collection):
    _, records = collection
    real_ids = {r["objectID"] for r in real}
    ids = [r["objectID"] for r in records]
    assert len(ids) == len(set(ids)) == 100 and not set(ids) & real_ids
    for key in ("primaryImageSmall", "primaryImage", "objectURL"):
        urls = [r[key] for r in records if r.get(key)]
        assert len(urls) == len(set(urls)), key
        assert not set(urls) & {r.get(key) for r in real}, key
    numbers = [r["accessionNumber"] for r in records if r.get("accessionNumber")]
    assert len(numbers) == len(set(numbers))
    # every other field is the real record's, verbatim
    by_id = {r["objectID"]: r for r in real}
    for record in records:
        base = by_id[record["objectID"] % synthetic.ID_STRIDE]
        assert {k: v for k, v in record.items() if k not in CHANGED_FIELDS} == {k: v for k, v in base.items() if k not in CHANGED_FIELDS}
    assert {r["objectID"] // synthetic.ID_STRIDE for r in records} == {1, 2, 3}  # copies 0, 1, 2


def test_a_smaller_collection_is_the_start_of_a_larger_one_and_reads_back(real, collection):
    data_dir, records = collection
    assert synthetic.synthetic_records(real, 30) == records[:30]
    assert synthetic.read_collection(data_dir) == records
    assert synthetic.read_collection(data_dir, 7) == records[:7]
    with pytest.raises(ValueError):
        synthetic.synthetic_records(real, 0)


def test_records_normalise_exactly_like_the_real_ones(real, collection):
    from artsim_pipeline.core.normalise import normalise

    _, records = collection
    artworks, quarantine = normalise("met", _raw_objects(records))
    assert artworks.height + quarantine.height == len(records) and artworks.height > 0
    assert artworks["artwork_id"].n_unique() == artworks.height
    assert set(artworks["artwork_id"]) <= {f"met:{r['objectID']}" for r in records}
    real_artworks, _ = normalise("met", _raw_objects(real))
    kept_real = {int(a.split(":")[1]) for a in real_artworks["artwork_id"]}
    kept = {int(a.split(":")[1]) for a in artworks["artwork_id"]}
    assert kept == {r["objectID"] for r in records if r["objectID"] % synthetic.ID_STRIDE in kept_real}


def test_every_image_is_its_own_jpeg_served_from_the_data_dir(collection):
    from PIL import Image

    data_dir, records = collection
    serve = synthetic.image_server(data_dir)
    with_image = [r for r in records if r.get("primaryImageSmall")]
    assert with_image
    digests = set()
    for record in with_image:
        rel = synthetic.image_path(record["primaryImageSmall"])
        body = serve("/" + rel)
        assert body == (data_dir / rel).read_bytes()
        with Image.open(io.BytesIO(body)) as img:
            assert img.format == "JPEG" and img.size == (128, 128)
        digests.add(hashlib.sha256(body).hexdigest())
    assert len(digests) == len(with_image)  # copies of one real record still differ
    assert serve("/images/met/nothing-here.jpg") == b""
    assert serve("/images/met/../../../../etc/passwd") == b""


def test_revise_changes_title_and_metadata_date_of_a_fixed_fraction(collection):
    _, records = collection
    when = datetime(2026, 12, 5, 3, 4, 5, 678000, tzinfo=timezone.utc)
    revised = synthetic.revise(records, 0.05, when)
    assert len(revised) == 5 and [r["objectID"] for r in revised] == [r["objectID"] for r in synthetic.revise(records, 0.05, when)]
    by_id = {r["objectID"]: r for r in records}
    for record in revised:
        old = by_id[record["objectID"]]
        assert record["title"] != old["title"] and record["title"].endswith("(revised)")
        assert record["metadataDate"] == "2026-12-05T03:04:05.678Z"
        assert {k: v for k, v in record.items() if k not in ("title", "metadataDate")} == \
            {k: v for k, v in old.items() if k not in ("title", "metadataDate")}
    assert len(synthetic.revise(records[:10], 0.01, when)) == 1  # at least one


def test_stage_lines_are_summed_per_asset_and_a_shared_step_counts_once():
    lines = [
        "artsim: materialising new records, then whatever is missing or stale (ARTSIM_ENV=local, ARTSIM_HOME=/tmp/x)",
        "  raw_objects[met]                   300 rows                        1.1 s",
        "  artworks_quarantine[met]           0 rows                          5.7 s",
        "  artworks[met]                      300 rows                        5.7 s",
        "  raw_objects[smk]                   0 rows                          0.5 s",
        "  similarity_model                   1 row                           4.0 s",
        "  collection_map                     points 0.250                   12.0 s",
        "",
        "== artsim summary ==",
        "  similarity_model  (the summary's lines are not stages)  9.9 s",
    ]
    seconds, steps = parse_stage_lines(lines)
    assert seconds == {"raw_objects": pytest.approx(1.6), "artworks_quarantine": 5.7, "artworks": 5.7,
                       "similarity_model": 4.0, "collection_map": 12.0}
    assert steps == pytest.approx(1.1 + 5.7 + 0.5 + 4.0 + 12.0)


def test_growth_exponent_is_the_slope_in_log_log():
    assert growth_exponent([100, 200, 400], [3.0, 12.0, 48.0]) == pytest.approx(2.0)
    assert growth_exponent([100, 1000], [5.0, 50.0]) == pytest.approx(1.0)
    assert growth_exponent([100, 1000], [5.0, 0.0]) is None  # needs two measured points
    assert math.isclose(growth_exponent([100, 200, 400], [7.0, 7.0, 7.0]), 0.0, abs_tol=1e-12)


def test_scaling_fits_and_projects_each_asset_and_leaves_out_skipped_ones():
    from benchmarks.bench_scale import RunFigures, marginal_projection, scaling

    sizes = [1000, 2000, 4000]
    runs = []
    for n in sizes:
        runs.append(RunFigures("full", n, {"ingest": 2.0 + 0.01 * n, "pairs": 1e-6 * n * n}, wall_s=10.0 + 0.01 * n, cpu_s=5.0))
        runs.append(RunFigures("1%", n, {"ingest": 0.5 + 0.0001 * n}, wall_s=3.0))
    fit = scaling(runs, 470_000)
    ingest, pairs = fit["per_asset"]["ingest"], fit["per_asset"]["pairs"]
    assert pairs["exponent_full"] == pytest.approx(2.0)
    assert pairs["projected_full"] == pytest.approx(1e-6 * 470_000 ** 2)
    assert ingest["marginal_full"] == pytest.approx(2.0 + 0.01 * 470_000)
    assert 0 < ingest["exponent_full"] < 1  # the fixed 2 s hides part of the growth
    assert ingest["marginal_incremental"] == pytest.approx(0.5 + 0.0001 * 470_000)
    assert pairs["exponent_incremental"] is None and pairs["projected_incremental"] is None  # not run in the 1% runs
    assert fit["per_asset"]["total CPU"]["exponent_full"] == pytest.approx(0.0)
    assert marginal_projection(sizes, [3.0, 2.0, 1.0], 470_000) is None  # no growth measured
