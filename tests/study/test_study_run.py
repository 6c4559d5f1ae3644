"""Running studies: dask.distributed and worker processes equal the local run exactly,
checkpoints resume, results round-trip through netCDF, torch optimizers as runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import bensaid_runs

import odeopt as oo
from odeopt.study import Run, Study, StudyResult


def _poly_three_study(n: int) -> Study:
    x0 = {"theta": np.random.default_rng(0).uniform(-3, 3, (n, 2))}
    return Study(oo.problems.poly_three(), x0, bensaid_runs())


@pytest.fixture(scope="module")
def poly_three_2000():
    study = _poly_three_study(2000)
    return study, study.run(chunk_size=500)


def test_dask_local_cluster_table_equals_the_local_one(poly_three_2000) -> None:
    distributed = pytest.importorskip("distributed")
    study, local = poly_three_2000
    table = local.table()
    assert table.loc["GD", "diverged"] >= 0.99
    assert table.loc["LC_EGD", "diverged"] == 0.0
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        remote = study.run(client=client, chunk_size=500)
    assert remote.table().equals(table)
    assert remote.data.identical(local.data)


def test_worker_processes_equal_the_local_run() -> None:
    """Worker processes take what dask takes (cloudpickle): an exported optimizer class, a
    problem made of lambdas."""
    study = _poly_three_study(120)
    Hb = oo.discretize(oo.zoo.heavy_ball(friction=2.0), "symplectic_euler").to_torch()
    study.runs["HB (exported)"] = Run.torch(Hb, 50, batched=True, lr=0.05)
    local = study.run()
    pooled = study.run(chunk_size=25, workers=2)
    assert pooled.data.identical(local.data)
    bowl = oo.problems.from_functions(
        lambda th: 0.5 * (th**2).sum(-1), lambda th: th, dim=2, name="bowl"
    )
    gd = {"GD": Run(oo.zoo.gradient_flow(), "euler", h=0.5, steps=3)}
    lam = Study(bowl, {"theta": np.ones((4, 2))}, gd)
    np.testing.assert_array_equal(
        lam.run(chunk_size=2, workers=2).data["theta"].values, np.full((1, 4, 2), 0.125)
    )


def test_checkpoint_resumes_only_missing_tasks(tmp_path) -> None:
    study = _poly_three_study(60)
    full = study.run(chunk_size=20, checkpoint=tmp_path)
    files = sorted(tmp_path.glob("run*.npz"))
    assert len(files) == 6  # 2 runs × 3 chunks
    files[4].unlink()
    stamps = {f: f.stat().st_mtime_ns for f in files if f.exists()}
    again = study.run(chunk_size=20, checkpoint=tmp_path)
    assert again.data.identical(full.data)
    assert files[4].exists()  # recomputed
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())  # the others were read
    with pytest.raises(ValueError, match="holds tasks of another study"):
        study.run(chunk_size=30, checkpoint=tmp_path)


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("GD", Run(oo.zoo.gradient_flow(), "euler", h=0.1, steps=2000, gtol=1e-3)),
        (
            "LC_EGD",  # h_max does not show in the scheme's repr
            Run(
                oo.zoo.gradient_flow(),
                oo.schemes.EnergyDecrease("euler", h_max=0.2),
                t_span=(0, 1e8),
                h=0.1,
                gtol=1e-4,
                max_steps=5000,
            ),
        ),
    ],
)
def test_checkpoint_refuses_a_study_whose_runs_changed(tmp_path, name, changed) -> None:
    study = _poly_three_study(6)
    study.run(checkpoint=tmp_path)
    other = _poly_three_study(6)
    other.runs[name] = changed
    with pytest.raises(ValueError, match="holds tasks of another study"):
        other.run(checkpoint=tmp_path)
    study.run(checkpoint=tmp_path)  # the unchanged study resumes


def test_checkpoint_sees_system_parameters_and_optimizer_settings(tmp_path) -> None:
    x0 = {"theta": np.random.default_rng(0).uniform(-1, 1, (5, 2))}
    pb = oo.problems.poly_three()

    def hb(friction):
        return {"HB": Run(oo.zoo.heavy_ball(friction=friction), h=0.1, steps=20)}

    Study(pb, x0, hb(0.1)).run(checkpoint=tmp_path / "a")
    with pytest.raises(ValueError, match="holds tasks of another study"):
        Study(pb, x0, hb(0.9)).run(checkpoint=tmp_path / "a")

    def exported(friction):
        Opt = oo.discretize(oo.zoo.heavy_ball(friction=friction), "symplectic_euler").to_torch()
        return {"HB": Run.torch(Opt, 20, batched=True, lr=0.1)}

    Study(pb, x0, exported(0.1)).run(checkpoint=tmp_path / "b")
    Study(pb, x0, exported(0.1)).run(checkpoint=tmp_path / "b")  # the same study resumes
    with pytest.raises(ValueError, match="holds tasks of another study"):
        Study(pb, x0, exported(0.9)).run(checkpoint=tmp_path / "b")


def test_result_round_trips_through_netcdf(tmp_path, poly_three_2000) -> None:
    _, local = poly_three_2000
    path = local.save(tmp_path / "study.nc")
    back = StudyResult.load(path)
    assert back.data.identical(local.data)
    assert back.table().equals(local.table())
    assert back.outcome.equals(local.outcome)
    with pytest.raises(FileNotFoundError, match="no file"):
        StudyResult.load(tmp_path / "missing.nc")


def _adam_by_hand(theta0: np.ndarray, steps: int, lr: float) -> np.ndarray:
    pb = oo.problems.poly_three()
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=lr)
    for _ in range(steps):
        _, g = pb.value_and_grad(p.detach())
        p.grad = torch.as_tensor(g).clone()
        opt.step()
    return p.detach().numpy()


def test_torch_runs_batched_equal_one_start_at_a_time_and_a_hand_loop() -> None:
    x0 = {"theta": np.random.default_rng(1).uniform(-1.5, 1.5, (12, 2))}
    runs = {
        "batched": Run.torch(torch.optim.Adam, 150, batched=True, lr=0.02),
        "single": Run.torch(torch.optim.Adam, 150, lr=0.02),
    }
    res = Study(oo.problems.poly_three(), x0, runs).run(chunk_size=5, best=True)
    theta = res.data["theta"].values
    np.testing.assert_array_equal(theta[0], theta[1])
    np.testing.assert_array_equal(theta[0], _adam_by_hand(x0["theta"], 150, 0.02))
    assert (res.data["steps"].values == 150).all()
    assert (res.data["best_F"].values <= res.data["F"].values).all()
    assert (res.data["best_F"].values[0] < oo.problems.poly_three().value(x0["theta"])).all()


def test_torch_runs_flag_divergence_and_convergence() -> None:
    x0 = {"theta": np.array([[2.5, 2.5], [0.02, -1.0]])}
    runs = {
        "SGD, lr=1": Run.torch(torch.optim.SGD, 50, batched=True, lr=1.0),
        "SGD, lr=0.01": Run.torch(torch.optim.SGD, 5000, batched=True, lr=0.01, gtol=1e-6),
    }
    res = Study(oo.problems.poly_three(), x0, runs).run()
    status = res.data["status"].values
    assert status[0, 0] == "diverged"
    assert np.isfinite(res.data["theta"].values[0, 0]).all()  # the last finite state
    assert status[1, 1] == "converged"
    assert res.data["grad_norm"].values[1, 1] < 1e-6
    steps = res.data["steps"].values[1, 1]
    assert 0 < steps < 5000 and res.data["t_stop"].values[1, 1] == steps
    assert res.outcome.values[1, 1] == "(0, -1)"


def test_seeded_runs_are_chunk_invariant_and_any_over_seed_groups_them() -> None:
    Opt = oo.discretize(oo.zoo.bbi(), "symplectic_euler").to_torch()
    pb = oo.problems.ackley(2, b=0.02)
    x0 = {"theta": np.random.default_rng(0).uniform(-4, 4, (4, 2))}
    runs = oo.study.OptimizerRun.grid(
        Opt,
        300,
        name="BBI",
        seed=[0, 1],
        lr=0.05,
        delta_v=1e-4,
        delta_e=2.0,
        bounce_every=20,
        bounces=4,
        bounce_patience=100,
    )
    assert list(runs) == ["BBI, seed=0", "BBI, seed=1"]
    study = Study(pb, x0, runs)
    a = study.run(best=True)
    b = study.run(chunk_size=1, best=True)
    assert a.data.identical(b.data)
    theta = a.data["theta"].values
    assert not np.array_equal(theta[0], theta[1])  # the seeds draw different bounces
    best = a.data["best_F"].values
    threshold = float(np.median(best))
    s = a.success(threshold, best=True, any_over="seed")
    assert list(s.index) == ["BBI"]
    assert s["BBI"] == pytest.approx((best < threshold).any(axis=0).mean())
    with pytest.raises(ValueError, match="any_over='lr' is not a grid keyword"):
        a.success(threshold, any_over="lr")


def test_run_errors_name_the_cause() -> None:
    study = _poly_three_study(4)
    with pytest.raises(ValueError, match="not both"):
        study.run(client=object(), workers=2)
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        study.run(client=object())
    with pytest.raises(ValueError, match="workers must be ≥ 1"):
        study.run(workers=0)
    with pytest.raises(ValueError, match="needs the best F"):
        study.run().success(0.1, best=True)
    with pytest.raises(ValueError, match="seed=3 with batched=True"):
        Run.torch(torch.optim.SGD, 10, seed=3, batched=True, lr=0.1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        Run.torch(torch.optim.SGD, 0, lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a torch optimizer class"):
        Run.torch("adam", 10)


def test_integrate_runs_record_steps_and_best_f() -> None:
    """steps: GD's accepted steps (2000 for a start that runs to the end, fewer for one that
    converged); best_F: the least F along the run, ≤ the final F, below it for a heavy ball
    that overshoots."""
    gf = oo.zoo.gradient_flow()
    runs = {
        "GD": Run(gf, "euler", h=0.01, steps=2000, gtol=1e-8),
        "HB": Run(oo.zoo.heavy_ball(friction=0.1), "symplectic_euler", h=0.1, steps=37),
    }
    x0 = {"theta": np.array([[0.3, -0.8], [1.2, 1.7], [-2.1, 0.9]])}
    res = Study(oo.problems.poly_three(), x0, runs).run(chunk_size=2, best=True)
    tr = oo.integrate(gf, oo.problems.poly_three(), x0, h=0.01, steps=2000, gtol=1e-8, save="all")
    steps = res.data["steps"].sel(run="GD").values
    assert list(tr.status) == ["converged", "diverged", "converged"]
    assert (res.data["status"].sel(run="GD").values == tr.status).all()
    for j in (0, 2):  # a diverged row keeps its last *saved* finite state: that depends on save
        assert steps[j] == tr.steps[j] < 2000 and tr.grad_norm[steps[j], j] < 1e-8
        assert res.data["best_F"].sel(run="GD").values[j] == tr.loss[:, j].min()
    hb = res.data.sel(run="HB")
    ok = hb["status"].values == "ok"
    assert ok.sum() >= 1
    assert (hb["steps"].values[ok] == 37).all()
    assert (hb["best_F"].values <= hb["F"].values).all()
    assert (hb["best_F"].values[ok] < hb["F"].values[ok]).any()


def test_records_arriving_in_any_order_give_the_same_data() -> None:
    """The study's arrays are filled task by task in whatever order tasks finish (dask and
    worker processes finish them out of order): reversed arrival, same Dataset."""
    study = _poly_three_study(30)
    ordered = study.run(chunk_size=7)

    def reversed_results(todo, client, workers, best):
        for t in reversed(todo):
            yield t, oo.study.study.execute(*study._args(t, best))

    study._results = reversed_results
    assert study.run(chunk_size=7).data.identical(ordered.data)


def test_a_study_needs_starts() -> None:
    gd = {"GD": Run(oo.zoo.gradient_flow(), "euler", h=0.1, steps=5)}
    with pytest.raises(ValueError, match="no starts"):
        Study(oo.problems.poly_three(), {"theta": np.zeros((0, 2))}, gd)
    with pytest.raises(ValueError, match="no blocks"):
        Study(oo.problems.poly_three(), {}, gd)


def test_runs_on_different_position_blocks_each_read_their_own() -> None:
    x0 = {
        "theta": np.array([[0.05, -1.02], [1.9, -0.9], [2.9, 2.9]]),
        "x": np.array([[0.05, -1.02], [1.9, -0.9], [2.9, 2.9]]),
    }
    runs = {
        "GD": Run(oo.zoo.gradient_flow(), "euler", h=0.01, steps=3000, gtol=1e-6),
        "SGD on x": Run.torch(torch.optim.SGD, 3000, block="x", batched=True, lr=0.01, gtol=1e-6),
    }
    res = Study(oo.problems.poly_three(), x0, runs).run()
    assert list(res.data["position"].values) == ["theta", "x"]
    out = res.outcome.values
    assert list(out[0][:2]) == ["(0, -1)", "(2, -1)"]
    np.testing.assert_array_equal(out[0], out[1])


class _DataSGD(torch.optim.Optimizer):
    """SGD written the old way, through p.data (torch's version counter does not see it)."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        if closure is not None:
            closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"])


def test_optimizers_writing_through_p_data_get_fresh_gradients() -> None:
    x0 = {"theta": np.array([[0.3, -0.8], [-0.2, -1.3]])}
    runs = {
        "p.data": Run.torch(_DataSGD, 200, batched=True, lr=0.01),
        "SGD": Run.torch(torch.optim.SGD, 200, batched=True, lr=0.01),
    }
    res = Study(oo.problems.poly_three(), x0, runs).run()
    theta = res.data["theta"].values
    np.testing.assert_array_equal(theta[0], theta[1])
    np.testing.assert_array_equal(res.data["F"].values[0], res.data["F"].values[1])


def test_any_over_keeps_runs_without_that_grid_value_apart() -> None:
    study = _poly_three_study(40)
    grid = Run.grid(oo.zoo.gradient_flow(), "euler", name="GD grid", h=[0.01, 0.02], steps=800)
    res = Study(oo.problems.poly_three(), study.x0, {**study.runs, **grid}).run()
    s = res.success(1e-6, any_over="h")
    assert list(s.index) == ["GD", "LC_EGD", "GD grid"]
    single = res.success(1e-6)
    assert s["GD"] == single["GD"] and s["LC_EGD"] == single["LC_EGD"]
    ok = res.data["F"].sel(run=["GD grid, h=0.01", "GD grid, h=0.02"]).values < 1e-6
    assert s["GD grid"] == ok.any(axis=0).mean() > 0
    clash = Run.grid(oo.zoo.gradient_flow(), "euler", name="GD", h=[0.01, 0.02], steps=10)
    res = Study(oo.problems.poly_three(), study.x0, {**study.runs, **clash}).run()
    with pytest.raises(ValueError, match="group 'GD' .* also a run's name"):
        res.success(1e-6, any_over="h")


def test_grid_names_that_collide_are_refused() -> None:
    with pytest.raises(ValueError, match="both name the run 'h=0.0123456'"):
        Run.grid(oo.zoo.gradient_flow(), "euler", h=[0.0123456, 0.01234561], steps=10)
