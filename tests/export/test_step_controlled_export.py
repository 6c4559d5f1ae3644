"""Exported step-controlled rules (EnergyDecrease): the time they advance, the parameters
every group must share, and h_max."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import run_steps

import odeopt as oo
from odeopt import zoo

#: LC_M's step control (the rate read at the new point)
SCHEME = oo.schemes.EnergyDecrease("symplectic_euler", rate_at="new")


def test_exported_step_control_advances_time_by_the_step_taken(digits) -> None:
    """Nesterov's time-dependent rule: t advances by the step taken (h = lr·h_scale) on each
    accepted step, not by lr; the rule evaluates θ and the trial point once each."""
    X, y, model = digits
    rule = oo.discretize(zoo.nesterov(), SCHEME)
    assert len(rule.evaluations) == 2  # θ and the trial point, each once
    Opt = rule.to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.01)
    taken, accepted = 0.0, 0
    for _ in range(40):
        before = opt.state["odeopt"].get("h_scale", 1.0) if opt.state else 1.0
        rejected = opt.state["odeopt"].get("rejected", 0) if opt.state else 0
        run_steps(opt, m, X, y, 1)
        if opt.state["odeopt"].get("rejected", 0) == rejected:
            taken += 0.01 * before
            accepted += 1
    t = next(iter(opt.state[q] for q in m.parameters()))["t"]
    assert accepted >= 2 and taken != pytest.approx(0.01 * accepted)
    assert t == pytest.approx(taken, rel=1e-12)


def test_exported_step_control_refuses_groups_that_disagree_on_the_acceptance_test(
    digits,
) -> None:
    """One acceptance test for all parameters: groups with different lr, mass or friction
    are refused at the step, naming those hyper-parameters."""
    X, y, model = digits
    m2 = copy.deepcopy(model)
    params = list(m2.parameters())
    HB = oo.discretize(zoo.heavy_ball(), SCHEME).to_torch()
    two = HB([{"params": params[:2]}, {"params": params[2:], "mass": 50.0}], lr=0.1)
    with pytest.raises(ValueError, match="same lr, mass, friction"):
        run_steps(two, m2, X, y, 1)


def test_exported_h_max_bounds_the_step_and_a_zero_gradient_cannot_make_it_inf() -> None:
    """A zero gradient accepts every step, so the step grows each time: h_max = 0.2 caps
    it (h_scale·lr ≤ 0.2), and the capped step still converges on a bowl afterwards."""
    GF = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler", h_max=0.2))
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = GF.to_torch()([w], lr=0.1)

    def flat():
        opt.zero_grad()
        loss = 0.0 * (w**2).sum() + 1.0
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(flat)
    assert opt.state["odeopt"]["h_scale"] * 0.1 <= 0.2 + 1e-15

    def bowl():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    for _ in range(40):
        opt.step(bowl)
    assert float((w**2).sum()) < 1e-3


def test_an_exported_h_max_bounds_the_step_even_after_lr_grows() -> None:
    """lr raised from 0.1 to 1.0 through param_groups: the next step is still at most
    h_max = 0.2 (gradient descent on |w|² moves w by h·2w)."""
    GF = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler", h_max=0.2))
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = GF.to_torch()([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    opt.param_groups[0]["lr"] = 1.0
    before = w.detach().clone()
    opt.step(closure)
    step = (w.detach() - before).norm() / (2 * before.norm())
    assert step <= 0.2 + 1e-12
