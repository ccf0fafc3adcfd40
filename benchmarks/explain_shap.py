"""SHAP section of the explain benchmark: speed, completeness, faithfulness, ground truth.

Two parts, each a function returning a dict; :func:`shap_section` runs both for
``benchmarks/explain.py --sections shap`` (flat keys), and run alone this file prints a
table and writes ``--json``:

- ``fd001``: speed on the FD001-sized models. An LSTM (2 layers x 64, window 30, C-MAPSS
  FD001's informative sensors) trained briefly (``--epochs``) or loaded (``--fd001-lstm``),
  explained with our batched expected gradients (:func:`lstm_shap_ms_per_sample`, ms per
  window and completeness gap; shap.GradientExplainer with the same settings on a few
  windows for comparison); a forest (settings printed) explained with TreeExplainer
  (:func:`forest_shap_ms_per_sample`, ms per row).
- ``simulated``: the built-in simulator's fleet, whose fault sensors are known. Both models
  are trained, then explained on held-out (validation) units' windows where degradation has
  begun (RUL below the cap): precision@k against the true fault sensors per model
  (:func:`groundtruth_checks`), deletion area and top-k / random ratio at k = number of true
  fault sensors (:func:`deletion_checks`), Spearman rho and top-k overlap between the models.

    .venv/bin/python benchmarks/explain_shap.py [--json PATH] [--epochs 5] [--sim-epochs 20]
        [--models DIR] [--skip-fd001] [--skip-sim] [--shap-threads 1]

Timings on a shared machine are noisy: the table gives the median over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData, prepare
from pdmlens.data.windows import WindowDataset
from pdmlens.explain.agreement import agreement
from pdmlens.explain.attributions import (
    Attribution,
    explain_forest,
    explain_lstm,
    select_background,
    torch_threads,
)
from pdmlens.explain.faithfulness import baseline_from, deletion_curve, model_predictor
from pdmlens.explain.groundtruth import deviation_scores, groundtruth_precision
from pdmlens.metrics import rmse
from pdmlens.models.forest import ForestEstimator
from pdmlens.models.lstm import LSTMEstimator

log = logging.getLogger("benchmarks.explain_shap")
REPO = Path(__file__).resolve().parents[1]
CMAPSS = REPO.parent / "shared" / "data" / "cmapss"


# --------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The SHAP section's options, added to ``p`` (``benchmarks/explain.py`` adds them to
    its parser; options it already has, such as --seed, --threads, --repeats, are shared)."""
    g = p.add_argument_group("SHAP section")
    have = set(p._option_string_actions)

    def opt(name: str, **kw: Any) -> None:
        if name not in have:
            g.add_argument(name, **kw)

    opt("--seed", type=int, default=0)
    g.add_argument(
        "--shap-threads",
        type=int,
        default=1,
        help="torch/BLAS threads for this section (1 is fastest on a busy "
        "shared CPU: see pdmlens.explain.attributions.torch_threads)",
    )
    opt("--repeats", type=int, default=3, help="timing repeats (median)")
    g.add_argument("--cmapss", type=Path, default=CMAPSS)
    g.add_argument("--epochs", type=int, default=5, help="FD001 LSTM training epochs")
    g.add_argument(
        "--models",
        type=Path,
        default=None,
        help="reuse the models saved in this folder; train and save them there "
        "when absent (a model's settings are not checked: clear the folder "
        "after changing them)",
    )
    g.add_argument("--n-explain", type=int, default=256, help="windows explained")
    g.add_argument("--background", type=int, default=None, help="default: ExplainConfig")
    g.add_argument("--nsamples", type=int, default=None, help="default: ExplainConfig")
    g.add_argument(
        "--shap-windows",
        type=int,
        default=4,
        help="windows for the shap.GradientExplainer comparison (0: skip)",
    )
    g.add_argument("--forest-trees", type=int, default=100)
    g.add_argument("--forest-leaves", type=int, default=128, help="max_leaf_nodes")
    g.add_argument("--forest-depth", type=int, default=12)
    g.add_argument("--sim-units", type=int, default=80)
    g.add_argument("--sim-epochs", type=int, default=20)
    g.add_argument("--deletion-random", type=int, default=5)
    opt("--figures", type=Path, default=None, help="save the simulated fleet's figures here")
    g.add_argument("--skip-fd001", action="store_true")
    g.add_argument("--skip-sim", action="store_true")
    return p


def base_config(a: argparse.Namespace) -> RunConfig:
    over: dict[str, Any] = {
        "seed": a.seed,
        "model.lstm.device": "cpu",
        "model.lstm.num_threads": a.shap_threads,
        "model.forest.n_estimators": a.forest_trees,
        "model.forest.max_leaf_nodes": a.forest_leaves,
        "model.forest.max_depth": a.forest_depth,
        "model.forest.n_jobs": a.shap_threads,
        "explain.num_threads": a.shap_threads,
        "explain.n_explain": a.n_explain,
        "explain.deletion_random": a.deletion_random,
    }
    if a.background is not None:
        over["explain.background"] = a.background
    if a.nsamples is not None:
        over["explain.shap_samples"] = a.nsamples
    return RunConfig().with_overrides(over)


def forest_settings(f: ForestEstimator) -> dict[str, Any]:
    m = f.model_
    leaves = [e.tree_.n_leaves for e in m.estimators_]
    depth = [e.tree_.max_depth for e in m.estimators_]
    return {
        "n_estimators": f.n_estimators,
        "max_depth": f.max_depth,
        "max_leaf_nodes": f.max_leaf_nodes,
        "min_samples_leaf": f.min_samples_leaf,
        "max_features": f.max_features,
        "stats": list(f.stats),
        "n_features": len(f.feature_names_),
        "mean_leaves": float(np.mean(leaves)),
        "mean_depth": float(np.mean(depth)),
    }


def lstm_settings(est: LSTMEstimator, window: int) -> dict[str, Any]:
    return {
        "hidden_size": est.hidden_size,
        "num_layers": est.num_layers,
        "window": window,
        "n_features": int(est.n_features_in_),
        "epochs_run": len(est.history_) if hasattr(est, "history_") else None,
    }


def sample_windows(
    ds: WindowDataset, n: int, seed: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """``n`` window indices at random (seeded, sorted), among ``mask`` when given."""
    pool = np.arange(len(ds)) if mask is None else np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    return np.sort(pool if n >= len(pool) else rng.choice(pool, size=n, replace=False))


def background(ds: WindowDataset, cfg: RunConfig, seed: int, size: int) -> np.ndarray:
    """``size`` training windows of ``cfg.explain.background_kind`` (healthy: at the cap)."""
    return select_background(
        ds, size, cfg.explain.background_kind, seed, cfg.model.task, cfg.prepare.rul_cap
    )


def models(
    a: argparse.Namespace, cfg: RunConfig, tag: str, tr: WindowDataset, va: WindowDataset
) -> tuple[LSTMEstimator, ForestEstimator, dict[str, float]]:
    """The LSTM and the forest: loaded from ``--models`` when saved there, else trained
    (and saved there when ``--models`` is given)."""
    d = a.models
    lp, fp = (None, None) if d is None else (d / f"{tag}_lstm.pt", d / f"{tag}_forest.joblib")
    fit_s: dict[str, float] = {}
    t0 = time.perf_counter()
    if lp is not None and lp.is_file():
        lstm = LSTMEstimator.load(lp, device="cpu")
    else:
        lstm = LSTMEstimator.from_config(cfg).fit(tr, va)
        fit_s["lstm"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if fp is not None and fp.is_file():
        forest = ForestEstimator.load(fp)
    else:
        forest = ForestEstimator.from_config(cfg).fit(tr)
        fit_s["forest"] = time.perf_counter() - t1
    if d is not None:
        d.mkdir(parents=True, exist_ok=True)
        if not lp.is_file():
            lstm.save(lp)
        if not fp.is_file():
            forest.save(fp)
    return lstm, forest, fit_s


# --------------------------------------------------------------------------- speed
def lstm_shap_ms_per_sample(
    est: LSTMEstimator,
    x: np.ndarray,
    background: np.ndarray,
    nsamples: int,
    batch_size: int,
    seed: int = 0,
    repeats: int = 3,
    shap_windows: int = 4,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """ms per window and completeness gap of our expected gradients (median of
    ``repeats``), and of shap.GradientExplainer on ``shap_windows`` windows, with the same
    settings and with its default nsamples (200)."""
    times, attr = [], None
    for _ in range(max(repeats, 1)):
        attr = explain_lstm(
            est,
            x,
            background,
            nsamples=nsamples,
            batch_size=batch_size,
            seed=seed,
            num_threads=num_threads,
        )
        times.append(attr.ms_per_sample)
    assert attr is not None
    out: dict[str, Any] = {
        "lstm_shap_ms_per_sample": float(np.median(times)),
        "lstm_shap_ms_runs": times,
        "lstm_completeness_gap": attr.completeness_gap,
        "lstm_mean_abs_residual": float(np.mean(np.abs(attr.residual))),
        "lstm_mean_abs_f_minus_base": float(np.mean(np.abs(attr.predictions - attr.base_value))),
        "n_windows": int(len(x)),
        "nsamples": nsamples,
        "background": int(len(background)),
        "batch_size": batch_size,
        "method": attr.method,
        "torch_threads": attr.settings["num_threads"],
    }
    if shap_windows > 0:
        ref = explain_lstm(
            est,
            x[:shap_windows],
            background,
            nsamples=nsamples,
            batch_size=shap_windows,
            seed=seed,
            method="shap",
            num_threads=num_threads,
        )
        ours = attr.subset(np.arange(min(shap_windows, len(x))))
        dflt = explain_lstm(
            est,
            x[:shap_windows],
            background,
            nsamples=200,
            batch_size=shap_windows,
            seed=seed,
            method="shap",
            num_threads=num_threads,
        )
        out.update(
            {
                "shap_default_ms_per_sample": dflt.ms_per_sample,
                "shap_default_completeness_gap": dflt.completeness_gap,
                "shap_gradient_ms_per_sample": ref.ms_per_sample,
                "shap_gradient_completeness_gap": ref.completeness_gap,
                "shap_gradient_windows": shap_windows,
                "ours_vs_shap_corr": float(
                    np.corrcoef(ours.values.ravel(), ref.values.ravel())[0, 1]
                ),
            }
        )
    return out


def forest_shap_ms_per_sample(
    forest: ForestEstimator,
    x: np.ndarray,
    background: np.ndarray | None,
    perturbation: str = "interventional",
    repeats: int = 3,
    batch_size: int = 256,
) -> dict[str, Any]:
    """ms per row of TreeExplainer (median of ``repeats``) and its completeness gap, for
    ``perturbation`` and, for comparison, the other of shap's two exact algorithms."""
    out: dict[str, Any] = {
        "forest": forest_settings(forest),
        "n_rows": int(len(x)),
        "perturbation": perturbation,
    }
    for pert in (
        perturbation,
        *[p for p in ("interventional", "tree_path_dependent") if p != perturbation],
    ):
        times, attr = [], None
        for _ in range(max(repeats, 1)):
            attr = explain_forest(forest, x, background, perturbation=pert, batch_size=batch_size)
            times.append(attr.ms_per_sample)
        assert attr is not None
        key = "forest" if pert == perturbation else f"forest_{pert}"
        out.update(
            {
                f"{key}_shap_ms_per_sample": float(np.median(times)),
                f"{key}_shap_ms_runs": times,
                f"{key}_completeness_gap": attr.completeness_gap,
                f"{key}_setup_s": attr.settings["setup_seconds"],
            }
        )
    return out


def fd001(a: argparse.Namespace) -> dict[str, Any]:
    """Speed on FD001-sized models (see the module docstring)."""
    from pdmlens.data.sources import load_source

    cfg = base_config(a).with_overrides(
        {"data.source": "cmapss", "data.path": str(a.cmapss), "model.lstm.epochs": a.epochs}
    )
    data = prepare(load_source(cfg.data), cfg)
    tr, va = data.windows("train", cfg.window), data.windows("val", cfg.window)
    est, forest, fit_s = models(a, cfg, "fd001", tr, va)
    xi = sample_windows(va, cfg.explain.n_explain, a.seed)
    x = va.batch(xi)[0].copy()
    bg = background(tr, cfg, a.seed + 1, cfg.explain.background)
    out: dict[str, Any] = {
        "data": "C-MAPSS FD001",
        "background_kind": cfg.explain.background_kind,
        "lstm": lstm_settings(est, cfg.window.length),
        "lstm_val_rmse": rmse(est.predict(va), va.window_targets),
        "forest_val_rmse": rmse(forest.predict(va), va.window_targets),
        "fit_s": fit_s,
    }
    out.update(
        lstm_shap_ms_per_sample(
            est,
            x,
            bg,
            cfg.explain.shap_samples,
            cfg.explain.batch_size,
            a.seed,
            a.repeats,
            a.shap_windows,
            cfg.explain.num_threads,
        )
    )
    out.update(forest_shap_ms_per_sample(forest, x, bg, cfg.explain.tree_perturbation, a.repeats))
    return out


# --------------------------------------------------------------------------- simulated
def groundtruth_checks(
    attrs: dict[str, Attribution],
    units: np.ndarray,
    rul: np.ndarray,
    data: PreparedData,
    thresholds: dict[str, float],
    headline: str,
) -> dict[str, Any]:
    """precision@k per model (and for the model-free ``data`` reference, given as scores
    in ``attrs["data"]``) at each RUL threshold: per window, per unit, per fault mode. The
    ``headline`` threshold's figures are also given flat."""
    out: dict[str, Any] = {"precision": {}}
    for label, rul_max in thresholds.items():
        rows = {}
        for name, attr in attrs.items():
            names = None if isinstance(attr, Attribution) else data.features
            t = groundtruth_precision(
                attr,
                units,
                data.meta.fault_modes,
                data.meta.fault_sensors,
                sensor_names=names,
                rul=rul,
                rul_max=rul_max,
            ).set_index("fault_mode")
            rows[name] = {
                "window": float(t.loc["all", "precision_sample"]),
                "unit": float(t.loc["all", "precision_unit"]),
                "n_windows": int(t.loc["all", "n_samples"]),
                "n_units": int(t.loc["all", "n_units"]),
                "by_mode": {k: float(v) for k, v in t["precision_sample"].items() if k != "all"},
            }
        out["precision"][label] = rows
    for name, r in out["precision"][headline].items():
        out[f"{name}_precision_at_k"] = r["window"]
        out[f"{name}_precision_at_k_unit"] = r["unit"]
    return out


def deletion_checks(
    models: dict[str, Any],
    attrs: dict[str, Attribution],
    x: np.ndarray,
    baseline: np.ndarray,
    k_true: int,
    n_random: int,
    seed: int,
) -> dict[str, Any]:
    """Deletion area and top-k / random ratio at k_true per model."""
    out: dict[str, Any] = {}
    for name, model in models.items():
        res = deletion_curve(
            model_predictor(model), x, attrs[name], baseline, n_random=n_random, seed=seed
        )
        out[f"{name}_deletion_area"] = res.area
        out[f"{name}_deletion_area_rel"] = res.area_rel
        out[f"{name}_deletion_ratio_at_k"] = res.ratio(k_true)
        out[f"{name}_deletion_top"] = res.top.tolist()
        out[f"{name}_deletion_random"] = res.random.tolist()
        out[f"{name}_deletion_random_std"] = res.random_std.tolist()
        out[f"{name}_deletion_full_move"] = res.full_move
    return out


def simulated(a: argparse.Namespace) -> dict[str, Any]:
    """Ground truth, faithfulness and agreement on the simulated fleet."""
    from pdmlens.data.simulate import simulate_fleet

    cfg = base_config(a).with_overrides(
        {
            "data.simulator.n_units": a.sim_units,
            "data.simulator.n_test_units": 0,
            "model.lstm.epochs": a.sim_epochs,
        }
    )
    data = prepare(simulate_fleet(cfg.data.simulator, cfg.seed), cfg)
    tr, va = data.windows("train", cfg.window), data.windows("val", cfg.window)
    lstm, forest, fit_s = models(a, cfg, "sim", tr, va)
    cap = cfg.prepare.rul_cap
    rul = va.window_targets
    xi = sample_windows(va, cfg.explain.n_explain, a.seed, mask=rul < cap)
    x = va.batch(xi)[0].copy()
    units, rul_x = va.window_units[xi], rul[xi]
    bg = background(tr, cfg, a.seed + 1, cfg.explain.background)
    base = baseline_from(background(tr, cfg, a.seed + 2, cfg.explain.deletion_baseline))
    attrs = {
        "lstm": explain_lstm(
            lstm,
            x,
            bg,
            nsamples=cfg.explain.shap_samples,
            batch_size=cfg.explain.batch_size,
            seed=a.seed,
            num_threads=cfg.explain.num_threads,
        ),
        "forest": explain_forest(forest, x, bg, perturbation=cfg.explain.tree_perturbation),
    }
    k_true = int(np.median([len(v) for v in data.meta.fault_sensors.values()]))
    agree = agreement(attrs["lstm"], attrs["forest"], units=units, k=k_true)
    out: dict[str, Any] = {
        "data": f"simulated, {a.sim_units} units, validation units' windows with RUL < {cap}",
        "background_kind": cfg.explain.background_kind,
        "forest_perturbation": cfg.explain.tree_perturbation,
        "fault_sensors": data.meta.fault_sensors,
        "k_true": k_true,
        "n_windows": int(len(x)),
        "n_units": int(len(set(units.tolist()))),
        "lstm_val_rmse": rmse(lstm.predict(va), rul),
        "forest_val_rmse": rmse(forest.predict(va), rul),
        "forest": forest_settings(forest),
        "lstm": lstm_settings(lstm, cfg.window.length),
        "fit_s": fit_s,
        "lstm_completeness_gap": attrs["lstm"].completeness_gap,
        "forest_completeness_gap": attrs["forest"].completeness_gap,
        "agreement_spearman": agree["spearman"],
        "agreement_top_k_overlap": agree["top_k_overlap"],
        "agreement_unit_spearman_mean": agree["unit_spearman_mean"],
        "importance": agree["importance"].to_dict(),
    }
    horizon = float(cfg.prepare.horizon)
    thresholds = {f"rul<{cap:g}": cap, f"rul<{cap / 2:g}": cap / 2, f"rul<{horizon:g}": horizon}
    out["headline"] = f"rul<{horizon:g}"
    scored = {**attrs, "data": deviation_scores(x, base)}
    out.update(groundtruth_checks(scored, units, rul_x, data, thresholds, out["headline"]))
    out.update(
        deletion_checks(
            {"lstm": lstm, "forest": forest},
            attrs,
            x,
            base,
            k_true,
            cfg.explain.deletion_random,
            a.seed,
        )
    )
    if getattr(a, "figures", None) is not None:
        save_figures(a.figures, attrs, agree, out, k_true, units, rul_x)
    return out


def save_figures(
    directory: Path,
    attrs: dict[str, Attribution],
    agree: dict[str, Any],
    out: dict[str, Any],
    k_true: int,
    units: np.ndarray,
    rul: np.ndarray,
) -> None:
    """The report's SHAP figures for the simulated fleet, as PNGs."""
    from pdmlens.explain.faithfulness import DeletionResult
    from pdmlens.report.attribution_plots import (
        agreement_plot,
        deletion_plot,
        shap_summary,
        time_sensor_heatmap,
    )

    directory.mkdir(parents=True, exist_ok=True)
    for name, attr in attrs.items():
        shap_summary(attr).savefig(directory / f"shap_summary_{name}.png", dpi=80)
    late = int(np.argmin(rul))  # the window closest to failure, and its unit's windows
    time_sensor_heatmap(attrs["lstm"], late).savefig(directory / "heatmap_window.png", dpi=80)
    same = np.flatnonzero(units == units[late])
    time_sensor_heatmap(attrs["lstm"], same).savefig(directory / "heatmap_unit.png", dpi=80)
    agreement_plot(attrs["lstm"], attrs["forest"], result=agree).savefig(
        directory / "agreement.png", dpi=80
    )
    curves = {}
    for name in attrs:
        top, rnd = np.array(out[f"{name}_deletion_top"]), np.array(out[f"{name}_deletion_random"])
        curves[name] = DeletionResult(
            k=np.arange(len(top)),
            top=top,
            random=rnd,
            random_std=np.array(out[f"{name}_deletion_random_std"]),
            full_move=out[f"{name}_deletion_full_move"],
            n_random=0,
        )
    deletion_plot(curves, k_true=k_true).savefig(directory / "deletion.png", dpi=80)


# --------------------------------------------------------------------------- run / print
def run_shap_section(a: argparse.Namespace) -> dict[str, Any]:
    """Both parts (unless skipped), as one dict."""
    res: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}
    }
    with torch_threads(a.shap_threads):
        if not a.skip_fd001:
            if (a.cmapss / "train_FD001.txt.gz").is_file() or (
                a.cmapss / "train_FD001.txt"
            ).is_file():
                res["fd001"] = fd001(a)
            else:
                res["fd001"] = {"skipped": f"C-MAPSS not found at {a.cmapss}"}
        if not a.skip_sim:
            res["simulated"] = simulated(a)
    return res


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested results as one level of ``a_b_c`` keys with JSON-ready values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "_"))
        elif isinstance(v, (list, tuple)):
            out[key] = [x if isinstance(x, (int, float, str)) else str(x) for x in v]
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = v
        elif isinstance(v, np.generic):
            out[key] = v.item()
        else:
            out[key] = str(v)
    return out


def shap_section(a: argparse.Namespace) -> dict[str, Any]:
    """The section for ``benchmarks/explain.py``: :func:`run_shap_section` flattened
    (``fd001_lstm_shap_ms_per_sample``, ``simulated_lstm_precision_at_k``, ...), after the
    readable table is printed."""
    res = run_shap_section(a)
    print_shap_section(res)
    res.pop("config", None)
    for part in res.values():
        if isinstance(part, dict):
            part.pop("importance", None)
    return flat(res)


def _f(v: Any, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else str(v)


def print_shap_section(res: dict[str, Any]) -> None:
    fd = res.get("fd001")
    if fd and "skipped" not in fd:
        print(f"SHAP speed, C-MAPSS FD001 (background: {fd['background_kind']} windows)")
        print(f"  LSTM {fd['lstm']}  val RMSE {fd['lstm_val_rmse']:.2f}")
        print(f"  forest {fd['forest']}  val RMSE {fd['forest_val_rmse']:.2f}")
        rows = [
            (
                "LSTM expected gradients (ours)",
                fd["lstm_shap_ms_per_sample"],
                fd["lstm_completeness_gap"],
                f"{fd['n_windows']} windows, nsamples "
                f"{fd['nsamples']}, background {fd['background']}, batch {fd['batch_size']}",
            ),
        ]
        if "shap_gradient_ms_per_sample" in fd:
            rows.append(
                (
                    "LSTM shap.GradientExplainer",
                    fd["shap_gradient_ms_per_sample"],
                    fd["shap_gradient_completeness_gap"],
                    f"{fd['shap_gradient_windows']} windows, same settings; corr with "
                    f"ours {fd['ours_vs_shap_corr']:.3f}",
                )
            )
        if "shap_default_ms_per_sample" in fd:
            rows.append(
                (
                    "LSTM shap.GradientExplainer, nsamples 200",
                    fd["shap_default_ms_per_sample"],
                    fd["shap_default_completeness_gap"],
                    f"{fd['shap_gradient_windows']} windows, shap's default nsamples",
                )
            )
        rows.append(
            (
                f"forest TreeExplainer {fd['perturbation']}",
                fd["forest_shap_ms_per_sample"],
                fd["forest_completeness_gap"],
                f"{fd['n_rows']} rows",
            )
        )
        for k in ("interventional", "tree_path_dependent"):
            if f"forest_{k}_shap_ms_per_sample" in fd:
                rows.append(
                    (
                        f"forest TreeExplainer {k}",
                        fd[f"forest_{k}_shap_ms_per_sample"],
                        fd[f"forest_{k}_completeness_gap"],
                        f"{fd['n_rows']} rows",
                    )
                )
        print(f"  {'method':<44}{'ms/sample':>10}{'gap':>10}  setting")
        for name, ms, gap, note in rows:
            print(f"  {name:<44}{ms:>10.1f}{gap:>10.3g}  {note}")
    elif fd:
        print("FD001:", fd["skipped"])
    sim = res.get("simulated")
    if sim:
        print(
            f"\nSimulated fleet ({sim['data']}; {sim['n_windows']} windows of "
            f"{sim['n_units']} units; k = {sim['k_true']} true fault sensors; background "
            f"{sim['background_kind']}, forest {sim['forest_perturbation']})"
        )
        print(f"  {'':<8}{'val RMSE':>9}{'del area':>9}{'area rel':>9}{'ratio@k':>9}{'gap':>9}")
        for m in ("lstm", "forest"):
            print(
                f"  {m:<8}{sim[m + '_val_rmse']:>9.2f}{sim[m + '_deletion_area']:>9.2f}"
                f"{sim[m + '_deletion_area_rel']:>9.3f}{sim[m + '_deletion_ratio_at_k']:>9.2f}"
                f"{sim[m + '_completeness_gap']:>9.2g}"
            )
        print(
            "  precision@k (per window / per unit pooled; data = model-free reference: rank "
            "sensors by distance from the healthy baseline)"
        )
        for label, rows_ in sim["precision"].items():
            mark = "  <- headline" if label == sim["headline"] else ""
            cells = "  ".join(f"{m} {r['window']:.3f}/{r['unit']:.3f}" for m, r in rows_.items())
            n = next(iter(rows_.values()))
            print(
                f"    {label:<10} ({n['n_windows']:>3} windows, {n['n_units']:>2} units)  "
                f"{cells}{mark}"
            )
        for m, r in sim["precision"][sim["headline"]].items():
            print(
                f"    {m} by fault mode ({sim['headline']}): "
                + ", ".join(f"{k} {v:.3f}" for k, v in r["by_mode"].items())
            )
        print(
            f"  agreement: Spearman rho {_f(sim['agreement_spearman'])}, top-k overlap "
            f"{_f(sim['agreement_top_k_overlap'])}, mean per-unit rho "
            f"{_f(sim['agreement_unit_spearman_mean'])}"
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = add_arguments(p).parse_args(argv)
    res = run_shap_section(a)
    print_shap_section(res)
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
