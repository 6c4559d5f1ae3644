"""``odeopt analyze NAME``: the analysis of a zoo system's update rule, printed part by part.

On quadratics with spectrum in [μ, L] = [1, κ] (F = ½λθ² per eigen-direction, λ ∈ [1, κ]):
the iteration matrix M(λ) with x_{k+1} = M(λ)x_k; the tuned rate min over the chosen
parameters of max_λ ρ(M(λ)), beside the classical optima (gradient descent (κ−1)/(κ+1),
Polyak (√κ−1)/(√κ+1), Nesterov 1 − 2/√(3κ+1)); the torch.optim equivalent; the stable steps
h at λ = L; where one step decreases H; the modified equation; and the PEPit worst case
F(x_N) − F* over 1-smooth convex F. Each part runs on its own (:func:`_part`): one that does
not apply prints one line with the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable
from typing import Any

from . import zoo
from .cli_options import _fail, _integer, _number, _parse_over, _parse_set


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
