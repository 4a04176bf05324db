"""Tests for the deterministic stand-in images and the bundled sample collection.

The similarity tests render stand-ins for real Met records of the bundled sample (as stored:
JPEG-encoded and decoded) and compare them with a cheap hand-made descriptor: a coarse colour
histogram (palette), gradient-orientation and spatial-frequency signatures (texture), and flat-area
and edge maps (layout). Pairs that share an artist, a culture or a classification (and differ in
the other two where possible) must be clearly closer than pairs that share no trait at all, both
in the channel that carries the trait and on all channels together.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from artsim_pipeline.sample.standin_images import (
    StandinTraits,
    encode_jpeg,
    normalise_name,
    render_standin,
    traits_from_met,
    traits_from_smk,
)
from artsim_pipeline.sample import (
    SAMPLE_DIR,
    load_sample_raw_lines,
    load_sample_records,
    sample_image_bytes,
)

PAIRS_PER_RELATION = 80

#: Per relation: the descriptor channels that carry its trait, the largest allowed ratio of mean
#: same-trait distance to mean unrelated distance, and the smallest allowed share of
#: (same-trait pair, unrelated pair) combinations in which the same-trait pair is closer.
CHANNEL_CHECKS = {
    "artist": (("colour",), 0.6, 0.85),
    "culture": (("orientation", "frequency"), 0.65, 0.85),
    "classification": (("flatness", "edges"), 0.8, 0.85),
}
#: The same, on all channels at once (a shared trait must still show when the others differ).
COMBINED_CHECK = (0.9, 0.7)


# --------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------


def _channels(img: Image.Image) -> dict[str, np.ndarray]:
    """Cheap hand-made descriptor channels of a stand-in image.

    ``colour``: 4x4x4 RGB histogram of a 32 px thumbnail (palette). ``orientation``: gradient
    orientation histogram weighted by magnitude; ``frequency``: power in radial bands of the
    spectrum (texture). ``flatness``: share of flat pixels per cell of an 8x8 grid; ``edges``:
    gradient magnitude of a 16 px thumbnail (where the shapes and the tonal split are).
    """
    rgb = img.convert("RGB")
    small = np.asarray(rgb.resize((32, 32), Image.BOX), dtype=np.float32) / 255.0
    bins = np.minimum((small * 4).astype(int), 3)
    colour = np.bincount((bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).ravel(), minlength=64).astype(np.float64)
    colour /= colour.sum()

    grey = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    orientation = np.bincount(np.minimum((angle / np.pi * 8).astype(int), 7).ravel(), weights=magnitude.ravel(), minlength=8)
    orientation /= orientation.sum() + 1e-9
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    n = grey.shape[0]
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    radius = np.hypot(yy, xx)
    edges_r = (1, 3, 5, 8, 12, 18, 26, 40)
    frequency = np.array([spectrum[(radius >= lo) & (radius < hi)].sum() for lo, hi in zip(edges_r, edges_r[1:])])
    frequency /= frequency.sum() + 1e-9

    cell = n // 8
    flatness = (magnitude[: cell * 8, : cell * 8] < 0.02).reshape(8, cell, 8, cell).mean(axis=(1, 3)).ravel()
    thumb = np.asarray(rgb.convert("L").resize((16, 16), Image.BOX), dtype=np.float32) / 255.0
    ty, tx = np.gradient(thumb)
    edges = np.hypot(tx, ty).ravel()
    edges /= edges.mean() + 1e-9
    return {"colour": colour, "orientation": orientation, "frequency": frequency, "flatness": flatness, "edges": edges}


@lru_cache(maxsize=None)
def _stored_channels(traits: StandinTraits) -> dict[str, np.ndarray]:
    """Channels of the stand-in as stored (rendered, JPEG-encoded, decoded)."""
    data = encode_jpeg(render_standin(traits))
    return _channels(Image.open(io.BytesIO(data)))


def _channel_distance(a: StandinTraits, b: StandinTraits, channel: str) -> float:
    return float(np.linalg.norm(_stored_channels(a)[channel] - _stored_channels(b)[channel]))


# --------------------------------------------------------------------------------------------
# Pairs mined from the real Met records of the sample
# --------------------------------------------------------------------------------------------


def _keys(t: StandinTraits) -> dict[str, object]:
    return {
        "artist": normalise_name(t.artist),
        "culture": t.culture.casefold().strip(),
        "classification": t.classification.casefold().strip(),
        "tags": {tag.casefold() for tag in t.tags},
    }


def _rank(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@lru_cache(maxsize=1)
def _met_traits() -> list[StandinTraits]:
    return [traits_from_met(r) for r in load_sample_records("met")]


def _pairs(relation: str) -> list[tuple[StandinTraits, StandinTraits]]:
    """Deterministic sample of pairs for ``relation``.

    ``artist``: same artist. ``culture``: same culture, different artist. ``classification``:
    same classification, different artist and culture. ``unrelated``: no shared artist, culture,
    classification or tag.
    """
    traits = _met_traits()
    keyed = [(t, _keys(t)) for t in traits]
    if relation == "unrelated":
        ordered = sorted(keyed, key=lambda tk: _rank("u", tk[0].object_key))
        out = []
        for (a, ka), (b, kb) in zip(ordered[::2], ordered[1::2]):
            shared = any(ka[f] and ka[f] == kb[f] for f in ("artist", "culture", "classification")) or (ka["tags"] & kb["tags"])
            if not shared:
                out.append((a, b))
            if len(out) == PAIRS_PER_RELATION:
                break
        return out
    groups: dict[str, list[tuple[StandinTraits, dict]]] = {}
    for t, k in keyed:
        if k[relation]:
            groups.setdefault(k[relation], []).append((t, k))
    candidates = []
    for members in groups.values():
        for (a, ka), (b, kb) in itertools.combinations(members, 2):
            if relation in ("culture", "classification") and ka["artist"] and ka["artist"] == kb["artist"]:
                continue
            if relation == "classification" and ka["culture"] and ka["culture"] == kb["culture"]:
                continue
            candidates.append((_rank(relation, a.object_key, b.object_key), a, b))
    candidates.sort(key=lambda c: c[0])
    # At most 3 pairs per object, so a few big groups cannot dominate.
    used: dict[str, int] = {}
    out = []
    for _, a, b in candidates:
        if used.get(a.object_key, 0) >= 3 or used.get(b.object_key, 0) >= 3:
            continue
        used[a.object_key] = used.get(a.object_key, 0) + 1
        used[b.object_key] = used.get(b.object_key, 0) + 1
        out.append((a, b))
        if len(out) == PAIRS_PER_RELATION:
            break
    return out


@lru_cache(maxsize=1)
def _unrelated_scale() -> dict[str, float]:
    """Mean distance of unrelated pairs per channel: the unit that puts channels on one scale."""
    pairs = _pairs("unrelated")
    channels = _stored_channels(pairs[0][0]).keys()
    return {c: float(np.mean([_channel_distance(a, b, c) for a, b in pairs])) for c in channels}


def _distances(pairs, channels: tuple[str, ...]) -> np.ndarray:
    """Distance of each pair over ``channels``, each channel in units of its unrelated mean."""
    scale = _unrelated_scale()
    return np.array([
        math.sqrt(sum((_channel_distance(a, b, c) / scale[c]) ** 2 for c in channels)) for a, b in pairs
    ])


def _margin(relation: str, channels: tuple[str, ...]) -> tuple[float, float]:
    """(mean distance ratio, win rate) of ``relation`` pairs against unrelated pairs."""
    same = _distances(_pairs(relation), channels)
    unrelated = _distances(_pairs("unrelated"), channels)
    return float(same.mean() / unrelated.mean()), float((same[:, None] < unrelated[None, :]).mean())


# --------------------------------------------------------------------------------------------
# Tests: rendering
# --------------------------------------------------------------------------------------------

TRAITS = StandinTraits(
    artist="Edgar Degas", culture="French", classification="Paintings", tags=("Horses", "Men"), object_key="met:436121"
)


def test_render_is_deterministic_and_well_formed() -> None:
    first = render_standin(TRAITS)
    second = render_standin(StandinTraits(**TRAITS.__dict__))
    assert first.mode == "RGB" and first.size == (128, 128)
    assert first.tobytes() == second.tobytes()
    assert encode_jpeg(first) == encode_jpeg(second)
    data = encode_jpeg(first, quality=85)
    assert data[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(data)).size == (128, 128)
    assert render_standin(TRAITS, size=97).size == (97, 97)


def test_objects_of_one_artist_differ() -> None:
    other = StandinTraits(**{**TRAITS.__dict__, "object_key": "met:436122"})
    a = np.asarray(render_standin(TRAITS), dtype=np.float32)
    b = np.asarray(render_standin(other), dtype=np.float32)
    assert np.abs(a - b).mean() > 2.0


def test_missing_traits_render() -> None:
    empty = render_standin(StandinTraits(object_key="met:1"))
    other = render_standin(StandinTraits(object_key="met:2"))
    assert empty.size == (128, 128)
    assert empty.tobytes() != other.tobytes()


@pytest.mark.parametrize("relation", sorted(CHANNEL_CHECKS))
def test_shared_trait_shows_in_its_channel(relation: str) -> None:
    """Artist -> palette, culture -> texture, classification -> layout, with a clear margin."""
    assert len(_pairs(relation)) >= PAIRS_PER_RELATION // 2, f"too few {relation} pairs in the sample"
    assert len(_pairs("unrelated")) >= PAIRS_PER_RELATION // 2
    channels, max_ratio, min_win_rate = CHANNEL_CHECKS[relation]
    ratio, win_rate = _margin(relation, channels)
    assert ratio < max_ratio, f"{relation} on {channels}: distance ratio {ratio:.2f}"
    assert win_rate > min_win_rate, f"{relation} on {channels}: win rate {win_rate:.2f}"


@pytest.mark.parametrize("relation", sorted(CHANNEL_CHECKS))
def test_shared_trait_pairs_are_closer_overall(relation: str) -> None:
    """On all channels together, works sharing one trait are still closer than unrelated ones."""
    channels = tuple(_unrelated_scale())
    ratio, win_rate = _margin(relation, channels)
    max_ratio, min_win_rate = COMBINED_CHECK
    assert ratio < max_ratio, f"{relation}: overall distance ratio {ratio:.2f}"
    assert win_rate > min_win_rate, f"{relation}: overall win rate {win_rate:.2f}"


# --------------------------------------------------------------------------------------------
# Tests: trait extraction on real records
# --------------------------------------------------------------------------------------------


def test_traits_from_met_records() -> None:
    records = {r["objectID"]: r for r in load_sample_records("met")}
    koson = traits_from_met(records[53426])
    assert koson.artist == "Ikeda Koson"
    assert koson.culture == "Japan"
    assert koson.classification == "Paintings"
    assert koson.tags == ("Cypresses",)
    assert koson.object_key == "met:53426"
    no_tags = traits_from_met(records[915129])
    assert no_tags.tags == ()
    # Records with an empty classification fall back to objectName.
    fallback = next(r for r in records.values() if not r["classification"] and r["objectName"])
    assert traits_from_met(fallback).classification == fallback["objectName"].strip()


def test_traits_from_smk_items() -> None:
    items = {i["object_number"]: i for i in load_sample_records("smk")}
    kms1 = traits_from_smk(items["KMS1"])
    assert kms1.artist == "Haarlem, Cornelis Cornelisz. van"
    assert kms1.culture == "dutch"
    assert kms1.classification == "Painting"
    assert kms1.object_key == "smk:KMS1"
    unknown = traits_from_smk(items["KMSst28Ø"])
    assert unknown.artist == ""
    assert traits_from_smk(items["KKSgb4085"]).culture == "danish"  # "dansk" in 2019 records
    assert traits_from_smk(items["KKS1982-247"]).culture == "danish"  # "Danish, Danish"
    assert normalise_name("Krøyer, P.S.") == "p.s. krøyer"
    assert normalise_name("Edgar  Degas ") == normalise_name("Degas, Edgar")


# --------------------------------------------------------------------------------------------
# Tests: the built sample
# --------------------------------------------------------------------------------------------


def test_sample_collection_is_built() -> None:
    met = load_sample_records("met")
    assert len(met) >= 1500
    assert len({r["department"] for r in met}) >= 12
    assert len({r["objectID"] for r in met}) == len(met)
    assert {53426, 436535, 437980, 915129} <= {r["objectID"] for r in met}
    raw = load_sample_raw_lines("met")
    assert len(raw) == len(met) and all(line.startswith("{") and "\n" not in line for line in raw)

    smk = load_sample_records("smk")
    numbers = [i["object_number"] for i in smk]
    assert len(numbers) == len(set(numbers)) and "KMS1" in numbers
    kms1 = next(i for i in smk if i["object_number"] == "KMS1")
    assert kms1["modified"].startswith("2026")  # the latest of the two fetches
    with pytest.raises(ValueError):
        load_sample_records("louvre")


def test_sample_images_exist_decode_and_fit() -> None:
    index = json.loads((SAMPLE_DIR / "images" / "index.json").read_text(encoding="utf-8"))
    assert len(index) >= 1000
    for name in sorted(set(index.values())):
        path = SAMPLE_DIR / "images" / name
        assert path.is_file(), name
        with Image.open(path) as img:
            img.load()
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (128, 128)
    met = load_sample_records("met")
    with_image = [r for r in met if r["isPublicDomain"] and r["primaryImageSmall"]]
    assert with_image and all(sample_image_bytes(r["primaryImageSmall"]) for r in with_image)
    assert sample_image_bytes("https://example.org/nothing.jpg") is None
    for item in load_sample_records("smk"):
        if item.get("public_domain") and item.get("image_thumbnail"):
            data = sample_image_bytes(item["image_thumbnail"])
            assert data is not None
            if item.get("image_iiif_id"):
                assert sample_image_bytes(item["image_iiif_id"] + "/full/!1024,/0/default.jpg") == data
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 40 * 1024 * 1024
