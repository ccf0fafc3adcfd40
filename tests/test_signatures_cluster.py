"""Signatures from traces, k-means with silhouette-chosen k, stages, cluster read-outs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.errors import NotFittedError
from pdmlens.runtime.threads import compute_threads
from pdmlens.signatures.cluster import (
    SignatureClusterer,
    cluster_profiles,
    cluster_stage_table,
    describe_clusters,
    input_signature,
    layer_label,
    purity_score,
    signatures_from_lstm,
    signatures_from_trace,
    stage_names,
    stage_of,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # OpenMP k-means with 2 threads crawls when the other core is busy (shared machine)
    with compute_threads(1):
        yield


def blobs(n_per: int = 60, centers=((0, 0, 0), (8, 0, 0), (0, 8, 0)), seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, 0.5, size=(n_per, len(c))) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    return X, y


class FakeTrace:
    def __init__(self, n=4, t=5, h=3, layers=2):
        self.layers = []
        for li in range(layers):
            d = {}
            for gi, g in enumerate("ifgoch"):
                d[g] = (
                    np.arange(n * t * h, dtype=np.float32).reshape(n, t, h) + 1000 * li + 100 * gi
                )
            self.layers.append(d)


def test_signatures_from_trace_last_step_h_then_c():
    tr = FakeTrace()
    sig = signatures_from_trace(tr)
    assert list(sig) == [1, 2]
    assert sig[1].shape == (4, 6) and sig[1].dtype == np.float32
    np.testing.assert_array_equal(sig[1][:, :3], tr.layers[0]["h"][:, -1, :])
    np.testing.assert_array_equal(sig[2][:, 3:], tr.layers[1]["c"][:, -1, :])


def test_signatures_from_trace_mean_pool_appends_gates_i_f_o():
    tr = FakeTrace()
    sig = signatures_from_trace(tr.layers, states=("h",), pool="mean")
    assert sig[1].shape == (4, 3 + 9)
    np.testing.assert_allclose(sig[1][:, 3:6], tr.layers[0]["i"].mean(axis=1))
    np.testing.assert_allclose(sig[1][:, 6:9], tr.layers[0]["f"].mean(axis=1))
    np.testing.assert_allclose(sig[1][:, 9:12], tr.layers[0]["o"].mean(axis=1))
    with pytest.raises(ValueError, match="unknown states"):
        signatures_from_trace(tr, states=("z",))
    with pytest.raises(ValueError, match="pool"):
        signatures_from_trace(tr, pool="max")


def test_input_signature_modes():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(input_signature(x, "last"), x[:, -1])
    np.testing.assert_array_equal(input_signature(x), np.c_[x[:, -1], x.mean(axis=1)])
    assert input_signature(x, "flat").shape == (2, 6)
    assert layer_label(0) == "input" and layer_label(2) == "LSTM layer 2"


def test_silhouette_picks_true_k_on_three_blobs():
    X, y = blobs()
    clu = SignatureClusterer(k_range=range(2, 9), seed=0).fit(X)
    assert clu.k_ == 3
    assert clu.silhouette_ == max(clu.silhouette_scores_.values())
    assert clu.centroids_.shape == (3, 3)
    # the clusters are exactly the blobs (up to renaming)
    assert purity_score(clu.labels_, y) == 1.0


def test_silhouette_subsample_still_picks_true_k_and_is_deterministic():
    X, _ = blobs(n_per=400)
    a = SignatureClusterer(silhouette_sample=150, seed=3).fit(X)
    b = SignatureClusterer(silhouette_sample=150, seed=3).fit(X)
    assert a.k_ == 3
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    assert a.silhouette_scores_ == b.silhouette_scores_


def test_given_k_is_kept_and_predict_assigns_new_points_to_their_blob():
    X, y = blobs()
    clu = SignatureClusterer(k=3, seed=0).fit(X)
    assert clu.k_ == 3 and list(clu.silhouette_scores_) == [3]
    centers = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]], dtype=float)
    pred = clu.predict(centers)
    # each center goes to the cluster its training blob went to
    for i in range(3):
        assert pred[i] == np.bincount(clu.labels_[y == i]).argmax()
    assert len(set(pred.tolist())) == 3
    assert clu.transform(centers).shape == (3, 3)


def test_unfitted_and_bad_input():
    with pytest.raises(NotFittedError):
        SignatureClusterer().predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        SignatureClusterer().fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="no usable k"):
        SignatureClusterer(k_range=(5, 6)).fit(np.zeros((3, 2)))


def test_stage_of_bins_and_names():
    assert stage_names([0, 30, 75, 125]) == [
        "critical (<30)",
        "degrading (30-75)",
        "healthy (>=75)",
    ]
    assert stage_names([0, 50, 125]) == ["failing (<50)", "healthy (>=50)"]
    assert stage_names([0, 10, 20, 125], names=["a", "b", "c"]) == [
        "a (<10)",
        "b (10-20)",
        "c (>=20)",
    ]
    got = stage_of([0, 29.9, 30, 74.9, 75, 125, 300, np.nan, -1])
    assert got.tolist() == [
        "critical (<30)",
        "critical (<30)",
        "degrading (30-75)",
        "degrading (30-75)",
        "healthy (>=75)",
        "healthy (>=75)",
        "healthy (>=75)",
        "unknown",
        "critical (<30)",
    ]
    assert stage_of(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="increasing"):
        stage_names([0, 30, 30, 125])


def test_cluster_stage_table_counts_majority_purity():
    labels = [0, 0, 0, 1, 1, 1, 1, 2]
    stages = ["ok", "ok", "bad", "bad", "bad", "bad", "ok", "ok"]
    t = cluster_stage_table(labels, stages, order=["bad", "ok"])
    assert list(t.columns[:2]) == ["bad", "ok"]
    assert t.loc[0, "bad"] == 1 and t.loc[0, "ok"] == 2
    assert t["n"].tolist() == [3, 4, 1]
    assert t["majority"].tolist() == ["ok", "bad", "ok"]
    np.testing.assert_allclose(t["purity"], [2 / 3, 3 / 4, 1.0])
    assert t.attrs["purity"] == pytest.approx(6 / 8)
    assert purity_score(labels, stages) == pytest.approx(6 / 8)


def test_cluster_profiles_and_sentences_name_the_driving_sensor():
    rng = np.random.default_rng(1)
    n = 200
    labels = np.repeat([0, 1], n // 2)
    feats = pd.DataFrame(
        {
            "sensor_2": rng.normal(0, 1, n),
            "sensor_4": np.where(labels == 1, 3.0, 0.0) + rng.normal(0, 0.1, n),
            "sensor_9": np.where(labels == 1, -2.0, 0.0) + rng.normal(0, 0.1, n),
        }
    )
    stages = np.where(labels == 1, "critical (<30)", "healthy (>=75)")
    prof = cluster_profiles(labels, feats)
    assert prof.loc[1, "sensor_4"] > 0.9 and prof.loc[1, "sensor_9"] < -0.9
    assert abs(prof.loc[1, "sensor_2"]) < 0.3
    assert prof.loc[1, "top_features"].startswith("sensor_4 (+1.0), sensor_9 (-1.0)")
    assert "top_features" not in cluster_profiles(labels, feats, top=None).columns
    lines = describe_clusters(labels, stages, feats, top=2)
    assert len(lines) == 2
    assert lines[1].startswith("cluster 1 (100 samples): critical (<30), 100% pure")
    assert "sensor_4 (high" in lines[1] and "sensor_9 (low" in lines[1]
    assert "sensor_2" not in lines[1]


def test_signatures_from_lstm_equal_last_step_h_and_c_of_every_layer():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x = np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32)
    sig = signatures_from_lstm(lstm, x, batch_size=3)
    assert list(sig) == [1, 2] and sig[1].shape == (7, 8)
    # layer 1's h over time is a single-layer LSTM with layer 1's weights
    one = torch.nn.LSTM(3, 4, num_layers=1, batch_first=True)
    one.load_state_dict({k: v for k, v in lstm.state_dict().items() if k.endswith("_l0")})
    with torch.no_grad():
        out1, (h1, c1) = one(torch.from_numpy(x))
        out2, _ = lstm(torch.from_numpy(x))
    np.testing.assert_allclose(sig[1][:, :4], out1[:, -1].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sig[1][:, 4:], c1[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sig[2][:, :4], out2[:, -1].numpy(), rtol=1e-5, atol=1e-6)


def test_signatures_from_gate_trace_match_signatures_from_lstm():
    torch = pytest.importorskip("torch")
    gates = pytest.importorskip("pdmlens.explain.gates")
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
    x = np.random.default_rng(1).normal(size=(6, 7, 3)).astype(np.float32)
    from_trace = signatures_from_trace(gates.extract_gates(lstm, torch.from_numpy(x)))
    direct = signatures_from_lstm(lstm, x)
    assert list(from_trace) == list(direct) == [1, 2]
    for layer in direct:
        np.testing.assert_allclose(from_trace[layer], direct[layer], rtol=1e-4, atol=1e-5)
