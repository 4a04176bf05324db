"""The Cleveland Museum of Art Open Access API (``/api/artworks/``) -> ``artworks`` (pure).

One raw record is one element of a listing page's ``data`` (``raw_json``: the element's JSON).

Mapping:

* ``artwork_id`` ``cma:<id>`` (the numeric ``id``; the accession number is not unique across
  parts of a work);
* makers from ``creators[].description`` ("Thomas Cole (American, 1801-1848)"): the name before
  the parenthesis, the nationality after it; a qualifier stays a role, never the maker ("after
  Peter Paul Rubens" is Rubens with role "after", "Workshop of ..." role "workshop of"); an
  entry that is only a workshop ("Studio", "Associates", joined with qualifier "and") is a role
  of the maker before it ("artist and studio");
* years: ``creation_date_earliest`` / ``_latest``. They carry no era: B.C. is only in the text
  (``creation_date`` "400-375 BC" has 400 and 375), so when the text reads B.C. the years are
  negated; without the ints the text is parsed (``core/dates.py``);
* ``culture``: the first maker's nationality, else the first ``culture`` entry ("Italy,
  Etruscan, early 4th Century BC"); every ``culture`` entry is also a tag;
* ``type`` is the classification and the object type, ``technique`` the medium,
  ``department`` the department;
* image: ``images.web.url`` of a CC0 work (``share_license_status``); ``is_public_domain`` is
  CC0-ness (the listing asks only for CC0 works with an image, a record fetched by id may be
  "Copyrighted"); landing page: ``url``, else ``https://clevelandart.org/art/<accession>``;
* ``metadata_modified``: ``updated_at`` ("2019-11-18 09:03:30.462000", UTC).

Quarantine rules: the shared ones (``invalid_json``, ``not_an_object``, ``missing_id``,
``invalid_id``, ``id_mismatch``, ``no_title_and_no_artist``, ``date_out_of_range``,
``duplicate_id``) plus ``wrong_type`` for a ``creators`` or ``images`` that is not a list /
object, and ``unreadable`` for anything else a record holds that cannot be read.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import polars as pl

from artsim_pipeline.core.dates import parse_date_text
from artsim_pipeline.core.museums import Reject, attach_roles, parse_maker, stage_json, text, texts, year
from artsim_pipeline.core.normalise import normalise_staged

__all__ = ["normalise", "stage_record", "image_url", "record_id", "LANDING_URL"]

SOURCE = "cma"
LANDING_URL = "https://clevelandart.org/art/"
ID_PATTERN = r"^\d+$"  # (no braces: the quarantine reason is a polars format string)
_BC = re.compile(r"\bB\.?\s?C\.?(?:E\.?)?(?![A-Za-z])", re.IGNORECASE)


def normalise(raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(artworks, quarantine)`` for the ``cma`` partition of ``raw_objects``."""
    return normalise_staged(SOURCE, raw_objects, raw_images, lambda raw: stage_json(raw, stage_record),
                            id_field="id", id_pattern=ID_PATTERN, id_prefix=SOURCE)


def record_id(record: Any) -> str | None:
    """The record's id as the text ``raw_objects`` keys it by (``93014``)."""
    if not isinstance(record, dict):
        return None
    value = record.get("id")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else text(value)


def is_cc0(record: dict) -> bool:
    return (text(record.get("share_license_status")) or "").upper() == "CC0"


def image_url(record: Any) -> str | None:
    """The web-size image (``images.web.url``) of a CC0 record; None otherwise."""
    if not isinstance(record, dict) or not is_cc0(record):
        return None
    images = record.get("images")
    web = images.get("web") if isinstance(images, dict) else None
    url = text(web.get("url")) if isinstance(web, dict) else None
    return url if url and url.startswith(("https://", "http://")) else None


def years(record: dict) -> tuple[int | None, int | None]:
    """``(begin, end)``: the earliest / latest ints with the era the text states, else the text's."""
    date_text = text(record.get("creation_date"))
    earliest, latest = year(record.get("creation_date_earliest")), year(record.get("creation_date_latest"))
    parsed = parse_date_text(date_text) if date_text else None
    if earliest is None and latest is None:
        return parsed if parsed is not None else (None, None)
    if date_text and _BC.search(date_text) and (earliest or 0) >= 0 and (latest or 0) >= 0:
        crosses = parsed is not None and parsed[0] < 0 < parsed[1]  # "100 BC-AD 100": only the start is B.C.
        earliest = -earliest if earliest is not None else None
        latest = latest if crosses or latest is None else -latest
    return earliest, latest


def _makers(record: dict) -> list:
    creators = record.get("creators")
    if creators is None:
        return []
    if not isinstance(creators, list):
        raise Reject("wrong_type", f"field 'creators': expected an array, got {type(creators).__name__}")
    makers = []
    for creator in creators:
        if not isinstance(creator, dict):
            raise Reject("wrong_type", f"field 'creators': an element is {type(creator).__name__}, not an object")
        qualifier = creator.get("qualifier")
        qualifier = text(qualifier.get("Value")) if isinstance(qualifier, dict) else text(qualifier)
        maker = parse_maker(creator.get("description"), text(creator.get("role")))
        if qualifier and qualifier.lower() not in ("and", "&") and maker.name:
            maker = type(maker)(maker.name, qualifier.lower(), maker.nationality)
        makers.append(maker)
    return attach_roles(makers)


def stage_record(record: dict, source_id: str | None) -> dict:
    """The staging fields of one Cleveland record (raises ``Reject`` for a record it cannot map)."""
    if not isinstance(record.get("images"), (dict, type(None))):
        raise Reject("wrong_type", f"field 'images': expected an object, got {type(record['images']).__name__}")
    makers = _makers(record)
    cultures = texts(record.get("culture"))
    nationalities = [m.nationality for m in makers if m.nationality]
    kind = text(record.get("type"))
    begin, end = years(record)
    accession = text(record.get("accession_number"))
    landing = text(record.get("url"))
    if not (landing and landing.startswith(("https://", "http://"))):
        landing = LANDING_URL + quote(accession, safe="") if accession else None
    cc0 = is_cc0(record) if text(record.get("share_license_status")) else None
    return {
        "rec_id": record_id(record),
        "message": None,
        "title": text(record.get("title")),
        "makers": [{"name": m.name, "role": m.role} for m in makers],
        "nationalities": nationalities,
        "begin": None if begin is None else float(begin),
        "end": None if end is None else float(end),
        "date_text": text(record.get("creation_date")),
        "department": text(record.get("department")),
        "classification": kind,
        "object_type": kind,
        "medium": text(record.get("technique")),
        "techniques": [],
        "culture": nationalities[0] if nationalities else (cultures[0] if cultures else None),
        "tags": cultures,
        "image_url": image_url(record),
        "is_public_domain": cc0,
        "landing_url": landing,
        "modified": text(record.get("updated_at")),
    }
