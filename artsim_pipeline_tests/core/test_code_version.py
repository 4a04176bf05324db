"""``core/code_version.code_fingerprint``: the same in every process, whatever its hash seed, and
different after any edit of the code or constants a reuse cache depends on (the edits a review
found unseen: a record source's id prefix, a polars dtype's fields, a property, a frozenset's
order, a constant a function reads, a function a function calls)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import subprocess
import sys
import types

import polars as pl
import pytest

from artsim_pipeline.core import clusters, keyword_index, search
from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.exports import mapping as export_mapping
from artsim_pipeline.core.ml import text
from artsim_pipeline.core.museums import met, smk
from artsim_pipeline.core.normalise import incremental

_IN_A_PROCESS = """
from artsim_pipeline.core import clusters, keyword_index, search
from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.exports.mapping import parse_mapping
from artsim_pipeline.core.ml import text
from artsim_pipeline.core.normalise.incremental import normaliser_version
from artsim_pipeline.sample import bundled_export_dir
folder = bundled_export_dir("met_medialab")
mapping = parse_mapping((folder / "mapping.toml").read_text(encoding="utf-8"), where="mapping.toml")
print(normaliser_version("met"), normaliser_version("met_medialab", mapping), keyword_index.tokenizer_signature(),
      code_fingerprint(text.artwork_text), code_fingerprint(clusters.summarise_clusters),
      code_fingerprint(search.calibrate_threshold, search.near_duplicates), code_fingerprint({"b", "a", "c"}))
"""


def test_every_fingerprint_is_the_same_in_processes_with_other_hash_seeds():
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _IN_A_PROCESS], capture_output=True, text=True, env=env, check=True)
        outputs.add(run.stdout.strip())
    assert len(outputs) == 1, f"fingerprints differ between processes: {outputs}"


@pytest.fixture
def normaliser_fingerprint(monkeypatch):
    """The normaliser's code fingerprint, computed afresh on each call (the cache is cleared
    again after the test, so later tests see the real code's)."""
    incremental._code_fingerprint.cache_clear()

    def current() -> str:
        incremental._code_fingerprint.cache_clear()
        return incremental.normaliser_version("met")

    yield current
    monkeypatch.undo()
    incremental._code_fingerprint.cache_clear()


@pytest.mark.parametrize("module, name, field, value", [
    (met, "MET_RECORDS", "id_prefix", "metmuseum"),
    (met, "MET_RECORDS", "id_field", "objectNumber"),
    (met, "MET_RECORDS", "id_pattern", r"^\d+$"),
    (smk, "SMK_RECORDS", "envelope_field", "objects"),
])  # fmt: skip
def test_a_record_source_s_fields_enter_the_normaliser_version(normaliser_fingerprint, monkeypatch, module, name, field,
                                                               value):
    before = normaliser_fingerprint()
    monkeypatch.setattr(module, name, dataclasses.replace(getattr(module, name), **{field: value}))
    assert normaliser_fingerprint() != before


def test_a_dtype_s_fields_enter_the_normaliser_version(normaliser_fingerprint, monkeypatch):
    before = normaliser_fingerprint()
    schema = dict(met.MET_RECORD_SCHEMA)
    schema["constituents"] = pl.List(pl.Struct({"name": pl.String(), "role": pl.String(), "gender": pl.String()}))
    monkeypatch.setattr(met, "MET_RECORD_SCHEMA", schema)
    assert normaliser_fingerprint() != before
    assert code_fingerprint(pl.List(pl.Struct({"a": pl.String}))) != code_fingerprint(pl.List(pl.String))


def test_a_property_s_code_enters_the_normaliser_version(normaliser_fingerprint, monkeypatch):
    before = normaliser_fingerprint()
    monkeypatch.setattr(export_mapping.TextEncoding, "repairs", property(lambda self: self.fallback is not None))
    assert normaliser_fingerprint() != before


def test_an_export_mapping_counts_field_by_field():
    rule = export_mapping.FieldRule(columns=("what",), vocabulary=frozenset({"oil", "canvas", "ink"}))
    same = export_mapping.FieldRule(columns=("what",), vocabulary=frozenset(["ink", "canvas", "oil"]))
    assert code_fingerprint(rule) == code_fingerprint(same)
    assert code_fingerprint(rule) != code_fingerprint(dataclasses.replace(rule, vocabulary=frozenset({"oil", "ink"})))


def test_the_text_key_follows_artwork_text_s_constants_and_helpers(monkeypatch):
    art = pl.DataFrame({"artwork_id": ["met:1"], "title": ["Wheat Field"], "artists": [["Van Gogh"]], "medium": ["Oil"],
                        "classification": ["Paintings"], "object_type": ["Painting"], "culture": [None],
                        "tags": [["A", "B", "C"]]}, schema_overrides={"culture": pl.String})
    stored, _ = text.texts_wanted(art, None)
    again, built = text.texts_wanted(art, stored)
    assert not built and again.equals(stored)  # unchanged code: the stored text is reused
    monkeypatch.setattr(text, "MAX_TAGS", 1)
    again, built = text.texts_wanted(art, stored)
    assert built == {"met:1": "Wheat Field. By Van Gogh. Oil. Paintings. Tags: A."}
    assert again["text_sha256"][0] != stored["text_sha256"][0]
    monkeypatch.undo()
    before = code_fingerprint(text.artwork_text)
    monkeypatch.setattr(text, "_dedupe", lambda values: list(values))  # a helper artwork_text calls
    assert code_fingerprint(text.artwork_text) != before


def test_the_tokeniser_signature_follows_the_tables_its_functions_read(monkeypatch):
    before = keyword_index.tokenizer_signature()
    monkeypatch.setattr(keyword_index, "_FOLD", str.maketrans({"ø": "oe"}))
    assert keyword_index.tokenizer_signature() != before
    monkeypatch.undo()
    monkeypatch.setattr(keyword_index, "_WORD", re.compile(r"[^\W\d]+"))
    assert keyword_index.tokenizer_signature() != before


def test_the_cluster_summary_key_follows_the_code_it_runs(monkeypatch):
    labels = pl.DataFrame({"artwork_id": ["a", "b"], "cluster": [0, 0], "distance": [0.1, 0.2]})
    works = pl.DataFrame({"artwork_id": ["a", "b"], "artists": [["X"], ["Y"]]})
    before = clusters.summary_inputs_key(labels, works)
    assert clusters.summary_inputs_key(labels, works) == before
    monkeypatch.setattr(clusters, "normalise_artist", lambda name: name)
    assert clusters.summary_inputs_key(labels, works) != before


def test_the_near_duplicates_key_follows_the_search_and_the_calibration(monkeypatch):
    from artsim_pipeline.defs.indexing import assets

    vectors = pl.DataFrame({"artwork_id": ["a"], "vector": [[1.0, 0.0]]})
    pairs = pl.DataFrame({"artwork_id_a": ["a"], "artwork_id_b": ["b"], "label": [1]})
    config = assets.NearDuplicatesConfig()
    before = assets._candidates_key(config, vectors, pairs, "stamp")
    assert assets._candidates_key(config, vectors, pairs, "stamp") == before
    original = search.calibrate_threshold

    def calibrate_threshold(*args, **kwargs):
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "calibrate_threshold", calibrate_threshold)
    assert assets._candidates_key(config, vectors, pairs, "stamp") != before


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_what_the_walk_reads_of_functions_classes_and_values():
    def scaled(x, factor=2):
        return x * factor

    def nested(x):
        return (lambda y: y + 1)(x)

    def nested_other(x):
        return (lambda y: y + 2)(x)

    by_three = types.FunctionType(scaled.__code__, scaled.__globals__, "scaled", (3,))
    assert code_fingerprint(scaled) != code_fingerprint(by_three)  # defaults
    assert code_fingerprint(nested) != code_fingerprint(
        types.FunctionType(nested_other.__code__.replace(co_name="nested", co_qualname=nested.__code__.co_qualname),
                           nested.__globals__, "nested"))  # the nested lambda's code
    assert code_fingerprint(functools.partial(scaled, factor=4)) != code_fingerprint(functools.partial(scaled, factor=5))
    assert code_fingerprint(Colour.RED) != code_fingerprint(Colour.BLUE)
    assert code_fingerprint({"x": {1, 2}}) == code_fingerprint({"x": {2, 1}})
    assert code_fingerprint(re.compile("a", re.I)) != code_fingerprint(re.compile("a"))
    holder = type("Holder", (), {"one": staticmethod(scaled), "__module__": __name__})
    other = type("Holder", (), {"one": staticmethod(by_three), "__module__": __name__})
    assert code_fingerprint(holder) == code_fingerprint(type("Holder", (), {"one": staticmethod(scaled), "__module__": __name__}))
    assert code_fingerprint(holder) != code_fingerprint(other)  # a static method's defaults
