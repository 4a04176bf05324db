"""In prod the curators' judgments reach the pipeline through S3, not through a shared disk."""

from __future__ import annotations

from artsim_pipeline.resources.artefacts import judgments_home, load_judgments, publish_judgments, record_judgment
from artsim_pipeline.resources.storage import ArtsimStorage


def test_judgments_recorded_by_the_web_app_reach_a_worker_through_s3(tmp_path, s3, aws_env):
    url = f"s3://{s3.bucket}/judgments-test"
    web_home, worker_home = tmp_path / "web", tmp_path / "worker"
    web = ArtsimStorage(home=str(web_home), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    worker = ArtsimStorage(home=str(worker_home), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    assert load_judgments(judgments_home(worker)).height == 0  # nothing published yet

    candidates = [f"met:{i}" for i in range(1, 9)]
    record_judgment(web_home, "met:100", candidates, "met:3", "curator-1")
    publish_judgments(web, web_home)
    assert load_judgments(judgments_home(worker))["chosen_id"].to_list() == ["met:3"]

    record_judgment(web_home, "met:101", candidates, "met:5", "curator-1")
    publish_judgments(web, web_home)
    assert load_judgments(judgments_home(worker))["chosen_id"].to_list() == ["met:3", "met:5"]  # refreshed, not cached
    assert not (worker_home / "feedback").exists()  # the worker's own home holds only the cache


def test_two_web_hosts_never_erase_each_others_judgments(tmp_path, s3, aws_env):
    url = f"s3://{s3.bucket}/judgments-two-hosts"
    hosts = [ArtsimStorage(home=str(tmp_path / f"web{i}"), remote_url=url, s3_endpoint_url=s3.endpoint_url) for i in (1, 2)]
    candidates = [f"met:{i}" for i in range(1, 9)]
    record_judgment(hosts[0].root, "met:100", candidates, "met:3", "curator-1")
    assert publish_judgments(hosts[0], hosts[0].root) == 1
    record_judgment(hosts[1].root, "met:101", candidates, "met:5", "curator-2")  # a fresh host: its journal has one line
    assert publish_judgments(hosts[1], hosts[1].root) == 1
    assert publish_judgments(hosts[0], hosts[0].root) == 0  # already stored: nothing written again
    worker = ArtsimStorage(home=str(tmp_path / "worker"), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    assert sorted(load_judgments(judgments_home(worker))["chosen_id"].to_list()) == ["met:3", "met:5"]
