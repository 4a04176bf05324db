"""The `artsim` command line: run the pipeline, and (as issues add them) query its results."""

from __future__ import annotations

import argparse
import os
import sys
import time

from artsim_pipeline import settings


def _prepare_environment() -> None:
    """Defaults so `artsim` works from any shell: state in ARTSIM_HOME, the repo's dagster.yaml."""
    os.environ.setdefault("ARTSIM_HOME", str(settings.artsim_home()))
    os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT))
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.makedirs(os.environ["ARTSIM_HOME"], exist_ok=True)


def materialize_all(sources: list[str] | None = None, *, instance=None) -> dict:
    """Materialise the whole asset graph: partitioned assets per source, then the rest.

    Runs are recorded in the Dagster instance, so they appear in the UI of `make dev`.
    """
    from dagster import AssetSelection, DagsterInstance, materialize

    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.museum_api import SOURCES

    defs = build_defs()
    instance = instance or DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets or [])
    resources = defs.resources or {}
    partitioned = {key for key in graph.get_all_asset_keys() if graph.get(key).is_partitioned}
    unpartitioned = {key for key in graph.get_all_asset_keys() if key not in partitioned and graph.get(key).is_materializable}
    report: dict[str, float] = {}
    for source in sources or list(SOURCES):
        started = time.monotonic()
        result = materialize(assets, selection=AssetSelection.assets(*partitioned), partition_key=source, resources=resources, instance=instance)
        if not result.success:
            raise SystemExit(f"materialising the {source} partition failed (see the Dagster run {result.run_id})")
        report[f"partition {source}"] = time.monotonic() - started
    if unpartitioned:
        started = time.monotonic()
        result = materialize(assets, selection=AssetSelection.assets(*unpartitioned), resources=resources, instance=instance)
        if not result.success:
            raise SystemExit(f"materialising the unpartitioned assets failed (see the Dagster run {result.run_id})")
        report["unpartitioned assets"] = time.monotonic() - started
    return report


def print_summary(timings: dict) -> None:
    from artsim_pipeline.summary import collect_summary

    print("\n== artsim summary ==")
    for step, seconds in timings.items():
        print(f"  {step}: {seconds:.1f} s")
    for line in collect_summary():
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="artsim", description="Learn which artworks are similar across museum collections.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("materialize", help="materialise the whole asset graph for ARTSIM_ENV (default: the bundled sample)")
    run.add_argument("--source", action="append", choices=["met", "smk"], help="only these sources (repeatable)")
    args = parser.parse_args(argv)

    _prepare_environment()
    if args.command == "materialize":
        print(f"artsim: materialising every asset (ARTSIM_ENV={settings.artsim_env()}, ARTSIM_HOME={os.environ['ARTSIM_HOME']})", flush=True)
        timings = materialize_all(args.source)
        print_summary(timings)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
