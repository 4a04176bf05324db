"""The collection map at any scale: binary point chunks, a small JSON manifest, details apart.

The single-file page (:func:`artsim_pipeline.core.collection_map.render_map_html`) embeds every
title and thumbnail in one JSON string, which browsers cannot parse past a few hundred thousand
works. Here the map is split into what the browser needs to draw and what it asks for on demand:

- **chunks** (``bytes``): per point ``x``, ``y`` (float32), ``row`` (uint32: the point's row of
  the details table), ``thumb`` (uint8: 1 when it has an image) and one colour code per colour
  field (uint8, or uint16 past 254 names; the largest value of the type means "unknown"), each
  array 4-byte aligned, little-endian. Points are dealt into chunks in a seeded random order, so
  every chunk is an even sample of the whole map: the first one drawn already shows the map's
  shape (a level of detail), the others fill it in;
- **manifest** (a small JSON document): the count, bounds, legends (colour names per field), and
  per chunk its name (a content hash), point count, size and array offsets;
- **details** (a frame, one row per point): id, title, maker, date, museum, landing page and
  image path, fetched one point at a time when hovered or clicked, and the thumbnails by row.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.collection_map import _categories, _text_column
from artsim_pipeline.core.sources import SOURCES, source_label

FORMAT = "artsim-map/1"
CHUNK_POINTS = 65_536  # ~1 MB per chunk: the first one arrives and draws well within a second
COLOUR_FIELDS = ("museum", "department", "cluster")

DETAILS_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.UInt32(),
    "artwork_id": pl.String(),
    "title": pl.String(),
    "maker": pl.String(),
    "date": pl.String(),
    "museum": pl.String(),
    "landing_url": pl.String(),
    "image_path": pl.String(),
    "x": pl.Float32(),
    "y": pl.Float32(),
}


def _align(n: int) -> int:
    return (n + 3) // 4 * 4


def _colour_fields(points: pl.DataFrame, ids: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per colour field: (legend names, code per point; -1 unknown)."""
    source = _text_column(points, "source")
    if all(s is None for s in source):
        source = [a.split(":", 1)[0] if ":" in a else None for a in ids]
    fields: dict[str, list[str | None]] = {"museum": source}
    if "department" in points.columns:
        fields["department"] = _text_column(points, "department")
    if "cluster" in points.columns:
        fields["cluster"] = [None if v is None else f"cluster {v}" for v in points["cluster"].to_list()]
    out = {}
    for name, values in fields.items():
        names, codes = _categories(values, SOURCES if name == "museum" else ())
        if name == "museum":
            names = [f"{source_label(key)} ({key})" if source_label(key) != key else key for key in names]
        out[name] = (names, np.asarray(codes, np.int64))
    return out


def _code_array(codes: np.ndarray, n_names: int) -> tuple[np.ndarray, str, int]:
    """Codes as uint8 (< 255 names) or uint16, names past the type's room folded into unknown;
    returns (array, dtype name, the unknown value)."""
    dtype, unknown = (np.uint8, 255) if n_names < 255 else (np.uint16, 65535)
    out = np.where((codes < 0) | (codes >= unknown), unknown, codes).astype(dtype)
    return out, np.dtype(dtype).name, unknown


def build_chunked_map(
    points: pl.DataFrame,
    *,
    chunk_points: int = CHUNK_POINTS,
    seed: int = 0,
    title: str = "artsim collection map",
    method: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes], pl.DataFrame]:
    """``(manifest, chunks by name, details)`` for ``points``.

    ``points``: ``artwork_id``, ``x``, ``y`` and optionally ``source``, ``department``,
    ``cluster`` (the colour fields), ``title``, ``artists`` (list) or ``maker``, ``date_text``,
    ``landing_url`` (kept only when http(s)), ``image_path`` (a stored image's path, served as
    the point's thumbnail). ``extra`` entries are added to the manifest (e.g. how the layout was made).
    """
    if chunk_points < 1:
        raise ValueError("chunk_points must be >= 1")
    for col in ("artwork_id", "x", "y"):
        if col not in points.columns:
            raise ValueError(f"points needs a {col!r} column")
    ids = [str(a) for a in points["artwork_id"].to_list()]
    if len(set(ids)) != len(ids):
        raise ValueError("artwork ids must be unique")
    n = len(ids)
    x = points["x"].cast(pl.Float32).to_numpy().astype(np.float32)
    y = points["y"].cast(pl.Float32).to_numpy().astype(np.float32)
    if n and not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite numbers")
    colours = _colour_fields(points, ids)
    coded = {name: _code_array(codes, len(names)) for name, (names, codes) in colours.items()}
    has_thumb = np.asarray([bool(v) for v in _text_column(points, "image_path")], np.uint8)
    order = np.random.default_rng(seed).permutation(n).astype(np.uint32)
    chunks: dict[str, bytes] = {}
    entries = []
    for start in range(0, n, chunk_points):
        rows = order[start:start + chunk_points]
        arrays = [("x", x[rows]), ("y", y[rows]), ("row", rows), ("thumb", has_thumb[rows])]
        arrays += [(f, coded[f][0][rows]) for f in coded]
        layout, parts, offset = {}, [], 0
        for name, values in arrays:
            data = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
            layout[name] = {"offset": offset, "dtype": values.dtype.name}
            parts.append(data + b"\0" * (_align(len(data)) - len(data)))
            offset += _align(len(data))
        blob = b"".join(parts)
        name = f"{hashlib.sha256(blob).hexdigest()[:24]}.bin"
        chunks[name] = blob
        entries.append({"file": name, "n": int(len(rows)), "bytes": len(blob), "arrays": layout})
    bounds = [float(x.min()), float(y.min()), float(x.max()), float(y.max())] if n else [0.0, 0.0, 0.0, 0.0]
    manifest = {
        "format": FORMAT,
        "title": title,
        "method": method,
        "n": n,
        "bounds": [round(b, 6) if math.isfinite(b) else 0.0 for b in bounds],
        "colourBy": {f: {"names": colours[f][0], "dtype": coded[f][1], "unknown": coded[f][2]} for f in coded},
        "chunks": entries,
        **(extra or {}),
    }
    return manifest, chunks, _details(points, ids, x, y)


def _details(points: pl.DataFrame, ids: list[str], x: np.ndarray, y: np.ndarray) -> pl.DataFrame:
    maker_col = "artists" if "artists" in points.columns else "maker"
    source = _text_column(points, "source")
    return pl.DataFrame(
        {
            "row": np.arange(len(ids), dtype=np.uint32),
            "artwork_id": ids,
            "title": _text_column(points, "title"),
            "maker": _text_column(points, maker_col),
            "date": _text_column(points, "date_text"),
            "museum": [s or (a.split(":", 1)[0] if ":" in a else None) for s, a in zip(source, ids, strict=True)],
            "landing_url": [u if u and u.startswith(("http://", "https://")) else None
                            for u in _text_column(points, "landing_url")],
            "image_path": _text_column(points, "image_path"),
            "x": x,
            "y": y,
        },
        schema=DETAILS_SCHEMA,
    )


def manifest_json(manifest: dict[str, Any]) -> bytes:
    """The manifest as compact UTF-8 JSON (no NaN)."""
    return json.dumps(manifest, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_chunk(blob: bytes, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one chunk (the inverse of :func:`build_chunked_map`'s encoding), by name."""
    out = {}
    for name, spec in entry["arrays"].items():
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        out[name] = np.frombuffer(blob, dtype=dtype, count=int(entry["n"]), offset=int(spec["offset"]))
    return out


def point_details(details_row: dict[str, Any], neighbours: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What the map shows for one point (JSON-ready): its details row without the image path,
    whether it has a thumbnail, and its nearest works on the map (rows, ids, titles, makers)."""
    row = {k: v for k, v in details_row.items() if k != "image_path"}
    row["x"], row["y"] = float(row["x"]), float(row["y"])
    row["has_thumb"] = bool(details_row.get("image_path"))
    row["neighbours"] = list(neighbours)
    return row
