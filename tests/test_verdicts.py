"""Plain verdicts of the report: the separating layer only when it beats the raw input,
novelty with its threshold and rates, one colour per health stage in every chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pdmlens.report.signature_plots import (  # noqa: E402
    plot_layer_separation,
    plot_novelty_distributions,
    plot_unit_selectivity,
    stage_colors,
)
from pdmlens.signatures.layers import separation_verdict  # noqa: E402
from pdmlens.signatures.novelty import novelty_verdict  # noqa: E402


def _sep(nmi: list[float], probe: list[float], base: float = 0.4) -> pd.DataFrame:
    return pd.DataFrame(
        {"nmi": nmi, "probe_accuracy": probe, "majority_baseline": base}, index=[0, 1, 2]
    )


def test_no_layer_beats_the_raw_input() -> None:
    # the case: layer 1 "separates" by NMI, but the raw input's probe is better
    v = separation_verdict(_sep([0.30, 0.23, 0.20], [0.89, 0.87, 0.85]))
    assert v.layer is None and v.name == "none"
    assert v.sentence.startswith("No layer beats the raw input")
    assert "accuracy 0.89" in v.sentence and "LSTM layer 1, 0.87" in v.sentence


def test_first_layer_named_when_it_beats_the_raw_probe() -> None:
    v = separation_verdict(_sep([0.10, 0.30, 0.33], [0.60, 0.70, 0.90]), tolerance=0.05)
    assert v.layer == 1  # within 0.05 of the best NMI, and 0.70 > 0.60
    assert v.sentence.startswith("LSTM layer 1 is the first layer to separate health stages")
    assert "0.70 against 0.60 on the raw input" in v.sentence
    # the first within tolerance does not beat the raw probe: no layer is named
    assert separation_verdict(_sep([0.1, 0.3, 0.33], [0.75, 0.70, 0.90])).layer is None


def test_no_layer_separates_at_chance() -> None:
    v = separation_verdict(_sep([0.1, 0.2, 0.3], [0.41, 0.40, 0.42], base=0.41))
    assert v.layer is None and v.sentence.startswith("No layer separates the health stages")


def test_novelty_verdict_says_threshold_and_rates() -> None:
    table = pd.DataFrame(
        {
            "name": ["input", "LSTM layer 1"],
            "threshold": [2.5, 1.25],
            "detection_rate": [0.06, 0.40],
            "false_alarm_rate": [0.05, 0.05],
            "auroc": [0.52, 0.81],
        },
        index=[0, 1],
    )
    lines = novelty_verdict(table, "validation machines", "test machines", tnr=0.95)
    assert "5% of the validation machines' windows score above it" in lines[0]
    assert lines[1] == (
        "input: threshold 2.5; flags 6% of the test machines' windows (detection rate) "
        "and 5% of the validation machines' (false-alarm rate); AUROC 0.52 (0.5 = cannot "
        "tell them apart): the test machines look familiar to it."
    )
    assert lines[2].endswith("it notices that the test machines differ.")


def _colors(fig) -> set[str]:
    from matplotlib.colors import to_hex

    return {to_hex(p.get_facecolor()) for ax in fig.axes for p in ax.patches}


def test_stage_colours_follow_the_stage_not_the_chart() -> None:
    order = ["critical (<30)", "degrading (30-75)", "healthy (>=75)"]
    colors = stage_colors(order)
    assert colors == {
        "critical (<30)": "#c0392b",
        "degrading (30-75)": "#f1c40f",
        "healthy (>=75)": "#27ae60",
    }
    sel = pd.DataFrame(  # no unit is selective for the critical stage
        {
            "stage": ["healthy (>=75)", "degrading (30-75)"],
            "rank": [1, 1],
            "layer": [1, 1],
            "unit": [3, 4],
            "direction": ["on", "on"],
            "score": [0.8, 0.6],
        }
    )
    fig = plot_unit_selectivity(sel, order=order)
    assert [ax.get_title() for ax in fig.axes] == [f"units on during: {s}" for s in order]
    assert "no unit is selective" in fig.axes[0].texts[0].get_text()
    assert _colors(fig) == {"#f1c40f", "#27ae60"}


def test_novelty_chart_draws_the_threshold_and_rates() -> None:
    table = pd.DataFrame(
        {"threshold": [1.0], "detection_rate": [0.3], "false_alarm_rate": [0.05], "auroc": [0.7]},
        index=[1],
    )
    rng = np.random.default_rng(0)
    fig = plot_novelty_distributions(
        {1: {"familiar": rng.normal(size=50), "unfamiliar": rng.normal(1, 1, 50)}}, table=table
    )
    ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.lines)
    assert "30% of red, 5% of blue" in ax.get_title()


def test_separation_chart_marks_no_layer_when_none_beats_the_raw_input() -> None:
    table = _sep([0.30, 0.23, 0.20], [0.89, 0.87, 0.85])
    fig = plot_layer_separation(table, chosen=None)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "linear probe on the raw input (a layer must beat it)" in labels
    assert not any("first layer" in lab for lab in labels)
