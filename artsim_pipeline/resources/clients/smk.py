"""The SMK Open API client (https://api.smk.dk/api/v1).

SMK's search returns whole records, up to 2,000 a page, so listing the collection also fetches
it: `list_ids` pages through `/art/search/` and keeps the items; `fetch_objects` serves them from
that page cache and asks `/art/?object_number=` only for ids it has not seen. The API offers no
reliable "modified since" filter, so every listing is full and change detection is by content hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from artsim_pipeline.resources.clients.base import FetchResult, Listing, LiveMuseumClient, content_hash, kept_text, utc_now
from artsim_pipeline.resources.clients.http import PoliteSession

MAX_ROWS = 2000


# ids of listing entries that could not be keyed by their object number (never a real one:
# SMK object numbers hold no ':' after such a prefix, nor '#')
NO_NUMBER_PREFIX = "no-object-number:"
UNREADABLE_PREFIX = "unreadable-item:"
DUPLICATE_MARK = "#duplicate:"


@dataclass
class _Unreadable:
    """A listing entry whose page could not be parsed even on its own."""

    offset: int
    text: str
    error: str


def item_json(item) -> str:
    """A search item's JSON text (compact, non-ASCII kept), as stored in `raw_objects` (a
    `FetchResult` writes any lone surrogate in it as an escape, and counts it)."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def smk_image_url(item: dict, iiif_size: str = "!1024,") -> str | None:
    """IIIF at a web size when the item has a IIIF id, else its thumbnail; None when it has no image."""
    if not isinstance(item, dict) or not item.get("public_domain") or item.get("has_image") is False:
        return None
    iiif = item.get("image_iiif_id")
    if isinstance(iiif, str) and iiif:
        return f"{iiif.rstrip('/')}/full/{iiif_size}/0/default.jpg"
    for key in ("image_thumbnail", "image_native"):
        url = item.get(key)
        if isinstance(url, str) and url:
            return url
    return None


class SmkClient(LiveMuseumClient):
    source = "smk"

    def __init__(
        self,
        base_url: str,
        http: PoliteSession,
        *,
        keys: str = "*",
        filters: str | None = None,
        rows: int = MAX_ROWS,
        max_objects: int | None = None,
        iiif_size: str = "!1024,",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.keys = keys
        self.filters = filters
        self.rows = max(1, min(rows, MAX_ROWS))
        self.max_objects = max_objects
        self.iiif_size = iiif_size
        self._items: dict[str, FetchResult] = {}

    def _search(self, offset: int, rows: int) -> tuple[list, int | None]:
        """`(items, found)` of one search page. A page the parser cannot read (one poisoned item
        spoils all of it) is read again in halves, down to single items; an unreadable single
        item comes back as an `_Unreadable` entry, so the rest of the listing still arrives."""
        params = {"keys": self.keys, "offset": offset, "rows": rows, "lang": "en"}
        if self.filters:
            params["filters"] = self.filters
        outcome = self.http.get(f"{self.base_url}/art/search/", params=params, expect_json=True)
        if outcome.ok and isinstance(outcome.json, dict):
            items = outcome.json.get("items") or []
            found = outcome.json.get("found")
            return (items if isinstance(items, list) else [items]), (found if isinstance(found, int) else None)
        if outcome.status_code == 200 and outcome.terminal:  # a complete body the parser cannot handle
            if rows > 1:
                half = rows // 2
                first, found = self._search(offset, half)
                if len(first) < half:
                    return first, found
                rest, found_rest = self._search(offset + half, rows - half)
                return first + rest, found if found is not None else found_rest
            return [_Unreadable(offset, outcome.text, outcome.error or "unreadable")], None
        raise RuntimeError(f"SMK search failed at offset {offset}: {outcome.error or outcome.text[:200]!r}")

    def list_ids(self, since: str | None = None) -> Listing:
        """Every listed item becomes a result: `ok`; or `error` with its reason and the item's
        text when it has no usable `object_number`, repeats one listed before (the item modified
        last keeps the number, the other is kept as `<number>#duplicate:<hash>`), or cannot be
        read at all."""
        ids: dict[str, None] = {}  # ordered, de-duplicated
        notes = {"items": 0, "without_object_number": 0, "duplicates": 0, "unreadable": 0}
        offset = 0
        cursor = utc_now().isoformat()
        while True:
            items, found = self._search(offset, self.rows)
            for position, item in enumerate(items, start=offset):
                notes["items"] += 1
                for result in self._listed(position, item, notes):
                    ids[result.source_id] = None
                    self._items[result.source_id] = result
            offset += len(items)
            # `rows` echoes the request, so the end is told by `found` and by short pages.
            if not items or (found is not None and offset >= found) or len(items) < self.rows:
                break
            if self.max_objects is not None and len(ids) >= self.max_objects:
                break
        listed = list(ids)
        full = self.max_objects is None or len(listed) <= self.max_objects
        if self.max_objects is not None:
            listed = listed[: self.max_objects]
        return Listing(ids=listed, full=full and self.filters is None and self.keys == "*", cursor=cursor, notes=notes)

    def _listed(self, position: int, item, notes: dict) -> list[FetchResult]:
        """The result(s) one listed item becomes (a duplicate may displace the earlier one)."""
        if isinstance(item, _Unreadable):
            notes["unreadable"] += 1
            key = f"{UNREADABLE_PREFIX}{content_hash(item.text or str(position))[:16]}"
            return [FetchResult(key, "error", raw_json=kept_text(item.text),
                                error=f"the listing item at offset {position} cannot be read: {item.error}")]
        text = item_json(item)
        number = item.get("object_number") if isinstance(item, dict) else None
        if isinstance(number, str):
            number = number.strip()
        if not isinstance(number, str) or not number:
            notes["without_object_number"] += 1
            got = "no object" if not isinstance(item, dict) else f"object_number {json.dumps(item.get('object_number'))[:60]}"
            return [FetchResult(f"{NO_NUMBER_PREFIX}{content_hash(text)[:16]}", "error", raw_json=text,
                                error=f"the listing item at offset {position} has no usable object_number ({got}); kept as listed")]
        modified = item.get("modified") if isinstance(item.get("modified"), str) else None
        current = FetchResult(number, "ok", raw_json=text, modified=modified)
        earlier = self._items.get(number)
        if earlier is None or earlier.status != "ok":
            return [current]
        notes["duplicates"] += 1
        # the item modified last keeps the object number (ties: the one listed first)
        keep, other = (current, earlier) if (modified or "") > (earlier.modified or "") else (earlier, current)
        same = " (same content)" if keep.content_hash == other.content_hash else " (different content)"
        duplicate = FetchResult(
            f"{number}{DUPLICATE_MARK}{other.content_hash[:12]}", "error", raw_json=other.raw_json, modified=other.modified,
            error=f"duplicate_id: object_number {number} listed more than once (again at offset {position}); kept the item "
                  f"modified {keep.modified or 'null'}, this one is modified {other.modified or 'null'}{same}",
        )
        return [keep, duplicate]

    def fetch_object(self, object_number: str) -> FetchResult:
        cached = self._items.get(object_number)
        if cached is not None:
            return cached
        if object_number.startswith((NO_NUMBER_PREFIX, UNREADABLE_PREFIX)) or DUPLICATE_MARK in object_number:
            # a listing problem recorded earlier that this listing no longer shows
            return FetchResult(object_number, "gone", error="no longer in the SMK listing")
        url = f"{self.base_url}/art/"
        outcome = self.http.get(url, params={"object_number": object_number, "lang": "en"}, expect_json=True)
        if not outcome.ok:
            status = "gone" if outcome.terminal and outcome.status_code in (404, 410) else "error"
            return FetchResult(object_number, status, error=outcome.error)
        items = (outcome.json or {}).get("items") if isinstance(outcome.json, dict) else None
        if not items:
            return FetchResult(object_number, "gone", error="SMK returned no item for this object number")
        item = items[0]
        return FetchResult(object_number, "ok", raw_json=item_json(item), modified=item.get("modified"))

    def image_url(self, record: dict) -> str | None:
        return smk_image_url(record, self.iiif_size)

    @staticmethod
    def record_key(record) -> str | None:
        number = record.get("object_number") if isinstance(record, dict) else None
        return number.strip() or None if isinstance(number, str) else None

    @staticmethod
    def record_modified(record) -> str | None:
        value = record.get("modified") if isinstance(record, dict) else None
        return value if isinstance(value, str) and value else None

    @staticmethod
    def snapshot_text(record, line: str) -> str:
        return item_json(record)  # what a live listing stores (the sample keeps the text as the API sent it)

    @staticmethod
    def public_image_url(record) -> str | None:
        return smk_image_url(record)

    @staticmethod
    def object_path_segment(object_number: str) -> str:
        """Object numbers hold '/' and non-ASCII ("KKSgb6775/3", "KMSst28Ø"): escape for URL paths."""
        return quote(object_number, safe="")
