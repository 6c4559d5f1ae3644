"""The JAX export (``rule.to_optax``, ``rule.to_source(framework="jax")``): the same plan as
the torch export, rendered as an optax transformation, equal to the torch optimizer in
float64 under ``jax.jit``."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import odeopt as oo
from odeopt import zoo

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

#: the rules the issue names, with hyper-parameters that move θ far in 100 steps; random
#: bounces and jitter off (the two frameworks draw different random numbers)
RULES: dict[str, tuple[Callable[[], oo.UpdateRule], dict]] = {
    "heavy_ball": (
        lambda: oo.discretize(zoo.heavy_ball(), "symplectic_euler"),
        dict(lr=0.1, friction=0.5),
    ),
    "nesterov": (lambda: oo.discretize(zoo.nesterov(), "symplectic_euler"), dict(lr=0.1)),
    "bbi": (
        lambda: oo.discretize(zoo.bbi(), "symplectic_euler"),
        dict(lr=0.05, bounce_every=0, bounce_patience=0),
    ),
    "ecdsep": (lambda: oo.discretize(zoo.ecdsep(), "symplectic_euler"), dict(lr=0.05, noise=0.0)),
    "lc_egd": (
        lambda: oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler")),
        dict(lr=0.1),
    ),
    "rmsprop": (lambda: oo.discretize(zoo.rmsprop(), "symplectic_euler"), dict(lr=0.01)),
}


@pytest.fixture(autouse=True, scope="module")
def _float64() -> Iterator[None]:
    """float64 in JAX for this module only (the torch side runs in float64 too)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def _problem() -> tuple[np.ndarray, ...]:
    """Least squares with two parameter tensors: W (5, 3) and b (3,); F > 0 at the minimum
    (the level-set rules divide by F − ΔV)."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 5)), rng.normal(size=(20, 3))
    return X, Y, 0.5 * rng.normal(size=(5, 3)), 0.5 * rng.normal(size=3)


def _loss_jax(p: dict) -> jax.Array:
    X, Y, _, _ = _problem()
    r = X @ p["W"] + p["b"] - Y
    return 0.5 * jnp.mean(r * r) + 0.1


def _run_torch(rule: oo.UpdateRule, steps: int, **hp) -> tuple[np.ndarray, list[dict]]:
    """The parameters and the shared state after each step of the torch export."""
    X, Y, W0, b0 = (torch.tensor(a) for a in _problem())
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(b0.clone())
    opt = rule.to_torch()([W, b], **hp)
    out, globs = [], []

    def closure():
        opt.zero_grad()
        r = X @ W + b - Y
        loss = 0.5 * (r * r).mean() + 0.1
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        out.append(torch.cat([W.detach().flatten(), b.detach()]).numpy())
        globs.append(dict(opt.state.get("odeopt", {})))
    return np.array(out), globs


def _run_jax(
    rule: oo.UpdateRule, steps: int, jit: bool = True, **hp
) -> tuple[np.ndarray, list[dict]]:
    """The parameters and the shared state after each step of the optax export
    (``jax.jit(tx.update)``; value_fn, a function, static)."""
    _, _, W0, b0 = _problem()
    tx = rule.to_optax(**hp)
    params = {"W": jnp.asarray(W0), "b": jnp.asarray(b0)}
    state = tx.init(params)
    update = jax.jit(tx.update, static_argnames=("value_fn",)) if jit else tx.update
    out, globs = [], []
    for _ in range(steps):
        value, grads = jax.value_and_grad(_loss_jax)(params)
        updates, state = update(grads, state, params, value=value, value_fn=_loss_jax)
        params = optax.apply_updates(params, updates)
        out.append(np.concatenate([np.ravel(params["W"]), np.ravel(params["b"])]))
        globs.append(state.glob)
    return np.array(out), globs


@pytest.mark.parametrize("name", list(RULES))
def test_the_optax_export_equals_the_torch_export_over_100_steps(name) -> None:
    """float64, jax.jit: max |Δθ| over all 100 steps ≤ 1e-12 while θ moves by O(1)."""
    make, hp = RULES[name]
    rule = make()
    ours, globs = _run_jax(rule, 100, **hp)
    ref, ref_globs = _run_torch(rule, 100, **hp)
    glob, ref_glob = globs[-1], ref_globs[-1]
    _, _, W0, b0 = _problem()
    start = np.concatenate([W0.ravel(), b0])
    assert np.abs(ref[-1] - start).max() > 0.3  # the comparison is not of two standstills
    assert np.abs(ours - ref).max() <= 1e-12
    if name == "lc_egd":  # the step controller took the same decisions
        # (grow = 10⁴: each accepted step is followed by ~13 rejected ones)
        assert int(glob["rejected"]) == ref_glob["rejected"] <= 95
        assert float(glob["h_scale"]) == pytest.approx(ref_glob["h_scale"], rel=1e-12)
    if name in ("bbi", "ecdsep"):
        assert float(glob["E"]) == pytest.approx(ref_glob["E"], rel=1e-12)
        assert int(glob["updates"]) == ref_glob["updates"] == 100


def test_random_bounces_and_jitter_run_on_the_same_schedule() -> None:
    """Noise on: BBI's uniform bounces happen at the same steps in both exports (every 10
    updates, 3 in all, and after 20 updates without progress); ECDSep's jitter acts on every
    update in both (the parameters leave the noise-free path; no domain skip)."""
    rule = oo.discretize(zoo.bbi(), "symplectic_euler")
    hp = dict(lr=0.05, bounce_every=10, bounces=3, bounce_patience=20)
    _, ours = _run_jax(rule, 40, **hp)
    _, ref = _run_torch(rule, 40, **hp)
    made = [int(g["bounces_made"]) for g in ours]
    assert made == [g.get("bounces_made", 0) for g in ref]
    assert [k for k in range(1, 40) if made[k] > made[k - 1]] == [10, 21, 32]
    rule = oo.discretize(zoo.ecdsep(), "symplectic_euler")
    noisy, globs = _run_jax(rule, 20, lr=0.05, noise=1e-2, seed=1)
    quiet, _ = _run_jax(rule, 20, lr=0.05, noise=0.0)
    _, ref_globs = _run_torch(rule, 20, lr=0.05, noise=1e-2, seed=1)
    assert np.isfinite(noisy).all() and np.abs(noisy - quiet).max() > 1e-3
    assert [int(g["updates"]) for g in globs] == [g["updates"] for g in ref_globs]
    assert int(globs[-1]["updates"]) == 20


def _exportable() -> list[tuple[str, str]]:
    return [(n, s) for n in zoo.names() for s in ("symplectic_euler", "euler")]


def test_every_zoo_rule_that_exports_to_torch_exports_to_optax(tmp_path: Path) -> None:
    """Each zoo system with symplectic Euler and Euler: the torch export refused ⇔ the optax
    export refused, with the same reason; otherwise its file imports only jax, optax, math
    and typing, is ruff-clean (F, E, W at line length 100, one ruff call), and three eager
    steps equal the torch export's to 1e-12 (relative where |θ| > 1) with the system's
    default parameters (random bounces off)."""
    written = []
    for name, scheme in _exportable():
        try:  # a full metric (Levenberg–Marquardt) is refused before either export
            rule = oo.discretize(zoo.get(name), scheme)
        except NotImplementedError as exc:
            assert "not coordinate-wise" in str(exc), (name, scheme)
            continue
        try:
            rule.to_source()
        except (NotImplementedError, ValueError) as exc:
            with pytest.raises(type(exc)) as jax_exc:
                rule.to_source(framework="jax")
            assert str(jax_exc.value) == str(exc)
            continue
        src = rule.to_source(framework="jax")
        imported = set()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert {"jax", "optax"} <= imported <= {"jax", "jax.numpy", "optax", "math", "typing"}
        (tmp_path / f"{name}_{scheme}.py").write_text(src)
        written.append(name)
        hp: dict = {"lr": 0.01}
        bounce = rule.system.level_set.spec.bounce if rule.system.level_set else None
        hp.update(
            {"uniform": dict(bounce_every=0, bounce_patience=0), "gaussian": dict(noise=0.0)}.get(
                bounce, {}
            )
        )
        ours, _ = _run_jax(rule, 3, jit=False, **hp)
        ref, _ = _run_torch(rule, 3, **hp)
        # (relative: rmsprop with Euler grows θ to 1e5 in three steps)
        assert (np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))).max() <= 1e-12, (name, scheme)
    assert set(zoo.names()) - set(written) <= {"levenberg_marquardt"}
    from odeopt.learned import HNNOptimizerNet
    from odeopt.learned.jax_export import to_jax_source

    (tmp_path / "learned.py").write_text(to_jax_source(HNNOptimizerNet(preprocess=True)))
    exe = Path(__import__("sys").executable).with_name("ruff")
    if not exe.exists():
        pytest.skip("ruff is not installed (it is in the test extras)")
    cmd = [str(exe), "check", "--isolated", "--select", "F,E,W", "--line-length", "100"]
    proc = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _digits_mlp() -> tuple[dict, Callable]:
    """300 digits, a 64-32-10 tanh MLP, its mean cross-entropy."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = jnp.asarray(X[:300] / 16.0), jnp.asarray(y[:300])
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "w1": jax.random.normal(k1, (64, 32)) / 8.0,
        "b1": jnp.zeros(32),
        "w2": jax.random.normal(k2, (32, 10)) / np.sqrt(32.0),
        "b2": jnp.zeros(10),
    }

    def loss(p: dict) -> jax.Array:
        logits = jnp.tanh(X @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return params, loss


@pytest.mark.parametrize(
    ("system", "hp"),
    [("heavy_ball", dict(lr=0.5, friction=1.0)), ("bbi", dict(lr=0.2, bounce_every=0))],
)
def test_a_jax_mlp_trains_on_digits_with_the_optax_export(system, hp) -> None:
    """50 full-batch steps, the whole step (gradient and update) under one jax.jit: the loss
    falls by more than a third, nothing is NaN."""
    params, loss = _digits_mlp()
    tx = oo.discretize(zoo.get(system), "symplectic_euler").to_optax(**hp)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(50):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert np.isfinite(losses).all()
    assert all(np.isfinite(a).all() for a in jax.tree_util.tree_leaves((params, state)))
    assert losses[-1] < losses[0] * 2 / 3, losses[::10]


def test_update_names_what_it_is_missing_and_to_source_what_it_refuses() -> None:
    """A rule reading F without value=, one evaluating F at moved points without value_fn=
    (given value_fn, value= may be left out: F at θ is value_fn(params)), a framework other
    than torch/jax, an RMSprop parametrization (torch only), a parameter's sign, and rules
    neither export takes (adaptive with an error estimate, implicit), with the same reason."""
    _, _, W0, b0 = _problem()
    params = {"W": jnp.asarray(W0), "b": jnp.asarray(b0)}
    grads = jax.grad(_loss_jax)(params)
    tx = oo.discretize(zoo.bbi(), "symplectic_euler").to_optax(lr=0.1)
    with pytest.raises(ValueError, match=r"update needs value \(the loss at params"):
        tx.update(grads, tx.init(params), params)
    tx = RULES["lc_egd"][0]().to_optax(lr=0.1)
    with pytest.raises(ValueError, match=r"update needs value_fn \(the loss as a function"):
        tx.update(grads, tx.init(params), params, value=_loss_jax(params))
    # without value=, F at θ comes from value_fn: the same step
    given, _ = tx.update(
        grads, tx.init(params), params, value=_loss_jax(params), value_fn=_loss_jax
    )
    derived, _ = tx.update(grads, tx.init(params), params, value_fn=_loss_jax)
    assert float(jnp.abs(given["W"]).max()) > 0
    assert all(bool((given[k] == derived[k]).all()) for k in given)
    hb = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    with pytest.raises(ValueError, match="framework must be 'torch' or 'jax', got framework='tf'"):
        hb.to_source(framework="tf")
    with pytest.raises(
        NotImplementedError, match="parametrization='rmsprop': the JAX export takes optax.sgd"
    ):
        oo.discretize(zoo.rmsprop(), "symplectic_euler").to_source(
            parametrization="rmsprop", framework="jax"
        )
    with pytest.raises(ValueError, match="friction must be nonnegative, got friction=-1"):
        hb.to_optax(lr=0.1, friction=-1)
    for scheme in ("euler_richardson", "discrete_gradient"):  # adaptive, implicit: refused
        rule = oo.discretize(zoo.heavy_ball(), scheme)
        with pytest.raises(NotImplementedError) as torch_exc:
            rule.to_source()
        with pytest.raises(NotImplementedError, match=r"adaptive|implicit") as jax_exc:
            rule.to_optax(lr=0.1)
        assert str(jax_exc.value) == str(torch_exc.value)


def test_lr_may_be_an_optax_schedule_of_the_update_count() -> None:
    """A schedule halving h after 5 updates equals 5 steps at h then 5 at h/2 (the update
    count lives in the state, so the scheduled step runs under jit)."""
    rule = oo.discretize(zoo.heavy_ball(), "symplectic_euler")
    _, _, W0, b0 = _problem()
    sched = optax.piecewise_constant_schedule(0.1, {5: 0.5})
    out = []
    for lrs in ([sched], [0.1, 0.05]):
        params = {"W": jnp.asarray(W0), "b": jnp.asarray(b0)}
        txs = [rule.to_optax(lr=lr) for lr in lrs]
        state = txs[0].init(params)
        for k in range(10):
            tx = txs[min(k // 5, len(txs) - 1)]
            updates, state = jax.jit(tx.update)(jax.grad(_loss_jax)(params), state, params)
            params = optax.apply_updates(params, updates)
        out.append(np.ravel(params["W"]))
    assert np.abs(out[0] - out[1]).max() <= 1e-15
    assert np.abs(out[0] - np.ravel(W0)).max() > 0.01


def test_the_learned_optimizer_exports_to_optax() -> None:
    """LearnedOptimizer.to_optax: the same net's steps (LogSign preprocessing on), its lr,
    equal to the torch optimizer to 1e-12 in float64 over 30 jitted steps."""
    from odeopt.learned import HNNOptimizerNet, LearnedOptimizer

    torch.manual_seed(0)
    net = HNNOptimizerNet(preprocess=True).double()
    X, Y, W0, b0 = (torch.tensor(a) for a in _problem())
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(b0.clone())
    opt = LearnedOptimizer([W, b], net, lr=0.05)
    tx = opt.to_optax()
    params = {"W": jnp.asarray(W0.numpy()), "b": jnp.asarray(b0.numpy())}
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(30):
        opt.zero_grad()
        r = X @ W + b - Y
        (0.5 * (r * r).mean() + 0.1).backward()
        opt.step()
        updates, state = update(jax.grad(_loss_jax)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert np.abs(np.asarray(params["W"]) - W.detach().numpy()).max() <= 1e-12
    assert np.abs(np.asarray(params["b"]) - b.detach().numpy()).max() <= 1e-12
    assert (W.detach() - W0).abs().max() > 0.1


def test_an_empty_parameter_pytree_is_no_step_also_for_global_reductions() -> None:
    """BBI reduces |p|² over the whole pytree: on an empty pytree the update is empty and the
    state unchanged (as torch's step without parameters), not a ZeroDivisionError; jit too."""
    tx = oo.discretize(zoo.bbi(), "symplectic_euler").to_optax(lr=0.1)
    state = tx.init({})
    for update in (tx.update, jax.jit(tx.update)):
        updates, new = update({}, state, {}, value=jnp.asarray(1.0))
        assert updates == {}
        assert int(new.count) == 0


def test_named_optimizers_take_positional_arguments_like_the_rule() -> None:
    """NamedOptimizer.to_optax(0.1) is rule.to_optax(0.1): lr (the step h) first."""
    from odeopt import optimizers

    params, grads = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([0.5, 0.5])}
    entry = optimizers.get("nag")
    a, _ = entry.to_optax(0.1).update(grads, entry.to_optax(0.1).init(params), params)
    b, _ = (
        entry.rule()
        .to_optax(lr=0.1)
        .update(grads, entry.rule().to_optax(lr=0.1).init(params), params)
    )
    np.testing.assert_array_equal(np.asarray(a["w"]), np.asarray(b["w"]))
    assert float(jnp.abs(a["w"]).max()) > 0
