"""Every zoo system: integrated on a quadratic, exported and trained on digits, and listed
and shown by the command line with its energy verdict."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import run_steps

import odeopt as oo
from odeopt import problems, zoo

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
    _, losses = run_steps(Opt(m.parameters(), lr=h_digits), m, X, y, 200)
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
