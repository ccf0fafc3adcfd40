"""Benchmarks of the explain step: exact LSTM gate traces (and, later, SHAP attributions).

Each section is a function ``<name>_section(args) -> dict`` of plain numbers; ``main`` runs
the chosen sections, prints one table and writes ``--json PATH``.

gates: a batch of windows (default 4096 x 50 steps, 14 inputs) through a 2-layer x 64-unit
LSTM. Times are medians of repeated runs in one process after a warm-up; every ratio is
taken against a plain ``nn.LSTM`` forward on the same batch timed right before it in the
same repeat (so a busy machine slows both sides of a ratio alike); ``*_best`` ratios divide
the fastest run of each (noise only adds time, so they estimate a quiet machine):

- ``gates_max_abs_error``: the default trace against nn.LSTM on *all* windows (last layer's h
  at every step, h_n and c_n of every layer);
- ``gates_vs_forward_ratio``: full trace with the library's defaults / forward;
- ``loop_vs_forward_ratio``, ``recompute_vs_forward_ratio``: the two exact methods;
- ``naive_loop_vs_forward_ratio``: an ``nn.LSTMCell`` Python loop that recomputes and
  records the gates with fresh tensors each step, for contrast.

    .venv/bin/python benchmarks/explain.py [--json PATH] [--sections gates] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from explain_shap import add_arguments as add_shap_arguments
from explain_shap import shap_section
from torch import nn

from pdmlens.explain.gates import DEFAULT_CHUNK, extract_gates
from pdmlens.runtime.threads import compute_threads


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--sections", default="gates", help="comma-separated: gates, shap")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windows", type=int, default=4096)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--inputs", type=int, default=14)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="gate chunk size")
    p.add_argument("--naive-repeats", type=int, default=3)
    add_shap_arguments(p)  # the SHAP section's options (benchmarks/explain_shap.py)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers
def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    del out
    return elapsed


def naive_cell_loop(lstm: nn.LSTM, x: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """What one writes first: nn.LSTMCell per layer, the gates recomputed next to it each
    step into fresh tensors, lists stacked at the end."""
    hd = lstm.hidden_size
    cells = []
    for li in range(lstm.num_layers):
        cell = nn.LSTMCell(lstm.input_size if li == 0 else hd, hd)
        cell.load_state_dict(
            {k[:-3]: v for k, v in lstm.state_dict().items() if k.endswith(f"_l{li}")}
        )
        cells.append(cell)
    out = []
    inp = x
    with torch.inference_mode():
        for cell in cells:
            h = torch.zeros(x.shape[0], hd)
            c = torch.zeros(x.shape[0], hd)
            rec: dict[str, list[torch.Tensor]] = {k: [] for k in "ifgoch"}
            for t in range(x.shape[1]):
                pre = nn.functional.linear(
                    inp[:, t], cell.weight_ih, cell.bias_ih
                ) + nn.functional.linear(h, cell.weight_hh, cell.bias_hh)
                i, f, g, o = pre.chunk(4, dim=1)
                h, c = cell(inp[:, t], (h, c))
                for k, v in zip(
                    "ifgoch", (i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid(), c, h), strict=True
                ):
                    rec[k].append(v)
            layer = {k: torch.stack(v, dim=1).numpy() for k, v in rec.items()}
            out.append(layer)
            inp = torch.from_numpy(layer["h"])
    return out


def _full_error(trace: Any, lstm: nn.LSTM, x: torch.Tensor) -> float:
    with torch.inference_mode():
        out, (h_n, c_n) = lstm(x)
    err = float(np.abs(trace.layers[-1]["h"] - out.numpy()).max())
    for li in range(lstm.num_layers):
        err = max(err, float(np.abs(trace.layers[li]["h"][:, -1] - h_n[li].numpy()).max()))
        err = max(err, float(np.abs(trace.layers[li]["c"][:, -1] - c_n[li].numpy()).max()))
    return err


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------- sections
def gates_section(a: argparse.Namespace) -> dict[str, Any]:
    """Exact gate traces against a plain forward (see the module docstring)."""
    torch.manual_seed(a.seed)
    lstm = nn.LSTM(a.inputs, a.hidden, a.layers, batch_first=True).eval()
    x = torch.randn(a.windows, a.steps, a.inputs, generator=torch.Generator().manual_seed(1))

    def forward() -> Any:
        with torch.inference_mode():
            return lstm(x)

    def loop() -> Any:
        return extract_gates(lstm, x, chunk_size=a.chunk, method="loop")

    def recompute() -> Any:
        return extract_gates(lstm, x, chunk_size=a.chunk, method="recompute")

    def default() -> Any:
        return extract_gates(lstm, x)

    load_before = _load()
    first_call_s = _timed(default)  # fresh memory: page faults included
    trace = default()
    err = _full_error(trace, lstm, x)
    check_err = trace.max_abs_error
    del trace
    for fn in (forward, loop, recompute, forward):  # warm-up
        _timed(fn)
    ratios: dict[str, list[float]] = {"default": [], "loop": [], "recompute": []}
    times: dict[str, list[float]] = {"forward": [], "default": [], "loop": [], "recompute": []}
    for _ in range(a.repeats):
        for name, fn in (("default", default), ("loop", loop), ("recompute", recompute)):
            tf = _timed(forward)
            tm = _timed(fn)
            times["forward"].append(tf)
            times[name].append(tm)
            ratios[name].append(tm / tf)
    naive_ratios = []
    naive_times = []
    naive_trace = naive_cell_loop(lstm, x[:64])  # correctness of the contrast, cheaply
    naive_err = float(np.abs(naive_trace[-1]["h"] - forward()[0][:64].numpy()).max())
    for _ in range(a.naive_repeats):
        tf = _timed(forward)
        tn = _timed(lambda: naive_cell_loop(lstm, x))
        naive_times.append(tn)
        naive_ratios.append(tn / tf)
    med = statistics.median
    return {
        "windows": a.windows,
        "steps": a.steps,
        "inputs": a.inputs,
        "hidden": a.hidden,
        "layers": a.layers,
        "threads": torch.get_num_threads(),
        "chunk": a.chunk,
        "repeats": a.repeats,
        "gates_max_abs_error": err,
        "gates_check_max_abs_error": check_err,
        "gates_vs_forward_ratio": med(ratios["default"]),
        "loop_vs_forward_ratio": med(ratios["loop"]),
        "recompute_vs_forward_ratio": med(ratios["recompute"]),
        "naive_loop_vs_forward_ratio": med(naive_ratios),
        "naive_loop_max_abs_error": naive_err,
        "forward_s": med(times["forward"]),
        "gates_s": med(times["default"]),
        "loop_s": med(times["loop"]),
        "recompute_s": med(times["recompute"]),
        "naive_loop_s": med(naive_times),
        "gates_first_call_s": first_call_s,
        "gates_vs_forward_ratio_min": min(ratios["default"]),
        "gates_vs_forward_ratio_max": max(ratios["default"]),
        # noise only ever adds time: the ratio of the fastest runs estimates a quiet machine
        "gates_vs_forward_ratio_best": min(times["default"]) / min(times["forward"]),
        "recompute_vs_forward_ratio_best": min(times["recompute"]) / min(times["forward"]),
        "forward_best_s": min(times["forward"]),
        "gates_best_s": min(times["default"]),
        "trace_mib": a.layers * 6 * a.hidden * a.windows * a.steps * 4 / 2**20,
        "loadavg_before": load_before,
        "loadavg_after": _load(),
    }


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "gates": gates_section,
    "shap": shap_section,  # benchmarks/explain_shap.py
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    names = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        print(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    with compute_threads(a.threads):
        for name in names:
            results[name] = SECTIONS[name](a)
    width = max(len(k) for r in results.values() for k in r) + 2
    for name, res in results.items():
        print(f"== {name}")
        for k, v in res.items():
            print(f"  {k:<{width}} {_fmt(v)}")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
