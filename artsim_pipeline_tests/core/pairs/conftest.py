"""Fixtures of the pair-mining tests: the real Met and SMK records as artworks, and their pairs
(mined once for the whole package)."""

from __future__ import annotations

import polars as pl
import pytest

from artsim_pipeline.core.pairs import mine_pairs
from artsim_pipeline_tests.core.pairs.builders import met_frame, smk_frame


@pytest.fixture(scope="package")
def real_artworks(shared_met_records, shared_smk_records) -> pl.DataFrame:
    return pl.concat([met_frame(shared_met_records), smk_frame(shared_smk_records)])


@pytest.fixture(scope="package")
def real_pairs(real_artworks) -> pl.DataFrame:
    return mine_pairs(real_artworks)
