"""Search routes of `artsim serve`: by words (the page, ``/api/search``) and by an uploaded image.

- ``GET /?q=&source=&type=&from=&to=`` - the search page: works ranked by meaning (keyword,
  metadata and, with a CLIP backbone, pixel rankings fused; `core.text_search`), with filters
  for museum, kind of work and years; and a "search by image" form;
- ``GET /api/search?q=&k=&source=&type=&from=&to=`` - the list ``artsim search --json`` prints
  (422 ``{"error": ...}`` for an empty query or filters no work passes);
- ``POST /search/image`` - a ``multipart/form-data`` upload (field ``image``, plus the same
  filters): at most ``MAX_UPLOAD_BYTES`` and ``MAX_UPLOAD_PIXELS``, a JPEG, PNG, WebP, GIF,
  BMP or TIFF; embedded like ``artsim similar --image`` and answered with the nearest works.
  The upload is read into memory, decoded and dropped: never written anywhere.

Every one of them calls `SimilarityService.search` / `similar_to_vector`, as the CLI does.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.web.site import MAX_K, Site, api_error

PAGE_K = 24
MAX_UPLOAD_BYTES = 8 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
RANKING_LABELS = {"exact": "exact id or title", "keyword": "words", "text": "meaning", "image": "picture"}


class UploadError(ValueError):
    """An upload refused, with the HTTP status to answer and a message for the curator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def filters_from(source: Any, kind: Any, date_from: Any, date_to: Any):
    """`SearchFilters` from request parameters; a museum must be one of the registry's."""
    from artsim_pipeline.core.text_search import SearchFilters, SearchQueryError

    filters = SearchFilters.clean(source, kind, date_from, date_to)
    if filters.source is not None and filters.source not in SOURCES:
        raise SearchQueryError(f"museum must be one of {', '.join(SOURCES)}")
    return filters


async def read_upload(request: Request) -> tuple[dict[str, str], bytes | None]:
    """(text fields, the bytes of the ``image`` file field) of a multipart form, held in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the image with the form (multipart/form-data)")
    limit = MAX_UPLOAD_BYTES + 64 * 1024  # the file plus the form's other fields
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(413, f"the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def header_end() -> None:
        parts[-1]["headers"][bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"].clear()
        header["value"].clear()

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": lambda data, start, end: header["field"].extend(data[start:end]),
        "on_header_value": lambda data, start, end: header["value"].extend(data[start:end]),
        "on_header_end": header_end,
        "on_part_data": lambda data, start, end: parts[-1]["data"].extend(data[start:end]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(bytes(body))
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for malformed bodies
        raise UploadError(400, f"the form could not be read: {exc}") from None
    fields: dict[str, str] = {}
    image: bytes | None = None
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name == "image" and b"filename" in disposition:
            image = bytes(part["data"]) or None
        elif name:
            fields[name] = bytes(part["data"]).decode("utf-8", "replace")[:200]
    return fields, image


def decode_upload(data: bytes | None):
    """An RGB PIL image from uploaded bytes, within the size and pixel limits."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(400, "choose an image file to search with")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(413, f"the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in IMAGE_FORMATS:
                    raise UploadError(415, f"{image.format} images are not accepted: use JPEG, PNG, WebP, GIF, BMP or TIFF")
                width, height = image.size
                if width * height > MAX_UPLOAD_PIXELS:
                    raise UploadError(413, f"the image has {width} x {height} pixels; at most {MAX_UPLOAD_PIXELS // 1_000_000} million are accepted")
                image.load()
                return image.convert("RGB")
    except UploadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError(413, f"the image has more than {MAX_UPLOAD_PIXELS // 1_000_000} million pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(415, "that file is not an image this app can read (use JPEG, PNG, WebP, GIF, BMP or TIFF)") from None


def search_router(site: Site) -> APIRouter:
    """The search page, `/api/search` and the image upload (see the module docstring)."""
    from artsim_pipeline.core.text_search import SearchQueryError, public
    from artsim_pipeline.service import ImageQueryError

    router = APIRouter()
    state, page, view = site.state, site.page, site.view

    def form_context(q: str, filters: dict[str, Any]) -> dict[str, Any]:
        # from the serving copies (NotBuiltError, 503, without artworks): the form alone does not
        # build the search catalogue, which holds every work in memory
        works = state.works()
        kinds = [name for name, _ in works.kinds()[:300]]
        return {"q": q, "museums": list(SOURCES), "kinds": kinds, "filters": filters, "n_works": f"{len(works):,}"}

    def search_view(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in results:
            why = [f"{RANKING_LABELS.get(name, name)} #{rank}" for name, rank in (r.get("ranks") or {}).items()]
            out.append(view(r["artwork_id"], {"score": r["score"], "why": why}))
        return out

    @router.get("/", response_class=HTMLResponse)
    def index_page(q: str = Query("", max_length=500), source: str = Query("", max_length=40),
                   type: str = Query("", max_length=200), date_from: str = Query("", alias="from", max_length=12),
                   date_to: str = Query("", alias="to", max_length=12)):
        shown = {"source": source, "type": type, "from": date_from, "to": date_to}
        context = form_context(q, shown)
        if not q.strip():
            return page("index.html", results=None, error=None, **context)
        try:
            filters = filters_from(source, type, date_from, date_to)
            results = search_view(state.service.search(q, PAGE_K, filters))
        except SearchQueryError as exc:
            return page("index.html", status_code=422, results=None, error=str(exc), **context)
        return page("index.html", results=results, error=None, **context)

    @router.get("/api/search")
    def api_search(q: str = Query("", max_length=500), k: int = Query(10, ge=1, le=MAX_K),
                   source: str | None = Query(None, max_length=40), type: str | None = Query(None, max_length=200),
                   date_from: str | None = Query(None, alias="from", max_length=12),
                   date_to: str | None = Query(None, alias="to", max_length=12)):
        try:
            filters = filters_from(source, type, date_from, date_to)
            return [public(r) for r in state.service.search(q, k, filters)]
        except SearchQueryError as exc:
            return api_error(422, str(exc))

    @router.post("/search/image", response_class=HTMLResponse)
    async def search_by_image(request: Request):
        from starlette.concurrency import run_in_threadpool

        fields: dict[str, str] = {}

        def nearest(data: bytes | None, shown: dict[str, str]) -> list[dict[str, Any]]:
            filters = filters_from(shown["source"], shown["type"], shown["from"], shown["to"])
            service = state.service
            vector = service.embed_image(decode_upload(data))
            return [view(r["artwork_id"], {"score": r["score"], "why": []})
                    for r in service.similar_to_vector(vector, PAGE_K, filters=filters)]

        try:
            fields, data = await read_upload(request)
            shown = {key: fields.get(key, "") for key in ("source", "type", "from", "to")}
            results = await run_in_threadpool(nearest, data, shown)  # decoding and the model: off the event loop
        except (UploadError, SearchQueryError, ImageQueryError) as exc:
            status = exc.status if isinstance(exc, UploadError) else 422
            context = form_context("", {key: fields.get(key, "") for key in ("source", "type", "from", "to")})
            return page("index.html", status_code=status, results=None, error=str(exc), image_error=True, **context)
        context = form_context("", shown)
        return page("index.html", results=results, error=None, by_image=True, **context)

    return router
