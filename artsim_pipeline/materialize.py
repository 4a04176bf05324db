"""`artsim materialize`: the asset graph materialised in the order that makes sense on one
machine (per source, then per embedding chunk, then the rest), only what is missing or stale,
with one line per asset (partition) as it finishes: what it holds and how long it took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# The metadata entry that says how much an asset holds, in order of preference, and its unit.
COUNTS = (("rows", "rows"), ("live_items", "items"), ("pairs", "pairs"), ("works", "works"), ("points", "points"),
          ("artworks", "artworks"), ("classes", "classes"))


@dataclass(frozen=True)
class Stage:
    """One materialised asset (partition): how much it holds (a count from its metadata, or its
    first numeric figure) and the seconds its step took."""

    asset: str
    partition: str | None
    count: float | None
    unit: str
    seconds: float | None

    def line(self) -> str:
        name = f"{self.asset}[{self.partition}]" if self.partition else self.asset
        if self.count is None:
            held = ""
        elif float(self.count).is_integer():
            unit = self.unit[:-1] if self.count == 1 and self.unit.endswith("s") else self.unit
            held = f"{int(self.count):,} {unit}"
        else:
            held = f"{self.unit} {self.count:.3f}"
        took = f"{self.seconds:.1f} s" if self.seconds is not None else ""
        return f"{name:<34} {held:<28} {took:>8}".rstrip()


def stages_of(result) -> list[Stage]:
    """A `Stage` per asset materialisation of a Dagster run result, in the order they happened."""
    seconds = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events
               if e.event_type_value == "STEP_SUCCESS"}
    stages = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        values = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        count, unit = None, ""
        for key, name in COUNTS:
            if isinstance(values.get(key), (int, float)) and not isinstance(values.get(key), bool):
                count, unit = values[key], name
                break
        else:
            numeric = [(k, v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numeric:
                unit, count = numeric[0]
        stages.append(Stage(materialization.asset_key.to_user_string(), materialization.partition, count, unit,
                            seconds.get(event.step_key)))
    return stages


def _with_console(run_config: dict | None, verbose: bool) -> dict | None:
    """Dagster's console logger at WARNING (DEBUG with `verbose`): every event is still in the run
    log of the instance (the UI), not on the terminal. A `loggers` section given wins."""
    if run_config and "loggers" in run_config:
        return run_config
    return {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "WARNING"}}}}


def materialize_all(sources: list[str] | None = None, *, instance=None, resources: dict | None = None, run_config: dict | None = None,
                    force: bool = False, verbose: bool = False, on_stage: Callable[[Stage], None] | None = None) -> dict:
    """Materialise the asset graph: per source, then per embedding chunk, then the rest.

    Ingestion (`raw_objects`) always runs: it is how new or changed records are found. Every other
    asset runs only when it is missing or stale: its code version or an input's *data version*
    changed. Assets report their content as data version, so an asset recomputed to the same
    content leaves what reads it up to date: the graph is materialised in waves (`_next_wave`),
    each asking again what is stale after the one before. `force` recomputes everything. Runs are recorded
    in the Dagster instance, so they appear in the UI of `make dev`. Dagster's event lines go to
    the run log only (the console shows warnings and errors) unless `verbose`; `on_stage` is
    called with each asset (partition) as soon as its run finishes.
    """
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

    from artsim_pipeline.core.sources import SOURCES
    from artsim_pipeline.definitions import build_defs

    defs = build_defs()
    instance = instance or DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets or [])
    resources = {**(defs.resources or {}), **(resources or {})}
    by_partitions: dict = {}
    unpartitioned = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if node.is_partitioned:
            by_partitions.setdefault(node.partitions_def, set()).add(key)
        else:
            unpartitioned.add(key)
    always = {AssetKey("raw_objects")}
    report: dict = {"recomputed": [], "up_to_date": 0}

    def execute(todo: set, partition: str | None, label: str) -> None:
        selection = AssetSelection.assets(*todo).required_multi_asset_neighbors()
        selected = selection.resolve(graph)
        result = materialize(assets, selection=selection, partition_key=partition, resources=resources, instance=instance,
                             run_config=_with_console(_config_for(run_config, selected), verbose))
        for stage in stages_of(result):
            report.setdefault("stages", []).append(stage)
            if on_stage is not None:
                on_stage(stage)
        if not result.success:
            raise SystemExit(f"materialising {label} failed (see the Dagster run {result.run_id})")
        report["recomputed"] += sorted(f"{k.to_user_string()}[{partition}]" if partition else k.to_user_string()
                                       for k in selected)
        return selected

    def run(keys: set, partition: str | None, label: str) -> None:
        if force:
            execute(set(keys), partition, label)
            return
        if keys & always:  # ingest first: what it finds decides what is stale after it
            execute(keys & always, partition, label)
        ran = materialize_in_waves(instance, graph, keys - always, partition, lambda wave: execute(wave, partition, label))
        report["up_to_date"] += len(keys - always - ran)

    _observe_sources(defs, instance, resources, _with_console(None, verbose))
    # ingest and validation (by source) first: the embedding chunks read their images
    for partitions_def, keys in sorted(by_partitions.items(), key=lambda item: item[0].get_partition_keys() != list(SOURCES)):
        partition_keys = partitions_def.get_partition_keys()
        if sources and set(partition_keys) >= set(sources):
            partition_keys = [p for p in partition_keys if p in sources]
        started = time.monotonic()
        for partition in partition_keys:
            run(keys, partition, f"partition {partition}")
        report[f"partitions {_label(partitions_def)}"] = time.monotonic() - started
    if unpartitioned:
        started = time.monotonic()
        run(unpartitioned, None, "the unpartitioned assets")
        report["unpartitioned assets"] = time.monotonic() - started
    return report


RUN_CONFIG_SECTIONS = ("ops", "resources", "execution", "loggers")


def load_run_config(path: str | None) -> dict | None:
    """The Dagster run config in the YAML file `path` (None: none). A file that is not a mapping of
    run-config sections is refused with a message naming the file, before anything runs."""
    if not path:
        return None
    from pathlib import Path

    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read run config {path}: {exc}") from exc
    if loaded is None:
        return None
    unknown = sorted(set(loaded) - set(RUN_CONFIG_SECTIONS)) if isinstance(loaded, dict) else None
    if unknown is None or unknown:
        raise ValueError(f"{path} must be a mapping with the sections {', '.join(RUN_CONFIG_SECTIONS)}"
                         + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
    return loaded


def _config_for(run_config: dict | None, keys: set) -> dict | None:
    """`run_config` without the ops of assets that are not in this run (Dagster rejects those)."""
    if not run_config or "ops" not in run_config:
        return run_config
    names = {k.path[-1] for k in keys}
    ops = {op: cfg for op, cfg in run_config["ops"].items() if op in names}
    rest = {k: v for k, v in run_config.items() if k != "ops"}
    return {**rest, "ops": ops} if ops else (rest or None)


def _observe_sources(defs, instance, resources: dict, run_config: dict | None = None) -> None:
    """Observe the observable source assets (curator judgments) so their data versions are current."""
    from dagster import SourceAsset
    from dagster._core.definitions.observe import observe

    observable = [a for a in defs.assets or [] if isinstance(a, SourceAsset) and a.is_observable]
    if observable:
        observe(observable, instance=instance, resources={k: v for k, v in resources.items() if k != "io_manager"},
                run_config=run_config)


def _stale_or_missing(instance, graph, keys: set, partition: str | None) -> set:
    """The `keys` that are missing for `partition`, or stale: Dagster's stale status, which
    compares the data versions an asset last read with its inputs' current ones (and its code
    version), so an input recomputed to the same content makes nothing stale."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    if not keys:
        return set()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance, graph, view)
    return {k for k in keys if resolver.get_status(k, partition) in (StaleStatus.STALE, StaleStatus.MISSING)}


def materialize_in_waves(instance, graph, keys: set, partition: str | None, execute: Callable[[set], set | None]) -> set:
    """Materialise what is missing or stale among `keys` (for `partition`), wave by wave
    (`_next_wave`, each materialised by `execute`, which may return the keys it really ran: a
    multi-asset's siblings), until nothing is; returns what ran. No wave is planned after one
    that left nothing among `keys` downstream of what ran (`_settled`): asking would find
    nothing stale."""
    ran: set = set()
    for _ in range(len(keys) + 1):
        wave = _next_wave(instance, graph, keys, partition, done=ran)
        if not wave:
            break
        ran |= wave | (set(execute(wave) or ()) & keys)
        if _settled(graph, keys, ran):
            break
    return ran


def _settled(graph, keys: set, ran: set) -> bool:
    """Whether every one of `keys` downstream of what `ran` has run too. Then nothing among `keys`
    can have become stale since the last wave was planned: what was stale then ran in it, and
    the rest reads nothing that ran (an asset that ran and is still reported stale, e.g. through
    an observed source, is not run again in any case)."""
    from dagster import AssetSelection

    return (AssetSelection.assets(*ran).downstream().resolve(graph) & keys) <= ran


def _next_wave(instance, graph, keys: set, partition: str | None, done: set = frozenset()) -> set:
    """The `keys` to materialise now: the missing or stale ones, except those downstream of an
    asset that is not stale yet but may change once the stale ones have run. Those wait for the
    next wave, which asks again: only what an input's new data version made stale runs then.
    What already ran in this materialisation (`done`) is not run again: a wave runs an asset
    only once everything upstream of it that was going to run has, so nothing it reads can
    change after it (an asset still reported stale then, e.g. by an observed source, waits for
    the next materialisation)."""
    from dagster import AssetSelection

    stale = _stale_or_missing(instance, graph, keys, partition) - set(done)
    if not stale:
        return set()
    waiting = (AssetSelection.assets(*stale).downstream().resolve(graph) & keys) - stale
    if not waiting:
        return stale
    return stale - AssetSelection.assets(*waiting).downstream().resolve(graph)


def _label(partitions_def) -> str:
    keys = partitions_def.get_partition_keys()
    return f"[{keys[0]} .. {keys[-1]}]"
