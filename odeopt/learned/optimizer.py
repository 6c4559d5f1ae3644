"""A trained learned optimizer (the pH cell or the learning-to-learn LSTM) as a
torch.optim.Optimizer, and as a self-contained file.

Per parameter tensor, every step:  (u, s) ← learned_update(net, ∇F, s),  θ ← θ + lr·u
(``lr`` is the original's out_mul; schedulers scale it). s — zero at start — is the
per-parameter state saved by ``state_dict``: {"p"} (the pH cell's previous output) or
{"h0", "c0", "h1", "c1"} (the LSTM's, each of shape (*θ.shape, hidden)).
"""

from __future__ import annotations

import copy
import keyword
import os
import pprint
import types
from pathlib import Path
from typing import Any

import torch

from ..symbolic.codegen import exec_module
from ._checks import FLOAT_DTYPES, check_flag, check_positive
from .hnn import HNNOptimizerNet
from .lstm import LSTMOptimizerNet

__all__ = ["LearnedOptimizer", "save_source", "to_source"]


_HYPER = ("lr", "normalize", "maximize", "check_finite")


class LearnedOptimizer(torch.optim.Optimizer):
    """Runs a (meta-trained) :class:`HNNOptimizerNet` or :class:`LSTMOptimizerNet` on any
    model's parameters (``normalize`` applies to the pH cell's p only).

    ``net`` is frozen and copied (later changes to the caller's net do not leak in); it runs
    in each parameter's floating dtype. ``state_dict`` holds p and the groups, not the net's
    weights: resume with the same net (``net.state_dict()`` saves it).
    ``maximize`` feeds −∇F.

    Checks (each error names the argument, or "parameter i" and its param group):
    parameters must be real floating tensors (float16, bfloat16, float32, float64) with data
    (not on the meta device), refused at construction and in ``add_param_group``; ``lr``
    must be finite and > 0, also when changed later through ``param_groups`` (checked at the
    next step); with ``check_finite`` (default) a non-finite gradient, found by one fused
    max-|·| pass over the group's gradients, or a non-finite loss returned by the closure
    raises FloatingPointError before any parameter moves; ``load_state_dict`` refuses a state
    that is not a LearnedOptimizer's or whose shapes differ from the parameters'.
    """

    def __init__(
        self,
        params: Any,
        net: HNNOptimizerNet | LSTMOptimizerNet,
        lr: float = 1e-3,
        *,
        normalize: bool = True,
        maximize: bool = False,
        check_finite: bool = True,
    ) -> None:
        if not isinstance(net, (HNNOptimizerNet, LSTMOptimizerNet)):
            raise TypeError(
                "LearnedOptimizer: net must be an odeopt.learned.HNNOptimizerNet or "
                f"LSTMOptimizerNet, got net={type(net).__name__}"
            )
        defaults = dict(lr=lr, normalize=normalize, maximize=maximize, check_finite=check_finite)
        _check_hyper(defaults, None)
        super().__init__(params, defaults)
        self.net = copy.deepcopy(net).requires_grad_(False)
        self._generated = _execute(to_source(self.net, "LearnedOptimizer"))
        self._w: dict[tuple[torch.dtype, torch.device], dict[str, torch.Tensor]] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group, then its hyper-parameters and tensors are checked (class
        docstring); a refused group is not added."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        try:
            _check_hyper(group, gi)
            for pi, p in enumerate(group["params"]):
                _check_parameter(p, gi, pi)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load_state_dict after checking that ``state_dict`` is a LearnedOptimizer's
        (its groups carry lr, normalize, maximize, check_finite; each parameter's state is
        exactly this net's, ``{"p": tensor}`` or the LSTM's four) for parameters of these
        shapes."""
        where = "LearnedOptimizer.load_state_dict"
        if not (
            isinstance(state_dict, dict)
            and isinstance(state_dict.get("param_groups"), list)
            and isinstance(state_dict.get("state"), dict)
        ):
            raise ValueError(
                f"{where}: state must be an optimizer state_dict with 'state' and "
                f"'param_groups', got {type(state_dict).__name__}"
                + (
                    f" with keys {sorted(map(str, state_dict))}"
                    if isinstance(state_dict, dict)
                    else ""
                )
            )
        groups, state = state_dict["param_groups"], state_dict["state"]
        saved_sizes = [len(g.get("params", ())) for g in groups]
        our_sizes = [len(g["params"]) for g in self.param_groups]
        if saved_sizes != our_sizes:
            raise ValueError(
                f"{where}: state has param groups of sizes {saved_sizes}, this optimizer "
                f"{our_sizes}"
            )
        for gi, (saved, ours) in enumerate(zip(groups, self.param_groups, strict=True)):
            missing = [k for k in _HYPER if k not in saved]
            if missing:
                raise ValueError(
                    f"{where}: state is not a LearnedOptimizer's: param group {gi} lacks "
                    f"{missing} (keys {sorted(k for k in saved if k != 'params')})"
                )
            _check_hyper(saved, gi, where)
            for pi, (idx, p) in enumerate(zip(saved["params"], ours["params"], strict=True)):
                entry = state.get(idx)
                if entry is None:
                    continue
                names = self.net.state_names
                if not isinstance(entry, dict) or set(entry) != set(names):
                    keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
                    raise ValueError(
                        f"{where}: state is not a LearnedOptimizer's: parameter {pi} of param "
                        f"group {gi} has state {keys}, expected {sorted(names)}"
                    )
                extra = (self.net.hidden,) if isinstance(self.net, LSTMOptimizerNet) else ()
                for name in names:
                    v = entry[name]
                    if not isinstance(v, torch.Tensor) or v.shape != (*p.shape, *extra):
                        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                        raise ValueError(
                            f"{where}: state of parameter {pi} of param group {gi} has {name} "
                            f"of shape {got}, expected {(*p.shape, *extra)} (the parameter "
                            f"has shape {tuple(p.shape)})"
                        )
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One learned step on every parameter with a gradient (module docstring): the step
        of this net's generated source (:func:`to_source`), executed."""
        return self._generated._step(self, closure)

    def to_optax(self) -> Any:
        """This optimizer (its net, and the first param group's lr, normalize and maximize)
        as an ``optax.GradientTransformation`` (jax and optax only); see
        :func:`odeopt.learned.jax_export.to_optax`. The pH-constrained cell only: the jax
        renderer writes its arithmetic, not the original cell's nor the LSTM's."""
        from .jax_export import to_optax

        if not (isinstance(self.net, HNNOptimizerNet) and self.net.constrained):
            what = (
                "an LSTMOptimizerNet"
                if isinstance(self.net, LSTMOptimizerNet)
                else ("the original cell (constrained=False)")
            )
            raise ValueError(
                f"LearnedOptimizer.to_optax: the jax export renders the pH-constrained cell "
                f"only, this optimizer runs {what}; use to_source (torch) for it"
            )

        g = self.param_groups[0]
        return to_optax(self.net, g["lr"], normalize=g["normalize"], maximize=g["maximize"])


def _check_hyper(group: dict[str, Any], gi: int | None, where: str = "LearnedOptimizer") -> None:
    """lr finite and > 0, the flags bools; ``gi`` names the param group (None: the
    constructor's arguments)."""
    try:
        check_positive(where, "lr", group["lr"])
        for flag in _HYPER[1:]:
            check_flag(where, flag, group[flag])
    except (TypeError, ValueError) as exc:
        msg = str(exc).replace("lr must", "lr (out_mul) must")
        if gi is not None:
            msg += f" (param group {gi})"
        raise type(exc)(msg) from None


def _check_parameter(p: Any, gi: int, pi: int) -> None:
    """A real floating tensor with data (the net computes in the parameter's dtype)."""
    where = f"LearnedOptimizer: parameter {pi} of param group {gi}"
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(p).__name__}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{where} has dtype {p.dtype}; the learned optimizer needs a real floating dtype "
            "(float16, bfloat16, float32, float64)"
        )
    if p.device.type == "meta":
        raise ValueError(
            f"{where} is on the meta device (it has no data to update); materialise it first, "
            "e.g. module.to_empty(device='cpu') and initialise it"
        )
    if p.is_sparse:
        raise TypeError(f"{where} is sparse; the learned optimizer needs dense parameters")


def _execute(source: str) -> types.ModuleType:
    """The module that ``source`` (a :func:`to_source` text) defines."""
    return exec_module(source, "odeopt_learned_generated", "<odeopt.learned generated>")


def to_source(net: HNNOptimizerNet | LSTMOptimizerNet, class_name: str = "HNNOptimizer") -> str:
    """A self-contained .py file (needs only torch) defining ``class_name``, a
    torch.optim.Optimizer with the net's trained weights written in: the same arithmetic and
    the same checks as :class:`LearnedOptimizer` (tested equal). The weights must be finite
    (a diverged meta-training would write NaN into the file). Either net: the pH cell
    (constrained or the authors' original) or the learning-to-learn LSTM."""
    if not isinstance(net, (HNNOptimizerNet, LSTMOptimizerNet)):
        raise TypeError(
            "to_source: net must be an odeopt.learned.HNNOptimizerNet or LSTMOptimizerNet, "
            f"got net={type(net).__name__}"
        )
    if not isinstance(class_name, str):
        raise TypeError(f"to_source: class_name must be a string, got class_name={class_name!r}")
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(
            f"to_source: class_name must be a Python identifier, got class_name={class_name!r}"
        )
    for key, value in net.state_dict().items():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"to_source: the net's weight {key} is not finite")
    weights = {k: v.detach().double().tolist() for k, v in net.state_dict().items()}
    if isinstance(net, LSTMOptimizerNet):
        head, body, P, d = _LSTM_HEAD, _LSTM_BODY, net.P, 2 if net.preprocess else 1
        what = "learning-to-learn LSTM optimizer"
        state = "h0, c0, h1, c1 (each of shape (*parameter.shape, HIDDEN))"
    else:
        head, body, P, d = _HNN_HEAD, _HNN_BODY, net.pre.P if net.preprocess else 10.0, net.cell.dim
        what = "learned port-Hamiltonian optimizer"
        state = "p, the last output"
    fields = dict(
        cls=class_name,
        weights=pprint.pformat(weights, width=99, compact=True),
        preprocess=net.preprocess,
        P=repr(P),
        d=d,
        constrained=getattr(net, "constrained", True),
        hidden=getattr(net, "hidden", 0),
        what=what,
        state=state,
    )
    return "".join(part.format(**fields) for part in (head, _PRELUDE, body, _COMMON))


def save_source(
    net: HNNOptimizerNet | LSTMOptimizerNet, path: str | Path, class_name: str = "HNNOptimizer"
) -> Path:
    """Write :func:`to_source` to ``path`` (its directory must exist; an existing file is
    replaced). A missing directory raises FileNotFoundError and a directory given as ``path``
    IsADirectoryError, each naming it; nothing is written then."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save_source: path must be a str or os.PathLike, got path={path!r}")
    path = Path(path)
    source = to_source(net, class_name)
    if path.is_dir():
        raise IsADirectoryError(f"save_source: path={str(path)!r} is a directory, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"save_source: the directory {str(parent)!r} of path={str(path)!r} does not exist"
        )
    path.write_text(source, encoding="utf-8")
    return path


_HNN_HEAD = '''"""A learned port-Hamiltonian optimizer (generated by odeopt.learned, torch only).

Per entry, with q = pre(g) and p = pre(p_prev) (pre = LogSign when PREPROCESS, else identity):
    CONSTRAINED (the pH cell):
    ∇H = [V(q); M⁻¹p],  [D_q; D_p] = D∇H,  M⁻¹ = LᵀL,  D = KKᵀ
    q̇ = M⁻¹p − D_q,  ṗ = −V(q) − D_p + G(q)
    not CONSTRAINED (the authors' original cell):
    [D_q; D_p] = D[V(q); p],  q̇ = p − D_q,  ṗ = (−V(q) − D_p + G(q))·LLᵀ
    u = B[q̇; q],  p_next = A[q̇; ṗ] + a (then divided by its norm over the tensor)
    θ ← θ + lr·u
"""

'''

_LSTM_HEAD = '''"""A learning-to-learn LSTM optimizer (Andrychowicz et al. 2016), generated by
odeopt.learned, torch only.

Per entry, with x = pre(g) (pre = LogSign when PREPROCESS, else identity) and its state
(h0, c0, h1, c1), zero at start:
    (h0, c0) = LSTMCell_0(x, (h0, c0)),  (h1, c1) = LSTMCell_1(h0, (h1, c1))
    u = W h1 + b,  θ ← θ + lr·u
"""

'''

_PRELUDE = """import math

import torch
from torch.optim import Optimizer

CLASS = {cls!r}
WEIGHTS = {weights}
PREPROCESS = {preprocess}
P = {P}
D = {d}


"""

_PRE = """def _pre(x):
    if not PREPROCESS:
        return x
    a = x.abs()
    big = a >= math.exp(-P)
    tiny = torch.finfo(x.dtype).tiny
    first = torch.where(big, torch.log(a.clamp_min(tiny)) / P, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(P) * x)
    return torch.cat([first, second], dim=-1)
"""  # LogSign preprocessing in the generated files (HNN and LSTM alike)

_HNN_BODY = (
    """CONSTRAINED = {constrained}


"""
    + _PRE
    + """

def _linear(x, w, prefix, bias=True):
    out = x @ w[prefix + ".weight"].T
    return out + w[prefix + ".bias"] if bias else out


def _mlp(x, w, prefix):
    return _linear(torch.relu(_linear(x, w, prefix + ".0")), w, prefix + ".2")


def _zero_state(t):
    return {{"p": torch.zeros_like(t)}}


def _update(w, g, state, normalize):
    q = _pre(g.reshape(-1, 1))
    p = _pre(state["p"].reshape(-1, 1))
    L = w["cell.L.weight"]
    if CONSTRAINED:
        K = w["cell.K.weight"]
        dh = torch.cat([_mlp(q, w, "cell.V"), p @ (L.T @ L)], dim=-1)
        damp = dh @ (K @ K.T)
        qdot = dh[..., D:] - damp[..., :D]
        pdot = -dh[..., :D] - damp[..., D:] + _mlp(q, w, "cell.G")
    else:
        v = _mlp(q, w, "cell.V")
        damp = torch.cat([v, p], dim=-1) @ w["cell.D.weight"].T
        qdot = p - damp[..., :D]
        pdot = (-v - damp[..., D:] + _mlp(q, w, "cell.G")) @ (L @ L.T)
    u = _linear(torch.cat([qdot, q], dim=-1), w, "update", bias=False).reshape(g.shape)
    pn = _linear(torch.cat([qdot, pdot], dim=-1), w, "next_p").reshape(g.shape)
    if normalize:
        n = pn.norm()
        if n > 0:
            pn = pn / n
    return u, {{"p": pn}}


"""
)

_LSTM_BODY = (
    """HIDDEN = {hidden}
_NAMES = ("h0", "c0", "h1", "c1")


"""
    + _PRE
    + '''

def _cell(x, h, c, w, prefix):
    return torch.lstm_cell(x, (h, c), w[prefix + ".weight_ih"], w[prefix + ".weight_hh"],
                           w[prefix + ".bias_ih"], w[prefix + ".bias_hh"])


def _zero_state(t):
    return {{k: torch.zeros(*t.shape, HIDDEN, dtype=t.dtype, device=t.device) for k in _NAMES}}


def _update(w, g, state, normalize):
    """One LSTM step for every entry of g (normalize does not apply: there is no p)."""
    h0, c0, h1, c1 = (state[k].reshape(-1, HIDDEN) for k in _NAMES)
    h0, c0 = _cell(_pre(g.reshape(-1, 1)), h0, c0, w, "recurs")
    h1, c1 = _cell(h0, h1, c1, w, "recurs2")
    u = torch.nn.functional.linear(h1, w["output.weight"], w["output.bias"]).reshape(g.shape)
    shape = (*g.shape, HIDDEN)
    return u, {{k: v.reshape(shape) for k, v in zip(_NAMES, (h0, c0, h1, c1))}}


'''
)

_COMMON = '''_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_group(group, gi=None):
    """lr (out_mul) a finite real > 0, the flags bools; ``gi`` names the param group."""
    where = "" if gi is None else f" (param group {{gi}})"
    lr = group["lr"]
    if isinstance(lr, torch.Tensor) and lr.ndim == 0 and lr.dtype.is_floating_point:
        lr = float(lr)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise TypeError(f"{{CLASS}}: lr (out_mul) must be a real number, got lr={{lr!r}}{{where}}")
    if not math.isfinite(lr):
        raise ValueError(f"{{CLASS}}: lr (out_mul) must be finite, got lr={{lr}}{{where}}")
    if lr <= 0:
        raise ValueError(f"{{CLASS}}: lr (out_mul) must be > 0, got lr={{lr:g}}{{where}}")
    for flag in ("normalize", "maximize", "check_finite"):
        if not isinstance(group[flag], bool):
            raise TypeError(f"{{CLASS}}: {{flag}} must be True or False, got "
                            f"{{flag}}={{group[flag]!r}}{{where}}")


def _finite_loss(loss):
    """A closure's loss is finite (a tensor: every entry); a value of another kind passes."""
    if isinstance(loss, torch.Tensor):
        return bool(torch.isfinite(loss).all())
    if isinstance(loss, (int, float)):
        return math.isfinite(loss)
    return True


def _first_nonfinite(grads):
    """The index of the first gradient with a non-finite entry, else None: one fused
    max-|x| pass (``torch._foreach_norm(x, inf)``, no overflow in any dtype) and one
    synchronisation per device."""
    live = [i for i, g in enumerate(grads) if g.numel() > 0]
    if not live:
        return None
    norms = torch._foreach_norm([grads[i] for i in live], math.inf)
    by_device = {{}}
    for k, n in enumerate(norms):
        by_device.setdefault(n.device, []).append(k)
    bad = []
    for ks in by_device.values():
        ok = torch.stack([torch.isfinite(norms[k]) for k in ks])
        if not bool(ok.all()):
            bad.append(ks[int((~ok).nonzero()[0, 0])])
    return live[min(bad)] if bad else None


def _weights(opt, t):
    """The weights in ``t``'s dtype and device (made once per dtype and device)."""
    key = (t.dtype, t.device)
    if key not in opt._w:
        opt._w[key] = {{k: torch.tensor(v, dtype=t.dtype, device=t.device)
                        for k, v in WEIGHTS.items()}}
    return opt._w[key]


@torch.no_grad()
def _step(opt, closure):
    """One learned step of ``opt`` on every parameter with a gradient; every check runs
    before any parameter moves."""
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    work = []
    for gi, group in enumerate(opt.param_groups):
        _check_group(group, gi)  # schedulers and users may have changed lr
        items = [(pi, p) for pi, p in enumerate(group["params"]) if p.grad is not None]
        for pi, p in items:
            if p.grad.is_sparse:
                raise RuntimeError(f"{{CLASS}} does not support sparse gradients (parameter "
                                   f"{{pi}} of param group {{gi}})")
        if group["check_finite"]:
            if loss is not None and not _finite_loss(loss):
                raise FloatingPointError(f"{{CLASS}}: the closure's loss is not finite "
                                         f"(loss={{loss!r}}); no parameter was updated")
            bad = _first_nonfinite([p.grad for _, p in items])
            if bad is not None:
                pi, p = items[bad]
                raise FloatingPointError(
                    f"{{CLASS}}: non-finite gradient in param group {{gi}}, parameter {{pi}} "
                    f"(shape {{tuple(p.shape)}}); no parameter was updated")
        work.append((group, items))
    for group, items in work:
        for _, p in items:
            g = -p.grad if group["maximize"] else p.grad
            state = opt.state[p]
            if not state:
                state.update(_zero_state(p))
            u, new = _update(_weights(opt, p), g, state, group["normalize"])
            p.add_(u, alpha=group["lr"])
            state.update(new)
    return loss


class {cls}(Optimizer):
    """The {what} with its trained weights; lr is out_mul.

    State per parameter: {state}.

    Parameters must be real floating tensors with data (not meta); lr must be finite and > 0
    (re-checked every step); with check_finite a non-finite gradient or closure loss raises
    FloatingPointError before any parameter moves.
    """

    def __init__(self, params, lr=1e-3, *, normalize=True, maximize=False, check_finite=True):
        defaults = dict(lr=lr, normalize=normalize, maximize=maximize, check_finite=check_finite)
        _check_group(defaults)
        super().__init__(params, defaults)
        self._w = {{}}

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        try:
            _check_group(self.param_groups[gi], gi)
            for pi, p in enumerate(self.param_groups[gi]["params"]):
                if p.dtype not in _FLOAT:
                    raise TypeError(f"parameter {{pi}} of param group {{gi}} has dtype "
                                    f"{{p.dtype}}; a real floating dtype is needed")
                if p.device.type == "meta":
                    raise ValueError(f"parameter {{pi}} of param group {{gi}} is on the meta "
                                     "device (no data to update)")
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def step(self, closure=None):
        """One learned step (``closure`` re-evaluates the model and returns the loss)."""
        return _step(self, closure)
'''
