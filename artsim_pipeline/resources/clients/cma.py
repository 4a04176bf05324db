"""The Cleveland Museum of Art Open Access API client (https://openaccess-api.clevelandart.org/).

`/api/artworks/?cc0=1&has_image=1&skip=&limit=` lists whole records (`{"info": {"total": ...},
"data": [...]}`), so listing is fetching (`paged.PagedClient`); `/api/artworks/{id}` answers
`{"data": {...}}` for a record the listing did not name. Only CC0 works with an image are
asked for (the source is that set: a work leaving it becomes `gone`), and the normaliser checks
each record's `share_license_status` again before any image is used. No change filter: every run lists all and content hashes find the changes.
"""

from __future__ import annotations

from typing import Any

from artsim_pipeline.core.museums import cma
from artsim_pipeline.resources.clients.http import PoliteSession
from artsim_pipeline.resources.clients.paged import PagedClient, record_json

#: records a page; Cleveland records are large (citations, provenance: ~16 KB each)
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class CmaClient(PagedClient):
    source = "cma"
    api_name = "Cleveland Open Access API"

    def __init__(self, base_url: str, http: PoliteSession, *, page_size: int = PAGE_SIZE, max_objects: int | None = None,
                 cc0_with_image_only: bool = True) -> None:
        super().__init__(base_url, http, page_size=min(page_size, MAX_PAGE_SIZE), max_objects=max_objects)
        self.cc0_with_image_only = cc0_with_image_only

    # ---- the registry's record rules -------------------------------------------------------

    @staticmethod
    def record_key(record: Any) -> str | None:
        key = cma.record_id(record)
        return key if key is not None and key.isdigit() else None

    @staticmethod
    def record_modified(record: Any) -> str | None:
        value = record.get("updated_at") if isinstance(record, dict) else None
        return value if isinstance(value, str) and value else None

    @staticmethod
    def snapshot_text(record: Any, line: str) -> str:
        return record_json(record)  # what a live listing stores (the sample keeps the text as the API sent it)

    @staticmethod
    def public_image_url(record: Any) -> str | None:
        return cma.image_url(record)

    # ---- routes ----------------------------------------------------------------------------

    def page_request(self, offset: int, count: int) -> tuple[str, dict]:
        params: dict[str, Any] = {"skip": offset, "limit": count}
        if self.cc0_with_image_only:
            params.update(cc0=1, has_image=1)
        return f"{self.base_url}/artworks/", params

    def page_items(self, body: Any) -> tuple[list, int | None]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("expected {'info': ..., 'data': [...]}")
        info = body.get("info")
        total = info.get("total") if isinstance(info, dict) else None
        return body["data"], total if isinstance(total, int) and not isinstance(total, bool) else None

    def object_request(self, source_id: str) -> tuple[str, dict | None]:
        return f"{self.base_url}/artworks/{source_id}", None

    def object_record(self, body: Any) -> Any:
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None
