"""Studies: Bensaid's protocol on polyThree through Study, tables, chunking, errors."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from helpers import bensaid_runs

import odeopt as oo
from odeopt.study import OUTCOMES, Run, Study

MINIMA = ["(0, -1)", "(-2, 1)", "(2, -1)", "(0, 1)"]  # polyThree's catalogue order


def _runs(max_steps: int = 5000) -> dict[str, Run]:
    return bensaid_runs(max_steps)


def _starts(n: int) -> dict[str, np.ndarray]:
    return {"theta": np.random.default_rng(0).uniform(-3, 3, (n, 2))}


@pytest.fixture(scope="module")
def poly_three_result():
    return Study(oo.problems.poly_three(), _starts(300), _runs()).run()


def test_gd_diverges_and_lc_egd_does_not_on_poly_three(poly_three_result) -> None:
    table = poly_three_result.table()
    assert table.loc["GD", "diverged"] >= 0.99
    assert table.loc["LC_EGD", "diverged"] == 0.0
    # LC_EGD converges to the four minima, each of them reached from some start
    assert table.loc["LC_EGD", MINIMA].sum() > 0.95
    assert (table.loc["LC_EGD", MINIMA[:3]] > 0.1).all()


def test_table_has_the_documented_columns_and_rows_sum_to_one(poly_three_result) -> None:
    table = poly_three_result.table()
    assert list(table.columns) == MINIMA + list(OUTCOMES)
    assert list(table.index) == ["GD", "LC_EGD"]
    np.testing.assert_allclose(table.sum(axis=1).to_numpy(), 1.0, rtol=0, atol=1e-12)


def test_data_and_outcome_follow_the_protocol(poly_three_result) -> None:
    res = poly_three_result
    ds = res.data
    assert ds["theta"].dims == ("run", "start", "theta_dim")
    assert ds["theta"].shape == (2, 300, 2)
    for v in ("F", "grad_norm", "status", "t_stop"):
        assert ds[v].dims == ("run", "start")
    out = res.outcome
    status = ds["status"].values
    assert out.dims == ("run", "start")
    assert (out.values[status == "diverged"] == "diverged").all()
    conv = status == "converged"
    theta = ds["theta"].values
    for label in MINIMA:
        point = np.array(ast.literal_eval(label), float)
        hit = out.values == label
        assert (np.linalg.norm(theta[hit] - point, axis=1) < 0.05).all()
        assert conv[hit].all()
    assert not np.isin(out.values[~conv & (status != "diverged")], MINIMA).any()
    # success: F < threshold means at the global minimum (0, -1) of value 0 here
    s = res.success(1e-6)
    assert s["GD"] == 0.0
    assert s["LC_EGD"] == pytest.approx(res.table().loc["LC_EGD", "(0, -1)"])


def test_unconverged_and_saddle_outcomes() -> None:
    pb = oo.problems.poly_three()
    # a start on the saddle (1, 0) stays there: converged, but not at a minimum → "other";
    # a 3-step run from (2.5, 0.5) stops short → "not converged"
    x0 = {"theta": np.array([[1.0, 0.0], [2.5, 0.5]])}
    gf = oo.zoo.gradient_flow()
    res = Study(
        pb,
        x0,
        {
            "long": Run(gf, "euler", h=0.01, steps=10, gtol=1e-4),
            "short": Run(gf, "euler", h=0.01, steps=3, gtol=1e-4),
        },
    ).run()
    assert res.outcome.sel(run="long", start=0).item() == "other"
    assert res.outcome.sel(run="short", start=1).item() == "not converged"


def test_results_do_not_depend_on_chunking() -> None:
    pb = oo.problems.poly_three()
    study = Study(pb, _starts(40), _runs(max_steps=3000))
    one = study.run()
    chunked = study.run(chunk_size=7)
    for v in one.data.data_vars:
        np.testing.assert_array_equal(chunked.data[v].values, one.data[v].values)
    assert (chunked.outcome == one.outcome).all()


def test_grid_expands_lists_over_keywords_and_parameters() -> None:
    hb = oo.zoo.heavy_ball()
    runs = Run.grid(hb, "symplectic_euler", h=[0.1, 0.05], friction=[0.5, 2.0], steps=50)
    assert list(runs) == [
        "h=0.1, friction=0.5",
        "h=0.1, friction=2",
        "h=0.05, friction=0.5",
        "h=0.05, friction=2",
    ]
    r = runs["h=0.05, friction=2"]
    assert r.kwargs == {"h": 0.05, "steps": 50, "params": {"friction": 2.0}}
    res = Study(oo.problems.poly_three(), _starts(10), runs).run()
    assert res.data["p"].shape == (4, 10, 2)
    # the grid's runs are the runs it names: friction reaches the integration
    direct = oo.integrate(
        hb,
        oo.problems.poly_three(),
        _starts(10),
        h=0.05,
        steps=50,
        params={"friction": 2.0},
        scheme="symplectic_euler",
        save="final",
    )
    np.testing.assert_array_equal(
        res.data["theta"].sel(run="h=0.05, friction=2").values, direct.final["theta"]
    )


def test_bad_input_names_the_argument() -> None:
    pb = oo.problems.poly_three()
    gf = oo.zoo.gradient_flow()
    good = {"GD": Run(gf, "euler", h=0.1, steps=5)}
    with pytest.raises(TypeError, match=r"runs\['GD'\] must be an oo.Run"):
        Study(pb, _starts(4), {"GD": (gf, "euler")})
    with pytest.raises(TypeError, match=r"unknown integrate keyword\(s\) \['stepz'\]"):
        Run(gf, "euler", h=0.1, stepz=5)
    with pytest.raises(TypeError, match="unknown integrate keyword"):
        Run(gf, "euler", save="all")
    with pytest.raises(ValueError, match="runs must be a non-empty dict"):
        Study(pb, _starts(4), {})
    with pytest.raises(ValueError, match=r"x0\['theta'\] has shape \(4, 3\).*dim 2"):
        Study(pb, {"theta": np.zeros((4, 3))}, good)
    with pytest.raises(ValueError, match="position block 'theta'"):
        Study(pb, {"p": np.zeros((4, 2))}, good)
    with pytest.raises(TypeError, match="system must be a PortHamiltonian"):
        Run("gradient_flow", "euler")
    with pytest.raises(TypeError, match=r"Run.grid: unknown keyword\(s\) \['frictio'\]"):
        Run.grid(oo.zoo.heavy_ball(), "euler", frictio=[0.5])
    with pytest.raises(ValueError, match=r"chunk_size must be ≥ 1; got 0"):
        Study(pb, _starts(4), good).run(chunk_size=0)
    with pytest.raises(TypeError, match=r"Study: the problem must have value_and_grad"):
        Study(object(), _starts(4), good)
    with pytest.raises(TypeError, match=r"Study: x0 maps block names .* got ndarray"):
        Study(pb, np.zeros((4, 2)), good)
