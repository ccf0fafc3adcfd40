"""The explain step: :func:`pdmlens.explain.explanations.compute_explanations`, then its
tables written as Parquet and its figures drawn."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData
from pdmlens.explain.explanations import Explanations, compute_explanations
from pdmlens.results import StepResult, clean_metrics
from pdmlens.steps.common import Progress, save_fig
from pdmlens.steps.training import load_models

log = logging.getLogger("pdmlens.steps")


def explain(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
    progress: Progress | None = None,
) -> StepResult:
    """Gate traces and saturation of the LSTM; SHAP for both models; their agreement;
    deletion curves; precision against the true fault sensors where known."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm, forest = load_models(lstm_dir, forest_dir)
    ex = compute_explanations(cfg, data, lstm, forest, progress=progress)
    tables = write_tables(ex, out)
    figures = draw_figures(ex, cfg, out)
    info: dict[str, Any] = {
        "split": ex.split,
        "saturation": ex.saturation_summary.to_dict(orient="records"),
        "importance": ex.agreement["importance"].reset_index().to_dict(orient="records"),
        "agreement": {
            "k": ex.agreement["k"],
            "spearman": ex.agreement["spearman"],
            "top_k_overlap": ex.agreement["top_k_overlap"],
        },
    }
    for name in ex.attributions:
        info[f"top_sensors_{name}"] = ex.top_sensors(name)
    if ex.groundtruth is not None:
        info["groundtruth"] = ex.groundtruth.to_dict(orient="records")
    info["n_explained"] = ex.n_explained
    log.info(
        "explained %d windows: agreement rho %.2f, top-%d overlap %.2f",
        ex.n_explained,
        ex.agreement["spearman"],
        ex.agreement["k"],
        ex.agreement["top_k_overlap"],
    )
    return StepResult(
        "explain",
        str(out),
        metrics=clean_metrics(ex.metrics),
        figures=figures,
        tables=tables,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()


def write_tables(ex: Explanations, out: Path) -> dict[str, str]:
    """The explanations' tables as Parquet in ``out``: artifact path -> local file."""
    tables: dict[str, str] = {}

    def put(frame: Any, name: str) -> None:
        frame.to_parquet(out / name, index=False)
        tables[f"explain/{name}"] = str(out / name)

    put(ex.saturation, "saturation.parquet")
    put(ex.gates, "gate_traces.parquet")
    put(ex.agreement["importance"].reset_index(), "importance.parquet")
    for name, attr in ex.attributions.items():
        frame = attr.to_frame("time" if attr.has_time else "sensor")
        frame["unit"] = ex.units[frame["sample"].to_numpy()]
        frame["target"] = ex.targets[frame["sample"].to_numpy()]
        put(frame, f"attributions_{name}.parquet")
    if ex.groundtruth is not None:
        put(ex.groundtruth, "groundtruth.parquet")
    return tables


def draw_figures(ex: Explanations, cfg: RunConfig, out: Path) -> dict[str, str]:
    """The explanations' charts as PNG in ``out``: artifact path -> local file."""
    import numpy as np

    from pdmlens.report import attribution_plots as AP
    from pdmlens.report.gate_plots import (
        layer_name,
        plot_gate_layer,
        plot_saturation,
        unit_order_by_selectivity,
    )

    ec = cfg.explain
    figures: dict[str, str] = {}

    def put(fig: Any, name: str) -> None:
        figures[f"figures/{name}.png"] = save_fig(fig, out, name)

    put(
        plot_saturation(ex.saturation, low=ec.saturation_low, high=ec.saturation_high),
        "gate_saturation",
    )
    # one figure per example window and layer, readable at a report column's width; the
    # units in one order for both windows: most raised near failure first
    by_label = {g.label: g.sample for g in ex.examples}
    order = unit_order_by_selectivity(
        ex.trace, [by_label.get("near_failure", 0)], [by_label.get("healthy", 0)]
    )
    for g in ex.examples:
        for li in range(ex.trace.num_layers):
            title = (
                f"{layer_name(li)}: gates of machine {g.unit}, window ending at cycle {g.time} "
                f"({g.label.replace('_', ' ')}, {g.description})"
            )
            put(
                plot_gate_layer(ex.trace, g.sample, li, order=order[li], title=title),
                f"gates_{g.label}_layer{li + 1}",
            )
    for name, attr in ex.attributions.items():
        put(
            AP.dot_summary(attr, title=f"{name}: what drives the prediction"),
            f"shap_summary_{name}",
        )
    late = int(np.argmin(ex.targets))
    put(
        AP.time_sensor_heatmap(
            ex.attributions["lstm"],
            late,
            title=f"LSTM: which sensor at which step, unit {ex.units[late]}",
        ),
        "shap_time_heatmap",
    )
    put(
        AP.agreement_plot(
            ex.attributions["lstm"], ex.attributions["forest"], k=ex.k, result=ex.agreement
        ),
        "agreement",
    )
    put(AP.deletion_plot(ex.deletions, k_true=ex.k_true), "deletion")
    return figures
