"""The work page of `artsim serve`: ``GET /work/{artwork_id}?source=&type=&from=&to=`` shows one
work and its nearest works in each museum (or only those the filters allow), with scores and the
metadata they share with it (makers, culture, classification, department, tags, dates)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.web.site import Site, shared_metadata, valid_id

PER_MUSEUM = 8


def page_router(site: Site) -> APIRouter:
    """The work page and the (empty) favicon."""
    from artsim_pipeline.core.text_search import SearchQueryError
    from artsim_pipeline.web.search_routes import filters_from

    router = APIRouter()
    state = site.state

    @router.get("/work/{artwork_id:path}", response_class=HTMLResponse)
    def work_page(artwork_id: str, source: str = Query("", max_length=40), type: str = Query("", max_length=200),
                  date_from: str = Query("", alias="from", max_length=12), date_to: str = Query("", alias="to", max_length=12)):
        if not valid_id(artwork_id):
            return site.not_found("That is not a valid artwork id.")
        works = state.works()
        in_index = state.in_index(artwork_id)
        if artwork_id not in works and not in_index:
            return site.not_found(f"No artwork {artwork_id} in this collection.")
        work = site.view(artwork_id, {
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
                    results.append(site.view(r["artwork_id"], {"score": r["score"], "shared": shared_metadata(work, other)},
                                             row=other))
            sections.append({"source": museum, "results": results})
        # from the serving copies: the search catalogue (every work in memory) only when a filter is used
        kinds = [name for name, _ in works.kinds()[:300]] if works else []
        return site.page("work.html", status_code=422 if error else 200, work=work, sections=sections, in_index=in_index,
                         error=error, filters=shown, filtered=any(shown.values()), museums=list(SOURCES), kinds=kinds)

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return router
