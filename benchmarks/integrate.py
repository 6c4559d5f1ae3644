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
   backend, compile time separately, max |Δ| vs numpy; and, for what the hardware allows,
   hand-written numba kernels of the same layout (blocks of 256 lanes, the step over the
   block inside the time loop) without and with the per-lane divergence test that odeopt
   runs every step (|x′ᵢ| ≤ blowup, the lane frozen where it fails).

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


def hand_numba_kernels():
    """Two hand-written numba kernels of the sweep (heavy ball, symplectic Euler, Himmelblau
    inline), blocks of 256 lanes: without and with a per-lane divergence test."""
    import numba

    @numba.njit(parallel=True, fastmath=False)
    def plain(X, steps, h, c, hm):  # X: (4, B) rows x, y, px, py; B a multiple of 256
        for blk in numba.prange(X.shape[1] // 256):
            s = blk * 256
            x, y = X[0, s : s + 256].copy(), X[1, s : s + 256].copy()
            px, py = X[2, s : s + 256].copy(), X[3, s : s + 256].copy()
            for _ in range(steps):
                for i in range(256):
                    xi, yi = x[i], y[i]
                    a = xi * xi + yi - 11.0
                    b = xi + yi * yi - 7.0
                    gx = 4.0 * xi * a + 2.0 * b
                    gy = 2.0 * a + 4.0 * yi * b
                    pxi = px[i] - h * (gx + c * px[i])
                    pyi = py[i] - h * (gy + c * py[i])
                    px[i], py[i] = pxi, pyi
                    x[i], y[i] = xi + hm * pxi, yi + hm * pyi
            X[0, s : s + 256], X[1, s : s + 256] = x, y
            X[2, s : s + 256], X[3, s : s + 256] = px, py

    @numba.njit(parallel=True, fastmath=False)
    def checked(X, steps, h, c, hm, bl):
        for blk in numba.prange(X.shape[1] // 256):
            s = blk * 256
            x, y = X[0, s : s + 256].copy(), X[1, s : s + 256].copy()
            px, py = X[2, s : s + 256].copy(), X[3, s : s + 256].copy()
            act = np.ones(256, np.bool_)
            gd = np.ones(256, np.bool_)
            for _ in range(steps):
                ok = True
                for i in range(256):
                    xi, yi, pxo, pyo = x[i], y[i], px[i], py[i]
                    a = xi * xi + yi - 11.0
                    b = xi + yi * yi - 7.0
                    gx = 4.0 * xi * a + 2.0 * b
                    gy = 2.0 * a + 4.0 * yi * b
                    pxi = pxo - h * (gx + c * pxo)
                    pyi = pyo - h * (gy + c * pyo)
                    nx, ny = xi + hm * pxi, yi + hm * pyi
                    good = (abs(nx) <= bl) & (abs(ny) <= bl) & (abs(pxi) <= bl) & (abs(pyi) <= bl)
                    upd = act[i] & good
                    gg = good | (not act[i])
                    gd[i] = gg
                    ok = ok & gg
                    px[i] = pxi if upd else pxo
                    py[i] = pyi if upd else pyo
                    x[i] = nx if upd else xi
                    y[i] = ny if upd else yi
                if not ok:  # stop the lanes that diverged
                    for i in range(256):
                        if not gd[i]:
                            act[i] = False
                            gd[i] = True
            X[0, s : s + 256], X[1, s : s + 256] = x, y
            X[2, s : s + 256], X[3, s : s + 256] = px, py

    return plain, checked


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
    plain, checked = hand_numba_kernels()
    B = theta0.shape[0] // 256 * 256
    X = np.zeros((4, B))
    X[:2] = theta0[:B].T
    gamma, m = 0.5, 1.0  # the sweep's heavy ball
    runs = {
        "without the test": lambda: plain(X.copy(), N, h, gamma / m, h / m),
        "with the test": lambda: checked(X.copy(), N, h, gamma / m, h / m, 1e100),
    }
    for label, fn in runs.items():
        fn()  # compiles
        t_hand, _ = best_of(fn, repeat)
        print(
            f"   hand-written numba kernel, {label:16s} {t_hand:6.2f} s   "
            f"{t_inline / t_hand:.1f}× faster than the inline loop ({t_hand / t_nb:.2f}× odeopt's)"
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
