"""Window statistics: names, exact values on tiny windows, chunking, folding to sensors."""

from __future__ import annotations

import numpy as np
import pytest

from pdmlens.models.features import STATS, fold_to_sensors, window_features


def test_names_are_sensor_major():
    x = np.zeros((1, 3, 2), np.float32)
    _, names = window_features(x, ["sensor_a", "sensor_b"], ("last", "slope"))
    assert names == ["sensor_a__last", "sensor_a__slope", "sensor_b__last", "sensor_b__slope"]


def test_exact_values_on_a_tiny_window():
    t = np.arange(5, dtype=np.float32)
    x = np.stack([2.5 * t - 1.0, np.array([3, 1, 4, 1, 5], np.float32)], axis=1)[None]
    feats, names = window_features(x, ["line", "pi"])
    got = dict(zip(names, feats[0].tolist(), strict=True))
    # a line's slope is its slope; its mean is its middle value
    assert got["line__slope"] == pytest.approx(2.5, abs=1e-6)
    assert got["line__mean"] == pytest.approx(4.0)
    assert got["line__last"] == 9.0 and got["line__min"] == -1.0 and got["line__max"] == 9.0
    assert got["line__std"] == pytest.approx(2.5 * np.sqrt(2.0), rel=1e-6)
    # 3 1 4 1 5: mean 2.8; squared deviations .04 3.24 1.44 3.24 4.84 -> population std
    # sqrt(12.8 / 5) = 1.6; LS slope sum (t-2) x / sum (t-2)^2 = (-6 - 1 + 0 + 1 + 10) / 10
    assert got["pi__mean"] == pytest.approx(2.8)
    assert got["pi__std"] == pytest.approx(1.6, rel=1e-6)
    assert got["pi__slope"] == pytest.approx(0.4, abs=1e-6)
    assert (got["pi__last"], got["pi__min"], got["pi__max"]) == (5.0, 1.0, 5.0)
    assert feats.dtype == np.float32 and feats.shape == (1, 2 * len(STATS))


def test_single_step_window_has_zero_slope_and_std():
    x = np.array([[[7.0]]], np.float32)
    feats, _ = window_features(x, ["s"], ("slope", "std", "last"))
    assert feats.tolist() == [[0.0, 0.0, 7.0]]


def test_chunking_and_out_buffer_agree_with_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 9, 3)).astype(np.float32)
    whole, _ = window_features(x, list("abc"))
    out = np.full((37, 18), np.nan, np.float32)
    chunked, _ = window_features(x, list("abc"), chunk_size=5, out=out)
    assert chunked is out
    np.testing.assert_array_equal(whole, chunked)
    v = whole.reshape(37, 3, 6)
    np.testing.assert_allclose(v[:, :, 1], x.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v[:, :, 2], x.std(axis=1), rtol=1e-5, atol=1e-6)
    slopes = np.polyfit(np.arange(9), x.transpose(1, 0, 2).reshape(9, -1), 1)[0]
    np.testing.assert_allclose(v[:, :, 3], slopes.reshape(37, 3), atol=1e-5)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown window statistics"):
        window_features(np.zeros((1, 2, 1), np.float32), ["a"], ("median",))
    with pytest.raises(ValueError, match="names"):
        window_features(np.zeros((1, 2, 2), np.float32), ["a"])


def test_fold_to_sensors_sums_each_sensors_features():
    names = ["a__last", "a__mean", "b__last", "b__mean"]
    vals = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -0.5, 1.0, 1.0]])
    folded, sensors = fold_to_sensors(vals, names)
    assert sensors == ["a", "b"]
    np.testing.assert_array_equal(folded, [[3.0, 7.0], [0.0, 2.0]])
    one, _ = fold_to_sensors(vals[0], names)
    np.testing.assert_array_equal(one, [3.0, 7.0])
