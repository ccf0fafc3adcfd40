"""`pdmlens data inspect|simulate`: JSON summaries, exit code 2 and `error:` messages."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import types

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pdmlens.cli import app
from pdmlens.data.fleet import Fleet, FleetMeta, FleetSplits

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _fd001_json(result) -> dict:
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    tr, te = report["train"], report["test"]
    assert (tr["units"], tr["rows"]) == (100, 20631)
    assert (te["units"], te["rows"], te["rul_labels"]) == (100, 13096, 100)
    assert tr["sensors"] == [f"sensor_{i}" for i in range(1, 22)]
    assert tr["regimes"] == 1 and report["problems"] == []
    assert tr["unit_length"] == {"min": 128, "median": 199.0, "max": 362}
    return report


def test_inspect_cmapss_json_gz(cmapss_dir):
    _fd001_json(
        _invoke(
            "data",
            "inspect",
            "--source",
            "cmapss",
            "--path",
            str(cmapss_dir),
            "--subset",
            "FD001",
            "--json",
        )
    )


def test_inspect_cmapss_json_plain(cmapss_dir, tmp_path):
    for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"):
        with (
            gzip.open(cmapss_dir / (name + ".gz"), "rb") as src,
            open(tmp_path / name, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
    _fd001_json(_invoke("data", "inspect", "--source", "cmapss", "--path", str(tmp_path), "--json"))


def _tiny_cmapss(folder, train_lines):
    def line(u, c, v="1.0"):
        return " ".join([str(u), str(c), "0", "0", "100"] + [v] * 21) + " \n"

    (folder / "train_FD001.txt").write_text("".join(line(u, c) for u, c in train_lines))
    (folder / "test_FD001.txt").write_text(line(1, 1) + line(1, 2))
    (folder / "RUL_FD001.txt").write_text("5\n")


def test_inspect_reports_problems_on_stderr_with_exit_2(tmp_path):
    _tiny_cmapss(tmp_path, [(1, 1), (1, 2), (1, 2), (2, 1)])
    res = _invoke("data", "inspect", "--source", "cmapss", "--path", str(tmp_path), "--json")
    assert res.exit_code == 2
    report = json.loads(res.stdout)
    assert report["train"]["units"] == 2 and report["test"]["rul_labels"] == 1
    (p,) = report["problems"]
    assert (p["column"], p["row"], p["unit"]) == ("time", 3, "1")
    assert "error: file " in res.stderr and "train_FD001.txt" in res.stderr
    assert "column 'time', row 3" in res.stderr and "duplicate" in res.stderr
    assert "Traceback" not in res.output


def test_inspect_text_summary(tmp_path):
    _tiny_cmapss(tmp_path, [(1, 1), (1, 2), (2, 1)])
    res = _invoke("data", "inspect", "--source", "cmapss", "--path", str(tmp_path), "--window", "2")
    assert res.exit_code == 2  # unit 2 is shorter than the window
    assert "units: 2   rows: 3" in res.stdout and "units with a known end RUL: 1" in res.stdout
    assert "unit '2'" in res.stderr and "window needs 2" in res.stderr


def test_missing_folder_is_error_exit_2(tmp_path):
    res = _invoke("data", "inspect", "--source", "cmapss", "--path", str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert res.stderr.startswith("error: file ") and "nope" in res.stderr
    assert "Traceback" not in res.output and res.stdout == ""


def test_unreadable_file_is_error_exit_2(tmp_path):
    _tiny_cmapss(tmp_path, [(1, 1), (1, 2)])
    path = tmp_path / "train_FD001.txt"
    path.write_text(path.read_text() + "1 3 0 0\n")
    res = _invoke("data", "inspect", "--source", "cmapss", "--path", str(tmp_path), "--json")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: file ") and "row 3" in res.stderr
    assert "column 'setting_3'" in res.stderr and "4 fields" in res.stderr


def test_inspect_events(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=4, freq="h")
    pd.DataFrame({"asset": ["A"] * 4, "timestamp": stamps, "temp": [1.0, 2, 3, 4]}).to_csv(
        tmp_path / "r.csv", index=False
    )
    pd.DataFrame({"asset": ["A"], "timestamp": [stamps[1]]}).to_csv(tmp_path / "f.csv", index=False)
    res = _invoke(
        "data",
        "inspect",
        "--source",
        "events",
        "--path",
        str(tmp_path),
        "--readings",
        "r.csv",
        "--failures",
        "f.csv",
        "--json",
    )
    assert res.exit_code == 0, res.output
    tr = json.loads(res.stdout)["train"]
    assert (tr["units"], tr["rows"], tr["sensors"]) == (2, 4, ["sensor_temp"])
    assert tr["rul_labels"] == 1 and tr["censored_units"] == 1
    res = _invoke(
        "data",
        "inspect",
        "--source",
        "events",
        "--path",
        str(tmp_path),
        "--readings",
        "r.csv",
        "--failures",
        "missing.csv",
    )
    assert res.exit_code == 2 and "missing.csv" in res.stderr and "not found" in res.stderr


def test_inspect_table_with_bad_value(tmp_path):
    (tmp_path / "t.csv").write_text("unit,time,s1\nu,1,1.0\nu,2,inf\nu,3,x\n")
    res = _invoke(
        "data", "inspect", "--source", "table", "--path", str(tmp_path / "t.csv"), "--json"
    )
    assert res.exit_code == 2
    problems = json.loads(res.stdout)["problems"]
    assert [(p["column"], p["row"]) for p in problems] == [("sensor_s1", 3), ("sensor_s1", 2)]
    assert "non-numeric value 'x'" in res.stderr and "infinite value inf" in res.stderr


def _fake_simulator(monkeypatch):
    def simulate_fleet(cfg, seed):
        rng = np.random.default_rng(seed)

        def fleet(n, split):
            frame = pd.DataFrame(
                {
                    "unit": np.repeat([f"u{i}" for i in range(n)], 3),
                    "time": np.tile(np.arange(3), n),
                    "sensor_1": rng.standard_normal(3 * n),
                    "rul_raw": np.tile([2.0, 1.0, 0.0], n),
                }
            )
            return Fleet(frame, FleetMeta("sim", "simulated", split))

        return FleetSplits(fleet(cfg.n_units, "train"), fleet(cfg.n_test_units, "test"))

    mod = types.ModuleType("pdmlens.data.simulate")
    mod.simulate_fleet = simulate_fleet
    monkeypatch.setitem(sys.modules, "pdmlens.data.simulate", mod)


def test_simulate_writes_train_and_test(tmp_path, monkeypatch):
    _fake_simulator(monkeypatch)
    out = tmp_path / "fleet.parquet"
    res = _invoke(
        "data", "simulate", "--out", str(out), "--units", "4", "--test-units", "2", "--seed", "3"
    )
    assert res.exit_code == 0, res.output
    train = Fleet.from_parquet(tmp_path / "fleet-train.parquet")
    test = Fleet.from_parquet(tmp_path / "fleet-test.parquet")
    assert (len(train.units), len(test.units)) == (4, 2)
    assert train.meta.split == "train" and test.meta.split == "test"
    res = _invoke("data", "simulate", "--out", str(tmp_path / "dir"), "--units", "4", "--seed", "3")
    again = Fleet.from_parquet(tmp_path / "dir" / "train.parquet")
    pd.testing.assert_frame_equal(again.frame, train.frame)
    res = _invoke("data", "inspect", "--source", "simulated", "--units", "5", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["train"]["units"] == 5


def test_simulate_with_real_simulator(tmp_path):
    pytest.importorskip("pdmlens.data.simulate")
    res = _invoke(
        "data",
        "simulate",
        "--out",
        str(tmp_path / "s.parquet"),
        "--units",
        "6",
        "--test-units",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert len(Fleet.from_parquet(tmp_path / "s-train.parquet").units) == 6


def test_simulated_source_is_validated(monkeypatch):
    from pdmlens.config import DataConfig, SimulatorConfig
    from pdmlens.data.sources import load_source
    from pdmlens.errors import DataValidationError

    _fake_simulator(monkeypatch)
    real = sys.modules["pdmlens.data.simulate"].simulate_fleet

    def broken(cfg, seed):
        splits = real(cfg, seed)
        splits.train.frame.loc[4, "sensor_1"] = np.nan
        return splits

    monkeypatch.setattr(sys.modules["pdmlens.data.simulate"], "simulate_fleet", broken)
    cfg = DataConfig(source="simulated", simulator=SimulatorConfig(n_units=3, n_test_units=1))
    with pytest.raises(DataValidationError, match="missing value") as ei:
        load_source(cfg)
    assert (ei.value.column, ei.value.row, ei.value.unit) == ("sensor_1", 4, "u1")
    assert load_source(cfg.model_copy(update={"nan_policy": "ffill"})).train.n_rows == 9
    res = _invoke("data", "inspect", "--source", "simulated", "--units", "3")
    assert res.exit_code == 2 and "error: column 'sensor_1', row 4, unit 'u1'" in res.stderr


def test_config_file_errors_exit_2(tmp_path):
    res = _invoke("data", "inspect", "--config", str(tmp_path / "run.yaml"))
    assert res.exit_code == 2 and "config file not found" in res.stderr
    (tmp_path / "run.yaml").write_text("data:\n  source: ftp\n")
    res = _invoke("data", "inspect", "--config", str(tmp_path / "run.yaml"))
    assert res.exit_code == 2 and res.stderr.startswith("error: file ")
    assert "invalid config" in res.stderr and "Traceback" not in res.output


def test_config_data_section_is_used(tmp_path, cmapss_dir):
    (tmp_path / "run.yaml").write_text(f"data:\n  source: cmapss\n  path: {cmapss_dir}\n")
    res = _invoke("data", "inspect", "--config", str(tmp_path / "run.yaml"), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["test"]["rul_labels"] == 100


def test_inspect_bad_nan_policy_is_a_clear_error_exit_2():
    res = _invoke("data", "inspect", "--source", "simulated", "--nan-policy", "zero")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--nan-policy" in res.output and "'zero'" in res.output
    assert "ValidationError" not in res.output


def test_build_data_config_refuses_a_bad_option_naming_it():
    from pdmlens.cli import build_data_config
    from pdmlens.errors import ConfigError

    with pytest.raises(ConfigError, match="--nan-policy: Input should be 'error' or 'ffill'"):
        build_data_config(None, nan_policy="zero")
    with pytest.raises(ConfigError, match="--n-units: Input should be greater than or equal"):
        build_data_config(None, units=0)
