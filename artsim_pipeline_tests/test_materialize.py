"""`artsim materialize` output: one line per asset (partition) with what it holds and how long it
took; Dagster's event lines stay in the run log unless `--verbose`."""

from __future__ import annotations

import polars as pl
from dagster import AssetKey, AssetOut, DagsterInstance, DataVersion, Definitions, MetadataValue, Output, asset, materialize, multi_asset

from artsim_pipeline.materialize import Stage, _with_console, stages_of


@asset
def counted(context) -> Output[pl.DataFrame]:
    context.log.info("counting")
    return Output(pl.DataFrame({"x": [1, 2, 3]}), metadata={"rows": 3, "preview": MetadataValue.md("x")})


@asset
def scored() -> Output[int]:
    return Output(1, metadata={"note": "no count here", "recall_at_10": 0.9876})


def test_one_stage_per_materialised_asset_with_its_count_and_seconds(capfd):
    with DagsterInstance.ephemeral() as instance:
        result = materialize([counted, scored], instance=instance, run_config=_with_console(None, verbose=False))
    stages = {s.asset: s for s in stages_of(result)}
    assert stages["counted"].count == 3 and stages["counted"].unit == "rows" and stages["counted"].seconds >= 0
    assert stages["scored"].unit == "recall_at_10" and stages["scored"].count == 0.9876  # no count: its first figure
    assert stages["counted"].line().split()[:3] == ["counted", "3", "rows"] and stages["counted"].line().endswith(" s")
    assert "recall_at_10 0.988" in stages["scored"].line()
    assert Stage("artworks", "met", 1997, "rows", 2.6).line().startswith("artworks[met]")
    err = capfd.readouterr().err
    assert "STEP_START" not in err and "counting" not in err  # the events are in the run log, not on the terminal


def test_verbose_shows_dagsters_events(capfd):
    with DagsterInstance.ephemeral() as instance:
        materialize([counted], instance=instance, run_config=_with_console(None, verbose=True))
    err = capfd.readouterr().err
    assert "STEP_START" in err and "counting" in err


def test_a_loggers_section_given_in_the_run_config_wins():
    given = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, "ops": {}}
    assert _with_console(given, verbose=False) is given
    assert _with_console({"ops": {"a": {}}}, verbose=False) == {
        "ops": {"a": {}}, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# A tiny graph for the waves: `parity` reports its content as data version, so a new `counter`
# with the same parity leaves `parity_report` up to date.
COUNTER = {"value": 1}
CALLS: list[str] = []


@asset(code_version="1")
def counter() -> Output[int]:
    return Output(COUNTER["value"], data_version=DataVersion(str(COUNTER["value"])))


@asset(code_version="1")
def parity(counter: int) -> Output[int]:
    CALLS.append("parity")
    return Output(counter % 2, data_version=DataVersion(str(counter % 2)))


@asset(code_version="1")
def parity_report(parity: int) -> str:
    CALLS.append("parity_report")
    return "odd" if parity else "even"


def test_materialising_in_waves_follows_data_versions_not_materialisations():
    from artsim_pipeline.materialize import materialize_in_waves

    assets = [counter, parity, parity_report]
    graph = Definitions(assets=assets).resolve_asset_graph()
    downstream = {AssetKey("parity"), AssetKey("parity_report")}
    with DagsterInstance.ephemeral() as instance:
        def execute(wave):
            assert materialize(assets, selection=list(wave), instance=instance).success

        def ingest_then_waves(value: int) -> set[str]:
            COUNTER["value"] = value
            execute({AssetKey("counter")})
            CALLS.clear()
            return {k.to_user_string() for k in materialize_in_waves(instance, graph, downstream, None, execute)}

        assert ingest_then_waves(1) == {"parity", "parity_report"}  # missing: everything runs
        assert CALLS == ["parity", "parity_report"]
        # a new counter with the same parity: parity runs, gives the same data version, and
        # the report is left alone (materialising everything downstream would run it)
        assert ingest_then_waves(3) == {"parity"} and CALLS == ["parity"]
        assert ingest_then_waves(4) == {"parity", "parity_report"} and CALLS == ["parity", "parity_report"]
        assert ingest_then_waves(4) == set() and CALLS == []  # the same counter again: nothing is stale


@asset
def wave_x() -> int:
    return 1


@asset
def wave_w(wave_x: int) -> int:
    return wave_x


@asset
def wave_z() -> int:
    return 2


@asset
def wave_y(wave_w: int, wave_z: int) -> int:
    return wave_w + wave_z


def test_an_asset_still_reported_stale_after_it_ran_does_not_hold_back_what_is_downstream(monkeypatch):
    """x ran in this materialisation yet is still reported stale (e.g. through an observed source);
    w after it is up to date, y after w is stale through z. y must run, and x not again."""
    import artsim_pipeline.materialize as materialize_module

    graph = Definitions(assets=[wave_x, wave_w, wave_z, wave_y]).resolve_asset_graph()
    keys = {AssetKey(k) for k in ("wave_x", "wave_w", "wave_y")}
    ran_waves: list[set[str]] = []
    stale_now = {AssetKey("wave_x"), AssetKey("wave_y")}

    def stale_or_missing(instance, graph, keys, partition):
        return set(stale_now) & keys

    def execute(wave):
        ran_waves.append({k.to_user_string() for k in wave})
        stale_now.difference_update(wave - {AssetKey("wave_x")})  # what runs is up to date; x stays "stale"

    monkeypatch.setattr(materialize_module, "_stale_or_missing", stale_or_missing)
    ran = materialize_module.materialize_in_waves(None, graph, keys, None, execute)
    assert ran_waves == [{"wave_x"}, {"wave_y"}]
    assert {k.to_user_string() for k in ran} == {"wave_x", "wave_y"}


def test_no_wave_is_planned_after_one_that_left_nothing_downstream_to_run(monkeypatch):
    """x and w after it are both stale: one wave runs them, and what is stale is not asked again
    (nothing that reads what ran is left to run)."""
    import artsim_pipeline.materialize as materialize_module

    graph = Definitions(assets=[wave_x, wave_w, wave_z, wave_y]).resolve_asset_graph()
    keys = {AssetKey(k) for k in ("wave_x", "wave_w")}
    stale_now = {AssetKey("wave_x"), AssetKey("wave_w")}
    asked: list[int] = []

    def stale_or_missing(instance, graph, keys, partition):
        asked.append(1)
        return set(stale_now) & keys

    def execute(wave):
        stale_now.difference_update(wave)

    monkeypatch.setattr(materialize_module, "_stale_or_missing", stale_or_missing)
    ran = materialize_module.materialize_in_waves(None, graph, keys, None, execute)
    assert {k.to_user_string() for k in ran} == {"wave_x", "wave_w"} and len(asked) == 1


@multi_asset(outs={"pair_left": AssetOut(), "pair_right": AssetOut()})
def pair():
    return 1, 2


@asset
def after_right(pair_right: int) -> int:
    return pair_right


def test_what_reads_a_sibling_that_ran_along_is_asked_about_again(monkeypatch):
    """Only pair_left is stale, but its multi-asset runs pair_right too (`execute` says so), whose
    new content makes after_right stale: a second wave must ask, and run it."""
    import artsim_pipeline.materialize as materialize_module

    graph = Definitions(assets=[pair, after_right]).resolve_asset_graph()
    keys = {AssetKey(k) for k in ("pair_left", "pair_right", "after_right")}
    stale_now = {AssetKey("pair_left")}
    waves: list[set[str]] = []

    def stale_or_missing(instance, graph, keys, partition):
        return set(stale_now) & keys

    def execute(wave):
        waves.append({k.to_user_string() for k in wave})
        stale_now.difference_update(wave)
        if AssetKey("pair_left") in wave:  # the sibling ran along and changed
            stale_now.add(AssetKey("after_right"))
            return {AssetKey("pair_left"), AssetKey("pair_right")}
        return wave

    monkeypatch.setattr(materialize_module, "_stale_or_missing", stale_or_missing)
    ran = materialize_module.materialize_in_waves(None, graph, keys, None, execute)
    assert waves == [{"pair_left"}, {"after_right"}]
    assert {k.to_user_string() for k in ran} == {"pair_left", "pair_right", "after_right"}
