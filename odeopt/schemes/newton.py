"""The numeric solve of the discrete-gradient step: damped Newton per trajectory, then halving.

The step of :class:`~odeopt.schemes.discrete_gradient.DiscreteGradient` is the implicit
equation y = Φ(y) for y = x_{k+1}, with Φ the scheme's map (see there). On numbers, per
trajectory (trajectories are independent, so each has its own n × n system for the n
coordinates of all blocks together):

* Newton's method on R(y) = y − Φ(y) from the Euler predictor x_k + h f(x_k), the Jacobian
  I − DΦ(y); DΦ by one backward pass of torch autograd over the rows repeated n times, or by
  forward differences (step √eps·(1 + |y|)); a row's Jacobian is reused (a chord step) while
  its residual falls tenfold per iteration;
* each Newton step damped by backtracking on the merit ½|R|² (R scaled by 1 + |Φ|): lengths 1,
  ½, ¼ with Armijo's sufficient decrease, then a plain fixed-point step y ← Φ(y);
* convergence when ρ = maxᵢ |yᵢ − Φᵢ(y)| / (1 + |Φᵢ(y)|) ≤ tol + ε_Φ, ε_Φ the rounding level
  of Φ itself (:meth:`NewtonSolver.evaluate`);
* rows whose solve fails re-stepped in two half steps, recursively (``max_halvings``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..arrays import arrays_of
from .base import Field, State, Step, axpy

if TYPE_CHECKING:
    from .discrete_gradient import DiscreteGradient, _Parts

__all__ = ["NewtonSolver"]

#: the map Φ with its intermediates: parts(f, x, H(x_k) or None, x_{k+1}, t, h)
MapParts = Callable[[Field, State, Any, State, Any, Any], "_Parts"]

#: the rounding level of Φ, in units of the dtype's eps (see NewtonSolver.evaluate)
_ROUNDING = 32.0
_ARMIJO = 1e-4  # sufficient decrease of the merit ½|R|² along the Newton direction
_BACKTRACKS = 3  # Newton step lengths tried per iteration: 1, ½, ¼, then a fixed-point step


def _rows(v: Any, index: Any, m: int) -> Any:
    """Rows ``index`` of a per-trajectory value (m, …); scalars as they are."""
    if getattr(v, "ndim", 0) >= 1 and v.shape[0] == m:
        return v[index]
    return v


class NewtonSolver:
    """One discrete-gradient step on numbers (see the module and :class:`DiscreteGradient`);
    ``parts`` is the scheme's map Φ with the intermediates of its rounding level."""

    def __init__(self, scheme: DiscreteGradient, x: State, parts: MapParts) -> None:
        self.scheme = scheme
        self.parts = parts
        self.names = tuple(x)
        self.widths = [int(x[b].shape[-1]) for b in self.names]
        ref = x[self.names[0]]
        self.a = arrays_of(ref)  # the array vocabulary of the state's library
        self.ref = ref  # dtype and device of every array the solve creates
        self.eps = self.a.eps(ref)
        self.iterations = 0

    # -- layout
    def flat(self, s: State) -> Any:
        return self.a.concatenate([s[b] for b in self.names], -1)

    def unflat(self, y: Any) -> State:
        out, i = {}, 0
        for b, w in zip(self.names, self.widths, strict=True):
            out[b] = y[:, i : i + w]
            i += w
        return out

    @staticmethod
    def subset(f: Field, index: Any) -> Field:
        sub = getattr(f, "subset", None)
        if sub is None:
            raise TypeError(
                f"the discrete-gradient solve needs a field that can be restricted to rows "
                f"(subset); {type(f).__name__} cannot"
            )
        return sub(index)

    # -- the map, its residual and its Jacobian
    def evaluate(self, f: Field, x: State, H_old: Any, y: Any, t: Any, h: Any) -> tuple[Any, Any]:
        """Φ(y) flat (m, n) and its rounding level ε_Φ per row (m,)."""
        p = self.parts(f, x, H_old, self.unflat(y), t, h)
        a, eps = self.a, self.eps * _ROUNDING
        dN = eps * (abs(p.H_next) + abs(p.H_old) + p.work)  # (m, 1)
        dc = f.safe_divide(dN, p.den)
        level = None
        for b in self.names:
            scale = 1 + abs(p.out[b])
            term = eps * (1 + abs(h * p.fbar[b]) / scale)
            if b in p.corr:
                term = term + abs(h * p.corr[b]) * (dc + eps * abs(p.c)) / scale
            term = a.amax(term)
            level = term if level is None else a.maximum(level, term)
        return self.flat(p.out), level

    def measure(self, y: Any, phi: Any) -> tuple[Any, Any]:
        """ρ = max |y − Φ| / (1 + |Φ|) and the merit Σ(·)² per row."""
        d = (y - phi) / (1 + abs(phi))
        return self.a.amax(abs(d)), (d * d).sum(-1)

    def method(self, f: Field, x: State, t: Any) -> str:
        """How DΦ is computed: autograd on tensors (``jacobian="auto"``: when autograd sees
        all of the field), differences otherwise.

        An objective may compute ∇F off the graph (torch.func, or autograd inside, then
        detached), and a metric P(θ) may be computed with numpy: autograd would then miss
        ∇²F or ∂(P∇F)/∂θ. One probe (:meth:`_probe`) per objective and system finds out."""
        if not self.a.torch or self.scheme.jacobian == "finite_differences":
            return "finite_differences"
        if self.scheme.jacobian == "autograd":
            return "autograd"
        owners = (getattr(f, "objective", None), getattr(f, "system", None))
        key = (id(owners[0]), id(owners[1]))
        known = self.scheme._autograd_ok.get(key)
        if known is not None and known[0][0] is owners[0] and known[0][1] is owners[1]:
            return "autograd" if known[1] else "finite_differences"
        try:
            ok = self._probe(f, x, t)
        except (RuntimeError, TypeError, ValueError):
            ok = False
        self.scheme._autograd_ok[key] = (owners, ok)
        return "autograd" if ok else "finite_differences"

    def _probe(self, f: Field, x: State, t: Any) -> bool:
        """Whether autograd sees all of the field at the first trajectory: F and ∇F from the
        objective carry a graph, and the Jacobian of f by autograd agrees with central
        differences (a metric or an objective computed off the graph would drop terms)."""
        torch, a = self.a.module, self.a
        m = x[self.names[0]].shape[0]
        one = a.index(np.array([0]), self.ref)
        f1 = self.subset(f, one) if m > 1 else f
        x1, t1 = {b: v[one] for b, v in x.items()}, _rows(t, one, m)
        loss_and_grad = getattr(f1, "loss_and_grad", None)
        with torch.enable_grad():
            if loss_and_grad is not None:
                theta = x1[f.position[0]].detach().clone().requires_grad_(True)
                F, g = loss_and_grad(theta, t1)
                if not all(v is None or getattr(v, "requires_grad", False) for v in (F, g)):
                    return False
            y = self.flat(x1).detach().clone().requires_grad_(True)
            out = self.flat(f1(self.unflat(y), t1))
            n = out.shape[-1]
            if not out.requires_grad:
                return False
            rows = []
            for i in range(n):
                (gi,) = torch.autograd.grad(out[0, i], y, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(y[0]) if gi is None else gi[0])
        auto = torch.stack(rows, 0)
        y = y.detach()
        step = self.eps ** (1 / 3) * (1 + abs(y[0]))
        cols = []
        for j in range(n):
            e = torch.zeros_like(y)
            e[0, j] = step[j]
            hi, lo = (self.flat(f1(self.unflat(y + s * e), t1)) for s in (1, -1))
            cols.append((hi - lo)[0] / (2 * step[j]))
        diff = torch.stack(cols, 1)
        scale = 1 + float(diff.abs().max())
        return bool((auto - diff).abs().max() <= 1e3 * self.eps ** (2 / 3) * scale)

    def jacobian(
        self, f: Field, x: State, H_old: Any, y: Any, t: Any, h: Any, phi: Any, method: str
    ) -> Any:
        """DΦ(y) per row, (m, n, n): D[r, i, j] = ∂Φᵢ/∂yⱼ of row r."""
        if method == "autograd":
            try:
                return self._autograd(f, x, H_old, y, t, h)
            except (RuntimeError, TypeError, ValueError):
                # a part of the field autograd cannot see through: differences from now on
                owners = (getattr(f, "objective", None), getattr(f, "system", None))
                self.scheme._autograd_ok[(id(owners[0]), id(owners[1]))] = (owners, False)
        return self._differences(f, x, H_old, y, t, h, phi)

    def _autograd(self, f: Field, x: State, H_old: Any, y: Any, t: Any, h: Any) -> Any:
        """One forward and one backward pass: the rows repeated n times (block j of the
        repeated batch differentiates Φⱼ; rows are independent, so Σ over the batch of the
        selected Φⱼ has gradient ∂Φⱼ/∂y per row)."""
        torch, a = self.a.module, self.a
        m, n = y.shape
        idx = a.index(np.tile(np.arange(m), n), self.ref)
        big = self.subset(f, idx) if n > 1 else f
        xb = {b: v[idx] for b, v in x.items()}
        with torch.enable_grad():
            yb = y[idx].detach().clone().requires_grad_(True)
            phi = self.evaluate(big, xb, H_old[idx], yb, _rows(t, idx, m), _rows(h, idx, m))[0]
            if not phi.requires_grad:
                raise RuntimeError("Φ does not depend on y through autograd")
            rr = a.index(np.arange(m * n), self.ref)
            cc = a.index(np.repeat(np.arange(n), m), self.ref)
            (g,) = torch.autograd.grad(phi[rr, cc].sum(), yb)
        return a.permute(g.detach().reshape(n, m, n), (1, 0, 2))

    def _differences(self, f: Field, x: State, H_old: Any, y: Any, t: Any, h: Any, phi: Any) -> Any:
        """Forward differences, all n columns in one evaluation of n·m rows."""
        a = self.a
        m, n = y.shape
        step = self.eps**0.5 * (1 + abs(y))
        rep = np.tile(np.arange(m), n)
        idx = a.index(rep, self.ref)
        big = self.subset(f, idx)
        xb = {b: v[idx] for b, v in x.items()}
        yb = y[idx]
        cols = np.repeat(np.arange(n), m)
        rr = a.index(np.arange(m * n), self.ref)
        cc = a.index(cols, self.ref)
        yb = a.copy(yb)
        yb[rr, cc] = yb[rr, cc] + step[idx][rr, cc]
        dy = (yb - y[idx])[rr, cc]  # the perturbation as represented
        pb = self.evaluate(big, xb, H_old[idx], yb, _rows(t, idx, m), _rows(h, idx, m))[0]
        D = (pb - phi[idx]) / dy[:, None]  # (n·m, n): column j of row r at j·m + r
        return a.permute(D.reshape(n, m, n), (1, 2, 0))

    # -- the solve on all rows, then halving
    def solve(
        self, f: Field, x: State, t: Any, h: Any, method: str
    ) -> tuple[Any, Any, Any, np.ndarray]:
        """Newton from the Euler predictor: y (m, n), ρ (m,), ε_Φ (m,), failed (m,) numpy.

        A row's Jacobian is reused (a chord step) while its residual keeps falling by a
        factor 10 per iteration, and recomputed otherwise; a row is stuck (failed) when the
        line search finds no decrease with a fresh Jacobian."""
        a, tol = self.a, self.scheme.tol
        m = x[self.names[0]].shape[0]
        half = f.constant(sp.Rational(1, 2))
        H_old = f.energy(x, t + half * h)
        y = self.flat(axpy(x, h, f(x, t)))
        phi, level = self.evaluate(f, x, H_old, y, t, h)
        rho, merit = self.measure(y, phi)
        done = self._converged(rho, level, tol)
        stuck = np.zeros(m, dtype=bool)
        stale = np.ones(m, dtype=bool)  # no Jacobian yet, or one to recompute
        A = None  # I − DΦ per row, (m, n, n)
        for it in range(1, self.scheme.max_iter + 1):
            work = np.flatnonzero(~done & ~stuck)
            if len(work) == 0:
                break
            self.iterations = max(self.iterations, it)
            wi = a.index(work, self.ref)
            fw = f if len(work) == m else self.subset(f, wi)
            xw = {b: v[wi] for b, v in x.items()}
            tw, hw, Hw = _rows(t, wi, m), _rows(h, wi, m), H_old[wi]
            yw, pw, mw = y[wi], phi[wi], merit[wi]
            renew = stale[work]
            if renew.any():
                ri = np.flatnonzero(renew)
                rix = a.index(ri, self.ref)
                fr = fw if len(ri) == len(work) else self.subset(fw, rix)
                D = self.jacobian(
                    fr,
                    {b: v[rix] for b, v in xw.items()},
                    Hw[rix],
                    yw[rix],
                    _rows(tw, rix, len(work)),
                    _rows(hw, rix, len(work)),
                    pw[rix],
                    method,
                )
                if A is None:
                    A = a.zeros((m, *D.shape[1:]), self.ref)
                A[a.index(work[ri], self.ref)] = a.eye(D.shape[-1], self.ref) - D
                stale[work[ri]] = False
            direction = a.solve(A[wi], pw - yw)
            result = self._line_search(fw, xw, Hw, tw, hw, yw, pw, mw, direction)
            accepted, y_new, phi_new, level_new, rho_new, merit_new = result
            acc = work[accepted]
            ai, ai_w = a.index(acc, self.ref), a.index(np.flatnonzero(accepted), self.ref)
            rho_old = a.to_numpy(rho)[acc]
            y, phi, level, rho, merit = (a.copy(v) for v in (y, phi, level, rho, merit))
            y[ai], phi[ai], level[ai] = y_new[ai_w], phi_new[ai_w], level_new[ai_w]
            rho[ai], merit[ai] = rho_new[ai_w], merit_new[ai_w]
            rejected = work[~accepted]
            stuck[rejected[~stale[rejected]]] = True  # no decrease even with a fresh Jacobian
            with np.errstate(invalid="ignore"):
                slow = ~(a.to_numpy(rho)[acc] <= 0.1 * rho_old)
            stale[rejected] = True
            stale[acc[slow]] = True
            done = self._converged(rho, level, tol)
        return y, rho, level, ~done

    def _converged(self, rho: Any, level: Any, tol: float) -> np.ndarray:
        """Per row, in numpy: ρ ≤ tol + ε_Φ."""
        r, lv = self.a.to_numpy(rho), self.a.to_numpy(level)
        with np.errstate(invalid="ignore"):
            return r <= tol + lv  # NaN: not converged

    def _line_search(
        self,
        f: Field,
        x: State,
        H_old: Any,
        t: Any,
        h: Any,
        y: Any,
        phi: Any,
        merit: Any,
        direction: Any,
    ) -> tuple[np.ndarray, Any, Any, Any, Any, Any]:
        """Per row: y + λδ for λ = 1, ½, … (Armijo on the merit, or converged), then Φ(y);
        returns the accepted mask and the new y, Φ, ε_Φ, ρ, merit (rows not accepted keep
        placeholders)."""
        a, tol = self.a, self.scheme.tol
        m = y.shape[0]
        out_y, out_phi = a.copy(y), a.copy(phi)
        out_level, out_rho, out_merit = a.zeros(m, self.ref), a.zeros(m, self.ref), a.copy(merit)
        accepted = np.zeros(m, dtype=bool)
        merit_np = a.to_numpy(merit)
        lam = 1.0
        for k in range(_BACKTRACKS + 1):
            pending = np.flatnonzero(~accepted)
            if len(pending) == 0:
                break
            pi = a.index(pending, self.ref)
            fp = f if len(pending) == m else self.subset(f, pi)
            xp_ = {b: v[pi] for b, v in x.items()}
            tp, hp = _rows(t, pi, m), _rows(h, pi, m)
            # the last resort, after the backtracking: one fixed-point step y ← Φ(y)
            trial = phi[pi] if k == _BACKTRACKS else y[pi] + lam * direction[pi]
            ph, lv = self.evaluate(fp, xp_, H_old[pi], trial, tp, hp)
            rho, mer = self.measure(trial, ph)
            mer_np, ok = a.to_numpy(mer), self._converged(rho, lv, tol)
            with np.errstate(invalid="ignore"):
                bound = (1 - 2 * _ARMIJO * lam) * merit_np[pending]
                if k == _BACKTRACKS:
                    bound = merit_np[pending]
                ok |= mer_np <= bound
                ok &= np.isfinite(mer_np)
            if ok.any():
                src = a.index(np.flatnonzero(ok), self.ref)
                dst = a.index(pending[ok], self.ref)
                out_y[dst], out_phi[dst], out_level[dst] = trial[src], ph[src], lv[src]
                out_rho[dst], out_merit[dst] = rho[src], mer[src]
                accepted[pending[ok]] = True
            lam *= 0.5
        return accepted, out_y, out_phi, out_level, out_rho, out_merit

    def advance(
        self, f: Field, x: State, t: Any, h: Any, depth: int
    ) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """y (m, n), the residual beyond rounding (m,), failed (m,) and halvings (m,), with
        failed rows re-stepped in two half steps (recursively)."""
        a, scheme = self.a, self.scheme
        y, rho, level, failed = self.solve(f, x, t, h, self.method(f, x, t))
        excess = rho - level
        excess = a.where(excess > 0, excess, 0 * excess)  # NaN stays NaN
        m = y.shape[0]
        halvings = np.zeros(m, dtype=int)
        if failed.any() and depth < scheme.max_halvings:
            rows = np.flatnonzero(failed)
            ri = a.index(rows, self.ref)
            fs = self.subset(f, ri)
            xs = {b: v[ri] for b, v in x.items()}
            ts, hs = _rows(t, ri, m), _rows(h, ri, m)
            hh = f.constant(sp.Rational(1, 2)) * hs
            y1, e1, f1, k1 = self.advance(fs, xs, ts, hh, depth + 1)
            y2, e2, f2, k2 = y1, e1, f1, k1
            go = np.flatnonzero(~f1)
            if len(go):  # the second half from where the first half succeeded
                gi = a.index(go, self.ref)
                fg = fs if len(go) == len(rows) else self.subset(fs, gi)
                tg, hg = _rows(ts, gi, len(rows)), _rows(hh, gi, len(rows))
                y2, e2, f2, k2 = a.copy(y1), a.copy(e1), f1.copy(), k1.copy()
                yb, eb, fb, kb = self.advance(fg, self.unflat(y1[gi]), tg + hg, hg, depth + 1)
                y2[gi], e2[gi] = yb, a.maximum(e1[gi], eb)
                f2[go], k2[go] = fb, np.maximum(k1[go], kb)
            y, excess = a.copy(y), a.copy(excess)
            y[ri], excess[ri] = y2, e2
            failed = failed.copy()
            failed[rows] = f2
            halvings[rows] = k2 + 1
        return y, excess, failed, halvings

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        y, excess, failed, halvings = self.advance(f, x, t, h, 0)
        a = self.a
        finite = np.isfinite(a.to_numpy(y)).all(-1)
        # a failed row with a finite state reports +inf where its residual is not finite
        bad = failed & finite & ~np.isfinite(a.to_numpy(excess))
        if bad.any():
            excess = a.copy(excess)
            excess[a.index(np.flatnonzero(bad), self.ref)] = float("inf")
        info = {
            "residual": excess,
            "failed": failed,
            "iterations": self.iterations,
            "halvings": halvings,
        }
        return Step(self.unflat(y), info=info)
