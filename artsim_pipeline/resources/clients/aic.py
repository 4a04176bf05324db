"""The Art Institute of Chicago API client (https://api.artic.edu/docs/).

`/api/v1/artworks?page=&limit=100&fields=...` lists whole records, at most 100 a page, with only
the fields asked for (`FIELDS`); `/api/v1/artworks/{id}?fields=...` answers one. Every answer
carries an `info` block (the licence: `description` is CC BY 4.0, everything else CC0) and a
`config` block (`iiif_url`); each stored record keeps both, in the shape of the single-object
answer (`{"data": ..., "info": ..., "config": ...}`), so the IIIF root travels with the image id
and the licence with the description. Anonymous clients may make 60 requests a minute: the
registry's default rate for `aic` (0.95/s, burst 1) stays under it. No change filter: every run
lists all and content hashes find the changes.
"""

from __future__ import annotations

from typing import Any

from artsim_pipeline.core.museums import aic
from artsim_pipeline.resources.clients.http import PoliteSession
from artsim_pipeline.resources.clients.paged import PagedClient, record_json

MAX_PAGE_SIZE = 100  # the API's limit for listing pages
#: what the listing asks for: what the normaliser reads, the image rule's inputs and the description
FIELDS = (
    "id", "title", "artist_display", "artist_title", "artist_titles", "date_display", "date_start", "date_end",
    "place_of_origin", "medium_display", "department_title", "artwork_type_title", "classification_title",
    "category_titles", "technique_titles", "subject_titles", "style_titles", "theme_titles", "image_id",
    "is_public_domain", "description", "main_reference_number", "updated_at",
)


class AicClient(PagedClient):
    source = "aic"
    api_name = "Art Institute of Chicago API"

    def __init__(self, base_url: str, http: PoliteSession, *, page_size: int = MAX_PAGE_SIZE, max_objects: int | None = None,
                 fields: tuple[str, ...] = FIELDS) -> None:
        super().__init__(base_url, http, page_size=min(page_size, MAX_PAGE_SIZE), max_objects=max_objects)
        self.fields = ",".join(fields)

    # ---- the registry's record rules -------------------------------------------------------

    @staticmethod
    def record_key(record: Any) -> str | None:
        key = aic.record_id(record)
        return key if key is not None and key.isdigit() else None

    @staticmethod
    def record_modified(record: Any) -> str | None:
        data = record.get("data", record) if isinstance(record, dict) else None
        value = data.get("updated_at") if isinstance(data, dict) else None
        return value if isinstance(value, str) and value else None

    @staticmethod
    def public_image_url(record: Any) -> str | None:
        return aic.image_url(record)

    def stored(self, record: Any, page: Any) -> str:
        """The record in the single-object answer's shape, with the page's licence and IIIF root."""
        page = page if isinstance(page, dict) else {}
        return record_json({"data": record, "info": page.get("info"), "config": page.get("config")})

    # ---- routes ----------------------------------------------------------------------------

    def page_request(self, offset: int, count: int) -> tuple[str, dict]:
        # pages are numbered from 1 and `offset` is a multiple of `count`
        return f"{self.base_url}/artworks", {"page": offset // count + 1, "limit": count, "fields": self.fields}

    def page_items(self, body: Any) -> tuple[list, int | None]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("expected {'pagination': ..., 'data': [...], 'info': ..., 'config': ...}")
        pagination = body.get("pagination")
        total = pagination.get("total") if isinstance(pagination, dict) else None
        return body["data"], total if isinstance(total, int) and not isinstance(total, bool) else None

    def object_request(self, source_id: str) -> tuple[str, dict | None]:
        return f"{self.base_url}/artworks/{source_id}", {"fields": self.fields}

    def object_record(self, body: Any) -> Any:
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None
