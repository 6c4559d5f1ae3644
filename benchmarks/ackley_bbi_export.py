"""ECD's 2-D Ackley experiment with the *exported* BBI optimizer (bounces on), one start at a
time (the energy is global, so starts cannot share an optimizer). Slow: ~1 s per 10⁴ steps.

Run: ``.venv/bin/python benchmarks/ackley_bbi_export.py [--starts 20] [--steps 20000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import odeopt as oo
from odeopt import problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    args = ap.parse_args()
    pb = problems.ackley(2, b=0.02)
    x0 = np.random.default_rng(0).uniform(-4, 4, (100, 2))[: args.starts]
    Opt = oo.discretize(oo.zoo.bbi(), "symplectic_euler").to_torch()
    print("exported BBI (bounces: every 1000 updates, 1 in all; after 3000 without progress)")
    t0 = time.perf_counter()
    for lr in args.lr:
        finals = []
        for k, start in enumerate(x0):
            theta = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
            opt = Opt([theta], lr=lr, seed=k)

            def closure(opt=opt, theta=theta):
                opt.zero_grad()
                F = pb.value(theta[None])[0]
                F.backward()
                return F

            for _ in range(args.steps):
                opt.step(closure)
            finals.append(float(pb.value(theta.detach()[None])[0]))
        finals = np.array(finals)
        print(
            f"  lr {lr}: success {(finals < 5e-4).sum()}/{len(finals)}, median F "
            f"{np.median(finals):.3g}  ({time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()
