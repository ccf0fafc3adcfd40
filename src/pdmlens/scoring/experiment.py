"""The two kinds of "new", measured on the simulator (benchmark and tests share this).

A run is trained with one fault mode held out (``data.simulator.fault_mode_subset``).
Three groups of fresh units from the same plant (``world_seed``) are then scored:

- ``familiar``: units of the trained modes, cut off near failure (RUL 1..``near``);
- ``new_fault``: units of the held-out mode, cut off the same way: familiar when new,
  then degrading along sensors no training unit ever moved;
- ``new_baseline``: familiar units with a constant offset of ``offset`` training
  standard deviations on one sensor from their first cycle (a shifted or recalibrated
  sensor), cut off anywhere in life.

:func:`kind_shares` counts each group's novelty kinds; :func:`kind_auroc` gives, per layer,
how well the latest-window novelty separates new-fault from familiar units and the early
novelty separates new-baseline from familiar units; layer ``input`` is the raw-input
baseline a network layer must beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pdmlens.config import SimulatorConfig
from pdmlens.data.fleet import RUL_RAW, TIME, UNIT, Fleet
from pdmlens.scoring.bundle import ScoringBundle
from pdmlens.scoring.score import layer_name, score_fleet


def cut_near_failure(
    fleet: Fleet, near: int | None, seed: int, prefix: str, min_rows: int = 1
) -> pd.DataFrame:
    """Each run-to-failure unit cut off at a random RUL in 1..``near`` (None: anywhere,
    keeping at least ``min_rows`` rows), seeded, renamed ``<prefix><unit>``; raw columns
    only (no labels)."""
    f = fleet.frame
    rng = np.random.default_rng(seed)
    life = f.groupby(UNIT, sort=False)[TIME].transform("max").to_numpy()
    units = pd.unique(f[UNIT])
    n_rows = f.groupby(UNIT, sort=False).size().reindex(units).to_numpy()
    top = n_rows - min_rows if near is None else np.minimum(near, n_rows - min_rows)
    draws = rng.integers(1, np.maximum(top, 1) + 1)
    cut = dict(zip(units, draws, strict=True))
    keep = (life - f[TIME].to_numpy()) >= f[UNIT].map(cut).to_numpy()
    out = f.loc[keep].drop(columns=[RUL_RAW], errors="ignore").reset_index(drop=True)
    out[UNIT] = prefix + out[UNIT].astype(str)
    return out


def with_offset(frame: pd.DataFrame, sensor: str, amount: float, prefix: str) -> pd.DataFrame:
    """The same units with ``amount`` added to ``sensor`` from the first cycle."""
    out = frame.copy()
    out[sensor] = out[sensor] + amount
    out[UNIT] = prefix + out[UNIT].astype(str)
    return out


def experiment_groups(
    sim: SimulatorConfig,
    held_out: Sequence[int],
    bundle: ScoringBundle,
    n_units: int = 30,
    near: int = 30,
    offset: float = 5.0,
    sensor: str | None = None,
    seed: int = 1000,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Raw readings of the three groups (one frame) and unit -> group."""
    from pdmlens.data.simulate import simulate_fleet

    trained = sim.fault_mode_subset or list(range(sim.fault_modes))
    base = dict(n_units=n_units, n_test_units=0)
    fam = simulate_fleet(sim.model_copy(update={**base, "fault_mode_subset": trained}), seed).train
    new = simulate_fleet(
        sim.model_copy(update={**base, "fault_mode_subset": list(held_out)}), seed + 1
    ).train
    fam_cut = cut_near_failure(fam, near, seed, "familiar_")
    new_cut = cut_near_failure(new, near, seed + 1, "newfault_")
    prep = bundle.preparer
    sensor = sensor or next(c for c in bundle.features if c.startswith("sensor_"))
    j = prep.features_.index(sensor)
    amount = offset * float(np.median(prep.scale_[:, j]))
    life_cut = cut_near_failure(fam, None, seed + 2, "", min_rows=2 * bundle.cfg.window.length)
    shifted = with_offset(life_cut, sensor, amount, "offset_")
    frame = pd.concat([fam_cut, new_cut, shifted], ignore_index=True)
    group = {
        **{u: "familiar" for u in pd.unique(fam_cut[UNIT])},
        **{u: "new_fault" for u in pd.unique(new_cut[UNIT])},
        **{u: "new_baseline" for u in pd.unique(shifted[UNIT])},
    }
    return frame, group


def kind_shares(table: pd.DataFrame, group: dict[str, str], layers: Sequence[int]) -> pd.DataFrame:
    """Per layer and group: share of units named new_fault / new_baseline / familiar by the
    kind rule applied to that layer's flags."""
    from pdmlens.scoring.score import novelty_kind

    rows = []
    g = table["unit"].map(group)
    for layer in layers:
        name = layer_name(layer)
        kinds = novelty_kind(
            table[f"early_novel_{name}"].to_numpy(), table[f"novel_{name}"].to_numpy()
        )
        for grp in ("familiar", "new_fault", "new_baseline"):
            k = kinds[(g == grp).to_numpy()]
            rows.append(
                {
                    "layer": name,
                    "group": grp,
                    "units": len(k),
                    "as_new_fault": float(np.mean(k == "new_fault")) if len(k) else np.nan,
                    "as_new_baseline": float(np.mean(k == "new_baseline")) if len(k) else np.nan,
                    "as_familiar": float(np.mean(k == "familiar")) if len(k) else np.nan,
                }
            )
    return pd.DataFrame(rows)


def kind_auroc(table: pd.DataFrame, group: dict[str, str], layers: Sequence[int]) -> pd.DataFrame:
    """Per layer: AUROC of the latest novelty (new_fault vs familiar units) and of the
    early-life novelty (new_baseline vs familiar units)."""
    from sklearn.metrics import roc_auc_score

    g = table["unit"].map(group).to_numpy()
    rows = []
    for layer in layers:
        name = layer_name(layer)
        row: dict[str, object] = {"layer": name}
        for kind, col in (("new_fault", "novelty"), ("new_baseline", "early_novelty")):
            m = (g == "familiar") | (g == kind)
            y = (g[m] == kind).astype(int)
            row[f"auroc_{kind}"] = (
                float(roc_auc_score(y, table[f"{col}_{name}"].to_numpy()[m]))
                if 0 < y.sum() < len(y)
                else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


def run_experiment(
    bundle: ScoringBundle, held_out: Sequence[int], **kwargs: object
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score the three groups; returns (score table, shares, AUROC)."""
    sim = bundle.cfg.data.simulator
    frame, group = experiment_groups(sim, held_out, bundle, **kwargs)  # type: ignore[arg-type]
    table = score_fleet(bundle, frame, explain="none", keep_frames=False).table
    return table, kind_shares(table, group, bundle.layers), kind_auroc(table, group, bundle.layers)
