"""The ``odeopt`` command line: list, show NAME, derive NAME, export NAME, learn, tour."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import zoo

__all__ = ["main"]


def _parse_params(items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"odeopt: --param takes NAME=VALUE, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise SystemExit(f"odeopt: --param {key}: {value!r} is not a number") from None
    return out


def cmd_list(args: argparse.Namespace) -> int:
    for name in zoo.names():
        system = zoo.get(name)
        print(f"{name:16s} {system.description}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        system = zoo.get(args.name, **_parse_params(args.param))
    except KeyError as exc:
        print(f"odeopt: {exc.args[0]}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as exc:
        print(f"odeopt: {exc}", file=sys.stderr)
        return 2
    print(system)
    print("energy balance:")
    for line in str(system.energy_balance()).splitlines():
        print("  " + line)
    return 0


def _rule(args: argparse.Namespace):  # noqa: ANN202 - an UpdateRule
    from .export import discretize

    system = zoo.get(args.name, **_parse_params(args.param))
    return discretize(system, args.scheme)


def cmd_derive(args: argparse.Namespace) -> int:
    try:
        rule = _rule(args)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"odeopt: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    print(rule)
    print(f"identified: {rule.identify()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        rule = _rule(args)
        source = rule.to_source()
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        print(f"odeopt: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    Path(args.output).write_text(source, encoding="utf-8")
    print(
        f"wrote {args.output}: {rule.system.name} with {rule.scheme.name} "
        "as a torch.optim.Optimizer"
    )
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    """Meta-train the learned pH optimizer, compare it on fresh problems, write it as a file."""
    import torch

    from . import learned

    try:
        task = (
            learned.QuadraticTask()
            if args.task == "quadratic"
            else learned.DigitsMLPTask(activation=args.task.split("_")[1])
        )
        result = learned.meta_train(
            task, iterations=args.iterations, out_mul=args.out_mul, seed=args.seed
        )
    except (ValueError, FloatingPointError) as exc:
        print(f"odeopt: {exc}", file=sys.stderr)
        return 2
    test = task.sample(100, torch.Generator().manual_seed(args.seed + 1))
    mine = learned.run_learned(result.net, test, out_mul=args.out_mul)[-1].mean()
    lr = 0.01 if args.task == "quadratic" else 0.3
    sgd = learned.run_torch(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9), test)
    print(f"meta-trained on {args.task}: validation {[round(v, 4) for v in result.validation]}")
    print(
        f"F at step 100, mean over 100 fresh problems: learned {mine:.4f}, "
        f"SGD(lr={lr}, momentum=0.9) {sgd[-1].mean():.4f}"
    )
    learned.save_source(result.net, args.output)
    print(f"wrote {args.output}: the learned optimizer (lr = out_mul = {args.out_mul}), torch only")
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from .tour import run_tour

    run_tour(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odeopt", description="Optimizers as port-Hamiltonian ODEs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the zoo's systems")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="show a system, its ODE and its energy balance")
    p.add_argument("name")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.set_defaults(func=cmd_show)
    for name, helptext, func in (
        ("derive", "print the update rule a scheme makes of a system", cmd_derive),
        ("export", "write the rule as a torch.optim.Optimizer in a .py file", cmd_export),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name")
        p.add_argument("--scheme", default="symplectic_euler")
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        if name == "export":
            p.add_argument("-o", "--output", required=True, metavar="FILE.py")
        p.set_defaults(func=func)
    p = sub.add_parser("learn", help="meta-train the learned pH optimizer; write it as a .py")
    p.add_argument(
        "--task", choices=("quadratic", "digits_sigmoid", "digits_relu"), default="quadratic"
    )
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--out-mul", type=float, default=None, help="default 1e-3 (quadratic), 0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, metavar="FILE.py")
    p.set_defaults(func=cmd_learn)
    p = sub.add_parser("tour", help="run the whole pipeline on built-in defaults; write a report")
    p.add_argument("--out", default="odeopt-tour", help="report folder (default: odeopt-tour)")
    p.set_defaults(func=cmd_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "learn" and args.out_mul is None:
        args.out_mul = 1e-3 if args.task == "quadratic" else 0.1
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
