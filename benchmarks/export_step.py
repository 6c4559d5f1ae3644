"""Step time and memory of an exported optimizer against torch.optim.SGD, in one run.

Exported heavy ball + symplectic Euler (which is SGD with momentum) against
``torch.optim.SGD(momentum=0.9, foreach=True)`` and ``fused=True``, float32, on
(a) 1000 tensors × 1k elements and (b) 8 tensors × 2M elements. Prints the median step time of
each and the ratios (targets: exported foreach ≤ 1.10× SGD foreach; the torch.compile path ≤ 1.2×
SGD fused), and the optimizer state's
memory (bytes held in optimizer.state) against SGD's momentum buffers.

Run: ``.venv/bin/python benchmarks/export_step.py [--steps 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import odeopt as oo


def make_params(shapes, device):
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g).to(device) * 1e-3
    return params


def time_steps(opt, steps, device):
    opt.step()  # warm-up (torch.compile compiles here)
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[3:])


def state_bytes(opt):
    total = 0
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = args.device
    Opt = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").to_torch()
    h = 0.1
    friction = (1 - 0.9) / h  # momentum = 1 − γh/m = 0.9 with m = 1
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for label, shapes in (("1000 × 1k", [(1000,)] * 1000), ("8 × 2M", [(2_000_000,)] * 8)):
        rows = {}
        for name, make in (
            ("SGD foreach", lambda ps: torch.optim.SGD(ps, lr=h * h, momentum=0.9, foreach=True)),
            ("SGD fused", lambda ps: torch.optim.SGD(ps, lr=h * h, momentum=0.9, fused=True)),
            ("odeopt foreach", lambda ps: Opt(ps, lr=h, friction=friction, foreach=True)),
            (
                "odeopt foreach, no finite check",
                lambda ps: Opt(ps, lr=h, friction=friction, foreach=True, check_finite=False),
            ),
            ("odeopt per-parameter", lambda ps: Opt(ps, lr=h, friction=friction, foreach=False)),
            (
                "odeopt torch.compile, no finite check",
                lambda ps: Opt(ps, lr=h, friction=friction, compiled=True, check_finite=False),
            ),
        ):
            params = make_params(shapes, device)
            try:
                opt = make(params)
                t = time_steps(opt, args.steps, device)
            except (RuntimeError, TypeError) as exc:  # fused may be unavailable on a device
                print(f"  {label:10s} {name:34s} unavailable: {str(exc).splitlines()[0]}")
                continue
            rows[name] = (t, state_bytes(opt))
        base = rows["SGD foreach"][0]
        mem = rows["SGD foreach"][1]
        fused = rows.get("SGD fused", (None,))[0]
        for name, (t, b) in rows.items():
            print(
                f"  {label:10s} {name:34s} {t * 1e3:8.3f} ms  {t / base:5.2f}× SGD foreach  "
                f"state {b / 2**20:7.1f} MiB ({b / max(mem, 1):.2f}× SGD's)"
                + (f"  {t / fused:5.2f}× SGD fused" if fused else "")
            )


if __name__ == "__main__":
    main()
