"""Agreement of two models' sensor importance: Spearman rho and top-k overlap."""

from __future__ import annotations

import numpy as np
import pytest

from pdmlens.explain.agreement import agreement, spearman, top_k, topk_overlap
from pdmlens.explain.attributions import Attribution


def attribution(values: np.ndarray, names: list[str], model: str) -> Attribution:
    return Attribution(
        values=values,
        sensor_names=names,
        base_value=0.0,
        predictions=values.reshape(len(values), -1).sum(1),
        model=model,
        method="hand",
    )


def test_spearman_identical_reversed_and_ties() -> None:
    a = [0.1, 0.5, 0.2, 0.9]
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, [-v for v in a]) == pytest.approx(-1.0)
    assert spearman(a, [10, 50, 20, 90]) == pytest.approx(1.0)  # only the order counts
    # ranks a = 1,3,2,4 ; b = 1,2,3,4 -> d^2 sum 2 -> 1 - 6*2/(4*15) = 0.8
    assert spearman(a, [1, 2, 3, 4]) == pytest.approx(0.8)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_topk_overlap_exact() -> None:
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = np.array([5.0, 1.0, 4.0, 3.0, 2.0])
    assert top_k(a, 2).tolist() == [0, 1]
    assert topk_overlap(a, b, 1) == 1.0
    assert topk_overlap(a, b, 2) == 0.5  # {0,1} vs {0,2}
    assert topk_overlap(a, b, 3) == pytest.approx(2 / 3)  # {0,1,2} vs {0,2,3}
    assert topk_overlap(a, b, 5) == 1.0
    with pytest.raises(ValueError):
        topk_overlap(a, b, 0)


def test_agreement_global_and_per_unit_with_reordered_sensors() -> None:
    # LSTM-like [N, T, F]: per-sensor = sum over time
    lstm = np.zeros((4, 2, 3))
    lstm[:, 0] = [[3.0, 2.0, 1.0]] * 4
    lstm[2:, 1] = [[-6.0, 0.0, 0.0]] * 2  # units u2: sensor a flips sign, |.| = 3
    a = attribution(lstm, ["a", "b", "c"], "lstm")
    # forest lists the sensors in another order: c, a, b ; reversed importance for unit u1
    forest = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    b = attribution(forest, ["c", "a", "b"], "forest")
    out = agreement(a, b, units=["u1", "u1", "u2", "u2"], k=1)
    imp = out["importance"]
    assert list(imp.index) == ["a", "b", "c"]
    np.testing.assert_allclose(imp["lstm"], [3.0, 2.0, 1.0])
    np.testing.assert_allclose(imp["forest"], [2.0, 2.0, 2.0])
    assert list(imp["lstm_rank"]) == [1, 2, 3]
    per = out["per_unit"].set_index("unit")
    assert per.loc["u1", "spearman"] == pytest.approx(-1.0)  # forest u1: a=1, b=2, c=3
    assert per.loc["u2", "spearman"] == pytest.approx(1.0)  # forest u2: a=3, b=2, c=1
    assert per.loc["u1", "top_k_overlap"] == 0.0 and per.loc["u2", "top_k_overlap"] == 1.0
    assert list(per["n_samples"]) == [2, 2]
    assert out["unit_spearman_mean"] == pytest.approx(0.0)
    assert np.isnan(out["spearman"])  # forest's global importance is flat


def test_agreement_identical_is_one_and_mismatched_sensors_fail() -> None:
    v = np.random.default_rng(0).normal(size=(5, 4))
    a = attribution(v, list("wxyz"), "lstm")
    out = agreement(a, attribution(v.copy(), list("wxyz"), "forest"), k=2)
    assert out["spearman"] == pytest.approx(1.0) and out["top_k_overlap"] == 1.0
    with pytest.raises(ValueError, match="different sensors"):
        agreement(a, attribution(v, list("wxyq"), "forest"))


def test_agreement_plot_names_rho(tmp_path) -> None:
    from pdmlens.report.attribution_plots import agreement_plot

    v = np.random.default_rng(0).normal(size=(5, 4))
    a = attribution(v, list("wxyz"), "lstm")
    fig = agreement_plot(a, attribution(-v, list("wxyz"), "forest"), k=2)
    assert "rho = 1.00" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "agree.png")
