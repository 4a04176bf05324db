"""The interface every museum client implements: live (Met, SMK) and snapshot (bundled sample)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Literal, TypeVar

Status = Literal["ok", "gone", "error"]

T = TypeVar("T")
R = TypeVar("R")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()  # total: any str hashes


@dataclass
class FetchResult:
    """One object fetch: the verbatim JSON text when ok, the reason otherwise (an error may
    carry the text it could not use in `raw_json`).

    Text is made storable on construction: lone surrogates (which no UTF-8 file, Parquet column
    or polars frame accepts) become `\\uXXXX` escapes, the same JSON value; `text_repairs`
    counts them plus the invalid bytes the client replaced while decoding the body.
    """

    source_id: str
    status: Status
    raw_json: str | None = None
    error: str | None = None
    modified: str | None = None
    fetched_at: datetime = field(default_factory=utc_now)
    text_repairs: int = 0

    def __post_init__(self) -> None:
        from artsim_pipeline.core.text import escape_surrogates, scrub_surrogates

        if isinstance(self.raw_json, str):
            self.raw_json, n = escape_surrogates(self.raw_json)
            self.text_repairs += n
        for name in ("source_id", "error", "modified"):
            value = getattr(self, name)
            if isinstance(value, str):
                fixed, n = scrub_surrogates(value)
                if n:
                    setattr(self, name, fixed)
                    self.text_repairs += n

    @property
    def content_hash(self) -> str | None:
        return content_hash(self.raw_json) if self.raw_json is not None else None


@dataclass
class Listing:
    """Which objects to look at in this run.

    `full` means the listing covers the whole collection (so stored ids missing from it are gone);
    an incremental listing (since a cursor) only names what changed.
    """

    ids: list[str]
    full: bool
    cursor: str | None = None
    notes: dict[str, int] = field(default_factory=dict)  # what the listing met (items, problems), for metadata


@dataclass
class ImageFetch:
    url: str
    content: bytes | None
    error: str | None = None
    gone: bool = False
    status: str | None = None  # the raw_images failure word, when neither not_found nor http_error fits


class MuseumClient(ABC):
    """A museum's open API: list, fetch objects, fetch images."""

    source: str

    @abstractmethod
    def list_ids(self, since: str | None = None) -> Listing:
        """Object ids changed since `since` (a cursor from a previous listing), or all when None."""

    @abstractmethod
    def fetch_objects(self, ids: Iterable[str]) -> Iterator[FetchResult]:
        """Fetch records, yielding results as they complete (order not guaranteed)."""

    @abstractmethod
    def fetch_image(self, url: str) -> ImageFetch:
        """Download one image."""

    @abstractmethod
    def image_url(self, record: dict) -> str | None:
        """The web-size image URL of a public-domain record, None when it has none or is in copyright."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class LiveMuseumClient(MuseumClient):
    """A client over HTTP: `self.http` is a shared `PoliteSession`; objects are fetched one per
    request on a bounded thread pool by `fetch_object`."""

    http: "PoliteSession"  # noqa: F821 - set by subclasses

    @abstractmethod
    def fetch_object(self, source_id: str) -> FetchResult:
        """Fetch one record."""

    def fetch_objects(self, ids: Iterable[str]) -> Iterator[FetchResult]:
        return bounded_parallel_map(self._fetch_one, ids, self.http.policy.max_workers)

    def _fetch_one(self, source_id: str) -> FetchResult:
        """`fetch_object`, with anything it raises turned into that record's error row: one record
        the client cannot handle never costs the rest of the source."""
        try:
            return self.fetch_object(source_id)
        except Exception as exc:  # noqa: BLE001 - recorded per record, with its reason
            return FetchResult(source_id, "error", error=f"could not fetch or read this record: {type(exc).__name__}: {exc}"[:2000])

    def fetch_image(self, url: str) -> ImageFetch:
        outcome = self.http.get(url)
        if outcome.ok:
            return ImageFetch(url, outcome.content)
        return ImageFetch(url, None, error=outcome.error, gone=outcome.terminal)

    def close(self) -> None:
        self.http.close()


def bounded_parallel_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int) -> Iterator[R]:
    """`fn` over `items` on a thread pool, yielding results as they finish, with bounded memory.

    At most `2 * max_workers` calls are in flight, so half a million ids do not become half a
    million futures.
    """
    if max_workers <= 1:
        for item in items:
            yield fn(item)
        return
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="artsim-fetch") as pool:
        pending: set[Future[R]] = set()
        for item in iterator:
            pending.add(pool.submit(fn, item))
            if len(pending) >= 2 * max_workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


MAX_KEPT_ERROR_TEXT = 1_000_000


def kept_text(text: str | None) -> str | None:
    """The body text an error row keeps beside its reason (bodies over 1 MB are not kept)."""
    return text if text and len(text) <= MAX_KEPT_ERROR_TEXT else None
