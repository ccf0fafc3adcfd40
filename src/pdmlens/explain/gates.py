"""Exact LSTM gate traces: every gate, cell and hidden state of an ``nn.LSTM``, per step.

``nn.LSTM`` hides its gates. This module recovers them *exactly* (to float32 rounding) for a
trained network and a batch of windows ``x [N, T, F]``, so that an analyst can look at which
units open, close or saturate. PyTorch's LSTM cell, per layer and step::

    i, f, g, o = split(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, 4)   # PyTorch's order
    i, f, o = sigmoid(i), sigmoid(f), sigmoid(o);  g = tanh(g)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

Two exact routes (``method=``):

- ``"loop"`` (default): a time loop of our own that computes and records the gates as it
  goes, writing straight into the trace's storage: per layer and step one ``mm`` for the
  input projection and one ``addmm_`` for the recurrent part (the bias rides on a constant-1
  column next to h), one in-place sigmoid over all four gates (g's pre-activation doubled
  in the weights, so ``tanh(z) = 2 sigmoid(2z) - 1``: a tanh costs ~4x a sigmoid on this
  CPU), then c and ``h = o * tanh(c)``. Its inputs are the outputs it just wrote, so nothing
  is computed twice and nothing is copied. (Projecting the input of all steps with one
  matmul up front measured no faster: it writes and re-reads [T, n, 4H] once more.)
- ``"recompute"``: run each layer with ``nn.LSTM`` (every h is then known), build all
  pre-gates of a chunk with one batched matmul ``[x_t, h_{t-1}] [W_ih, W_hh]^T + b``
  (``h_{t-1}`` the output shifted one step, ``h0`` at t=0), activate, and rebuild c by the
  elementwise scan. h is nn.LSTM's own output; ``|o * tanh(c) - h|`` is checked everywhere.

The loop is the faster one on a CPU: memory traffic, not arithmetic, bounds both, and the
loop touches each step's gates while they are still in cache (``benchmarks/explain.py``
measures both against a plain ``nn.LSTM`` forward). On a CPU the loop runs on tiles of
samples handed to ``threads`` persistent worker threads that each use one torch thread:
~9 small ops a step are each an OpenMP parallel region with a barrier otherwise, and on a
shared, busy machine every barrier waits for a descheduled thread (5-20x slower measured);
independent single-threaded tiles have no barriers and still use every core.

**Check.** Either way the trace is compared with ``nn.LSTM`` itself: per chunk, nn.LSTM is run
on ``check_samples`` windows spread evenly over the chunk (``check=True``, a few percent of a
forward) or on the whole chunk (``check="full"``), and the last layer's h at every step plus
h_n and c_n of every layer are compared. The largest absolute difference is stored on the
trace as ``max_abs_error`` (~1e-7 in float32); above ``tol`` a :class:`GateCheckError` is
raised.

**Memory.** Samples are processed in chunks of ``chunk_size``. :func:`extract_gates` returns
the whole trace (O(N T H) memory, ~0.6 GiB for 4096 windows x 50 steps x 2 layers x 64
units); :func:`iter_gate_chunks` yields one chunk at a time from a reused workspace, and
:func:`gate_summaries` keeps only per-sample reductions (last-step h and c, time-pooled gate
means) and saturation counts, for any N. Large buffers come from a small module-level pool:
a trace's storage returns to the pool when the last array viewing it is dropped, and the
next extraction of the same size reuses it instead of page-faulting fresh memory.
:func:`release_workspace` empties the pool; :func:`set_workspace_limit` bounds it.

**Layout.** A trace's arrays are views onto one time-major block
``[layer, time, sample, 6H + PAD]`` that the time loop writes in place (the layout and the
file schema: :mod:`pdmlens.explain.gate_trace`).

**Runtime.** Host blocks come from :mod:`pdmlens.runtime.buffers`; CPU tiles run on
:mod:`pdmlens.runtime.workers`, each holding one thread of the budget in
:mod:`pdmlens.runtime.threads`. This module holds the maths: the kernels, the check and the
chunking.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from pdmlens.errors import PdmlensError
from pdmlens.explain.gate_trace import GATE_NAMES, GATES, KEYS, GateTrace
from pdmlens.explain.saturation import SaturationCounter
from pdmlens.runtime import buffers
from pdmlens.runtime.buffers import release_workspace, set_workspace_limit, workspace_bytes
from pdmlens.runtime.threads import DEFAULT_THREADS, held_threads
from pdmlens.runtime.workers import run_single_threaded

__all__ = [
    "DEFAULT_CHECK_SAMPLES",
    "DEFAULT_CHUNK",
    "DEFAULT_TILE",
    "DEFAULT_TOL",
    "GATES",
    "GATE_NAMES",
    "KEYS",
    "METHODS",
    "GateCheckError",
    "GateSummary",
    "GateTrace",
    "extract_gates",
    "gate_summaries",
    "iter_gate_chunks",
    "release_workspace",
    "set_workspace_limit",
    "workspace_bytes",
]

log = logging.getLogger(__name__)

METHODS = ("loop", "recompute")
DEFAULT_CHUNK = 1024
DEFAULT_TILE = 512
DEFAULT_TOL = 1e-4
DEFAULT_CHECK_SAMPLES = 16

Method = Literal["loop", "recompute"]
Check = bool | Literal["full"]
HX = tuple[Any, Any] | None
Progress = Callable[[int, int], None] | None


class GateCheckError(PdmlensError):
    """The recorded trace disagrees with ``nn.LSTM`` by more than the tolerance."""


def _trace_from_block(block: np.ndarray, hidden: int, error: float) -> GateTrace:
    """Views [N, T, H] onto a time-major block [L, T, N, 6H + PAD] (module docstring)."""
    layers = []
    for li in range(block.shape[0]):
        lay = block[li]
        layers.append(
            {
                k: lay[:, :, j * hidden : (j + 1) * hidden].transpose(1, 0, 2)
                for j, k in enumerate(KEYS)
            }
        )
    return GateTrace(layers, block.shape[0], hidden, error)


PAD = 8
"""Extra floats per row of a trace block: a constant 1 that folds the bias into the time
loop's recurrent matmul, and padding that keeps rows 32-byte aligned."""


def _row(hidden: int) -> int:
    return 6 * hidden + PAD


def _host_block(n_layers: int, steps: int, n: int, hidden: int) -> np.ndarray:
    shape = (n_layers, steps, n, _row(hidden))
    return buffers.take(int(np.prod(shape))).reshape(shape)


# --------------------------------------------------------------------------- inputs
@dataclass
class _Net:
    """Weights of an nn.LSTM as the kernels need them (transposed views, summed bias)."""

    w_cat_t: list[torch.Tensor]
    """[W_ih, W_hh]^T: [F_l + H, 4H] (the recompute route's one matmul)."""
    bias: list[torch.Tensor]
    loop_w_ih: list[torch.Tensor]
    """W_ih^T with the g columns doubled (see :func:`_loop_chunk`)."""
    loop_w_hh: list[torch.Tensor]
    """[W_hh^T; b] with the g columns doubled: [H + 1, 4H]."""
    loop_bias: list[torch.Tensor]
    num_layers: int
    hidden: int
    input_size: int
    device: torch.device


def _validate(lstm: nn.Module) -> None:
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"expected a torch.nn.LSTM, got {type(lstm).__name__}")
    if lstm.bidirectional:
        raise ValueError(
            "bidirectional LSTMs are not supported: gate traces assume one "
            "direction (build the model with bidirectional=False)"
        )
    if getattr(lstm, "proj_size", 0):
        raise ValueError(
            f"LSTMs with projections (proj_size={lstm.proj_size}) are not "
            "supported: h would not equal o * tanh(c)"
        )
    dtype = lstm.weight_ih_l0.dtype
    if dtype != torch.float32:
        raise TypeError(f"gate traces need a float32 LSTM, this one is {dtype}")


def _net(lstm: nn.LSTM) -> _Net:
    _validate(lstm)
    hidden = int(lstm.hidden_size)
    w_cat, bias = [], []
    loop_w_ih, loop_w_hh, loop_bias = [], [], []
    for li in range(lstm.num_layers):
        wi = getattr(lstm, f"weight_ih_l{li}").detach()
        wh = getattr(lstm, f"weight_hh_l{li}").detach()
        if lstm.bias:
            b = getattr(lstm, f"bias_ih_l{li}").detach() + getattr(lstm, f"bias_hh_l{li}").detach()
        else:
            b = torch.zeros(4 * hidden, dtype=wi.dtype, device=wi.device)
        w_cat.append(torch.cat([wi, wh], dim=1).t())
        bias.append(b)
        # tanh(z) = 2 sigmoid(2z) - 1: doubling is exact in floating point, so the g block
        # can share one sigmoid with i, f, o (Sleef's tanh costs ~4x a sigmoid here)
        two = torch.ones(4 * hidden, dtype=wi.dtype, device=wi.device)
        two[2 * hidden : 3 * hidden] = 2.0
        loop_w_ih.append((wi * two[:, None]).t().contiguous())
        loop_w_hh.append(torch.cat([wh * two[:, None], (b * two)[:, None]], dim=1).t().contiguous())
        loop_bias.append(b * two)
    return _Net(
        w_cat,
        bias,
        loop_w_ih,
        loop_w_hh,
        loop_bias,
        int(lstm.num_layers),
        hidden,
        int(lstm.input_size),
        next(lstm.parameters()).device,
    )


def _as_input(x: Any, net: _Net) -> torch.Tensor | np.ndarray:
    """Check x is [N, T, F]; keep it where it is (chunks move to the device one at a time)."""
    if isinstance(x, torch.Tensor):
        arr: torch.Tensor | np.ndarray = x.detach()
    else:
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"x must be [samples, time, features], got shape {tuple(arr.shape)}")
    n, t, f = (int(s) for s in arr.shape)
    if f != net.input_size:
        raise ValueError(f"x has {f} features per step, the LSTM expects {net.input_size}")
    if n == 0 or t == 0:
        raise ValueError(f"x is empty (shape {tuple(arr.shape)})")
    return arr


def _as_hx(hx: HX, net: _Net, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if hx is None:
        return None
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ValueError("hx must be a pair (h0, c0) like nn.LSTM's initial state")
    want = (net.num_layers, n, net.hidden)
    out = []
    for name, v in zip(("h0", "c0"), hx, strict=True):
        t = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else np.asarray(v))
        if tuple(t.shape) != want:
            raise ValueError(
                f"{name} must have shape (num_layers, N, hidden) = {want}, got {tuple(t.shape)}"
            )
        out.append(t.to(device=net.device, dtype=torch.float32))
    return out[0], out[1]


def _chunk_to_device(
    x: torch.Tensor | np.ndarray, rows: slice, device: torch.device
) -> torch.Tensor:
    part = x[rows]
    if isinstance(part, np.ndarray):
        part = torch.from_numpy(np.asarray(part, dtype=np.float32))
    return part.to(device=device, dtype=torch.float32)


# --------------------------------------------------------------------------- kernels
def _loop_chunk(
    net: _Net,
    xc: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    block: torch.Tensor,
) -> None:
    """Fill ``block [L, T, n, 6H + PAD]`` (rows of each step contiguous) by a time loop.

    Step by step, and within a step layer by layer, so that layer l+1 reads the h that layer
    l has just written while it is still in cache. Per layer and step: the input projection
    (``mm``) and the recurrent part (``addmm_`` of ``[h_{t-1}, 1] [W_hh; b]``, the bias riding
    on the constant-1 column) write the pre-gates in place; one sigmoid covers i, f, o and
    the doubled g pre-activation, ``g = 2 s - 1`` recovers tanh; then c, and
    ``h = o * (2 sigmoid(2 c) - 1)`` (= o * tanh(c)). Every identity used is exact in real
    arithmetic; in float32 the trace stays within ~1e-7 of nn.LSTM.
    """
    hd = net.hidden
    minus_one = torch.full((), -1.0, dtype=block.dtype, device=block.device)
    block[:, :, :, 6 * hd] = 1.0  # the bias column
    for t in range(xc.shape[1]):
        for li in range(net.num_layers):
            lay = block[li]
            s = lay[t]
            pre = s[:, : 4 * hd]
            inp = xc[:, t] if li == 0 else block[li - 1, t, :, 5 * hd : 6 * hd]
            if t:
                torch.mm(inp, net.loop_w_ih[li], out=pre)
                pre.addmm_(lay[t - 1, :, 5 * hd : 6 * hd + 1], net.loop_w_hh[li])
            else:
                torch.addmm(net.loop_bias[li], inp, net.loop_w_ih[li], out=pre)
                if h0 is not None:
                    pre.addmm_(h0[li], net.loop_w_hh[li][:hd])
            pre.sigmoid_()
            g = s[:, 2 * hd : 3 * hd]
            torch.add(minus_one, g, alpha=2.0, out=g)
            c = s[:, 4 * hd : 5 * hd]
            c_prev = lay[t - 1, :, 4 * hd : 5 * hd] if t else (None if c0 is None else c0[li])
            if c_prev is None:
                torch.mul(s[:, :hd], g, out=c)
            else:
                torch.mul(s[:, hd : 2 * hd], c_prev, out=c)
                c.addcmul_(s[:, :hd], g)
            h = s[:, 5 * hd : 6 * hd]
            torch.mul(c, 2.0, out=h)
            h.sigmoid_()
            torch.add(minus_one, h, alpha=2.0, out=h)
            h.mul_(s[:, 3 * hd : 4 * hd])


class _Recompute:
    """Per-layer nn.LSTM runs plus batched pre-gates; workspaces kept across chunks."""

    def __init__(self, net: _Net, lstm: nn.LSTM) -> None:
        self.net = net
        self.layers = [_single_layer(lstm, li) for li in range(net.num_layers)]
        self._ws: dict[tuple[int, str], torch.Tensor] = {}  # per worker thread

    def _buf(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        numel = int(np.prod(shape))
        key = (threading.get_ident(), name)
        cur = self._ws.get(key)
        if cur is None or cur.numel() < numel:
            cur = torch.empty(numel, dtype=torch.float32, device=self.net.device)
            self._ws[key] = cur
        return cur[:numel].view(shape)

    def __call__(
        self,
        xc: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        block: torch.Tensor,
    ) -> float:
        """Fill ``block``; return max |o * tanh(c) - h| over the chunk."""
        net, hd = self.net, self.net.hidden
        n, steps, _ = xc.shape
        err = torch.zeros((), dtype=torch.float32, device=xc.device)  # no sync per step
        inp = xc
        for li in range(net.num_layers):
            lay = block[li]
            f_in = inp.shape[2]
            state = (
                None
                if h0 is None or c0 is None
                else (h0[li : li + 1].contiguous(), c0[li : li + 1].contiguous())
            )
            out, _ = self.layers[li](inp, state)  # [n, T, H], nn.LSTM's own h
            lay[:, :, 5 * hd : 6 * hd].copy_(out.transpose(0, 1))
            # [x_t, h_{t-1}] time-major, then one matmul for every pre-gate of the chunk
            xh = self._buf("xh", (steps, n, f_in + hd))
            xh[:, :, :f_in].copy_(inp.transpose(0, 1))
            xh[1:, :, f_in:].copy_(out[:, :-1].transpose(0, 1))
            if h0 is None:
                xh[0, :, f_in:].zero_()
            else:
                xh[0, :, f_in:].copy_(h0[li])
            pre = self._buf("pre", (steps, n, 4 * hd))
            torch.addmm(
                net.bias[li],
                xh.view(steps * n, f_in + hd),
                net.w_cat_t[li],
                out=pre.view(steps * n, 4 * hd),
            )
            torch.sigmoid(pre[:, :, : 2 * hd], out=lay[:, :, : 2 * hd])
            torch.tanh(pre[:, :, 2 * hd : 3 * hd], out=lay[:, :, 2 * hd : 3 * hd])
            torch.sigmoid(pre[:, :, 3 * hd :], out=lay[:, :, 3 * hd : 4 * hd])
            tmp = self._buf("tmp", (n, hd))
            for t in range(steps):
                s = lay[t]
                c = s[:, 4 * hd : 5 * hd]
                c_prev = lay[t - 1, :, 4 * hd : 5 * hd] if t else (None if c0 is None else c0[li])
                if c_prev is None:
                    torch.mul(s[:, :hd], s[:, 2 * hd : 3 * hd], out=c)
                else:
                    torch.mul(s[:, hd : 2 * hd], c_prev, out=c)
                    c.addcmul_(s[:, :hd], s[:, 2 * hd : 3 * hd])
                torch.tanh(c, out=tmp)
                tmp.mul_(s[:, 3 * hd : 4 * hd]).sub_(s[:, 5 * hd : 6 * hd]).abs_()
                # NaN on both sides (a NaN window) agrees; nn.LSTM's h is the reference
                torch.maximum(err, tmp.nan_to_num_(nan=0.0).max(), out=err)
            inp = out
        return _finite_max_abs(err)


def _single_layer(lstm: nn.LSTM, li: int) -> nn.LSTM:
    """A one-layer nn.LSTM sharing layer ``li``'s weights (built on the meta device, so the
    global random generator is not touched)."""
    f_in = lstm.input_size if li == 0 else lstm.hidden_size
    layer = nn.LSTM(f_in, lstm.hidden_size, 1, bias=lstm.bias, batch_first=True, device="meta")
    layer = layer.to_empty(device=next(lstm.parameters()).device)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
            getattr(layer, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{li}"))
    layer.flatten_parameters()
    return layer.eval()


def _finite_max_abs(d: torch.Tensor) -> float:
    """max |d|, with NaN counted as infinitely wrong."""
    if d.numel() == 0:
        return 0.0
    m = float(d.abs().max())
    return float("inf") if m != m else m


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|; positions where both are NaN agree, a NaN on one side only does not."""
    d = (a - b).abs()
    both = torch.isnan(a) & torch.isnan(b)
    if bool(both.any()):
        d = d.masked_fill(both, 0.0)
    return _finite_max_abs(d)


def _check_rows(n: int, k: int) -> torch.Tensor:
    """``k`` row indices spread evenly over a chunk of ``n`` (so every tile is sampled)."""
    if k >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long().unique()


def _check_chunk(
    lstm: nn.LSTM,
    xc: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    block: torch.Tensor,
    k: int,
) -> float:
    """Run nn.LSTM on ``k`` of the chunk's windows (all when ``k`` >= chunk); max |difference|
    to the trace (last layer's h at every step, h_n and c_n of every layer)."""
    hd = int(lstm.hidden_size)
    n = xc.shape[0]
    idx = None if k >= n else _check_rows(n, k).to(xc.device)
    xk = xc if idx is None else xc.index_select(0, idx)
    state = None
    if h0 is not None and c0 is not None:
        state = (
            (h0 if idx is None else h0.index_select(1, idx)).contiguous(),
            (c0 if idx is None else c0.index_select(1, idx)).contiguous(),
        )
    was_training = lstm.training
    lstm.eval()  # dropout between layers is a training-time thing
    try:
        if lstm.batch_first:
            out, (h_n, c_n) = lstm(xk, state)
        else:
            out, (h_n, c_n) = lstm(xk.transpose(0, 1), state)
            out = out.transpose(0, 1)
    finally:
        lstm.train(was_training)
    sub = block if idx is None else block.index_select(2, idx)
    err = _max_abs_diff(sub[-1, :, :, 5 * hd : 6 * hd], out.transpose(0, 1))
    err = max(err, _max_abs_diff(sub[:, -1, :, 5 * hd : 6 * hd], h_n))
    return max(err, _max_abs_diff(sub[:, -1, :, 4 * hd : 5 * hd], c_n))


# --------------------------------------------------------------------------- runner
class _Runner:
    """Computes one chunk after another into either a given host block (CPU) or a device
    workspace that is then copied to the host."""

    def __init__(
        self,
        lstm: nn.LSTM,
        x: Any,
        hx: HX,
        method: Method,
        check: Check,
        tol: float,
        check_samples: int,
        threads: int | None = None,
        tile: int = DEFAULT_TILE,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if check not in (True, False, "full"):
            raise ValueError(f"check must be True, False or 'full', got {check!r}")
        self.lstm = lstm
        self.net = _net(lstm)
        self.x = _as_input(x, self.net)
        self.n, self.steps = int(self.x.shape[0]), int(self.x.shape[1])
        self.hx = _as_hx(hx, self.net, self.n)
        self.method = method
        self.check = check
        self.tol = float(tol)
        self.check_samples = max(int(check_samples), 1)
        self.recompute = _Recompute(self.net, lstm) if method == "recompute" else None
        self.on_cpu = self.net.device.type == "cpu"
        self.threads = (
            max(1, held_threads() or DEFAULT_THREADS) if threads is None else max(1, threads)
        )
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        self.tile = int(tile)

    def chunk(self, rows: slice, block: torch.Tensor) -> float:
        """Fill ``block [L, T, n, 6H + PAD]`` (on the LSTM's device) for ``rows``; return the
        check's error (0.0 when unchecked)."""
        xc = _chunk_to_device(self.x, rows, self.net.device)
        h0 = c0 = None
        if self.hx is not None:
            h0, c0 = self.hx[0][:, rows], self.hx[1][:, rows]
        n = xc.shape[0]
        k = n if self.check == "full" else min(self.check_samples, n)
        errors = [0.0]

        def check() -> None:
            errors.append(_check_chunk(self.lstm, xc, h0, c0, block, k))

        # tiles feed the CPU workers; an accelerator takes the whole chunk at once
        tiles = _chunks(n, self.tile) if self.on_cpu else [slice(0, n)]
        workers = min(self.threads, len(tiles))
        if workers <= 1:
            if self.recompute is not None:
                errors.append(self.recompute(xc, h0, c0, block))
            else:
                for tl in tiles:
                    _loop_chunk(self.net, xc[tl], _rows(h0, tl), _rows(c0, tl), block[:, :, tl])
            if self.check:
                check()
        else:
            run_single_threaded(
                [
                    _inference(self._tiles_task(xc, h0, c0, block, tiles[w::workers], errors))
                    for w in range(workers)
                ]
            )
            if self.check:  # single-threaded like the tiles: no barriers on a busy CPU
                run_single_threaded([_inference(check)])
        err = max(errors)
        if self.check and not err <= self.tol:
            raise GateCheckError(
                f"gate trace differs from nn.LSTM by {err:.3g} (> tol {self.tol:g}) on "
                f"samples {rows.start}..{rows.stop - 1}"
            )
        return err

    def _tiles_task(
        self,
        xc: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        block: torch.Tensor,
        tiles: list[slice],
        errors: list[float],
    ) -> Callable[[], None]:
        def task() -> None:
            for tl in tiles:
                args = (xc[tl], _rows(h0, tl), _rows(c0, tl), block[:, :, tl])
                if self.recompute is not None:
                    errors.append(self.recompute(*args))  # list.append is atomic
                else:
                    _loop_chunk(self.net, *args)

        return task


def _inference(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` under torch's inference mode in whichever thread runs it (the mode is
    thread-local)."""

    def task() -> None:
        with torch.inference_mode():
            fn()

    return task


def _rows(state: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return None if state is None else state[:, rows]


def _chunks(n: int, chunk_size: int) -> list[slice]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [slice(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def extract_gates(
    lstm: nn.LSTM,
    x: torch.Tensor | np.ndarray,
    hx: HX = None,
    chunk_size: int = DEFAULT_CHUNK,
    *,
    method: Method = "loop",
    check: Check = True,
    tol: float = DEFAULT_TOL,
    check_samples: int = DEFAULT_CHECK_SAMPLES,
    threads: int | None = None,
    tile: int = DEFAULT_TILE,
    progress: Progress = None,
) -> GateTrace:
    """The full gate trace of ``lstm`` on windows ``x [N, T, F]``.

    ``hx=(h0, c0)``, each [num_layers, N, H], is the initial state as nn.LSTM takes it
    (zeros when None). Works on the LSTM's device; the trace is always on the host (numpy).
    ``check``: True compares ``check_samples`` windows of every chunk (spread evenly over
    it) with nn.LSTM, "full" every window, False none; a difference above ``tol`` raises
    :class:`GateCheckError`. ``progress(done, total)`` is called after each chunk.

    On a CPU each chunk is split into tiles of ``tile`` samples computed by ``threads``
    single-threaded workers (default: the count the caller holds in
    :func:`pdmlens.runtime.threads.compute_threads`, else the process default; 1 = in the
    calling thread).
    """
    run = _Runner(lstm, x, hx, method, check, tol, check_samples, threads, tile)
    net = run.net
    slices = _chunks(run.n, chunk_size)
    host = _host_block(net.num_layers, run.steps, run.n, net.hidden)
    host_t = torch.from_numpy(host)
    dev_ws = (
        None
        if run.on_cpu
        else torch.empty(
            (net.num_layers, run.steps, min(chunk_size, run.n), _row(net.hidden)),
            dtype=torch.float32,
            device=net.device,
        )
    )
    err = 0.0
    with torch.inference_mode():
        for ci, rows in enumerate(slices):
            if dev_ws is None:
                err = max(err, run.chunk(rows, host_t[:, :, rows]))
            else:
                ws = dev_ws[:, :, : rows.stop - rows.start]
                err = max(err, run.chunk(rows, ws))
                host_t[:, :, rows].copy_(ws)
            log.debug(
                "gates: chunk %d/%d (samples %d..%d)",
                ci + 1,
                len(slices),
                rows.start,
                rows.stop - 1,
            )
            if progress is not None:
                progress(rows.stop, run.n)
    trace = _trace_from_block(host, net.hidden, err)
    trace.meta.update(method=method, check=check, chunk_size=int(chunk_size))
    return trace


def iter_gate_chunks(
    lstm: nn.LSTM,
    x: torch.Tensor | np.ndarray,
    hx: HX = None,
    chunk_size: int = DEFAULT_CHUNK,
    *,
    method: Method = "loop",
    check: Check = True,
    tol: float = DEFAULT_TOL,
    check_samples: int = DEFAULT_CHECK_SAMPLES,
    threads: int | None = None,
    tile: int = DEFAULT_TILE,
    copy: bool = False,
) -> Iterator[tuple[slice, GateTrace]]:
    """Yield ``(rows, trace_of_rows)`` chunk by chunk, for any number of windows.

    ``x`` may be anything sliceable along its first axis to [n, T, F] (a tensor, an array,
    an ``np.memmap``). The yielded traces view one reused workspace: they are valid until
    the next chunk is requested, unless ``copy=True`` (each then owns its memory). Other
    arguments as in :func:`extract_gates`.
    """
    run = _Runner(lstm, x, hx, method, check, tol, check_samples, threads, tile)
    net = run.net
    size = min(int(chunk_size), run.n)
    slices = _chunks(run.n, chunk_size)
    host = _host_block(net.num_layers, run.steps, size, net.hidden)
    host_t = torch.from_numpy(host)
    dev_ws = (
        None
        if run.on_cpu
        else torch.empty(
            (net.num_layers, run.steps, size, _row(net.hidden)),
            dtype=torch.float32,
            device=net.device,
        )
    )
    for rows in slices:
        m = rows.stop - rows.start
        with torch.inference_mode():
            if dev_ws is None:
                err = run.chunk(rows, host_t[:, :, :m])
            else:
                err = run.chunk(rows, dev_ws[:, :, :m])
                host_t[:, :, :m].copy_(dev_ws[:, :, :m])
        trace = _trace_from_block(host[:, :, :m], net.hidden, err)
        trace.meta.update(method=method, check=check, chunk_size=int(chunk_size))
        yield rows, (trace.contiguous() if copy else trace)


# --------------------------------------------------------------------------- summaries
@dataclass
class GateSummary:
    """Per-sample reductions of a gate trace, built chunk by chunk.

    ``last[l][k]`` is [N, H]: state ``k`` (c or h) of layer ``l`` at the last step.
    ``mean[l][k]`` is [N, H]: the time-mean of gate ``k`` (i, f, g, o) of layer ``l``.
    ``saturation`` is the per-unit saturation table (see :mod:`pdmlens.explain.saturation`).
    """

    last: list[dict[str, np.ndarray]]
    mean: list[dict[str, np.ndarray]]
    saturation: pd.DataFrame
    max_abs_error: float
    num_layers: int
    hidden_size: int


def gate_summaries(
    lstm: nn.LSTM,
    x: torch.Tensor | np.ndarray,
    hx: HX = None,
    chunk_size: int = DEFAULT_CHUNK,
    *,
    method: Method = "loop",
    check: Check = True,
    tol: float = DEFAULT_TOL,
    check_samples: int = DEFAULT_CHECK_SAMPLES,
    threads: int | None = None,
    tile: int = DEFAULT_TILE,
    low: float = 0.1,
    high: float = 0.9,
    saturation_gates: Sequence[str] = ("i", "f", "o"),
    progress: Progress = None,
) -> GateSummary:
    """Last-step states, time-pooled gate means and saturation counts without keeping the
    full trace: memory is O(N H) plus one chunk's trace."""
    counter = SaturationCounter(low=low, high=high, gates=saturation_gates)
    last: list[dict[str, np.ndarray]] | None = None
    mean: list[dict[str, np.ndarray]] | None = None
    err = 0.0
    n_total = None
    for rows, trace in iter_gate_chunks(
        lstm,
        x,
        hx,
        chunk_size,
        method=method,
        check=check,
        tol=tol,
        check_samples=check_samples,
        threads=threads,
        tile=tile,
    ):
        if last is None or mean is None:
            n_total = len(x)
            shape = (n_total, trace.hidden_size)
            last = [
                {k: np.empty(shape, np.float32) for k in ("c", "h")}
                for _ in range(trace.num_layers)
            ]
            mean = [
                {k: np.empty(shape, np.float32) for k in GATES} for _ in range(trace.num_layers)
            ]
        for li, layer in enumerate(trace.layers):
            for k in ("c", "h"):
                last[li][k][rows] = layer[k][:, -1]
            for k in GATES:
                # time-major storage: sum over the time axis of the underlying block
                mean[li][k][rows] = torch.from_numpy(layer[k]).mean(dim=1).numpy()
        counter.update(trace)
        err = max(err, trace.max_abs_error)
        if progress is not None and n_total is not None:
            progress(rows.stop, n_total)
    assert last is not None and mean is not None  # x is not empty (checked by the runner)
    return GateSummary(last, mean, counter.frame(), err, len(last), int(last[0]["h"].shape[1]))
