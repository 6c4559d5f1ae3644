"""Invalid structures raise StructureError with a message that names the entry."""

import pytest
import sympy as sp

import odeopt as oo
from odeopt import StructureError


@pytest.fixture
def hb():
    theta, p = oo.blocks("theta p")
    m, gamma = oo.parameters("m gamma", positive=True)
    F = oo.loss(theta)
    return theta, p, m, gamma, F, F + oo.sqnorm(p) / (2 * m)


def make(hb, **kw):
    theta, p, m, gamma, F, H = hb
    args = dict(
        hamiltonian=H,
        blocks=[theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, gamma]],
        parameters={m: 1.0, gamma: 0.5},
    )
    args.update(kw)
    return oo.PortHamiltonian(**args)


def test_structure_error_is_value_error():
    assert issubclass(StructureError, ValueError)


def test_valid_heavy_ball_builds(hb):
    system = make(hb)
    assert system.r_psd is True


def test_j_not_skew(hb):
    with pytest.raises(
        StructureError, match=r"J is not skew-symmetric: J\[0,1\] = 1 but J\[1,0\] = 1"
    ):
        make(hb, J=[[0, 1], [1, 0]])


def test_j_nonzero_diagonal(hb):
    with pytest.raises(StructureError, match=r"J\[1,1\] = 2 \(the diagonal must be 0\)"):
        make(hb, J=[[0, 1], [-1, 2]])


def test_r_not_symmetric(hb):
    with pytest.raises(StructureError, match=r"R is not symmetric: R\[0,1\] = 1 but R\[1,0\] = 0"):
        make(hb, R=[[0, 1], [0, 1]])


def test_r_indefinite_numeric(hb):
    with pytest.raises(
        StructureError, match=r"not positive semidefinite: det R\[\[0, 1\], \[0, 1\]\] = -3 < 0"
    ):
        make(hb, R=[[1, 2], [2, 1]])


def test_r_negative_entry_with_positive_symbol(hb):
    theta, p, m, gamma, F, H = hb
    with pytest.raises(StructureError, match=r"not positive semidefinite: R\[1,1\] = -gamma < 0"):
        make(hb, R=[[0, 0], [0, -gamma]])


def test_r_undecidable_builds_and_verdict_says_so(hb):
    theta, p, m, gamma, F, H = hb
    a = sp.Symbol("a", real=True)
    system = make(hb, R=[[0, 0], [0, a]], parameters={m: 1.0, gamma: 0.5, a: None})
    assert system.r_psd is None
    balance = system.energy_balance()
    assert balance.verdict == "not proved"
    assert "R could not be shown positive semidefinite" in balance.reason
    assert "R[1,1] = a" in balance.reason
    # a < 0 makes H grow: the numeric search finds it
    assert balance.counterexample is not None and balance.counterexample["value"] > 0
    assert balance.counterexample["a"] < 0


def test_heavy_ball_negative_friction_rejected():
    with pytest.raises(
        StructureError,
        match=r"R is not positive semidefinite with .*friction = -1.0: R\[1,1\] = -1 < 0",
    ):
        oo.zoo.heavy_ball(friction=-1.0)


def test_parameter_value_against_assumption():
    with pytest.raises(
        StructureError, match=r"parameter 'mass' \(m\) is declared positive but was given -2.0"
    ):
        oo.zoo.heavy_ball(mass=-2.0)


def test_h_with_bare_coordinate(hb):
    theta, p, m, gamma, F, H = hb
    with pytest.raises(
        StructureError, match="contains the coordinate symbol\\(s\\) p outside a reduction"
    ):
        make(hb, hamiltonian=F + p**2 / 2)


def test_h_not_scalar(hb):
    theta, p, m, gamma, F, H = hb
    with pytest.raises(
        StructureError, match="H must be a scalar expression, got a MutableDenseMatrix"
    ):
        make(hb, hamiltonian=sp.Matrix([F, F]))


def test_shape_mismatch(hb):
    with pytest.raises(StructureError, match=r"J has shape 3×3, but the system needs 2×2"):
        make(hb, J=sp.zeros(3, 3))
    with pytest.raises(StructureError, match=r"R has shape 1×1, but the system needs 2×2"):
        make(hb, R=[[1]])


def test_port_shapes(hb):
    with pytest.raises(StructureError, match="G has 1 rows, but the system has 2 energy blocks"):
        make(hb, G=[[1]], u=[0])
    with pytest.raises(StructureError, match="u has shape 2×1, but G has 1 column"):
        make(hb, G=[[0], [1]], u=[0, 0])
    with pytest.raises(StructureError, match="an input u was given without a port matrix G"):
        make(hb, u=[1])


def test_undeclared_symbol(hb):
    k = sp.Symbol("k", positive=True)
    with pytest.raises(
        StructureError, match=r"undeclared symbol 'k' in R\[1,1\]; declare it in parameters="
    ):
        make(hb, R=[[0, 0], [0, k]])


def test_undeclared_symbol_inside_reduction(hb):
    theta, p, m, gamma, F, H = hb
    c = sp.Symbol("c")
    with pytest.raises(StructureError, match="undeclared symbol 'c' in H"):
        make(hb, hamiltonian=F + oo.total(c * p**2))


def test_undeclared_block(hb):
    s = oo.blocks("s")
    with pytest.raises(
        StructureError, match=r"block 's' in J\[0,1\] is not one of the system's blocks"
    ):
        make(hb, J=[[0, s], [-s, 0]])


def test_blocks_must_be_blocks(hb):
    theta, p, m, gamma, F, H = hb
    with pytest.raises(StructureError, match="blocks must be Block symbols"):
        make(hb, blocks=[theta, sp.Symbol("p")])
    with pytest.raises(StructureError, match=r"blocks names repeat: \['theta'\]"):
        make(hb, blocks=[theta, theta])


def test_non_finite_and_non_real_entries(hb):
    with pytest.raises(StructureError, match=r"R\[1,1\] = nan is not finite"):
        make(hb, R=[[0, 0], [0, sp.nan]])
    with pytest.raises(StructureError, match=r"R\[1,1\] = oo is not finite"):
        make(hb, R=[[0, 0], [0, sp.oo]])
    with pytest.raises(StructureError, match=r"R\[1,1\] = I is not real"):
        make(hb, R=[[0, 0], [0, sp.I]])


def test_undeclared_function(hb):
    theta, p, m, gamma, F, H = hb
    f = sp.Function("f")
    with pytest.raises(StructureError, match=r"undeclared function f\(\|p\|\^2\) in H"):
        make(hb, hamiltonian=F + f(oo.sqnorm(p)))
    with pytest.raises(StructureError, match=r"undeclared function f\(t\) in R\[1,1\]"):
        make(hb, R=[[0, 0], [0, f(oo.t)]])


def test_non_finite_parameter_values():
    with pytest.raises(StructureError, match="parameter 'mass' must be finite"):
        oo.zoo.heavy_ball(mass=float("inf"))
    with pytest.raises(StructureError, match="parameter 'delta_v' must be finite"):
        oo.zoo.bbi(delta_v=float("nan"))


def test_reserved_parameter_names(hb):
    theta, p, m, gamma, F, H = hb
    tt = sp.Symbol("t", positive=True)
    with pytest.raises(StructureError, match="parameter name 't' is reserved"):
        make(hb, R=[[0, 0], [0, tt]], parameters={m: 1.0, gamma: 0.5, tt: 1.0})


def test_reduction_refuses_loss_and_time():
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    with pytest.raises(TypeError, match=r"not the global\(s\) F"):
        oo.total(F * p**2)
    with pytest.raises(TypeError, match=r"not the global\(s\) t"):
        oo.total(sp.exp(oo.t) * p**2)
