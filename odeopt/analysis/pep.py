"""Worst-case certificates of an update rule by performance estimation (PEPit).

For a rule of odeopt's language, N of its steps from θ₀ (every other block at rest, 0), the
performance estimation problem (PEP) is

    maximise    m(x_N)                      (x_N: the loss block θ after N steps)
    subject to  F ∈ 𝓕_{μ,L},  x* a minimiser of F,  |θ₀ − x*|² ≤ 1,
                x_1, …, x_N produced by the rule,

over all dimensions, all such F and all θ₀: 𝓕_{μ,L} is the set of L-smooth μ-strongly convex
functions (μ = 0: L-smooth convex) and m is F(x_N) − F* (``metric="loss"``), |x_N − x*|²
(``"distance"``) or |∇F(x_N)|² (``"gradient"``). Drori & Teboulle (2014) and Taylor,
Hendrickx & Glineur (2017) showed that, for a *fixed-step linear first-order method*, this is
a semidefinite program whose value is the exact (tight) worst case; PEPit builds and solves it.
The value scales with the initial distance: for |θ₀ − x*|² ≤ R², multiply it by R².

odeopt exports a rule to PEPit by reading its update program (``rule.program``): every block
(θ, the momentum p, …) is a PEPit ``Point``; θ starts at PEPit's initial point x₀, the other
blocks at 0 (at rest, as an exported optimizer starts); an evaluation F_k, g_k := F(θ_k),
∇F(θ_k) becomes g_k = ∇F(θ_k); an assignment and each block's new value must be *linear* in
the coordinate symbols (blocks, gradients) with coefficients that are numbers once the step h,
the system's parameters and the time are known. The time of step k is t₀ + k·h (t₀ the
``t`` keyword, default 0), so time-varying coefficients (``zoo.nesterov``'s r/(t + t₀)) are
substituted step by step.

Rules outside this class are refused with the reason: those whose step uses the loss value F
(BBI and the other energy-conserving descents: their step size changes with F), a global of
the state (|p|², ⟨g, p⟩), an adaptive step size, an implicit step, a non-coordinate-wise
metric, a switch on F's value (braking: pass ``switched=False`` or ``True`` to certify one
side), or an update that is not linear in θ, p and g (Adam, RMSProp).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..checks import check_count, check_positive, check_real
from ..schemes.program import Assignment, Evaluation
from ..symbolic.language import Block, Gradient, Loss, Reduction
from ..symbolic.language import t as time
from .linear_map import adaptive_controller, fixed_point_bias

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = ["METRICS", "NotCertifiableError", "WorstCase", "worst_case", "worst_case_curve"]

#: the performance metrics: name → what is maximised
METRICS = {
    "loss": "F(x_N) − F*",
    "distance": "|x_N − x*|²",
    "gradient": "|∇F(x_N)|²",
}


class NotCertifiableError(ValueError):
    """The rule is outside PEPit's class of fixed-step linear first-order methods; the message
    says why."""


@dataclass
class WorstCase:
    """The tight worst case of ``metric`` after ``steps`` steps of a rule (see
    :func:`worst_case`).

    ``value``: max m(x_N) over F ∈ 𝓕_{μ,L} with |θ₀ − x*|² ≤ 1 (``math.inf`` when the solver
    reports the PEP unbounded); ``values``: the numbers used, by public name (``h``, the
    system's keywords, ``t`` when the rule depends on the time); ``solver`` and ``status``:
    the SDP solver that gave the value and its status; ``reference``: a closed form known for
    this rule and metric (gradient descent: Drori–Teboulle's L/(4N·lr·L + 2) for F(x_N) − F*
    with lr·L ≤ 1 and μ = 0; max(|1 − lr·μ|, |1 − lr·L|)^{2N} for |x_N − x*|²), else None.
    """

    value: float
    steps: int
    L: float
    mu: float
    values: dict[str, float]
    metric: str = "loss"
    solver: str = ""
    status: str = ""
    reference: float | None = None
    name: str = ""

    def __str__(self) -> str:
        what = METRICS[self.metric].replace("x_N", f"x_{self.steps}")
        cls = f"{self.L:g}-smooth " + (f"{self.mu:g}-strongly convex" if self.mu > 0 else "convex")
        vals = ", ".join(f"{k}={v:g}" for k, v in self.values.items())
        ref = "" if self.reference is None else f" (closed form {self.reference:.6g})"
        who = f"{self.name}: " if self.name else ""
        return (
            f"{who}{what} ≤ {self.value:.6g}{ref} over {cls} F with |x_0 − x*|² ≤ 1 "
            f"[{vals}; {self.solver}, {self.status}]"
        )


# ---------------------------------------------------------------- checks
def _check_arguments(
    L: Any, mu: Any, steps: Any, t: Any, metric: Any
) -> tuple[float, float, int, float]:
    L = check_positive("L", L)
    mu = check_positive("mu", mu, allow_zero=True)
    if not mu < L:
        raise ValueError(f"mu must be < L (0 ≤ mu < L), got mu={mu:g} with L={L:g}")
    steps = check_count("steps", steps, integral_floats=False)
    t0 = 0.0 if t is None else check_positive("t", t, allow_zero=True)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got metric={metric!r}")
    return L, mu, steps, t0


def _name(rule: UpdateRule) -> str:
    return f"{rule.system.name} with {rule.scheme.name}"


def _why_not(rule: UpdateRule, switched: bool | None) -> str | None:
    """Why ``rule`` is outside the PEP class (before any expression is read), or None."""
    sys_ = rule.system
    scheme = rule.scheme
    if getattr(sys_, "metric", None) is not None:
        return (
            f"{sys_.name} has a metric that is not coordinate-wise; PEP needs a linear "
            "first-order method"
        )
    if sys_.loss is None:
        return f"{sys_.name} has no loss"
    if rule.program.unknowns:
        return (
            f"{scheme.name} is implicit: the next state solves a nonlinear equation each step, "
            "not an explicit linear first-order method"
        )
    controller = adaptive_controller(rule)
    if controller:
        return (
            f"{scheme.name} is adaptive: the step size is chosen per step by {controller}, "
            "so the method is not a fixed-step linear first-order method (without a "
            "controller its step at a fixed h is certified)"
        )
    ls = getattr(sys_, "level_set", None)
    if ls is not None:
        return (
            f"{sys_.name} stores its energy E (set from F(θ₀)) and its step depends on the loss "
            "value F: the step size changes with F, which PEP's fixed-step linear first-order "
            "methods cannot do"
        )
    drift = fixed_point_bias(rule)
    if drift:
        return (
            f"the minimiser at rest is not a fixed point of the rule ({drift}): a term in θ "
            "outside the gradient (weight decay, c|θ|²) moves it, so F(x_N) − F* does not go "
            "to 0 and the worst case is unbounded"
        )
    if sys_.switches and switched is None:
        sides = "; ".join(
            ", ".join(f"{k} → {v}" for k, v in sw.set.items()) for sw in sys_.switches
        )
        return (
            f"{sys_.name} switches its parameters ({sides}) when the loss value F reaches a "
            "goal, a test of F that PEP cannot express; certify one side with switched=False "
            "(the pre-switch parameters for all N steps) or switched=True (the post-switch ones)"
        )
    return None


def _public_values(
    rule: UpdateRule, values: Mapping[str, Any], switched: bool | None
) -> tuple[dict[str, float], dict[sp.Symbol, sp.Expr]]:
    """(the numbers used by public name, the substitution symbol → exact number)."""
    sys_ = rule.system
    params = [p for p in sys_.parameters if not p.stored]
    names = {p.name for p in params}
    unknown = sorted(set(values) - names - {"h"})
    if unknown:
        raise TypeError(
            f"no parameter(s) {unknown} in {_name(rule)}; give h (the step) and any of "
            f"{sorted(names)} (the system's keywords), t (the start time) and metric"
        )
    if "h" not in values:
        raise TypeError(
            f"worst_case needs the step h of {_name(rule)}, e.g. h=0.1 (h = 1/L is gradient "
            "descent's classic step)"
        )
    used: dict[str, float] = {"h": check_positive("h", values["h"])}
    rest = {k: check_real(k, v) for k, v in values.items() if k != "h"}
    merged = sys_.with_parameters(**rest)
    sub: dict[sp.Symbol, sp.Expr] = {rule.h: sp.nsimplify(used["h"], rational=True)}
    for p in params:
        v = merged.get(p.name)
        if v is None:  # pragma: no cover - with_parameters reports missing values
            raise TypeError(f"give {p.name}= (a value): the rule depends on it")
        v = check_real(p.name, v)
        used[p.name] = v
        sub[p.symbol] = sp.nsimplify(v, rational=True)
    if switched:
        for sw in sys_.switches:
            for k, v in sw.set.items():
                sub[k] = sp.sympify(v).xreplace(sub)
    return used, sub


# ---------------------------------------------------------------- the translation
@dataclass
class _Linear:
    """target := Σ coeff·symbol: coefficients (sympy, possibly in t) per coordinate symbol."""

    target: str
    terms: list[tuple[sp.Symbol, sp.Expr]]
    symbol: Block | None = None


def _decompose(rule: UpdateRule, label: str, expr: sp.Expr, sub: Mapping[Any, Any]) -> _Linear:
    """``expr`` with the numbers substituted, as Σ coeff·(block or gradient); refuses what PEP
    cannot take, saying why."""
    name = _name(rule)
    e = sp.sympify(expr)
    for s in e.free_symbols:
        if isinstance(s, Loss):
            raise NotCertifiableError(
                f"{name}: the step depends on the loss value {s} ({label} := {expr}); its step "
                "size changes with F, which PEP's fixed-step linear first-order methods cannot do"
            )
        if isinstance(s, Reduction):
            raise NotCertifiableError(
                f"{name}: the step depends on {s} ({label} := {expr}), a global of the state "
                "(a sum over all coordinates); PEP needs a linear method, whose coefficients "
                "are numbers"
            )
    e = sp.expand(e.xreplace(dict(sub)))
    coords = sorted(
        (s for s in e.free_symbols if isinstance(s, (Block, Gradient))), key=lambda s: s.name
    )
    nonlinear = NotCertifiableError(
        f"{name}: the update is not linear in θ, p and g ({label} := {expr}): PEP needs a "
        "linear method (each new point a fixed combination of the points and gradients)"
    )
    if not coords:
        if e != 0:
            raise NotCertifiableError(
                f"{name}: {label} := {expr} is a constant vector (every coordinate the same "
                "number), which PEP's dimension-free class cannot represent"
            )
        return _Linear(label, [])
    try:
        poly = sp.Poly(e, *coords)
    except sp.PolynomialError as exc:
        raise nonlinear from exc
    if poly.total_degree() > 1:
        raise nonlinear
    for coeff in poly.coeffs():
        if coeff.free_symbols & set(coords):  # pragma: no cover - Poly separates them
            raise nonlinear
    const = poly.coeff_monomial(1)
    if const != 0:
        raise NotCertifiableError(
            f"{name}: {label} := {expr} adds the constant {const} to every coordinate, which "
            "PEP's dimension-free class cannot represent"
        )
    terms = []
    for c in coords:
        k = poly.coeff_monomial(c)
        left = {s for s in k.free_symbols if s != time}
        if left:
            raise NotCertifiableError(
                f"{name}: the coefficient {k} of {c} in {label} still depends on "
                f"{sorted(str(s) for s in left)} after the values are substituted; give them"
            )
        if k != 0:
            terms.append((c, k))
    return _Linear(label, terms)


def _translate(
    rule: UpdateRule, sub: Mapping[Any, Any]
) -> tuple[list[_Linear | Evaluation], dict[str, _Linear], bool]:
    """The program as linear maps (per instruction, then per block); whether it uses t."""
    program: list[_Linear | Evaluation] = []
    uses_time = False
    for ins in rule.instructions:
        if isinstance(ins, Evaluation):
            program.append(ins)
        elif isinstance(ins, Assignment):
            lin = _decompose(rule, ins.target.name, ins.expr, sub)
            lin.symbol = ins.target
            uses_time |= any(time in k.free_symbols for _, k in lin.terms)
            program.append(lin)
    outputs = {}
    for b in rule.system.all_blocks:
        lin = _decompose(rule, f"{b.name}_new", rule.outputs[b.name], sub)
        uses_time |= any(time in k.free_symbols for _, k in lin.terms)
        outputs[b.name] = lin
    return program, outputs, uses_time


def _number(rule: UpdateRule, k: sp.Expr, tk: sp.Expr, where: str) -> float:
    v = k.xreplace({time: tk}) if time in k.free_symbols else k
    try:
        out = float(v)
    except TypeError as exc:
        raise NotCertifiableError(
            f"{_name(rule)}: the coefficient {k} in {where} is not a number at t = {tk}"
        ) from exc
    if not math.isfinite(out):
        raise NotCertifiableError(
            f"{_name(rule)}: the coefficient {k} in {where} is not finite at t = {tk}"
        )
    return out


def _combine(rule: UpdateRule, lin: _Linear, env: Mapping[sp.Symbol, Any], tk: sp.Expr) -> Any:
    from PEPit.point import null_point

    point = null_point
    for sym, k in lin.terms:
        c = _number(rule, k, tk, lin.target)
        if c != 0.0:
            point = point + c * env[sym]
    return point


def _solve(problem: Any) -> tuple[float, str, str]:
    """Solve with Clarabel through cvxpy; SCS when Clarabel fails. (value, solver, status)."""
    import cvxpy

    tried = []
    for solver in (cvxpy.CLARABEL, cvxpy.SCS):
        try:
            value = problem.solve(wrapper="cvxpy", solver=solver, verbose=0)
        except (cvxpy.error.SolverError, ArithmeticError, ValueError) as exc:
            tried.append(f"{solver}: {exc}")
            continue
        status = str(problem.wrapper.prob.status)
        name = str(problem.wrapper.solver_name or solver)
        if status in ("optimal", "optimal_inaccurate") and value is not None:
            return float(value), name, status
        if status in ("unbounded", "unbounded_inaccurate"):
            return math.inf, name, status
        tried.append(f"{solver}: status {status}")
    raise RuntimeError("the PEP's SDP was not solved: " + "; ".join(tried))


def _reference(rule: UpdateRule, L: float, mu: float, N: int, metric: str, sub: Any) -> Any:
    """A closed form of the tight worst case, when the rule is plain gradient descent."""
    if metric not in ("loss", "distance"):
        return None
    ident = rule.identify()
    if ident.name != "SGD" or set(ident.hyperparameters) != {"lr"}:
        return None
    try:
        lr = float(ident.hyperparameters["lr"].xreplace(dict(sub)))
    except TypeError:
        return None
    if metric == "distance":  # x ↦ x − lr∇F is max(|1 − lr μ|, |1 − lr L|)-Lipschitz, tight
        return max(abs(1 - lr * mu), abs(1 - lr * L)) ** (2 * N)
    if mu == 0 and 0 < lr * L <= 1:  # Drori & Teboulle (2014), Theorems 3.1–3.2
        return L / (4 * N * lr * L + 2)
    return None


# ---------------------------------------------------------------- public
def worst_case(
    rule: UpdateRule,
    L: float,
    mu: float = 0.0,
    steps: int = 1,
    t: float | None = 0.0,
    metric: str = "loss",
    switched: bool | None = None,
    **values: Any,
) -> WorstCase:
    """The tight worst case of ``metric`` after ``steps`` steps of ``rule``, by PEPit.

    Solves the performance estimation problem

        max m(x_N)  s.t.  F ∈ 𝓕_{μ,L},  ∇F(x*) = 0,  |θ₀ − x*|² ≤ 1,  x_{k+1} = rule(x_k),

    where 𝓕_{μ,L} is the set of L-smooth μ-strongly convex functions (μ = 0: L-smooth convex),
    x_k the state after k steps (θ₀ given, every other block starting at 0, at rest), x_N its
    loss block θ after N = ``steps`` steps and m = F(x_N) − F* (``metric="loss"``),
    |x_N − x*|² (``"distance"``) or |∇F(x_N)|² (``"gradient"``). PEPit writes it as an SDP
    (interpolation conditions of 𝓕_{μ,L} on the Gram matrix of x₀ − x* and the gradients),
    solved by Clarabel through cvxpy (SCS when Clarabel fails; ``WorstCase.solver`` says
    which). The value is tight: some F ∈ 𝓕_{μ,L} attains it (up to the solver's tolerance).

    ``h`` (the step, required) and the system's keywords (``friction``, ``mass``, ...; their
    defaults otherwise) are given by keyword; ``t`` is the time of the first step (step k
    runs at t + k·h). A switched system (braking) needs ``switched=False`` (the pre-switch
    parameters for all N steps) or ``switched=True`` (the post-switch ones).

    Raises :class:`NotCertifiableError` (a ValueError) with the reason for rules outside
    the class of fixed-step linear first-order methods, ValueError/TypeError for invalid
    L, mu, steps, h, t, metric or parameter values (the message names the argument).
    """
    L, mu, N, t0 = _check_arguments(L, mu, steps, t, metric)
    if switched is not None and not isinstance(switched, bool):
        raise TypeError(f"switched must be True, False or None, got switched={switched!r}")
    if switched is not None and not rule.system.switches:
        raise ValueError(f"switched={switched}, but {rule.system.name} has no switch")
    why = _why_not(rule, switched)
    if why:
        raise NotCertifiableError(f"{_name(rule)} cannot be certified by PEP: {why}")
    used, sub = _public_values(rule, values, switched)
    program, outputs, uses_time = _translate(rule, sub)
    if uses_time:
        used["t"] = t0

    from PEPit import PEP
    from PEPit.functions import SmoothConvexFunction, SmoothStronglyConvexFunction
    from PEPit.point import null_point

    problem = PEP()
    if mu > 0:
        func = problem.declare_function(SmoothStronglyConvexFunction, mu=mu, L=L)
    else:
        func = problem.declare_function(SmoothConvexFunction, L=L)
    xs = func.stationary_point()
    x0 = problem.set_initial_point()
    problem.set_initial_condition((x0 - xs) ** 2 <= 1)

    assert rule.system.loss is not None
    theta = rule.system.loss.block
    state: dict[sp.Symbol, Any] = {
        b: (x0 if b == theta else null_point) for b in rule.system.all_blocks
    }
    h0 = sub[rule.h]
    for k in range(N):
        tk = sp.nsimplify(t0, rational=True) + k * h0
        env: dict[sp.Symbol, Any] = dict(state)
        for ins in program:
            if isinstance(ins, Evaluation):
                env[ins.loss.grad] = func.gradient(env[ins.theta])
            else:
                assert ins.symbol is not None
                env[ins.symbol] = _combine(rule, ins, env, tk)
        state = {b: _combine(rule, outputs[b.name], env, tk) for b in rule.system.all_blocks}
    xN = state[theta]
    if metric == "loss":
        problem.set_performance_metric(func(xN) - func(xs))
    elif metric == "distance":
        problem.set_performance_metric((xN - xs) ** 2)
    else:
        problem.set_performance_metric(func.gradient(xN) ** 2)
    value, solver, status = _solve(problem)
    return WorstCase(
        value=value,
        steps=N,
        L=L,
        mu=mu,
        values=used,
        metric=metric,
        solver=solver,
        status=status,
        reference=_reference(rule, L, mu, N, metric, sub),
        name=_name(rule),
    )


def worst_case_curve(
    rule: UpdateRule,
    L: float,
    mu: float = 0.0,
    steps: Iterable[int] = (1, 2, 4, 8),
    **values: Any,
) -> list[WorstCase]:
    """:func:`worst_case` for each N in ``steps`` (one PEP per N): the worst case as a
    function of the number of steps, e.g. to read off an O(1/N) or linear rate."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(f"steps must be a list of integers ≥ 1, got steps={steps!r}")
    Ns = list(steps)
    if not Ns:
        raise ValueError("steps must contain at least one N, got steps=[]")
    return [worst_case(rule, L=L, mu=mu, steps=N, **values) for N in Ns]
