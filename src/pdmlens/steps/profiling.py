"""The signatures step: per-layer activation signatures of the LSTM, clustered against
health stages, with novelty of the evaluated windows and stage-selective units."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData
from pdmlens.results import LSTM, StepResult, clean_metrics, model_file
from pdmlens.sampling import sample_indices as _sample
from pdmlens.steps.common import save_fig
from pdmlens.task import LSTM_TARGET, eval_split

log = logging.getLogger("pdmlens.steps")


def signatures(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    out_dir: str | Path,
    max_windows: int = 2000,
) -> StepResult:
    """Per-layer activation signatures: clusters against health stages, the first layer
    that separates them, stage-selective units, and novelty of the evaluated windows
    against the validation units. At most ``max_windows`` windows per split (a seeded
    sample) are profiled; k-means runs single-threaded, which on a small shared CPU is
    many times faster than fighting the other steps for cores."""
    from pdmlens.runtime.threads import compute_threads

    with compute_threads(1):
        return _signatures(cfg, prepared_dir, lstm_dir, out_dir, max_windows)


def _signatures(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    out_dir: str | Path,
    max_train: int,
) -> StepResult:
    from pdmlens.explain.gates import extract_gates
    from pdmlens.models.lstm import LSTMEstimator
    from pdmlens.report import signature_plots as SP
    from pdmlens.signatures.cluster import (
        SignatureClusterer,
        describe_clusters,
        input_signature,
        layer_label,
        signatures_from_lstm,
        stage_names,
        stage_of,
    )
    from pdmlens.signatures.layers import (
        first_separating_layer,
        layer_separation,
        separation_verdict,
    )
    from pdmlens.signatures.novelty import novelty_by_layer, novelty_verdict
    from pdmlens.signatures.selectivity import unit_selectivity

    t0 = time.perf_counter()
    sc = cfg.signatures
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm = LSTMEstimator.load(model_file(LSTM, lstm_dir))
    split = eval_split(data)
    rul_target = LSTM_TARGET  # health stages are bins of the capped RUL, for both tasks
    train = data.windows("train", cfg.window, rul_target)
    val = data.windows("val", cfg.window, rul_target)
    test = data.windows(split, cfg.window, rul_target)
    tr_idx = _sample(len(train), max_train, cfg.seed)
    va_idx = _sample(len(val), max_train, cfg.seed + 1)
    te_idx = _sample(len(test), max_train, cfg.seed + 2)

    def sigs(x: np.ndarray) -> dict[Any, np.ndarray]:
        return {0: input_signature(x, "last_mean"), **signatures_from_lstm(lstm.network_.lstm, x)}

    x_te = test.batch(te_idx)[0].copy()  # profiled, described and traced below
    s_tr, s_va = sigs(train.batch(tr_idx)[0].copy()), sigs(val.batch(va_idx)[0].copy())
    s_te = sigs(x_te)
    bins = list(sc.stage_bins)
    order = stage_names(bins)
    st_tr = stage_of(train.window_targets[tr_idx], bins)
    st_te = stage_of(test.window_targets[te_idx], bins)
    sep = layer_separation(
        s_tr,
        st_tr,
        s_te,
        st_te,
        seed=cfg.seed,
        k=sc.k,
        k_range=sc.k_range,
        train_groups=train.window_units[tr_idx],
        silhouette_sample=sc.silhouette_sample,
    )
    choice = first_separating_layer(sep, sc.separation_metric, sc.tolerance)
    verdict = separation_verdict(sep, sc.separation_metric, sc.tolerance)
    sep_out = sep.copy()
    sep_out.index = [layer_label(i) for i in sep_out.index]
    sep_out.index.name = "layer"
    sep_out.reset_index().to_parquet(out / "layer_separation.parquet", index=False)

    clusters = {}
    assign = pd.DataFrame(
        {
            "unit": test.window_units[te_idx],
            "time": test.window_times[te_idx],
            "rul": test.window_targets[te_idx],
            "stage": st_te,
        }
    )
    for layer in s_tr:
        clu = SignatureClusterer(
            k=int(sep.loc[layer, "k"]), seed=cfg.seed, silhouette_sample=sc.silhouette_sample
        ).fit(s_tr[layer])
        clusters[layer] = clu.predict(s_te[layer])
        assign[f"cluster_{layer_label(layer)}"] = clusters[layer]
    assign.to_parquet(out / "clusters.parquet", index=False)
    last_step = pd.DataFrame(x_te[:, -1, :], columns=data.features)
    sentences = describe_clusters(clusters[choice.layer], st_te, last_step, top=3, order=order)

    nov, scores = novelty_by_layer(
        s_tr,
        s_va,
        s_va,
        s_te,
        method=sc.novelty_method,
        k=sc.novelty_knn,
        tnr=sc.novelty_tnr,
        seed=cfg.seed,
    )
    nov_out = nov.copy()
    nov_out.index = [layer_label(i) for i in nov_out.index]
    nov_out.index.name = "layer"
    nov_out.reset_index().to_parquet(out / "novelty.parquet", index=False)

    n_sel = min(len(te_idx), 1000)
    sel_idx = te_idx[:n_sel]
    trace = extract_gates(lstm.network_.lstm, x_te[:n_sel])
    rul_steps = test.window_targets[sel_idx][:, None] + np.arange(test.length - 1, -1, -1)[None]
    stages_t = stage_of(np.minimum(rul_steps, bins[-1]), bins)
    acts = {li + 1: np.asarray(layer["h"]) for li, layer in enumerate(trace.layers)}
    sel = unit_selectivity(
        acts,
        stages_t,
        threshold=sc.selectivity_threshold,
        min_run=sc.selectivity_min_run,
        order=order,
    )
    sel.to_parquet(out / "selectivity.parquet", index=False)

    figures = {
        "figures/signature_projection.png": save_fig(
            SP.plot_signature_projection(s_te, clusters, st_te, order=order, seed=cfg.seed),
            out,
            "signature_projection",
        ),
        "figures/layer_separation.png": save_fig(
            SP.plot_layer_separation(sep, chosen=verdict.layer), out, "layer_separation"
        ),
        "figures/novelty.png": save_fig(
            SP.plot_novelty_distributions(
                scores,
                table=nov,
                familiar_label="validation units (calibration)",
                unfamiliar_label=f"{split} units",
            ),
            out,
            "novelty",
        ),
        "figures/unit_selectivity.png": save_fig(
            SP.plot_unit_selectivity(sel, order=order), out, "unit_selectivity"
        ),
    }
    metrics: dict[str, float] = {
        "first_separating_layer": float(verdict.layer)
        if isinstance(verdict.layer, (int, np.integer))
        else float("nan"),
        "first_separating_score": choice.score if verdict.layer is not None else float("nan"),
    }
    for layer in sep.index:
        for col in ("purity", "ari", "nmi", "probe_accuracy", "silhouette"):
            if col in sep.columns:
                metrics[f"{layer_label(layer)}_{col}".replace(" ", "_")] = sep.loc[layer, col]
    for layer in nov.index:
        for col in ("auroc", "detection_rate", "false_alarm_rate", "threshold"):
            if col in nov.columns:
                metrics[f"{layer_label(layer)}_novelty_{col}".replace(" ", "_")] = nov.loc[
                    layer, col
                ]
    info = {
        "first_separating_layer": layer_label(verdict.layer)
        if verdict.layer is not None
        else "none",
        "sentence": verdict.sentence,
        "novelty_verdict": novelty_verdict(
            nov, "validation machines", f"{split} machines", sc.novelty_tnr
        ),
        "clusters": sentences,
        "n_windows": {"train": len(tr_idx), "val": len(va_idx), split: len(te_idx)},
        "novelty_split": split,
        "flagged_share": {
            layer_label(k): float(nov.loc[k, "detection_rate"])
            for k in nov.index
            if "detection_rate" in nov.columns
        },
    }
    tables = {f"signatures/{p.name}": str(p) for p in out.glob("*.parquet")}
    log.info("signatures: %s", verdict.sentence)
    return StepResult(
        "signatures",
        str(out),
        metrics=clean_metrics(metrics),
        figures=figures,
        tables=tables,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()
