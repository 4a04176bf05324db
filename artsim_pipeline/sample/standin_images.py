"""Deterministic stand-in images rendered from artwork metadata.

The museums' image hosts cannot be reached from the machines that build and test artsim, so the
bundled sample collection ships *stand-in* images instead of photographs. Each one is rendered
from its record's metadata so that the visual structure a CNN picks up mirrors the metadata
relations that the weak-label miner uses:

* **artist -> palette**: four colours (background, texture ink, shape fill, accent). Works without
  a known artist take a muted palette from their culture, or else one from the object itself.
* **culture -> texture**: a background pattern (stripes, waves, checks, dots, rings, hatching,
  zigzags, weave) with culture-specific frequency, angle and sharpness. An unknown culture gets a
  lower-contrast pattern of the object's own.
* **classification -> composition**: a calm, shaded region of the ground (a half-plane, a band,
  a vignette, a disc or a margin) and the arrangement, kind, size and aspect of the foreground
  shapes (a single centred shape, a row, a grid, a ring, a diagonal, a pyramid, a frame, ...).
  An unknown classification gets a composition of the object's own.
* **each tag -> a motif glyph** of a tag-specific kind and colour at a tag-specific position.

Per-object noise (palette and geometry jitter, texture phase, low-frequency lighting, grain)
makes every image unique while keeping the shared traits clearly visible at 224 px.

Everything is seeded from SHA-256/SHAKE-256 of the trait strings (never Python's ``hash()``, which
is salted per process), and random numbers come straight from SHAKE-256 output rather than from
a NumPy generator, so a given record renders to the same pixels in every process.

This module is pure logic: no Dagster import, no file read or written (the build script writes the
JPEGs). It lives with the sample because only `scripts/build_sample.py` uses it.
"""

from __future__ import annotations

import colorsys
import hashlib
import html
import io
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "StandinTraits",
    "encode_jpeg",
    "normalise_name",
    "render_standin",
    "traits_from_met",
    "traits_from_smk",
]

#: Creator names SMK uses for unknown makers.
_UNKNOWN_CREATORS = frozenset({"ubekendt", "unknown", "anonym", "anonymous", ""})

#: Danish nationality adjectives used in 2019 SMK records, mapped to the English ones of 2026 and
#: of the Met, so that e.g. "hollandsk" and "Dutch" render the same texture.
_DANISH_NATIONALITIES = {
    "dansk": "danish",
    "hollandsk": "dutch",
    "nederlandsk": "dutch",
    "tysk": "german",
    "fransk": "french",
    "italiensk": "italian",
    "norsk": "norwegian",
    "svensk": "swedish",
    "engelsk": "english",
    "britisk": "british",
    "flamsk": "flemish",
    "spansk": "spanish",
    "amerikansk": "american",
    "russisk": "russian",
    "østrigsk": "austrian",
    "schweizisk": "swiss",
    "belgisk": "belgian",
    "polsk": "polish",
    "finsk": "finnish",
    "islandsk": "icelandic",
}

_MAX_GLYPHS = 8


@dataclass(frozen=True)
class StandinTraits:
    """The metadata that drives a stand-in image.

    ``artist``, ``culture`` and ``classification`` are free text ("" when unknown); ``tags`` are
    subject terms; ``object_key`` identifies the object (e.g. ``met:436535``) and seeds the
    per-object noise.
    """

    artist: str = ""
    culture: str = ""
    classification: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    object_key: str = ""


# --------------------------------------------------------------------------------------------
# Trait extraction
# --------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """Strip a value to text; ``None`` and non-strings other than numbers become ``""``."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        return ""
    return html.unescape(value).strip()


def normalise_name(name: str) -> str:
    """Normalise a person's name so that Met and SMK spellings of a name seed the same palette.

    HTML entities are unescaped, case and whitespace folded, and the SMK form "Surname, Forename"
    is turned into "forename surname" (the Met's order).
    """
    text = unicodedata.normalize("NFC", _text(name)).casefold()
    text = re.sub(r"\s+", " ", text).strip(" ,")
    if text.count(",") == 1:
        surname, forename = (part.strip() for part in text.split(","))
        if surname and forename:
            text = f"{forename} {surname}"
    return text


def _norm_label(value: str) -> str:
    """Fold case and whitespace of a culture, classification or tag label."""
    text = unicodedata.normalize("NFC", _text(value)).casefold()
    return re.sub(r"\s+", " ", text).strip()


def _norm_nationality(value: str) -> str:
    """First nationality of an SMK ``creator_nationality`` ("Danish, Danish" -> "danish")."""
    first = _norm_label(value).split(",")[0].strip()
    return _DANISH_NATIONALITIES.get(first, first)


def _tag_terms(values: Any) -> list[str]:
    """Terms of a tag list whose entries are strings or dicts (``term``/``name``/...)."""
    terms: list[str] = []
    if not isinstance(values, list):
        return terms
    for entry in values:
        if isinstance(entry, dict):
            for key in ("term", "name", "subject", "label", "title"):
                term = _text(entry.get(key))
                if term:
                    break
            else:
                term = ""
        else:
            term = _text(entry)
        if term and term not in terms:
            terms.append(term)
    return terms


def traits_from_met(record: dict) -> StandinTraits:
    """Traits of a Met ``/objects/{id}`` record.

    Artist: first constituent's name, else ``artistDisplayName``. Culture: ``culture``, else
    ``artistNationality``. Classification: ``classification``, else ``objectName``. Tags:
    ``tags[].term`` (``tags`` may be null).
    """
    artist = ""
    constituents = record.get("constituents")
    if isinstance(constituents, list):
        for constituent in constituents:
            if isinstance(constituent, dict) and _text(constituent.get("name")):
                artist = _text(constituent.get("name"))
                break
    if not artist:
        artist = _text(record.get("artistDisplayName"))
    culture = _text(record.get("culture")) or _text(record.get("artistNationality"))
    classification = _text(record.get("classification")) or _text(record.get("objectName"))
    return StandinTraits(
        artist=artist,
        culture=culture,
        classification=classification,
        tags=tuple(_tag_terms(record.get("tags"))),
        object_key=f"met:{_text(record.get('objectID'))}",
    )


def traits_from_smk(item: dict) -> StandinTraits:
    """Traits of an SMK ``/art`` item (2019 or 2026 schema).

    Artist: first ``production[].creator`` that is not "Ubekendt"/"Unknown". Culture: that
    creator's ``creator_nationality`` (first of a list, Danish adjectives translated), else any
    other creator's, else a ``culture``/``nationality`` field. Classification:
    ``object_names[0].name``. Tags: ``content_subject`` and ``tags`` when present.
    """
    artist = ""
    culture = ""
    production = item.get("production")
    productions = [p for p in production if isinstance(p, dict)] if isinstance(production, list) else []
    for entry in productions:
        creator = _text(entry.get("creator"))
        if creator.casefold() not in _UNKNOWN_CREATORS:
            artist = creator
            culture = _text(entry.get("creator_nationality"))
            break
    if not culture:
        for entry in productions:
            culture = _text(entry.get("creator_nationality"))
            if culture:
                break
    if not culture:
        for key in ("culture", "cultures", "nationality"):
            value = item.get(key)
            if isinstance(value, list):
                value = next((v for v in value if _text(v)), "")
            culture = _text(value)
            if culture:
                break
    classification = ""
    object_names = item.get("object_names")
    if isinstance(object_names, list) and object_names:
        first = object_names[0]
        classification = _text(first.get("name") if isinstance(first, dict) else first)
    tags: list[str] = []
    for key in ("content_subject", "tags"):
        for term in _tag_terms(item.get(key)):
            if term not in tags:
                tags.append(term)
    return StandinTraits(
        artist=artist,
        culture=_norm_nationality(culture) if culture else "",
        classification=classification,
        tags=tuple(tags),
        object_key=f"smk:{_text(item.get('object_number'))}",
    )


# --------------------------------------------------------------------------------------------
# Deterministic randomness
# --------------------------------------------------------------------------------------------


class _Stream:
    """Deterministic random numbers from SHAKE-256 of a seed string.

    Every call draws a fresh block keyed by the seed and a counter, so values never depend on the
    Python process, the NumPy version or the platform.
    """

    def __init__(self, *parts: str) -> None:
        self._seed = "\x1f".join(parts).encode("utf-8")
        self._counter = 0

    def _block(self, nbytes: int) -> bytes:
        self._counter += 1
        return hashlib.shake_256(self._seed + b"\x1e" + str(self._counter).encode()).digest(nbytes)

    def uniforms(self, n: int) -> np.ndarray:
        """``n`` floats uniform in [0, 1)."""
        raw = np.frombuffer(self._block(4 * n), dtype="<u4")
        return raw.astype(np.float64) / 4294967296.0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """One float uniform in [low, high)."""
        return low + (high - low) * float(self.uniforms(1)[0])

    def integer(self, low: int, high: int) -> int:
        """One integer in [low, high] (inclusive)."""
        return low + min(int(self.uniform() * (high - low + 1)), high - low)

    def choice(self, options: Sequence[Any]) -> Any:
        """One element of ``options``."""
        return options[self.integer(0, len(options) - 1)]

    def normals(self, n: int) -> np.ndarray:
        """``n`` standard normal floats (Box-Muller)."""
        u = self.uniforms(2 * n).reshape(2, n)
        return np.sqrt(-2.0 * np.log1p(-u[0])) * np.cos(2.0 * math.pi * u[1])


# --------------------------------------------------------------------------------------------
# Trait -> visual parameters
# --------------------------------------------------------------------------------------------

_TEXTURES = ("stripes", "waves", "checks", "dots", "rings", "hatch", "zigzag", "weave")
_ARRANGEMENTS = (
    "single", "row", "column", "grid", "ring", "diagonal", "pyramid", "frame", "scatter", "pair",
)
_SPLITS = ("halfplane", "halfplane", "band", "vignette", "disc", "margin")
_SHAPES = ("ellipse", "rect", "triangle", "diamond", "hexagon", "arch", "cross")
_GLYPHS = ("plus", "x", "star", "ring", "diamond", "bars", "triangle", "dots", "square", "chevron")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _palette(traits: StandinTraits, noise: _Stream) -> np.ndarray:
    """Four RGB colours in [0, 1]: background, texture ink, shape fill, accent."""
    artist = normalise_name(traits.artist)
    culture = _norm_label(traits.culture)
    if artist:
        s = _Stream("palette/artist", artist)
        muted = 1.0
    elif culture:
        s = _Stream("palette/culture", culture)
        muted = 0.75
    else:
        s = _Stream("palette/object", traits.object_key)
        muted = 0.6
    h0 = s.uniform()
    scheme = s.choice(((0.07, 0.14, 0.5), (0.5, 0.08, 0.58), (1 / 3, 2 / 3, 0.1), (0.42, 0.58, 0.0)))
    dark_ground = s.uniform() < 0.35
    sat = s.uniform(0.35, 0.95) * muted
    if dark_ground:
        ground = (h0, sat * 0.8, s.uniform(0.12, 0.3))
        ink = (h0 + scheme[0], sat, s.uniform(0.55, 0.85))
    else:
        ground = (h0, sat * 0.6, s.uniform(0.7, 0.95))
        ink = (h0 + scheme[0], sat, s.uniform(0.2, 0.45))
    fill = (h0 + scheme[1], s.uniform(0.55, 1.0) * muted, s.uniform(0.45, 0.95))
    accent = (h0 + scheme[2], s.uniform(0.6, 1.0), 1.0 - ground[2] * 0.8)
    colours = []
    for h, sv, v in (ground, ink, fill, accent):
        jh, js, jv = noise.normals(3)
        colours.append(_hsv(h + 0.012 * jh, sv + 0.04 * js, v + 0.04 * jv))
    # Keep the texture and the shapes legible whatever the hues: enough luminance contrast
    # against the ground.
    colours[1] = _with_contrast(colours[1], colours[0], 0.4)
    colours[2] = _with_contrast(colours[2], colours[0], 0.25)
    return np.stack(colours)


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _with_contrast(colour: np.ndarray, ref: np.ndarray, min_delta: float) -> np.ndarray:
    """``colour`` with its value pushed away from ``ref`` until their lumas differ by ``min_delta``."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in colour))
    ref_luma = _luma(ref)
    darker = ref_luma > 0.5
    for _ in range(20):
        if abs(_luma(colour) - ref_luma) >= min_delta:
            break
        if darker:
            v = max(0.0, v - 0.05)
        else:
            v = min(1.0, v + 0.05)
            s = max(0.0, s - 0.04)  # a bright, saturated blue is still dark: desaturate too
        colour = _hsv(h, s, v)
    return colour


def _texture(traits: StandinTraits, noise: _Stream, n: int) -> np.ndarray:
    """Background pattern in [0, 1] of shape (n, n).

    The culture fixes the pattern; an unknown culture gets a pattern of the object's own (at a
    lower contrast), so that "unknown" does not become a shared trait.
    """
    culture = _norm_label(traits.culture)
    y, x = _unit_grid(n)
    if culture:
        s = _Stream("texture/culture", culture)
        amp_range = (0.8, 1.0)
    else:
        s = _Stream("texture/object", traits.object_key)
        amp_range = (0.45, 0.7)
    kind = s.choice(_TEXTURES)
    freq = s.uniform(4.0, 12.0) * (1.0 + 0.04 * float(noise.normals(1)[0]))
    angle = s.uniform(0.0, math.pi) + 0.05 * float(noise.normals(1)[0])
    sharp = s.choice((1.0, 3.0, 8.0))
    amp = s.uniform(*amp_range)
    second = s.uniform(0.5, 1.6)
    ph1, ph2 = noise.uniforms(2) * 2.0 * math.pi
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    two_pi_f = 2.0 * math.pi * freq
    if kind == "stripes":
        w = np.sin(two_pi_f * u + ph1)
    elif kind == "waves":
        w = np.sin(two_pi_f * u + 2.2 * np.sin(2.0 * math.pi * freq * 0.45 * second * v + ph2) + ph1)
    elif kind == "checks":
        w = np.sin(two_pi_f * u + ph1) * np.sin(two_pi_f * second * v + ph2) * 2.0
    elif kind == "dots":
        w = np.cos(two_pi_f * u + ph1) + np.cos(two_pi_f * v + ph2) - 0.9
    elif kind == "rings":
        cx, cy = s.uniform(0.2, 0.8), s.uniform(0.2, 0.8)
        r = np.hypot(x - cx, y - cy)
        w = np.sin(two_pi_f * 0.8 * r + ph1)
    elif kind == "hatch":
        w = np.maximum(np.sin(two_pi_f * u + ph1), np.sin(two_pi_f * second * v + ph2))
        w = 2.0 * w - 1.0
    elif kind == "zigzag":
        tri = np.abs(((v * freq * 1.5 * second + ph2 / (2 * math.pi)) % 1.0) - 0.5) * 2.0
        w = np.sin(two_pi_f * u + 3.0 * tri + ph1)
    else:  # weave
        a = np.sin(two_pi_f * u + ph1)
        b = np.sin(two_pi_f * v + ph2)
        w = np.where(np.sin(two_pi_f * 0.5 * u) * np.sin(two_pi_f * 0.5 * v) > 0, a, b)
    t = 0.5 + 0.5 * np.tanh(sharp * w) / math.tanh(sharp)
    return amp * t


@lru_cache(maxsize=8)
def _unit_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates in [0, 1) of an (n, n) grid, float32, read-only."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / np.float32(n)
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


def _smooth_field(noise: _Stream, n: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1] of shape (n, n), bilinear over a ``cells`` grid."""
    grid = noise.uniforms((cells + 1) * (cells + 1)).reshape(cells + 1, cells + 1)
    img = Image.fromarray((grid * 255.0).astype(np.uint8), mode="L").resize((n, n), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class _Composition:
    """Where things go: a tonal split of the ground, and the foreground shapes."""

    split: str
    split_angle: float
    split_offset: float
    shape: str
    boxes: tuple[tuple[float, float, float, float, float], ...]  # cx, cy, w, h, rotation (deg)
    inner: bool


def _composition(traits: StandinTraits, noise: _Stream) -> _Composition:
    """The classification's composition (or an object-specific one when it is unknown)."""
    classification = _norm_label(traits.classification)
    s = _Stream("layout/classification", classification) if classification else _Stream("layout/object", traits.object_key)
    split = s.choice(_SPLITS)
    split_angle = s.uniform(0.0, 2.0 * math.pi) + 0.06 * float(noise.normals(1)[0])
    split_offset = s.uniform(-0.15, 0.15) + 0.03 * float(noise.normals(1)[0])
    inner = s.uniform() < 0.5
    shape, boxes = _layout(s, noise)
    return _Composition(split, split_angle, split_offset, shape, tuple(boxes), inner)


def _split_mask(comp: _Composition, n: int) -> np.ndarray:
    """Soft mask in [0, 1] of the ground region that the composition shades."""
    y, x = _unit_grid(n)
    c, s = math.cos(comp.split_angle), math.sin(comp.split_angle)
    u = (x - 0.5) * c + (y - 0.5) * s
    if comp.split == "halfplane":
        signed = u - comp.split_offset
    elif comp.split == "band":
        signed = 0.14 - np.abs(u - comp.split_offset)
    elif comp.split == "vignette":
        signed = np.hypot(x - 0.5, y - 0.5) - (0.42 + comp.split_offset * 0.5)
    elif comp.split == "disc":
        signed = (0.3 + comp.split_offset * 0.3) - np.hypot(x - 0.5 - 0.5 * comp.split_offset * c, y - 0.5 - 0.5 * comp.split_offset * s)
    else:  # margin
        margin = 0.11 + 0.3 * abs(comp.split_offset)
        signed = np.maximum(np.abs(x - 0.5), np.abs(y - 0.5)) - (0.5 - margin)
    return 0.5 + 0.5 * np.tanh(signed * 20.0)


def _layout(s: _Stream, noise: _Stream) -> tuple[str, list[tuple[float, float, float, float, float]]]:
    """Shape kind and boxes (cx, cy, w, h, rotation in degrees) in unit coordinates.

    ``s`` (the classification's stream) fixes the arrangement; ``noise`` jitters it per object.
    """
    arrangement = s.choice(_ARRANGEMENTS)
    shape = s.choice(_SHAPES)
    aspect = s.choice((0.55, 0.8, 1.0, 1.0, 1.3, 1.8))
    size = s.uniform(0.8, 1.15)
    rot = s.choice((0.0, 0.0, 15.0, 30.0, 45.0))
    cx0, cy0 = s.uniform(0.38, 0.62), s.uniform(0.38, 0.62)
    boxes: list[tuple[float, float, float]] = []  # cx, cy, base size
    if arrangement == "single":
        boxes = [(cx0, cy0, 0.55)]
    elif arrangement == "pair":
        d = s.uniform(0.18, 0.26)
        boxes = [(0.5 - d, cy0, 0.34), (0.5 + d, cy0, 0.34)]
    elif arrangement == "row":
        k = s.integer(3, 4)
        boxes = [(0.15 + 0.7 * i / (k - 1), cy0, 0.7 / k) for i in range(k)]
    elif arrangement == "column":
        k = s.integer(3, 4)
        boxes = [(cx0, 0.15 + 0.7 * i / (k - 1), 0.7 / k) for i in range(k)]
    elif arrangement == "grid":
        k = s.integer(2, 3)
        boxes = [(0.2 + 0.6 * i / (k - 1), 0.2 + 0.6 * j / (k - 1), 0.55 / k) for j in range(k) for i in range(k)]
    elif arrangement == "ring":
        k = s.integer(5, 8)
        boxes = [(0.5 + 0.32 * math.cos(2 * math.pi * i / k), 0.5 + 0.32 * math.sin(2 * math.pi * i / k), 0.17) for i in range(k)]
    elif arrangement == "diagonal":
        k = s.integer(3, 5)
        flip = s.uniform() < 0.5
        boxes = [(0.15 + 0.7 * i / (k - 1), (0.85 - 0.7 * i / (k - 1)) if flip else (0.15 + 0.7 * i / (k - 1)), 0.2) for i in range(k)]
    elif arrangement == "pyramid":
        boxes = [(0.5 + 0.22 * (i - r / 2), 0.25 + 0.25 * r, 0.19) for r in range(3) for i in range(r + 1)]
    elif arrangement == "frame":
        boxes = [(0.5, 0.5, 0.92), (cx0, cy0, 0.28)]
    else:  # scatter: positions fixed by the classification
        k = s.integer(4, 6)
        boxes = [(s.uniform(0.15, 0.85), s.uniform(0.15, 0.85), s.uniform(0.14, 0.26)) for _ in range(k)]
    # Per-object jitter: the whole composition shifts and zooms a little, each shape moves,
    # grows or turns a little.
    shift_x, shift_y, zoom = (float(v) for v in noise.normals(3).clip(-2.0, 2.0) * (0.03, 0.03, 0.05))
    out = []
    for cx, cy, base in boxes:
        j = noise.normals(4)
        side = base * size * (1.0 + zoom) * (1.0 + 0.07 * float(j[2]))
        out.append((
            0.5 + (cx - 0.5) * (1.0 + zoom) + shift_x + 0.025 * float(j[0]),
            0.5 + (cy - 0.5) * (1.0 + zoom) + shift_y + 0.025 * float(j[1]),
            side * math.sqrt(aspect),
            side / math.sqrt(aspect),
            rot + 5.0 * float(j[3]),
        ))
    return (("frame" if arrangement == "frame" else shape), out)


def _polygon(cx: float, cy: float, w: float, h: float, rot: float, points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Unit-box polygon points scaled to (w, h), rotated by ``rot`` degrees about (cx, cy)."""
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    out = []
    for px, py in points:
        dx, dy = px * w / 2.0, py * h / 2.0
        out.append((cx + dx * c - dy * s, cy + dx * s + dy * c))
    return out


def _shape_points(shape: str) -> list[tuple[float, float]]:
    """Outline of a shape inside the box [-1, 1]^2."""
    if shape == "ellipse":
        return [(math.cos(2 * math.pi * i / 36), math.sin(2 * math.pi * i / 36)) for i in range(36)]
    if shape == "rect":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    if shape == "triangle":
        return [(0, -1), (1, 1), (-1, 1)]
    if shape == "diamond":
        return [(0, -1), (1, 0), (0, 1), (-1, 0)]
    if shape == "hexagon":
        return [(math.cos(math.pi * i / 3), math.sin(math.pi * i / 3)) for i in range(6)]
    if shape == "arch":
        return [(-1, 1), (-1, 0)] + [(-math.cos(math.pi * i / 12), -math.sin(math.pi * i / 12)) for i in range(13)] + [(1, 1)]
    # cross
    a = 0.35
    return [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(round(float(c) * 255.0)) for c in np.clip(colour, 0.0, 1.0))
    return (r, g, b)


def _draw_shapes(draw: ImageDraw.ImageDraw, n: int, comp: _Composition, palette: np.ndarray) -> None:
    """Draw the composition's shapes: filled, with an accent outline (and inner outline)."""
    fill, accent, ground = _rgb(palette[2]), _rgb(palette[3]), _rgb(palette[0])
    width = max(2, n // 64)
    shape = comp.shape
    for index, (cx, cy, w, h, rot) in enumerate(comp.boxes):
        if shape == "frame" and index == 0:
            outer = _polygon(cx * n, cy * n, w * n, h * n, rot * 0.2, _shape_points("rect"))
            inner = _polygon(cx * n, cy * n, w * n * 0.72, h * n * 0.72, rot * 0.2, _shape_points("rect"))
            draw.polygon(outer, fill=fill)
            draw.polygon(inner, fill=ground, outline=accent, width=width)
            continue
        kind = "ellipse" if shape == "frame" else shape
        points = _polygon(cx * n, cy * n, w * n, h * n, rot, _shape_points(kind))
        draw.polygon(points, fill=fill, outline=accent, width=width)
        if comp.inner:
            inner = _polygon(cx * n, cy * n, w * n * 0.55, h * n * 0.55, rot, _shape_points(kind))
            draw.polygon(inner, outline=accent, width=width)


def _draw_glyphs(draw: ImageDraw.ImageDraw, n: int, tags: Sequence[str], noise: _Stream, dark: bool) -> None:
    """Draw one motif glyph per tag (kind, colour and position fixed by the tag)."""
    seen: list[str] = []
    for tag in tags:
        label = _norm_label(tag)
        if label and label not in seen:
            seen.append(label)
    for label in sorted(seen)[:_MAX_GLYPHS]:
        s = _Stream("glyph/tag", label)
        kind = s.choice(_GLYPHS)
        cell_x, cell_y = s.integer(0, 5), s.integer(0, 5)
        colour = _rgb(_hsv(s.uniform(), s.uniform(0.75, 1.0), s.uniform(0.85, 1.0)))
        edge = (255, 255, 255) if dark else (20, 20, 20)
        j = noise.normals(3)
        cx = (cell_x + 0.5) / 6.0 * n + 0.012 * n * float(j[0])
        cy = (cell_y + 0.5) / 6.0 * n + 0.012 * n * float(j[1])
        r = s.uniform(0.05, 0.07) * n * (1.0 + 0.06 * float(j[2]))
        lw = max(2, int(round(r * 0.35)))
        if kind in ("plus", "x"):
            rot = 0.0 if kind == "plus" else 45.0
            for a in (rot, rot + 90.0):
                dx, dy = r * math.cos(math.radians(a)), r * math.sin(math.radians(a))
                draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=edge, width=lw + 4)
            for a in (rot, rot + 90.0):
                dx, dy = r * math.cos(math.radians(a)), r * math.sin(math.radians(a))
                draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=lw)
        elif kind == "star":
            pts = [
                (cx + (r if i % 2 == 0 else r * 0.45) * math.cos(math.pi * i / 5 - math.pi / 2),
                 cy + (r if i % 2 == 0 else r * 0.45) * math.sin(math.pi * i / 5 - math.pi / 2))
                for i in range(10)
            ]
            draw.polygon(pts, fill=colour, outline=edge, width=2)
        elif kind == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=edge, width=lw + 4)
            draw.ellipse([cx - r + 2, cy - r + 2, cx + r - 2, cy + r - 2], outline=colour, width=lw)
        elif kind == "diamond":
            draw.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=colour, outline=edge, width=2)
        elif kind == "bars":
            for off in (-0.5, 0.5):
                draw.rectangle([cx + off * r - lw / 2, cy - r, cx + off * r + lw / 2, cy + r], fill=colour, outline=edge, width=2)
        elif kind == "triangle":
            draw.polygon([(cx, cy + r), (cx + r, cy - r * 0.8), (cx - r, cy - r * 0.8)], fill=colour, outline=edge, width=2)
        elif kind == "dots":
            q = r * 0.38
            for ox, oy in ((-0.55, -0.55), (0.55, -0.55), (0.0, 0.5)):
                px, py = cx + ox * r, cy + oy * r
                draw.ellipse([px - q, py - q, px + q, py + q], fill=colour, outline=edge, width=2)
        elif kind == "square":
            q = r * 0.75
            draw.rectangle([cx - q, cy - q, cx + q, cy + q], fill=colour, outline=edge, width=2)
        else:  # chevron
            pts = [(cx - r, cy - r * 0.3), (cx, cy + r * 0.5), (cx + r, cy - r * 0.3)]
            draw.line(pts, fill=edge, width=lw + 4, joint="curve")
            draw.line(pts, fill=colour, width=lw, joint="curve")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def render_standin(traits: StandinTraits, size: int = 128) -> Image.Image:
    """Render the stand-in image of ``traits`` as an RGB ``size`` x ``size`` image.

    Deterministic: the same traits always give the same pixels. Drawn at twice the size and
    box-filtered down, which smooths edges (and keeps JPEGs small).
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    n = 2 * size
    noise = _Stream("object", traits.object_key, traits.artist, traits.culture, traits.classification, *traits.tags)
    palette = _palette(traits, noise)
    comp = _composition(traits, noise)
    dark = _luma(palette[0]) < 0.45
    split = _split_mask(comp, n)[..., None]
    # The split region is calm (the texture fades) and moves away from the ground's tone: darker
    # on light grounds, lighter on dark ones, so the composition shows whatever the palette.
    t = _texture(traits, noise, n)[..., None] * (1.0 - 0.8 * split)
    ground = palette[0].astype(np.float32) * (1.0 - t) + palette[1].astype(np.float32) * t
    shade = 0.45 * split
    ground = ground * (1.0 - shade) + (np.float32(0.95) if dark else np.float32(0.05)) * shade
    canvas = Image.fromarray(np.clip(ground * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    _draw_shapes(draw, n, comp, palette)
    _draw_glyphs(draw, n, traits.tags, noise, dark=dark)
    small = np.asarray(canvas.reduce(2), dtype=np.float32)
    light = 0.88 + 0.24 * _smooth_field(noise, size, cells=3)
    half = (size + 1) // 2
    grain = noise.normals(half * half).astype(np.float32).reshape(half, half)
    grain = np.repeat(np.repeat(grain, 2, axis=0), 2, axis=1)[:size, :size]
    pixels = small * light[..., None] + 4.0 * grain[..., None]
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def encode_jpeg(img: Image.Image, quality: int = 85) -> bytes:
    """Encode an image as baseline JPEG bytes (deterministic: no metadata, optimised tables)."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
