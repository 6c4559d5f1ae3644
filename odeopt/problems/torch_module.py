"""A torch model's training loss as a :class:`Problem` over its flat parameter vector.

F(θ) = loss_fn(model_θ(inputs), targets), where model_θ is the model with its parameters read
from θ ∈ ℝᵈ (d = the number of parameter entries, in ``model.named_parameters()`` order, each
tensor flattened row-major — the layout of ``torch.nn.utils.parameters_to_vector``). A batch of
θ rows is evaluated in one call with ``torch.func.functional_call`` under ``torch.func.vmap``,
and ∇F with ``torch.func.grad_and_value``; ∇²F·v (and higher contractions) by differentiating
⟨∇F, v⟩ again with ``torch.func.grad``. Numpy θ is converted to torch and the
results back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import Namespace, is_torch
from .base import Problem

__all__ = ["TorchModuleProblem", "digits_mlp", "torch_module"]


class TorchModuleProblem(Problem):
    """F(θ) = loss_fn(model_θ(inputs), targets), batched over the rows of θ.

    The model must be a pure function of its parameters and buffers (no dropout randomness,
    no batch-norm statistics updates — use ``model.eval()``); its own parameter values are not
    used by ``value``/``grad`` but give :meth:`flatten` and the shapes. Floating inputs,
    targets and buffers are cast to θ's dtype and device; integer targets (class labels) stay.
    """

    def __init__(
        self,
        model: Any,
        inputs: Any,
        targets: Any,
        loss_fn: Callable[[Any, Any], Any],
        name: str = "torch_module",
        domain: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{name}: model must be a torch.nn.Module; got {type(model)}")
        parameters = list(model.named_parameters())
        if not parameters:
            raise ValueError(f"{name}: the model has no parameters")
        self.model = model
        self.inputs = torch.as_tensor(inputs)
        self.targets = torch.as_tensor(targets)
        self.loss_fn = loss_fn
        self._names = [n for n, _ in parameters]
        self._shapes = [tuple(p.shape) for _, p in parameters]
        self._sizes = [p.numel() for _, p in parameters]
        self._data: dict[tuple[Any, Any], tuple[Any, Any, dict[str, Any]]] = {}
        super().__init__(name, sum(self._sizes), domain, [])

    # -- layout --------------------------------------------------------------------------------

    def unflatten(self, row: Any) -> dict[str, Any]:
        """One θ row (dim,) → {parameter name: tensor of that parameter's shape}."""
        pieces = row.split(self._sizes)
        return {n: p.reshape(s) for n, p, s in zip(self._names, pieces, self._shapes, strict=True)}

    def flatten(self, module: Any = None) -> Any:
        """The parameters of ``module`` (default: the model) as one detached vector (dim,)."""
        import torch

        module = self.model if module is None else module
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def initial(self, seed: int = 0, batch: int = 1, backend: str = "numpy") -> Any:
        """``batch`` fresh initialisations of the model as θ rows, float64, (batch, dim).

        Each row re-runs ``reset_parameters()`` of every submodule that has one (PyTorch's
        default initialisation) on a copy of the model, from torch's generator seeded with
        ``seed`` (the global generator state is restored afterwards).
        """
        import torch

        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        model = copy.deepcopy(self.model)
        rows = []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(batch):
                for module in model.modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
                rows.append(self.flatten(model).to(device="cpu", dtype=torch.float64))
        theta = torch.stack(rows) if rows else torch.zeros(0, self.dim, dtype=torch.float64)
        return theta if backend == "torch" else theta.numpy()

    # -- numbers -------------------------------------------------------------------------------

    def _loss(self, row: Any, inputs: Any, targets: Any, buffers: dict[str, Any]) -> Any:
        from torch.func import functional_call

        outputs = functional_call(self.model, {**self.unflatten(row), **buffers}, (inputs,))
        return self.loss_fn(outputs, targets)

    def _cast_data(self, theta: Any) -> tuple[Any, Any, dict[str, Any]]:
        key = (theta.dtype, theta.device)
        if key not in self._data:

            def cast(t: Any) -> Any:
                if t.is_floating_point():
                    return t.to(dtype=theta.dtype, device=theta.device)
                return t.to(device=theta.device)

            buffers = {n: cast(b) for n, b in self.model.named_buffers()}
            self._data[key] = (cast(self.inputs), cast(self.targets), buffers)
        return self._data[key]

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        import torch
        from torch.func import grad_and_value, vmap

        tensor = theta if is_torch(theta) else torch.from_numpy(np.ascontiguousarray(theta))
        data = self._cast_data(tensor)
        in_dims = (0, None, None, None)
        if need_grad:
            g, F = vmap(grad_and_value(self._loss), in_dims=in_dims)(tensor, *data)
        else:
            F, g = vmap(self._loss, in_dims=in_dims)(tensor, *data), None
        if is_torch(theta):
            return F, g
        return F.detach().numpy(), (None if g is None else g.detach().numpy())

    def _torch_derivative(self, theta: Any, vectors: Any) -> Any:
        """∇^{k+1}F[v₁, …, v_k] per row: D₀ = ∇F, D_{j} = ∇(D_{j−1}·v_j), reverse over
        reverse with ``torch.func.grad``, under vmap (forward-over-reverse ``jvp`` fails on
        some losses in torch 2.13: "ZeroTensors are immutable")."""
        import torch
        from torch.func import grad, vmap

        numpy_input = not is_torch(theta)
        tensor = torch.from_numpy(np.ascontiguousarray(theta)) if numpy_input else theta
        vs = [torch.from_numpy(np.ascontiguousarray(v)) if numpy_input else v for v in vectors]
        data = self._cast_data(tensor)

        def along(inner: Any, v: Any) -> Any:
            return grad(lambda r: (inner(r) * v).sum())

        def contraction(row: Any, vrows: tuple[Any, ...], *rest: Any) -> Any:
            fn: Any = lambda r: grad(self._loss)(r, *rest)  # noqa: E731
            for v in vrows:
                fn = along(fn, v)
            return fn(row)

        out = vmap(contraction, in_dims=(0, 0, None, None, None))(tensor, tuple(vs), *data)
        out = out.detach()
        return out.numpy() if numpy_input else out


def torch_module(
    model: Any,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Any],
    name: str = "torch_module",
    domain: tuple[float, float] = (-1.0, 1.0),
) -> TorchModuleProblem:
    """F(θ) = loss_fn(model_θ(inputs), targets) over the model's flat parameter vector θ."""
    return TorchModuleProblem(model, inputs, targets, loss_fn, name, domain)


def digits_mlp(hidden: int = 16, samples: int = 256, seed: int = 0) -> TorchModuleProblem:
    """A small classifier on scikit-learn's bundled 8×8 digits (no download).

    ``samples`` images drawn without replacement (numpy generator seeded with ``seed``), pixels
    scaled to [0, 1]; model Linear(64, hidden) → tanh → Linear(hidden, 10); loss the mean
    cross-entropy F(θ) = −(1/n) Σᵢ log softmax(model_θ(xᵢ))_{yᵢ}. ``problem.initial(seed)``
    gives PyTorch-initialised starting points.
    """
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    if not 1 <= samples <= len(digits.target):
        raise ValueError(f"digits_mlp: samples must be in [1, {len(digits.target)}]; got {samples}")
    if hidden < 1:
        raise ValueError(f"digits_mlp: hidden must be ≥ 1; got {hidden}")
    index = np.sort(np.random.default_rng(seed).choice(len(digits.target), samples, replace=False))
    inputs = torch.tensor(digits.data[index] / 16.0, dtype=torch.float32)
    targets = torch.tensor(digits.target[index], dtype=torch.long)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)
        )
    return TorchModuleProblem(
        model, inputs, targets, torch.nn.functional.cross_entropy, "digits_mlp", (-1.0, 1.0)
    )


def blobs(samples: int = 2000, distance: float = 3.0, seed: int = 0) -> TorchModuleProblem:
    """Two Gaussian blobs in the plane and a linear classifier (Massaroli et al.'s task).

    ``samples`` points, half around (−d/2, −d/2) and half around (d/2, d/2) with unit
    variance (numpy generator seeded with ``seed``); the model is Linear(2, 2), 6 weights;
    the loss is the mean squared error to one-hot targets, F(ω) = (1/n) Σᵢ |ŷᵢ − yᵢ|².
    ``problem.accuracy(θ)`` gives the fraction classified right, per row of θ.
    """
    import torch

    if samples < 2:
        raise ValueError(f"blobs: samples must be ≥ 2; got {samples}")
    rng = np.random.default_rng(seed)
    label = np.arange(samples) % 2
    centre = (label[:, None] - 0.5) * distance
    points = centre + rng.standard_normal((samples, 2))
    inputs = torch.tensor(points, dtype=torch.float32)
    targets = torch.nn.functional.one_hot(torch.tensor(label), 2).to(torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Linear(2, 2)

    def mse(out: Any, y: Any) -> Any:
        return ((out - y) ** 2).sum(-1).mean()

    problem = TorchModuleProblem(model, inputs, targets, mse, "blobs", (-1.0, 1.0))
    labels = torch.tensor(label)

    def accuracy(theta: Any) -> np.ndarray:
        th = torch.as_tensor(np.asarray(theta), dtype=torch.float64)
        if th.ndim == 1:
            th = th[None]
        W, b = th[:, :4].reshape(-1, 2, 2), th[:, 4:6]
        logits = torch.einsum("nk,bjk->bnj", inputs.double(), W) + b[:, None, :]
        return (logits.argmax(-1) == labels).double().mean(-1).numpy()

    problem.accuracy = accuracy  # type: ignore[attr-defined]
    return problem
