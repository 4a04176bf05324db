"""The curator feedback routes of `artsim serve`: the `/feedback` page, the task API and the
judgment POST, behind the checks of :mod:`.guard` (Host, Origin, session token, server-side
tasks, streamed size limit, strict parsing)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from artsim_pipeline.core import feedback as fb
from artsim_pipeline.resources import artefacts
from artsim_pipeline.web import guard
from artsim_pipeline.web.site import Site, api_error, valid_id

MAX_BODY = 64 * 1024


def feedback_router(site: Site, *, home: Path, storage, allowed_hosts: Iterable[str]) -> APIRouter:
    """The feedback routes (see the module docstring of :mod:`.app` for the API); with a
    `storage`, every recorded judgment also publishes the journal there for the pipeline."""
    router = APIRouter()
    state, page, view, not_found = site.state, site.page, site.view, site.not_found
    host_policy = guard.HostPolicy(allowed_hosts)
    sessions = guard.Sessions()
    tasks = guard.TaskRegistry()

    def task(anchor_id: str) -> list[str]:
        nearest = [r["artwork_id"] for r in state.service.similar(anchor_id, fb.N_NEAREST)]
        return fb.choose_candidates(anchor_id, nearest, state.pool())

    def pick_anchor(exclude: str | None = None) -> str | None:
        pool = state.pool()
        choices = [a for a in pool if a != exclude] or pool
        return random.choice(choices) if choices else None

    def issue_task(request: Request, anchor: str) -> tuple[guard.Task, str, bool]:
        """A task for this session (the server keeps its anchor and candidates)."""
        session, new_session = sessions.begin(request)
        return tasks.issue(session, anchor, task(anchor)), session, new_session

    @router.get("/feedback", response_class=HTMLResponse)
    def feedback_page(
        request: Request,
        anchor: str | None = Query(None, max_length=220),
        curator: str = Query("", max_length=fb.MAX_CURATOR_LEN),
        saved: str | None = None,
        skip: str | None = Query(None, max_length=220),
    ):
        if not host_policy.allows(request.headers.get("host")):
            return page("error.html", status_code=400, status=400, heading="Unknown host",
                        message="This server does not answer to that name.")
        if anchor is None:
            anchor = pick_anchor(exclude=skip)
            if anchor is None:
                return not_found("The similarity index is empty: nothing to judge yet.")
        if not valid_id(anchor) or not state.in_index(anchor):
            return not_found(f"No indexed artwork {anchor}.")
        issued, session, new_session = issue_task(request, anchor)
        response = page(
            "feedback.html",
            anchor=view(anchor),
            candidates=[view(c) for c in issued.candidate_ids],
            curator=curator,
            saved=bool(saved),
            error=None,
            judged=len(artefacts.read_judgment_records(home)),
            skip_href="/feedback?" + urlencode({"curator": curator, "skip": anchor}),
            task_id=issued.task_id,
            csrf_token=sessions.token(session),
        )
        if new_session:
            sessions.set_cookie(response, session)
        return response

    @router.get("/api/feedback/task")
    def api_feedback_task(request: Request, anchor: str | None = Query(None, max_length=220)):
        """An anchor, its candidates, the task id to answer with and this session's token (the
        session cookie is set here when the client has none)."""
        if not host_policy.allows(request.headers.get("host")):
            return api_error(400, "this server does not answer to that Host name")
        if anchor is None:
            anchor = pick_anchor()
            if anchor is None:
                return api_error(404, "the similarity index is empty")
        if not valid_id(anchor) or not state.in_index(anchor):
            return api_error(404, f"unknown artwork id {anchor!r}", artwork_id=anchor)
        issued, session, new_session = issue_task(request, anchor)
        response = JSONResponse({"anchor_id": anchor, "candidate_ids": list(issued.candidate_ids),
                                 "task_id": issued.task_id, "csrf_token": sessions.token(session)})
        if new_session:
            sessions.set_cookie(response, session)
        return response

    @router.get("/api/feedback")
    def api_feedback_list(limit: int = Query(50, ge=0, le=1000)):
        records = artefacts.read_judgment_records(home)
        return {"count": len(records), "judgments": records[-limit:] if limit else []}

    @router.post("/api/feedback")
    async def api_feedback(request: Request):
        data, is_form, refused = await read_judgment(request, host_policy, sessions, api_error)
        if refused is not None:
            return refused
        issued = tasks.get(data.get("task_id"), sessions.session_of(request))
        if issued is None:
            return api_error(403, "a judgment must answer a task this server issued to this session (and only once)")
        anchor, chosen = data.get("anchor_id") or issued.anchor_id, data.get("chosen_id")
        cands = data.get("candidate_ids") or list(issued.candidate_ids)
        curator = data.get("curator")
        problem = judgment_problem(issued, anchor, cands, chosen, curator, valid_id=valid_id, in_index=state.in_index)
        record = None
        if problem is None:
            try:
                fb.make_judgment(anchor, cands, chosen, curator)  # validate before the task is spent
                if not tasks.consume(issued.task_id):
                    return api_error(403, "this task was already answered")
                record = artefacts.record_judgment(home, anchor, cands, chosen, curator)
                if storage is not None:
                    artefacts.publish_judgments(storage, home)
            except fb.InvalidJudgmentError as exc:
                problem = str(exc)
        if problem is not None:
            return api_error(422, problem)
        if is_form:
            query = urlencode({"curator": record["curator"], "saved": "1", "skip": anchor})
            return RedirectResponse("/feedback?" + query, status_code=303)
        return JSONResponse(record, status_code=201)

    return router


async def read_judgment(request: Request, host_policy: guard.HostPolicy, sessions: guard.Sessions,
                        api_error: Callable[..., JSONResponse]) -> tuple[dict[str, Any] | None, bool, JSONResponse | None]:
    """`(fields, is_form, None)`, or `(None, is_form, the error answer)`: same origin, size
    checked while reading, strictly parsed, the session's token."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = ctype == "application/x-www-form-urlencoded"
    problem = guard.cross_site_problem(request.headers, request.url.scheme, host_policy)
    if problem is not None:
        return None, is_form, api_error(403, problem)
    try:
        body = await guard.read_body(request, MAX_BODY)
        if is_form:
            form = guard.parse_form(body)
            data = {
                "anchor_id": (form.get("anchor_id") or [None])[0],
                "candidate_ids": [c for v in form.get("candidate_ids", []) for c in v.split(",") if c] or None,
                "chosen_id": (form.get("chosen_id") or [None])[0],
                "curator": (form.get("curator") or [""])[0],
                "task_id": (form.get("task_id") or [None])[0],
                guard.CSRF_FIELD: (form.get(guard.CSRF_FIELD) or [None])[0],
            }
        else:
            data = guard.parse_json(body)
            if not isinstance(data, dict):
                raise guard.MalformedBody("the body must be a JSON object")
    except guard.BodyTooLarge:
        return None, is_form, api_error(413, f"request body too large (at most {MAX_BODY} bytes)")
    except guard.MalformedBody as exc:
        return None, is_form, api_error(400, f"unreadable feedback: {exc}")
    session = sessions.session_of(request)
    token = request.headers.get(guard.CSRF_HEADER) or data.get(guard.CSRF_FIELD)
    if not sessions.valid(session, token):
        return None, is_form, api_error(403, "missing or wrong session token: open /feedback (or GET /api/feedback/task) first")
    return data, is_form, None


def judgment_problem(issued: guard.Task, anchor: Any, cands: Any, chosen: Any, curator: Any, *,
                     valid_id: Callable[[Any], bool], in_index: Callable[[str], bool]) -> str | None:
    """Why a judgment cannot be recorded as an answer to `issued` (None: it can)."""
    if not isinstance(cands, list) or not all(valid_id(c) for c in cands):
        return "candidate_ids must be a list of artwork ids"
    if not valid_id(anchor) or not valid_id(chosen):
        return "anchor_id and chosen_id must be artwork ids"
    if curator is not None and not isinstance(curator, str):
        return "curator must be a string"
    if anchor != issued.anchor_id or list(cands) != list(issued.candidate_ids):
        return "anchor_id and candidate_ids must be those of the task"
    if not 2 <= len(cands) <= fb.N_CANDIDATES:
        return f"between 2 and {fb.N_CANDIDATES} candidates are expected"
    unknown = [a for a in [anchor, *cands] if not in_index(a)]
    if unknown:
        return f"not in the index: {', '.join(unknown[:3])}"
    return None
