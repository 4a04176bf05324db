"""Synthetic Met collections of any size, made of REAL records, for scale benchmarks.

A collection of ``n`` records takes the real Met ``/objects/{id}`` records of the shared data
(``load_shared_met_records``: ``../shared/data/met``, never the acceptance data) in a fixed
shuffled order, round-robin: record ``i`` is a copy of shuffled real record ``i % R`` (``R``
real records), copy number ``k = i // R``. Every copy gets

* a new ``objectID``: ``(k + 1) * 1,000,000 + <real id>`` (real Met ids are below 1,000,000, so
  ids never collide, and the collection of ``n`` is the first ``n`` records of any larger one);
* new image URLs (``primaryImage``, ``primaryImageSmall``, ``additionalImages``: the file name
  gets an ``s<new id>-`` prefix, the host and folders stay), a new ``objectURL`` and a suffixed
  ``accessionNumber``; every other field is the real record's, verbatim;
* its own image for ``primaryImageSmall`` (the one the pipeline downloads): the real record's
  stand-in (``sample/standin_images.py``, the renderer the bundled sample uses) with a small
  deterministic change (+-3 levels of noise seeded by the new id), re-encoded as JPEG, so
  images are distinct (different sha256) but look like their original.

:func:`write_collection` writes ``met/objects.jsonl`` and the images under ``images/met/`` of a
data directory; :func:`image_server` turns that directory into the replay server's
``image_bytes`` callback; :func:`revise` makes the "1% metadata change" (title and
``metadataDate``) of a deterministic sample of records.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ID_STRIDE = 1_000_000  # real Met objectIDs are below this
IMAGE_HOSTS = ("https://images.metmuseum.org/", "http://images.metmuseum.org/")
NOISE_LEVELS = 3  # the "small deterministic change" to each copy's image, in 8-bit levels


def shared_data_dir() -> Path:
    """The shared data directory the records come from (``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    from artsim_pipeline_tests.replay.server import shared_data_dir as replay_shared_data_dir

    return replay_shared_data_dir()


def load_real_records(limit: int | None = None) -> list[dict]:
    """The real Met records of the shared data, unique by ``objectID`` (see the replay server)."""
    from artsim_pipeline_tests.replay.server import load_shared_met_records

    records = load_shared_met_records(limit)
    if not records:
        raise ValueError("no Met records in the shared data (../shared/data/met or $ARTSIM_SHARED_DATA)")
    too_big = [r["objectID"] for r in records if not 0 < int(r["objectID"]) < ID_STRIDE]
    if too_big:
        raise ValueError(f"real Met ids must be in 1..{ID_STRIDE - 1} to be copied under new ids: {too_big[:5]}")
    return records


def _renamed_url(url: object, new_id: int) -> object:
    """``url`` with ``s<new_id>-`` before its file name (anything not a URL is kept)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    folder, _, name = parts.path.rpartition("/")
    return urlunsplit(parts._replace(path=f"{folder}/s{new_id}-{name}"))


def copy_record(record: dict, copy_number: int) -> dict:
    """Copy ``copy_number`` (0, 1, ...) of a real record under its new id, URLs and accession number."""
    real_id = int(record["objectID"])
    new_id = (copy_number + 1) * ID_STRIDE + real_id
    out = json.loads(json.dumps(record))  # deep copy
    out["objectID"] = new_id
    for key in ("primaryImage", "primaryImageSmall"):
        if key in out:
            out[key] = _renamed_url(out[key], new_id)
    if isinstance(out.get("additionalImages"), list):
        out["additionalImages"] = [_renamed_url(u, new_id) for u in out["additionalImages"]]
    if isinstance(out.get("objectURL"), str) and out["objectURL"]:
        out["objectURL"] = f"https://www.metmuseum.org/art/collection/search/{new_id}"
    if isinstance(out.get("accessionNumber"), str) and out["accessionNumber"]:
        out["accessionNumber"] = f"{out['accessionNumber']}.s{copy_number + 1}"
    return out


def shuffled(real: Sequence[dict]) -> list[dict]:
    """The real records in a fixed pseudo-random order (by sha256 of the id): the shared file is
    grouped by department, so its first few hundred records would all be American Wing works."""
    return sorted(real, key=lambda r: hashlib.sha256(str(int(r["objectID"])).encode()).hexdigest())


def synthetic_records(real: Sequence[dict], n: int) -> list[dict]:
    """``n`` records: copies of the real ones in :func:`shuffled` order, round-robin (see the module
    docstring); record ``i`` copies ``shuffled(real)[i % len(real)]``."""
    if n < 1:
        raise ValueError(f"a collection needs at least one record, got {n}")
    order = shuffled(real)
    return [copy_record(order[i % len(order)], i // len(order)) for i in range(n)]


def image_path(url: str) -> str | None:
    """Where the replay server serves a Met image URL (``images/met/<path>``), None for no image."""
    for host in IMAGE_HOSTS:
        if isinstance(url, str) and url.startswith(host):
            return "images/met/" + url[len(host):]
    return None


def copy_image(real: dict, copy: dict, cache: dict[int, object] | None = None) -> bytes:
    """The JPEG of ``copy``: the stand-in of its ``real`` record, changed by noise seeded by its id."""
    import numpy as np
    from PIL import Image

    from artsim_pipeline.sample.standin_images import encode_jpeg, render_standin, traits_from_met

    key = int(real["objectID"])
    base = cache.get(key) if cache is not None else None
    if base is None:
        base = np.asarray(render_standin(traits_from_met(real)), dtype=np.int16)
        if cache is not None:
            cache[key] = base
    seed = int.from_bytes(hashlib.sha256(str(copy["objectID"]).encode()).digest()[:8], "little")
    noise = np.random.default_rng(seed).integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=base.shape, dtype=np.int16)
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return encode_jpeg(Image.fromarray(pixels, mode="RGB"))


def write_collection(data_dir: Path, n: int, real: Sequence[dict] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Write a collection of ``n`` records to ``data_dir``: ``met/objects.jsonl`` and one JPEG per
    ``primaryImageSmall`` under ``images/met/``. Returns the records (in file order)."""
    real = shuffled(real if real is not None else load_real_records())
    records = synthetic_records(real, n)
    (data_dir / "met").mkdir(parents=True, exist_ok=True)
    cache: dict[int, object] = {}
    with (data_dir / "met" / "objects.jsonl").open("w", encoding="utf-8") as fh:
        for i, record in enumerate(records):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            rel = image_path(record.get("primaryImageSmall") or "")
            if rel is not None:
                path = data_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(copy_image(real[i % len(real)], record, cache))
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1, n)
    return records


def read_collection(data_dir: Path, limit: int | None = None) -> list[dict]:
    """The records :func:`write_collection` wrote (the first ``limit``)."""
    out = []
    with (data_dir / "met" / "objects.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and len(out) >= limit:
                break
            out.append(json.loads(line))
    return out


def image_server(data_dir: Path) -> Callable[[str], bytes]:
    """The replay server's ``image_bytes``: ``/images/met/<path>`` read from ``data_dir``; b""
    (a 404) for anything not written there."""
    root = data_dir.resolve()

    def image_bytes(path: str) -> bytes:
        target = (root / path.lstrip("/")).resolve()
        if root not in target.parents or not target.is_file():
            return b""
        return target.read_bytes()

    return image_bytes


def met_timestamp(when: datetime) -> str:
    """``when`` in the Met's ``metadataDate`` style (``2023-02-07T04:46:51.34Z``, UTC, ms)."""
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def revised_ids(records: Iterable[dict], fraction: float) -> list[int]:
    """A deterministic ``fraction`` of the ids (at least one): the lowest by sha256 of the id."""
    ids = [int(r["objectID"]) for r in records]
    count = max(1, math.ceil(len(ids) * fraction))
    return sorted(ids, key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())[:count]


def revise(records: Sequence[dict], fraction: float, when: datetime | None = None) -> list[dict]:
    """Revised copies of a ``fraction`` of ``records``: the title gains `` (revised)`` and
    ``metadataDate`` is ``when`` (default now), as a curator's edit shows in the Met API."""
    chosen = set(revised_ids(records, fraction))
    stamp = met_timestamp(when or datetime.now(timezone.utc))
    out = []
    for record in records:
        if int(record["objectID"]) in chosen:
            revised = dict(record)
            revised["title"] = f"{record.get('title') or ''} (revised)".strip()
            revised["metadataDate"] = stamp
            out.append(revised)
    return out
