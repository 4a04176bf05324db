"""Benchmark: what `artsim materialize` spends outside the asset steps, with Dagster's stock
SQLite instance storage and compute log manager against the ones `dagster.yaml` configures
(`artsim_pipeline/instance.py`), and with Python's exit against `cli.exit_without_teardown`.

Three parts, each a baseline and the change measured by this one process, in turns:

1. ``instance`` (always, ~1 min): per Dagster run of a three-asset graph (``materialize()``: run
   creation, the events it stores, the in-process plan), and per staleness resolution of it
   (Dagster's ``CachingStaleStatusResolver``, what ``materialize._stale_or_missing`` asks per
   partition and wave), over two fresh instance folders: Dagster's ``DagsterSqliteStorage`` and
   ``LocalComputeLogManager`` against the repo's ``dagster.yaml`` (``HomeSqliteStorage``,
   ``HomeComputeLogManager``: the same files and schemas); and per compute log capture alone
   (one per run).
2. ``--pipeline`` (minutes): the 1% run of ``artsim materialize`` (subprocess, as
   ``benchmarks/bench_scale.py`` runs it: ``ARTSIM_ENV=local`` over the replay server at 400
   requests/s, the tests' tiny models) on two copies of one home after a full build, one with a
   ``DAGSTER_HOME`` whose ``dagster.yaml`` names Dagster's stock storage over the same folder,
   the other with the repo's. Each repeat changes the titles of ``--fraction`` of the records
   again (both copies see the same change) and runs both copies, in alternating order. Printed:
   wall seconds, the steps' seconds (the lines ``artsim materialize`` prints), wall outside the
   steps, CPU seconds; and the ratios. ``--kept DIR`` reuses the folder ``bench_scale.py --keep``
   leaves (its ``data``, ``models``, ``run.yaml`` and ``home_<size>``) instead of a full build.
   Both copies run this checkout's ``materialize.py`` and CLI: their own savings (the staleness
   question no longer asked after a settled wave, the exit) are in neither figure.
3. ``exit`` (always, ~1 min): the seconds from the end of a script that imported what a 1% run
   loads (Dagster, great_expectations, MLflow, polars, torch, transformers' BERT) to the end of
   its process, with Python's exit and with ``cli.exit_without_teardown``.

Run::

    .venv/bin/python benchmarks/bench_orchestration.py [--runs 20] [--pipeline [--size 2000] [--repeats 2]
        [--kept /tmp/bench_scale_xxx --size 12500]]

Absolute seconds swing with the machine's load (printed); the ratios are the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def stock_dagster_home(folder: Path, artsim_home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the repo's with Dagster's stock SQLite storage and
    compute log manager over the same folders (`<home>/dagster/`: history/runs.db,
    history/runs/<run>.db, schedules/, compute_logs/)."""
    import yaml

    config = yaml.safe_load((REPO / "dagster.yaml").read_text(encoding="utf-8"))
    config["storage"] = {"sqlite": {"base_dir": str(artsim_home / "dagster")}}
    config["compute_logs"] = {"module": "dagster._core.storage.local_compute_log_manager", "class": "LocalComputeLogManager",
                              "config": {"base_dir": str(artsim_home / "dagster" / "compute_logs")}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# 1. Per Dagster run and per staleness resolution
# --------------------------------------------------------------------------------------------


def tiny_graph():
    from dagster import DataVersion, Output, asset

    @asset(code_version="1")
    def source_table():
        return Output(1, data_version=DataVersion("1"))

    @asset(code_version="1")
    def derived_table(source_table):
        return Output(source_table + 1, data_version=DataVersion("2"))

    @asset(code_version="1")
    def report(derived_table):
        return derived_table

    return [source_table, derived_table, report]


def time_instance(instance, assets, runs: int) -> tuple[float, float]:
    """(seconds per `materialize()` of the graph, seconds per staleness resolution of its assets)."""
    from dagster import Definitions, materialize, mem_io_manager
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = Definitions(assets=assets).resolve_asset_graph()
    started = time.perf_counter()
    for _ in range(runs):
        assert materialize(assets, instance=instance, resources={"io_manager": mem_io_manager}, run_config=QUIET).success
    per_run = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    for _ in range(runs):
        view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                              instance=instance, asset_graph=graph)
        resolver = CachingStaleStatusResolver(instance, graph, view)
        for key in graph.get_all_asset_keys():
            resolver.get_status(key, None)
    return per_run, (time.perf_counter() - started) / runs


def bench_instance(runs: int) -> dict:
    import warnings

    from dagster import DagsterInstance

    warnings.filterwarnings("ignore")
    assets = tiny_graph()
    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        instances = {}
        for label in ("stock", "home"):
            home = work / label
            os.environ["ARTSIM_HOME"] = str(home)  # read when the instance is made
            folder = stock_dagster_home(work / "stock_dagster_home", home) if label == "stock" else REPO
            instances[label] = DagsterInstance.from_config(str(folder))
        print(f"  storages: stock {type(instances['stock'].event_log_storage).__name__}, "
              f"home {type(instances['home'].event_log_storage).__name__}")
        figures: dict[str, list[tuple[float, float]]] = {"stock": [], "home": []}
        for turn in range(2):  # in turns, each in both orders
            for label in (("stock", "home") if turn == 0 else ("home", "stock")):
                figures[label].append(time_instance(instances[label], assets, runs))
        for instance in instances.values():
            instance.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {label: (min(r for r, _ in f), min(s for _, s in f)) for label, f in figures.items()}
    print(f"  {'':<10} {'per run':>10} {'per staleness':>14}   ({runs} runs of 3 assets, best of 2 turns)")
    for label, (run, stale) in best.items():
        print(f"  {label:<10} {run * 1000:>7.0f} ms {stale * 1000:>11.1f} ms")
    print(f"  {'home/stock':<10} {best['home'][0] / best['stock'][0]:>10.3f} {best['home'][1] / best['stock'][1]:>14.3f}")
    return best


def bench_capture(runs: int) -> dict:
    """Seconds per compute log capture (one per Dagster run: stdout and stderr to files, mirrored)."""
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

    from artsim_pipeline.instance import HomeComputeLogManager

    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    figures: dict[str, list[float]] = {"stock": [], "home": []}
    try:
        managers = {"stock": LocalComputeLogManager(str(work / "stock")), "home": HomeComputeLogManager(str(work / "home"))}
        for turn in range(2):
            for label in (("stock", "home") if turn == 0 else ("home", "stock")):
                started = time.perf_counter()
                for i in range(runs):
                    with managers[label].capture_logs([f"run{turn}", f"step{i}"]):
                        pass
                figures[label].append((time.perf_counter() - started) / runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {label: min(values) for label, values in figures.items()}
    print(f"  stock {best['stock'] * 1000:.1f} ms, home {best['home'] * 1000:.1f} ms per capture "
          f"(ratio {best['home'] / best['stock']:.3f})")
    return best


# --------------------------------------------------------------------------------------------
# 2. The 1% run of `artsim materialize`, stock storage against the home storage
# --------------------------------------------------------------------------------------------


def prepare(args, work: Path):
    """(records, data dir, home after a full build, exports dir, run.yaml, image backbone spec)."""
    from benchmarks import bench_scale, synthetic

    if args.kept:
        kept = Path(args.kept)
        records = synthetic.read_collection(kept / "data", args.size)
        vit = kept / "models" / "tiny_vit"
        return records, kept / "data", kept / f"home_{args.size}", kept / f"exports_{args.size}", kept / "run.yaml", f"hf:{vit}"
    data = work / "data"
    synthetic.write_collection(data, args.size)
    records = synthetic.read_collection(data, args.size)
    backbone, text_model = bench_scale.make_tiny_models(work / "models")
    bench_scale.write_run_config(work / "run.yaml", text_model)
    exports = work / "exports"
    bench_scale.write_empty_exports(exports)
    home = work / "built"
    server = bench_scale.start_replay(records, data)
    try:
        env = bench_scale.pipeline_env(home, exports, server.base_urls, backbone)
        print(f"  full build of {args.size:,} records ...", flush=True)
        code, wall, _, _, lines = bench_scale.run_materialize(materialize_command(work / "run.yaml"), env, args.timeout, False)
        if code:
            raise SystemExit("bench_orchestration: the full build failed:\n" + "\n".join(lines[-30:]))
        print(f"  full build took {wall:.0f} s", flush=True)
    finally:
        server.stop()
    return records, data, home, exports, work / "run.yaml", backbone


def materialize_command(run_yaml: Path) -> list[str]:
    return [sys.executable, "-m", "artsim_pipeline.cli", "materialize", "--config", str(run_yaml)]


def bench_pipeline(args) -> dict:
    from benchmarks import bench_scale, synthetic

    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        records, data, built, exports, run_yaml, backbone = prepare(args, work)
        homes = {}
        for label in ("stock", "home"):
            homes[label] = work / f"home_{label}"
            subprocess.run(["cp", "-a", str(built), str(homes[label])], check=True)
        dagster_homes = {"stock": stock_dagster_home(work / "stock_dagster_home", homes["stock"]), "home": REPO}
        chosen = set(synthetic.revised_ids(records, args.fraction))
        server = bench_scale.start_replay(records, data)
        figures: dict[str, list[dict]] = {"stock": [], "home": []}
        try:
            # one unmeasured change first: code versions and caches settled the same way for both
            for repeat in range(args.repeats + 1):
                stamp = synthetic.met_timestamp(datetime.now(timezone.utc))
                for record in records:
                    if int(record["objectID"]) in chosen:
                        title = f"{record.get('title') or ''} (revised {repeat})"
                        server.set_met_record({**record, "title": title, "metadataDate": stamp}, touch=False)
                for label in (("stock", "home") if repeat % 2 == 0 else ("home", "stock")):
                    env = bench_scale.pipeline_env(homes[label], exports, server.base_urls, backbone)
                    env["DAGSTER_HOME"] = str(dagster_homes[label])
                    load = os.getloadavg()[0]
                    code, wall, cpu, _, lines = bench_scale.run_materialize(materialize_command(run_yaml), env, args.timeout, False)
                    if code:
                        raise SystemExit(f"bench_orchestration: the {label} run failed:\n" + "\n".join(lines[-30:]))
                    _, steps = bench_scale.parse_stage_lines(lines)
                    run = {"wall": wall, "steps": steps, "outside": wall - steps, "cpu": cpu, "load": load}
                    print(f"  {'(settling) ' if repeat == 0 else ''}{label:<6} wall {wall:6.1f} s, steps {steps:6.1f} s, "
                          f"outside the steps {wall - steps:5.1f} s, CPU {cpu:6.1f} s (load average {load:.1f})", flush=True)
                    if repeat:
                        figures[label].append(run)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {label: {k: min(r[k] for r in runs) for k in ("wall", "outside", "cpu")} for label, runs in figures.items()}
    print(f"  {'best of ' + str(args.repeats):<12} {'wall':>8} {'outside':>8} {'CPU':>8}")
    for label, b in best.items():
        print(f"  {label:<12} {b['wall']:>8.1f} {b['outside']:>8.1f} {b['cpu']:>8.1f}")
    print(f"  {'home/stock':<12} " + " ".join(f"{best['home'][k] / best['stock'][k]:>8.3f}" for k in ("wall", "outside", "cpu")))
    return best


# --------------------------------------------------------------------------------------------
# 3. The end of the process: Python's exit against cli.exit_without_teardown
# --------------------------------------------------------------------------------------------

EXIT_SCRIPT = """
import sys, time
started = time.perf_counter()
import dagster, great_expectations, mlflow, polars, torch, transformers
from transformers import BertModel
print(time.perf_counter() - started, flush=True)
if sys.argv[1] == "without_teardown":
    from artsim_pipeline.cli import exit_without_teardown
    exit_without_teardown(0)
"""


def bench_exit(turns: int = 2) -> dict:
    """Seconds from the end of a script that imported what a run loads to the end of its process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GX_ANALYTICS_ENABLED": "False", "MLFLOW_DISABLE_TELEMETRY": "true"}
    figures: dict[str, list[float]] = {"python": [], "without_teardown": []}
    for turn in range(turns):
        for mode in (("python", "without_teardown") if turn % 2 == 0 else ("without_teardown", "python")):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, mode], env=env, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - started
            if done.returncode:
                raise SystemExit(f"bench_orchestration: the exit script failed: {done.stderr[-2000:]}")
            figures[mode].append(wall - float(done.stdout.split()[0]))
    best = {mode: min(values) for mode, values in figures.items()}
    print(f"  after the imports to the end of the process (best of {turns}): Python's exit {best['python']:.2f} s, "
          f"exit_without_teardown {best['without_teardown']:.2f} s (ratio {best['without_teardown'] / best['python']:.3f})")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="Dagster runs per instance and turn (part 1)")
    parser.add_argument("--pipeline", action="store_true", help="also part 2: the 1%% run of `artsim materialize`")
    parser.add_argument("--size", type=int, default=2000, help="records of the synthetic Met collection (part 2)")
    parser.add_argument("--fraction", type=float, default=0.01, help="share of the records retitled per repeat (part 2)")
    parser.add_argument("--repeats", type=int, default=2, help="measured 1%% runs per storage (part 2)")
    parser.add_argument("--kept", metavar="DIR", help="a folder `bench_scale.py --keep` left: its home_<size> instead of a full build")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one `artsim materialize` may take")
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    print(f"bench_orchestration: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("1. per Dagster run and per staleness resolution, Dagster's stock SQLite storage and compute logs vs dagster.yaml's")
    bench_instance(args.runs)
    print("   compute log capture per run, Dagster's LocalComputeLogManager vs HomeComputeLogManager")
    bench_capture(args.runs)
    print("3. the end of the process after a run's imports, Python's exit vs cli.exit_without_teardown")
    bench_exit()
    if args.pipeline:
        print(f"2. the {args.fraction:.0%} run of `artsim materialize` at {args.size:,} records, Dagster's stock instance vs dagster.yaml's")
        bench_pipeline(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
