"""The runs of a study: what one run does to one chunk of starts.

Every run kind answers :meth:`execute` with the same record per start — the final blocks,
F, |∇F|, status, t_stop, steps and (when asked) the best F along the run — so a study treats
integrate runs (:class:`Run`) and optimizer runs (:class:`OptimizerRun`) alike.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..integrate import SaveAt, integrate
from ..schemes.base import Scheme
from ..symbolic.system import PortHamiltonian

__all__ = ["OptimizerRun", "Run", "position"]

#: the keywords of integrate() that a Run may set (the study sets x0, problem and save itself)
RUN_KEYWORDS = tuple(
    k
    for k in inspect.signature(integrate).parameters
    if k not in ("system", "problem", "x0", "scheme", "save", "t_eval", "chunk_size", "progress")
)


def position(system: PortHamiltonian) -> str:
    """The block the objective reads (θ), or the system's first block."""
    return system.loss.block.name if system.loss is not None else system.blocks[0].name


def is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _digest(obj: Any) -> bytes:
    """The bytes of ``obj``'s pickle (cloudpickle where pickle cannot: lambdas, generated
    classes): the same object gives the same bytes in another process."""
    import pickle

    try:
        return pickle.dumps(obj, protocol=4)
    except Exception:  # noqa: BLE001 (anything pickle refuses)
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=4)


def _label(k: str, v: Any) -> str:
    return f"{k}={v:g}" if is_real(v) else f"{k}={v}"


def _expand(
    values: Mapping[str, Any], name: str | None
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(run name, keyword values, grid labels) for every point of the grid of list-valued
    ``values``; names are ``name`` then the grid values in keyword order."""
    axes = [k for k, v in values.items() if isinstance(v, list)]
    for k in axes:
        if not values[k]:
            raise ValueError(f"Run.grid: {k}=[] is empty; give at least one value")
    out = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(values[k] for k in axes)):
        labels = dict(zip(axes, combo, strict=True))
        parts = ([name] if name else []) + [_label(k, v) for k, v in labels.items()]
        run_name = ", ".join(parts) or "run"
        if run_name in seen:
            raise ValueError(
                f"Run.grid: {seen[run_name]} and {labels} both name the run {run_name!r} "
                "(values print with 6 significant digits); give values that differ there"
            )
        seen[run_name] = labels
        out.append((run_name, {**values, **labels}, labels))
    return out


class Run:
    """One run of a study: ``integrate(system, problem, x0, scheme=scheme, **kwargs)``.

    ``kwargs`` are keywords of :func:`odeopt.integrate` (h, steps, t_span, params, gtol,
    max_steps, backend, ...) except ``save``, ``t_eval``, ``chunk_size`` and ``progress``, which
    the study decides (it saves the final state, and the best F along the run when asked).
    ``labels`` are the grid values that named the run (see :meth:`grid`).
    """

    def __init__(
        self, system: PortHamiltonian, scheme: str | Scheme = "symplectic_euler", **kwargs: Any
    ) -> None:
        if not isinstance(system, PortHamiltonian):
            raise TypeError(
                f"Run: system must be a PortHamiltonian (e.g. oo.zoo.gradient_flow()); "
                f"got {type(system).__name__}"
            )
        if not isinstance(scheme, (str, Scheme)):
            raise TypeError(
                f"Run: scheme must be a scheme name or an odeopt scheme; got {scheme!r}"
            )
        unknown = sorted(set(kwargs) - set(RUN_KEYWORDS))
        if unknown:
            raise TypeError(
                f"Run: unknown integrate keyword(s) {unknown}; a Run takes {list(RUN_KEYWORDS)} "
                "(system parameters go in params={...}, save is always 'final')"
            )
        self.system = system
        self.scheme = scheme
        self.kwargs = dict(kwargs)
        self.labels: dict[str, Any] = {}
        self.base = ""

    def __repr__(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in sorted(self.kwargs.items()))
        return f"Run({self.system.name}, {self.scheme!r}, {kw})"

    def digest(self) -> bytes:
        """What the run's results depend on, as bytes (see :func:`_digest`)."""
        return _digest((self.system, self.scheme, self.kwargs))

    @property
    def blocks(self) -> set[str]:
        """The blocks this run's starts are read from."""
        return {b.name for b in self.system.all_blocks}

    @property
    def position(self) -> str:
        return position(self.system)

    @classmethod
    def grid(
        cls,
        system: PortHamiltonian,
        scheme: str | Scheme = "symplectic_euler",
        *,
        name: str | None = None,
        **values: Any,
    ) -> dict[str, Run]:
        """Named runs over the cartesian grid of every list-valued keyword.

        Keywords are integrate keywords or parameters of ``system`` (given to it through
        ``params``); a ``list`` value is a grid axis, anything else (a tuple such as ``t_span``
        included) is fixed. Names are ``name`` (if given) then the grid values in keyword
        order: ``"HB, h=0.1, friction=0.5"``; without ``name`` or a list the one run is named
        ``"run"``.
        """
        names = {p.name for p in system.parameters}
        bad = sorted(k for k in values if k not in RUN_KEYWORDS and k not in names)
        if bad:
            raise TypeError(
                f"Run.grid: unknown keyword(s) {bad}; give integrate keywords "
                f"{list(RUN_KEYWORDS)} or parameters of {system.name} {sorted(names)}"
            )
        runs: dict[str, Run] = {}
        for run_name, chosen, labels in _expand(values, name):
            params = dict(chosen.pop("params", None) or {})
            for k in list(chosen):
                if k in names:
                    params[k] = chosen.pop(k)
            if params:
                chosen["params"] = params
            run = cls(system, scheme, **chosen)
            run.labels, run.base = labels, name or ""
            runs[run_name] = run
        return runs

    def execute(
        self, problem: Any, x0: Mapping[str, np.ndarray], index: np.ndarray, best: bool
    ) -> dict[str, np.ndarray]:
        """The record of starts ``x0`` (global indices ``index``): final blocks (``"x:<b>"``),
        F, grad_norm, status, t_stop, steps (−1 where the backend does not count them) and,
        with ``best``, best_F."""
        x0 = {b: v for b, v in x0.items() if b in self.blocks}
        save = SaveAt(final=True, best=True) if best else "final"
        tr = integrate(
            self.system, problem, x0, scheme=self.scheme, save=save, progress=False, **self.kwargs
        ).numpy()
        rec = {f"x:{b}": np.asarray(v, dtype=np.float64) for b, v in tr.final.items()}
        rec.update(
            F=np.asarray(tr.loss[-1], dtype=np.float64),
            grad_norm=np.asarray(tr.grad_norm[-1], dtype=np.float64),
            status=np.asarray(tr.status, dtype=str),
            t_stop=np.asarray(tr.t_stop, dtype=np.float64),
            steps=(
                np.full(len(tr.status), -1, dtype=np.int64)
                if tr.steps is None
                else np.asarray(tr.steps, dtype=np.int64)
            ),
        )
        if best:
            rec["best_F"] = np.asarray(tr.best_loss, dtype=np.float64)
        return rec

    # -- a torch optimizer as a run
    @staticmethod
    def torch(*args: Any, **kwargs: Any) -> OptimizerRun:
        """A run that steps a torch optimizer class (``torch.optim.SGD``, an exported
        ``discretize(...).to_torch()`` class, …) on the problem from every start:
        ``Run.torch(optimizer, steps, *, block="theta", seed=None, batched=False, gtol=None,
        blowup=1e10, **hyper)``, the arguments of :class:`OptimizerRun`."""
        return OptimizerRun(*args, **kwargs)


class OptimizerRun:
    """``optimizer([θ], **hyper)`` stepped ``steps`` times from every start, with a closure
    that sets θ.grad = ∇F(θ) and returns F(θ) (the problem's ``value_and_grad`` on θ's numpy
    view; θ is a float64 CPU tensor), evaluated once per state.

    * ``batched=False``: every start is its own parameter and optimizer (needed by optimizers
      whose state couples coordinates, such as BBI's global energy); with ``seed`` the
      optimizer gets ``seed=`` a number drawn from (seed, start index) by numpy's
      SeedSequence, so a start's noise does not depend on the chunking.
    * ``batched=True``: one (batch, n) parameter for a chunk, the closure returning ΣF —
      exact for coordinate-wise optimizers (SGD, Adam, RMSprop: each row is updated by its own
      gradient only); a seeded optimizer is refused here.

    Per start, checked after every step k: ``status`` "diverged" when F, ∇F or θ is not
    finite or max|θ| > ``blowup`` (the state after k − 1 steps is kept, ``steps`` = k − 1),
    "converged" when |∇F| < ``gtol`` (this state is kept, ``steps`` = k), else "ok"
    (``steps`` = the steps asked); ``t_stop`` is k (NaN for "ok"): optimizer runs count time
    in steps; best_F is the least finite F at the states visited. Stopped rows of a batched
    run are frozen (kept state, zero gradient, no share of the returned loss) while the
    others go on; an optimizer that raises FloatingPointError (exported optimizers check
    that gradients and the loss are finite) marks the rows still running "diverged".
    """

    def __init__(
        self,
        optimizer: Callable[..., Any],
        steps: int,
        *,
        block: str = "theta",
        seed: int | None = None,
        batched: bool = False,
        gtol: float | None = None,
        blowup: float = 1e10,
        **hyper: Any,
    ) -> None:
        if not callable(optimizer):
            raise TypeError(
                f"Run.torch: optimizer must be a torch optimizer class (e.g. torch.optim.SGD "
                f"or discretize(...).to_torch()); got {optimizer!r}"
            )
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"Run.torch: steps must be a positive int; got {steps!r}")
        if seed is not None and batched:
            raise ValueError(
                f"Run.torch: seed={seed} with batched=True: a seeded optimizer runs one start "
                "at a time (batched=False), so that a start's noise does not depend on the chunk"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"Run.torch: seed must be an int; got {seed!r}")
        if gtol is not None and not (is_real(gtol) and gtol > 0):
            raise ValueError(f"Run.torch: gtol must be a positive number; got {gtol!r}")
        if not (is_real(blowup) and blowup > 0):
            raise ValueError(f"Run.torch: blowup must be a positive number; got {blowup!r}")
        self.optimizer = optimizer
        self.steps = int(steps)
        self.block = block
        self.seed = None if seed is None else int(seed)
        self.batched = bool(batched)
        self.gtol = gtol
        self.blowup = float(blowup)
        self.hyper = dict(hyper)
        self.labels: dict[str, Any] = {}
        self.base = ""

    def __repr__(self) -> str:
        name = getattr(self.optimizer, "__name__", repr(self.optimizer))
        kw = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hyper.items()))
        return (
            f"Run.torch({name}, steps={self.steps}, seed={self.seed}, batched={self.batched}, "
            f"gtol={self.gtol}, blowup={self.blowup:g}, {kw})"
        )

    def digest(self) -> bytes:
        """What the run's results depend on, as bytes: the optimizer (its module, name and,
        for exported classes, source) and every setting."""
        opt = self.optimizer
        who = (getattr(opt, "__module__", ""), getattr(opt, "__qualname__", repr(opt)))
        settings = (self.steps, self.block, self.seed, self.batched, self.gtol, self.blowup)
        return _digest((who, getattr(opt, "source", ""), settings, self.hyper))

    @property
    def blocks(self) -> set[str]:
        return {self.block}

    @property
    def position(self) -> str:
        return self.block

    @classmethod
    def grid(
        cls, optimizer: Callable[..., Any], steps: int, *, name: str | None = None, **values: Any
    ) -> dict[str, OptimizerRun]:
        """Named optimizer runs over the grid of list-valued keywords (hyper-parameters,
        ``seed``, …), named as :meth:`Run.grid` names them: ``seed=[0, 1, 2, 3, 4]`` gives
        five repeats of a noisy optimizer."""
        runs: dict[str, OptimizerRun] = {}
        for run_name, chosen, labels in _expand(values, name):
            run = cls(optimizer, steps, **chosen)
            run.labels, run.base = labels, name or ""
            runs[run_name] = run
        return runs

    def _seed(self, start: int) -> int:
        assert self.seed is not None
        return int(np.random.SeedSequence([self.seed, int(start)]).generate_state(1)[0])

    def execute(
        self, problem: Any, x0: Mapping[str, np.ndarray], index: np.ndarray, best: bool
    ) -> dict[str, np.ndarray]:
        """The record of starts ``x0[block]`` (global indices ``index``), as
        :meth:`Run.execute` gives it."""
        import torch

        theta0 = np.asarray(x0[self.block], dtype=np.float64)
        B = len(theta0)
        rec: dict[str, np.ndarray] = {
            f"x:{self.block}": theta0.copy(),
            "F": np.full(B, np.nan),
            "grad_norm": np.full(B, np.nan),
            "status": np.full(B, "ok", dtype="<U11"),
            "t_stop": np.full(B, np.nan),
            "steps": np.zeros(B, dtype=np.int64),
            "best_F": np.full(B, np.inf),
        }
        groups = [np.arange(B)] if self.batched else [np.array([k]) for k in range(B)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for rows in groups:
                kw = dict(self.hyper)
                if self.seed is not None:
                    kw["seed"] = self._seed(index[rows[0]])
                self._step_rows(problem, theta0, rows, kw, rec)
        finally:
            torch.set_num_threads(threads)
        if not best:
            del rec["best_F"]
        return rec

    def _step_rows(
        self,
        problem: Any,
        theta0: np.ndarray,
        rows: np.ndarray,
        kw: dict[str, Any],
        rec: dict[str, np.ndarray],
    ) -> None:
        """Step the starts ``rows`` together (one parameter) and fill their record."""
        import torch

        p = torch.nn.Parameter(torch.tensor(theta0[rows], dtype=torch.float64))
        opt = self.optimizer([p], **kw)
        live = np.ones(len(rows), dtype=bool)  # rows still stepping
        n = len(rows)
        best = np.full(n, np.inf)
        kept = {"x": theta0[rows].copy(), "F": np.zeros(n), "g": np.zeros(n), "k": np.zeros(n)}
        last: dict[str, Any] = {"x": None}

        def closure() -> Any:
            """θ.grad = ∇F(θ), returns ΣF(θ); evaluated once per state (θ's values: an
            optimizer may write them through p.data, which torch's version counter misses)."""
            x = p.detach().numpy()
            if last["x"] is None or not np.array_equal(x, last["x"]):
                last["x"] = x.copy()
                with np.errstate(over="ignore", invalid="ignore"):  # checked: "diverged"
                    F, g = problem.value_and_grad(x.copy())
                F = np.asarray(F, dtype=np.float64).reshape(-1)
                g = np.asarray(g, dtype=np.float64)
                last.update(F=F, grad=torch.from_numpy(g))
                last["sum"] = torch.tensor(F.sum(), dtype=torch.float64)
                with np.errstate(over="ignore", invalid="ignore"):
                    last["g"] = np.sqrt((g * g).sum(-1))
            if live.all():
                p.grad = last["grad"].clone()
                return last["sum"]
            # rows that stopped are frozen at their kept state with zero gradient and no
            # share of the loss, so the optimizer (its own finite checks included) goes on
            # with the others
            dead = torch.from_numpy(~live)
            if not np.isfinite(x[~live]).all():
                with torch.no_grad():
                    p[dead] = torch.from_numpy(kept["x"][~live])
            p.grad = torch.where(dead[:, None], 0.0, last["grad"])
            return torch.tensor(last["F"][live].sum(), dtype=torch.float64)

        def keep(mask: np.ndarray, x: np.ndarray, F: np.ndarray, gn: np.ndarray, k: int) -> None:
            glob = rows[mask]
            rec[f"x:{self.block}"][glob] = x[mask]
            rec["F"][glob], rec["grad_norm"][glob] = F[mask], gn[mask]
            rec["best_F"][glob] = best[mask]
            rec["steps"][glob] = k

        def check(k: int) -> bool:
            """After k steps: stop rows that diverged (keeping the state after k − 1 steps) or
            converged (keeping this one); False once no row is left."""
            x = p.detach().numpy()
            F, gn = last["F"], last["g"]
            with np.errstate(invalid="ignore"):
                fine = (
                    np.isfinite(F)
                    & np.isfinite(gn)
                    & np.isfinite(x).all(-1)
                    & (np.abs(x).max(-1) <= self.blowup)
                )
                np.minimum(best, np.where(fine, F, np.inf), out=best)
            bad = live & ~fine
            if k == 0 and bad.any():
                raise ValueError(
                    f"Run.torch: F or ∇F is not finite (or |θ| > blowup) at starts "
                    f"{rows[bad][:10].tolist()}; give starts where the objective is finite"
                )
            conv = live & fine & (gn < self.gtol) if self.gtol is not None else None
            for mask, status in ((bad, "diverged"), (conv, "converged")):
                if mask is not None and mask.any():
                    if status == "diverged":
                        keep(mask, kept["x"], kept["F"], kept["g"], k - 1)
                    else:
                        keep(mask, x, F, gn, k)
                    rec["status"][rows[mask]] = status
                    rec["t_stop"][rows[mask]] = k
                    live[mask] = False
            kept.update(x=x.copy(), F=F, g=gn)
            return bool(live.any())

        closure()
        if check(0):
            for k in range(1, self.steps + 1):
                try:
                    opt.step(closure)  # F, ∇F before the step (evaluated already)
                except FloatingPointError:  # the optimizer's own finite check: diverged
                    keep(live, kept["x"], kept["F"], kept["g"], k - 1)
                    rec["status"][rows[live]] = "diverged"
                    rec["t_stop"][rows[live]] = k
                    break
                closure()  # F, ∇F at the new state
                if not check(k):
                    break
            else:
                keep(live, kept["x"], kept["F"], kept["g"], self.steps)
