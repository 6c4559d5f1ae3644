"""Bad input to odeopt.learned: every bad argument gets an error that names it and its value
(TypeError for the wrong kind, ValueError out of range, "finite" for NaN/inf). Each case is
fast: no real meta-training (at most one iteration on a tiny task)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from odeopt import learned
from odeopt.learned import (
    DigitsMLPTask,
    HamiltonianCell,
    HNNOptimizerNet,
    LearnedOptimizer,
    LogSign,
    QuadraticTask,
    hnn_update,
    meta_train,
    run_learned,
    run_torch,
)

NAN, INF = float("nan"), float("inf")
TINY = dict(iterations=1, problems=2, steps=3, unroll=3, validation_problems=2)


def _net() -> HNNOptimizerNet:
    torch.manual_seed(0)
    return HNNOptimizerNet()


def _batch(n: int = 2):
    return QuadraticTask(dim=3).sample(n, torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------ meta_train
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(iterations=0), ValueError, r"iterations must be an integer ≥ 1, got iterations=0"),
        (dict(iterations=-2), ValueError, r"iterations must be an integer ≥ 1, got iterations=-2"),
        (dict(iterations=2.5), ValueError, r"must be an integer ≥ 1, got iterations=2.5"),
        (dict(iterations="3"), TypeError, r"iterations must be an integer ≥ 1, got iterations='3'"),
        (dict(iterations=True), TypeError, r"iterations must be an integer"),
        (dict(unroll=0), ValueError, r"unroll must be an integer ≥ 1, got unroll=0"),
        (dict(steps=NAN), ValueError, r"steps must be an integer ≥ 1, got steps=nan"),
        (dict(problems=0), ValueError, r"problems must be an integer ≥ 1, got problems=0"),
        (dict(validation_problems=-1), ValueError, r"validation_problems must be an integer ≥ 1"),
        (dict(validate_every=0), ValueError, r"validate_every must be an integer ≥ 1"),
        (dict(lr=0.0), ValueError, r"meta_train: lr must be > 0, got lr=0"),
        (dict(lr=-1e-3), ValueError, r"lr must be > 0, got lr=-0.001"),
        (dict(lr=NAN), ValueError, r"lr must be finite, got lr=nan"),
        (dict(lr=INF), ValueError, r"lr must be finite, got lr=inf"),
        (dict(lr="0.01"), TypeError, r"lr must be a real number, got lr='0.01'"),
        (dict(out_mul=0.0), ValueError, r"out_mul must be > 0, got out_mul=0"),
        (dict(out_mul=-INF), ValueError, r"out_mul must be finite, got out_mul=-inf"),
        (dict(seed=-1), ValueError, r"seed must be an integer ≥ 0, got seed=-1"),
        (dict(seed=0.5), ValueError, r"seed must be an integer ≥ 0, got seed=0.5"),
        (dict(normalize="no"), TypeError, r"normalize must be True or False, got normalize='no'"),
        (dict(net=torch.nn.Linear(1, 1)), TypeError, r"net must be an .*HNNOptimizerNet"),
        (dict(validation="new"), ValueError, r"validation must be 'fresh' or 'fixed', got valid"),
        (dict(train_remainder=1), TypeError, r"train_remainder must be True or False, got train_r"),
        (
            dict(steps=2),
            ValueError,
            r"steps=2 < unroll=3 and train_remainder=False: no window of the unroll completes",
        ),
    ],
)
def test_meta_train_refuses_bad_arguments(kwargs, error, match):
    call = {**TINY, **kwargs}
    with pytest.raises(error, match=match):
        meta_train(QuadraticTask(dim=3), **call)


@pytest.mark.parametrize(
    ("task", "match"),
    [
        (QuadraticTask, r"task must be a Task instance .* got task=the class QuadraticTask"),
        ("quadratic", r"task must be a Task instance .* got task=str"),
        (None, r"got task=NoneType"),
    ],
)
def test_meta_train_refuses_a_task_of_the_wrong_type(task, match):
    with pytest.raises(TypeError, match=match):
        meta_train(task, **TINY)


def test_meta_train_refuses_a_batch_passed_as_task():
    with pytest.raises(TypeError, match=r"task must be a Task instance .* got task=_Quadratics"):
        meta_train(_batch(), **TINY)


def test_meta_train_checks_what_a_custom_task_samples():
    class Bad:
        name = "bad"

        def sample(self, n, generator):
            return [torch.zeros(n, 3)]

    with pytest.raises(TypeError, match=r"task.sample\(n, generator\) must be a batch of problems"):
        meta_train(Bad(), **TINY)


def test_meta_train_tiny_run_still_works():
    res = meta_train(QuadraticTask(dim=3), out_mul=1e-3, **TINY)
    assert np.isfinite(res.best_validation) and len(res.meta_losses) == 1


# ------------------------------------------------------------------------------ the tasks
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: QuadraticTask(dim=0), ValueError, r"QuadraticTask: dim must be an integer ≥ 1"),
        (lambda: QuadraticTask(dim=2.5), ValueError, r"dim must be an integer ≥ 1, got dim=2.5"),
        (lambda: QuadraticTask(dim="10"), TypeError, r"dim must be an integer ≥ 1, got dim='10'"),
        (lambda: QuadraticTask(dtype=torch.int64), ValueError, r"dtype must be a real floating"),
        (lambda: QuadraticTask(dtype=torch.complex64), ValueError, r"got dtype=torch.complex64"),
        (lambda: QuadraticTask(dtype="float32"), TypeError, r"dtype must be a torch floating"),
        (lambda: DigitsMLPTask(hidden=0), ValueError, r"DigitsMLPTask: hidden must be an integer"),
        (lambda: DigitsMLPTask(batch=0), ValueError, r"batch must be an integer ≥ 1, got batch=0"),
        (lambda: DigitsMLPTask(batch=-5), ValueError, r"got batch=-5"),
        (lambda: DigitsMLPTask(steps=0), ValueError, r"steps must be an integer ≥ 1, got steps=0"),
        (lambda: DigitsMLPTask(split="val"), ValueError, r"split must be 'train' or 'test'"),
        (lambda: DigitsMLPTask(activation="tanh"), ValueError, r"got activation='tanh'"),
    ],
)
def test_tasks_refuse_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("n", "generator", "error", "match"),
    [
        (0, torch.Generator(), ValueError, r"QuadraticTask.sample: n must be an integer ≥ 1"),
        (2.0, torch.Generator(), ValueError, r"n must be an integer ≥ 1, got n=2.0"),
        (2, 0, TypeError, r"generator must be a torch.Generator .* got generator=0"),
        (2, None, TypeError, r"generator must be a torch.Generator"),
    ],
)
def test_task_sample_refuses_bad_arguments(n, generator, error, match):
    with pytest.raises(error, match=match):
        QuadraticTask(dim=3).sample(n, generator)


# ------------------------------------------------------------------ run_learned / run_torch
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(steps=0), ValueError, r"run_learned: steps must be an integer ≥ 1, got steps=0"),
        (dict(steps=1.5), ValueError, r"steps must be an integer ≥ 1, got steps=1.5"),
        (dict(out_mul=0.0), ValueError, r"run_learned: out_mul must be > 0, got out_mul=0"),
        (dict(out_mul=NAN), ValueError, r"out_mul must be finite, got out_mul=nan"),
        (dict(window=3), ValueError, r"window=3 is used only with on_window"),
        (dict(window=0, on_window=lambda a: None), ValueError, r"window must be an integer ≥ 1"),
        (dict(on_window=lambda a: None), ValueError, r"on_window needs window"),
        (dict(window=2, on_window="print"), TypeError, r"on_window must be callable"),
        (
            dict(steps=3, window=5, on_window=lambda a: None),
            ValueError,
            r"window=5 > steps=3 and train_remainder=False: on_window would never be called",
        ),
    ],
)
def test_run_learned_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        run_learned(_net(), _batch(), **kwargs)


def test_run_learned_refuses_a_task_for_problems_and_a_wrong_net():
    with pytest.raises(TypeError, match=r"problems must be a batch .* \(a Task: pass task.sample"):
        run_learned(_net(), QuadraticTask(dim=3))
    with pytest.raises(TypeError, match=r"run_learned: net must be an .*HNNOptimizerNet"):
        run_learned(torch.nn.Linear(1, 1), _batch())


def test_run_torch_refuses_bad_arguments():
    with pytest.raises(TypeError, match=r"run_torch: optimizer must be a function of the param"):
        run_torch(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), _batch())
    with pytest.raises(TypeError, match=r"optimizer\(params\) must return a torch.optim"):
        run_torch(lambda ps: ps, _batch())
    with pytest.raises(ValueError, match=r"run_torch: steps must be an integer ≥ 1, got steps=0"):
        run_torch(lambda ps: torch.optim.SGD(ps, lr=0.1), _batch(), steps=0)


def test_hnn_update_refuses_mismatched_tensors():
    with pytest.raises(ValueError, match=r"grad.shape=\(3,\) and p_prev.shape=\(4,\)"):
        hnn_update(_net(), torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match=r"grad must be a real floating tensor, got torch.int64"):
        hnn_update(_net(), torch.zeros(3, dtype=torch.int64), torch.zeros(3))


# -------------------------------------------------------------------------- the networks
def test_networks_refuse_bad_arguments():
    with pytest.raises(ValueError, match=r"LogSign: P must be finite, got P=inf"):
        LogSign(INF)
    with pytest.raises(ValueError, match=r"LogSign: P must be finite, got P=nan"):
        LogSign(NAN)
    with pytest.raises(ValueError, match=r"HNNOptimizerNet: P must be > 0, got P=-1"):
        HNNOptimizerNet(P=-1.0)
    with pytest.raises(TypeError, match=r"preprocess must be True or False, got preprocess='yes'"):
        HNNOptimizerNet(preprocess="yes")
    with pytest.raises(ValueError, match=r"dim must be 1 .* got dim=True"):
        HamiltonianCell(True)
    cell = HamiltonianCell(1)
    with pytest.raises(ValueError, match=r"q must have shape \(\.\.\., 1\).*got q.shape=\(5, 2\)"):
        cell.balance(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"q.shape=\(5, 1\) and p.shape=\(4, 1\) differ"):
        cell.hamiltonian(torch.zeros(5, 1), torch.zeros(4, 1))


# ------------------------------------------------------------------------ LearnedOptimizer
@pytest.mark.parametrize(
    ("lr", "error", "match"),
    [
        (0.0, ValueError, r"LearnedOptimizer: lr \(out_mul\) must be > 0, got lr=0"),
        (-1e-3, ValueError, r"lr \(out_mul\) must be > 0, got lr=-0.001"),
        (NAN, ValueError, r"lr \(out_mul\) must be finite, got lr=nan"),
        (INF, ValueError, r"lr \(out_mul\) must be finite, got lr=inf"),
        (True, TypeError, r"lr \(out_mul\) must be a real number, got lr=True"),
        ("1e-3", TypeError, r"lr \(out_mul\) must be a real number, got lr='1e-3'"),
    ],
)
def test_learned_optimizer_refuses_bad_lr(lr, error, match):
    with pytest.raises(error, match=match):
        LearnedOptimizer([torch.zeros(3, requires_grad=True)], _net(), lr=lr)


@pytest.mark.parametrize(
    ("param", "error", "match"),
    [
        (torch.zeros(3, dtype=torch.int64), TypeError, r"parameter 0 of param group 0 has dtype "),
        (
            torch.zeros(3, dtype=torch.complex64, requires_grad=True),
            TypeError,
            r"has dtype torch.complex64; the learned optimizer needs a real floating dtype",
        ),
        (
            torch.empty(3, device="meta", requires_grad=True),
            ValueError,
            r"parameter 0 of param group 0 is on the meta device",
        ),
    ],
)
def test_learned_optimizer_refuses_unsupported_parameters(param, error, match):
    with pytest.raises(error, match=match):
        LearnedOptimizer([param], _net())


def test_learned_optimizer_refuses_a_bad_added_group_and_keeps_the_good_ones():
    opt = LearnedOptimizer([torch.zeros(3, requires_grad=True)], _net())
    with pytest.raises(TypeError, match=r"parameter 1 of param group 1 has dtype torch.int32"):
        opt.add_param_group(
            {"params": [torch.zeros(2, requires_grad=True), torch.zeros(2, dtype=torch.int32)]}
        )
    with pytest.raises(ValueError, match=r"lr \(out_mul\) must be > 0, got lr=0 \(param group 1"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": 0.0})
    assert len(opt.param_groups) == 1


def test_learned_optimizer_checks_lr_changed_through_param_groups():
    theta = torch.ones(3, requires_grad=True)
    opt = LearnedOptimizer([theta], _net(), lr=1e-2)
    theta.grad = torch.ones(3)
    for bad, match in ((NAN, r"must be finite, got lr=nan \(param group 0\)"), (-0.1, r"> 0")):
        opt.param_groups[0]["lr"] = bad
        with pytest.raises(ValueError, match=match):
            opt.step()
        assert torch.equal(theta.detach(), torch.ones(3))  # nothing moved
    opt.param_groups[0]["lr"] = 1e-2
    opt.step()
    assert not torch.equal(theta.detach(), torch.ones(3))


def test_learned_optimizer_nonfinite_gradient_moves_no_parameter():
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = LearnedOptimizer([{"params": [a]}, {"params": [b]}], _net())
    a.grad, b.grad = torch.ones(3), torch.tensor([1.0, INF])
    with pytest.raises(FloatingPointError, match=r"param group 1, parameter 0 .*no parameter"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(3))  # group 0 was not stepped before the check


def test_learned_optimizer_finite_check_does_not_overflow_in_float16():
    """Large finite float16 gradients (a sum would overflow) pass the max-|·| check."""
    theta = torch.zeros(10_000, dtype=torch.float16, requires_grad=True)
    opt = LearnedOptimizer([theta], _net(), lr=1e-3)
    theta.grad = torch.full((10_000,), 60_000.0, dtype=torch.float16)
    opt.step()
    assert torch.isfinite(theta).all()


def test_learned_optimizer_refuses_a_nonfinite_closure_loss():
    theta = torch.ones(3, requires_grad=True)
    opt = LearnedOptimizer([theta], _net())

    def closure():
        opt.zero_grad()
        (theta**2).sum().backward()
        return torch.tensor(NAN)

    with pytest.raises(FloatingPointError, match=r"closure's loss is not finite \(loss=tensor"):
        opt.step(closure)
    assert torch.equal(theta.detach(), torch.ones(3))


def test_learned_optimizer_load_state_dict_checks_kind_and_shapes():
    a = torch.ones(3, requires_grad=True)
    opt = LearnedOptimizer([a], _net())
    sgd = torch.optim.SGD([torch.ones(3, requires_grad=True)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"state is not a LearnedOptimizer's: param group 0 lacks"):
        opt.load_state_dict(sgd.state_dict())
    other = LearnedOptimizer([torch.ones(4, requires_grad=True)], _net())
    other.param_groups[0]["params"][0].grad = torch.ones(4)
    other.step()
    with pytest.raises(ValueError, match=r"parameter 0 of param group 0 has p of shape \(4,\)"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match=r"state has param groups of sizes \[2\], this .* \[1\]"):
        opt.load_state_dict(
            LearnedOptimizer(
                [torch.ones(1, requires_grad=True), torch.ones(1, requires_grad=True)], _net()
            ).state_dict()
        )
    with pytest.raises(ValueError, match=r"state must be an optimizer state_dict"):
        opt.load_state_dict({"p": 1})


# ------------------------------------------------------------------- to_source / save_source
def test_save_source_into_a_missing_directory_names_it(tmp_path):
    target = tmp_path / "missing" / "hnn.py"
    with pytest.raises(FileNotFoundError, match=r"the directory '.*missing' of path=.* not exist"):
        learned.save_source(_net(), target)
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a file"):
        learned.save_source(_net(), tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike, got path=3"):
        learned.save_source(_net(), 3)
    assert not (tmp_path / "missing").exists()


def test_to_source_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"class_name must be a Python identifier, got "):
        learned.to_source(_net(), "class")
    with pytest.raises(TypeError, match=r"class_name must be a string, got class_name=None"):
        learned.to_source(_net(), None)
    with pytest.raises(TypeError, match=r"to_source: net must be an .*HNNOptimizerNet"):
        learned.to_source(torch.nn.Linear(1, 1))
    net = _net()
    with torch.no_grad():
        net.update.weight.fill_(NAN)
    with pytest.raises(ValueError, match=r"the net's weight update.weight is not finite"):
        learned.to_source(net)


def test_generated_optimizer_checks_like_the_library(tmp_path):
    path = learned.save_source(_net(), tmp_path / "hnn_gen.py")
    spec = importlib.util.spec_from_file_location("hnn_gen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ValueError, match=r"lr \(out_mul\) must be finite, got lr=inf"):
        module.HNNOptimizer([torch.zeros(2, requires_grad=True)], lr=INF)
    with pytest.raises(TypeError, match=r"parameter 0 of param group 0 has dtype torch.int64"):
        module.HNNOptimizer([torch.zeros(2, dtype=torch.int64)])
    theta = torch.ones(2, requires_grad=True)
    opt = module.HNNOptimizer([theta], lr=1e-3)
    opt.param_groups[0]["lr"] = math.nan
    theta.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"must be finite, got lr=nan \(param group 0\)"):
        opt.step()
