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

Modules, one per concern: :mod:`.state` (what is read from storage and kept), :mod:`.site`
(templates, the view of a work, error answers), and the routers :mod:`.page_routes` (the work
page), :mod:`.api_routes` (``/api/similar``), :mod:`.search_routes`, :mod:`.feedback_routes`
(behind :mod:`.guard`) and :mod:`.image_routes`; this module wires them together.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from artsim_pipeline.web import guard
from artsim_pipeline.web.site import Site, shared_metadata, valid_id  # noqa: F401 (the app's public helpers)
from artsim_pipeline.web.state import AppState

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def create_app(home: str | Path | None = None, storage=None, tables=None, allowed_hosts: Iterable[str] = ()) -> FastAPI:
    """The FastAPI app over ``home`` (default: ``$ARTSIM_HOME``), or over the given `TableStore`
    and `ArtsimStorage` (S3 in prod: `home` then only holds the judgments journal and a cache);
    with a storage, every recorded judgment also publishes the journal there for the pipeline."""
    from artsim_pipeline import settings
    from artsim_pipeline.service import NotBuiltError
    from artsim_pipeline.web.api_routes import api_router
    from artsim_pipeline.web.feedback_routes import feedback_router
    from artsim_pipeline.web.image_routes import image_router
    from artsim_pipeline.web.map_routes import map_router
    from artsim_pipeline.web.page_routes import page_router
    from artsim_pipeline.web.search_routes import search_router

    home = Path(home) if home is not None else settings.artsim_home()
    site = Site(AppState(home, tables, storage))
    app = FastAPI(title="artsim", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.artsim = site.state

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
        return _error(site, request, 503, "Not built yet", guard.redact_paths(str(exc)))  # never where the files are

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.exception("artsim serve: %s %s failed", request.method, request.url.path)
        return _error(site, request, 500, "Something went wrong", "the server could not answer this request (see the server log)")

    app.include_router(search_router(site))
    app.include_router(api_router(site))
    app.include_router(page_router(site))
    app.include_router(image_router(site, home))
    app.include_router(feedback_router(site, home=home, storage=storage, allowed_hosts=allowed_hosts))
    app.include_router(map_router(site))
    return app


def _error(site: Site, request: Request, status: int, heading: str, message: str):
    """An error as JSON under /api/, as the error page elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return site.page("error.html", status_code=status, status=status, heading=heading, message=message)


def serve(home: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, storage=None, tables=None) -> None:
    """Run the app with uvicorn (loopback only unless ``host`` says otherwise)."""
    import uvicorn

    from artsim_pipeline import settings

    if host not in guard.LOOPBACK_HOSTS:
        logger.warning("artsim serve is listening on %s: anyone who can reach it can record feedback", host)
    # the names clients may use: loopback, the bound address, and ARTSIM_ALLOWED_HOSTS
    allowed = [host, *settings.allowed_hosts()]
    uvicorn.run(create_app(home, storage, tables, allowed_hosts=allowed), host=host, port=port, log_level="info")
