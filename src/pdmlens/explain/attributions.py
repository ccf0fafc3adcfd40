"""SHAP attributions for the LSTM and the random forest, in one shape convention.

Both models are explained in the analyst's vocabulary, sensors, so their explanations can be
compared, checked for faithfulness and scored against the simulator's ground truth:

- LSTM: expected gradients (Erion et al. 2021, the method behind ``shap.GradientExplainer``)
  on windows, giving ``values`` [sample, time, sensor]. For each window ``x`` and ``nsamples``
  draws of a background window ``b`` and ``alpha ~ U(0, 1)``, the attribution is the mean of
  ``grad f(b + alpha (x - b)) * (x - b)``. ``method="eg"`` (the default) is our own torch
  implementation of exactly that definition, with the draws of many windows stacked into one
  forward/backward pass (``shap.GradientExplainer`` loops over windows and draws in Python,
  one small pass per window). It draws with less variance than shap does but with the same
  expectation: the background rows are taken in random order without replacement (each row
  used equally often when ``nsamples`` is a multiple of the background size) and draw ``k``
  takes ``alpha`` from the stratum ``[k, k+1) / nsamples``. Checked against the closed form
  of a separable model and against shap.GradientExplainer (tests/test_attributions.py).
  The cost is ``nsamples`` forward + backward passes of the network per window and nothing
  measurable besides; FD001-sized model (2 x 64, window 30), 1 thread on this shared CPU:
  ~12 ms per window at 32 draws with a completeness gap of ~5.6 %, where
  shap.GradientExplainer took ~60 ms at its default 200 draws (gap ~15 %); see
  benchmarks/explain_shap.py and :func:`torch_threads` (2 threads were 5x slower here).
  ``method="shap"`` runs ``shap.GradientExplainer`` itself (slow; for validation).
  shap's DeepExplainer is not offered: it mishandles ``nn.LSTM``.
- Forest: ``shap.TreeExplainer`` on the window features ``<sensor>__<stat>``, summed back
  to sensors with :func:`pdmlens.models.features.fold_to_sensors`, giving ``values``
  [sample, sensor] (the per-feature values are kept in ``feature_values``). Both of
  shap's exact algorithms are offered. ``interventional`` (the default when a background
  is given) explains against the background's window features, the same reference as the
  LSTM's, so the two models answer the same question and can be compared; its base value
  is the mean prediction over the background, and with a small background it was also the
  faster one here (O(trees x background x depth) per row against O(trees x leaves x
  depth^2)). ``tree_path_dependent`` needs no background: it explains against the
  training data the trees saw (base = the cover-weighted mean output).

The background. Attributions answer "why does this prediction differ from the background's
average prediction?", so the background decides the question. The pipeline's default
(``ExplainConfig.background_kind = "healthy"``) is healthy machines: training windows at
the RUL cap (label 0 for the horizon task), see :func:`healthy_mask`; the attributions then
say why a machine looks less healthy than a healthy one, and a sensor that behaves as on a
healthy machine gets about zero. (Against random windows, which include dying machines of
other fault modes, a sensor that merely looks normal earns credit for "not failing that
way", which blurs the picture; on the simulator the healthy background named the true fault
sensors more often for both models: benchmarks/explain_shap.py.)

Completeness (local accuracy): SHAP values should satisfy
``sum(values) + base_value == f(x)``. Expected gradients only does so in expectation, so
every Attribution reports how far it is off: ``residual`` [sample] is the signed
``sum(values) + base_value - f(x)`` and ``completeness_gap`` is the relative summary
``mean |residual| / mean |f(x) - base_value|``: the typical error of the attribution's total
as a fraction of the typical amount it has to explain (0 = exact; TreeExplainer
tree_path_dependent ~1e-15; interventional ~3e-4 on FD001, where a few rows miss by up to
half a cycle: shap and sklearn disagree on a few split comparisons, we report it as is).

The LSTM explained is ``network_`` as it is: RUL in cycles for the rul task, the failure
*logit* (not the probability) for the horizon task. On CUDA, cuDNN's RNN backward refuses
eval mode, so gradients are taken with cuDNN switched off (the model stays in eval mode,
dropout off).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pdmlens.runtime.threads import compute_threads

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Progress callback: ``callback(done, total)`` samples, called after every batch."""

LSTM_METHODS = ("eg", "shap")
TREE_PERTURBATIONS = ("tree_path_dependent", "interventional")


# --------------------------------------------------------------------------- result
@dataclass
class Attribution:
    """Attributions of one model on N samples.

    ``values``: [N, T, F] (time x sensor, LSTM) or [N, F] (sensor, forest), in the model's
    output units; ``base_value``: E[f] over the background (see module docstring);
    ``predictions``: f(x) [N]; ``inputs``: each sample's sensor readings at its last time
    step [N, F] (colours the dot plot; None when unknown); ``feature_values`` /
    ``feature_names``: the forest's unfolded per-feature attributions.
    """

    values: np.ndarray
    sensor_names: list[str]
    base_value: float
    predictions: np.ndarray
    model: str
    method: str
    inputs: np.ndarray | None = None
    feature_values: np.ndarray | None = None
    feature_names: list[str] | None = None
    seconds: float = float("nan")
    """wall time of the attribution proper (setup excluded, see ``settings``)."""
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values)
        self.predictions = np.asarray(self.predictions, dtype=np.float64).reshape(-1)
        if self.values.ndim not in (2, 3):
            raise ValueError(f"values must be [N, F] or [N, T, F], got {self.values.shape}")
        if self.values.shape[-1] != len(self.sensor_names):
            raise ValueError(
                f"values have {self.values.shape[-1]} sensors but "
                f"{len(self.sensor_names)} names were given"
            )
        if self.values.shape[0] != self.predictions.shape[0]:
            raise ValueError("values and predictions differ in their number of samples")
        self.sensor_names = [str(s) for s in self.sensor_names]

    # ---------------------------------------------------------------- views
    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def has_time(self) -> bool:
        return self.values.ndim == 3

    def per_sensor(self) -> np.ndarray:
        """[N, F]: each sensor's attribution per sample (summed over time for the LSTM)."""
        return self.values.sum(axis=1) if self.has_time else self.values

    def per_time(self) -> np.ndarray:
        """[N, T]: each time step's attribution per sample (summed over sensors)."""
        if not self.has_time:
            raise ValueError(f"the {self.model} attributions have no time axis")
        return self.values.sum(axis=2)

    def global_importance(self) -> pd.Series:
        """Mean |per-sensor attribution| over samples, indexed by sensor (sensor order)."""
        return pd.Series(
            np.abs(self.per_sensor()).mean(axis=0), index=self.sensor_names, name=self.model
        )

    def ranking(self) -> np.ndarray:
        """[N, F] sensor indices per sample, most important (largest |attribution|) first;
        ties keep sensor order."""
        return np.argsort(-np.abs(self.per_sensor()), axis=1, kind="stable")

    # ---------------------------------------------------------------- completeness
    @property
    def residual(self) -> np.ndarray:
        """[N] signed ``sum(values) + base_value - f(x)`` per sample."""
        total = self.values.reshape(self.n_samples, -1).sum(axis=1, dtype=np.float64)
        return total + self.base_value - self.predictions

    @property
    def completeness_gap(self) -> float:
        """``mean |residual| / mean |f(x) - base_value|`` (0 when nothing is to explain
        and nothing is off; inf when nothing is to explain but the attributions are off)."""
        num = float(np.mean(np.abs(self.residual))) if self.n_samples else 0.0
        den = float(np.mean(np.abs(self.predictions - self.base_value))) if self.n_samples else 0.0
        if den == 0.0:
            return 0.0 if num == 0.0 else float("inf")
        return num / den

    @property
    def ms_per_sample(self) -> float:
        return 1e3 * self.seconds / max(self.n_samples, 1)

    def subset(self, idx: np.ndarray | Sequence[int]) -> Attribution:
        """The same attributions for the samples ``idx`` only."""
        idx = np.asarray(idx)
        return Attribution(
            values=self.values[idx],
            sensor_names=list(self.sensor_names),
            base_value=self.base_value,
            predictions=self.predictions[idx],
            model=self.model,
            method=self.method,
            inputs=None if self.inputs is None else self.inputs[idx],
            feature_values=None if self.feature_values is None else self.feature_values[idx],
            feature_names=self.feature_names,
            seconds=float("nan"),
            settings=dict(self.settings),
        )

    def to_frame(self, level: str = "sensor") -> pd.DataFrame:
        """Long table for storage: ``sample, sensor, attribution`` (``level="sensor"``) or
        ``sample, time, sensor, attribution`` (``level="time"``, LSTM only; time 0 is the
        window's first step)."""
        n = self.n_samples
        if level == "sensor":
            v = self.per_sensor()
            f = v.shape[1]
            return pd.DataFrame(
                {
                    "sample": np.repeat(np.arange(n), f),
                    "sensor": np.tile(np.asarray(self.sensor_names, dtype=object), n),
                    "attribution": v.reshape(-1).astype(np.float32),
                }
            )
        if level == "time":
            if not self.has_time:
                raise ValueError(f"the {self.model} attributions have no time axis")
            _, t, f = self.values.shape
            return pd.DataFrame(
                {
                    "sample": np.repeat(np.arange(n), t * f),
                    "time": np.tile(np.repeat(np.arange(t), f), n),
                    "sensor": np.tile(np.asarray(self.sensor_names, dtype=object), n * t),
                    "attribution": self.values.reshape(-1).astype(np.float32),
                }
            )
        raise ValueError(f"level must be 'sensor' or 'time', got {level!r}")

    def summary(self) -> dict[str, float]:
        """Headline numbers for logging."""
        return {
            f"{self.model}_completeness_gap": self.completeness_gap,
            f"{self.model}_mean_abs_residual": float(np.mean(np.abs(self.residual))),
            f"{self.model}_base_value": float(self.base_value),
            f"{self.model}_ms_per_sample": self.ms_per_sample,
        }


# --------------------------------------------------------------------------- helpers
def background_indices(
    n_available: int, size: int, seed: int = 0, among: np.ndarray | None = None
) -> np.ndarray:
    """``size`` distinct window indices drawn at random (sorted), all when fewer exist.

    ``among``: a boolean mask [n_available] of the windows to draw from, e.g. the healthy
    ones (``targets >= rul_cap``: see :func:`healthy_mask`); when it selects none, every
    window is eligible (logged).
    """
    if n_available <= 0:
        raise ValueError("no windows to draw a background from")
    pool = np.arange(n_available)
    if among is not None:
        among = np.asarray(among, dtype=bool)
        if among.shape != (n_available,):
            raise ValueError("among must be a boolean mask with one entry per window")
        if among.any():
            pool = pool[among]
        else:
            log.warning("no window qualifies for the background: drawing from all windows")
    rng = np.random.default_rng(seed)
    if size >= len(pool):
        return pool.copy()
    return np.sort(rng.choice(pool, size=size, replace=False))


def healthy_mask(
    targets: np.ndarray, task: str = "rul", rul_cap: float | None = None
) -> np.ndarray:
    """Windows of machines still healthy: RUL at the cap (rul task; the largest target when
    no cap is given) or label 0 (horizon task)."""
    from pdmlens.task import Task

    return Task.from_name(task).healthy_mask(targets, rul_cap)


def select_background(
    windows: Any,
    size: int,
    kind: str = "healthy",
    seed: int = 0,
    task: str = "rul",
    rul_cap: float | None = None,
) -> np.ndarray:
    """``size`` background windows [size, W, F] (a copy) from a WindowDataset (normally the
    training windows): ``kind="healthy"`` draws among :func:`healthy_mask` windows (needs
    targets), ``"random"`` among all."""
    among = None
    if kind == "healthy":
        among = healthy_mask(windows.window_targets, task, rul_cap)
    elif kind != "random":
        raise ValueError(f"background kind must be 'healthy' or 'random', got {kind!r}")
    return windows.batch(background_indices(len(windows), size, seed, among))[0].copy()


def _report(callback: Progress | None, done: int, total: int, what: str, t0: float) -> None:
    log.info("%s: %d/%d samples (%.1f s)", what, done, total, time.perf_counter() - t0)
    if callback is not None:
        callback(done, total)


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, np.float32))
    return t.detach().to(device=device, dtype=torch.float32)


def _network(model: Any) -> tuple[nn.Module, list[str] | None]:
    """An nn.Module and its feature names from an LSTMEstimator or a bare module."""
    if isinstance(model, nn.Module):
        return model, None
    net = getattr(model, "network_", None)
    if net is None:
        from pdmlens.errors import NotFittedError

        raise NotFittedError(f"{type(model).__name__} is not fitted (no network_)")
    names = getattr(model, "feature_names_in_", None)
    return net, None if names is None else [str(n) for n in names]


def torch_threads(num_threads: int | None) -> contextlib.AbstractContextManager[int]:
    """``num_threads`` CPU threads held for the block (None: the process default), through
    the one thread budget :func:`pdmlens.runtime.threads.compute_threads`.

    On a CPU shared with other busy processes, 1 thread can be many times faster for LSTMs:
    every time step of nn.LSTM is a parallel region, and with 2 threads each one waits at a
    barrier for a core another process holds (measured here: ~2.5 s of fixed cost per
    forward/backward pass with 2 threads, none with 1)."""
    return compute_threads(num_threads)


@contextlib.contextmanager
def _grad_mode(net: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode (dropout off) with gradients on; cuDNN off on CUDA (its RNN backward
    needs train mode). The module's mode and cuDNN flag come back afterwards."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            if device.type == "cuda":
                with torch.backends.cudnn.flags(enabled=False):
                    yield
            else:
                yield
    finally:
        net.train(was_training)


def _net_device(net: nn.Module) -> torch.device:
    p = next(iter(net.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _forward(net: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in range(0, x.shape[0], batch_size):
        out[s : s + batch_size] = net(x[s : s + batch_size]).reshape(-1).double().cpu().numpy()
    return out


def eg_draws(
    rng: np.random.Generator, n_windows: int, nsamples: int, n_background: int
) -> tuple[np.ndarray, np.ndarray]:
    """The expected-gradients draws of ``n_windows`` windows: background indices and alphas,
    both [n_windows, nsamples].

    Background rows come in random order without replacement, cycling through the whole
    background again (a fresh order each cycle) when ``nsamples`` exceeds it; draw ``k``
    takes ``alpha`` uniform in ``[k, k+1) / nsamples``. Every draw's background row is
    uniform over the background and independent of its alpha stratum, so the mean over the
    draws has the same expectation as with i.i.d. draws, with less variance.
    """
    cycles = -(-nsamples // n_background)
    order = np.tile(np.arange(n_background, dtype=np.int64), (n_windows, cycles, 1))
    order = rng.permuted(order, axis=2).reshape(n_windows, cycles * n_background)[:, :nsamples]
    alpha = (np.arange(nsamples) + rng.random((n_windows, nsamples))) / nsamples
    return np.ascontiguousarray(order), alpha.astype(np.float32)


# --------------------------------------------------------------------------- LSTM
def expected_gradients(
    net: nn.Module,
    x: np.ndarray | torch.Tensor,
    background: np.ndarray | torch.Tensor,
    nsamples: int = 32,
    batch_size: int = 64,
    seed: int = 0,
    callback: Progress | None = None,
) -> np.ndarray:
    """Expected-gradients attributions [N, T, F] (float32) of ``net`` ([N, T, F] -> [N]).

    ``batch_size`` windows are explained per pass: their ``batch_size * nsamples`` path
    points go through one forward and one backward. Deterministic for a seed on CPU, and
    the same whatever ``batch_size`` (up to float rounding).
    """
    if nsamples < 1:
        raise ValueError("nsamples must be >= 1")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    device = _net_device(net)
    xt = _as_tensor(x, device)
    bg = _as_tensor(background, device)
    if xt.ndim != 3 or bg.ndim != 3 or xt.shape[1:] != bg.shape[1:]:
        raise ValueError(
            f"x {tuple(xt.shape)} and background {tuple(bg.shape)} must be [N, T, F] windows "
            "of the same length and features"
        )
    n, t, f = xt.shape
    b = bg.shape[0]
    if b == 0:
        raise ValueError("the background is empty")
    out = np.empty((n, t, f), dtype=np.float32)
    if n == 0:
        return out
    # All draws up front: the result does not depend on batch_size.
    all_idx, all_alpha = eg_draws(np.random.default_rng(seed), n, nsamples, b)
    chunk = min(batch_size, n)
    # Buffers reused across chunks: path points, (x - b), background rows.
    rows = torch.empty((chunk * nsamples, t, f), device=device)
    delta = torch.empty_like(rows)
    points = torch.empty_like(rows)
    t0 = time.perf_counter()
    with _grad_mode(net, device):
        for s in range(0, n, chunk):
            c = min(chunk, n - s)
            m = c * nsamples
            idx, alpha = all_idx[s : s + c], all_alpha[s : s + c]
            with torch.no_grad():
                torch.index_select(
                    bg, 0, torch.from_numpy(idx.reshape(-1)).to(device), out=rows[:m]
                )
                d = delta[:m]
                torch.sub(
                    xt[s : s + c].unsqueeze(1),
                    rows[:m].view(c, nsamples, t, f),
                    out=d.view(c, nsamples, t, f),
                )
                a = torch.from_numpy(alpha.reshape(-1, 1, 1)).to(device)
                torch.addcmul(rows[:m], a, d, out=points[:m])
            inp = points[:m].detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(net(inp).sum(), inp)
            with torch.no_grad():
                grad.mul_(d)
                phi = grad.view(c, nsamples, t, f).mean(dim=1)
            out[s : s + c] = phi.cpu().numpy()
            _report(callback, s + c, n, "expected gradients", t0)
    return out


class _Column(nn.Module):
    """[N] outputs as the [N, 1] shap's GradientExplainer expects."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1, 1)


def shap_gradient(
    net: nn.Module,
    x: np.ndarray | torch.Tensor,
    background: np.ndarray | torch.Tensor,
    nsamples: int = 32,
    batch_size: int = 64,
    seed: int = 0,
    callback: Progress | None = None,
) -> np.ndarray:
    """The same attributions from ``shap.GradientExplainer`` (i.i.d. draws; slow)."""
    import shap

    device = _net_device(net)
    xt = _as_tensor(x, device)
    bg = _as_tensor(background, device)
    n = xt.shape[0]
    out = np.empty(tuple(xt.shape), dtype=np.float32)
    t0 = time.perf_counter()
    with _grad_mode(net, device):
        explainer = shap.GradientExplainer(_Column(net), bg, batch_size=max(nsamples, 1))
        net.eval()
        for k, s in enumerate(range(0, n, batch_size)):
            part = xt[s : s + batch_size]
            vals = explainer.shap_values(part, nsamples=nsamples, rseed=seed + k)
            vals = np.asarray(vals[0] if isinstance(vals, list) else vals)
            out[s : s + part.shape[0]] = vals.reshape(tuple(part.shape))
            _report(callback, s + part.shape[0], n, "shap GradientExplainer", t0)
    return out


def explain_lstm(
    model: Any,
    x: np.ndarray | torch.Tensor,
    background: np.ndarray | torch.Tensor,
    sensor_names: Sequence[str] | None = None,
    *,
    nsamples: int = 32,
    batch_size: int = 64,
    seed: int = 0,
    method: str = "eg",
    num_threads: int | None = None,
    callback: Progress | None = None,
) -> Attribution:
    """Attributions [N, T, F] of an LSTMEstimator (or a bare ``[N,T,F] -> [N]`` module) on
    windows ``x``, against background windows (see the module docstring).

    ``sensor_names`` default to the estimator's ``feature_names_in_`` (else ``x0, x1, ...``);
    ``num_threads``: torch threads for the duration (see :func:`torch_threads`).
    """
    if method not in LSTM_METHODS:
        raise ValueError(f"method must be one of {LSTM_METHODS}, got {method!r}")
    net, names = _network(model)
    device = _net_device(net)
    xt = _as_tensor(x, device)
    bgt = _as_tensor(background, device)
    if xt.ndim != 3:
        raise ValueError(f"x must be [N, T, F] windows, got shape {tuple(xt.shape)}")
    f = xt.shape[-1]
    names = list(sensor_names) if sensor_names is not None else names
    if names is None:
        names = [f"x{i}" for i in range(f)]
    fn = expected_gradients if method == "eg" else shap_gradient
    was_training = net.training
    net.eval()
    with torch_threads(num_threads) as held:
        try:
            base = float(_forward(net, bgt, max(batch_size * nsamples, 1)).mean())
            pred = _forward(net, xt, max(batch_size * nsamples, 1))
            t0 = time.perf_counter()
            values = fn(
                net, xt, bgt, nsamples=nsamples, batch_size=batch_size, seed=seed, callback=callback
            )
            seconds = time.perf_counter() - t0
        finally:
            net.train(was_training)
    attr = Attribution(
        values=values,
        sensor_names=names,
        base_value=base,
        predictions=pred,
        model="lstm",
        method="expected_gradients" if method == "eg" else "shap.GradientExplainer",
        inputs=xt[:, -1, :].cpu().numpy().copy(),
        seconds=seconds,
        settings={
            "nsamples": nsamples,
            "background": int(bgt.shape[0]),
            "batch_size": batch_size,
            "seed": seed,
            "device": str(device),
            "num_threads": held,
        },
    )
    log.info(
        "LSTM attributions: %d windows, %.1f ms/window, completeness gap %.3f",
        attr.n_samples,
        attr.ms_per_sample,
        attr.completeness_gap,
    )
    return attr


# --------------------------------------------------------------------------- forest
def _class_index(model: Any) -> int | None:
    """For a classifier, the column of class 1 (else of the last class); None otherwise."""
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        return None
    classes = list(model.classes_)
    return classes.index(1) if 1 in classes else len(classes) - 1


def _tree_output(model: Any, features: np.ndarray) -> tuple[np.ndarray, int | None]:
    """f(features) [N] and, for a classifier, the class explained (f = its probability)."""
    c = _class_index(model)
    if c is not None:
        return model.predict_proba(features)[:, c].astype(np.float64), c
    return np.asarray(model.predict(features), dtype=np.float64).reshape(-1), None


def _positive_class(values: Any, c: int | None) -> np.ndarray:
    if isinstance(values, list):
        return np.asarray(values[0 if c is None else c])
    values = np.asarray(values)
    if values.ndim == 3:
        return values[..., 0 if c is None else c]
    return values


def tree_shap(
    model: Any,
    features: np.ndarray,
    feature_names: Sequence[str],
    *,
    perturbation: str = "tree_path_dependent",
    background: np.ndarray | None = None,
    batch_size: int = 256,
    callback: Progress | None = None,
) -> Attribution:
    """TreeExplainer attributions of a fitted sklearn forest on a feature matrix [N, F*S],
    folded to sensors (``<sensor>__<stat>`` names). A classifier is explained through its
    probability of class 1 (failure within the horizon)."""
    import shap

    from pdmlens.models.features import fold_to_sensors

    if perturbation not in TREE_PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {TREE_PERTURBATIONS}")
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(feature_names):
        raise ValueError(
            f"features {features.shape} do not match {len(feature_names)} feature names"
        )
    t_setup = time.perf_counter()
    pred, cls = _tree_output(model, features)
    is_clf = cls is not None
    if perturbation == "interventional":
        if background is None:
            raise ValueError("interventional TreeExplainer needs background features")
        explainer = shap.TreeExplainer(
            model,
            data=np.asarray(background),
            feature_perturbation="interventional",
            model_output="probability" if is_clf else "raw",
        )
    else:
        explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    base = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    base_value = float(base[cls] if is_clf and base.size > 1 else base[0])
    setup = time.perf_counter() - t_setup
    n = features.shape[0]
    raw = np.empty(features.shape, dtype=np.float64)
    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        part = features[s : s + batch_size]
        vals = explainer.shap_values(part, check_additivity=False)
        raw[s : s + part.shape[0]] = _positive_class(vals, cls)
        _report(callback, s + part.shape[0], n, "TreeExplainer", t0)
    seconds = time.perf_counter() - t0
    folded, sensors = fold_to_sensors(raw, list(feature_names))
    attr = Attribution(
        values=folded,
        sensor_names=sensors,
        base_value=base_value,
        predictions=pred,
        model="forest",
        method=f"shap.TreeExplainer({perturbation})",
        feature_values=raw,
        feature_names=[str(c) for c in feature_names],
        seconds=seconds,
        settings={
            "perturbation": perturbation,
            "setup_seconds": setup,
            "n_features": len(feature_names),
            "batch_size": batch_size,
            "n_trees": len(getattr(model, "estimators_", [])),
        },
    )
    log.info(
        "forest attributions: %d rows, %.2f ms/row (+%.1f s setup), completeness %.2g",
        n,
        attr.ms_per_sample,
        setup,
        attr.completeness_gap,
    )
    return attr


def explain_forest(
    forest: Any,
    x: np.ndarray,
    background: np.ndarray | None = None,
    *,
    perturbation: str | None = None,
    batch_size: int = 256,
    callback: Progress | None = None,
) -> Attribution:
    """TreeExplainer attributions [N, sensor] of a fitted ForestEstimator on windows ``x``
    [N, W, F] (the estimator computes its own window features). ``perturbation`` None:
    ``interventional`` against the ``background`` windows when given, else
    ``tree_path_dependent`` (which ignores any background)."""
    model = getattr(forest, "model_", None)
    if model is None:
        from pdmlens.errors import NotFittedError

        raise NotFittedError(f"{type(forest).__name__} is not fitted (no model_)")
    if perturbation is None:
        perturbation = "tree_path_dependent" if background is None else "interventional"
    x = np.asarray(x, dtype=np.float32)
    feats = np.asarray(forest.transform(x))
    bg = None
    if perturbation == "interventional" and background is not None:
        bg = np.asarray(forest.transform(np.asarray(background, dtype=np.float32)))
    attr = tree_shap(
        model,
        feats,
        list(forest.feature_names_),
        perturbation=perturbation,
        background=bg,
        batch_size=batch_size,
        callback=callback,
    )
    names = getattr(forest, "feature_names_in_", None)
    if names is not None and [str(s) for s in names] != attr.sensor_names:
        # Keep the estimator's sensor order (fold_to_sensors orders by first appearance).
        order = [attr.sensor_names.index(str(s)) for s in names]
        attr.values = attr.values[:, order]
        attr.sensor_names = [str(s) for s in names]
    if x.ndim == 3 and x.shape[-1] == len(attr.sensor_names):
        attr.inputs = x[:, -1, :].copy()
    return attr
