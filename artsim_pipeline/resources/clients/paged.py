"""What the clients of paged listing APIs share (Cleveland, Art Institute of Chicago).

Their listings return whole records, a page at a time, so listing the collection also fetches
it: `list_ids` pages through the listing and keeps each record; `fetch_objects` serves them from
that cache and asks the single-object route only for ids the listing did not name (failures of
the last run, retried by id). Neither API lists the records changed since a date, so every
listing is full and `raw_objects` finds the changes by content hash.

Every listed item becomes a result: `ok`; or `error` with its reason and its text for an item
without a usable id (`no-id:<hash>`) or one the parser cannot read (`unreadable-item:<hash>`:
a page that does not parse is read again one item at a time, so one poisoned record costs only
itself). An id listed twice (the collection changed while it was paged) keeps the record
modified last; the repeats are counted (`listing_duplicates`), the object is one row.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from typing import Any

from artsim_pipeline.resources.clients.base import FetchResult, Listing, LiveMuseumClient, content_hash, kept_text, utc_now
from artsim_pipeline.resources.clients.http import HttpOutcome, PoliteSession

NO_ID_PREFIX = "no-id:"
UNREADABLE_PREFIX = "unreadable-item:"


def record_json(record: Any) -> str:
    """A record's JSON text as stored in `raw_objects` (compact, non-ASCII kept)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class Unreadable:
    """A listing entry whose page could not be parsed even on its own."""

    def __init__(self, offset: int, text: str, error: str) -> None:
        self.offset, self.text, self.error = offset, text, error


def ordered_parallel_map(fn, items, max_workers: int):
    """`fn` over `items` on a thread pool, results in the order of `items`, at most `2 * max_workers`
    calls ahead of the one being taken; an exception is raised when its result is taken."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    if max_workers <= 1:
        yield from map(fn, items)
        return
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="artsim-pages") as pool:
        pending: deque = deque()
        try:
            for item in iterator:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * max_workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class PagedClient(LiveMuseumClient):
    """A live client over a listing of whole records read `page_size` at a time."""

    #: the API's name in error messages
    api_name: str = "API"

    def __init__(self, base_url: str, http: PoliteSession, *, page_size: int, max_objects: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.page_size = max(1, page_size)
        self.max_objects = max_objects
        self._items: dict[str, FetchResult] = {}

    # ---- what a museum's client says -----------------------------------------------------

    @abstractmethod
    def page_request(self, offset: int, count: int) -> tuple[str, dict]:
        """`(url, params)` of the listing page holding items `offset .. offset + count - 1`
        (`offset` is a multiple of `count`)."""

    @abstractmethod
    def page_items(self, body: Any) -> tuple[list, int | None]:
        """`(records, total)` of a parsed listing page; raises ValueError for a body of another shape."""

    @abstractmethod
    def object_request(self, source_id: str) -> tuple[str, dict | None]:
        """`(url, params)` of the single-object route."""

    @abstractmethod
    def object_record(self, body: Any) -> Any:
        """The record of a parsed single-object answer (None when it holds none)."""

    def stored(self, record: Any, page: Any) -> str:
        """The text `raw_objects` keeps for a listed record (default: the record's JSON)."""
        return record_json(record)

    # ---- listing ---------------------------------------------------------------------------

    def _read(self, offset: int, count: int) -> tuple[list, int | None, Any]:
        """`(items, total, page body)` of one page. A complete page the parser cannot handle is
        read again one item at a time; an item that still cannot be read is an `Unreadable`."""
        url, params = self.page_request(offset, count)
        outcome = self.http.get(url, params=params, expect_json=True)
        if outcome.ok:
            try:
                items, total = self.page_items(outcome.json)
                return items, total, outcome.json
            except ValueError as exc:
                outcome = HttpOutcome(outcome.url, 200, False, True, text=outcome.text, error=f"unexpected page: {exc}")
        if outcome.status_code == 200 and outcome.terminal:
            if count == 1:
                return [Unreadable(offset, outcome.text, outcome.error or "unreadable")], None, None
            items, total, body = [], None, None
            for single in range(offset, offset + count):
                got, got_total, got_body = self._read(single, 1)
                items += got
                total, body = (got_total if got_total is not None else total), (got_body if got_body is not None else body)
                if not got:
                    break
            return items, total, body
        raise RuntimeError(f"{self.api_name} listing failed at offset {offset}: {outcome.error or outcome.text[:200]!r}")

    def list_ids(self, since: str | None = None) -> Listing:
        """The whole listing (`since` is ignored: these APIs list no changes since a date).

        The first page says how many records there are; the other pages are then read by the
        client's workers (at most `2 * max_workers` ahead, all through the one rate limiter) and
        taken in order, so a listing runs at the rate limit rather than at one round trip a page.
        """
        ids: dict[str, None] = {}
        notes = {"items": 0, "pages": 0, "without_id": 0, "duplicates": 0, "unreadable": 0}
        cursor = utc_now().isoformat()

        def take(offset: int, page: tuple[list, int | None, Any]) -> int:
            items, _, body = page
            notes["pages"] += 1
            for position, item in enumerate(items, start=offset):
                notes["items"] += 1
                result = self._listed(position, item, body, notes)
                if result is not None:
                    ids[result.source_id] = None
            return len(items)

        first = self._read(0, self.page_size)
        offset = take(0, first)
        total = first[1]
        if total is not None and offset == self.page_size:
            wanted = total if self.max_objects is None else min(total, self.max_objects)
            offsets = range(self.page_size, wanted, self.page_size)
            for start, page in zip(offsets, ordered_parallel_map(lambda o: self._read(o, self.page_size), offsets,
                                                                  self.http.policy.max_workers), strict=True):
                offset = start + take(start, page)
                total = page[1] if page[1] is not None else total
        # a collection that grew while it was paged, or an API that does not say its total
        while offset % self.page_size == 0 and offset > 0 and (total is None or offset < total):
            if self.max_objects is not None and len(ids) >= self.max_objects:
                break
            page = self._read(offset, self.page_size)
            got = take(offset, page)
            if got == 0:
                break
            offset, total = offset + got, page[1] if page[1] is not None else total
        listed = list(ids)
        full = self.max_objects is None or len(listed) <= self.max_objects
        if self.max_objects is not None:
            listed = listed[: self.max_objects]
        return Listing(ids=listed, full=full and self.complete_listing(), cursor=cursor, notes=notes)

    def complete_listing(self) -> bool:
        """Whether the listing covers the whole collection the source stands for (no filters
        beyond the ones that define it), so stored ids missing from it are gone."""
        return True

    def _listed(self, position: int, item: Any, page: Any, notes: dict) -> FetchResult | None:
        if isinstance(item, Unreadable):
            notes["unreadable"] += 1
            result = FetchResult(f"{UNREADABLE_PREFIX}{content_hash(item.text or str(position))[:16]}", "error",
                                 raw_json=kept_text(item.text), error=f"the listing item at offset {position} cannot be read: {item.error}")
            self._items[result.source_id] = result
            return result
        text = self.stored(item, page)
        key = self.record_key(item)
        if key is None:
            notes["without_id"] += 1
            result = FetchResult(f"{NO_ID_PREFIX}{content_hash(text)[:16]}", "error", raw_json=text,
                                 error=f"the listing item at offset {position} has no usable id; kept as listed")
            self._items[result.source_id] = result
            return result
        current = FetchResult(key, "ok", raw_json=text, modified=self.record_modified(item))
        earlier = self._items.get(key)
        if earlier is not None and earlier.status == "ok":
            notes["duplicates"] += 1
            if (current.modified or "") <= (earlier.modified or ""):
                return earlier
        self._items[key] = current
        return current

    # ---- fetching --------------------------------------------------------------------------

    def fetch_object(self, source_id: str) -> FetchResult:
        cached = self._items.get(source_id)
        if cached is not None:
            return cached
        if source_id.startswith((NO_ID_PREFIX, UNREADABLE_PREFIX)):
            return FetchResult(source_id, "gone", error=f"no longer in the {self.api_name} listing")
        url, params = self.object_request(source_id)
        outcome = self.http.get(url, params=params, expect_json=True)
        repairs = outcome.text_repairs
        if not outcome.ok:
            if outcome.terminal and outcome.status_code in (404, 410):
                return FetchResult(source_id, "gone", error=outcome.error)
            text = kept_text(outcome.text) if outcome.status_code == 200 else None
            return FetchResult(source_id, "error", raw_json=text, error=outcome.error, text_repairs=repairs)
        record = self.object_record(outcome.json)
        if record is None or self.record_key(record) != source_id:
            return FetchResult(source_id, "error", raw_json=kept_text(outcome.text), text_repairs=repairs,
                               error=f"{self.api_name} answered a body without this record: {outcome.text[:200]!r}")
        return FetchResult(source_id, "ok", raw_json=self.stored(record, outcome.json), modified=self.record_modified(record),
                           text_repairs=repairs)
