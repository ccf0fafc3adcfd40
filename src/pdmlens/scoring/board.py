"""The fleet board (one self-contained HTML file) and the terminal table of a scoring.

The board lists machines by urgency (act, watch, ok; then the lowest predicted life). Per
machine (the ``max_units`` most urgent): its predicted RUL over its recent history (both
models, one prediction per cycle), the sensors driving the LSTM's prediction with their
recent raw readings, its novelty flag and kind, its health stage. Figures are embedded as
base64 PNG; no script, font or image is fetched from anywhere.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.data.fleet import TIME, UNIT
from pdmlens.data.windows import WindowDataset
from pdmlens.scoring.bundle import ScoringBundle
from pdmlens.scoring.score import TOP_K, ScoreTable
from pdmlens.task import Task

HISTORY = 30
"""recent cycles shown per machine."""
COLOURS = {"act": "#c0392b", "watch": "#d68910", "ok": "#1e8449"}

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3} .lv{color:#fff;font-weight:bold;padding:2px 6px;border-radius:3px}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.rule{background:#f8f8f8;padding:.6em 1em;border-left:4px solid #888;font-size:.9em}
.novel{color:#8e44ad;font-weight:bold}
"""


def _level(lv: str) -> str:
    return f'<span class="lv" style="background:{COLOURS.get(lv, "#555")}">{lv}</span>'


def recent_predictions(
    bundle: ScoringBundle, prepared: pd.DataFrame, units: list[str], steps: int = HISTORY
) -> pd.DataFrame:
    """Both models' predicted RUL (LSTM; forest, or its P(failure) for the horizon task) at
    each of the last ``steps`` cycles of ``units``."""
    sub = prepared[prepared[UNIT].astype(str).isin(units)].reset_index(drop=True)
    if sub.empty:
        return pd.DataFrame(columns=["unit", "time", "lstm", "forest"])
    win = bundle.cfg.window
    ds = WindowDataset(sub, bundle.features, win.length, pad=win.pad, min_history=1)
    keep = np.flatnonzero(
        ds.end_row >= (ds.unit_end[ds.window_unit_index] - steps)
    )  # the last `steps` windows of each unit
    x = ds.batch(keep)[0]
    lstm = _lstm_rul_array(bundle, x)
    forest = np.asarray(bundle.forest.predict(x), dtype=np.float64)
    return pd.DataFrame(
        {
            "unit": [str(u) for u in ds.window_units[keep]],
            "time": ds.window_times[keep],
            "lstm": lstm,
            "forest": forest,
        }
    )


def _lstm_rul_array(bundle: ScoringBundle, x: np.ndarray) -> np.ndarray:
    est = bundle.lstm
    if not est.classifies:
        return np.asarray(est.predict(x), dtype=np.float64)
    return np.asarray(est._outputs(x, raw=True), dtype=np.float64) * float(est._scale())


def _unit_figure(
    row: pd.Series, hist: pd.DataFrame, raw: pd.DataFrame, task: Task, horizon: int
) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdmlens.report.html import figure_to_data_uri

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 2.4))
    a.plot(hist["time"], hist["lstm"], label="LSTM", color="#2c3e50")
    if not task.classifies:  # the horizon forest gives no RUL
        a.plot(hist["time"], hist["forest"], label="forest", color="#16a085")
    a.axhline(horizon, color=COLOURS["act"], lw=0.8, ls="--", label=f"h = {horizon}")
    a.axhline(2 * horizon, color=COLOURS["watch"], lw=0.8, ls=":")
    a.set_title("predicted RUL, recent cycles", fontsize=9)
    a.set_xlabel("time", fontsize=8)
    a.legend(fontsize=7, loc="best")
    recent = raw.tail(HISTORY)
    for i in range(1, TOP_K + 1):
        s = row.get(f"top{i}_sensor")
        if isinstance(s, str) and s and s in recent:
            v = recent[s].to_numpy(dtype=np.float64)
            z = (v - v.mean()) / (v.std() or 1.0)
            b.plot(recent[TIME], z, label=f"{s} ({row[f'top{i}_shap']:+.1f} cycles)")
    b.set_title("driving sensors, recent readings (centred, scaled)", fontsize=9)
    b.set_xlabel("time", fontsize=8)
    if b.lines:
        b.legend(fontsize=7, loc="best")
    for ax in (a, b):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return uri


def build_board(
    scores: ScoreTable,
    bundle: ScoringBundle,
    title: str = "pdmlens fleet board",
    subtitle: str = "",
    max_units: int = 30,
) -> str:
    """The board's HTML (see the module docstring)."""
    t = scores.table
    task = bundle.task
    horizon = int(bundle.info["horizon"])
    counts = scores.counts()
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(subtitle)}</p>",
        "<p>"
        + " · ".join(
            [
                f"{counts['units_scored']} machines",
                *(f"{_level(lv)} {counts[f'alerts_{lv}']}" for lv in ("act", "watch", "ok")),
                f"<span class='novel'>novel {counts['units_novel']}</span> "
                f"(new baseline {counts['units_new_baseline']}, "
                f"new fault {counts['units_new_fault']})",
                f"short history {counts['units_short_history']}",
            ]
        )
        + "</p>",
        f"<div class='rule'><b>Alert rule</b> (h = {horizon} cycles): "
        f"{html.escape(scores.rule)}<br><b>Novelty kinds</b>: {html.escape(scores.kind_rule)}"
        "<br><b>Why</b>: SHAP values in cycles of predicted RUL against healthy training "
        "machines (negative = the sensor shortens the predicted life).</div>",
    ]
    cols = ["unit", "alert", "rul_lstm", "rul_forest"]
    cols += list(task.probability_columns)
    cols += ["top1_sensor", "top1_shap", "forest_agrees", "novelty_kind", "health_stage"]
    cols += ["history", "alert_reason"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for _, r in t.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "alert":
                cells.append(f"<td>{_level(str(v))}</td>")
            elif isinstance(v, float):
                cells.append(f"<td>{'' if np.isnan(v) else f'{v:.2f}'}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f"<h2>All machines</h2><table><tr>{head}</tr>{''.join(rows)}</table>")

    top = t.head(max_units)
    units = [str(u) for u in top["unit"]]
    if scores.prepared is not None and scores.raw is not None and units:
        hist = recent_predictions(bundle, scores.prepared, units)
        raw = scores.raw
        raw_units = raw[UNIT].astype(str)
        parts.append(f"<h2>The {len(units)} most urgent machines</h2>")
        for _, r in top.iterrows():
            u = str(r["unit"])
            novel = (
                f"<span class='novel'>novel: {html.escape(str(r['novelty_kind']))}</span>"
                if r["novel"]
                else "familiar"
            )
            why = ", ".join(
                f"{r[f'top{i}_sensor']} {r[f'top{i}_shap']:+.1f}"
                for i in range(1, TOP_K + 1)
                if isinstance(r[f"top{i}_sensor"], str) and r[f"top{i}_sensor"]
            )
            short = " · <b>short history</b> (window padded)" if r["short_history"] else ""
            img = _unit_figure(
                r, hist[hist["unit"] == u], raw[(raw_units == u).to_numpy()], task, horizon
            )
            parts.append(
                f"<div class='card'><b>{html.escape(u)}</b> {_level(str(r['alert']))} "
                f"RUL LSTM {r['rul_lstm']:.0f}"
                + ("" if task.classifies else f", forest {r['rul_forest']:.0f}")
                + f" · {novel} · stage {html.escape(str(r['health_stage']))}{short}"
                f"<br><small>{html.escape(str(r['alert_reason']))}</small>"
                f"<br>drivers: {html.escape(why) or 'not explained'}"
                f" · forest's top sensors: {html.escape(str(r['forest_top_sensors']))}"
                f"<br><img alt='history of {html.escape(u)}' src='{img}'></div>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def terminal_table(scores: ScoreTable, task: Task, limit: int = 40) -> str:
    """A fixed-width text table of the most urgent ``limit`` units."""
    t = scores.table.head(limit)
    head = f"{'unit':18s}{'alert':>7s}{'RUL lstm':>10s}{'RUL forest':>12s}"
    if task.probability_columns:
        head += f"{'P lstm':>8s}{'P forest':>10s}"
    head += f"  {'top sensor (SHAP)':28s}{'novelty':14s}stage"
    lines = [head, "-" * len(head)]
    for _, r in t.iterrows():
        s = f"{str(r['unit'])[:17]:18s}{r['alert']:>7s}{r['rul_lstm']:>10.1f}"
        s += f"{r['rul_forest']:>12.1f}"
        if task.probability_columns:
            s += f"{r['p_fail_lstm']:>8.2f}{r['p_fail_forest']:>10.2f}"
        top = (
            f"{r['top1_sensor']} ({r['top1_shap']:+.1f})"
            if isinstance(r["top1_sensor"], str) and r["top1_sensor"]
            else "-"
        )
        flag = str(r["novelty_kind"]) + ("*" if r["short_history"] else "")
        s += f"  {top:28s}{flag:14s}{r['health_stage']}"
        lines.append(s)
    c = scores.counts()
    lines.append(
        f"{c['units_scored']} units: act {c['alerts_act']}, watch {c['alerts_watch']}, "
        f"ok {c['alerts_ok']}; novel {c['units_novel']}; * = history shorter than a window"
    )
    return "\n".join(lines)


def table_records(scores: ScoreTable) -> list[dict[str, Any]]:
    """The table as JSON-ready records (NaN -> None)."""
    t = scores.table.astype(object).where(scores.table.notna(), None)
    return [
        {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
        for r in t.to_dict(orient="records")
    ]
