"""What `raw_images` wants, has and must download, in polars: the image URL of each ok raw
record (parsed only where the URL memo does not know the record's text) and the plan against
the previous table.

The URL memo keeps, per record, ``(source_id, raw_hash, url)``: ``raw_hash`` is polars' hash
of the record's ``raw_json`` (a null ``url``: no image, or an unparseable record). A URL is a
pure function of that text and of the client's URL code, so a memo is reused only under the
same :func:`url_memo_version`.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import polars as pl

from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.text import scrub_surrogates

__all__ = ["URL_MEMO_FORMAT", "URL_MEMO_SCHEMA", "IMAGE_KEY", "record_image_url", "record_urls", "wanted_images",
           "plan_images", "images_table", "url_memo_version"]

URL_MEMO_FORMAT = "1"  # bump to drop every stored memo
URL_MEMO_SCHEMA: dict[str, pl.DataType] = {"source_id": pl.String(), "raw_hash": pl.UInt64(), "url": pl.String()}
_MEMO_KEY = ["source_id", "raw_hash"]
IMAGE_KEY = ("source_id", "url")


def record_image_url(raw: Any, image_url: Callable[[Any], Any]) -> str | None:
    """The image URL of one raw record (storable text), None when it has none or is unparseable."""
    try:
        url = image_url(json.loads(raw))
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None  # an unparseable record is quarantined by validation, not here
    return scrub_surrogates(url)[0] if isinstance(url, str) and url else None  # "\udfff" in a URL: storable


def record_urls(records: pl.DataFrame, image_url: Callable[[Any], Any],
                memo: pl.DataFrame | None) -> tuple[pl.DataFrame, int]:
    """``(source_id, raw_hash, url)`` of ``records`` (``source_id``, ``raw_json``), in their order,
    and how many were parsed: only those whose ``(source_id, raw_hash)`` ``memo`` lacks."""
    keyed = records.select("source_id", "raw_json", pl.col("raw_json").hash(seed=0).alias("raw_hash"))
    if memo is not None and memo.height:
        known = memo.select(*_MEMO_KEY, "url").unique(subset=_MEMO_KEY, keep="first").with_columns(_known=pl.lit(True))
        keyed = keyed.join(known, on=_MEMO_KEY, how="left", maintain_order="left")
    else:
        keyed = keyed.with_columns(url=pl.lit(None, pl.String), _known=pl.lit(None, pl.Boolean))
    todo = keyed["_known"].is_null().arg_true()
    url = keyed["url"].cast(pl.String)
    if len(todo):
        # iterating the Series (polars hands out slices) keeps a cold memo from holding every
        # record's text as Python strings at once
        parsed = [record_image_url(raw, image_url) for raw in keyed["raw_json"].gather(todo)]
        url = url.clone().scatter(todo, pl.Series(parsed, dtype=pl.String))
    return keyed.select("source_id", "raw_hash").with_columns(url=url).cast(URL_MEMO_SCHEMA), len(todo)


def wanted_images(urls: pl.DataFrame) -> pl.DataFrame:
    """``(source_id, url)`` of the records with an image, once each, in the records' order."""
    return urls.filter(pl.col("url").is_not_null()).select(IMAGE_KEY).unique(keep="first", maintain_order=True)


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """`frame` in `schema`'s columns and types (a missing column is null)."""
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in schema.items()])


def plan_images(wanted: pl.DataFrame, previous: pl.DataFrame | None, stored: set[str] | None,
                schema: Mapping[str, pl.DataType]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(reused, to_fetch)``: the previous ok rows with a stored ``path`` (in ``stored`` when
    given) of wanted images, in wanted order, in ``schema``; the other wanted keys, in order."""
    key = list(IMAGE_KEY)
    if previous is None:
        return pl.DataFrame(schema=dict(schema)), wanted.select(key)
    ok = previous.filter((pl.col("status") == "ok") & pl.col("path").is_not_null() & (pl.col("path") != ""))
    if stored is not None:
        ok = ok.filter(pl.col("path").is_in(pl.Series(list(stored), dtype=pl.String)))
    reusable = _conform(ok, schema).unique(subset=key, keep="last", maintain_order=True)
    reused = wanted.select(key).join(reusable, on=key, how="inner", maintain_order="left", nulls_equal=True)
    to_fetch = wanted.select(key).join(reusable.select(key), on=key, how="anti", maintain_order="left", nulls_equal=True)
    return reused.select(list(schema)), to_fetch


def images_table(reused: pl.DataFrame, downloaded: pl.DataFrame, previous: pl.DataFrame | None,
                 wanted: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The whole table: reused and downloaded rows, and the previous rows of objects with no
    wanted image (what is known of them is kept), sorted by ``(source_id, url)``."""
    parts = [reused, _conform(downloaded, schema)]
    if previous is not None:
        ids = wanted["source_id"].unique()
        parts.append(_conform(previous.filter(~pl.col("source_id").is_in(ids)), schema))
    table = pl.concat(parts, how="vertical")
    return table.sort(*IMAGE_KEY) if table.height else pl.DataFrame(schema=dict(schema))


def url_memo_version(client: Any, source: str) -> str:
    """The version a stored URL memo must carry to be reused: this module's format, polars (its
    hash, on this machine type), the client's classes and the instance attributes its
    ``image_url`` reads (SMK's IIIF size, an export's mapping, a snapshot's rules). Only attributes ``image_url`` names itself
    are seen: a client whose URL depends on one that only a helper method reads must name it in
    ``image_url`` (or bump :data:`URL_MEMO_FORMAT`)."""
    names = set(_method_names(type(client).image_url))
    state = {n: v for n, v in sorted(vars(client).items()) if n in names}
    return (f"{URL_MEMO_FORMAT}|{source}|polars {pl.__version__} {platform.machine()}|code {_class_fingerprint(type(client))}"
            f"|state {code_fingerprint(state)}")


def _method_names(function: Any) -> Sequence[str]:
    code = getattr(function, "__code__", None)
    return code.co_names if code is not None else ()


@cache
def _class_fingerprint(cls: type) -> str:
    """The client class and its bases (their URL code), with this module's parsing (cached:
    code does not change while a process runs)."""
    return code_fingerprint(*cls.__mro__, record_image_url, record_urls, wanted_images)
