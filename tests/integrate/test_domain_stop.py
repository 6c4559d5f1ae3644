"""The domain stop: a trajectory leaving a system's domain (BBI's V = F − ΔV > 0) stops with
status "domain" on every solver, keeping its last state inside."""

from __future__ import annotations

import numpy as np

import odeopt as oo
from odeopt import problems, zoo


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
