"""Global reductions across ranks: two gloo processes, each holding half of the parameters,
follow the same BBI trajectory as one process holding all of them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

import odeopt as oo

WORKER = r"""
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, {folder!r})
torch.set_num_threads(1)
from bbi_opt import BbiSymplecticEuler as Opt


def train(rank, world):
    # 30 BBI steps on a seeded 8-16-3 MLP, this rank stepping params[rank::world]; returns
    # all the parameters after them, flattened
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 3)).double()
    X = torch.randn(64, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    params = list(model.parameters())
    mine = params[rank::world]
    opt = Opt(mine, lr=0.05, delta_v=-0.5,
              process_group=dist.group.WORLD if world > 1 else None)
    for _ in range(30):
        def closure():
            for p in params:
                p.grad = None
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            return loss
        opt.step(closure)
        if world > 1:  # every rank gets the shards it does not own
            for i, p in enumerate(params):
                dist.broadcast(p.data, src=i % world)
    return torch.cat([p.detach().flatten() for p in params])


if __name__ == "__main__":
    rank, world = int(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo", init_method="file://{folder}/rendezvous", rank=rank,
                            world_size=world)
    result = train(rank, world)
    if rank == 0:
        torch.save(result, "{folder}/result_%d.pt" % world)
    # gloo's teardown can abort at interpreter exit ("terminate called without an active
    # exception") after all the work is done: meet, then leave without tearing down
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)
"""


def test_two_ranks_with_half_the_parameters_each_equal_one_rank(tmp_path: Path) -> None:
    """The two ranks run as gloo processes; the one-rank reference runs the same ``train`` in
    this process (no process group) while they do."""
    rule = oo.discretize(oo.zoo.bbi(), "symplectic_euler")
    (tmp_path / "bbi_opt.py").write_text(rule.to_source())
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(folder=str(tmp_path)))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), "2"], stderr=subprocess.PIPE, text=True
        )
        for r in range(2)
    ]
    try:
        spec = importlib.util.spec_from_file_location("odeopt_distributed_worker", script)
        worker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(worker)  # the __main__ block does not run here
        single = worker.train(0, 1)
    finally:
        errors = [p.communicate(timeout=180)[1] for p in procs]
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
        sys.modules.pop("bbi_opt", None)
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err
    sharded = torch.load(tmp_path / "result_2.pt")
    assert torch.isfinite(single).all()
    # the reductions are summed in another order across ranks: equal to rounding
    assert (single - sharded).abs().max().item() <= 1e-12
