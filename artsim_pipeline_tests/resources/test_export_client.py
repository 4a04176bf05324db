"""The collection-export client over the real Met MediaLab export, and how the museum API
resource finds exports and says which images are real."""

from __future__ import annotations

import json
import shutil

import pytest

from artsim_pipeline.core.exports.mapping import MappingError
from artsim_pipeline.core.images import check_image
from artsim_pipeline.core.sources import API_SOURCES, EXPORT_SOURCES, SOURCES
from artsim_pipeline.resources.clients.export import ExportClient
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.sample import bundled_export_dir


@pytest.fixture
def export_copy(tmp_path):
    """A writable copy of the bundled export, as ARTSIM_EXPORTS_DIR would hold it."""
    root = tmp_path / "exports"
    shutil.copytree(bundled_export_dir("met_medialab"), root / "met_medialab")
    return root


def test_the_registry_names_the_export_once():
    assert SOURCES == ("met", "smk", "cma", "aic", "met_medialab")
    assert API_SOURCES == ("met", "smk", "cma", "aic") and EXPORT_SOURCES == ("met_medialab",)


def test_the_client_lists_fetches_and_serves_images():
    client = MuseumApiResource().client("met_medialab")
    assert isinstance(client, ExportClient)
    listing = client.list_ids()
    assert listing.full and len(listing.ids) == 428 and len(listing.cursor) == 64
    assert listing.notes["export_rows"] == 428 and listing.notes["text_values_repaired"] == 26
    assert listing.notes["text_values_undecodable"] == 2 and listing.notes["text_values_decoded_with_fallback"] == 6
    results = list(client.fetch_objects(["245497", "999"]))
    assert results[0].status == "ok" and json.loads(results[0].raw_json)["title"] == "Head of a woman"
    assert results[1].status == "gone"
    record = json.loads(results[0].raw_json)
    url = client.image_url(record)
    assert url == "http://images.metmuseum.org/CRDImages/gr/original/DP261238.jpg"
    image = client.fetch_image(url)
    assert image.content and check_image(image.content).width <= 256


def test_file_names_with_spaces_and_a_shared_photograph():
    client = MuseumApiResource().client("met_medialab")
    records = {i: json.loads(r.raw_json) for i, r in ((r.source_id, r) for r in client.fetch_objects(client.list_ids().ids))}
    spaced = [client.image_url(r) for r in records.values() if " " in r["image"]]
    assert len(spaced) == 2
    for url in spaced:
        assert "%20" in url and client.fetch_image(url).content
    assert client.image_url(records["203491"]) == client.image_url(records["203517"])


def test_a_missing_image_file_is_not_found_never_an_exception(export_copy):
    (export_copy / "met_medialab" / "images" / "CRDImages" / "gr" / "original" / "DP261238.jpg").unlink()
    api = MuseumApiResource(mode="live", exports_dir=str(export_copy))
    client = api.client("met_medialab")
    missing = client.fetch_image("http://images.metmuseum.org/CRDImages/gr/original/DP261238.jpg")
    assert missing.content is None and missing.gone and "no file images/CRDImages/gr/original/DP261238.jpg" in missing.error
    outside = client.fetch_image("http://images.metmuseum.org/../../mapping.toml")
    assert outside.content is None and outside.gone


def test_exports_dir_in_live_mode_and_the_bundled_mapping_as_default(export_copy):
    (export_copy / "met_medialab" / "mapping.toml").unlink()  # data only: the bundled mapping describes it
    records = export_copy / "met_medialab" / "records.csv"
    records.write_bytes(records.read_bytes() + b"1,x,Added later,,,,1900,1,,,,Paintings\r\n")
    api = MuseumApiResource(mode="live", exports_dir=str(export_copy))
    assert api.export_folder("met_medialab") == export_copy / "met_medialab"
    assert len(api.client("met_medialab").list_ids().ids) == 429
    assert len(MuseumApiResource(mode="live").client("met_medialab").list_ids().ids) == 428  # unset: the bundled copy
    with pytest.raises(FileNotFoundError, match="no folder"):
        MuseumApiResource(mode="live", exports_dir=str(export_copy / "nowhere")).client("met_medialab")
    with pytest.raises(ValueError, match="API source"):
        api.export_folder("met")


def test_a_mapping_for_another_source_or_a_missing_file_is_a_clear_error(export_copy):
    mapping = export_copy / "met_medialab" / "mapping.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('source = "met_medialab"', 'source = "other"'), encoding="utf-8")
    api = MuseumApiResource(mode="live", exports_dir=str(export_copy))
    with pytest.raises(MappingError, match="loaded for 'met_medialab'"):
        api.client("met_medialab")
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('source = "other"', 'source = "met_medialab"'), encoding="utf-8")
    (export_copy / "met_medialab" / "records.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no export file"):
        api.client("met_medialab")


def test_real_image_sources_depend_on_the_mode():
    assert MuseumApiResource(mode="snapshot").real_image_sources() == {"met_medialab"}
    assert MuseumApiResource(mode="live").real_image_sources() == set(SOURCES)


def test_real_image_sources_follow_the_mapping(export_copy):
    mapping = export_copy / "met_medialab" / "mapping.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace("real = true", "real = false"), encoding="utf-8")
    # the snapshot mode reads the bundled copy, whatever exports_dir says; so check the mapping itself
    assert MuseumApiResource(mode="live", exports_dir=str(export_copy)).export_mapping("met_medialab").real_images is False
    assert MuseumApiResource(mode="snapshot").export_mapping("met_medialab").real_images is True
