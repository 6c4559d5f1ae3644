"""``odeopt analyze``: the analysis of a zoo rule from the command line (in-process main([...]),
as tests/cli/test_cli.py runs the other subcommands)."""

from __future__ import annotations

import math

import pytest

from odeopt.cli import _parse_over, main


def test_heavy_ball_symplectic_euler_is_polyak(capsys):
    """Tuned over (h, friction) at κ = 100 the rule is Polyak's heavy ball: rate
    (√κ − 1)/(√κ + 1) = 9/11 at h = 2/(√L + √μ) (lr = h² = 4/(√L + √μ)²), recognised as SGD;
    every part is printed, none refused."""
    assert main(["analyze", "heavy_ball", "--scheme", "symplectic_euler", "--kappa", "100"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == ""
    polyak = (math.sqrt(100) - 1) / (math.sqrt(100) + 1)
    assert f"{polyak:.6f}" == "0.818182"
    assert "tuned over h, friction: rate 0.818182" in out
    assert "h = 0.181818, friction = 1.81818" in out  # h = 2/11, γ = 20/11 (momentum 1 − γh)
    assert "torch.optim.SGD(lr=0.0330579, momentum=0.669421" in out  # 4/121, ((√κ−1)/(√κ+1))²
    # the classical references: GD 99/101, Nesterov 1 − 2/√301
    assert f"{99 / 101:.6f}" in out and f"{1 - 2 / math.sqrt(301):.6f}" in out
    # stable steps at λ = L: ρ < 1 iff h < (√122 − 1)/55, the tuned step just inside
    assert f"h ∈ (0, {(math.sqrt(122) - 1) / 55:.6g})" in out
    assert "the tuned h = 0.181818 is inside" in out
    assert "dp/dt = -p*gamma/m - g + η·(" in out  # the modified equation, order 1
    assert "F(x_5) − F* ≤" in out and "L/(4N+2) = 0.0454545" in out
    assert "not available" not in out and "Traceback" not in out


def test_bbi_prints_why_and_exits_0(capsys):
    """BBI's step depends on the loss value: the quadratic parts and the certificate each say
    why in one line; the rule and the torch check still print; exit 0, nothing on stderr."""
    assert main(["analyze", "bbi", "--scheme", "euler", "--kappa", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    refused = [line for line in out.splitlines() if "not available:" in line]
    assert len(refused) == 7, refused  # matrix, tuning, torch, stability, energy, modified, PEP
    assert any("loss value F" in line for line in refused)
    assert "cannot be certified by PEP" in out
    assert "bbi with euler, step h:" in out  # the rule itself is shown
    assert "Traceback" not in out


def test_given_step_gradient_descent(capsys):
    """--set h=1 fixes the step (nothing left to tune): at κ = 10 the rate is |1 − hL| = 9,
    h = 1 lies outside the stable (0, 2/L) = (0, 0.2), and the PEP at L = 1 is
    Drori–Teboulle's L/(4N + 2) = 1/22 for N = 5."""
    argv = ["analyze", "gradient_flow", "--scheme", "euler", "--kappa", "10", "--set", "h=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing to tune (--set fixes every value): rate 9.000000" in out
    assert "stable for h ∈ (0, 0.2) = (0, 1/5) (exact); the given h = 1 is outside" in out
    assert "at the values given by --set" in out
    line = next(x for x in out.splitlines() if "F(x_5) − F* ≤" in x)
    value = float(line.split("≤ ")[1].split()[0])
    assert value == pytest.approx(1 / 22, rel=1e-4)
    assert "(closed form 0.0454545)" in line
    assert "dtheta/dt = -g + η·(-∇²F·g/2)" in out  # implicit gradient regularisation


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kappa", "0"], "--kappa must be ≥ 1 (κ = L/μ), got --kappa 0"),
        (["--kappa", "nan"], "--kappa must be finite, got --kappa nan"),
        (["--kappa", "x"], "--kappa: 'x' is not a number"),
        (["--scheme", "nope"], "unknown scheme 'nope'"),
        (["--steps", "0"], "--steps must be an integer ≥ 1, got --steps 0"),
        (["--order", "1.5"], "--order must be an integer ≥ 1, got --order '1.5'"),
        (["--set", "fric=1"], "--set fric: heavy_ball has no parameter 'fric'"),
        (["--set", "friction=inf"], "--set friction must be finite, got --set friction inf"),
        (["--set", "h=1", "--set", "h=2"], "--set h is given twice"),
        (["--over", "h,x"], "--over h,x: heavy_ball has no parameter 'x'"),
        (
            ["--over", "h,friction", "--set", "friction=1"],
            "friction is also fixed by --set friction=1",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    assert main(["analyze", "heavy_ball", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("odeopt: analyze: "), lines
    assert message in lines[0]


def test_unknown_system_exits_2_with_one_line(capsys):
    assert main(["analyze", "nope", "--kappa", "10"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no zoo system 'nope'; known: gradient_flow" in err[0]


def test_a_system_without_a_rule_exits_2_with_one_line(capsys):
    """Levenberg–Marquardt's metric is not coordinate-wise: no scheme makes a rule of it."""
    assert main(["analyze", "levenberg_marquardt"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "has a metric that is not coordinate-wise" in err[0]


def test_default_over():
    """h, plus friction where the system has it; a name fixed by --set is not tuned."""
    heavy = ["h", "mass", "friction"]
    assert _parse_over(None, heavy, {}, "heavy_ball") == ("h", "friction")
    assert _parse_over(None, heavy, {"friction": 1.0}, "heavy_ball") == ("h",)
    assert _parse_over(None, ["h", "a", "b", "c", "beta"], {}, "massaroli") == ("h",)
    assert _parse_over(None, ["h"], {"h": 0.1}, "gradient_flow") == ()
    assert _parse_over("mass, h", heavy, {}, "heavy_ball") == ("mass", "h")


def test_untunable_over_falls_back_to_the_defaults(capsys):
    """Braking's goal is not in its matrix (it only switches the gain): tuning over it is
    refused with the reason, and the stability part uses the defaults (gain k = 0.1, m = 1)
    instead: at λ = 100, ρ < 1 iff h < (√(40001) − 1)/1000."""
    assert main(["analyze", "braking", "--over", "h,goal", "--kappa", "100", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "not available: cannot tune 'goal'" in out
    expected = f"h ∈ (0, {(math.sqrt(40001) - 1) / 1000:.6g})"
    line = next(x for x in out.splitlines() if "stable for h" in x)
    assert "the system's defaults otherwise (not tuned)" in line and expected in line
    assert "switches its parameters" in out  # PEP refuses the switch on F, with the reason


def test_derive_a_system_without_a_rule_exits_2_with_one_line(capsys):
    assert main(["derive", "levenberg_marquardt", "--scheme", "euler"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "has a metric that is not coordinate-wise" in err[0]
