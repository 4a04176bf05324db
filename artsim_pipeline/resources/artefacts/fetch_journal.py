"""The fetch journal: what a crashed `raw_objects` run had already fetched, compressed, emptied once stored.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import base64
import functools
import json
import os
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from artsim_pipeline.core.raw_store import FetchResult
from artsim_pipeline.resources.storage import ArtsimStorage


# -- the fetch journal ------------------------------------------------------------------------------------


def checkpoint_path(storage: ArtsimStorage, asset: str, partition: str) -> Path:
    """The fetch journal of one partition: always under the local home, never on S3."""
    return storage.root / "checkpoints" / asset / f"{partition}.jsonl"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=None)
def _journal_dictionary(source: str | None) -> tuple[bytes | None, str | None]:
    """A zlib preset dictionary for the journal of `source`: a few of its sample records (the
    keys and common values a lone record cannot compress against), and its id (lines written
    with another dictionary are not reused). None for sources without sample records."""
    from artsim_pipeline.sample import load_sample_raw_lines

    try:
        lines = load_sample_raw_lines(source) if source else []
    except (ValueError, OSError):
        lines = []
    if not lines:
        return None, None
    step = max(1, len(lines) // 8)
    zdict = "\n".join(lines[::step][:8]).encode("utf-8")[-32768:]  # zlib uses the last 32 KiB
    return zdict, f"{zlib.crc32(zdict):08x}"


class FetchCheckpoint:
    """An append-only JSON-lines journal of fetch results, so a killed run resumes where it stopped.

    Each result is flushed as soon as it arrives, as one short line: its fields under one-letter
    names (empty ones left out) and the record's text zlib-compressed (base85) against a preset
    dictionary of the source's sample records (a fifth of the JSON for a Met record). A
    successful run folds the journal into the stored table and then empties it (`clear`, after
    the table is written), so it holds at most one unfinished run. On
    the next run, entries that already reached the stored table are dropped (`compact`: a crash
    after the table was written and before the journal was emptied) and the rest are reused
    instead of fetched again. Lines of the earlier, uncompressed form are still read.
    """

    def __init__(self, path: Path, source: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None
        self._zdict, self._zdict_id = _journal_dictionary(source)

    @classmethod
    def of(cls, storage: ArtsimStorage, asset: str, partition: str) -> FetchCheckpoint:
        return cls(checkpoint_path(storage, asset, partition), source=partition)

    def load(self) -> list[FetchResult]:
        if not self.path.exists():
            return []
        results = []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    results.append(self._parse(json.loads(line.decode("utf-8"))))
                except (ValueError, TypeError, KeyError, RecursionError, zlib.error):
                    continue  # a line cut short by the crash (or damaged): that fetch is simply redone
        return results

    def compact(self, stored: pl.DataFrame | None) -> list[FetchResult]:
        """Keep only results worth reusing that the stored table does not hold yet; returns them.

        `ok` and `gone` answers are final and reused; `error` answers are dropped so that the
        resumed run tries those objects again.
        """
        pending = [r for r in self.load() if r.status != "error"]
        if pending and stored is not None and stored.height:
            keys = pl.DataFrame({"source_id": [r.source_id for r in pending],
                                 "key": [r.content_hash if r.status == "ok" else r.status for r in pending]},
                                schema={"source_id": pl.String(), "key": pl.String()})
            held = stored.select("source_id", key=pl.when(pl.col("status") == "ok").then(pl.col("content_hash")).otherwise(pl.col("status")))
            fresh = keys.with_row_index().join(held, on=["source_id", "key"], how="anti")["index"].to_list()
            pending = [pending[i] for i in sorted(fresh)]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for result in pending:
                handle.write(self._line(result))
        os.replace(tmp, self.path)
        return pending

    def _line(self, result: FetchResult) -> str:
        entry: dict[str, Any] = {"i": result.source_id, "s": result.status,
                                 "t": (result.fetched_at - _EPOCH) // timedelta(microseconds=1)}
        for name, value in (("e", result.error), ("m", result.modified), ("r", result.text_repairs)):
            if value:
                entry[name] = value
        if result.raw_json is not None:
            # the text is storable (FetchResult escaped any lone surrogate), so UTF-8 always encodes it
            packer = zlib.compressobj(9, zdict=self._zdict) if self._zdict else zlib.compressobj(9)
            packed = packer.compress(result.raw_json.encode("utf-8")) + packer.flush()
            entry["z"] = base64.b85encode(packed).decode("ascii")
            if self._zdict:
                entry["d"] = self._zdict_id
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n"

    def _parse(self, entry: dict[str, Any]) -> FetchResult:
        if "source_id" in entry:  # the earlier form: FetchResult's fields as they are
            entry["fetched_at"] = datetime.fromisoformat(entry["fetched_at"])
            return FetchResult(**entry)
        raw = entry.get("z")
        if raw is not None:
            dictionary_id = entry.get("d")
            if dictionary_id is not None and dictionary_id != self._zdict_id:
                raise ValueError("written with another dictionary")  # e.g. the sample changed: fetched again
            unpacker = zlib.decompressobj(zdict=self._zdict) if dictionary_id else zlib.decompressobj()
            raw = (unpacker.decompress(base64.b85decode(raw)) + unpacker.flush()).decode("utf-8")
        return FetchResult(
            entry["i"], entry["s"], raw_json=raw,
            error=entry.get("e"), modified=entry.get("m"), text_repairs=int(entry.get("r", 0)),
            fetched_at=_EPOCH + timedelta(microseconds=entry["t"]),
        )

    def append(self, result: FetchResult) -> None:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(self._line(result))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def clear(self) -> None:
        """Empty the journal: its results are in the stored table (called once the table is written)."""
        self.close()
        self.path.unlink(missing_ok=True)
