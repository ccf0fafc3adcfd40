"""The built-in fleet's own defaults: applied on the simulated source alone, to the keys a
configuration does not give, re-derived when an override switches the source."""

from __future__ import annotations

from pathlib import Path

from pdmlens.config import BUILT_IN_FLEET_DEFAULTS, RunConfig, load_config

FULL = Path(__file__).resolve().parents[1] / "configs" / "simulated-full.yaml"


def _general() -> dict[str, object]:
    """Every key as the other sources have it."""
    return RunConfig().with_overrides(["data.source=cmapss"]).flat()


def test_simulated_source_takes_the_built_in_fleet_defaults_and_no_other_source_does():
    assert BUILT_IN_FLEET_DEFAULTS, "the built-in fleet has defaults of its own"
    sim, general = RunConfig().flat(), _general()
    for key, value in BUILT_IN_FLEET_DEFAULTS.items():
        assert sim[key] == value, key
        assert general[key] != value, key  # C-MAPSS and the rest keep the class default
    events = load_config(None, ["data.source=events"]).flat()
    assert all(events[k] == general[k] for k in BUILT_IN_FLEET_DEFAULTS)
    # every other key is the same on every source
    assert {
        k: v for k, v in sim.items() if k not in BUILT_IN_FLEET_DEFAULTS and k != "data.source"
    } == {
        k: v for k, v in general.items() if k not in BUILT_IN_FLEET_DEFAULTS and k != "data.source"
    }


def test_a_key_given_wins_and_switching_source_rederives_the_rest():
    key = next(iter(BUILT_IN_FLEET_DEFAULTS))
    general = _general()[key]
    cfg = load_config(None, [f"{key}={general if general is not None else 'null'}"])
    assert cfg.flat()[key] == general and cfg.data.source == "simulated"
    # a config built for C-MAPSS and switched back to the simulated fleet takes its defaults
    back = (
        RunConfig()
        .with_overrides(["data.source=cmapss"])
        .with_overrides(["data.source=simulated", "seed=2"])
    )
    assert back == RunConfig(seed=2) and back.seed == 2
    assert all(back.flat()[k] == v for k, v in BUILT_IN_FLEET_DEFAULTS.items())
    # a dumped config (the flow, the scoring bundle) reloads as it was, whatever the source
    cm = RunConfig().with_overrides(["data.source=cmapss", "data.path=/x"])
    again = RunConfig.model_validate(cm.model_dump(mode="json"))
    assert again == cm and again.with_overrides(["seed=5"]).flat()[key] == general


def test_full_size_demo_config_runs_the_general_defaults_on_the_full_fleet():
    full = load_config(FULL)
    flat, general = full.flat(), _general()
    assert full.data.source == "simulated"
    assert full.data.simulator.n_units == 120 and full.data.simulator.n_test_units == 40
    assert all(flat[k] == general[k] for k in BUILT_IN_FLEET_DEFAULTS)
    assert (
        full.with_overrides(["seed=1"]).model.lstm.hidden_size == general["model.lstm.hidden_size"]
    )
