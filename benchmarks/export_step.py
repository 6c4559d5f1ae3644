"""Step time and memory of an exported optimizer against torch.optim.SGD, and the cost of its
finite check, in one run.

Exported heavy ball + symplectic Euler (which is SGD with momentum) against
``torch.optim.SGD(momentum=0.9, foreach=True)`` and ``fused=True``, float32, on
(a) 1000 tensors × 1k elements and (b) 8 tensors × 2M elements.

The optimizers are stepped in turn, round after round (one step each per round), so that a
noisy machine slows them alike; a ratio is the median over rounds of the per-round ratio
(paired), printed with the ratio of the fastest steps. Reported:

- the finite check's cost, (step with the check − step without) / step without, on (a)
  and (b) (target ≤ 5 %);
- the exported step with the check against SGD foreach (targets: ≤ 1.10× on (a), ≤ 1.0× on
  (b));
- every variant's median step time against SGD foreach and SGD fused (targets: exported
  foreach ≤ 1.10× SGD foreach, the torch.compile path ≤ 1.2× SGD fused), and the optimizer
  state's memory against SGD's momentum buffers.

Run: ``.venv/bin/python benchmarks/export_step.py [--rounds 60] [--repeats 3] [--threads 1]
[--check-only]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import odeopt as oo


def make_params(shapes: list[tuple[int, ...]], device: str) -> list[torch.nn.Parameter]:
    """Float32 parameters with fixed random gradients (the same for every optimizer)."""
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g).to(device) * 1e-3
    return params


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the tensors held in ``opt.state``."""
    total = 0
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


def interleaved(
    opts: dict[str, torch.optim.Optimizer], rounds: int, device: str
) -> dict[str, list[float]]:
    """Step times (s) of each optimizer over ``rounds`` rounds of one step each, in turn."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for opt in opts.values():  # warm-up (torch.compile compiles here)
        opt.step()
        opt.step()
    times: dict[str, list[float]] = {name: [] for name in opts}
    for _ in range(rounds):
        for name, opt in opts.items():
            sync()
            t0 = time.perf_counter()
            opt.step()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def paired(times: dict[str, list[float]], a: str, b: str) -> tuple[float, float]:
    """(median over rounds of a/b, fastest a / fastest b)."""
    ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
    return statistics.median(ratios), min(times[a]) / min(times[b])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="independent runs of every case")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="only SGD foreach and the exported foreach step with and without the check",
    )
    args = ap.parse_args()
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    Opt = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").to_torch()
    h = 0.1
    friction = (1 - 0.9) / h  # momentum = 1 − γh/m = 0.9 with m = 1
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    makers: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
        "SGD foreach": lambda ps: torch.optim.SGD(ps, lr=h * h, momentum=0.9, foreach=True),
        "SGD fused": lambda ps: torch.optim.SGD(ps, lr=h * h, momentum=0.9, fused=True),
        "odeopt foreach": lambda ps: Opt(ps, lr=h, friction=friction, foreach=True),
        "odeopt foreach, no finite check": lambda ps: Opt(
            ps, lr=h, friction=friction, foreach=True, check_finite=False
        ),
        "odeopt per-parameter": lambda ps: Opt(ps, lr=h, friction=friction, foreach=False),
        "odeopt torch.compile, no finite check": lambda ps: Opt(
            ps, lr=h, friction=friction, compiled=True, check_finite=False
        ),
    }
    if args.check_only:
        keep = ("SGD foreach", "odeopt foreach", "odeopt foreach, no finite check")
        makers = {k: v for k, v in makers.items() if k in keep}
    summary: dict[str, list[tuple[float, float]]] = {}
    for label, shapes in (("1000 × 1k", [(1000,)] * 1000), ("8 × 2M", [(2_000_000,)] * 8)):
        for rep in range(args.repeats):
            opts, mem = {}, {}
            for name, make in makers.items():
                try:
                    opts[name] = make(make_params(shapes, device))
                    opts[name].step()
                except (RuntimeError, TypeError) as exc:  # fused may be unavailable
                    if rep == 0:
                        print(f"  {label:10s} {name:38s} unavailable: {str(exc).splitlines()[0]}")
                    opts.pop(name, None)
            times = interleaved(opts, args.rounds, device)
            for name, opt in opts.items():
                mem[name] = state_bytes(opt)
            print(f"{label}, run {rep + 1}:")
            base = statistics.median(times["SGD foreach"])
            fused = statistics.median(times["SGD fused"]) if "SGD fused" in times else None
            for name, ts in times.items():
                t = statistics.median(ts)
                b = mem[name] / max(mem["SGD foreach"], 1)
                print(
                    f"  {name:38s} {t * 1e3:8.3f} ms  {t / base:5.2f}× SGD foreach"
                    + (f"  {t / fused:5.2f}× SGD fused" if fused else "")
                    + f"  state {mem[name] / 2**20:6.1f} MiB ({b:.2f}× SGD's)"
                )
            on, off = "odeopt foreach", "odeopt foreach, no finite check"
            check = paired(times, on, off)
            summary.setdefault(f"finite check / step, {label}", []).append(
                (check[0] - 1, check[1] - 1)
            )
            summary.setdefault(f"step with check / SGD foreach, {label}", []).append(
                paired(times, on, "SGD foreach")
            )
            del opts, times
    print("\nsummary (paired median over rounds; fastest/fastest in brackets), per run:")
    for key, values in summary.items():
        pct = key.startswith("finite")
        shown = ", ".join(
            f"{m * 100:+.1f} % [{f * 100:+.1f} %]" if pct else f"{m:.3f}× [{f:.3f}×]"
            for m, f in values
        )
        target = "≤ 5 %" if pct else ("≤ 1.0×" if "8 × 2M" in key else "≤ 1.10×")
        print(f"  {key:42s} {shown}   (target {target})")


if __name__ == "__main__":
    main()
