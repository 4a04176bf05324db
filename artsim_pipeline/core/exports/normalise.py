"""Collection-export rows -> the shared ``artworks`` staging layout (pure, no I/O).

:func:`normalise_export` is what :func:`artsim_pipeline.core.normalise.normalise` runs for an
export source: each verbatim row (``raw_json``, the JSON object column -> string) is repaired
value by value (:func:`~artsim_pipeline.core.exports.text.repair_text`), mapped field by field
as its :class:`~artsim_pipeline.core.exports.mapping.ExportMapping` says, and handed to the
shared finishing of ``core/normalise.py`` (id checks, cleaning, row rules, image hashes,
duplicates), so every ok raw row ends as an artwork or a quarantine row, as for the APIs.

Rules of this module (quarantine rule ids in ``core/schema.py``): ``invalid_json`` /
``not_an_object`` for rows whose text is not a JSON object; ``ragged_row`` for CSV rows with
more fields than the header, or without a column the mapping reads; ``duplicate_id`` for the
second and later rows with one id (the first is kept); ``unparseable_makers`` for a maker list
that cannot be read unambiguously (see :mod:`.makers`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl

from artsim_pipeline.core.dates import parse_date_text
from artsim_pipeline.core.exports.makers import parse_makers
from artsim_pipeline.core.exports.mapping import ExportMapping, FieldRule, escape_url
from artsim_pipeline.core.exports.text import EXTRA_FIELD_PREFIX, repair_text
from artsim_pipeline.core.normalise import FAILURE_SCHEMA, STAGE_SCHEMA, normalise_staged
from artsim_pipeline.core.text import scrub_json_value

__all__ = ["normalise_export", "stage_export"]

_DUPLICATE_KEY = re.compile(r"^(?P<id>.+)#(?P<n>\d+)$")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def normalise_export(
    mapping: ExportMapping, raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(artworks, quarantine)`` for one export source's ``raw_objects``."""
    return normalise_staged(
        mapping.source,
        raw_objects,
        raw_images,
        lambda raw: stage_export(mapping, raw),
        id_field=mapping.id_column,
        id_pattern=mapping.id_pattern,
        id_prefix=mapping.id_prefix,
    )


def stage_export(mapping: ExportMapping, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Map the ok raw rows (``_row``, ``source_id``, ``raw_json``) to ``(stage, failures)``."""
    rows: list[dict[str, Any]] = []
    failures: list[tuple[int, str, str]] = []
    for row_id, source_id, text in raw.select("_row", "source_id", "raw_json").iter_rows():
        staged, rule, reason = _stage_row(mapping, source_id, text)
        if staged is None:
            failures.append((row_id, rule, reason))
        else:
            rows.append({"_row": row_id, **staged})
    stage = pl.DataFrame(rows, schema=STAGE_SCHEMA) if rows else pl.DataFrame(schema=STAGE_SCHEMA)
    return stage, pl.DataFrame(failures, schema=FAILURE_SCHEMA, orient="row")


def _stage_row(mapping: ExportMapping, source_id: str | None, text: str | None) -> tuple[dict | None, str, str]:
    if text is None or not text.strip():
        return None, "invalid_json", "raw_json is empty or null"
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply for json
        return None, "invalid_json", f"the row does not parse as JSON: {exc}"
    record, _ = scrub_json_value(record)  # "\udfff" escapes: U+FFFD, as for the APIs' records
    if not isinstance(record, dict):
        return None, "not_an_object", "the row is not a JSON object of column -> value"
    problem = _shape_problem(mapping, record)
    if problem is not None:
        return None, "ragged_row", problem
    rec_id = _scalar(record.get(mapping.id_column))
    rec_id = rec_id.strip() if rec_id else None
    duplicate = _DUPLICATE_KEY.match(source_id or "")
    if duplicate and rec_id == duplicate.group("id"):
        return None, "duplicate_id", (f"id {rec_id} appears more than once in the export; this is occurrence "
                                      f"{duplicate.group('n')}, the first is kept")
    values = _Repaired(record, mapping)

    makers_rule = mapping.fields.get("makers")
    makers_text = values.first(makers_rule.columns) if makers_rule else None
    makers = parse_makers(makers_text)
    if makers.problem is not None:
        return None, "unparseable_makers", f"{makers_rule.columns[0]}: {makers.problem}"

    date_rule = mapping.fields.get("date")
    date_text, years = None, None
    if date_rule is not None:
        texts = [values.get(column) for column in date_rule.columns]
        date_text = next((t for t in texts if t and t.strip()), None)
        years = next((y for y in (parse_date_text(t) for t in texts if t) if y is not None), None)

    culture = _text(values, mapping.fields.get("culture"))
    if culture is None and makers.anonymous_qualifiers:
        culture = ", ".join(makers.anonymous_qualifiers)  # "Unknown, American": an American maker
    image = values.raw(mapping.images.column) if mapping.images is not None else None
    return {
        "rec_id": rec_id,
        "message": None,
        "title": _text(values, mapping.fields.get("title")),
        "makers": [{"name": name, "role": None} for name in makers.listed],  # placeholders: attribution_note
        "nationalities": list(makers.anonymous_qualifiers),
        "begin": float(years[0]) if years else None,
        "end": float(years[1]) if years else None,
        "date_text": date_text,
        "department": _text(values, mapping.fields.get("department")),
        "classification": _text(values, mapping.fields.get("classification")),
        "object_type": _text(values, mapping.fields.get("object_type")),
        "medium": _text(values, mapping.fields.get("medium")),
        "techniques": _terms(values, mapping.fields.get("techniques")),
        "culture": culture,
        "tags": _terms(values, mapping.fields.get("tags")),
        "image_url": escape_url(image),
        "is_public_domain": _flag(values, mapping.fields.get("is_public_domain")),
        "landing_url": _url(values, mapping.fields.get("landing_url"), rec_id),
        "modified": _text(values, mapping.fields.get("modified")),
    }, "", ""


def _shape_problem(mapping: ExportMapping, record: dict) -> str | None:
    extra = [k for k in record if k.startswith(EXTRA_FIELD_PREFIX)]
    fields = len(record)
    if extra:
        return f"the row has {fields} fields, {len(extra)} more than the header"
    if mapping.format == "csv":
        missing = sorted(mapping.columns() - set(record))
        if missing:
            return f"the row has {fields} fields and lacks column(s) {', '.join(repr(m) for m in missing)}"
    return None


class _Repaired:
    """A record's values as strings, each repaired once (``repair_text``) when first read."""

    def __init__(self, record: dict, mapping: ExportMapping) -> None:
        self._record, self._text, self._cache = record, mapping.text, {}

    def raw(self, column: str) -> str | None:
        return _scalar(self._record.get(column))

    def get(self, column: str) -> str | None:
        if column not in self._cache:
            value = self.raw(column)
            self._cache[column] = repair_text(value, self._text)[0] if value is not None else None
        return self._cache[column]

    def items(self, column: str) -> list[str] | None:
        """A JSON list value (JSON lines exports), each element repaired; None otherwise."""
        value = self._record.get(column)
        if not isinstance(value, list):
            return None
        return [repair_text(s, self._text)[0] for s in (_scalar(v) for v in value) if s is not None]

    def first(self, columns: tuple[str, ...]) -> str | None:
        return next((v for v in (self.get(c) for c in columns) if v and v.strip()), None)


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _clean_term(term: str) -> str:
    # whatString terms carry stray quotes: '"Limestone"' is Limestone
    return term.strip().strip("\"'“”").strip()


def _terms(values: _Repaired, rule: FieldRule | None) -> list[str]:
    """A list field: the column's terms (split, cleaned, filtered), or the extracted value."""
    if rule is None:
        return []
    if rule.value is not None:
        return [str(rule.value)]
    listed = next((items for items in (values.items(c) for c in rule.columns) if items), None)
    if listed is not None:
        terms = [_clean_term(t) for t in listed]
    else:
        text = values.first(rule.columns)
        if text is None:
            return []
        if rule.pattern is not None:
            text = _extract(text, rule)
            if text is None:
                return []
        terms = [_clean_term(t) for t in text.split(rule.split)] if rule.split else [_clean_term(text)]
    terms = [t for t in terms if t]
    if rule.vocabulary:
        terms = [t for t in terms if t.casefold() in rule.vocabulary]
    terms = list(dict.fromkeys(terms))
    return terms[:1] if rule.take == "first" else terms


def _text(values: _Repaired, rule: FieldRule | None) -> str | None:
    if rule is None:
        return None
    if rule.value is not None:
        return str(rule.value)
    if rule.split or rule.vocabulary or any(values.items(c) for c in rule.columns):
        terms = _terms(values, rule)
        return (rule.join or ", ").join(terms) if terms else None
    text = values.first(rule.columns)
    if text is not None and rule.pattern is not None:
        return _extract(text, rule)
    return text


def _extract(text: str, rule: FieldRule) -> str | None:
    match = re.search(rule.pattern, text)
    if match is None:
        return None
    found = match.group(1) if match.groups() else match.group(0)
    if rule.codes is not None:
        return rule.codes.get(found)  # an unknown code names no value
    return found


def _flag(values: _Repaired, rule: FieldRule | None) -> bool | None:
    if rule is None:
        return None
    if isinstance(rule.value, bool):
        return rule.value
    text = (values.first(rule.columns) or "").strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _url(values: _Repaired, rule: FieldRule | None, rec_id: str | None) -> str | None:
    if rule is None:
        return None
    if rule.template is None:
        return escape_url(_text(values, rule))
    from urllib.parse import quote

    def fill(match: re.Match) -> str:
        name = match.group(1)
        value = rec_id if name == "id" else values.get(name)
        return quote(value or "", safe="")

    return re.sub(r"\{([^{}]+)\}", fill, rule.template)

