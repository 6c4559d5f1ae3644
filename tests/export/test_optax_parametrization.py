"""``to_optax(parametrization="sgd")``: a rule that identify() recognises as torch.optim.SGD
takes optax.sgd's hyper-parameters (learning_rate, a number or a schedule; momentum;
nesterov), converted to the ODE's at every update, its state kept as optax.sgd's trace, so
that a schedule acts on it exactly as on optax.sgd."""

from __future__ import annotations

import ast
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import odeopt as oo
from odeopt import zoo

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

#: learning rates that change during the 100 steps: halved at 10, 20, …; decayed by 0.7
#: every 15 updates (staircase)
SCHEDULES = {
    "piecewise": lambda: optax.piecewise_constant_schedule(
        0.1, {k: 0.5 for k in range(10, 100, 10)}
    ),
    "staircase": lambda: optax.exponential_decay(0.1, 15, 0.7, staircase=True),
}


@pytest.fixture(autouse=True, scope="module")
def _float64() -> Iterator[None]:
    """float64 in JAX for this module only."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@functools.cache
def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 6)), rng.normal(size=(40, 3))


def _params() -> dict:
    """A pytree of three leaves: a matrix, a vector, a scalar (in a nested dict)."""
    rng = np.random.default_rng(1)
    return {
        "W": jnp.asarray(0.1 * rng.normal(size=(6, 3))),
        "rest": {"b": jnp.zeros(3), "c": jnp.asarray(0.5)},
    }


def _loss(p: dict) -> jax.Array:
    X, Y = _data()
    r = X @ p["W"] + p["rest"]["b"] - Y
    return 0.5 * jnp.mean(r * r) + 0.05 * p["rest"]["c"] ** 2


def _run(tx, steps: int = 100) -> tuple[np.ndarray, object]:
    """``steps`` updates of ``tx`` under ``jax.jit``: the flat parameters and the state."""

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(params)])
    return flat, state


def _trace(state) -> np.ndarray:
    """optax.sgd's trace (in a chain's first state, or ours)."""
    tr = state.trace if hasattr(state, "trace") else state[0].trace
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tr)])


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize(
    ("scheme", "nesterov"), [("symplectic_euler", False), ("symplectic_euler_nesterov", True)]
)
def test_sgd_parametrization_equals_optax_sgd_under_a_schedule(schedule, scheme, nesterov) -> None:
    """Heavy ball with optax.sgd's hyper-parameters: (learning_rate=schedule, momentum=0.9)
    is optax.sgd with the same arguments to 1e-12 over 100 jitted float64 updates on a pytree
    of three leaves, and its state is optax.sgd's trace."""
    rule = oo.discretize(zoo.heavy_ball(), scheme)
    ours, state = _run(
        rule.to_optax(
            learning_rate=SCHEDULES[schedule](),
            momentum=0.9,
            nesterov=nesterov,
            parametrization="sgd",
        )
    )
    ref, ref_state = _run(
        optax.sgd(learning_rate=SCHEDULES[schedule](), momentum=0.9, nesterov=nesterov)
    )
    start = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(_params())])
    assert np.abs(ref - start).max() > 0.3  # θ moved: not a comparison of standstills
    assert np.abs(ours - ref).max() <= 1e-12
    assert np.abs(_trace(state) - _trace(ref_state)).max() <= 1e-12
    assert int(state.count) == 100
    # the schedule matters: a constant learning rate ends elsewhere
    const, _ = _run(rule.to_optax(0.1, momentum=0.9, nesterov=nesterov, parametrization="sgd"))
    assert np.abs(const - ours).max() > 1e-3  # measured ≥ 8.8e-3


def test_the_ode_parametrization_under_a_schedule_drifts_from_optax_sgd() -> None:
    """The point, measured: with lr = h a schedule on h changes SGD's lr and momentum; equal
    to optax.sgd with a constant rate (1e-12), far from it under the schedule."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    h = 0.1**0.5  # SGD(0.1, 0.9) = heavy ball with h = √0.1, m = 1, γ = 0.1/h
    still = _run(rule.to_optax(lr=h, friction=0.1 / h))[0]
    assert np.abs(still - _run(optax.sgd(0.1, momentum=0.9))[0]).max() <= 1e-12
    halving = optax.piecewise_constant_schedule(h, {k: 0.5 for k in range(10, 100, 10)})
    ode = _run(rule.to_optax(lr=halving, friction=0.1 / h))[0]
    sgd = _run(optax.sgd(SCHEDULES["piecewise"](), momentum=0.9))[0]
    assert np.abs(ode - sgd).max() > 1e-2


def test_a_learning_rate_of_zero_is_optax_sgds() -> None:
    """A warm-up from 0 and a decay to 0: at learning_rate 0 (h = 0, where the ODE's state
    scale is 0) the update is 0 and the trace follows optax.sgd's recurrence; no NaN."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")

    def schedule():
        return optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 60, end_value=0.0)

    ours, state = _run(rule.to_optax(schedule(), momentum=0.9, parametrization="sgd"), 80)
    ref, ref_state = _run(optax.sgd(schedule(), momentum=0.9), 80)
    assert np.isfinite(ours).all()
    assert np.abs(ours - ref).max() <= 1e-12
    assert np.abs(_trace(state) - _trace(ref_state)).max() <= 1e-12


def test_inject_hyperparams_changes_learning_rate_and_momentum_as_on_optax_sgd() -> None:
    """optax.inject_hyperparams builds the transformation inside the jitted update with
    traced hyper-parameters (not checked then); setting momentum and learning_rate in its
    state after 30 updates acts as on optax.sgd (1e-12)."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler_nesterov")
    from odeopt.export.jax_source import to_source

    module: dict = {}
    exec(to_source(rule, None, "sgd"), module)  # noqa: S102
    factory = module["heavy_ball_symplectic_euler_nesterov_sgd"]

    def run(make):
        tx = optax.inject_hyperparams(make)(learning_rate=0.1, momentum=0.9, nesterov=True)
        params = _params()
        state, update = tx.init(params), jax.jit(tx.update)
        grad = jax.jit(jax.grad(_loss))
        for k in range(60):
            if k == 30:
                state.hyperparams["momentum"] = jnp.asarray(0.5)
                state.hyperparams["learning_rate"] = jnp.asarray(0.03)
            updates, state = update(grad(params), state, params)
            params = optax.apply_updates(params, updates)
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(params)])

    ours, ref = run(factory), run(optax.sgd)
    assert np.abs(ours - ref).max() <= 1e-12
    unchanged, _ = _run(rule.to_optax(0.1, momentum=0.9, nesterov=True, parametrization="sgd"), 60)
    assert np.abs(unchanged - ref).max() > 1e-3


def test_plain_gradient_descent_and_weight_decay() -> None:
    """Gradient flow + Euler is optax.sgd without momentum (momentum=None or 0 only); heavy
    ball with weight decay is optax.add_decayed_weights(wd) chained before optax.sgd."""
    sched = SCHEDULES["staircase"]
    GD = oo.discretize(zoo.gradient_flow(), "euler")
    ours, state = _run(GD.to_optax(sched(), parametrization="sgd"))
    assert np.abs(ours - _run(optax.sgd(sched()))[0]).max() <= 1e-12
    assert not hasattr(state, "trace")
    with pytest.raises(ValueError, match=r"momentum must be 0\.0, got momentum=0\.9: gradient"):
        GD.to_optax(0.1, momentum=0.9, parametrization="sgd")
    GD.to_optax(0.1, momentum=0.0, parametrization="sgd")  # no momentum either way
    ref = _run(optax.chain(optax.add_decayed_weights(0.05), optax.sgd(sched(), momentum=0.9)))
    for system in (zoo.weight_decay(zoo.heavy_ball(), 0.1), zoo.massaroli()):
        rule = oo.discretize(system, "symplectic_euler")
        tx = rule.to_optax(sched(), momentum=0.9, weight_decay=0.05, parametrization="sgd")
        assert np.abs(_run(tx)[0] - ref[0]).max() <= 1e-12
    undecayed = _run(optax.sgd(sched(), momentum=0.9))[0]
    assert np.abs(undecayed - ref[0]).max() > 1e-3  # the decay did something


def test_hyper_parameters_are_checked_with_their_names() -> None:
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    with pytest.raises(ValueError, match="nesterov must be False, got nesterov=True: .*sgd with"):
        rule.to_optax(0.1, momentum=0.9, nesterov=True, parametrization="sgd")
    with pytest.raises(ValueError, match="momentum must be nonnegative, got momentum=-0.1"):
        rule.to_optax(0.1, momentum=-0.1, parametrization="sgd")
    with pytest.raises(
        ValueError, match=r"friction \(from learning_rate=0.1, momentum=1.5\) must be nonneg"
    ):
        rule.to_optax(0.1, momentum=1.5, parametrization="sgd")
    with pytest.raises(ValueError, match="learning_rate must be nonnegative, got learning_rate=-1"):
        rule.to_optax(-1.0, parametrization="sgd")
    with pytest.raises(TypeError, match="parametrization must be 'ode' or 'sgd'"):
        rule.to_source(framework="jax", parametrization=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is torch.optim.SGD, not rmsprop"):
        rule.to_optax(0.1, parametrization="rmsprop")
    rms = oo.discretize(zoo.rmsprop(), "symplectic_euler")
    with pytest.raises(NotImplementedError, match="optax.sgd's .* is torch.optim.RMSprop"):
        rms.to_optax(0.1, parametrization="rmsprop")


def test_the_ode_output_is_unchanged_and_the_sgd_file_is_clean(tmp_path: Path) -> None:
    """parametrization="ode" is the default; the "sgd" file imports only jax and optax, is
    ruff-clean and names its factory …_sgd."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    assert rule.to_source(framework="jax") == rule.to_source(framework="jax", parametrization="ode")
    for system, scheme in [
        ("heavy_ball", "symplectic_euler"),
        ("heavy_ball", "symplectic_euler_nesterov"),
        ("gradient_flow", "euler"),
        ("massaroli", "symplectic_euler"),
    ]:
        src = oo.discretize(zoo.get(system), scheme).to_source(
            framework="jax", parametrization="sgd"
        )
        tree = ast.parse(src)
        imported = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        } | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= {"jax", "optax", "math", "typing", "Any", "NamedTuple"}
        assert f"def {system}_{scheme}_sgd(learning_rate" in src
        (tmp_path / f"{system}_{scheme}.py").write_text(src)
    exe = Path(sys.executable).with_name("ruff")
    ruff = str(exe) if exe.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the test extras)")
    cmd = [ruff, "check", "--isolated", "--select", "F,E,W", "--line-length", "100"]
    proc = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_weight_decay_zero_is_accepted_by_a_rule_without_weight_decay() -> None:
    """As torch.optim.SGD(weight_decay=0.0): heavy ball's factory takes weight_decay=0.0 (and
    None), and refuses another value naming it and saying how to get one."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    sched = SCHEDULES["piecewise"]
    plain = _run(rule.to_optax(sched(), momentum=0.9, parametrization="sgd"), 30)[0]
    zero = _run(rule.to_optax(sched(), momentum=0.9, weight_decay=0.0, parametrization="sgd"), 30)
    assert np.array_equal(plain, zero[0])
    with pytest.raises(
        ValueError,
        match=r"weight_decay must be 0\.0, got weight_decay=0\.1: .*sgd with weight_decay=0\.0 "
        r"\(add a weight-decay term",
    ):
        rule.to_optax(0.1, momentum=0.9, weight_decay=0.1, parametrization="sgd")


def test_massaroli_defaults_weight_decay_to_its_own_c() -> None:
    """massaroli's weight_decay is 2c/a: its default is the system's (c = 0.01, a = 1: 0.02),
    not torch's 0 (c = 0 is no massaroli), in the optax factory and the torch optimizer."""
    import inspect

    import torch

    rule = oo.discretize(zoo.massaroli(), "symplectic_euler")
    tx = rule.to_optax(0.1, momentum=0.9, parametrization="sgd")
    ref = optax.chain(optax.add_decayed_weights(0.02), optax.sgd(0.1, momentum=0.9))
    assert np.abs(_run(tx, 30)[0] - _run(ref, 30)[0]).max() <= 1e-12
    Opt = rule.to_torch(parametrization="sgd")
    assert inspect.signature(Opt).parameters["weight_decay"].default == 0.02
    w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = Opt([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2,), 1 - 0.1 * 1.02, dtype=torch.float64))
