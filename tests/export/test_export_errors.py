"""Bad inputs to exported optimizers: each is refused with an error naming the argument (its
value, its param group, "parameter i", "state", "loss"), or flagged/skipped as documented;
and the finite check neither misses a NaN/±inf nor flags finite gradients."""

from __future__ import annotations

import math

import pytest
import torch

import odeopt as oo
from odeopt import zoo


@pytest.fixture(scope="module")
def HB() -> type:
    """Heavy ball + symplectic Euler (mass positive, friction nonnegative)."""
    return oo.discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()


@pytest.fixture(scope="module")
def BBI() -> type:
    """BBI + symplectic Euler: its rule uses the loss (a closure is required)."""
    return oo.discretize(zoo.bbi(), "symplectic_euler").to_torch()


def _param(n: int = 3, grad: float | None = 1.0, dtype=torch.float32) -> torch.nn.Parameter:
    w = torch.nn.Parameter(torch.zeros(n, dtype=dtype))
    if grad is not None:
        w.grad = torch.full((n,), grad, dtype=dtype)
    return w


def _mass_system(default: float | None) -> oo.PortHamiltonian:
    """H = F + |p|²/(2·mr) with mr a merely real symbol: H is bounded below only if mr > 0."""
    theta, p = oo.blocks("theta p")
    mr = oo.parameters("mr", real=True)
    return oo.PortHamiltonian(
        oo.loss(theta) + oo.sqnorm(p) / (2 * mr),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, 1]],
        parameters={mr: default},
    )


# ---------------------------------------------------------------- hyper-parameters


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"lr": math.inf}, ValueError, r"lr \(the step h\) must be finite, got lr = inf"),
        ({"lr": math.nan}, ValueError, r"lr \(the step h\) must be finite, got lr = nan"),
        ({"lr": -0.1}, ValueError, r"lr \(the step h\) must be positive, got -0.1"),
        ({"lr": 0.0}, ValueError, r"lr \(the step h\) must be positive, got 0.0"),
        ({"lr": "0.1"}, TypeError, r"lr \(the step h\) must be a real number, got '0.1'"),
        ({"lr": torch.ones(2)}, TypeError, r"lr \(the step h\) must be a real number"),
        (
            {"lr": 0.1, "friction": math.inf},
            ValueError,
            "friction must be finite, got friction = inf",
        ),
        ({"lr": 0.1, "friction": -1.0}, ValueError, "friction must be nonnegative, got -1.0"),
        ({"lr": 0.1, "mass": 0.0}, ValueError, "mass must be positive, got 0.0"),
        ({"lr": 0.1, "mass": 1 + 2j}, TypeError, r"mass must be a real number, got \(1\+2j\)"),
        ({"lr": 0.1, "mass": None}, TypeError, "mass has no value"),
        ({"lr": 0.1, "maximize": "yes"}, TypeError, "maximize in param group 0 must be True or"),
        ({"lr": 0.1, "foreach": "no"}, TypeError, "foreach in param group 0 must be None, True"),
        ({"lr": 0.1, "check_finite": 1}, TypeError, "check_finite in param group 0 must be True"),
        ({"lr": 0.1, "frictoin": 1.0}, TypeError, "unexpected keyword argument 'frictoin'"),
    ],
)
def test_construction_refuses_bad_hyperparameters(HB, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        HB([_param()], **kwargs)


def test_switch_smoothing_is_checked_and_only_rules_with_switches_take_it(HB) -> None:
    """The switch code (and its keyword) is in an exported file only when the rule has
    switches: braking checks switch_smoothing, heavy ball has no such keyword."""
    Brake = oo.discretize(zoo.braking(), "symplectic_euler").to_torch()
    with pytest.raises(ValueError, match=r"switch_smoothing must be in \[0, 1\), got 1.5"):
        Brake([_param()], lr=0.1, switch_smoothing=1.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'switch_smoothing'"):
        HB([_param()], lr=0.1, switch_smoothing=0.5)


def test_a_group_override_is_checked_naming_its_group(HB) -> None:
    a, b = _param(), _param()
    with pytest.raises(ValueError, match="mass in param group 1 must be positive, got -2.0"):
        HB([{"params": [a]}, {"params": [b], "mass": -2.0}], lr=0.1)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("lr", math.nan, r"lr \(the step h\) in param group 0 must be finite, got lr = nan"),
        ("lr", math.inf, r"lr \(the step h\) in param group 0 must be finite, got lr = inf"),
        ("lr", -0.1, r"lr \(the step h\) in param group 0 must be nonnegative, got -0.1"),
        ("friction", math.inf, "friction in param group 0 must be finite, got friction = inf"),
        ("friction", -0.5, "friction in param group 0 must be nonnegative, got -0.5"),
        ("mass", "heavy", "mass in param group 0 must be a real number, got 'heavy'"),
    ],
)
def test_values_changed_through_param_groups_are_checked_at_the_next_step(
    HB, key, value, match
) -> None:
    w = _param()
    opt = HB([w], lr=0.1)
    opt.step()
    before = (w.detach().clone(), opt.state[w]["p"].clone())
    opt.param_groups[0][key] = value
    with pytest.raises(ValueError if key != "mass" else TypeError, match=match):
        opt.step()
    assert torch.equal(w.detach(), before[0]) and torch.equal(opt.state[w]["p"], before[1])
    opt.param_groups[0][key] = {"lr": 0.1, "friction": 0.5, "mass": 1.0}[key]  # repaired
    opt.step()
    assert not torch.equal(w.detach(), before[0])


def test_a_scheduler_may_take_lr_to_zero_a_step_that_changes_nothing(HB) -> None:
    """lr = 0 (CosineAnnealingLR's end with eta_min=0) is accepted after construction."""
    w = _param()
    opt = HB([w], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3, eta_min=0.0)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    before = w.detach().clone()
    opt.step()
    assert torch.equal(w.detach(), before)


def test_a_tensor_lr_changed_in_place_is_checked(HB) -> None:
    """A tensor lr can change in place (no new value to compare): it is checked every step."""
    w = _param()
    lr = torch.tensor(0.1)
    opt = HB([w], lr=lr)
    opt.step()
    lr.fill_(math.nan)
    with pytest.raises(ValueError, match=r"lr \(the step h\) in param group 0 must be finite"):
        opt.step()


def test_a_parameter_without_a_default_needs_a_value(HB) -> None:
    Opt = oo.discretize(_mass_system(None), "symplectic_euler").to_torch()
    with pytest.raises(TypeError, match=r"mr has no value .* pass mr=\.\.\."):
        Opt([_param()], lr=0.1)
    Opt([_param()], lr=0.1, mr=2.0).step()  # given a value, it runs


def test_a_negative_mass_of_a_real_symbol_is_refused_h_unbounded_below() -> None:
    Opt = oo.discretize(_mass_system(1.0), "symplectic_euler").to_torch()
    with pytest.raises(ValueError, match=r"H is unbounded below with mr=-1.0.*1/\(2\*mr\) = -0.5"):
        Opt([_param()], lr=0.1, mr=-1.0)
    opt = Opt([_param()], lr=0.1)
    opt.param_groups[0]["mr"] = -2.0
    with pytest.raises(ValueError, match="H is unbounded below with mr=-2.0 in param group 0"):
        opt.step()


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: torch.zeros(3, dtype=torch.int64), TypeError, r"parameter 0 of group 0 .*int64"),
        (
            lambda: torch.zeros(3, dtype=torch.complex64, requires_grad=True),
            TypeError,
            r"parameter 0 of group 0 \(shape \(3,\)\) is complex",
        ),
        (
            lambda: torch.nn.Parameter(torch.zeros(3, device="meta")),
            ValueError,
            r"parameter 0 of group 0 .* meta device",
        ),
        (
            lambda: torch.zeros(3).to_sparse().requires_grad_(),
            TypeError,
            r"parameter 0 of group 0 .* layout torch.sparse_coo",
        ),
    ],
)
def test_unsupported_parameters_are_refused_at_construction(HB, make, error, match) -> None:
    with pytest.raises(error, match=match):
        HB([make()], lr=0.1)


def test_add_param_group_checks_and_does_not_add_a_bad_group(HB) -> None:
    opt = HB([_param()], lr=0.1)
    with pytest.raises(TypeError, match=r"parameter 1 of group 1 .* dtype torch.int32"):
        opt.add_param_group({"params": [_param(), torch.zeros(2, dtype=torch.int32)]})
    with pytest.raises(ValueError, match="friction in param group 1 must be finite"):
        opt.add_param_group({"params": [_param()], "friction": math.nan})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [_param()], "friction": 2.0})
    assert len(opt.param_groups) == 2


def test_sparse_gradients_and_empty_parameter_lists_are_refused(HB) -> None:
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match=r"does not support sparse gradients \(parameter 0"):
        HB(emb.parameters(), lr=0.1).step()
    with pytest.raises(ValueError, match="empty parameter list"):
        HB([], lr=0.1)


# ---------------------------------------------------------------- the finite check


def test_finite_float16_gradients_whose_sum_overflows_pass(HB) -> None:
    """10⁶ entries of 0.1 sum to 1e5 > 65504 (float16's max): finite, so no error."""
    w = _param(10**6, 0.1, torch.float16)
    HB([w], lr=0.1).step()
    assert torch.isfinite(w).all() and w[0].item() != 0.0


def test_finite_float32_gradients_near_the_maximum_pass(HB) -> None:
    for n in (4, 100_000):  # both CPU paths (few large tensors; many small ones below)
        w = _param(n, 3e38)
        HB([w], lr=1e-3, friction=0.0).step()
        assert torch.isfinite(w).all()
    many = [_param(10, 3e38) for _ in range(100)]
    HB(many, lr=1e-3).step()
    assert all(torch.isfinite(w).all() for w in many)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_gradient_among_many_small_tensors_is_named(HB, bad) -> None:
    first = [_param(10) for _ in range(50)]
    second = [_param(10) for _ in range(150)]
    second[137].grad[4] = bad
    opt = HB([{"params": first}, {"params": second}], lr=0.1)
    with pytest.raises(FloatingPointError, match=r"parameter 137 of group 1 \(shape \(10,\)\)"):
        opt.step()
    assert all(torch.equal(w.detach(), torch.zeros(10)) for w in first + second)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_a_non_finite_gradient_in_a_large_tensor_is_named(HB, bad) -> None:
    ws = [_param(300_000) for _ in range(3)]
    ws[2].grad[123_456] = bad
    with pytest.raises(FloatingPointError, match=r"parameter 2 of group 0 \(shape \(300000,\)\)"):
        HB(ws, lr=0.1).step()


def test_an_overlapping_gradient_is_tested_exactly(HB) -> None:
    """A gradient whose elements share memory (expanded) cannot go through the fused CPU test;
    the exact per-tensor test still names it."""
    w = _param(4, None)
    w.grad = torch.tensor([math.nan]).expand(4)
    with pytest.raises(FloatingPointError, match="parameter 0 of group 0"):
        HB([w], lr=0.1).step()


def test_check_finite_false_drops_the_test_and_skip_nonfinite_skips(HB) -> None:
    w = _param()
    w.grad = torch.tensor([0.0, math.nan, 1.0])
    HB([w], lr=0.1, check_finite=False).step()
    assert math.isnan(w[1].item())  # the step was taken, as asked
    v = _param()
    v.grad = torch.tensor([0.0, math.inf, 1.0])
    opt = HB([v], lr=0.1, skip_nonfinite=True)
    opt.step()
    assert opt.skipped_steps == 1 and torch.equal(v.detach(), torch.zeros(3))


# ---------------------------------------------------------------- closures and the loss


def _closure(opt, w, value):
    def closure():
        opt.zero_grad()
        loss = (w * w).sum() + 1.0
        loss.backward()
        return value(loss)

    return closure


def test_a_non_finite_loss_with_finite_gradients_raises_or_is_skipped(HB) -> None:
    w = _param(3, None)
    with torch.no_grad():
        w.fill_(1.0)
    opt = HB([w], lr=0.1)
    with pytest.raises(FloatingPointError, match=r"loss returned by the closure is not finite"):
        opt.step(_closure(opt, w, lambda loss: loss * math.nan))
    assert torch.equal(w.detach(), torch.ones(3))
    skip = HB([w], lr=0.1, skip_nonfinite=True)
    skip.step(_closure(skip, w, lambda loss: loss * math.inf))
    assert skip.skipped_steps == 1 and torch.equal(w.detach(), torch.ones(3))


def test_a_closure_returning_none_where_the_rule_uses_the_loss(BBI, HB) -> None:
    w = _param(3, None)
    opt = BBI([w], lr=0.1)
    with pytest.raises(TypeError, match="the closure returned None, but .* uses the loss"):
        opt.step(_closure(opt, w, lambda loss: None))
    rk4 = oo.discretize(zoo.heavy_ball(), "rk4").to_torch()  # needs a closure, not the loss
    v = _param(3, None)
    with torch.no_grad():
        v.fill_(1.0)
    opt = rk4([v], lr=0.1)
    opt.step(_closure(opt, v, lambda loss: None))
    assert (v.detach() < 1.0).all()


@pytest.mark.parametrize(
    "value,error,match",
    [
        (lambda loss: loss * torch.ones(2), ValueError, r"loss must be a single number, .*\(2,\)"),
        (lambda loss: "low", TypeError, "the closure must return the loss .* got 'low'"),
    ],
)
def test_a_closure_returning_something_else_than_a_number(BBI, value, error, match) -> None:
    w = _param(3, None)
    opt = BBI([w], lr=0.1)
    with pytest.raises(error, match=match):
        opt.step(_closure(opt, w, value))


def test_a_rule_using_the_loss_needs_a_closure(BBI) -> None:
    with pytest.raises(RuntimeError, match="needs a closure .* the loss value"):
        BBI([_param()], lr=0.1).step()


# ---------------------------------------------------------------- load_state_dict


def test_another_optimizers_state_is_refused(HB, BBI) -> None:
    w = _param()
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    sgd.step()
    with pytest.raises(ValueError, match=r"state is not a HeavyBall\w* state: .* lacks"):
        HB([w], lr=0.1).load_state_dict(sgd.state_dict())
    bbi = BBI([w], lr=0.1)
    bbi.step(_closure(bbi, w, lambda loss: loss))
    with pytest.raises(ValueError, match=r"state holds \['odeopt'\] .* another optimizer's"):
        HB([w], lr=0.1).load_state_dict(bbi.state_dict())
    hb = HB([w], lr=0.1)
    hb.step()
    with pytest.raises(
        ValueError, match=r"state is not a Bbi\w* state: .* \['delta_e', 'delta_v'\]"
    ):
        BBI([w], lr=0.1).load_state_dict(hb.state_dict())
    with pytest.raises(ValueError, match="expects an optimizer state"):
        HB([w], lr=0.1).load_state_dict([1, 2])


def test_a_state_of_other_shapes_or_groups_is_refused(HB) -> None:
    w = _param(3)
    opt = HB([w], lr=0.1)
    opt.step()
    saved = opt.state_dict()
    with pytest.raises(ValueError, match=r"state 'p' of parameter 0 of group 0 has shape \(3,\), "):
        HB([_param(4)], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"state has 1 param group\(s\), this \w+ has 2"):
        HB([{"params": [_param()]}, {"params": [_param()]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"state's param group 0 has 1 parameter\(s\)"):
        HB([_param(), _param()], lr=0.1).load_state_dict(saved)
    broken = opt.state_dict()
    del broken["state"][0]["p"]
    with pytest.raises(ValueError, match=r"state of parameter 0 of group 0 has \['step'\]"):
        HB([_param()], lr=0.1).load_state_dict(broken)


def test_loaded_hyperparameters_are_checked_at_the_next_step(HB) -> None:
    w = _param()
    opt = HB([w], lr=0.1)
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0]["friction"] = math.nan
    fresh = HB([w], lr=0.1)
    fresh.load_state_dict(saved)
    with pytest.raises(ValueError, match="friction in param group 0 must be finite"):
        fresh.step()
