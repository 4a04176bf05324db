"""The serving copies of `artworks` (`resources/artefacts/serving.py`) are keyed on what is stored,
not only on the table file's mtime and size: a rewrite of the same size within the filesystem's
mtime resolution must not be served from the stale copy."""

from __future__ import annotations

import os

import polars as pl

from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore


def works(title: str) -> pl.DataFrame:
    return pl.DataFrame({"artwork_id": [f"smk:{i}" for i in range(50)], "title": [f"{title} {i}" for i in range(50)]})


def test_a_rewrite_with_the_same_size_and_mtime_is_served_from_a_new_copy(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    tables = TableStore(base_dir=str(tmp_path / "storage"))
    path = tmp_path / "storage" / "artworks" / "smk.parquet"
    tables.write_table(works("Cat"), "artworks", "smk")
    assert artefacts.serving_artworks(storage, tables, ["smk"]).row("smk:7")["title"] == "Cat 7"
    before = path.stat()

    tables.write_table(works("Bat"), "artworks", "smk")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # within the mtime resolution
    assert tables.objects.stamp(tables.table_key("artworks", "smk")) == (before.st_mtime_ns, before.st_size)  # same size too
    assert artefacts.serving_artworks(storage, tables, ["smk"]).row("smk:7")["title"] == "Bat 7"
    assert len(list((tmp_path / artefacts.SERVING_ARTWORKS_DIR).glob("smk-*.arrow"))) == 1  # the stale copy is gone


def test_an_unchanged_table_keeps_its_copy(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    tables = TableStore(base_dir=str(tmp_path / "storage"))
    tables.write_table(works("Cat"), "artworks", "smk")
    artefacts.serving_artworks(storage, tables, ["smk"])
    copies = list((tmp_path / artefacts.SERVING_ARTWORKS_DIR).glob("smk-*.arrow"))
    mtime = copies[0].stat().st_mtime_ns
    assert artefacts.serving_artworks(storage, tables, ["smk"]).row("smk:3")["title"] == "Cat 3"
    assert list((tmp_path / artefacts.SERVING_ARTWORKS_DIR).glob("smk-*.arrow")) == copies
    assert copies[0].stat().st_mtime_ns == mtime  # not written again


def test_artsim_serve_serves_a_same_size_rewrite_on_the_next_request(tmp_path):
    """`AppState` decides reloads per request on the files' versions (a rewrite renames a new file
    in: a new inode even with mtime and size restored)."""
    from artsim_pipeline.web.state import AppState

    tables, storage = TableStore(base_dir=str(tmp_path / "storage")), ArtsimStorage(home=str(tmp_path))
    path = tmp_path / "storage" / "artworks" / "smk.parquet"
    tables.write_table(works("Cat"), "artworks", "smk")
    state = AppState(tmp_path, tables, storage)
    state.FINGERPRINT_SECONDS = 3600.0  # only the per-request check can see it
    assert state.works().row("smk:7")["title"] == "Cat 7"
    before = path.stat()
    tables.write_table(works("Bat"), "artworks", "smk")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tables.objects.stamp(tables.table_key("artworks", "smk")) == (before.st_mtime_ns, before.st_size)
    assert state.works().row("smk:7")["title"] == "Bat 7"


def test_artsim_serve_fingerprints_the_tables_at_most_every_few_seconds_and_then_sees_any_rewrite(tmp_path, monkeypatch):
    """A rewrite that leaves even the version as it was (a freed inode given back) is seen once
    `FINGERPRINT_SECONDS` have passed; requests meanwhile read no footer."""
    from artsim_pipeline.resources.objects import LocalObjectStore
    from artsim_pipeline.web.state import AppState

    tables, storage = TableStore(base_dir=str(tmp_path / "storage")), ArtsimStorage(home=str(tmp_path))
    tables.write_table(works("Cat"), "artworks", "smk")
    monkeypatch.setattr(LocalObjectStore, "version", lambda self, key: (1, 2, 3) if self.exists(key) else None)
    fingerprints = []
    real = TableStore.table_fingerprint
    monkeypatch.setattr(TableStore, "table_fingerprint", lambda self, *a: fingerprints.append(a) or real(self, *a))
    clock = [1000.0]
    monkeypatch.setattr("artsim_pipeline.web.state.time.monotonic", lambda: clock[0])
    state = AppState(tmp_path, tables, storage)
    assert state.works().row("smk:7")["title"] == "Cat 7"
    tables.write_table(works("Bat"), "artworks", "smk")
    fingerprints.clear()
    clock[0] += state.FINGERPRINT_SECONDS / 2
    for _ in range(5):
        assert state.works().row("smk:7")["title"] == "Cat 7"  # the bounded staleness
    assert fingerprints == []  # not per request
    clock[0] += state.FINGERPRINT_SECONDS
    assert state.works().row("smk:7")["title"] == "Bat 7"


def test_a_serving_copy_removed_by_another_process_before_it_is_opened_is_made_again(tmp_path, monkeypatch):
    """Another process that saw a newer table removes the older copies, perhaps one this process
    has just written or found and not yet opened: it looks again instead of failing."""
    from artsim_pipeline.resources.artefacts import serving

    storage, tables = ArtsimStorage(home=str(tmp_path)), TableStore(base_dir=str(tmp_path / "storage"))
    tables.write_table(works("Cat"), "artworks", "smk")
    real_read, removed = serving.read_serving_artworks, []

    def removed_first(path):
        if not removed:
            removed.append(path)
            os.unlink(path)  # the other process's clean-up
        return real_read(path)

    monkeypatch.setattr(serving, "read_serving_artworks", removed_first)
    assert artefacts.serving_artworks(storage, tables, ["smk"]).row("smk:7")["title"] == "Cat 7"
    assert removed and len(list((tmp_path / artefacts.SERVING_ARTWORKS_DIR).glob("smk-*.arrow"))) == 1
