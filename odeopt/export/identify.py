"""What an update rule is in torch.optim terms: SGD, RMSprop, Adagrad, or why none.

:func:`identify` reads the rule's update program (one gradient g at θ, the blocks' new values
inlined) and matches it against torch.optim's updates, written with d = g + λθ (torch's
coupled ``weight_decay`` λ is added to the gradient before anything else):

- **SGD** (buffer b, momentum μ): b' = μb + d, θ' = θ − lr·b' (or θ − lr·(d + μb'),
  ``nesterov=True``); without a buffer θ' = θ − lr·d. A rule p' = a·p + c·d,
  θ' = θ + D·p + E·d is SGD with b = p/c. ``dampening`` is always 0: torch's first step sets
  b₁ = d₁ whatever the dampening, so from p₀ = 0 only dampening 0 matches every step (a rule
  with an EMA buffer p' = μp + (1 − μ)d is SGD(dampening=0) with lr scaled by 1 − μ).
- **RMSprop** (square average v, buffer b): v' = αv + (1 − α)d²; without momentum
  θ' = θ − lr·d/(√v' + eps); with momentum b' = μb + d/(√v' + eps), θ' = θ − lr·b'. A rule
  s' = α·s + κ·d², θ' = θ − d/(A√|s'| + B) is RMSprop with v = s/σ, σ = κ/(1 − α):
  lr = 1/(A√σ), eps = B/(A√σ) (eps is added to √v', outside the root, as torch does).
  zoo.rmsprop + symplectic Euler: RMSprop(lr = h, alpha = 1 − β̄h, eps = ε), v = s.
- **Adagrad** (sum v): v' = v + d², θ' = θ − lr·d/(√v' + eps): the case α = 1, σ = κ.
- **Adam/AdamW** are never matched, and the reason says why: torch divides the moments by
  the bias corrections 1 − β₁ᵏ, 1 − β₂ᵏ at step k. A rule of Adam's shape (zoo.adam +
  symplectic Euler: m' = (1 − β̄₁h)m + β̄₁h·g, s' = (1 − β̄₂h)s + β̄₂h·g²,
  θ' = θ − h·m'/(√s' + ε)) is Adam(lr = h, betas = (1 − β̄₁h, 1 − β̄₂h), eps = ε) *without*
  them. No scheme of any system gives them exactly: 1 − β₁ᵏ = 1 − (1 − β̄₁h)^{t/h} depends
  on h, which an ODE's coefficients (functions of t and the parameters) cannot name, and
  the continuous correction 1 − e^{−β̄₁t} (Barakat & Bianchi) evaluated at t = kh differs
  from it at every h > 0. The rules agree once β₂ᵏ ≈ 0, after several 1/(β̄₂h) steps.

Torch's optimizers start their buffers at zero, so every match holds from a start at rest
(the exported optimizers' p₀ = 0, s₀ = 0). Decoupled weight decay (θ' gains −c·h·θ outside
the buffer and preconditioner) is AdamW's; torch has no SGDW or RMSpropW, so such rules are
explained, not matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..symbolic.language import Block, Gradient, Loss, Reduction, Time

if TYPE_CHECKING:
    from .rule import UpdateRule

__all__ = ["Identification", "identify"]


@dataclass
class Identification:
    """What :meth:`UpdateRule.identify` recognised.

    ``name`` is the torch.optim class (``"SGD"``, ``"RMSprop"``, ``"Adagrad"``) or None;
    ``hyperparameters`` its constructor arguments as sympy expressions of h and the system's
    parameters; ``state`` how the optimizer's buffers relate to the system's blocks (e.g.
    ``momentum_buffer = −p/h``, ``square_avg = s``); ``reason`` explains a match or why
    nothing matched. :meth:`kwargs` and :meth:`torch` give the numbers and the optimizer.
    """

    name: str | None
    hyperparameters: dict[str, sp.Expr] = field(default_factory=dict)
    state: dict[str, sp.Expr] = field(default_factory=dict)
    reason: str = ""
    rule: Any = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        if self.name is None:
            return f"no classic optimizer: {self.reason}"
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        state = ", ".join(f"{k} = {v}" for k, v in self.state.items())
        return f"torch.optim.{self.name}({args})" + (f" with {state}" if state else "")

    def kwargs(self, lr: float, **values: Any) -> dict[str, Any]:
        """The torch.optim constructor's keywords at the step ``lr`` = h and the system's
        parameter values (the system's defaults for those not given): floats, and bools for
        ``nesterov``. ``Identification(...).kwargs(lr=0.1, mass=2.0)``."""
        if self.name is None:
            raise ValueError(f"nothing was identified ({self.reason}); there are no keywords")
        if self.rule is None:
            raise ValueError("this Identification was made without its rule; use identify()")
        system = self.rule.system
        merged = system.with_parameters(**values)
        sub: dict[sp.Symbol, Any] = {self.rule.h: sp.Float(lr, 30)}
        for p in system.parameters:
            if not p.stored:
                sub[p.symbol] = sp.Float(merged[p.name], 30)
        out: dict[str, Any] = {}
        for k, e in self.hyperparameters.items():
            if e in (sp.true, sp.false):
                out[k] = bool(e)
                continue
            v = sp.sympify(e).xreplace(sub)
            if not v.is_number:
                raise ValueError(f"{k} = {e} is not a number at lr={lr!r}, {values}: {v}")
            out[k] = float(v)
        return out

    def torch(self, params: Any, lr: float, **values: Any) -> Any:
        """``torch.optim.<name>(params, **self.kwargs(lr, **values))``: the identified
        optimizer, with the hyper-parameters the rule has at step h = ``lr``."""
        import torch

        return getattr(torch.optim, str(self.name))(params, **self.kwargs(lr, **values))


def _none(reason: str) -> Identification:
    return Identification(None, reason=reason)


def _free_of_coordinates(*exprs: sp.Expr) -> bool:
    return not any(isinstance(s, (Block, Gradient)) for e in exprs for s in e.free_symbols)


def _degree(e: sp.Expr, g: sp.Symbol) -> int:
    """e's degree in g where e is a polynomial in g, −1 where it is not."""
    try:
        return int(sp.Poly(e, g).degree())
    except sp.PolynomialError:
        return -1


def identify(rule: UpdateRule) -> Identification:
    """Recognise ``rule`` (see :func:`_identify`); a switching system (braking) is the found
    optimizer between its switches, and the reason says what the switches change (a
    torch.optim optimizer would keep its hyper-parameters: ``parametrization="sgd"`` refuses
    it)."""
    found = _identify(rule)
    switches = rule.system.switches
    if found and switches:
        sets = "; ".join(
            ", ".join(f"{k} → {v}" for k, v in sw.set.items()) + f" when F ≤ {sw.goal}"
            for sw in switches
        )
        found.reason = (
            f"{found.reason}; between switches only: the system switches its parameters "
            f"({sets}), which torch.optim's hyper-parameters do not"
        )
    return found


def _identify(rule: UpdateRule) -> Identification:
    """Recognise torch.optim's SGD (momentum, Nesterov, weight decay), RMSprop (with and
    without momentum, weight decay) and Adagrad in ``rule``; see the module docstring for
    the correspondences and for why Adam/AdamW are never matched."""
    sys_ = rule.system
    if rule.program.unknowns:
        return _none("the scheme is implicit (a nonlinear solve per step)")
    if sys_.loss is None:
        return _none("the system has no loss")
    evals = rule.evaluations
    if len(evals) != 1:
        return _none(
            f"a step evaluates the gradient {len(evals)} times; torch.optim's optimizers once"
        )
    if evals[0].theta != sys_.loss.block:
        return _none(
            f"the gradient is taken at {evals[0].theta} = {rule._value_of(evals[0].theta)}, "
            "not at θ (torch.optim takes it at θ)"
        )
    new = rule.inline()
    globals_ = [s for e in new.values() for s in e.free_symbols if isinstance(s, (Loss, Reduction))]
    if globals_:
        names = sorted({str(s) for s in globals_})
        return _none(
            f"the step depends on the global(s) {', '.join(names)}: its step size changes with "
            "the state, which torch.optim's does not"
        )
    if any(isinstance(s, Time) for e in new.values() for s in e.free_symbols):
        return _none(
            "the coefficients change with the time t; torch.optim's are constant (a scheduler "
            "would have to change lr and momentum and rescale the buffer)"
        )
    g = sys_.loss.grad
    squares = [b for b in sys_.all_blocks if _degree(new[b.name], g) >= 2]
    if squares:
        return _Adaptive(rule, new, squares).identify()
    return _sgd(rule, new)


def _sgd(rule: UpdateRule, new: dict[str, sp.Expr]) -> Identification:
    """SGD with a buffer p' = a·p + c·d, θ' = θ + D·p + E·d, d = g + λθ (see the module)."""
    sys_ = rule.system
    theta, g = sys_.loss.block, sys_.loss.grad
    others = [b for b in sys_.all_blocks if b != theta]
    if len(others) > 1:
        return _none(f"SGD has one buffer; this rule has {len(others)}")
    coords = [theta, g, *others]
    try:
        polys = {b: sp.Poly(e, *coords) for b, e in new.items()}
    except sp.PolynomialError:
        return _none("the update is not linear in θ, p and g")
    if any(p.total_degree() > 1 for p in polys.values()):
        return _none("the update is not linear in θ, p and g")

    def coeff(b: Block, c: Any) -> sp.Expr:
        return sp.simplify(polys[b.name].coeff_monomial(c))

    if polys[theta.name].coeff_monomial(1) != 0:
        return _none("θ' is not θ plus a step: it has a constant term")
    E = coeff(theta, g)
    decay = sp.simplify(coeff(theta, theta) - 1)  # θ' − θ = … + decay·θ
    if not others:
        if E == 0:
            return _none("θ' does not depend on the gradient")
        lam = sp.simplify(decay / E)
        hp = {"lr": sp.simplify(-E)}
        if lam != 0:
            hp["weight_decay"] = lam
            why = "θ' = θ − lr·(g + weight_decay·θ): gradient descent with weight decay"
        else:
            why = "θ' = θ − lr·g: plain gradient descent"
        return Identification("SGD", hp, {}, reason=why, rule=rule)
    p = others[0]
    D = coeff(theta, p)
    a, c, w = coeff(p, p), coeff(p, g), coeff(p, theta)
    if polys[p.name].coeff_monomial(1) != 0:
        return _none(f"{p}' has a constant term")
    if c == 0 or a == 0:
        return _none(f"{p}' = {new[p.name]} is not a momentum buffer")
    lam = sp.simplify(w / c)
    if sp.simplify(decay - lam * E) != 0:
        if lam == 0:
            return _none(
                f"θ' − θ has the term ({decay})·θ outside the buffer {p}: decoupled weight "
                "decay (SGDW); torch's SGD adds weight_decay·θ to the gradient, before the "
                "buffer, and torch.optim has no SGDW"
            )
        return _none(
            f"{p}' sees g + ({lam})·θ (weight decay {lam}), but θ' − θ has ({decay})·θ, not "
            f"({sp.simplify(lam * E)})·θ: θ' is not θ plus a step in g + weight_decay·θ"
        )
    k = sp.simplify(D * c / a)
    rest = sp.simplify(E - k)
    state = {"momentum_buffer": sp.simplify(p / c)}
    wd = {"weight_decay": lam} if lam != 0 else {}
    d = "(g + weight_decay·θ)" if lam != 0 else "g"
    if rest == 0:
        return Identification(
            "SGD",
            {"lr": sp.simplify(-k), "momentum": sp.expand(a), "dampening": sp.Integer(0), **wd},
            state,
            reason=f"b = {p}/({c}) obeys b' = μb + {d} and θ' = θ − lr·b'",
            rule=rule,
        )
    if sp.simplify(k - a * rest) == 0:
        return Identification(
            "SGD",
            {
                "lr": sp.simplify(-rest),
                "momentum": sp.expand(a),
                "dampening": sp.Integer(0),
                "nesterov": sp.true,
                **wd,
            },
            state,
            reason=f"b = {p}/({c}) obeys b' = μb + {d} and θ' = θ − lr·({d} + μb')",
            rule=rule,
        )
    return _none(
        f"θ' = θ + ({D})·{p} + ({E})·g: with the buffer b = {p}/({c}), θ' − θ = "
        f"({k})·b' + ({rest})·g, neither a multiple of the new buffer (SGD) nor "
        "g + μb' (Nesterov)"
    )


class _Adaptive:
    """RMSprop, Adagrad and Adam's shape: one block s accumulates d² (see the module)."""

    def __init__(self, rule: UpdateRule, new: dict[str, sp.Expr], squares: list[Block]) -> None:
        self.rule = rule
        self.new = new
        self.squares = squares
        sys_ = rule.system
        self.theta, self.g = sys_.loss.block, sys_.loss.grad
        self.r = sp.Symbol("r", positive=True)  # √|s'|

    def identify(self) -> Identification:
        theta, g, new = self.theta, self.g, self.new
        if len(self.squares) > 1:
            names = ", ".join(str(b) for b in self.squares)
            return _none(
                f"{len(self.squares)} blocks ({names}) accumulate g²; RMSprop, Adagrad and Adam "
                "keep one square average"
            )
        s = self.squares[0]
        if s == theta:
            return _none("θ' depends on g² itself: not a preconditioned gradient step")
        others = [b for b in self.rule.system.all_blocks if b not in (theta, s)]
        found = self._square_average(s, others)
        if isinstance(found, Identification):
            return found
        alpha, kappa, lam = found
        sigma = sp.simplify(kappa if alpha == 1 else kappa / (1 - alpha))
        root = sp.sqrt(sigma)
        d = g + lam * theta
        rest: dict[str, sp.Expr] = {}
        for b in sorted(new, key=lambda b: b == theta.name):  # the buffers first, then θ
            if b == s.name:
                continue
            replaced = self._with_root(s, b, new[b], bool(others))
            if isinstance(replaced, Identification):
                return replaced
            rest[b] = replaced
        for b, e in rest.items():
            if s in e.free_symbols:
                return _none(
                    f"{b}' uses {s} other than through √|{s}'|, the root of the new average "
                    "(torch divides by √(square average) + eps)"
                )
        step = sp.expand(rest[theta.name] - theta)
        dec = self._decoupled(step, others)
        if isinstance(dec, Identification):
            return dec
        decay = sp.simplify(dec / theta)
        step = sp.simplify(step - dec)
        wd = {"weight_decay": lam} if lam != 0 else {}
        state = {"square_avg" if alpha != 1 else "sum": sp.simplify(s / sigma)}
        if not others:
            return self._no_buffer(step, d, root, alpha, decay, wd, state)
        if len(others) > 1:
            return _none(
                f"besides θ and the square average {s} this rule has {len(others)} blocks; "
                "RMSprop and Adam keep one more buffer"
            )
        v = others[0]
        nv = rest[v.name]
        a = sp.simplify(sp.diff(nv, v))
        W = sp.simplify(nv - a * v)
        if not _free_of_coordinates(a) or a == 0 or v in W.free_symbols:
            return _none(f"{v}' = {new[v.name]} is not a momentum buffer a·{v} + …")
        if self.r in W.free_symbols:
            q = sp.simplify(step / nv)
            return self._rmsprop_momentum(v, a, W, q, d, root, alpha, decay, wd, state)
        return self._adam(v, a, W, step, nv, d, root, alpha, decay, lam)

    # -- the pieces
    def _square_average(
        self, s: Block, others: list[Block]
    ) -> tuple[sp.Expr, sp.Expr, sp.Expr] | Identification:
        """s' = α·s + κ·(g + λθ)²: (α, κ, λ)."""
        theta, g = self.theta, self.g
        e = self.new[s.name]
        try:
            P = sp.Poly(e, s, g, theta, *others)
        except sp.PolynomialError:
            P = None
        allowed = {(1, 0, 0), (0, 2, 0), (0, 1, 1), (0, 0, 2)}
        if P is None or any(m[:3] not in allowed or any(m[3:]) for m in P.monoms()):
            return _none(
                f"{s}' = {e} is not a running average of squared gradients α·{s} + κ·g² "
                "(torch's RMSprop, Adagrad and Adam keep one)"
            )
        alpha = sp.simplify(P.coeff_monomial(s))
        kappa = sp.simplify(P.coeff_monomial(g**2))
        lam = sp.simplify(P.coeff_monomial(g * theta) / (2 * kappa))
        if sp.simplify(P.coeff_monomial(theta**2) - kappa * lam**2) != 0:
            return _none(f"{s}' = {e} is not α·{s} + κ·(g + λθ)²")
        if alpha == 0:
            return _none(f"{s}' = {e} forgets {s}: not a running average")
        return alpha, kappa, lam

    def _decoupled(self, step: sp.Expr, others: list[Block]) -> sp.Expr | Identification:
        """The part of θ' − θ that stays with g = 0 and the buffers at 0 and does not vanish
        as the root r = √|s'| grows (the polynomial part in r): decoupled decay −c·h·θ.
        Coupled decay sits under the root (−h·λθ/(r + ε)) and is not counted."""
        zero = {self.g: 0, **{b: 0 for b in others}}
        num, den = sp.fraction(sp.cancel(sp.together(step.xreplace(zero))))
        if num == 0:
            return sp.Integer(0)
        try:
            quo = sp.div(sp.Poly(num, self.r), sp.Poly(den, self.r))[0].as_expr()
        except sp.PolynomialError:
            return _none(f"θ' − θ at g = 0 is {num / den}, not a decay of θ")
        quo = sp.simplify(quo)
        if not _free_of_coordinates(sp.simplify(quo / self.theta)):
            return _none(f"θ' − θ has the term {quo}, not a multiple of θ")
        return quo

    def _with_root(self, s: Block, b: str, e: sp.Expr, buffers: bool) -> sp.Expr | Identification:
        """``e`` (block ``b``'s new value) with √|s'| (the root of the new average) replaced by
        the symbol r; an Identification saying why when ``e`` divides by the old √|s|."""
        ns = sp.expand(self.new[s.name])
        sub = {}
        for pw in e.atoms(sp.Pow):
            if pw.exp != sp.S.Half:
                continue
            base = pw.base.args[0] if isinstance(pw.base, sp.Abs) else pw.base
            if sp.expand(base - ns) == 0:
                sub[pw] = self.r
            elif sp.expand(base - s) == 0:
                if buffers:
                    hint = (
                        f"odeopt's partitioned schemes step every block but θ at once, so none "
                        f"updates {s} before the buffer"
                    )
                else:
                    hint = f"a scheme that updates {s} before θ, such as symplectic_euler, does"
                return _none(
                    f"{b}' divides by √{s} of the previous step; torch's RMSprop, Adagrad and "
                    f"Adam divide by the average updated with this step's g² ({hint})"
                )
        return e.xreplace(sub)

    def _denominator(self, q: sp.Expr, what: str) -> tuple[sp.Expr, sp.Expr] | Identification:
        """q = −1/(A·r + B): (A, B)."""
        if q == 0 or not _free_of_coordinates(q):
            return _none(f"{what} is not the gradient divided by √(average) + eps")
        den = sp.simplify(-1 / q)
        try:
            P = sp.Poly(den, self.r)
        except sp.PolynomialError:
            P = None
        if P is None or P.degree() != 1 or not _free_of_coordinates(*P.coeffs()):
            return _none(
                f"{what} divides the gradient by {den}, not by a multiple of √(average) + eps"
            )
        return sp.simplify(P.coeff_monomial(self.r)), sp.simplify(P.coeff_monomial(1))

    def _no_buffer(
        self,
        step: sp.Expr,
        d: sp.Expr,
        root: sp.Expr,
        alpha: sp.Expr,
        decay: sp.Expr,
        wd: dict[str, sp.Expr],
        state: dict[str, sp.Expr],
    ) -> Identification:
        name = "Adagrad" if alpha == 1 else "RMSprop"
        if decay != 0:
            return _none(
                f"θ' − θ has the term ({decay})·θ outside the preconditioner: decoupled weight "
                f"decay; torch's {name} adds weight_decay·θ to the gradient and torch.optim "
                f"has no {name}W"
            )
        AB = self._denominator(sp.simplify(step / d), "θ' − θ")
        if isinstance(AB, Identification):
            return AB
        A, B = AB
        lr, eps = sp.simplify(1 / (A * root)), sp.simplify(B / (A * root))
        (key,) = state
        if name == "Adagrad":
            hp = {"lr": lr, "eps": eps, **wd}
            why = f"{key} = {state[key]} obeys v' = v + d² and θ' = θ − lr·d/(√v' + eps)"
        else:
            hp = {"lr": lr, "alpha": sp.expand(alpha), "eps": eps, **wd}
            why = f"{key} = {state[key]} obeys v' = αv + (1 − α)d² and θ' = θ − lr·d/(√v' + eps)"
        d_text = "g + weight_decay·θ" if wd else "g"
        return Identification(name, hp, state, reason=f"{why}, d = {d_text}", rule=self.rule)

    def _rmsprop_momentum(
        self,
        v: Block,
        a: sp.Expr,
        W: sp.Expr,
        q: sp.Expr,
        d: sp.Expr,
        root: sp.Expr,
        alpha: sp.Expr,
        decay: sp.Expr,
        wd: dict[str, sp.Expr],
        state: dict[str, sp.Expr],
    ) -> Identification:
        if alpha == 1:
            return _none("torch's Adagrad has no momentum buffer")
        if decay != 0:
            return _none(
                f"θ' − θ has the term ({decay})·θ outside the buffer: decoupled weight decay; "
                "torch's RMSprop adds weight_decay·θ to the gradient"
            )
        if not _free_of_coordinates(q) or self.r in q.free_symbols:
            return _none(
                f"θ' − θ is not a multiple of the new buffer {v}' (RMSprop with momentum steps "
                "θ' = θ − lr·b')"
            )
        AB = self._denominator(sp.simplify(W / d), f"{v}' − a·{v}")
        if isinstance(AB, Identification):
            return AB
        A, B = AB
        nu = sp.simplify(-1 / (A * root))  # v = ν·b
        hp = {
            "lr": sp.simplify(-q * nu),
            "alpha": sp.expand(alpha),
            "eps": sp.simplify(B / (A * root)),
            "momentum": sp.expand(a),
            **wd,
        }
        state = {**state, "momentum_buffer": sp.simplify(v / nu)}
        return Identification(
            "RMSprop",
            hp,
            state,
            reason="v' = αv + (1 − α)d², b' = μb + d/(√v' + eps), θ' = θ − lr·b'",
            rule=self.rule,
        )

    def _adam(
        self,
        v: Block,
        a: sp.Expr,
        W: sp.Expr,
        step: sp.Expr,
        nv: sp.Expr,
        d: sp.Expr,
        root: sp.Expr,
        alpha: sp.Expr,
        decay: sp.Expr,
        lam: sp.Expr,
    ) -> Identification:
        c = sp.simplify(W / d)
        if not _free_of_coordinates(c):
            return _none(f"{v}' = {self.new[v.name]} is not a running average of gradients")
        AB = self._denominator(sp.simplify(step / nv), "θ' − θ")
        if isinstance(AB, Identification):
            return AB
        A, B = AB
        if alpha == 1:
            return _none(
                "Adam's shape with a sum of squares (α = 1) instead of an average: no torch "
                "optimizer (Adagrad has no first moment)"
            )
        lr = sp.simplify(c / ((1 - a) * A * root))
        eps = sp.simplify(B / (A * root))
        args = f"lr={lr}, betas=({sp.expand(a)}, {sp.expand(alpha)}), eps={eps}"
        if decay != 0:
            cls = "AdamW"
            args += f", weight_decay={sp.simplify(-decay / lr)}"
        else:
            cls = "Adam"
            if lam != 0:
                args += f", weight_decay={lam}"
        return _none(
            f"the rule is {cls}({args}) without bias correction: torch.optim.{cls} always "
            "divides exp_avg by 1 − β₁ᵏ and exp_avg_sq by 1 − β₂ᵏ at step k. No scheme of "
            "any system gives that exactly: (1 − β₁ᵏ) = 1 − (1 − β̄₁h)^(t/h) depends on h, "
            "which an ODE's coefficients cannot name, and the continuous correction "
            "1 − exp(−β̄₁t) at t = kh differs from it for every h > 0; the two agree once "
            "β₂ᵏ ≈ 0 (after several 1/(1 − β₂) steps)"
        )
