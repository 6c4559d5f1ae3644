"""The ``odeopt`` command line: list, show NAME, derive NAME, export NAME, analyze NAME, learn,
tour.

NAME is a zoo system (with ``--scheme``, default symplectic Euler) or, for show, derive and
export, a named optimizer (:mod:`odeopt.optimizers`: a system with its own scheme, e.g.
lc_egd); a name that is both must mean the same rule, else it is refused as ambiguous.
The parser and the commands live here; the parsing of option values in
:mod:`odeopt.cli_options`, the ``analyze`` report in :mod:`odeopt.cli_analyze`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from . import optimizers, zoo
from .cli_analyze import cmd_analyze
from .cli_options import DEFAULT_SCHEME, _fail, _output_problem, _parse_params, _resolve
from .cli_options import _parse_over as _parse_over  # imported from here by the tests

__all__ = ["main"]


def cmd_list(args: argparse.Namespace) -> int:
    """Two sections: the zoo's systems, then the named optimizers (system + scheme)."""
    print("systems (odeopt show NAME; derive/export NAME --scheme S):")
    for name in zoo.names():
        system = zoo.get(name)
        print(f"{name:16s} {system.description}")
    print()
    print("named optimizers (odeopt export NAME -o FILE.py; in Python oo.optimizers.get(NAME)):")
    for name in optimizers.names():
        entry = optimizers.get(name)
        print(f"{name:20s} {entry.description}")
        print(f"{'':20s}   {entry.recipe}; {entry.reference}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        if args.name not in zoo.REGISTRY and args.name in optimizers.REGISTRY:
            entry = _resolve(args.name, None, args.param)
            print(f"{entry.name}: {entry.summary}")
            print(f"reference: {entry.reference}")
            print(f"scheme: {entry.scheme.name if entry.scheme is not None else 'none'}")
            system = entry.system
        else:
            system = zoo.get(args.name, **_parse_params(args.param, args.name))
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
    """The rule NAME stands for: a named optimizer's, or the zoo system's with ``--scheme``."""
    from .export import discretize

    if args.name not in zoo.REGISTRY and args.name not in optimizers.REGISTRY:
        raise KeyError(
            f"no zoo system {args.name!r}; known: {', '.join(zoo.names())}; nor a named "
            f"optimizer: {', '.join(optimizers.names())}"
        )
    entry = _resolve(args.name, args.scheme, args.param)
    if entry is not None:
        return entry.rule()
    system = zoo.get(args.name, **_parse_params(args.param, args.name))
    return discretize(system, args.scheme or DEFAULT_SCHEME)


def cmd_derive(args: argparse.Namespace) -> int:
    try:
        rule = _rule(args)
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        return _fail(f"{exc.args[0] if isinstance(exc, KeyError) else exc}")
    print(rule)
    print(f"identified: {rule.identify()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the rule a scheme makes of a zoo system, or a named optimizer, as a
    torch.optim.Optimizer file (``--parametrization sgd``: with SGD's hyper-parameters). A bad
    -o (missing directory, a directory) is refused before any work, with exit code 2."""
    from .export.torch_source import class_name

    problem = _output_problem("-o/--output", args.output)
    if problem is not None:
        return _fail(f"export: {problem}")
    try:
        entry = _resolve(args.name, args.scheme, args.param)
        if entry is not None and entry.scheme is None:
            return _fail(
                f"export: {args.name} is the learned optimizer: its step is a meta-trained net; "
                "run `odeopt learn -o FILE.py` (it trains the net and writes the optimizer)"
            )
        rule = _rule(args)
        name = entry.cls if entry is not None else None
        source = rule.to_source(name, parametrization=args.parametrization)
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        return _fail(f"{exc.args[0] if isinstance(exc, KeyError) else exc}")
    try:
        Path(args.output).write_text(source, encoding="utf-8")
    except OSError as exc:
        return _fail(f"export: cannot write -o/--output {args.output!r}: {exc.strerror or exc}")
    cls = name or class_name(rule, args.parametrization)
    print(
        f"wrote {args.output}: {rule.system.name} with {rule.scheme.name} "
        f"as a torch.optim.Optimizer (class {cls})"
    )
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    """Meta-train the learned pH optimizer, compare it on fresh problems, write it as a file.
    Bad options (--iterations < 1, --out-mul not finite or ≤ 0, --seed < 0, a bad -o) are
    refused before training, with exit code 2."""
    import torch

    from . import learned

    if args.iterations < 1:
        return _fail(f"learn: --iterations must be ≥ 1, got {args.iterations}")
    if not (math.isfinite(args.out_mul) and args.out_mul > 0):
        bound = "finite" if not math.isfinite(args.out_mul) else "> 0"
        return _fail(f"learn: --out-mul must be {bound}, got {args.out_mul}")
    if args.seed < 0:
        return _fail(f"learn: --seed must be ≥ 0, got {args.seed}")
    problem = _output_problem("-o/--output", args.output)
    if problem is not None:
        return _fail(f"learn: {problem}")
    try:
        task = (
            learned.QuadraticTask()
            if args.task == "quadratic"
            else learned.DigitsMLPTask(activation=args.task.split("_")[1])
        )
        result = learned.meta_train(
            task, iterations=args.iterations, out_mul=args.out_mul, seed=args.seed
        )
    except (TypeError, ValueError, FloatingPointError) as exc:
        return _fail(str(exc))
    test = task.sample(100, torch.Generator().manual_seed(args.seed + 1))
    mine = learned.run_learned(result.net, test, out_mul=args.out_mul)[-1].mean()
    lr = 0.01 if args.task == "quadratic" else 0.3
    sgd = learned.run_torch(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9), test)
    print(f"meta-trained on {args.task}: validation {[round(v, 4) for v in result.validation]}")
    print(
        f"F at step 100, mean over 100 fresh problems: learned {mine:.4f}, "
        f"SGD(lr={lr}, momentum=0.9) {sgd[-1].mean():.4f}"
    )
    try:
        learned.save_source(result.net, args.output)
    except (OSError, ValueError) as exc:
        return _fail(f"learn: {exc}")
    print(f"wrote {args.output}: the learned optimizer (lr = out_mul = {args.out_mul}), torch only")
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from .tour import run_tour

    run_tour(Path(args.out), quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odeopt", description="Optimizers as port-Hamiltonian ODEs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the zoo's systems and the named optimizers")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "show", help="show a system (or a named optimizer's), its ODE and its energy balance"
    )
    p.add_argument("name")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.set_defaults(func=cmd_show)
    for name, helptext, func in (
        ("derive", "print the update rule a scheme makes of a system", cmd_derive),
        ("export", "write the rule as a torch.optim.Optimizer in a .py file", cmd_export),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", help="a zoo system or a named optimizer (odeopt list)")
        p.add_argument(
            "--scheme",
            default=None,
            help=f"the scheme for a zoo system (default: {DEFAULT_SCHEME}); a named optimizer "
            "has its own",
        )
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        if name == "export":
            p.add_argument("-o", "--output", required=True, metavar="FILE.py")
            p.add_argument(
                "--parametrization",
                default="ode",
                metavar="P",
                help="ode (default: lr is the step h, the system's parameters are keys) or the "
                "torch optimizer the rule is (sgd: lr, momentum, ... converted every step)",
            )
        p.set_defaults(func=func)
    p = sub.add_parser(
        "analyze",
        help="analyse a rule: iteration matrix, tuned rate, stability, modified equation, PEP",
        description=(
            "Analyse the update rule a scheme makes of a zoo system on quadratics with "
            "spectrum in [1, κ]: its iteration matrix M(λ), the tuned rate (min over --over of "
            "max over λ of ρ(M)) beside gradient descent's, Polyak's and Nesterov's optima, the "
            "torch.optim equivalent, the stable steps h at λ = κ, where one step decreases H, "
            "the modified equation and the PEPit worst case. A part that does not apply "
            "prints the reason."
        ),
    )
    p.add_argument("name", help="a zoo system (odeopt list)")
    p.add_argument("--scheme", default="symplectic_euler", help="default: symplectic_euler")
    p.add_argument(
        "--kappa",
        default="100",
        metavar="K",
        help="condition number κ = L/μ ≥ 1 (μ = 1, L = K; default 100)",
    )
    p.add_argument(
        "--over",
        default=None,
        metavar="NAMES",
        help="comma-separated parameters to tune, e.g. h,friction (default: h, plus friction "
        "when the system has it; names fixed by --set are not tuned)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix h or a system parameter (public names: friction, mass, ...); used in every "
        "part; the others not tuned take the system's defaults",
    )
    p.add_argument(
        "--steps",
        default="5",
        metavar="N",
        help="steps N of the PEPit worst case (L = 1, μ = 0, values tuned for [1/κ, 1]; default 5)",
    )
    p.add_argument(
        "--order", default="1", metavar="R", help="order of the modified equation (default 1)"
    )
    p.set_defaults(func=cmd_analyze)
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
    p.add_argument(
        "--quick",
        action="store_true",
        help="every section on tiny inputs (seconds; the report says so): a smoke test",
    )
    p.set_defaults(func=cmd_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "learn" and args.out_mul is None:
        args.out_mul = 1e-3 if args.task == "quadratic" else 0.1
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
