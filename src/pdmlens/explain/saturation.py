"""Gate saturation per unit: how often each gate is fully closed or fully open.

Karpathy, Johnson & Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks") call
a sigmoid gate *left-saturated* when its activation is below 0.1 (closed: the gate blocks)
and *right-saturated* when above 0.9 (open: the gate passes everything). The fraction of
time steps spent in each state, per unit, separates units that act as switches or long-term
memories (a forget gate right-saturated almost always keeps its cell for the whole window)
from units that modulate smoothly (both fractions near zero).

Counts are taken over every sample and time step of a trace; comparisons are strict
(``value < low`` and ``value > high``). Gates i, f, o are sigmoids and use ``low``/``high``.
The cell candidate g is a tanh in (-1, 1): it is excluded by default; when asked for, it is
left-saturated below ``-g_threshold`` and right-saturated above ``g_threshold`` (0.9,
i.e. ``|g| > 0.9``, by default). States c and h are not gates and are refused.

:class:`SaturationCounter` accumulates counts chunk by chunk, so a trace streamed by
:func:`pdmlens.explain.gates.iter_gate_chunks` gives the same table as the whole trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pdmlens.explain.gate_trace import GateTrace

SIGMOID_GATES = ("i", "f", "o")
COLUMNS = ("layer", "gate", "unit", "left_saturated", "right_saturated", "n_steps")


class SaturationCounter:
    """Streaming per-unit saturation counts over one or many (chunks of) traces."""

    def __init__(
        self,
        low: float = 0.1,
        high: float = 0.9,
        gates: Sequence[str] = SIGMOID_GATES,
        g_threshold: float = 0.9,
    ) -> None:
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        bad = [g for g in gates if g not in ("i", "f", "g", "o")]
        if bad or not gates:
            raise ValueError(f"gates must be a non-empty subset of i, f, g, o; got {list(gates)}")
        if not 0.0 < g_threshold < 1.0:
            raise ValueError(f"g_threshold must be in (0, 1), got {g_threshold}")
        self.low = float(low)
        self.high = float(high)
        self.gates = tuple(gates)
        self.g_threshold = float(g_threshold)
        self._left: list[dict[str, np.ndarray]] = []
        self._right: list[dict[str, np.ndarray]] = []
        self._steps = 0

    def _bounds(self, gate: str) -> tuple[float, float]:
        if gate == "g":
            return -self.g_threshold, self.g_threshold
        return self.low, self.high

    def update(self, trace: GateTrace) -> SaturationCounter:
        """Add every sample and step of ``trace`` (a whole trace or one chunk of it)."""
        if self._left and len(self._left) != trace.num_layers:
            raise ValueError(
                f"trace has {trace.num_layers} layers, earlier ones had {len(self._left)}"
            )
        if not self._left:
            h = trace.hidden_size
            self._left = [
                {g: np.zeros(h, np.int64) for g in self.gates} for _ in range(trace.num_layers)
            ]
            self._right = [
                {g: np.zeros(h, np.int64) for g in self.gates} for _ in range(trace.num_layers)
            ]
        for li, layer in enumerate(trace.layers):
            for g in self.gates:
                arr = torch.from_numpy(np.asarray(layer[g]))
                if arr.shape[-1] != self._left[li][g].shape[0]:
                    raise ValueError("hidden size differs from earlier traces")
                lo, hi = self._bounds(g)
                self._left[li][g] += (arr < lo).sum(dim=(0, 1)).numpy()
                self._right[li][g] += (arr > hi).sum(dim=(0, 1)).numpy()
        self._steps += trace.n_samples * trace.n_steps
        return self

    def frame(self) -> pd.DataFrame:
        """One row per (layer, gate, unit): the fractions of steps left- and right-saturated
        (``layer`` 0-based, ``n_steps`` = samples x time steps counted)."""
        parts = []
        denom = max(self._steps, 1)
        for li, (left, right) in enumerate(zip(self._left, self._right, strict=True)):
            for g in self.gates:
                h = left[g].shape[0]
                parts.append(
                    pd.DataFrame(
                        {
                            "layer": np.full(h, li, dtype=np.int64),
                            "gate": g,
                            "unit": np.arange(h, dtype=np.int64),
                            "left_saturated": left[g] / denom,
                            "right_saturated": right[g] / denom,
                            "n_steps": np.full(h, self._steps, dtype=np.int64),
                        }
                    )
                )
        if not parts:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype=t)
                    for c, t in zip(
                        COLUMNS,
                        ("int64", "object", "int64", "float64", "float64", "int64"),
                        strict=True,
                    )
                }
            )
        return pd.concat(parts, ignore_index=True)


def saturation(
    trace: GateTrace,
    low: float = 0.1,
    high: float = 0.9,
    gates: Sequence[str] = SIGMOID_GATES,
    g_threshold: float = 0.9,
) -> pd.DataFrame:
    """Per (layer, gate, unit): fraction of steps below ``low`` (``left_saturated``) and
    above ``high`` (``right_saturated``); see the module docstring for g."""
    return SaturationCounter(low, high, gates, g_threshold).update(trace).frame()


def saturation_summary(sat: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per layer and gate: mean fractions and how many units are saturated more than
    ``threshold`` of the time on either side (a compact table for a report or MLflow)."""
    df = sat.assign(
        mostly_closed=sat["left_saturated"] > threshold,
        mostly_open=sat["right_saturated"] > threshold,
    )
    return (
        df.groupby(["layer", "gate"], sort=True)
        .agg(
            units=("unit", "size"),
            mean_left_saturated=("left_saturated", "mean"),
            mean_right_saturated=("right_saturated", "mean"),
            units_mostly_closed=("mostly_closed", "sum"),
            units_mostly_open=("mostly_open", "sum"),
        )
        .reset_index()
    )
