"""The catalogue of named optimizers (odeopt.optimizers): each is a system + scheme that
discretizes, exports to torch and trains; the names are what they say."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import sympy as sp
import torch

import odeopt as oo
from odeopt import optimizers, zoo
from odeopt.learned import HNNOptimizerNet

EXPECTED = [
    "sgd",
    "heavy_ball",
    "nag",
    "lc_egd",
    "lc_m",
    "euler_richardson_gd",
    "bbi",
    "ecdsep",
    "braking",
    "learned",
]


def _entry(name: str):
    if name == "learned":
        torch.manual_seed(0)
        return optimizers.get("learned", net=HNNOptimizerNet())
    return optimizers.get(name)


def _tiny_steps(Opt, steps: int = 3, lr: float = 0.05):
    """``steps`` closure steps on a 4-3-1 tanh net (float64, squared error); the parameters
    before and after, and the losses."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)
    ).double()
    X, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    opt = Opt(model.parameters(), lr=lr)
    losses = []

    def closure():
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return before, after, losses


def test_the_catalogue_names_the_methods_people_look_for() -> None:
    assert optimizers.names() == EXPECTED
    for name in EXPECTED:
        entry = optimizers.get(name)
        assert entry.name == name and entry.description and entry.reference
        assert "ALGORITHMS.md" in entry.reference or any(c.isdigit() for c in entry.reference)
        assert name in str(entry)
    with pytest.raises(KeyError, match="no named optimizer 'adamw'; known: sgd, heavy_ball"):
        optimizers.get("adamw")
    with pytest.raises(KeyError, match="massaroli is a zoo system"):
        optimizers.get("massaroli")


@pytest.mark.parametrize("name", EXPECTED)
def test_every_entry_discretizes_exports_and_takes_three_steps(name) -> None:
    entry = _entry(name)
    assert isinstance(entry.system, oo.PortHamiltonian)
    if name == "learned":
        with pytest.raises(NotImplementedError, match="meta-trained net's map"):
            entry.rule()
        assert entry.scheme is None and entry.system.name == "learned_cell"
    else:
        rule = entry.rule()
        assert rule.system.name == entry.system_name
        assert rule.scheme.name == entry.scheme.name
    Opt = entry.to_torch()
    assert Opt.__name__ == entry.cls and issubclass(Opt, torch.optim.Optimizer)
    before, after, losses = _tiny_steps(Opt)
    assert torch.isfinite(after).all() and all(math.isfinite(v) for v in losses)
    assert not torch.equal(before, after)  # it moved


def test_the_named_rules_are_the_torch_optimizers_they_say() -> None:
    found = {n: optimizers.get(n).rule().identify() for n in ("sgd", "heavy_ball", "nag")}
    assert all(f.name == "SGD" for f in found.values())
    h = sp.Symbol("h", positive=True)
    assert sp.simplify(found["sgd"].hyperparameters["lr"].subs("h", h) - h) == 0
    assert "nesterov" not in found["heavy_ball"].hyperparameters
    assert found["nag"].hyperparameters["nesterov"] == sp.true
    for name in ("lc_egd", "lc_m", "euler_richardson_gd", "bbi", "ecdsep"):
        assert not optimizers.get(name).rule().identify(), name
    # braking is heavy ball between its switches; its switch changes the friction mid-run,
    # which SGD's hyper-parameters cannot follow
    with pytest.raises(ValueError, match="parametrization='sgd': braking switches"):
        optimizers.get("braking").to_torch(parametrization="sgd")


def test_named_rules_are_their_system_and_scheme() -> None:
    """LC_EGD is gradient flow + EnergyDecrease('euler') (the same file); LC_M heavy ball +
    the energy test at the new point; ER-GD the reference variant with an l2 controller."""
    lc_egd = optimizers.get("lc_egd")
    direct = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler"))
    assert lc_egd.to_source() == direct.to_source("LCEGD")
    lc_m = optimizers.get("lc_m").scheme
    assert isinstance(lc_m, oo.schemes.EnergyDecrease) and lc_m.rate_at == "new"
    er = optimizers.get("euler_richardson_gd").scheme
    assert er.controller.atol == 0.01 and er.controller.norm == "l2"


def test_names_shared_with_the_zoo_are_that_system_with_symplectic_euler() -> None:
    """The command line's default scheme: `odeopt export bbi` is the same rule either way."""
    shared = [n for n in optimizers.names() if n in zoo.REGISTRY]
    assert shared == ["heavy_ball", "bbi", "ecdsep", "braking"]
    for name in shared:
        entry = optimizers.get(name)
        assert entry.system_name == name and entry.scheme.name == "symplectic_euler"
        ours = entry.to_source("X")
        assert ours == oo.discretize(zoo.get(name), "symplectic_euler").to_source("X")


def test_parameters_and_parametrization_pass_through() -> None:
    hb = optimizers.get("heavy_ball", friction=0.9)
    assert {p.name: p.default for p in hb.system.parameters}["friction"] == 0.9
    assert optimizers.get("heavy_ball").params == {}  # the catalogue's entry is unchanged
    with pytest.raises(TypeError, match="fricton"):
        optimizers.get("heavy_ball", fricton=0.9)
    NAG = optimizers.get("nag").to_torch(parametrization="sgd")
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = NAG([w], lr=0.1, momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["nesterov"] is True


def test_the_learned_entry_says_how_it_is_built() -> None:
    entry = optimizers.get("learned")
    with pytest.raises(TypeError, match=r"meta-trained net: get\('learned', net=net\)"):
        entry.to_torch()
    with pytest.raises(TypeError, match="net must be an odeopt.learned.HNNOptimizerNet"):
        optimizers.get("learned", net="weights.pt")
    with pytest.raises(ValueError, match="the learned optimizer is no torch.optim optimizer"):
        _entry("learned").to_source(parametrization="sgd")


def test_lc_egd_file_works_when_imported_from_the_written_path(tmp_path: Path) -> None:
    """The written file, imported by path, is the in-memory class: the same 20 steps."""
    path = tmp_path / "lc_egd_opt.py"
    path.write_text(optimizers.get("lc_egd").to_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("lc_egd_opt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, from_file, losses = _tiny_steps(module.LCEGD, steps=20, lr=0.5)
    _, in_memory, _ = _tiny_steps(optimizers.get("lc_egd").to_torch(), steps=20, lr=0.5)
    assert torch.equal(from_file, in_memory)
    assert losses[-1] < losses[0]


def test_named_optimizers_export_to_optax_too() -> None:
    """The catalogue passes to_optax through (the rule's; the learned one's net)."""
    jnp = pytest.importorskip("jax.numpy")
    pytest.importorskip("optax")
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    grads = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    for entry in (optimizers.get("nag"), _entry("learned")):
        tx = entry.to_optax(lr=0.1)
        updates, _ = tx.update(grads, tx.init(params), params)
        assert all(bool(jnp.all(jnp.isfinite(u)) and jnp.any(u != 0)) for u in updates.values())
