"""The bundled copy of the real Met MediaLab export and its mapping, for the export tests."""

from __future__ import annotations

import pytest

from artsim_pipeline.core.exports.mapping import parse_mapping
from artsim_pipeline.sample import bundled_export_dir


@pytest.fixture(scope="session")
def medialab_dir():
    return bundled_export_dir("met_medialab")


@pytest.fixture(scope="session")
def medialab_mapping(medialab_dir):
    return parse_mapping((medialab_dir / "mapping.toml").read_text(encoding="utf-8"), where="mapping.toml")


@pytest.fixture(scope="session")
def medialab_bytes(medialab_dir):
    return (medialab_dir / "records.csv").read_bytes()
