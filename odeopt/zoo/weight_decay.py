"""Weight decay as the port-Hamiltonian system it is: a wrapper around any system with a loss.

Coupled (L2 regularisation, torch's ``weight_decay``): the loss the dynamics descend becomes
F̃ = F + c|θ|²/2, so H(F) → H(F̃) and every ∇F in the definition becomes ∇F̃ = ∇F + cθ (the
preconditioners and moment estimates see it too, as in torch.optim's coupled weight decay).
J, R and the ports are unchanged, so the energy balance keeps its verdict, now for H(F̃).

Decoupled (AdamW, Loshchilov & Hutter): θ' gains −cθ outside the preconditioner, through a
new port on θ: G ← [G | e_θ], u ← [u; −cθ]. The balance is dH/dt = −∇HᵀR∇H + yᵀu with the
new supply y·u = −c⟨∂H/∂θ, θ⟩, which has no sign in general: the verdict is "passive".
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ..symbolic import PortHamiltonian, parameters, sqnorm
from ..symbolic.language import LossDerivative, Reduction

__all__ = ["weight_decay"]

#: the decay's symbol (λ_wd) and its keyword (torch's name)
SYMBOL = "lambda_wd"
KEYWORD = "weight_decay"


def weight_decay(
    system: PortHamiltonian, c: float = 0.01, decoupled: bool = False
) -> PortHamiltonian:
    """``system`` with weight decay of strength c (a parameter, keyword ``weight_decay``).

    Coupled (``decoupled=False``): F → F + c|θ|²/2 in H and ∇F → ∇F + cθ wherever the
    definition names the gradient (R, J, G, u, auxiliary rates, reductions), so gradient flow
    becomes θ' = −(∇F + cθ) and heavy ball p' = −(∇F + cθ) − γp/m; dH/dt is the original
    balance with F̃ = F + c|θ|²/2 (H stays bounded below: c ≥ 0). A switch still fires on the
    data loss F.

    Decoupled (``decoupled=True``, AdamW style): θ' = (original field) − cθ through an added
    port on θ, not through R or a preconditioner: for Adam's flow θ' = −m/(√s + ε) − cθ.

    Raises
    ------
    TypeError
        ``system`` is not a PortHamiltonian, or ``c``/``decoupled`` have the wrong type.
    ValueError
        The system has no loss (no position θ), already has a ``weight_decay`` parameter,
        stores its energy (a level set: ECD's E is a function of the loss value), uses a
        metric (its preconditioner is applied numerically to ∇F) or Hessian terms, or ``c``
        is negative or not finite. Coupled weight decay is exactly the same system on the loss
        F + c|θ|²/2: for those, add the term to the loss.
    """
    if not isinstance(system, PortHamiltonian) or not getattr(system, "port_hamiltonian", True):
        raise TypeError(
            "weight_decay wraps a PortHamiltonian (a zoo system or your own), got "
            f"system={system!r}"
        )
    if not isinstance(decoupled, bool):
        raise TypeError(f"decoupled must be True or False, got decoupled={decoupled!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)):
        raise TypeError(f"c must be a real number, got c={c!r}")
    if not (c >= 0 and c < float("inf")):
        raise ValueError(f"c must be finite and ≥ 0 (H gains c|θ|²/2), got c={c}")
    F = system.loss
    if F is None:
        raise ValueError(
            f"weight_decay needs a system with a loss F(θ) (the decay acts on θ); {system.name} "
            "has none"
        )
    taken = {p.name for p in system.parameters} | {p.symbol.name for p in system.parameters}
    if KEYWORD in taken or SYMBOL in taken:
        raise ValueError(
            f"{system.name} already has a parameter {KEYWORD!r}: weight decay is applied once"
        )
    if system.level_set is not None:
        raise ValueError(
            f"{system.name} stores its energy as a function of the loss value F; weight decay "
            "would make it a function of F + c|θ|²/2, which its exported optimizer cannot "
            "evaluate: add c|θ|²/2 to the loss instead (the closure's value and gradient), "
            "which is coupled weight decay exactly"
        )
    if system.metric is not None:
        raise ValueError(
            f"{system.name} applies its metric numerically to ∇F; weight decay cannot be written "
            "into it symbolically: add c|θ|²/2 to the problem's loss instead"
        )
    entries = [e for _, e in system._entries()]
    if any(isinstance(s, LossDerivative) for e in entries for s in e.free_symbols):
        raise ValueError(
            f"{system.name} uses Hessian terms of F; weight_decay rewrites ∇F only: add c|θ|²/2 "
            "to the problem's loss instead"
        )

    theta = F.block
    lam = parameters(SYMBOL, nonnegative=True)
    own = {p.symbol: p.default for p in system.parameters if not p.stored}
    aliases = {p.name: p.symbol for p in system.parameters if not p.stored}
    aliases[KEYWORD] = lam
    params: dict[Any, Any] = {**own, lam: float(c)}
    H, J, R, G, u = system.hamiltonian, system.J, system.R, system.G, system.u
    aux = dict(system.aux)

    if decoupled:
        k = len(system.blocks)
        col = sp.zeros(k, 1)
        col[system.blocks.index(theta), 0] = 1
        G = G.row_join(col) if G.shape[1] else col
        u = list(u) + [-lam * theta]
        name, what = f"{system.name}_decoupled_weight_decay", "decoupled weight decay −cθ"
    else:
        sub = _coupled_substitution(F, lam, entries)
        H = H.xreplace(sub)
        J, R = J.xreplace(sub), R.xreplace(sub)
        u = [e.xreplace(sub) for e in u]
        aux = {b: e.xreplace(sub) for b, e in aux.items()}
        name, what = f"{system.name}_weight_decay", "weight decay F → F + c|θ|²/2"
    return PortHamiltonian(
        H,
        list(system.blocks),
        J=J,
        R=R,
        G=G if G.shape[1] else None,
        u=list(u) if G.shape[1] else None,
        aux=aux or None,
        parameters=params,
        aliases=aliases,
        name=name,
        description=f"{system.description or system.name}, with {what}",
        switches=list(system.switches),
        metric=None,
    )


def _coupled_substitution(F: Any, lam: sp.Symbol, entries: list[sp.Expr]) -> dict[Any, Any]:
    """{F: F + λ|θ|²/2, g: g + λθ} and every reduction whose summand names g rewritten."""
    theta, g = F.block, F.grad
    sub: dict[Any, Any] = {F: F + lam * sqnorm(theta) / 2, g: g + lam * theta}
    for e in entries:
        for s in e.free_symbols:
            if isinstance(s, Reduction) and s.depends_on_gradient:
                sub[s] = Reduction(s.summand.xreplace({g: g + lam * theta}))
    return sub
