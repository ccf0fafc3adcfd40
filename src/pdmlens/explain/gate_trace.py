"""A recorded LSTM gate trace: every gate, cell and hidden state of every layer, per step.

:class:`GateTrace` is what :mod:`pdmlens.explain.gates` records and what saturation counts,
signatures and plots read; it lives apart from the recorder so that readers need not import
the recorder's kernels and runtime.

**Layout.** A trace's arrays ``trace.layers[l][k]`` (k in i, f, g, o, c, h) are [N, T, H]
float32 *views* onto one time-major block ``[layer, time, sample, 6H + 8]`` whose last axis
holds i, f, g, o, c, h side by side (what the time loop writes), then a constant 1 (the
loop's bias column) and padding. They are not C-contiguous; use
``np.ascontiguousarray`` or :meth:`GateTrace.contiguous` where that matters.

**File schema** (:meth:`GateTrace.save`, an ``.npz`` archive, optionally compressed):

- ``layer{l}/{k}``: float32 [N, T, H], C order, for l = 0..num_layers-1, k in i f g o c h;
- ``meta/format``: the string ``"pdmlens.GateTrace"``; ``meta/version``: int 1;
- ``meta/num_layers``, ``meta/hidden_size``: int; ``meta/max_abs_error``: float.

:meth:`GateTrace.to_frame` gives a bounded long table for Parquet (one row per sample,
layer, time step and unit; a column per gate and state).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GATES = ("i", "f", "g", "o")
"""The gates in PyTorch's order (input, forget, cell candidate, output)."""
KEYS = ("i", "f", "g", "o", "c", "h")
"""Every array of a trace layer: the four gates, then the cell and hidden state."""
GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "g": "cell candidate",
    "o": "output gate",
    "c": "cell state",
    "h": "hidden state",
}
_FORMAT = "pdmlens.GateTrace"
_VERSION = 1


@dataclass
class GateTrace:
    """Gates and states of every LSTM layer: ``layers[l][k]`` is [N, T, H] float32.

    ``k`` is one of i, f, g, o (gates, PyTorch's order), c (cell state), h (hidden state).
    ``max_abs_error`` is the largest difference to ``nn.LSTM`` found by the check
    (0.0 when the trace was not checked, e.g. loaded from an old file).
    """

    layers: list[dict[str, np.ndarray]]
    num_layers: int
    hidden_size: int
    max_abs_error: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_samples(self) -> int:
        return int(self.layers[0]["h"].shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.layers[0]["h"].shape[1])

    def __len__(self) -> int:
        return self.n_samples

    def contiguous(self) -> GateTrace:
        """A copy whose arrays are C-contiguous [N, T, H] and own their memory."""
        layers = [
            {k: np.array(layer[k], dtype=np.float32, order="C", copy=True) for k in KEYS}
            for layer in self.layers
        ]
        return GateTrace(
            layers, self.num_layers, self.hidden_size, self.max_abs_error, dict(self.meta)
        )

    def subset(self, samples: Sequence[int] | slice | np.ndarray) -> GateTrace:
        """The trace of some samples only (a copy, C-contiguous)."""
        idx = samples if isinstance(samples, slice) else np.asarray(samples, dtype=np.int64)
        layers = [{k: np.ascontiguousarray(layer[k][idx]) for k in KEYS} for layer in self.layers]
        return GateTrace(
            layers, self.num_layers, self.hidden_size, self.max_abs_error, dict(self.meta)
        )

    # ---- files
    def save(self, path: str | Path, compress: bool = False) -> Path:
        """Write the trace as an ``.npz`` archive (schema in the module docstring)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "meta/format": np.array(_FORMAT),
            "meta/version": np.array(_VERSION, dtype=np.int64),
            "meta/num_layers": np.array(self.num_layers, dtype=np.int64),
            "meta/hidden_size": np.array(self.hidden_size, dtype=np.int64),
            "meta/max_abs_error": np.array(self.max_abs_error, dtype=np.float64),
        }
        for li, layer in enumerate(self.layers):
            for k in KEYS:
                arrays[f"layer{li}/{k}"] = np.ascontiguousarray(layer[k], dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # a file object: numpy adds no ".npz" suffix
            save: Callable[..., None] = np.savez_compressed if compress else np.savez
            save(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GateTrace:
        """Read a trace written by :meth:`save`."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a gate trace file ({exc})") from exc
        with data:
            if "meta/format" not in data.files or str(data["meta/format"]) != _FORMAT:
                raise ValueError(f"{path}: not a gate trace file (no meta/format={_FORMAT})")
            version = int(data["meta/version"])
            if version > _VERSION:
                raise ValueError(
                    f"{path}: gate trace format version {version} is newer than "
                    f"this pdmlens reads ({_VERSION})"
                )
            n_layers = int(data["meta/num_layers"])
            hidden = int(data["meta/hidden_size"])
            layers = []
            for li in range(n_layers):
                missing = [k for k in KEYS if f"layer{li}/{k}" not in data.files]
                if missing:
                    raise ValueError(f"{path}: layer {li} lacks arrays {missing}")
                layers.append({k: data[f"layer{li}/{k}"] for k in KEYS})
            return cls(layers, n_layers, hidden, float(data["meta/max_abs_error"]))

    # ---- tables
    def to_frame(
        self,
        sample_ids: Sequence[int] | np.ndarray | None = None,
        times: Sequence[int] | np.ndarray | slice | None = None,
        units: Sequence[int] | np.ndarray | slice | None = None,
        layers: Sequence[int] | None = None,
        max_rows: int = 2_000_000,
    ) -> pd.DataFrame:
        """A long table of a few samples for Parquet export (e.g. an MLflow artifact).

        One row per (sample, layer, time, unit), columns ``sample`` (the index into the
        trace's samples), ``layer`` (0-based), ``time`` (step within the window, 0-based),
        ``unit`` (hidden unit), then ``i f g o c h`` (float32). ``sample_ids``, ``times``,
        ``units`` and ``layers`` select (indices; None = all). Refuses to build more than
        ``max_rows`` rows: pick a few samples instead of dumping a whole trace.
        """
        n, t_len, h_len = self.n_samples, self.n_steps, self.hidden_size
        s_idx = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        t_idx = _index(times, t_len)
        u_idx = _index(units, h_len)
        l_idx = list(range(self.num_layers)) if layers is None else [int(v) for v in layers]
        checks = (
            ("sample_ids", s_idx, n),
            ("times", t_idx, t_len),
            ("units", u_idx, h_len),
            ("layers", np.asarray(l_idx, dtype=np.int64), self.num_layers),
        )
        for name, idx, size in checks:
            if idx.size and (idx.min() < -size or idx.max() >= size):
                raise IndexError(f"{name} out of range 0..{size - 1}")
        rows = s_idx.size * t_idx.size * u_idx.size * len(l_idx)
        if rows > max_rows:
            raise ValueError(
                f"to_frame would build {rows:,} rows (> max_rows={max_rows:,}); "
                "select fewer samples, times or units"
            )
        s_idx, t_idx, u_idx = s_idx % max(n, 1), t_idx % t_len, u_idx % h_len
        grid = np.ix_(s_idx, t_idx, u_idx)
        per_layer = s_idx.size * t_idx.size * u_idx.size
        s_col = np.repeat(s_idx, t_idx.size * u_idx.size)
        t_col = np.tile(np.repeat(t_idx, u_idx.size), s_idx.size)
        u_col = np.tile(u_idx, s_idx.size * t_idx.size)
        parts = []
        for li in l_idx:
            layer = self.layers[li]
            cols: dict[str, np.ndarray] = {
                "sample": s_col,
                "layer": np.full(per_layer, li % self.num_layers, dtype=np.int64),
                "time": t_col,
                "unit": u_col,
            }
            for k in KEYS:
                cols[k] = np.asarray(layer[k][grid], dtype=np.float32).reshape(-1)
            parts.append(pd.DataFrame(cols))
        if not parts:
            return pd.DataFrame(columns=["sample", "layer", "time", "unit", *KEYS])
        return pd.concat(parts, ignore_index=True)


def _index(sel: Sequence[int] | np.ndarray | slice | None, size: int) -> np.ndarray:
    if sel is None:
        return np.arange(size)
    if isinstance(sel, slice):
        return np.arange(size)[sel]
    return np.asarray(sel, dtype=np.int64).reshape(-1)
