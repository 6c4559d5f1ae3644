"""The ``odeopt`` command line: list, show NAME, derive NAME, export NAME, analyze NAME, learn,
tour."""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import zoo

__all__ = ["main"]


def _pairs(items: Sequence[str], flag: str, known: Callable[[str], None]) -> dict[str, str]:
    """``FLAG NAME=VALUE`` strings as {NAME: VALUE text}; a ValueError names the bad item: no
    '=', an empty NAME, a NAME given twice, or one that ``known(NAME)`` refuses."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} takes NAME=VALUE, got {flag} {item!r}")
        if key in out:
            raise ValueError(f"{flag} {key} is given twice")
        known(key)
        out[key] = value
    return out


def _parse_params(items: Sequence[str], name: str | None = None) -> dict[str, float]:
    """``--param NAME=VALUE`` strings as {NAME: float(VALUE)} (see :func:`_pairs`); when the
    zoo system ``name`` is given, a NAME must be one of its parameters."""
    known = _zoo_parameters(name) if name is not None else None

    def check(key: str) -> None:
        if known is not None and key not in known:
            listed = ", ".join(known) if known else "none"
            raise ValueError(f"{name} has no parameter {key!r}; its parameters: {listed}")

    out = {}
    for key, value in _pairs(items, "--param", check).items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--param {key}: {value!r} is not a number") from None
    return out


def _zoo_parameters(name: str) -> list[str] | None:
    """The keyword parameters of the zoo system ``name`` (None: unknown system or a factory
    that takes any keyword, so nothing to check here)."""
    factory = zoo.REGISTRY.get(name)
    if factory is None:
        return None
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def _output_problem(option: str, output: str) -> str | None:
    """Why ``output`` cannot be written as a file (a message naming it), or None: it is an
    existing directory, or its directory is missing or not a directory."""
    path = Path(output)
    if path.is_dir():
        return f"{option} {output!r} is a directory; give a file name, e.g. {path / 'opt.py'}"
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        return f"{option} {output!r}: {str(parent)!r} is not a directory"
    if not parent.exists():
        return (
            f"{option} {output!r}: the directory {str(parent)!r} does not exist (create it first)"
        )
    return None


def _fail(message: str) -> int:
    """Print ``odeopt: message`` to stderr; the exit code of a usage error, 2."""
    print(f"odeopt: {message}", file=sys.stderr)
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    for name in zoo.names():
        system = zoo.get(name)
        print(f"{name:16s} {system.description}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
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
    from .export import discretize

    system = zoo.get(args.name, **_parse_params(args.param, args.name))
    return discretize(system, args.scheme)


def cmd_derive(args: argparse.Namespace) -> int:
    try:
        rule = _rule(args)
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        return _fail(f"{exc.args[0] if isinstance(exc, KeyError) else exc}")
    print(rule)
    print(f"identified: {rule.identify()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the rule a scheme makes of a zoo system as a torch.optim.Optimizer file. A bad
    -o (missing directory, a directory) is refused before any work, with exit code 2."""
    problem = _output_problem("-o/--output", args.output)
    if problem is not None:
        return _fail(f"export: {problem}")
    try:
        rule = _rule(args)
        source = rule.to_source()
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        return _fail(f"{exc.args[0] if isinstance(exc, KeyError) else exc}")
    try:
        Path(args.output).write_text(source, encoding="utf-8")
    except OSError as exc:
        return _fail(f"export: cannot write -o/--output {args.output!r}: {exc.strerror or exc}")
    print(
        f"wrote {args.output}: {rule.system.name} with {rule.scheme.name} "
        "as a torch.optim.Optimizer"
    )
    return 0


# ---------------------------------------------------------------- analyze
#: parameters tuned together with the step h by default, when the system has them
DEFAULT_TUNED = ("friction",)


def _number(option: str, text: str) -> float:
    """``text`` as a finite float; a ValueError names ``option`` and the text."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} must be finite, got {option} {text}")
    return value


def _integer(option: str, text: str) -> int:
    """``text`` as an integer ≥ 1; a ValueError names ``option`` and the text."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{option} must be an integer ≥ 1, got {option} {text!r}") from None
    if value < 1:
        raise ValueError(f"{option} must be an integer ≥ 1, got {option} {value}")
    return value


def _parse_set(items: Sequence[str], names: Sequence[str], system: str) -> dict[str, float]:
    """``--set NAME=VALUE`` strings as {NAME: VALUE} (see :func:`_pairs`): NAME one of
    ``names`` (h and the system's keywords), VALUE a finite number."""

    def check(key: str) -> None:
        if key not in names:
            raise ValueError(
                f"--set {key}: {system} has no parameter {key!r}; its values: {', '.join(names)}"
            )

    return {k: _number(f"--set {k}", v) for k, v in _pairs(items, "--set", check).items()}


def _parse_over(
    text: str | None, names: Sequence[str], fixed: dict[str, float], system: str
) -> tuple[str, ...]:
    """The parameters to tune: ``--over`` (comma-separated), or by default h plus
    :data:`DEFAULT_TUNED` where the system has them, less the names fixed by ``--set``."""
    if text is None:
        default = ("h", *(n for n in DEFAULT_TUNED if n in names))
        return tuple(n for n in default if n not in fixed)
    over = tuple(n.strip() for n in text.split(","))
    if not all(over):
        raise ValueError(f"--over takes comma-separated names, e.g. h,friction; got {text!r}")
    for n in over:
        if n not in names:
            raise ValueError(
                f"--over {text}: {system} has no parameter {n!r}; its values: {', '.join(names)}"
            )
        if n in fixed:
            raise ValueError(f"--over {text}: {n} is also fixed by --set {n}={fixed[n]:g}")
    if len(set(over)) != len(over):
        raise ValueError(f"--over {text} names a parameter twice")
    return over


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type named unless it is a ValueError,
    TypeError or NotImplementedError, whose messages say why); a very long message keeps its
    beginning and its end."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, TypeError, NotImplementedError)):
        text = f"{type(exc).__name__}: {text}"
    if len(text) > 480:
        text = text[:300] + " … " + text[-160:]
    return text


def _part(title: str, body: Callable[[], list[str]]) -> bool:
    """Print ``title`` and the lines of ``body()`` indented, or one line with the reason when
    it raises (never a traceback); solver warnings (not numpy's RuntimeWarnings from scans
    that overflow) follow as notes. True when the part ran."""
    print(title, flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lines = body()
        except Exception as exc:  # every reason is printed as one line
            print(f"  not available: {_one_line(exc)}\n", flush=True)
            return False
    for line in lines:
        print(f"  {line}")
    notes = dict.fromkeys(
        " ".join(str(w.message).split())
        for w in caught
        if not issubclass(w.category, RuntimeWarning)
    )
    for note in notes:
        print(f"  (warning: {note})")
    print(flush=True)
    return True


def _num(x: Any) -> str:
    import sympy as sp

    if x in (sp.oo, sp.S.Infinity):
        return "∞"
    return f"{float(x):.6g}"


def _format_set(s: Any, var: str) -> str:
    """A sympy set of one positive variable as ``var ∈ (a, b] ∪ …`` with 6-digit endpoints,
    and the exact endpoints when they are short closed forms (√, fractions)."""
    import sympy as sp

    if s is sp.S.EmptySet:
        return f"no {var} > 0"
    parts = s.args if isinstance(s, sp.Union) else (s,)
    shown, exact = [], []
    for part in parts:
        if not isinstance(part, sp.Interval):
            shown.append(str(part))
            continue
        lo, hi = "(" if part.left_open else "[", ")" if part.right_open else "]"
        shown.append(f"{lo}{_num(part.inf)}, {_num(part.sup)}{hi}")
        ends = [part.inf, part.sup]
        if any(not e.is_Float and not e.is_Integer and e is not sp.oo for e in ends):
            text = f"{lo}{ends[0]}, {ends[1]}{hi}"
            if len(text) < 60 and not any(e.is_Float for e in ends):
                exact.append(text)
    out = f"{var} ∈ " + " ∪ ".join(shown)
    if exact and len(exact) == len(parts):
        out += " = " + " ∪ ".join(exact)
    return out


def _inside(s: Any, x: float) -> bool:
    """Whether the number ``x`` lies in the sympy set ``s`` (unions of intervals)."""
    import sympy as sp

    parts = s.args if isinstance(s, sp.Union) else (s,)
    for part in parts:
        if not isinstance(part, sp.Interval):
            continue
        lo, hi = float(part.inf), float(part.sup)
        if (lo < x or (lo == x and not part.left_open)) and (
            x < hi or (x == hi and not part.right_open)
        ):
            return True
    return False


def _values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{k} = {v:.6g}" for k, v in values.items()) or "the defaults"


def analyze(
    rule: Any,
    kappa: float,
    over: tuple[str, ...],
    values: dict[str, float],
    steps: int = 5,
    order: int = 1,
) -> None:
    """Print the analysis of ``rule`` on quadratics with spectrum in [μ, L] = [1, κ]: the
    rule; its iteration matrix M(λ); the tuned rate min over ``over`` of max_λ ρ(M(λ)) with
    the classical optima (GD (κ−1)/(κ+1), Polyak (√κ−1)/(√κ+1), Nesterov 1 − 2/√(3κ+1)); the
    torch.optim equivalent; the stable steps h at λ = L with the other values as tuned; where
    one step decreases H on quadratics (λ = L); the modified equation of ``order``; and the
    tight worst case F(x_N) − F* over 1-smooth convex F (PEPit, N = ``steps``) at the values
    tuned for [1/κ, 1]. ``values`` (``--set``) are used as given everywhere. A part that does
    not apply prints one line saying why."""
    from .analysis.pep import NotCertifiableError
    from .analysis.tuning import classical_optimum

    name = f"{rule.system.name} with {rule.scheme.name}"
    print(f"{name}: quadratics with spectrum in [μ, L] = [1, {kappa:g}] (κ = {kappa:g})\n")
    _part("rule:", lambda: str(rule).splitlines())

    got: dict[str, Any] = {}

    def matrix() -> list[str]:
        import sympy as sp

        q = rule.quadratic()
        got["q"] = q
        state = ", ".join(b.name for b in q.blocks)
        pretty = sp.pretty(q.matrix, use_unicode=True).splitlines()
        return [
            f"({state})_{{k+1}} = M(λ) ({state})_k along each eigen-direction of F, "
            "F = ½λθ², g = λθ:",
            *(("M = " if i == len(pretty) // 2 else "    ") + r for i, r in enumerate(pretty)),
        ]

    _part("iteration matrix on quadratics:", matrix)
    linear = "q" in got

    def skipped() -> list[str]:
        raise ValueError("the rule is not linear on quadratics (see the iteration matrix above)")

    def tuned() -> list[str]:
        q = got["q"]
        if over:
            t = rule.tune(mu=1.0, L=kappa, over=over, **values)
            got["tuned"] = t
            got["at"] = dict(t.values)
            lines = [
                f"tuned over {', '.join(over)}: rate {t.rate:.6f} at {_values_text(t.values)} "
                f"({t.method})"
            ]
            rate = t.rate
        else:
            at = {k: v for k, v in values.items() if k in q.symbols}
            rate = q.worst_rate(1.0, kappa, **at)
            got["at"] = dict(values)
            lines = [f"nothing to tune (--set fixes every value): rate {rate:.6f}"]
        digits = math.inf if rate >= 1 else -1.0 / math.log10(rate)
        lines.append(f"steps per decimal digit: {digits:.4g}   (rate = max over λ ∈ [1, κ] of ρ)")
        lines.append(f"classical optima at κ = {kappa:g}:")
        for family, label in (
            ("gd", "gradient descent  (κ−1)/(κ+1)"),
            ("heavy_ball", "heavy ball (Polyak)  (√κ−1)/(√κ+1)"),
            ("nesterov", "Nesterov  1 − 2/√(3κ+1)"),
        ):
            lines.append(f"  {label:36s} {classical_optimum(family, 1.0, kappa)[1]:.6f}")
        return lines

    _part("tuned rate:", tuned if linear else skipped)

    def torch_equivalent() -> list[str]:
        ident = rule.identify()
        if not ident:
            raise ValueError(f"none recognised: {ident.reason}")
        lines = [str(ident)]
        t = got.get("tuned")
        if t is not None and t.torch:
            args = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.torch.items()
            )
            lines.append(f"at the tuned values: torch.optim.{t.optimizer}({args})")
        return lines

    _part("torch.optim equivalent:", torch_equivalent)

    def at_l() -> tuple[dict[str, float], str]:
        """The values other than h (tuned, else --set and the defaults) and their text."""
        if "at" in got:
            rest = {k: v for k, v in got["at"].items() if k != "h"}
            return rest, f"λ = L = {kappa:g}" + (f", {_values_text(rest)}" if rest else "")
        rest = {k: v for k, v in values.items() if k != "h"}
        given = f"{_values_text(rest)}, " if rest else ""
        return rest, f"λ = L = {kappa:g}, {given}the system's defaults otherwise (not tuned)"

    def stability() -> list[str]:
        rest, where = at_l()
        region = got["q"].stability_region(curvature=kappa, **rest)
        if region.set is None or region.by_name != "h":
            return [f"at {where}: {region}"]
        how = "exact" if region.exact else "numeric"
        line = f"at {where}: stable for {_format_set(region.set, 'h')} ({how})"
        h = got.get("at", values).get("h")
        if h is not None:
            which = "tuned" if "h" in over else "given"
            inside = "inside" if _inside(region.set, h) else "outside"
            line += f"; the {which} h = {h:.6g} is {inside}"
        return [line]

    _part("stable steps:", stability if linear else skipped)

    def energy() -> list[str]:
        import sympy as sp

        rest, where = at_l()
        de = rule.discrete_energy(curvature=kappa, **rest)
        if de.set is None or de.by_name != "h":
            return [f"at {where}: {de}"]
        if de.set is sp.S.EmptySet:
            return [f"at {where}: one step increases H for some state, for every h > 0"]
        how = "exact" if de.exact else "numeric"
        line = f"at {where}: one step never increases H for {_format_set(de.set, 'h')} ({how})"
        h = got.get("at", values).get("h")
        if h is not None:
            inside = _inside(de.set, h)
            line += f"; at h = {h:.6g} H {'decreases' if inside else 'can increase'}"
        return [line]

    _part("discrete energy (H(x_{k+1}) ≤ H(x_k) on quadratics):", energy if linear else skipped)

    def modified() -> list[str]:
        return str(rule.modified_equation(order=order)).splitlines()

    _part(f"modified equation (order {order}; η = the rule's step):", modified)

    def certificate() -> list[str]:
        unit: dict[str, float] | None = None
        if over:
            try:
                unit = rule.tune(mu=1.0 / kappa, L=1.0, over=over, **values).values
                where = "at the values tuned for the spectrum [1/κ, 1] (the rule scaled to L = 1)"
            except (TypeError, ValueError):
                unit = None
        if unit is None:
            unit, where = dict(values), "at the values given by --set"
            if "h" not in unit:
                try:  # the reason the rule cannot be certified, when it cannot
                    rule.worst_case(L=1.0, mu=0.0, steps=steps, **unit)
                except NotCertifiableError:
                    raise
                except (TypeError, ValueError):
                    pass
                raise ValueError(
                    "no step h to certify with: the rule could not be tuned (see above); "
                    "give --set h=VALUE"
                )
        wc = rule.worst_case(L=1.0, mu=0.0, steps=steps, **unit)
        return [
            where + ":",
            str(wc),
            f"gradient descent with h = 1/L (Drori & Teboulle 2014): L/(4N+2) = "
            f"{1.0 / (4 * steps + 2):.6g}",
        ]

    _part(f"worst case (PEPit): F(x_N) − F* over 1-smooth convex F, N = {steps}:", certificate)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse the rule a scheme makes of a zoo system (see :func:`analyze`). Bad options
    (--kappa not a finite number ≥ 1, --steps/--order not an integer ≥ 1, --set/--over naming
    an unknown parameter, an unknown system or scheme) and a system that no scheme can
    discretize (a metric that is not coordinate-wise) exit 2 with one line."""
    from .export import discretize

    try:
        kappa = _number("--kappa", args.kappa)
        if kappa < 1:
            raise ValueError(f"--kappa must be ≥ 1 (κ = L/μ), got --kappa {args.kappa}")
        steps = _integer("--steps", args.steps)
        order = _integer("--order", args.order)
        system = zoo.get(args.name)
        rule = discretize(system, args.scheme)
        names = ["h", *(p.name for p in system.parameters if not p.stored)]
        values = _parse_set(args.set, names, system.name)
        over = _parse_over(args.over, names, values, system.name)
    except (KeyError, TypeError, ValueError, NotImplementedError) as exc:
        return _fail(f"analyze: {exc.args[0] if isinstance(exc, KeyError) else exc}")
    analyze(rule, kappa, over, values, steps=steps, order=order)
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
    p.set_defaults(func=cmd_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "learn" and args.out_mul is None:
        args.out_mul = 1e-3 if args.task == "quadratic" else 0.1
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
