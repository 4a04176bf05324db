"""Artworks frames for the pair-mining tests: partial rows, and local converters of the real
Met and SMK records (independent of ``core/normalise``)."""

from __future__ import annotations

import polars as pl

SCHEMA = {
    "artwork_id": pl.String,
    "source": pl.String,
    "source_id": pl.String,
    "title": pl.String,
    "artists": pl.List(pl.String),
    "date_begin": pl.Int32,
    "date_end": pl.Int32,
    "department": pl.String,
    "classification": pl.String,
    "culture": pl.String,
    "tags": pl.List(pl.String),
}


def works(rows: list[dict]) -> pl.DataFrame:
    """An artworks frame from partial rows (missing fields null / empty)."""
    full = []
    for row in rows:
        r = {name: None for name in SCHEMA}
        r.update(artists=[], tags=[])
        r.update(row)
        r["source"] = r["source"] or r["artwork_id"].split(":")[0]
        r["source_id"] = r["source_id"] or r["artwork_id"].split(":", 1)[1]
        r["title"] = r["title"] or f"Title of {r['artwork_id']}"
        full.append(r)
    return pl.DataFrame(full, schema=SCHEMA)


def met_frame(records: list[dict]) -> pl.DataFrame:
    """A simple local converter: Met /objects records -> the artworks columns used here."""
    rows = []
    for r in records:
        names = [c["name"] for c in (r.get("constituents") or []) if c.get("name")]
        rows.append(
            {
                "artwork_id": f"met:{r['objectID']}",
                "title": r.get("title") or None,
                "artists": names
                or ([r["artistDisplayName"]] if r.get("artistDisplayName") else []),
                "date_begin": r.get("objectBeginDate"),
                "date_end": r.get("objectEndDate"),
                "department": r.get("department") or None,
                "classification": r.get("classification") or r.get("objectName") or None,
                "culture": r.get("culture") or None,
                "tags": [t["term"] for t in (r.get("tags") or []) if t.get("term")],
            }
        )
    return works(rows)


def smk_frame(items: list[dict]) -> pl.DataFrame:
    """A simple local converter: SMK items -> the artworks columns used here."""
    rows = []
    for it in items:
        production = it.get("production") or []
        dates = (it.get("production_date") or [{}])[0]
        nationality = next(
            (p.get("creator_nationality") for p in production if p.get("creator_nationality")), None
        )
        rows.append(
            {
                "artwork_id": f"smk:{it['object_number']}",
                "artists": [p["creator"] for p in production if p.get("creator")],
                "date_begin": int(dates["start"][:4]) if dates.get("start") else None,
                "date_end": int(dates["end"][:4]) if dates.get("end") else None,
                "department": it.get("responsible_department") or "SMK",
                "classification": ((it.get("object_names") or [{}])[0]).get("name"),
                "culture": nationality,
            }
        )
    return works(rows)


def pair_set(pairs: pl.DataFrame, rule: str | None = None) -> set[tuple[str, str]]:
    if rule is not None:
        pairs = pairs.filter(pl.col("rule") == rule)
    return set(pairs.select("artwork_id_a", "artwork_id_b").iter_rows())


#: Every work in the train split (for rules tested without the split in the way).
ONLY_SPLIT = dict(train_fraction=1.0, val_fraction=0.0, test_fraction=0.0)
