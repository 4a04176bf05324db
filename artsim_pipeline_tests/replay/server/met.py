"""The Met Collection API's routes (``/objects``, ``/objects/{id}``, ``/departments``, ``/search``),
its records and the rewriting of their image URLs, as a part of `ReplayServer`."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Any

from artsim_pipeline_tests.replay.server.data import _parse_iso
from artsim_pipeline_tests.replay.server.wire import _json_bytes, _Response

MET_PREFIX = "/public/collection/v1"


# Record department names that differ from the names in /departments.
MET_DEPARTMENT_ALIASES = {
    "Modern and Contemporary Art": "Modern Art",
    "Robert Lehman Collection": "The Robert Lehman Collection",
}

_MET_OBJECT_RE = re.compile(r"^/objects/([^/]+)/?$")


def _utc_now_iso() -> str:
    """The current UTC time in the Met's ``metadataDate`` style (millisecond precision)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class MetRoutes:
    """`ReplayServer`'s Met part: its records (``self._met``: id -> [verbatim record, served JSON
    or None until first asked, index]) and routes; the server holds ``_lock``."""

    def set_met_record(self, record: dict, *, touch: bool = True) -> dict:
        """Add or replace a Met record (deep-copied); returns a copy of the stored record.

        With ``touch`` (the default), a record that is new or differs from the stored one
        (ignoring ``metadataDate``) gets ``metadataDate`` = now, as the real API does when an
        object changes, so incremental ``metadataDate`` queries see it. Served copies have their
        image URLs rewritten; the stored record stays verbatim.
        """
        rec = json.loads(_json_bytes(record))
        with self._lock:
            old = self._met.get(int(rec["objectID"]))
            if touch:
                strip = lambda r: {k: v for k, v in r.items() if k != "metadataDate"}  # noqa: E731
                if old is None or strip(old[0]) != strip(rec):
                    rec["metadataDate"] = _utc_now_iso()
                else:
                    rec["metadataDate"] = old[0].get("metadataDate")
            self._store_met(rec)
        return json.loads(_json_bytes(rec))

    def _store_met(self, rec: dict) -> None:
        """Index a record; its served JSON is rendered lazily on first request."""
        title = rec.get("title") or ""
        dept_name = rec.get("department") or ""
        dept_id = self._department_ids.get(MET_DEPARTMENT_ALIASES.get(dept_name, dept_name))
        index = (_parse_iso(rec.get("metadataDate")), dept_id, title.lower(), bool(rec.get("primaryImage")))
        with self._lock:
            self._met[int(rec["objectID"])] = [rec, None, index]

    def set_met_body(self, object_id: int, body: bytes) -> None:
        """Answer ``/objects/{object_id}`` with exactly ``body`` (200), whatever it holds (deeply
        nested JSON, invalid UTF-8...); the id is listed by ``/objects`` (as modified now)."""
        object_id = int(object_id)
        with self._lock:
            if object_id not in self._met:
                self._store_met({"objectID": object_id, "metadataDate": _utc_now_iso()})
            self.met_bodies[object_id] = bytes(body)

    def remove_met_record(self, object_id: int) -> bool:
        """Remove a Met record (it then answers 404); returns whether it was there."""
        with self._lock:
            return self._met.pop(int(object_id), None) is not None

    def met_record(self, object_id: int) -> dict | None:
        """A copy of the stored verbatim Met record, or None."""
        with self._lock:
            entry = self._met.get(int(object_id))
        return json.loads(_json_bytes(entry[0])) if entry else None

    @property
    def met_ids(self) -> list[int]:
        """The Met object ids served, ascending."""
        with self._lock:
            return sorted(self._met)

    def _rewrite_met(self, rec: dict) -> dict:
        out = dict(rec)

        def fix(url: Any) -> Any:
            if isinstance(url, str):
                for host in ("https://images.metmuseum.org/", "http://images.metmuseum.org/"):
                    if url.startswith(host):
                        return f"{self.base_url}/images/met/{url[len(host):]}"
            return url

        for key in ("primaryImage", "primaryImageSmall"):
            if key in out:
                out[key] = fix(out[key])
        if isinstance(out.get("additionalImages"), list):
            out["additionalImages"] = [fix(u) for u in out["additionalImages"]]
        return out

    def _route_met(self, sub: str, query: dict[str, list[str]]) -> _Response:
        if sub in ("/objects", "/objects/"):
            return self._met_objects(query)
        m = _MET_OBJECT_RE.match(sub)
        if m:
            return self._met_object(m.group(1))
        if sub in ("/departments", "/departments/"):
            return _Response(200, self._departments_body)
        if sub in ("/search", "/search/"):
            return self._met_search(query)
        return _Response(404, _json_bytes({"message": "Not Found"}))

    def _met_object(self, id_text: str) -> _Response:
        try:
            oid = int(id_text)
        except ValueError:
            return _Response(404, _json_bytes({"message": "ObjectID not found"}))
        if oid in self.not_a_valid_object_ids:
            return _Response(404, _json_bytes({"message": "Not a valid object"}))
        with self._lock:
            entry = self._met.get(oid)
        if entry is None:
            return _Response(404, _json_bytes({"message": "ObjectID not found"}))
        poison = self.met_bodies.get(oid)
        if poison is not None:
            return _Response(200, poison)
        body = entry[1]
        if body is None:  # render once; a concurrent duplicate render is harmless
            body = entry[1] = _json_bytes(self._rewrite_met(entry[0]))
        return _Response(200, body)

    @staticmethod
    def _id_envelope(ids: list[int]) -> _Response:
        ids = sorted(ids)
        return _Response(200, _json_bytes({"total": len(ids), "objectIDs": ids or None}))

    def _met_objects(self, query: dict[str, list[str]]) -> _Response:
        since: datetime | None = None  # a full timestamp: compare exactly
        since_date: date | None = None  # a date (the documented form): on or after that day
        text = query.get("metadataDate", [""])[0].strip()
        if text:
            try:
                if "T" in text:
                    since = datetime.fromisoformat(text.replace("Z", "+00:00"))
                    since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
                else:
                    since_date = date.fromisoformat(text)
            except ValueError:
                return _Response(400, _json_bytes({"message": "metadataDate must be YYYY-MM-DD"}))
        dept_ids: set[int] | None = None
        if query.get("departmentIds", [""])[0]:
            try:
                dept_ids = {int(x) for x in re.split(r"[|,]", query["departmentIds"][0]) if x.strip()}
            except ValueError:
                return _Response(400, _json_bytes({"message": "departmentIds must be numbers separated by |"}))
        with self._lock:
            entries = [(oid, e[2]) for oid, e in self._met.items()]
        ids = []
        for oid, (modified, dept_id, _title, _img) in entries:
            if since_date is not None and modified.date() < since_date:
                continue
            if since is not None and modified < since:
                continue
            if dept_ids is not None and dept_id not in dept_ids:
                continue
            ids.append(oid)
        return self._id_envelope(ids)

    def _met_search(self, query: dict[str, list[str]]) -> _Response:
        q = query.get("q", [""])[0].strip().lower()
        has_images = query.get("hasImages", [""])[0].lower() == "true"
        with self._lock:
            entries = [(oid, e[2]) for oid, e in self._met.items()]
        ids = [
            oid
            for oid, (_m, _d, title, has_img) in entries
            if (q in title or q == "*") and (has_img or not has_images)
        ]
        return self._id_envelope(ids)
