"""A study: a problem, starts and named runs, run over chunks here, in processes or on dask."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import check_problem, check_starts
from .result import StudyResult
from .runs import OptimizerRun, Run, _digest, is_real

__all__ = ["Study"]

Task = tuple[int, int, int]  # (run index, first start, end of the chunk)


def execute(
    run: Run | OptimizerRun,
    problem: Any,
    x0: Mapping[str, np.ndarray],
    index: np.ndarray,
    best: bool,
) -> dict[str, np.ndarray]:
    """One task: ``run`` on the starts ``x0`` (global indices ``index``). A module-level
    function, so that worker processes and dask workers can import it."""
    return run.execute(problem, x0, index, best)


def execute_pickled(payload: bytes) -> dict[str, np.ndarray]:
    """:func:`execute` on arguments serialized by cloudpickle (so that worker processes take
    exported optimizer classes and problems made of lambdas, as dask does)."""
    import cloudpickle

    return execute(*cloudpickle.loads(payload))


class Study:
    """A problem, the starts ``x0`` (block name → (batch, n) array; the position block has
    the problem's dimension) and named runs (:class:`Run` or ``Run.torch(...)``)."""

    def __init__(
        self, problem: Any, x0: Mapping[str, Any], runs: Mapping[str, Run | OptimizerRun]
    ) -> None:
        check_problem(problem, "Study")
        check_starts(x0, "Study")
        if not isinstance(runs, Mapping) or not runs:
            raise ValueError(
                f"Study: runs must be a non-empty dict of name → oo.Run(...); got {runs!r}"
            )
        for name, r in runs.items():
            if not isinstance(r, (Run, OptimizerRun)):
                raise TypeError(
                    f"Study: runs[{name!r}] must be an oo.Run(system, scheme, **kwargs) or "
                    f"oo.Run.torch(optimizer, steps, ...); got {type(r).__name__}"
                )
        starts = {b: np.asarray(v, dtype=np.float64) for b, v in x0.items()}
        if not starts:
            raise ValueError("Study: x0 has no blocks; give {'theta': starts of shape (batch, n)}")
        batch = None
        for b, v in starts.items():
            if v.ndim != 2:
                raise ValueError(f"Study: x0[{b!r}] must have shape (batch, n); got {v.shape}")
            if batch is not None and v.shape[0] != batch:
                raise ValueError(f"Study: x0[{b!r}] has {v.shape[0]} starts, not {batch}")
            batch = v.shape[0]
        if not batch:
            raise ValueError("Study: x0 has no starts (batch 0); give at least one start")
        dim = getattr(problem, "dim", None)
        for name, r in runs.items():
            pos = r.position
            if pos not in starts:
                raise ValueError(
                    f"Study: x0 needs the position block {pos!r} of runs[{name!r}]; "
                    f"it has {sorted(starts)}"
                )
            if dim is not None and starts[pos].shape[1] != dim:
                raise ValueError(
                    f"Study: x0[{pos!r}] has shape {starts[pos].shape}, but the problem has "
                    f"dim {dim}; give (batch, {dim})"
                )
        self.problem = problem
        self.x0 = starts
        self.runs = dict(runs)
        self.batch = int(batch or 0)

    def __repr__(self) -> str:
        name = getattr(self.problem, "name", type(self.problem).__name__)
        return f"Study({name}, {self.batch} starts, runs {list(self.runs)})"

    # -- running
    def run(
        self,
        client: Any = None,
        chunk_size: int | None = None,
        *,
        workers: int | None = None,
        best: bool = False,
        progress: bool | None = None,
        checkpoint: str | Path | None = None,
        radius: float = 0.05,
    ) -> StudyResult:
        """Run every run over chunks of ``chunk_size`` starts (None: one chunk per run).

        * ``client=None``: here, in this process, or in ``workers`` worker processes;
          ``client``: a ``dask.distributed.Client`` (a laptop's ``LocalCluster`` or a real
          cluster), one task per run × chunk.
        * ``best=True`` records the least F along every run (``data["best_F"]``).
        * ``progress``: a bar over the tasks (None: when stderr is a terminal and there is
          more than one task).
        * ``checkpoint``: a folder where every finished task is written; running the same
          study again with it computes only the missing tasks (a changed study is refused).

        Every task depends on its own starts only, so the result is the same for every
        number of workers and cluster, and for every chunk size up to the last bits of
        problems built on matrix products (numpy's BLAS kernels differ by batch size).
        """
        if chunk_size is None:
            chunk_size = max(self.batch, 1)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
            raise TypeError(f"Study.run: chunk_size must be a positive int; got {chunk_size!r}")
        if chunk_size < 1:
            raise ValueError(f"Study.run: chunk_size must be ≥ 1; got {chunk_size}")
        if workers is not None:
            if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
                raise TypeError(f"Study.run: workers must be a positive int; got {workers!r}")
            if workers < 1:
                raise ValueError(f"Study.run: workers must be ≥ 1; got {workers}")
            if client is not None:
                raise ValueError(
                    "Study.run: give client= (a dask cluster runs the tasks) or workers= "
                    "(local processes), not both"
                )
        if client is not None and not hasattr(client, "submit"):
            raise TypeError(
                f"Study.run: client must be a dask.distributed.Client; got {type(client).__name__}"
            )
        if not (is_real(radius) and radius > 0):
            raise ValueError(f"Study.run: radius must be a number > 0; got {radius!r}")
        tasks: list[Task] = [
            (i, lo, min(lo + chunk_size, self.batch))
            for i in range(len(self.runs))
            for lo in range(0, self.batch, chunk_size)
        ]
        store = _Checkpoint(checkpoint, self._fingerprint(chunk_size, best)) if checkpoint else None
        table = _Records(len(self.runs), self.batch)
        todo = []
        for t in tasks:
            rec = store.read(t) if store is not None else None
            if rec is None:
                todo.append(t)
            else:
                table.put(t, rec)
        if progress is None:
            progress = bool(getattr(sys.stderr, "isatty", lambda: False)()) and len(tasks) > 1
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="study")
        try:
            for task, rec in self._results(todo, client, workers, best):
                table.put(task, rec)  # into the study's arrays: a chunk's record is dropped
                if store is not None:
                    store.write(task, rec)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return StudyResult(self._assemble(table.arrays(), best), self.problem, radius)

    def _args(self, task: Task, best: bool) -> tuple[Any, ...]:
        i, lo, hi = task
        run = list(self.runs.values())[i]
        x0 = {b: v[lo:hi] for b, v in self.x0.items() if b in run.blocks}
        return run, self.problem, x0, np.arange(lo, hi), best

    def _results(
        self, todo: list[Task], client: Any, workers: int | None, best: bool
    ) -> Iterator[tuple[Task, dict[str, np.ndarray]]]:
        """(task, record) for every task of ``todo``, in the order they finish."""
        if client is not None:
            from distributed import as_completed

            futures = {client.submit(execute, *self._args(t, best), pure=False): t for t in todo}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        elif workers is not None and workers > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            import cloudpickle

            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["odeopt"])
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futs = {
                    pool.submit(execute_pickled, cloudpickle.dumps(self._args(t, best))): t
                    for t in todo
                }
                for fut in as_completed(futs):
                    yield futs[fut], fut.result()
        else:
            for t in todo:
                yield t, execute(*self._args(t, best))

    def _assemble(self, arrays: Mapping[str, np.ndarray], best: bool) -> Any:
        """The study's arrays (run × start) as one Dataset."""
        import xarray as xr

        B = self.batch
        dims = ("run", "start")
        data: dict[str, Any] = {}
        for k, v in arrays.items():
            if k.startswith("x:"):
                b = k[2:]
                data[b] = ((*dims, f"{b}_dim"), v)
            else:
                data[k] = (dims, v)
        for b, v in self.x0.items():
            data[f"x0_{b}"] = (("start", f"{b}_dim"), v)
        runs = list(self.runs.values())
        coords: dict[str, Any] = {
            "run": list(self.runs),
            "start": np.arange(B),
            "base": ("run", [r.base for r in runs]),
        }
        for key in dict.fromkeys(k for r in runs for k in r.labels):
            coords[f"grid_{key}"] = ("run", [str(r.labels.get(key, "")) for r in runs])
        ds = xr.Dataset(data, coords=coords)
        ds["F"].attrs["long_name"] = "F at the final state"
        ds["grad_norm"].attrs["long_name"] = "|∇F| at the final state"
        ds["t_stop"].attrs["long_name"] = "time the trajectory stopped (NaN: ran to the end)"
        ds["steps"].attrs["long_name"] = "accepted steps (-1: not counted by the backend)"
        if best:
            ds["best_F"].attrs["long_name"] = "least F along the run"
        ds = ds.assign_coords(position=("run", [r.position for r in runs]))
        ds.attrs["position"] = runs[0].position  # the first run's (see the coordinate)
        return ds

    def _fingerprint(self, chunk_size: int, best: bool) -> str:
        """What a checkpoint's tasks depend on: the problem, every run (their pickles: systems
        with their parameter values, schemes with every setting, optimizer classes with their
        source), the starts, the chunking and ``best``."""
        h = hashlib.sha256()
        # the problem: its public attributes (private ones are caches, such as the critical
        # points a result asks for) and F, ∇F at the first starts
        public = {k: v for k, v in sorted(vars(self.problem).items()) if not k.startswith("_")}
        h.update(repr(self.problem).encode())
        h.update(_digest({k: _digest(v) for k, v in public.items()}))
        pos = next(iter(self.runs.values())).position
        F, g = self.problem.value_and_grad(self.x0[pos][:8])
        h.update(np.asarray(F, dtype=np.float64).tobytes())
        h.update(np.asarray(g, dtype=np.float64).tobytes())
        for name, r in self.runs.items():
            h.update(name.encode())
            h.update(r.digest())
        for b, v in sorted(self.x0.items()):
            h.update(b.encode())
            h.update(np.ascontiguousarray(v).tobytes())
        h.update(f"{chunk_size};{best}".encode())
        return h.hexdigest()


class _Records:
    """The study's arrays (run × start × …), filled task by task as records arrive (in any
    order); a key's array is made when a record first has it."""

    FILL: dict[str, Any] = {"status": "", "steps": -1}

    def __init__(self, n_runs: int, batch: int) -> None:
        self.shape = (n_runs, batch)
        self._arrays: dict[str, np.ndarray] = {}
        self._first: dict[str, tuple[Task, int]] = {}  # where a key first appears: its order

    def put(self, task: Task, rec: Mapping[str, np.ndarray]) -> None:
        i, lo, hi = task
        for pos, (k, v) in enumerate(rec.items()):
            if k not in self._arrays:
                dtype = "<U11" if k == "status" else v.dtype
                fill = self.FILL.get(k, np.nan)
                self._arrays[k] = np.full((*self.shape, *v.shape[1:]), fill, dtype=dtype)
            self._first[k] = min(self._first.get(k, (task, pos)), (task, pos))
            self._arrays[k][i, lo:hi] = v

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays in the order of the tasks' records (whatever order they arrived in)."""
        return {k: self._arrays[k] for k in sorted(self._arrays, key=self._first.__getitem__)}


class _Checkpoint:
    """A folder of finished tasks (one .npz each) of one study (its fingerprint)."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "study.sha256"
        if stamp.exists():
            if stamp.read_text().strip() != fingerprint:
                raise ValueError(
                    f"Study.run: checkpoint={str(self.folder)!r} holds tasks of another study "
                    "(other runs, starts, chunk_size or best); give an empty folder"
                )
        else:
            stamp.write_text(fingerprint + "\n")

    def _path(self, task: Task) -> Path:
        i, lo, hi = task
        return self.folder / f"run{i}_{lo}_{hi}.npz"

    def read(self, task: Task) -> dict[str, np.ndarray] | None:
        path = self._path(task)
        if not path.exists():
            return None
        with np.load(path) as f:
            return {k.replace("__", ":"): f[k] for k in f.files}

    def write(self, task: Task, rec: Mapping[str, np.ndarray]) -> None:
        path = self._path(task)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{k.replace(":", "__"): v for k, v in rec.items()})
        tmp.replace(path)
