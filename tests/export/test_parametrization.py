"""``to_torch(parametrization="sgd")``: a rule that identify() recognises as torch.optim.SGD
takes SGD's hyper-parameters, converted to the ODE's at every step, with its state kept as
SGD's momentum buffer, so that a scheduler acts on it exactly as on torch.optim.SGD."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import odeopt as oo
from odeopt import zoo

DT = torch.float64


def _problem():
    """A least-squares problem on three tensors (a matrix, a vector, a scalar), float64."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, generator=g, dtype=DT)
    Y = torch.randn(40, 3, generator=g, dtype=DT)
    params = [
        torch.nn.Parameter(0.1 * torch.randn(6, 3, generator=g, dtype=DT)),
        torch.nn.Parameter(torch.zeros(3, dtype=DT)),
        torch.nn.Parameter(torch.tensor(0.5, dtype=DT)),
    ]
    return X, Y, params


def _loss(X, Y, params):
    W, b, c = params
    return 0.5 * ((X @ W + b - Y) ** 2).mean() + 0.05 * c**2


def _run(make, steps=100, scheduler=True, params=None, opt=None, sched=None):
    """``steps`` steps of the optimizer ``make(params)`` (under StepLR(10, ½) when
    ``scheduler``); the flat parameters, the optimizer and the scheduler."""
    X, Y, fresh = _problem()
    params = fresh if params is None else params
    opt = opt or make(params)
    if scheduler and sched is None:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    for _ in range(steps):
        opt.zero_grad()
        _loss(X, Y, params).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return torch.cat([p.detach().flatten() for p in params]), opt, sched


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("scheme", "nesterov"), [("symplectic_euler", False), ("symplectic_euler_nesterov", True)]
)
def test_sgd_parametrization_equals_torch_sgd_under_step_lr(scheme, nesterov, foreach) -> None:
    """Heavy ball exported with SGD's hyper-parameters: Opt(lr=0.1, momentum=0.9) under
    StepLR(step_size=10, gamma=0.5) is torch.optim.SGD under the same scheduler to 1e-12 over
    100 steps, and its state is SGD's momentum buffer."""
    Opt = oo.discretize(zoo.heavy_ball(), scheme).to_torch(parametrization="sgd")
    assert Opt.__name__.endswith("SGD")
    ours, opt, sched = _run(
        lambda ps: Opt(ps, lr=0.1, momentum=0.9, nesterov=nesterov, foreach=foreach)
    )
    ref, sgd, _ = _run(
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=nesterov, foreach=foreach)
    )
    assert (ours - ref).abs().max().item() <= 1e-12
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**10)  # the scheduler ran
    for p, q in zip(opt.param_groups[0]["params"], sgd.param_groups[0]["params"], strict=True):
        diff = opt.state[p]["momentum_buffer"] - sgd.state[q]["momentum_buffer"]
        assert diff.abs().max().item() <= 1e-12
    assert (ours - _run(lambda ps: Opt(ps, lr=0.1, momentum=0.9), 0)[0]).abs().max() > 0.1


def test_dampening_is_torch_sgds_also_when_it_changes() -> None:
    """dampening d: torch's first buffer is g (no dampening), then b' = μb + (1 − d)g; with
    momentum 0 torch ignores d. Equal to 1e-12 under StepLR, d changed at step 50 too."""
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch(parametrization="sgd")

    def changing(make):

        _, _, params = _problem()
        opt = make(params)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
        a, _, _ = _run(None, steps=50, params=params, opt=opt, sched=sched)
        opt.param_groups[0]["dampening"] = 0.6
        b, _, _ = _run(None, steps=50, params=params, opt=opt, sched=sched)
        return a, b

    ours = changing(lambda ps: Opt(ps, lr=0.1, momentum=0.9, dampening=0.3))
    ref = changing(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3))
    for a, b in zip(ours, ref, strict=True):
        assert (a - b).abs().max().item() <= 1e-12
    undamped, _, _ = _run(lambda ps: Opt(ps, lr=0.1, momentum=0.9))
    assert (undamped - ours[1]).abs().max().item() > 1e-3  # dampening did something
    no_momentum, _, _ = _run(lambda ps: Opt(ps, lr=0.1, momentum=0.0, dampening=0.5))
    plain, _, _ = _run(lambda ps: torch.optim.SGD(ps, lr=0.1, dampening=0.5))
    assert (no_momentum - plain).abs().max().item() <= 1e-12
    GD = oo.discretize(zoo.gradient_flow(), "euler").to_torch(parametrization="sgd")
    gd, _, _ = _run(lambda ps: GD(ps, lr=0.1, dampening=0.5))
    assert (gd - plain).abs().max().item() <= 1e-12
    NAG = oo.discretize(zoo.heavy_ball(), "symplectic_euler_nesterov").to_torch(
        parametrization="sgd"
    )
    with pytest.raises(ValueError, match=r"dampening must be 0\.0, got 0\.1"):
        NAG(_problem()[2], lr=0.1, momentum=0.9, nesterov=True, dampening=0.1)


def test_ode_parametrization_under_step_lr_drifts_from_sgd() -> None:
    """The issue's point, measured: with lr = h, StepLR halves h, which quarters SGD's lr and
    changes its momentum. Equal without a scheduler (1e-12), far apart with one."""
    Ode = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    h = 0.1**0.5  # SGD(lr=0.1, momentum=0.9) = heavy ball with h = √0.1, m = 1, γ = 0.1/h

    def ode(ps):
        return Ode(ps, lr=h, mass=1.0, friction=0.1 / h)

    def sgd(ps):
        return torch.optim.SGD(ps, lr=0.1, momentum=0.9)

    still = (_run(ode, scheduler=False)[0] - _run(sgd, scheduler=False)[0]).abs().max().item()
    drift = (_run(ode)[0] - _run(sgd)[0]).abs().max().item()
    assert still <= 1e-12
    assert drift > 1e-2  # measured 0.11


def test_state_dict_round_trip_resumes_exactly() -> None:
    """Stop after 40 of 100 steps, save model, optimizer and scheduler, resume in a fresh
    optimizer: bit-identical to the uninterrupted run; the state is SGD's (step,
    momentum_buffer)."""
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch(parametrization="sgd")

    def make(ps):
        return Opt(ps, lr=0.1, momentum=0.9)

    full, _, _ = _run(make)
    _, _, params = _problem()
    _, opt, sched = _run(make, steps=40, params=params)
    saved = copy.deepcopy((opt.state_dict(), sched.state_dict()))
    assert set(saved[0]["state"][0]) == {"step", "momentum_buffer"}
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = make(resumed_params)
    opt2.load_state_dict(saved[0])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=10, gamma=0.5)
    sched2.load_state_dict(saved[1])
    resumed, _, _ = _run(None, steps=60, params=resumed_params, opt=opt2, sched=sched2)
    assert torch.equal(full, resumed)
    Ode = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    with pytest.raises(ValueError, match="lacks .*friction"):
        Ode(resumed_params, lr=0.1).load_state_dict(saved[0])


def test_per_group_values_and_plain_gradient_descent() -> None:
    """Two param groups with their own momentum are SGD's two groups; gradient flow + Euler
    with parametrization "sgd" has no state and is SGD without momentum (under StepLR)."""
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch(parametrization="sgd")

    def groups(ps):
        return [{"params": ps[:1], "momentum": 0.5}, {"params": ps[1:], "momentum": 0.95}]

    ours, _, _ = _run(lambda ps: Opt(groups(ps), lr=0.2))
    ref, _, _ = _run(lambda ps: torch.optim.SGD(groups(ps), lr=0.2))
    assert (ours - ref).abs().max().item() <= 1e-12
    GD = oo.discretize(zoo.gradient_flow(), "euler").to_torch(parametrization="sgd")
    ours, opt, _ = _run(lambda ps: GD(ps, lr=0.3))
    ref, _, _ = _run(lambda ps: torch.optim.SGD(ps, lr=0.3))
    assert (ours - ref).abs().max().item() <= 1e-12
    assert set(next(iter(opt.state.values()))) == {"step"}
    with pytest.raises(ValueError, match=r"momentum must be 0\.0, got 0\.9"):
        GD(opt.param_groups[0]["params"], lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    ("system", "scheme", "match"),
    [
        ("heavy_ball", "rk4", "evaluates the gradient 4 times"),
        ("bbi", "symplectic_euler", "depends on the global"),
        ("nesterov", "symplectic_euler", "change with the time"),
    ],
)
def test_a_rule_identify_does_not_recognise_is_refused_with_its_reason(
    system, scheme, match
) -> None:
    """torch and optax (the class and the file) refuse it alike, with identify()'s reason."""
    rule = oo.discretize(zoo.get(system), scheme)
    with pytest.raises(ValueError, match=f"parametrization='sgd': .*{match}"):
        rule.to_torch(parametrization="sgd")
    with pytest.raises(ValueError, match=f"parametrization='sgd': .*{match}"):
        rule.to_optax(0.1, parametrization="sgd")
    with pytest.raises(ValueError, match=f"parametrization='sgd': .*{match}"):
        rule.to_source(framework="jax", parametrization="sgd")


def test_hyper_parameters_are_checked_with_their_names() -> None:
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    with pytest.raises(ValueError, match="is torch.optim.SGD, not rmsprop; pass .*'sgd'"):
        rule.to_source(parametrization="rmsprop")
    with pytest.raises(TypeError, match="parametrization must be 'ode'"):
        rule.to_source(parametrization=None)  # type: ignore[arg-type]
    Opt = rule.to_torch(parametrization="sgd")
    w = torch.nn.Parameter(torch.zeros(2, dtype=DT))
    with pytest.raises(ValueError, match="dampening must be nonnegative, got -0.5"):
        Opt([w], lr=0.1, momentum=0.9, dampening=-0.5)
    with pytest.raises(ValueError, match="dampening=1.0 have no ODE counterpart .*h > 0"):
        Opt([w], lr=0.1, momentum=0.9, dampening=1.0)
    with pytest.raises(ValueError, match="nesterov must be False.*symplectic_euler_nesterov"):
        Opt([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum must be nonnegative, got -0.1"):
        Opt([w], lr=0.1, momentum=-0.1)
    with pytest.raises(
        ValueError, match=r"friction \(from lr=0.1, momentum=1.5, dampening=0.0\) must"
    ):
        Opt([w], lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="lr must be nonnegative, got -0.1"):
        Opt([w], lr=-0.1)  # lr = 0 is a step without update, as torch.optim.SGD's
    opt = Opt([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(2, dtype=DT)
    opt.step()
    opt.param_groups[0]["momentum"] = 2.0  # changed later (a scheduler): checked at the step
    with pytest.raises(ValueError, match="friction in param group 0 .*momentum=2.0"):
        opt.step()


def test_the_ode_parametrization_is_the_default_and_unchanged() -> None:
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    assert rule.to_source() == rule.to_source(parametrization="ode")
    assert rule.to_torch().__name__ == "HeavyBallSymplecticEuler"
    assert "momentum_buffer" not in rule.to_source()


def test_sgd_files_are_ruff_clean(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("ruff")
    ruff = str(exe) if exe.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the test extras)")
    for system, scheme in [
        ("heavy_ball", "symplectic_euler"),
        ("heavy_ball", "symplectic_euler_nesterov"),
        ("gradient_flow", "euler"),
    ]:
        src = oo.discretize(zoo.get(system), scheme).to_source(parametrization="sgd")
        (tmp_path / f"{system}_{scheme}.py").write_text(src)
    cmd = [ruff, "check", "--isolated", "--select", "F,E,W", "--line-length", "100"]
    proc = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _cosine(opt):
    """CosineAnnealingLR(T_max=20, eta_min=0): lr is exactly 0 at step 20, then rises."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.0)


def test_lr_zero_is_a_step_that_changes_nothing_as_in_torch_sgd() -> None:
    """lr reaches 0 under CosineAnnealingLR(T_max=20, eta_min=0): torch.optim.SGD makes no
    update there but runs its buffer recurrence; the export does the same (40 steps, 1e-12),
    and Opt(lr=0.0) is accepted (a step that changes no parameter)."""
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch(parametrization="sgd")

    def run(make):
        _, _, params = _problem()
        opt = make(params)
        return _run(None, steps=40, params=params, opt=opt, sched=_cosine(opt))

    ours, opt, _ = run(lambda ps: Opt(ps, lr=0.1, momentum=0.9))
    ref, sgd, _ = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))
    assert (ours - ref).abs().max().item() <= 1e-12
    for p, q in zip(opt.param_groups[0]["params"], sgd.param_groups[0]["params"], strict=True):
        diff = opt.state[p]["momentum_buffer"] - sgd.state[q]["momentum_buffer"]
        assert diff.abs().max().item() <= 1e-12
    start = torch.cat([p.detach().flatten() for p in _problem()[2]])
    still, opt, _ = _run(lambda ps: Opt(ps, lr=0.0, momentum=0.9), steps=3, scheduler=False)
    assert torch.equal(still, start)
    ref0, sgd0, _ = _run(lambda ps: torch.optim.SGD(ps, lr=0.0, momentum=0.9), 3, False)
    for p, q in zip(opt.param_groups[0]["params"], sgd0.param_groups[0]["params"], strict=True):
        diff = opt.state[p]["momentum_buffer"] - sgd0.state[q]["momentum_buffer"]
        assert diff.abs().max().item() <= 1e-12

    def groups(ps):  # one group frozen at lr = 0 for 10 steps, then released
        return [{"params": ps[:1], "lr": 0.0}, {"params": ps[1:]}]

    def released(make):
        _, _, params = _problem()
        opt = make(groups(params))
        a, _, _ = _run(None, steps=10, params=params, opt=opt, scheduler=False)
        opt.param_groups[0]["lr"] = 0.05
        return a, _run(None, steps=10, params=params, opt=opt, scheduler=False)[0]

    mixed = released(lambda gs: Opt(gs, lr=0.1, momentum=0.9, dampening=0.2))
    ref_mixed = released(lambda gs: torch.optim.SGD(gs, lr=0.1, momentum=0.9, dampening=0.2))
    for a, b in zip(mixed, ref_mixed, strict=True):
        assert (a - b).abs().max().item() <= 1e-12
    assert torch.equal(mixed[0][:18], start[:18])  # the frozen group stayed


def test_rmsprop_parametrization_follows_a_scheduler_through_lr_zero() -> None:
    """rmsprop + symplectic Euler with RMSprop's hyper-parameters under CosineAnnealingLR
    (lr = 0 at step 20): torch.optim.RMSprop to 1e-12 over 40 steps, square_avg too."""
    Opt = oo.discretize(zoo.get("rmsprop"), "symplectic_euler").to_torch(parametrization="rmsprop")

    def run(make):
        _, _, params = _problem()
        opt = make(params)
        return _run(None, steps=40, params=params, opt=opt, sched=_cosine(opt))

    # eps = 1e-3: with eps = 1e-8 the steps g/√v are sign-like where g ≈ 0 and amplify the
    # roundoff of h·decay ≠ 1 − α (measured 3e-12 after 40 steps, 1e-17 up to step 30)
    ours, opt, _ = run(lambda ps: Opt(ps, lr=0.01, alpha=0.9, eps=1e-3))
    ref, rms, _ = run(lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-3))
    assert (ours - ref).abs().max().item() <= 1e-12
    assert (ours - torch.cat([p.detach().flatten() for p in _problem()[2]])).abs().max() > 1e-3
    for p, q in zip(opt.param_groups[0]["params"], rms.param_groups[0]["params"], strict=True):
        diff = opt.state[p]["square_avg"] - rms.state[q]["square_avg"]
        assert diff.abs().max().item() <= 1e-12


@pytest.mark.parametrize("system", ["weight_decay", "massaroli"])
def test_dampening_with_weight_decay_is_torch_sgds(system) -> None:
    """torch's first buffer is g + weight_decay·θ (no dampening), then b' = μb + (1 − d)·(g +
    weight_decay·θ): with dampening 0.3 and weight_decay 0.05 under StepLR, 50 steps, 1e-12."""
    sys_ = zoo.weight_decay(zoo.heavy_ball(), 0.01) if system == "weight_decay" else zoo.get(system)
    Opt = oo.discretize(sys_, "symplectic_euler").to_torch(parametrization="sgd")
    kw = dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05)
    ours, _, _ = _run(lambda ps: Opt(ps, **kw), steps=50)
    ref, _, _ = _run(lambda ps: torch.optim.SGD(ps, **kw), steps=50)
    assert (ours - ref).abs().max().item() <= 1e-12
