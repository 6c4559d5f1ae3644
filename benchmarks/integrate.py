"""Batched integration through odeopt.integrate against hand-written and library references.

Prints, in one run (ratios, since the machines are noisy):

1. 10⁵ heavy-ball trajectories × 1000 symplectic-Euler steps on 2-D Himmelblau through
   ``odeopt.integrate(..., save="final")`` vs a hand-written vectorized numpy loop of the same
   scheme (same objective code). Target ≤ 1.3×.
2. the same sweep vs scipy ``solve_ivp`` (RK45) looped per trajectory, extrapolated from a
   sample of trajectories. Target ≥ 300× faster.
3. Euler–Richardson (odeopt, adaptive per trajectory) vs torchdiffeq dopri5 on the same
   batch at equal final error (error against a tight RK4 reference), by wall time and by
   gradient evaluations.
4. (in section 1) the same sweep with ``backend="numba"``: one compiled kernel, parallel over
   blocks of trajectories; ratio vs the inline hand loop (target ≥ 5×) and vs odeopt's numpy
   backend, compile time separately, max |Δ| vs numpy.

Run: ``.venv/bin/python benchmarks/integrate.py [--batch 100000] [--steps 1000]
[--sections 1,2,3]`` (the issue's numba measurement: ``--steps 300 --sections 1``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

import odeopt
from odeopt import problems, zoo


def hand_loop(problem, theta, h, gamma, m, steps):
    """Symplectic Euler for heavy ball, written out: p ← p − h(g + γp/m); θ ← θ + hp/m."""
    p = np.zeros_like(theta)
    for _ in range(steps):
        _, g = problem.value_and_grad(theta)
        p = p - h * (g + (gamma / m) * p)
        theta = theta + (h / m) * p
    return theta, p


def hand_loop_inline(theta, h, gamma, m, steps):
    """The same loop with Himmelblau's gradient written inline (no objective object)."""
    p = np.zeros_like(theta)
    x, y = theta[:, 0].copy(), theta[:, 1].copy()
    px, py = p[:, 0].copy(), p[:, 1].copy()
    for _ in range(steps):
        a = x * x + y - 11
        b = x + y * y - 7
        gx = 4 * x * a + 2 * b
        gy = 2 * a + 4 * y * b
        px = px - h * (gx + (gamma / m) * px)
        py = py - h * (gy + (gamma / m) * py)
        x = x + (h / m) * px
        y = y + (h / m) * py
    return np.stack([x, y], 1), np.stack([px, py], 1)


def best_of(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def sweep(system, problem, theta0, N, h, **options):
    """The benchmark's sweep through odeopt.integrate: N symplectic-Euler steps, final state."""
    return odeopt.integrate(
        system,
        problem,
        {"theta": theta0},
        steps=N,
        h=h,
        scheme="symplectic_euler",
        save="final",
        **options,
    )


def numba_section(system, problem, theta0, N, h, tr, t_inline, t_ode, repeat) -> None:
    """The sweep with backend="numba": ratios vs the inline hand loop and odeopt's numpy
    backend in this run, compile time apart, max |Δ| vs the numpy backend."""
    try:
        import numba
    except ImportError:
        print("   numba is not installed: backend='numba' skipped")
        return

    def numba_run():
        return sweep(system, problem, theta0, N, h, backend="numba")

    first = numba_run()  # compiles (once per session)
    t_nb, nb = best_of(numba_run, repeat)
    d_theta = np.abs(nb["theta"][-1] - tr["theta"][-1]).max()
    d_p = np.abs(nb["p"][-1] - tr["p"][-1]).max()
    same = bool((nb.status == tr.status).all())
    print(
        f"   backend='numba' ({numba.get_num_threads()} threads) {t_nb:8.2f} s   "
        f"{t_inline / t_nb:.1f}× faster than the inline loop (target ≥ 5×), "
        f"{t_ode / t_nb:.1f}× faster than odeopt numpy"
    )
    print(
        f"   numba compile {first.stats['compile_s']:.1f} s (once); kernel alone "
        f"{nb.stats['kernel_s']:.2f} s; max |Δθ| = {d_theta:.1e}, |Δp| = {d_p:.1e} vs numpy; "
        f"statuses equal: {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--scipy-sample", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sections", default="1,2,3", help="comma-separated sections to run")
    args = ap.parse_args()
    B, N, h = args.batch, args.steps, 0.01
    gamma, m = 0.5, 1.0
    problem = problems.himmelblau()
    system = zoo.heavy_ball(mass=m, friction=gamma)
    theta0 = np.random.default_rng(0).uniform(-5, 5, (B, 2))

    print(f"1. {B} heavy-ball trajectories × {N} symplectic-Euler steps, Himmelblau, float64")
    t_hand, (th_hand, _) = best_of(lambda: hand_loop(problem, theta0, h, gamma, m, N), args.repeat)
    t_inline, _ = best_of(lambda: hand_loop_inline(theta0, h, gamma, m, N), args.repeat)

    def odeopt_run():
        return sweep(system, problem, theta0, N, h, progress=False)

    t_ode, tr = best_of(odeopt_run, args.repeat)
    diff = np.abs(tr["theta"][-1] - th_hand).max()
    print(f"   hand-written numpy loop        {t_hand:8.2f} s")
    print(f"   hand loop, gradient inline     {t_inline:8.2f} s")
    print(
        f"   odeopt.integrate               {t_ode:8.2f} s   ratio {t_ode / t_hand:.2f}× "
        f"(target ≤ 1.3×; vs inline {t_ode / t_inline:.2f}×); max |Δθ| = {diff:.1e}"
    )
    numba_section(system, problem, theta0, N, h, tr, t_inline, t_ode, args.repeat)
    if "2" not in args.sections.split(","):
        return

    print(f"2. scipy solve_ivp (RK45) per trajectory, sample of {args.scipy_sample}")

    def rhs(t, y):
        th, p = y[:2], y[2:]
        _, g = problem.value_and_grad(th[None, :])
        return np.concatenate([p / m, -g[0] - gamma / m * p])

    t0 = time.perf_counter()
    for i in range(args.scipy_sample):
        solve_ivp(rhs, (0, N * h), np.concatenate([theta0[i], [0.0, 0.0]]), method="RK45")
    per = (time.perf_counter() - t0) / args.scipy_sample
    t_scipy = per * B
    print(
        f"   {per * 1e3:.1f} ms per trajectory → {t_scipy:.0f} s extrapolated for {B}: "
        f"odeopt is {t_scipy / t_ode:.0f}× faster (target ≥ 300×)"
    )

    if "3" not in args.sections.split(","):
        return
    print("3. Euler–Richardson (odeopt, numpy) vs torchdiffeq dopri5 at equal final error")
    Bs = min(B, 1000)
    x0 = {"theta": theta0[:Bs] * 0.6}
    T = 2.0
    ref = odeopt.integrate(
        system, problem, x0, t_span=(0, T), steps=20000, scheme="rk4", save="final"
    )["theta"][-1]
    rows = []
    for tol in (1e-4, 1e-5, 1e-6, 1e-7):
        t0 = time.perf_counter()
        er = odeopt.integrate(
            system,
            problem,
            x0,
            t_span=(0, T),
            scheme="euler_richardson",
            rtol=tol,
            atol=tol * 1e-2,
            save="final",
        )
        t_er = time.perf_counter() - t0
        e_er = np.abs(er["theta"][-1] - ref).max()
        rows.append(("euler_richardson", tol, e_er, t_er, er.stats["evaluated_points"] / Bs))
    xt = {"theta": torch.tensor(x0["theta"])}
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        t0 = time.perf_counter()
        dp = odeopt.integrate(
            system,
            problem,
            xt,
            t_span=(0, T),
            scheme="dopri5",
            backend="torchdiffeq",
            rtol=tol,
            atol=tol * 1e-2,
            save="final",
        )
        t_dp = time.perf_counter() - t0
        e_dp = np.abs(dp["theta"][-1].numpy() - ref).max()
        rows.append(("dopri5 (torchdiffeq)", tol, e_dp, t_dp, dp.stats["nfev"]))
    print(
        f"   {'method':22s} {'rtol':>7s} {'final error':>12s} {'time s':>8s} "
        f"{'∇F evals per trajectory':>24s}"
    )
    for name, tol, e, tt, nf in rows:
        print(f"   {name:22s} {tol:7.0e} {e:12.2e} {tt:8.2f} {nf:24.0f}")
    # equal error: interpolate time vs log error for each method at the common error levels
    er_rows = [(e, tt) for n, _, e, tt, _ in rows if n == "euler_richardson"]
    dp_rows = [(e, tt) for n, _, e, tt, _ in rows if n != "euler_richardson"]
    for target in (1e-3, 1e-4):  # inside both methods' measured error ranges

        def at(rs, target=target):
            es = np.log10([r[0] for r in rs])
            ts = np.log10([r[1] for r in rs])
            order = np.argsort(es)
            return 10 ** np.interp(np.log10(target), es[order], ts[order])

        print(
            f"   at final error {target:.0e}: Euler–Richardson {at(er_rows):.2f} s, "
            f"dopri5 {at(dp_rows):.2f} s (ratio {at(er_rows) / at(dp_rows):.1f}×)"
        )


if __name__ == "__main__":
    main()
