"""`artsim serve`: a small web app for curators over what the pipeline stored under `$ARTSIM_HOME`.

Pages (HTML, Jinja2 with autoescaping, no JavaScript):

- ``GET /?q=&source=&type=&from=&to=`` - search works by meaning, maker or number, with filters,
  and ``POST /search/image`` - search with an uploaded image (both in :mod:`.search_routes`);
- ``GET /work/{artwork_id}?source=&type=&from=&to=`` - one work, its nearest works in each museum
  (or only those the filters allow) with scores and the metadata they share with it (makers,
  culture, classification, department, tags, dates);
- ``GET /feedback?anchor=&curator=`` - an anchor work and 8 candidates (its nearest works and
  random ones, shuffled deterministically per anchor); the curator picks the most similar.

JSON:

- ``GET /api/similar/{artwork_id}?k=10&source=`` - the list ``artsim similar --json`` prints;
  404 ``{"error": ..., "artwork_id": ...}`` for an id that is not in the index;
- ``GET /api/search?q=&k=&source=&type=&from=&to=`` - the list ``artsim search --json`` prints;
- ``GET /api/feedback/task?anchor=`` - an anchor and its candidates (what ``/feedback`` shows),
  with the ``task_id`` to answer and this session's ``csrf_token`` (the session cookie is set);
- ``POST /api/feedback`` - record a judgment: JSON ``{"task_id", "chosen_id", "curator"}``
  (``anchor_id`` / ``candidate_ids`` may be repeated; they must be the task's) with the token in
  ``X-CSRF-Token`` (or ``csrf_token``), the session cookie and this site's ``Origin``; answers 201
  with the record; the HTML form post answers 303 to the next task. Refused: another Host or
  Origin (403), no or a wrong token (403), a task not issued to this session or answered (403),
  a body over 64 KiB (413, checked while reading), malformed JSON or text (400). See
  :mod:`.guard`;
- ``GET /api/feedback`` - how many judgments exist, and the latest ones.

Images: ``GET /images/{sha256}`` serves ``$ARTSIM_HOME/images/<sha[:2]>/<sha>.<ext>``; only a
64-digit hex sha (optionally with an image extension) is accepted, so no path can escape.

The app binds to 127.0.0.1 by default (:func:`serve`). It re-reads the stored index and tables
when the index on disk changes.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from artsim_pipeline.core.names import artist_keys
from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.web import guard

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}:[^\x00-\x1f\x7f<>\"'`\\]{1,200}$")
SHA_RE = re.compile(r"^([0-9a-f]{64})(?:\.(?:jpg|jpeg|png|webp|gif))?$")
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}
MAX_K = 100
PER_MUSEUM = 8
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def valid_id(artwork_id: Any) -> bool:
    """An artwork id the app accepts: ``<source>:<source id>``, printable, no markup characters."""
    return isinstance(artwork_id, str) and bool(ID_RE.match(artwork_id))


def _safe_http(url: Any) -> str | None:
    return url if isinstance(url, str) and re.match(r"^https?://[^\s]+$", url) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def shared_metadata(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What two artworks rows have in common, to explain a similarity to a curator.

    ``makers`` (names on both, compared by their :func:`artist_keys`, shown as spelled on
    ``a``), ``culture``, ``classification``, ``department`` (when equal, case-insensitively),
    ``tags`` (shared, case-insensitive), ``dates`` (the overlap of the two date ranges, as
    text). Missing or empty entries are left out.
    """
    out: dict[str, Any] = {}
    keys_b = {key for n in (b.get("artists") or []) for key in artist_keys(n)}
    makers = []
    for name in a.get("artists") or []:
        if keys_b.intersection(artist_keys(name)) and name not in makers:  # "Rembrandt (Rembrandt van Rijn)" too
            makers.append(name)
    if makers:
        out["makers"] = makers
    for field in ("culture", "classification", "department"):
        va, vb = _text(a.get(field)), _text(b.get(field))
        if va and vb and va.casefold() == vb.casefold():
            out[field] = va
    tags_b = {t.strip().casefold() for t in (b.get("tags") or []) if isinstance(t, str) and t.strip()}
    tags = []
    for t in a.get("tags") or []:
        if isinstance(t, str) and t.strip() and t.strip().casefold() in tags_b and t.strip() not in tags:
            tags.append(t.strip())
    if tags:
        out["tags"] = tags
    span = _overlap(a, b)
    if span:
        out["dates"] = span
    return out


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    def bounds(row):
        lo, hi = row.get("date_begin"), row.get("date_end")
        lo = hi if lo is None else lo
        hi = lo if hi is None else hi
        return (None, None) if lo is None else (min(lo, hi), max(lo, hi))

    (a0, a1), (b0, b1) = bounds(a), bounds(b)
    if a0 is None or b0 is None:
        return None
    lo, hi = max(a0, b0), min(a1, b1)
    if lo > hi:
        return None

    def year(y: int) -> str:
        return f"{-y} BC" if y < 0 else str(y)

    return year(lo) if lo == hi else f"{year(lo)}–{year(hi)}"


class _State:
    """The stored data the app reads, reloaded when the stored index or artworks change."""

    def __init__(self, home: Path, tables=None, storage=None) -> None:
        from artsim_pipeline.resources.storage import ArtsimStorage
        from artsim_pipeline.resources.tables import TableStore

        self.home = home
        self.tables = tables or TableStore(base_dir=str(home / "storage"))
        self.storage = storage or ArtsimStorage(home=str(home))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._service = None
        self._works: dict[str, dict[str, Any]] | None = None
        self._pool: list[str] | None = None

    def _disk_stamp(self) -> tuple:
        from artsim_pipeline.resources.artefacts import index_stamps

        return (*index_stamps(self.storage),
                *(self.tables.objects.stamp(self.tables.table_key("artworks", s)) for s in SOURCES))

    def _fresh(self) -> None:
        stamp = self._disk_stamp()
        if stamp != self._stamp:
            from artsim_pipeline.service import SimilarityService

            self._service = SimilarityService(self.home, tables=self.tables, storage=self.storage)
            self._works = self._pool = None
            self._stamp = stamp

    @property
    def service(self):
        with self._lock:
            self._fresh()
            return self._service

    def works(self) -> dict[str, dict[str, Any]]:
        """``artwork_id -> artworks row`` (raises NotBuiltError without artworks)."""
        service = self.service
        with self._lock:
            if self._works is None:
                frame = service.artworks.unique("artwork_id", keep="first", maintain_order=True)
                self._works = {row["artwork_id"]: row for row in frame.iter_rows(named=True)}
            return self._works

    def in_index(self, artwork_id: str) -> bool:
        """Whether the id is a live item of the index (False while no index is built)."""
        from artsim_pipeline.service import NotBuiltError

        try:
            return artwork_id in self.service.index
        except NotBuiltError:
            return False

    def pool(self) -> list[str]:
        """Indexed ids that have an artworks row: where random candidates come from."""
        index = self.service.index
        works = self.works()
        with self._lock:
            if self._pool is None:
                self._pool = sorted(a for a in index.ids if a in works)
            return self._pool


def create_app(home: str | Path | None = None, storage=None, tables=None, allowed_hosts: Iterable[str] = ()) -> FastAPI:
    """The FastAPI app over ``home`` (default: ``$ARTSIM_HOME``), or over the given `TableStore`
    and `ArtsimStorage` (S3 in prod: `home` then only holds the judgments journal and a cache);
    with a storage, every recorded judgment also publishes the journal there for the pipeline."""
    from artsim_pipeline import settings
    from artsim_pipeline.core.search import UnknownArtworkError
    from artsim_pipeline.core.text_search import SearchQueryError
    from artsim_pipeline.resources import artefacts
    from artsim_pipeline.service import NotBuiltError
    from artsim_pipeline.web.feedback_routes import register_feedback_routes
    from artsim_pipeline.web.search_routes import filters_from, register_search_routes

    home = Path(home) if home is not None else settings.artsim_home()
    state = _State(home, tables, storage)
    images_root = artefacts.local_images_dir(home).resolve()
    remote_images = state.storage.is_remote
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app = FastAPI(title="artsim", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.artsim = state

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # not "no-referrer": with it a browser sends `Origin: null` on the page's own form posts,
        # and those are refused (see guard.py); "same-origin" still tells other sites nothing
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    @app.exception_handler(NotBuiltError)
    async def not_built(request: Request, exc: NotBuiltError):
        message = guard.redact_paths(str(exc))  # never where the files are
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=503)
        return page("error.html", status_code=503, status=503, heading="Not built yet", message=message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.exception("artsim serve: %s %s failed", request.method, request.url.path)
        message = "the server could not answer this request (see the server log)"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return page("error.html", status_code=500, status=500, heading="Something went wrong", message=message)

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def not_found(message: str) -> HTMLResponse:
        return page("error.html", status_code=404, status=404, heading="Not found", message=message)

    def api_error(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, "detail": message, **extra}, status_code=status)

    def image_src(row: dict[str, Any]) -> str | None:
        sha = row.get("image_sha256")
        return f"/images/{sha}" if isinstance(sha, str) and SHA_RE.match(sha) else None

    def work_href(artwork_id: str) -> str:
        return "/work/" + quote(artwork_id, safe=":")

    def view(artwork_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        row = dict(state.works().get(artwork_id) or {"artwork_id": artwork_id})
        row.setdefault("source", artwork_id.split(":", 1)[0])
        row["artists"] = [a for a in (row.get("artists") or []) if a]
        row["tags"] = [t for t in (row.get("tags") or []) if t]
        row["image_src"] = image_src(row)
        row["href"] = work_href(artwork_id)
        row["landing_href"] = _safe_http(row.get("landing_url"))
        if extra:
            row.update(extra)
        return row

    def check_source(source: str | None) -> str | None:
        source = (source or "").strip() or None
        if source is not None and source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        return source

    # -- search (words, filters, an uploaded image) ----------------------------------------------

    register_search_routes(app, state, page=page, view=view, api_error=api_error)

    # -- similar works ---------------------------------------------------------------------------

    @app.get("/api/similar/{artwork_id:path}")
    def api_similar(artwork_id: str, k: int = Query(10, ge=1, le=MAX_K), source: str | None = None):
        try:
            source = check_source(source)
        except ValueError as exc:
            return api_error(422, str(exc))
        if not valid_id(artwork_id):
            return api_error(404, f"unknown artwork id {artwork_id!r}", artwork_id=artwork_id)
        try:
            return state.service.similar(artwork_id, k, source=source)
        except UnknownArtworkError as exc:
            return api_error(404, str(exc), artwork_id=artwork_id)

    @app.get("/work/{artwork_id:path}", response_class=HTMLResponse)
    def work_page(artwork_id: str, source: str = Query("", max_length=40), type: str = Query("", max_length=200),
                  date_from: str = Query("", alias="from", max_length=12), date_to: str = Query("", alias="to", max_length=12)):
        if not valid_id(artwork_id):
            return not_found("That is not a valid artwork id.")
        works = state.works()
        in_index = state.in_index(artwork_id)
        if artwork_id not in works and not in_index:
            return not_found(f"No artwork {artwork_id} in this collection.")
        work = view(artwork_id, {
            "feedback_href": "/feedback?" + urlencode({"anchor": artwork_id}),
            "api_href": "/api/similar/" + quote(artwork_id, safe=":"),
        })
        shown = {"source": source, "type": type, "from": date_from, "to": date_to}
        sections, error = [], None
        try:
            filters = filters_from(source, type, date_from, date_to)
            if in_index and filters.active:
                state.service.catalog.mask(filters)  # a filter no work passes is said once, above the sections
        except SearchQueryError as exc:
            filters, error = None, str(exc)
        for museum in [filters.source] if filters is not None and filters.source else SOURCES:
            results = []
            if in_index and error is None:
                for r in state.service.similar(artwork_id, PER_MUSEUM, source=museum, filters=filters):
                    other = works.get(r["artwork_id"], {})
                    results.append(view(r["artwork_id"], {"score": r["score"], "shared": shared_metadata(work, other)}))
            sections.append({"source": museum, "results": results})
        kinds = [name for name, _ in state.service.catalog.kinds()[:300]] if works else []
        return page("work.html", status_code=422 if error else 200, work=work, sections=sections, in_index=in_index,
                    error=error, filters=shown, filtered=any(shown.values()), museums=list(SOURCES), kinds=kinds)

    # -- images ----------------------------------------------------------------------------------

    @app.get("/images/{name:path}")
    def image(name: str):
        m = SHA_RE.match(name.lower())
        if not m:
            return api_error(400, "an image is addressed by its sha256 (64 hex digits)")
        sha = m.group(1)
        if remote_images:  # content-addressed on S3: fetched once into the local cache
            for extension in dict.fromkeys(t.lstrip(".") for t in IMAGE_TYPES):
                cached = artefacts.image_file(state.storage, f"{sha[:2]}/{sha}.{extension}")
                if cached is not None:
                    return FileResponse(cached, media_type=IMAGE_TYPES[f".{extension}"],
                                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
            return api_error(404, "no such image")
        folder = images_root / sha[:2]
        for path in sorted(folder.glob(f"{sha}*")) if folder.is_dir() else []:
            if path.stem != sha and path.name != sha:
                continue
            resolved = path.resolve()
            if not resolved.is_file() or not resolved.is_relative_to(images_root):
                continue
            return FileResponse(
                resolved,
                media_type=IMAGE_TYPES.get(resolved.suffix.lower(), "application/octet-stream"),
                headers={"Cache-Control": "public, max-age=31536000, immutable"},
            )
        return api_error(404, "no such image")

    # -- curator feedback (feedback_routes.py) ----------------------------------------------------

    register_feedback_routes(app, state, home=home, storage=storage, allowed_hosts=allowed_hosts, page=page, view=view,
                             not_found=not_found, api_error=api_error, valid_id=valid_id)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return app


def serve(home: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, storage=None, tables=None) -> None:
    """Run the app with uvicorn (loopback only unless ``host`` says otherwise)."""
    import uvicorn

    from artsim_pipeline import settings

    if host not in guard.LOOPBACK_HOSTS:
        logger.warning("artsim serve is listening on %s: anyone who can reach it can record feedback", host)
    # the names clients may use: loopback, the bound address, and ARTSIM_ALLOWED_HOSTS
    allowed = [host, *settings.allowed_hosts()]
    uvicorn.run(create_app(home, storage, tables, allowed_hosts=allowed), host=host, port=port, log_level="info")
