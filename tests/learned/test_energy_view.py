"""The energy view of the learned pH optimizer (issue 16, item 4): learned.energy_trace and
plot.learned_energy."""

import copy

import matplotlib
import numpy as np
import pytest
import torch

from odeopt import learned, plot

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def trained():
    return learned.pretrained("hnn_quadratic")


@pytest.fixture(scope="module")
def trace(trained):
    batch = learned.QuadraticTask().sample(3, torch.Generator().manual_seed(1))
    return learned.energy_trace(trained, batch, 20), batch


def test_trace_runs_the_optimizer_exactly_as_run_learned(trained, trace):
    tr, batch = trace
    ref = learned.run_learned(trained.net, batch, 20, trained.out_mul, trained.normalize)
    assert tr.loss.shape == tr.H.shape == tr.dissipated.shape == (20, 3)
    assert tr.q.shape == tr.p.shape == (20, 3, 10)
    np.testing.assert_array_equal(tr.loss, ref[:-1])
    assert tr.mean("loss")[-1] < 0.2 * tr.mean("loss")[0]


def test_power_balance_is_the_pH_identity(trained, trace):
    """dH/dt = ∇Hᵀẋ (autograd ∇H, the cell's forward ẋ) equals −∇HᵀD∇H + yᵀu at every
    state (∇HᵀJ∇H = 0): exact up to float64 rounding; D = KKᵀ makes the dissipation ≤ 0, and
    p₀ = 0 makes the first step's supply y = M⁻¹p zero."""
    tr, _ = trace
    scale = np.abs(tr.dH_dt).max()
    assert np.abs(tr.dH_dt - tr.dissipated - tr.supplied).max() <= 1e-13 * scale
    assert (tr.dissipated <= 0).all()
    assert (tr.supplied[0] == 0).all() and (tr.supplied[1:] != 0).any()
    cell = copy.deepcopy(trained.net.cell).double()
    q, p = torch.tensor(tr.q[5]).reshape(-1, 1), torch.tensor(tr.p[5]).reshape(-1, 1)
    H = cell.hamiltonian(q, p).detach().reshape(3, -1).sum(1).numpy()
    np.testing.assert_allclose(tr.H[5], H, rtol=1e-14)


def test_powers_are_the_time_derivative_of_H_along_the_cells_flow(trained, trace):
    """The trace's −∇HᵀD∇H + yᵀu is dH/dt along the cell's own flow, ẋ = (J − D)∇H + [0; 1]u
    as odeopt's symbolic system states it (``to_system().compile()``, not the torch
    forward): central differences of H over an RK4 integration of ±h from the recorded state
    converge to it at second order (error ratio ≈ 4 when h halves)."""
    tr, _ = trace
    system = copy.deepcopy(trained.net.cell).double().to_system()
    field = system.compile()

    def rk4(x, h):
        def f(y):
            return field.field(y)

        def shift(y, d, a):
            return {k: y[k] + a * d[k] for k in y}

        k1 = f(x)
        k2 = f(shift(x, k1, h / 2))
        k3 = f(shift(x, k2, h / 2))
        k4 = f(shift(x, k3, h))
        return {k: x[k] + h / 6 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]) for k in x}

    for k in (0, 7, 19):
        state = {"q": tr.q[k], "p": tr.p[k]}
        np.testing.assert_allclose(field.energy(state), tr.H[k], rtol=1e-12)
        target = tr.dissipated[k] + tr.supplied[k]
        errors = []
        for h in (1e-3, 5e-4):
            fd = (field.energy(rk4(state, h)) - field.energy(rk4(state, -h))) / (2 * h)
            errors.append(np.abs(fd - target).max() / np.abs(target).max())
        assert errors[1] < 1e-3
        assert 3.5 < errors[0] / errors[1] < 4.5


def test_energy_trace_refuses_cells_without_H_and_bad_arguments(trace):
    _, batch = trace
    with pytest.raises(ValueError, match="constrained=False"):
        learned.energy_trace(learned.HNNOptimizerNet(constrained=False), batch, 2)
    with pytest.raises(ValueError, match="preprocess=True"):
        learned.energy_trace(learned.HNNOptimizerNet(preprocess=True), batch, 2)
    with pytest.raises(TypeError, match="net=LSTMOptimizerNet"):
        learned.energy_trace(learned.LSTMOptimizerNet(), batch, 2)
    with pytest.raises(TypeError, match="problems must be a batch"):
        learned.energy_trace(learned.HNNOptimizerNet(), learned.QuadraticTask(), 2)
    with pytest.raises(ValueError, match="steps"):
        learned.energy_trace(learned.HNNOptimizerNet(), batch, 0)
    with pytest.raises(ValueError, match="name must be one of"):
        trace[0].mean("energy")


def test_plot_renders_loss_energy_and_power_with_labels(trace):
    import matplotlib.pyplot as plt

    tr, _ = trace
    axes = plot.learned_energy(tr)
    try:
        assert len(axes) == 3
        assert [ax.get_ylabel() for ax in axes] == ["F(θ_k)", "H(q_k, p_k)", "power"]
        assert all(ax.get_xlabel() == "step k" and ax.get_title() for ax in axes)
        np.testing.assert_allclose(axes[1].lines[0].get_ydata(), tr.mean("H"))
        labels = [t.get_text() for t in axes[2].get_legend().get_texts()]
        assert labels == ["dissipated −∇HᵀD∇H", "supplied yᵀu", "dH/dt = sum"]
        axes[0].figure.canvas.draw()
        one = plot.learned_energy(tr, problem=2)
        np.testing.assert_allclose(one[0].lines[0].get_ydata(), tr.loss[:, 2])
        assert one[0].get_title() == "loss (problem 2)"
    finally:
        plt.close("all")
    with pytest.raises(ValueError, match="problem=3"):
        plot.learned_energy(tr, problem=3)
    with pytest.raises(TypeError, match="EnergyTrace"):
        plot.learned_energy({"loss": tr.loss})
