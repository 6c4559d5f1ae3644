"""Tuning a rule on ill-conditioned quadratics: min over parameters of the worst ρ.

For quadratics with spectrum in [μ, L] the rate of a linear rule is
r(h, …) = max_{λ∈[μ, L]} ρ(M(λ; h, …)), and its tuned rate is min over the chosen parameters of
r. The classical optima, with κ = L/μ:

* gradient descent, lr = 2/(μ + L): (κ − 1)/(κ + 1);
* heavy ball (Polyak 1964), lr = 4/(√L + √μ)², momentum = ((√κ − 1)/(√κ + 1))²:
  (√κ − 1)/(√κ + 1);
* Nesterov on quadratics (Lessard, Recht & Packard 2016), lr = 4/(3L + μ),
  momentum = (√(3κ + 1) − 2)/(√(3κ + 1) + 2): 1 − 2/√(3κ + 1).

:func:`tune` uses them exactly when :meth:`~odeopt.UpdateRule.identify` recognises the rule as
torch's SGD (plain, momentum or Nesterov) and the torch hyper-parameters can be solved for the
parameters being tuned; otherwise it minimises r numerically (a log grid, then Nelder–Mead
from the best grid points, with r evaluated on a refined λ grid).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp
from scipy.optimize import minimize

from .quadratic import QuadraticRule

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = ["TunedRule", "classical_optimum", "tune"]


@dataclass
class TunedRule:
    """The outcome of :func:`tune`.

    ``rate``: max_{λ∈[μ, L]} ρ at ``values`` (keyed by public names: ``h``, ``friction``, …,
    the tuned ones and the fixed ones); ``torch``: the recognised torch.optim optimizer's
    hyper-parameters at those values (``{"lr": …, "momentum": …}``) and ``optimizer`` its
    name, when :meth:`~odeopt.UpdateRule.identify` recognises the rule; ``method``: how the
    optimum was found (a closed form with its reference, or the numeric minimax).
    """

    rate: float
    values: dict[str, float]
    over: tuple[str, ...]
    mu: float
    L: float
    method: str
    optimizer: str | None = None
    torch: dict[str, Any] | None = None
    exact: bool = False
    fixed: dict[str, float] = field(default_factory=dict)
    evaluations: int = 1

    @property
    def rate_per_evaluation(self) -> float:
        """rate^(1/evaluations): the contraction per gradient evaluation, to compare a
        multi-stage scheme (rk4: 4 gradients a step) with one-gradient methods."""
        return self.rate ** (1.0 / self.evaluations)

    @property
    def kappa(self) -> float:
        return self.L / self.mu

    @property
    def iterations_per_digit(self) -> float:
        """Steps per decimal digit of accuracy: −1/log₁₀(rate)."""
        return math.inf if self.rate >= 1 else -1.0 / math.log10(self.rate)

    def __str__(self) -> str:
        vals = ", ".join(f"{k}={v:.6g}" for k, v in self.values.items())
        out = f"rate {self.rate:.6g} at {vals} (κ = {self.kappa:g}; {self.method})"
        if self.evaluations > 1:
            out += (
                f"; {self.evaluations} gradients a step: {self.rate_per_evaluation:.6g} per "
                "gradient"
            )
        if self.optimizer and self.torch:
            args = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in self.torch.items()
            )
            out += f"; torch.optim.{self.optimizer}({args})"
        return out


def classical_optimum(family: str, mu: float, L: float) -> tuple[dict[str, float], float, str]:
    """(torch hyper-parameters, rate, reference) of the optimal tuning of ``family``
    ("gd", "heavy_ball" or "nesterov") on quadratics with spectrum in [μ, L]."""
    k = L / mu
    if family == "gd":
        return {"lr": 2 / (mu + L)}, (k - 1) / (k + 1), "closed form: gradient descent"
    if family == "heavy_ball":
        sk = math.sqrt(k)
        return (
            {"lr": 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, "momentum": ((sk - 1) / (sk + 1)) ** 2},
            (sk - 1) / (sk + 1),
            "closed form: heavy ball (Polyak 1964)",
        )
    if family == "nesterov":
        s = math.sqrt(3 * k + 1)
        return (
            {"lr": 4 / (3 * L + mu), "momentum": (s - 2) / (s + 2)},
            1 - 2 / s,
            "closed form: Nesterov on quadratics (Lessard, Recht & Packard 2016)",
        )
    raise ValueError(f"unknown family {family!r}; known: gd, heavy_ball, nesterov")


def gradients_per_step(rule: UpdateRule) -> int:
    """Gradient evaluations a step costs: those of the program, less one when the new θ is a
    point the step already evaluated and the next step starts by evaluating at θ (leapfrog:
    the gradient at θ_{k+1} is reused, as integrate's cache does)."""
    evals = rule.evaluations
    k = len(evals)
    theta = rule.system.loss.block if rule.system.loss is not None else None
    new_theta = rule.outputs.get(theta.name) if theta is not None else None
    points = {e.theta for e in evals}
    if k > 1 and theta in points and new_theta in points and new_theta != theta:
        k -= 1
    return max(k, 1)


def _check(mu: Any, L: Any, over: Any) -> tuple[float, float, tuple[str, ...]]:
    for name, v in (("mu", mu), ("L", L)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a real number, got {v!r}")
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {name} = {v!r}")
    if float(mu) > float(L):
        raise ValueError(f"need mu <= L (the spectrum is [mu, L]), got mu = {mu}, L = {L}")
    if isinstance(over, str):
        over = (over,)
    over = tuple(over)
    if not over or not all(isinstance(o, str) for o in over):
        raise TypeError(
            f"over must name the parameters to tune, e.g. ('h', 'friction'); got {over!r}"
        )
    if len(set(over)) != len(over):
        raise ValueError(f"over names a parameter twice: {over}")
    return float(mu), float(L), over


def _family(ident: Any) -> str | None:
    if ident.name != "SGD":
        return None
    hp = ident.hyperparameters
    if hp.get("dampening", 0) != 0 or "weight_decay" in hp:  # the closed forms assume neither
        return None
    if "momentum" not in hp:
        return "gd"
    return "nesterov" if hp.get("nesterov") is sp.true else "heavy_ball"


def _exact(
    rule: UpdateRule,
    q: QuadraticRule,
    mu: float,
    L: float,
    over: tuple[str, ...],
    fixed: Mapping[str, float],
    ident: Any,
) -> tuple[dict[str, float], float, str, str, dict[str, Any]] | None:
    family = _family(ident)
    if family is None:
        return None
    target, rate, ref = classical_optimum(family, mu, L)
    if len(target) != len(over):
        return None
    by_name = {p.name: p.symbol for p in rule.system.parameters}
    by_name["h"] = rule.h
    unknowns = [by_name[o] for o in over]
    fsub = {by_name[k]: sp.nsimplify(v, rational=True) for k, v in fixed.items() if k in by_name}
    fsub = {**{s: sp.sympify(e).xreplace(fsub) for s, e in q.fixed.items()}, **fsub}
    eqs = [
        sp.simplify(sp.sympify(ident.hyperparameters[k]).xreplace(fsub)) - sp.Float(v, 30)
        for k, v in target.items()
    ]
    if any(not (e.free_symbols & set(unknowns)) for e in eqs):
        return None
    try:
        sols = sp.solve(eqs, unknowns, dict=True)
    except (NotImplementedError, ValueError):  # pragma: no cover - sympy gives up
        return None
    for sol in sols:
        vals = {}
        ok = True
        for o, s in zip(over, unknowns, strict=True):
            v = sol.get(s)
            if v is None or not v.is_number:
                ok = False
                break
            c = complex(sp.N(v, 30))
            if abs(c.imag) > 1e-12 * max(1.0, abs(c.real)):
                ok = False
                break
            x = c.real
            a = s.assumptions0
            if (a.get("positive") and x <= 0) or (a.get("nonnegative") and x < 0):
                ok = False
                break
            vals[o] = x
        if not ok:
            continue
        full = {**fixed, **vals}
        check = q.worst_rate(mu, L, **{k: v for k, v in full.items() if k in q.symbols})
        if abs(check - rate) > 1e-7:  # the identification and the matrix must agree
            continue
        torch = {k: float(v) for k, v in target.items()}
        torch.update(
            {
                k: v
                for k, v in _torch_values(ident, full, by_name, q.fixed).items()
                if k not in torch
            }
        )
        return vals, rate, ref, family, torch
    return None


def _torch_values(
    ident: Any,
    values: Mapping[str, float],
    by_name: Mapping[str, sp.Symbol],
    switch: Mapping[sp.Symbol, sp.Expr],
) -> dict[str, Any]:
    sub = {by_name[k]: sp.Float(v, 30) for k, v in values.items() if k in by_name}
    switch = {s: sp.sympify(e).xreplace(sub) for s, e in switch.items()}
    out: dict[str, Any] = {}
    for k, e in ident.hyperparameters.items():
        e = sp.sympify(e)
        if e in (sp.true, sp.false):
            out[k] = bool(e)
        else:
            v = sp.sympify(e.xreplace(switch).xreplace(sub))
            out[k] = float(v) if v.is_number else v
    return out


def _numeric(
    q: QuadraticRule,
    mu: float,
    L: float,
    over: tuple[str, ...],
    fixed: Mapping[str, float],
    defaults: Mapping[str, Any],
) -> tuple[dict[str, float], float]:
    lam = np.unique(np.concatenate([np.geomspace(mu, L, 257), [mu, L]]))
    positive = []
    for o in over:
        s = q.symbols[o]
        positive.append(bool(s.is_positive or s.is_nonnegative))

    def worst(points: np.ndarray) -> np.ndarray:
        """r at each row of points (P, len(over)), on the λ grid."""
        vals = {o: points[:, i, None] for i, o in enumerate(over)}
        rho = np.asarray(q.spectral_radius(lam[None, :], **fixed, **vals))
        rho = np.where(np.isfinite(rho), rho, np.inf)
        return rho.max(-1)

    # a log grid per parameter: the step around 1/L .. 1/√μ, the others around their defaults
    axes = []
    per = {1: 400, 2: 70, 3: 22}.get(len(over), 10)
    for o, pos in zip(over, positive, strict=True):
        if o == "h":
            lo = 1e-3 * min(1 / L, 1 / math.sqrt(L))
            hi = 10 * max(1 / mu, 1 / math.sqrt(mu))
        else:
            d = abs(float(defaults.get(o) or 1.0)) or 1.0
            lo, hi = d * 1e-3, d * 1e3
        axes.append(np.geomspace(lo, hi, per) if pos else np.linspace(-hi, hi, per))
    grid = np.array(list(itertools.product(*axes)))
    r = np.concatenate([worst(c) for c in np.array_split(grid, max(1, len(grid) // 2000))])
    order = np.argsort(r)[:4]

    def to_u(x: np.ndarray) -> np.ndarray:
        return np.array([math.log(v) if p else v for v, p in zip(x, positive, strict=True)])

    def from_u(u: np.ndarray) -> np.ndarray:
        return np.array([math.exp(v) if p else v for v, p in zip(u, positive, strict=True)])

    def objective(u: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return float(worst(from_u(u)[None, :])[0])

    best_u, best_r = to_u(grid[order[0]]), float(r[order[0]])
    for i in order:
        res = minimize(
            objective,
            to_u(grid[i]),
            method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 4000, "maxfev": 8000},
        )
        # restart once from the result (Nelder–Mead stalls at the kinks of a max)
        res = minimize(
            objective,
            res.x,
            method="Nelder-Mead",
            options={"xatol": 1e-13, "fatol": 1e-15, "maxiter": 4000, "maxfev": 8000},
        )
        if res.fun < best_r:
            best_u, best_r = res.x, float(res.fun)
    x = from_u(best_u)
    vals = {o: float(v) for o, v in zip(over, x, strict=True)}
    return vals, q.worst_rate(mu, L, **fixed, **vals)


def tune(
    rule: UpdateRule,
    mu: float,
    L: float,
    over: Sequence[str] = ("h",),
    method: str = "auto",
    t: Any = None,
    switched: bool = False,
    allow_bias: bool = False,
    **values: Any,
) -> TunedRule:
    """min over ``over`` of max_{λ∈[μ, L]} ρ(M(λ)): the rule's best linear rate on quadratics
    with spectrum in [μ, L] (κ = L/μ).

    ``over`` names the parameters to tune (``"h"`` and the system's keywords); the others take
    ``values`` or the system's defaults. ``method``: ``"auto"`` (the closed form when the rule
    is torch's SGD family and the hyper-parameters can be solved for ``over``, else numeric),
    ``"exact"`` (the closed form or a ValueError saying why not) or ``"numeric"``.
    ``t`` fixes the time of time-dependent coefficients, ``switched=True`` tunes the rule
    after its switches fired. A rule whose fixed point on F = ½λ(θ − θ*)² is not θ* (see
    :attr:`QuadraticRule.bias`) is refused unless ``allow_bias=True``: its ρ is the rate to
    another point, and minimising it can shrink the gradient's weight instead of converging.
    The rate is per step; ``TunedRule.evaluations`` counts the gradients a step takes.
    """
    mu, L, over = _check(mu, L, over)
    if method not in ("auto", "exact", "numeric"):
        raise ValueError(f"method must be 'auto', 'exact' or 'numeric', got {method!r}")
    q = rule.quadratic(t=t, switched=switched)
    if q.bias and not allow_bias:
        raise ValueError(
            f"{rule.system.name} with {rule.scheme.name} does not keep the minimiser of a "
            f"quadratic at rest ({q.bias}): its iterates converge to another point, so its ρ "
            "is not a rate to the minimum; pass allow_bias=True to tune the rate to its own "
            "fixed point"
        )
    names = set(q.symbols) - {"curvature"}
    for o in over:
        if o not in names:
            raise ValueError(
                f"cannot tune {o!r}: the rule on quadratics depends on {sorted(names)}"
            )
    given_tuned = sorted(set(over) & set(values))
    if given_tuned:
        raise ValueError(
            f"{given_tuned} are tuned (named in over={over}); a value for them would be ignored"
        )
    fixed = q._values({k: v for k, v in values.items()}, need=False)
    fixed.pop("curvature", None)
    for o in over:
        fixed.pop(o, None)
    missing = sorted(names - set(over) - set(fixed))
    if missing:
        raise TypeError(f"give values for {missing} (not tuned and without a default)")
    defaults = rule.system.defaults
    fixed = {k: float(v) for k, v in fixed.items()}
    ident = rule.identify()
    k = gradients_per_step(rule)
    if method in ("auto", "exact"):
        got = _exact(rule, q, mu, L, over, fixed, ident)
        if got is not None:
            vals, rate, ref, _, torch = got
            return TunedRule(
                rate, {**vals, **fixed}, over, mu, L, ref, ident.name, torch, True, fixed, k
            )
        if method == "exact":
            why = (
                f"it is {ident}" if ident else f"identify() does not recognise it ({ident.reason})"
            )
            raise ValueError(
                f"no closed-form optimum for {rule.system.name} with {rule.scheme.name} over "
                f"{over}: {why}; closed forms exist for torch's SGD (plain, momentum, Nesterov) "
                "when its hyper-parameters can be solved for the tuned parameters; use "
                "method='numeric'"
            )
    vals, rate = _numeric(q, mu, L, over, fixed, defaults)
    torch = None
    if ident:
        by_name = {p.name: p.symbol for p in rule.system.parameters}
        by_name["h"] = rule.h
        torch = _torch_values(ident, {**vals, **fixed}, by_name, q.fixed)
    return TunedRule(
        rate,
        {**vals, **fixed},
        over,
        mu,
        L,
        "numeric minimax (log grid, then Nelder–Mead)",
        ident.name,
        torch,
        False,
        fixed,
        evaluations=k,
    )
