"""Exported optimizers: equal to torch.optim where the math says so, foreach = per-parameter,
exact resume, closures, errors, and a file that runs with torch alone."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import odeopt as oo
from odeopt import problems, zoo
from odeopt.cli import main as cli


def _train(make, model, X, y, steps=200, closure=False, stop_at=None, opt=None):
    opt = opt or make(model.parameters())
    for k in range(steps):
        if stop_at is not None and k == stop_at:
            break

        def step_closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            return loss

        if closure:
            opt.step(step_closure)
        else:
            step_closure()
            opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), opt


@pytest.mark.parametrize("foreach", [True, False])
def test_heavy_ball_symplectic_euler_equals_sgd_momentum_on_digits(digits, foreach) -> None:
    X, y, model = digits
    h, mass, friction = 0.3, 1.5, 0.5
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    ours, opt = _train(
        lambda ps: Opt(ps, lr=h, mass=mass, friction=friction, foreach=foreach),
        copy.deepcopy(model),
        X,
        y,
    )
    sgd_model = copy.deepcopy(model)
    ref, sgd = _train(
        lambda ps: torch.optim.SGD(ps, lr=h * h / mass, momentum=1 - friction * h / mass),
        sgd_model,
        X,
        y,
    )
    assert (ours - ref).abs().max().item() <= 1e-12
    # the state: p = −h·(SGD's momentum buffer)
    p0 = next(iter(opt.state.values()))["p"]
    buf = sgd.state[next(sgd_model.parameters())]["momentum_buffer"]
    torch.testing.assert_close(p0, -h * buf, rtol=1e-10, atol=1e-13)
    loss = torch.nn.functional.cross_entropy(copy.deepcopy(model)(X), y)
    assert _final_loss(Opt, model, X, y) < loss.item()


@pytest.mark.parametrize("foreach", [True, False])
def test_heavy_ball_nesterov_euler_equals_sgd_nesterov_on_digits(digits, foreach) -> None:
    """Symplectic Euler with a look-ahead drift is torch's NAG: identified, and equal."""
    X, y, model = digits
    h, mass, friction = 0.3, 1.5, 0.5
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler_nesterov")
    found = rule.identify()
    assert found.name == "SGD" and found.hyperparameters["nesterov"] == True  # noqa: E712
    subs = {
        rule.h: h,
        **{p.symbol: v for p, v in zip(rule.system.parameters, (mass, friction), strict=True)},
    }
    lr = float(found.hyperparameters["lr"].subs(subs))
    mu = float(found.hyperparameters["momentum"].subs(subs))
    assert lr == pytest.approx(h * h / mass) and mu == pytest.approx(1 - friction * h / mass)
    Opt = rule.to_torch()
    ours, _ = _train(
        lambda ps: Opt(ps, lr=h, mass=mass, friction=friction, foreach=foreach),
        copy.deepcopy(model),
        X,
        y,
    )
    ref, _ = _train(
        lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu, nesterov=True),
        copy.deepcopy(model),
        X,
        y,
    )
    assert (ours - ref).abs().max().item() <= 1e-12
    plain, _ = _train(
        lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu), copy.deepcopy(model), X, y
    )
    assert (ours - plain).abs().max().item() > 1e-6  # and it is not plain momentum


def _final_loss(Opt, model, X, y) -> float:
    m = copy.deepcopy(model)
    _train(lambda ps: Opt(ps, lr=0.3), m, X, y, steps=50)
    return torch.nn.functional.cross_entropy(m(X), y).item()


def test_gradient_flow_euler_equals_sgd_also_under_a_scheduler(digits) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.gradient_flow(), "euler").to_torch()

    def run(make):
        m = copy.deepcopy(model)
        opt = make(m.parameters())
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
        for _ in range(200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(X), y).backward()
            opt.step()
            sched.step()
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    a = run(lambda ps: Opt(ps, lr=0.5))
    b = run(lambda ps: torch.optim.SGD(ps, lr=0.5))
    assert torch.equal(a, b)


def test_per_group_hyperparameters(digits) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    h = 0.2
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    ours = Opt(
        [
            {"params": m1[0].parameters(), "friction": 1.0},
            {"params": m1[2].parameters(), "friction": 2.0},
        ],
        lr=h,
    )
    sgd = torch.optim.SGD(
        [
            {"params": m2[0].parameters(), "momentum": 1 - 1.0 * h},
            {"params": m2[2].parameters(), "momentum": 1 - 2.0 * h},
        ],
        lr=h * h,
    )
    a, _ = _train(None, m1, X, y, steps=100, opt=ours)
    b, _ = _train(None, m2, X, y, steps=100, opt=sgd)
    assert (a - b).abs().max().item() <= 1e-12


@pytest.mark.parametrize(
    "system,scheme",
    [("heavy_ball", "symplectic_euler"), ("bbi", "symplectic_euler"), ("heavy_ball", "rk4")],
)
def test_foreach_and_per_parameter_paths_agree_exactly(digits, system, scheme) -> None:
    X, y, model = digits
    params = {"delta_v": -0.1} if system == "bbi" else {}
    Opt = oo.discretize(zoo.get(system, **params), scheme).to_torch()
    closure = system == "bbi" or scheme == "rk4"
    a, _ = _train(
        lambda ps: Opt(ps, lr=0.05, foreach=True), copy.deepcopy(model), X, y, 60, closure
    )
    b, _ = _train(
        lambda ps: Opt(ps, lr=0.05, foreach=False), copy.deepcopy(model), X, y, 60, closure
    )
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("system", ["heavy_ball", "bbi"])
def test_resume_through_state_dict_is_bit_identical(digits, system) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.get(system), "symplectic_euler").to_torch()
    closure = system == "bbi"
    full, _ = _train(lambda ps: Opt(ps, lr=0.05), copy.deepcopy(model), X, y, 100, closure)
    m = copy.deepcopy(model)
    _, opt = _train(lambda ps: Opt(ps, lr=0.05), m, X, y, 100, closure, stop_at=40)
    saved_model, saved_opt = copy.deepcopy(m.state_dict()), copy.deepcopy(opt.state_dict())
    m2 = copy.deepcopy(model)
    m2.load_state_dict(saved_model)
    opt2 = Opt(m2.parameters(), lr=0.05)
    opt2.load_state_dict(saved_opt)
    resumed, _ = _train(None, m2, X, y, 60, closure, opt=opt2)
    assert torch.equal(full, resumed)


def test_rk4_export_equals_integrate() -> None:
    """Four closure evaluations per step; the same numbers as odeopt.integrate's rk4."""
    problem = problems.himmelblau()
    hb = zoo.heavy_ball(mass=1.0, friction=0.7)
    Opt = oo.discretize(hb, "rk4").to_torch()
    w = torch.nn.Parameter(torch.tensor([0.4, -0.9], dtype=torch.float64))
    opt = Opt([w], lr=0.01, mass=1.0, friction=0.7)

    def closure():
        opt.zero_grad()
        loss = problem.value(w[None])[0]
        loss.backward()
        return loss

    for _ in range(100):
        opt.step(closure)
    tr = oo.integrate(
        hb,
        problem,
        {"theta": np.array([[0.4, -0.9]])},
        steps=100,
        h=0.01,
        scheme="rk4",
        save="final",
    )
    np.testing.assert_allclose(w.detach().numpy(), tr["theta"][-1, 0], rtol=0, atol=1e-12)


def test_maximize_is_minimizing_the_negative(digits) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.bbi(delta_v=-1.0), "symplectic_euler").to_torch()
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    o1 = Opt(m1.parameters(), lr=0.05)
    o2 = Opt(m2.parameters(), lr=0.05, maximize=True)
    for _ in range(20):

        def c1():
            o1.zero_grad()
            loss = torch.nn.functional.cross_entropy(m1(X), y)
            loss.backward()
            return loss

        def c2():
            o2.zero_grad()
            loss = -torch.nn.functional.cross_entropy(m2(X), y)
            loss.backward()
            return loss

        o1.step(c1)
        o2.step(c2)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_parameters(digits, dtype) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    m = copy.deepcopy(model).to(dtype)
    opt = Opt(m.parameters(), lr=0.3)
    before = torch.nn.functional.cross_entropy(m(X.to(dtype)), y).item()
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(X.to(dtype)), y).backward()
        opt.step()
    assert all(p.dtype == dtype and torch.isfinite(p).all() for p in m.parameters())
    assert next(iter(opt.state.values()))["p"].dtype == dtype
    assert torch.nn.functional.cross_entropy(m(X.to(dtype)), y).item() < before


def test_errors_name_the_cause() -> None:
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    w = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="friction must be nonnegative, got -1"):
        Opt([w], lr=0.1, friction=-1.0)
    with pytest.raises(ValueError, match="mass must be positive"):
        Opt([w], lr=0.1, mass=0.0)
    with pytest.raises(ValueError, match="lr .* positive"):
        Opt([w], lr=-0.1)
    opt = Opt([torch.nn.Parameter(torch.zeros(2)), w], lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.zeros(2)
    w.grad = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(FloatingPointError, match=r"parameter 1 of group 0 \(shape \(3,\)\)"):
        opt.step()
    skip = Opt([w], lr=0.1, skip_nonfinite=True)
    skip.step()
    assert skip.skipped_steps == 1 and torch.equal(w.detach(), torch.zeros(3))
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        Opt(emb.parameters(), lr=0.1).step()
    Bbi = oo.discretize(zoo.bbi(), "symplectic_euler").to_torch()
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="needs a closure .* the loss value"):
        Bbi([w], lr=0.1).step()
    Rk4 = oo.discretize(zoo.heavy_ball(), "rk4").to_torch()
    with pytest.raises(RuntimeError, match="several gradient evaluations"):
        Rk4([w], lr=0.1).step()
    with pytest.raises(NotImplementedError, match="implicit"):
        oo.discretize(zoo.heavy_ball(), "discrete_gradient").to_source()


def test_generated_file_runs_with_torch_alone(tmp_path: Path) -> None:
    path = tmp_path / "hb_opt.py"
    assert cli(["export", "heavy_ball", "--scheme", "symplectic_euler", "-o", str(path)]) == 0
    source = path.read_text()
    imports = {line for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"import math", "import torch", "from torch.optim import Optimizer"}
    script = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from hb_opt import HeavyBallSymplecticEuler as Opt\n"
        "w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))\n"
        "opt = Opt([w], lr=0.1, mass=1.0, friction=0.5)\n"
        "for _ in range(300):\n"
        "    opt.zero_grad(); (0.5 * (w * w).sum()).backward(); opt.step()\n"
        "assert w.abs().max() < 1e-3, w\n"
        "assert not any(m.split('.')[0] == 'odeopt' for m in sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_cli_derive(capsys) -> None:
    assert cli(["derive", "heavy_ball", "--scheme", "symplectic_euler"]) == 0
    out = capsys.readouterr().out
    assert "p_1 := " in out and "identified: torch.optim.SGD(lr=h**2/m" in out
    assert cli(["derive", "nope"]) == 2


def _system(H_extra=None, R=None, names="m", **kw):
    theta, p = oo.blocks("theta p")
    m = oo.parameters(names, positive=True)
    F = oo.loss(theta)
    H = F + (oo.sqnorm(p) / (2 * m) if H_extra is None else H_extra(p))
    return oo.PortHamiltonian(
        H,
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=R if R is not None else [[0, 0], [0, 1]],
        parameters={m: 1.0},
        **kw,
    ), m


def _one_step_matches_program(system, scheme, x0, p0, lr=0.1):
    rule = oo.discretize(system, scheme)
    Opt = rule.to_torch()
    problem = problems.himmelblau()
    w = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = Opt([w], lr=lr)
    opt.state[w]["step"] = 0
    opt.state[w]["p"] = torch.tensor(p0, dtype=torch.float64)
    if "t" not in opt.state[w]:
        opt.state[w]["t"] = 0.0

    def closure():
        opt.zero_grad()
        loss = problem.value(w[None])[0]
        loss.backward()
        return loss

    opt.step(closure)
    out, _ = rule.program.evaluate(problem, {"theta": np.array([x0]), "p": np.array([p0])}, 0.0, lr)
    np.testing.assert_allclose(w.detach().numpy(), out["theta"][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(opt.state[w]["p"].numpy(), out["p"][0], rtol=0, atol=1e-12)


def test_reductions_first_met_in_the_outputs() -> None:
    """H = F + √(1 + |p|²): the reduction appears only in the outputs' stage."""
    import sympy as sp

    system, _ = _system(H_extra=lambda p: sp.sqrt(1 + oo.sqnorm(p)), R=[[0, 0], [0, 0]])
    for scheme in ("euler", "symplectic_euler", "rk4"):
        _one_step_matches_program(system, scheme, [0.3, -0.4], [0.5, 0.2])


def test_parameter_names_cannot_clash_with_generated_code() -> None:
    system, _ = _system(names="s0")
    _one_step_matches_program(system, "rk4", [0.3, -0.4], [0.5, 0.2])
    bad, m = _system(names="q", aliases={"foreach": oo.parameters("q", positive=True)})
    with pytest.raises(ValueError, match="clash with the optimizer's own keywords"):
        oo.discretize(bad, "euler").to_source()


def test_mixed_maximize_is_refused_for_rules_that_use_the_loss() -> None:
    Opt = oo.discretize(zoo.heavy_ball(), "rk4").to_torch()
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Opt([{"params": [a]}, {"params": [b], "maximize": True}], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * a).sum() + (b * b).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="disagree on maximize"):
        opt.step(closure)


def test_non_finite_intermediate_stage_is_skipped_or_raised() -> None:
    Opt = oo.discretize(zoo.heavy_ball(), "rk4").to_torch()
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    calls = []

    def make(opt):
        def closure():
            opt.zero_grad()
            calls.append(1)
            loss = (w * w).sum() * (float("nan") if len(calls) % 4 == 2 else 1.0)
            loss.backward()
            return loss

        return closure

    opt = Opt([w], lr=0.1, skip_nonfinite=True)
    opt.step(make(opt))
    assert opt.skipped_steps == 1
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64))
    calls.clear()
    opt = Opt([w], lr=0.1)
    with pytest.raises(FloatingPointError, match="not finite .* stage"):
        opt.step(make(opt))
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_time_dependent_rules_keep_time_per_group_and_are_not_sgd() -> None:
    t = oo.t
    system, _ = _system(R=[[0, 0], [0, 1 / (1 + t)]])
    rule = oo.discretize(system, "symplectic_euler")
    assert rule.identify().name is None and "time" in rule.identify().reason
    Opt = rule.to_torch()
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Opt([a, b], lr=0.1)
    b.grad = torch.ones(2)
    opt.step()
    opt.step()
    a.grad = torch.ones(2)
    opt.step()
    assert opt.state[a]["t"] == pytest.approx(0.3) and opt.state[b]["t"] == pytest.approx(0.3)


def _bbi_reference(model, X, y, lr, v0, delta_e, rescale, steps):
    """ALGORITHMS.md §6 written out as a plain loop (global norms, float64)."""
    params = list(model.parameters())
    E = None
    pi: list[torch.Tensor] = []
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        V = loss.item() - v0
        g = [p.grad for p in params]
        if E is None:
            E = V + delta_e
            gsq = float(sum((gi * gi).sum() for gi in g))
            target = E * E / V - V
            c = math.sqrt(target / gsq) if gsq > 0 and target > 0 else 0.0
            pi = [-c * gi for gi in g]
        if rescale:
            S = float(sum((x * x).sum() for x in pi))
            target = E * E / V - V
            r = 1.0 if target < 0 or S <= 0 or abs(target - S) < 1e-10 else math.sqrt(target / S)
            pi = [r * x for x in pi]
        pi = [x - 0.5 * lr * (V / E + E / V) * gi for x, gi in zip(pi, g, strict=True)]
        with torch.no_grad():
            for p, x in zip(params, pi, strict=True):
                p.add_(lr * (V / E) * x)
    return torch.cat([p.detach().flatten() for p in params]), E, pi


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("foreach", [True, False])
def test_bbi_export_equals_the_discrete_bbi_of_ecd(digits, rescale, foreach) -> None:
    """Exported BBI + symplectic Euler (π first) is §6's rule: energy E stored at the first
    step (V + δE), π₀ along −g on H = E, optional rescaling, kick, drift; 300 steps, 1e-12."""
    X, y, model = digits
    lr, v0, delta_e, steps = 0.05, -0.2, 0.3, 300
    Opt = oo.discretize(zoo.bbi(rescale=rescale), "symplectic_euler").to_torch()
    ours, opt = _train(
        lambda ps: Opt(ps, lr=lr, delta_v=v0, delta_e=delta_e, foreach=foreach),
        copy.deepcopy(model),
        X,
        y,
        steps=steps,
        closure=True,
    )
    ref, E, pi = _bbi_reference(copy.deepcopy(model), X, y, lr, v0, delta_e, rescale, steps)
    assert opt.state["odeopt"]["E"] == pytest.approx(E, rel=1e-15)
    assert (ours - ref).abs().max().item() <= 1e-12
    ours_p = torch.cat([opt.state[p]["p"].flatten() for p in opt.param_groups[0]["params"]])
    assert (ours_p - torch.cat([x.flatten() for x in pi])).abs().max().item() <= 1e-12
    loss0 = torch.nn.functional.cross_entropy(model(X), y).item()
    final = _final_loss_of(model, ours, X, y)
    assert final < 0.5 * loss0  # and it trains


def _final_loss_of(model, flat, X, y) -> float:
    m = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(flat, m.parameters())
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(m(X), y).item()


def test_compiled_path_equals_the_foreach_path(digits) -> None:
    """``compiled=True`` (torch.compile of the foreach step) computes the same rule."""
    X, y, model = digits
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    a, _ = _train(lambda ps: Opt(ps, lr=0.3, foreach=True), copy.deepcopy(model), X, y, steps=5)
    b, opt = _train(lambda ps: Opt(ps, lr=0.3, compiled=True), copy.deepcopy(model), X, y, steps=5)
    assert opt._compiled_step is not None
    assert (a - b).abs().max().item() <= 1e-12
