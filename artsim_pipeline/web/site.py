"""What every page and route of `artsim serve` shares: the templates, how a work is shown
(:meth:`Site.view`), the error answers, and what two works have in common (:func:`shared_metadata`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from artsim_pipeline.core.names import artist_keys
from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.web.state import AppState

TEMPLATES_DIR = Path(__file__).parent / "templates"
ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}:[^\x00-\x1f\x7f<>\"'`\\]{1,200}$")
SHA_RE = re.compile(r"^([0-9a-f]{64})(?:\.(?:jpg|jpeg|png|webp|gif))?$")
MAX_K = 100


def valid_id(artwork_id: Any) -> bool:
    """An artwork id the app accepts: ``<source>:<source id>``, printable, no markup characters."""
    return isinstance(artwork_id, str) and bool(ID_RE.match(artwork_id))


def check_source(source: str | None) -> str | None:
    """A museum parameter: None when empty, else one of the registry's (ValueError otherwise)."""
    source = (source or "").strip() or None
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    return source


def api_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "detail": message, **extra}, status_code=status)


class Site:
    """The templates (autoescaped Jinja2) and the view of a work, over the app's state."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def page(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status_code)

    def not_found(self, message: str) -> HTMLResponse:
        return self.page("error.html", status_code=404, status=404, heading="Not found", message=message)

    def view(self, artwork_id: str, extra: dict[str, Any] | None = None, row: dict[str, Any] | None = None) -> dict[str, Any]:
        """A work as the templates show it: its artworks row (`row` when already read, or just
        its id when it has none), links, image."""
        row = dict(row or self.state.works().get(artwork_id) or {"artwork_id": artwork_id})
        row.setdefault("source", artwork_id.split(":", 1)[0])
        row["artists"] = [a for a in (row.get("artists") or []) if a]
        row["tags"] = [t for t in (row.get("tags") or []) if t]
        row["image_src"] = _image_src(row)
        row["href"] = "/work/" + quote(artwork_id, safe=":")
        row["landing_href"] = _safe_http(row.get("landing_url"))
        if extra:
            row.update(extra)
        return row


def _image_src(row: dict[str, Any]) -> str | None:
    sha = row.get("image_sha256")
    return f"/images/{sha}" if isinstance(sha, str) and SHA_RE.match(sha) else None


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
