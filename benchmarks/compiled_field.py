"""Compiled vector fields vs hand-written numpy / torch, measured in one run.

Prints, for heavy ball and BBI on (batch, n) float64 arrays, the time of one evaluation of
``system.compile(backend).field`` divided by the time of the same formulas written by hand.
Ratios, not absolute times: this machine is noisy.

    python benchmarks/compiled_field.py [--batch 100000] [--n 2] [--repeat 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import odeopt as oo


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    B, n = args.batch, args.n
    theta, p, g = (rng.standard_normal((B, n)) for _ in range(3))
    F = np.abs(rng.standard_normal(B)) + 0.5
    mass, friction, dv = 1.0, 0.5, -1.0

    def hb_np() -> object:
        return p / mass, -g - friction / mass * p

    def bbi_np() -> object:
        V = F[:, None] - dv
        E = np.sqrt(V * (V + np.sum(p * p, axis=-1, keepdims=True)))
        return V / E * p, -0.5 * (E / V + V / E) * g

    tt, tp, tg, tF = (torch.from_numpy(a) for a in (theta, p, g, F))

    def hb_torch() -> object:
        return tp / mass, -tg - friction / mass * tp

    def bbi_torch() -> object:
        V = tF[:, None] - dv
        E = torch.sqrt(V * (V + torch.sum(tp * tp, dim=-1, keepdim=True)))
        return V / E * tp, -0.5 * (E / V + V / E) * tg

    cases = [
        ("heavy_ball", oo.zoo.heavy_ball(mass, friction), hb_np, hb_torch),
        ("bbi", oo.zoo.bbi(dv), bbi_np, bbi_torch),
    ]
    print(f"batch = {B}, n = {n}, float64, best of {args.repeat}")
    print(f"{'system':12s} {'backend':8s} {'odeopt ms':>10s} {'by hand ms':>11s} {'ratio':>7s}")
    for name, system, ref_np, ref_torch in cases:
        for backend, ref, state, FF, gg in (
            ("numpy", ref_np, {"theta": theta, "p": p}, F, g),
            ("torch", ref_torch, {"theta": tt, "p": tp}, tF, tg),
        ):
            field = system.compile(backend)
            ours = best_of(
                lambda field=field, s=state, f=FF, gr=gg: field.field(s, f, gr), args.repeat
            )
            theirs = best_of(ref, args.repeat)
            print(
                f"{name:12s} {backend:8s} {ours * 1e3:10.3f} {theirs * 1e3:11.3f} "
                f"{ours / theirs:7.2f}x"
            )


if __name__ == "__main__":
    main()
