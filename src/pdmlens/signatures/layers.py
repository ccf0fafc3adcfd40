"""From which layer does the network separate health stages?

For every layer's signatures (layer 0 = the input window, then each LSTM layer), clusters
are fitted on training samples and *assigned* to held-out samples (other units); the
held-out assignment is compared with the true health stages by purity, adjusted Rand index
(ARI) and normalized mutual information (NMI). A linear probe (standardize + logistic
regression, fitted on training signatures, scored on the held-out ones) says how linearly
readable the stage is at that layer, whether or not k-means happens to find it. Scores are
never computed on the samples the clusters or probes were fitted on.

``first_separating_layer`` then applies the "from which layer" rule: the first layer whose
score is within a tolerance of the best layer's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pdmlens.signatures.cluster import SignatureClusterer, layer_label, purity_score

log = logging.getLogger(__name__)

SEPARATION_METRICS = ("purity", "ari", "nmi", "probe_accuracy", "probe_cv_accuracy")


def _probe(seed: int, max_iter: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))


def layer_separation(
    train_signatures: Mapping[Hashable, np.ndarray],
    train_stages: Any,
    test_signatures: Mapping[Hashable, np.ndarray],
    test_stages: Any,
    seed: int = 0,
    k: int | None = None,
    k_range: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    train_groups: Any = None,
    test_groups: Any = None,
    cv: int = 5,
    silhouette_sample: int = 2000,
    probe_max_iter: int = 500,
    progress: Callable[[Hashable, dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Separation of health stages per layer, scored on held-out samples.

    Returns a DataFrame indexed by layer (in the order given) with columns ``name``, ``dims``,
    ``k``, ``silhouette`` (train), ``purity``, ``ari``, ``nmi`` (test clusters vs stages),
    ``probe_accuracy`` (test), ``probe_cv_accuracy`` (grouped k-fold on train, only when
    ``train_groups``, e.g. the unit of each sample, is given: windows of one unit never sit
    on both sides of a fold; else NaN) and ``majority_baseline`` (accuracy of always
    guessing the commonest training stage on the test samples, the chance level for purity
    and the probe). When both ``train_groups`` and ``test_groups`` are given, a unit on both
    sides is refused. ``progress(layer, row)`` is called after each layer.
    """
    train_stages = np.asarray(train_stages)
    test_stages = np.asarray(test_stages)
    if train_groups is not None and test_groups is not None:
        shared = set(np.asarray(train_groups).tolist()) & set(np.asarray(test_groups).tolist())
        if shared:
            raise ValueError(
                f"{len(shared)} units are in both train and test (e.g. "
                f"{sorted(map(str, shared))[:3]}): separation must be scored "
                f"on held-out units"
            )
    if list(train_signatures) != list(test_signatures):
        raise ValueError(
            f"train layers {list(train_signatures)} and test layers {list(test_signatures)} differ"
        )
    values, counts = np.unique(train_stages, return_counts=True)
    commonest = values[np.argmax(counts)]
    baseline = float(np.mean(test_stages == commonest)) if len(test_stages) else float("nan")
    rows = []
    for layer in train_signatures:
        Xtr = np.asarray(train_signatures[layer])
        Xte = np.asarray(test_signatures[layer])
        if len(Xtr) != len(train_stages) or len(Xte) != len(test_stages):
            raise ValueError(
                f"layer {layer!r}: {len(Xtr)}/{len(Xte)} signatures for "
                f"{len(train_stages)}/{len(test_stages)} stage labels"
            )
        clu = SignatureClusterer(
            k=k, k_range=k_range, seed=seed, silhouette_sample=silhouette_sample
        ).fit(Xtr)
        pred = clu.predict(Xte)
        row: dict[str, Any] = {
            "layer": layer,
            "name": layer_label(layer),
            "dims": Xtr.shape[1],
            "k": clu.k_,
            "silhouette": clu.silhouette_,
            "purity": purity_score(pred, test_stages),
            "ari": float(adjusted_rand_score(test_stages, pred)),
            "nmi": float(normalized_mutual_info_score(test_stages, pred)),
        }
        if len(values) > 1:
            probe = _probe(seed, probe_max_iter).fit(Xtr, train_stages)
            row["probe_accuracy"] = float(np.mean(probe.predict(Xte) == test_stages))
        else:
            row["probe_accuracy"] = float("nan")
        row["probe_cv_accuracy"] = (
            _grouped_cv(Xtr, train_stages, np.asarray(train_groups), cv, seed, probe_max_iter)
            if train_groups is not None and len(values) > 1
            else float("nan")
        )
        row["majority_baseline"] = baseline
        row["n_train"] = len(Xtr)
        row["n_test"] = len(Xte)
        log.info(
            "layer %s: k=%d purity=%.3f ari=%.3f nmi=%.3f probe=%.3f",
            row["name"],
            row["k"],
            row["purity"],
            row["ari"],
            row["nmi"],
            row["probe_accuracy"],
        )
        if progress is not None:
            progress(layer, row)
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def _grouped_cv(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, cv: int, seed: int, max_iter: int
) -> float:
    n_groups = len(np.unique(groups))
    folds = min(cv, n_groups)
    if folds < 2:
        return float("nan")
    correct = 0
    for tr, te in GroupKFold(n_splits=folds).split(X, y, groups):
        if len(np.unique(y[tr])) < 2:
            correct += int(np.sum(y[te] == y[tr][0]))
            continue
        model = _probe(seed, max_iter).fit(X[tr], y[tr])
        correct += int(np.sum(model.predict(X[te]) == y[te]))
    return correct / len(y)


@dataclass(frozen=True)
class LayerChoice:
    """The answer of the "from which layer" rule, with the numbers behind it."""

    layer: Hashable
    name: str
    metric: str
    score: float
    best_layer: Hashable
    best_score: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        head = (
            f"{self.name} is the first layer to separate health stages "
            f"({self.metric} {self.score:.3f}"
        )
        if self.layer == self.best_layer:
            return head + ", the best of all layers)"
        return (
            head + f", within {self.tolerance:g} of the best, "
            f"{layer_label(self.best_layer)} at {self.best_score:.3f})"
        )


def first_separating_layer(
    df: pd.DataFrame, metric: str = "nmi", tolerance: float = 0.05, relative: bool = False
) -> LayerChoice:
    """The first layer (in the table's row order) scoring within ``tolerance`` of the best.

    ``tolerance`` is absolute (score >= best - tolerance) unless ``relative`` (score >=
    best * (1 - tolerance)). Layers with a NaN score are skipped.
    """
    if metric not in df.columns:
        raise ValueError(f"metric {metric!r} not in the table's columns {list(df.columns)}")
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    scores = df[metric].astype(float)
    valid = scores.dropna()
    if valid.empty:
        raise ValueError(f"no layer has a {metric} score")
    best_layer: Any = valid.idxmax()
    best = float(valid.max())
    bar = best * (1 - tolerance) if relative else best - tolerance
    bar -= 1e-12 * max(1.0, abs(best))  # "within" is inclusive despite float rounding
    layer: Any = next(lay for lay, s in valid.items() if s >= bar)
    name = str(df.loc[layer, "name"]) if "name" in df.columns else layer_label(layer)
    return LayerChoice(
        layer=layer,
        name=name,
        metric=metric,
        score=float(valid[layer]),
        best_layer=best_layer,
        best_score=best,
        tolerance=float(tolerance),
    )


@dataclass(frozen=True)
class SeparationVerdict:
    """The plain answer to "from which layer does behaviour change?": ``layer`` is the
    first LSTM layer that separates health stages and beats the raw input, or None (no
    layer does); ``sentence`` says it with the numbers and the rule."""

    layer: Hashable | None
    name: str
    sentence: str


def separation_verdict(
    df: pd.DataFrame,
    metric: str = "nmi",
    tolerance: float = 0.05,
    raw: Hashable = 0,
    chance_margin: float = 0.02,
) -> SeparationVerdict:
    """An honest verdict on :func:`layer_separation`'s table.

    The first LSTM layer within ``tolerance`` of the best by ``metric``
    (:func:`first_separating_layer` over the LSTM layers) is named only when its linear
    probe reads the health stage better than the probe on the raw input window (layer
    ``raw``); otherwise the verdict is "no layer beats the raw input". When no probe beats
    always guessing the commonest stage by ``chance_margin``, no layer separates at all.
    """
    probe = df["probe_accuracy"].astype(float) if "probe_accuracy" in df else None
    lstm = df.drop(index=raw) if raw in df.index and len(df) > 1 else df
    choice = first_separating_layer(lstm, metric, tolerance)
    base = float(df["majority_baseline"].iloc[0]) if "majority_baseline" in df else None
    rule = (
        f"(rule: the first LSTM layer within {tolerance:g} of the best {metric}, named only "
        "if its linear probe reads the health stage better than a probe on the raw input)"
    )
    if probe is not None and base is not None and float(probe.max()) <= base + chance_margin:
        return SeparationVerdict(
            None,
            "none",
            f"No layer separates the health stages: the best linear probe accuracy "
            f"({float(probe.max()):.2f}) is no better than always guessing the commonest "
            f"stage ({base:.2f}) {rule}.",
        )
    if probe is None or raw not in df.index:
        return SeparationVerdict(choice.layer, choice.name, choice.sentence() + f" {rule}.")
    pv: dict[Any, float] = {k: float(v) for k, v in probe.items()}
    p_raw, p_layer = pv[raw], pv[choice.layer]
    if p_layer > p_raw:
        return SeparationVerdict(
            choice.layer,
            choice.name,
            f"{choice.name} is the first layer to separate health stages: {metric} "
            f"{choice.score:.2f}, linear probe accuracy {p_layer:.2f} against "
            f"{p_raw:.2f} on the raw input {rule}.",
        )
    best = max((k for k in pv if k != raw), key=lambda k: pv[k])
    return SeparationVerdict(
        None,
        "none",
        f"No layer beats the raw input: a linear probe reads the health stage from the raw "
        f"sensor window with accuracy {p_raw:.2f}, and no LSTM layer does better (best "
        f"{layer_label(best)}, {pv[best]:.2f}; by {metric} {choice.name} "
        f"leads at {choice.score:.2f}) {rule}.",
    )
