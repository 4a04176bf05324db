"""Replay routes of the paged museum APIs added through the source registry, for `ReplayServer`.

* Cleveland Museum of Art Open Access API, ``https://openaccess-api.clevelandart.org/api``:
  ``/artworks/?skip=&limit=&cc0=&has_image=`` (``{"info": {"total", "parameters"}, "data"}``)
  and ``/artworks/{id}`` (``{"data": {...}}``); served under ``/cma/api``.
* Art Institute of Chicago API, ``https://api.artic.edu/api/v1``: ``/artworks?page=&limit=&fields=``
  (at most 100 a page; ``pagination``, ``data``, ``info``, ``config``) and
  ``/artworks/{id}?fields=``; only the requested fields are served; under ``/aic/api/v1``.

Records are the real ones from the shared data folder (``cleveland/artworks.jsonl``,
``aic/*.json``); image URLs in served records point at the server (Cleveland's CDN under
``/images/cma/``, the AIC's IIIF root at ``/iiif``). Poison: ``extra_listing`` entries are
listed after the records, a `RawJson` spliced into the page body as is.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable
from urllib.parse import urlsplit

__all__ = ["PAGED_APIS", "PagedApi", "load_shared_cma_records", "load_shared_aic_records", "aic_info_config"]

AIC_MAX_LIMIT = 100
AIC_DEFAULT_LIMIT = 12
CMA_DEFAULT_LIMIT = 1000


def _shared() -> Any:
    from artsim_pipeline_tests.replay.server import shared_data_dir

    return shared_data_dir()


def load_shared_cma_records() -> list[dict]:
    """The 76 real Cleveland ``/artworks/`` records, in file order."""
    with (_shared() / "cleveland" / "artworks.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_shared_aic_records() -> list[dict]:
    """The 21 real AIC records: the full single-object record, then the 20 of the listing page
    (with only the fields that page asked for: no ``is_public_domain``, so no usable image)."""
    full = json.loads((_shared() / "aic" / "artwork_full.json").read_text(encoding="utf-8"))
    page = json.loads((_shared() / "aic" / "artworks_page2_fields.json").read_text(encoding="utf-8"))
    return [full["data"], *page["data"]]


def aic_info_config() -> tuple[dict, dict]:
    """The ``info`` (licence) and ``config`` (``iiif_url``) blocks every AIC answer carries."""
    full = json.loads((_shared() / "aic" / "artwork_full.json").read_text(encoding="utf-8"))
    return full["info"], full["config"]


class PagedApi:
    """One paged API's records and routes (the server holds its lock while calling in)."""

    def __init__(self, key: str, prefix: str, id_field: str) -> None:
        self.key, self.prefix, self.id_field = key, prefix, id_field
        self.records: dict[str, dict] = {}  # id -> verbatim record, in listing order
        self.extra_listing: list[Any] = []
        self.base_url = ""

    def set_record(self, record: dict) -> None:
        self.records[str(record[self.id_field])] = copy.deepcopy(record)

    def remove_record(self, record_id: str) -> bool:
        return self.records.pop(str(record_id), None) is not None

    def served(self, record: dict) -> dict:
        return record

    def route(self, sub: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        raise NotImplementedError


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    return int(query.get(name, [str(default)])[0] or default)


class CmaApi(PagedApi):
    def served(self, record: dict) -> dict:
        out = copy.deepcopy(record)
        images = out.get("images")
        if isinstance(images, dict):
            for rendition in images.values():
                url = rendition.get("url") if isinstance(rendition, dict) else None
                if isinstance(url, str) and url.startswith(("https://", "http://")):
                    rendition["url"] = f"{self.base_url}/images/cma{urlsplit(url).path}"
        return out

    def route(self, sub: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        single = re.match(r"^/artworks/([^/]+)/?$", sub)
        if single:
            record = self.records.get(single.group(1))
            return (200, {"data": self.served(record)}) if record else (404, {"detail": "Not found."})
        if sub not in ("/artworks", "/artworks/"):
            return 404, {"detail": "Not found."}
        try:
            skip, limit = max(0, _int(query, "skip", 0)), max(0, _int(query, "limit", CMA_DEFAULT_LIMIT))
        except ValueError:
            return 400, {"detail": "skip and limit must be integers"}
        found: list[tuple[bool, Any]] = []  # (a record of the collection, item)
        for record in self.records.values():
            if query.get("cc0", [""])[0] in ("1", "true") and record.get("share_license_status") != "CC0":
                continue
            web = ((record.get("images") or {}).get("web") or {}) if isinstance(record.get("images"), dict) else {}
            if query.get("has_image", [""])[0] in ("1", "true") and not web.get("url"):
                continue
            found.append((True, record))
        found += [(False, item) for item in self.extra_listing]
        parameters = {k: v[0] for k, v in query.items()}
        page = [self.served(item) if is_record else item for is_record, item in found[skip: skip + limit]]
        return 200, {"info": {"total": len(found), "parameters": parameters}, "data": page}


class AicApi(PagedApi):
    def __init__(self, key: str, prefix: str, id_field: str) -> None:
        super().__init__(key, prefix, id_field)
        self.info, self.config = aic_info_config()

    def _config(self) -> dict:
        return {**self.config, "iiif_url": f"{self.base_url}/iiif"}

    @staticmethod
    def _fields(record: Any, fields: list[str] | None) -> Any:
        if fields is None or not isinstance(record, dict):
            return record
        return {name: record[name] for name in fields if name in record}

    def route(self, sub: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        fields_text = query.get("fields", [""])[0]
        fields = [f.strip() for f in fields_text.split(",") if f.strip()] or None
        single = re.match(r"^/artworks/([^/]+)/?$", sub)
        if single:
            record = self.records.get(single.group(1))
            if record is None:
                return 404, {"status": 404, "error": "Not found", "detail": "The item you requested cannot be found."}
            return 200, {"data": self._fields(record, fields), "info": self.info, "config": self._config()}
        if sub not in ("/artworks", "/artworks/"):
            return 404, {"status": 404, "error": "Not found", "detail": "Not found."}
        try:
            page, limit = max(1, _int(query, "page", 1)), _int(query, "limit", AIC_DEFAULT_LIMIT)
        except ValueError:
            return 400, {"status": 400, "error": "Invalid parameters", "detail": "page and limit must be integers"}
        if limit > AIC_MAX_LIMIT or limit < 0:
            return 403, {"status": 403, "error": "Invalid number of results",
                         "detail": "You have requested too many resources per page. Please set a smaller limit."}
        found: list[Any] = [*self.records.values(), *self.extra_listing]
        offset = (page - 1) * limit
        total_pages = -(-len(found) // limit) if limit else 0
        return 200, {
            "pagination": {"total": len(found), "limit": limit, "offset": offset, "total_pages": total_pages,
                           "current_page": page},
            "data": [self._fields(r, fields) for r in found[offset: offset + limit]],
            "info": self.info,
            "config": self._config(),
        }


#: registry key -> (route prefix, id field, class, loader of the shared records)
PAGED_APIS: dict[str, tuple[str, str, type[PagedApi], Callable[[], list[dict]]]] = {
    "cma": ("/cma/api", "id", CmaApi, load_shared_cma_records),
    "aic": ("/aic/api/v1", "id", AicApi, load_shared_aic_records),
}
