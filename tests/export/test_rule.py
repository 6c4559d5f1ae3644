"""discretize / UpdateRule / identify: the rule a scheme makes, recognised in torch.optim terms."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

import odeopt as oo
from odeopt import problems, zoo


def _params(system: oo.PortHamiltonian) -> dict[str, sp.Symbol]:
    return {p.name: p.symbol for p in system.parameters}


def test_heavy_ball_symplectic_euler_is_sgd_with_momentum() -> None:
    hb = zoo.heavy_ball()
    rule = oo.discretize(hb, "symplectic_euler")
    ident = rule.identify()
    P = _params(hb)
    m, gamma, h = P["mass"], P["friction"], rule.h
    assert ident.name == "SGD"
    assert sp.simplify(ident.hyperparameters["lr"] - h**2 / m) == 0
    assert sp.simplify(ident.hyperparameters["momentum"] - (1 - gamma * h / m)) == 0
    assert ident.hyperparameters["dampening"] == 0
    p = hb.block("p")
    assert sp.simplify(ident.state["momentum_buffer"] + p / h) == 0


def test_gradient_flow_euler_is_plain_sgd() -> None:
    rule = oo.discretize(zoo.gradient_flow(), "euler")
    ident = rule.identify()
    assert ident.name == "SGD" and ident.hyperparameters == {"lr": rule.h}


def test_heavy_ball_explicit_euler_is_not_sgd_and_says_why() -> None:
    ident = oo.discretize(zoo.heavy_ball(), "euler").identify()
    assert ident.name is None and not ident
    assert "neither a multiple of the new buffer" in ident.reason


def test_no_match_reasons() -> None:
    assert "4 times" in oo.discretize(zoo.heavy_ball(), "rk4").identify().reason
    assert "not at θ" in oo.discretize(zoo.heavy_ball(), "symplectic_euler_q").identify().reason
    bbi = oo.discretize(zoo.bbi(), "symplectic_euler").identify()
    assert bbi.name is None and "global" in bbi.reason
    assert "implicit" in oo.discretize(zoo.heavy_ball(), "discrete_gradient").identify().reason


def test_identified_sgd_reproduces_torch_sgd_numerically() -> None:
    """The identification is checked against torch.optim.SGD stepping the same objective."""
    mass, friction, h = 2.0, 0.8, 0.05
    problem = problems.himmelblau()
    th0 = np.array([[0.5, -0.3]])
    tr = oo.integrate(
        zoo.heavy_ball(mass=mass, friction=friction),
        problem,
        {"theta": th0},
        steps=200,
        h=h,
        scheme="symplectic_euler",
    )
    w = torch.tensor(th0[0], requires_grad=True)
    opt = torch.optim.SGD([w], lr=h**2 / mass, momentum=1 - friction * h / mass)
    for k in range(200):
        opt.zero_grad()
        _, g = problem.value_and_grad(w.detach()[None])
        w.grad = g[0].clone()
        opt.step()
        if k in (0, 99, 199):
            np.testing.assert_allclose(w.detach().numpy(), tr["theta"][k + 1, 0], rtol=1e-10)
    buf = opt.state[w]["momentum_buffer"].numpy()
    np.testing.assert_allclose(buf, -tr["p"][-1, 0] / h, rtol=1e-9)


def test_rule_text_and_latex() -> None:
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    assert "p_1 := " in str(rule) and "p ← p_1" in str(rule)
    latex = rule._repr_latex_()
    assert latex.startswith("$\\begin{aligned}") and "\\nabla F" in latex
    assert not rule.needs_loss
    assert oo.discretize(zoo.bbi(), "symplectic_euler").needs_loss
