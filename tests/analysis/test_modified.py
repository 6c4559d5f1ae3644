"""Modified equations (backward error analysis) and the Hessian–vector products they need:
the symbolic fields against the hand derivations, GD and heavy ball iterates against the
modified and the original flows (measured orders), hvp against finite differences, sympy and
autograd, and the refusals."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy as sp
import torch

import odeopt as oo
from odeopt import problems
from odeopt.analysis.modified import ModifiedSystem, NoModifiedEquation, eta, modified_equation
from odeopt.problems.base import HessianUnavailable
from odeopt.symbolic.language import LossDerivative

ETAS = np.array([0.01, 0.005, 0.0025])
T = 1.0
#: a non-quadratic objective on which GD with these steps is well behaved (∇²F ≈ 3…18 there)
OBJECTIVE = problems.rosenbrock(b=5.0)
START = np.array([[-0.5, 0.6], [0.3, -0.2]])


def _slope(errors: list[float]) -> float:
    return float(np.polyfit(np.log(ETAS), np.log(errors), 1)[0])


def _gd_against_flows(
    system: oo.PortHamiltonian, scheme: str, orders: tuple[int, ...], x0: dict
) -> tuple[list[list[float]], list[float]]:
    """max |iterate − flow| at t = T for each η: for the modified equations of ``orders`` and
    for the original flow (both integrated by rk4 with h = η/4)."""
    rule = oo.discretize(system, scheme)
    mods = [rule.modified_equation(order=r) for r in orders]
    err_mod: list[list[float]] = [[] for _ in orders]
    err_orig: list[float] = []
    for e in ETAS:
        n = int(round(T / e))
        it = oo.integrate(system, OBJECTIVE, x0, scheme=scheme, h=e, steps=n, save="final")
        fine = {"scheme": "rk4", "h": e / 4, "steps": 4 * n, "save": "final"}
        for k, mod in enumerate(mods):
            flow = oo.integrate(mod, OBJECTIVE, x0, params={"eta": e}, **fine)
            err_mod[k].append(float(np.abs(it["theta"][-1] - flow["theta"][-1]).max()))
        orig = oo.integrate(system, OBJECTIVE, x0, **fine)
        err_orig.append(float(np.abs(it["theta"][-1] - orig["theta"][-1]).max()))
    return err_mod, err_orig


# ------------------------------------------------------------------ symbolic fields
def test_gradient_descent_follows_implicit_gradient_regularisation() -> None:
    rule = oo.discretize(oo.zoo.gradient_flow(), "euler")
    mod = rule.modified_equation()
    assert isinstance(mod, ModifiedSystem) and mod.order == 1
    F = rule.system.loss
    g = F.grad
    # θ' = −g − (η/2)∇²F·g = −∇(F + (η/4)|∇F|²)  (Barrett & Dherin 2021)
    assert sp.simplify(mod.vector_field["theta"] - (-g - eta / 2 * F.hvp(g))) == 0
    grad_of_regulariser = F.hvp(g) / 2  # ∂/∂θᵢ ¼|∇F|² = ½(∇²F·g)ᵢ
    assert sp.simplify(mod.vector_field["theta"] + g + eta * grad_of_regulariser) == 0
    assert mod.terms[0]["theta"] == -g
    assert [p.name for p in mod.parameters] == ["eta"]
    assert mod.derivative_symbols == (LossDerivative(F, (g,)),)
    assert "dtheta/dt = -g + η·(-∇²F·g/2)" in str(mod)
    assert r"\nabla^{2} F" in mod._repr_latex_()


def test_heavy_ball_symplectic_euler_modified_equation_is_the_hand_derivation() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler")
    mod = modified_equation(rule)
    theta, p = rule.system.blocks
    F = rule.system.loss
    g = F.grad
    m = rule.system.parameter("mass").symbol
    gam = rule.system.parameter("friction").symbol
    # Φ: p₁ = p + η f_p, θ' = θ + η p₁/m, p' = p₁, with f₀ = (p/m, f_p), f_p = −g − γp/m:
    # d₁ = f₀, d₂ = (f_p/m, 0), f₀′f₀ = (f_p/m, −∇²F·p/m − (γ/m) f_p), f₁ = d₂ − ½ f₀′f₀
    f_p = -g - gam * p / m
    f1_theta = f_p / (2 * m)
    f1_p = F.hvp(p) / (2 * m) + gam * f_p / (2 * m)
    assert sp.simplify(mod.terms[0]["theta"] - p / m) == 0
    assert sp.simplify(mod.terms[0]["p"] - f_p) == 0
    assert sp.simplify(mod.terms[1]["theta"] - f1_theta) == 0
    assert sp.simplify(mod.terms[1]["p"] - f1_p) == 0
    assert sp.simplify(mod.vector_field["p"] - (f_p + eta * f1_p)) == 0
    assert [q.name for q in mod.parameters] == ["mass", "friction", "eta"]


def test_second_order_gradient_descent_needs_third_derivatives() -> None:
    mod = oo.discretize(oo.zoo.gradient_flow(), "euler").modified_equation(order=2)
    F = mod.loss
    g = F.grad
    # f₂ = −(1/3)∇²F∇²F g − (1/12)∇³F[g, g]
    f2 = -F.hvp(F.hvp(g)) / 3 - F.derivative(g, g) / 12
    assert sp.simplify(mod.terms[2]["theta"] - f2) == 0
    order = list(mod.derivative_symbols)
    assert set(order) == {F.hvp(g), F.hvp(F.hvp(g)), F.derivative(g, g)}
    assert order.index(F.hvp(g)) < order.index(F.hvp(F.hvp(g)))  # inner products first


@pytest.mark.parametrize("scheme", ["midpoint", "rk4", "leapfrog"])
def test_second_order_schemes_have_no_first_correction(scheme: str) -> None:
    system = oo.zoo.gradient_flow() if scheme != "leapfrog" else oo.zoo.heavy_ball(friction=0.0)
    mod = oo.discretize(system, scheme).modified_equation()
    if scheme == "leapfrog":  # Störmer–Verlet is second order without friction only
        gam = system.parameter("friction").symbol
        assert all(sp.simplify(e.subs(gam, 0)) == 0 for e in mod.terms[1].values())
        assert any(e != 0 for e in mod.terms[1].values())
    else:
        assert all(e == 0 for e in mod.terms[1].values())


def test_energy_balance_is_not_a_port_hamiltonian_verdict() -> None:
    mod = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").modified_equation()
    bal = mod.energy_balance()
    assert bal.verdict == "not proved"
    assert "not port-Hamiltonian" in bal.reason
    m = mod.parameter("mass").symbol
    gam = mod.parameter("friction").symbol
    p = mod.block("p")
    assert sp.simplify(bal.rate_original + gam * oo.sqnorm(p) / m**2) == 0
    assert bal.correction.has(eta) and any(
        isinstance(s, oo.symbolic.language.Reduction) and s.summand.has(mod.loss.hvp(p))
        for s in bal.correction.free_symbols
    )


def test_loss_derivative_symbols_are_multilinear_hashable_and_picklable() -> None:
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    m = oo.parameters("m", positive=True)
    e = F.hvp(p / m - 3 * F.grad * oo.sqnorm(p))
    assert sp.expand(e - (F.hvp(p) / m - 3 * oo.sqnorm(p) * F.hvp(F.grad))) == 0
    assert F.derivative(p, F.grad) == F.derivative(F.grad, p)  # symmetric
    assert F.hvp(0 * p) == 0
    s = F.derivative(F.grad, F.hvp(p))
    assert pickle.loads(pickle.dumps(s)) == s
    assert str(F.hvp(p)) == "∇²F·p"
    with pytest.raises(TypeError, match="no coordinate symbol"):
        F.hvp(m)


# ------------------------------------------------------------------ iterates against flows
def test_gradient_descent_iterates_follow_the_modified_flow_to_second_order() -> None:
    (err_mod1, err_mod2), err_orig = _gd_against_flows(
        oo.zoo.gradient_flow(), "euler", (1, 2), {"theta": START}
    )
    slopes = _slope(err_mod1), _slope(err_mod2), _slope(err_orig)
    print("GD slopes (modified order 1, order 2, gradient flow):", slopes)
    assert slopes[0] == pytest.approx(2.0, abs=0.25)
    assert slopes[1] == pytest.approx(3.0, abs=0.3)
    assert slopes[2] == pytest.approx(1.0, abs=0.25)
    assert err_mod1[-1] < 0.1 * err_orig[-1]


def test_heavy_ball_iterates_follow_the_modified_flow_to_second_order() -> None:
    x0 = {"theta": START, "p": np.zeros_like(START)}
    (err_mod,), err_orig = _gd_against_flows(
        oo.zoo.heavy_ball(friction=1.0), "symplectic_euler", (1,), x0
    )
    slopes = _slope(err_mod), _slope(err_orig)
    print("heavy ball + symplectic Euler slopes (modified, original):", slopes)
    assert slopes[0] == pytest.approx(2.0, abs=0.25)
    assert slopes[1] == pytest.approx(1.0, abs=0.25)


def test_the_modified_flow_runs_on_every_backend_and_solver() -> None:
    mod = oo.discretize(oo.zoo.gradient_flow(), "euler").modified_equation()
    x0 = START[:1]
    common = {"params": {"eta": 0.01}, "save": "final"}
    ref = oo.integrate(mod, OBJECTIVE, {"theta": x0}, scheme="rk4", h=2.5e-3, steps=400, **common)
    want = ref["theta"][-1]
    runs = {
        "torch rk4": oo.integrate(
            mod,
            OBJECTIVE,
            {"theta": torch.tensor(x0)},
            scheme="rk4",
            h=2.5e-3,
            steps=400,
            **common,
        ),
        "scipy rk45": oo.integrate(
            mod,
            OBJECTIVE,
            {"theta": x0},
            (0.0, T),
            scheme="rk45",
            rtol=1e-10,
            atol=1e-12,
            **common,
        ),
        "euler_richardson": oo.integrate(
            mod,
            OBJECTIVE,
            {"theta": x0},
            (0.0, T),
            scheme="euler_richardson",
            rtol=1e-5,  # measured error 4e-7 (1e-6: 4e-8, 3× the steps)
            atol=1e-8,
            **common,
        ),
    }
    for name, run in runs.items():
        got = np.asarray(run["theta"][-1])
        assert run.status.tolist() == ["ok"], name
        assert np.abs(got - want).max() < 1e-4, name
    assert np.abs(np.asarray(runs["torch rk4"]["theta"][-1]) - want).max() < 1e-12
    # the flow moved away from gradient flow by O(η): the HVP term is live
    gf = oo.integrate(
        oo.zoo.gradient_flow(),
        OBJECTIVE,
        {"theta": x0},
        scheme="rk4",
        h=2.5e-3,
        steps=400,
        save="final",
    )
    assert np.abs(gf["theta"][-1] - want).max() > 1e-4


# ------------------------------------------------------------------ Hessian–vector products
FUNCTIONS = [
    problems.rosenbrock(),
    problems.himmelblau(),
    problems.beale(),
    problems.zakharov(3),
    problems.rastrigin(3),
    problems.ackley(2),
    problems.poly_three(),
]


@pytest.mark.parametrize("problem", FUNCTIONS, ids=lambda p: p.name)
def test_hvp_matches_the_sympy_hessian_and_finite_differences(problem: problems.Problem) -> None:
    rng = np.random.default_rng(1)
    theta = rng.uniform(-1.5, 1.5, (4, problem.dim))
    v, w = rng.standard_normal((2, 4, problem.dim))
    F, xs = problem.sympy()
    hessian = sp.lambdify(xs, sp.hessian(F, xs), "numpy")
    exact = np.stack(
        [np.asarray(hessian(*row), float) @ vr for row, vr in zip(theta, v, strict=True)]
    )
    scale = 1.0 + np.abs(exact).max()
    hv = problem.hvp(theta, v)
    assert np.abs(hv - exact).max() < 1e-10 * scale
    hv_torch = problem.hvp(torch.tensor(theta), torch.tensor(v))  # autograd through _evaluate
    assert isinstance(hv_torch, torch.Tensor) and hv_torch.dtype == torch.float64
    assert np.abs(hv_torch.numpy() - exact).max() < 1e-10 * scale
    eps = 1e-6
    fd = (problem.grad(theta + eps * v) - problem.grad(theta - eps * v)) / (2 * eps)
    assert np.abs(hv - fd).max() < 1e-6 * scale
    # third derivatives: ∇³F[v, w] = d/dε ∇²F(θ + εw)·v
    d3 = problem.derivative(theta, v, w)
    fd3 = (problem.hvp(theta + eps * w, v) - problem.hvp(theta - eps * w, v)) / (2 * eps)
    assert np.abs(d3 - fd3).max() < 1e-6 * (1.0 + np.abs(fd3).max())
    d3t = problem.derivative(torch.tensor(theta), torch.tensor(v), torch.tensor(w)).numpy()
    assert np.abs(d3t - d3).max() < 1e-9 * (1.0 + np.abs(d3).max())


def test_hvp_of_quadratics_is_exact() -> None:
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    q = problems.quadratic(2, A=A, b=[1.0, -1.0])
    v = np.array([[1.0, 2.0], [-3.0, 0.5]])
    assert np.array_equal(q.hvp(np.zeros((2, 2)), v), v @ A)
    assert np.array_equal(q.derivative(np.zeros((2, 2)), v, v), np.zeros((2, 2)))
    ls = problems.random_least_squares(3, seed=2)
    v3 = np.eye(3)
    assert np.allclose(ls.hvp(np.zeros((3, 3)), v3), 2 * ls.W.T @ ls.W, atol=1e-12)


def test_hvp_of_a_torch_module_is_autograd() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    X, y = torch.randn(10, 3), torch.randn(10, 1)
    prob = problems.torch_module(model, X, y, torch.nn.functional.mse_loss)
    theta = prob.initial(seed=1, batch=2, backend="torch")
    v = torch.randn(2, prob.dim, dtype=torch.float64)
    hv = prob.hvp(theta, v)

    def loss(row: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, prob.unflatten(row), (X.double(),))
        return torch.nn.functional.mse_loss(out, y.double())

    for i in range(2):
        H = torch.func.hessian(loss)(theta[i])
        assert torch.allclose(hv[i], H @ v[i], atol=1e-10)
    hv_np = prob.hvp(theta.numpy(), v.numpy())
    assert isinstance(hv_np, np.ndarray) and np.allclose(hv_np, hv.numpy(), atol=1e-12)


def test_hvp_of_callables_needs_torch() -> None:
    x = np.array([[1.0, 2.0]])
    torch_value = problems.from_functions(lambda th: (th**3).sum(-1), dim=2)
    assert np.allclose(torch_value.hvp(x, np.ones((1, 2))), 6 * x)
    numpy_only = problems.from_functions(
        lambda th: np.sum(th**3, -1), lambda th: 3 * np.asarray(th) ** 2, dim=2
    )
    with pytest.raises(HessianUnavailable, match="hvp needs the Hessian: give the problem a sympy"):
        numpy_only.hvp(x, x)
    mod = oo.discretize(oo.zoo.gradient_flow(), "euler").modified_equation()
    with pytest.raises(TypeError, match="hvp needs the Hessian"):
        oo.integrate(
            mod, numpy_only, {"theta": x}, scheme="rk4", h=0.1, steps=2, params={"eta": 0.1}
        )


# ------------------------------------------------------------------ refusals
def test_integrate_needs_eta() -> None:
    mod = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").modified_equation()
    x0 = {"theta": START}
    with pytest.raises(TypeError, match=r"needs params=\{'eta': η\}: η is the step"):
        oo.integrate(mod, OBJECTIVE, x0, scheme="rk4", h=0.01, steps=2)
    with pytest.raises(ValueError, match="'eta' .* declared positive but was given -0.01"):
        oo.integrate(mod, OBJECTIVE, x0, scheme="rk4", h=0.01, steps=2, params={"eta": -0.01})
    with pytest.raises(TypeError, match="not port-Hamiltonian .* discrete gradient"):
        oo.integrate(
            mod, OBJECTIVE, x0, scheme="discrete_gradient", h=0.01, steps=2, params={"eta": 0.01}
        )


def test_adaptive_rules_are_refused_and_fixed_step_heun_is_second_order() -> None:
    from odeopt.schemes import EnergyDecrease, EulerRichardson, StepController

    ctrl = EulerRichardson(controller=StepController(norm="l2", rtol=0, atol=1e-3))
    for scheme in (ctrl, EnergyDecrease("euler")):
        with pytest.raises(NoModifiedEquation, match="adaptive"):
            oo.discretize(oo.zoo.gradient_flow(), scheme).modified_equation()
    # Heun's step at a fixed h is of order 2: no η¹ term
    mod = oo.discretize(oo.zoo.gradient_flow(), "heun").modified_equation()
    assert sp.simplify(mod.terms[1]["theta"]) == 0


def test_a_modified_system_is_not_discretized_compiled_or_exported() -> None:
    mod = oo.discretize(oo.zoo.gradient_flow(), "euler").modified_equation()
    with pytest.raises(NotImplementedError, match="modified equation.*not discretized or exported"):
        oo.discretize(mod, "euler")
    with pytest.raises(TypeError, match="loss derivatives .*∇²F·g.* integrate it"):
        mod.compile()
    with pytest.raises(TypeError, match="explicit mode is for port-Hamiltonian systems"):
        x = sp.Symbol("x", real=True)
        mod.explicit(x**2, [x])


@pytest.mark.parametrize(
    ("system", "scheme", "match"),
    [
        ("heavy_ball", "discrete_gradient", "implicit"),
        ("bbi", "symplectic_euler", "stores its energy E"),
    ],
)
def test_rules_without_a_modified_equation_are_refused(system: str, scheme: str, match: str):
    rule = oo.discretize(oo.zoo.get(system), scheme)
    with pytest.raises(NoModifiedEquation, match=match):
        rule.modified_equation()


def test_bad_orders_and_a_parameter_named_eta_are_refused() -> None:
    rule = oo.discretize(oo.zoo.gradient_flow(), "euler")
    with pytest.raises(ValueError, match="order must be an integer ≥ 1, got order=0"):
        rule.modified_equation(order=0)
    with pytest.raises(TypeError, match="order must be an integer ≥ 1, got order=1.5"):
        rule.modified_equation(order=1.5)
    with pytest.raises(TypeError, match="order must be an integer ≥ 1, got order=True"):
        rule.modified_equation(order=True)
    theta = oo.blocks("theta")
    e = oo.parameters("eta", positive=True)
    system = oo.PortHamiltonian(oo.loss(theta), [theta], J=[[0]], R=[[e]], parameters={e: 1.0})
    with pytest.raises(NoModifiedEquation, match="already has a parameter named 'eta'"):
        oo.discretize(system, "euler").modified_equation()


def test_a_rough_update_has_no_modified_equation_past_its_smooth_order() -> None:
    rule = oo.discretize(oo.zoo.adam(), "euler")
    assert "sign" in str(rule.modified_equation(order=1).vector_field["theta"])
    with pytest.raises(NoModifiedEquation, match="to order 2 differentiates .* not smooth"):
        rule.modified_equation(order=2)


def test_a_problem_stays_picklable_after_hvp() -> None:
    import pickle

    problem = oo.problems.rosenbrock()
    x = np.array([[0.5, -0.3]])
    v = np.array([[1.0, 2.0]])
    first = problem.hvp(x, v)
    again = pickle.loads(pickle.dumps(problem)).hvp(x, v)
    assert np.array_equal(first, again)
