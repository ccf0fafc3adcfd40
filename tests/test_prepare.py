"""prepare: regimes, normalisation, labels, unit split, persistence (tiny hand-made fleets)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from pdmlens.config import PrepareConfig, RunConfig, WindowConfig
from pdmlens.data.fleet import Fleet, FleetMeta, FleetSplits
from pdmlens.data.prepare import PreparedData, Preparer, prepare, split_units
from pdmlens.errors import NotFittedError


def fleet_from(columns: dict[str, list], meta: FleetMeta | None = None) -> Fleet:
    return Fleet(pd.DataFrame(columns), meta or FleetMeta("toy", "test"))


def two_unit_fleet() -> Fleet:
    # unit a: 4 rows run to failure; unit b: 2 rows, RUL known.
    return fleet_from(
        {
            "unit": ["a"] * 4 + ["b"] * 2,
            "time": [1, 2, 3, 4, 1, 2],
            "sensor_1": [1.0, 1.0, 1.0, 7.0, 7.0, 7.0],
            "sensor_2": [7.0] * 6,
            "rul_raw": [3.0, 2.0, 1.0, 0.0, 41.0, 40.0],
        }
    )


def test_labels_cap_and_horizon_exact() -> None:
    cfg = PrepareConfig(rul_cap=2.0, horizon=1, drop_constant=False)
    out = Preparer(cfg).fit_transform(two_unit_fleet())
    assert out["rul"].tolist() == [2.0, 2.0, 1.0, 0.0, 2.0, 2.0]
    assert out["fails_within_1"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert out["rul_raw"].tolist() == [3.0, 2.0, 1.0, 0.0, 41.0, 40.0]
    assert out["rul"].dtype == np.float32 and out["fails_within_1"].dtype == np.float32


def test_unknown_rul_stays_nan() -> None:
    f = two_unit_fleet()
    f.frame.loc[4:, "rul_raw"] = np.nan
    out = Preparer(PrepareConfig(horizon=1)).fit_transform(f)
    assert np.isnan(out["rul"].iloc[4:]).all()
    assert np.isnan(out["fails_within_1"].iloc[4:]).all()
    assert not np.isnan(out["fails_within_1"].iloc[:4]).any()


def test_missing_rul_column_gives_nan_labels() -> None:
    f = two_unit_fleet()
    out = Preparer().fit_transform(Fleet(f.frame.drop(columns="rul_raw"), f.meta))
    assert out["rul_raw"].isna().all() and out["rul"].isna().all()


def test_zscores_equal_hand_computed() -> None:
    prep = Preparer(PrepareConfig(age_feature=False)).fit(two_unit_fleet())
    out = prep.transform(two_unit_fleet())
    x = np.array([1.0, 1.0, 1.0, 7.0, 7.0, 7.0])
    mean = x.sum() / 6  # 4.0
    std = np.sqrt(((x - mean) ** 2).sum() / 6)  # population std: sqrt(6 * 9 / 6) = 3
    assert mean == 4.0 and std == 3.0
    assert out["sensor_1"].tolist() == pytest.approx(((x - 4.0) / 3.0).tolist(), abs=1e-7)
    assert out["sensor_1"].dtype == np.float32
    assert prep.mean_[0].tolist() == [4.0] and prep.std_[0].tolist() == [3.0]


def test_constant_sensor_dropped_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pdmlens.data.prepare"):
        prep = Preparer(PrepareConfig()).fit(two_unit_fleet())
    assert prep.dropped_sensors_ == ["sensor_2"]
    assert prep.features_ == ["sensor_1", "age"]
    assert "sensor_2" in caplog.text and "constant" in caplog.text
    out = prep.transform(two_unit_fleet())
    assert "sensor_2" not in out.columns
    # drop_constant=False keeps it, centred (std taken as 1): all zeros.
    keep = Preparer(PrepareConfig(drop_constant=False)).fit(two_unit_fleet())
    assert keep.dropped_sensors_ == [] and keep.constant_sensors_ == ["sensor_2"]
    assert keep.transform(two_unit_fleet())["sensor_2"].tolist() == [0.0] * 6


def test_output_columns_order_and_types() -> None:
    meta = FleetMeta("toy", "test", fault_modes={"a": "fan", "b": "hpc"})
    f = two_unit_fleet()
    f = Fleet(f.frame, meta)
    out = Preparer().fit_transform(f)
    assert list(out.columns) == [
        "unit",
        "time",
        "regime",
        "fault_mode",
        "sensor_1",
        "age",
        "rul_raw",
        "rul",
        "fails_within_30",
    ]
    assert out["regime"].dtype == np.int32 and (out["regime"] == 0).all()
    assert out["fault_mode"].tolist() == ["fan"] * 4 + ["hpc"] * 2


def test_rows_grouped_and_sorted() -> None:
    f = two_unit_fleet()
    shuffled = Fleet(f.frame.iloc[[5, 2, 0, 4, 3, 1]].reset_index(drop=True), f.meta)
    out = Preparer().fit(f).transform(shuffled)
    assert out["unit"].tolist() == ["b", "b", "a", "a", "a", "a"]
    assert out["time"].tolist() == [1, 2, 1, 2, 3, 4]
    assert out["rul_raw"].tolist() == [41.0, 40.0, 3.0, 2.0, 1.0, 0.0]


def test_transform_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        Preparer().transform(two_unit_fleet())


# --------------------------------------------------------------------------- regimes
def regime_fleet(n_units: int = 6, length: int = 40, seed: int = 0) -> tuple[Fleet, np.ndarray]:
    """Three operating points; sensor_1 is shifted by the regime, sensor_2 is not."""
    rng = np.random.default_rng(seed)
    points = np.array([[0.0, 0.0, 100.0], [20.0, 0.7, 100.0], [42.0, 0.84, 60.0]])
    shift = np.array([0.0, 50.0, 120.0])
    n = n_units * length
    reg = rng.integers(0, 3, size=n)
    settings = points[reg] + rng.normal(0, 1e-3, size=(n, 3))
    return fleet_from(
        {
            "unit": np.repeat([f"u{i}" for i in range(n_units)], length),
            "time": np.tile(np.arange(1, length + 1), n_units),
            "setting_1": settings[:, 0],
            "setting_2": settings[:, 1],
            "setting_3": settings[:, 2],
            "sensor_1": 500 + shift[reg] + rng.normal(0, 1, n),
            "sensor_2": rng.normal(10, 2, n),
            "rul_raw": np.tile(np.arange(length - 1, -1, -1.0), n_units),
        }
    ), reg


def test_three_regimes_found_and_normalised_per_regime() -> None:
    fleet, truth = regime_fleet()
    prep = Preparer(PrepareConfig()).fit(fleet)
    assert prep.n_regimes_ == 3
    assert prep.regimes_.silhouettes[3] > 0.95
    out = prep.transform(fleet)
    # Numbered by centroid in lexicographic order of settings = the order of `points`.
    assert np.array_equal(out["regime"].to_numpy(), truth)
    for r in range(3):
        z = out.loc[out["regime"] == r, "sensor_1"].to_numpy(np.float64)
        assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-5)
    # Settings define the regime; they are not features.
    assert prep.features_ == ["sensor_1", "sensor_2", "age"]


def test_global_normalisation_adds_settings_when_several_regimes() -> None:
    fleet, _ = regime_fleet()
    prep = Preparer(PrepareConfig(normalize="global")).fit(fleet)
    assert prep.n_regimes_ == 3
    assert prep.features_ == ["sensor_1", "sensor_2", "setting_1", "setting_2", "setting_3", "age"]
    out = prep.transform(fleet)
    assert abs(out["sensor_1"].mean()) < 1e-5 and out["setting_2"].std(ddof=0) == pytest.approx(
        1.0, abs=1e-5
    )


def test_n_regimes_override() -> None:
    fleet, _ = regime_fleet()
    assert Preparer(PrepareConfig(n_regimes=1)).fit(fleet).n_regimes_ == 1
    assert Preparer(PrepareConfig(n_regimes=2)).fit(fleet).n_regimes_ == 2


def test_single_noisy_operating_point_is_one_regime() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    fleet = fleet_from(
        {
            "unit": np.repeat([f"u{i}" for i in range(10)], n // 10),
            "time": np.tile(np.arange(1, n // 10 + 1), 10),
            "setting_1": rng.normal(0, 0.002, n),  # FD001-like: noise around one point
            "setting_2": np.round(rng.uniform(-6e-4, 6e-4, n), 4),  # quantised noise
            "setting_3": np.full(n, 100.0),  # constant
            "sensor_1": rng.normal(0, 1, n),
        }
    )
    prep = Preparer(PrepareConfig()).fit(fleet)
    assert prep.n_regimes_ == 1
    assert prep.regimes_.columns == ["setting_1", "setting_2"]  # the constant one ignored
    assert max(prep.regimes_.silhouettes.values()) < 0.7


def test_fd001_is_one_regime_with_known_constant_sensors(cmapss_dir) -> None:
    from pdmlens.data.cmapss import load_cmapss

    splits = load_cmapss(cmapss_dir, "FD001")
    prep = Preparer(PrepareConfig()).fit(splits.train)
    assert prep.n_regimes_ == 1
    assert prep.dropped_sensors_ == [
        "sensor_1",
        "sensor_5",
        "sensor_10",
        "sensor_16",
        "sensor_18",
        "sensor_19",
    ]


# --------------------------------------------------------------------------- train units only
def test_scaler_fitted_on_train_units_only() -> None:
    fleet, _ = regime_fleet()
    train_units = ["u0", "u1", "u2", "u3"]
    a = Preparer(PrepareConfig()).fit(fleet, units=train_units).state_dict()
    changed = fleet.frame.copy()
    val = changed["unit"].isin(["u4", "u5"])
    changed.loc[val, "sensor_1"] += 1000.0
    changed.loc[val, "sensor_2"] = 3.0
    b = Preparer(PrepareConfig()).fit(Fleet(changed, fleet.meta), units=train_units)
    assert b.state_dict() == a
    # ... and it differs from a fit that sees the changed units.
    c = Preparer(PrepareConfig()).fit(Fleet(changed, fleet.meta)).state_dict()
    assert c["mean_"] != a["mean_"]


def test_split_units_by_unit_deterministic() -> None:
    units = [f"m{i}" for i in range(20)]
    tr, va = split_units(units, 0.25, seed=3)
    assert len(va) == 5 and len(tr) == 15
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(units)
    assert split_units(units, 0.25, seed=3) == (tr, va)
    assert split_units(list(reversed(units)), 0.25, seed=3)[1] == list(reversed(va))
    assert split_units(units, 0.25, seed=4)[1] != va
    assert split_units(units, 0.0, seed=3) == (units, [])
    assert len(split_units(["x", "y"], 0.01, seed=0)[1]) == 1  # at least one when asked


def test_prepare_end_to_end_with_censored_unit() -> None:
    fleet, _ = regime_fleet(n_units=10)
    frame = fleet.frame.copy()
    frame.loc[frame["unit"] == "u9", "rul_raw"] = np.nan  # right-censored
    meta = FleetMeta("toy", "test", censored_units=["u8"])
    test = Fleet(frame[frame["unit"].isin(["u0", "u1"])].reset_index(drop=True), meta)
    cfg = RunConfig(prepare=PrepareConfig(val_fraction=0.25))
    data = prepare(FleetSplits(Fleet(frame, meta), test), cfg)
    train_u, val_u = set(data.train["unit"]), set(data.val["unit"])
    assert train_u.isdisjoint(val_u) and len(val_u) == 2 and len(train_u) == 6
    assert {"u8", "u9"}.isdisjoint(train_u | val_u)
    assert set(data.score["unit"]) == {"u8", "u9"}
    assert data.features == ["sensor_1", "sensor_2", "age"]
    assert data.horizon_col == "fails_within_30"
    assert data.preparer.n_rows_fit_ == 6 * 40
    assert len(data.test) == 80
    ds = data.windows("val", WindowConfig(length=5, stride=1))
    assert len(ds) == 2 * 36 and ds.batch([0])[0].shape == (1, 5, 3)
    assert len(data.windows("test", WindowConfig(length=5), last_only=True)) == 2


# --------------------------------------------------------------------------- persistence
def test_preparer_save_load_transforms_identically(tmp_path) -> None:
    fleet, _ = regime_fleet()
    prep = Preparer(PrepareConfig(), seed=5).fit(fleet, units=["u0", "u1", "u2"])
    path = prep.save(tmp_path / "prep.json")
    loaded = Preparer.load(path)
    pd.testing.assert_frame_equal(loaded.transform(fleet), prep.transform(fleet))
    assert loaded.state_dict() == prep.state_dict()


def test_prepared_data_save_load_round_trip(tmp_path) -> None:
    fleet, _ = regime_fleet(n_units=5)
    meta = FleetMeta("toy", "test", fault_modes={f"u{i}": f"m{i % 2}" for i in range(5)})
    fleet = Fleet(fleet.frame, meta)
    data = prepare(FleetSplits(fleet, None), RunConfig())
    data.save(tmp_path / "p")
    back = PreparedData.load(tmp_path / "p")
    pd.testing.assert_frame_equal(back.train, data.train)
    pd.testing.assert_frame_equal(back.val, data.val)
    assert back.test is None and back.score is None
    assert back.features == data.features and back.meta == data.meta
    pd.testing.assert_frame_equal(back.preparer.transform(fleet), data.preparer.transform(fleet))


# --------------------------------------------------------------------------- age feature
def test_age_feature_is_time_since_first_record_zscored() -> None:
    f = two_unit_fleet()
    f.frame["time"] = [5, 6, 7, 8, 11, 12]  # unit a starts at 5, b at 11
    prep = Preparer(PrepareConfig(age_feature=True)).fit(f)
    assert prep.features_ == ["sensor_1", "age"]
    age = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 1.0])
    mean, std = age.mean(), age.std()  # 7/6, population std
    assert prep.mean_[0, 1] == pytest.approx(mean) and prep.std_[0, 1] == pytest.approx(std)
    out = prep.transform(f)
    assert out["age"].tolist() == pytest.approx(((age - mean) / std).tolist(), abs=1e-6)
    assert out["age"].dtype == np.float32
    # A unit scored later is aged from its own first record, with the training statistics.
    late = fleet_from(
        {"unit": ["c"] * 3, "time": [100, 101, 102], "sensor_1": [1.0] * 3, "sensor_2": [7.0] * 3}
    )
    assert prep.transform(late)["age"].tolist() == pytest.approx(
        ((np.arange(3.0) - mean) / std).tolist(), abs=1e-6
    )
    assert Preparer(PrepareConfig(age_feature=False)).fit(f).features_ == ["sensor_1"]


def test_age_feature_of_timestamps_equals_that_of_step_counts() -> None:
    f = two_unit_fleet()
    stamps = Fleet(
        f.frame.assign(
            time=pd.Timestamp("2024-01-01") + pd.to_timedelta(f.frame["time"] * 6, unit="h")
        ),
        f.meta,
    )
    cfg = PrepareConfig(age_feature=True)
    by_step = Preparer(cfg).fit_transform(f)["age"]
    by_stamp = Preparer(cfg).fit_transform(stamps)["age"]
    assert by_stamp.tolist() == pytest.approx(by_step.tolist(), abs=1e-6)


def test_age_feature_survives_save_load(tmp_path) -> None:
    fleet, _ = regime_fleet()
    prep = Preparer(PrepareConfig(age_feature=True)).fit(fleet, units=["u0", "u1", "u2"])
    assert prep.features_[-1] == "age"
    loaded = Preparer.load(prep.save(tmp_path / "prep.json"))
    pd.testing.assert_frame_equal(loaded.transform(fleet), prep.transform(fleet))


@pytest.mark.parametrize("normalize", ["regime", "global"])
def test_fleet_without_settings_survives_save_load(tmp_path, normalize: str) -> None:
    # events sources and tables without setting columns: zero settings, one regime; the
    # saved state once failed to load ("cannot reshape array of size 0 into shape (0)")
    fleet = two_unit_fleet()
    assert fleet.settings == []
    prep = Preparer(PrepareConfig(normalize=normalize)).fit(fleet)
    assert prep.n_regimes_ == 1
    back = Preparer.load(prep.save(tmp_path / "preparer.json"))
    assert back.regimes_.centroids.shape == (1, 0)
    pd.testing.assert_frame_equal(back.transform(fleet), prep.transform(fleet))


def test_max_train_windows_samples_labelled_splits_only() -> None:
    fleet, _ = regime_fleet(n_units=10)
    test = Fleet(
        fleet.frame[fleet.frame["unit"].isin(["u0", "u1"])].reset_index(drop=True), fleet.meta
    )
    data = prepare(FleetSplits(fleet, test), RunConfig(prepare=PrepareConfig(val_fraction=0.2)))
    every, bounded = WindowConfig(length=5), WindowConfig(length=5, max_train_windows=50)
    for split in ("train", "val", "train+val"):
        full, cut = data.windows(split, every), data.windows(split, bounded)
        assert len(full) > 50 and len(cut) == 50
        assert set(cut.end_row) < set(full.end_row)
        again = data.windows(split, bounded)
        assert np.array_equal(again.end_row, cut.end_row)  # the run's seed: repeatable
    assert not np.array_equal(
        data.windows("train", bounded).end_row, data.windows("train+val", bounded).end_row[:50]
    )
    # test windows and last-window sets are never sampled
    assert len(data.windows("test", bounded)) == len(data.windows("test", every)) > 50
    assert len(data.windows("train", bounded, last_only=True)) == 8
    # default: every window, as before, on every source but the built-in fleet (a sample
    # of 4,000 there, for a quick first run: tests/test_config_sources.py)
    assert WindowConfig().max_train_windows is None
    assert RunConfig().with_overrides(["data.source=cmapss"]).window.max_train_windows is None
    assert RunConfig().window.max_train_windows == 4000
    with pytest.raises(ValueError):
        WindowConfig(max_train_windows=0)
