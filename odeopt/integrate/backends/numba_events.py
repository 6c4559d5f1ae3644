"""The event and switch code of ``backend="numba"``'s kernel (a mixin of its ``_Kernel``).

After a step x → x′ every event's value e(x, F, t) is compared before and after; a lane where
it crossed zero in the event's direction has the crossing located by bisection of the step
τ ∈ (0, h] from x (the scheme's own step of τ, to within the event's ``tol``, as the numpy
backend does). A terminal event stops the lane there (status ``event``); a switch (braking:
F − goal crossed from above, once per lane) sets the lane's parameters, recomputes the
constants derived from them, and takes the rest of the step, h − τ, with the new values.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from .numba_print import LANES, _crossed, _indent, _objective_code

__all__ = ["_EventCode"]


class _EventCode:
    """Lines of the kernel for events and switches; the kernel (``_Kernel``) provides the
    state's names, the step and the printer (``expr``, ``reduce_in``, ``step``, …)."""

    events: list[Any]

    def event_value(self, e: int) -> list[str]:
        """Lines computing ``ev_<e>``, event e's value at the state bound to the state's names,
        with F bound to the loss's name and the time in ``tt``."""
        reds: dict[sp.Symbol, str] = {}
        out: list[str] = []
        fn = self.events[e].fn
        self.reduce_in(fn, out, reds, f"er{e}_")
        return [*out, f"ev_{e} = {self.expr(fn, 0, reds)}"]

    def bind(self, src: str, loss: str | None) -> list[str]:
        """Bind the state's names to ``src`` (``"S"``: the lane's arrays; ``"n"``: the new
        state) and, where an event uses F, the loss's name to F there (``loss``, or
        computed)."""
        fmt = "{}_{}_{}[i]" if src == "S" else "{}_{}_{}"
        out = [
            f"{self.names.var(self.bsym[b])}_{j} = " + fmt.format(src, b, j) for b, j in self.rows
        ]
        if any(ev.needs_loss(self.system) for ev in self.events):
            pos = [fmt.format(src, self.position, j) for j in range(self.d)]
            L = self.names.var(self.loss)
            if loss is not None:
                out.append(f"{L} = {loss}")
            else:
                evg = [f"evg_{j}" for j in range(self.d)]
                out += _objective_code(self.F, self.xs, "ev_", pos, L, evg, self.printer)
        return out

    def events_after_step(self) -> list[str]:
        """In the lane loop, after the commit: a running lane whose step crossed an event
        (its value's sign changed in the event's direction) is marked in ``FE_<e>``."""
        out = [*self.bind("S", "cF" if self.gtol else None), "tt = DT(tn)"]
        for e, ev in enumerate(self.events):
            out += self.event_value(e)
            out += [
                f"vo = EVO_{e}[i]",
                f"fe = upd{'' if ev.terminal else f' & SWA_{e}[i]'}"
                f" & {_crossed('vo', f'ev_{e}', ev.direction)}",
                f"FE_{e}[i] = fe",
                f"EVO_{e}[i] = vo if fe else ev_{e}",
                "anye = anye | fe",
            ]
        return [*out, "tt = ttk"]

    def switch(self, e: int, bstep: list[str]) -> list[str]:
        """A switch located at τ = hi (its state in ``n_*``): the new parameter values (each
        an expression of the parameters, set in order) into the lane's ``Q_<p>``, its
        per-lane invariants recomputed (``LANEINV``), the switch disarmed and recorded in
        ``SWT, SWK``; then the rest of the step, h − τ, from the event with the new values,
        and every event's value there (as numpy: the values the next step compares with)."""
        w = e - sum(1 for ev in self.events[:e] if ev.terminal)
        sw = self.system.switches[w]
        rename = {p.symbol: sp.Symbol(f"par_{p.name}") for p in self.system.parameters}
        by_symbol = {p.symbol: p.name for p in self.system.parameters}
        out = [f"O_{b}_{j}[i] = n_{b}_{j}" for b, j in self.rows]
        out += [f"par_{p} = Q_{p}[i]" for p in self.lane_params]
        for k, v in sw.set.items():
            name = by_symbol[k]
            out += [f"par_{name} = {self.printer.doprint(v.xreplace(rename))}"]
            out += [f"Q_{name}[i] = par_{name}"]
        out += [
            "LANEINV",
            f"SWA_{e}[i] = False",
            f"SWT[{w}, s + i] = tk + hi",
            f"SWK[{w}, s + i] = k",
        ]
        out += ["hl = DT(h64 - hi)", "tt = DT(tk + hi)", *bstep]
        out += [f"S_{b}_{j}[i] = n_{b}_{j}" for b, j in self.rows]
        out += [*self.bind("n", None), "tt = DT(tn)"]
        for f in range(len(self.events)):
            out += [*self.event_value(f), f"EVO_{f}[i] = ev_{f}"]
        return out

    def locate(self) -> list[str]:
        """After the lane loop, per lane that crossed event e: the crossing located by
        bisection of the step τ ∈ (0, h] to within the event's ``tol`` (as numpy: the step
        of τ from the state before the step, τ = hi at the end), then the lane stops there
        with status ``event`` (4), recorded in ``evi, evt, evk``."""
        bstep = self.step(self.bnames, "O")
        k = bstep.index("INVARIANTS") + 1
        own = [f"{v} = {self.printer.doprint(e)}" for e, v in self.bnames.invariants.items()]
        bstep = bstep[:k] + own + bstep[k:]
        out = ["if anye:", f"    for i in range({LANES}):"]
        for e, ev in enumerate(self.events):
            # one copy of the step: τ = mid while hi − lo > tol, then τ = hi (the result)
            search = [
                f"done = not (hi - lo > {float(ev.tol)!r})",
                "mid = 0.5 * (lo + hi)",
                "hl = DT(hi) if done else DT(mid)",
                "tt = ttk",
                *bstep,
                "if done:",
                "    break",
                *self.bind("n", None),
                "tt = ttk + hl",
                *self.event_value(e),
                f"c = {_crossed('vo', f'ev_{e}', ev.direction)}",
                "hi = mid if c else hi",
                "lo = lo if c else mid",
            ]
            if ev.terminal:  # the lane keeps the located state: the k steps before it count
                found = [f"S_{b}_{j}[i] = n_{b}_{j}" for b, j in self.rows]
                found += ["st[i] = 4", "act[i] = False", "nact -= 1", "ts[i] = tk + hi"]
                found += ["tm[i] = tk + hi", "ns[i] = k", f"evi[i] = {e}", "evt[i] = tk + hi"]
                found += ["evk[i] = k", *(["cvd[i] = False"] if self.gtol else [])]
            else:
                found = self.switch(e, bstep)
            out += _indent([f"if FE_{e}[i]:", f"    FE_{e}[i] = False", "    if act[i]:"], 2)
            out += _indent([f"vo = EVO_{e}[i]", "lo = 0.0", "hi = h64"], 4)
            out += _indent(["while True:", *_indent(search, 1)], 4)
            out += _indent(found, 4)
        return out
