"""Layer separation on held-out samples and the "from which layer" rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.runtime.threads import compute_threads
from pdmlens.signatures.layers import first_separating_layer, layer_separation


@pytest.fixture(autouse=True)
def _one_thread():
    with compute_threads(1):
        yield


def two_point_clouds(n: int, seed: int):
    """1-D signatures at 0 and 10 (tiny noise) with stages "a" / "b"."""
    rng = np.random.default_rng(seed)
    stages = np.repeat(["a", "b"], n)
    x = np.where(stages == "a", 0.0, 10.0) + rng.normal(0, 0.1, 2 * n)
    return x[:, None], stages


def test_exact_purity_ari_nmi_on_constructed_held_out_case():
    Xtr, str_ = two_point_clouds(30, seed=0)
    # held-out: three samples land on each cloud, but one at 0 belongs to stage b
    Xte = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 10.0])[:, None]
    ste = np.array(["a", "a", "b", "b", "b", "b"])
    df = layer_separation({0: Xtr}, str_, {0: Xte}, ste, seed=0, k=2)
    row = df.loc[0]
    assert row["k"] == 2 and row["name"] == "input"
    assert row["purity"] == pytest.approx(5 / 6)
    # contingency [[2, 1], [0, 3]]: index 4, expected 6*7/15, max 6.5
    assert row["ari"] == pytest.approx((4 - 2.8) / (6.5 - 2.8))
    assert 0 < row["nmi"] < 1
    assert row["probe_accuracy"] == pytest.approx(5 / 6)
    assert row["majority_baseline"] == pytest.approx(2 / 6)  # train tie -> "a" is commonest
    assert row["n_train"] == 60 and row["n_test"] == 6


def test_separating_layer_scores_one_and_noise_layer_scores_near_zero():
    rng = np.random.default_rng(4)
    Xtr, str_ = two_point_clouds(100, seed=1)
    Xte, ste = two_point_clouds(50, seed=2)
    noise_tr = rng.normal(size=(200, 4))
    noise_te = rng.normal(size=(100, 4))
    groups = np.r_[np.repeat(np.arange(10), 10), np.repeat(np.arange(10, 20), 10)]
    df = layer_separation(
        {0: noise_tr, 1: Xtr},
        str_,
        {0: noise_te, 1: Xte},
        ste,
        seed=0,
        k=2,
        train_groups=groups,
        cv=5,
    )
    assert list(df.index) == [0, 1]
    assert df.loc[1, ["purity", "ari", "nmi", "probe_accuracy", "probe_cv_accuracy"]].tolist() == [
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    ]
    assert abs(df.loc[0, "ari"]) < 0.1 and df.loc[0, "nmi"] < 0.1
    assert df.loc[0, "probe_accuracy"] < 0.7
    assert np.isnan(
        layer_separation({1: Xtr}, str_, {1: Xte}, ste, k=2).loc[1, "probe_cv_accuracy"]
    )


def test_layer_separation_is_deterministic_and_checks_inputs():
    Xtr, str_ = two_point_clouds(40, seed=5)
    Xte, ste = two_point_clouds(20, seed=6)
    a = layer_separation({1: Xtr}, str_, {1: Xte}, ste, seed=3)
    b = layer_separation({1: Xtr}, str_, {1: Xte}, ste, seed=3)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="differ"):
        layer_separation({1: Xtr}, str_, {2: Xte}, ste)
    with pytest.raises(ValueError, match="stage labels"):
        layer_separation({1: Xtr}, str_[:-1], {1: Xte}, ste)
    with pytest.raises(ValueError, match="held-out"):
        layer_separation(
            {1: Xtr},
            str_,
            {1: Xte},
            ste,
            train_groups=np.arange(80) % 8,
            test_groups=np.full(40, 7),
        )


def table(scores):
    return pd.DataFrame({"nmi": scores}, index=pd.Index(range(len(scores)), name="layer"))


def test_first_separating_layer_rule_on_hand_made_table():
    t = table([0.30, 0.82, 0.86, 0.85])
    c = first_separating_layer(t, "nmi", 0.05)
    assert (c.layer, c.score, c.best_layer, c.best_score) == (1, 0.82, 2, 0.86)
    assert c.name == "LSTM layer 1"
    assert "within 0.05 of the best, LSTM layer 2 at 0.860" in c.sentence()
    assert first_separating_layer(t, "nmi", 0.03).layer == 2
    assert first_separating_layer(t, "nmi", 0.0).layer == 2
    assert first_separating_layer(t, "nmi", 0.6).layer == 0
    # "within" is inclusive: 0.85 is exactly 0.05 below 0.90
    assert first_separating_layer(table([0.5, 0.85, 0.9]), "nmi", 0.05).layer == 1
    # relative tolerance: 0.85 >= 0.9 * 0.95 = 0.855 fails, 0.9 is best
    assert first_separating_layer(table([0.5, 0.85, 0.9]), "nmi", 0.05, relative=True).layer == 2
    assert first_separating_layer(table([np.nan, 0.4, 0.41]), "nmi", 0.02).layer == 1
    assert first_separating_layer(t, "nmi", 0.05).as_dict()["tolerance"] == 0.05
    with pytest.raises(ValueError, match="metric"):
        first_separating_layer(t, "ari")
