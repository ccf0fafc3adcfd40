"""The run config refuses what cannot run, before anything runs: YAML syntax errors, bytes
that are not UTF-8, and numeric keys out of range, each a ConfigError naming the file and
line, or the key; ``pdmlens run`` turns them into ``error: ...`` and exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pdmlens.cli import app
from pdmlens.config import RunConfig, load_config
from pdmlens.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize(
    "override",
    [
        "window.length=-5",
        "window.length=0",
        "window.stride=0",
        "window.min_history=0",
        "model.lstm.epochs=0",
        "model.lstm.batch_size=0",
        "model.lstm.hidden_size=0",
        "model.lstm.lr=0",
        "model.lstm.dropout=1.0",
        "model.forest.n_estimators=0",
        "model.forest.max_features=1.5",
        "model.forest.max_samples=0",
        "model.forest.n_jobs=0",
        "prepare.val_fraction=1.0",
        "prepare.val_fraction=-0.1",
        "prepare.rul_cap=0",
        "prepare.horizon=0",
        "prepare.n_regimes=0",
        "explain.n_explain=0",
        "explain.background=0",
        "explain.saturation_low=0.95",
        "signatures.novelty_tnr=1.0",
        "signatures.stage_bins=[0, 30, 30]",
        "signatures.k_range=[1, 2]",
        "pipeline.max_workers=0",
        "pipeline.retries=-1",
        "data.simulator.n_units=0",
        "data.simulator.noise=0",
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        load_config(None, [override])


def test_defaults_and_edge_values_still_accepted() -> None:
    cfg = load_config(
        None,
        [
            "window.length=1",
            "prepare.val_fraction=0",
            "model.lstm.patience=0",
            "model.lstm.dropout=0",
            "model.forest.max_features=sqrt",
            "model.forest.max_features=1.0",
            "data.simulator.n_test_units=0",
            "pipeline.retries=0",
        ],
    )
    assert cfg.window.length == 1 and cfg.model.forest.max_features == 1.0
    assert RunConfig().window.length == 40  # defaults unchanged


def test_yaml_syntax_error_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\nwindow:\n  length: [5\n")
    with pytest.raises(ConfigError, match=r"run.yaml, line \d+, column \d+: YAML syntax"):
        load_config(path)


def test_non_utf8_yaml_names_the_line(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(b"seed: 1\ndata:\n  path: /d\xffata\n")
    with pytest.raises(ConfigError, match=r"run.yaml, line 3: byte 0xff is not UTF-8"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("- data\n- model\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


def test_utf8_bom_is_accepted(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes("\ufeffseed: 3\n".encode())
    assert load_config(path).seed == 3


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("window:\n  length: [5\n", "YAML syntax error"),
        ("window:\n  length: -5\n", "window.length: Input should be greater than or equal to 1"),
        ("window:\n  stride: 0\n", "window.stride: Input should be greater than or equal to 1"),
    ],
)
def test_run_refuses_a_bad_config_before_anything_runs(tmp_path, text: str, expect: str) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    res = runner.invoke(
        app,
        ["run", "--config", str(cfg), "--set", f"pipeline.cache_dir={cache}"],
    )
    assert res.exit_code == 2, res.output
    assert "error: bad configuration" in res.stderr and expect in res.stderr
    assert "Traceback" not in res.output
    assert not cache.exists()  # nothing ran: no (empty) cache folder left behind
