"""A basin map of polyThree (Bensaid's one-neuron network) with ``backend="numba"``.

Each of ``--starts`` starts, uniform in [−3, 3]² (the tour's domain), runs ``--steps`` steps
of ``--scheme`` on the gradient flow θ' = −∇R (with euler: plain gradient descent, the tour's
GD row) with step ``--h`` and ``gtol=1e-4``, and is classified by the critical point of
``problem.critical_points()`` its final state lies within ``--radius`` of (minima, saddles
and the maximum alike), else by its status: ``diverged``, or ``unresolved`` (neither near a
critical point nor stopped). Prints the time (compile apart), the peak memory (the process's
ru_maxrss, which includes numba's compiler, and tracemalloc's peak of the run's Python
allocations) and the basin shares, then the numpy backend's time on the first
``--numpy-starts`` starts for the ratio (same results checked on those).

Run: ``.venv/bin/python benchmarks/basin_map.py [--starts 1000000] [--steps 2000]``.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

import odeopt as oo
from odeopt import problems, zoo


def classify(theta: np.ndarray, status: np.ndarray, points: np.ndarray, radius: float):
    """Per start: the index of the critical point within ``radius`` of its final state,
    −1 when it diverged, −2 when it is unresolved."""
    label = np.full(len(theta), -2, dtype=np.int64)
    for lo in range(0, len(theta), 1 << 18):  # in slices: (n, points) distances stay small
        sl = slice(lo, lo + (1 << 18))
        d = np.linalg.norm(theta[sl, None, :] - points[None], axis=-1)
        near = d.min(1) < radius
        label[sl] = np.where(near, d.argmin(1), -2)
    label[status == "diverged"] = -1
    return label


def run(x0: np.ndarray, args: argparse.Namespace, backend: str):
    return oo.integrate(
        zoo.gradient_flow(),
        PROBLEM,
        {"theta": x0},
        steps=args.steps,
        h=args.h,
        scheme=args.scheme,
        gtol=1e-4,
        save="final",
        backend=backend,
        progress=False,
    )


PROBLEM = problems.poly_three()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--h", type=float, default=1e-3)
    ap.add_argument("--scheme", default="euler")
    ap.add_argument("--radius", type=float, default=0.05)
    ap.add_argument("--numpy-starts", type=int, default=100_000, help="0 to skip")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import numba

    cps = PROBLEM.critical_points()
    points = np.array([[float(v) for v in c.point] for c in cps])
    x0 = np.random.default_rng(args.seed).uniform(-3, 3, (args.starts, 2))
    print(
        f"polyThree basins: {args.starts} starts in [−3, 3]² × {args.steps} steps of "
        f"{args.scheme} (h = {args.h:g}) on the gradient flow, gtol = 1e-4, backend='numba' "
        f"({numba.get_num_threads()} threads)"
    )
    t0 = time.perf_counter()
    run(x0[:1], args, "numba")  # compiles (once per session)
    compile_s = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    tr = run(x0, args, "numba")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    per = seconds / (args.starts * args.steps) * 1e9
    print(
        f"   time {seconds:.2f} s ({per:.2f} ns per trajectory-step; compile {compile_s:.1f} s "
        f"apart); peak memory: ru_maxrss {rss:.0f} MiB (process, compiler included), "
        f"tracemalloc peak {peak / 2**20:.0f} MiB (the run's arrays)"
    )
    label = classify(tr.final["theta"], tr.status, points, args.radius)
    print(f"   {'basin':22s} {'kind':9s} {'R':>6s} {'share':>8s}")
    for k, c in enumerate(cps):
        share = np.mean(label == k)
        if share or c.kind == "minimum":
            print(f"   {str(c.point):22s} {c.kind:9s} {float(c.value):6.2f} {share:8.4f}")
    print(f"   {'diverged':22s} {'':9s} {'':6s} {np.mean(label == -1):8.4f}")
    print(f"   {'unresolved':22s} {'':9s} {'':6s} {np.mean(label == -2):8.4f}")
    statuses = dict(zip(*np.unique(tr.status, return_counts=True), strict=True))
    print(f"   statuses: { {str(k): int(v) for k, v in statuses.items()} }")
    n = min(args.numpy_starts, args.starts)
    if n:
        t0 = time.perf_counter()
        ref = run(x0[:n], args, "numpy")
        t_np = time.perf_counter() - t0
        t_nb = seconds * n / args.starts
        same = bool((ref.status == tr.status[:n]).all())
        kept = ref.status != "diverged"  # a diverged start's last state differs by far
        d = np.abs(ref.final["theta"][kept] - tr.final["theta"][:n][kept]).max()
        print(
            f"   numpy backend on the first {n} starts: {t_np:.2f} s, i.e. {t_np / t_nb:.1f}× "
            f"the numba run's time per start; statuses equal: {same}, max |Δθ| = {d:.1e} "
            "over those that did not diverge (numpy evaluates σ by Horner's rule, numba R's "
            "expanded sympy form)"
        )


if __name__ == "__main__":
    main()
