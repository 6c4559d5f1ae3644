"""ECD's 2-D Ackley experiment with the *exported* BBI optimizer, in the authors' protocol,
as an :class:`odeopt.Study`.

The authors' notebook (gbdl/BBI, synthetic/ackley.ipynb with bbi-param-ackley.txt) runs
F(x) = 20 − 20·exp(−0.02·√(|x|²/2)) − exp(½Σcos 2πxᵢ) + e from 100 starts uniform in
[−4, 4]², 30 000 steps, lr = 0.009649, ΔV (v0) = 1e-4, δE = 2, bounces every T0 = 20
updates (N_b = 4 of them) and after T1 = 100 updates without progress, and counts a start
as a success when the best F along the run is below 5e-4 in any of 5 runs (the bounce
noise differs between runs). They report BBI 83/100 and GDM 0/100.

Here the study has one optimizer run per seed (``OptimizerRun.grid(..., seed=[0, …, 4])``:
odeopt's exported BBI + symplectic Euler, one start at a time since the energy is global)
and the authors' GDM (torch.optim.SGD, all starts in one tensor: SGD is coordinate-wise).
``Study.run(best=True)`` records the best F along every run; ``success(5e-4, best=True,
any_over="seed")`` is the authors' any-of-5 count. ``--workers`` runs the tasks in local
processes and ``--checkpoint DIR`` makes an interrupted run resume. Slow: ~1 s per 10⁴
steps and start on one core.

Run: ``.venv/bin/python benchmarks/ackley_bbi_export.py [--starts 100] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import odeopt as oo
from odeopt import problems
from odeopt.study import OptimizerRun


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--lr", type=float, default=0.009649484068918336)
    ap.add_argument("--delta-v", type=float, default=1e-4)
    ap.add_argument("--delta-e", type=float, default=2.0)
    ap.add_argument("--t0", type=int, default=20)
    ap.add_argument("--nb", type=int, default=4)
    ap.add_argument("--t1", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=10, help="starts per task")
    ap.add_argument("--workers", type=int, default=None, help="local worker processes")
    ap.add_argument("--checkpoint", default=None, help="folder of finished tasks (resumes)")
    args = ap.parse_args()
    pb = problems.ackley(2, b=0.02)
    x0 = np.random.default_rng(0).uniform(-4, 4, (100, 2))[: args.starts]
    Bbi = oo.discretize(oo.zoo.bbi(), "symplectic_euler").to_torch()
    runs = {
        **OptimizerRun.grid(
            Bbi,
            args.steps,
            name="BBI",
            seed=list(range(args.runs)),
            lr=args.lr,
            delta_v=args.delta_v,
            delta_e=args.delta_e,
            bounce_every=args.t0,
            bounces=args.nb,
            bounce_patience=args.t1,
        ),
        # the authors' GDM settings
        "GDM": oo.Run.torch(
            torch.optim.SGD, args.steps, batched=True, lr=0.19930515265234, momentum=0.5634028221117
        ),
    }
    print(
        f"exported BBI: lr {args.lr:.6g}, ΔV {args.delta_v}, δE {args.delta_e}, T0 {args.t0}, "
        f"N_b {args.nb}, T1 {args.t1}; {args.steps} steps, {args.runs} seeds, "
        f"{len(x0)} starts"
    )
    t0 = time.perf_counter()
    res = oo.Study(pb, {"theta": x0}, runs).run(
        chunk_size=args.chunk,
        workers=args.workers,
        best=True,
        progress=True,
        checkpoint=args.checkpoint,
    )
    wall = time.perf_counter() - t0
    n = len(x0)
    single = res.success(5e-4)
    single_best = res.success(5e-4, best=True)
    first = "BBI, seed=0"
    print(f"single run, final F < 5e-4:     {single[first]:.3f} of {n} (seed 0)")
    print(f"single run, best F < 5e-4:      {single_best[first]:.3f} of {n} (seed 0)")
    print(f"mean over seeds, best F < 5e-4: {single_best.filter(like='BBI').mean():.3f}")
    anyf = res.success(5e-4, any_over="seed")
    anyb = res.success(5e-4, best=True, any_over="seed")
    print(f"any of {args.runs} runs, final F:       {round(anyf['BBI'] * n)}/{n} starts")
    print(
        f"any of {args.runs} runs, best F (authors): {round(anyb['BBI'] * n)}/{n} starts "
        "(reference: BBI 83/100, GDM 0/100)"
    )
    best = res.data["best_F"].sel(run=[r for r in res.runs if r.startswith("BBI")]).values
    print(
        f"lowest BBI F: {np.nanmin(best):.3g}; median final F (seed 0) "
        f"{np.median(res.data['F'].sel(run=first).values):.3g}"
    )
    g_best = res.data["best_F"].sel(run="GDM").values
    print(
        f"GDM (the authors' SGD settings), best F < 5e-4: {(g_best < 5e-4).sum()}/{n} starts, "
        f"lowest F {g_best.min():.3g}"
    )
    print(f"({wall:.0f} s)")


if __name__ == "__main__":
    main()
