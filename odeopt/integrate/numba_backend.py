"""``backend="numba"``: one fused, compiled kernel per (system, scheme, objective, dtype).

The update program of a fixed-step scheme (:func:`odeopt.discretize`), the system's parameters
and the objective's exact formula (``problem.sympy()``) are all sympy expressions; this module
prints them, unrolled over the problem's d coordinates, into the Python source of ONE numba
kernel and compiles it. The kernel runs blocks of :data:`LANES` trajectories in parallel
(``prange``); a block keeps each coordinate of each block of the state as a contiguous array of
its lanes, and the whole step (objective, gradient, scheme) runs as one loop over the lanes
inside the time loop, so the lanes are independent and vectorise (SIMD).

Per trajectory, after each step x → x′ at t′ = t₀ + (k+1)h, exactly as the numpy backend:

- ``"diverged"`` when a value of x′ is not finite or |x′ᵢ| > blowup: the trajectory keeps x,
  t_stop = t′;
- ``"converged"`` (with ``gtol``) when |∇F(θ′)| < gtol: it keeps x′, t_stop = t′;
- at the final save, H, F and |∇F| are evaluated; where one is not finite the trajectory keeps
  its start (the last save) with status ``"nonfinite"`` (NaN) or ``"diverged"`` (±inf) and
  t_stop = t₀.

Float64 states compute in float64 (``fastmath=False``: the same IEEE operations as numpy, equal
to about 1e-12); float32 states compute in float32. The compiled kernel is cached per generated
source and dtype in :data:`_KERNELS`, so a notebook compiles once; the compile time of the last
compilation is in ``Trajectory.stats["compile_s"]`` (0 when the cache served it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp
from sympy.core.parameters import distribute
from sympy.printing.pycode import PythonCodePrinter

from ..symbolic.language import Block, Gradient, Loss, Reduction, Time
from .trajectory import Trajectory

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["LANES", "integrate_numba", "kernel_source"]

#: trajectories per block of a kernel: each coordinate of a block is one array of this length
LANES = 256
#: compiled kernels by (generated source, dtype name)
_KERNELS: dict[tuple[str, str], Any] = {}
#: generated sources by (system, scheme, problem) identity
#: (the objects are kept in the value, so that their ids stay theirs)
_SOURCES: dict[tuple[int, str, int], tuple[Any, Any, tuple[str, list[str], list[str], int]]] = {}
_OTHERS = "backend='numpy' or backend='torch'"


class _Printer(PythonCodePrinter):
    """Scalar Python for numba: ``math.`` functions, constants as ``DT(·)`` (the state's
    dtype, so float32 stays float32) and small integer powers as products."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"DT({int(expr)}.0)"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"(DT({int(expr.p)}.0)/DT({int(expr.q)}.0))"

    def _print_Float(self, expr: sp.Float) -> str:
        return f"DT({float(expr)!r})"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        b, e = expr.args
        base = self.parenthesize(b, 1000)
        if e.is_Integer and 1 <= int(e) <= 4:
            return "(" + "*".join([base] * int(e)) + ")"
        if e.is_Integer and -4 <= int(e) <= -1:
            return "(DT(1.0)/(" + "*".join([base] * -int(e)) + "))"
        if e == sp.Rational(1, 2):
            return f"math.sqrt({self._print(b)})"
        return f"({base}**{self._print(e)})"


def _refuse(why: str) -> ValueError:
    return ValueError(f"backend='numba' cannot run this: {why}; use {_OTHERS}")


class _Names:
    """Python names for the symbols of the program, one per coordinate where per-coordinate."""

    def __init__(self, params: Mapping[sp.Symbol, str], h: sp.Symbol) -> None:
        self.params = dict(params)
        self.h = h
        self.ids: dict[sp.Symbol, str] = {}
        self.invariants: dict[sp.Expr, sp.Symbol] = {}

    def var(self, s: sp.Symbol) -> str:
        if s not in self.ids:
            kind = "b" if isinstance(s, Block) else "g" if isinstance(s, Gradient) else "L"
            self.ids[s] = f"{kind}{len(self.ids)}"
        return self.ids[s]

    def at(self, expr: sp.Expr, j: int, d: int, reductions: dict[sp.Symbol, str]) -> sp.Expr:
        """``expr`` at coordinate j: blocks and gradients become their j-th coordinate."""
        sub: dict[sp.Symbol, sp.Symbol] = {}
        for s in expr.free_symbols:
            if isinstance(s, (Block, Gradient)):
                sub[s] = sp.Symbol(f"{self.var(s)}_{j}")
            elif isinstance(s, Loss):
                sub[s] = sp.Symbol(self.var(s))
            elif isinstance(s, Time):
                sub[s] = sp.Symbol("tt")
            elif s == self.h:
                sub[s] = sp.Symbol("hh")
            elif s in self.params:
                sub[s] = sp.Symbol(f"par_{self.params[s]}")
            elif isinstance(s, Reduction):
                sub[s] = sp.Symbol(reductions[s])
            else:
                raise _refuse(f"the update program uses {s}, which it does not compile")
        return self.hoist(expr.xreplace(sub))

    def hoist(self, e: sp.Expr) -> sp.Expr:
        """``e`` with its factors and terms in parameters and h only replaced by per-lane
        invariants ``inv_k``, computed once before the time loop (no division per step)."""
        fixed = {sp.Symbol("hh"), *(sp.Symbol(f"par_{n}") for n in self.params.values())}

        def constant(a: sp.Expr) -> bool:
            return bool(a.free_symbols) and a.free_symbols <= fixed

        if e.is_Atom:
            return e
        if constant(e):
            return self._invariant(e)
        if isinstance(e, (sp.Mul, sp.Add)):
            inv = [a for a in e.args if constant(a)]
            rest = [self.hoist(a) for a in e.args if not constant(a)]
            if inv:
                numbers = [a for a in rest if a.is_Number]
                rest = [a for a in rest if not a.is_Number]
                whole = e.func(*inv, *numbers)
                rest.append(whole if whole.is_Symbol else self._invariant(whole))
            return e.func(*rest)
        return e.func(*(self.hoist(a) for a in e.args))

    def _invariant(self, e: sp.Expr) -> sp.Symbol:
        if e not in self.invariants:
            self.invariants[e] = sp.Symbol(f"inv_{len(self.invariants)}")
        return self.invariants[e]


def _objective_code(
    F: sp.Expr,
    xs: tuple[sp.Symbol, ...],
    prefix: str,
    theta: list[str],
    out_F: str | None,
    out_g: list[str],
    printer: _Printer,
) -> list[str]:
    """Lines computing F (when ``out_F``) and ∇F at the coordinates ``theta`` (CSE'd)."""
    local = [sp.Symbol(f"{prefix}x{j}") for j in range(len(xs))]
    with distribute(False):  # keep 2·(x + y² − 7) factored, as the problems' numpy code is
        exprs = ([F] if out_F else []) + [sp.diff(F, x) for x in xs]
        exprs = [e.xreplace(dict(zip(xs, local, strict=True))) for e in exprs]
        reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(f"{prefix}c"))
    lines = [f"{lv} = {tv}" for lv, tv in zip(local, theta, strict=True)]
    lines += [f"{s} = {printer.doprint(e)}" for s, e in reps]
    targets = ([out_F] if out_F else []) + out_g
    lines += [f"{t} = {printer.doprint(e)}" for t, e in zip(targets, reduced, strict=True)]
    return lines


def kernel_source(
    system: PortHamiltonian, program: Any, F: sp.Expr, xs: tuple[sp.Symbol, ...]
) -> tuple[str, list[str], list[str], int]:
    """The Python source of the kernel, the block names (rows of X: block-major, d each), the
    parameter names (rows of P) and the number of lanes.

    Kernel signature: ``kernel(X, P, V, status, tstop, nstep, t0, hh, h64, nsteps, blowup,
    gtol, use_gtol)``; X (blocks·d, B) the state, updated in place, P (params, B) and V (6, B)
    the saved H, F, |∇F| at the start and at the end, B a multiple of :data:`LANES`."""
    d = len(xs)
    printer = _Printer({"fully_qualified_modules": False})
    blocks = [b.name for b in system.all_blocks]
    bsym = {b.name: b for b in system.all_blocks}
    pnames = [p.name for p in system.parameters]
    names = _Names({p.symbol: p.name for p in system.parameters}, program.h)
    assert system.loss is not None
    position = system.loss.block.name
    step: list[str] = []
    # load the lane's state and parameters
    for b in blocks:
        v = names.var(bsym[b])
        step += [f"{v}_{j} = S_{b}_{j}[i]" for j in range(d)]
    step += [f"par_{p} = Q_{p}[i]" for p in pnames]
    step.append("INVARIANTS")
    reductions: dict[sp.Symbol, str] = {}

    def reduce_in(
        expr: sp.Expr,
        out: list[str] = step,
        done: dict[sp.Symbol, str] = reductions,
        prefix: str = "r",
    ) -> None:
        for r in sorted(expr.atoms(Reduction), key=str):
            if r not in done:
                name = f"{prefix}{len(done)}"
                done[r] = name
                terms = [printer.doprint(names.at(r.summand, j, d, done)) for j in range(d)]
                out.append(f"{name} = " + " + ".join(terms))

    for ins in program.instructions:
        if hasattr(ins, "loss"):  # an Evaluation: F_k, g_k := F(θ_k), ∇F(θ_k)
            th = names.var(ins.theta)
            step += _objective_code(
                F,
                xs,
                f"e{names.var(ins.loss)}_",
                [f"{th}_{j}" for j in range(d)],
                names.var(ins.loss),
                [f"{names.var(ins.loss.grad)}_{j}" for j in range(d)],
                printer,
            )
        else:
            reduce_in(ins.expr)
            tv = names.var(ins.target)
            for j in range(d):
                step.append(f"{tv}_{j} = {printer.doprint(names.at(ins.expr, j, d, reductions))}")
    for b in blocks:
        if b in program.outputs:
            reduce_in(program.outputs[b])
    rows = [(b, j) for b in blocks for j in range(d)]
    for b, j in rows:
        if b in program.outputs:
            e = printer.doprint(names.at(program.outputs[b], j, d, reductions))
        else:
            e = f"{names.var(bsym[b])}_{j}"
        step.append(f"n_{b}_{j} = {e}")
    # branch-free commit: a live lane whose new state is finite and within the bound takes it
    good = " & ".join(f"(abs(n_{b}_{j}) <= blowup) & (n_{b}_{j} - n_{b}_{j} == 0)" for b, j in rows)
    step += [
        f"good = {good}",
        "a = act[i]",
        "upd = a & good",
        "act[i] = upd",
        "fresh[i] = a & (not good)",
        "nbad += fresh[i]",
    ]
    step += [f"S_{b}_{j}[i] = n_{b}_{j} if upd else S_{b}_{j}[i]" for b, j in rows]
    conv = _objective_code(
        F,
        xs,
        "cv_",
        [f"S_{position}_{j}[i]" for j in range(d)],
        None,
        [f"cg_{j}" for j in range(d)],
        printer,
    )
    # H, F and |∇F| of a lane (at time tq), written to V[o:o + 3, s + i]
    loss = system.loss
    th = names.var(loss.block)
    measure = [f"{names.var(bsym[b])}_{j} = S_{b}_{j}[i]" for b, j in rows]
    measure += [f"par_{p} = Q_{p}[i]" for p in pnames] + ["INVARIANTS", "tt = DT(tq)"]
    measure += _objective_code(
        F,
        xs,
        "m_",
        [f"{th}_{j}" for j in range(d)],
        names.var(loss),
        [f"{names.var(loss.grad)}_{j}" for j in range(d)],
        printer,
    )
    gs = [f"{names.var(loss.grad)}_{j}" for j in range(d)]
    measure.append(
        "gm = max(" + ", ".join(f"abs({g})" for g in gs) + ")" if d > 1 else f"gm = abs({gs[0]})"
    )
    measure += [
        "gsafe = gm if (gm > 0) & (gm < math.inf) else gm * DT(0.0) + DT(1.0)",
        "gn = gm * (" + " + ".join(f"({g} / gsafe) ** 2" for g in gs) + ") ** DT(0.5)",
        "gn = gm if gm == math.inf else gn",
    ]
    hreds: dict[sp.Symbol, str] = {}
    reduce_in(system.hamiltonian, measure, hreds, "hr")
    measure += [
        f"V[o, s + i] = {printer.doprint(names.at(system.hamiltonian, 0, d, hreds))}",
        f"V[o + 1, s + i] = {names.var(loss)}",
        "V[o + 2, s + i] = gn",
    ]
    ind = " " * 16
    i2 = " " * 8
    src = [
        "def kernel(X, P, V, status, tstop, nstep, t0, hh, h64, nsteps, blowup, gtol, use_gtol):",
        "    B = X.shape[1]",
        f"    for blk in numba.prange(B // {LANES}):",
        f"        s = blk * {LANES}",
    ]
    for r, (b, j) in enumerate(rows):
        src.append(f"{i2}S_{b}_{j} = X[{r}, s:s + {LANES}].copy()")
    for k, p in enumerate(pnames):
        src.append(f"{i2}Q_{p} = P[{k}, s:s + {LANES}].copy()")
    src += [
        f"{i2}act = np.ones({LANES}, np.bool_)",
        f"{i2}fresh = np.zeros({LANES}, np.bool_)",
        f"{i2}st = np.zeros({LANES}, np.int8)",
        f"{i2}ts = np.full({LANES}, np.nan)",
        f"{i2}ns = np.full({LANES}, nsteps, np.int64)",
        f"{i2}nact = {LANES}",
        *[f"{i2}I_{k} = np.empty({LANES}, X.dtype)" for k in range(len(names.invariants))],
        f"{i2}for i in range({LANES}):",
        *[f"{ind}par_{p} = Q_{p}[i]" for p in pnames],
        *[f"{ind}I_{v.name[4:]}[i] = {printer.doprint(e)}" for e, v in names.invariants.items()],
        f"{i2}k = 0",
        f"{i2}o = 0",
        f"{i2}tq = t0",
        f"{i2}for i in range({LANES}):",
        *[f"{ind}{line}" for line in measure],
        f"{i2}while k < nsteps and nact > 0:",
        f"{i2}    tt = DT(t0 + k * h64)",
        f"{i2}    tn = t0 + (k + 1) * h64",
        f"{i2}    nbad = 0",
        f"{i2}    for i in range({LANES}):",
    ]
    src += [ind + line for line in step]
    src += [
        f"{i2}    if nbad:",  # rare: record the lanes that just diverged
        f"{i2}        nact -= nbad",
        f"{i2}        for i in range({LANES}):",
        f"{i2}            if fresh[i]:",
        f"{i2}                st[i] = 1",
        f"{i2}                ts[i] = tn",
        f"{i2}                ns[i] = k + 1",
        f"{i2}    if use_gtol:",
        f"{i2}        nconv = 0",
        f"{i2}        for i in range({LANES}):",
    ]
    src += [f"{ind}    {line}" for line in conv]
    src += [
        f"{ind}    gn = (" + " + ".join(f"cg_{j} * cg_{j}" for j in range(d)) + ") ** 0.5",
        f"{ind}    c = act[i] & (gn < gtol)",
        f"{ind}    fresh[i] = c",
        f"{ind}    act[i] = act[i] & (not c)",
        f"{ind}    nconv += c",
        f"{i2}        if nconv:",
        f"{i2}            nact -= nconv",
        f"{i2}            for i in range({LANES}):",
        f"{i2}                if fresh[i]:",
        f"{i2}                    st[i] = 2",
        f"{i2}                    ts[i] = tn",
        f"{i2}                    ns[i] = k + 1",
        f"{i2}    k += 1",
    ]
    src += [f"{i2}o = 3", f"{i2}for i in range({LANES}):", f"{ind}tq = t0 + ns[i] * h64"]
    src += [f"{ind}{line}" for line in measure]
    for r, (b, j) in enumerate(rows):
        src.append(f"{i2}X[{r}, s:s + {LANES}] = S_{b}_{j}")
    src += [
        f"{i2}status[s:s + {LANES}] = st",
        f"{i2}tstop[s:s + {LANES}] = ts",
        f"{i2}nstep[s:s + {LANES}] = ns",
    ]
    loads = [f"{v} = I_{v.name[4:]}[i]" for v in names.invariants.values()]
    out = []
    for line in src:
        if line.strip() == "INVARIANTS":
            pad = line[: len(line) - len(line.lstrip())]
            out += [pad + x for x in loads]
        else:
            out.append(line)
    return "\n".join(out) + "\n", blocks, pnames, LANES


def _compile(source: str, dtype: np.dtype) -> tuple[Any, float]:
    """The compiled kernel for ``source`` at ``dtype`` and the seconds compiling took (0 when
    cached)."""
    key = (source, np.dtype(dtype).name)
    if key in _KERNELS:
        return _KERNELS[key], 0.0
    import numba

    ns: dict[str, Any] = {"np": np, "math": math, "numba": numba, "DT": np.dtype(dtype).type}
    exec(compile(source, "<odeopt numba kernel>", "exec"), ns)  # noqa: S102
    ft = "float64" if np.dtype(dtype) == np.float64 else "float32"
    sig = (
        f"void({ft}[:, ::1], {ft}[:, ::1], {ft}[:, ::1], int8[::1], float64[::1], int64[::1], "
        f"float64, {ft}, float64, int64, float64, float64, boolean)"
    )
    start = time.perf_counter()
    fn = numba.njit(sig, parallel=True, fastmath=False, cache=False)(ns["kernel"])
    seconds = time.perf_counter() - start
    _KERNELS[key] = fn
    return fn, seconds


def _check_supported(
    system: PortHamiltonian,
    problem: Any,
    x0: Mapping[str, Any],
    t_span: Any,
    steps: Any,
    save: Any,
    events: Any,
    controller: Any,
    t_eval: Any,
) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    """Refuse, naming why, what the numba backend does not run; returns ``problem.sympy()``."""
    if any(type(v).__module__.startswith("torch") for v in x0.values()):
        raise _refuse("x0 holds torch tensors (the numba backend runs numpy arrays)")
    if system.switches:
        raise _refuse(f"{system.name} switches parameters at events")
    if system.level_set is not None:
        raise _refuse(f"{system.name} is a level-set system (domain stop, stored energy)")
    if system.metric is not None:
        raise _refuse(f"{system.name} has a metric (preconditioned gradient)")
    if events:
        raise _refuse("events are not compiled")
    if controller is not None or t_eval is not None:
        raise _refuse("controller= and t_eval= are for adaptive schemes")
    if steps is None:
        raise _refuse("it runs fixed steps: give steps= (with h or t_span), not t_span alone")
    if not (isinstance(save, str) and save == "final"):
        raise _refuse(f"it saves the final state only (save='final'), got save={save!r}")
    if getattr(problem, "time_dependent", False):
        raise _refuse("the objective is time-dependent")
    form = problem.sympy() if hasattr(problem, "sympy") else None
    if form is None:
        raise _refuse(
            f"the problem {type(problem).__name__} has no exact sympy form (problem.sympy() "
            "is None)"
        )
    return form


def integrate_numba(
    system: PortHamiltonian,
    problem: Any,
    x0: Mapping[str, Any],
    t_span: Any = None,
    *,
    steps: Any = None,
    h: Any = None,
    scheme: Any = "symplectic_euler",
    params: Mapping[str, Any] | None = None,
    gtol: Any = None,
    blowup: Any = 1e100,
    save: Any = "all",
    events: Any = (),
    controller: Any = None,
    t_eval: Any = None,
    **_ignored: Any,
) -> Trajectory:
    """:func:`odeopt.integrate` with ``backend="numba"`` (see the module's docstring)."""
    from .. import schemes as _schemes
    from ..schemes.program import run_symbolic
    from . import solve as _solve

    if not isinstance(x0, Mapping):
        raise TypeError(
            "x0 maps block names to arrays of shape (batch, n), e.g. {'theta': theta0}; "
            f"got {type(x0).__name__}"
        )
    events = list(events) if not hasattr(events, "fn") else [events]
    F_expr, xs = _check_supported(
        system, problem, x0, t_span, steps, save, events, controller, t_eval
    )
    t_span, steps, h, _, _, gtol, blowup, _, _ = _solve._check_arguments(
        t_span, steps, h, 1e-6, 1e-9, gtol, blowup, 1, 1
    )
    sch = _schemes.for_system(_schemes.get(scheme), system)
    if sch.adaptive:
        raise _refuse(f"the scheme {sch.name!r} is adaptive (its step is controlled)")
    if system.loss is None:
        raise _refuse(f"{system.name} has no objective F")
    x = _solve._prepare_x0(system, x0, "numpy", len(xs))
    for b, v in x.items():
        biggest = float(abs(v).max()) if v.size else 0.0
        if biggest > blowup:
            raise ValueError(
                f"x0[{b!r}] has |x| = {biggest:.3g} > blowup = {blowup:g}; start within the "
                "bound (or raise blowup=)"
            )
    ref = next(iter(x.values()))
    B, d = ref.shape
    dtype = ref.dtype
    p = _solve._prepare_params(system, params, B, "numpy", ref)
    t0, t1, n_steps, h_fixed = _solve._time_grid(t_span, steps, h)
    assert n_steps is not None and h_fixed is not None
    key = (id(system), repr(sch), id(problem))
    entry = _SOURCES.get(key)
    cached = entry[2] if entry is not None else None
    if cached is None:
        program = run_symbolic(system, sch)
        if getattr(program, "unknowns", None) is not None:
            raise _refuse(f"the scheme {sch.name!r} is implicit")
        if getattr(program, "error", None) is not None:
            raise _refuse(f"the scheme {sch.name!r} is adaptive (it has an error estimate)")
        cached = kernel_source(system, program, F_expr, tuple(xs))
    _SOURCES[key] = (system, problem, cached)
    source, blocks, pnames, lanes = cached
    kernel, compile_s = _compile(source, dtype)
    Bp = max(lanes, -(-B // lanes) * lanes)
    X = np.empty((len(blocks) * d, Bp), dtype=dtype)
    for k, b in enumerate(blocks):
        X[k * d : (k + 1) * d, :B] = x[b].T
        X[k * d : (k + 1) * d, B:] = x[b][:1].T  # padding lanes: copies of the first start
    P = np.empty((max(1, len(pnames)), Bp), dtype=dtype)
    for k, name in enumerate(pnames):
        v = np.asarray(p[name], dtype=dtype)
        P[k, :B] = v
        P[k, B:] = v if v.ndim == 0 else v[:1]
    status = np.zeros(Bp, np.int8)
    tstop = np.full(Bp, np.nan)
    nstep = np.zeros(Bp, np.int64)
    start = time.perf_counter()
    V = np.empty((6, Bp), dtype=dtype)
    kernel(
        X,
        P,
        V,
        status,
        tstop,
        nstep,
        float(t0),
        dtype.type(h_fixed),
        float(h_fixed),
        int(n_steps),
        float(blowup),
        float(gtol if gtol is not None else 0.0),
        gtol is not None,
    )
    run_s = time.perf_counter() - start
    states = {}
    for k, b in enumerate(blocks):
        out = np.empty((2, B, d), dtype=dtype)
        out[0] = x[b]
        out[1] = X[k * d : (k + 1) * d, :B].T
        states[b] = out
    status_s = np.array(["ok", "diverged", "converged"], dtype="<U11")[status[:B]]
    t_stop = tstop[:B].copy()
    # the saves: H, F and |∇F| at the start and at the final (or frozen) state
    energy, loss, grad_norm = V[0::3, :B], V[1::3, :B], V[2::3, :B]
    with np.errstate(invalid="ignore"):
        ok0 = np.isfinite(energy[0]) & np.isfinite(loss[0]) & np.isfinite(grad_norm[0])
        if not ok0.all():
            bad = np.flatnonzero(~ok0)
            raise ValueError(
                f"the objective (F, ∇F or H) is not finite at the start of trajectories "
                f"{bad[:10].tolist()}{' …' if len(bad) > 10 else ''}; give starts where it is "
                "finite"
            )
        nan = np.isnan(energy[1]) | np.isnan(loss[1]) | np.isnan(grad_norm[1])
        bad = ~(np.isfinite(energy[1]) & np.isfinite(loss[1]) & np.isfinite(grad_norm[1]))
    if bad.any():  # the objective is not finite there: keep the last save (the start)
        for b in blocks:
            states[b][1, bad] = x[b][bad]
        for arr in (energy, loss, grad_norm):
            arr[1, bad] = arr[0, bad]
        status_s[bad] = np.where(nan[bad], "nonfinite", "diverged")
        t_stop[bad] = t0
    grid = np.array([t0, t0 + n_steps * h_fixed])
    return Trajectory(
        t=grid,
        states=states,
        energy=energy,
        loss=loss,
        grad_norm=grad_norm,
        status=status_s,
        t_stop=t_stop,
        events=[],
        stats={
            "steps": int(nstep[:B].max()) if B else 0,
            "rejected": 0,
            "unconverged_solves": 0,
            "compile_s": compile_s,
            "kernel_s": run_s,
        },
        system_name=system.name,
        scheme=scheme if isinstance(scheme, str) else getattr(scheme, "name", str(scheme)),
        backend="numba",
    )
