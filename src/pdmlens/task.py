"""What the models are asked to predict: the one place that knows the two tasks.

``rul``: regress the remaining useful life (capped at ``prepare.rul_cap``); a run is judged
on the last window of each evaluated unit by RMSE (lower is better), the C-MAPSS protocol.
``horizon``: the probability that the machine fails within ``prepare.horizon`` cycles; a
run is judged on every evaluated window by PR-AUC (higher is better), since a handful of
last windows may hold no failure at all.

The config keeps the task as a string (``model.task``); :func:`task_of` / :meth:`Task.from_name`
resolve it. Every component asks the :class:`Task` (its target column, its headline metric
and direction, how predictions are scored, which windows are near failure) instead of
testing the string, so a third task is one more subclass here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from pdmlens.config import RunConfig
    from pdmlens.data.prepare import PreparedData
    from pdmlens.data.windows import WindowDataset

RUL_COLUMN = "rul"
"""the capped RUL label column of the prepared data (``pdmlens.data.prepare.RUL``)"""
LSTM_TARGET = RUL_COLUMN
"""the LSTM learns the capped RUL for both tasks (its horizon task derives the probability)"""


@dataclass(frozen=True)
class Task:
    """One prediction task. Subclasses fill in the class attributes and the scoring."""

    name: ClassVar[str]
    headline: ClassVar[str]
    """the evaluate metric (without the ``<model>_test_`` prefix) that decides between models
    and champions"""
    higher_is_better: ClassVar[bool]
    headline_label: ClassVar[str]
    """how a person reads the headline metric"""
    headline_unit: ClassVar[str]
    classifies: ClassVar[bool]
    """True: the models output P(failure within the horizon), alarms at a threshold"""

    @staticmethod
    def from_name(name: str) -> Task:
        """The task called ``name`` ("rul" or "horizon"); ValueError for anything else."""
        try:
            return TASKS[name]
        except KeyError:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}") from None

    # -- which column each model learns and is scored against

    lstm_target: ClassVar[str] = LSTM_TARGET

    def target(self, data: PreparedData) -> str:
        """The column the forest learns and the explain step reads."""
        raise NotImplementedError

    def eval_target(self, data: PreparedData, split: str) -> str:
        """The column the evaluated split (``"test"`` or ``"val"``) is scored against."""
        raise NotImplementedError

    def eval_windows(
        self, data: PreparedData, window: Any
    ) -> tuple[str, WindowDataset, WindowDataset]:
        """(split name, last window per unit, every window) of :func:`eval_split`, with
        this task's evaluation target."""
        split = eval_split(data)
        target = self.eval_target(data, split)
        last = data.windows(split, window, target, last_only=True)
        every = data.windows(split, window, target)
        return split, last, every

    # -- the decision rule

    def better(self, a: float, b: float) -> bool:
        """Is headline value ``a`` strictly better than ``b``?"""
        return a > b if self.higher_is_better else a < b

    def verdict(self, lstm: float | None, forest: float | None) -> str | None:
        """Which model wins on the headline: "LSTM", "random forest", "neither" (a tie), or
        None when a value is missing."""
        if lstm is None or forest is None:
            return None
        if lstm == forest:
            return "neither"
        return "LSTM" if self.better(lstm, forest) else "random forest"

    # -- scoring

    def last_windows(
        self, data: PreparedData, split: str, window: Any, last: WindowDataset
    ) -> WindowDataset:
        """The windows the last-window metrics score (``last``: one per unit)."""
        return last

    def score(
        self,
        predict: Callable[[Any], np.ndarray],
        last: WindowDataset,
        pred_last: np.ndarray | None,
        pred_all: np.ndarray,
        every: WindowDataset,
        threshold: float,
        cap: float,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(last-window report, every-window report) of one model's predictions."""
        raise NotImplementedError

    def predicts_last(self) -> bool:
        """Does evaluate keep one prediction per unit's last window (for the charts)?"""
        return not self.classifies

    # -- explanations

    def near_and_healthy(self, order: np.ndarray) -> tuple[int, int]:
        """(nearest to failure, healthiest) among windows given in ascending target order."""
        raise NotImplementedError

    def describe_target(self, value: float) -> str:
        """A window's target in words, for a figure title."""
        raise NotImplementedError

    def degrading(self, targets: np.ndarray, cap: float) -> np.ndarray | None:
        """Mask of windows worth explaining (None: all)."""
        return None

    def near_failure_rul(self, horizon: int) -> float | None:
        """Largest true RUL counted as near failure for ground-truth precision (None: the
        targets hold no RUL)."""
        return None

    def healthy_mask(self, targets: np.ndarray, rul_cap: float | None) -> np.ndarray:
        """Windows of machines still healthy."""
        raise NotImplementedError

    # -- scoring new data (pdmlens.scoring): the score table's vocabulary

    probability_columns: ClassVar[tuple[str, ...]] = ()
    """score-table columns of P(failure within the horizon), one per model (none for RUL)"""

    def prediction_column(self, model: str) -> str:
        """The score-table column holding ``model``'s prediction in this task's terms."""
        raise NotImplementedError

    def urgency(self, table: Any) -> np.ndarray:
        """Per score-table row, lower = more urgent (the board's order within an alert level)."""
        raise NotImplementedError


@dataclass(frozen=True)
class RulTask(Task):
    """Regress the capped remaining useful life."""

    name: ClassVar[str] = "rul"
    headline: ClassVar[str] = "rmse"
    higher_is_better: ClassVar[bool] = False
    headline_label: ClassVar[str] = "RMSE"
    headline_unit: ClassVar[str] = "cycles"
    classifies: ClassVar[bool] = False

    def target(self, data: PreparedData) -> str:
        return RUL_COLUMN

    def eval_target(self, data: PreparedData, split: str) -> str:
        from pdmlens.data.fleet import RUL_RAW

        # the test split's truth comes from the source, uncapped; validation units' is ours
        return RUL_RAW if split == "test" else RUL_COLUMN

    def score(
        self,
        predict: Callable[[Any], np.ndarray],
        last: WindowDataset,
        pred_last: np.ndarray | None,
        pred_all: np.ndarray,
        every: WindowDataset,
        threshold: float,
        cap: float,
    ) -> tuple[dict[str, float], dict[str, float]]:
        from pdmlens import metrics as M

        p_last = predict(last) if pred_last is None else pred_last
        return (
            M.regression_report(p_last, last.window_targets, cap),
            M.regression_report(pred_all, every.window_targets, cap),
        )

    def near_and_healthy(self, order: np.ndarray) -> tuple[int, int]:
        return int(order[0]), int(order[-1])

    def describe_target(self, value: float) -> str:
        return f"true RUL {value:.0f}"

    def degrading(self, targets: np.ndarray, cap: float) -> np.ndarray | None:
        return np.asarray(targets < cap)

    def near_failure_rul(self, horizon: int) -> float | None:
        # near failure (RUL < horizon) the fault is fully expressed; earlier it may not be
        return float(horizon)

    def healthy_mask(self, targets: np.ndarray, rul_cap: float | None) -> np.ndarray:
        t = np.asarray(targets, dtype=np.float64)
        cap = float(np.max(t)) if rul_cap is None else float(rul_cap)
        return t >= cap

    def prediction_column(self, model: str) -> str:
        return f"rul_{model}"

    def urgency(self, table: Any) -> np.ndarray:
        # the lower of the two predicted lives
        return np.asarray(table[["rul_lstm", "rul_forest"]].min(axis=1), dtype=np.float64)


@dataclass(frozen=True)
class HorizonTask(Task):
    """P(failure within ``prepare.horizon`` cycles)."""

    name: ClassVar[str] = "horizon"
    headline: ClassVar[str] = "all_pr_auc"
    higher_is_better: ClassVar[bool] = True
    headline_label: ClassVar[str] = "PR-AUC (all test windows)"
    headline_unit: ClassVar[str] = ""
    classifies: ClassVar[bool] = True

    def target(self, data: PreparedData) -> str:
        return data.horizon_col

    def eval_target(self, data: PreparedData, split: str) -> str:
        return data.horizon_col

    def last_windows(
        self, data: PreparedData, split: str, window: Any, last: WindowDataset
    ) -> WindowDataset:
        """The protocol's last full window of each unit long enough to hold one (``last``
        when none is)."""
        from pdmlens import metrics as M

        proto = M.last_full_windows(
            data.frame(split), data.features, window.length, data.horizon_col
        )
        return proto if len(proto) else last

    def score(
        self,
        predict: Callable[[Any], np.ndarray],
        last: WindowDataset,
        pred_last: np.ndarray | None,
        pred_all: np.ndarray,
        every: WindowDataset,
        threshold: float,
        cap: float,
    ) -> tuple[dict[str, float], dict[str, float]]:
        from pdmlens import metrics as M

        return (
            M.evaluate_horizon(predict, last, threshold),
            M.classification_report(pred_all, every.window_targets > 0.5, threshold),
        )

    def near_and_healthy(self, order: np.ndarray) -> tuple[int, int]:
        return int(order[-1]), int(order[0])

    def describe_target(self, value: float) -> str:
        return f"fails within the horizon: {'yes' if value > 0.5 else 'no'}"

    def healthy_mask(self, targets: np.ndarray, rul_cap: float | None) -> np.ndarray:
        return np.asarray(targets, dtype=np.float64) < 0.5

    probability_columns: ClassVar[tuple[str, ...]] = ("p_fail_lstm", "p_fail_forest")

    def prediction_column(self, model: str) -> str:
        return f"p_fail_{model}"

    def urgency(self, table: Any) -> np.ndarray:
        # the LSTM's probability of failing within the horizon, highest first
        return 1.0 - np.asarray(table["p_fail_lstm"], dtype=np.float64)


RUL = RulTask()
HORIZON = HorizonTask()
TASKS: dict[str, Task] = {t.name: t for t in (RUL, HORIZON)}
"""every task by name, in the order the config lists them"""
TASK_NAMES = tuple(TASKS)


def eval_split(data: PreparedData) -> str:
    """The split evaluate scores: the test split (true RUL from the source) or, without
    one, the validation units."""
    return "test" if data.test is not None and len(data.test) else "val"


def task_scored_by(metric_names: Any) -> Task:
    """The task whose headline metric is among ``metric_names`` (e.g. the keys of a run
    summary's model section); ValueError when none is."""
    names = set(metric_names)
    for task in TASKS.values():
        if task.headline in names:
            return task
    raise ValueError(f"no task's headline metric among {sorted(names)}")


def task_of(cfg: RunConfig) -> Task:
    """The task a run configuration asks for (``cfg.model.task``)."""
    return Task.from_name(cfg.model.task)
