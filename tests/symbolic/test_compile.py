"""Compiled numpy / torch vector fields against hand-written formulas (float64, 1e-12)."""

import functools
from typing import Any

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import odeopt as oo
from odeopt.symbolic.system import compiled_expression

finite = st.floats(-10, 10, allow_nan=False, width=64)


def batch(shape):
    return arrays(np.float64, shape, elements=finite)


SHAPES = st.tuples(st.integers(1, 6), st.integers(1, 7))


@st.composite
def states(draw):
    b, n = draw(SHAPES)
    return (
        draw(batch((b, n))),  # theta
        draw(batch((b, n))),  # p
        draw(batch((b, n))),  # g
        draw(batch((b,))),  # F
    )


def heavy_ball_reference(p, g, mass, friction):
    return p / mass, -g - friction / mass * p


def bbi_reference(theta, p, g, F, delta_v):
    V = F[:, None] - delta_v
    E = np.sqrt(V * (V + np.sum(p**2, axis=-1, keepdims=True)))
    return V / E * p, -0.5 * (E / V + V / E) * g


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(states(), st.floats(0.1, 5), st.floats(0, 3))
def test_heavy_ball_numpy_and_torch(state, mass, friction):
    theta, p, g, F = state
    system = oo.zoo.heavy_ball(mass=mass, friction=friction)
    ref = heavy_ball_reference(p, g, mass, friction)
    out = system.compile("numpy").field({"theta": theta, "p": p}, F, g)
    close(out["theta"], ref[0])
    close(out["p"], ref[1])
    t = {k: torch.from_numpy(v) for k, v in {"theta": theta, "p": p}.items()}
    out_t = system.compile("torch").field(t, torch.from_numpy(F), torch.from_numpy(g))
    assert out_t["p"].dtype == torch.float64
    close(out_t["theta"].numpy(), ref[0])
    close(out_t["p"].numpy(), ref[1])


@functools.cache
def _bbi_compiled() -> tuple[Any, Any]:
    """BBI compiled once for numpy and torch (ΔV is a parameter given per call): building
    and compiling the system per example made this test take minutes."""
    system = oo.zoo.bbi()
    return system.compile("numpy"), system.compile("torch")


@settings(max_examples=60, deadline=None)
@given(states(), st.floats(-5, 0))
def test_bbi_numpy_and_torch(state, delta_v):
    theta, p, g, F = state
    F = np.abs(F) + 0.1  # V = F − ΔV > 0, where BBI is defined
    numpy_field, torch_field = _bbi_compiled()
    ref = bbi_reference(theta, p, g, F, delta_v)
    out = numpy_field.field({"theta": theta, "p": p}, F, g, delta_v=delta_v)
    close(out["theta"], ref[0])
    close(out["p"], ref[1])
    tt = {k: torch.from_numpy(v) for k, v in {"theta": theta, "p": p}.items()}
    out_t = torch_field.field(tt, torch.from_numpy(F), torch.from_numpy(g), delta_v=delta_v)
    close(out_t["theta"].numpy(), ref[0])
    close(out_t["p"].numpy(), ref[1])
    # and H = E per row
    E = np.sqrt((F - delta_v) * (F - delta_v + np.sum(p**2, axis=-1)))
    close(numpy_field.energy({"theta": theta, "p": p}, F, delta_v=delta_v), E)


def test_bbi_built_with_a_delta_v_equals_delta_v_given_per_call():
    rng = np.random.default_rng(0)
    theta, p, g = (rng.standard_normal((3, 2)) for _ in range(3))
    F = np.abs(rng.standard_normal(3)) + 0.1
    built = oo.zoo.bbi(delta_v=-2.0).compile("numpy").field({"theta": theta, "p": p}, F, g)
    given = _bbi_compiled()[0].field({"theta": theta, "p": p}, F, g, delta_v=-2.0)
    close(built["p"], given["p"])
    close(built["theta"], given["theta"])


def test_parameters_per_trajectory_and_overrides():
    rng = np.random.default_rng(0)
    theta, p, g = (rng.standard_normal((4, 3)) for _ in range(3))
    F = rng.standard_normal(4)
    field = oo.zoo.heavy_ball().compile("numpy")
    friction = np.array([0.0, 0.5, 1.0, 2.0])
    out = field.field({"theta": theta, "p": p}, F, g, friction=friction)
    close(out["p"], -g - friction[:, None] * p)
    with pytest.raises(TypeError, match=r"has no parameter\(s\) \['beta'\]"):
        field.field({"theta": theta, "p": p}, F, g, beta=1.0)
    with pytest.raises(KeyError, match=r"missing block\(s\) \['p'\]"):
        field.field({"theta": theta}, F, g)
    with pytest.raises(ValueError, match="needs the gradient g"):
        field.field({"theta": theta, "p": p}, F)


def test_torch_float32_and_constant_entries():
    system = oo.zoo.gradient_flow()
    g = torch.randn(5, 4, dtype=torch.float32)
    out = system.compile("torch").field({"theta": torch.zeros(5, 4)}, torch.zeros(5), g)
    assert out["theta"].dtype == torch.float32
    torch.testing.assert_close(out["theta"], -g)


def test_explicit_compiled_matches_n_dimensional():
    x, y = sp.symbols("x y", real=True)
    system = oo.zoo.bbi(delta_v=-1.0)
    ex = system.explicit((1 - x) ** 2 + 100 * (y - x**2) ** 2, [x, y])
    rng = np.random.default_rng(3)
    theta, p = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    F = (1 - theta[:, 0]) ** 2 + 100 * (theta[:, 1] - theta[:, 0] ** 2) ** 2
    g = np.stack(
        [
            -2 * (1 - theta[:, 0]) - 400 * theta[:, 0] * (theta[:, 1] - theta[:, 0] ** 2),
            200 * (theta[:, 1] - theta[:, 0] ** 2),
        ],
        -1,
    )
    a = ex.compile("numpy").field({"theta": theta, "p": p})
    b = system.compile("numpy").field({"theta": theta, "p": p}, F, g)
    close(a["theta"], b["theta"])
    close(a["p"], b["p"])
    close(ex.compile("numpy").loss({"theta": theta, "p": p}), F)
    at = ex.compile("torch").field({"theta": torch.from_numpy(theta), "p": torch.from_numpy(p)})
    close(at["p"].numpy(), b["p"])


def test_squares_in_denominators_compile_correctly():
    """θ' = p/m² (H = F + |p|²/(2m²)) and the heavy-ball rate −γ|p|²/m² at m ≠ 1."""
    theta, p = oo.blocks("theta p")
    m = oo.parameters("m", positive=True)
    F = oo.loss(theta)
    s = oo.PortHamiltonian(
        F + oo.sqnorm(p) / (2 * m**2), [theta, p], J=[[0, 1], [-1, 0]], parameters={m: 3.0}
    )
    P = np.array([[1.0, -2.0]])
    out = s.compile("numpy").field({"theta": P, "p": P}, np.zeros(1), P)
    close(out["theta"], P / 9.0)
    hb = oo.zoo.heavy_ball(mass=2.0, friction=1.0)
    rate = compiled_expression(hb, [], [hb.energy_balance().rate])
    (r,) = rate({"theta": P, "p": P}, np.zeros(1), P, 0.0, m=2.0, gamma=1.0)
    close(r, [-1.0 / 4.0 * 5.0])


def function_zoo_system():
    """A system whose entries use Piecewise, Max, sign, exp(−t), sqrt of a parameter."""
    theta, p = oo.blocks("theta p")
    a = oo.parameters("a", positive=True)
    F = oo.loss(theta)
    damping = (
        sp.Piecewise((2, sp.Eq(p, theta)), (1, True))
        + sp.Max(p, 0) ** 2
        + sp.sign(theta) ** 2
        + sp.exp(-oo.t) * sp.sqrt(a)
    )
    return oo.PortHamiltonian(
        F + oo.sqnorm(p) / 2,
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, damping]],
        parameters={a: 4.0},
    )


def test_torch_agrees_with_numpy_on_functions_and_keeps_float32():
    system = function_zoo_system()
    theta = np.array([[1.0, -2.0, 0.0], [0.5, 0.5, 3.0]])
    p = np.array([[1.0, 1.0, -1.0], [0.5, -0.1, 2.0]])
    g = np.array([[0.1, 0.2, 0.3], [-0.4, 0.5, 0.6]])
    F = np.array([1.0, 2.0])
    t = np.array([0.0, 1.5])
    a = np.array([4.0, 9.0])  # per-trajectory parameter
    ref_damp = (
        np.where(p == theta, 2.0, 1.0)
        + np.maximum(p, 0) ** 2
        + np.sign(theta) ** 2
        + np.exp(-t)[:, None] * np.sqrt(a)[:, None]
    )
    out = system.compile("numpy").field({"theta": theta, "p": p}, F, g, t, a=a)
    close(out["p"], -g - ref_damp * p)
    T = {k: torch.from_numpy(v) for k, v in {"theta": theta, "p": p}.items()}
    out_t = system.compile("torch").field(T, torch.from_numpy(F), torch.from_numpy(g), t, a=a)
    close(out_t["p"].numpy(), -g - ref_damp * p)
    # float32 in, float32 out, for both backends, with float64 parameters and time
    T32 = {k: v.float() for k, v in T.items()}
    out32 = system.compile("torch").field(T32, torch.from_numpy(F), torch.from_numpy(g).float())
    assert {v.dtype for v in out32.values()} == {torch.float32}
    s32 = {k: v.astype(np.float32) for k, v in {"theta": theta, "p": p}.items()}
    out32n = system.compile("numpy").field(s32, F, g.astype(np.float32), 0.0, a=4.0)
    assert {v.dtype for v in out32n.values()} == {np.dtype(np.float32)}
    # default time 0.0 as a Python float works in torch too
    system.compile("torch").field(T, torch.from_numpy(F), torch.from_numpy(g))


def test_runtime_parameter_values_are_checked():
    field = oo.zoo.heavy_ball().compile("numpy")
    s = {"theta": np.zeros((2, 2)), "p": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"parameter 'friction' \(gamma\) is declared nonnegative"):
        field.field(s, np.zeros(2), np.zeros((2, 2)), friction=-1.0)
    with pytest.raises(ValueError, match=r"parameter 'mass' \(m\) is declared positive"):
        field.field(s, np.zeros(2), np.zeros((2, 2)), mass=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="parameter 'mass' must be finite"):
        field.field(s, np.zeros(2), np.zeros((2, 2)), mass=np.inf)
