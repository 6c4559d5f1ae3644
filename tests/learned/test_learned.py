"""The learned pH optimizer (seed 002): structure, energy, meta-training, export."""

import importlib.util
import math

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from odeopt import learned
from odeopt.learned import (
    DigitsMLPTask,
    HamiltonianCell,
    HNNOptimizerNet,
    LearnedOptimizer,
    LogSign,
    QuadraticTask,
    meta_train,
    run_learned,
    run_torch,
)


def _cell(dim: int = 1, seed: int = 0) -> HamiltonianCell:
    torch.manual_seed(seed)
    return HamiltonianCell(dim).double()


def test_logsign_is_andrychowicz_preprocessing():
    x = torch.tensor([[2.0], [-3e-3], [1e-6], [0.0], [-1e-7]], dtype=torch.float64)
    out = LogSign(10.0)(x)
    big_1, big_2 = math.log(2.0) / 10, math.log(3e-3) / 10
    expected = [[big_1, 1.0], [big_2, -1.0], [-1.0, math.exp(10) * 1e-6], [-1.0, 0.0]]
    expected.append([-1.0, -math.exp(10) * 1e-7])
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="P must be > 0, got P=0"):
        LogSign(0.0)


def test_parameter_counts_and_psd_structure():
    # The original counts 19 and 55: the same parts plus L's bias, which it never uses.
    assert sum(p.numel() for p in HNNOptimizerNet(preprocess=False).parameters()) == 18
    assert sum(p.numel() for p in HNNOptimizerNet(preprocess=True).parameters()) == 53
    for dim in (1, 2):
        cell = _cell(dim, seed=3)
        for mat in (cell.dissipation(), cell.inverse_mass()):
            assert torch.allclose(mat, mat.T)
            assert torch.linalg.eigvalsh(mat).min() >= -1e-14
    with pytest.raises(ValueError, match="dim must be 1"):
        HamiltonianCell(3)


def test_balance_holds_pointwise_and_potential_is_the_integral_of_v():
    cell = _cell()
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(200, 1, generator=gen, dtype=torch.float64) * 2
    p = torch.randn(200, 1, generator=gen, dtype=torch.float64)
    b = cell.balance(q, p)
    assert torch.allclose(b["dH_dt"], b["dissipated"] + b["supplied"], rtol=0, atol=1e-12)
    assert (b["dissipated"] <= 1e-15).all()
    qq = q.clone().requires_grad_(True)
    (dphi,) = torch.autograd.grad(cell.potential(qq).sum(), qq)
    assert torch.allclose(dphi, cell.V(q), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="H exists only for dim = 1"):
        _cell(2).hamiltonian(q.repeat(1, 2), p.repeat(1, 2))


def test_balance_integrated_with_torchdiffeq():
    """H(T) − H(0) = ∫(−∇HᵀD∇H + yᵀG)dt along the cell's own flow (dopri5), and with the
    port off (G ≡ 0) H decreases."""
    cell = _cell(seed=2)
    x0 = torch.tensor([[1.5, -0.7], [-2.0, 0.4], [0.3, 1.1]], dtype=torch.float64)
    ts = torch.linspace(0, 3, 601, dtype=torch.float64)

    def f(t, x):
        qd, pd = cell(x[:, :1], x[:, 1:])
        return torch.cat([qd, pd], dim=-1)

    with torch.no_grad():
        xs = odeint(f, x0, ts, rtol=1e-11, atol=1e-12, method="dopri5")
    H = cell.hamiltonian(xs[..., :1], xs[..., 1:]).squeeze(-1).detach()
    b = cell.balance(xs[..., :1].reshape(-1, 1), xs[..., 1:].reshape(-1, 1))
    rate = (b["dissipated"] + b["supplied"]).reshape(len(ts), -1).detach()
    integral = torch.trapezoid(rate, ts, dim=0)
    assert torch.allclose(H[-1] - H[0], integral, rtol=0, atol=1e-4)
    assert (H[-1] - H[0]).abs().max() > 1e-2  # the flow really moves H
    with torch.no_grad():
        cell.G[2].weight.zero_()
        cell.G[2].bias.zero_()
        xs = odeint(f, x0, ts, rtol=1e-11, atol=1e-12, method="dopri5")
    H = cell.hamiltonian(xs[..., :1], xs[..., 1:]).squeeze(-1).detach()
    assert (H.diff(dim=0) <= 1e-10).all()
    assert (H[-1] < H[0] - 1e-3).all()


@pytest.mark.parametrize("w1", [None, 0.0, -0.8])
def test_to_system_is_the_same_cell_and_proves_passivity(w1):
    """D ⪰ 0 proves dH/dt ≤ yᵀu; the learned supply yᵀG(q) has no sign, so the cell is
    "passive" (not "dissipative"), and "dissipative" once the port is off (G ≡ 0)."""
    cell = _cell(seed=4)
    if w1 is not None:  # w₁ = 0: Φ is linear; w₁ < 0: the ReLU opens the other way
        with torch.no_grad():
            cell.V[0].weight.fill_(w1)
    system = cell.to_system()
    balance = system.energy_balance()
    assert balance.verdict == "passive"
    assert balance.nonincreasing is not True
    off = _cell(seed=4)
    with torch.no_grad():
        off.G[2].weight.zero_()
        off.G[2].bias.zero_()
    assert off.to_system().energy_balance().verdict == "dissipative"
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(50, 1, generator=gen, dtype=torch.float64) * 2
    p = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    field = system.compile("numpy").field({"q": q.numpy(), "p": p.numpy()})
    qd, pd = cell(q, p)
    np.testing.assert_allclose(field["q"], qd.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(field["p"], pd.detach().numpy(), rtol=1e-12, atol=1e-12)


def _quadratic_problem(seed: int):
    return QuadraticTask(dtype=torch.float64).sample(1, torch.Generator().manual_seed(seed))


def test_exported_optimizer_equals_the_meta_training_rollout():
    torch.manual_seed(0)
    net = HNNOptimizerNet().double()
    problem = _quadratic_problem(7)
    reference = run_learned(net, problem, steps=40, out_mul=0.01)[:, 0]
    theta = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = LearnedOptimizer([theta], net, lr=0.01)
    losses = []
    for k in range(40):
        opt.zero_grad()
        loss = problem.losses([theta.unsqueeze(0)], k)[0]
        losses.append(float(loss.detach()))
        loss.backward()
        opt.step()
    np.testing.assert_allclose(losses, reference[:-1], rtol=1e-12, atol=0)
    assert reference[-1] != reference[0]


def _train_steps(opt, theta, problem, steps, start=0):
    for k in range(start, start + steps):
        opt.zero_grad()
        problem.losses([theta.unsqueeze(0)], k)[0].backward()
        opt.step()


def test_resume_is_exact_and_source_export_matches(tmp_path):
    torch.manual_seed(1)
    net = HNNOptimizerNet(preprocess=True).double()
    problem = _quadratic_problem(8)
    a = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt_a = LearnedOptimizer([a], net, lr=0.01)
    _train_steps(opt_a, a, problem, 30)

    b = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt_b = LearnedOptimizer([b], net, lr=0.01)
    _train_steps(opt_b, b, problem, 12)
    saved = opt_b.state_dict()
    b2 = b.detach().clone().requires_grad_(True)
    opt_b2 = LearnedOptimizer([b2], net, lr=0.01)
    opt_b2.load_state_dict(saved)
    _train_steps(opt_b2, b2, problem, 18, start=12)
    assert torch.equal(a, b2)

    path = learned.save_source(net, tmp_path / "hnn_opt.py", class_name="MyHNN")
    spec = importlib.util.spec_from_file_location("hnn_opt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt_c = module.MyHNN([c], lr=0.01)
    _train_steps(opt_c, c, problem, 30)
    assert torch.equal(a, c)  # LearnedOptimizer runs this very source
    assert "import odeopt" not in path.read_text()


def test_meta_training_runs_in_the_task_dtype():
    res = meta_train(QuadraticTask(dtype=torch.float64), iterations=1, problems=2, steps=15)
    assert np.isfinite(res.best_validation)
    assert next(res.net.parameters()).dtype == torch.float32  # the net keeps its own dtype


def test_bad_input_is_refused_by_name():
    net = HNNOptimizerNet()
    theta = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="HNNOptimizerNet"):
        LearnedOptimizer([theta], torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match=r"lr \(out_mul\) must be > 0, got lr=0"):
        LearnedOptimizer([theta], net, lr=0.0)
    opt = LearnedOptimizer([theta], net)
    theta.grad = torch.tensor([1.0, float("nan"), 0.0])
    with pytest.raises(FloatingPointError, match="param group 0, parameter 0"):
        opt.step()
    with pytest.raises(ValueError, match="iterations must be an integer ≥ 1, got iterations=0"):
        meta_train(QuadraticTask(), iterations=0)
    with pytest.raises(ValueError, match="activation must be 'sigmoid' or 'relu'"):
        DigitsMLPTask(activation="tanh")
    with pytest.raises(ValueError, match="on_window needs window"):
        run_learned(net, _quadratic_problem(0), on_window=lambda acc: None)
    with pytest.raises(ValueError, match="class_name must be a Python identifier"):
        learned.to_source(net, "not valid")


def test_meta_training_on_quadratics_beats_its_start_and_hand_tuned_sgd():
    """ALGORITHMS.md §4's quadratic task, shortened: 60 meta-iterations of 8 problems.
    The loss at step 100, mean over 50 fresh problems, must fall below the untrained net's
    and below SGD(0.01, momentum 0.9) (the reference's tuned baseline)."""
    task = QuadraticTask()
    test = task.sample(50, torch.Generator().manual_seed(123))
    torch.manual_seed(0)
    untrained = HNNOptimizerNet()
    before = run_learned(untrained, test, out_mul=1e-3)[-1].mean()
    result = meta_train(task, iterations=60, problems=8, out_mul=1e-3, validate_every=20)
    after = run_learned(result.net, test, out_mul=1e-3)[-1].mean()
    sgd = run_torch(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9), test)[-1].mean()
    assert np.isfinite(after)
    assert after < 0.5 * before
    assert after < sgd
    assert len(result.validation) == 3 and result.best_validation == min(result.validation)
