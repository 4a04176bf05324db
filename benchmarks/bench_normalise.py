"""Benchmark: normalise + validate 500,000 Met records, against a row-by-row Python loop.

The real Met records in ``../shared/data/met/objects.jsonl`` are replicated with fresh
object ids up to ``--rows`` records (default 500,000), wrapped in a ``raw_objects`` frame,
and pushed through :func:`normalise` and :func:`validate_artworks`.  The baseline is a
plain Python loop doing the same per-record normalisation (``json.loads``, field mapping,
HTML/entity/whitespace cleaning, placeholder makers, dates, department mapping, timestamp
parsing) on a subset,
extrapolated to the full size.  Prints seconds, records/s and the ratio.

    .venv/bin/python benchmarks/bench_normalise.py [--rows 500000] [--loop-rows 50000]

Data location: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import html
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from artsim_pipeline.core.expectations import validate_artworks
from artsim_pipeline.core.names import is_anonymous
from artsim_pipeline.core.normalise import MET_LANDING_URL, normalise
from artsim_pipeline.core.schema import MAX_TEXT_CHARS, MET_DEPARTMENT_LOOKUP


def shared_data() -> Path:
    from artsim_pipeline import settings

    return settings.shared_data_dir()


def build_raw_objects(rows: int) -> pl.DataFrame:
    """``rows`` Met records: the real ones, replicated with new, unique object ids."""
    lines = (shared_data() / "met" / "objects.jsonl").read_text(encoding="utf-8").splitlines()
    base = pl.DataFrame({"text": lines})
    reps = -(-rows // len(lines))
    frame = (
        pl.concat([base] * reps)
        .head(rows)
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("i"))
        .with_columns((pl.col("i") + 1_000_000).cast(pl.String).alias("source_id"))
    )
    now = datetime.now(UTC)
    return frame.select(
        "source_id",
        pl.concat_str(
            pl.lit('{"objectID": '),
            pl.col("source_id"),
            pl.col("text").str.replace(r'^\{"objectID": \d+', ""),
        ).alias("raw_json"),
        pl.lit(now).alias("fetched_at"),
        pl.col("text").hash().cast(pl.String).alias("content_hash"),
        pl.lit("ok").alias("status"),
        pl.lit(None, dtype=pl.String).alias("error"),
    )


# --------------------------------------------------------------------------------------
# The row-by-row baseline: the same rules, one record at a time in Python
# --------------------------------------------------------------------------------------
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_WS = re.compile(r"\s+")


def _text(value, strip_html: bool = True):
    if value is None:
        return None
    value = str(value)
    if strip_html:
        value = _TAG.sub("", value)
    value = _WS.sub(" ", html.unescape(value)).strip()[:MAX_TEXT_CHARS]
    return value or None


def _year(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


@functools.lru_cache(maxsize=None)
def _is_placeholder(name: str) -> bool:
    return is_anonymous(name)  # once per distinct name, as the polars path does


def _timestamp(value):
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def python_normalise_met(text: str) -> dict | None:
    """One Met record, normalised in plain Python (the baseline for the ratio)."""
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not str(rec.get("objectID", "")).isdigit():
        return None
    oid = str(rec["objectID"])
    makers = [
        (_text(c.get("name")), _text(c.get("role")))
        for c in rec.get("constituents") or []
        if isinstance(c, dict)
    ]
    makers = [m for m in makers if m[0]]
    if not makers and _text(rec.get("artistDisplayName")):
        makers = [(_text(rec.get("artistDisplayName")), _text(rec.get("artistRole")))]
    placeholders = [m[0] for m in makers if _is_placeholder(m[0])]  # -> attribution_note
    makers = [m for m in makers if m[0] not in placeholders]
    begin, end = _year(rec.get("objectBeginDate")), _year(rec.get("objectEndDate"))
    swapped = begin is not None and end is not None and begin > end
    if swapped:
        begin, end = end, begin
    department = _text(rec.get("department"))
    if department:
        department = MET_DEPARTMENT_LOOKUP.get(department.lower(), department)
    tags, seen = [], set()
    for tag in rec.get("tags") or []:
        term = _text(tag.get("term")) if isinstance(tag, dict) else None
        if term and term.lower() not in seen:
            seen.add(term.lower())
            tags.append(term)
    image = (rec.get("primaryImageSmall") or rec.get("primaryImage") or "").strip() or None
    title = _text(rec.get("title"))
    if title is None and not makers:
        return None
    if any(y is not None and not -10_000 <= y <= 2_100 for y in (begin, end)):
        return None
    return {
        "artwork_id": f"met:{oid}",
        "source": "met",
        "source_id": oid,
        "title": title,
        "artists": [m[0] for m in makers],
        "artist_roles": [m[1] for m in makers],
        "date_begin": begin,
        "date_end": end,
        "dates_swapped": swapped,
        "attribution_note": "; ".join(dict.fromkeys(placeholders)) or None,
        "date_text": _text(rec.get("objectDate")),
        "department": department,
        "classification": _text(rec.get("classification")) or _text(rec.get("objectName")),
        "object_type": _text(rec.get("objectName")),
        "medium": _text(rec.get("medium")),
        "techniques": [],
        "culture": _text(rec.get("culture")),
        "tags": tags,
        "image_url": image if image and image.startswith(("http://", "https://")) else None,
        "is_public_domain": rec.get("isPublicDomain"),
        "landing_url": MET_LANDING_URL + oid,
        "metadata_modified": _timestamp(rec.get("metadataDate")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--loop-rows", type=int, default=50_000)
    args = parser.parse_args()

    raw = build_raw_objects(args.rows)
    mb = raw.get_column("raw_json").str.len_bytes().sum() / 1e6
    print(f"raw_objects: {raw.height:,} Met records, {mb:,.0f} MB of JSON, {os.cpu_count()} CPUs")

    # Import GX before timing so that its one-off import cost is not counted as validation.
    t0 = time.perf_counter()
    import great_expectations  # noqa: F401

    print(f"great_expectations import (not counted): {time.perf_counter() - t0:.1f} s")

    t0, c0 = time.perf_counter(), time.process_time()
    artworks, quarantine = normalise("met", raw)
    t_norm, c_norm = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    outcomes = validate_artworks(artworks, "met")
    t_val, c_val = time.perf_counter() - t0, time.process_time() - c0
    total = t_norm + t_val
    failed = [f"{o.name} ({o.severity}, {o.failed_count})" for o in outcomes if not o.passed]
    print(f"normalise:         {t_norm:7.2f} s wall, {c_norm:6.2f} s CPU"
          f"  ({raw.height / t_norm:,.0f} records/s)"
          f"  -> {artworks.height:,} artworks, {quarantine.height:,} quarantined")  # fmt: skip
    print(f"validate_artworks: {t_val:7.2f} s wall, {c_val:6.2f} s CPU"
          f"  ({len(outcomes)} checks; not passed: {', '.join(failed) or 'none'})")  # fmt: skip
    print(f"total:             {total:7.2f} s wall, {c_norm + c_val:6.2f} s CPU"
          f"  ({raw.height / total:,.0f} records/s)")  # fmt: skip

    subset = raw.head(args.loop_rows).get_column("raw_json").to_list()
    t0, c0 = time.perf_counter(), time.process_time()
    rows = [python_normalise_met(text) for text in subset]
    t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
    scale = raw.height / len(subset)
    loop_full = t_loop * scale
    kept = sum(r is not None for r in rows)
    print(f"python row loop:   {t_loop:7.2f} s wall on {len(subset):,} records ({kept:,} kept)"
          f" -> {loop_full:.1f} s wall / {c_loop * scale:.1f} s CPU extrapolated to"
          f" {raw.height:,} ({len(subset) / t_loop:,.0f} records/s), normalisation only")  # fmt: skip
    print(f"ratio, wall (python loop / polars normalise):            {loop_full / t_norm:.1f}x")
    print(f"ratio, wall (python loop / polars normalise + validate): {loop_full / total:.1f}x")
    sha = hashlib.sha256(artworks.head(1000).write_json().encode()).hexdigest()[:12]
    print(f"(first 1,000 artworks digest {sha})")


if __name__ == "__main__":
    main()
