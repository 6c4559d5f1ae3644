"""One reference suite for every registered backend of ``odeopt.integrate``.

Each test runs every backend that declares the feature (``Backend.features``) and asserts
that the others refuse it with their message. Known solutions: gradient flow on
F = ½θᵀAθ, A = diag(1, 3), is θ(t) = e^{−At}θ₀; on F = −½θ² it is θ₀eᵗ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import nan_beyond

import odeopt as oo
from odeopt import problems, zoo
from odeopt.integrate import SaveAt, Stop, backends

BACKENDS = ["numpy", "torch", "scipy", "torchdiffeq", "numba"]
#: the method each backend runs the suite with; fixed-step ones take h, solvers tolerances
METHOD = {
    "numpy": "rk4",
    "torch": "rk4",
    "numba": "rk4",
    "scipy": "rk45",
    "torchdiffeq": "dopri5",
}
#: how each backend refuses a feature it does not run (a fragment of its message)
REFUSAL = {
    ("scipy", "gtol"): "gtol stops trajectories of odeopt's own schemes",
    ("torchdiffeq", "gtol"): "events and gtol are not supported with torchdiffeq",
    ("torchdiffeq", "events"): "events and gtol are not supported with torchdiffeq",
    ("scipy", "switches"): "switches parameters at an event",
    ("torchdiffeq", "switches"): "switches parameters at an event",
    ("numba", "callable_objective"): "no exact sympy form",
    ("numba", "t_eval"): "t_eval= are for adaptive schemes",
    ("scipy", "save_every"): "adaptive schemes save at t_eval",
    ("torchdiffeq", "save_every"): "adaptive schemes save at t_eval",
}

GF = zoo.gradient_flow()  # module-level systems and problems: the numba kernels are cached
A = np.diag([1.0, 3.0])
QUAD = problems.quadratic(2, A=A)
GROW = problems.quadratic(1, A=[[-1.0]])
X0 = np.array([[1.0, -0.5], [0.3, 2.0], [-1.5, 0.7]])


def runs(backend: str, feature: str) -> bool:
    return feature in backends.get(backend).features


def fixed(backend: str) -> bool:
    return runs(backend, "fixed")


def integrate(backend, system, problem, x0, *, t1, h=0.01, **kw):
    """integrate() on ``backend`` with its suite method (numpy results)."""
    if fixed(backend):  # steps= (numba takes t_span with steps, not with h)
        kw = {"steps": round(t1 / kw.pop("h", h)), **kw}
    else:
        kw = {"rtol": 1e-10, "atol": 1e-12, **kw}
    if backends.get(backend).arrays == "torch":
        x0 = {b: torch.as_tensor(np.asarray(v, dtype=float)) for b, v in x0.items()}
    kw.setdefault("scheme", METHOD[backend])
    tr = oo.integrate(system, problem, x0, t_span=(0.0, t1), backend=backend, **kw)
    assert tr.backend == backend
    return tr.numpy()


def refuses(backend: str, feature: str, call) -> None:
    with pytest.raises(ValueError, match=REFUSAL[backend, feature]):
        call()


def exact(t: float, x0: np.ndarray = X0) -> np.ndarray:
    return x0 * np.exp(-np.diag(A) * t)


def test_every_backend_is_registered_and_declares_known_features() -> None:
    assert backends.names() == BACKENDS
    for name in BACKENDS:
        b = backends.get(name)
        assert b.name == name and b.features <= set(backends.FEATURES)
    with pytest.raises(ValueError, match=r"unknown backend 'jax'; backends are \['numpy'"):
        backends.get("jax")
    # a refusal names the backends that run the feature
    msg = str(backends.get("scipy").refusal("events"))
    assert "backend 'scipy' does not run events" in msg and "'numpy' or 'torch'" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_accuracy_on_the_closed_form(backend: str) -> None:
    tr = integrate(backend, GF, QUAD, {"theta": X0}, t1=1.0, save="final")
    assert list(tr.status) == ["ok"] * 3
    np.testing.assert_allclose(tr.t, [0.0, 1.0], atol=1e-12)
    err = np.abs(tr["theta"][-1] - exact(1.0)).max()
    assert err < 1e-8, err  # rk4 at h = 0.01: 2e-9
    F = 0.5 * (exact(1.0) ** 2 * np.diag(A)).sum(1)
    np.testing.assert_allclose(tr.loss[-1], F, rtol=1e-7)


@pytest.mark.parametrize(
    ("backend", "scheme"),
    [
        *(
            (b, s)
            for b in BACKENDS
            if fixed(b) and b != "numba"
            for s in ("euler", "midpoint", "rk4")
        ),
        ("numba", "rk4"),  # one kernel (compiled once for the suite)
    ],
)
def test_order_of_fixed_step_schemes(backend: str, scheme: str) -> None:
    """The error at t = 1 falls as h^order (order from the scheme itself)."""
    order = oo.schemes.get(scheme).order
    errors = [
        np.abs(
            integrate(backend, GF, QUAD, {"theta": X0}, t1=1.0, h=h, scheme=scheme, save="final")[
                "theta"
            ][-1]
            - exact(1.0)
        ).max()
        for h in (0.1, 0.05)
    ]
    assert abs(np.log2(errors[0] / errors[1]) - order) < 0.3, errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_diverged_rows_keep_a_state_within_the_bound(backend: str) -> None:
    """θ = θ₀eᵗ passes blowup = 10 at t = ln 10 from θ₀ = 1; θ₀ = 0 stays."""
    tr = integrate(backend, GF, GROW, {"theta": [[1.0], [0.0]]}, t1=5.0, blowup=10.0)
    assert list(tr.status) == ["diverged", "ok"]
    spacing = 0.01 if fixed(backend) else 0.05  # a step, or the saved grid of a solver
    assert np.log(10) <= tr.t_stop[0] <= np.log(10) + spacing + 1e-9
    assert np.isfinite(tr["theta"]).all() and np.abs(tr["theta"]).max() <= 10
    assert (tr["theta"][:, 1] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gtol_stops_converged_rows(backend: str) -> None:
    def call():
        return integrate(backend, GF, QUAD, {"theta": X0}, t1=20.0, stop=Stop(gtol=1e-3))

    if not runs(backend, "gtol"):
        return refuses(backend, "gtol", call)
    tr = call()
    assert list(tr.status) == ["converged"] * 3 and (tr.grad_norm[-1] < 1e-3).all()
    # the first step at which the exact |∇F(t)| = |Ae^{−At}θ₀| is below gtol (±1 step)
    t = np.arange(0, 20, 0.01)
    gnorm = np.linalg.norm(
        X0[None] * (np.diag(A) * np.exp(-np.outer(t, np.diag(A))))[:, None], axis=-1
    )
    first = t[np.argmax(gnorm < 1e-3, axis=0)]
    np.testing.assert_allclose(tr.t_stop, first, atol=0.0101)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_undefined_objective_flags_its_row_and_no_nan_enters(backend: str) -> None:
    """θ₀ = 1 reaches the NaN region θ > 1.5 at t = ln 1.5 ≈ 0.405; θ₀ = 0.1 never does."""

    def call():
        return integrate(backend, GF, nan_beyond(1.5), {"theta": [[1.0], [0.1]]}, t1=1.0)

    if backend == "numba":  # it compiles the objective's sympy form, which this one lacks
        return refuses(backend, "callable_objective", call)
    tr = call()
    assert list(tr.status) == ["nonfinite", "ok"]
    for arr in (tr["theta"], tr.energy, tr.loss, tr.grad_norm):
        assert np.isfinite(np.asarray(arr)).all()
    assert 0.3 < tr.t_stop[0] < 0.41  # the last saved time where F was defined
    assert float(tr["theta"][-1, 0, 0]) <= 1.5
    np.testing.assert_allclose(tr["theta"][-1, 1, 0], 0.1 * np.e, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_saving(backend: str) -> None:
    x0 = {"theta": X0}
    if fixed(backend):
        ref = integrate("numpy", GF, QUAD, x0, t1=1.0, h=0.1)
        for save, idx in (("all", list(range(11))), (3, [0, 3, 6, 9, 10]), ("final", [0, 10])):
            for spelled in (save, SaveAt.of(save)):
                tr = integrate(backend, GF, QUAD, x0, t1=1.0, h=0.1, save=spelled)
                np.testing.assert_allclose(tr.t, ref.t[idx], atol=1e-12)
                np.testing.assert_allclose(tr["theta"], ref["theta"][idx], rtol=1e-12, atol=0)
                np.testing.assert_allclose(tr.loss, ref.loss[idx], rtol=1e-12, atol=0)
        t_eval = SaveAt(t=[0.0, 0.5, 1.0])
        if backend == "numba":
            return refuses(
                backend, "t_eval", lambda: integrate(backend, GF, QUAD, x0, t1=1.0, save=t_eval)
            )
        with pytest.raises(ValueError, match="t_eval is for adaptive schemes"):
            integrate(backend, GF, QUAD, x0, t1=1.0, save=t_eval)
        return
    for save in (SaveAt(t=[0.0, 0.25, 0.5, 1.0]), "final"):
        tr = integrate(backend, GF, QUAD, x0, t1=1.0, save=save)
        times = [0.0, 0.25, 0.5, 1.0] if save != "final" else [0.0, 1.0]
        np.testing.assert_allclose(tr.t, times, atol=1e-12)
        for s, t in enumerate(times):
            np.testing.assert_allclose(tr["theta"][s], exact(t), atol=1e-8)
    refuses(backend, "save_every", lambda: integrate(backend, GF, QUAD, x0, t1=1.0, save=5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminal_event_is_located(backend: str) -> None:
    """Gradient flow on ½|θ|²: F(t) = F₀e^{−2t}; stop at F = 0.05, t = ln(F₀/0.05)/2."""
    th0 = np.array([[1.0, 0.0], [3.0, 4.0]])
    ev = oo.Event(oo.loss(GF.blocks[0]) - 0.05, terminal=True, tol=1e-12)
    kw = {"scipy_mode": "per_trajectory"} if backend == "scipy" else {}

    def call():
        return integrate(
            backend, GF, problems.quadratic(2), {"theta": th0}, t1=5.0, events=[ev], **kw
        )

    if not runs(backend, "events") and backend != "scipy":  # scipy: terminal events only
        return refuses(backend, "events", call)
    tr = call()
    assert list(tr.status) == ["event", "event"]
    t_exact = np.log(0.5 * (th0**2).sum(1) / 0.05) / 2
    tol = 1e-9 if fixed(backend) else 1e-7  # rk4 at h = 0.01: ~1e-10
    np.testing.assert_allclose(tr.t_stop, t_exact, atol=tol)
    assert [e.trajectory for e in tr.events] == [0, 1]
    np.testing.assert_allclose(tr.loss[-1], 0.05, atol=1e-7)


BBI = zoo.bbi(delta_v=0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_domain_stop_on_a_level_set(backend: str) -> None:
    """BBI with ΔV = 0.5 on ½|θ|²: V = F − ΔV reaches 0 (at t = 1.5708 and 2.2708 for the
    first and last start); a start with F < ΔV is outside at t₀. Each row stops as "domain"
    with its last state inside (F > ΔV)."""
    x0 = {"theta": np.array([[1.0, 1.0], [0.2, 0.1], [2.0, 0.0]])}
    kw = {} if fixed(backend) else {"rtol": 1e-9, "atol": 1e-11}

    def call():
        return integrate(backend, BBI, problems.quadratic(2), x0, t1=10.0, **kw)

    if not runs(backend, "level_sets"):
        return refuses(backend, "level_sets", call)
    tr = call()
    assert list(tr.status) == ["domain"] * 3 and tr.t_stop[1] == 0.0
    loss = np.asarray(tr.loss)
    assert np.isfinite(loss).all() and (loss[-1][[0, 2]] >= 0.5).all()
    tol = {"scipy": 1e-3, "torchdiffeq": 0.1}.get(backend, 0.02)  # rk4: one step h = 0.01
    np.testing.assert_allclose(tr.t_stop[[0, 2]], [1.5708, 2.2708], atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_switches(backend: str) -> None:
    """Braking switches its gain when F reaches the goal: one event per trajectory above it."""
    system = zoo.braking(k0=0.05, k1=3.0, goal=0.2)
    x0 = {"theta": np.array([[2.0, 0.0], [0.1, 0.0]])}

    def call():
        return integrate(backend, system, problems.quadratic(2), x0, t1=4.0)

    if not runs(backend, "switches"):
        return refuses(backend, "switches", call)
    tr = call()
    assert [e.trajectory for e in tr.events] == [0]  # the second starts below the goal
    assert tr.loss[-1, 0] < 0.2


@pytest.mark.parametrize(
    ("backend", "kw"),
    [
        ("numpy", {"h": 1e-3}),
        ("torch", {"h": 1e-3}),
        ("scipy", {"scipy_mode": "batched"}),
        ("scipy", {"scipy_mode": "per_trajectory"}),
        ("torchdiffeq", {}),
        ("torchdiffeq", {"scheme": "rk4", "h": 1e-3}),  # torchdiffeq's fixed grid
    ],
)
def test_heavy_ball_matches_a_tight_reference(backend: str, kw: dict) -> None:
    """Heavy ball on Himmelblau against numpy's rk4 at h = 5e-4 (a second-order system whose
    solution has no closed form; numba's equality with numpy: test_numba_backend.py)."""
    hb = zoo.heavy_ball(friction=0.5)
    x0 = {"theta": np.random.default_rng(0).uniform(-1, 1, (4, 2))}
    ref = oo.integrate(hb, problems.himmelblau(), x0, t_span=(0, 2), steps=4000, scheme="rk4")
    if backend == "torchdiffeq" and "h" in kw:
        kw = {**kw, "rtol": 1e-8, "atol": 1e-10}  # fixed grid: h is its step, no h → steps
        x0t = {"theta": torch.as_tensor(x0["theta"])}
        tr = oo.integrate(
            hb, problems.himmelblau(), x0t, t_span=(0, 2), backend=backend, save="final", **kw
        ).numpy()
    else:
        tr = integrate(backend, hb, problems.himmelblau(), x0, t1=2.0, save="final", **kw)
    err = np.abs(tr["theta"][-1] - ref["theta"][-1]).max()
    assert err < 1e-6, err
    if backend in ("scipy", "torchdiffeq"):
        assert tr.stats["nfev"] > 0


def test_grouped_options_and_their_flat_spellings_agree() -> None:
    flat = oo.integrate(GF, QUAD, {"theta": X0}, steps=200, h=0.1, save=50, gtol=1e-3, blowup=1e3)
    grouped = oo.integrate(
        GF,
        QUAD,
        {"theta": X0},
        steps=200,
        h=0.1,
        save=SaveAt(every=50),
        stop=Stop(gtol=1e-3, blowup=1e3),
    )
    np.testing.assert_array_equal(flat["theta"], grouped["theta"])
    assert list(flat.status) == list(grouped.status) == ["converged"] * 3
    with pytest.raises(ValueError, match=r"give gtol in stop=Stop\(...\) or as gtol=, not both"):
        oo.integrate(GF, QUAD, {"theta": X0}, steps=2, h=0.1, gtol=1e-3, stop=Stop())
    with pytest.raises(ValueError, match="SaveAt takes one of t=, every=, final=True"):
        SaveAt(every=2, final=True)
    with pytest.raises(
        ValueError, match=r"SaveAt.every must be an integer ≥ 1, got SaveAt.every=0"
    ):
        SaveAt(every=0)
    with pytest.raises(ValueError, match=r"max_steps must be an integer ≥ 1, got max_steps=0"):
        Stop(max_steps=0)
    with pytest.raises(ValueError, match="give the times in save=SaveAt"):
        oo.integrate(
            GF, QUAD, {"theta": X0}, t_span=(0, 1), scheme="heun", save=SaveAt(), t_eval=[0, 1]
        )
