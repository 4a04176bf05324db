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
