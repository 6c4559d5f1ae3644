"""The learned port-Hamiltonian optimizer of Timofeev, Afonin & Liu (seed 002, ALGORITHMS.md §4).

A coordinate-wise meta-learned optimizer. Every parameter entry carries its own copy of a small
port-Hamiltonian cell whose coordinate q is the (preprocessed) gradient and whose momentum p is
the optimizer's previous output. One optimizer step evaluates the cell's vector field once
(no integration, as in the original) and reads the update from it:

    q = pre(g),   p = pre(p_prev)
    q̇ = M⁻¹p − D_q,   ṗ = −V(q) − D_p + G(q),   [D_q; D_p] = D·[V(q); M⁻¹p]
    p_next = A·[q̇; ṗ] + a            (a linear map with bias, to one number per entry)
    u = B·[q̇; q]                      (a linear map without bias, to one number per entry)
    θ ← θ + out_mul·u

G and V are MLPs d → d → d (ReLU); V outputs ∂H/∂q directly. M⁻¹ = LᵀL.

Departures from the authors' code (github.com/AfoninAndrei/OPT-ML), the first two for the
port-Hamiltonian structure:

* D = KKᵀ is positive semidefinite (the original's D is an unconstrained linear map);
* D acts on ∇H = [V(q); M⁻¹p] (the original feeds it [V(q); p]);
* M⁻¹ multiplies p in q̇, as in the paper's equation (2); the code instead scales the whole
  of ṗ by LLᵀ and uses q̇ = p − D_q;
* with preprocessing, the meta-gradient also flows through LogSign(p_prev) (the code feeds
  ``.data``, cutting it).

With them, and d = 1 (where V is the derivative of Φ(q) = ∫₀^q V, so H exists),
H(q, p) = ½pᵀM⁻¹p + Φ(q) and the cell is the pH system ẋ = (J − D)∇H + [0; 1]·G(q) with J
canonical, whose balance is

    dH/dt = −∇HᵀD∇H + yᵀG(q),   y = M⁻¹p,

proved symbolically by :meth:`HamiltonianCell.to_system` (odeopt's language, with the trained
weights) and checked numerically by :meth:`HamiltonianCell.balance`. For d = 2 (LogAndSign
preprocessing) V need not be a gradient field, so no H is claimed there.

Parameter counts: 18 for d = 1 and 53 for d = 2 (the original's 19 and 55 include L's bias,
which its forward never uses).

The authors' cell itself is ``HNNOptimizerNet(constrained=False)`` (``HamiltonianCell(dim,
constrained=False)``), so the reproduction and the pH-constrained cell run on one protocol:

    q̇ = p − D_q,   ṗ = (−V(q) − D_p + G(q))·LLᵀ,   [D_q; D_p] = D·[V(q); p]

with D an unconstrained bias-free linear map (weight ``cell.D.weight``) and, with
preprocessing, no meta-gradient through LogSign(p_prev) (the original's ``.data``). Its
remaining departures: L has no bias (the original's is never used), so it too counts 18/53;
LogSign takes log|x| where the original takes log(|x| + 10⁻⁸) (a relative change below
2·10⁻⁴ of that input, on |x| ≥ e^{−10}; the quadratic protocol does not preprocess).
It is no pH system (D has no sign, M does not multiply p where ∇H would need it), so
``hamiltonian``, ``balance`` and ``to_system`` refuse it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ._checks import check_flag, check_positive

__all__ = ["HNNOptimizerNet", "HamiltonianCell", "LogSign"]


class LogSign(nn.Module):
    """Andrychowicz et al.'s preprocessing of one number per entry into two:

    x ↦ (log|x|/P, sign x)   if |x| ≥ e^{−P},     x ↦ (−1, e^P·x)   otherwise.
    """

    def __init__(self, P: float = 10.0) -> None:
        super().__init__()
        self.P = check_positive("LogSign", "P", P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        big = a >= math.exp(-self.P)
        tiny = torch.finfo(x.dtype).tiny
        first = torch.where(big, torch.log(a.clamp_min(tiny)) / self.P, -torch.ones_like(x))
        second = torch.where(big, torch.sign(x), math.exp(self.P) * x)
        return torch.cat([first, second], dim=-1)


def _mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class HamiltonianCell(nn.Module):
    """The learned pH cell (module docstring): ``forward(q, p) → (q̇, ṗ)``, rows are entries.

    ``constrained=True`` (odeopt's):  q̇ = M⁻¹p − D_q,  ṗ = −V(q) − D_p + G(q),
    [D_q; D_p] = D·[V(q); M⁻¹p],  M⁻¹ = LᵀL,  D = KKᵀ.

    ``constrained=False`` (the authors'):  q̇ = p − D_q,  ṗ = (−V(q) − D_p + G(q))·LLᵀ,
    [D_q; D_p] = D·[V(q); p],  D unconstrained (weight ``D.weight``).
    """

    def __init__(self, dim: int = 1, constrained: bool = True) -> None:
        super().__init__()
        if isinstance(dim, bool) or dim not in (1, 2):
            raise ValueError(
                f"HamiltonianCell: dim must be 1 (raw gradient) or 2 (LogSign), got dim={dim!r}"
            )
        self.dim = int(dim)
        self.constrained = check_flag("HamiltonianCell", "constrained", constrained)
        self.G = _mlp(dim)
        self.V = _mlp(dim)
        self.L = nn.Linear(dim, dim, bias=False)
        if self.constrained:
            self.K = nn.Linear(2 * dim, 2 * dim, bias=False)
        else:
            self.D = nn.Linear(2 * dim, 2 * dim, bias=False)

    def inverse_mass(self) -> torch.Tensor:
        """M⁻¹ = LᵀL (symmetric positive semidefinite); the original cell's factor LLᵀ."""
        L = self.L.weight
        return L.T @ L if self.constrained else L @ L.T

    def dissipation(self) -> torch.Tensor:
        """The matrix D of [D_q; D_p] = D·x: KKᵀ (symmetric positive semidefinite), or the
        original cell's unconstrained ``D.weight``."""
        if not self.constrained:
            return self.D.weight
        K = self.K.weight
        return K @ K.T

    def grad_h(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """∇H = [V(q); M⁻¹p] (rows are entries); the original cell's D acts on [V(q); p]."""
        if not self.constrained:
            return torch.cat([self.V(q), p], dim=-1)
        return torch.cat([self.V(q), p @ self.inverse_mass()], dim=-1)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dim
        dh = self.grad_h(q, p)
        if not self.constrained:  # the authors' cell, operation for operation
            damp = self.D(dh)
            qdot = p - damp[..., :d]
            pdot = (-dh[..., :d] - damp[..., d:] + self.G(q)) @ self.inverse_mass()
            return qdot, pdot
        damp = dh @ self.dissipation()  # D symmetric: (D∇H)ᵀ row-wise
        qdot = dh[..., d:] - damp[..., :d]
        pdot = -dh[..., :d] - damp[..., d:] + self.G(q)
        return qdot, pdot

    # -- energy (d = 1) ------------------------------------------------------------------------

    def _require_scalar(self, what: str) -> None:
        if not self.constrained:
            raise ValueError(
                f"HamiltonianCell.{what}: the original (constrained=False) cell is no pH system "
                "(its D has no sign and acts on [V; p]); use constrained=True for H and its "
                "balance"
            )
        if self.dim != 1:
            raise ValueError(
                f"HamiltonianCell.{what}: H exists only for dim = 1 (V is the derivative of "
                f"∫V); with dim = {self.dim} the learned V need not be a gradient field"
            )

    @staticmethod
    def _require_rows(what: str, **tensors: torch.Tensor) -> None:
        """Each of ``tensors`` a real floating tensor of shape (..., 1), all of one shape."""
        shapes = set()
        for name, x in tensors.items():
            if not isinstance(x, torch.Tensor):
                raise TypeError(
                    f"HamiltonianCell.{what}: {name} must be a torch.Tensor, "
                    f"got {name}={type(x).__name__}"
                )
            if not x.dtype.is_floating_point:
                raise TypeError(
                    f"HamiltonianCell.{what}: {name} must be a real floating tensor, "
                    f"got {name}.dtype={x.dtype}"
                )
            if x.ndim == 0 or x.shape[-1] != 1:
                raise ValueError(
                    f"HamiltonianCell.{what}: {name} must have shape (..., 1) (one entry per "
                    f"row), got {name}.shape={tuple(x.shape)}"
                )
            shapes.add(tuple(x.shape))
        if len(shapes) > 1:
            raise ValueError(
                f"HamiltonianCell.{what}: "
                + " and ".join(f"{k}.shape={tuple(v.shape)}" for k, v in tensors.items())
                + " differ"
            )

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        """Φ(q) = ∫₀^q V for V(q) = w₂·relu(w₁q + b₁) + b₂ (d = 1), in closed form:

        Φ(q) = b₂q + w₂(relu(w₁q + b₁)² − relu(b₁)²)/(2w₁)   (w₁ ≠ 0),
        Φ(q) = (w₂·relu(b₁) + b₂)q                               (w₁ = 0).
        """
        self._require_scalar("potential")
        w1, b1 = self.V[0].weight[0, 0], self.V[0].bias[0]
        w2, b2 = self.V[2].weight[0, 0], self.V[2].bias[0]
        if float(w1.detach()) == 0.0:
            return (w2 * torch.relu(b1) + b2) * q
        return b2 * q + w2 * (torch.relu(w1 * q + b1) ** 2 - torch.relu(b1) ** 2) / (2 * w1)

    def hamiltonian(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """H(q, p) = ½pᵀM⁻¹p + Φ(q), per entry (d = 1); q and p of shape (..., 1)."""
        self._require_scalar("hamiltonian")
        self._require_rows("hamiltonian", q=q, p=p)
        return 0.5 * p * (p @ self.inverse_mass()) + self.potential(q)

    def balance(self, q: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each side of dH/dt = −∇HᵀD∇H + yᵀG(q) per entry (d = 1): ``dH_dt`` is ∇H·(q̇, ṗ)
        with ∇H from autograd of :meth:`hamiltonian`; ``dissipated`` is −∇HᵀD∇H and
        ``supplied`` is yᵀG with y = M⁻¹p."""
        self._require_scalar("balance")
        self._require_rows("balance", q=q, p=p)
        q = q.detach().requires_grad_(True)
        p = p.detach().requires_grad_(True)
        H = self.hamiltonian(q, p)
        hq, hp = torch.autograd.grad(H.sum(), (q, p))
        qdot, pdot = self(q, p)
        dh = torch.cat([hq, hp], dim=-1)
        return {
            "dH_dt": (hq * qdot + hp * pdot).sum(-1),
            "dissipated": -((dh @ self.dissipation()) * dh).sum(-1),
            "supplied": (hp * self.G(q)).sum(-1),
        }

    def to_system(self) -> Any:
        """The cell (d = 1) with its current weights as an odeopt
        :class:`~odeopt.symbolic.PortHamiltonian` on blocks q, p: H = Σ(½M⁻¹p² + Φ(q)),
        J canonical, R = D, port G = [0; 1] with input u = G(q). Its ``energy_balance()``
        proves dH/dt = −∇HᵀD∇H + yᵀu ≤ yᵀu (D ⪰ 0): verdict "passive" with respect to the
        port, since the learned supply yᵀG(q) has no sign; with G ≡ 0 it is "dissipative"."""
        import sympy as sp

        from ..symbolic import PortHamiltonian, blocks, total

        self._require_scalar("to_system")

        def num(x: torch.Tensor) -> sp.Float:
            return sp.Float(float(x.detach()), 17)

        q, p = blocks("q p")
        relu = lambda z: sp.Max(0, z)  # noqa: E731
        w1, b1 = num(self.V[0].weight[0, 0]), num(self.V[0].bias[0])
        w2, b2 = num(self.V[2].weight[0, 0]), num(self.V[2].bias[0])
        if float(w1) == 0.0:
            phi = (w2 * relu(b1) + b2) * q
        else:
            phi = b2 * q + w2 * (relu(w1 * q + b1) ** 2 - relu(b1) ** 2) / (2 * w1)
        gw1, gb1 = num(self.G[0].weight[0, 0]), num(self.G[0].bias[0])
        gw2, gb2 = num(self.G[2].weight[0, 0]), num(self.G[2].bias[0])
        m_inv = num(self.inverse_mass()[0, 0])
        D = self.dissipation().detach()
        return PortHamiltonian(
            total(m_inv * p**2 / 2 + phi),
            [q, p],
            J=[[0, 1], [-1, 0]],
            R=[[num(D[i, j]) for j in range(2)] for i in range(2)],
            G=[[0], [1]],
            u=[gw2 * relu(gw1 * q + gb1) + gb2],
            name="learned_cell",
            description="learned pH cell of the HNN optimizer (q = gradient, p = last output)",
        )


class HNNOptimizerNet(nn.Module):
    """The whole learned optimizer for one entry per row: ``forward(g, p_prev) → (u, p_next)``.

    ``preprocess=True`` feeds LogSign(g) and LogSign(p_prev) to a d = 2 cell (for networks,
    whose gradients span many scales); otherwise d = 1 on the raw numbers. g and p_prev have
    shape (n, 1); u and p_next too. ``constrained=False`` runs the authors' original cell
    (module docstring) instead of the pH-constrained one.
    """

    state_names = ("p",)

    def __init__(self, preprocess: bool = False, P: float = 10.0, constrained: bool = True) -> None:
        super().__init__()
        self.preprocess = check_flag("HNNOptimizerNet", "preprocess", preprocess)
        self.constrained = check_flag("HNNOptimizerNet", "constrained", constrained)
        check_positive("HNNOptimizerNet", "P", P)
        d = 2 if self.preprocess else 1
        self.pre = LogSign(P) if self.preprocess else nn.Identity()
        self.cell = HamiltonianCell(d, constrained=self.constrained)
        self.next_p = nn.Linear(2 * d, 1)
        self.update = nn.Linear(2 * d, 1, bias=False)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (what a checkpoint needs to rebuild the net)."""
        P = self.pre.P if self.preprocess else 10.0
        return {"preprocess": self.preprocess, "P": P, "constrained": self.constrained}

    def forward(self, g: torch.Tensor, p_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.pre(g)
        # the original feeds LogSign(p_prev.data): no meta-gradient through the preprocessing
        p = self.pre(p_prev.detach() if self.preprocess and not self.constrained else p_prev)
        qdot, pdot = self.cell(q, p)
        u = self.update(torch.cat([qdot, q], dim=-1))
        p_next = self.next_p(torch.cat([qdot, pdot], dim=-1))
        return u, p_next
