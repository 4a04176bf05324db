"""The interface every museum client implements: live (Met, SMK) and snapshot (bundled sample)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, TypeVar

from artsim_pipeline.core.raw_store import FetchResult, Status, content_hash, utc_now  # noqa: F401 - the clients' record type

T = TypeVar("T")
R = TypeVar("R")


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

    # How a record of this API is keyed, dated and stored: the live client's listing uses these,
    # and so does the snapshot of the bundled sample (`snapshot.py`), which has no instance.
    @staticmethod
    def record_key(record: Any) -> str | None:
        """The id `raw_objects` keys a record by (None when it has no usable one)."""
        raise NotImplementedError

    @staticmethod
    def record_modified(record: Any) -> str | None:
        """When the museum last changed the record, as the API writes it (None if it does not say)."""
        return None

    @staticmethod
    def snapshot_text(record: Any, line: str) -> str:
        """The `raw_json` a live run stores for a record the sample holds as `line`."""
        return line

    @staticmethod
    def public_image_url(record: Any) -> str | None:
        """The image URL this client downloads for a record (public-domain works only)."""
        raise NotImplementedError

    def image_url(self, record: dict) -> str | None:
        return self.public_image_url(record)

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
