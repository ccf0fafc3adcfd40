"""The LSTM estimator: an ``nn.LSTM`` stack and a linear head on the last hidden state.

Two tasks share one network shape: ``rul`` (regression of the capped remaining useful life)
and ``horizon`` (will the unit fail within h cycles). The horizon task learns from the
remaining life itself, not from the 0/1 label: it regresses the RUL capped at
``horizon_cap`` horizons (resolution where the decision is made, nothing spent on telling
120 cycles from 200), and turns the prediction into P(failure within h) =
sigmoid((h + 0.5 - RUL) / s), with the scale s fitted on the validation units. The decision
sits at the horizon itself (RUL <= h + 0.5), so no threshold has to be tuned on a few
validation units; docs/model_choices.md has the figures behind this choice. The network is
deliberately plain, a ``torch.nn.LSTM`` (batch_first) and an ``nn.Linear``, because the
explain step recomputes every gate from the LSTM's own weights and must match it exactly.

Training is written for a small CPU as much as for a GPU: windows are gathered straight
from the WindowDataset's float32 table into one reused buffer (no DataLoader, no per-item
Python), the RUL target is scaled by its cap so the output stays in [0, 1] while learning,
and the best epoch on the validation units is kept (early stopping restores it). The
defaults: AdamW with a short cosine learning-rate schedule, gradient clipping, dropout, and
forget gates initialised open (bias 3) so the cell integrates the whole window from the
first epoch; each training window is shifted as a whole by a random offset per sensor
(``level_noise``), which stops the network from recognising and reciting the training
units. The choices and the validation figures behind them are in docs/model_choices.md.

Given a seed, a CPU run repeats to the last bit: the weights are initialised and dropout is
drawn from a seeded RNG (forked, so the caller's global RNG is left untouched), batches are
shuffled by a seeded ``torch.Generator``, and deterministic algorithms are switched on for
the duration of ``fit``.

A fitted estimator saves as one ``torch.save`` dict of plain types and tensors (loadable
with ``weights_only=True``): constructor parameters, the state dict, the feature names and
the training history. The LSTM reads windows of any length, so a saved model does too.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from pdmlens.data.windows import WindowDataset
from pdmlens.errors import NotFittedError
from pdmlens.models.horizon import HorizonMixin
from pdmlens.runtime.threads import compute_threads
from pdmlens.task import TASK_NAMES

if TYPE_CHECKING:
    from pdmlens.config import RunConfig

log = logging.getLogger(__name__)

FORMAT = "pdmlens.lstm/1"
TASKS = TASK_NAMES
SCHEDULES = ("onecycle", "cosine", "plateau", "constant")


class LSTMNet(nn.Module):
    """``lstm`` (nn.LSTM, batch_first) -> dropout -> ``head`` (nn.Linear) on the last step.

    ``forward(x [N, T, F]) -> [N]`` in the task's scale, ``head * out_scale + out_shift``:
    RUL in cycles (``out_scale`` the RUL cap, no shift) or the failure logit
    ((h + 0.5 - RUL) / s for the horizon task, set by :meth:`LSTMEstimator.set_horizon_scale`).
    """

    def __init__(
        self,
        n_features: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        out_scale: float = 1.0,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_features,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        if forget_bias is not None:
            # Forget gates start open (Jozefowicz et al. 2015): memory over the whole window
            # from the first step. Gate order is i, f, g, o; the two biases add up.
            with torch.no_grad():
                for name, p in self.lstm.named_parameters():
                    if name.startswith("bias_"):
                        p[hidden_size : 2 * hidden_size] = (
                            float(forget_bias) if name.startswith("bias_ih") else 0.0
                        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)
        self.out_scale: torch.Tensor
        self.out_shift: torch.Tensor
        self.register_buffer("out_scale", torch.tensor(float(out_scale)))
        self.register_buffer("out_shift", torch.tensor(0.0))

    def forward_scaled(self, x: torch.Tensor, steps: int = 1) -> torch.Tensor:
        """The head's raw output, the RUL over its cap: [N] for the last step, or
        [N, steps] for the last ``steps`` steps."""
        out, _ = self.lstm(x)
        if steps == 1:
            return self.head(self.drop(out[:, -1])).squeeze(-1)
        return self.head(self.drop(out[:, -steps:])).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_scaled(x) * self.out_scale + self.out_shift


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def _torch_state(num_threads: int | None, seed: int, device: torch.device) -> Iterator[None]:
    """Seeded, deterministic torch for the duration of a fit, on ``num_threads`` CPU threads
    held from the thread budget (None: the process default, never whatever another step
    left behind: :mod:`pdmlens.runtime.threads`); the caller's RNG and determinism flag come
    back afterwards."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    with compute_threads(num_threads), torch.random.fork_rng(devices=devices):
        try:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.manual_seed(seed)
            yield
        finally:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


class LSTMEstimator(HorizonMixin, BaseEstimator):
    """An LSTM for RUL regression (``task="rul"``) or failure within a horizon
    (``task="horizon"``), trained on sliding windows with early stopping.

    ``fit(train, val)`` takes WindowDatasets whose target is the remaining useful life (the
    capped ``rul`` column), for both tasks: the horizon task regresses it capped at
    ``horizon_cap`` x ``horizon`` cycles and derives the label (RUL <= ``horizon``) itself.
    ``predict`` returns RUL in cycles, or for the horizon task P(failure within the
    horizon) = sigmoid((horizon + 0.5 - RUL) / ``horizon_scale_``): ``horizon_scale`` when
    given (a refit passes the one its early-stopped model fitted), else fitted on the
    validation units (log loss). ``predict_proba`` gives sklearn's [N, 2] and
    ``predict_label`` thresholds at ``threshold_``: ``threshold`` when given, else 0.5,
    which is predicted RUL <= horizon + 0.5.

    Parameters beyond the obvious: ``schedule`` (``onecycle`` | ``cosine`` | ``plateau`` |
    ``constant``) sets the learning rate per step; ``average_last`` = k > 1 judges and
    keeps, after each epoch, the average of the last k epochs' weights (snapshot averaging:
    smoother than any one epoch, at the cost of nothing but k copies); ``min_delta`` is
    the improvement of the validation loss that resets patience; ``input_noise`` and
    ``level_noise`` augment training windows (see :func:`augment`).
    """

    def __init__(
        self,
        task: str = "rul",
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        epochs: int = 15,
        batch_size: int = 256,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        clip_grad: float | None = 1.0,
        schedule: str = "cosine",
        average_last: int = 1,
        min_delta: float = 0.0,
        input_noise: float = 0.0,
        level_noise: float = 0.3,
        late_weight: float = 1.0,
        target_steps: int = 1,
        forget_bias: float | None = 3.0,
        device: str = "auto",
        seed: int = 0,
        rul_cap: float = 125.0,
        num_threads: int | None = 1,
        eval_batch_size: int = 2048,
        threshold: float | None = None,
        horizon: int = 30,
        horizon_cap: float = 3.0,
        horizon_scale: float | None = None,
    ) -> None:
        self.task = task
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.clip_grad = clip_grad
        self.schedule = schedule
        self.average_last = average_last
        self.min_delta = min_delta
        self.input_noise = input_noise
        self.level_noise = level_noise
        self.late_weight = late_weight
        self.target_steps = target_steps
        self.forget_bias = forget_bias
        self.device = device
        self.seed = seed
        self.rul_cap = rul_cap
        self.num_threads = num_threads
        self.eval_batch_size = eval_batch_size
        self.threshold = threshold
        self.horizon = horizon
        self.horizon_cap = horizon_cap
        self.horizon_scale = horizon_scale

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: RunConfig, task: str | None = None) -> LSTMEstimator:
        """An estimator with the run's LSTM parameters, task, seed, RUL cap and horizon."""
        c = cfg.model.lstm
        return cls(
            task=task or cfg.model.task,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout,
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            patience=c.patience,
            clip_grad=c.clip_grad,
            schedule=c.schedule,
            average_last=c.average_last,
            min_delta=c.min_delta,
            input_noise=c.input_noise,
            level_noise=c.level_noise,
            late_weight=c.late_weight,
            target_steps=c.target_steps,
            forget_bias=c.forget_bias,
            device=c.device,
            seed=cfg.seed,
            rul_cap=cfg.prepare.rul_cap,
            num_threads=c.num_threads,
            horizon=cfg.prepare.horizon,
            horizon_cap=c.horizon_cap,
        )

    def _check_params(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.classifies and not (self.rul_cap and self.rul_cap > 0):
            raise ValueError("the rul task needs a positive rul_cap (the target's scale)")
        if self.classifies and not (self.horizon >= 1 and self.horizon_cap > 1):
            raise ValueError(
                "the horizon task needs horizon >= 1 and horizon_cap > 1 "
                f"(got {self.horizon}, {self.horizon_cap})"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.hidden_size < 1:
            raise ValueError("epochs, batch_size and hidden_size must be >= 1")
        if self.average_last < 1:
            raise ValueError("average_last must be >= 1")
        if not self.late_weight > 0:
            raise ValueError(f"late_weight must be > 0, got {self.late_weight}")

    def _scale(self) -> float:
        """The cap of the RUL the network regresses, and its output scale while learning."""
        if not self.classifies:
            return float(self.rul_cap)
        return float(self.horizon_cap) * float(self.horizon)

    def _new_network(self, n_features: int) -> LSTMNet:
        return LSTMNet(
            n_features,
            self.hidden_size,
            self.num_layers,
            self.dropout,
            self._scale(),
            self.forget_bias,
        )

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        train: WindowDataset,
        val: WindowDataset | None = None,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> LSTMEstimator:
        """Train on ``train``'s windows; early-stop on ``val`` (restoring its best epoch).

        ``callback(epoch, metrics)`` is called after every epoch (0-based) with
        ``train_loss``, ``val_loss`` and ``val_rmse`` (in cycles, of the capped RUL), ``lr``
        and ``seconds``.
        """
        self._check_params()
        if train.targets is None:
            raise ValueError("the training WindowDataset has no target column")
        if len(train) == 0:
            raise ValueError("the training WindowDataset has no windows")
        if val is not None and list(val.features) != list(train.features):
            raise ValueError("train and val windows must have the same features, in order")
        if self.classifies:
            _check_rul_target(train, int(self.horizon))
        device = resolve_device(self.device)
        with _torch_state(self.num_threads, int(self.seed), device):
            self._fit(train, val, callback, device)
        return self

    def _loss_fn(self) -> Callable[..., torch.Tensor]:
        """Squared error; with ``late_weight`` w != 1, a prediction above the truth (late)
        costs w times its square (early stopping watches the same loss)."""
        w = float(self.late_weight)
        if w == 1.0:
            return nn.functional.mse_loss

        def weighted(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
            err = out - y
            sq = err * err * torch.where(err > 0, w, 1.0)
            return sq.sum() if reduction == "sum" else sq.mean()

        return weighted

    def _scaled_targets(self, y: np.ndarray) -> np.ndarray:
        """RUL -> min(RUL, cap) / cap, float32: what the head learns."""
        cap = np.float32(self._scale())
        return np.minimum(np.asarray(y, dtype=np.float32), cap) / cap

    def _target(self, y: np.ndarray, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self._scaled_targets(y)).to(device)

    def _fit(
        self,
        train: WindowDataset,
        val: WindowDataset | None,
        callback: Callable[[int, dict[str, float]], None] | None,
        device: torch.device,
    ) -> None:
        n, n_feat = len(train), train.n_features
        bs = min(int(self.batch_size), n)
        steps = math.ceil(n / bs)
        net = self._new_network(n_feat).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched, per_step = self._scheduler(opt, steps)
        loss_fn = self._loss_fn()
        gen = torch.Generator().manual_seed(int(self.seed))
        pin = device.type == "cuda"
        buf = torch.empty((bs, train.length, n_feat), dtype=torch.float32, pin_memory=pin)
        buf_np = buf.numpy()
        if train.targets is None:
            raise ValueError("training windows need targets: build them with a target column")
        targets_t = torch.from_numpy(self._scaled_targets(train.window_targets))
        noise, level = float(self.input_noise), float(self.level_noise)
        steps = min(int(self.target_steps), train.length)
        row_targets = torch.from_numpy(self._scaled_targets(train.targets))

        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = -1
        best_loss = math.inf
        best_state: dict[str, torch.Tensor] | None = None
        k_avg = int(self.average_last)
        recent: deque[dict[str, torch.Tensor]] = deque(maxlen=k_avg)
        judged = copy.deepcopy(net) if k_avg > 1 else net  # no RNG draw: same trajectory
        bad = 0
        for epoch in range(int(self.epochs)):
            t0 = time.perf_counter()
            net.train()
            perm = torch.randperm(n, generator=gen).numpy()
            total, count = 0.0, 0
            for s in range(0, n, bs):
                idx = np.sort(perm[s : s + bs])
                m = len(idx)
                train.batch(idx, out=buf_np)
                xb = buf[:m].to(device, non_blocking=True)
                xb = augment(xb, noise, level)
                if steps > 1:
                    rows = train.rows(idx)[:, -steps:]
                    yb = row_targets[np.maximum(rows, 0)].to(device, non_blocking=True)
                else:
                    yb = targets_t[idx].to(device, non_blocking=True)
                out = net.forward_scaled(xb, steps)
                loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad:
                    nn.utils.clip_grad_norm_(net.parameters(), float(self.clip_grad))
                opt.step()
                if per_step and sched is not None:
                    sched.step()
                total += float(loss.detach()) * m
                count += m
            lr_now = opt.param_groups[0]["lr"]
            row: dict[str, float] = {"epoch": epoch, "train_loss": total / count, "lr": lr_now}
            if k_avg > 1:
                # the model judged (and kept) is the average of the last k epochs' weights
                recent.append({k: v.detach().clone() for k, v in net.state_dict().items()})
                judged.load_state_dict(_average_states(list(recent)))
            if val is not None and len(val):
                val_loss, val_mse = self._eval_loss(judged, val, device)
                row["val_loss"] = val_loss
                row["val_rmse"] = math.sqrt(val_mse) * self._scale()
                monitor = val_loss
            else:
                monitor = row["train_loss"]
            if sched is not None and not per_step:
                sched.step(monitor)
            row["seconds"] = time.perf_counter() - t0
            self.history_.append(row)
            improved = monitor < best_loss - float(self.min_delta)
            if improved:
                best_loss = monitor
                self.best_epoch_ = epoch
                bad = 0
                best_state = copy.deepcopy(judged.state_dict())
            else:
                bad += 1
            log.info(
                "epoch %d/%d train_loss %.5f val_loss %s lr %.2e %.1fs%s",
                epoch + 1,
                self.epochs,
                row["train_loss"],
                f"{row['val_loss']:.5f}" if "val_loss" in row else "-",
                lr_now,
                row["seconds"],
                " *" if improved else "",
            )
            if callback is not None:
                callback(epoch, dict(row))
            if val is not None and self.patience and bad >= int(self.patience):
                log.info("early stop after epoch %d (best %d)", epoch + 1, self.best_epoch_ + 1)
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.network_ = net
        self.device_ = device
        self.n_features_in_ = n_feat
        self.feature_names_in_ = np.asarray(train.features, dtype=object)
        self.window_length_ = train.length
        self.threshold_ = 0.5 if self.threshold is None else float(self.threshold)
        if self.classifies:
            if self.horizon_scale is not None:
                self.set_horizon_scale(float(self.horizon_scale))
                self.horizon_scale_source_ = "the scale given"
            else:
                on = val if val is not None and len(val) else train
                rul = self._outputs(on, raw=True) * np.float32(self._scale())
                self.set_horizon_scale(fit_horizon_scale(rul, on.window_targets, self.horizon))
                self.horizon_scale_source_ = (
                    f"the scale fitted on the {'validation' if on is val else 'training'} units"
                )
            log.info("%s", self.alarm_rule())

    def _scheduler(self, opt: torch.optim.Optimizer, steps: int):
        """(scheduler, stepped per batch?)."""
        total = int(self.epochs) * steps
        if self.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=self.lr, total_steps=total, pct_start=0.25
            ), True
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), True
        if self.schedule == "plateau":
            patience = max(1, int(self.patience) // 3) if self.patience else 3
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, factor=0.5, patience=patience
            ), False
        return None, True

    def _eval_loss(
        self, net: LSTMNet, ds: WindowDataset, device: torch.device
    ) -> tuple[float, float]:
        """(the training loss, the mean squared error) over ``ds``, in the scaled target."""
        net.eval()
        loss_fn = self._loss_fn()
        total, sq = 0.0, 0.0
        with torch.inference_mode():
            for _, x, y in ds.iter_batches(int(self.eval_batch_size)):
                out = net.forward_scaled(torch.from_numpy(x).to(device))
                target = self._target(y, device)
                total += float(loss_fn(out, target, reduction="sum"))
                sq += float(nn.functional.mse_loss(out, target, reduction="sum"))
        return total / len(ds), sq / len(ds)

    # ----------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit() or load() first"
            )

    def set_horizon_scale(self, scale: float) -> LSTMEstimator:
        """Horizon task: P(failure within h) = sigmoid((h + 0.5 - RUL) / ``scale``) from now
        on (``fit`` sets it: the given ``horizon_scale`` or the fitted one)."""
        self._check_fitted()
        if not self.classifies:
            raise ValueError("set_horizon_scale is for the horizon task")
        if not scale > 0:
            raise ValueError(f"the horizon scale must be > 0, got {scale}")
        self.horizon_scale_ = float(scale)
        net = self.network_
        with torch.no_grad():
            net.out_scale.fill_(-self._scale() / self.horizon_scale_)
            net.out_shift.fill_((float(self.horizon) + 0.5) / self.horizon_scale_)
        return self

    def alarm_rule(self, scale_from: str | None = None) -> str:
        """The horizon task's decision in words, for logs and reports; ``scale_from`` says
        where the scale came from (default: what ``fit`` recorded, e.g. "the scale fitted on
        the validation units"; a loaded model does not know)."""
        self._check_fitted()
        if not self.classifies:
            raise ValueError("alarm_rule is for the horizon task")
        scale_from = scale_from or getattr(self, "horizon_scale_source_", None)
        h, cut = self.horizon, self.horizon + 0.5
        rule = (
            f"P(failure within {h} cycles) = sigmoid(({cut:g} - predicted RUL) / "
            f"{self.horizon_scale_:.2f})"
        )
        if scale_from:
            rule += f", {scale_from}"
        rule += f"; an alarm at {self.threshold_:g}"
        if self.threshold_ == 0.5:
            rule += f", i.e. predicted RUL <= {cut:g}"
        return rule

    def _outputs(
        self, x: np.ndarray | torch.Tensor | WindowDataset, raw: bool = False
    ) -> np.ndarray:
        """The network's outputs [N] in the task's scale (cycles or logits), or with
        ``raw`` the head's (RUL over its cap), on ``num_threads`` held CPU threads."""
        with compute_threads(self.num_threads):
            return self._outputs_held(x, raw)

    def _outputs_held(self, x: np.ndarray | torch.Tensor | WindowDataset, raw: bool) -> np.ndarray:
        self._check_fitted()
        net, dev = self.network_, self.device_
        net.eval()
        fwd = net.forward_scaled if raw else net
        bs = int(self.eval_batch_size)
        if isinstance(x, WindowDataset):
            if list(x.features) != [str(f) for f in self.feature_names_in_]:
                raise ValueError(
                    "the windows' features differ from those the model was fitted on: "
                    f"{list(x.features)} vs {list(self.feature_names_in_)}"
                )
            out = np.empty(len(x), dtype=np.float32)
            with torch.inference_mode():
                for idx, xb, _ in x.iter_batches(bs):
                    out[idx] = fwd(torch.from_numpy(xb).to(dev)).cpu().numpy()
            return out
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, np.float32))
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3 or t.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"x must be [N, W, {self.n_features_in_}] windows, got shape {tuple(t.shape)}"
            )
        t = t.to(torch.float32)
        out = np.empty(t.shape[0], dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, t.shape[0], bs):
                out[s : s + bs] = fwd(t[s : s + bs].to(dev)).cpu().numpy()
        return out

    def predict(self, x: np.ndarray | torch.Tensor | WindowDataset) -> np.ndarray:
        """RUL in cycles (rul) or P(failure within the horizon) (horizon), float32 [N]."""
        out = self._outputs(x)
        if self.classifies:
            return _sigmoid(out)
        return out

    # -------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> Path:
        """One ``torch.save`` dict (weights_only-loadable): params, weights, features."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in self.network_.state_dict().items()}
        payload: dict[str, Any] = {
            "format": FORMAT,
            "params": self.get_params(),
            "state_dict": state,
            "feature_names": [str(f) for f in self.feature_names_in_],
            "window_length": int(self.window_length_),
            "history": [dict(r) for r in self.history_],
            "best_epoch": int(self.best_epoch_),
            "threshold": float(self.threshold_),
        }
        if self.classifies and hasattr(self, "horizon_scale_"):
            payload["horizon_scale"] = float(self.horizon_scale_)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> LSTMEstimator:
        """A fitted estimator from :meth:`save`; ``device`` overrides the saved one."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved pdmlens LSTM ({payload.get('format')!r})")
        params = dict(payload["params"])
        if device is not None:
            params["device"] = device
        est = cls(**params)
        names = payload["feature_names"]
        net = est._new_network(len(names))
        state = dict(payload["state_dict"])
        state.setdefault("out_shift", torch.tensor(0.0))  # saved before the shift existed
        net.load_state_dict(state)
        dev = resolve_device(est.device)
        est.network_ = net.to(dev).eval()
        est.device_ = dev
        est.n_features_in_ = len(names)
        est.feature_names_in_ = np.asarray(names, dtype=object)
        est.window_length_ = int(payload["window_length"])
        est.history_ = list(payload["history"])
        est.best_epoch_ = int(payload["best_epoch"])
        est.threshold_ = float(payload.get("threshold", 0.5))
        if "horizon_scale" in payload:
            est.horizon_scale_ = float(payload["horizon_scale"])
        return est


def augment(x: torch.Tensor, noise: float = 0.0, level_noise: float = 0.0) -> torch.Tensor:
    """A training batch of windows [N, T, F] (z-scores) with Gaussian noise added.

    ``noise``: independent at every step and feature. ``level_noise``: one offset per window
    and feature, the same at every step. A unit's sensor levels carry its own fingerprint
    (build, initial wear) besides its wear; with a few dozen training units a network learns
    to recognise each one and recite its trajectory (training RMSE far below validation).
    Shifting whole windows blurs the fingerprint and keeps what transfers to new units:
    trends, and levels beyond the shift. Draws from torch's global RNG (seeded by ``fit``).
    """
    if noise:
        x = x + noise * torch.randn_like(x)
    if level_noise:
        x = x + level_noise * torch.randn(
            (x.shape[0], 1, x.shape[2]), dtype=x.dtype, device=x.device
        )
    return x


def _check_rul_target(train: WindowDataset, horizon: int) -> None:
    """The horizon task learns from the remaining life: refuse the 0/1 label, and a RUL
    that never exceeds the horizon (nothing to learn the boundary from)."""
    y = train.window_targets
    if np.all((y == 0) | (y == 1)):
        raise ValueError(
            f"the horizon task learns from the remaining useful life: give windows whose "
            f"target is the RUL (e.g. 'rul'), not a 0/1 label ({train.target!r})"
        )
    if not np.nanmax(y) > horizon:
        raise ValueError(
            f"the training RUL ({train.target!r}) never exceeds the horizon ({horizon}): "
            "raise prepare.rul_cap above it"
        )


def fit_horizon_scale(
    rul: np.ndarray,
    true_rul: np.ndarray,
    horizon: float,
    bounds: tuple[float, float] = (0.05, 1000.0),
) -> float:
    """The scale s (cycles) that makes sigmoid((h + 0.5 - rul) / s) the best-calibrated
    P(true RUL <= h) on these windows (least log loss): a one-parameter logistic
    regression, convex in 1/s, solved by bisection on its gradient. When the windows
    separate perfectly (or hold one class) s goes to the lower bound: a sharp decision."""
    z = (float(horizon) + 0.5 - np.asarray(rul, dtype=np.float64)).ravel()
    y = (np.asarray(true_rul, dtype=np.float64).ravel() <= horizon).astype(np.float64)

    def grad(w: float) -> float:
        return float(np.sum((1.0 / (1.0 + np.exp(-np.clip(w * z, -50, 50))) - y) * z))

    lo, hi = math.log(1.0 / bounds[1]), math.log(1.0 / bounds[0])  # in log(1/s)
    if grad(math.exp(lo)) >= 0:
        return float(bounds[1])
    if grad(math.exp(hi)) <= 0:
        return float(bounds[0])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if grad(math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return float(math.exp(-0.5 * (lo + hi)))


def _average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if len(states) == 1:
        return states[0]
    out = {}
    for k in states[0]:
        if states[0][k].is_floating_point():
            out[k] = torch.stack([s[k] for s in states]).mean(0)
        else:
            out[k] = states[-1][k]
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
