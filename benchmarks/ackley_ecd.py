"""ECD's 2-D Ackley experiment (ALGORITHMS.md §6) with odeopt's BBI and heavy ball.

Ackley in the authors' variant (b = 0.02), 100 starts uniform in [−4, 4]², 20 000 steps,
success = F < 5e-4 at the end. The reference reports BBI 83/100 and GDM 0/100. Here each
optimizer gets a small grid (step h × one hyper-parameter); every point of the grid runs all
100 starts in one batched :func:`odeopt.integrate` call (symplectic Euler, the exported
rules' scheme). BBI starts at rest with E = V(θ₀) + δE (ΔV = 0, no bounces: integration has
none); heavy ball's momentum is 1 − γh.

Run: ``.venv/bin/python benchmarks/ackley_ecd.py [--steps 20000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import odeopt as oo
from odeopt import problems, zoo


def run(system, pb, x0, steps, h, params):
    tr = oo.integrate(system, pb, {"theta": x0}, steps=steps, h=h, params=params, save="final")
    F = tr.loss[-1]
    return F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--starts", type=int, default=100)
    args = ap.parse_args()
    pb = problems.ackley(2, b=0.02)
    x0 = np.random.default_rng(0).uniform(-4, 4, (args.starts, 2))
    F0 = pb.value_and_grad(x0)[0]
    print(
        f"Ackley b = 0.02, {args.starts} starts in [-4, 4]^2, {args.steps} steps, success F < 5e-4"
    )
    results = []
    t0 = time.perf_counter()
    for h in (0.01, 0.03, 0.1, 0.3):
        for dE in (0.0, 0.5, 2.0):
            F = run(zoo.bbi(), pb, x0, args.steps, h, {"E": F0 + dE})
            results.append(("BBI", f"h={h}, δE={dE}", int((F < 5e-4).sum()), float(np.median(F))))
        for gamma in (0.1, 1.0, 3.0):
            F = run(zoo.heavy_ball(friction=gamma), pb, x0, args.steps, h, None)
            label = f"h={h}, γ={gamma} (momentum {1 - gamma * h:.3g})"
            results.append(("heavy ball", label, int((F < 5e-4).sum()), float(np.median(F))))
    for name in ("BBI", "heavy ball"):
        rows = [r for r in results if r[0] == name]
        for r in rows:
            print(f"  {name:10s} {r[1]:34s} success {r[2]:3d}/{args.starts}  median F {r[3]:.3g}")
        best = max(rows, key=lambda r: r[2])
        print(f"  best {name}: {best[2]}/{args.starts} ({best[1]})")
    print(f"  reference (ECD paper): BBI 83/100, GDM 0/100;  {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
