"""An export's bytes -> verbatim rows, and the mojibake repair applied to their values.

Reading (:func:`read_export`)
    CSV is split on its ASCII structure first (the mapping's encoding must be ASCII-compatible,
    so a delimiter, quote or newline byte never sits inside a multi-byte character), then each
    value's bytes are decoded on their own: with the declared encoding when they are valid in it,
    else with the declared fallback (``mac_roman`` and ``cp1252``-like codecs map every byte, so
    nothing is lost), else with U+FFFD replacement characters. A row becomes the JSON object
    column -> string, in header order, exactly as decoded: that text is ``raw_objects.raw_json``.
    JSON lines are decoded line by line the same way and kept as the line's text.

Repairing (:func:`repair_text`)
    Many exports went through an encoding round trip before they were written (the Met MediaLab
    sheet: UTF-8 read as Windows-1252, written as Mac Roman, so "Sèvres" reads "S̬vres"). When
    the mapping declares the round trip, each value is run backwards through it, starting from
    the bytes it was read from (the declared encoding's, or the fallback's for values that were
    not valid). The repair is kept only when it yields valid text, which plain accented text
    never does, so a clean value is left alone. Characters the writer could not encode at all
    (it put ``lost_character`` instead) cannot come back: they become U+FFFD and the value is
    counted as undecodable.

ftfy 6.3.1 (PyPI) was tried on the Met MediaLab export and is not used: of its 28 values that are
not plain ASCII it fixes 4 of the 6 read with the fallback (single Windows-1252 mojibake,
"Ã‰tienne") and none of the 22 that are valid UTF-8 with combining marks ("S̬vres"), whose round
trip passed through Mac Roman; the declared repair fixes 26 and marks the other 2 as undecodable.
No I/O here.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from artsim_pipeline.core.exports.mapping import ExportMapping, TextEncoding

__all__ = ["ExportFormatError", "ExportRow", "ExportRead", "RepairStatus", "decode_value", "read_export", "repair_text",
           "text_report", "EXTRA_FIELD_PREFIX"]

RepairStatus = Literal["clean", "repaired", "undecodable"]
#: Values beyond the header's columns are kept under these keys (and the row is quarantined).
EXTRA_FIELD_PREFIX = "__extra_"
_BOM = b"\xef\xbb\xbf"
_REPLACEMENT = "\ufffd"


class ExportFormatError(ValueError):
    """The export file cannot be read as the mapping says (the message says where and why)."""


@dataclass(frozen=True)
class ExportRow:
    """One record as read: where it starts, its key in ``raw_objects`` and its verbatim text."""

    line: int
    source_id: str
    raw_json: str
    fallback_columns: tuple[str, ...] = ()


@dataclass
class ExportRead:
    """What reading an export found."""

    columns: tuple[str, ...]
    rows: list[ExportRow] = field(default_factory=list)
    blank_rows: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    rows_without_id: int = 0

    @property
    def fallback_values(self) -> int:
        return sum(len(row.fallback_columns) for row in self.rows)


def decode_value(raw: bytes, text: TextEncoding) -> tuple[str, bool]:
    """``(text, used_fallback)``: the declared encoding, else the fallback, else U+FFFD."""
    try:
        return raw.decode(text.encoding), False
    except UnicodeDecodeError:
        pass
    if text.fallback is not None:
        return raw.decode(text.fallback, errors="replace"), True
    return raw.decode(text.encoding, errors="replace"), True


def read_export(data: bytes, mapping: ExportMapping) -> ExportRead:
    """Split an export's bytes into verbatim rows keyed by id (see the module docstring).

    Ids: the id column's value, stripped; a row without one is keyed ``line:<n>``; the second
    and later rows with an id already seen are keyed ``<id>#<k>`` (normalisation quarantines them
    and keeps the first). Raises :class:`ExportFormatError` when the header lacks a column the
    mapping reads or names one twice.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if mapping.format == "jsonl":
        return _read_jsonl(data, mapping)
    return _read_csv(data, mapping)


def _read_csv(data: bytes, mapping: ExportMapping) -> ExportRead:
    # latin-1 maps bytes 1:1 to code points, so the csv module splits the bytes and each value
    # can be turned back into exactly the bytes it was written as
    reader = csv.reader(io.StringIO(data.decode("latin-1"), newline=""), delimiter=mapping.delimiter, strict=True)
    header: list[str] | None = None
    out: ExportRead | None = None
    seen: Counter[str] = Counter()
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ExportFormatError(f"{mapping.path}, line {reader.line_num}: {exc}") from None
        if not any(v.strip() for v in values):
            if out is not None:
                out.blank_rows += 1
            continue
        decoded = [decode_value(v.encode("latin-1"), mapping.text) for v in values]
        if header is None:
            header = [name.strip() for name, _ in decoded]
            out = ExportRead(columns=tuple(header))
            _check_header(header, mapping)
            continue
        line = reader.line_num - sum(v.count("\n") for v in values)
        row: dict[str, str] = {}
        fallback: list[str] = []
        for i, (value, used_fallback) in enumerate(decoded):
            name = header[i] if i < len(header) else f"{EXTRA_FIELD_PREFIX}{i - len(header) + 1}"
            row[name] = value
            if used_fallback:
                fallback.append(name)
        out.rows.append(ExportRow(line, _key(row.get(mapping.id_column), line, seen, out), json.dumps(row, ensure_ascii=False),
                                  tuple(fallback)))
    if out is None:
        raise ExportFormatError(f"{mapping.path}: the file is empty (no header row)")
    return out


def _read_jsonl(data: bytes, mapping: ExportMapping) -> ExportRead:
    out = ExportRead(columns=())
    seen: Counter[str] = Counter()
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line starts no row
    for n, raw_line in enumerate(lines, start=1):
        raw_line = raw_line.rstrip(b"\r")
        if not raw_line.strip():
            out.blank_rows += 1
            continue
        text, used_fallback = decode_value(raw_line, mapping.text)
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        value = record.get(mapping.id_column) if isinstance(record, dict) else None
        ident = None if value is None or isinstance(value, (dict, list, bool)) else str(value)
        out.rows.append(ExportRow(n, _key(ident, n, seen, out), text, ("*",) if used_fallback else ()))
    return out


def _key(ident: str | None, line: int, seen: Counter[str], out: ExportRead) -> str:
    ident = (ident or "").strip()
    if not ident:
        out.rows_without_id += 1
        return f"line:{line}"
    seen[ident] += 1
    if seen[ident] == 1:
        return ident
    out.duplicate_ids.append(ident)
    return f"{ident}#{seen[ident]}"


def _check_header(header: list[str], mapping: ExportMapping) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        shown = ", ".join(repr(n) for n in repeated)
        raise ExportFormatError(f"{mapping.path}: the header names column(s) {shown} more than once")
    missing = sorted(mapping.columns() - set(header))
    if missing:
        raise ExportFormatError(f"{mapping.path}: the mapping reads column(s) {', '.join(repr(m) for m in missing)} "
                                f"that the header does not have (it has {', '.join(repr(h) for h in header)})")


def repair_text(value: str, text: TextEncoding) -> tuple[str, RepairStatus]:
    """Undo the mapping's declared round trip on one value (see the module docstring)."""
    if value.isascii() or not text.repairs:
        return value, ("undecodable" if _REPLACEMENT in value else "clean")
    for raw in _source_bytes(value, text):
        try:
            middle = raw.decode(text.repair_written_as).encode(text.repair_read_as)
        except UnicodeError:
            continue
        try:
            fixed = middle.decode(text.encoding)
        except UnicodeDecodeError:
            partial = _with_lost_characters(middle, text)
            if partial is not None:
                return partial, "undecodable"
            continue
        if fixed != value:
            return fixed, "repaired"
    return value, ("undecodable" if _REPLACEMENT in value else "clean")


def _source_bytes(value: str, text: TextEncoding) -> list[bytes]:
    """The bytes ``value`` may have been read from: valid in the encoding, or the fallback's."""
    found = []
    try:
        found.append(value.encode(text.encoding))
    except UnicodeEncodeError:
        pass
    if text.fallback is not None:
        try:
            raw = value.encode(text.fallback)
        except UnicodeEncodeError:
            return found
        try:
            raw.decode(text.encoding)
        except UnicodeDecodeError:
            found.append(raw)  # not valid in the encoding: so this is how it was read
    return found


def _with_lost_characters(middle: bytes, text: TextEncoding) -> str | None:
    """The repaired text with each lost character as U+FFFD, if that is the only damage."""
    if text.lost_character is None:
        return None
    lost = re.escape(text.lost_character.encode(text.repair_read_as))
    # a multi-byte lead (and any continuation bytes) cut short by the lost-character mark
    marked = re.sub(rb"[\xc2-\xf4][\x80-\xbf]{0,2}" + lost, _REPLACEMENT.encode("utf-8"), middle)
    if marked == middle:
        return None
    try:
        return marked.decode(text.encoding)
    except UnicodeDecodeError:
        return None


def text_report(records: Iterable[dict], text: TextEncoding, *, examples: int = 5) -> dict:
    """Counts over every non-empty string value: ``values``, ``repaired``, ``undecodable``, plus
    a few ``repair_examples`` (``"before" -> "after"``) and the ``undecodable_examples``."""
    counts: Counter[str] = Counter()
    shown: dict[str, list[str]] = {"repaired": [], "undecodable": []}
    for record in records:
        for value in _strings(record):
            if not value.strip():
                continue
            counts["values"] += 1
            fixed, status = repair_text(value, text)
            counts[status] += 1
            if status != "clean" and len(shown[status]) < examples:
                shown[status].append(f"{value[:60]!r} -> {fixed[:60]!r}")
    return {"values": counts["values"], "repaired": counts["repaired"], "undecodable": counts["undecodable"],
            "repair_examples": shown["repaired"], "undecodable_examples": shown["undecodable"]}


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
