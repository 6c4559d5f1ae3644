"""Table A1 of the learned pH optimizer (ALGORITHMS.md §4) on the reference's protocol, with
confidence intervals, and the transfer rows on digits (issue 16, item 3).

Quadratic part: meta-trains HNN (pH-constrained cell), HNN (the authors' original cell) and
the learning-to-learn LSTM with the reference's budget (``meta_train``'s defaults: 2000
meta-iterations of one optimizee, 100 steps, model selection every 20 iterations on 50
problems) for each meta-training seed of ``--seeds``, then reports F at step 100 (the
reference's counting, F(θ_99)) as the mean over ``--problems`` fresh problems and
``--test-seeds`` test seeds with a Student-t 95 % interval over the per-seed means
(``learned.evaluate``), for the three nets and the reference's SGD, NAG, Adam and RMSprop;
with several meta-training seeds, also the mean and t-interval of the nets' results over
the meta-training seeds (the spread of meta-training itself).

Transfer part (the reference's MNIST columns; here scikit-learn's digits): the three nets
are meta-trained on the sigmoid MLP (``DigitsMLPTask()``, the first 1000 images) and
evaluated on held-out images (``split="test"``) with the sigmoid MLP and, transferred, the
ReLU MLP, next to the four baselines at the reference's MNIST learning rates. The
reference's MNIST budget is 50 epochs × 20 = 1000 meta-iterations with model selection
every 20 on 20 problems (``--transfer-iterations 1000``, the default).

Selection part (``--part select``): for each net, every quadratic checkpoint found in
``--out`` trained on the reference's loop (several meta-training seeds, possibly from
separate runs; others are skipped, named) is scored on held-out
problems that are neither the test seeds nor any meta-training stream (``learned.evaluate``
with test seeds 100…104, 100 problems each), and the best is named. The shipped checkpoints
(odeopt/learned/checkpoints/, what ``learned.pretrained`` loads) are the ones this selects,
copied by hand; the script never writes them. Selecting on held-out problems keeps the
reported test numbers honest: the test seeds 0…4 play no part in the choice.

Checkpoints go to ``--out`` (``{net}_{task}_seed{s}.pt``, readable by
``learned.load_checkpoint``), the numbers to ``--out``/learned_table_{part}_seeds….json.

Run: ``nice .venv/bin/python benchmarks/learned_table.py --out /tmp/learned_table
[--seeds 1] [--seed-start 0] [--part all|quadratic|transfer|select] [--test-seeds 5]
[--problems 100] [--transfer-iterations 1000] [--transfer-problems 100]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odeopt import learned

NETS = {"hnn": "HNN (pH cell)", "hnn_original": "HNN (original cell)", "lstm": "LSTM (L2L)"}
BASELINE_NAMES = {
    "sgd": "SGD (momentum 0.9)",
    "nag": "NAG (0.9)",
    "adam": "Adam",
    "rmsprop": "RMSprop",
}
# ALGORITHMS.md §4: quadratic, MNIST sigmoid, MNIST ReLU (transfer); the original cell is
# the reference's "HNN" row (the authors' code), the pH cell is odeopt's
REFERENCE = {
    "hnn": (0.23, 0.38, 0.36),
    "hnn_original": (0.23, 0.38, 0.36),
    "lstm": (0.25, 0.29, 2.31),
    "sgd": (0.33, 0.36, 0.45),
    "nag": (0.45, 0.33, 0.61),
    "adam": (0.41, 0.35, 0.34),
    "rmsprop": (0.76, 0.38, 0.38),
}


def _t_interval(values: list[float]) -> tuple[float, float]:
    k = len(values)
    if k < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    arr = np.asarray(values)
    half = float(t.ppf(0.975, k - 1) * arr.std(ddof=1) / math.sqrt(k))
    return (float(arr.mean()) - half, float(arr.mean()) + half)


def _row(label: str, res: dict[str, Any], ref: float, seconds: float, train_s: float | None) -> str:
    lo, hi = res["ci"]
    train = f"{train_s:8.0f}" if train_s is not None else f"{'—':>8s}"
    return (
        f"{label:28s} {res['mean']:7.3f}  [{lo:6.3f}, {hi:6.3f}]  {ref:6.2f}  {train} "
        f"{seconds:7.1f}"
    )


def _header(what: str) -> str:
    return (
        f"{what:28s} {'F@100':>7s}  {'95 % CI':^16s}  {'ref':>6s}  {'train s':>8s} {'eval s':>7s}"
    )


def _meta_seeds(args: argparse.Namespace) -> list[int]:
    return list(range(args.seed_start, args.seed_start + args.seeds))


def _evaluate(subject: Any, task: Any, args: argparse.Namespace, problems: int) -> dict:
    t0 = time.perf_counter()
    res = learned.evaluate(subject, task, problems=problems, seeds=range(args.test_seeds))
    res["seconds"] = time.perf_counter() - t0
    res.pop("curve")
    return res


def _train(
    kind: str, task: Any, seed: int, out: Path, tag: str, **kwargs: Any
) -> learned.MetaTrainResult:
    r = learned.meta_train(task, kind, seed=seed, **kwargs)
    budget = "budget " + (
        ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        or "meta_train's defaults (the reference's)"
    )
    learned.save_checkpoint(
        r,
        out / f"{kind}_{tag}_seed{seed}.pt",
        note=f"benchmarks/learned_table.py, task {tag}, seed {seed}, {budget}; "
        f"{r.settings['seconds']:.0f} s",
    )
    return r


def quadratic(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    task = learned.QuadraticTask()
    rows: dict[str, Any] = {}
    print(
        f"\nTable A1, quadratic (F at step 100; {args.problems} problems × "
        f"{args.test_seeds} test seeds; meta-training seeds {_meta_seeds(args)})"
    )
    print(_header("method"), flush=True)
    for kind, label in NETS.items():
        per_seed = []
        for s in _meta_seeds(args):
            budget = (
                {}
                if args.quadratic_iterations is None
                else {"iterations": args.quadratic_iterations}
            )
            r = _train(kind, task, s, out, "quadratic", **budget)
            res = _evaluate(r, task, args, args.problems)
            res["train_seconds"] = r.settings["seconds"]
            res["best_validation"] = r.best_validation
            per_seed.append(res)
            print(
                _row(
                    f"{label} s{s}", res, REFERENCE[kind][0], res["seconds"], res["train_seconds"]
                ),
                flush=True,
            )
        means = [r["mean"] for r in per_seed]
        rows[kind] = {
            "per_meta_seed": per_seed,
            "mean_over_meta_seeds": float(np.mean(means)),
            "ci_over_meta_seeds": _t_interval(means),
        }
        if len(means) > 1:
            lo, hi = rows[kind]["ci_over_meta_seeds"]
            print(f"{label + ' (meta-seeds)':28s} {np.mean(means):7.3f}  [{lo:6.3f}, {hi:6.3f}]")
    for name, label in BASELINE_NAMES.items():
        res = _evaluate(name, task, args, args.problems)
        rows[name] = res
        print(_row(label, res, REFERENCE[name][0], res["seconds"], None), flush=True)
    return rows


def transfer(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train_task = learned.DigitsMLPTask()  # sigmoid, first 1000 images
    tests = {
        "sigmoid": learned.DigitsMLPTask(activation="sigmoid", split="test"),
        "relu": learned.DigitsMLPTask(activation="relu", split="test"),
    }
    budget = dict(
        iterations=args.transfer_iterations,
        validate_every=args.transfer_validate_every,
        validation_problems=args.transfer_validation_problems,
    )
    rows: dict[str, Any] = {}
    print(
        f"\nTransfer rows, digits (meta-trained on the sigmoid MLP; F at step 100 on held-out "
        f"images; {args.transfer_problems} problems × {args.test_seeds} test seeds; "
        f"budget {budget})"
    )
    for kind, label in NETS.items():
        rows[kind] = {"per_meta_seed": []}
        for s in _meta_seeds(args):
            r = _train(kind, train_task, s, out, "digits", **budget)
            entry = {"train_seconds": r.settings["seconds"], "best_validation": r.best_validation}
            for act, task in tests.items():
                entry[act] = _evaluate(r, task, args, args.transfer_problems)
            rows[kind]["per_meta_seed"].append(entry)
            print(f"{label} s{s}: meta-training {entry['train_seconds']:.0f} s", flush=True)
    for name in BASELINE_NAMES:
        rows[name] = {act: _evaluate(name, task, args, args.transfer_problems)
                      for act, task in tests.items()}  # fmt: skip
    for col, act in ((1, "sigmoid"), (2, "relu")):
        print(f"\n{act} MLP" + (" (transfer)" if act == "relu" else ""))
        print(_header("method"))
        for kind, label in NETS.items():
            for s, e in zip(_meta_seeds(args), rows[kind]["per_meta_seed"], strict=True):
                print(_row(f"{label} s{s}", e[act], REFERENCE[kind][col], e[act]["seconds"],
                           e["train_seconds"]))  # fmt: skip
        for name, label in BASELINE_NAMES.items():
            res = rows[name][act]
            print(_row(label, res, REFERENCE[name][col], res["seconds"], None))
    return rows


SELECTION_SEEDS = range(100, 105)
REF_LOOP = (2000, "fresh", False)  # meta_train's defaults: the only checkpoints select compares


def select(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Score every quadratic checkpoint in ``out`` on the selection seeds; name the best."""
    task = learned.QuadraticTask()
    rows: dict[str, Any] = {}
    print(
        f"\nSelection on held-out problems (test seeds {list(SELECTION_SEEDS)}, "
        f"{args.problems} problems each; the reported test seeds are 0…{args.test_seeds - 1})"
    )
    for kind, label in NETS.items():
        scores = {}
        for path in sorted(out.glob(f"{kind}_quadratic_seed*.pt")):
            r = learned.load_checkpoint(path)
            st = r.settings
            if (st["iterations"], st.get("validation"), st.get("train_remainder")) != REF_LOOP:
                print(f"{label:28s} {path.name:34s} skipped: not the reference's loop "
                      f"(iterations {st['iterations']}, validation {st.get('validation')}, "
                      f"train_remainder {st.get('train_remainder')})")  # fmt: skip
                continue
            res = learned.evaluate(r, task, problems=args.problems, seeds=SELECTION_SEEDS)
            scores[path.name] = res["mean"]
            print(f"{label:28s} {path.name:34s} {res['mean']:7.3f}", flush=True)
        if scores:
            best = min(scores, key=scores.get)
            rows[kind] = {"scores": scores, "selected": best}
            print(f"{label:28s} selected: {best}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/learned_table", help="folder for checkpoints, json")
    ap.add_argument("--seeds", type=int, default=1, help="how many meta-training seeds")
    ap.add_argument("--seed-start", type=int, default=0, help="the first meta-training seed")
    ap.add_argument("--part", choices=("all", "quadratic", "transfer", "select"), default="all")
    ap.add_argument("--test-seeds", type=int, default=5)
    ap.add_argument("--problems", type=int, default=100, help="quadratic problems per seed")
    ap.add_argument(
        "--quadratic-iterations", type=int, default=None, help="default: meta_train's, 2000"
    )
    ap.add_argument("--transfer-iterations", type=int, default=1000)
    ap.add_argument("--transfer-validate-every", type=int, default=20)
    ap.add_argument("--transfer-validation-problems", type=int, default=20)
    ap.add_argument("--transfer-problems", type=int, default=100, help="MLPs per test seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    for name in ("seeds", "test_seeds", "problems", "transfer_iterations", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    if args.seed_start < 0:
        ap.error(f"--seed-start must be ≥ 0, got {args.seed_start}")
    if args.test_seeds < 2:
        ap.error("--test-seeds must be ≥ 2 for a confidence interval")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args)}
    if args.part in ("all", "quadratic"):
        results["quadratic"] = quadratic(args, out)
    if args.part in ("all", "transfer"):
        results["transfer"] = transfer(args, out)
    if args.part in ("all", "select"):
        results["select"] = select(args, out)
    results["wall_seconds"] = time.perf_counter() - t0
    path = out / f"learned_table_{args.part}_seeds{args.seed_start}-{_meta_seeds(args)[-1]}.json"
    path.write_text(json.dumps(results, indent=1, default=float))
    print(f"\ntotal wall time {results['wall_seconds']:.0f} s; results in {path}")


if __name__ == "__main__":
    main()
