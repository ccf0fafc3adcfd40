"""Are the attributions faithful? Deletion curves against a random order.

An attribution that names the sensors a prediction really rests on should move the
prediction most when those sensors are taken away. For each sample, the sensors are
deleted one at a time, in the order of that sample's |per-sensor attribution| (largest
first), and for k = 0..K we record ``mean |f(x) - f(x with its top-k sensors deleted)|``.

"Deleted" means replaced, over the whole window, by the baseline: the background's mean per
time step and sensor (:func:`baseline_from`). With the default background (random
training windows, most of them from machines still at the RUL cap) this is the average,
mostly healthy, fleet: deleting a sensor says "this sensor looks like it does on an average
machine". The same curve is drawn with random orders: ``n_random`` orders per sample, the
cyclic shifts (evenly spaced) of one seeded random permutation, so each order is a uniformly
random permutation and, when ``n_random`` equals the number of sensors, every sensor sits
at every position equally often (the random curve has no sampling noise for additive
models).

One number per model: ``area``, the mean over k = 1..K of (top-k move - random move), i.e.
the area between the curves normalised by K, in the model's output units (cycles of RUL);
``area_rel`` divides it by ``full_move``, the move when every sensor is deleted (the same for
both orders). ``ratio(k)`` is top-k move / random move at k, reported at k = the number of
true fault sensors where known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pdmlens.explain.attributions import Attribution, Progress, _tree_output

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]
"""Windows [N, W, F] (float32) -> predictions [N]."""


@dataclass
class DeletionResult:
    """Deletion curves of one model; arrays indexed by k = 0..K."""

    k: np.ndarray
    top: np.ndarray
    random: np.ndarray
    random_std: np.ndarray
    """std of the random curve across the ``n_random`` orders (mean over samples first)."""
    full_move: float
    n_random: int

    @property
    def k_max(self) -> int:
        return int(self.k[-1])

    @property
    def area(self) -> float:
        """mean over k = 1..K of (top[k] - random[k])."""
        if self.k_max == 0:
            return 0.0
        return float(np.mean(self.top[1:] - self.random[1:]))

    @property
    def area_rel(self) -> float:
        return self.area / self.full_move if self.full_move > 0 else float("nan")

    def ratio(self, k: int) -> float:
        """top[k] / random[k] (NaN when the random move is 0)."""
        if not 0 <= k <= self.k_max:
            raise ValueError(f"k must be in 0..{self.k_max}, got {k}")
        r = float(self.random[k])
        return float(self.top[k]) / r if r > 0 else float("nan")

    def summary(self, prefix: str = "", k_true: int | None = None) -> dict[str, float]:
        out = {
            f"{prefix}deletion_area": self.area,
            f"{prefix}deletion_area_rel": self.area_rel,
            f"{prefix}deletion_full_move": self.full_move,
        }
        if k_true is not None and 0 < k_true <= self.k_max:
            out[f"{prefix}deletion_ratio_at_{k_true}"] = self.ratio(k_true)
        return out


def baseline_from(background: np.ndarray) -> np.ndarray:
    """The background windows' mean per time step and sensor, [W, F] float32."""
    bg = np.asarray(background, dtype=np.float32)
    if bg.ndim != 3 or bg.shape[0] == 0:
        raise ValueError(f"background must be non-empty [B, W, F] windows, got {bg.shape}")
    return bg.mean(axis=0, dtype=np.float64).astype(np.float32)


def model_predictor(model: Any, batch_size: int = 1024) -> Predict:
    """The function attributions explain, as ``predict(windows) -> [N]``: a bare module's
    output; an LSTMEstimator's ``network_`` (cycles, or the horizon logit); a
    ForestEstimator's forest on its own window features (P(class 1) for a classifier);
    any other callable as it is."""
    net = model if isinstance(model, nn.Module) else getattr(model, "network_", None)
    if isinstance(net, nn.Module):
        p = next(iter(net.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")

        def predict_net(x: np.ndarray) -> np.ndarray:
            was_training = net.training
            net.eval()
            out = np.empty(len(x), dtype=np.float64)
            try:
                with torch.no_grad():
                    for s in range(0, len(x), batch_size):
                        xb = torch.from_numpy(np.ascontiguousarray(x[s : s + batch_size]))
                        out[s : s + len(xb)] = net(xb.to(device)).reshape(-1).double().cpu()
            finally:
                net.train(was_training)
            return out

        return predict_net
    forest = getattr(model, "model_", None)
    if forest is not None and hasattr(model, "transform"):

        def predict_forest(x: np.ndarray) -> np.ndarray:
            return _tree_output(forest, np.asarray(model.transform(x)))[0]

        return predict_forest
    if callable(model):
        return model
    raise TypeError(f"cannot predict with {type(model).__name__}")


def _random_orders(rng: np.random.Generator, n: int, f: int, n_random: int) -> np.ndarray:
    """[n_random, n, f]: evenly spaced cyclic shifts of one random permutation per sample."""
    perm = rng.permuted(np.tile(np.arange(f), (n, 1)), axis=1)
    shifts = (np.arange(n_random) * f) // n_random
    return np.stack([np.roll(perm, -int(s), axis=1) for s in shifts])


def deletion_curve(
    predict: Predict,
    x: np.ndarray,
    scores: np.ndarray | Attribution,
    baseline: np.ndarray,
    k_max: int | None = None,
    n_random: int = 5,
    seed: int = 0,
    batch_size: int = 256,
    callback: Progress | None = None,
) -> DeletionResult:
    """Deletion curves of ``predict`` on windows ``x`` [N, W, F].

    ``scores`` [N, F]: per-sample sensor importance (|.| is taken), or an Attribution
    (its |per-sensor| values); ``baseline`` [W, F] (see :func:`baseline_from`); ``k_max``
    default F. Costs K * (1 + n_random) predictions per sample, done in stacks of
    ``batch_size`` samples. Deterministic for a seed.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"x must be [N, W, F] windows, got {x.shape}")
    n, w, f = x.shape
    s = np.abs(scores.per_sensor() if isinstance(scores, Attribution) else np.asarray(scores))
    if s.shape != (n, f):
        raise ValueError(f"scores must be [N, F] = {(n, f)}, got {s.shape}")
    base = np.asarray(baseline, dtype=np.float32)
    if base.shape != (w, f):
        raise ValueError(f"baseline must be [W, F] = {(w, f)}, got {base.shape}")
    k_max = f if k_max is None else int(k_max)
    if not 0 <= k_max <= f:
        raise ValueError(f"k_max must be in 0..{f}, got {k_max}")
    if n_random < 1:
        raise ValueError("n_random must be >= 1")
    rng = np.random.default_rng(seed)
    top_sum = np.zeros(k_max + 1)
    rand_sum = np.zeros((n_random, k_max + 1))
    full_sum = 0.0
    base_pred = float(np.asarray(predict(base[None]), dtype=np.float64).reshape(-1)[0])
    chunk = max(1, min(batch_size, n))
    stack = np.empty((max(k_max, 1), chunk, w, f), dtype=np.float32)
    work = np.empty((chunk, w, f), dtype=np.float32)
    base_t = np.ascontiguousarray(base.T)  # [F, W]
    t0 = time.perf_counter()
    for a in range(0, n, chunk):
        xc = x[a : a + chunk]
        c = xc.shape[0]
        f0 = np.asarray(predict(xc), dtype=np.float64).reshape(-1)
        full_sum += float(np.abs(f0 - base_pred).sum())
        top = np.argsort(-s[a : a + c], axis=1, kind="stable")
        orders = [top, *_random_orders(rng, c, f, n_random)]
        rows = np.arange(c)
        cur = work[:c]
        for o, order in enumerate(orders):
            if k_max == 0:
                break
            np.copyto(cur, xc)
            for k in range(k_max):
                sens = order[:, k]
                cur[rows, :, sens] = base_t[sens]
                stack[k, :c] = cur
            pred = np.asarray(predict(stack[:, :c].reshape(k_max * c, w, f)), dtype=np.float64)
            move = np.abs(pred.reshape(k_max, c) - f0[None, :]).sum(axis=1)
            if o == 0:
                top_sum[1:] += move
            else:
                rand_sum[o - 1, 1:] += move
        log.info("deletion curves: %d/%d samples (%.1f s)", a + c, n, time.perf_counter() - t0)
        if callback is not None:
            callback(a + c, n)
    denom = max(n, 1)
    rand = rand_sum / denom
    return DeletionResult(
        k=np.arange(k_max + 1),
        top=top_sum / denom,
        random=rand.mean(axis=0),
        random_std=rand.std(axis=0),
        full_move=full_sum / denom,
        n_random=n_random,
    )


def deletion_for(
    model: Any,
    attr: Attribution,
    x: np.ndarray,
    background: np.ndarray,
    k_max: int | None = None,
    n_random: int = 5,
    seed: int = 0,
    batch_size: int = 256,
    callback: Progress | None = None,
) -> DeletionResult:
    """:func:`deletion_curve` of a model (see :func:`model_predictor`) ranked by its own
    attributions ``attr`` on the same windows ``x``, baseline from ``background``."""
    return deletion_curve(
        model_predictor(model),
        x,
        attr,
        baseline_from(background),
        k_max=k_max,
        n_random=n_random,
        seed=seed,
        batch_size=batch_size,
        callback=callback,
    )
