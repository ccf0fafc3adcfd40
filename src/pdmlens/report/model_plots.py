"""Figures of how well the models predict: predicted vs true RUL, a few units' RUL
trajectories, and the LSTM's learning curves.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state,
no GUI backend, safe from worker threads); the report and the tracking step save or embed
it as they wish (``fig.savefig(buf, format="png")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def predicted_vs_true(
    pred: np.ndarray | Sequence[float] | Mapping[str, np.ndarray | Sequence[float]],
    true: np.ndarray | Sequence[float],
    cap: float | None = None,
    title: str = "Predicted vs true RUL",
    label: str | None = None,
    units: Sequence[str] | None = None,
    n_labels: int = 5,
) -> Figure:
    """Scatter of predicted against true RUL with the diagonal.

    With a ``cap``, the truth is capped too (the models learn the capped RUL, and the
    metrics the report shows are against it), so a healthy machine predicted at the cap
    sits on the diagonal; the title's RMSE is against the same capped truth. ``pred`` may
    map model names to predictions (one colour each, one RMSE each in the legend). With
    ``units`` (one name per point) the ``n_labels`` largest errors of each model are
    labelled with their machine.
    """
    preds = (
        {str(k): np.asarray(v, dtype=float).ravel() for k, v in pred.items()}
        if isinstance(pred, Mapping)
        else {label or "predicted": np.asarray(pred, dtype=float).ravel()}
    )
    t = np.asarray(true, dtype=float).ravel()
    if cap is not None:
        t = np.minimum(t, cap)
    names = None if units is None else [str(u) for u in units]
    fig = Figure(figsize=(5.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    finite = np.concatenate([t[np.isfinite(t)], [0.0]])
    rmses = []
    for i, (name, p) in enumerate(preds.items()):
        rmse = float(np.sqrt(np.nanmean((p - t) ** 2))) if t.size else float("nan")
        rmses.append(rmse)
        legend = name if isinstance(pred, Mapping) else (label or None)
        if isinstance(pred, Mapping):
            legend = f"{name} (RMSE {rmse:.1f})"
        ax.scatter(t, p, s=14, alpha=0.65, label=legend, color=f"C{i}")
        finite = np.concatenate([finite, p[np.isfinite(p)]])
        if names is not None and len(names) == len(p) and n_labels > 0:
            err = np.abs(p - t)
            for j in np.argsort(-np.nan_to_num(err, nan=-1.0), kind="stable")[:n_labels]:
                if np.isfinite(err[j]):
                    ax.annotate(
                        names[j],
                        (t[j], p[j]),
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                        color=f"C{i}",
                    )
    hi = float(finite.max()) * 1.05 if finite.size else 1.0
    ax.plot([0, hi], [0, hi], color="0.3", lw=1, ls="--", label="perfect")
    capped = f", truth capped at {cap:g}" if cap is not None else ""
    if t.size and len(rmses) == 1:
        ax.set_title(f"{title}\n(n={t.size}, RMSE {rmses[0]:.1f}{capped})", fontsize="medium")
    elif t.size:
        ax.set_title(f"{title}\n(n={t.size}{capped})", fontsize="medium")
    else:
        ax.set_title(title)
    ax.set_xlabel("true RUL (cycles)" + (f", capped at {cap:g}" if cap is not None else ""))
    ax.set_ylabel("predicted RUL (cycles)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def rul_trajectories(
    units: np.ndarray | Sequence[str],
    times: np.ndarray | Sequence[float],
    pred: np.ndarray | Sequence[float] | Mapping[str, np.ndarray],
    true: np.ndarray | Sequence[float],
    show: Sequence[str] | None = None,
    n_units: int = 4,
    cap: float | None = None,
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """Predicted and true RUL over time for a few machines, one panel each.

    ``units``, ``times``, ``true`` (and each prediction) hold one value per window
    (``WindowDataset.window_units`` / ``window_times``); ``pred`` may be a dict of several
    models' predictions. ``show`` picks the machines (e.g. the most urgent and the worst
    errors), else the first ``n_units``; ``titles`` names a panel (default "machine <name>").
    With a ``cap`` the truth drawn is the capped truth the models learn (the raw truth
    dotted above the cap).
    """
    units = np.asarray(units).astype(str)
    times = np.asarray(times)
    true = np.asarray(true, dtype=float)
    preds = dict(pred) if isinstance(pred, Mapping) else {"predicted": pred}
    preds = {k: np.asarray(v, dtype=float) for k, v in preds.items()}
    chosen = [str(u) for u in show] if show is not None else list(dict.fromkeys(units))[:n_units]
    n = max(len(chosen), 1)
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(5.0 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, unit in zip(axes, chosen, strict=False):
        m = units == unit
        order = np.argsort(times[m], kind="stable")
        t = times[m][order]
        truth = true[m][order]
        if cap is not None:
            ax.plot(t, truth, color="0.6", lw=0.8, ls=":", label="true (uncapped)")
            truth = np.minimum(truth, cap)
        ax.plot(t, truth, color="black", lw=1.5, label="true" if cap is None else "true (capped)")
        for i, (name, values) in enumerate(preds.items()):
            ax.plot(t, values[m][order], lw=1, label=name, color=f"C{i}")
        ax.set_title((titles or {}).get(unit, f"machine {unit}"), fontsize="medium")
        ax.set_xlabel("cycle (cycles)")
        ax.set_ylabel("RUL (cycles)")
        if cap is not None and len(t):
            ax.set_ylim(0, max(cap, float(np.nanmax([v[m].max() for v in preds.values()]))) * 1.1)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    if chosen:
        axes[0].legend(fontsize="small")
    return fig


def learning_curves(
    history: Sequence[Mapping[str, float]],
    best_epoch: int | None = None,
    title: str = "LSTM learning curves",
) -> Figure:
    """Training and validation loss per epoch (log scale), learning rate on a twin axis,
    the kept (best) epoch marked. Epochs are counted from 0, as MLflow's metric step and
    its ``best_epoch`` metric count them."""
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    epochs = np.array([h.get("epoch", i) for i, h in enumerate(history)], dtype=float)
    for key, style in (("train_loss", "-"), ("val_loss", "-")):
        vals = np.array([h.get(key, np.nan) for h in history], dtype=float)
        if np.isfinite(vals).any():
            ax.plot(epochs, vals, style, label=key.replace("_", " "))
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(
            best_epoch, color="tab:green", lw=0.8, ls="--", label=f"kept epoch ({best_epoch})"
        )
    if history:
        ax.set_yscale("log")
    ax.set_xlabel("epoch (from 0, as MLflow's step)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    lrs = np.array([h.get("lr", np.nan) for h in history], dtype=float)
    if np.isfinite(lrs).any():
        ax2 = ax.twinx()
        ax2.plot(epochs, lrs, color="0.6", lw=0.8, ls=":", label="lr")
        ax2.set_ylabel("learning rate")
    ax.legend(loc="upper right", fontsize="small")
    return fig
