"""LSTMVis-style unit selectivity finds planted stage-selective units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.signatures.selectivity import unit_selectivity

CRIT, HEALTHY = "critical (<30)", "healthy (>=75)"


def planted(n=60, t=30, h=6, seed=0):
    """Windows whose stage switches healthy -> critical at a random step; unit 4 is on
    (0.8) exactly during critical, unit 2 goes to -0.8 exactly during healthy, the rest is
    noise that now and then crosses the threshold."""
    rng = np.random.default_rng(seed)
    switch = rng.integers(5, t - 5, size=n)
    stages = np.where(np.arange(t)[None, :] >= switch[:, None], CRIT, HEALTHY).astype(object)
    act = rng.normal(0, 0.2, size=(n, t, h)).astype(np.float32)
    crit = stages == CRIT
    act[:, :, 4] = np.where(crit, 0.8, 0.0) + rng.normal(0, 0.03, (n, t))
    act[:, :, 2] = np.where(crit, 0.0, -0.8) + rng.normal(0, 0.03, (n, t))
    return act, stages


def test_planted_selective_units_rank_first():
    act, stages = planted()
    df = unit_selectivity({1: act}, stages, threshold=0.3, min_run=3, order=[CRIT, HEALTHY])
    assert list(pd.unique(df["stage"])) == [CRIT, HEALTHY]
    top_c = df[df["stage"] == CRIT].iloc[0]
    assert (top_c["layer"], top_c["unit"], top_c["direction"], top_c["rank"]) == (1, 4, "+", 1)
    assert top_c["precision"] == 1.0 and top_c["recall"] == 1.0 and top_c["f1"] == 1.0
    assert top_c["run_coverage"] == 1.0 and top_c["on_outside"] == 0.0
    assert top_c["n_inside"] == int((stages == CRIT).sum())
    top_h = df[df["stage"] == HEALTHY].iloc[0]
    assert (top_h["unit"], top_h["direction"], top_h["f1"]) == (2, "-", 1.0)
    # a noise unit is clearly worse
    noise = df[(df["stage"] == CRIT) & (df["unit"] == 0) & (df["direction"] == "+")]
    assert noise["score"].iloc[0] < 0.3
    assert len(df) == 2 * 6 * 2  # stages x units x directions


def test_difference_score_top_k_and_layers():
    act, stages = planted(seed=1)
    df = unit_selectivity(
        {1: act[:, :, :3], 2: act[:, :, 3:]}, stages, score="difference", top=2, signed=False
    )
    crit = df[df["stage"] == CRIT]
    assert len(crit) == 2 and crit["rank"].tolist() == [1, 2]
    assert (crit.iloc[0]["layer"], crit.iloc[0]["unit"]) == (2, 1)  # unit 4 = layer 2 unit 1
    assert crit.iloc[0]["score"] == pytest.approx(1.0)
    assert set(df["direction"]) == {"+"}


def test_exact_counts_and_min_run_ignores_short_stage_runs():
    # one trajectory; the lone "b" at step 7 is a 1-step run: ignored with min_run=3
    st = np.array(list("aabbbbabaa"), dtype=object)
    a = np.zeros((10, 2), dtype=np.float32)
    a[2:6, 0] = 1.0  # on exactly during the long b run
    a[7, 1] = 1.0  # on only during the short b run (and too short to count as on)
    df = unit_selectivity([a], [st], threshold=0.5, min_run=3, signed=False)
    b0 = df[(df["stage"] == "b") & (df["unit"] == 0)].iloc[0]
    assert b0["n_inside"] == 4 and b0["f1"] == 1.0 and b0["run_coverage"] == 1.0
    b1 = df[(df["stage"] == "b") & (df["unit"] == 1)].iloc[0]
    assert b1["f1"] == 0.0 and b1["rank"] == 2
    # with min_run=1 the short run counts: b has 5 steps in 2 runs, unit 0 covers one run
    df1 = unit_selectivity([a], [st], threshold=0.5, min_run=1, signed=False)
    b0 = df1[(df1["stage"] == "b") & (df1["unit"] == 0)].iloc[0]
    assert b0["n_inside"] == 5 and b0["recall"] == pytest.approx(4 / 5)
    assert b0["run_coverage"] == pytest.approx(1 / 2)
    b1 = df1[(df1["stage"] == "b") & (df1["unit"] == 1)].iloc[0]
    assert b1["precision"] == 1.0 and b1["recall"] == pytest.approx(1 / 5)


def test_layouts_and_chunks_give_the_same_table():
    act, stages = planted(n=23, seed=2)
    whole = unit_selectivity(act, stages)
    chunked = unit_selectivity(act, stages, chunk=5)
    listed = unit_selectivity(list(act), list(stages))
    pd.testing.assert_frame_equal(whole, chunked)
    pd.testing.assert_frame_equal(whole, listed)


def test_zscore_scale_and_per_window_stage():
    rng = np.random.default_rng(3)
    stage = np.repeat(["x", "y"], 20).astype(object)
    act = rng.normal(0, 0.3, size=(40, 8, 3)).astype(np.float32) + 50.0
    act[stage == "x", :, 1] += 5.0  # unit 1 is high throughout x windows (offset of +50)
    df = unit_selectivity(act, stage, threshold=0.5, scale="zscore", signed=False)
    top = df[df["stage"] == "x"].iloc[0]
    assert top["unit"] == 1 and top["f1"] == 1.0
    assert df[df["stage"] == "x"].iloc[1]["f1"] < 0.6
    raw = unit_selectivity(act, stage, threshold=0.5, signed=False)
    assert raw[raw["stage"] == "x"]["precision"].max() < 0.7  # everything is "on" raw


def test_bad_arguments():
    act, stages = planted(n=4)
    with pytest.raises(ValueError, match="score"):
        unit_selectivity(act, stages, score="auc")
    with pytest.raises(ValueError, match="do not match"):
        unit_selectivity(act, stages[:, :-1])


def test_unknown_steps_count_neither_inside_nor_outside():
    st = np.array(["a"] * 5 + ["unknown"] * 5 + ["b"] * 5, dtype=object)
    a = np.zeros((15, 1), dtype=np.float32)
    a[:10, 0] = 1.0  # on in a and during the unknown stretch
    df = unit_selectivity([a], [st], threshold=0.5, min_run=1, signed=False)
    assert set(df["stage"]) == {"a", "b"}
    ra = df[df["stage"] == "a"].iloc[0]
    assert ra["precision"] == 1.0 and ra["recall"] == 1.0 and ra["on_outside"] == 0.0
