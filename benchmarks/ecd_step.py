"""Step time of exported ECD optimizers (BBI, ECDSep) against torch.optim.SGD, in one run.

ResNet-18's parameter shapes (62 tensors, 11.7 M floats), float32, gradients fixed, the loss
from a closure that returns a constant (the model is not run: this times the optimizer).
Prints the median step time of SGD(momentum=0.9, foreach=True), exported BBI and ECDSep
(with and without ECDSep's per-step Gaussian jitter) and the ratios to SGD.
Targets (issue 5): BBI ≤ 1.3×, ECDSep ≤ 2× SGD foreach; the authors' code measured here
BBI 2.8× and ECDSep 15.6× (ALGORITHMS.md §6).

Run: ``.venv/bin/python benchmarks/ecd_step.py [--steps 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import odeopt as oo


def resnet18_shapes() -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, first_stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            shapes += [
                (width, cin, 3, 3),
                (width,),
                (width,),
                (width, width, 3, 3),
                (width,),
                (width,),
            ]
            if block == 0 and (first_stride != 1 or cin != width):
                shapes += [(width, cin, 1, 1), (width,), (width,)]
            cin = width
    shapes += [(1000, 512), (1000,)]
    return shapes


def make_params(shapes, device):
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).mul_(0.05).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g).mul_(1e-3).to(device)
    return params


def time_steps(opt, steps, device, closure):
    opt.step(closure)  # warm-up (and the stored energy's first step)
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step(closure)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = args.device
    shapes = resnet18_shapes()
    n = sum(torch.Size(s).numel() for s in shapes)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"ResNet-18 shapes: {len(shapes)} tensors, {n / 1e6:.2f} M floats, float32")
    BBI = oo.discretize(oo.zoo.bbi(), "symplectic_euler").to_torch()
    SEP = oo.discretize(oo.zoo.ecdsep(), "symplectic_euler").to_torch()

    def closure():
        return torch.tensor(1.0)

    rows = {}
    for name, make in (
        ("SGD foreach", lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, foreach=True)),
        ("BBI (odeopt)", lambda ps: BBI(ps, lr=0.01, delta_v=-0.5, foreach=True)),
        (
            "BBI (odeopt), no finite check",
            lambda ps: BBI(ps, lr=0.01, delta_v=-0.5, foreach=True, check_finite=False),
        ),
        ("ECDSep (odeopt), noise 5e-5", lambda ps: SEP(ps, lr=0.5, f0=-0.5, foreach=True)),
        (
            "ECDSep (odeopt), no noise",
            lambda ps: SEP(ps, lr=0.5, f0=-0.5, foreach=True, noise=0.0),
        ),
    ):
        params = make_params(shapes, device)
        opt = make(params)
        rows[name] = time_steps(opt, args.steps, device, closure)
    base = rows["SGD foreach"]
    for name, t in rows.items():
        print(f"  {name:34s} {t * 1e3:8.2f} ms  {t / base:5.2f}× SGD foreach")


if __name__ == "__main__":
    main()
