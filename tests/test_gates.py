"""Exact LSTM gate traces: against nn.LSTM and an independent float64 reference, chunking,
initial states, files, tables, errors, the buffer pool, and the heatmap figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pdmlens.explain import gates as gates_mod
from pdmlens.explain.gates import (
    KEYS,
    GateCheckError,
    GateTrace,
    extract_gates,
    gate_summaries,
    iter_gate_chunks,
)
from pdmlens.explain.saturation import saturation
from pdmlens.runtime.threads import compute_threads

TOL = 1e-5
METHODS = ("loop", "recompute")


@pytest.fixture(autouse=True)
def _one_thread():
    # two OpenMP threads crawl when the other core is busy (shared machine); held, so that
    # nothing is left behind for the tests that follow
    with compute_threads(1):
        yield


def make_lstm(n_in: int, hidden: int, layers: int, seed: int, scale: float = 1.0, **kw) -> nn.LSTM:
    torch.manual_seed(seed)
    lstm = nn.LSTM(n_in, hidden, layers, batch_first=True, **kw)
    if scale != 1.0:
        with torch.no_grad():
            for p in lstm.parameters():
                p.mul_(scale)
    return lstm.eval()


def reference(lstm: nn.LSTM, x: np.ndarray, hx=None) -> list[dict[str, np.ndarray]]:
    """Gates by the textbook equations in float64, written independently of the module."""
    n, steps, _ = x.shape
    hd, n_layers = lstm.hidden_size, lstm.num_layers
    inp = x.astype(np.float64)
    out = []
    for li in range(n_layers):
        w_ih = getattr(lstm, f"weight_ih_l{li}").detach().double().numpy()
        w_hh = getattr(lstm, f"weight_hh_l{li}").detach().double().numpy()
        b = (getattr(lstm, f"bias_ih_l{li}") + getattr(lstm, f"bias_hh_l{li}")).detach()
        b = b.double().numpy()
        h = np.zeros((n, hd)) if hx is None else hx[0][li].double().numpy()
        c = np.zeros((n, hd)) if hx is None else hx[1][li].double().numpy()
        rec = {k: np.zeros((n, steps, hd)) for k in KEYS}
        for t in range(steps):
            z = inp[:, t] @ w_ih.T + h @ w_hh.T + b
            i, f, g, o = (z[:, k * hd : (k + 1) * hd] for k in range(4))
            i, f, o = 1 / (1 + np.exp(-i)), 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-o))
            g = np.tanh(g)
            c = f * c + i * g
            h = o * np.tanh(c)
            for k, v in zip(KEYS, (i, f, g, o, c, h), strict=True):
                rec[k][:, t] = v
        out.append(rec)
        inp = rec["h"]
    return out


def assert_matches_lstm(trace: GateTrace, lstm: nn.LSTM, x: torch.Tensor, hx=None) -> None:
    with torch.no_grad():
        out, (h_n, c_n) = lstm(x, hx)
    assert trace.num_layers == lstm.num_layers
    assert trace.hidden_size == lstm.hidden_size
    np.testing.assert_allclose(trace.layers[-1]["h"], out.numpy(), rtol=0, atol=TOL)
    for li in range(lstm.num_layers):
        layer = trace.layers[li]
        for k in KEYS:
            assert layer[k].shape == (x.shape[0], x.shape[1], lstm.hidden_size)
            assert layer[k].dtype == np.float32
        np.testing.assert_allclose(layer["h"][:, -1], h_n[li].numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(layer["c"][:, -1], c_n[li].numpy(), rtol=0, atol=TOL)
    assert 0.0 <= trace.max_abs_error <= TOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(("layers", "hidden"), [(1, 3), (1, 16), (2, 8), (2, 33), (3, 5), (3, 12)])
def test_trace_matches_nn_lstm_and_reference(method, with_state, layers, hidden):
    n, steps, n_in = 9, 7, 4
    lstm = make_lstm(n_in, hidden, layers, seed=layers * 100 + hidden, scale=2.0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, steps, n_in, generator=gen)
    hx = None
    if with_state:
        hx = (
            torch.randn(layers, n, hidden, generator=gen),
            torch.randn(layers, n, hidden, generator=gen),
        )
    trace = extract_gates(lstm, x, hx, chunk_size=4, method=method, check="full")
    assert_matches_lstm(trace, lstm, x, hx)
    ref = reference(lstm, x.numpy(), hx)
    for li in range(layers):
        for k in KEYS:
            np.testing.assert_allclose(
                trace.layers[li][k], ref[li][k], rtol=0, atol=TOL, err_msg=f"layer {li} {k}"
            )


@pytest.mark.parametrize("method", METHODS)
def test_intermediate_layers_equal_shallower_lstm(method):
    """Layer l's h equals the output of an nn.LSTM made of the first l+1 layers."""
    lstm = make_lstm(5, 6, 3, seed=3, scale=1.5)
    x = torch.randn(11, 8, 5, generator=torch.Generator().manual_seed(2))
    trace = extract_gates(lstm, x, method=method)
    for depth in (1, 2):
        sub = nn.LSTM(5, 6, depth, batch_first=True)
        sub.load_state_dict(
            {k: v for k, v in lstm.state_dict().items() if int(k.rsplit("_l", 1)[1]) < depth}
        )
        with torch.no_grad():
            out, _ = sub(x)
        np.testing.assert_allclose(trace.layers[depth - 1]["h"], out.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("method", METHODS)
def test_briefly_trained_network(method):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 10, 2, batch_first=True, dropout=0.2)
    head = nn.Linear(10, 1)
    x = torch.randn(64, 12, 3)
    y = x[:, :, 0].cumsum(1)[:, -1:] * 0.5 + x[:, -1, 1:2]
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=3e-2)
    lstm.train()
    first = None
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.mse_loss(head(lstm(x)[0][:, -1]), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first  # it did learn something
    trace = extract_gates(lstm, x, chunk_size=20, method=method, check="full")
    assert lstm.training  # the check's eval() is undone
    lstm.eval()
    assert_matches_lstm(trace, lstm, x)


@pytest.mark.parametrize("method", METHODS)
def test_h_is_o_times_tanh_c(method):
    lstm = make_lstm(4, 7, 2, seed=5, scale=3.0)
    x = torch.randn(10, 9, 4, generator=torch.Generator().manual_seed(3))
    trace = extract_gates(lstm, x, method=method)
    for layer in trace.layers:
        np.testing.assert_allclose(layer["h"], layer["o"] * np.tanh(layer["c"]), rtol=0, atol=1e-6)
        # c follows its own recursion from c_0 = 0
        c_prev = np.zeros_like(layer["c"][:, 0])
        for t in range(trace.n_steps):
            c = layer["f"][:, t] * c_prev + layer["i"][:, t] * layer["g"][:, t]
            np.testing.assert_allclose(layer["c"][:, t], c, rtol=0, atol=1e-6)
            c_prev = layer["c"][:, t]
        for k in ("i", "f", "o"):
            assert layer[k].min() > 0 and layer[k].max() < 1


@pytest.mark.parametrize("method", METHODS)
def test_chunked_equals_unchunked_and_numpy_input(method):
    lstm = make_lstm(4, 6, 2, seed=7)
    x = torch.randn(23, 6, 4, generator=torch.Generator().manual_seed(4))
    hx = (torch.randn(2, 23, 6), torch.randn(2, 23, 6))
    whole = extract_gates(lstm, x, hx, chunk_size=100, method=method)
    parts = extract_gates(
        lstm, x.numpy(), (hx[0].numpy(), hx[1].numpy()), chunk_size=5, method=method
    )
    for a, b in zip(whole.layers, parts.layers, strict=True):
        for k in KEYS:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)


def test_methods_agree():
    lstm = make_lstm(4, 9, 2, seed=8, scale=2.0)
    x = torch.randn(12, 10, 4, generator=torch.Generator().manual_seed(5))
    a = extract_gates(lstm, x, method="loop")
    b = extract_gates(lstm, x, method="recompute")
    for la, lb in zip(a.layers, b.layers, strict=True):
        for k in KEYS:
            np.testing.assert_allclose(la[k], lb[k], rtol=0, atol=TOL)


def test_iter_chunks_and_summaries_match_full_trace():
    lstm = make_lstm(3, 5, 2, seed=9, scale=3.0)
    x = torch.randn(17, 6, 3, generator=torch.Generator().manual_seed(6))
    full = extract_gates(lstm, x)
    seen = []
    kept = []
    for rows, part in iter_gate_chunks(lstm, x, chunk_size=5, copy=True):
        seen.append((rows.start, rows.stop))
        kept.append(part)
        for k in KEYS:
            np.testing.assert_allclose(part.layers[1][k], full.layers[1][k][rows], atol=1e-6)
    assert seen == [(0, 5), (5, 10), (10, 15), (15, 17)]
    # copies stay valid after the workspace moved on
    np.testing.assert_allclose(kept[0].layers[0]["c"], full.layers[0]["c"][0:5], atol=1e-6)

    summ = gate_summaries(lstm, x, chunk_size=5)
    assert summ.num_layers == 2 and summ.hidden_size == 5
    for li in range(2):
        np.testing.assert_allclose(summ.last[li]["h"], full.layers[li]["h"][:, -1], atol=1e-6)
        np.testing.assert_allclose(summ.last[li]["c"], full.layers[li]["c"][:, -1], atol=1e-6)
        for k in ("i", "f", "g", "o"):
            np.testing.assert_allclose(summ.mean[li][k], full.layers[li][k].mean(axis=1), atol=1e-6)
    pd.testing.assert_frame_equal(summ.saturation, saturation(full))
    assert summ.max_abs_error <= TOL


def test_save_load_round_trip(tmp_path):
    lstm = make_lstm(3, 4, 2, seed=10)
    x = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(7))
    trace = extract_gates(lstm, x)
    path = trace.save(tmp_path / "sub" / "trace.npz")
    back = GateTrace.load(path)
    assert (back.num_layers, back.hidden_size) == (2, 4)
    assert back.max_abs_error == trace.max_abs_error
    for a, b in zip(trace.layers, back.layers, strict=True):
        for k in KEYS:
            np.testing.assert_array_equal(a[k], b[k])
            assert b[k].flags.c_contiguous
    with np.load(path) as raw:
        assert set(raw.files) >= {"layer0/i", "layer1/h", "meta/num_layers", "meta/format"}
    compressed = GateTrace.load(trace.save(tmp_path / "c.npz", compress=True))
    np.testing.assert_array_equal(compressed.layers[1]["g"], trace.layers[1]["g"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a gate trace"):
        GateTrace.load(bad)


def test_to_frame_long_table():
    lstm = make_lstm(3, 4, 2, seed=11)
    x = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(8))
    trace = extract_gates(lstm, x)
    df = trace.to_frame(sample_ids=[3, 1], times=slice(2, 5), units=[0, 2])
    assert list(df.columns) == ["sample", "layer", "time", "unit", *KEYS]
    assert len(df) == 2 * 3 * 2 * 2
    row = df[(df["sample"] == 1) & (df["layer"] == 1) & (df["time"] == 4) & (df["unit"] == 2)]
    assert len(row) == 1
    for k in KEYS:
        assert row[k].iloc[0] == trace.layers[1][k][1, 4, 2]
    assert df["time"].min() == 2 and df["time"].max() == 4
    assert len(trace.to_frame(sample_ids=[0])) == 2 * 6 * 4
    with pytest.raises(ValueError, match="max_rows"):
        trace.to_frame(max_rows=100)
    with pytest.raises(IndexError):
        trace.to_frame(sample_ids=[5])


def test_subset_and_contiguous():
    lstm = make_lstm(3, 4, 1, seed=12)
    x = torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(9))
    trace = extract_gates(lstm, x)
    sub = trace.subset([6, 2])
    np.testing.assert_array_equal(sub.layers[0]["f"], trace.layers[0]["f"][[6, 2]])
    cont = trace.contiguous()
    assert all(cont.layers[0][k].flags.c_contiguous for k in KEYS)
    np.testing.assert_array_equal(cont.layers[0]["o"], trace.layers[0]["o"])


def test_rejects_unsupported_models_and_bad_inputs():
    x = torch.randn(4, 5, 3)
    with pytest.raises(ValueError, match="proj_size"):
        extract_gates(nn.LSTM(3, 6, 1, batch_first=True, proj_size=2), x)
    with pytest.raises(ValueError, match="bidirectional"):
        extract_gates(nn.LSTM(3, 6, 1, batch_first=True, bidirectional=True), x)
    with pytest.raises(TypeError, match="nn.LSTM"):
        extract_gates(nn.GRU(3, 6, batch_first=True), x)
    lstm = make_lstm(3, 6, 2, seed=0)
    with pytest.raises(ValueError, match="expects 3"):
        extract_gates(lstm, torch.randn(4, 5, 2))
    with pytest.raises(ValueError, match=r"\[samples, time, features\]"):
        extract_gates(lstm, torch.randn(5, 3))
    with pytest.raises(ValueError, match="h0 must have shape"):
        extract_gates(lstm, x, (torch.zeros(1, 4, 6), torch.zeros(2, 4, 6)))
    with pytest.raises(ValueError, match="method"):
        extract_gates(lstm, x, method="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        extract_gates(lstm, x, chunk_size=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_check_catches_a_wrong_trace(monkeypatch, threads):
    lstm = make_lstm(3, 6, 2, seed=1)
    x = torch.randn(12, 5, 3)
    real = gates_mod._loop_chunk

    def broken(net, xc, h0, c0, block):
        real(net, xc, h0, c0, block)
        block[-1, 2, :, 5 * net.hidden : 6 * net.hidden] += 1e-3  # last layer's h at step 2

    monkeypatch.setattr(gates_mod, "_loop_chunk", broken)
    with pytest.raises(GateCheckError, match="differs from nn.LSTM"):
        extract_gates(lstm, x, threads=threads, tile=5, check_samples=3)
    unchecked = extract_gates(lstm, x, check=False, threads=threads, tile=5)
    assert unchecked.max_abs_error == 0.0


def test_training_mode_dropout_and_rng_untouched():
    lstm = make_lstm(3, 6, 2, seed=2, dropout=0.5)
    lstm.train()
    x = torch.randn(5, 4, 3)
    state = torch.get_rng_state()
    traces = [extract_gates(lstm, x, method=m) for m in METHODS]
    assert torch.equal(state, torch.get_rng_state())  # no random init, no dropout draws
    assert lstm.training
    lstm.eval()
    for trace in traces:
        assert_matches_lstm(trace, lstm, x)


def test_without_bias():
    lstm = make_lstm(3, 5, 2, seed=4, bias=False)
    x = torch.randn(6, 4, 3)
    for m in METHODS:
        assert_matches_lstm(extract_gates(lstm, x, method=m), lstm, x)


def test_pool_reuses_memory_but_never_overwrites_a_live_trace():
    lstm = make_lstm(3, 4, 2, seed=5)
    gen = torch.Generator().manual_seed(10)
    x1, x2 = torch.randn(7, 5, 3, generator=gen), torch.randn(7, 5, 3, generator=gen)
    t1 = extract_gates(lstm, x1)
    before = t1.layers[1]["h"].copy()
    t2 = extract_gates(lstm, x2)
    np.testing.assert_array_equal(t1.layers[1]["h"], before)  # still t1's numbers
    assert not np.shares_memory(t1.layers[0]["i"], t2.layers[0]["i"])
    address = t2.layers[0]["i"].__array_interface__["data"][0]
    del t2
    t3 = extract_gates(lstm, x2)
    assert t3.layers[0]["i"].__array_interface__["data"][0] == address  # reused
    assert_matches_lstm(t3, lstm, x2)


def test_heatmap_figure():
    from matplotlib.figure import Figure

    from pdmlens.report.gate_plots import plot_gate_heatmap

    lstm = make_lstm(3, 4, 2, seed=6)
    trace = extract_gates(lstm, torch.randn(3, 6, 3))
    fig = plot_gate_heatmap(trace, sample=1, time_labels=list(range(100, 106)))
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2 * 6  # layers x (i, f, g, o, c, h); the rest are colour bars
    assert len(fig.axes) == 2 * 12
    assert panels[0].get_title() == "Input gate (i)\nLSTM layer 1"
    assert panels[0].get_ylabel() == "hidden unit"
    img = panels[1].get_images()[0].get_array()
    np.testing.assert_array_equal(img, trace.layers[0]["f"][1].T)
    fig2 = plot_gate_heatmap(trace, 0, title="Unit 7", keys=("f", "c"), layers=[1])
    assert fig2._suptitle.get_text() == "Unit 7"
    assert len([ax for ax in fig2.axes if ax.get_title()]) == 2
    with pytest.raises(IndexError):
        plot_gate_heatmap(trace, 3)


@pytest.mark.parametrize("method", METHODS)
def test_worker_threads_give_the_same_trace(method):
    lstm = make_lstm(4, 6, 2, seed=13, scale=2.0)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(19, 7, 4, generator=gen)
    hx = (torch.randn(2, 19, 6, generator=gen), torch.randn(2, 19, 6, generator=gen))
    one = extract_gates(lstm, x, hx, chunk_size=8, method=method, threads=1)
    two = extract_gates(lstm, x, hx, chunk_size=8, method=method, threads=2, tile=3)
    assert torch.get_num_threads() == 1  # the caller's setting is left alone
    for a, b in zip(one.layers, two.layers, strict=True):
        for k in KEYS:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)
    assert_matches_lstm(two, lstm, x, hx)


def test_worker_errors_reach_the_caller(monkeypatch):
    lstm = make_lstm(3, 6, 2, seed=1)
    x = torch.randn(10, 5, 3)

    def broken(net, xc, h0, c0, block):
        raise RuntimeError("tile failed")

    monkeypatch.setattr(gates_mod, "_loop_chunk", broken)
    with pytest.raises(RuntimeError, match="tile failed"):
        extract_gates(lstm, x, threads=2, tile=4)


def test_check_samples_reach_every_tile(monkeypatch):
    """The checked windows are spread over the chunk, so a fault in its last tile shows."""
    lstm = make_lstm(3, 6, 2, seed=1)
    x = torch.randn(12, 5, 3)
    real = gates_mod._loop_chunk

    def broken_last_tile(net, xc, h0, c0, block):
        real(net, xc, h0, c0, block)
        if xc.shape[0] == 2:  # tiles of 5: rows 10..11
            block[-1, -1, :, 5 * net.hidden : 6 * net.hidden] += 1e-2

    monkeypatch.setattr(gates_mod, "_loop_chunk", broken_last_tile)
    with pytest.raises(GateCheckError):
        extract_gates(lstm, x, threads=1, tile=5, check_samples=3)


def test_worker_pool_does_not_grow_per_call():
    import threading

    def workers() -> int:
        return sum(t.name == "pdmlens-worker" for t in threading.enumerate())

    lstm = make_lstm(3, 4, 1, seed=2)
    x = torch.randn(8, 3, 3)
    extract_gates(lstm, x, threads=2, tile=2)
    before = workers()
    assert before >= 2
    for _ in range(3):
        extract_gates(lstm, x, threads=2, tile=2)
    assert workers() == before


@pytest.mark.parametrize("method", METHODS)
def test_device_workspace_path(monkeypatch, method):
    """The accelerator route (compute into a device workspace, copy to the host per chunk),
    exercised on the CPU."""

    class DeviceRunner(gates_mod._Runner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.on_cpu = False

    monkeypatch.setattr(gates_mod, "_Runner", DeviceRunner)
    lstm = make_lstm(4, 5, 2, seed=14, scale=2.0)
    x = torch.randn(13, 6, 4, generator=torch.Generator().manual_seed(12))
    trace = extract_gates(lstm, x, chunk_size=5, method=method, threads=2)
    assert_matches_lstm(trace, lstm, x)
    parts = list(iter_gate_chunks(lstm, x, chunk_size=5, method=method, copy=True))
    np.testing.assert_allclose(parts[-1][1].layers[1]["h"], trace.layers[1]["h"][10:], atol=1e-6)


def test_signatures_from_trace_accept_a_gate_trace():
    """The signatures module reads traces as [N, T, H] arrays: our strided views work."""
    from pdmlens.signatures.cluster import signatures_from_lstm, signatures_from_trace

    lstm = make_lstm(3, 5, 2, seed=15)
    x = torch.randn(9, 6, 3, generator=torch.Generator().manual_seed(13))
    from_trace = signatures_from_trace(extract_gates(lstm, x), pool="mean")
    from_lstm = signatures_from_lstm(lstm, x.numpy())
    for layer in (1, 2):
        np.testing.assert_allclose(from_trace[layer][:, :10], from_lstm[layer], atol=1e-6)
        assert from_trace[layer].shape == (9, 10 + 15)


@pytest.mark.parametrize("method", METHODS)
def test_a_nan_window_stays_in_its_row(method):
    lstm = make_lstm(3, 4, 2, seed=16)
    x = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(14))
    x[2, 3, 1] = float("nan")
    trace = extract_gates(lstm, x, method=method, check="full")
    for layer in trace.layers:
        assert np.isnan(layer["h"][2, 3:]).all() and not np.isnan(layer["h"][2, :3]).any()
        assert not np.isnan(np.delete(layer["c"], 2, axis=0)).any()
    assert trace.max_abs_error <= TOL
