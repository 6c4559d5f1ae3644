"""``integrate``: the one door to batched integration of a system on an objective."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from .. import schemes as _schemes
from ..checks import check_count, check_positive, check_real
from ..schemes.adaptive import StepController
from ..schemes.base import Scheme
from .events import Event, EventRecord
from .field import NumericField
from .trajectory import Trajectory

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["SCIPY_METHODS", "integrate", "torchdiffeq_methods"]

SCIPY_METHODS = {m.lower(): m for m in ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")}
BACKENDS = ("numpy", "torch", "scipy", "torchdiffeq", "numba")


def torchdiffeq_methods() -> list[str]:
    """The method names torchdiffeq.odeint accepts."""
    from torchdiffeq._impl.odeint import SOLVERS

    return sorted(SOLVERS)


# ---------------------------------------------------------------------------- input checks
def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _check_arguments(
    t_span: Any,
    steps: Any,
    h: Any,
    rtol: Any,
    atol: Any,
    gtol: Any,
    blowup: Any,
    chunk_size: Any,
    max_steps: Any,
) -> tuple[Any, Any, Any, float, float, Any, float, int, int]:
    """integrate()'s scalar arguments checked up front (each error names the argument)."""
    if t_span is not None:
        if isinstance(t_span, (str, bytes)) or not hasattr(t_span, "__len__") or len(t_span) != 2:
            raise ValueError(f"t_span is (t0, t1), got t_span={t_span!r}")
        t0 = check_real("t_span[0]", t_span[0], finite=False)
        t1 = check_real("t_span[1]", t_span[1], finite=False)
        if not (math.isfinite(t0) and math.isfinite(t1)):
            raise ValueError(f"t_span must be finite, got t_span=({t0}, {t1})")
        if not t1 > t0:
            raise ValueError(f"t_span must have t1 > t0, got t_span=({t0:g}, {t1:g})")
        t_span = (t0, t1)
    if steps is not None:
        steps = check_count("steps", steps)
    if h is not None:
        h = check_positive("h", h)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    atol = check_positive("atol", atol, allow_zero=True)
    if gtol is not None:
        gtol = check_positive("gtol", gtol)
    blowup = check_positive("blowup", blowup, allow_inf=True)
    chunk_size = check_count("chunk_size", chunk_size)
    max_steps = check_count("max_steps", max_steps)
    return t_span, steps, h, rtol, atol, gtol, blowup, chunk_size, max_steps


def _prepare_x0(system: PortHamiltonian, x0: Mapping[str, Any], backend: str, dim: Any) -> dict:
    if not isinstance(x0, Mapping):
        raise TypeError(
            "x0 maps block names to arrays of shape (batch, n), e.g. {'theta': theta0}; "
            f"got {type(x0).__name__}"
        )
    names = [b.name for b in system.all_blocks]
    unknown = sorted(set(x0) - set(names))
    if unknown:
        raise ValueError(f"x0 has block(s) {unknown} that {system.name} does not have ({names})")
    position = system.loss.block.name if system.loss is not None else system.blocks[0].name
    if position not in x0:
        raise ValueError(f"x0 needs the position block {position!r} (other blocks default to 0)")
    torch = None
    if backend in ("torch", "torchdiffeq"):
        import torch
    out: dict[str, Any] = {}
    for b in names:
        if b not in x0:
            continue
        v = _real_array(f"x0[{b!r}]", x0[b])
        if torch is not None:
            v = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=float))
            if not v.is_floating_point():
                v = v.to(torch.get_default_dtype() if v.dtype != torch.float64 else v.dtype)
            if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
                v = v.double()
        else:
            if _is_torch(v):
                v = v.detach().cpu().numpy()
            v = np.asarray(v)
            if v.dtype not in (np.float32, np.float64):
                v = v.astype(np.float64)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2:
            raise ValueError(f"x0[{b!r}] must have shape (batch, n); got shape {tuple(v.shape)}")
        finite = bool(torch.isfinite(v).all()) if torch is not None else bool(np.isfinite(v).all())
        if not finite:
            raise ValueError(f"x0[{b!r}] must be finite; it contains NaN or inf")
        out[b] = v
    ref = out[position]
    for b, v in out.items():
        if tuple(v.shape) != tuple(ref.shape):
            raise ValueError(
                f"x0[{b!r}] has shape {tuple(v.shape)} but x0[{position!r}] has "
                f"{tuple(ref.shape)}; every block is (batch, n)"
            )
        if v.dtype != ref.dtype:
            out[b] = v.to(ref.dtype) if torch is not None else v.astype(ref.dtype)
    if dim is not None and ref.shape[1] != dim:
        raise ValueError(f"x0[{position!r}] has n = {ref.shape[1]}, but the problem has dim {dim}")
    for b in names:
        if b not in out:
            out[b] = torch.zeros_like(ref) if torch is not None else np.zeros_like(ref)
    return out


def _real_array(name: str, v: Any) -> Any:
    """A tensor or array of real numbers (lists and scalars become arrays); complex, boolean,
    object or string values are refused with a TypeError naming ``name``."""
    if _is_torch(v):
        if v.is_complex() or v.dtype.is_floating_point is False and str(v.dtype) == "torch.bool":
            raise TypeError(f"{name} must be real, got a tensor of dtype {v.dtype}")
        if v.device.type == "meta":
            raise TypeError(f"{name} is on the meta device (no data)")
        return v
    try:
        arr = np.asarray(v)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got {type(v).__name__}") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers (batch, n), got dtype {arr.dtype}"
            + (" (complex values: odeopt integrates real states)" if arr.dtype.kind == "c" else "")
        )
    return arr


def _prepare_params(
    system: PortHamiltonian, params: Mapping[str, Any] | None, batch: int, backend: str, ref: Any
) -> dict[str, Any]:
    values = system.with_parameters(**dict(params or {}))
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:  # a stored quantity (the energy E of a level set): set from x₀
            continue
        raw = _real_array(f"parameter {k!r}", v.detach().cpu().numpy() if _is_torch(v) else v)
        arr = np.asarray(raw, dtype=float)
        if not np.isfinite(arr).all():
            raise ValueError(f"parameter {k!r} must be finite, got {k}={v!r}")
        if arr.ndim == 0:
            out[k] = float(arr)
            continue
        if arr.shape != (batch,):
            raise ValueError(
                f"parameter {k!r} has shape {arr.shape}; give a scalar or one value per "
                f"trajectory, shape ({batch},)"
            )
        if backend in ("torch", "torchdiffeq"):
            import torch

            out[k] = torch.as_tensor(arr, dtype=ref.dtype, device=ref.device)
        else:
            out[k] = arr.astype(ref.dtype)
    return out


def _switches(
    system: PortHamiltonian,
    problem: Any,
    x: dict[str, Any],
    p: dict[str, Any],
    backend: str,
    t0: float = 0.0,
) -> tuple[dict[str, Any], list[Event]]:
    """A system's switches as events (F − goal crossed from above, once per trajectory).

    A relative goal (F ≤ r·F(θ₀)) becomes the absolute per-trajectory goal r·F(θ₀), and a
    trajectory that starts at or below its goal takes the new values from t₀ on."""
    assert system.loss is not None
    theta0 = x[system.loss.block.name]
    if getattr(problem, "time_dependent", False):
        F0, _ = problem.value_and_grad(theta0, t0)
    else:
        F0, _ = problem.value_and_grad(theta0)
    F0 = np.asarray(F0.detach().cpu() if _is_torch(F0) else F0, dtype=float)
    names = {pr.symbol: pr.name for pr in system.parameters}
    p = dict(p)

    def value(e: sp.Expr, params: Mapping[str, Any]) -> Any:
        args = sorted(e.free_symbols, key=lambda s: s.name)
        fn = sp.lambdify(args, e, "numpy")
        return fn(*(params[names[s]] for s in args))

    def as_backend(v: Any) -> Any:
        if backend in ("torch", "torchdiffeq"):
            import torch

            ref = next(iter(x.values()))
            return torch.as_tensor(np.asarray(v, float), dtype=ref.dtype, device=ref.device)
        return np.asarray(v, dtype=float)

    events = []
    for sw in system.switches:
        goal = sw.goal
        if sw.relative:
            if not (isinstance(goal, sp.Symbol) and goal in names):
                raise ValueError("a relative switch's goal must be a single parameter")
            p[names[goal]] = as_backend(np.asarray(value(goal, p), float) * F0)
        below = F0 <= np.asarray(_numpy(value(goal, p)), float)
        if below.any():
            for k, v in sw.set.items():
                old = np.broadcast_to(np.asarray(_numpy(p[names[k]]), float), F0.shape)
                new = np.broadcast_to(np.asarray(_numpy(value(v, p)), float), F0.shape)
                p[names[k]] = as_backend(np.where(below, new, old))

        def action(state: dict, params: dict, sw: Any = sw) -> tuple[dict, dict]:
            params = dict(params)
            for k, v in sw.set.items():
                params[names[k]] = value(v, params)
            return state, params

        fn = system.loss - goal
        events.append(Event(fn, action=action, direction=-1, once=True, name=f"switch at {fn}"))
    return p, events


def _numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if _is_torch(v) else v


def _time_grid(t_span: Any, steps: Any, h: Any) -> tuple[float, float, int | None, float | None]:
    if t_span is not None:
        if len(t_span) != 2:
            raise ValueError(f"t_span is (t0, t1), got {t_span!r}")
        t0, t1 = float(t_span[0]), float(t_span[1])
        if not t1 > t0:
            raise ValueError(f"t_span must have t1 > t0, got {t_span!r}")
        if steps is not None and h is not None:
            raise ValueError("give t_span with h or with steps, not both")
        if steps is not None:
            return t0, t1, int(steps), (t1 - t0) / int(steps)
        if h is not None:
            n = (t1 - t0) / h
            if abs(n - round(n)) > 1e-9 * max(1.0, n):
                raise ValueError(
                    f"t1 − t0 = {t1 - t0:g} is not a multiple of h = {h:g}; give steps= or an h "
                    "that divides the span"
                )
            return t0, t1, max(1, round(n)), float(h)
        return t0, t1, None, None
    if steps is None or h is None:
        raise ValueError("give t_span=(t0, t1), or steps=N with h")
    return 0.0, int(steps) * float(h), int(steps), float(h)


def _save_steps(save: Any, n: int) -> list[int]:
    if save == "all":
        return list(range(n + 1))
    if save == "final":
        return [0, n]
    if isinstance(save, (int, np.integer)) and not isinstance(save, bool) and save >= 1:
        idx = list(range(0, n + 1, int(save)))
        return idx if idx[-1] == n else [*idx, n]
    raise ValueError(
        f"save is 'all', 'final' or a positive integer K (every K-th step); got {save!r}"
    )


# ---------------------------------------------------------------------------- array helpers
class _Ops:
    """The few backend operations the stepping loop needs."""

    def __init__(self, backend: str, ref: Any) -> None:
        self.torch = backend == "torch"
        self.dtype = ref.dtype
        self.device = getattr(ref, "device", None)
        if self.torch:
            import torch

            self.xp: Any = torch
        else:
            self.xp = np

    def np(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if self.torch else np.asarray(a)

    def empty(self, shape: tuple[int, ...]) -> Any:
        if self.torch:
            return self.xp.full(shape, float("nan"), dtype=self.dtype, device=self.device)
        return np.full(shape, np.nan, dtype=self.dtype)

    def index(self, idx: np.ndarray) -> Any:
        """An index array (from a numpy bool mask or integer array) for this backend."""
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx
        return self.xp.as_tensor(idx, device=self.device) if self.torch else idx

    def take(self, x: Mapping[str, Any], idx: Any) -> dict[str, Any]:
        return {b: v[idx] for b, v in x.items()}

    def column(self, values: np.ndarray) -> Any:
        v = np.asarray(values, dtype=float)[:, None]
        if self.torch:
            return self.xp.as_tensor(v, dtype=self.dtype, device=self.device)
        return v.astype(self.dtype)

    def per_row(self, value: Any, m: int) -> Any:
        """A parameter as a fresh per-trajectory array of length m."""
        if self.torch:
            if hasattr(value, "shape") and value.ndim == 1:
                return value.clone()
            return self.xp.full((m,), float(value), dtype=self.dtype, device=self.device)
        if np.ndim(value) == 1:
            return np.array(value, dtype=self.dtype)
        return np.full(m, float(value), dtype=self.dtype)

    def scatter(self, full: Mapping[str, Any], idx: Any, rows: Mapping[str, Any]) -> dict:
        out = {}
        for b, v in full.items():
            w = v.clone() if self.torch else v.copy()
            w[idx] = rows[b]
            out[b] = w
        return out


def _norm(g: Any, ops: _Ops) -> Any:
    """|g| per row without overflow: m·(Σ(g/m)²)^½ with m = max|gᵢ| (|g| up to the dtype's
    maximum stays finite; Σg² alone overflows from 1.3e154 in float64, 1.8e19 in float32)."""
    m = abs(g).amax(-1) if ops.torch else np.abs(g).max(-1)
    safe = ops.xp.where((m > 0) & (m < float("inf")), m, m * 0 + 1)
    out = m * (((g / safe[:, None]) ** 2).sum(-1) ** 0.5)
    return ops.xp.where(m == float("inf"), m, out)  # an infinite entry: |g| = inf, not NaN


def torch_dot(x: Any) -> Any:
    flat = x.reshape(-1)
    return flat.dot(flat)


def _crossed(v_old: np.ndarray, v_new: np.ndarray, direction: int) -> np.ndarray:
    up = (v_old < 0) & (v_new >= 0)
    down = (v_old > 0) & (v_new <= 0)
    return up if direction > 0 else down if direction < 0 else (up | down)


# ---------------------------------------------------------------------------- the stepping run
class _Run:
    """One chunk of trajectories stepped by an odeopt scheme on numpy or torch.

    Rows that stop (diverged, converged, terminal event) are dropped from the working arrays,
    so the common case (nothing stops) pays for no masking; ``active`` maps working rows to
    rows of the chunk.
    """

    def __init__(
        self,
        system: PortHamiltonian,
        problem: Any,
        x: dict[str, Any],
        params: dict[str, Any],
        scheme: Scheme,
        backend: str,
        events: Sequence[Event],
        gtol: float | None,
        blowup: float,
        saves: int,
    ) -> None:
        self.system = system
        self.scheme = scheme
        self.backend = backend
        ref = next(iter(x.values()))
        self.ops = _Ops(backend, ref)
        self.field = NumericField(system, problem, params, backend)
        self.events = list(events)
        self.gtol = gtol
        self.blowup = blowup
        self.names = list(x)
        self.position = self.field.position[0]
        self.B, n = ref.shape
        self.out = {b: self.ops.empty((saves, self.B, n)) for b in self.names}
        self.H, self.F, self.G = (self.ops.empty((saves, self.B)) for _ in range(3))
        self.status = np.full(self.B, "ok", dtype="<U11")
        self.t_saved = np.full(self.B, np.nan)  # the time of each row's last saved state
        self.offset = 0  # the chunk's first trajectory, for messages
        self._domain_fn: Any = None
        self.t_stop = np.full(self.B, np.nan)
        self.active = np.arange(self.B)
        self.all_active = True
        self.x = x
        self.log: list[EventRecord] = []
        self.armed = [np.ones(self.B, dtype=bool) for _ in self.events]
        self.ev_old: list[np.ndarray | None] = [None for _ in self.events]
        self.saved = 0
        self.stats: dict[str, Any] = {"steps": 0, "rejected": 0, "unconverged_solves": 0}

    # -- saving and stopping
    def _glob(self, rows: np.ndarray) -> Any:
        return self.ops.index(np.asarray(rows, dtype=np.int64))

    def snapshot(self, x: Mapping[str, Any], t: Any, field: NumericField) -> tuple[Any, Any, Any]:
        F, g = field.loss_and_grad(x[self.position], t)
        H = field.energy(dict(x), t)[:, 0]
        return H, F, _norm(g, self.ops)

    def save(self, t: Any) -> np.ndarray | None:
        """Save the working rows at time ``t``. A row whose H, F or |∇F| is not finite there
        is stopped with its last saved state and values kept, status ``"nonfinite"`` (NaN:
        the objective is undefined) or ``"diverged"`` (±inf: an overflow); returns the mask
        of the rows that go on (None when all do). A start where they are not finite is an
        error."""
        s = self.saved
        H, F, gn = self.snapshot(self.x, t, self.field)
        keep = None
        bad = self._nonfinite(H, F, gn)
        if bad is not None:
            self._keep_last_saved(self.active[bad], self._kind(H, F, gn)[bad])
            keep = ~bad
            idx = self.ops.index(keep)
            self._drop(bad)
            self.x = self.ops.take(self.x, idx)
            H, F, gn = H[idx], F[idx], gn[idx]
            if np.ndim(t):
                t = t[idx]
        if len(self.active):
            rows: Any = slice(None) if self.all_active else self._glob(self.active)
            for b in self.names:
                self.out[b][s, rows] = self.x[b]
            self.H[s, rows], self.F[s, rows], self.G[s, rows] = H, F, gn
            self.t_saved[self.active] = self.ops.np(t).reshape(-1) if np.ndim(t) else t
        self.saved += 1
        return keep

    def _nonfinite(self, *values: Any) -> np.ndarray | None:
        """The working rows where any of ``values`` (each (rows,)) is not finite, or None."""
        if self.ops.torch:
            torch = self.ops.xp
            ok = torch.isfinite(values[0])
            for v in values[1:]:
                ok = ok & torch.isfinite(v)
            if bool(ok.all()):
                return None
            return ~ok.cpu().numpy()
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(values[0])
            for v in values[1:]:
                ok &= np.isfinite(v)
        return None if ok.all() else ~ok

    def _drop(self, mask: np.ndarray) -> Any:
        """Remove working rows ``mask`` from the run; returns the index of those that go on."""
        keep = self.ops.index(~mask)
        self.field = self.field.subset(keep)
        self.active = self.active[~mask]
        self.all_active = False
        self.ev_old = [None if v is None else v[~mask] for v in self.ev_old]
        return keep

    def stop(
        self, mask: np.ndarray, status: str, t_at: Any, frozen: Mapping[str, Any], t_frozen: Any
    ) -> Any:
        """Stop working rows ``mask`` with their state ``frozen`` (rows of the mask only) kept
        in all later saved slots; returns the index of the rows that go on."""
        ops = self.ops
        glob = self.active[mask]
        self.status[glob] = status
        self.t_stop[glob] = t_at
        field = self.field.subset(ops.index(mask))
        H, F, gn = self.snapshot(frozen, t_frozen, field)
        rows = self._glob(glob)
        s = self.saved
        for b in self.names:
            self.out[b][s:, rows] = frozen[b]
        self.H[s:, rows], self.F[s:, rows], self.G[s:, rows] = H, F, gn
        bad = self._nonfinite(H, F, gn)
        if bad is not None:  # the objective is undefined where it stops: keep the last save
            self._keep_last_saved(glob[bad], self._kind(H, F, gn)[bad])
        return self._drop(mask)

    def _kind(self, *values: Any) -> np.ndarray:
        """Per row: "nonfinite" where a value is NaN, "diverged" where one is ±inf only (an
        overflow at a finite state is a blow-up, not an undefined objective)."""
        nan = np.zeros(len(self.ops.np(values[0])), dtype=bool)
        for v in values:
            nan |= np.isnan(np.asarray(self.ops.np(v), dtype=float))
        return np.where(nan, "nonfinite", "diverged")

    def _keep_last_saved(self, glob: np.ndarray, status: np.ndarray) -> None:
        """Rows ``glob`` (of the chunk) keep their last saved state and values in every later
        slot, with ``status`` and t_stop the time of that save."""
        s = self.saved
        if s == 0:
            raise ValueError(
                f"the objective (F, ∇F or H) is not finite at the start of trajectories "
                f"{(glob[:10] + self.offset).tolist()}{' …' if len(glob) > 10 else ''}; give "
                "starts where it is finite"
            )
        rows = self._glob(glob)
        for b in self.names:
            self.out[b][s:, rows] = self.out[b][s - 1, rows]
        for arr in (self.H, self.F, self.G):
            arr[s:, rows] = arr[s - 1, rows]
        self.status[glob] = status
        self.t_stop[glob] = self.t_saved[glob]

    # -- events
    def event_values(
        self, ev: Event, x: Mapping[str, Any], t: Any, field: NumericField
    ) -> np.ndarray:
        F = field.loss_and_grad(x[self.position], t)[0] if ev.needs_loss(self.system) else None
        m = next(iter(x.values())).shape[0]
        if not isinstance(ev.fn, sp.Expr):  # a callable sees t as one value per row, (m,)
            tt = np.asarray(self.ops.np(t) if hasattr(t, "shape") else t, dtype=float)
            t = np.broadcast_to(tt.reshape(-1), (m,)).copy()
            if self.ops.torch:
                t = self.ops.xp.as_tensor(t, dtype=self.ops.dtype, device=self.ops.device)
        raw = ev.values(self.system, self.backend, x, F, t, field.params)
        v = np.asarray(self.ops.np(raw) if hasattr(raw, "shape") else raw, dtype=float)
        if v.size not in (1, m):
            raise ValueError(
                f"event {ev.name!r} returned shape {v.shape}; it must give one value per "
                f"trajectory, ({m},)"
            )
        return np.broadcast_to(v.reshape(-1), (m,)).copy()

    def locate(
        self,
        ev: Event,
        field: NumericField,
        x_old: dict[str, Any],
        t_old: Any,
        h: np.ndarray,
        v_old: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Bisection on the step τ ∈ (0, h] for the crossing, to within ``ev.tol``."""
        lo, hi = np.zeros(len(v_old)), np.array(h, dtype=float)
        col = self.ops.column
        while (hi - lo).max() > ev.tol:
            mid = 0.5 * (lo + hi)
            xm = self.scheme.step(field, x_old, t_old, col(mid)).x
            vm = self.event_values(ev, xm, t_old + col(mid), field)
            c = _crossed(v_old, vm, ev.direction)
            hi, lo = np.where(c, mid, hi), np.where(c, lo, mid)
        return hi, self.scheme.step(field, x_old, t_old, col(hi)).x

    def apply(self, ev: Event, x: dict[str, Any], params: dict[str, Any]) -> tuple[dict, dict]:
        action = ev.action
        if action is None:
            return x, params
        if callable(action):
            return action(dict(x), dict(params))
        x, params = dict(x), dict(params)
        for k, v in action.items():
            if k in x:
                x[k] = x[k] * 0 + v
            elif k in params:
                params[k] = v
            else:
                raise KeyError(
                    f"event action names {k!r}, neither a block ({list(x)}) nor a parameter "
                    f"({list(params)})"
                )
        return x, params

    def handle_events(
        self, x_old: dict[str, Any], xn: dict[str, Any], t_old: float, h: float, step: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        ops = self.ops
        for e, ev in enumerate(self.events):
            v_old = self.ev_old[e]
            if v_old is None:
                v_old = self.event_values(ev, x_old, t_old, self.field)
            v_new = self.event_values(ev, xn, t_old + h, self.field)
            fired = _crossed(v_old, v_new, ev.direction) & self.armed[e][self.active]
            self.ev_old[e] = v_new
            if not fired.any():
                continue
            idx = ops.index(fired)
            sub = self.field.subset(idx)
            tau, x_e = self.locate(
                ev, sub, ops.take(x_old, idx), t_old, np.full(int(fired.sum()), h), v_old[fired]
            )
            glob = self.active[fired]
            self.log += [
                EventRecord(int(i), float(t_old + tau[j]), ev.name, step)
                for j, i in enumerate(glob)
            ]
            if ev.once:
                self.armed[e][glob] = False
            if ev.terminal:
                keep = self.stop(fired, "event", t_old + tau, x_e, ops.column(t_old + tau))
                xn, x_old = ops.take(xn, keep), ops.take(x_old, keep)
                continue
            # switch, then take the rest of the step from the event with the new parameters
            x_e, new = self.apply(ev, x_e, sub.params)
            m = len(self.active)
            params = dict(self.field.params)
            for k, v in new.items():
                if v is sub.params.get(k):
                    continue
                col = ops.per_row(params[k], m)
                col[idx] = v if np.ndim(v) == 0 else v
                params[k] = col
            self.field.params = params
            sub = self.field.subset(idx)
            rest = self.scheme.step(sub, x_e, t_old + ops.column(tau), ops.column(h - tau)).x
            xn = ops.scatter(xn, idx, rest)
            self.ev_old[e] = self.event_values(ev, xn, t_old + h, self.field)
            for j in range(e):  # earlier events saw the state before this switch
                self.ev_old[j] = None
        return x_old, xn

    # -- checks after a step
    def rows_bad(self, x: Mapping[str, Any]) -> np.ndarray:
        """Rows with a non-finite value or one beyond the blow-up bound, in any block."""
        bad = np.zeros(next(iter(x.values())).shape[0], dtype=bool)
        for b in self.names:
            v = self.ops.np(x[b])
            with np.errstate(invalid="ignore"):
                bad |= ~np.isfinite(v).all(-1) | (np.abs(v).max(-1) > self.blowup)
        return bad

    def check_divergence(
        self, x_old: dict[str, Any], xn: dict[str, Any], t_new: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # fast path: Σ x² per block (one BLAS pass, no cancellation; NaN and ±inf propagate)
        # bounds every |xᵢ|; only when it exceeds the bound are the rows tested one by one
        if self.ops.torch:
            sq = sum(float(torch_dot(xn[b])) for b in self.names)
        else:
            sq = sum(float(np.dot(xn[b].ravel(), xn[b].ravel())) for b in self.names)
        if sq <= self.blowup * self.blowup:  # False for NaN
            return x_old, xn
        bad = self.rows_bad(xn)
        return self._stop_rows(bad, "diverged", x_old, xn, t_new)

    def _stop_rows(
        self, bad: np.ndarray, status: str, x_old: dict[str, Any], xn: dict[str, Any], t_new: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop rows ``bad`` of a step to t_new with ``status``, keeping their state x_old."""
        if bad.any():
            frozen = self.ops.take(x_old, self.ops.index(bad))
            t_frozen = t_new if np.ndim(t_new) == 0 else t_new[self.ops.index(bad)]
            t_at = t_new if np.ndim(t_new) == 0 else self.ops.np(t_new).reshape(-1)[bad]
            keep = self.stop(bad, status, t_at, frozen, t_frozen)
            xn, x_old = self.ops.take(xn, keep), self.ops.take(x_old, keep)
        return x_old, xn

    def check_domain(
        self, x_old: dict[str, Any], xn: dict[str, Any], t_new: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop rows that left a level set's domain (BBI: V = F − ΔV ≤ 1e-40) with status
        ``"domain"`` and their last state inside: the field is not defined there. Fixed-step
        and adaptive schemes; scipy's solvers locate it as a terminal event; torchdiffeq
        freezes the row at V ≤ ε^⅜·V(x₀), ε the dtype's epsilon (t_stop: the first saved
        time at the edge, or the last one inside when a fixed-grid step jumped past it).
        The flow reaches V = 0 in finite time with the field singular there, so an adaptive
        scheme's steps shrink towards it without end: there a row stops once its accepted
        state has V ≤ 1e-12·V(x₀)."""
        bad = self.outside(xn, t_new)
        if bad is None:
            return x_old, xn
        return self._stop_rows(bad, "domain", x_old, xn, t_new)

    def outside(
        self, xn: dict[str, Any], t_new: Any, margin: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Rows of ``xn`` outside the level set's domain, V ≤ 1e-40, or with V ≤ ``margin``
        (per row) when given; None when the system has no domain."""
        v = self.domain_values(xn, t_new)
        if v is None:
            return None
        with np.errstate(invalid="ignore"):
            out = ~(v > 1e-40)
            return out if margin is None else out | (v <= margin)

    def domain_values(self, xn: dict[str, Any], t_new: Any) -> np.ndarray | None:
        """The level set's domain function (BBI: V = F − ΔV) at the rows of ``xn``."""
        ls = self.system.level_set
        if ls is None or ls.domain is None or len(self.active) == 0:
            return None
        if self._domain_fn is None:
            from ..symbolic.system import compiled_expression

            self._domain_fn = compiled_expression(self.system, [], [ls.domain], self.backend)
        F, _ = self.field.loss_and_grad(xn[self.position], t_new)
        values = self.field.params
        names = {p.name: p.symbol.name for p in self.system.parameters}
        (v,) = self._domain_fn(dict(xn), F, None, t_new, **{names[k]: a for k, a in values.items()})
        v = self.ops.np(v).reshape(-1).astype(float)
        return np.broadcast_to(v, (len(self.active),)).copy()

    def check_convergence(self, xn: dict[str, Any], t_new: Any) -> dict[str, Any]:
        if self.gtol is None or len(self.active) == 0:
            return xn
        _, g = self.field.loss_and_grad(xn[self.position], t_new)
        conv = self.ops.np((g * g).sum(-1) ** 0.5) < self.gtol
        if conv.any():
            idx = self.ops.index(conv)
            t_at = t_new if np.ndim(t_new) == 0 else self.ops.np(t_new).reshape(-1)[conv]
            t_fr = t_new if np.ndim(t_new) == 0 else t_new[idx]
            keep = self.stop(conv, "converged", t_at, self.ops.take(xn, idx), t_fr)
            xn = self.ops.take(xn, keep)
        return xn

    # -- the loops
    def run_fixed(self, t0: float, h: float, n: int, save_at: Sequence[int], bar: Any) -> None:
        save_set = set(save_at)
        self.save(t0)
        self.x = self.check_domain(self.x, self.x, t0)[1]  # a start outside stops at t₀
        tick = max(1, n // 200)
        for k in range(n):
            if len(self.active) == 0:
                break
            t_old = t0 + k * h
            t_new = t0 + (k + 1) * h
            x_old = self.x
            st = self.scheme.step(self.field, x_old, t_old, h)
            xn = st.x
            x_old, xn = self.check_solve(st, x_old, xn, t_new)
            x_old, xn = self.check_divergence(x_old, xn, t_new)
            x_old, xn = self.check_domain(x_old, xn, t_new)
            if self.events and len(self.active):
                x_old, xn = self.handle_events(x_old, xn, t_old, h, k)
            xn = self.check_convergence(xn, t_new)
            self.x = xn
            self.stats["steps"] += 1
            if k + 1 in save_set:
                if len(self.active):
                    self.save(t_new)
                else:
                    self._skip_save()
            if bar is not None and (k + 1) % tick == 0:
                bar.update(tick)
        while self.saved < len(save_at):  # every trajectory stopped early
            self._skip_save()

    def _skip_save(self) -> None:
        self.saved += 1

    def check_solve(
        self, st: Any, x_old: dict[str, Any], xn: dict[str, Any], t_new: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An implicit scheme reports its solve's residual per row (``info["residual"]``):
        rows above the scheme's ``tol`` (after its own step halving) stop with status
        ``"unconverged"`` and their last state, since the step does not solve the scheme's
        equation (the discrete gradient's H(x') ≤ H(x) would not hold)."""
        residual = st.info.get("residual")
        if residual is None:
            return x_old, xn
        tol = getattr(self.scheme, "tol", 0.0)
        r = np.asarray(self.ops.np(residual), dtype=float).reshape(-1)
        m = len(self.active)
        r = np.broadcast_to(r, (m,)) if r.size in (1, m) else r[:m]
        with np.errstate(invalid="ignore"):
            failed = r > tol  # a NaN residual comes with a NaN state: "diverged" below
        self.stats["unconverged_solves"] += int(failed.sum())
        return self._stop_rows(failed, "unconverged", x_old, xn, t_new)

    def run_adaptive(
        self, grid: np.ndarray, h0: float, controller: StepController, max_steps: int, bar: Any
    ) -> None:
        """Step every row with its own h from ``grid[0]``, landing on each saved time.

        Per row: a step is accepted when the controller's err ≤ 1, and h ← h·factor(err)
        either way (within [h_min, h_max]); a step whose error estimate is not finite is
        rejected and h divided by 10. A row stops as ``"diverged"`` (state non-finite or
        beyond ``blowup``), ``"stalled"`` (t + h = t: the step underflowed, or a step rejected
        at h_min), ``"max_steps"`` (``max_steps`` steps, accepted and rejected, on this row),
        ``"domain"``, ``"converged"`` (|∇F| < gtol at the accepted state, or at the scheme's
        Euler predictor x + h·f(x) when it reports one in ``info["predictor"]``: the
        reference code's test for Euler–Richardson GD, which stops there) or
        ``"nonfinite"`` (see :meth:`save`)."""
        ops = self.ops
        self.save(ops.column(np.full(len(self.active), grid[0])))
        self.x = self.check_domain(self.x, self.x, grid[0])[1]  # a start outside stops at t₀
        v0 = self.domain_values(self.x, grid[0])
        margin = np.zeros(self.B)
        if v0 is not None:
            margin[self.active] = 1e-12 * v0
        m = len(self.active)
        # per working row: time, next step, steps taken (filtered together whenever rows stop)
        rowv = {
            "t": np.full(m, grid[0]),
            "h": np.full(m, float(np.clip(h0, controller.h_min, controller.h_max))),
            "n": np.zeros(m, dtype=np.int64),
        }

        def drop(mask: np.ndarray) -> None:
            for k in rowv:
                rowv[k] = rowv[k][~mask]

        def stop(mask: np.ndarray, status: str, state: dict, t_at: np.ndarray) -> None:
            """Stop working rows ``mask`` with ``state`` (their rows) at times ``t_at``."""
            kept = self.stop(mask, status, t_at, state, ops.column(t_at))
            self.x = ops.take(self.x, kept)
            drop(mask)

        for target in grid[1:]:
            while len(self.active):
                t, h = rowv["t"], rowv["h"]
                todo = t < target - 1e-12 * max(1.0, abs(target))
                over = todo & (rowv["n"] >= max_steps)
                if over.any():
                    stop(over, "max_steps", ops.take(self.x, ops.index(over)), t[over])
                    continue
                if not todo.any():
                    break
                rowv["n"][todo] += 1
                idx = ops.index(todo)
                xs = ops.take(self.x, idx)
                hs = np.minimum(h[todo], target - t[todo])
                sub = self.field.subset(idx)
                st = self.scheme.step(sub, xs, ops.column(t[todo]), ops.column(hs))
                rows = np.flatnonzero(todo)
                x_step = st.x
                pred = st.info.get("predictor")
                if self.gtol is not None and pred is not None:
                    _, gp = sub.loss_and_grad(pred[self.position], ops.column(t[todo] + hs))
                    pconv = ops.np((gp * gp).sum(-1) ** 0.5) < self.gtol
                    if pconv.any():  # stopped at the predictor, which meets gtol
                        mask = np.zeros(len(t), dtype=bool)
                        mask[rows[pconv]] = True
                        p_idx = ops.index(pconv)
                        stop(mask, "converged", ops.take(pred, p_idx), t[mask] + hs[pconv])
                        sel = ops.index(~pconv)
                        x_step = ops.take(x_step, sel)
                        st_error = {b: e[sel] for b, e in st.error.items()}
                        xs = ops.take(xs, sel)
                        hs, todo = hs[~pconv], todo[~mask]
                        rows = np.flatnonzero(todo)
                        t, h = rowv["t"], rowv["h"]
                        if not len(rows):
                            continue
                    else:
                        st_error = st.error
                else:
                    st_error = st.error
                err = ops.np(controller.error_norm(ops.xp, xs, x_step, st_error)).astype(float)
                fac = np.asarray(controller.factor(err, self.scheme.error_order), dtype=float)
                finite_err = np.isfinite(err)
                with np.errstate(invalid="ignore"):
                    acc = finite_err & (err <= 1.0)
                self.stats["steps"] += int(acc.sum())
                self.stats["rejected"] += int((~acc).sum())
                # accepted rows move on
                acc_rows = rows[acc]
                new_x = ops.scatter(self.x, ops.index(acc_rows), ops.take(x_step, ops.index(acc)))
                t_before = t.copy()
                t[acc_rows] += hs[acc]
                fac = np.where(finite_err & np.isfinite(fac), fac, 0.1)
                h[rows] = np.clip(hs * fac, controller.h_min, controller.h_max)
                # a state beyond the bound (or non-finite) diverged; a step that cannot shrink
                # (t + h = t) or that was rejected at h_min stalled
                bad = self.rows_bad(new_x)
                stalled = (t + h == t) | ~(h > 0)
                if controller.h_min > 0:
                    stalled[rows] |= ~acc & (hs <= controller.h_min * (1 + 1e-12))
                stalled &= ~bad
                out = self.outside(new_x, ops.column(t), margin[self.active])
                if out is not None and (out & ~bad).any():  # left the domain: last state inside
                    out &= ~bad
                    self.x, new_x = self._stop_rows(
                        out, "domain", self.x, new_x, ops.column(t_before)
                    )
                    drop(out)
                    t_before, bad, stalled = t_before[~out], bad[~out], stalled[~out]
                prev, self.x = self.x, new_x
                if bad.any():  # stopped with their last accepted (finite) state
                    frozen = ops.take(prev, ops.index(bad))
                    kept = self.stop(
                        bad, "diverged", rowv["t"][bad], frozen, ops.column(t_before[bad])
                    )
                    self.x, prev = ops.take(self.x, kept), ops.take(prev, kept)
                    drop(bad)
                    t_before, stalled = t_before[~bad], stalled[~bad]
                if stalled.any():  # the last accepted state (this step's, if it was accepted)
                    state = ops.take(self.x, ops.index(stalled))
                    stop(stalled, "stalled", state, rowv["t"][stalled])
                if self.gtol is not None and len(self.active):
                    _, g = self.field.loss_and_grad(self.x[self.position], ops.column(rowv["t"]))
                    conv = ops.np((g * g).sum(-1) ** 0.5) < self.gtol
                    if conv.any():
                        idx = ops.index(conv)
                        stop(conv, "converged", ops.take(self.x, idx), rowv["t"][conv])
            if len(self.active):
                keep = self.save(ops.column(rowv["t"]))
                if keep is not None:
                    drop(~keep)
            else:
                self._skip_save()
            if bar is not None:
                bar.update(1)
        while self.saved < len(grid):
            self._skip_save()


# ---------------------------------------------------------------------------- scipy, torchdiffeq
def _flat_field(
    system: PortHamiltonian, problem: Any, params: dict[str, Any], names: list[str], m: int, n: int
) -> tuple[NumericField, Any]:
    field = NumericField(system, problem, params, "numpy")

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        blocks = y.reshape(len(names), m, n)
        x = {b: blocks[i] for i, b in enumerate(names)}
        dx = field(x, t)
        return np.concatenate([dx[b].reshape(-1) for b in names])

    return field, fun


def _run_scipy(
    run: _Run,
    method: str,
    grid: np.ndarray,
    rtol: float,
    atol: float,
    mode: str,
    events: Sequence[Event],
    h0: float | None,
) -> None:
    from scipy.integrate import solve_ivp

    names = run.names
    x = run.x
    B, n = x[names[0]].shape
    opts: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if h0 is not None:
        opts["first_step"] = h0
    # a level set's domain (BBI: V = F − ΔV > 0) is a terminal event per trajectory: the flow
    # reaches V = 0 in finite time, singular there; a row stops at V = 1e-12·V(x₀), inside
    ls = run.system.level_set
    v0 = run.domain_values(x, grid[0]) if ls is not None and ls.domain is not None else None
    if v0 is not None:
        mode = "per_trajectory"
    groups = [np.arange(B)] if mode == "batched" else [np.array([i]) for i in range(B)]
    for rows in groups:
        m = len(rows)
        params = {k: (v[rows] if np.ndim(v) else v) for k, v in run.field.params.items()}
        field, fun = _flat_field(run.system, run.field.objective, params, names, m, n)
        y0 = np.concatenate([x[b][rows].reshape(-1) for b in names]).astype(np.float64)
        all_events = list(events)
        if v0 is not None:
            row = int(rows[0])
            if not v0[row] > 1e-40:  # a start outside the domain stops at t₀
                for b in names:
                    run.out[b][:, row] = x[b][row]
                run.status[row], run.t_stop[row] = "domain", grid[0]
                continue
            margin = 1e-12 * float(v0[row])
            all_events.append(Event(ls.domain - margin, terminal=True, direction=-1, name="domain"))
        scipy_events = [_scipy_event(run, ev, field, params, m, n) for ev in all_events]
        with np.errstate(all="ignore"):
            sol = solve_ivp(
                fun,
                (grid[0], grid[-1]),
                y0,
                method=method,
                t_eval=grid,
                events=scipy_events or None,
                **opts,
            )
        run.stats["nfev"] = run.stats.get("nfev", 0) + int(sol.nfev)
        if mode == "batched" and sol.status == -1 and len(rows) > 1:
            # one step size is shared by the flattened batch: a failing row stops all of them,
            # so solve the rows one by one instead
            _run_scipy(run, method, grid, rtol, atol, "per_trajectory", events, h0)
            return
        Y = sol.y.T.reshape(len(sol.t), len(names), m, n)
        k = len(sol.t)
        finite = np.isfinite(Y).all(axis=(1, 3)) & (np.abs(Y).max(axis=(1, 3)) <= run.blowup)
        for j, row in enumerate(rows):
            good = finite[:, j]
            last = k if good.all() else int(np.argmin(good))
            for i, b in enumerate(names):
                col = Y[:last, i, j]
                run.out[b][:last, row] = col
                if last < len(grid):
                    run.out[b][last:, row] = col[-1] if last else x[b][row]
            if last < k or (sol.status == -1 and last < len(grid)):
                run.status[row] = "diverged"
                run.t_stop[row] = grid[last] if last < len(grid) else grid[-1]
            elif sol.status == 1 and k < len(grid):
                which = [len(te) > 0 for te in sol.t_events].index(True)
                t_ev = float(sol.t_events[which][0])
                ye = sol.y_events[which][0].reshape(len(names), m, n)
                for i, b in enumerate(names):
                    run.out[b][k:, row] = ye[i, j]
                run.t_stop[row] = t_ev
                if which < len(events):
                    run.status[row] = "event"
                    run.log.append(EventRecord(int(row), t_ev, events[which].name, -1))
                else:
                    run.status[row] = "domain"
    _fill_globals(run, grid)


def _scipy_event(
    run: _Run, ev: Event, field: NumericField, params: dict[str, Any], m: int, n: int
) -> Any:
    """The event as solve_ivp wants it: a scalar function of (t, y), terminal, directed."""
    names = run.names

    def efn(t: float, y: np.ndarray) -> float:
        blocks = y.reshape(len(names), m, n)
        xs = {b: blocks[i] for i, b in enumerate(names)}
        F = field.loss_and_grad(xs[run.position], t)[0] if ev.needs_loss(run.system) else None
        return float(np.asarray(ev.values(run.system, "numpy", xs, F, t, params)).reshape(-1)[0])

    efn.terminal = True  # type: ignore[attr-defined]
    efn.direction = ev.direction  # type: ignore[attr-defined]
    return efn


def _fill_globals(run: _Run, grid: np.ndarray) -> None:
    """H, F and |∇F| at every saved state (after the fact, for the solver backends).

    A row where they are not finite at a saved (finite) state is flagged ``"nonfinite"``
    and keeps its previous saved state and values from there on; at the start it is an
    error (the objective must be finite at x₀)."""
    field = NumericField(run.system, run.field.objective, run.field.params, run.backend)
    for s in range(len(grid)):
        x = {b: run.out[b][s] for b in run.names}
        run.H[s], run.F[s], run.G[s] = run.snapshot(x, grid[s], field)
        bad = run._nonfinite(run.H[s], run.F[s], run.G[s])
        if bad is None:
            continue
        rows = np.flatnonzero(bad)
        if s == 0:
            raise ValueError(
                f"the objective (F, ∇F or H) is not finite at the start of trajectories "
                f"{(rows[:10] + run.offset).tolist()}; give starts where it is finite"
            )
        kind = run._kind(run.H[s], run.F[s], run.G[s])[bad]
        idx = run.ops.index(bad)
        for b in run.names:
            run.out[b][s:, idx] = run.out[b][s - 1, idx]
        for arr in (run.H, run.F, run.G):
            arr[s, idx] = arr[s - 1, idx]
        fresh = run.status[rows] == "ok"
        run.status[rows[fresh]] = kind[fresh]
        run.t_stop[rows[fresh]] = grid[s - 1]
    run.saved = len(grid)


def _run_torchdiffeq(
    run: _Run, method: str, grid: np.ndarray, rtol: float, atol: float, h: float | None
) -> None:
    import torch
    from torchdiffeq import odeint

    names = run.names
    field = run.field
    y0 = tuple(run.x[b] for b in names)
    ref = y0[0]
    # a level set's domain (BBI: V = F − ΔV > 0): the flow reaches V = 0 in finite time,
    # singular there, so a row whose V is at most ε^⅜·V(x₀) is frozen (zero derivative):
    # dopri5's steps, shared by the batch, stall closer to the edge (at 1e-12·V₀ they do).
    # ECDSep with F₀ = min F reaches V → 0 by converging: such rows stop early as "domain".
    ls = run.system.level_set
    v0 = run.domain_values(run.x, grid[0]) if ls is not None and ls.domain is not None else None
    margin = None
    if v0 is not None:
        rel = torch.finfo(ref.dtype).eps ** 0.375  # 1.3e-6 in float64, 2.6e-3 in float32
        margin = torch.as_tensor(rel * v0, dtype=ref.dtype, device=ref.device).reshape(-1, 1)
        margin = torch.clamp(margin, min=torch.finfo(ref.dtype).tiny)
        symbol_of = {p.name: p.symbol.name for p in run.system.parameters}

    def domain(xs: dict[str, Any], t: Any) -> Any:  # V per row, (batch, 1)
        F, _ = field.loss_and_grad(xs[run.position], t)
        values = {symbol_of[k]: a for k, a in field.params.items()}
        (v,) = run._domain_fn(xs, F, None, t, **values)
        return torch.as_tensor(v, dtype=ref.dtype, device=ref.device).reshape(-1, 1)

    blowup = run.blowup

    def func(t: Any, y: tuple[Any, ...]) -> tuple[Any, ...]:
        # rows are independent but share dopri5's step: a row whose state passed the blow-up
        # bound, or whose derivative is not finite, is frozen (zero derivative) so that it
        # cannot stall the others; it is flagged "diverged" afterwards with its last state
        # within the bound
        xs = dict(zip(names, y, strict=True))
        dx = field(xs, t)
        live = None
        for b in names:
            ok = torch.isfinite(dx[b]).all(-1, keepdim=True) & (
                y[names.index(b)].abs().amax(-1, keepdim=True) <= blowup
            )
            live = ok if live is None else live & ok
        if margin is not None:
            live = live & (domain(xs, t) > margin)
        if bool(live.all()):
            return tuple(dx[b] for b in names)
        return tuple(torch.where(live, dx[b], torch.zeros_like(dx[b])) for b in names)

    tt = torch.as_tensor(grid, dtype=ref.dtype, device=ref.device)
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    fixed = issubclass(SOLVERS[method], FixedGridODESolver)
    if fixed and h is None:
        raise ValueError(f"torchdiffeq's fixed-grid method {method!r} needs a step: give h")
    options = {"step_size": h} if fixed else ({"first_step": h} if h is not None else None)
    try:
        ys = odeint(func, y0, tt, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as exc:  # torchdiffeq signals a collapsed step this way
        raise FloatingPointError(
            f"torchdiffeq's {method} failed ({exc}); one step size is shared by the whole "
            "batch, and it collapsed on rows still within blowup (a stiff or singular "
            f"trajectory, or one blowing up in finite time before |x| reaches blowup = "
            f"{run.blowup:g}): give a smaller blowup= (rows beyond it are frozen and flagged "
            "'diverged'), or use backend='torch' with an odeopt scheme, or scipy per trajectory"
        ) from exc
    k = len(grid)
    Y = torch.stack(ys, 1)  # (time, blocks, batch, n)
    finite = torch.isfinite(Y).all(-1).all(1) & (Y.abs().amax((1, 3)) <= run.blowup)
    finite_np = finite.cpu().numpy()
    for i, b in enumerate(names):
        run.out[b][:] = Y[:, i]
    for j in np.flatnonzero(~finite_np.all(0)):
        last = int(np.argmin(finite_np[:, j]))
        for b in names:
            run.out[b][last:, j] = run.out[b][last - 1, j] if last else run.x[b][j]
        run.status[j] = "diverged"
        run.t_stop[j] = grid[last]
    run.stats["nfev"] = run.field.evaluations
    if margin is not None:  # frozen at the domain's edge: t_stop is the first saved time there
        vs = torch.stack(
            [domain({b: Y[s, i] for i, b in enumerate(names)}, tt[s])[:, 0] for s in range(k)]
        )
        at_edge = (vs <= margin[:, 0]).cpu().numpy()
        outside = ~(vs > 1e-40).cpu().numpy()
        for j in np.flatnonzero(at_edge.any(0) & (run.status == "ok")):
            s = int(np.argmax(at_edge[:, j]))
            if outside[s, j]:  # a fixed step jumped past the edge: keep the last state inside
                for b in names:
                    run.out[b][s:, j] = run.out[b][s - 1, j] if s else run.x[b][j]
                s = max(s - 1, 0)
            run.status[j] = "domain"
            run.t_stop[j] = grid[s]
    run.saved = k
    _fill_globals(run, grid)


# ---------------------------------------------------------------------------- the one door
def integrate(
    system: PortHamiltonian,
    problem: Any,
    x0: Mapping[str, Any],
    t_span: tuple[float, float] | None = None,
    *,
    steps: int | None = None,
    h: float | None = None,
    scheme: str | Scheme = "symplectic_euler",
    backend: str | None = None,
    params: Mapping[str, Any] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    controller: StepController | None = None,
    save: str | int = "all",
    t_eval: Sequence[float] | None = None,
    events: Sequence[Event] | Event = (),
    gtol: float | None = None,
    blowup: float = 1e100,
    chunk_size: int = 1 << 17,
    progress: bool | None = None,
    max_steps: int = 100_000,
    scipy_mode: str = "batched",
) -> Trajectory:
    """Integrate ẋ = f(x, t) of ``system`` on ``problem`` from a batch of initial states.

    ``x0`` maps block names to arrays of shape (batch, n) (a missing block starts at 0).
    Time: ``t_span=(t0, t1)`` with ``h`` or ``steps``, or ``steps`` with ``h`` from t0 = 0.
    ``scheme`` is an odeopt scheme (see :mod:`odeopt.schemes`), a scipy ``solve_ivp`` method
    (``"rk45"``, …; backend ``"scipy"``) or a torchdiffeq method (``"dopri5"``, …; backend
    ``"torchdiffeq"``). ``backend`` defaults to torch for tensor inputs and numpy otherwise.
    ``params`` gives the system's parameters by keyword, scalars or per-trajectory arrays.

    Adaptive schemes (``euler_richardson``, ``heun``, scipy, torchdiffeq) take ``rtol``,
    ``atol`` (or an odeopt :class:`StepController`) and an optional first step ``h``; they
    save at ``t_eval`` (default 101 equally spaced times for ``save="all"``), landing on those
    times exactly. Fixed-step schemes save every step (``save="all"``), every K-th
    (``save=K``) or the first and last only (``save="final"``).

    A trajectory whose state becomes non-finite or exceeds ``blowup`` in magnitude is stopped
    with its last finite state and flagged ``"diverged"`` with the time; with ``gtol`` one
    whose |∇F| < gtol is stopped as ``"converged"``. ``events`` are located per trajectory
    (fixed-step odeopt schemes; terminal events also with scipy per trajectory).
    Large batches run in chunks of ``chunk_size`` trajectories so that memory stays bounded.
    """
    from ..symbolic.system import PortHamiltonian

    if not isinstance(system, PortHamiltonian):
        raise TypeError(f"integrate() takes a PortHamiltonian system, got {type(system).__name__}")
    if not hasattr(problem, "value_and_grad"):
        raise TypeError(
            "the problem must have value_and_grad(theta) -> (F, ∇F) (see odeopt.problems), "
            f"got {type(problem).__name__}"
        )
    if not isinstance(x0, Mapping):
        raise TypeError(
            "x0 maps block names to arrays of shape (batch, n), e.g. {'theta': theta0}; "
            f"got {type(x0).__name__}"
        )
    t_span, steps, h, rtol, atol, gtol, blowup, chunk_size, max_steps = _check_arguments(
        t_span, steps, h, rtol, atol, gtol, blowup, chunk_size, max_steps
    )
    events = [events] if isinstance(events, Event) else list(events)
    method = scheme if isinstance(scheme, str) else None
    if backend is None:
        if (
            method is not None
            and method.lower() in SCIPY_METHODS
            and method not in _schemes.REGISTRY
        ):
            backend = "scipy"
        elif any(_is_torch(v) for v in x0.values()):
            backend = "torch"
        else:
            backend = "numpy"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; backends are {list(BACKENDS)}")
    if backend == "numba":
        from .numba_backend import integrate_numba

        return integrate_numba(
            system,
            problem,
            x0,
            t_span,
            steps=steps,
            h=h,
            scheme=scheme,
            params=params,
            gtol=gtol,
            blowup=blowup,
            save=save,
            events=events,
            controller=controller,
            t_eval=t_eval,
        )
    if backend == "scipy":
        if method is None or method.lower() not in SCIPY_METHODS:
            raise ValueError(
                f"backend 'scipy' runs solve_ivp's methods {list(SCIPY_METHODS)}, got {scheme!r}"
            )
        if scipy_mode not in ("batched", "per_trajectory"):
            raise ValueError(f"scipy_mode is 'batched' or 'per_trajectory', got {scipy_mode!r}")
        if gtol is not None:
            raise ValueError(
                "gtol stops trajectories of odeopt's own schemes; scipy's solvers "
                "run to t1 (use an event on |∇F| via a terminal Event instead)"
            )
        if events and (scipy_mode == "batched" or any(not e.terminal for e in events)):
            raise ValueError("with scipy, events must be terminal and scipy_mode='per_trajectory'")
        sch: Scheme | None = None
    elif backend == "torchdiffeq":
        names = torchdiffeq_methods()
        if method not in names:
            raise ValueError(f"torchdiffeq has methods {names}, got {scheme!r}")
        if events or gtol is not None:
            raise ValueError(
                "events and gtol are not supported with torchdiffeq; use backend='torch'"
            )
        sch = None
    else:
        sch = _schemes.for_system(_schemes.get(scheme), system)
    dim = getattr(problem, "dim", None)
    x = _prepare_x0(system, x0, backend, dim)
    for b, v in x.items():  # a start beyond the bound would be "diverged" before any step
        biggest = float(abs(v).max()) if v.shape[0] * v.shape[1] else 0.0
        if biggest > blowup:
            raise ValueError(
                f"x0[{b!r}] has |x| = {biggest:.3g} > blowup = {blowup:g}; start within the "
                "bound (or raise blowup=)"
            )
    ref = next(iter(x.values()))
    B = ref.shape[0]
    p = _prepare_params(system, params, B, backend, ref)
    if system.switches:
        if backend in ("scipy", "torchdiffeq"):
            raise ValueError(
                f"{system.name} switches parameters at an event located per trajectory; "
                "integrate it with an odeopt fixed-step scheme (e.g. 'rk4'), not a "
                f"{backend} solver"
            )
        t_start = float(t_span[0]) if t_span is not None else 0.0
        p, switch_events = _switches(system, problem, x, p, backend, t_start)
        events = [*events, *switch_events]
    ls = system.level_set
    if ls is not None and ls.spec.symbol not in p:
        # the stored energy defaults to that of the start: E = H(x₀) per trajectory
        probe = NumericField(
            system,
            problem,
            {**p, ls.spec.symbol: 1.0},
            "torch" if backend in ("torch", "torchdiffeq") else "numpy",
        )
        t_start = float(t_span[0]) if t_span is not None else 0.0
        p[ls.spec.symbol] = probe.energy(x, t_start)[:, 0]
    fixed = sch is not None and not sch.adaptive
    if not fixed and t_span is None:
        raise ValueError("adaptive schemes and solvers need t_span=(t0, t1)")
    t0, t1, n_steps, h_fixed = _time_grid(t_span, steps, h if fixed else None)
    if fixed:
        if n_steps is None:
            raise ValueError(f"the fixed-step scheme {sch.name!r} needs a step: give h or steps")
        if t_eval is not None:
            raise ValueError("t_eval is for adaptive schemes; fixed-step ones take save='all'/K")
        save_at = _save_steps(save, n_steps)
        grid = t0 + np.asarray(save_at, dtype=float) * h_fixed
    else:
        if events and sch is not None:
            raise ValueError("events are located with fixed-step schemes; pick one, e.g. 'rk4'")
        if t_eval is not None:
            grid = np.asarray(_real_array("t_eval", t_eval), dtype=float).reshape(-1)
            if (
                grid.size < 2
                or grid[0] != t0
                or grid[-1] != t1
                or not np.isfinite(grid).all()
                or np.any(np.diff(grid) <= 0)
            ):
                raise ValueError(f"t_eval must increase from t0 = {t0:g} to t1 = {t1:g}")
        elif isinstance(save, str) and save == "final":
            grid = np.array([t0, t1])
        elif isinstance(save, str) and save == "all":
            grid = np.linspace(t0, t1, 101)
        else:
            raise ValueError("adaptive schemes save at t_eval, or save='all' / 'final'")
    if progress is None:
        work = B * (n_steps or 100)
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)()) and work > 5e7
    bar = None
    chunks = max(1, math.ceil(B / chunk_size))
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(n_steps or len(grid)) * chunks, unit="step", desc=system.name)
    parts: list[_Run] = []
    try:
        for c in range(chunks):
            sl = slice(c * chunk_size, min(B, (c + 1) * chunk_size))
            xc = {b: v[sl] for b, v in x.items()}
            pc = {k: (v[sl] if hasattr(v, "shape") and v.ndim else v) for k, v in p.items()}
            run = _Run(
                system,
                problem,
                xc,
                pc,
                sch or _schemes.get("euler"),
                "torch" if backend in ("torch", "torchdiffeq") else "numpy",
                events,
                gtol,
                blowup,
                len(grid),
            )
            run.offset = sl.start
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if backend == "scipy":
                    _run_scipy(
                        run, SCIPY_METHODS[method.lower()], grid, rtol, atol, scipy_mode, events, h
                    )
                elif backend == "torchdiffeq":
                    _run_torchdiffeq(run, method, grid, rtol, atol, h)
                elif fixed:
                    run.run_fixed(t0, h_fixed, n_steps, save_at, bar)
                else:
                    ctrl = (
                        controller
                        or getattr(sch, "controller", None)
                        or StepController(rtol=rtol, atol=atol)
                    )
                    h0 = h if h is not None else (t1 - t0) / 100
                    run.run_adaptive(grid, h0, ctrl, max_steps, bar)
            run.stats["evaluations"] = run.field.evaluations
            run.stats["evaluated_points"] = run.field.evaluated_points
            parts.append(run)
    finally:
        if bar is not None:
            bar.close()
    return _assemble(parts, grid, system, backend, scheme, ref)


def _assemble(
    parts: list[_Run],
    grid: np.ndarray,
    system: PortHamiltonian,
    backend: str,
    scheme: Any,
    ref: Any,
) -> Trajectory:
    torch_out = backend in ("torch", "torchdiffeq")
    if torch_out:
        import torch

        def cat(xs: list[Any], axis: int) -> Any:
            return xs[0] if len(xs) == 1 else torch.cat(xs, axis)

        t = torch.as_tensor(grid, dtype=ref.dtype, device=ref.device)
    else:

        def cat(xs: list[Any], axis: int) -> Any:
            return xs[0] if len(xs) == 1 else np.concatenate(xs, axis)

        t = grid
    names = parts[0].names
    offset = 0
    log: list[EventRecord] = []
    stats: dict[str, Any] = {}
    for r in parts:
        log += [EventRecord(e.trajectory + offset, e.time, e.name, e.step) for e in r.log]
        offset += r.B
        for k, v in r.stats.items():
            stats[k] = stats.get(k, 0) + v
    return Trajectory(
        t=t,
        states={b: cat([r.out[b] for r in parts], 1) for b in names},
        energy=cat([r.H for r in parts], 1),
        loss=cat([r.F for r in parts], 1),
        grad_norm=cat([r.G for r in parts], 1),
        status=np.concatenate([r.status for r in parts]),
        t_stop=np.concatenate([r.t_stop for r in parts]),
        events=log,
        stats=stats,
        system_name=system.name,
        scheme=scheme if isinstance(scheme, str) else getattr(scheme, "name", str(scheme)),
        backend=backend,
    )
