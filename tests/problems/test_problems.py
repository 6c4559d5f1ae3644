"""odeopt.problems: analytic gradients, backends, exact forms and computed critical points.

Reference facts (Bensaid's one-neuron catalogues, Himmelblau's nine points, the known minima)
are typed here and checked against what the library computes.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import odeopt.problems as P
from odeopt.problems.exact import polynomial_critical_points

# -- the problems under test ------------------------------------------------------------------


def _quartic_value(theta):
    return (theta**4).sum(-1) + theta[:, 0] * theta[:, -1]


def _quartic_grad(theta):
    g = 4 * theta**3
    g[:, 0] = g[:, 0] + theta[:, -1]
    g[:, -1] = g[:, -1] + theta[:, 0]
    return g


FACTORIES = {
    "quadratic": lambda: P.quadratic(3),
    "quadratic_general": lambda: P.quadratic(3, A=[[2, 1, 0], [1, 3, 0], [0, 0, -1]], b=[1, 2, 3]),
    "least_squares": lambda: P.random_least_squares(4, seed=1),
    "rosenbrock": P.rosenbrock,
    "ackley": lambda: P.ackley(3),
    "ackley_ecd": lambda: P.ackley(2, b=0.02),
    "zakharov": lambda: P.zakharov(4),
    "rastrigin": lambda: P.rastrigin(3),
    "himmelblau": P.himmelblau,
    "beale": P.beale,
    "poly_two": P.poly_two,
    "poly_three": P.poly_three,
    "poly_four": P.poly_four,
    "poly_five": P.poly_five,
    "functions_grad": lambda: P.from_functions(_quartic_value, _quartic_grad, dim=3),
    "functions_autograd": lambda: P.from_functions(_quartic_value, dim=3),
    "digits_mlp": lambda: P.digits_mlp(hidden=3, samples=24),
}
_CACHE: dict[str, P.Problem] = {}


def problem(name: str) -> P.Problem:
    if name not in _CACHE:
        _CACHE[name] = FACTORIES[name]()
    return _CACHE[name]


NAMES = list(FACTORIES)
ANALYTIC = [n for n in NAMES if not n.startswith(("functions", "digits"))]
POLYNOMIAL = [
    "quadratic",
    "quadratic_general",
    "rosenbrock",
    "zakharov",
    "himmelblau",
    "beale",
    "poly_two",
    "poly_three",
    "poly_four",
    "poly_five",
]


def points(p: P.Problem, batch: int = 6, seed: int = 0) -> np.ndarray:
    """Points in the problem's box, shrunk for the wide boxes so that values stay moderate."""
    theta = p.sample(batch, seed=seed)
    return theta if p.domain[1] <= 10 else theta / 8


def finite_difference(p: P.Problem, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences (F(θ + heᵢ) − F(θ − heᵢ)) / 2h, all rows and i in one batch."""
    batch, dim = theta.shape
    step = h * np.eye(dim)
    plus = (theta[:, None, :] + step).reshape(-1, dim)
    minus = (theta[:, None, :] - step).reshape(-1, dim)
    return ((p.value(plus) - p.value(minus)) / (2 * h)).reshape(batch, dim)


# -- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    p = problem(name)
    theta = points(p)
    F, g = p.value_and_grad(theta)
    assert F.shape == (6,) and g.shape == (6, p.dim)
    fd = finite_difference(p, theta)
    scale = 1.0 + np.abs(F)[:, None]
    np.testing.assert_allclose(g / scale, fd / scale, rtol=0, atol=2e-6)
    np.testing.assert_allclose(p.grad(theta), g, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(p.value(theta), F, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_torch_autograd(name):
    p = problem(name)
    theta = torch.tensor(points(p, seed=1), requires_grad=True)
    (auto,) = torch.autograd.grad(p.value(theta).sum(), theta)
    torch.testing.assert_close(p.grad(theta.detach()), auto, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(ANALYTIC),
    arrays(np.float64, (5, 4), elements=st.floats(-3, 3, allow_nan=False, width=64)),
)
def test_numpy_and_torch_agree(name, raw):
    p = problem(name)
    theta = raw[:, : p.dim] if p.dim <= 4 else np.resize(raw, (5, p.dim))
    F, g = p.value_and_grad(theta)
    Ft, gt = p.value_and_grad(torch.from_numpy(theta))
    assert Ft.dtype == gt.dtype == torch.float64
    np.testing.assert_allclose(Ft.numpy(), F, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gt.numpy(), g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_is_preserved(name):
    p = problem(name)
    theta = points(p, batch=3)
    for x, dtype in [
        (theta.astype(np.float32), np.float32),
        (theta, np.float64),
        (torch.tensor(theta, dtype=torch.float32), torch.float32),
        (torch.tensor(theta), torch.float64),
    ]:
        F, g = p.value_and_grad(x)
        assert type(F) is type(x) and type(g) is type(x)
        assert F.dtype == g.dtype == p.value(x).dtype == p.grad(x).dtype == dtype
        assert F.shape == (3,) and g.shape == (3, p.dim)
    F, g = p.value_and_grad(theta)
    Ft, gt = p.value_and_grad(torch.from_numpy(theta))
    np.testing.assert_allclose(Ft.numpy(), F, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gt.numpy(), g, rtol=1e-12, atol=1e-12)
    F32 = p.value(theta.astype(np.float32))
    np.testing.assert_allclose(F32, p.value(theta), rtol=1e-4, atol=1e-4)


def test_empty_batch():
    p = problem("rosenbrock")
    F, g = p.value_and_grad(np.zeros((0, 2)))
    assert F.shape == (0,) and g.shape == (0, 2)


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_raise(name):
    p = problem(name)
    bad = [(p.dim,), (2, p.dim + 1), (1, 2, p.dim), ()]
    for shape in bad:
        for theta in (np.zeros(shape), torch.zeros(shape, dtype=torch.float64)):
            for method in (p.value, p.grad, p.value_and_grad):
                with pytest.raises(ValueError, match=r"\(batch, \d+\)") as info:
                    method(theta)
                assert str(shape) in str(info.value)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=3))
def test_any_other_shape_raises(shape):
    p = problem("himmelblau")
    theta = np.zeros(shape)
    if len(shape) == 2 and shape[1] == 2:
        assert p.value(theta).shape == (shape[0],)
        return
    with pytest.raises(ValueError, match=r"expected|must have shape"):
        p.value(theta)


# -- exact forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANALYTIC)
def test_sympy_form_matches_value(name):
    p = problem(name)
    expr, symbols = p.sympy()
    assert len(symbols) == p.dim
    f = sp.lambdify(symbols, expr, "numpy")
    theta = points(p, batch=4, seed=2)
    exact = np.array([float(f(*row)) for row in theta])
    np.testing.assert_allclose(p.value(theta), exact, rtol=1e-12, atol=1e-12)


def test_no_sympy_form_for_callables():
    assert problem("functions_grad").sympy() is None
    assert problem("digits_mlp").sympy() is None


def test_ackley_uses_exact_constants():
    expr, xs = P.ackley(2, b=0.02).sympy()
    assert expr.subs({x: 0 for x in xs}) == 0  # −a − e + a + e, exactly
    assert expr.has(sp.pi) and expr.has(sp.Rational(-1, 50))  # c = 2π and b = 1/50 exactly


# -- minima and critical points ---------------------------------------------------------------


def hessian_fd(p: P.Problem, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    rows = np.concatenate([x + h * np.eye(p.dim), x - h * np.eye(p.dim)])
    g = p.grad(rows)
    H = (g[: p.dim] - g[p.dim :]) / (2 * h)
    return (H + H.T) / 2


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in ("functions_autograd", "digits_mlp")]
)
def test_known_minima_have_zero_gradient_and_stated_value(name):
    p = problem(name)
    for m in p.minima:
        x = np.asarray(m.point, dtype=np.float64)[None, :]
        F, g = p.value_and_grad(x)
        assert abs(F[0] - m.value) <= 1e-9 * (1 + abs(m.value))
        assert np.max(np.abs(g)) <= 1e-7


@pytest.mark.parametrize(
    "name, count",
    [("rosenbrock", 1), ("himmelblau", 4), ("beale", 1), ("ackley", 1), ("rastrigin", 1)]
    + [("zakharov", 1), ("quadratic", 1), ("quadratic_general", 0), ("least_squares", 1)]
    + [("poly_two", 4), ("poly_three", 1), ("poly_four", 4), ("poly_five", 4)],
)
def test_number_of_known_minima(name, count):
    assert len(problem(name).minima) == count


@pytest.mark.parametrize("name", POLYNOMIAL)
def test_critical_points_are_critical_and_classified(name):
    p = problem(name)
    cps = p.critical_points()
    assert cps, "every polynomial problem here has a critical point"
    values = [c.numeric_value for c in cps]
    assert values == sorted(values)
    for c in cps:
        assert all(isinstance(v, sp.Basic) for v in (*c.point, c.value))
        x = c.numeric[None, :]
        F, g = p.value_and_grad(x)
        assert abs(F[0] - c.numeric_value) <= 1e-9 * (1 + abs(F[0]))
        assert np.max(np.abs(g)) <= 1e-7 * (1 + abs(F[0]))
        eig = np.linalg.eigvalsh(hessian_fd(p, c.numeric))
        scale = 1 + np.max(np.abs(eig))
        np.testing.assert_allclose(c.hessian_eigenvalues, eig, atol=1e-4 * scale)
        assert c.degenerate == (c.kind == "degenerate")
        if c.kind == "minimum":
            assert min(eig) > 0
        elif c.kind == "maximum":
            assert max(eig) < 0
        elif c.kind == "saddle":
            assert min(eig) < 0 < max(eig)
        else:
            assert min(np.abs(eig)) <= 1e-4 * scale


def catalogue(p: P.Problem) -> dict[tuple[float, ...], tuple[float, str]]:
    return {
        tuple(np.round(c.numeric, 9).tolist()): (c.numeric_value, c.kind)
        for c in p.critical_points()
    }


def test_poly_two_catalogue():
    expected = {(0, -1): (0, "minimum"), (2, -1): (0, "minimum"), (-2, 1): (0, "minimum")}
    expected |= {(0, 1): (0, "minimum"), (1, 0): (0.25, "saddle"), (-1, 0): (0.25, "saddle")}
    expected |= {(1, -1): (0.25, "saddle"), (-1, 1): (0.25, "saddle"), (0, 0): (0.5, "maximum")}
    assert catalogue(P.poly_two()) == expected


def test_poly_three_catalogue():
    expected = {
        (0, -1): (0, "minimum"),
        (2, -1): (4, "minimum"),
        (-2, 1): (4, "minimum"),
        (0, 1): (8, "minimum"),
        (1, -1): (6.25, "saddle"),
        (-1, 0): (6.25, "saddle"),
        (1, 0): (10.25, "saddle"),
        (-1, 1): (10.25, "saddle"),
    }
    found = catalogue(P.poly_three())
    assert {k: found[k] for k in expected} == expected
    assert found[(0, 0)][1] == "maximum" and len(found) == 9
    assert [m.point for m in P.poly_three().minima] == [(0.0, -1.0)]


def test_poly_four_catalogue():
    p = P.poly_four()
    found = catalogue(p)
    for point in [(0, 1), (0, -1), (2, -1), (-2, 1)]:
        assert found[point] == (2, "minimum")
    assert sorted(m.point for m in p.minima) == [(-2, 1), (0, -1), (0, 1), (2, -1)]
    assert all(m.value == 2 for m in p.minima)
    assert min(c.numeric_value for c in p.critical_points()) == 2


def test_poly_five_catalogue():
    cps = {tuple(np.round(c.numeric, 9).tolist()): c for c in P.poly_five().critical_points()}
    assert cps[(0, 3)].kind == "minimum" and not cps[(0, 3)].degenerate
    for point in [(0, -1), (4, -1), (-4, 3)]:
        assert cps[point].kind == "degenerate" and cps[point].degenerate
        assert cps[point].value == 0
        assert 0.0 in cps[point].hessian_eigenvalues  # exactly zero, decided exactly


def test_exact_values_at_integer_points():
    cps = P.poly_three().critical_points()
    exact = {c.point: c.value for c in cps}
    assert exact[(sp.Integer(1), sp.Integer(-1))] == sp.Rational(25, 4)


def test_himmelblau_nine_critical_points():
    p = P.himmelblau()
    cps = p.critical_points()
    kinds = [c.kind for c in cps]
    assert len(cps) == 9
    assert kinds.count("minimum") == 4 and kinds.count("saddle") == 4
    assert kinds.count("maximum") == 1
    minima = [c for c in cps if c.kind == "minimum"]
    assert all(c.value == 0 for c in minima)  # exactly zero, not just numerically
    assert (sp.Integer(3), sp.Integer(2)) in [c.point for c in minima]
    assert sorted(m.point for m in p.minima)[2] == (3.0, 2.0)
    peak = next(c for c in cps if c.kind == "maximum")
    np.testing.assert_allclose(peak.numeric, [-0.270845, -0.923039], atol=1e-6)


def test_beale_and_rosenbrock_minima():
    (m,) = P.beale().minima
    assert m.point == (3.0, 0.5) and m.value == 0.0
    (c,) = P.rosenbrock(a=2, b=10).critical_points()
    assert c.point == (2, 4) and c.kind == "minimum"
    assert P.rosenbrock(a=1.5).minima[0].point == (1.5, 2.25)


def test_zakharov_origin_only_and_dimension_limit():
    (c,) = P.zakharov(3).critical_points()
    assert c.point == (0, 0, 0) and c.kind == "minimum"
    with pytest.raises(P.CriticalPointsUnavailable, match="minima"):
        P.zakharov(12).critical_points()


def test_quadratic_critical_point_solves_linear_system():
    A = [[2, 1, 0], [1, 3, 0], [0, 0, -1]]
    (c,) = problem("quadratic_general").critical_points()
    assert sp.Matrix(A) * sp.Matrix(c.point) == sp.Matrix([1, 2, 3])
    assert c.kind == "saddle" and problem("quadratic_general").minima == []
    with pytest.raises(P.CriticalPointsUnavailable, match="singular"):
        P.quadratic(2, A=[[1, 0], [0, 0]]).critical_points()
    with pytest.raises(ValueError, match="symmetric"):
        P.quadratic(2, A=[[1, 2], [0, 1]])
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        P.quadratic(2, A=np.eye(3))


def test_least_squares():
    p = problem("least_squares")
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(p.W, rng.standard_normal((4, 4)))
    np.testing.assert_array_equal(p.y, rng.standard_normal(4))
    assert P.least_squares.random is P.random_least_squares
    (c,) = p.critical_points()
    np.testing.assert_allclose(c.numeric, np.linalg.lstsq(p.W, p.y, rcond=None)[0], rtol=1e-10)
    assert c.kind == "minimum" and abs(c.numeric_value) < 1e-20
    theta = points(p, batch=2)
    np.testing.assert_allclose(p.value(theta), ((theta @ p.W.T - p.y) ** 2).sum(-1))
    W, y = sp.Matrix([[1, 0], [0, 2], [1, 1]]), sp.Matrix([1, 2, 3])
    (c,) = P.least_squares(np.array(W, dtype=float), list(y)).critical_points()
    assert W.T * W * sp.Matrix(c.point) == W.T * y  # exact normal equations
    assert c.point == (sp.Rational(13, 9), sp.Rational(10, 9))


@pytest.mark.parametrize("name", ["ackley", "rastrigin", "functions_grad", "digits_mlp"])
def test_critical_points_unavailable(name):
    with pytest.raises(P.CriticalPointsUnavailable, match="minima") as info:
        problem(name).critical_points()
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, ValueError)


def test_positive_dimensional_and_non_shape_systems():
    x, y = sp.symbols("x y", real=True)
    with pytest.raises(P.CriticalPointsUnavailable, match="not a finite set"):
        polynomial_critical_points(x**2 * y**2, (x, y))
    # lex basis {x³ − x, y} is not in shape position: solved through a separating form
    found = {(c.point, c.kind) for c in polynomial_critical_points((x**2 - 1) ** 2 + y**2, (x, y))}
    assert found == {((-1, 0), "minimum"), ((1, 0), "minimum"), ((0, 0), "saddle")}
    # a non-radical gradient ideal: x³, y³ at the only (degenerate) critical point
    (c,) = polynomial_critical_points(x**4 + y**4, (x, y))
    assert c.point == (0, 0) and c.kind == "degenerate"


# -- Ackley at the origin ---------------------------------------------------------------------


@pytest.mark.parametrize("b", [0.2, 0.02])
def test_ackley_gradient_at_origin_is_finite(b):
    p = P.ackley(4, b=b)
    theta = np.array([[0.0] * 4, [1e-300, 0, 0, 0], [1e-160, -1e-160, 0, 0]])
    for x in (theta, theta.astype(np.float32), torch.tensor(theta), torch.tensor(theta).float()):
        F, g = p.value_and_grad(x)
        assert np.all(np.isfinite(np.asarray(g))) and np.all(np.isfinite(np.asarray(F)))
        assert np.asarray(g)[0].tolist() == [0.0] * 4
    assert abs(p.value(np.zeros((1, 4)))[0]) < 1e-12


# -- sampling ---------------------------------------------------------------------------------


def test_sample():
    p = P.poly_two()
    x = p.sample(100, seed=3)
    assert x.shape == (100, 2) and x.dtype == np.float64
    assert np.all((x >= -3) & (x <= 3))
    np.testing.assert_array_equal(p.sample(100, seed=3), x)
    assert not np.array_equal(p.sample(100, seed=4), x)
    xt = p.sample(100, seed=3, backend="torch")
    assert isinstance(xt, torch.Tensor) and np.array_equal(xt.numpy(), x)
    with pytest.raises(ValueError, match="backend"):
        p.sample(2, backend="jax")


# -- callables and torch modules --------------------------------------------------------------


def test_from_functions():
    auto, given_grad = problem("functions_autograd"), problem("functions_grad")
    theta = points(auto)
    np.testing.assert_allclose(auto.grad(theta), given_grad.grad(theta), rtol=1e-12)
    numpy_only = P.from_functions(lambda t: np.sum(np.asarray(t) ** 2, axis=-1), dim=2)
    assert numpy_only.value(np.ones((3, 2))).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(TypeError, match="grad="):
        numpy_only.grad(np.ones((3, 2)))
    wrong = P.from_functions(lambda t: t, lambda t: t, dim=2)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        wrong.value(np.ones((3, 2)))


def test_torch_module_matches_plain_autograd_loop():
    p = problem("digits_mlp")
    assert p.dim == 64 * 3 + 3 + 3 * 10 + 10
    theta = p.initial(seed=0, batch=3)
    F, g = p.value_and_grad(theta)
    for i in range(3):
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 3), torch.nn.Tanh(), torch.nn.Linear(3, 10)
        ).double()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(theta[i]), model.parameters())
        loss = torch.nn.functional.cross_entropy(model(p.inputs.double()), p.targets)
        loss.backward()
        grad = torch.nn.utils.parameters_to_vector([q.grad for q in model.parameters()])
        assert abs(F[i] - loss.item()) <= 1e-12
        np.testing.assert_allclose(g[i], grad.numpy(), rtol=1e-10, atol=1e-12)


def test_torch_module_initial():
    p = problem("digits_mlp")
    state = torch.random.get_rng_state()
    a, b = p.initial(seed=0), p.initial(seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.shape == (1, p.dim) and a.dtype == np.float64
    np.testing.assert_array_equal(a, p.initial(seed=0))
    assert not np.array_equal(a, b)
    assert torch.equal(p.initial(seed=0, backend="torch"), torch.from_numpy(a))
    assert 1.5 < p.value(a)[0] < 3.5  # near log(10) at a fresh initialisation


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_device_is_preserved(name):
    p = problem(name)
    theta = points(p, batch=2)
    F, g = p.value_and_grad(torch.tensor(theta, device="cuda"))
    assert F.device.type == g.device.type == "cuda"
    np.testing.assert_allclose(F.cpu().numpy(), p.value(theta), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g.cpu().numpy(), p.grad(theta), rtol=1e-10, atol=1e-10)
