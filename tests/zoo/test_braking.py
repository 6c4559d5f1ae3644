"""Braking (heavy ball whose friction switches from k₀ to k₁ once F reaches a goal): the
switch in integration and in the exported optimizer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import run_steps

import odeopt as oo
from odeopt import problems, zoo


def test_braking_switch_in_integration_fires_once_at_the_goal() -> None:
    """Per trajectory: one event, at F = goal; before it the run is heavy ball with k₀,
    after it heavy ball with k₁ (the same steps from the state after the event's step)."""
    pb = problems.quadratic(3)
    x0 = np.random.default_rng(0).uniform(-2, 2, (6, 3))
    k0, k1, goal, h, n = 0.05, 3.0, 0.2, 0.01, 1500
    tr = oo.integrate(zoo.braking(k0=k0, k1=k1, goal=goal), pb, {"theta": x0}, steps=n, h=h)
    assert sorted(e.trajectory for e in tr.events) == list(range(6))
    hb0 = oo.integrate(zoo.heavy_ball(friction=k0), pb, {"theta": x0}, steps=n, h=h)
    for ev in tr.events:
        i, s = ev.trajectory, ev.step
        assert tr.loss[s, i] > goal >= tr.loss[s + 1, i]  # crossed during step s
        # the located time: F(θ(t_e)) = goal to the bisection's tolerance, inside the step
        assert s * h <= ev.time <= (s + 1) * h
        np.testing.assert_array_equal(tr["theta"][: s + 1, i], hb0["theta"][: s + 1, i])
        rest = oo.integrate(
            zoo.heavy_ball(friction=k1),
            pb,
            {"theta": tr["theta"][s + 1, i][None], "p": tr["p"][s + 1, i][None]},
            t_span=((s + 1) * h, n * h),
            h=h,
        )
        np.testing.assert_allclose(rest.final["theta"][0], tr.final["theta"][i], atol=1e-12)
    # dH/dt = yᵀu = −(k/m²)|p|² on each side of the switch (proved for k ≥ 0)
    for k in (k0, k1):
        b = zoo.braking(k0=k).energy_balance()
        assert b.verdict == "dissipative" and b.nonincreasing
    assert np.all(tr.energy[-1] < 0.1 * tr.energy[0])


def test_braking_relative_goal_and_start_below_the_goal() -> None:
    pb = problems.quadratic(2)
    x0 = np.array([[2.0, 0.0], [0.1, 0.0]])  # F₀ = 2 and 0.005
    sys_ = zoo.braking(k0=0.0, k1=2.0, goal=0.5)
    sys_rel = _relative(sys_)
    tr = oo.integrate(sys_rel, pb, {"theta": x0}, steps=400, h=0.01)
    ev = {e.trajectory: e for e in tr.events}
    # relative goal 0.5·F₀ per trajectory: trajectory 0 switches when F = 1
    assert 0 in ev and abs(tr.loss[ev[0].step + 1, 0] - 1.0) < 0.05
    low = oo.integrate(sys_, pb, {"theta": x0[1:]}, steps=50, h=0.01)  # F₀ < 0.5: at t₀
    hb1 = oo.integrate(zoo.heavy_ball(friction=2.0), pb, {"theta": x0[1:]}, steps=50, h=0.01)
    np.testing.assert_array_equal(low["theta"], hb1["theta"])


def _relative(system):
    from odeopt.symbolic import Switch

    sw = system.switches[0]
    return oo.PortHamiltonian(
        system.hamiltonian,
        list(system.blocks),
        J=system.J,
        G=system.G,
        u=list(system.u),
        parameters={p.symbol: p.default for p in system.parameters},
        aliases={p.name: p.symbol for p in system.parameters},
        switches=[Switch(sw.goal, sw.set, relative=True)],
        name="braking_relative",
    )


def test_braking_export_switches_once_on_the_closure_loss(digits) -> None:
    X, y, model = digits
    h, k0, k1 = 0.3, 0.1, 3.0
    Brake = oo.discretize(zoo.braking(), "symplectic_euler").to_torch()
    HB = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    loss0 = torch.nn.functional.cross_entropy(model(X), y).item()
    goal = 0.5 * loss0
    m1 = copy.deepcopy(model)
    opt = Brake(m1.parameters(), lr=h, gain=k0, gain_after=k1, goal=goal)
    ours, losses = run_steps(opt, m1, X, y, 60)
    k_switch = next(k for k, v in enumerate(losses) if v <= goal)
    assert opt.param_groups[0]["gain"] == k1 and opt.state["odeopt"]["switched"] == [True]
    # heavy ball with friction k₀ until the step whose loss reached the goal, then k₁
    m2 = copy.deepcopy(model)
    hb = HB(m2.parameters(), lr=h, friction=k0)

    def brake_by_hand(k, o):
        if k == k_switch:
            o.param_groups[0]["friction"] = k1

    ref, ref_losses = run_steps(hb, m2, X, y, 60, brake_by_hand)
    assert (ours - ref).abs().max().item() <= 1e-12
    # the switch is in state_dict: a resumed optimizer does not fire again
    sd = copy.deepcopy(opt.state_dict())
    opt2 = Brake(copy.deepcopy(m1).parameters(), lr=h, gain=k0, gain_after=k1, goal=goal)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["gain"] == k1 and opt2.state["odeopt"]["switched"] == [True]


def test_braking_export_smoothing_delays_the_switch(digits) -> None:
    X, y, model = digits
    Brake = oo.discretize(zoo.braking(), "symplectic_euler").to_torch()
    loss0 = torch.nn.functional.cross_entropy(model(X), y).item()
    first = {}
    for beta in (0.0, 0.9):
        m = copy.deepcopy(model)
        opt = Brake(m.parameters(), lr=0.3, gain=0.1, goal=0.5 * loss0, switch_smoothing=beta)

        def watch(k, o, beta=beta):
            if o.param_groups[0]["gain"] != 0.1 and beta not in first:
                first[beta] = k

        run_steps(opt, m, X, y, 80, watch)
    assert first[0.9] > first[0.0]
    with pytest.raises(ValueError, match="switch_smoothing"):
        Brake(copy.deepcopy(model).parameters(), switch_smoothing=1.0)


def test_a_switch_reads_the_streamed_loss_at_t0_of_the_run() -> None:
    """Streamed data starting at t₀ = 1 (the second batch, F = 10θ²): the goal is compared
    with F(θ₀, t₀) = 2.5, not with the first batch's F(θ₀) = 0.125, so no switch at t₀ and
    the run stays frictionless."""
    parts = [problems.quadratic(1), problems.quadratic(1, A=[[20.0]])]
    st = problems.Streamed(parts, period=1.0)
    tr = oo.integrate(
        zoo.braking(k0=0.0, k1=5.0, goal=1.0),
        st,
        {"theta": np.array([[0.5]])},
        t_span=(1.0, 1.05),
        h=0.01,
    )
    free = oo.integrate(
        zoo.heavy_ball(friction=0.0), st, {"theta": np.array([[0.5]])}, t_span=(1.0, 1.05), h=0.01
    )
    # F(θ₀, t₀) = 2.5 > goal: no switch at t₀, so still frictionless
    np.testing.assert_allclose(tr.final["p"], free.final["p"], rtol=1e-12)
