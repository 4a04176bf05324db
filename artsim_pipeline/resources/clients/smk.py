"""The SMK Open API client (https://api.smk.dk/api/v1).

SMK's search returns whole records, up to 2,000 a page, so listing the collection also fetches
it: `list_ids` pages through `/art/search/` and keeps the items; `fetch_objects` serves them from
that page cache and asks `/art/?object_number=` only for ids it has not seen. The API offers no
reliable "modified since" filter, so every listing is full and change detection is by content hash.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from artsim_pipeline.resources.clients.base import FetchResult, Listing, LiveMuseumClient, utc_now
from artsim_pipeline.resources.clients.http import PoliteSession

MAX_ROWS = 2000


def item_json(item: dict) -> str:
    """A search item's JSON text (compact, non-ASCII kept), as stored in `raw_objects`."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def smk_image_url(item: dict, iiif_size: str = "!1024,") -> str | None:
    """IIIF at a web size when the item has a IIIF id, else its thumbnail; None when it has no image."""
    if not item.get("public_domain") or item.get("has_image") is False:
        return None
    iiif = item.get("image_iiif_id")
    if iiif:
        return f"{iiif.rstrip('/')}/full/{iiif_size}/0/default.jpg"
    return item.get("image_thumbnail") or item.get("image_native") or None


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

    def _search_page(self, offset: int) -> dict:
        params = {"keys": self.keys, "offset": offset, "rows": self.rows, "lang": "en"}
        if self.filters:
            params["filters"] = self.filters
        outcome = self.http.get(f"{self.base_url}/art/search/", params=params, expect_json=True)
        if not outcome.ok or not isinstance(outcome.json, dict):
            raise RuntimeError(f"SMK search failed at offset {offset}: {outcome.error or outcome.text[:200]!r}")
        return outcome.json

    def list_ids(self, since: str | None = None) -> Listing:
        ids: dict[str, None] = {}  # ordered, de-duplicated (pages can overlap when the collection changes)
        offset = 0
        cursor = utc_now().isoformat()
        while True:
            page = self._search_page(offset)
            items = page.get("items") or []
            for item in items:
                number = item.get("object_number")
                if not isinstance(number, str) or not number:
                    continue  # no id: nothing we could ever key it by
                ids[number] = None
                self._items[number] = FetchResult(number, "ok", raw_json=item_json(item), modified=item.get("modified"))
            offset += len(items)
            found = int(page.get("found") or 0)
            # `rows` echoes the request, so the end is told by `found` and by short pages.
            if not items or offset >= found or len(items) < self.rows:
                break
            if self.max_objects is not None and len(ids) >= self.max_objects:
                break
        listed = list(ids)
        full = self.max_objects is None or len(listed) <= self.max_objects
        if self.max_objects is not None:
            listed = listed[: self.max_objects]
        return Listing(ids=listed, full=full and self.filters is None and self.keys == "*", cursor=cursor)

    def fetch_object(self, object_number: str) -> FetchResult:
        cached = self._items.get(object_number)
        if cached is not None:
            return cached
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
    def object_path_segment(object_number: str) -> str:
        """Object numbers hold '/' and non-ASCII ("KKSgb6775/3", "KMSst28Ø"): escape for URL paths."""
        return quote(object_number, safe="")
