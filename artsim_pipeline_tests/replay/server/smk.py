"""The SMK Open API's routes (``/art/search/``, ``/art/?object_number=``), its items and the
rewriting of their image URLs, as a part of `ReplayServer`."""

from __future__ import annotations

import copy
import re
from urllib.parse import urlsplit

from artsim_pipeline_tests.replay.server.wire import RawJson, _json_bytes, _Response, splice_json

SMK_PREFIX = "/api/v1"
SMK_MAX_ROWS = 2000
SMK_DEFAULT_ROWS = 10

_SMK_FILTER_RE = re.compile(r"\[([^:\[\]]+):([^\]]*)\]")


class SmkRoutes:
    """`ReplayServer`'s SMK part: its items (``self._smk``: object_number -> (verbatim item,
    rewritten item)) and routes; the server holds ``_lock``."""

    def set_smk_record(self, item: dict) -> None:
        """Add or replace an SMK item (keyed by ``object_number``)."""
        item = copy.deepcopy(item)
        with self._lock:
            self._smk[str(item["object_number"])] = (item, self._rewrite_smk(item))

    def remove_smk_record(self, object_number: str) -> bool:
        """Remove an SMK item; returns whether it was there."""
        with self._lock:
            return self._smk.pop(object_number, None) is not None

    def _rewrite_smk(self, item: dict) -> dict:
        out = dict(item)
        for key in ("image_thumbnail", "image_native"):
            url = out.get(key)
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                parts = urlsplit(url)
                path = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
                out[key] = f"{self.base_url}/images/smk/{path}"
        iiif = out.get("image_iiif_id")
        if isinstance(iiif, str):
            for prefix in ("https://iip.smk.dk/iiif/jp2/", "http://iip.smk.dk/iiif/jp2/"):
                if iiif.startswith(prefix):
                    out["image_iiif_id"] = f"{self.base_url}/iiif/{iiif[len(prefix):]}"
        return out

    def _route_smk(self, sub: str, query: dict[str, list[str]]) -> _Response:
        if sub in ("/art/search/", "/art/search"):
            return self._smk_search(query)
        if sub in ("/art/", "/art"):
            number = query.get("object_number", [None])[0]
            if number is None:
                return _Response(400, _json_bytes({"message": "object_number is required"}))
            with self._lock:
                entry = self._smk.get(number)
            return _Response(200, _json_bytes({"items": [entry[1]] if entry else []}))
        return _Response(404, _json_bytes({"message": "Not Found"}))

    @staticmethod
    def _smk_filter_ok(item: dict, filters: list[tuple[str, str]]) -> bool:
        for key, want in filters:
            have = item.get(key)
            if want.lower() in ("true", "false"):
                if bool(have) != (want.lower() == "true"):
                    return False
            elif str(have) != want:
                return False
        return True

    def _smk_search(self, query: dict[str, list[str]]) -> _Response:
        keys = query.get("keys", ["*"])[0].strip() or "*"
        try:
            offset = max(0, int(query.get("offset", ["0"])[0] or 0))
            rows = int(query.get("rows", [str(SMK_DEFAULT_ROWS)])[0] or SMK_DEFAULT_ROWS)
        except ValueError:
            return _Response(400, _json_bytes({"message": "offset and rows must be integers"}))
        rows = max(0, min(rows, SMK_MAX_ROWS))
        filters = [(k.strip(), v.strip()) for f in query.get("filters", []) for k, v in _SMK_FILTER_RE.findall(f)]
        with self._lock:
            items = [self._smk[k] for k in sorted(self._smk)]
        needle = keys.lower()
        found = []
        for verbatim, served in items:
            if keys != "*":
                titles = [str(t.get("title", "")) for t in verbatim.get("titles") or [] if isinstance(t, dict)]
                if not any(needle in t.lower() for t in titles):
                    continue
            if not self._smk_filter_ok(verbatim, filters):
                continue
            found.append(served)
        found += self.smk_extra_listing
        page = found[offset: offset + rows]
        body = {
            "offset": offset,
            "rows": rows,
            "found": len(found),
            "items": page,
            "facets": {},
            "facets_ranges": {},
            "autocomplete": [],
        }
        if any(isinstance(item, RawJson) for item in page):
            return _Response(200, splice_json(body, "items", page))
        return _Response(200, _json_bytes(body))
