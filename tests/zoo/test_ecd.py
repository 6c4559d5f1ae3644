"""Energy-conserving descent (BBI, Ruthless, ECDSep): the exported rules against the authors'
code, the domain V > 0, bounces and the rescaling onto H = E."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import sympy as sp
import torch
from helpers import flat, run_steps

import odeopt as oo
from odeopt import problems, zoo


def _ecdsep_reference(model, X, y, lr, eta, s, f0, delta_e, steps):
    """ALGORITHMS.md §6's ECDSep (bounces and weight decay off) as a plain loop."""
    params = list(model.parameters())
    E = None
    p: list[torch.Tensor] = []
    for _ in range(steps):
        for q in params:
            q.grad = None
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        F = loss.item()
        g = [q.grad for q in params]
        V = (F - f0) ** eta
        if E is None:
            E = math.log(V * (s + delta_e))
            gn = math.sqrt(float(sum((gi * gi).sum() for gi in g)))
            p = [-gi * (math.sqrt(delta_e) / gn) for gi in g]
        S = float(sum((x * x).sum() for x in p))
        target = math.exp(E) / V - s
        r = 1.0 if target < 0 or S <= 0 or abs(target - S) < 1e-10 else math.sqrt(target / S)
        p = [r * x - lr * eta / (F - f0) * gi for x, gi in zip(p, g, strict=True)]
        S = float(sum((x * x).sum() for x in p))
        with torch.no_grad():
            for q, x in zip(params, p, strict=True):
                q.add_(lr * 2 * x / (s + S))
    return torch.cat([q.detach().flatten() for q in params]), E


@pytest.mark.parametrize("eta", [1.0, 2.0])
def test_ecdsep_export_equals_the_authors_rule(digits, eta) -> None:
    X, y, model = digits
    lr, s, f0, delta_e, steps = 0.3, 1.0, -0.1, 1.0, 300
    Opt = oo.discretize(zoo.ecdsep(eta=eta), "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=lr, s=s, f0=f0, delta_e=delta_e, noise=0.0)
    ours, losses = run_steps(opt, m, X, y, steps)
    ref, E = _ecdsep_reference(copy.deepcopy(model), X, y, lr, eta, s, f0, delta_e, steps)
    assert opt.state["odeopt"]["E"] == pytest.approx(E, rel=1e-14)
    assert (ours - ref).abs().max().item() <= 1e-12
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["bbi", "ruthless", "ecdsep"])
def test_ecd_outside_its_domain_makes_no_step_and_no_nan(digits, name) -> None:
    """V = F − ΔV ≤ 0: no step (counted), parameters untouched; with adaptive_shift the
    shift is lowered by 5|V| and the next step runs."""
    X, y, model = digits
    loss0 = torch.nn.functional.cross_entropy(model(X), y).item()
    key = "f0" if name == "ecdsep" else "delta_v"
    Opt = oo.discretize(zoo.get(name), "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    before = torch.cat([q.detach().flatten() for q in m.parameters()]).clone()
    opt = Opt(m.parameters(), lr=0.05, **{key: loss0 + 1.0})
    _, losses = run_steps(opt, m, X, y, 3)
    after = torch.cat([q.detach().flatten() for q in m.parameters()])
    assert torch.equal(before, after) and opt.state["odeopt"]["domain_skips"] == 3
    m2 = copy.deepcopy(model)
    opt2 = Opt(m2.parameters(), lr=0.05, adaptive_shift=True, **{key: loss0 + 1.0})
    _, losses2 = run_steps(opt2, m2, X, y, 20)
    assert opt2.state["odeopt"]["domain_skips"] == 1
    assert opt2.param_groups[0][key] == pytest.approx(loss0 + 1.0 - 5.0 * 1.0)
    assert np.all(np.isfinite(losses2)) and losses2[-1] < losses2[0]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("bbi", {"bounce_every": 40, "bounces": 3, "bounce_patience": 25}),
        ("ecdsep", {"noise": 1e-2}),
    ],
)
def test_ecd_bounces_are_seeded_kept_in_state_and_keep_the_energy(digits, name, kwargs) -> None:
    X, y, model = digits
    key = "f0" if name == "ecdsep" else "delta_v"
    Opt = oo.discretize(zoo.get(name), "symplectic_euler").to_torch()

    def make(m, seed=7):
        return Opt(m.parameters(), lr=0.05, seed=seed, **{key: -0.1}, **kwargs)

    runs = []
    for seed in (7, 7, 8):
        m = copy.deepcopy(model)
        opt = make(m, seed)
        runs.append((run_steps(opt, m, X, y, 150)[0], opt))
    assert torch.equal(runs[0][0], runs[1][0])  # a fixed seed: identical runs
    assert not torch.equal(runs[0][0], runs[2][0])  # the noise matters
    opt = runs[0][1]
    if name == "bbi":
        assert opt.state["odeopt"]["bounces_made"] >= 3
    # resume mid-run through state_dict (the generator's state included): bit-identical
    m = copy.deepcopy(model)
    first = make(m)
    run_steps(first, m, X, y, 70)
    sd = copy.deepcopy(first.state_dict())
    second = make(m)
    second.load_state_dict(sd)
    resumed, _ = run_steps(second, m, X, y, 80)
    assert torch.equal(resumed, runs[0][0])


def test_bbi_bounce_schedule_counts_as_the_authors_code() -> None:
    """Which calls bounce: replay the authors' counters (counter0 for fixed bounces every T0
    updates, N_b of them; counter for T1 consecutive updates without a new minimum of V, a
    bounce then replacing the next call's update) on the V each call saw. 2-D Ackley with
    T0 = 20, N_b = 4, T1 = 100 (the authors' Ackley settings): both kinds of bounce occur."""
    pb = problems.ackley(2, b=0.02)
    theta = torch.nn.Parameter(torch.tensor([-4.0, 3.0], dtype=torch.float64))
    Opt = oo.discretize(zoo.bbi(), "symplectic_euler").to_torch()
    opt = Opt(
        [theta],
        lr=0.0096,
        delta_v=1e-4,
        delta_e=2.0,
        bounce_every=20,
        bounces=4,
        bounce_patience=100,
        seed=3,
    )

    def closure():
        opt.zero_grad()
        F, g = pb.value_and_grad(theta.detach().numpy()[None])
        theta.grad = torch.tensor(g[0])
        return torch.tensor(float(F[0]))

    seen, bounced = [], []
    for _ in range(1500):
        made = opt.state["odeopt"].get("bounces_made", 0) if opt.state else 0
        seen.append(float(closure()) - 1e-4)
        opt.step(closure)
        bounced.append(opt.state["odeopt"].get("bounces_made", 0) > made)
    counter = counter0 = fixed = 0
    min_v, expected = float("inf"), []
    for V in seen:
        if V <= 1e-40:
            expected.append(False)
            continue
        if counter != 100 and counter0 != 20:
            expected.append(False)
            counter0 += 1
            counter += 1
            if V < min_v:
                min_v, counter = V, 0
        else:
            expected.append(True)
            if counter0 == 20:
                fixed += 1
                counter0 = 0 if fixed < 4 else counter0 + 1
            counter = 0
    assert bounced == expected
    assert sum(expected) > 4  # the four fixed bounces and some for lack of progress


def test_rejected_steps_do_not_count_towards_a_no_progress_bounce() -> None:
    """With step control, a rejected trial writes nothing: it is no update, so it must not
    advance the no-progress counter (the first 4 calls here are rejections)."""
    from odeopt.schemes import EulerRichardson, StepController

    pb = problems.ackley(2, b=0.02)
    scheme = EulerRichardson("reference", controller=StepController(norm="l2", rtol=0, atol=1e-4))
    Opt = oo.discretize(zoo.bbi(), scheme).to_torch()
    theta = torch.nn.Parameter(torch.tensor([-4.0, 3.0], dtype=torch.float64))
    opt = Opt([theta], lr=0.5, delta_v=1e-4, delta_e=2.0, bounce_patience=3, seed=3)

    def closure():
        opt.zero_grad()
        F, g = pb.value_and_grad(theta.detach().numpy()[None])
        theta.grad = torch.tensor(g[0])
        return torch.tensor(float(F[0]))

    rejected = 0
    for _ in range(40):
        opt.step(closure)
        glob = opt.state["odeopt"]
        rejected = glob.get("rejected", 0)
        assert glob.get("since_best", 0) <= glob.get("updates", 0)
        assert glob.get("bounces_made", 0) == 0 or glob["updates"] >= 3
    assert rejected > 0


def test_bbi_bounce_keeps_theta_and_the_norm_of_p(digits) -> None:
    """A bounce step makes no update, redraws π's direction and keeps |π| (the energy)."""
    X, y, model = digits
    Opt = oo.discretize(zoo.bbi(), "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.05, delta_v=-0.1, bounce_every=10, bounces=2)
    params = list(m.parameters())
    for _ in range(40):
        before = flat(params).clone()
        p_before = flat([opt.state[q]["p"] for q in params]) if opt.state else None
        made = opt.state["odeopt"].get("bounces_made", 0) if opt.state else 0
        run_steps(opt, m, X, y, 1)
        glob = opt.state["odeopt"]
        if glob.get("bounces_made", 0) > made:  # this step bounced
            assert torch.equal(before, flat(params))
            p_after = flat([opt.state[q]["p"] for q in params])
            assert not torch.allclose(p_after, p_before)
            assert float(p_after.norm()) == pytest.approx(float(p_before.norm()), rel=1e-12)
    assert opt.state["odeopt"]["bounces_made"] == 2


def test_ecdsep_log_energy_may_be_negative() -> None:
    Opt = oo.discretize(zoo.ecdsep(), "symplectic_euler").to_torch()
    th = torch.nn.Parameter(torch.tensor([0.3, 0.2], dtype=torch.float64))
    opt = Opt([th], lr=0.1, noise=0.0)

    def closure():
        opt.zero_grad()
        F = 2 * (th**2).sum()
        F.backward()
        return F

    for _ in range(20):
        opt.step(closure)
    assert opt.state["odeopt"]["E"] < 0  # log(0.26·2) + log(1 + 1) < 0 … and it ran
    assert float((th**2).sum()) < 0.13


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
def test_with_bounces_and_rescaling_each_step_starts_on_h_equals_e(digits, name) -> None:
    """Bounces on, a fixed seed: after any step, the next step's projection puts the state on
    H = E. Probed by a step with a vanishing lr (the kick and drift vanish, the projection
    stays): H(θ, π) = E to 1e-10 relative."""
    X, y, model = digits
    key, extra = ("f0", {"noise": 1e-2}) if name == "ecdsep" else ("delta_v", {"bounce_every": 7})
    system = zoo.get(name)
    Opt = oo.discretize(system, "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.05, seed=3, **{key: -0.1}, **extra)
    H = system.compile("torch").energy
    for _ in range(12):
        run_steps(opt, m, X, y, 3)
        probe = copy.deepcopy(opt.state_dict())
        m2 = copy.deepcopy(m)
        o2 = Opt(m2.parameters(), lr=1e-300, seed=3, **{key: -0.1}, **extra)
        o2.load_state_dict(probe)
        for g in o2.param_groups:
            g["lr"] = 1e-300
        run_steps(o2, m2, X, y, 1)
        glob = o2.state["odeopt"]
        if glob.get("bounces_made", 0) > opt.state["odeopt"].get("bounces_made", 0):
            continue  # the probe itself bounced (no projection that step)
        p = torch.cat([o2.state[q]["p"].flatten() for q in m2.parameters()])[None]
        with torch.no_grad():
            F = torch.nn.functional.cross_entropy(m2(X), y).reshape(1)
        th = torch.cat([q.detach().flatten() for q in m2.parameters()])[None]
        E = glob["E"]
        value = float(H({"theta": th, "p": p}, F, **{key: -0.1, "E": E})[0])
        assert abs(value - E) <= 1e-10 * max(1.0, abs(E))
    assert opt.state["odeopt"].get("bounces_made", 0) > 0 or name == "ecdsep"


def test_bbi_with_g_of_v_exports_and_trains(digits) -> None:
    """g(V) = V²: the level-set field −(E/V + V³/E)∇F (simplified where V > 0) exports."""
    system = zoo.bbi(eta=2.0)
    V = system.loss - system.parameter("delta_v").symbol
    E = system.level_set.E
    assert sp.simplify(system.vector_field["p"] + system.loss.grad * (E / V + V**3 / E)) == 0
    X, y, model = digits
    Opt = oo.discretize(system, "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    _, losses = run_steps(Opt(m.parameters(), lr=0.05, delta_v=-0.1), m, X, y, 200)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("scheme", ["euler", "symplectic_euler"])
def test_ecdsep_noise_moves_the_momentum_the_step_keeps(scheme: str) -> None:
    """ECDSep's Gaussian noise acts on the momentum kept in the state after the step, whether
    the scheme updates it in place (symplectic Euler) or makes a new tensor (Euler)."""
    Opt = oo.discretize(zoo.ecdsep(), scheme).to_torch()

    def run(noise: float) -> torch.Tensor:
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64) + 2)
        opt = Opt([w], lr=0.05, noise=noise, seed=3)

        def closure():
            opt.zero_grad()
            loss = ((w - 1) ** 2).sum() + 1.0
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        return w.detach().clone()

    quiet = run(0.0)
    assert not torch.equal(run(0.5), quiet)
    assert not torch.equal(run(5e-5), quiet)
