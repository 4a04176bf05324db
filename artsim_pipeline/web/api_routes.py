"""The similar-works JSON API of `artsim serve`: ``GET /api/similar/{artwork_id}?k=10&source=``
answers the list ``artsim similar --json`` prints; 404 ``{"error": ..., "artwork_id": ...}`` for
an id that is not in the index, 422 for an unknown museum."""

from __future__ import annotations

from fastapi import APIRouter, Query

from artsim_pipeline.web.site import MAX_K, Site, api_error, check_source, valid_id


def api_router(site: Site) -> APIRouter:
    """`/api/similar` (the search API is in :mod:`.search_routes`, feedback in :mod:`.feedback_routes`)."""
    from artsim_pipeline.core.search import UnknownArtworkError

    router = APIRouter()
    state = site.state

    @router.get("/api/similar/{artwork_id:path}")
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

    return router
