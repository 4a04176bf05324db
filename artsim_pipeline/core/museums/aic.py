"""The Art Institute of Chicago API (``/api/v1/artworks``) -> ``artworks`` (pure).

One raw record is stored in the shape of the API's single-object answer
(``/artworks/{id}``): ``{"data": <the record>, "info": <licence block>, "config": <iiif_url,
website_url>}``. The listing sends ``info`` and ``config`` once a page; the client copies them
into every record, so the IIIF root travels with the image id and the licence with the
``description`` (CC BY 4.0; everything else CC0) wherever the record is stored.

Mapping:

* ``artwork_id`` ``aic:<id>``;
* makers: ``artist_titles`` (else ``artist_title``). The AIC also puts cultures there ("Kuba",
  "Ancient Roman"): a title that names a culture (:func:`is_culture`) is the culture, not a
  maker. The nationality is the second line of ``artist_display`` ("Ana Mendieta\\nAmerican,
  born Cuba, 1948-1985"), when it was requested;
* years: ``date_start`` / ``date_end``, else ``date_display`` parsed (``core/dates.py``: "c.
  1735", "1700/20", "100 BCE-100 CE"); ``date_text`` is ``date_display``;
* department ``department_title`` (else the first of ``category_titles``, which starts with it);
  classification ``classification_title`` (else ``artwork_type_title``); object type
  ``artwork_type_title``; medium ``medium_display``; techniques ``technique_titles``; tags
  ``subject_titles``, ``style_titles`` and ``theme_titles``; culture: the culture named as
  artist, else the nationality, else ``place_of_origin``;
* image: only for ``is_public_domain: true`` with an ``image_id``:
  ``{config.iiif_url}/{image_id}/full/843,/0/default.jpg``. ``is_public_domain`` absent (not
  requested) is unknown (null), never public domain;
* landing page ``https://www.artic.edu/artworks/<id>``; ``metadata_modified`` ``updated_at``.

The description is not copied into ``artworks``: it stays in ``raw_objects`` beside its licence.
Quarantine rules: the shared ones, plus ``wrong_type`` for a ``data`` that is not an object.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from artsim_pipeline.core.dates import parse_date_text
from artsim_pipeline.core.museums import Reject, stage_json, text, texts, year
from artsim_pipeline.core.normalise import normalise_staged

__all__ = ["normalise", "stage_record", "image_url", "record_id", "is_culture", "IIIF_SIZE", "LANDING_URL"]

SOURCE = "aic"
ID_PATTERN = r"^\d+$"  # (no braces: the quarantine reason is a polars format string)
LANDING_URL = "https://www.artic.edu/artworks/"
DEFAULT_IIIF_URL = "https://www.artic.edu/iiif/2"
#: the AIC's recommended web size (its documentation's example; larger sizes are refused for some works)
IIIF_SIZE = "843,"

# Cultures and peoples the AIC names as a work's "artist" (artist_title). A title matching one of
# these, or an "Ancient ..." / "... culture" / "... peoples" pattern, is a culture, not a maker.
_CULTURES = frozenset(
    """
    kuba luba chokwe songye pende yaka kongo teke fang baule dan senufo bamana dogon yoruba igbo edo
    asante akan fon mende bwa mossi lobi bamileke bamum tabwa hemba lega zulu makonde maasai
    maya aztec inca inka moche nazca nasca olmec toltec mixtec zapotec huastec teotihuacan wari huari
    chimu chancay paracas tiwanaku colima nayarit jalisco taino hopi zuni navajo lakota cheyenne
    haida tlingit kwakwakawakw inuit yupik anasazi mimbres hohokam mississippian
    etruscan byzantine roman greek egyptian cypriot minoan mycenaean phoenician assyrian babylonian
    sumerian achaemenid sasanian parthian bactrian scythian celtic frankish merovingian viking
    coptic nubian kushite hittite luristan
    """.split()
)
_CULTURE_PATTERN = re.compile(
    r"^(?:ancient|archaic|hellenistic|late|early|pre-columbian)\s+\w+|\b(?:culture|peoples?|style|school)$",
    re.IGNORECASE,
)


def normalise(raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(artworks, quarantine)`` for the ``aic`` partition of ``raw_objects``."""
    return normalise_staged(SOURCE, raw_objects, raw_images, lambda raw: stage_json(raw, stage_record),
                            id_field="id", id_pattern=ID_PATTERN, id_prefix=SOURCE)


def _data(record: Any) -> dict | None:
    """The artwork inside a stored record (``{"data": ...}``), or the record itself when bare."""
    if not isinstance(record, dict):
        return None
    if "data" in record:
        data = record["data"]
        return data if isinstance(data, dict) else None
    return record


def record_id(record: Any) -> str | None:
    data = _data(record)
    if data is None:
        return None
    value = data.get("id")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else text(value)


def iiif_root(record: Any) -> str:
    config = record.get("config") if isinstance(record, dict) else None
    root = text(config.get("iiif_url")) if isinstance(config, dict) else None
    return (root or DEFAULT_IIIF_URL).rstrip("/")


def image_url(record: Any, size: str = IIIF_SIZE) -> str | None:
    """The IIIF image of a public-domain work (``is_public_domain`` true, an ``image_id``)."""
    data = _data(record)
    if data is None or data.get("is_public_domain") is not True:
        return None
    image_id = text(data.get("image_id"))
    if image_id is None or not re.fullmatch(r"[A-Za-z0-9-]{1,80}", image_id):
        return None
    return f"{iiif_root(record)}/{image_id}/full/{size}/0/default.jpg"


def is_culture(title: str | None) -> bool:
    """Whether an ``artist_title`` names a culture or people ("Kuba", "Ancient Roman"), not a maker."""
    value = text(title)
    if value is None:
        return False
    words = re.findall(r"[a-z]+", value.lower())
    return bool(_CULTURE_PATTERN.search(value)) or (bool(words) and all(w in _CULTURES for w in words))


def _nationality(display: str | None) -> str | None:
    """"Ana Mendieta\\nAmerican, born Cuba, 1948-1985" -> "American" (None without a second line)."""
    lines = [line.strip() for line in (display or "").splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    first = lines[1].split(",")[0].strip()
    return first if first and not re.search(r"\d", first) else None


def stage_record(record: dict, source_id: str | None) -> dict:
    """The staging fields of one stored AIC record (raises ``Reject`` for one it cannot map)."""
    data = _data(record)
    if data is None:
        raise Reject("wrong_type", "field 'data': expected an object holding the artwork")
    titles = texts(data.get("artist_titles")) or texts(data.get("artist_title"))
    cultures = [t for t in titles if is_culture(t)]
    names = [t for t in titles if not is_culture(t)]
    nationality = _nationality(text(data.get("artist_display")))
    date_display = text(data.get("date_display"))
    begin, end = year(data.get("date_start")), year(data.get("date_end"))
    if begin is None and end is None and date_display:
        begin, end = parse_date_text(date_display) or (None, None)
    categories = texts(data.get("category_titles"))
    rec_id = record_id(record)
    flag = data.get("is_public_domain")
    tags = [*texts(data.get("subject_titles")), *texts(data.get("style_titles")), *texts(data.get("theme_titles"))]
    return {
        "rec_id": rec_id,
        "message": None,
        "title": text(data.get("title")),
        "makers": [{"name": name, "role": None} for name in names],
        "nationalities": [nationality] if nationality and names else [],
        "begin": None if begin is None else float(begin),
        "end": None if end is None else float(end),
        "date_text": date_display,
        "department": text(data.get("department_title")) or (categories[0] if categories else None),
        "classification": text(data.get("classification_title")) or text(data.get("artwork_type_title")),
        "object_type": text(data.get("artwork_type_title")),
        "medium": text(data.get("medium_display")),
        "techniques": texts(data.get("technique_titles")),
        "culture": cultures[0] if cultures else (nationality if names and nationality else text(data.get("place_of_origin"))),
        "tags": tags,
        "image_url": image_url(record),
        "is_public_domain": flag if isinstance(flag, bool) else None,
        "landing_url": f"{LANDING_URL}{rec_id}" if rec_id and re.fullmatch(ID_PATTERN, rec_id) else None,
        "modified": text(data.get("updated_at")) or text(data.get("source_updated_at")),
    }
