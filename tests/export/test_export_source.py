"""The generated source itself: what a file carries (only the features its rule uses), that
every zoo system's file is ruff-clean, and the heavy-ball file against torch's SGD."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import odeopt as oo
from odeopt import zoo
from odeopt.export.runtime import definitions, source_of

#: what each feature leaves in a file: a file carries it only when its rule uses it
FEATURE_CODE = {
    "closure": "def _evaluate(",
    "switches": "def _switch(",
    "domain": "def _domain(",
    "level set": "def _start(",
    "uniform bounce": "def _bounce_uniform(",
    "gaussian bounce": "def _bounce_gaussian(",
    "step controller": "h_scale",
    "reductions": "def _reduce_global(",
    "kinetic check": "def _check_kinetic(",
}


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed (it is in the test extras)")


def _hb_source() -> str:
    return oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_source()


def test_heavy_ball_file_carries_no_unused_feature_and_no_template_leftovers() -> None:
    src = _hb_source()
    for feature, code in FEATURE_CODE.items():
        assert code not in src, feature
    for leftover in ("{{", "}}", "<<CLS", ">>", "\n@", "STATE}", "NEEDS_CLOSURE", "if False"):
        assert leftover not in src, leftover
    assert "process_group" not in src and "switch_smoothing" not in src
    # the momentum updated in place, like torch's SGD: mul_, add_, θ += α·p (+ the docstring)
    step = src[src.index("def _step_foreach") : src.index("def _step_single")]
    assert step.count("torch._foreach_") == 1 + 3 and step.count("_foreach_mul_") == 1
    # 579 lines before the plan/render split; the runtime checks the tests ask for (hyper-
    # parameters, parameters, finite gradients, closure loss, state_dict) are most of it
    assert len(src.splitlines()) < 360


@pytest.mark.parametrize(
    ("system", "scheme", "present"),
    [
        ("heavy_ball", "rk4", ["closure"]),
        ("braking", "symplectic_euler", ["switches"]),
        ("bbi", "symplectic_euler", ["domain", "level set", "uniform bounce", "reductions"]),
        ("ecdsep", "symplectic_euler", ["domain", "level set", "gaussian bounce"]),
    ],
)
def test_a_file_carries_exactly_the_features_of_its_rule(system, scheme, present) -> None:
    src = oo.discretize(zoo.get(system), scheme).to_source()
    for feature, code in FEATURE_CODE.items():
        if feature in ("reductions", "kinetic check") and feature not in present:
            continue  # bounces and level sets reduce too
        assert (code in src) == (feature in present), (feature, system)


def test_an_energy_controlled_rule_carries_its_controller() -> None:
    rule = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler"))
    src = rule.to_source()
    assert "h_scale" in src and "def _evaluate(" in src
    assert "def _switch(" not in src and "def _domain(" not in src


def _exportable_schemes() -> list[tuple[str, str]]:
    cases = []
    for name in zoo.names():
        for scheme in ("symplectic_euler", "euler"):
            cases.append((name, scheme))
    return cases + [("heavy_ball", "rk4"), ("bbi", "leapfrog"), ("nesterov", "rk4")]


def test_every_zoo_file_is_ruff_clean(tmp_path: Path) -> None:
    """F (undefined and unused names), E and W at line length 100, one ruff call."""
    written = []
    for name, scheme in _exportable_schemes():
        try:
            src = oo.discretize(zoo.get(name), scheme).to_source()
        except NotImplementedError as exc:  # a full metric (Levenberg–Marquardt) is refused
            assert "not coordinate-wise" in str(exc), (name, scheme)
            continue
        (tmp_path / f"{name}_{scheme}.py").write_text(src)
        written.append(name)
    rule = oo.discretize(zoo.gradient_flow(), oo.schemes.EnergyDecrease("euler"))
    (tmp_path / "gradient_flow_energy.py").write_text(rule.to_source())
    assert set(zoo.names()) - set(written) <= {"levenberg_marquardt"}
    cmd = _ruff() + ["check", "--isolated", "--select", "F,E,W", "--line-length", "100"]
    proc = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _quadratic_steps(make, steps: int, foreach: bool) -> torch.Tensor:
    torch.manual_seed(0)
    A = torch.randn(6, 4) * 0.3
    b = torch.randn(6)
    w = torch.nn.Parameter(torch.randn(4))
    v = torch.nn.Parameter(torch.randn(3, 2))
    opt = make([w, v], foreach)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.05 * ((A @ w - b) ** 2).sum() + 0.1 * (v**2).sum()
        loss.backward()
        opt.step()
    return torch.cat([w.detach().flatten(), v.detach().flatten()])


@pytest.mark.parametrize("foreach", [True, False])
def test_heavy_ball_file_equals_sgd_momentum_exactly(foreach) -> None:
    """With h = m = 1 the symplectic-Euler heavy ball is SGD(lr=1, momentum=1 − γ) bit for
    bit: p = −(SGD's momentum buffer), both computed with the same float32 operations."""
    Opt = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    gamma = 0.1
    ours = _quadratic_steps(
        lambda ps, fe: Opt(ps, lr=1.0, mass=1.0, friction=gamma, foreach=fe), 8, foreach
    )
    ref = _quadratic_steps(
        lambda ps, fe: torch.optim.SGD(ps, lr=1.0, momentum=1 - gamma, foreach=fe), 8, foreach
    )
    assert torch.equal(ours, ref)
    assert not torch.equal(ours, _quadratic_steps(lambda ps, fe: Opt(ps, lr=1.0), 0, foreach))


def test_runtime_helpers_come_with_what_they_use() -> None:
    names = [s.split("(")[0].split()[-1] for s in source_of("_evaluate(groups)")]
    assert names == ["_real", "_nonfinite", "_loss_value", "_NonFinite", "_evaluate"]
    assert source_of("nothing here") == []
    assert set(definitions()) >= {"_check_state_dict", "_bounce_gaussian", "_total_sq"}
