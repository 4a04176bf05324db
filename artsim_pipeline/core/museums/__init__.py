"""Normalisers of the API sources (pure, no I/O).

Each museum is one module here with a ``normalise(raw_objects, raw_images)``; the registry entry
(``core/sources.py``) names it. The Met and SMK (``met.py``, ``smk.py``) map the records the
shared polars decoder (``core/normalise/decode.py``) reads; the museums added through the
registry (``cma.py``, ``aic.py``) read each record in Python and have an ``image_url(record)``.
A module maps one decoded record to the shared staging layout
(:data:`artsim_pipeline.core.normalise.STAGE_SCHEMA`) and hands the rows to the shared finishing
(:func:`~artsim_pipeline.core.normalise.normalise_staged`), which does what every source shares:
id checks, HTML and whitespace cleaning, row rules, image hashes, duplicates and the quarantine
frame. So every ``ok`` raw row ends as an artwork or as a quarantine row with its rule and a
readable reason.

This package holds what the museum modules share: the per-record loop (:func:`stage_json`),
scalar readers and the maker parser for "Name (Nationality, 1801-1848)" strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from artsim_pipeline.core.normalise import FAILURE_SCHEMA, STAGE_SCHEMA
from artsim_pipeline.core.text import scrub_json_value

__all__ = ["Reject", "stage_json", "text", "texts", "year", "Maker", "parse_maker", "attach_roles"]


class Reject(Exception):
    """Raised by a record mapper: the record is quarantined with ``rule`` and ``reason``."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def stage_json(raw: pl.DataFrame, stage_one: Callable[[dict, str | None], dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Map the ok raw rows (``_row``, ``source_id``, ``raw_json``) to ``(stage, failures)``.

    ``stage_one(record, source_id)`` returns the staging fields of one decoded JSON object or
    raises :class:`Reject`; anything else it raises quarantines the record as ``unreadable``
    with the exception named, so one odd record never fails the source.
    """
    rows: list[dict[str, Any]] = []
    failures: list[tuple[int, str, str]] = []
    for row_id, source_id, raw_text in raw.select("_row", "source_id", "raw_json").iter_rows():
        try:
            rows.append({"_row": row_id, **stage_one(_decode(raw_text), source_id)})
        except Reject as exc:
            failures.append((row_id, exc.rule, exc.reason))
        except Exception as exc:  # noqa: BLE001 - quarantined with the reason, never a failed run
            failures.append((row_id, "unreadable", f"record cannot be normalised: {type(exc).__name__}: {exc}"[:500]))
    try:
        stage = pl.DataFrame(rows, schema=STAGE_SCHEMA) if rows else pl.DataFrame(schema=STAGE_SCHEMA)
    except Exception:  # noqa: BLE001 - find the rows polars refuses, one by one
        kept = []
        for row in rows:
            try:
                pl.DataFrame([row], schema=STAGE_SCHEMA)
                kept.append(row)
            except Exception as exc:  # noqa: BLE001
                failures.append((row["_row"], "unreadable", f"record cannot be stored: {type(exc).__name__}: {exc}"[:500]))
        stage = pl.DataFrame(kept, schema=STAGE_SCHEMA) if kept else pl.DataFrame(schema=STAGE_SCHEMA)
    return stage, pl.DataFrame(failures, schema=FAILURE_SCHEMA, orient="row")


def _decode(raw_text: str | None) -> dict:
    if raw_text is None or not raw_text.strip():
        raise Reject("invalid_json", "raw_json is empty or null")
    try:
        record = json.loads(raw_text)
    except RecursionError:
        raise Reject("invalid_json", f"JSON nested too deeply to parse ({len(raw_text)} characters)") from None
    except ValueError as exc:
        raise Reject("invalid_json", f"JSON does not parse: {exc}") from None
    if not isinstance(record, dict):
        raise Reject("not_an_object", f"the JSON document is {type(record).__name__}, not an object")
    return scrub_json_value(record)[0]  # lone surrogates ("\udfff") -> U+FFFD


def text(value: Any) -> str | None:
    """A scalar as text (numbers too); None for null, blank, lists and objects."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    out = str(value).strip()
    return out or None


def texts(value: Any) -> list[str]:
    """A list of scalars as texts (a lone string is a list of one); anything else: []."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [t for t in (text(v) for v in value) if t]


def year(value: Any) -> int | None:
    """An integer year from a number or numeric text (``1838``, ``"1838"``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,5}\s*", value):
        return int(value)
    return None


@dataclass(frozen=True)
class Maker:
    """One maker read from a display string: the name, a role or qualifier, the nationality."""

    name: str | None
    role: str | None = None
    nationality: str | None = None


# A qualifier before the name: the maker is the named person, the qualifier says how.
_QUALIFIER = re.compile(
    r"^(?P<q>(?:attributed|ascribed)\s+to|(?:copy|probably|possibly)\s+after|after"
    r"|(?:workshop|studio|atelier|circle|school|manner|style|follower|followers|pupil|assistant)\s+of"
    r"|(?:probably|possibly)(?:\s+by)?)\s+(?P<rest>.+)$",
    re.IGNORECASE,
)
# "... and Workshop" / "... and Associates" after the name
_TRAILER = re.compile(r"^(?P<rest>.+?),?\s+(?P<q>(?:and|&)\s+(?:his\s+)?(?:workshop|studio|associates|assistants))$", re.IGNORECASE)
# A creator entry that is only a workshop ("Studio", "Associates"): a role of the maker before it.
_ONLY_WORKSHOP = re.compile(r"^(?:and\s+)?(?:his\s+)?(?:workshop|studio|associates|assistants|atelier)$", re.IGNORECASE)
# "(Dutch, 1606-1669)", "(French)", "(Flemish, c. 1444-1519)", "(American, born Cuba, 1948-1985)"
_ASIDE = re.compile(r"^(?P<name>.*?)\s*\((?P<aside>[^()]*)\)\s*$")


def parse_maker(display: str | None, role: str | None = None) -> Maker:
    """``"Gustave Courbet (French, 1819-1877)"`` -> ``Maker("Gustave Courbet", role, "French")``;
    ``"after Peter Paul Rubens (Flemish, 1577-1640)"`` -> name Peter Paul Rubens, role "after";
    a workshop alone (``"Studio"``) has no name: the caller makes it a role of the maker before."""
    value = text(display)
    if value is None:
        return Maker(None, role)
    value = " ".join(value.split())
    if _ONLY_WORKSHOP.match(value):
        return Maker(None, value.lower())
    nationality = None
    match = _ASIDE.match(value)
    if match and match.group("name"):
        value = match.group("name").strip()
        first = match.group("aside").split(",")[0].strip()
        nationality = first if first and not re.search(r"\d", first) else None
    qualifier = _QUALIFIER.match(value)
    if qualifier:
        value, role = qualifier.group("rest").strip(), qualifier.group("q").lower()
    trailer = _TRAILER.match(value)
    if trailer:
        value = trailer.group("rest").strip()
        role = f"{role or 'artist'} {trailer.group('q').lower()}"
    return Maker(value or None, role, nationality)


def attach_roles(makers: list[Maker]) -> list[Maker]:
    """Workshop-only entries become a role of the maker listed before them ("artist and studio")."""
    out: list[Maker] = []
    for maker in makers:
        if maker.name is None:
            if maker.role and out:
                last = out[-1]
                out[-1] = Maker(last.name, f"{last.role or 'artist'} and {maker.role.removeprefix('and ')}", last.nationality)
            continue
        out.append(maker)
    return out
