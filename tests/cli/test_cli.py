"""The odeopt command line."""

import shutil
import subprocess
import sys
from pathlib import Path

from odeopt.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("gradient_flow", "heavy_ball", "bbi"):
        assert name in out


def test_show_heavy_ball(capsys):
    assert main(["show", "heavy_ball"]) == 0
    out = capsys.readouterr().out
    assert "dp/dt = -p*gamma/m - g" in out
    assert "dH/dt = -|p|^2*gamma/m**2" in out
    assert "verdict: dissipative" in out


def test_show_bbi_conservative(capsys):
    assert main(["show", "bbi", "--param", "delta_v=-1"]) == 0
    assert "verdict: conservative" in capsys.readouterr().out


def test_show_errors(capsys):
    assert main(["show", "nope"]) == 2
    assert "no zoo system 'nope'" in capsys.readouterr().err
    assert main(["show", "heavy_ball", "--param", "friction=-1"]) == 2
    assert "R is not positive semidefinite" in capsys.readouterr().err


def test_learn_writes_a_working_optimizer(capsys, tmp_path):
    import importlib.util

    import torch

    out = tmp_path / "hnn.py"
    assert main(["learn", "--iterations", "3", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "F at step 100" in text and "learned" in text and out.exists()
    spec = importlib.util.spec_from_file_location("hnn", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theta = torch.nn.Parameter(torch.ones(4))
    opt = module.HNNOptimizer([theta], lr=1e-3)
    (theta**2).sum().backward()
    opt.step()
    assert not torch.equal(theta.detach(), torch.ones(4))
    assert main(["learn", "--iterations", "0", "-o", str(out)]) == 2
    assert "--iterations must be ≥ 1, got 0" in capsys.readouterr().err


def test_console_script_show():
    exe = shutil.which("odeopt") or str(Path(sys.executable).with_name("odeopt"))
    proc = subprocess.run([exe, "show", "heavy_ball"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: dissipative" in proc.stdout
