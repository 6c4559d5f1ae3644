"""The source of ``backend="numba"``'s kernel: a scheme's update program, the system's
parameters and the objective's exact formula, printed as one numba function.

The update program of a fixed-step scheme (:func:`odeopt.discretize`) and ``problem.sympy()``
are sympy expressions; they are printed unrolled over the problem's d coordinates. The kernel
runs the blocks ``blk_lo`` to ``blk_hi`` of :data:`LANES` trajectories (it is compiled without
the GIL, and threads run disjoint ranges of blocks in parallel); a block keeps each
coordinate of each block of the state as a contiguous array of its lanes, and the whole step
(objective, gradient, scheme, divergence test) runs as one loop over the lanes inside the time
loop, so the lanes are independent and vectorise (SIMD).

Per lane, after each step x → x′ at t′ = t₀ + (k+1)h, as the numpy backend does:

- ``diverged`` (1) when a value of x′ is not finite or |x′ᵢ| > blowup: the lane keeps x;
- ``domain`` (5), for a level set whose domain value V(x′) ≤ 1e-40 (after the divergence
  test; a lane that starts outside stops at t₀): the lane keeps x;
- ``event`` (4) when a terminal event's value e(x, F, t) crossed zero in its direction: the
  crossing is located by bisection of the step τ ∈ (0, h] from x (the scheme's own step of
  τ, to within the event's ``tol``, as numpy does) and the lane keeps that state;
- a switch (braking) where F − goal crossed from above, once per lane: located as an event,
  the lane's parameters set and the rest of the step, h − τ, taken with them;
- ``converged`` (2) with ``gtol`` when |∇F(θ′)| < gtol: it keeps x′;

each with t_stop = t′ (the event's time for an event); a stopped lane keeps its state in
every later save, with H, F and |∇F| evaluated there at t_stop. At each save the lanes' H,
F and |∇F| are evaluated; where one is not finite the lane keeps its last saved state and
values, with status ``nonfinite`` (3, NaN) or ``diverged`` (±inf) and t_stop the time of that
save (9 at the first save: an error).

``nstep`` is numpy's ``Trajectory.steps``: the steps to the state a lane keeps (k + 1 for a
lane that converged in step k, k for one that diverged, left the domain or met an event in
it, the steps to its last save for one stopped there, n for one that ran to the end). With
``best`` (a kernel of its own) the lane's min F over its accepted states is kept in
``BEST``: F at the lane's state after each step's stops (its kept state once stopped) and at
each save, back to its value at the last save where a save stops the lane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sympy as sp

from ...symbolic.language import Block, Gradient, Reduction
from ..stops import Domain
from .numba_events import _EventCode
from .numba_print import LANES, _indent, _Names, _objective_code, _Printer

if TYPE_CHECKING:
    from ...symbolic.system import PortHamiltonian

__all__ = ["kernel_source"]


class _Kernel(_EventCode):
    """The pieces of one kernel's source (see :func:`kernel_source`)."""

    def __init__(
        self,
        system: PortHamiltonian,
        program: Any,
        F: sp.Expr,
        xs: tuple[sp.Symbol, ...],
        lane_params: frozenset[str],
        gtol: bool,
        events: Sequence[Any] = (),
    ) -> None:
        self.d = d = len(xs)
        self.gtol = gtol
        self.events = list(events)
        self.F, self.xs = F, xs
        self.printer = _Printer({"fully_qualified_modules": False})
        self.system = system
        self.program = program
        self.blocks = [b.name for b in system.all_blocks]
        self.bsym = {b.name: b for b in system.all_blocks}
        self.pnames = [p.name for p in system.parameters]
        self.lane_params = [p for p in self.pnames if p in lane_params]
        self.names = _Names({p.symbol: p.name for p in system.parameters}, program.h)
        self.rows = [(b, j) for b in self.blocks for j in range(d)]
        assert system.loss is not None
        self.loss = system.loss
        self.position = system.loss.block.name
        # a level set's domain V (an expression of F and the parameters) > EDGE, else None
        ls = system.level_set
        self.domain = None if ls is None else ls.domain
        # a lane's own step τ (events: bisection), sharing the names of the state
        self.bnames = _Names(self.names.params, program.h, "hl", "jnv_", self.names.ids)

    def expr(
        self, e: sp.Expr, j: int, reductions: Mapping[sp.Symbol, str], names: Any = None
    ) -> str:
        return self.printer.doprint((names or self.names).at(e, j, reductions))

    def reduce_in(
        self,
        expr: sp.Expr,
        out: list[str],
        done: dict[sp.Symbol, str],
        prefix: str,
        names: Any = None,
    ) -> None:
        """Lines computing the reductions (Σᵢ …) of ``expr`` not yet in ``done``."""
        for r in sorted(expr.atoms(Reduction), key=str):
            if r not in done:
                name = f"{prefix}{len(done)}"
                done[r] = name
                terms = [self.expr(r.summand, j, done, names) for j in range(self.d)]
                out.append(f"{name} = " + " + ".join(terms))

    def load(self, src: str = "S") -> list[str]:
        """A lane's state, per-lane parameters and per-lane invariants (``INVARIANTS``)."""
        out = [f"{self.names.var(self.bsym[b])}_{j} = {src}_{b}_{j}[i]" for b, j in self.rows]
        out += [f"par_{p} = Q_{p}[i]" for p in self.lane_params]
        return [*out, "INVARIANTS"]

    def step(self, names: Any = None, src: str = "S") -> list[str]:
        """One step of a lane from the state in ``src``: the new state in ``n_<block>_<j>``
        (with ``self.bnames``: the step τ = ``hl`` of the lane)."""
        names, d = names or self.names, self.d
        own = names is self.bnames
        out = self.load(src)
        reductions: dict[sp.Symbol, str] = {}
        for ins in self.program.instructions:
            at_x = getattr(ins, "theta", None) == self.bsym[self.position]
            if hasattr(ins, "loss") and self.gtol and not own and at_x:
                # F and ∇F at the lane's position: computed by the last step's convergence
                # test (or the last save), with the same code, kept in CF, CG_j
                out.append(f"{names.var(ins.loss)} = CF[i]")
                out += [f"{names.var(ins.loss.grad)}_{j} = CG_{j}[i]" for j in range(d)]
            elif hasattr(ins, "loss"):  # an Evaluation: F_k, g_k := F(θ_k), ∇F(θ_k)
                th = names.var(ins.theta)
                out += _objective_code(
                    self.F,
                    self.xs,
                    f"e{names.var(ins.loss)}_",
                    [f"{th}_{j}" for j in range(d)],
                    names.var(ins.loss),
                    [f"{names.var(ins.loss.grad)}_{j}" for j in range(d)],
                    self.printer,
                )
            else:
                self.reduce_in(ins.expr, out, reductions, "r", names)
                expr = ins.expr
                if expr.has(sp.Piecewise):  # the projection: its factor once per lane
                    expr = self.per_lane(expr, out, reductions, names)
                tv = names.var(ins.target)
                out += [f"{tv}_{j} = {self.expr(expr, j, reductions, names)}" for j in range(d)]
        outputs = self.program.outputs
        for b in self.blocks:
            if b in outputs:
                self.reduce_in(outputs[b], out, reductions, "r", names)
        for b, j in self.rows:
            e = self.expr(outputs[b], j, reductions, names) if b in outputs else None
            out.append(f"n_{b}_{j} = {e or self.names.var(self.bsym[b]) + f'_{j}'}")
        # |x′ᵢ| ≤ bl, with bl ≤ the dtype's largest value, is false for ±inf and NaN too
        out.append("good = " + " & ".join(f"(abs(n_{b}_{j}) <= bl)" for b, j in self.rows))
        return out

    def per_lane(
        self, expr: sp.Expr, out: list[str], done: dict[sp.Symbol, str], names: Any
    ) -> sp.Expr:
        """``expr`` with its per-lane (not per-coordinate) common subexpressions and its
        Piecewise factors computed once per lane into temporaries (lines in ``out``, names
        in ``done``), in the order of numpy's generated code (:mod:`odeopt.symbolic.codegen`:
        CSE, temporaries ``x0_, x1_, …``), so that the projection's branch (|S* − S| < tol)
        and its cancellation in S* = E²/V − V round as numpy's do."""
        start = sum(1 for k in done if not isinstance(k, Reduction))
        temps, (reduced,) = sp.cse([expr], symbols=sp.numbered_symbols("x", start=start))
        back: dict[sp.Symbol, sp.Expr] = {}
        for sym, e in temps:
            e = e.xreplace(back)
            if any(isinstance(s, (Block, Gradient)) for s in e.free_symbols):
                back[sym] = e  # per coordinate: left in the expression
                continue
            done[sym] = f"{sym.name}_{names.h_name}"
            out.append(f"{done[sym]} = {self.expr(e, 0, done, names)}")
        reduced = reduced.xreplace(back)
        for k, pw in enumerate(sorted(reduced.atoms(sp.Piecewise), key=sp.default_sort_key)):
            sym = sp.Symbol(f"pw{k}")
            done[sym] = f"pw{k}_{names.h_name}"
            out.append(f"{done[sym]} = {self.expr(pw, 0, done, names)}")
            reduced = reduced.xreplace({pw: sym})
        return reduced

    def commit(self) -> list[str]:
        """Keep the new state of the running lanes that stay within the bound; ``gd[i]``
        False marks a running lane that diverged in this step (the caller stops it), and
        ``ok`` ends False when there is one. (A second copy of the loop for blocks whose
        lanes all run, without the mask, measured no faster and doubles the compile time.)"""
        old = {(b, j): f"{self.names.var(self.bsym[b])}_{j}" for b, j in self.rows}
        upd = "upd = a & good" + (" & (not dom)" if self.domain is not None else "")
        out = ["a = act[i]", upd, "gg = good | (not a)", "gd[i] = gg", "ok = ok & gg"]
        if self.domain is not None:  # a running lane that left the domain (stopped after)
            out += ["dd = a & good & dom", "DM[i] = dd", "anyd = anyd | dd"]
        if self.events:  # the state before the step, from which an event is located
            out += [f"O_{b}_{j}[i] = {old[b, j]}" for b, j in self.rows]
        return out + [f"S_{b}_{j}[i] = n_{b}_{j} if upd else {old[b, j]}" for b, j in self.rows]

    def outside(self, loss: str) -> list[str]:
        """Lines computing ``dom``: the state whose F is in ``loss`` (the loss's name bound
        to it) is outside the level set's domain, V ≤ 1e-40 (:attr:`Domain.EDGE
        <odeopt.integrate.stops.Domain.EDGE>`; NaN too), V compared in float64 as numpy
        does."""
        assert self.domain is not None
        reds: dict[sp.Symbol, str] = {}
        out = [f"{self.names.var(self.loss)} = {loss}"]
        self.reduce_in(self.domain, out, reds, "dr")
        out.append(f"vd = {self.expr(self.domain, 0, reds)}")
        return [*out, f"dom = not (float(vd) > {Domain.EDGE!r})"]

    def domain_after_step(self) -> list[str]:
        """After the step, before the commit: F at the lane's new position and ``dom``, the
        new state outside the domain (the lane then keeps its state before the step and
        stops as ``domain``, after a divergence and before events and convergence)."""
        out = _objective_code(
            self.F,
            self.xs,
            "dv_",
            [f"n_{self.position}_{j}" for j in range(self.d)],
            "dF",
            [],
            self.printer,
            grad=False,
        )
        return out + self.outside("dF")

    def domain_at_start(self) -> list[str]:
        """At the first save (after its finiteness test), a lane that starts outside the
        domain stops there as ``domain`` (5) at t₀, keeping its start."""
        stop = ["st[i] = 5", "act[i] = False", "nact -= 1", "ts[i] = tq", "ns[i] = 0"]
        return [
            "if (q == 0) & a & (st[i] == 0):",
            *_indent([*self.outside("FF"), "if dom:", *_indent(stop, 1)], 1),
        ]

    def converged(self) -> list[str]:
        """With gtol, after the commit: F and ∇F at the lane's new position (kept in CF, CG_j
        for the next step's evaluation there) and ``cv``, the running lane converged:
        |∇F(θ′)| < gtol with |∇F| = (Σ gᵢ²)^½ as numpy's test."""
        d = self.d
        cg = [f"cg_{j}" for j in range(d)]
        out = _objective_code(
            self.F,
            self.xs,
            "cv_",
            [f"S_{self.position}_{j}[i]" for j in range(d)],
            "cF",
            cg,
            self.printer,
        )
        out += ["CF[i] = cF", *[f"CG_{j}[i] = cg_{j}" for j in range(d)]]
        out.append("cgn = math.sqrt(" + " + ".join(f"{x} * {x}" for x in cg) + ")")
        return [*out, "cv = upd & (cgn < gtol)", "cvd[i] = cv", "anyc = anyc | cv"]

    def measure(self) -> list[str]:
        """H, F and |∇F| (without overflow) of a lane at time ``tm[i]``: ``HH, FF, gn``."""
        names, d = self.names, self.d
        out = [*self.load(), "tt = DT(tm[i])"]
        L, g = names.var(self.loss), [f"{names.var(self.loss.grad)}_{j}" for j in range(d)]
        th = names.var(self.loss.block)
        out += _objective_code(
            self.F, self.xs, "m_", [f"{th}_{j}" for j in range(d)], L, g, self.printer
        )
        out.append(f"gm = abs({g[0]})")
        for x in g[1:]:  # the largest |gᵢ|, NaN when one is NaN (as numpy's max)
            out += [f"ga = abs({x})", "gm = gm if (gm >= ga) | (gm != gm) else ga"]
        out += [
            "gsafe = gm if (gm > 0) & (gm < math.inf) else gm * DT(0.0) + DT(1.0)",
            "gn = gm * (" + " + ".join(f"({x} / gsafe) ** 2" for x in g) + ") ** DT(0.5)",
            "gn = gm if gm == math.inf else gn",
        ]
        hreds: dict[sp.Symbol, str] = {}
        self.reduce_in(self.system.hamiltonian, out, hreds, "hr")
        out += [f"HH = {self.expr(self.system.hamiltonian, 0, hreds)}", f"FF = {L}"]
        if self.gtol:  # the next step's F and ∇F at the position (the same code as there)
            out += [f"CF[i] = {L}", *[f"CG_{j}[i] = {x}" for j, x in enumerate(g)]]
        if self.events:  # the events' values at the start
            values = [line for e in range(len(self.events)) for line in self.event_value(e)]
            values += [f"EVO_{e}[i] = ev_{e}" for e in range(len(self.events))]
            out += ["if q == 0:", *_indent(values, 1)]
        return out


def kernel_source(
    system: PortHamiltonian,
    program: Any,
    F: sp.Expr,
    xs: tuple[sp.Symbol, ...],
    lane_params: frozenset[str] = frozenset(),
    gtol: bool = False,
    events: Sequence[Any] = (),
    best: bool = False,
) -> tuple[str, list[str], list[str]]:
    """The Python source of the kernel, its block names and its parameter names (rows of P).

    Kernel signature: ``kernel(X0_<block>..., P, OUT_<block>..., VH, VF, VG, status, tstop,
    nstep, saveat, t0, hh, h64, nsteps, bl, gtol, EVI, EVT, EVK, BEST[, SWT, SWK], blk_lo,
    blk_hi)``: X0_b (B, d) the start, P (params, B)
    the parameters (row 0 only for those not in ``lane_params``, which are the same for every
    trajectory), OUT_b (saves, B, d) and VH, VF, VG (saves, B) the saved states, H, F and
    |∇F| at the steps ``saveat`` (0 first, nsteps last); status (int8), tstop and nstep (B,)
    per trajectory; BEST (B,) min F (written with ``best`` only); bl = min(blowup, the
    dtype's largest value). With ``gtol`` (a kernel of its own) the convergence test runs in
    the step's lane loop, and its F and ∇F at the new position serve the next step's
    evaluation there (one evaluation per Euler step, not two).

    Cost, measured on the 2-core box (heavy ball, symplectic Euler, Himmelblau, 10⁵ × 300):
    the per-lane divergence test (|x′ᵢ| ≤ blowup for every value, the lane frozen by a select
    where it fails) is about 40 % of this ~20-flop step; a hand-written kernel of the same
    layout with the same test runs as fast as the generated one, and without it about 1.8×
    faster (the 10–12× of the issue is that of a loop without the test)."""
    K = _Kernel(system, program, F, xs, lane_params, gtol, events)
    step, measure = K.step(), K.measure()  # names the invariants
    dom = K.domain is not None
    if dom:  # the level set's domain: after the step, and at the start
        step += K.domain_after_step()
        start = K.domain_at_start()
    conv = K.converged() if gtol else []
    if events:
        conv += K.events_after_step()
    locate = K.locate() if events else []
    nev = len(K.events)
    L, rows = LANES, K.rows
    invs = list(K.names.invariants.items())
    lane_inv = [
        (e, v)
        for e, v in invs
        if any(s.name[4:] in K.lane_params for s in e.free_symbols if s.name.startswith("par_"))
    ]
    block_inv = [(e, v) for e, v in invs if (e, v) not in lane_inv]
    args = [f"X0_{b}" for b in K.blocks] + ["P"] + [f"OUT_{b}" for b in K.blocks]
    args += "VH VF VG status tstop nstep saveat t0 hh h64 nsteps bl gtol EVI EVT EVK".split()
    args += ["BEST"]
    switching = [e for e, ev in enumerate(K.events) if not ev.terminal]
    args += ["SWT", "SWK"] if switching else []  # (switches, B): time and step of each
    args += ["blk_lo", "blk_hi"]  # the blocks this call runs (each thread calls a range)
    # a lane stopped by step k keeps the state before it (k steps) or after it (k + 1)
    stop_old = ["act[i] = False", "nact -= 1", "ts[i] = tn", "tm[i] = tn", "ns[i] = k"]
    stop_new = [*stop_old[:-1], "ns[i] = k + 1"]
    # with best: F at each lane's state after the step's stops, into its min (NaN passed over)
    fold: list[str] = []
    if best:
        fold = [f"for i in range({L}):"]
        fold += _indent(
            _objective_code(
                K.F,
                K.xs,
                "bv_",
                [f"S_{K.position}_{j}[i]" for j in range(K.d)],
                "bF",
                [],
                K.printer,
                grad=False,
            ),
            1,
        )
        fold += ["    BL[i] = bF if bF < BL[i] else BL[i]"]
    src = [
        f"def kernel({', '.join(args)}):",
        "    B = VH.shape[1]",
        "    nsave = saveat.shape[0]",
        "    for blk in range(blk_lo, blk_hi):",
        f"        s = blk * {L}",
        f"        m = min({L}, B - s)",
        "        DTYPE = VH.dtype",
        *_indent([f"S_{b}_{j} = np.empty({L}, DTYPE)" for b, j in rows], 2),
        *_indent([f"LS_{b}_{j} = np.empty({L}, DTYPE)" for b, j in rows], 2),
        *_indent([f"Q_{p} = np.empty({L}, DTYPE)" for p in K.lane_params], 2),
        *_indent([f"I_{v.name[4:]} = np.empty({L}, DTYPE)" for _, v in lane_inv], 2),
        *_indent([f"{x} = np.empty({L}, DTYPE)" for x in ("LH", "LF", "LG")], 2),
        f"        act = np.zeros({L}, np.bool_)",
        f"        gd = np.ones({L}, np.bool_)",
        *_indent([f"CG_{j} = np.empty({L}, DTYPE)" for j in range(K.d)] if gtol else [], 2),
        *_indent(
            [f"CF = np.empty({L}, DTYPE)", f"cvd = np.zeros({L}, np.bool_)"] if gtol else [], 2
        ),
        f"        st = np.zeros({L}, np.int8)",
        f"        ts = np.full({L}, np.nan)",
        f"        evi = np.full({L}, -1, np.int8)",
        f"        evt = np.full({L}, np.nan)",
        f"        evk = np.zeros({L}, np.int64)",
        *_indent([f"O_{b}_{j} = np.empty({L}, DTYPE)" for b, j in rows] if nev else [], 2),
        *_indent([f"EVO_{e} = np.empty({L}, DTYPE)" for e in range(nev)], 2),
        *_indent([f"FE_{e} = np.zeros({L}, np.bool_)" for e in range(nev)], 2),
        *_indent([f"DM = np.zeros({L}, np.bool_)"] if dom else [], 2),
        *_indent([f"SWA_{e} = np.ones({L}, np.bool_)" for e in switching], 2),
        f"        tm = np.full({L}, t0)",
        f"        tsv = np.full({L}, t0)",
        f"        ns = np.full({L}, nsteps, np.int64)",
        f"        LK = np.zeros({L}, np.int64)",
        *_indent(
            [f"BL = np.full({L}, np.inf, DTYPE)", f"BS = np.full({L}, np.inf, DTYPE)"]
            if best
            else [],
            2,
        ),
        *_indent([f"par_{p} = P[{K.pnames.index(p)}, 0]" for p in K.pnames], 2),
        *_indent([f"{v} = {K.printer.doprint(e)}" for e, v in block_inv], 2),
        f"        for i in range({L}):",
        "            r = s + i if i < m else s",  # lanes past the batch copy the block's first
        "            act[i] = i < m",
        *_indent([f"S_{b}_{j}[i] = X0_{b}[r, {j}]" for b, j in rows], 3),
        *_indent([f"Q_{p}[i] = P[{K.pnames.index(p)}, r]" for p in K.lane_params], 3),
        *_indent([f"par_{p} = Q_{p}[i]" for p in K.lane_params], 3),
        *_indent([f"I_{v.name[4:]}[i] = {K.printer.doprint(e)}" for e, v in lane_inv], 3),
        "        nact = m",
        "        k = 0",
        "        q = 0",
        "        while True:",
        "            if q < nsave and saveat[q] == k:",
        "                tq = t0 + k * h64",
        f"                for i in range({L}):",
        "                    a = act[i]",
        "                    tm[i] = tq if a else tm[i]",
        *_indent(measure, 5),
        "                    if not ((HH - HH == 0) & (FF - FF == 0) & (gn - gn == 0)):",
        "                        if q == 0 or st[i] == 9:",  # not finite at the start
        "                            st[i] = 9",
        "                            act[i] = False",
        "                            nact -= 1 if a else 0",
        "                        else:",
        "                            nan = (HH != HH) | (FF != FF) | (gn != gn)",
        *_indent([f"S_{b}_{j}[i] = LS_{b}_{j}[i]" for b, j in rows], 7),
        "                            HH = LH[i]",
        "                            FF = LF[i]",
        "                            gn = LG[i]",
        "                            st[i] = 3 if nan else 1",
        "                            ts[i] = tsv[i]",
        "                            tm[i] = tsv[i]",
        "                            ns[i] = LK[i]",  # the steps to the last saved state
        *(["                            BL[i] = BS[i]"] if best else []),
        "                            if a:",
        "                                act[i] = False",
        "                                nact -= 1",
        "                    else:",
        *_indent([f"LS_{b}_{j}[i] = S_{b}_{j}[i]" for b, j in rows], 6),
        "                        LH[i] = HH",
        "                        LF[i] = FF",
        "                        LG[i] = gn",
        "                        tsv[i] = tq if a else tsv[i]",
        "                        LK[i] = k if a else ns[i]",
        *(
            [
                "                        BL[i] = FF if FF < BL[i] else BL[i]",
                "                        BS[i] = BL[i]",
            ]
            if best
            else []
        ),
        "                    if i < m:",
        *_indent([f"OUT_{b}[q, s + i, {j}] = S_{b}_{j}[i]" for b, j in rows], 6),
        "                        VH[q, s + i] = HH",
        "                        VF[q, s + i] = FF",
        "                        VG[q, s + i] = gn",
        "                    START",
        "                q += 1",
        "            if q == nsave:",
        "                break",
        "            if nact == 0:",  # every lane stopped: on to the saves left
        "                k = saveat[q]",
        "                continue",
        "            tk = t0 + k * h64",
        "            ttk = DT(tk)",
        "            tt = ttk",
        "            tn = t0 + (k + 1) * h64",
        "            ok = True",
        "            anyc = False",
        "            anye = False",
        "            ANYD",
        f"            for i in range({L}):",
        *_indent(step + K.commit() + conv, 4),
        "            if not ok:",  # rare: stop the lanes that just diverged (state kept)
        f"                for i in range({L}):",
        "                    if not gd[i]:",
        "                        gd[i] = True",
        "                        st[i] = 1",
        *_indent(stop_old, 6),
        *_indent(locate, 3),
        "            DOMAIN",
        "            if anyc:",  # stop the lanes that just converged (new state kept)
        f"                for i in range({L}):",
        "                    if cvd[i]:",
        "                        cvd[i] = False",
        "                        st[i] = 2",
        *_indent(stop_new, 6),
        *_indent(fold, 3),
        "            k += 1",
        "        for i in range(m):",
        "            status[s + i] = st[i]",
        "            tstop[s + i] = ts[i]",
        "            nstep[s + i] = ns[i]",
        "            EVI[s + i] = evi[i]",
        "            EVT[s + i] = evt[i]",
        "            EVK[s + i] = evk[i]",
        *(["            BEST[s + i] = BL[i]"] if best else []),
    ]
    loads = [f"{v} = I_{v.name[4:]}[i]" for _, v in lane_inv]
    # the domain stop: a lane that left the domain keeps its state before the step
    stops = [
        "if anyd:",
        f"    for i in range({L}):",
        "        if DM[i]:",
        "            DM[i] = False",
    ]
    stops += ["            st[i] = 5", *_indent(stop_old, 3)]
    fill = {
        "INVARIANTS": loads,
        "LANEINV": [f"I_{v.name[4:]}[i] = {K.printer.doprint(e)}" for e, v in lane_inv],
        "START": start if dom else [],
        "ANYD": ["anyd = False"] if dom else [],
        "DOMAIN": stops if dom else [],
    }
    out: list[str] = []
    for line in src:
        if line.strip() in fill:
            pad = line[: len(line) - len(line.lstrip())]
            out += [pad + x for x in fill[line.strip()]]
        else:
            out.append(line)
    return "\n".join(out) + "\n", K.blocks, K.pnames
