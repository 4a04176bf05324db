"""`artsim materialize --config FILE.yaml`: Dagster run config from a file, for every run it makes."""

from __future__ import annotations

import pytest
from dagster import AssetKey

from artsim_pipeline.cli import main
from artsim_pipeline.materialize import _config_for, load_run_config

RATE_CONFIG = """\
resources:
  museum_api:
    config:
      requests_per_second: 40
ops:
  similarity_model:
    config:
      max_epochs: 2
"""


def test_a_run_config_file_is_read_and_split_per_run(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(RATE_CONFIG)
    config = load_run_config(str(path))
    assert config["resources"]["museum_api"]["config"]["requests_per_second"] == 40
    # an ingestion run keeps the resource config and drops the ops of assets it does not run
    assert _config_for(config, {AssetKey("raw_objects")}) == {"resources": config["resources"]}
    training = _config_for(config, {AssetKey("similarity_model"), AssetKey("weak_pairs")})
    assert training["ops"] == {"similarity_model": {"config": {"max_epochs": 2}}} and training["resources"] == config["resources"]
    assert _config_for({"ops": {"similarity_model": {}}}, {AssetKey("raw_objects")}) is None
    assert load_run_config(None) is None


@pytest.mark.parametrize("text, message", [
    ("foo: 1\n", "unknown: foo"),
    ("- just\n- a list\n", "must be a mapping"),
    ("resources: [\n", "cannot read run config"),
])
def test_a_bad_run_config_file_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.setenv("ARTSIM_HOME", str(tmp_path / "home"))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_run_config(str(path))
    assert main(["materialize", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "home" / "storage").exists()  # nothing was materialised


def test_a_missing_run_config_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARTSIM_HOME", str(tmp_path / "home"))
    assert main(["materialize", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read run config" in capsys.readouterr().err
