#!/usr/bin/env python
"""Build the bundled sample collection under ``artsim_pipeline/sample/``.

Reads the real API records in the shared data folder (``<repo>/../shared/data`` unless
``--shared DIR`` is given) and writes:

* ``met_objects.jsonl.gz``: a deterministic selection of Met ``/objects/{id}`` records, each line
  the record's JSON text exactly as in the source file. All records of small departments and a
  sample of large ones (mostly records whose maker, culture or tags recur, so that weak pairs
  exist, plus a hash-random share of the rest); the records of ``objects_exact.jsonl`` are always
  included and replace their flattened copies in ``objects.jsonl``.
* ``smk_objects.jsonl.gz``: every unique SMK item of ``smk/responses/*.json``, deduplicated by
  ``object_number`` keeping the latest ``modified``; each line is the item's JSON text exactly as
  it appears inside its response body.
* ``<source>_objects.jsonl.gz`` for every other API source of the registry (``API_ORIGINS`` says
  where its records are: ``cma``: every record of ``cleveland/artworks.jsonl``, each line as in
  the file; ``aic``: the 21 records of ``aic/``, each in the stored shape of the AIC client,
  ``{"data": ..., "info": ..., "config": ...}``, with the licence and IIIF root of its answer).
  A registry API source without an origin stops the build.
* ``images/<sha256(url)[:24]>.jpg``: a stand-in image (see
  :mod:`artsim_pipeline.sample.standin_images`) for every public-domain record with an image URL
  (Met ``primaryImageSmall``, SMK ``image_thumbnail``; the other sources: the URL their live
  client downloads, with the traits read from the record normalised by the registry's
  normaliser), and ``images/index.json`` mapping each image URL to its file name. Aliases map to the same file: the Met ``primaryImage`` and the SMK
  IIIF URL ``<image_iiif_id>/full/!1024,/0/default.jpg``.
* ``exports/<source>/``: the collection exports of the source registry, copied verbatim (quirks
  kept: bytes that are not UTF-8, broken maker lists, file names with spaces) from the shared folder
  (``EXPORT_ORIGINS``); the ``mapping.toml`` beside them is written by hand and left alone. Files
  no longer in the shared export are removed.

The build is byte-reproducible: gzip members carry ``mtime=0`` and no file name, JSON is written
with sorted keys, and the images are rendered deterministically. Stale images are removed.

Usage: ``python scripts/build_sample.py [--shared DIR] [--out DIR] [--met-target N] [--jobs N]``
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from artsim_pipeline import settings  # noqa: E402
from artsim_pipeline.sample.standin_images import (  # noqa: E402
    StandinTraits,
    _norm_nationality,
    encode_jpeg,
    normalise_name,
    render_standin,
    traits_from_met,
    traits_from_smk,
)

#: Where each collection export of the registry comes from, under the shared data folder.
EXPORT_ORIGINS: dict[str, str] = {"met_medialab": "real_photos/met_medialab"}
#: Files of an export folder that are ours, not the export's.
EXPORT_OWN_FILES = {"mapping.toml"}

IMAGE_SIZE = 128
JPEG_QUALITY = 85
#: Share of a large department's quota filled with the best-scoring (most "pairable") records;
#: the rest is a hash-random draw from the others, so singletons are represented too.
PREFERRED_SHARE = 0.75


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_jsonl_lines(path: Path) -> list[tuple[str, dict]]:
    """(verbatim text, parsed record) for each non-empty line of a JSONL file."""
    out = []
    with path.open("r", encoding="utf-8", newline="") as handle:
        for line in handle:
            text = line.rstrip("\r\n")
            if text.strip():
                out.append((text, json.loads(text)))
    return out


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def iter_item_texts(body: str) -> Iterator[str]:
    """Yield the verbatim JSON text of each element of the top-level ``items`` array of ``body``.

    Walks the top-level object with :meth:`json.JSONDecoder.raw_decode`, which reports where
    each value ends, so every item is sliced out of the body exactly as the API sent it.
    """
    decoder = json.JSONDecoder()
    pos = _skip_ws(body, 0)
    if body[pos : pos + 1] != "{":
        raise ValueError("response body is not a JSON object")
    pos = _skip_ws(body, pos + 1)
    while pos < len(body) and body[pos] != "}":
        key, pos = decoder.raw_decode(body, pos)
        pos = _skip_ws(body, pos)
        if body[pos] != ":":
            raise ValueError(f"expected ':' at {pos}")
        pos = _skip_ws(body, pos + 1)
        if key == "items" and body[pos] == "[":
            pos = _skip_ws(body, pos + 1)
            while body[pos] != "]":
                start = pos
                _, pos = decoder.raw_decode(body, pos)
                yield body[start:pos]
                pos = _skip_ws(body, pos)
                if body[pos] == ",":
                    pos = _skip_ws(body, pos + 1)
            pos += 1
        else:
            _, pos = decoder.raw_decode(body, pos)
        pos = _skip_ws(body, pos)
        if body[pos] == ",":
            pos = _skip_ws(body, pos + 1)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def _stable_rank(*parts: Any) -> str:
    """A stable pseudo-random sort key."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def _quota(sizes: dict[str, int], target: int) -> dict[str, int]:
    """Water-filling: the largest per-department cap whose total stays within ``target``."""
    if sum(sizes.values()) <= target:
        return dict(sizes)
    low, high = 0, max(sizes.values())
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(n, cap) for n in sizes.values()) <= target:
            low = cap
        else:
            high = cap - 1
    return {dept: min(n, low) for dept, n in sizes.items()}


def select_met(objects: list[tuple[str, dict]], exact: list[tuple[str, dict]], target: int) -> list[tuple[str, dict]]:
    """Pick about ``target`` Met records deterministically (see the module docstring)."""
    exact_ids = {record["objectID"] for _, record in exact}
    pool = [(text, record) for text, record in objects if record["objectID"] not in exact_ids]
    traits = {record["objectID"]: traits_from_met(record) for _, record in pool}
    artist_n = Counter(normalise_name(t.artist) for t in traits.values() if t.artist)
    culture_n = Counter(t.culture.casefold() for t in traits.values() if t.culture)
    tag_n = Counter(tag.casefold() for t in traits.values() for tag in set(t.tags))

    def score(record: dict) -> int:
        t = traits[record["objectID"]]
        value = 0
        if t.artist and artist_n[normalise_name(t.artist)] >= 2:
            value += 3
        if t.culture and culture_n[t.culture.casefold()] >= 2:
            value += 1
        if any(tag_n[tag.casefold()] >= 2 for tag in t.tags):
            value += 1
        return value

    by_dept: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for item in pool:
        by_dept[item[1]["department"]].append(item)
    quota = _quota({d: len(v) for d, v in by_dept.items()}, max(0, target - len(exact)))
    chosen: list[tuple[str, dict]] = list(exact)
    for dept in sorted(by_dept):
        members = by_dept[dept]
        k = quota[dept]
        if k >= len(members):
            chosen.extend(members)
            continue
        ranked = sorted(members, key=lambda it: (-score(it[1]), _stable_rank("met", it[1]["objectID"])))
        preferred = ranked[: int(round(k * PREFERRED_SHARE))]
        taken = {it[1]["objectID"] for it in preferred}
        rest = sorted((it for it in members if it[1]["objectID"] not in taken), key=lambda it: _stable_rank("met-rest", it[1]["objectID"]))
        chosen.extend(preferred + rest[: k - len(preferred)])
    return sorted(chosen, key=lambda it: it[1]["objectID"])


def collect_smk(responses: Path) -> list[tuple[str, dict]]:
    """Every unique SMK item of the response files, latest ``modified`` per ``object_number``."""
    best: dict[str, tuple[tuple[str, str, int], str, dict]] = {}
    for path in sorted(responses.glob("*.json")):
        body = path.read_text(encoding="utf-8")
        for index, text in enumerate(iter_item_texts(body)):
            item = json.loads(text)
            number = item.get("object_number")
            if not number:
                continue
            rank = (str(item.get("modified") or ""), path.name, index)
            if number not in best or rank > best[number][0]:
                best[number] = (rank, text, item)
    return [(text, item) for _, (_, text, item) in sorted(best.items())]


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _sample_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def collect_cma(shared: Path) -> list[tuple[str, dict]]:
    """Every Cleveland record of ``cleveland/artworks.jsonl`` (unique by ``id``, file order kept)."""
    seen: dict[Any, tuple[str, dict]] = {}
    for text, record in read_jsonl_lines(shared / "cleveland" / "artworks.jsonl"):
        seen.setdefault(record.get("id"), (text, record))
    return list(seen.values())


def collect_aic(shared: Path) -> list[tuple[str, dict]]:
    """The AIC records (the full single-object answer and the 20 of the listing page), each as the
    client stores it: ``{"data": <record>, "info": <licence>, "config": <iiif_url>}``."""
    out: list[tuple[str, dict]] = []
    for path in sorted((shared / "aic").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        items = body["data"] if isinstance(body["data"], list) else [body["data"]]
        for item in items:
            envelope = {"data": item, "info": body.get("info"), "config": body.get("config")}
            out.append((_sample_line(envelope), envelope))
    unique = {record["data"]["id"]: (text, record) for text, record in out}
    return [unique[key] for key in sorted(unique)]


#: Where each API source of the registry gets its sample records (besides the Met, selected
#: from two files, and SMK, from its response bodies).
API_ORIGINS = {"smk": lambda shared: collect_smk(shared / "smk" / "responses"), "cma": collect_cma, "aic": collect_aic}


def traits_from_artwork(row: dict) -> StandinTraits:
    """Traits of a normalised ``artworks`` row: first maker, culture, classification, tags (the
    sources added through the registry; the Met and SMK keep their record readers)."""
    artists = row.get("artists") or []
    return StandinTraits(
        artist=artists[0] if artists else "",
        culture=_norm_nationality(row.get("culture") or "") if row.get("culture") else "",
        classification=row.get("classification") or "",
        tags=tuple(row.get("tags") or ()),
        object_key=row["artwork_id"],
    )


def registry_images(source: str, records: list[tuple[str, dict]]) -> list[tuple[str, StandinTraits]]:
    """(image URL, traits) of each record of ``source`` its live client would download an image
    for: the URL by the client's rule, the traits from the record normalised by the registry."""
    import polars as pl

    from artsim_pipeline.core.normalise import normalise
    from artsim_pipeline.resources.clients.registry import client_class

    rules = client_class(source)
    urls = {}
    for text, record in records:
        url = rules.public_image_url(record)
        if url:
            urls[rules.record_key(record)] = url
    raw = pl.DataFrame({"source_id": [rules.record_key(r) for _, r in records],
                        "raw_json": [rules.snapshot_text(r, t) for t, r in records], "status": ["ok"] * len(records)})
    artworks, _ = normalise(source, raw)
    rows = {row["source_id"]: row for row in artworks.iter_rows(named=True)}
    return [(url, traits_from_artwork(rows[key])) for key, url in urls.items() if key in rows]


def image_file_name(url: str) -> str:
    """File name of the stand-in for ``url``: first 24 hex digits of its SHA-256, ``.jpg``."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24] + ".jpg"


def smk_iiif_url(iiif_id: str) -> str:
    """The SMK IIIF URL of a 1024-px-wide rendition."""
    return f"{iiif_id.rstrip('/')}/full/!1024,/0/default.jpg"


def plan_images(met: list[tuple[str, dict]], smk: list[tuple[str, dict]],
                others: dict[str, list[tuple[str, dict]]] | None = None) -> tuple[dict[str, StandinTraits], dict[str, str]]:
    """(file name -> traits to render, URL -> file name). The first record claiming a URL wins."""
    render: dict[str, StandinTraits] = {}
    index: dict[str, str] = {}

    def add(primary: str, aliases: list[str], traits: StandinTraits) -> None:
        name = index.get(primary) or image_file_name(primary)
        index.setdefault(primary, name)
        render.setdefault(name, traits)
        for alias in aliases:
            if alias:
                index.setdefault(alias, name)

    for _, record in met:
        url = record.get("primaryImageSmall") or ""
        if record.get("isPublicDomain") is True and url:
            add(url, [record.get("primaryImage") or ""], traits_from_met(record))
    for _, item in smk:
        url = item.get("image_thumbnail") or ""
        if item.get("public_domain") is True and url:
            iiif = item.get("image_iiif_id") or ""
            add(url, [smk_iiif_url(iiif)] if iiif else [], traits_from_smk(item))
    for source, records in sorted((others or {}).items()):
        for url, traits in registry_images(source, records):
            add(url, [], traits)
    return render, index


def _render_one(job: tuple[str, StandinTraits]) -> tuple[str, bytes]:
    name, traits = job
    return name, encode_jpeg(render_standin(traits, size=IMAGE_SIZE), quality=JPEG_QUALITY)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def gzip_lines(lines: list[str]) -> bytes:
    """Reproducible gzip of newline-terminated lines (``mtime=0``, no file name)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        for line in lines:
            handle.write(line.encode("utf-8") + b"\n")
    return buffer.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` unless the file already holds it; True when written."""
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def copy_exports(shared: Path, out: Path) -> dict[str, int]:
    """Copy every export of ``EXPORT_ORIGINS`` verbatim into ``out/exports/<source>/``."""
    from artsim_pipeline.core.sources import EXPORT_SOURCES

    missing = set(EXPORT_SOURCES) - set(EXPORT_ORIGINS)
    if missing:
        raise SystemExit(f"no shared origin for export source(s) {', '.join(sorted(missing))}: add them to EXPORT_ORIGINS")
    files = written = removed = 0
    for source, origin in sorted(EXPORT_ORIGINS.items()):
        src, dst = shared / origin, out / "exports" / source
        if not src.is_dir():
            raise SystemExit(f"no shared export {src} for source {source}")
        wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file() and p.name != "README.md"}
        for rel in sorted(wanted):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            written += write_if_changed(dst / rel, (src / rel).read_bytes())
        files += len(wanted)
        for path in sorted(dst.rglob("*"), reverse=True):
            rel = path.relative_to(dst)
            if path.is_file() and rel not in wanted and rel.name not in EXPORT_OWN_FILES:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not (dst / "mapping.toml").is_file():
            raise SystemExit(f"{dst / 'mapping.toml'} is missing: an export needs its mapping (see the README)")
    return {"export_files": files, "export_files_written": written, "export_files_removed": removed}


def build(shared: Path, out: Path, met_target: int, jobs: int) -> dict[str, Any]:
    """Build the sample into ``out`` and return summary statistics."""
    started = time.monotonic()
    met = select_met(
        read_jsonl_lines(shared / "met" / "objects.jsonl"),
        read_jsonl_lines(shared / "met" / "objects_exact.jsonl"),
        met_target,
    )
    from artsim_pipeline.core.sources import API_SOURCES

    missing = [source for source in API_SOURCES if source != "met" and source not in API_ORIGINS]
    if missing:
        raise SystemExit(f"no sample origin for API source(s) {', '.join(missing)}: add them to API_ORIGINS")
    collected = {source: API_ORIGINS[source](shared) for source in API_SOURCES if source != "met"}
    smk = collected["smk"]
    others = {source: records for source, records in collected.items() if source != "smk"}
    render, index = plan_images(met, smk, others)

    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    write_if_changed(out / "met_objects.jsonl.gz", gzip_lines([text for text, _ in met]))
    for source, records in collected.items():
        write_if_changed(out / f"{source}_objects.jsonl.gz", gzip_lines([text for text, _ in records]))

    jobs_list = sorted(render.items())
    written = 0
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = pool.map(_render_one, jobs_list, chunksize=32)
            for name, data in results:
                written += write_if_changed(images_dir / name, data)
    else:
        for job in jobs_list:
            name, data = _render_one(job)
            written += write_if_changed(images_dir / name, data)
    index_text = json.dumps(index, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_if_changed(images_dir / "index.json", index_text.encode("utf-8"))
    stale = [p for p in images_dir.iterdir() if p.suffix == ".jpg" and p.name not in render]
    for path in stale:
        path.unlink()
    exports = copy_exports(shared, out)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py")
    return {
        "met_records": len(met),
        "met_departments": len({record["department"] for _, record in met}),
        **{f"{source}_records": len(records) for source, records in collected.items()},
        "images": len(render),
        "index_urls": len(index),
        "images_written": written,
        "stale_removed": len(stale),
        **exports,
        "data_mb": round(total / 1e6, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=settings.shared_data_dir(),
                        help="shared data folder (default: $ARTSIM_SHARED_DATA, else <repo>/../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "artsim_pipeline" / "sample", help="output folder (default: artsim_pipeline/sample)")
    parser.add_argument("--met-target", type=int, default=2000, help="number of Met records to select (default: 2000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="render processes (default: all cores)")
    args = parser.parse_args(argv)
    if not (args.shared / "met" / "objects.jsonl").is_file():
        parser.error(f"no met/objects.jsonl under {args.shared}")
    stats = build(args.shared, args.out, args.met_target, max(1, args.jobs))
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
