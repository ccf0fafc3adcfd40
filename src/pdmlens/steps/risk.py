"""The at-risk step: which evaluated machines need attention, by name.

Scores each evaluated machine's raw readings with the run's scoring bundle (as
``pdmlens score`` would: alert level, novelty, top sensors), joins the evaluate step's
latest predictions and truth, and writes the machines-at-risk and late-predictions tables
as CSV (logged as artifacts of the parent run) with the trajectory chart of the machines
they name. The report opens with both tables.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pdmlens.config import RunConfig
from pdmlens.data.fleet import UNIT, Fleet
from pdmlens.results import (
    AT_RISK_FILE,
    LATE_FILE,
    MODELS,
    PREDICTIONS_FILE,
    StepResult,
)
from pdmlens.steps.common import save_fig
from pdmlens.steps.data_steps import load_fleets
from pdmlens.task import task_of

log = logging.getLogger("pdmlens.steps")


def at_risk(
    cfg: RunConfig,
    ingest_dir: str | Path,
    prepared_dir: str | Path,
    evaluate_dir: str | Path,
    bundle_dir: str | Path,
    out_dir: str | Path,
) -> StepResult:
    """``machines_at_risk.csv`` (every evaluated machine, most urgent first),
    ``late_predictions.csv`` (predicted more than 20 cycles late, worst first; RUL task)
    and the trajectories of the machines at risk and of the worst errors."""
    from pdmlens.data.prepare import PreparedData
    from pdmlens.report.model_plots import rul_trajectories
    from pdmlens.report.risk import (
        LATE_CYCLES,
        late_predictions,
        machines_at_risk,
        pick_trajectories,
    )
    from pdmlens.scoring import score_fleet
    from pdmlens.scoring.bundle import ScoringBundle
    from pdmlens.task import eval_split

    t0 = time.perf_counter()
    task = task_of(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = pd.read_parquet(Path(evaluate_dir) / PREDICTIONS_FILE)
    split = eval_split(PreparedData.load(prepared_dir))
    fleets = load_fleets(ingest_dir)
    raw = fleets.test if split == "test" and fleets.test is not None else fleets.train
    units = set(preds["unit"].astype(str))
    frame = raw.frame[raw.frame[UNIT].astype(str).isin(units)].reset_index(drop=True)
    scores = score_fleet(ScoringBundle.load(bundle_dir), Fleet(frame, raw.meta)).table
    models = [m.name for m in MODELS]
    labelled = not task.classifies
    cap = cfg.prepare.rul_cap
    risk = machines_at_risk(preds, scores, models, cap=cap, labelled=labelled)
    risk.to_csv(out / AT_RISK_FILE, index=False)
    tables = {AT_RISK_FILE: str(out / AT_RISK_FILE)}
    figures: dict[str, str] = {}
    info: dict[str, Any] = {
        "split": split,
        "n_machines": len(risk),
        "alerts": {lv: int((risk["alert"] == lv).sum()) for lv in ("act", "watch", "ok")},
        "most_urgent": risk["machine"].head(5).tolist(),
    }
    if labelled:
        late = late_predictions(preds, models, cap=cap)
        late.to_csv(out / LATE_FILE, index=False)
        tables[LATE_FILE] = str(out / LATE_FILE)
        info["late_cycles"] = LATE_CYCLES
        info["n_late"] = len(late)
        info["worst_late"] = late["machine"].head(5).tolist()
        shown = pick_trajectories(risk, late)
        info["trajectories"] = shown
        late_by = dict(zip(late["machine"], late["worst_late_by"], strict=True))
        alert = dict(zip(risk["machine"], risk["alert"], strict=True))
        titles = {}
        for m in shown:
            why = [f"alert {alert[m]}"]
            if m in late_by:
                why.append(f"predicted {late_by[m]:.0f} cycles late")
            titles[m] = f"machine {m} ({'; '.join(why)})"
        figures["figures/rul_trajectories.png"] = save_fig(
            rul_trajectories(
                preds["unit"].astype(str).to_numpy(),
                preds["time"].to_numpy(),
                {m.label: preds[m.name].to_numpy() for m in MODELS},
                preds["true"].to_numpy(),
                show=shown,
                cap=cap,
                titles=titles,
            ),
            out,
            "rul_trajectories",
        )
    log.info(
        "at risk: %s most urgent; %s predicted more than %g cycles late",
        ", ".join(info["most_urgent"]),
        info.get("n_late", "-"),
        LATE_CYCLES,
    )
    return StepResult(
        "at_risk",
        str(out),
        figures=figures,
        tables=tables,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()
