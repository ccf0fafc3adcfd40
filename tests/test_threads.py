"""The CPU thread budget (pdmlens.runtime.threads): counts are held, never saved and restored,
so a step that wants one thread cannot change the arithmetic of a training beside or after it."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_info

from pdmlens.data.windows import WindowDataset
from pdmlens.explain.attributions import torch_threads
from pdmlens.explain.gates import extract_gates
from pdmlens.models.lstm import LSTMEstimator
from pdmlens.runtime.threads import (
    DEFAULT_THREADS,
    budget_state,
    compute_threads,
    held_threads,
    resolve,
)

TIMEOUT = 60.0

needs_two = pytest.mark.skipif(
    DEFAULT_THREADS < 2, reason="one core: every count is the default, nothing to tell apart"
)


def in_thread(fn, *args):
    """``fn(*args)`` in a fresh thread (torch gives it the process default), its result."""
    box: dict = {}

    def run() -> None:
        try:
            box["out"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), "timed out (a hold that never ends?)"
    if "error" in box:
        raise box["error"]
    return box["out"]


def windows() -> WindowDataset:
    # the smallest data found on which one and two torch threads train different weights
    rng = np.random.default_rng(0)
    feats = [f"s{i}" for i in range(4)]
    rows = []
    for u in range(8):
        rul = np.arange(49, -1, -1, dtype=float)
        cols = {"unit": f"u{u}", "time": np.arange(1, 51), "rul": rul}
        for i, f in enumerate(feats):
            cols[f] = (1 - rul / 50) * (i % 3) + rng.normal(0, 0.3, 50)
        rows.append(pd.DataFrame(cols))
    return WindowDataset(pd.concat(rows, ignore_index=True), feats, 16, target="rul")


def train(ds: WindowDataset, num_threads: int | None = None) -> np.ndarray:
    est = LSTMEstimator(hidden_size=16, epochs=1, device="cpu", num_threads=num_threads, seed=0)
    est.fit(ds)
    return torch.cat([p.detach().flatten() for p in est.network_.parameters()]).numpy()


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@needs_two
def test_training_computes_with_the_count_it_asks_for(monkeypatch):
    """Why counts must be held: GEMM results may depend on the thread count in their last
    bits (on some CPUs the same seed trains other weights on 1 and on 2 threads; on others
    not), so a training must compute with the count it asks for, in whatever thread it
    runs, and a thread without a request with the default."""
    from pdmlens.models.lstm import LSTMNet

    seen: list[int] = []
    forward = LSTMNet.forward_scaled

    def spy(self, x, steps=1):
        seen.append(torch.get_num_threads())
        return forward(self, x, steps)

    monkeypatch.setattr(LSTMNet, "forward_scaled", spy)
    ds = windows()
    for asked, expected in ((1, 1), (2, 2), (None, DEFAULT_THREADS)):
        seen.clear()
        in_thread(train, ds, asked)
        assert seen and set(seen) == {expected}, (asked, sorted(set(seen)))


@needs_two
def test_training_repeats_exactly_after_interleaved_one_thread_sections():
    """Two sibling steps enter and leave one-thread sections interleaved (explain beside
    signatures); a training afterwards, in a fresh thread asking for the default count, gets
    the same weights to the last bit. Saving and restoring the count instead left the
    process default at 1 here: the second thread saved the 1 the first had set, and
    restored it last."""
    ds = windows()
    alone = in_thread(train, ds)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        torch.get_num_threads()
        with torch_threads(1):
            first_in.set()
            assert second_in.wait(TIMEOUT)
        first_out.set()

    def second() -> None:
        assert first_in.wait(TIMEOUT)
        with torch_threads(1):  # this thread's first torch call
            second_in.set()
            assert first_out.wait(TIMEOUT)

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    np.testing.assert_array_equal(in_thread(train, ds), alone)
    assert budget_state() == (None, 0)
    assert in_thread(torch.get_num_threads) == DEFAULT_THREADS


@needs_two
def test_training_beside_one_thread_sections_repeats_exactly():
    """While a sibling keeps entering and leaving the one-thread budget, a training asking
    for the default waits for a gap, holds it, and repeats its weights to the last bit."""
    ds = windows()
    alone = in_thread(train, ds)
    stop = threading.Event()

    def sibling() -> None:
        while not stop.is_set():
            with compute_threads(1):
                torch.ones(64, 64) @ torch.ones(64, 64)

    sib = threading.Thread(target=sibling)
    sib.start()
    try:
        beside = in_thread(train, ds)
    finally:
        stop.set()
        sib.join(TIMEOUT)
    np.testing.assert_array_equal(beside, alone)


def test_after_concurrent_one_thread_sections_the_process_is_back_at_the_default():
    blas_before = blas_threads()
    ready = threading.Barrier(3, timeout=TIMEOUT)
    seen: list[int] = []

    def section() -> None:
        with compute_threads(1) as n:
            seen.append(n)
            seen.append(torch.get_num_threads())
            ready.wait()  # all three hold at once
            ready.wait()
        seen.append(torch.get_num_threads())

    threads = [threading.Thread(target=section) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert seen.count(1) == 6  # the held count, and torch's count inside, in every thread
    assert seen[-3:] == [DEFAULT_THREADS] * 3  # each thread back at the default
    assert budget_state() == (None, 0)
    assert in_thread(torch.get_num_threads) == DEFAULT_THREADS  # new threads too
    assert blas_threads() == blas_before


def test_blas_follows_the_held_count_and_comes_back():
    before = blas_threads()

    def inside() -> list[int]:
        with compute_threads(1):
            return blas_threads()

    # asked from the main thread: OpenBLAS may ignore a count set from another thread
    assert set(inside()) <= {1}
    assert blas_threads() == before


def test_a_different_count_waits_until_the_holders_leave():
    other = 2 if DEFAULT_THREADS == 1 else 1
    holding, release = threading.Event(), threading.Event()
    entered = threading.Event()

    def holder() -> None:
        with compute_threads(other):
            holding.set()
            assert release.wait(TIMEOUT)

    def wants_default() -> None:
        with compute_threads(None):
            entered.set()

    h = threading.Thread(target=holder)
    h.start()
    assert holding.wait(TIMEOUT)
    w = threading.Thread(target=wants_default)
    w.start()
    assert not entered.wait(0.3)  # still held by the other count
    assert budget_state() == (other, 1)
    release.set()
    assert entered.wait(TIMEOUT)
    h.join(TIMEOUT)
    w.join(TIMEOUT)
    assert budget_state() == (None, 0)


def test_same_count_shares_and_nested_holds_keep_the_outer_count():
    def nested() -> tuple:
        with compute_threads(1) as outer:
            with compute_threads(None) as inner:  # cannot wait for itself
                inside = (held_threads(), torch.get_num_threads())
            return outer, inner, inside, held_threads()

    assert in_thread(nested) == (1, 1, (1, 1), 1)
    assert held_threads() is None and budget_state() == (None, 0)
    assert resolve(None) == resolve(0) == DEFAULT_THREADS
    with pytest.raises(ValueError, match="positive"):
        resolve(-1)


def test_gate_workers_inside_a_hold_of_another_count_do_not_deadlock():
    """Single-threaded gate workers cannot join a caller that holds another count: the tiles
    then run in the calling thread, with the same trace."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, 2, batch_first=True)
    x = torch.randn(9, 4, 3)
    free = in_thread(lambda: extract_gates(lstm, x, threads=2, tile=3))
    other = 2 if DEFAULT_THREADS == 1 else DEFAULT_THREADS

    def held() -> object:
        with compute_threads(other):
            return extract_gates(lstm, x, threads=2, tile=3)

    inside = in_thread(held)
    for a, b in zip(free.layers, inside.layers, strict=True):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)
    assert budget_state() == (None, 0)
