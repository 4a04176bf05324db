"""Benchmark: what a 1% metadata change costs against a full build, on the bundled sample.

In one process and one fresh `$ARTSIM_HOME`: `artsim materialize` from nothing (the full
build, `make run`'s defaults: pooled EfficientNet-Lite0, MiniLM, the pipeline's training), then
the titles and `metadataDate` of 1% of the Met records change in what the (snapshot) API serves
and `artsim materialize` runs again. Prints both times, their ratio (the incremental fraction)
and which asset partitions the second run recomputed. Dagster runs the steps in this process, so
its CPU seconds are the work done; on a shared machine their ratio is steadier than wall time.

    .venv/bin/python benchmarks/bench_incremental.py [--fraction 0.01] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone


def retitled_api(fraction: float):
    """A museum API resource that serves the sample with `fraction` of the Met records retitled
    and dated now (so the incremental Met listing names them)."""
    from artsim_pipeline.resources.museum_api import MuseumApiResource

    class Retitled(MuseumApiResource):
        def client(self, source):
            client = super().client(source)
            if source == "met":
                ids = sorted(client._records)
                now = datetime.now(timezone.utc).isoformat()
                for key in ids[:: max(1, round(1 / fraction))]:
                    record = {**client._records[key][1]}
                    record["title"] = f"{record.get('title') or ''} (retitled)"
                    record["metadataDate"] = now
                    client._records[key] = (client.rules.snapshot_text(record, json.dumps(record)), record)
            return client

    return Retitled()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--home", default=None, help="ARTSIM_HOME to build in (default: a fresh temporary folder)")
    args = parser.parse_args()
    home = args.home or tempfile.mkdtemp(prefix="bench_incremental_")
    os.environ.update({"ARTSIM_HOME": home, "ARTSIM_ENV": "sample"})

    from dagster import DagsterInstance

    from artsim_pipeline.materialize import materialize_all

    instance = DagsterInstance.ephemeral()
    started, cpu = time.monotonic(), time.process_time()
    full = materialize_all(instance=instance)
    full_s, full_cpu = time.monotonic() - started, time.process_time() - cpu
    started, cpu = time.monotonic(), time.process_time()
    again = materialize_all(instance=instance, resources={"museum_api": retitled_api(args.fraction)})
    again_s, again_cpu = time.monotonic() - started, time.process_time() - cpu
    print(f"full build: {full_s:.1f} s wall, {full_cpu:.1f} s CPU ({len(full['recomputed'])} asset partitions)")
    print(f"after retitling {args.fraction:.0%} of the Met records: {again_s:.1f} s wall, {again_cpu:.1f} s CPU "
          f"({len(again['recomputed'])} recomputed, {again['up_to_date']} up to date)")
    print(f"incremental fraction: {again_s / full_s:.3f} of the wall time, {again_cpu / full_cpu:.3f} of the CPU time")
    print("recomputed:", ", ".join(again["recomputed"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
