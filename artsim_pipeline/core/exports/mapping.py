"""The declarative mapping of a collection export: a small TOML file next to the export.

:func:`parse_mapping` reads the TOML text (stdlib ``tomllib``; the caller reads the file) into
an :class:`ExportMapping` and rejects anything it does not understand with a
:class:`MappingError` that names the key. The format, with every key it accepts::

    source = "met_medialab"            # the registry key (partition) this export feeds

    [file]
    path = "records.csv"               # relative to the export folder
    format = "csv"                     # csv | jsonl
    delimiter = ","                    # csv only
    encoding = "utf-8"                 # must be ASCII-compatible (utf-8, cp1252, mac_roman...)
    fallback_encoding = "mac_roman"    # for values whose bytes are not valid in `encoding`

    [file.repair]                      # optional: undo a known mojibake, value by value
    read_as = "cp1252"                 # the UTF-8 text was once decoded with this codec...
    written_as = "mac_roman"           # ...and written back with this one
    lost_character = "_"               # what the writer put for characters it could not encode

    [id]
    column = "id"
    pattern = '^\\d+$'                 # ids that do not match are quarantined (invalid_id)
    prefix = "met_medialab"            # artwork ids are <prefix>:<id> (default: source)

    [images]
    column = "image"                   # the image URL; its path names the file under `folder`
    folder = "images"
    real = true                        # real photographs (not stand-ins)

    [fields.<name>]                    # one table per artworks field, see FIELD_KINDS
    column = "title"                   # or columns = ["date", "when"]: the first non-empty
    split = ","                        # a list of terms (stray quotes and blanks removed)
    take = "first"                     # first | all (default all)
    vocabulary = ["Marble", ...]       # keep only these terms (case-insensitive)
    join = ", "                        # terms -> one text
    pattern = 'CRDImages/([a-z]+)/'    # the regex's first group (or whole match)
    codes = { gr = "Greek and Roman Art" }   # what `pattern` extracted -> the value
    template = "https://.../{id}"      # {id} and {<column>} filled in, URL-quoted
    value = true                       # a constant

No I/O, no Dagster.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

__all__ = ["MappingError", "TextEncoding", "FieldRule", "ImageRule", "ExportMapping", "FIELD_KINDS", "parse_mapping",
           "escape_url", "image_file_for_url"]

#: The artworks fields a mapping may fill, and what each holds.
FIELD_KINDS: dict[str, str] = {
    "title": "text",
    "makers": "makers",  # one name or a bracketed list (see core/exports/makers.py)
    "date": "date",  # years parsed from the text (core/dates.py); date_text is the text
    "department": "text",
    "classification": "text",
    "object_type": "text",
    "medium": "text",
    "culture": "text",
    "tags": "list",
    "techniques": "list",
    "landing_url": "url",
    "is_public_domain": "flag",
    "modified": "text",  # an ISO timestamp
}
_REQUIRED_FIELDS = ("landing_url",)
_RULE_KEYS = {"column", "columns", "split", "take", "vocabulary", "join", "pattern", "codes", "template", "value"}
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the key and what is wrong."""


@dataclass(frozen=True)
class TextEncoding:
    """How the export's bytes become text, and the mojibake repair applied to each value."""

    encoding: str = "utf-8"
    fallback: str | None = None
    repair_read_as: str | None = None
    repair_written_as: str | None = None
    lost_character: str | None = None

    @property
    def repairs(self) -> bool:
        return self.repair_read_as is not None


@dataclass(frozen=True)
class FieldRule:
    """How one artworks field is read from a row (see the module docstring)."""

    columns: tuple[str, ...] = ()
    split: str | None = None
    take: Literal["all", "first"] = "all"
    vocabulary: frozenset[str] = frozenset()
    join: str | None = None
    pattern: str | None = None
    codes: Mapping[str, str] | None = None
    template: str | None = None
    value: Any = None

    def template_columns(self) -> set[str]:
        if self.template is None:
            return set()
        return {name for name in re.findall(r"\{([^{}]+)\}", self.template) if name != "id"}


@dataclass(frozen=True)
class ImageRule:
    """Which column holds the image URL and where the files are."""

    column: str
    folder: str = "images"
    real: bool = False


@dataclass(frozen=True)
class ExportMapping:
    """A parsed, checked mapping."""

    source: str
    path: str
    format: Literal["csv", "jsonl"]
    text: TextEncoding
    id_column: str
    id_pattern: str
    id_prefix: str
    fields: Mapping[str, FieldRule]
    images: ImageRule | None = None
    delimiter: str = ","

    @property
    def real_images(self) -> bool:
        return self.images is not None and self.images.real

    def columns(self) -> set[str]:
        """Every column the mapping reads (the export must have them all)."""
        used = {self.id_column}
        if self.images is not None:
            used.add(self.images.column)
        for rule in self.fields.values():
            used.update(rule.columns)
            used.update(rule.template_columns())
        return used


def parse_mapping(text: str, *, where: str = "mapping") -> ExportMapping:
    """Parse and check a mapping's TOML text; ``where`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{where}: not valid TOML: {exc}") from exc
    top = _Table(doc, where)
    source = top.string("source", required=True)
    if not _KEY_RE.match(source):
        raise MappingError(f"{where}: source {source!r} must be lower-case letters, digits and _")
    file = top.table("file", required=True)
    text_encoding = _text_encoding(file)
    fmt = file.string("format", default="csv")
    if fmt not in ("csv", "jsonl"):
        raise MappingError(f"{file.where}.format: {fmt!r} is not csv or jsonl")
    delimiter = file.string("delimiter", default=",")
    if len(delimiter) != 1:
        raise MappingError(f"{file.where}.delimiter: must be one character, got {delimiter!r}")
    path = file.string("path", required=True)
    file.done()

    ident = top.table("id", required=True)
    id_column = ident.string("column", required=True)
    id_pattern = _regex(ident, "pattern", default=r"^\S+$")
    id_prefix = ident.string("prefix", default=source)
    if not _KEY_RE.match(id_prefix):
        raise MappingError(f"{ident.where}.prefix: {id_prefix!r} must be lower-case letters, digits and _")
    ident.done()

    images = None
    if "images" in doc:
        table = top.table("images")
        images = ImageRule(column=table.string("column", required=True), folder=table.string("folder", default="images"),
                           real=table.flag("real", default=False))
        if images.folder.startswith("/") or ".." in images.folder.split("/"):
            raise MappingError(f"{table.where}.folder: {images.folder!r} must be a folder inside the export folder")
        table.done()

    fields_table = top.table("fields", required=True)
    fields = {name: _field_rule(fields_table.table(name), name) for name in list(fields_table.keys())}
    fields_table.done()
    unknown = sorted(set(fields) - set(FIELD_KINDS))
    if unknown:
        raise MappingError(f"{where}: unknown field(s) {', '.join(unknown)}; a mapping may fill {', '.join(FIELD_KINDS)}")
    missing = [name for name in _REQUIRED_FIELDS if name not in fields]
    if missing:
        raise MappingError(f"{where}: fields.{missing[0]} is required (every artwork needs one)")
    if "title" not in fields and "makers" not in fields:
        raise MappingError(f"{where}: fields.title or fields.makers is required")
    top.done()
    return ExportMapping(source=source, path=path, format=fmt, text=text_encoding, id_column=id_column, id_pattern=id_pattern,
                         id_prefix=id_prefix, fields=MappingProxyType(fields), images=images, delimiter=delimiter)


def _text_encoding(file: _Table) -> TextEncoding:
    encoding = _codec(file, "encoding", default="utf-8")
    fallback = _codec(file, "fallback_encoding", default=None)
    for name, codec in (("encoding", encoding), ("fallback_encoding", fallback)):
        if codec is not None and _ascii_incompatible(codec):
            raise MappingError(f"{file.where}.{name}: {codec} is not ASCII-compatible; convert the export to UTF-8 first")
    repair = file.table("repair") if "repair" in file.raw else None
    if repair is None:
        return TextEncoding(encoding=encoding, fallback=fallback)
    read_as = _codec(repair, "read_as", default=None, required=True)
    written_as = _codec(repair, "written_as", default=None, required=True)
    lost = repair.string("lost_character", default=None)
    if lost is not None and len(lost) != 1:
        raise MappingError(f"{repair.where}.lost_character: must be one character, got {lost!r}")
    repair.done()
    return TextEncoding(encoding=encoding, fallback=fallback, repair_read_as=read_as, repair_written_as=written_as,
                        lost_character=lost)


def _ascii_incompatible(codec: str) -> bool:
    probe = "id,\"a\"\r\n;\t|"
    try:
        return probe.encode(codec) != probe.encode("ascii")
    except (UnicodeError, LookupError):
        return True


def _codec(table: _Table, key: str, default: str | None, required: bool = False) -> str | None:
    name = table.string(key, default=default, required=required)
    if name is None:
        return None
    import codecs

    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise MappingError(f"{table.where}.{key}: unknown encoding {name!r}") from None
    return "utf-8" if canonical == "utf-8-sig" else canonical  # the reader drops a byte-order mark


def _regex(table: _Table, key: str, default: str | None = None) -> str | None:
    pattern = table.string(key, default=default)
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        raise MappingError(f"{table.where}.{key}: not a valid regular expression: {exc}") from None
    return pattern


def _field_rule(table: _Table, name: str) -> FieldRule:
    kind = FIELD_KINDS.get(name)
    unknown = sorted(set(table.raw) - _RULE_KEYS)
    if unknown:
        raise MappingError(f"{table.where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_RULE_KEYS))}")
    if "column" in table.raw and "columns" in table.raw:
        raise MappingError(f"{table.where}: give column or columns, not both")
    columns = (table.string("column"),) if "column" in table.raw else tuple(table.strings("columns"))
    take = table.string("take", default="all")
    if take not in ("all", "first"):
        raise MappingError(f"{table.where}.take: {take!r} is not first or all")
    codes = table._get("codes", False)
    if codes is not None and (not isinstance(codes, dict) or not all(isinstance(v, str) for v in codes.values())):
        raise MappingError(f"{table.where}.codes: must be a table of code = \"value\"")
    rule = FieldRule(
        columns=columns,
        split=table.string("split", default=None),
        take=take,
        vocabulary=frozenset(term.casefold() for term in table.strings("vocabulary")),
        join=table.string("join", default=None),
        pattern=_regex(table, "pattern"),
        codes=MappingProxyType(dict(codes)) if codes is not None else None,
        template=table.string("template", default=None),
        value=table._get("value", False),
    )
    sources = sum([bool(rule.columns), rule.template is not None, "value" in table.raw])
    if sources != 1:
        raise MappingError(f"{table.where}: give exactly one of column(s), template, value")
    if kind != "url" and rule.template is not None:
        raise MappingError(f"{table.where}.template: only URL fields take a template")
    if kind == "flag" and "value" in table.raw and not isinstance(rule.value, bool):
        raise MappingError(f"{table.where}.value: must be true or false")
    if kind in ("makers", "date") and (rule.split or rule.pattern or rule.vocabulary):
        raise MappingError(f"{table.where}: {name} is parsed by its own rules; split/pattern/vocabulary do not apply")
    if rule.codes is not None and rule.pattern is None:
        raise MappingError(f"{table.where}.codes: needs a pattern that extracts the code")
    table.done()
    return rule


class _Table:
    """A TOML table being read: typed getters, and `done()` rejects keys nobody read."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise MappingError(f"{where}: must be a table")
        self.raw, self.where, self._read = raw, where, set()

    def keys(self) -> list[str]:
        return list(self.raw)

    def _get(self, key: str, required: bool) -> Any:
        self._read.add(key)
        if key not in self.raw and required:
            raise MappingError(f"{self.where}: {key} is required")
        return self.raw.get(key)

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise MappingError(f"{self.where}.{key}: must be a non-empty string, got {value!r}")
        return value

    def strings(self, key: str) -> list[str]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise MappingError(f"{self.where}.{key}: must be a list of non-empty strings")
        return list(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise MappingError(f"{self.where}.{key}: must be true or false, got {value!r}")
        return value

    def table(self, key: str, required: bool = False) -> _Table:
        value = self._get(key, required)
        return _Table(value if value is not None else {}, f"{self.where}.{key}" if self.where else key)

    def done(self) -> None:
        unread = sorted(set(self.raw) - self._read)
        if unread:
            raise MappingError(f"{self.where}: unknown key(s) {', '.join(unread)}")


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


def escape_url(value: str | None) -> str | None:
    """An http(s) URL with spaces and other unsafe characters percent-encoded (``%`` escapes
    already there are kept), or ``None`` for a value that is not an http(s) URL."""
    value = (value or "").strip()
    if not re.match(r"^https?://[^/\s]", value, re.IGNORECASE):
        return None
    return quote(value, safe=_URL_SAFE)


def image_file_for_url(url: str) -> str | None:
    """The file an image URL names under the export's image folder: the URL's path, unescaped
    (``http://host/CRDImages/gr/original/9%20Cat.jpg`` -> ``CRDImages/gr/original/9 Cat.jpg``);
    ``None`` when the path is empty or would leave the folder."""
    parts = [p for p in unquote(urlsplit(url).path).split("/") if p]
    if not parts or any(p in (".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    return "/".join(parts)
