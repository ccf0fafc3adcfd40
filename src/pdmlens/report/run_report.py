"""The story of one pipeline run: the HTML report and the headline summary.

Built from the steps' results (:class:`pdmlens.results.StepResult`), so it needs nothing but
the files the steps wrote. The summary is what ``pdmlens run`` prints (and ``--json``
returns), what the Prefect markdown artifact shows and what the report's header cards say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.report.html import EXPLAIN, Section, render_report
from pdmlens.results import MODELS, StepResult, model_scores
from pdmlens.task import Task, task_scored_by


def summary(outputs: dict[str, StepResult]) -> dict[str, Any]:
    """Headline numbers of a run: data, both models' test metrics side by side,
    explanation and signature headlines, and the time each step took."""
    ing, prep = outputs["ingest"].info, outputs["prepare"].info
    ev = outputs["evaluate"]
    out: dict[str, Any] = {
        "dataset": ing["dataset"],
        "dataset_hash": ing["hash"],
        "data": {
            "train_units": prep["train_units"],
            "val_units": prep["val_units"],
            "test_units": prep["test_units"],
            "features": len(prep["features"]),
            "dropped_sensors": prep["dropped_sensors"],
        },
        "evaluated_on": ev.info["split"],
    }
    all_keys = {"all_f1", "all_roc_auc", "all_pr_auc"}  # horizon task: every test window
    for model in MODELS:
        out[model.name] = {
            k: v
            for k, v in model_scores(ev.metrics, model.name).items()
            if not k.startswith("all_") or k in all_keys
        }
    out["lstm"]["train_seconds"] = outputs["train_lstm"].metrics.get("train_seconds")
    if "decision" in outputs["train_lstm"].info:  # horizon task: how an alarm is raised
        out["lstm"]["decision"] = outputs["train_lstm"].info["decision"]
    out["forest"]["train_seconds"] = outputs["train_forest"].metrics.get("train_seconds")
    if "explain" in outputs:
        ex = outputs["explain"]
        out["explain"] = {
            "top_sensors_lstm": ex.info.get("top_sensors_lstm"),
            "top_sensors_forest": ex.info.get("top_sensors_forest"),
            "agreement_spearman": ex.metrics.get("agreement_spearman"),
            "agreement_top_k_overlap": ex.metrics.get("agreement_top_k_overlap"),
            "gate_max_abs_error": ex.metrics.get("gate_max_abs_error"),
            **{
                k: v
                for k, v in ex.metrics.items()
                if "precision_at_k" in k or "deletion_ratio" in k
            },
        }
    if "signatures" in outputs:
        sg = outputs["signatures"]
        out["signatures"] = {
            "first_separating_layer": sg.info["first_separating_layer"],
            "sentence": sg.info["sentence"],
            "clusters": sg.info["clusters"],
        }
    if "at_risk" in outputs:
        ar = outputs["at_risk"].info
        out["at_risk"] = {
            k: ar[k] for k in ("n_machines", "alerts", "most_urgent", "n_late") if k in ar
        }
        if ar.get("late_cycles") is not None:
            out["at_risk"]["late_cycles"] = ar["late_cycles"]
            out["at_risk"]["worst_late"] = ar.get("worst_late", [])
    out["seconds"] = {name: round(o.seconds, 2) for name, o in outputs.items()}
    return out


_RISK_COLUMNS = {
    "machine": "machine",
    "cycle": "latest cycle",
    "alert": "alert",
    "lstm_rul": "LSTM RUL (cycles)",
    "forest_rul": "forest RUL (cycles)",
    "disagreement": "disagreement (cycles)",
    "true_rul": "true RUL, capped (cycles)",
    "novelty": "novelty",
    "top_sensors": "top sensors (LSTM)",
    "forest_top_sensors": "top sensors (forest)",
    "reason": "why",
    "lstm_late_by": "LSTM late by (cycles)",
    "forest_late_by": "forest late by (cycles)",
    "worst_late_by": "worst (cycles)",
}


def _cycle(value: Any) -> str:
    """A machine's latest time in the at-risk table: a cycle count without decimals, a
    timestamp as written, "–" when unknown."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{value:.0f}"
    return str(value)


def _readable(df: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A table for people: readable column names, numbers with ``digits`` decimals."""
    out = df.copy()
    for col in out.columns:
        if col == "cycle":  # a count of cycles, or a timestamp (events and tables)
            out[col] = out[col].map(_cycle)
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: f"{v:.{digits}f}" if pd.notna(v) else "–")
    return out.rename(columns=_RISK_COLUMNS)


def _count(machines: list[str]) -> str:
    return f"{len(machines)} machine{'s' if len(machines) != 1 else ''}"


def _names(machines: list[str], limit: int = 5) -> str:
    more = len(machines) - limit
    return ", ".join(machines[:limit]) + (f" and {more} more" if more > 0 else "")


def risk_sections(out: StepResult) -> list[Section]:
    """The report's first sections: the machines at risk and the biggest late predictions,
    named in words and tabled (the run's CSV artifacts)."""
    from pdmlens.report.risk import URGENCY
    from pdmlens.results import AT_RISK_FILE, LATE_FILE

    risk = pd.read_csv(
        out.tables[AT_RISK_FILE], dtype={"machine": str}, keep_default_na=False, na_values=[""]
    )
    for col in ("novelty", "top_sensors", "forest_top_sensors", "reason"):
        if col in risk:
            risk[col] = risk[col].astype(object).fillna("")  # an empty column reads as NaN
    alerts = out.info.get("alerts", {})
    act = risk.loc[risk["alert"] == "act", "machine"].tolist()
    watch = risk.loc[risk["alert"] == "watch", "machine"].tolist()
    lines = []
    for _, row in risk.head(3).iterrows():
        pred = " and ".join(
            f"{lab} {float(row[col]):.0f}"
            for col, lab in (("lstm_rul", "LSTM"), ("forest_rul", "forest"))
            if col in risk and pd.notna(row[col])
        )
        extra = f", truly {float(row['true_rul']):.0f}" if "true_rul" in risk else ""
        sensors = f"; top sensors {row['top_sensors']}" if row["top_sensors"] else ""
        lines.append(
            f"- machine {row['machine']}: {row['alert']}, predicted to fail in {pred} cycles{extra}"
            f"{sensors} ({row['reason'] or 'no alert'})"
        )
    text = (
        f"{len(risk)} machines were evaluated at their latest cycle. "
        + (f"Act now on {_count(act)}: {_names(act)}. " if act else "None needs action now. ")
        + (f"Watch {_count(watch)}: {_names(watch)}. " if watch else "")
        + "The most urgent:\n"
        + "\n".join(lines)
        + "\n\nThe table lists every machine, "
        + URGENCY
        + ". 'Alert' follows the scoring rule (act: either model predicts failure within "
        "the horizon; watch: within twice the horizon, the two models disagree by more "
        "than the horizon, or the machine looks novel); 'novelty' says whether the model "
        "has seen data like this machine's ('new fault', 'new baseline' or 'familiar'); "
        "the top sensors are those whose readings moved the LSTM's prediction most (SHAP). "
        f"The full table is the run's artifact {AT_RISK_FILE}."
    )
    cards = {
        "machines to act on": alerts.get("act", len(act)),
        "machines to watch": alerts.get("watch", len(watch)),
    }
    sections = [
        Section(
            "Machines at risk",
            text=text,
            tables=[("Every evaluated machine, most urgent first", _readable(risk))],
            metrics=cards,
        )
    ]
    if LATE_FILE in out.tables:
        late = pd.read_csv(out.tables[LATE_FILE], dtype={"machine": str})
        cut = out.info.get("late_cycles", 20)
        named = [
            f"machine {r.machine} (true {r.true_rul:.0f}, LSTM {r.lstm_rul:.0f}, "
            f"forest {r.forest_rul:.0f})"
            for r in late.head(5).itertuples()
        ]
        said = (
            f"{len(late)} of {len(risk)} machines were predicted more than {cut:g} cycles "
            "late by at least one model (predicted minus the true remaining life, capped as "
            "the models learn it), the costly mistake: the machine fails before the "
            "prediction says. Worst first: " + "; ".join(named) + "."
            if len(late)
            else f"No machine was predicted more than {cut:g} cycles late by either model."
        )
        sections.append(
            Section(
                "Biggest late predictions",
                text=said + f" The full list is the run's artifact {LATE_FILE}.",
                tables=[(f"Late by more than {cut:g} cycles, worst first", _readable(late))]
                if len(late)
                else [],
                metrics={f"late by > {cut:g} cycles": len(late)},
            )
        )
    return sections


COUNTING = (
    "How things are counted in this report, as in MLflow: epochs from 0 (MLflow's metric "
    "step and its best_epoch metric); layer 0 is the raw input window and the LSTM's "
    "layers are 1, 2, ... (MLflow's metric names LSTM_layer_1_..., input_...); remaining "
    "life (RUL) in cycles."
)


def _png(path: str) -> bytes:
    return Path(path).read_bytes()


def _figs(out: StepResult, *names: str) -> list[tuple[str, bytes]]:
    figs = []
    for name in names:
        for key, path in out.figures.items():
            if Path(key).stem == name and Path(path).is_file():
                figs.append(("", _png(path)))
    return figs


def _sep_table(sg: StepResult) -> pd.DataFrame | None:
    """The per-layer separation numbers the verdict rests on, if the step wrote them."""
    path = sg.tables.get("signatures/layer_separation.parquet")
    if not path or not Path(path).is_file():
        return None
    t = pd.read_parquet(path)
    keep = [
        c
        for c in ("layer", "k", "purity", "nmi", "probe_accuracy", "majority_baseline")
        if c in t.columns
    ]
    return t[keep]


def _by_value(imp: pd.DataFrame) -> pd.DataFrame:
    """The importance table sorted by the first model's importance, largest first."""
    if imp.empty:
        return imp
    value = next((c for c in imp.columns if c.lower().startswith("lstm") and "rank" not in c), None)
    if value is None:
        return imp
    return imp.sort_values(value, ascending=False, kind="stable").reset_index(drop=True)


def _training_text(tl: StepResult) -> str:
    """The kept epoch and, when the run refits, what the refit phase is."""
    run = int(tl.metrics.get("epochs_run", len(tl.info.get("history", []))))
    best = tl.metrics.get("best_epoch")
    said = f"Training ran {run} epochs (0 to {run - 1})"
    said += (
        f"; the weights of epoch {int(best)} were kept (lowest checking error)."
        if (best is not None)
        else "."
    )
    if tl.info.get("refit") and best is not None:
        said += (
            f" Then, the refit phase: a fresh model was trained on the training and the "
            f"held-back machines together for the same {int(best) + 1} epochs (0 to "
            f"{int(best)}), so it learns from more machines; no machine is left to check it "
            "on, so the chart shows the first phase only (MLflow logs the refit's losses as "
            "refit_train_loss)."
        )
    return said


def _gate_figs(ex: StepResult) -> list[tuple[str, bytes]]:
    """The gate figures, layer by layer: near failure then healthy for each layer."""
    layers = sorted(
        {
            int(m.group(1))
            for key in ex.figures
            if (m := re.match(r"gates_(?:near_failure|healthy)_layer(\d+)$", Path(key).stem))
        }
    )
    out = []
    for li in layers:
        out += _figs(ex, f"gates_near_failure_layer{li}", f"gates_healthy_layer{li}")
    return out


def verdict(key: str, lstm: float | None, forest: float | None) -> str | None:
    """Which model is more accurate on the headline metric ``key`` (the task it heads
    decides the direction): see :meth:`pdmlens.task.Task.verdict`."""
    return task_scored_by([key]).verdict(lstm, forest)


def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def build_report(
    outputs: dict[str, StepResult], title: str, subtitle: str = "", footer: str = ""
) -> str:
    """The self-contained HTML page telling the whole run to a non-programmer."""
    s = summary(outputs)
    ev = outputs["evaluate"]
    key = ev.info["key"]
    task: Task = task_scored_by([key])
    lstm_v, forest_v = s["lstm"].get(key), s["forest"].get(key)
    unit = task.headline_unit
    label = task.headline_label
    better = task.verdict(lstm_v, forest_v)
    d = s["data"]
    sections = risk_sections(outputs["at_risk"]) if "at_risk" in outputs else []
    sections += [
        Section(
            "The data",
            text=(
                f"Dataset {s['dataset']}: {d['train_units']} machines to learn from, "
                f"{d['val_units']} held back to check training, "
                + (
                    f"{d['test_units']} to test on. "
                    if d["test_units"]
                    else "no separate test machines (the held-back ones are scored instead). "
                )
                + f"{d['features']} sensor channels feed the models"
                + (
                    f"; sensors that never change were left out: {', '.join(d['dropped_sensors'])}."
                    if d["dropped_sensors"]
                    else "."
                )
                + "\n\n"
                + COUNTING
            ),
            metrics={
                "machines (train)": d["train_units"],
                "machines (test)": d["test_units"],
                "sensor channels": d["features"],
            },
        )
    ]
    model_table = pd.DataFrame({m: s[m] for m in ("lstm", "forest")}).T
    keep = [
        c
        for c in (
            "rmse",
            "mae",
            "score",
            "bias",
            "late_20",
            "rmse_uncapped",
            "f1",
            "precision",
            "recall",
            "roc_auc",
            "pr_auc",
            "all_f1",
            "all_roc_auc",
            "all_pr_auc",
            "train_seconds",
        )
        if c in model_table
    ]
    figures = (
        f"({label} {_fmt(lstm_v)} for the LSTM, {_fmt(forest_v)} for the random "
        f"forest{', in ' + unit if unit else ''})"
    )
    said = (
        ""
        if better is None
        else f"On these test machines the two models are equally accurate {figures}."
        if better == "neither"
        else f"On these test machines the {better} is the more accurate model {figures}."
    )
    if s["lstm"].get("decision"):
        said += f" The LSTM's alarm rule: {s['lstm']['decision']}."
    sections.append(
        Section(
            "How accurate are the models?",
            text=said + "\n\n" + EXPLAIN["predictions"],
            figures=_figs(ev, "predicted_vs_true")
            + (_figs(outputs["at_risk"], "rul_trajectories") if "at_risk" in outputs else []),
            tables=[("Test metrics, last cycle of each test machine", model_table[keep])],
            metrics={
                f"LSTM {label}": _fmt(lstm_v, 1 if unit == "cycles" else 3),
                f"forest {label}": _fmt(forest_v, 1 if unit == "cycles" else 3),
            },
        )
    )
    sections.append(
        Section(
            "How the LSTM learned",
            text=EXPLAIN["training"] + "\n\n" + _training_text(outputs["train_lstm"]),
            figures=_figs(outputs["train_lstm"], "learning_curves"),
        )
    )
    if "explain" in outputs:
        ex = outputs["explain"]
        imp = _by_value(pd.DataFrame(ex.info.get("importance", [])))
        top_l = ", ".join(ex.info.get("top_sensors_lstm") or [])
        top_f = ", ".join(ex.info.get("top_sensors_forest") or [])
        sections.append(
            Section(
                "Which sensors drive the predictions?",
                text=(
                    f"Most important for the LSTM: {top_l}. For the random forest: {top_f}."
                    "\n\n"
                    + EXPLAIN["sensor_importance"]
                    + "\n\nIn the dot charts each dot is one moment of one machine; its colour is "
                    "the sensor's reading (red high, blue low) and its position how far that "
                    "reading pushed the predicted remaining life up (right) or down (left)."
                ),
                figures=_figs(ex, "shap_summary_lstm", "shap_summary_forest", "shap_time_heatmap"),
            )
        )
        gt = pd.DataFrame(ex.info.get("groundtruth", []))
        gt_text = ""
        if len(gt):
            gt_text = (
                "\n\nThis data comes with the truth: which sensors each fault really "
                "drives. 'precision' is the share of each model's top-ranked sensors that "
                "are truly affected (1.0 = all of them), on windows near failure (where "
                "the fault has fully shown itself) and on every explained window."
            )
        sections.append(
            Section(
                "Do the two models agree, and are the explanations honest?",
                text=EXPLAIN["agreement"] + "\n\n" + EXPLAIN["faithfulness"] + gt_text,
                figures=_figs(ex, "agreement", "deletion"),
                tables=[
                    t
                    for t in (
                        (
                            "Sensor importance (mean |SHAP|, cycles) and rank, most important "
                            "to the LSTM first",
                            imp,
                        ),
                        ("Precision of the top sensors against the true fault sensors", gt),
                    )
                    if len(t[1])
                ],
                metrics={
                    "rank agreement": _fmt(ex.metrics.get("agreement_spearman"), 2),
                    "top-k overlap": _fmt(ex.metrics.get("agreement_top_k_overlap"), 2),
                },
            )
        )
        sat = pd.DataFrame(ex.info.get("saturation", []))
        sections.append(
            Section(
                "Inside the LSTM: gates",
                text=EXPLAIN["gates"]
                + "\n\nOne picture per LSTM layer and window: the window nearest to failure, "
                "then the healthiest, for each layer. The units (rows) are in the same order "
                "in every picture: those whose output rises most between the healthy window "
                "and the failing one on top (the alarm bells), those that quiet down at the "
                "bottom; the numbers on the left are the units' own numbers. Click a picture "
                "to see it full size."
                + (
                    f"\n\nThe gate values were recomputed from the network's weights and match "
                    f"the network's own output to {ex.metrics.get('gate_max_abs_error', 0):.1e}."
                ),
                figures=_gate_figs(ex) + _figs(ex, "gate_saturation"),
                tables=[("Saturation per layer and gate", sat)] if len(sat) else [],
            )
        )
    if "signatures" in outputs:
        sg = outputs["signatures"]
        sections.append(
            Section(
                "Activation signatures: which layer tells health stages apart?",
                text=(
                    "Verdict: "
                    + sg.info["sentence"]
                    + "\n\n"
                    + EXPLAIN["signatures"]
                    + "\n\n"
                    + "\n".join(f"- {c}" for c in sg.info.get("clusters", []))
                ),
                figures=_figs(sg, "layer_separation", "signature_projection", "unit_selectivity"),
                tables=[("Separation of health stages per layer", _sep_table(sg))]
                if _sep_table(sg) is not None
                else [],
            )
        )
        sections.append(
            Section(
                "Novelty: does the model see unfamiliar data?",
                text=EXPLAIN["novelty"]
                + " Here the validation machines set the threshold and the evaluated "
                "machines are scored against it; they share the training machines' fault "
                "modes, so few of their windows should be flagged.\n\n"
                + "\n".join(f"- {line}" for line in sg.info.get("novelty_verdict", [])),
                figures=_figs(sg, "novelty"),
            )
        )
    secs = pd.DataFrame({"step": list(s["seconds"]), "seconds": list(s["seconds"].values())})
    sections.append(Section("Run details", text="Time each step took.", tables=[secs]))
    digits = 1 if unit == "cycles" else 3
    headline: dict[str, Any] = {
        f"LSTM {label}{' (' + unit + ')' if unit else ''}": _fmt(lstm_v, digits),
        f"forest {label}{' (' + unit + ')' if unit else ''}": _fmt(forest_v, digits),
    }
    if "at_risk" in outputs:
        headline["machines to act on"] = outputs["at_risk"].info.get("alerts", {}).get("act")
        ar = outputs["at_risk"].info
        if "n_late" in ar:
            headline[f"predicted > {ar.get('late_cycles', 20):g} cycles late"] = ar["n_late"]
    if "explain" in outputs:
        headline["models agree (rank corr.)"] = _fmt(
            outputs["explain"].metrics.get("agreement_spearman"), 2
        )
    if "signatures" in outputs:
        headline["first layer beating the raw input"] = outputs["signatures"].info[
            "first_separating_layer"
        ]
    return render_report(sections, title=title, subtitle=subtitle, headline=headline, footer=footer)


def markdown(s: dict[str, Any], mlflow_url: str | None = None) -> str:
    """The run's headline as Markdown (the Prefect artifact). The MLflow link comes with
    how to open it: a tracking server serves it; a local store (``tracking_uri`` in the
    summary, a file or sqlite URI) only while ``pdmlens ui`` runs over that store."""
    lines = [f"# pdmlens run on {s['dataset']}", ""]
    if mlflow_url:
        lines += [f"MLflow run: [{mlflow_url}]({mlflow_url})", ""]
        uri = str(s.get("tracking_uri") or "")
        if uri and not uri.startswith(("http://", "https://")):
            lines += [
                "The link opens while the MLflow UI runs; start it with "
                f"`pdmlens ui --set tracking.uri={uri}` (the run's store).",
                "",
            ]
    keys = [
        k
        for k in ("rmse", "mae", "score", "f1", "all_f1", "all_pr_auc", "train_seconds")
        if k in s["lstm"]
    ]
    lines += ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for m in ("lstm", "forest"):
        lines.append(f"| {m} | " + " | ".join(_fmt(s[m].get(k)) for k in keys) + " |")
    if s["lstm"].get("decision"):
        lines += ["", f"LSTM alarm rule: {s['lstm']['decision']}"]
    if "explain" in s:
        e = s["explain"]
        lines += [
            "",
            f"Top sensors (LSTM): {', '.join(e.get('top_sensors_lstm') or [])}",
            f"Top sensors (forest): {', '.join(e.get('top_sensors_forest') or [])}",
            f"Agreement (Spearman): {_fmt(e.get('agreement_spearman'))}",
        ]
    if "at_risk" in s:
        ar = s["at_risk"]
        alerts = ar.get("alerts", {})
        lines += [
            "",
            f"Machines at risk: act {alerts.get('act', 0)}, watch {alerts.get('watch', 0)}; "
            f"most urgent: {', '.join(ar.get('most_urgent', []))}",
        ]
        if "n_late" in ar:
            lines.append(
                f"Predicted more than {ar.get('late_cycles', 20):g} cycles late: {ar['n_late']}"
                + (f" (worst: {', '.join(ar['worst_late'])})" if ar.get("worst_late") else "")
            )
    if "signatures" in s:
        lines += ["", s["signatures"]["sentence"]]
    return "\n".join(lines) + "\n"


def run_name(s: dict[str, Any], started: str) -> str:
    """A readable MLflow run name: dataset, when, and both models' headline numbers, e.g.
    ``cmapss-FD001 12-06 22:48 · RMSE LSTM 25.0 / forest 27.3``."""
    task = task_scored_by(s["lstm"].keys())
    digits = 1 if task.headline_unit == "cycles" else 3
    head = task.headline
    return (
        f"{s['dataset']} {started} · {task.headline_label} LSTM "
        f"{_fmt(s['lstm'].get(head), digits)} / forest {_fmt(s['forest'].get(head), digits)}"
    )


def description(outputs: dict[str, StepResult], s: dict[str, Any] | None = None) -> str:
    """The run's description (MLflow's ``mlflow.note.content``, Markdown): the headline
    numbers of both models, the machines at risk and the worst late predictions by name,
    the signatures verdict, and where the report and the tables are."""
    from pdmlens.results import AT_RISK_FILE, LATE_FILE, REPORT_FILE

    s = s or summary(outputs)
    task = task_scored_by(s["lstm"].keys())
    d = s["data"]
    lines = [
        f"**pdmlens run on {s['dataset']}**: {d['train_units']} training machines, "
        f"{d['test_units'] or d['val_units']} evaluated ({s['evaluated_on']} split).",
        "",
    ]
    keys = [k for k in ("rmse", "mae", "score", "bias", "pr_auc", "all_pr_auc") if k in s["lstm"]]
    lines += ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for m, label in (("lstm", "LSTM"), ("forest", "random forest")):
        digits = 1 if task.headline_unit == "cycles" else 3
        lines.append(f"| {label} | " + " | ".join(_fmt(s[m].get(k), digits) for k in keys) + " |")
    better = task.verdict(s["lstm"].get(task.headline), s["forest"].get(task.headline))
    if better:
        lines += ["", f"More accurate on {task.headline_label}: {better}."]
    ar = outputs.get("at_risk")
    if ar is not None and AT_RISK_FILE in ar.tables:
        risk = pd.read_csv(ar.tables[AT_RISK_FILE], dtype={"machine": str})
        urgent = risk[risk["alert"] != "ok"].head(8)
        alerts = ar.info.get("alerts", {})
        lines += [
            "",
            f"**Machines at risk** (act {alerts.get('act', 0)}, watch "
            f"{alerts.get('watch', 0)}, ok {alerts.get('ok', 0)}):",
        ]
        if urgent.empty:
            lines.append("none: every machine is ok.")
        for _, r in urgent.iterrows():
            pred = ", ".join(
                f"{lab} {float(r[c]):.0f}"
                for c, lab in (("lstm_rul", "LSTM"), ("forest_rul", "forest"))
                if c in risk and pd.notna(r[c])
            )
            lines.append(
                f"- machine {r['machine']}: {r['alert']}, predicted RUL {pred} ({r['reason']})"
            )
        if LATE_FILE in ar.tables:
            late = pd.read_csv(ar.tables[LATE_FILE], dtype={"machine": str})
            cut = ar.info.get("late_cycles", 20)
            worst = ", ".join(
                f"machine {r['machine']} (true {float(r['true_rul']):.0f}, late by "
                f"{float(r['worst_late_by']):.0f})"
                for _, r in late.head(5).iterrows()
            )
            lines += [
                "",
                f"**Predicted more than {cut:g} cycles late**: {len(late)} of {len(risk)}"
                + (f"; worst: {worst}." if len(late) else "."),
            ]
    if "signatures" in s:
        lines += ["", f"Signatures: {s['signatures']['sentence']}"]
    files = [REPORT_FILE]
    if ar is not None:
        files += sorted(ar.tables)
    lines += ["", "Artifacts: " + ", ".join(files) + "."]
    return "\n".join(lines) + "\n"
