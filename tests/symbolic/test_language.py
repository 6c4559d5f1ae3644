"""The language: blocks, globals, reductions and the chain rule through globals."""

import pytest
import sympy as sp

import odeopt as oo
from odeopt.symbolic.language import Gradient, Reduction, coordinate_derivative


def test_blocks_and_reductions_have_readable_names():
    theta, p = oo.blocks("theta p")
    assert (theta.name, p.name) == ("theta", "p")
    assert str(oo.sqnorm(p)) == "|p|^2"
    assert str(oo.inner(p, theta)) == "<p,theta>"
    assert oo.sqnorm(p).is_nonnegative
    assert oo.inner(p, theta).is_nonnegative is None
    # the same reduction built twice is the same symbol; different summands differ
    assert oo.sqnorm(p) == oo.sqnorm(p)
    assert oo.sqnorm(p) != oo.sqnorm(theta)


def test_loss_carries_its_gradient():
    theta = oo.blocks("theta")
    F = oo.loss(theta)
    assert isinstance(F.grad, Gradient) and F.grad.block == theta


def test_chain_rule_through_globals_bbi():
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    dV = sp.Symbol("dV", real=True)
    V = F - dV
    q = oo.sqnorm(p)
    H = sp.sqrt(V * (V + q))
    # ∂H/∂θᵢ = ½(E/V + V/E)·gᵢ and ∂H/∂pᵢ = (V/E)·pᵢ with E = H
    d_theta = coordinate_derivative(H, theta)
    d_p = coordinate_derivative(H, p)
    assert sp.simplify(d_theta - (H / V + V / H) / 2 * F.grad) == 0
    assert sp.simplify(d_p - V / H * p) == 0


def test_chain_rule_for_general_reduction():
    theta, p = oo.blocks("theta p")
    r = oo.total(sp.log(1 + p**2))
    assert sp.simplify(coordinate_derivative(3 * r, p) - 6 * p / (1 + p**2)) == 0
    assert coordinate_derivative(3 * r, theta) == 0


def test_reduction_needs_a_coordinate_and_refuses_nesting():
    theta = oo.blocks("theta")
    with pytest.raises(TypeError, match="contains no block or gradient symbol"):
        Reduction(sp.Symbol("a") ** 2)
    with pytest.raises(TypeError, match="may not contain another reduction"):
        Reduction(theta * oo.sqnorm(theta))


def test_gradient_reduction_in_h_needs_hessian():
    theta = oo.blocks("theta")
    F = oo.loss(theta)
    with pytest.raises(TypeError, match="needs the Hessian"):
        coordinate_derivative(oo.sqnorm(F.grad), theta)


def test_block_name_must_be_identifier():
    with pytest.raises(TypeError, match="identifier"):
        oo.Block("not a name")
