"""One frozen configuration object for a whole run.

Every step reads its parameters from here, so a run is described by one YAML file (or the
defaults plus ``--set key=value`` overrides) and is logged to MLflow as flat params. This is
the only module of the library, with ``tracking.py``, that reads environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnMapping(_Frozen):
    """How a generic table's columns map onto the canonical Fleet."""

    unit: str = "unit"
    time: str = "time"
    sensors: list[str] | None = None
    """sensor columns; None = every numeric column not otherwise mapped."""
    settings: list[str] = Field(default_factory=list)
    rul: str | None = None
    """a column with true RUL; when absent and run_to_failure, RUL = last time - time."""
    layout: Literal["long", "wide"] = "wide"
    """wide: one column per sensor. long: one row per (unit, time, sensor) with
    ``variable``/``value`` columns named below."""
    variable: str = "variable"
    value: str = "value"
    run_to_failure: bool = True


class EventsConfig(_Frozen):
    """Telemetry + failure-event tables."""

    readings: str | None = None
    failures: str | None = None
    asset: str = "asset"
    timestamp: str = "timestamp"
    time_unit: Literal["s", "min", "h", "d"] = "h"
    """unit in which time-to-failure (RUL) is expressed."""


class SimulatorConfig(_Frozen):
    n_units: int = 120
    n_test_units: int = 40
    n_sensors: int = 14
    n_regimes: int = 3
    fault_modes: int = 3
    noise: float = 0.05
    min_life: int = 120
    max_life: int = 320
    fault_mode_subset: list[int] | None = None
    """only simulate these fault modes (indices); None = all."""


class DataConfig(_Frozen):
    source: Literal["simulated", "cmapss", "events", "table"] = "simulated"
    path: str | None = None
    subset: str = "FD001"
    test_path: str | None = None
    """generic tables: an optional separate test table."""
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    events: EventsConfig = Field(default_factory=EventsConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    nan_policy: Literal["error", "ffill"] = "error"
    """error: any NaN/inf is refused. ffill: forward-fill per unit (then back-fill the
    leading gap); a sensor that is NaN for a whole unit is still an error."""
    ingest_dir: str = "data/ingested"


class PrepareConfig(_Frozen):
    rul_cap: float = 125.0
    horizon: int = 30
    """fails_within_<horizon> label."""
    normalize: Literal["regime", "global"] = "regime"
    max_regimes: int = 6
    val_fraction: float = 0.2
    drop_constant: bool = True
    constant_tol: float = 1e-6


class WindowConfig(_Frozen):
    length: int = 30
    stride: int = 1
    pad: Literal["edge", "zero"] = "edge"


class LSTMConfig(_Frozen):
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    epochs: int = 60
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 10
    clip_grad: float = 1.0
    device: str = "auto"
    num_threads: int | None = None


class ForestConfig(_Frozen):
    n_estimators: int = 200
    max_depth: int | None = 12
    min_samples_leaf: int = 5
    max_features: float | str = 0.5
    stats: list[str] = Field(
        default_factory=lambda: ["last", "mean", "std", "slope", "min", "max"]
    )


class ModelConfig(_Frozen):
    task: Literal["rul", "horizon"] = "rul"
    lstm: LSTMConfig = Field(default_factory=LSTMConfig)
    forest: ForestConfig = Field(default_factory=ForestConfig)


class ExplainConfig(_Frozen):
    n_explain: int = 256
    background: int = 64
    shap_samples: int = 32
    batch_size: int = 64
    top_k: int | None = None
    gate_chunk: int = 1024


class SignatureConfig(_Frozen):
    states: list[str] = Field(default_factory=lambda: ["h", "c"])
    k: int | None = None
    k_range: list[int] = Field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 8])
    stage_bins: list[float] = Field(default_factory=lambda: [0, 30, 75, 125])
    """RUL bin edges for health stages (right-open, last bin closed)."""
    tolerance: float = 0.05
    novelty_knn: int = 5
    novelty_tnr: float = 0.95


class TrackingConfig(_Frozen):
    uri: str | None = None
    """None: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db."""
    artifact_root: str = "mlruns/artifacts"
    experiment: str | None = None
    register: bool = True


class PipelineConfig(_Frozen):
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    work_dir: str = "data/runs"


class RunConfig(_Frozen):
    """All parameters of one pipeline run."""

    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    signatures: SignatureConfig = Field(default_factory=SignatureConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @field_validator("seed")
    @classmethod
    def _seed_non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("seed must be >= 0")
        return v

    def flat(self) -> dict[str, Any]:
        """Dotted-key view of every parameter (for MLflow params)."""
        return flatten(self.model_dump(mode="json"))

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> RunConfig:
        """A new config with ``key.sub=value`` overrides applied (values parsed as YAML)."""
        data = self.model_dump(mode="json")
        items = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        for key, value in items.items():
            _set_dotted(data, key, value)
        return RunConfig.model_validate(data)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"override '{pair}' is not of the form key=value")
        key, raw = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw) if raw != "" else None
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], dict):
            raise ValueError(f"unknown config key '{'.'.join(parts[: i + 1])}' in '{key}'")
        node = node[part]
    if parts[-1] not in node:
        raise ValueError(f"unknown config key '{key}'")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides."""
    cfg = RunConfig()
    if path is not None:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        cfg = RunConfig.model_validate(raw)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def env(name: str, default: str | None = None) -> str | None:
    """Read an environment variable (the library reads them only through here)."""
    return os.environ.get(name, default)
