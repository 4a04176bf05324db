"""The Met Collection API client (https://metmuseum.github.io/)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from artsim_pipeline.resources.clients.base import FetchResult, Listing, LiveMuseumClient, kept_text
from artsim_pipeline.resources.clients.http import PoliteSession


def met_image_url(record: dict) -> str | None:
    """The web-size image of a public-domain Met record (None when in copyright or imageless)."""
    if not isinstance(record, dict) or not record.get("isPublicDomain"):
        return None
    for key in ("primaryImageSmall", "primaryImage"):
        url = record.get(key)
        if isinstance(url, str) and url:
            return url
    return None


class MetClient(LiveMuseumClient):
    """`/objects` listing (metadataDate, departmentIds) and concurrent `/objects/{id}` fetches."""

    source = "met"

    def __init__(
        self,
        base_url: str,
        http: PoliteSession,
        *,
        department_ids: Sequence[int] | None = None,
        max_objects: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.department_ids = list(department_ids) if department_ids else None
        self.max_objects = max_objects

    def list_ids(self, since: str | None = None) -> Listing:
        params: dict[str, str] = {}
        if since:
            params["metadataDate"] = since[:10]  # the API takes a date (YYYY-MM-DD)
        if self.department_ids:
            params["departmentIds"] = "|".join(str(d) for d in self.department_ids)
        cursor = datetime.now(timezone.utc).date().isoformat()
        outcome = self.http.get(f"{self.base_url}/objects", params=params or None, expect_json=True)
        if not outcome.ok:
            raise RuntimeError(f"Met /objects listing failed: {outcome.error}")
        body = outcome.json
        if not isinstance(body, dict) or "objectIDs" not in body:
            raise RuntimeError(f"Met /objects answered an unexpected body: {outcome.text[:200]!r}")
        ids = [str(i) for i in (body.get("objectIDs") or [])]  # `null` when nothing matches
        full = not since and not self.department_ids
        if self.max_objects is not None and len(ids) > self.max_objects:
            ids, full = ids[: self.max_objects], False
        return Listing(ids=ids, full=full, cursor=cursor)

    def fetch_object(self, object_id: str) -> FetchResult:
        outcome = self.http.get(f"{self.base_url}/objects/{object_id}", expect_json=True)
        repairs = outcome.text_repairs
        if outcome.ok:
            body = outcome.json
            if not isinstance(body, dict) or "objectID" not in body:
                return FetchResult(object_id, "error", raw_json=kept_text(outcome.text), error=f"unexpected body: {outcome.text[:200]!r}",
                                   text_repairs=repairs)
            modified = body.get("metadataDate")
            return FetchResult(object_id, "ok", raw_json=outcome.text, modified=modified if isinstance(modified, str) and modified else None,
                               text_repairs=repairs)
        if outcome.terminal and outcome.status_code in (404, 410):
            return FetchResult(object_id, "gone", error=outcome.error)
        # an unparseable 200 body is kept with its reason (it is what the API answered)
        text = kept_text(outcome.text) if outcome.status_code == 200 else None
        return FetchResult(object_id, "error", raw_json=text, error=outcome.error, text_repairs=repairs)

    def image_url(self, record: dict) -> str | None:
        return met_image_url(record)

    @staticmethod
    def record_key(record) -> str | None:
        value = record.get("objectID") if isinstance(record, dict) else None
        return None if value is None or isinstance(value, bool) else str(value)

    @staticmethod
    def record_modified(record) -> str | None:
        value = record.get("metadataDate") if isinstance(record, dict) else None
        return value if isinstance(value, str) and value else None

    @staticmethod
    def public_image_url(record) -> str | None:
        return met_image_url(record)
