"""Novelty scores: separated vs identical distributions, calibration, chunking, report."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import LedoitWolf

from pdmlens.errors import NotFittedError
from pdmlens.runtime.threads import compute_threads
from pdmlens.signatures.novelty import (
    NoveltyScorer,
    calibrate,
    novelty_by_layer,
    novelty_report,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with compute_threads(1):
        yield


def gauss(n, d=5, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


@pytest.mark.parametrize("method", ["mahalanobis", "knn", "centroid"])
def test_separated_gaussians_give_auroc_near_one(method):
    train = gauss(400, seed=0)
    sc = NoveltyScorer(method=method, k=5, n_clusters=2).fit(train)
    rep = novelty_report(
        sc.score_samples(gauss(300, seed=1)), sc.score_samples(gauss(300, shift=4.0, seed=2))
    )
    assert rep["auroc"] > 0.99
    assert rep["fpr_at_95_tpr"] < 0.05


@pytest.mark.parametrize("method", ["mahalanobis", "knn"])
def test_same_gaussian_gives_auroc_near_half(method):
    sc = NoveltyScorer(method=method, k=5).fit(gauss(1000, seed=0))
    rep = novelty_report(
        sc.score_samples(gauss(2000, seed=1)), sc.score_samples(gauss(2000, seed=2))
    )
    assert abs(rep["auroc"] - 0.5) < 0.05


def test_mahalanobis_is_the_ledoit_wolf_distance_on_standardized_data():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(200, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0.1]]) + 7
    sc = NoveltyScorer("mahalanobis").fit(train)
    z = (train - train.mean(0)) / train.std(0)
    lw = LedoitWolf().fit(z)
    q = rng.normal(size=(4, 3))
    qz = (q - train.mean(0)) / train.std(0)
    want = [mahalanobis(v, lw.location_, lw.precision_) for v in qz]
    np.testing.assert_allclose(sc.score_samples(q), want, rtol=1e-10)
    assert 0 <= sc.shrinkage_ <= 1


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "centroid"])
def test_chunked_scores_equal_unchunked(method):
    train, query = gauss(300, seed=3), gauss(257, seed=4)
    big = NoveltyScorer(method, k=4, chunk_size=100_000).fit(train).score_samples(query)
    small = NoveltyScorer(method, k=4, chunk_size=7).fit(train).score_samples(query)
    np.testing.assert_array_equal(big, small)
    buf = np.empty(300)
    out = NoveltyScorer(method, k=4, chunk_size=7).fit(train).score_samples(query, out=buf)
    np.testing.assert_array_equal(out, big)


def test_knn_score_is_distance_to_kth_neighbour():
    train = np.array([[0.0], [1.0], [3.0], [10.0]])
    sc = NoveltyScorer("knn", k=2).fit(train)
    s = train.std()  # distances are measured after standardizing on the training data
    got = sc.score_samples(np.array([[0.0], [10.0]]))
    np.testing.assert_allclose(got, [1.0 / s, 7.0 / s])


@pytest.mark.parametrize("n", [20, 37, 1000])
def test_calibration_gives_95_percent_true_negatives(n):
    v = np.random.default_rng(n).normal(size=n)
    thr = calibrate(v, 0.95)
    tn = np.mean(v <= thr)
    assert 0.95 <= tn <= 0.95 + 1 / n
    assert calibrate(np.arange(1.0, 21.0), 0.95) == 19.0
    assert calibrate(v, 1.0) == v.max()
    assert np.mean(v <= calibrate(v, 0.0)) == 0.0


def test_novelty_report_exact_numbers():
    fam = np.arange(10.0)  # 0..9
    unf = np.arange(20.0) + 5  # 5..24
    rep = novelty_report(fam, unf, threshold=9.0)
    # catching 19 of 20 unfamiliar needs a threshold of 6: familiar 6, 7, 8, 9 alarm
    assert rep["fpr_at_95_tpr"] == pytest.approx(0.4)
    assert rep["detection_rate"] == pytest.approx(15 / 20)
    assert rep["false_alarm_rate"] == 0.0
    # pairs (familiar < unfamiliar): all but the ties/overlaps over 5..9
    want = np.mean([(u > f) + 0.5 * (u == f) for f in fam for u in unf])
    assert rep["auroc"] == pytest.approx(want)


def test_novelty_by_layer_and_errors():
    train = {0: gauss(200, seed=0), 1: gauss(200, d=3, seed=1)}
    val = {0: gauss(100, seed=2), 1: gauss(100, d=3, seed=3)}
    fam = {0: gauss(100, seed=4), 1: gauss(100, d=3, seed=5)}
    unf = {0: gauss(100, seed=6), 1: gauss(100, d=3, shift=5, seed=7)}
    table, scores = novelty_by_layer(train, val, fam, unf, method="knn", k=3)
    assert list(table.index) == [0, 1] and table.loc[0, "name"] == "input"
    assert table.loc[1, "auroc"] > 0.99 and abs(table.loc[0, "auroc"] - 0.5) < 0.15
    assert table.loc[1, "detection_rate"] > 0.9
    assert np.mean(scores[1]["val"] <= table.loc[1, "threshold"]) == pytest.approx(0.95)
    with pytest.raises(NotFittedError):
        NoveltyScorer().score_samples(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="method"):
        NoveltyScorer("lof").fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="dims"):
        NoveltyScorer().fit(gauss(10)).score_samples(np.zeros((1, 2)))
