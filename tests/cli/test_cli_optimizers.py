"""Named optimizers on the command line: `odeopt list` shows them beside the systems,
`odeopt export NAME` writes one, and names that are not one rule are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import odeopt as oo
from odeopt import optimizers, zoo
from odeopt.cli import main


def _sections(out: str) -> tuple[list[str], list[str]]:
    """The names listed under "systems" and under "named optimizers"."""
    systems, named = out.split("named optimizers")
    first = [line.split()[0] for line in systems.splitlines()[1:] if line[:1].strip()]
    second = [line.split()[0] for line in named.splitlines()[1:] if line[:1].strip()]
    return first, second


def test_list_shows_systems_and_named_optimizers(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("systems")
    systems, named = _sections(out)
    assert systems == zoo.names()
    assert named == optimizers.names() and "lc_egd" in named
    line = next(x for x in out.splitlines() if x.startswith("lc_egd"))
    assert "LC_EGD" in line
    assert "gradient_flow + energy_decrease; Bensaid" in out


def test_export_lc_egd_by_name_writes_a_working_optimizer(tmp_path: Path, capsys) -> None:
    path = tmp_path / "lc_egd_opt.py"
    assert main(["export", "lc_egd", "-o", str(path)]) == 0
    assert "gradient_flow with energy_decrease" in capsys.readouterr().out
    assert path.read_text() == optimizers.get("lc_egd").to_source()
    script = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from lc_egd_opt import LCEGD\n"
        "w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))\n"
        "opt = LCEGD([w], lr=10.0)\n"
        "def closure():\n"
        "    opt.zero_grad(); loss = 0.5 * (w * w).sum(); loss.backward(); return loss\n"
        "for _ in range(50):\n"
        "    opt.step(closure)\n"
        "assert opt.state['odeopt']['rejected'] > 0, opt.state['odeopt']\n"
        "assert w.abs().max() < 0.05, w  # from 3: measured 0.008\n"
        "assert not any(m.split('.')[0] == 'odeopt' for m in sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_zoo_system_name_exports_as_before(tmp_path: Path, capsys) -> None:
    """heavy_ball is a system and a named optimizer (the same rule): today's file."""
    path = tmp_path / "hb.py"
    assert main(["export", "heavy_ball", "-o", str(path)]) == 0
    expected = oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_source()
    assert path.read_text() == expected
    assert main(["export", "heavy_ball", "--scheme", "rk4", "-o", str(path)]) == 0
    assert "class HeavyBallRk4(" in path.read_text()


def test_export_with_sgd_parametrization(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nag.py"
    assert main(["export", "nag", "--parametrization", "sgd", "-o", str(path)]) == 0
    text = path.read_text()
    assert "class NAG(" in text and "STATE_KEYS = ['step', 'momentum_buffer']" in text
    assert "(class NAG)" in capsys.readouterr().out
    bad = ["export", "heavy_ball", "--scheme", "rk4", "--parametrization", "sgd", "-o", str(path)]
    assert main(bad) == 2
    assert "evaluates the gradient 4 times" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "lc_egd", "--scheme", "euler"], "lc_egd is a named optimizer with its own"),
        (["export", "learned"], "run `odeopt learn -o FILE.py`"),
        (["export", "lc_m", "--param", "fricton=2"], "heavy_ball has no parameter 'fricton'"),
        (["export", "nope"], "known: gradient_flow, heavy_ball, nesterov, braking, massaroli"),
        (["derive", "nope"], "nor a named optimizer: sgd, heavy_ball, nag, lc_egd"),
        (["derive", "learned"], "no update rule to derive"),
    ],
)
def test_named_optimizer_errors(argv, message, tmp_path: Path, capsys) -> None:
    if argv[0] == "export":
        argv = [*argv, "-o", str(tmp_path / "x.py")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()


def test_an_ambiguous_name_is_refused(monkeypatch, tmp_path: Path, capsys) -> None:
    """A name that is a zoo system and a different named optimizer: refused without --scheme
    (which selects the system)."""
    other = optimizers.NamedOptimizer(
        "gradient_flow",
        "energy-controlled gradient flow",
        "a test",
        "gradient_flow",
        lambda: oo.schemes.EnergyDecrease("euler"),
        "GF",
    )
    monkeypatch.setitem(optimizers.REGISTRY, "gradient_flow", other)
    path = tmp_path / "gf.py"
    assert main(["export", "gradient_flow", "-o", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'gradient_flow' is ambiguous" in err and "pass --scheme S" in err
    assert main(["export", "gradient_flow", "--scheme", "euler", "-o", str(path)]) == 0
    assert "class GradientFlowEuler(" in path.read_text()


def test_show_and_derive_a_named_optimizer(capsys) -> None:
    assert main(["show", "lc_m"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lc_m: heavy_ball + energy_decrease")
    assert "reference: Bensaid" in out and "verdict: dissipative" in out
    assert main(["derive", "lc_egd"]) == 0
    out = capsys.readouterr().out
    assert "error[H]" in out and "identified: no classic optimizer" in out
