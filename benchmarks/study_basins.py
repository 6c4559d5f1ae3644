"""Basin maps of polyThree through ``oo.Study``: 10⁶ starts × four fixed-step rules on numba.

Bensaid's one-neuron polyThree (ALGORITHMS.md §5), starts uniform in [−3, 3]², each run to
|∇R| < 1e-4 or ``--steps`` steps, every start classified by Bensaid's protocol
(``result.table()``: the minimum within 0.05 of a converged start, "other", "not converged"
or "diverged"). The fixed-step rules, h = 0.1 (the hyper-parameters of
notebooks/bensaid_tables.ipynb, which reproduce Bensaid's records):

* GD: gradient flow, explicit Euler;
* Momentum: the heavy ball (m = 1, γ = β̄ = 1), symplectic Euler (= SGD(lr = h², momentum
  1 − γh = 0.9));
* NAG: the same heavy ball with ``symplectic_euler_nesterov`` (= SGD(nesterov=True), constant
  momentum 0.9; ``zoo.nesterov`` is Su–Boyd–Candès' vanishing-friction ODE, another rule);
* Adam: ``zoo.adam(β̄₁ = 1, β̄₂ = 0.01)``, symplectic Euler (m, s before θ: β₁ = 0.9,
  β₂ = 0.999, no bias correction),

each one ``oo.Study(...).run(chunk_size=--chunk)`` on ``backend="numba"`` (the fused kernel,
parallel over numba's threads), timed apart from its compilation (a 64-start study first).
Prints the wall time per run, the peak memory (the process's ru_maxrss) and the table; then
the same runs on the first ``--numpy-starts`` starts with ``backend="numpy"`` for the ratio,
counting the starts whose status or outcome differs there (at most ``MAX_DISAGREEMENT``).
Then the adaptive rules on the first ``--adaptive-starts`` starts (numpy; the kernel runs
no adaptive scheme): LC_EGD as §5 states it, LC_EGD with h ≤ 0.2 and Euler–Richardson (the
reference variant, tolerance 0.01), from h₀ = 0.1 to t = 10⁸ or 200 000 steps. The basin
maps go to ``--out``/study_basins.png.

Run: ``.venv/bin/python benchmarks/study_basins.py [--starts 1000000] [--out /tmp]``.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

import odeopt as oo
from odeopt import problems, zoo

PROBLEM = problems.poly_three()
#: the share of starts whose status or outcome may differ between numpy and numba: both run
#: the same IEEE operations on differently ordered formulas (numpy evaluates σ by Horner's
#: rule, numba R's expanded sympy form), and a trajectory that wanders between basins
#: (Momentum, NAG) amplifies a 1-ulp difference into another minimum
MAX_DISAGREEMENT = 0.005


def rss_mib() -> float:
    """The process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fixed_runs(steps: int, backend: str) -> dict[str, oo.Run]:
    """GD, Momentum, NAG and Adam at h = 0.1, ``steps`` steps, gtol 1e-4."""
    kw = dict(h=0.1, steps=steps, gtol=1e-4, backend=backend)
    hb = zoo.heavy_ball(mass=1.0, friction=1.0)
    adam = zoo.adam(beta1_bar=1.0, beta2_bar=0.01, eps=1e-8)
    return {
        "GD": oo.Run(zoo.gradient_flow(), "euler", **kw),
        "Momentum": oo.Run(hb, "symplectic_euler", **kw),
        "NAG": oo.Run(hb, "symplectic_euler_nesterov", **kw),
        "Adam": oo.Run(adam, "symplectic_euler", **kw),
    }


def adaptive_runs() -> dict[str, oo.Run]:
    """LC_EGD (uncapped and h ≤ 0.2) and Euler–Richardson, Bensaid's protocol."""
    kw = dict(h=0.1, t_span=(0, 1e8), max_steps=200_000, gtol=1e-4)
    gf = zoo.gradient_flow()
    ctrl = oo.schemes.StepController(norm="l2", rtol=0, atol=0.01, grow=np.inf, shrink=0)
    return {
        "LC_EGD": oo.Run(gf, oo.schemes.EnergyDecrease("euler"), **kw),
        "LC_EGD, h ≤ 0.2": oo.Run(gf, oo.schemes.EnergyDecrease("euler", h_max=0.2), **kw),
        "Euler–Richardson": oo.Run(
            gf, oo.schemes.EulerRichardson("reference", controller=ctrl), **kw
        ),
    }


def study(x0: np.ndarray, runs: dict[str, oo.Run], chunk: int):
    """The study's result and its wall time."""
    t0 = time.perf_counter()
    result = oo.Study(PROBLEM, {"theta": x0}, runs).run(chunk_size=chunk, progress=False)
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=250_000, help="starts per task")
    ap.add_argument("--numpy-starts", type=int, default=20_000, help="0 to skip")
    ap.add_argument("--adaptive-starts", type=int, default=100_000, help="0 to skip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp", help="folder for study_basins.png")
    args = ap.parse_args()
    import numba
    import pandas as pd

    pd.set_option("display.width", 200)
    x0 = np.random.default_rng(args.seed).uniform(-3, 3, (args.starts, 2))
    print(
        f"polyThree basins through oo.Study: {args.starts} starts in [−3, 3]², "
        f"{args.steps} steps (h = 0.1, gtol = 1e-4), chunks of {args.chunk}, backend='numba' "
        f"({numba.get_num_threads()} threads); ru_maxrss before: {rss_mib():.0f} MiB"
    )
    results, seconds = {}, {}
    for name, run in fixed_runs(args.steps, "numba").items():
        _, compile_s = study(x0[:64], {name: run}, 64)  # compiles the kernel (cached after)
        results[name], seconds[name] = study(x0, {name: run}, args.chunk)
        taken = int(results[name].data["steps"].values.sum())  # steps until each start stopped
        print(
            f"   {name:9s} {seconds[name]:6.2f} s (compile {compile_s:.1f} s apart): "
            f"{taken / args.starts:6.1f} steps per start on average, "
            f"{seconds[name] / max(taken, 1) * 1e9:5.2f} ns per step taken; result "
            f"{results[name].data.nbytes / 2**20:.0f} MiB; ru_maxrss {rss_mib():.0f} MiB"
        )
    total = sum(seconds.values())
    print(f"   total {total:.1f} s for the {len(seconds)} maps; peak RSS {rss_mib():.0f} MiB")
    table = pd.concat([r.table() for r in results.values()])
    print(table.round(4).to_string())

    n = min(args.numpy_starts, args.starts)
    if n:
        print(f"numpy backend on the first {n} starts (chunks of {min(args.chunk, n)}):")
        for name, run in fixed_runs(args.steps, "numpy").items():
            ref, t_np = study(x0[:n], {name: run}, min(args.chunk, n))
            t_nb = seconds[name] * n / args.starts
            nb = results[name]
            status = ref.data["status"].values[0] != nb.data["status"].values[0, :n]
            outcome = ref.outcome.values[0] != nb.outcome.values[0, :n]
            print(
                f"   {name:9s} {t_np:6.2f} s, {t_np / t_nb:5.1f}× numba's time per start; "
                f"statuses differ on {status.sum()}, outcomes on {outcome.sum()} of {n} starts"
            )
            if max(status.mean(), outcome.mean()) > MAX_DISAGREEMENT:
                raise SystemExit(f"{name}: numpy and numba disagree on the first {n} starts")

    adaptive = {}
    m = min(args.adaptive_starts, args.starts)
    if m:
        print(f"adaptive rules (numpy) on the first {m} starts, chunks of {min(args.chunk, m)}:")
        for name, run in adaptive_runs().items():
            adaptive[name], t = study(x0[:m], {name: run}, min(args.chunk, m))
            print(f"   {name:17s} {t:6.2f} s; ru_maxrss {rss_mib():.0f} MiB")
        print(pd.concat([r.table() for r in adaptive.values()]).round(4).to_string())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    panels = {**results, **adaptive}
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 5 * rows), squeeze=False)
    for ax, (name, result) in zip(axes.flat, panels.items(), strict=False):
        result.plot_basins(name, ax=ax)
        ax.set_title(f"{name} ({result.data.sizes['start']:,} starts)")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("polyThree: where each start in [−3, 3]² ends")
    fig.tight_layout()
    path = Path(args.out) / "study_basins.png"
    fig.savefig(path, dpi=80)
    print(
        f"basin maps: {path} ({time.perf_counter() - t0:.1f} s to draw); "
        f"peak RSS {rss_mib():.0f} MiB"
    )


if __name__ == "__main__":
    main()
