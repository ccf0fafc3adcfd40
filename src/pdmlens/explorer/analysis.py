"""The numbers behind the explorer's views, as plain DataFrames and arrays.

Pure functions of their inputs where they can be (``fleet_table``, ``recluster``,
``separation_verdict``, ``units_firing_only_on``); the rest take a :class:`RunData` and
compute on demand what a run does not record, caching per run: SHAP of any window, the
LSTM's gates of any window, activation signatures of a sample of windows, novelty scores.
Layers are counted from 1 (LSTM layer 1 is the first); layer 0 is the raw input window.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.explorer.rundata import RunData

ALERTS = ("act", "watch", "ok")
"""the alert levels of ``pdmlens score`` and the report (pdmlens.scoring.score.LEVELS)"""
GATES = ("i", "f", "g", "o", "c", "h")
GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "g": "cell candidate",
    "o": "output gate",
    "c": "cell state",
    "h": "hidden state",
}
SAMPLE = 400
"""signature windows per split in the Signatures view (the default sample)."""


# ----------------------------------------------------------------------------- fleet


def alert_level(predicted_rul: np.ndarray, horizon: float) -> np.ndarray:
    """The scorer's rule on the lower predicted RUL: ``act`` at or below the horizon,
    ``watch`` at or below twice it, else ``ok`` (the page's fleet view has no novelty or
    disagreement yet when it first shows; ``pdmlens score`` adds them)."""
    p = np.asarray(predicted_rul, dtype=np.float64)
    return np.where(p <= horizon, "act", np.where(p <= 2 * horizon, "watch", "ok"))


def fleet_table(preds: pd.DataFrame, horizon: float, cap: float) -> pd.DataFrame:
    """One row per machine at its latest cycle: both models' predicted RUL, the true RUL
    (capped, when known), disagreement, the alert level (on the lower prediction), sorted
    by urgency (lowest predicted RUL first)."""
    last = preds.sort_values(["unit", "time"]).groupby("unit", sort=False).tail(1)
    out = pd.DataFrame(
        {
            "machine": last["unit"].astype(str).to_numpy(),
            "cycle": last["time"].to_numpy(),
            "lstm_rul": last["lstm"].to_numpy(dtype=np.float64).round(1),
            "forest_rul": last["forest"].to_numpy(dtype=np.float64).round(1),
        }
    )
    if "true" in last.columns:
        out["true_rul"] = np.minimum(last["true"].to_numpy(dtype=np.float64), cap).round(1)
    out["disagreement"] = (out["lstm_rul"] - out["forest_rul"]).abs().round(1)
    low = np.minimum(out["lstm_rul"].to_numpy(), out["forest_rul"].to_numpy())
    out["alert"] = alert_level(low, horizon)
    return out.iloc[np.argsort(low, kind="stable")].reset_index(drop=True)


SCORED_PREDICTIONS = (
    ("rul_lstm", "lstm_rul", 1),
    ("rul_forest", "forest_rul", 1),
    ("p_fail_lstm", "lstm_p_fail", 3),
    ("p_fail_forest", "forest_p_fail", 3),
)
"""score-table column -> the fleet view's column, and its decimals"""


def scored_fleet_table(scores: pd.DataFrame) -> pd.DataFrame:
    """The fleet view of a score table (``pdmlens score``): one row per machine at its
    latest cycle, in the scorer's order (alert level, then urgency): both models'
    predictions (RUL in cycles; P(failure) for the horizon task), their disagreement,
    the alert and its reason, the novelty kind, the health stage, the LSTM's top sensors
    and the rows of history."""
    out = pd.DataFrame(
        {"machine": scores["unit"].astype(str).to_numpy(), "cycle": scores["time"].to_numpy()}
    )
    for src, dst, decimals in SCORED_PREDICTIONS:
        if src in scores.columns and scores[src].notna().any():
            out[dst] = scores[src].to_numpy(dtype=np.float64).round(decimals)
    if "lstm_rul" in out.columns and "forest_rul" in out.columns:
        out["disagreement"] = (out["lstm_rul"] - out["forest_rul"]).abs().round(1)
    out["alert"] = scores["alert"].astype(str).to_numpy()
    out["why"] = scores["alert_reason"].astype(str).to_numpy()
    out["novelty"] = scores["novelty_kind"].astype(str).str.replace("_", " ").to_numpy()
    if "health_stage" in scores.columns:
        out["health_stage"] = scores["health_stage"].astype(str).to_numpy()
    tops = [c for c in (f"top{i}_sensor" for i in range(1, 10)) if c in scores.columns]
    out["top_sensors"] = [
        ", ".join(str(v) for v in row if isinstance(v, str) and v)
        for row in scores[tops].itertuples(index=False)
    ]
    out["history"] = scores["history"].to_numpy()
    return out


def scored_machine_story(scores: pd.DataFrame, machine: str) -> list[str]:
    """One scored machine in sentences: what both models predict, the alert and why, the
    sensors behind the LSTM's prediction (SHAP in cycles of predicted life, with the
    latest reading) and the forest's, and whether the model has seen anything like it
    (novelty percentile per layer)."""
    rows = scores[scores["unit"].astype(str) == str(machine)]
    if rows.empty:
        raise KeyError(f"machine {machine} is not in this score table")
    r = rows.iloc[0]
    preds = []
    for src, _, _ in SCORED_PREDICTIONS:
        if src in r.index and pd.notna(r[src]):
            model = "LSTM" if src.endswith("lstm") else "forest"
            value = (
                f"{r[src]:.0f} cycles left" if src.startswith("rul") else f"P(failure) {r[src]:.2f}"
            )
            preds.append(f"{model} {value}")
    lines = [
        f"{machine} at its latest cycle {int(r['time'])} ({int(r['history'])} rows of history"
        + (", fewer than a window: padded" if bool(r.get("short_history", False)) else "")
        + "): "
        + ", ".join(preds)
        + ".",
        f"Alert {r['alert']}: {r['alert_reason']}.",
    ]
    tops = []
    for i in range(1, 10):
        name = r.get(f"top{i}_sensor")
        if not isinstance(name, str) or not name:
            break
        shap, reading = r.get(f"top{i}_shap"), r.get(f"top{i}_reading")
        tops.append(f"{name} {shap:+.1f} (reading {reading:.4g})")
    if tops:
        lines.append(
            "Sensors behind the LSTM's prediction (SHAP, cycles of predicted life; below "
            "zero shortens it): " + "; ".join(tops) + "."
        )
        forest = r.get("forest_top_sensors")
        if isinstance(forest, str) and forest:
            agree = r.get("forest_agrees")
            lines.append(
                f"The forest's top sensors: {forest}"
                + (f" ({agree:.0%} of the LSTM's also there)." if pd.notna(agree) else ".")
            )
    else:
        lines.append("Not explained (scored with --explain alerts or none).")
    pct = [
        (c[len("novelty_pct_") :], float(r[c]), bool(r.get(f"novel_{c[len('novelty_pct_') :]}")))
        for c in scores.columns
        if c.startswith("novelty_pct_")
    ]
    if pct:
        lines.append(
            "Novelty of its latest window (percentile among validation windows): "
            + ", ".join(f"{n} {p:.0f}" + (" (novel)" if flag else "") for n, p, flag in pct)
            + f"; kind: {str(r['novelty_kind']).replace('_', ' ')}"
            + (f"; health stage {r['health_stage']}." if "health_stage" in r.index else ".")
        )
    return lines


def machine_history(preds: pd.DataFrame, unit: str, cap: float) -> pd.DataFrame:
    """Every evaluated cycle of one machine: true RUL (raw and capped) and both models."""
    rows = preds[preds["unit"].astype(str) == str(unit)].sort_values("time")
    out = rows[["time", "lstm", "forest"]].copy()
    if "true" in rows.columns:
        out["true"] = rows["true"].to_numpy(dtype=np.float64)
        out["true_capped"] = np.minimum(out["true"], cap)
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- windows


def window_index(windows: Any, unit: str, time: float) -> int:
    """The window of ``unit`` ending at ``time`` (the nearest earlier one if none ends
    there exactly)."""
    units = np.asarray(windows.window_units).astype(str)
    times = np.asarray(windows.window_times, dtype=np.float64)
    idx = np.flatnonzero(units == str(unit))
    if len(idx) == 0:
        raise KeyError(f"no window of machine {unit}")
    before = idx[times[idx] <= time]
    pick = before[np.argmax(times[before])] if len(before) else idx[np.argmin(times[idx])]
    return int(pick)


def window_x(run: RunData, unit: str, time: float) -> tuple[np.ndarray, np.ndarray]:
    """One window [1, T, F] of the evaluated split and the cycles of its T steps."""
    w = run.windows(run.eval_split)
    i = window_index(w, unit, time)
    x = w.batch([i])[0].copy()
    end = float(w.window_times[i])
    cycles = np.arange(end - w.length + 1, end + 1)
    return x, cycles


def shap_window(run: RunData, unit: str, time: float) -> pd.DataFrame:
    """The LSTM's SHAP values (expected gradients against the run's background) of one
    window: a frame cycle x sensor."""
    from pdmlens.explain.attributions import explain_lstm, select_background

    cfg = run.config

    def background() -> np.ndarray:
        return select_background(
            run.windows("train"),
            cfg.explain.background,
            kind=cfg.explain.background_kind,
            seed=cfg.seed,
            rul_cap=cfg.prepare.rul_cap,
        )

    bg = run.memo("background", background)
    x, cycles = window_x(run, unit, time)
    att = explain_lstm(
        run.lstm,
        x,
        bg,
        nsamples=cfg.explain.shap_samples,
        seed=cfg.seed,
        num_threads=1,
    )
    values = np.asarray(att.values)[0]
    return pd.DataFrame(values, index=cycles.astype(int), columns=list(run.prepared.features))


def top_sensors(attr: pd.DataFrame, n: int = 3) -> list[str]:
    """The sensors with the largest summed |SHAP| over a window (features named ``age``
    are not sensors and are left out)."""
    total = attr.abs().sum(axis=0)
    total = total.drop(labels=[c for c in total.index if c == "age"])
    return list(total.sort_values(ascending=False, kind="stable").index[:n])


def gates_window(run: RunData, unit: str, time: float) -> tuple[Any, np.ndarray]:
    """The LSTM's full gate trace of one window and the window's cycles."""
    from pdmlens.explain.gates import extract_gates

    x, cycles = window_x(run, unit, time)
    return extract_gates(run.lstm.network_.lstm, x, threads=1), cycles


def unit_order(selectivity: pd.DataFrame | None, layer: int, hidden: int) -> list[int]:
    """Hidden units of ``layer`` (1-based) most stage-selective first (best score over
    stages, as the signatures step recorded it); unrecorded units follow in index order."""
    order: list[int] = []
    if selectivity is not None and len(selectivity):
        sel = selectivity[selectivity["layer"] == layer]
        best = sel.groupby("unit")["score"].max().sort_values(ascending=False, kind="stable")
        order = [int(u) for u in best.index if 0 <= int(u) < hidden]
    return order + [u for u in range(hidden) if u not in set(order)]


def gate_difference(run: RunData, layer: int, gate: str, n: int = 200) -> np.ndarray:
    """Mean gate activation [T, H] over healthy windows minus over failing windows of the
    evaluated split (healthy: RUL in the top stage; failing: the lowest stage)."""
    from pdmlens.explain.gates import extract_gates
    from pdmlens.signatures.cluster import stage_of

    def compute() -> dict[tuple[int, str], np.ndarray]:
        cfg = run.config
        w = run.windows(run.eval_split)
        bins = list(cfg.signatures.stage_bins)
        stages = stage_of(w.window_targets, bins)
        names = pd.unique(pd.Series(stages))
        healthy_name = [s for s in names if str(s).startswith("healthy")] or [names[-1]]
        failing_name = [s for s in names if str(s).startswith("critical")] or [names[0]]
        rng = np.random.default_rng(cfg.seed)
        out: dict[tuple[int, str], np.ndarray] = {}
        groups = {}
        for label, name in (("healthy", healthy_name[0]), ("failing", failing_name[0])):
            idx = np.flatnonzero(stages == name)
            if len(idx) == 0:
                continue
            idx = np.sort(rng.choice(idx, min(n, len(idx)), replace=False))
            groups[label] = extract_gates(run.lstm.network_.lstm, w.batch(idx)[0], threads=1)
        if len(groups) < 2:
            return out
        for li in range(groups["healthy"].num_layers):
            for g in GATES:
                h = np.asarray(groups["healthy"].layers[li][g]).mean(axis=0)
                f = np.asarray(groups["failing"].layers[li][g]).mean(axis=0)
                out[(li + 1, g)] = h - f
        return out

    diffs = run.memo(("gate_difference", n), compute)
    if (layer, gate) not in diffs:
        raise ValueError("the evaluated windows hold no healthy or no failing stage")
    return np.asarray(diffs[(layer, gate)])


# ----------------------------------------------------------------------------- signatures


@dataclass
class SignatureSample:
    """Signatures per layer (0 = input) of a sample of training and evaluated windows."""

    train: dict[int, np.ndarray]
    train_rul: np.ndarray
    test: dict[int, np.ndarray]
    test_rul: np.ndarray
    test_units: np.ndarray
    val: dict[int, np.ndarray]


def _signatures(lstm: Any, x: np.ndarray) -> dict[int, np.ndarray]:
    from pdmlens.signatures.cluster import input_signature, signatures_from_lstm

    return {0: input_signature(x, "last_mean"), **signatures_from_lstm(lstm.network_.lstm, x)}


def _pick(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def signature_sample(run: RunData, size: int = SAMPLE) -> SignatureSample:
    """The (cached) signature sample of a run: ``size`` windows of the training, the
    validation and the evaluated split each, drawn with the run's seed."""

    def compute() -> SignatureSample:
        seed = run.config.seed
        tr, va = run.windows("train"), run.windows("val")
        te = run.windows(run.eval_split)
        i_tr, i_va, i_te = (
            _pick(len(tr), size, seed),
            _pick(len(va), size, seed + 1),
            _pick(len(te), size, seed + 2),
        )
        return SignatureSample(
            train=_signatures(run.lstm, tr.batch(i_tr)[0].copy()),
            train_rul=np.asarray(tr.window_targets[i_tr]),
            test=_signatures(run.lstm, te.batch(i_te)[0].copy()),
            test_rul=np.asarray(te.window_targets[i_te]),
            test_units=np.asarray(te.window_units[i_te]).astype(str),
            val=_signatures(run.lstm, va.batch(i_va)[0].copy()),
        )

    return run.memo(("signature_sample", size), compute)


def parse_bins(text: str) -> list[float]:
    """Stage bin edges from ``"0, 30, 75, 125"``: at least three increasing numbers."""
    try:
        bins = [float(t) for t in str(text).replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"stage bins must be numbers separated by commas, got {text!r}") from None
    if len(bins) < 3:
        raise ValueError("stage bins need at least three edges (two stages), e.g. 0, 30, 125")
    if any(b >= a for a, b in zip(bins[1:], bins[:-1], strict=False)):
        raise ValueError(f"stage bins must increase, got {bins}")
    return bins


def _probe_accuracy(
    sample: SignatureSample, st_tr: np.ndarray, st_te: np.ndarray, seed: int
) -> dict[int, float]:
    """Accuracy on the evaluated windows of a linear probe (standardize + logistic
    regression) trained on the training windows' stages, per layer; independent of k,
    so cached on the sample per stage labelling."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    key = (st_tr.tobytes(), st_te.tobytes(), seed)
    cache: dict[Any, dict[int, float]] = sample.__dict__.setdefault("_probes", {})
    if key not in cache:
        out = {}
        for layer in sample.train:
            if len(np.unique(st_tr)) < 2:
                out[layer] = float("nan")
                continue
            probe = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=300, random_state=seed)
            ).fit(sample.train[layer], st_tr)
            out[layer] = float(np.mean(probe.predict(sample.test[layer]) == st_te))
        cache[key] = out
    return cache[key]


def recluster(
    sample: SignatureSample, k: int, bins: Sequence[float], seed: int = 0
) -> tuple[pd.DataFrame, dict[int, np.ndarray], np.ndarray]:
    """k-means with ``k`` clusters per layer (fitted on the training signatures), scored
    on the evaluated windows against health stages from ``bins``: the table per layer
    (name, k, purity, nmi, ari, probe_accuracy, majority_baseline; the same measures as
    the pipeline's signatures step), the cluster of every evaluated window per layer, and
    their stages."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from pdmlens.signatures.cluster import (
        SignatureClusterer,
        layer_label,
        purity_score,
        stage_of,
    )

    st_tr = np.asarray(stage_of(np.minimum(sample.train_rul, bins[-1]), bins))
    st_te = np.asarray(stage_of(np.minimum(sample.test_rul, bins[-1]), bins))
    values, counts = np.unique(st_tr, return_counts=True)
    baseline = float(np.mean(st_te == values[np.argmax(counts)])) if len(st_te) else np.nan
    probes = _probe_accuracy(sample, st_tr, st_te, seed)
    rows, labels = [], {}
    for layer in sample.train:
        clu = SignatureClusterer(k=int(k), seed=seed, n_init=4, silhouette_sample=300)
        pred = clu.fit(sample.train[layer]).predict(sample.test[layer])
        labels[layer] = pred
        rows.append(
            {
                "layer": layer,
                "name": layer_label(layer),
                "k": int(k),
                "purity": purity_score(pred, st_te),
                "nmi": float(normalized_mutual_info_score(st_te, pred)),
                "ari": float(adjusted_rand_score(st_te, pred)),
                "probe_accuracy": probes[layer],
                "majority_baseline": baseline,
            }
        )
    return pd.DataFrame(rows).set_index("layer"), labels, st_te


def separation_verdict(table: pd.DataFrame, metric: str = "nmi", tolerance: float = 0.05) -> str:
    """The report's verdict on which layer first separates health stages
    (:func:`pdmlens.signatures.layers.separation_verdict`: a layer is named only when its
    linear probe beats the raw input's, "no layer" when none does or nothing beats guessing
    the commonest stage), so the page and the report never disagree."""
    from pdmlens.signatures.layers import separation_verdict as verdict

    return verdict(table, metric, tolerance).sentence


def project_2d(x: np.ndarray) -> np.ndarray:
    """Standardize then PCA to two components (deterministic; an unspread axis is 0)."""
    x = np.asarray(x, dtype=np.float64)
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    if z.shape[1] < 2:
        return np.c_[z, np.zeros(len(z))]
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    p = z @ vt[:2].T
    signs = np.sign(p[np.argmax(np.abs(p), axis=0), [0, 1]])
    return p * np.where(signs == 0, 1, signs)


# ----------------------------------------------------------------------------- novelty


def novelty_scorers(run: RunData) -> dict[int, tuple[Any, float]]:
    """Per layer, a novelty scorer fitted on the training signature sample and its
    threshold calibrated on the validation sample (the run's method and TNR)."""
    from pdmlens.signatures.novelty import NoveltyScorer, calibrate

    def compute() -> dict[int, tuple[Any, float]]:
        sc = run.config.signatures
        s = signature_sample(run)
        out = {}
        for layer in s.train:
            scorer = NoveltyScorer(method=sc.novelty_method, k=sc.novelty_knn, seed=run.config.seed)
            scorer.fit(s.train[layer])
            out[layer] = (
                scorer,
                float(calibrate(scorer.score_samples(s.val[layer]), sc.novelty_tnr)),
            )
        return out

    return run.memo("novelty_scorers", compute)


def machine_novelty(run: RunData, unit: str) -> pd.DataFrame:
    """Novelty score of every window of one machine, per layer, with each threshold:
    columns time, layer, score, threshold."""

    def compute() -> pd.DataFrame:
        w = run.windows(run.eval_split)
        idx = np.flatnonzero(np.asarray(w.window_units).astype(str) == str(unit))
        sigs = _signatures(run.lstm, w.batch(idx)[0].copy())
        rows = []
        for layer, (scorer, thr) in novelty_scorers(run).items():
            rows.append(
                pd.DataFrame(
                    {
                        "time": np.asarray(w.window_times)[idx],
                        "layer": layer,
                        "score": scorer.score_samples(sigs[layer]),
                        "threshold": thr,
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)

    return run.memo(("machine_novelty", str(unit)), compute)


def fleet_extras(run: RunData, machines: Sequence[str]) -> pd.DataFrame:
    """Per machine at its latest window: the top three sensors by the LSTM's SHAP, and
    whether the last LSTM layer's signature is novel (above its threshold)."""
    from pdmlens.explain.attributions import explain_lstm, select_background

    def compute() -> pd.DataFrame:
        cfg = run.config
        w = run.windows(run.eval_split)
        last = w.last_windows()
        units = np.asarray(w.window_units)[last].astype(str)
        x = w.batch(last)[0].copy()
        bg = run.memo(
            "background",
            lambda: select_background(
                run.windows("train"),
                cfg.explain.background,
                kind=cfg.explain.background_kind,
                seed=cfg.seed,
                rul_cap=cfg.prepare.rul_cap,
            ),
        )
        att = explain_lstm(run.lstm, x, bg, nsamples=16, seed=cfg.seed, num_threads=1)
        per_sensor = np.abs(np.asarray(att.values)).sum(axis=1)
        names = np.asarray(run.prepared.features)
        keep = names != "age"
        tops = [
            ", ".join(names[keep][np.argsort(-row[keep], kind="stable")[:3]]) for row in per_sensor
        ]
        scorers = novelty_scorers(run)
        top_layer = max(scorers)
        scorer, thr = scorers[top_layer]
        score = scorer.score_samples(_signatures(run.lstm, x)[top_layer])
        return pd.DataFrame(
            {"machine": units, "top_sensors": tops, "novelty": score.round(2), "novel": score > thr}
        )

    out = run.memo("fleet_extras", compute)
    return out[out["machine"].isin([str(m) for m in machines])]


# ----------------------------------------------------------------------------- a new fault


def units_firing_only_on(
    familiar: np.ndarray, new: np.ndarray, threshold: float = 0.3, top: int = 8
) -> pd.DataFrame:
    """Hidden units active (|h| above ``threshold``) on the new data but not on the
    familiar: per unit the share of windows it is on in each, sorted by the difference;
    ``only_new`` marks units on in at least half the new windows and at most 5 % of the
    familiar ones."""
    on_fam = (np.abs(familiar) > threshold).mean(axis=0)
    on_new = (np.abs(new) > threshold).mean(axis=0)
    diff = on_new - on_fam
    order = np.argsort(-diff, kind="stable")[:top]
    return pd.DataFrame(
        {
            "unit": order,
            "on_new": on_new[order].round(3),
            "on_familiar": on_fam[order].round(3),
            "difference": diff[order].round(3),
            "only_new": (on_new[order] >= 0.5) & (on_fam[order] <= 0.05),
        }
    )


def unseen_fault_modes(run: RunData) -> list[int]:
    """Simulated fault modes the run did not train on (empty for other sources or a run
    trained on every mode)."""
    sim = run.config.data.simulator
    if run.config.data.source != "simulated" or sim.fault_mode_subset is None:
        return []
    return [m for m in range(sim.fault_modes) if m not in set(sim.fault_mode_subset)]


@dataclass
class NewFaultResult:
    table: pd.DataFrame
    """per layer: auroc, threshold, detection_rate, false_alarm_rate, ..."""
    scores: dict[Hashable, dict[str, np.ndarray]]
    units: dict[int, pd.DataFrame]
    n_new: int


def new_fault(run: RunData, modes: Sequence[int], size: int = SAMPLE) -> NewFaultResult:
    """Novelty of a simulated fault mode the run never saw: the same plant simulated with
    only ``modes`` (another seed), prepared with the run's fitted preparation; per layer
    the novelty scores of the run's evaluated windows (familiar) and of the new ones,
    detection and false-alarm rates at the run's threshold, and the units that fire only
    on the new fault."""
    from pdmlens.config import DataConfig
    from pdmlens.data.sources import load_source
    from pdmlens.data.windows import WindowDataset
    from pdmlens.signatures.novelty import novelty_by_layer

    def compute() -> NewFaultResult:
        cfg = run.config
        sim = cfg.data.simulator.model_copy(
            update={"fault_mode_subset": sorted(int(m) for m in modes)}
        )
        data_cfg = DataConfig.model_validate({**cfg.data.model_dump(), "simulator": sim})
        fleet = load_source(data_cfg, seed=cfg.seed + 1000).train
        frame = run.prepared.preparer.transform(fleet)
        w = WindowDataset(
            frame, run.prepared.features, cfg.window.length, "rul", pad=cfg.window.pad
        )
        idx = _pick(len(w), size, cfg.seed + 3)
        new_sigs = _signatures(run.lstm, w.batch(idx)[0].copy())
        s = signature_sample(run, size)

        def hashable(d: dict[int, np.ndarray]) -> Mapping[Hashable, np.ndarray]:
            return {k: v for k, v in d.items()}  # noqa: C416 (widens the key type)

        sc = cfg.signatures
        table, scores = novelty_by_layer(
            hashable(s.train),
            hashable(s.val),
            hashable(s.test),
            hashable(new_sigs),
            method=sc.novelty_method,
            k=sc.novelty_knn,
            tnr=sc.novelty_tnr,
            seed=cfg.seed,
        )
        hidden = run.lstm.network_.lstm.hidden_size
        units = {
            layer: units_firing_only_on(s.test[layer][:, :hidden], new_sigs[layer][:, :hidden])
            for layer in s.test
            if layer > 0
        }
        return NewFaultResult(table=table, scores=scores, units=units, n_new=len(idx))

    return run.memo(("new_fault", tuple(sorted(int(m) for m in modes)), size), compute)
