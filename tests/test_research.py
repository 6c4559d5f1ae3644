"""The research systems of issue 5: braking, Massaroli, adaptive flows, ECD (BBI, ECDSep)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import sympy as sp
import torch

import odeopt as oo
from odeopt import problems, zoo


def _run(opt, model, X, y, steps, on_step=None):
    losses = []
    for k in range(steps):
        if on_step is not None:
            on_step(k, opt)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
    return torch.cat([p.detach().flatten() for p in model.parameters()]), losses


# ---------------------------------------------------------------- braking
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
    ours, losses = _run(opt, m1, X, y, 60)
    k_switch = next(k for k, v in enumerate(losses) if v <= goal)
    assert opt.param_groups[0]["gain"] == k1 and opt.state["odeopt"]["switched"] == [True]
    # heavy ball with friction k₀ until the step whose loss reached the goal, then k₁
    m2 = copy.deepcopy(model)
    hb = HB(m2.parameters(), lr=h, friction=k0)

    def brake_by_hand(k, o):
        if k == k_switch:
            o.param_groups[0]["friction"] = k1

    ref, ref_losses = _run(hb, m2, X, y, 60, brake_by_hand)
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

        _run(opt, m, X, y, 80, watch)
    assert first[0.9] > first[0.0]
    with pytest.raises(ValueError, match="switch_smoothing"):
        Brake(copy.deepcopy(model).parameters(), switch_smoothing=1.0)


# ---------------------------------------------------------------- every system
SYSTEMS = {
    # name: (zoo keyword arguments, step h for digits, step h for the quadratic)
    "gradient_flow": ({}, 0.5, 0.1),
    "heavy_ball": ({"friction": 1.0}, 0.3, 0.1),
    "nesterov": ({"t0": 1.0}, 0.3, 0.1),
    "braking": ({"k0": 0.1, "k1": 2.0, "goal": 1.0}, 0.3, 0.1),
    "massaroli": ({"beta": 1.0}, 0.3, 0.1),
    "rmsprop": ({"decay": 10.0}, 0.01, 0.01),
    "levenberg_marquardt": ({}, None, 0.1),
    "adam": ({"beta1_bar": 10.0, "beta2_bar": 0.1}, 0.01, 0.01),
    "bbi": ({"delta_v": -0.1}, 0.05, 0.05),
    "ruthless": ({"delta_v": -0.1}, 0.05, 0.01),
    "ecdsep": ({"f0": -0.1}, 0.3, 0.1),
}


def test_every_zoo_system_is_covered() -> None:
    assert set(SYSTEMS) == set(zoo.names())


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_every_system_integrates_and_its_export_trains_digits(digits, name) -> None:
    """Each system: symplectic Euler on a quadratic lowers F without blow-up; its exported
    optimizer lowers an MLP's training loss on digits over 200 steps, with no NaN."""
    kwargs, h_digits, h_quad = SYSTEMS[name]
    system = zoo.get(name, **kwargs)
    pb = problems.quadratic(4, A=np.diag([0.5, 1.0, 2.0, 4.0]))
    if system.metric is not None:  # the same F as least squares, which has residuals
        pb = problems.least_squares(np.diag(np.sqrt([0.25, 0.5, 1.0, 2.0])), np.zeros(4))
    x0 = np.random.default_rng(0).uniform(-1, 1, (8, 4))
    start = {"theta": x0}
    if "p" in [b.name for b in system.blocks]:  # moving along −∇F (Ruthless at rest has E = 0)
        start["p"] = -0.5 * pb.value_and_grad(x0)[1]
    tr = oo.integrate(system, pb, start, steps=300, h=h_quad)
    assert set(tr.status) == {"ok"}
    # (conservative systems oscillate: the lowest F along the run, not the last)
    assert np.all(np.isfinite(tr.loss)) and np.all(tr.loss.min(0) < 0.5 * tr.loss[0])
    if h_digits is None:  # a full metric: integrated, not exported (tested on its own)
        return
    X, y, model = digits
    Opt = oo.discretize(system, "symplectic_euler").to_torch()
    m = copy.deepcopy(model)
    _, losses = _run(Opt(m.parameters(), lr=h_digits), m, X, y, 200)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses[::20]


VERDICTS = {
    "gradient_flow": "dissipative",
    "heavy_ball": "dissipative",
    "nesterov": "dissipative",
    "braking": "dissipative",
    "massaroli": "dissipative",
    "rmsprop": "dissipative",
    "levenberg_marquardt": "dissipative",
    "adam": "passive",  # lossless with respect to its port, whose supply has no sign
    "bbi": "conservative",
    "ruthless": "conservative",
    "ecdsep": "conservative",
}


@pytest.fixture(scope="module")
def listing() -> str:
    """What ``odeopt list`` prints (run once: it builds every zoo system)."""
    import contextlib
    import io

    from odeopt.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["list"]) == 0
    return printed.getvalue()


@pytest.mark.parametrize("name", list(VERDICTS))
def test_list_and_show_name_every_system_with_its_verdict(name, listing, capsys) -> None:
    from odeopt.cli import main

    assert any(line.split()[0] == name for line in listing.splitlines() if line.strip())
    assert main(["show", name]) == 0
    out = capsys.readouterr().out
    assert f"verdict: {VERDICTS[name]}" in out
    b = zoo.get(name).energy_balance()
    # H non-increasing is proved for all but Adam, whose drive g·m/(√s + ε) has no sign: the
    # numeric search finds states where dH/dt > 0 (m against g)
    assert b.nonincreasing is (False if name == "adam" else True)
    if name == "adam":
        assert "not proved to decrease" in out


# ---------------------------------------------------------------- Massaroli
@pytest.mark.parametrize("scheme", ["rk45", "dopri5"])
def test_massaroli_batch_mode_separates_two_blobs_with_h_nonincreasing(scheme) -> None:
    """The authors' batch mode (t ∈ [0, 60], β = 0.1, c = 0.01) on two Gaussian blobs:
    ≥ 95 % accuracy, and H = a·F + b|ω̇|² + c|ω|² never rises between saved points.
    torchdiffeq's dopri5 runs to t = 20 (the cost is ~100 evaluations per unit of time):
    measured there, accuracy 0.975 and H(20)/H(0) = 0.149 (0.016 at t = 60, both solvers)."""
    pb = problems.blobs(samples=200)
    th0 = np.asarray(pb.initial(0), dtype=float).reshape(1, -1)
    assert pb.accuracy(th0)[0] < 0.5
    system = zoo.massaroli(a=1.0, b=0.5, c=0.01, beta=0.1)
    x0 = {"theta": torch.tensor(th0)} if scheme == "dopri5" else {"theta": th0}
    kw: dict = {"rtol": 1e-6, "atol": 1e-8}
    if scheme == "dopri5":
        kw["backend"] = "torchdiffeq"
    t_end = 60.0 if scheme == "rk45" else 20.0
    tr = oo.integrate(system, pb, x0, t_span=(0.0, t_end), scheme=scheme, **kw)
    theta = tr.final["theta"]
    theta = theta.numpy() if torch.is_tensor(theta) else theta
    assert pb.accuracy(theta)[0] >= 0.95
    E = np.asarray(tr.energy)[:, 0]
    assert np.all(np.diff(E) <= 1e-9 * abs(E[0]))
    assert E[-1] < 0.2 * E[0]


# ---------------------------------------------------------------- ECD
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
    ours, losses = _run(opt, m, X, y, steps)
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
    _, losses = _run(opt, m, X, y, 3)
    after = torch.cat([q.detach().flatten() for q in m.parameters()])
    assert torch.equal(before, after) and opt.state["odeopt"]["domain_skips"] == 3
    m2 = copy.deepcopy(model)
    opt2 = Opt(m2.parameters(), lr=0.05, adaptive_shift=True, **{key: loss0 + 1.0})
    _, losses2 = _run(opt2, m2, X, y, 20)
    assert opt2.state["odeopt"]["domain_skips"] == 1
    assert opt2.param_groups[0][key] == pytest.approx(loss0 + 1.0 - 5.0 * 1.0)
    assert np.all(np.isfinite(losses2)) and losses2[-1] < losses2[0]


def _flat(xs):
    return torch.cat([x.detach().flatten() for x in xs])


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
        runs.append((_run(opt, m, X, y, 150)[0], opt))
    assert torch.equal(runs[0][0], runs[1][0])  # a fixed seed: identical runs
    assert not torch.equal(runs[0][0], runs[2][0])  # the noise matters
    opt = runs[0][1]
    if name == "bbi":
        assert opt.state["odeopt"]["bounces_made"] >= 3
    # resume mid-run through state_dict (the generator's state included): bit-identical
    m = copy.deepcopy(model)
    first = make(m)
    _run(first, m, X, y, 70)
    sd = copy.deepcopy(first.state_dict())
    second = make(m)
    second.load_state_dict(sd)
    resumed, _ = _run(second, m, X, y, 80)
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
        before = _flat(params).clone()
        p_before = _flat([opt.state[q]["p"] for q in params]) if opt.state else None
        made = opt.state["odeopt"].get("bounces_made", 0) if opt.state else 0
        _run(opt, m, X, y, 1)
        glob = opt.state["odeopt"]
        if glob.get("bounces_made", 0) > made:  # this step bounced
            assert torch.equal(before, _flat(params))
            p_after = _flat([opt.state[q]["p"] for q in params])
            assert not torch.allclose(p_after, p_before)
            assert float(p_after.norm()) == pytest.approx(float(p_before.norm()), rel=1e-12)
    assert opt.state["odeopt"]["bounces_made"] == 2


# ---------------------------------------------------------------- energy-controlled steps
def test_lc_egd_on_poly_three_never_diverges_where_gd_does() -> None:
    """ALGORITHMS.md §5's protocol on polyThree (starts in [−3, 3]², |∇R| < 1e-4): LC_EGD
    (gradient flow + Euler + energy control) from h₀ = 0.1 converges from all 1000 starts;
    plain GD with that step diverges from all of them (the reference: 100 % diverged)."""
    pb = problems.poly_three()
    x0 = np.random.default_rng(0).uniform(-3, 3, (1000, 2))
    minima = [c.point for c in pb.critical_points() if c.kind == "minimum"]

    def lc_egd(h_max):  # (statuses, share of starts ending within 0.05 of each minimum)
        tr = oo.integrate(
            zoo.gradient_flow(),
            pb,
            {"theta": x0},
            t_span=(0, 1e8),
            h=0.1,
            scheme=oo.schemes.EnergyDecrease("euler", h_max=h_max),
            gtol=1e-4,
            save="final",
            max_steps=200_000,
        )
        fin = tr.final["theta"]
        dist = [np.linalg.norm(fin - np.array(m, float), axis=1) for m in minima]
        return tr.status, {m: np.mean(d < 0.05) for m, d in zip(minima, dist, strict=True)}

    status, reached = lc_egd(np.inf)
    assert set(status) == {"converged"}
    assert sum(reached.values()) > 0.99  # every run ends at one of the four minima (1.000)
    gd = oo.integrate(zoo.gradient_flow(), pb, {"theta": x0}, steps=2000, h=0.1, save="final")
    assert np.all(gd.status == "diverged")
    # The reference's split (.216/.216/.283/.286 at (−2,1)/(2,−1)/(0,−1)/(0,1)) is that of small
    # steps: with h ≤ 0.2 LC_EGD lands on it within the noise of 1000 draws (σ ≈ .014); the
    # uncapped ×10⁴ growth (Bensaid's public code) does not (measured .308/.202/.478/.012).
    _, share = lc_egd(0.2)
    reference = {(-2, 1): 0.216, (2, -1): 0.216, (0, -1): 0.283, (0, 1): 0.286}
    assert all(abs(share[m] - reference[m]) < 0.045 for m in reference), share
    assert abs(reached[(0, 1)] - reference[(0, 1)]) > 0.2


def test_energy_decrease_rule_reads_like_lc_egd() -> None:
    rule = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler"))
    F, g = rule.system.loss, rule.system.loss.grad
    (ev,) = [e for e in rule.evaluations if e.theta != rule.system.loss.block]
    err = rule.program.error["H"]
    expected = ev.loss - F + rule.h * oo.sqnorm(g) / 2
    assert sp.simplify(err - expected) == 0
    with pytest.raises(ValueError, match="lam"):
        oo.schemes.EnergyDecrease("euler", lam=1.5)
    with pytest.raises(ValueError, match="fixed-step"):
        oo.schemes.EnergyDecrease("euler_richardson")


def _lc_egd_reference(model, X, y, lr, steps, lam=0.5, f1=2.0, f2=1e4):
    """Bensaid's LC_EGD (ALGORITHMS.md §5) as a plain loop: one trial per step."""
    params = list(model.parameters())
    eta, accepted = lr, 0

    def loss_at():
        return torch.nn.functional.cross_entropy(model(X), y)

    for _ in range(steps):
        for q in params:
            q.grad = None
        F = loss_at()
        F.backward()
        g = [q.grad.clone() for q in params]
        gsq = float(sum((gi * gi).sum() for gi in g))
        old = [q.detach().clone() for q in params]
        with torch.no_grad():
            for q, gi in zip(params, g, strict=True):
                q.add_(gi, alpha=-eta)
            F1 = loss_at().item()
        if F1 - F.item() <= -lam * eta * gsq:
            eta *= f2
            accepted += 1
        else:
            with torch.no_grad():
                for q, o in zip(params, old, strict=True):
                    q.copy_(o)
            eta /= f1
    return torch.cat([q.detach().flatten() for q in params]), eta, accepted


def test_exported_lc_egd_equals_bensaids_rule(digits) -> None:
    X, y, model = digits
    Opt = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler")).to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.1)
    ours, losses = _run(opt, m, X, y, 200)
    ref, eta, accepted = _lc_egd_reference(copy.deepcopy(model), X, y, 0.1, 200)
    assert (ours - ref).abs().max().item() <= 1e-12
    glob = opt.state["odeopt"]
    assert glob["h_scale"] * 0.1 == pytest.approx(eta, rel=1e-12)
    assert 200 - glob.get("rejected", 0) == accepted and 0 < accepted < 200
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(m(X), y).item()
    assert final < 0.5 * losses[0]


def test_exported_lc_m_trains_and_rejects_without_nan(digits) -> None:
    X, y, model = digits
    scheme = oo.schemes.EnergyDecrease("symplectic_euler", rate_at="new")
    Opt = oo.discretize(zoo.heavy_ball(friction=1.0), scheme).to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.3)
    _, losses = _run(opt, m, X, y, 200)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
    assert opt.state["odeopt"].get("rejected", 0) > 0


def _er_gd_reference(model, X, y, lr, tol, steps):
    """Euler–Richardson GD as Bensaid's reference code runs it (ALGORITHMS.md §5)."""
    params = list(model.parameters())
    eta, accepted = lr, 0

    def grad_at():
        for q in params:
            q.grad = None
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return [q.grad.clone() for q in params]

    for _ in range(steps):
        g = grad_at()
        old = [q.detach().clone() for q in params]
        with torch.no_grad():
            for q, gi in zip(params, g, strict=True):
                q.add_(gi, alpha=-eta)
        gi_ = grad_at()
        err = (
            0.5
            * eta
            * math.sqrt(float(sum(((a - b) ** 2).sum() for a, b in zip(g, gi_, strict=True))))
            / tol
        )
        with torch.no_grad():
            for q, o, b in zip(params, old, gi_, strict=True):
                q.copy_(o)
                if err <= 1:
                    q.add_(b, alpha=-eta)
        accepted += err <= 1
        eta *= 0.9 / math.sqrt(err) if err > 0 else 1e300
    return torch.cat([q.detach().flatten() for q in params]), eta, accepted


def test_exported_euler_richardson_gd_equals_the_reference_rule(digits) -> None:
    X, y, model = digits
    tol = 1e-3
    ctrl = oo.schemes.StepController(norm="l2", rtol=0, atol=tol, grow=float("inf"), shrink=0.0)
    scheme = oo.schemes.EulerRichardson("reference", controller=ctrl)
    Opt = oo.discretize(zoo.gradient_flow(), scheme).to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.5)
    ours, losses = _run(opt, m, X, y, 100)
    ref, eta, accepted = _er_gd_reference(copy.deepcopy(model), X, y, 0.5, tol, 100)
    assert (ours - ref).abs().max().item() <= 1e-12
    assert opt.state["odeopt"]["h_scale"] * 0.5 == pytest.approx(eta, rel=1e-12)
    assert 100 - opt.state["odeopt"].get("rejected", 0) == accepted
    assert 0 < accepted < 100
    with pytest.raises(NotImplementedError, match="absolute-tolerance controller"):
        oo.discretize(zoo.gradient_flow(), "euler_richardson").to_source()


# ---------------------------------------------------------------- Levenberg–Marquardt
def test_levenberg_marquardt_flow_is_gauss_newton_on_linear_residuals() -> None:
    """With square invertible W and μ → 0, θ' = −(WᵀW + μI)⁻¹·2Wᵀr gives r' = −2r, so
    F(t) = F₀e^{−4t}; gradient flow on the same ill-conditioned problem is far slower."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 5)) @ np.diag(np.logspace(-1.5, 0, 5))
    pb = problems.least_squares(W, rng.standard_normal(5))
    x0 = rng.uniform(-2, 2, (4, 5))
    F0 = pb.value_and_grad(x0)[0]
    lm = zoo.levenberg_marquardt(mu=1e-9)
    tr = oo.integrate(lm, pb, {"theta": x0}, steps=200, h=0.01, scheme="rk4")
    np.testing.assert_allclose(tr.loss[-1] / F0, np.exp(-8.0), rtol=1e-4)
    gf = oo.integrate(zoo.gradient_flow(), pb, {"theta": x0}, steps=200, h=0.01, scheme="rk4")
    assert np.all(gf.loss[-1] > 50 * tr.loss[-1])  # measured 78–250×
    b = lm.energy_balance()
    assert b.verdict == "dissipative" and b.nonincreasing
    with pytest.raises(NotImplementedError, match="not coordinate-wise"):
        oo.discretize(lm, "euler")
    with pytest.raises(TypeError, match="residuals"):
        oo.integrate(lm, problems.rosenbrock(), {"theta": x0[:, :2]}, steps=2, h=0.01)
    # and the one-neuron nets have residuals: LM from [−3, 3]² on polyThree converges
    pt = problems.poly_three()
    start = np.random.default_rng(1).uniform(-3, 3, (16, 2))
    run = oo.integrate(
        zoo.levenberg_marquardt(1e-2), pt, {"theta": start}, steps=1000, h=0.01, scheme="rk4"
    )
    assert set(run.status) == {"ok"} and np.all(run.loss[-1] <= run.loss[0])


def test_massaroli_streamed_mode_learns_with_h_decreasing_within_each_window() -> None:
    """Data arriving in batches (4 batches of 50, one per 2 time units, cycled): H is
    time-varying, non-increasing while a batch is in force, and jumps at the switches."""
    pb = problems.blobs(samples=200)
    st = problems.streamed(pb, batch_size=50, period=2.0)
    th0 = np.asarray(pb.initial(0), dtype=float).reshape(1, -1)
    system = zoo.massaroli(a=1.0, b=0.5, c=0.01, beta=1.0)
    tr = oo.integrate(system, st, {"theta": th0}, t_span=(0, 40), h=0.05, scheme="rk4")
    assert pb.accuracy(tr.final["theta"])[0] >= 0.95  # measured 0.975
    E = tr.energy[:, 0]
    k = st.index(tr.t)
    same = k[1:] == k[:-1]
    assert np.all(np.diff(E)[same] <= 1e-9)
    assert np.any(np.diff(E)[~same] > 1e-3)  # new data: the energy jumps up
    with pytest.raises(ValueError, match="period"):
        problems.streamed(pb, batch_size=10, period=0.0)


# ---------------------------------------------------------------- review regressions
def test_step_controlled_export_regressions(digits) -> None:
    X, y, model = digits
    # time advances by the step taken (h = lr·scale), not by lr
    scheme = oo.schemes.EnergyDecrease("symplectic_euler", rate_at="new")
    rule = oo.discretize(zoo.nesterov(), scheme)
    assert len(rule.evaluations) == 2  # θ and the trial point, each once
    Opt = rule.to_torch()
    m = copy.deepcopy(model)
    opt = Opt(m.parameters(), lr=0.01)
    taken, accepted = 0.0, 0
    for _ in range(40):
        before = opt.state["odeopt"].get("h_scale", 1.0) if opt.state else 1.0
        rejected = opt.state["odeopt"].get("rejected", 0) if opt.state else 0
        _run(opt, m, X, y, 1)
        if opt.state["odeopt"].get("rejected", 0) == rejected:
            taken += 0.01 * before
            accepted += 1
    t = next(iter(opt.state[q] for q in m.parameters()))["t"]
    assert accepted >= 2 and taken != pytest.approx(0.01 * accepted)
    assert t == pytest.approx(taken, rel=1e-12)
    # all groups must agree on what the acceptance test uses
    m2 = copy.deepcopy(model)
    params = list(m2.parameters())
    HB = oo.discretize(zoo.heavy_ball(), scheme).to_torch()
    two = HB([{"params": params[:2]}, {"params": params[2:], "mass": 50.0}], lr=0.1)
    with pytest.raises(ValueError, match="same lr, mass, friction"):
        _run(two, m2, X, y, 1)
    # h_max bounds the step; a zero gradient (every step accepted) cannot make it inf
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


def test_switches_refuse_continuous_solvers() -> None:
    pb = problems.quadratic(2)
    with pytest.raises(ValueError, match="fixed-step scheme"):
        oo.integrate(
            zoo.braking(goal=0.5), pb, {"theta": np.ones((1, 2))}, t_span=(0, 1), scheme="rk45"
        )


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
        _run(opt, m, X, y, 3)
        probe = copy.deepcopy(opt.state_dict())
        m2 = copy.deepcopy(m)
        o2 = Opt(m2.parameters(), lr=1e-300, seed=3, **{key: -0.1}, **extra)
        o2.load_state_dict(probe)
        for g in o2.param_groups:
            g["lr"] = 1e-300
        _run(o2, m2, X, y, 1)
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
    _, losses = _run(Opt(m.parameters(), lr=0.05, delta_v=-0.1), m, X, y, 200)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_integration_stops_trajectories_that_leave_the_domain() -> None:
    """BBI with ΔV above part of the landscape: a trajectory reaching V = F − ΔV ≤ 0 stops
    with status "domain" and its last state inside (no NaN); one starting outside stops at t₀."""
    pb = problems.quadratic(2)
    x0 = np.array([[1.0, 1.0], [0.2, 0.1], [2.0, 0.0]])
    tr = oo.integrate(zoo.bbi(delta_v=0.5), pb, {"theta": x0}, steps=200, h=0.05)
    assert list(tr.status) == ["domain"] * 3 and tr.t_stop[1] == 0.0
    assert np.all(np.isfinite(tr.loss)) and np.all(tr.loss[-1][[0, 2]] > 0.5)
    ok = oo.integrate(zoo.bbi(delta_v=-0.1), pb, {"theta": x0}, steps=200, h=0.05)
    assert set(ok.status) == {"ok"}
    # an adaptive scheme: steps shrink towards V = 0 (reached in finite time); V ≤ 1e-12·V₀ stops
    kw = dict(t_span=(0, 10), scheme="euler_richardson", rtol=1e-3, atol=1e-6, h=0.05)
    ad = oo.integrate(zoo.bbi(delta_v=0.5), pb, {"theta": x0}, **kw)
    assert list(ad.status) == ["domain"] * 3 and ad.t_stop[1] == 0.0
    assert np.all(np.isfinite(ad.loss)) and np.all(ad.loss[-1][[0, 2]] >= 0.5)
    assert 0 < ad.t_stop[0] < 10 and 0 < ad.t_stop[2] < 10
    ok = oo.integrate(zoo.bbi(delta_v=-0.1), pb, {"theta": x0}, **kw)
    assert set(ok.status) == {"ok"}
    # scipy: the domain is a terminal event per trajectory, located where V = 1e-12·V₀; it
    # and Euler–Richardson agree on when the flow reaches V = 0 (t = 1.5708 and 2.2708)
    sc = oo.integrate(
        zoo.bbi(delta_v=0.5),
        pb,
        {"theta": x0},
        t_span=(0, 10),
        scheme="rk45",
        rtol=1e-9,
        atol=1e-11,
    )
    assert list(sc.status) == ["domain"] * 3 and sc.t_stop[1] == 0.0
    assert np.all(np.isfinite(sc.loss)) and np.all(sc.loss[-1][[0, 2]] >= 0.5)
    assert np.allclose(sc.t_stop[[0, 2]], ad.t_stop[[0, 2]], rtol=0, atol=1e-2)
    assert np.allclose(sc.t_stop[[0, 2]], [1.5708, 2.2708], rtol=0, atol=1e-3)
    # torchdiffeq: a row is frozen at V ≤ 1e-6·V₀; t_stop is the first saved time there
    td = oo.integrate(
        zoo.bbi(delta_v=0.5),
        pb,
        {"theta": x0},
        t_span=(0, 10),
        scheme="dopri5",
        backend="torchdiffeq",
        rtol=1e-8,
        atol=1e-10,
    )
    assert list(td.status) == ["domain"] * 3
    assert np.allclose(np.asarray(td.t_stop), [1.6, 0.0, 2.3], rtol=0, atol=1e-12)
    assert np.all(np.isfinite(np.asarray(td.loss)))
    # a fixed-grid torchdiffeq step may jump past the edge: the last state inside is kept
    fx = oo.integrate(
        zoo.bbi(delta_v=0.5),
        pb,
        {"theta": x0[[0, 2]]},
        t_span=(0, 10),
        scheme="rk4",
        backend="torchdiffeq",
        h=0.05,
    )
    assert list(fx.status) == ["domain"] * 2
    assert np.all(np.asarray(fx.loss)[-1] > 0.5) and np.all(np.isfinite(np.asarray(fx.energy)))


def test_second_review_regressions() -> None:
    # the metric's cache is per time for a time-dependent objective
    class Timed:
        time_dependent = True
        dim = 1

        def value_and_grad(self, theta, t):
            c = np.asarray(t, dtype=float).reshape(-1)[0]
            return (c * theta**2).sum(-1), 2 * c * theta

        def residuals(self, theta):
            return np.asarray(theta)

    from odeopt.integrate import NumericField

    field = NumericField(zoo.levenberg_marquardt(mu=1.0), Timed(), {})
    th = np.ones((1, 1))
    a = field({"theta": th}, 0.5)["theta"]
    b = field({"theta": th}, 1.5)["theta"]
    np.testing.assert_allclose(b, 3 * a)
    # switches read F(θ₀) at t₀ for streamed data
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
    # an exported step-controlled rule bounds h by h_max even after lr grows
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
