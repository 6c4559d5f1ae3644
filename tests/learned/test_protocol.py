"""The reference's protocol (issue 16): the authors' original cell, the learning-to-learn LSTM
baseline, the baselines' settings, evaluate() and the shipped checkpoints."""

import importlib.util
import inspect
import math

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from odeopt import learned
from odeopt.learned import (
    HNNOptimizerNet,
    LearnedOptimizer,
    LSTMOptimizerNet,
    QuadraticTask,
    evaluate,
    make_net,
    meta_train,
    run_learned,
    run_torch,
)


def _problem(seed: int, dim: int = 10):
    return QuadraticTask(dim=dim, dtype=torch.float64).sample(
        1, torch.Generator().manual_seed(seed)
    )


def _rollout_by_optimizer(opt, theta, problem, steps):
    losses = []
    for k in range(steps):
        opt.zero_grad()
        loss = problem.losses([theta.unsqueeze(0)], k)[0]
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return np.array(losses)


# ------------------------------------------------------------------------- the original cell
def test_original_cell_is_the_authors_equations():
    """constrained=False: q̇ = p − D_q, ṗ = (−V(q) − D_p + G(q))·LLᵀ, [D_q; D_p] = D[V(q); p]
    with D unconstrained (here made non-symmetric and indefinite)."""
    torch.manual_seed(0)
    net = HNNOptimizerNet(constrained=False).double()
    cell = net.cell
    with torch.no_grad():
        cell.D.weight.copy_(torch.tensor([[0.3, -1.2], [0.7, -0.4]], dtype=torch.float64))
    assert sum(p.numel() for p in net.parameters()) == 18  # the original's 19 less L's bias
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(7, 1, generator=gen, dtype=torch.float64)
    p = torch.randn(7, 1, generator=gen, dtype=torch.float64)
    V, G = cell.V(q), cell.G(q)
    Dm, L = cell.D.weight, cell.L.weight
    damp = torch.cat([V, p], dim=-1) @ Dm.T
    expected_qdot = p - damp[:, :1]
    expected_pdot = (-V - damp[:, 1:] + G) * (L @ L.T)
    qdot, pdot = cell(q, p)
    torch.testing.assert_close(qdot, expected_qdot, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(pdot, expected_pdot, rtol=1e-14, atol=1e-14)
    # the constrained cell differs on the same weights (D = KKᵀ on ∇H)
    assert not torch.allclose(HNNOptimizerNet().double().cell(q, p)[0], qdot)
    with pytest.raises(ValueError, match=r"original \(constrained=False\) cell is no pH system"):
        cell.to_system()


def test_original_cell_with_preprocessing_cuts_the_meta_gradient_through_p():
    torch.manual_seed(0)
    g = torch.randn(5, 1, dtype=torch.float64)
    for constrained, expect_grad in ((False, False), (True, True)):
        net = HNNOptimizerNet(preprocess=True, constrained=constrained).double()
        p_prev = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
        u, _ = net(g, p_prev)
        (grad,) = torch.autograd.grad(u.sum(), p_prev, allow_unused=True)
        assert (grad is not None and bool(grad.abs().sum() > 0)) is expect_grad


# ---------------------------------------------------------------------------------- the LSTM
def test_lstm_has_the_reference_parameter_counts():
    assert sum(p.numel() for p in LSTMOptimizerNet().parameters()) == 5221
    assert sum(p.numel() for p in LSTMOptimizerNet(preprocess=True).parameters()) == 5301
    with pytest.raises(ValueError, match=r"LSTMOptimizerNet: hidden must be an integer ≥ 1"):
        LSTMOptimizerNet(hidden=0)
    with pytest.raises(TypeError, match=r"preprocess must be True or False, got preprocess=1"):
        LSTMOptimizerNet(preprocess=1)


@pytest.mark.parametrize("kind", ["lstm", "lstm_pre", "hnn_original"])
def test_export_equals_the_in_training_rollout(kind, tmp_path):
    """LearnedOptimizer and the written file (generated torch source) reproduce run_learned's
    rollout to 1e-12 in float64 over 100 steps, and resume exactly from state_dict."""
    if kind == "hnn_original":
        net, lr = make_net("hnn_original", seed=2).double(), 1e-3
    else:
        torch.manual_seed(2)
        net, lr = LSTMOptimizerNet(preprocess=kind == "lstm_pre").double(), 0.1
    problem = _problem(11)
    reference = run_learned(net, problem, steps=100, out_mul=lr)[:, 0]
    theta = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    losses = _rollout_by_optimizer(LearnedOptimizer([theta], net, lr=lr), theta, problem, 100)
    np.testing.assert_allclose(losses, reference[:-1], rtol=1e-12, atol=0)
    assert abs(reference[-1] - reference[0]) > 1e-3  # the optimizer moves

    path = learned.save_source(net, tmp_path / "gen.py", class_name="Gen")
    spec = importlib.util.spec_from_file_location("gen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(
        _rollout_by_optimizer(module.Gen([c], lr=lr), c, problem, 100), losses, rtol=0, atol=0
    )
    assert "import odeopt" not in path.read_text()

    a = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt_a = LearnedOptimizer([a], net, lr=lr)
    _rollout_by_optimizer(opt_a, a, problem, 12)
    b = a.detach().clone().requires_grad_(True)
    opt_b = LearnedOptimizer([b], net, lr=lr)
    opt_b.load_state_dict(opt_a.state_dict())
    rest_a = [problem.losses([a.unsqueeze(0)], 0).item()]
    rest_b = [problem.losses([b.unsqueeze(0)], 0).item()]
    for _ in range(8):
        for opt, w, rest in ((opt_a, a, rest_a), (opt_b, b, rest_b)):
            opt.zero_grad()
            problem.losses([w.unsqueeze(0)], 0)[0].backward()
            opt.step()
            rest.append(problem.losses([w.unsqueeze(0)], 0).item())
    assert rest_a == rest_b


def test_lstm_state_is_checked_on_load():
    torch.manual_seed(0)
    net = LSTMOptimizerNet()
    a = torch.ones(3, requires_grad=True)
    opt = LearnedOptimizer([a], net)
    a.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[a]) == {"h0", "c0", "h1", "c1"}
    assert opt.state[a]["h1"].shape == (3, 20)
    other = LearnedOptimizer([torch.ones(4, requires_grad=True)], net)
    other.param_groups[0]["params"][0].grad = torch.ones(4)
    other.step()
    with pytest.raises(ValueError, match=r"has h0 of shape \(4, 20\), expected \(3, 20\)"):
        opt.load_state_dict(other.state_dict())
    hnn = LearnedOptimizer([torch.ones(3, requires_grad=True)], HNNOptimizerNet())
    hnn.param_groups[0]["params"][0].grad = torch.ones(3)
    hnn.step()
    with pytest.raises(ValueError, match=r"has state \['p'\], expected \['c0', 'c1', 'h0', 'h1'\]"):
        opt.load_state_dict(hnn.state_dict())
    with pytest.raises(ValueError, match=r"jax export renders the pH-constrained cell only"):
        opt.to_optax()


def test_learned_update_checks_the_lstm_state():
    net = LSTMOptimizerNet()
    g = torch.zeros(2, 3)
    u, state = learned.learned_update(net, g, net.initial_state(6, g))
    assert u.shape == (2, 3) and [s.shape for s in state] == [(6, 20)] * 4
    with pytest.raises(ValueError, match=r"tensors of shape \(6, 20\) .* got \[\(5, 20\)"):
        learned.learned_update(net, g, net.initial_state(5, g))
    with pytest.raises(ValueError, match=r"got \['NoneType'\]"):
        learned.learned_update(net, g, None)
    with pytest.raises(TypeError, match=r"grad must be a real floating tensor, got torch.int64"):
        learned.learned_update(net, g.long(), net.initial_state(6, g))


def test_meta_training_a_tiny_lstm_beats_its_untrained_start():
    """A few meta-iterations (the reference's LSTM settings: T = 20, lr 0.003, out_mul 1.0)
    on 3-D quadratics lower F at step 30 on fresh problems below the untrained LSTM's."""
    task = QuadraticTask(dim=3)
    test = task.sample(64, torch.Generator().manual_seed(99))
    untrained = make_net("lstm", task, seed=0)
    before = run_learned(untrained, test, steps=30, out_mul=1.0)[-2].mean()
    res = meta_train(
        task, "lstm", iterations=15, problems=8, steps=30, validate_every=5, validation_problems=16
    )
    assert isinstance(res.net, LSTMOptimizerNet) and res.settings["unroll"] == 20
    assert (res.settings["lr"], res.out_mul) == (0.003, 1.0)
    after = run_learned(res.net, test, steps=30, out_mul=res.out_mul)[-2].mean()
    assert np.isfinite(after)
    assert after < 0.7 * before


def _frozen_window_loss(net, batch, grads, out_mul):
    """Σ_t mean_b F_b(θ_t) over one window with the optimizer's inputs held at ``grads``
    (the meta-loss as learning-to-learn defines it: no derivative through ∇F)."""
    from odeopt.learned.train import initial_state, learned_update

    (theta,) = batch.initial()
    state = initial_state(net, theta)
    total = 0.0
    for t, g in enumerate(grads):
        total = total + batch.losses([theta], t).mean()
        u, state = learned_update(net, g, state, True, batch_dims=1)
        theta = theta + out_mul * u
    return total


@pytest.mark.parametrize("kind", ["lstm", "hnn", "hnn_original"])
def test_window_meta_gradient_equals_finite_differences(kind):
    """The meta-gradient run_learned hands to the meta-optimizer is the derivative of the
    window's meta-loss with the optimizee's gradients as inputs, checked against central
    differences of that loss (float64). The reference's LSTM loop fails this on the input
    weights: its optimizer input aliases θ.grad, which later steps of the window accumulate
    into, so the backward pass sees a different input than the forward did."""
    task = QuadraticTask(dim=3, dtype=torch.float64)
    batch = task.sample(2, torch.Generator().manual_seed(5))
    if kind == "lstm":  # a narrow LSTM with weights large enough to matter
        net = LSTMOptimizerNet(hidden=3).double()
        torch.manual_seed(3)
        for w in net.parameters():
            torch.nn.init.uniform_(w, -0.5, 0.5)
    else:
        net = make_net(kind, task, seed=3).double()
    out_mul, steps = (0.1 if kind == "lstm" else 0.05), 6
    got = []

    def on_window(acc):
        got.append(torch.autograd.grad(acc, list(net.parameters()), allow_unused=True))

    run_learned(net, batch, steps, out_mul, True, steps, on_window)
    # the inputs the optimizer saw: ∇F(θ_t) along the same (forward) trajectory
    from odeopt.learned.train import initial_state, learned_update

    grads, (theta,) = [], batch.initial()
    state = initial_state(net, theta)
    with torch.no_grad():
        for t in range(steps):
            th = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(batch.losses([th], t).sum(), [th])
            grads.append(g)
            u, state = learned_update(net, g, state, True, batch_dims=1)
            theta = theta + out_mul * u
    (analytic,) = got
    eps = 1e-6
    for w, a in zip(net.parameters(), analytic, strict=True):
        a = torch.zeros_like(w) if a is None else a
        fd = torch.zeros_like(w)
        flat = w.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + eps
                up = _frozen_window_loss(net, batch, grads, out_mul)
                flat[i] = old - eps
                down = _frozen_window_loss(net, batch, grads, out_mul)
                flat[i] = old
            fd.view(-1)[i] = (up - down) / (2 * eps)
        err = float((a - fd).abs().max() / fd.abs().max().clamp_min(1e-12))
        assert err < 1e-5, (kind, err)  # the reference's aliased input: ≈ 1


# ---------------------------------------------------------------------- protocol and baselines
def test_meta_train_defaults_are_the_reference_protocol():
    defaults = {k: v.default for k, v in inspect.signature(meta_train).parameters.items()}
    assert defaults["iterations"] == 2000 and defaults["problems"] == 1  # 100 epochs × 20
    assert defaults["steps"] == 100 and defaults["validation_problems"] == 50
    assert defaults["validate_every"] == 20  # model selection once per epoch
    task = QuadraticTask()
    assert (task.dim, task.dtype) == (10, torch.float32)
    ref = learned.reference_settings
    assert ref("hnn", task) == {"unroll": 15, "lr": 0.01, "out_mul": 0.001, "normalize": True}
    assert ref("hnn_original", task) == ref("hnn", task)
    assert ref("lstm", task) == {"unroll": 20, "lr": 0.003, "out_mul": 1.0, "normalize": True}
    assert defaults["validation"] == "fresh" and defaults["train_remainder"] is False
    res = meta_train(QuadraticTask(dim=3), "hnn_original", iterations=1, steps=20)
    assert not res.net.constrained and res.settings["unroll"] == 15 and res.out_mul == 0.001
    assert len(res.meta_losses) == 1  # one full window of 15; the tail of 5 is not trained
    res = meta_train(QuadraticTask(dim=3), "hnn_original", iterations=1, steps=20,
                     train_remainder=True)  # fmt: skip
    assert len(res.meta_losses) == 2  # and the tail as one more window
    with pytest.raises(ValueError, match=r"net must be a net or one of .* got net='rnn'"):
        meta_train(QuadraticTask(dim=3), "rnn", iterations=1)


class _RecordingTask:
    """QuadraticTask(dim=3) that keeps every batch it samples."""

    name = "quadratic"

    def __init__(self) -> None:
        self.task, self.batches = QuadraticTask(dim=3), []

    def sample(self, n, generator):
        batch = self.task.sample(n, generator)
        self.batches.append(batch)
        return batch


@pytest.mark.parametrize("validation", ["fresh", "fixed"])
def test_model_selection_draws_fresh_or_fixed_validation_problems(validation):
    """The reference selects the model on new problems every epoch ("fresh"); "fixed"
    re-uses the first batch. Training problems come from their own stream either way."""
    task = _RecordingTask()
    res = meta_train(task, "hnn", iterations=6, steps=15, validate_every=2,
                     validation_problems=7, validation=validation)  # fmt: skip
    assert len(res.validation) == 3
    vals = [b for b in task.batches if b.n == 7]
    train = [b for b in task.batches if b.n == 1]
    assert len(train) == 6 and len({b.W.sum().item() for b in train}) == 6
    gen = torch.Generator().manual_seed(0)  # the training stream: seed, in both modes
    for b in train:
        assert torch.equal(b.W, QuadraticTask(dim=3).sample(1, gen).W)
    assert len(vals) == (3 if validation == "fresh" else 1)
    assert len({b.W.sum().item() for b in vals}) == len(vals)
    first = QuadraticTask(dim=3).sample(7, torch.Generator().manual_seed(10_000))
    assert torch.equal(vals[0].W, first.W)  # the stream seeded seed + 10_000
    # the kept net is the best one: rerunning the selection's batch reproduces its value
    if validation == "fixed":
        again = run_learned(res.net, vals[0], 15, res.out_mul)[:-1].mean()
        assert again == pytest.approx(res.best_validation, rel=1e-6)


def test_baselines_pass_momentum_and_nesterov_as_configured():
    """The reference's SGD is momentum 0.9; its NAG the same with nesterov=True: the runner
    builds exactly that, and NAG's trajectory differs from SGD's."""
    task = QuadraticTask()
    params = [torch.zeros(3, requires_grad=True)]
    for name, nesterov in (("sgd", False), ("nag", True)):
        opt = learned.baseline(name, task)(params)
        assert isinstance(opt, torch.optim.SGD)
        group = opt.param_groups[0]
        assert (group["lr"], group["momentum"], group["nesterov"]) == (0.01, 0.9, nesterov)
    assert learned.baseline("adam", task)(params).param_groups[0]["lr"] == 0.1
    assert learned.baseline("rmsprop", task)(params).param_groups[0]["lr"] == 0.03
    batch = task.sample(20, torch.Generator().manual_seed(3))
    sgd = run_torch(learned.baseline("sgd", task), batch)
    nag = run_torch(learned.baseline("nag", task), batch)
    assert np.abs(sgd - nag)[2:].min() > 0  # differ from the second update on, every problem
    assert np.abs(sgd - nag).max() > 1e-3
    with pytest.raises(ValueError, match=r"baseline: name must be one of .* got name='lbfgs'"):
        learned.baseline("lbfgs", task)


def test_evaluate_reports_the_mean_and_a_t_interval_over_seeds():
    task = QuadraticTask(dim=4)
    res = evaluate("sgd", task, problems=10, seeds=range(4), steps=20)
    per_seed = np.array(res["per_seed"])
    assert len(per_seed) == 4 and len(res["curve"]) == 20
    assert res["mean"] == pytest.approx(per_seed.mean(), rel=1e-12)
    assert res["curve"][-1] == pytest.approx(res["mean"], rel=1e-12)
    half = student_t.ppf(0.975, 3) * per_seed.std(ddof=1) / 2
    assert res["ci"] == pytest.approx((res["mean"] - half, res["mean"] + half), rel=1e-12)
    # the reference's counting: F at step 20 is the loss before the 20th update, F(θ_19)
    batch = task.sample(10, torch.Generator().manual_seed(learned.protocol.EVAL_SEED + 0))
    manual = run_torch(learned.baseline("sgd", task), batch, steps=20)
    assert per_seed[0] == pytest.approx(manual[19].mean(), rel=1e-12)
    one = evaluate("nag", task, problems=10, seeds=[0], steps=20)
    assert math.isnan(one["ci"][0]) and math.isnan(one["ci"][1])


def test_evaluate_runs_nets_with_the_reference_out_mul():
    task = QuadraticTask(dim=4)
    net = make_net("hnn", task, seed=0)
    res = evaluate(net, task, problems=5, seeds=[1, 2], steps=10)
    batch = task.sample(5, torch.Generator().manual_seed(learned.protocol.EVAL_SEED + 2))
    manual = run_learned(net, batch, steps=10, out_mul=0.001)
    assert res["per_seed"][1] == pytest.approx(manual[9].mean(), rel=1e-6)
    result = learned.MetaTrainResult(net=net, out_mul=0.01, normalize=False)
    other = evaluate(result, task, problems=5, seeds=[1, 2], steps=10)
    manual = run_learned(net, batch, steps=10, out_mul=0.01, normalize=False)
    assert other["per_seed"][1] == pytest.approx(manual[9].mean(), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(net_or_name="sdg"), ValueError, r"net_or_name must be a net, .* got 'sdg'"),
        (dict(net_or_name=3), TypeError, r"net_or_name must be a net, .* got int"),
        (dict(seeds=[]), ValueError, r"seeds must hold at least one seed"),
        (dict(seeds=[1, 1]), ValueError, r"seeds must be distinct, got seeds=\[1, 1\]"),
        (dict(seeds="01"), TypeError, r"seeds must be an iterable of integers"),
        (dict(seeds=[-1]), ValueError, r"seeds\[i\] must be an integer ≥ 0, got seeds\[i\]=-1"),
        (dict(problems=0), ValueError, r"problems must be an integer ≥ 1, got problems=0"),
        (dict(steps=2.5), ValueError, r"steps must be an integer ≥ 1, got steps=2.5"),
        (dict(out_mul=0.1), ValueError, r"out_mul and normalize apply to learned optimizers"),
        (dict(task=QuadraticTask), TypeError, r"task must be a Task instance"),
    ],
)
def test_evaluate_refuses_bad_arguments(kwargs, error, match):
    call = dict(net_or_name="sgd", task=QuadraticTask(dim=3), problems=2, seeds=[0], steps=3)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        evaluate(**call)


# ------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_keeps_net_and_settings(tmp_path):
    res = meta_train(
        QuadraticTask(dim=3), "lstm", iterations=1, steps=5, unroll=5, validation_problems=2
    )
    path = learned.save_checkpoint(res, tmp_path / "x.pt", note="tiny")
    back = learned.load_checkpoint(path)
    assert isinstance(back.net, LSTMOptimizerNet)
    for (k, v), (k2, v2) in zip(
        res.net.state_dict().items(), back.net.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    assert back.out_mul == res.out_mul and back.settings["note"] == "tiny"
    assert back.settings["iterations"] == 1 and back.meta_losses == res.meta_losses
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"is not an odeopt.learned checkpoint"):
        learned.load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("name", learned.CHECKPOINTS)
def test_pretrained_checkpoints_load_and_run(name):
    res = learned.pretrained(name)
    kind = {"hnn_quadratic": "hnn", "hnn_quadratic_original": "hnn_original"}.get(name, "lstm")
    assert res.settings["net"] == kind and res.settings["task"] == "quadratic"
    assert res.settings["iterations"] >= 1 and "budget" in res.settings["note"]
    expected = learned.reference_settings(kind, QuadraticTask())["out_mul"]
    assert res.out_mul == expected
    theta = torch.zeros(10, requires_grad=True)
    LearnedOptimizer([theta], res.net, lr=res.out_mul)  # ready for the torch optimizer
    # trained: on 50 fresh problems it ends far below F(θ_0) (≈ 10) and below plain SGD's
    task = QuadraticTask()
    mine = evaluate(res, task, problems=50, seeds=[7])
    sgd = evaluate("sgd", task, problems=50, seeds=[7])
    assert mine["mean"] < sgd["mean"]


def test_pretrained_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"pretrained: name must be one of .* got name='hnn'"):
        learned.pretrained("hnn")
