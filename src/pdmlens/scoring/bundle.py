"""A scoring bundle: everything a finished run learned, in one folder, to score raw data.

A registered model used to take normalised float32 windows, so a user had to redo the
preparation (regimes, dropped sensors, age, windowing) to call it. A bundle carries that
preparation with the models, plus what scoring needs to say *why* and *how far to trust*:

- ``preparer.json``: the fitted :class:`~pdmlens.data.prepare.Preparer` (training units);
- ``lstm.pt`` and ``forest.joblib``: both estimators as their train steps saved them;
- ``background.npy``: healthy training windows, the reference SHAP values are taken
  against (drawn exactly as the explain step draws them);
- ``calibration.joblib``: per signature layer (0 = the input window, 1.. = LSTM layers) a
  :class:`~pdmlens.signatures.novelty.NoveltyScorer` fitted on training-unit windows, the
  threshold calibrated on validation-unit windows (``signatures.novelty_tnr`` of them
  pass) and their sorted scores (a new score's percentile); the same for the *early-life*
  windows (each unit's first ``early_cycles`` cycles), which is what tells a new baseline
  from a new fault; and the health-stage clusters of the last LSTM layer;
- ``bundle.json``: the run config, features, raw columns required, thresholds, the alert
  rule's parameters.

``build_bundle(cfg, prepared_dir, lstm_dir, forest_dir, out_dir)`` reads the step folders
of a finished run; ``ScoringBundle.load(dir)`` reads a bundle back (pickle inside: load
only bundles you trust).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdmlens.config import RunConfig
from pdmlens.data.prepare import AGE, PreparedData, Preparer
from pdmlens.data.windows import WindowDataset
from pdmlens.results import FOREST_FILE, LSTM_FILE
from pdmlens.runtime.threads import compute_threads
from pdmlens.task import Task, task_of

log = logging.getLogger(__name__)

FORMAT = "pdmlens.scoring-bundle/1"
BUNDLE_FILE = "bundle.json"
MAX_WINDOWS = 2000
"""training (and validation) windows profiled for the novelty calibration (a seeded sample)."""
EARLY_WINDOWS = 5
"""windows per unit, evenly spread over its first ``early_cycles`` cycles, scored as early life."""


@dataclass
class LayerCalibration:
    """One signature layer's novelty scorer, threshold and familiar score distribution."""

    scorer: Any
    threshold: float
    familiar: np.ndarray
    """sorted scores of the calibration (validation-unit) windows."""

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Percent of calibration windows scoring at most ``scores`` (0-100)."""
        rank = np.searchsorted(self.familiar, np.asarray(scores, dtype=np.float64), "right")
        return 100.0 * rank / max(len(self.familiar), 1)


@dataclass
class Calibration:
    """Novelty (latest and early life) per layer, and the health-stage clusters."""

    latest: dict[int, LayerCalibration]
    early: dict[int, LayerCalibration]
    clusterer: Any
    cluster_layer: int
    cluster_stage: dict[int, str]
    """k-means cluster of the last LSTM layer's signature -> majority health stage."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoringBundle:
    """A loaded bundle (see the module docstring)."""

    directory: Path
    info: dict[str, Any]
    preparer: Preparer
    lstm: Any
    forest: Any
    background: np.ndarray
    calibration: Calibration

    @property
    def cfg(self) -> RunConfig:
        return RunConfig.model_validate(self.info["config"])

    @property
    def features(self) -> list[str]:
        return list(self.info["features"])

    @property
    def required_columns(self) -> list[str]:
        """Raw columns (besides unit and time) the preparation reads."""
        return list(self.info["required_columns"])

    @property
    def task(self) -> Task:
        """The task the models were trained for."""
        return Task.from_name(str(self.info["task"]))

    @property
    def layers(self) -> list[int]:
        return sorted(self.calibration.latest)

    @property
    def kind_layer(self) -> int:
        """The signature layer whose flags decide a unit's novelty kind."""
        return int(self.info["kind_layer"])

    @classmethod
    def load(cls, directory: str | Path, device: str | None = "cpu") -> ScoringBundle:
        import joblib

        from pdmlens.models.forest import ForestEstimator
        from pdmlens.models.lstm import LSTMEstimator

        d = Path(directory)
        info = json.loads((d / BUNDLE_FILE).read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{d} is not a pdmlens scoring bundle ({info.get('format')!r})")
        return cls(
            directory=d,
            info=info,
            preparer=Preparer.load(d / "preparer.json"),
            lstm=LSTMEstimator.load(d / LSTM_FILE, device=device),
            forest=ForestEstimator.load(d / FOREST_FILE),
            background=np.load(d / "background.npy"),
            calibration=joblib.load(d / "calibration.joblib"),
        )


# ----------------------------------------------------------------------------- windows


def early_window_index(ds: WindowDataset, early_cycles: int, per_unit: int) -> np.ndarray:
    """Indices (into ``ds``, a full sliding-window set) of up to ``per_unit`` windows per
    unit ending within its first ``early_cycles`` rows (the first full window included;
    a unit shorter than the window has its one padded window)."""
    units = ds.window_unit_index
    if len(units) == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    count = np.diff(np.r_[first, len(units)])
    start_row = ds.unit_start[units[first]]
    first_end = ds.end_row[first] - start_row  # 0-based row of the first window's end
    last_end = np.maximum(early_cycles - 1, first_end)
    span = np.minimum(count, last_end - first_end + 1)  # windows within the early period
    out = []
    for f, s in zip(first, span, strict=True):
        k = min(per_unit, int(s))
        out.append(f + np.unique(np.linspace(0, s - 1, k).round().astype(np.int64)))
    return np.concatenate(out)


def early_groups(ds: WindowDataset, idx: np.ndarray) -> np.ndarray:
    """The unit index of each early window (for per-unit aggregation)."""
    return ds.window_unit_index[idx]


# ----------------------------------------------------------------------------- build


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def layer_signatures(lstm: Any, x: np.ndarray) -> dict[int, np.ndarray]:
    """Input-window signature (layer 0) and each LSTM layer's final (h, c) (1..L)."""
    from pdmlens.signatures.cluster import input_signature, signatures_from_lstm

    return {0: input_signature(x, "last_mean"), **signatures_from_lstm(lstm.network_.lstm, x)}


def _calibrate(
    train: dict[int, np.ndarray], val: dict[int, np.ndarray], cfg: RunConfig
) -> dict[int, LayerCalibration]:
    from pdmlens.signatures.novelty import NoveltyScorer, calibrate

    sc = cfg.signatures
    out = {}
    for layer in train:
        scorer = NoveltyScorer(method=sc.novelty_method, k=sc.novelty_knn, seed=cfg.seed).fit(
            train[layer]
        )
        familiar = np.sort(scorer.score_samples(val[layer]))
        out[layer] = LayerCalibration(scorer, calibrate(familiar, sc.novelty_tnr), familiar)
    return out


def build_bundle(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
    *,
    max_windows: int = MAX_WINDOWS,
    early_cycles: int | None = None,
    kind_layer: int | None = None,
    dataset: str | None = None,
) -> Path:
    """Write a scoring bundle from a finished run's prepare, train_lstm and train_forest
    folders into ``out_dir`` (replaced if present); returns ``out_dir``.

    ``early_cycles`` (default twice the window): a unit's early life, whose novelty marks a
    new baseline. ``kind_layer`` (default the input window, 0): the signature layer whose
    flags name a unit's novelty kind (every layer is still reported).
    """
    import joblib

    from pdmlens.explain.attributions import select_background
    from pdmlens.models.lstm import LSTMEstimator
    from pdmlens.signatures.cluster import SignatureClusterer, stage_names, stage_of

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = PreparedData.load(prepared_dir)
    prep = data.preparer
    lstm = LSTMEstimator.load(Path(lstm_dir) / LSTM_FILE, device="cpu")
    shutil.copy2(Path(prepared_dir) / "preparer.json", tmp / "preparer.json")
    shutil.copy2(Path(lstm_dir) / LSTM_FILE, tmp / LSTM_FILE)
    shutil.copy2(Path(forest_dir) / FOREST_FILE, tmp / FOREST_FILE)
    win = cfg.window
    early_cycles = int(early_cycles or 2 * win.length)

    # the explain step's background: healthy training windows of the forest's target
    target = task_of(cfg).target(data)
    bg = select_background(
        data.windows("train", win, target),
        cfg.explain.background,
        cfg.explain.background_kind,
        cfg.seed,
        cfg.model.task,
        cfg.prepare.rul_cap,
    )
    np.save(tmp / "background.npy", bg)

    with compute_threads(1):
        train = data.windows("train", win, "rul")
        val = data.windows("val", win, "rul")
        tr = _sample(len(train), max_windows, cfg.seed)
        va = _sample(len(val), max_windows, cfg.seed + 1)
        s_tr = layer_signatures(lstm, train.batch(tr)[0].copy())
        s_va = layer_signatures(lstm, val.batch(va)[0].copy())
        latest = _calibrate(s_tr, s_va, cfg)
        # early life: training units' first cycles against validation units' first cycles
        e_tr = early_window_index(train, early_cycles, EARLY_WINDOWS)
        e_va = early_window_index(val, early_cycles, EARLY_WINDOWS)
        early = _calibrate(
            layer_signatures(lstm, train.batch(e_tr)[0].copy()),
            layer_signatures(lstm, val.batch(e_va)[0].copy()),
            cfg,
        )
        # health stages: k-means on the last LSTM layer, each cluster named by its majority
        bins = list(cfg.signatures.stage_bins)
        layer = max(s_tr)
        k = cfg.signatures.k or len(stage_names(bins))
        clu = SignatureClusterer(k=k, seed=cfg.seed).fit(s_tr[layer])
        stages = stage_of(train.window_targets[tr], bins)
        cluster_stage = {}
        for c in range(clu.k_):
            members = stages[clu.labels_ == c]
            values, counts = np.unique(members, return_counts=True)
            cluster_stage[c] = str(values[np.argmax(counts)]) if len(values) else "unknown"
    calib = Calibration(latest, early, clu, int(layer), cluster_stage)
    joblib.dump(calib, tmp / "calibration.joblib", compress=3)

    required = [c for c in [*prep.regimes_.columns, *prep.features_] if c != AGE]
    info = {
        "format": FORMAT,
        "dataset": dataset or data.meta.name,
        "config": cfg.model_dump(mode="json"),
        "task": cfg.model.task,
        "features": list(data.features),
        "required_columns": list(dict.fromkeys(required)),
        "sensors": [c for c in data.features if c.startswith("sensor_")],
        "window": win.model_dump(mode="json"),
        "horizon": int(cfg.prepare.horizon),
        "rul_cap": float(cfg.prepare.rul_cap),
        "early_cycles": early_cycles,
        "early_windows": EARLY_WINDOWS,
        "kind_layer": int(0 if kind_layer is None else kind_layer),
        "thresholds": {str(k): v.threshold for k, v in latest.items()},
        "early_thresholds": {str(k): v.threshold for k, v in early.items()},
        "cluster_layer": int(layer),
        "cluster_stage": {str(k): v for k, v in cluster_stage.items()},
        "n_calibration": {"train": len(tr), "val": len(va), "early_train": len(e_tr)},
    }
    (tmp / BUNDLE_FILE).write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log.info("scoring bundle written to %s (%d features)", out, len(data.features))
    return out
