"""Prepare a Fleet for the models: regimes, normalisation, labels, and the unit split.

``Preparer`` (scikit-learn style) learns everything from the training units only:

- the operating regimes (``pdmlens.data.regimes``: k-means on the ``setting_*`` columns,
  one regime when the settings are noise around a single point, as C-MAPSS FD001);
- mean and standard deviation (population, ddof=0) of every sensor per regime
  (``normalize="regime"``) or over all rows (``"global"``);
- the constant sensors: std below ``constant_tol`` in every regime with two or more rows.
  They are dropped (``drop_constant``), listed in ``dropped_sensors_`` and logged. A sensor
  kept but constant within some regime is only centred there (its std is taken as 1), so
  nothing divides by zero.

The age feature (``age_feature``, on by default): ``age`` = time since the unit's first
record (seconds for timestamps), z-scored like a sensor and appended after the sensors; it
is computed from ``time``, so no source has to provide it. A unit is aged from the first row
``transform`` is given: pass a unit's whole record, not only its latest rows.

Settings as model inputs: with ``normalize="regime"`` they are not features (they define
the regime, and the per-regime z-scores already remove their effect). With ``"global"`` the
non-constant settings are z-scored and appended to the features when more than one regime
was found (the model needs the operating point to read globally-scaled sensors); with one
regime they are noise and are left out.

``transform`` returns one frame: ``unit``, ``time``, ``regime`` (int32), ``fault_mode``
(categorical, where the fleet's meta knows it), the features (float32 z-scores), ``rul_raw``,
``rul`` = min(rul_raw, rul_cap) and ``fails_within_<h>`` = 1.0 where rul_raw <= h (float32;
both NaN where rul_raw is unknown). Rows are grouped by unit (first-appearance order) and
sorted by time within a unit. The work runs column by column in row chunks with reused
buffers, so a transform holds its output plus a few MiB.

``prepare`` splits the training fleet's units (never rows) into train and validation, fits
a Preparer on the train units and transforms train, val and test. Right-censored units (in
``meta.censored_units``, or whose ``rul_raw`` is all NaN) have no label: they are kept out
of train and val (and of the fit) and returned, transformed, as ``PreparedData.score`` for
scoring; their count is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.config import PrepareConfig, RunConfig, WindowConfig
from pdmlens.data.fleet import RUL_RAW, TIME, UNIT, Fleet, FleetMeta, FleetSplits
from pdmlens.data.regimes import CHUNK, RegimeModel, chunks, fit_regimes, gather
from pdmlens.data.windows import WindowDataset
from pdmlens.errors import DataValidationError, NotFittedError

logger = logging.getLogger(__name__)

REGIME = "regime"
FAULT_MODE = "fault_mode"
RUL = "rul"
AGE = "age"
_STATE_VERSION = 1


def horizon_column(horizon: int) -> str:
    """Name of the failure-within-horizon label."""
    return f"fails_within_{int(horizon)}"


# --------------------------------------------------------------------------- row order
def _row_order(frame: pd.DataFrame, units: Sequence[str] | None) -> np.ndarray | None:
    """Row indices grouped by unit (first appearance) and sorted by time, restricted to
    ``units``; None when that is every row in table order (no gather needed)."""
    n = len(frame)
    if n == 0:
        return None if units is None else np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(frame[UNIT], sort=False)
    time = frame[TIME].to_numpy()
    same = codes[1:] == codes[:-1]
    ordered = int(np.count_nonzero(~same)) + 1 == len(uniques) and bool(
        np.all(time[1:][same] > time[:-1][same])
    )
    order = None if ordered else np.lexsort((time, codes))
    if order is not None:
        logger.info("rows not grouped by unit / sorted by time: reordering %d rows", n)
    if units is None:
        return order
    names = pd.Index(uniques)
    wanted = pd.Index(pd.unique(pd.Series(list(units), dtype=object)))
    missing = wanted.difference(names)
    if len(missing):
        raise ValueError(f"units not in the fleet: {list(missing[:5])}")
    keep = names.isin(wanted)
    if keep.all():
        return order
    mask = keep[codes]
    return np.flatnonzero(mask) if order is None else order[mask[order]]


def _float_col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64)


def unit_age(frame: pd.DataFrame) -> np.ndarray:
    """Each row's time since its unit's first record (float64; seconds for timestamps):
    the ``age`` feature before scaling."""
    t = frame[TIME]
    d = t - t.groupby(frame[UNIT], sort=False).transform("min")
    if pd.api.types.is_timedelta64_dtype(d):
        seconds = d.dt.total_seconds()
        return seconds.to_numpy(dtype=np.float64)
    return d.to_numpy(dtype=np.float64)


def _fault_mode_column(units: pd.Series, modes: dict[str, str]) -> pd.Categorical[str]:
    """Each row's fault mode (categorical; NaN for units the meta does not name)."""
    codes, uniques = pd.factorize(units, sort=False)
    categories = sorted(set(modes.values()))
    index = {m: i for i, m in enumerate(categories)}
    per_unit = np.array([index.get(modes.get(str(u), ""), -1) for u in uniques], dtype=np.int64)
    row_codes = per_unit[codes] if len(codes) else codes.astype(np.int64)
    return pd.Categorical.from_codes(row_codes, pd.Index(categories))


# --------------------------------------------------------------------------- Preparer
class Preparer:
    """Regimes, normalisation and labels, learned on training units (see module doc)."""

    def __init__(self, cfg: PrepareConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed

    @property
    def _cfg(self) -> PrepareConfig:
        return self.cfg if self.cfg is not None else PrepareConfig()

    @property
    def horizon_col(self) -> str:
        return horizon_column(self._cfg.horizon)

    # ------------------------------------------------------------------- fit
    def fit(self, train: Fleet, units: Sequence[str] | None = None) -> Preparer:
        """Learn regimes, scaling and constant sensors from ``train`` (only ``units`` of
        it when given: no row of another unit is read)."""
        cfg = self._cfg
        frame = train.frame
        rows = _row_order(frame, units)
        n = len(frame) if rows is None else len(rows)
        if n == 0:
            raise DataValidationError("no training rows to fit the preparation on")
        sensors, settings = train.sensors, train.settings
        if not sensors:
            raise DataValidationError("the fleet has no sensor_* column", column="sensor_*")

        # Operating regimes, on a seeded sample of the training rows.
        rng = np.random.default_rng(self.seed)
        take = min(n, cfg.regime_sample)
        pick = np.sort(rng.choice(n, size=take, replace=False)) if take < n else np.arange(n)
        src = pick if rows is None else rows[pick]
        sample = (
            np.column_stack([_float_col(frame, s)[src] for s in settings])
            if settings
            else np.zeros((take, 0))
        )
        self.regimes_ = fit_regimes(
            sample,
            settings,
            max_regimes=cfg.max_regimes,
            n_regimes=cfg.n_regimes,
            min_silhouette=cfg.regime_min_silhouette,
            constant_tol=cfg.constant_tol,
            seed=self.seed,
        )
        self.n_regimes_ = self.regimes_.n_regimes
        set_arrays = [_float_col(frame, c) for c in self.regimes_.columns]
        regime = self.regimes_.assign(set_arrays, rows, n)
        self.regime_counts_ = np.bincount(regime, minlength=self.n_regimes_).tolist()

        # Which columns are features, and their statistics per normalisation group.
        by_regime = cfg.normalize == "regime" and self.n_regimes_ > 1
        group = regime if by_regime else np.zeros(n, dtype=np.int32)
        n_groups = self.n_regimes_ if by_regime else 1
        feature_settings = (
            list(self.regimes_.columns) if cfg.normalize == "global" and self.n_regimes_ > 1 else []
        )
        candidates = list(sensors) + feature_settings + ([AGE] if cfg.age_feature else [])
        age = unit_age(frame) if cfg.age_feature else None

        def column(col: str) -> np.ndarray:
            if col == AGE and age is not None:
                return age
            return _float_col(frame, col)

        counts = np.bincount(group, minlength=n_groups).astype(np.float64)
        mean = np.zeros((n_groups, len(candidates)))
        std = np.zeros((n_groups, len(candidates)))
        size = min(CHUNK, n)
        buf, dev = np.empty(size), np.empty(size)
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, col in enumerate(candidates):
                x_all = column(col)
                sums = np.zeros(n_groups)
                for a, b in chunks(n):
                    sums += np.bincount(group[a:b], gather(x_all, rows, a, b, buf), n_groups)
                mean[:, j] = sums / counts
                ssq = np.zeros(n_groups)
                for a, b in chunks(n):
                    x = gather(x_all, rows, a, b, buf)
                    d = dev[: b - a]
                    np.take(mean[:, j], group[a:b], out=d, mode="clip")
                    np.subtract(x, d, out=d)
                    np.multiply(d, d, out=d)
                    ssq += np.bincount(group[a:b], d, n_groups)
                std[:, j] = np.sqrt(ssq / counts)
        if not np.isfinite(mean).all():
            bad = candidates[int(np.flatnonzero(~np.isfinite(mean).all(axis=0))[0])]
            raise DataValidationError("NaN or inf in the training rows", column=bad)

        # Constant sensors: below tolerance in every group that has two or more rows.
        real = counts >= 2 if (counts >= 2).any() else counts >= 1
        constant = np.asarray((std[real] < cfg.constant_tol).all(axis=0), dtype=bool)
        self.constant_sensors_ = [
            c for c, k in zip(candidates, constant, strict=True) if k and c in sensors
        ]
        self.dropped_sensors_ = list(self.constant_sensors_) if cfg.drop_constant else []
        if self.dropped_sensors_:
            logger.info(
                "dropping %d constant sensors (std < %g in every regime): %s",
                len(self.dropped_sensors_),
                cfg.constant_tol,
                self.dropped_sensors_,
            )
        keep = [c not in self.dropped_sensors_ for c in candidates]
        self.sensors_ = list(sensors)
        self.settings_ = list(settings)
        self.features_ = [c for c, k in zip(candidates, keep, strict=True) if k]
        self.feature_settings_ = [c for c in feature_settings if c in self.features_]
        self.mean_ = mean[:, keep]
        self.std_ = std[:, keep]
        self.group_by_regime_ = by_regime
        self.n_rows_fit_ = n
        logger.info(
            "prepare fitted on %d rows: %d regime(s) %s, %d features, normalize=%s",
            n,
            self.n_regimes_,
            self.regime_counts_,
            len(self.features_),
            cfg.normalize,
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise NotFittedError("this Preparer is not fitted yet: call fit(train_fleet) first")

    @property
    def scale_(self) -> np.ndarray:
        """The divisor used per (group, feature): std, or 1 where std < constant_tol."""
        self._check_fitted()
        return np.where(self.std_ < self._cfg.constant_tol, 1.0, self.std_)

    # ------------------------------------------------------------------- transform
    def transform(self, fleet: Fleet, units: Sequence[str] | None = None) -> pd.DataFrame:
        """The prepared frame of ``fleet`` (only ``units`` of it when given)."""
        self._check_fitted()
        cfg = self._cfg
        frame = fleet.frame
        for col in [UNIT, TIME, *self.regimes_.columns, *self.features_]:
            if col not in frame.columns and col != AGE:
                raise DataValidationError(
                    "column seen when the preparation was fitted is missing", column=col
                )
        rows = _row_order(frame, units)
        n = len(frame) if rows is None else len(rows)

        def pick(col: str) -> pd.Series:
            s = frame[col]
            s = s if rows is None else s.iloc[rows]
            return s.reset_index(drop=True)

        out: dict[str, Any] = {UNIT: pick(UNIT), TIME: pick(TIME)}
        regime = self.regimes_.assign(
            [_float_col(frame, c) for c in self.regimes_.columns], rows, n
        )
        out[REGIME] = regime
        if fleet.meta.fault_modes:
            out[FAULT_MODE] = _fault_mode_column(out[UNIT], fleet.meta.fault_modes)
        group = regime if self.group_by_regime_ else None
        scale = self.scale_
        size = min(CHUNK, max(n, 1))
        buf, t1, t2 = np.empty(size), np.empty(size), np.empty(size)
        for j, col in enumerate(self.features_):
            x_all = unit_age(frame) if col == AGE else _float_col(frame, col)
            z = np.empty(n, dtype=np.float32)
            for a, b in chunks(n):
                x = gather(x_all, rows, a, b, buf)
                if group is None:
                    d = t1[: b - a]
                    np.subtract(x, self.mean_[0, j], out=d)
                    np.divide(d, scale[0, j], out=z[a:b], casting="same_kind")
                else:
                    d, s = t1[: b - a], t2[: b - a]
                    np.take(self.mean_[:, j], group[a:b], out=d, mode="clip")
                    np.subtract(x, d, out=d)
                    np.take(scale[:, j], group[a:b], out=s, mode="clip")
                    np.divide(d, s, out=z[a:b], casting="same_kind")
            out[col] = z
        if RUL_RAW in frame.columns:
            rul_raw = _float_col(frame, RUL_RAW)
            rul_raw = rul_raw.copy() if rows is None else rul_raw[rows]
        else:
            rul_raw = np.full(n, np.nan)
        out[RUL_RAW] = rul_raw
        out[RUL] = np.minimum(rul_raw, cfg.rul_cap).astype(np.float32)
        fails = (rul_raw <= cfg.horizon).astype(np.float32)
        fails[np.isnan(rul_raw)] = np.nan
        out[self.horizon_col] = fails
        return pd.DataFrame(out, copy=False)

    def fit_transform(self, train: Fleet, units: Sequence[str] | None = None) -> pd.DataFrame:
        return self.fit(train, units).transform(train, units)

    # ------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "version": _STATE_VERSION,
            "cfg": self._cfg.model_dump(mode="json"),
            "seed": self.seed,
            "regimes_": self.regimes_.to_dict(),
            "regime_counts_": self.regime_counts_,
            "sensors_": self.sensors_,
            "settings_": self.settings_,
            "features_": self.features_,
            "feature_settings_": self.feature_settings_,
            "constant_sensors_": self.constant_sensors_,
            "dropped_sensors_": self.dropped_sensors_,
            "mean_": self.mean_.tolist(),
            "std_": self.std_.tolist(),
            "group_by_regime_": self.group_by_regime_,
            "n_rows_fit_": self.n_rows_fit_,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted state as JSON (floats round-trip exactly)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.state_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preparer:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown Preparer state version {state.get('version')!r}")
        self = cls(PrepareConfig.model_validate(state["cfg"]), seed=int(state["seed"]))
        self.regimes_ = RegimeModel.from_dict(state["regimes_"])
        self.n_regimes_ = self.regimes_.n_regimes
        self.regime_counts_ = list(state["regime_counts_"])
        for key in (
            "sensors_",
            "settings_",
            "features_",
            "feature_settings_",
            "constant_sensors_",
            "dropped_sensors_",
        ):
            setattr(self, key, list(state[key]))
        k = len(self.features_)
        self.mean_ = np.asarray(state["mean_"], dtype=np.float64).reshape(-1, k)
        self.std_ = np.asarray(state["std_"], dtype=np.float64).reshape(-1, k)
        self.group_by_regime_ = bool(state["group_by_regime_"])
        self.n_rows_fit_ = int(state["n_rows_fit_"])
        return self

    @classmethod
    def load(cls, path: str | Path) -> Preparer:
        return cls.from_state(json.loads(Path(path).read_text()))


# --------------------------------------------------------------------------- split
def split_units(
    units: Sequence[str], val_fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split unit names (never rows) into (train, val), deterministic for a seed.

    ``round(val_fraction * n)`` units go to validation, at least one when val_fraction > 0
    and there are two or more units, and never all of them. Both lists keep the order the
    units were given in; the draw depends on the set of units, not their order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    names = list(dict.fromkeys(units))
    n = len(names)
    n_val = int(round(val_fraction * n))
    n_val = min(max(n_val, 1), n - 1) if val_fraction > 0 and n >= 2 else 0
    ranked = sorted(names)
    perm = np.random.default_rng(seed).permutation(n)
    val = {ranked[i] for i in perm[:n_val]}
    return [u for u in names if u not in val], [u for u in names if u in val]


def unlabelled_units(fleet: Fleet) -> list[str]:
    """Right-censored units: in ``meta.censored_units`` or with ``rul_raw`` all NaN."""
    frame = fleet.frame
    out = set(fleet.meta.censored_units)
    if RUL_RAW not in frame.columns:
        return fleet.units
    codes, uniques = pd.factorize(frame[UNIT], sort=False)
    known = np.bincount(codes, weights=frame[RUL_RAW].notna().to_numpy(), minlength=len(uniques))
    out.update(np.asarray(uniques)[known == 0].tolist())
    return [u for u in uniques if u in out]


# --------------------------------------------------------------------------- PreparedData
_SAMPLED_SPLITS = ("train", "val", "train+val")
"""the splits ``window.max_train_windows`` bounds (the index offsets each one's seed)."""


@dataclass
class PreparedData:
    """Prepared frames, the features the models read, and the fitted Preparer."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame | None
    features: list[str]
    horizon_col: str
    meta: FleetMeta
    test_meta: FleetMeta | None
    preparer: Preparer
    score: pd.DataFrame | None = None
    """right-censored training units (no labels), transformed, for scoring only."""

    def frame(self, split: str) -> pd.DataFrame:
        """One split's frame; ``train+val`` is both labelled splits (for a refit)."""
        if split == "train+val":
            return pd.concat([self.train, self.val], ignore_index=True)
        if split not in ("train", "val", "test", "score"):
            raise ValueError(f"unknown split {split!r}: train, val, train+val, test or score")
        out = getattr(self, split)
        if out is None:
            raise ValueError(f"this PreparedData has no {split} frame")
        return out

    def windows(
        self,
        split: str,
        window: WindowConfig,
        target: str | None = RUL,
        last_only: bool = False,
        full_only: bool = False,
    ) -> WindowDataset:
        """Sliding windows over one split's frame (``target`` None: inputs only). The
        labelled splits (train, val, train+val) keep at most ``window.max_train_windows``
        windows, a sample drawn with the run's seed (the Preparer's), one stream per split;
        ``last_only`` sets and the test and score splits are never sampled."""
        sampled = split in _SAMPLED_SPLITS and not last_only
        return WindowDataset(
            self.frame(split),
            self.features,
            window.length,
            target=target,
            stride=window.stride,
            pad=window.pad,
            last_only=last_only,
            full_only=full_only,
            min_history=window.min_history,
            max_windows=window.max_train_windows if sampled else None,
            sample_seed=self.preparer.seed + _SAMPLED_SPLITS.index(split) if sampled else 0,
        )

    def save(self, directory: str | Path) -> Path:
        """Parquet per frame, ``preparer.json`` and ``prepared.json`` in ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in ("train", "val", "test", "score"):
            target = d / f"{name}.parquet"
            df = getattr(self, name)
            if df is None:
                target.unlink(missing_ok=True)
                continue
            df.to_parquet(target, index=False)
        self.preparer.save(d / "preparer.json")
        info = {
            "features": self.features,
            "horizon_col": self.horizon_col,
            "meta": self.meta.to_json(),
            "test_meta": None if self.test_meta is None else self.test_meta.to_json(),
        }
        (d / "prepared.json").write_text(json.dumps(info, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PreparedData:
        d = Path(directory)
        info = json.loads((d / "prepared.json").read_text())

        def read(name: str) -> pd.DataFrame | None:
            p = d / f"{name}.parquet"
            return pd.read_parquet(p) if p.is_file() else None

        train, val = read("train"), read("val")
        if train is None or val is None:
            raise FileNotFoundError(f"{d} holds no prepared train/val frames")
        return cls(
            train=train,
            val=val,
            test=read("test"),
            features=list(info["features"]),
            horizon_col=info["horizon_col"],
            meta=FleetMeta.from_json(info["meta"]),
            test_meta=None if info["test_meta"] is None else FleetMeta.from_json(info["test_meta"]),
            preparer=Preparer.load(d / "preparer.json"),
            score=read("score"),
        )


def prepare(splits: FleetSplits, cfg: RunConfig) -> PreparedData:
    """Split the training fleet by unit, fit on the train units, transform every split."""
    fleet = splits.train
    censored = unlabelled_units(fleet)
    dead = set(censored)
    labelled = [u for u in fleet.units if u not in dead]
    if not labelled:
        raise DataValidationError(
            "no run-to-failure unit in the training data (every unit is right-censored)"
        )
    if censored:
        logger.info(
            "%d right-censored units kept out of train/val (in the score frame)", len(censored)
        )
    train_units, val_units = split_units(labelled, cfg.prepare.val_fraction, cfg.seed)
    logger.info("split by unit: %d train, %d val", len(train_units), len(val_units))
    prep = Preparer(cfg.prepare, seed=cfg.seed).fit(fleet, units=train_units)
    return PreparedData(
        train=prep.transform(fleet, units=train_units),
        val=prep.transform(fleet, units=val_units),
        test=None if splits.test is None else prep.transform(splits.test),
        features=list(prep.features_),
        horizon_col=prep.horizon_col,
        meta=fleet.meta,
        test_meta=None if splits.test is None else splits.test.meta,
        preparer=prep,
        score=prep.transform(fleet, units=censored) if censored else None,
    )
