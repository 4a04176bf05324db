"""`core/image_manifest.py`: URLs through the memo, and the plan and table in polars, against
the former per-row Python (reference functions below) on random small tables with every edge
(null and empty paths, null source ids, failed rows, duplicate URLs, a verified store)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import polars as pl
import pytest

from artsim_pipeline.core import image_manifest
from artsim_pipeline.core.image_manifest import images_table, plan_images, record_urls, url_memo_version, wanted_images
from artsim_pipeline.core.text import scrub_surrogates

SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(), "url": pl.String(), "sha256": pl.String(), "width": pl.Int32(), "height": pl.Int32(),
    "status": pl.String(), "error": pl.String(), "path": pl.String(), "fetched_at": pl.Datetime("us", "UTC"),
}


def image_url(record):
    return record.get("img")  # AttributeError on a non-dict: the record is skipped


def reference_wanted(records: pl.DataFrame) -> dict:
    wanted = {}
    for source_id, raw in records.select("source_id", "raw_json").iter_rows():
        try:
            url = image_url(json.loads(raw))
        except (ValueError, AttributeError, TypeError, RecursionError):
            continue
        if isinstance(url, str) and url:
            wanted[(source_id, scrub_surrogates(url)[0])] = None
    return wanted


def reference_table(wanted: dict, previous, stored, downloaded: list[dict]) -> tuple[pl.DataFrame, list]:
    reusable = {}
    if previous is not None:
        for row in previous.filter(pl.col("status") == "ok").iter_rows(named=True):
            if row["path"] and (stored is None or row["path"] in stored):
                reusable[(row["source_id"], row["url"])] = row
    to_fetch = [key for key in wanted if key not in reusable]
    rows = [reusable[key] for key in wanted if key in reusable] + downloaded
    current_ids = {source_id for source_id, _ in wanted}
    if previous is not None:
        rows += previous.filter(~pl.col("source_id").is_in(list(current_ids))).to_dicts()
    table = pl.DataFrame(rows, schema=SCHEMA).sort("source_id", "url") if rows else pl.DataFrame(schema=SCHEMA)
    return table, to_fetch


def random_case(rng: random.Random):
    ids = [None, *(str(i) for i in range(12))] if rng.random() < 0.3 else [str(i) for i in range(12)]
    urls = ["http://m/a.jpg", "http://m/b.jpg", "http://m/\udfff.jpg", "", "http://m/c.jpg"]
    texts = []
    for _ in range(rng.randint(0, 14)):
        kind = rng.random()
        if kind < 0.1:
            texts.append("{not json")
        elif kind < 0.15:
            texts.append("[1]")
        elif kind < 0.2:
            texts.append(json.dumps({"img": None}))
        else:
            texts.append(json.dumps({"img": rng.choice(urls), "n": rng.randint(0, 2)}))
    records = pl.DataFrame({"source_id": [rng.choice(ids) for _ in texts], "raw_json": texts},
                           schema={"source_id": pl.String, "raw_json": pl.String})
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    previous = None
    if rng.random() < 0.85:
        keys = {(rng.choice(ids), rng.choice([u for u in urls if u] + ["http://m/old.jpg"])) for _ in range(rng.randint(0, 12))}
        previous = pl.DataFrame([{"source_id": s, "url": scrub_surrogates(u)[0], "sha256": f"sha{i}", "width": 3, "height": 4,
                                  "status": rng.choice(["ok", "ok", "not_found"]), "error": None,
                                  "path": rng.choice([f"p/{i}.jpg", f"p/{i}.jpg", None, ""]), "fetched_at": at}
                                 for i, (s, u) in enumerate(sorted(keys, key=str))], schema=SCHEMA)
    stored = None
    if previous is not None and rng.random() < 0.4:
        stored = {p for p in previous["path"].to_list() if p and rng.random() < 0.7}
    return records, previous, stored


def downloads(keys: list) -> list[dict]:
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return [{"source_id": s, "url": u, "sha256": f"new{i}", "width": 1, "height": 1, "status": "ok" if i % 3 else "http_error",
             "error": None, "path": f"n/{i}.jpg" if i % 3 else None, "fetched_at": at} for i, (s, u) in enumerate(keys)]


@pytest.mark.parametrize("seed", range(300))
def test_plan_and_table_equal_the_former_python(seed):
    rng = random.Random(seed)
    records, previous, stored = random_case(rng)
    want_wanted = reference_wanted(records)
    memo = None
    if rng.random() < 0.5:  # a memo from other texts of some of the records: only matching texts are reused
        memo, _ = record_urls(records.sample(fraction=0.5, seed=seed), image_url, None)
    urls, parsed = record_urls(records, image_url, memo)
    wanted = wanted_images(urls)
    assert wanted.rows() == list(want_wanted)
    assert parsed == records.height - (0 if memo is None else urls.join(memo, on=["source_id", "raw_hash"], how="semi").height)
    want_table, want_fetch = reference_table(want_wanted, previous, stored, downloads(list(reference_table(want_wanted, previous, stored, [])[1])))
    reused, to_fetch = plan_images(wanted, previous, stored, SCHEMA)
    assert to_fetch.rows() == want_fetch
    table = images_table(reused, pl.DataFrame(downloads(to_fetch.rows()), schema=SCHEMA), previous, wanted, SCHEMA)
    assert table.schema == want_table.schema and table.equals(want_table, null_equal=True)


def test_a_memo_entry_is_used_only_for_the_same_text():
    records = pl.DataFrame({"source_id": ["1", "2"], "raw_json": ['{"img": "http://m/a.jpg"}', '{"img": "http://m/b.jpg"}']})
    memo, parsed = record_urls(records, image_url, None)
    assert parsed == 2 and memo["url"].to_list() == ["http://m/a.jpg", "http://m/b.jpg"]
    changed = records.with_columns(raw_json=pl.Series(['{"img": "http://m/a.jpg"}', '{"img": "http://m/c.jpg"}']))
    urls, parsed = record_urls(changed, image_url, memo)
    assert parsed == 1 and urls["url"].to_list() == ["http://m/a.jpg", "http://m/c.jpg"]
    lying = memo.with_columns(url=pl.lit("http://m/memo.jpg"))  # proves the URL comes from the memo
    assert record_urls(records, image_url, lying)[0]["url"].to_list() == ["http://m/memo.jpg"] * 2


class _Client:
    def __init__(self, size):
        self.size, self.other = size, object()

    def image_url(self, record):
        return f"{record['img']}?{self.size}"


def test_the_memo_version_follows_the_url_code_and_the_state_it_reads():
    a, b = url_memo_version(_Client("1024"), "met"), url_memo_version(_Client("512"), "met")
    assert a == url_memo_version(_Client("1024"), "met") and a != b
    assert a != url_memo_version(_Client("1024"), "smk")
    assert image_manifest.URL_MEMO_FORMAT in a
