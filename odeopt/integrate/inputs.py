"""integrate()'s inputs made into arrays of one library: starts, parameters, switches.

``library`` is ``"numpy"`` or ``"torch"`` (a backend's :attr:`~.backends.Backend.arrays`);
every error names the argument and its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..arrays import arrays, is_torch
from .events import Event

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = [
    "prepare_params",
    "prepare_starts",
    "prepare_x0",
    "real_array",
    "stored_energy",
    "switches",
]


def real_array(name: str, v: Any) -> Any:
    """A tensor or array of real numbers (lists and scalars become arrays); complex, boolean,
    object or string values are refused with a TypeError naming ``name``."""
    if is_torch(v):
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


def _as_library(v: Any, library: str) -> Any:
    """A real array of the library, floating (float32/64 kept; others become float64, or
    torch's default dtype for integer tensors)."""
    if library == "torch":
        import torch

        v = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=float))
        if not v.is_floating_point():
            v = v.to(torch.get_default_dtype() if v.dtype != torch.float64 else v.dtype)
        if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            v = v.double()
        return v
    if is_torch(v):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    return v if v.dtype in (np.float32, np.float64) else v.astype(np.float64)


def prepare_x0(system: PortHamiltonian, x0: Mapping[str, Any], library: str, dim: Any) -> dict:
    """Each block of x0 as a finite (batch, n) array of ``library``, all of the position's
    dtype; a missing block starts at 0."""
    if not isinstance(x0, Mapping):
        raise TypeError(
            "x0 maps block names to arrays of shape (batch, n), e.g. {'theta': theta0}; "
            f"got {type(x0).__name__}"
        )
    library = "torch" if library == "torch" else "numpy"
    a = arrays(library)
    names = [b.name for b in system.all_blocks]
    unknown = sorted(set(x0) - set(names))
    if unknown:
        raise ValueError(f"x0 has block(s) {unknown} that {system.name} does not have ({names})")
    position = system.loss.block.name if system.loss is not None else system.blocks[0].name
    if position not in x0:
        raise ValueError(f"x0 needs the position block {position!r} (other blocks default to 0)")
    out: dict[str, Any] = {}
    for b in names:
        if b not in x0:
            continue
        v = _as_library(real_array(f"x0[{b!r}]", x0[b]), library)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2:
            raise ValueError(f"x0[{b!r}] must have shape (batch, n); got shape {tuple(v.shape)}")
        if not bool(a.isfinite(v).all()):
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
            out[b] = a.constant(v, ref)
    if dim is not None and ref.shape[1] != dim:
        raise ValueError(f"x0[{position!r}] has n = {ref.shape[1]}, but the problem has dim {dim}")
    for b in names:
        if b not in out:
            out[b] = a.module.zeros_like(ref)
    return out


def prepare_params(
    system: PortHamiltonian, params: Mapping[str, Any] | None, batch: int, library: str, ref: Any
) -> dict[str, Any]:
    """The system's parameter values (defaults and ``params``): floats, or (batch,) arrays
    of ``library`` with ref's dtype and device; a stored quantity is left out."""
    values = system.with_parameters(**dict(params or {}))
    a = arrays("torch" if library == "torch" else "numpy")
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:  # a stored quantity (the energy E of a level set): set from x₀
            continue
        raw = real_array(f"parameter {k!r}", v.detach().cpu().numpy() if is_torch(v) else v)
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
        out[k] = a.constant(arr, ref)
    return out


def prepare_starts(
    system: PortHamiltonian, x0: Mapping[str, Any], library: str, dim: Any, blowup: float
) -> dict[str, Any]:
    """:func:`prepare_x0`, refusing a start beyond ``blowup`` (it would be "diverged" before
    any step)."""
    x = prepare_x0(system, x0, library, dim)
    for b, v in x.items():
        biggest = float(abs(v).max()) if v.shape[0] * v.shape[1] else 0.0
        if biggest > blowup:
            raise ValueError(
                f"x0[{b!r}] has |x| = {biggest:.3g} > blowup = {blowup:g}; start within the "
                "bound (or raise blowup=)"
            )
    return x


def _numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if is_torch(v) else v


def switches(
    system: PortHamiltonian,
    problem: Any,
    x: dict[str, Any],
    p: dict[str, Any],
    library: str,
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
    F0 = np.asarray(_numpy(F0), dtype=float)
    names = {pr.symbol: pr.name for pr in system.parameters}
    p = dict(p)
    a = arrays("torch" if library == "torch" else "numpy")
    ref = next(iter(x.values()))

    def value(e: sp.Expr, params: Mapping[str, Any]) -> Any:
        args = sorted(e.free_symbols, key=lambda s: s.name)
        fn = sp.lambdify(args, e, "numpy")
        return fn(*(params[names[s]] for s in args))

    def as_library(v: Any) -> Any:
        if library == "torch":
            return a.constant(np.asarray(v, float), ref)
        return np.asarray(v, dtype=float)

    events = []
    for sw in system.switches:
        goal = sw.goal
        if sw.relative:
            if not (isinstance(goal, sp.Symbol) and goal in names):
                raise ValueError("a relative switch's goal must be a single parameter")
            p[names[goal]] = as_library(np.asarray(value(goal, p), float) * F0)
        below = F0 <= np.asarray(_numpy(value(goal, p)), float)
        if below.any():
            for k, v in sw.set.items():
                old = np.broadcast_to(np.asarray(_numpy(p[names[k]]), float), F0.shape)
                new = np.broadcast_to(np.asarray(_numpy(value(v, p)), float), F0.shape)
                p[names[k]] = as_library(np.where(below, new, old))

        def action(state: dict, params: dict, sw: Any = sw) -> tuple[dict, dict]:
            params = dict(params)
            for k, v in sw.set.items():
                params[names[k]] = value(v, params)
            return state, params

        fn = system.loss - goal
        events.append(Event(fn, action=action, direction=-1, once=True, name=f"switch at {fn}"))
    return p, events


def stored_energy(
    system: PortHamiltonian,
    problem: Any,
    x: dict[str, Any],
    p: dict[str, Any],
    library: str,
    t0: float,
) -> dict[str, Any]:
    """The parameters with a level set's stored energy defaulting to that of the start,
    E = H(x₀) per trajectory."""
    from .field import NumericField

    ls = system.level_set
    if ls is None or ls.spec.symbol in p:
        return p
    probe = NumericField(system, problem, {**p, ls.spec.symbol: 1.0}, library)
    return {**p, ls.spec.symbol: probe.energy(x, t0)[:, 0]}
