"""Symmetric linear operators on flat parameter vectors: the protocol and its implementations.

Every curvature routine (Lanczos, trace, SLQ) works on an :class:`Operator`: ``.dim`` and
``.matvec(v)``. This module is the one home of the operators: an explicit matrix
(:class:`DenseOperator`), the Hessian of a model's mean loss over data (:class:`HessianOperator`)
and the Hessian of a loss given as a function of the flat parameters (:class:`FlatHessian`, used
by the path methods). Hessian-vector products follow Pearlmutter (1994), "Fast Exact
Multiplication by the Hessian": ``H v`` is the gradient of ``grad L . v``, at about the cost of
two to three gradients and without forming ``H``.

The Gauss-Newton family (:class:`GGNOperator`: the generalised Gauss-Newton, the Fisher exact or
by Monte Carlo, the empirical Fisher) lives here too, as DESIGN.md asks: one home for operators.

Longer than ~300 lines because the operators share their data handling (batches, chunking,
flattening); splitting them would scatter one concept over modules.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from losslands.flat import Batch, as_batches, get_flat, trainable

Method = Literal["auto", "graph", "double_backward", "jvp"]
METHODS = ("auto", "graph", "double_backward", "jvp")


class Operator(Protocol):
    """A symmetric linear operator: ``dim`` and ``matvec(v) -> A v`` on 1-D tensors.

    Optional attributes ``dtype`` and ``device`` say where vectors live (float64 on the CPU
    when absent; see :func:`operator_dtype_device`).
    """

    dim: int

    def matvec(self, v: Tensor) -> Tensor: ...


def operator_dtype_device(op: Operator) -> tuple[torch.dtype, torch.device]:
    """The operator's ``dtype``/``device`` attributes, defaulting to float64 on the CPU."""
    return getattr(op, "dtype", torch.float64), torch.device(getattr(op, "device", "cpu"))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's own previous flag."""
    previous = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in previous:
            m.training = flag


class DenseOperator:
    """An explicit symmetric matrix seen as a linear operator (tests, small problems).

    Args:
        matrix: A square, symmetric 2-D tensor.

    Raises:
        ValueError: ``matrix`` is not square or not symmetric.
    """

    def __init__(self, matrix: Tensor) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"DenseOperator needs a square 2-D matrix, got shape {tuple(matrix.shape)}"
            )
        scale = float(matrix.abs().max()) if matrix.numel() else 0.0
        eps = torch.finfo(matrix.dtype).eps if matrix.is_floating_point() else 0.0
        if not torch.allclose(matrix, matrix.T, rtol=0.0, atol=100 * eps * max(scale, 1e-300)):
            raise ValueError("DenseOperator needs a symmetric matrix; pass (A + A.T) / 2")
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.n_matvecs = 0

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for a 1-D tensor ``v``."""
        self.n_matvecs += 1
        return self.matrix @ _check_vector(v, self.dim, self.dtype, self.device)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)


def _check_vector(v: Tensor, dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if v.shape != (dim,):
        raise ValueError(f"expected a 1-D vector of length {dim}, got shape {tuple(v.shape)}")
    return v.to(dtype=dtype, device=device)


def auto_method(device: torch.device, n_samples: int, graph_max_samples: int) -> str:
    """The Hessian-product method ``method="auto"`` picks (see :class:`HessianOperator`)."""
    if device.type == "cuda":
        return "jvp"  # 4.6x faster than reverse-over-reverse on an H200 (measured, see the class)
    return "graph" if n_samples <= graph_max_samples else "double_backward"


class HessianOperator:
    """Hessian of the sample-weighted mean loss over ``data`` w.r.t. the trainable parameters.

    The objective is ``L(theta) = sum_b n_b * loss_fn(model(x_b), y_b) / N (+ wd/2 |theta|^2)``
    over all batches ``b`` (``loss_fn`` must average over its batch), so batches of unequal size
    count per sample, not per batch. Vectors are flat, in ``model.parameters()`` order (see
    :mod:`losslands.flat`). The operator is always evaluated at the model's current parameters.

    Mode: every call (``matvec``, ``gradient``, ``loss``) puts the model in eval mode (fixed
    BatchNorm statistics, no dropout) and restores each submodule's previous mode before
    returning, so the model can be used for training between calls.

    Methods (``method=``), timed in ``benchmarks/curvature.py``:

    - ``"graph"``: build the first-order graph once (``create_graph=True``) over all data, then
      each product is one backward of ``g . v`` through it (2.0x a gradient). Memory holds the
      activations of all samples for as long as the operator lives; the graph is rebuilt when a
      parameter or buffer has been modified in place since.
    - ``"double_backward"``: per batch, gradient with ``create_graph`` then a second backward
      (3.1x a gradient); memory bounded by one batch.
    - ``"jvp"``: per batch, forward-mode derivative of ``torch.func.grad`` (2.6x a gradient).
    - ``"auto"`` (default): on a GPU ``"jvp"``, falling back to ``"double_backward"`` (with a
      warning) for a model whose ops lack forward-mode AD; on a CPU ``"graph"`` when there
      are at most ``graph_max_samples`` samples, otherwise ``"double_backward"``.

    Costs: on a CPU, ``SmallCNN``, 256 CIFAR-10 images, one thread (``benchmarks/curvature.py
    --sections hvp``); ``"jvp"`` was faster than ``"double_backward"`` in one run (2.6x vs 3.1x)
    and slower in an earlier one (3.3x vs 2.9x). On an H200 (float32, 5,000 and 50,000 images)
    reverse-over-reverse is the slow one: ``"jvp"`` 0.099 s per product at 5,000 images,
    ``"double_backward"`` 0.457 s, ``"graph"`` 0.422 s (4.6x and 4.3x slower); 0.99 s vs
    4.56 s at 50,000.

    Args:
        model: The network; its trainable parameters define the space.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean.
        data: One ``(inputs, targets)`` pair or an iterable of pairs (read once, kept).
        weight_decay: Adds ``weight_decay * v``: the Hessian of ``wd/2 |theta|^2``. Right for
            SGD's L2 term, which is part of the loss; AdamW's decoupled decay is not part of the
            loss and should be left out.
        method: One of ``"auto"``, ``"graph"``, ``"double_backward"``, ``"jvp"``.
        chunk_size: If set, batches larger than this are split, bounding per-batch memory of the
            ``"double_backward"`` and ``"jvp"`` methods.
        graph_max_samples: Largest sample count for which ``"auto"`` keeps the graph.

    Raises:
        ValueError: Bad method, negative weight decay, non-positive chunk size, or a model
            without trainable parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        data: Batch | Iterable[Batch],
        *,
        weight_decay: float = 0.0,
        method: Method = "auto",
        chunk_size: int | None = None,
        graph_max_samples: int = 1024,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method={method!r} is not one of {METHODS}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive integer or None")
        self._named = trainable(model)
        if not self._named:
            raise ValueError("model has no trainable parameters (all have requires_grad=False)")
        self._params = [p for _, p in self._named]
        self.model = model
        self.loss_fn = loss_fn
        self.weight_decay = float(weight_decay)
        self.dim = sum(p.numel() for p in self._params)
        self.dtype = self._params[0].dtype
        self.device = self._params[0].device
        self._batches = _split(
            [(x.to(self.device), y.to(self.device)) for x, y in as_batches(data)], chunk_size
        )
        self.n_samples = sum(int(x.shape[0]) for x, _ in self._batches)
        if self.n_samples == 0:
            raise ValueError("data hold no samples: pass at least one non-empty batch")
        self._auto = method == "auto"
        self.method = auto_method(self.device, self.n_samples, graph_max_samples) if self._auto else method
        self.n_matvecs = 0
        self._graph: Tensor | None = None
        self._graph_versions: tuple[int, ...] = ()

    # -- objective pieces ---------------------------------------------------------------------

    def _batch_loss(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        out = self.model(x) if params is None else functional_call(self.model, params, (x,))
        return self.loss_fn(out, y) * (x.shape[0] / self.n_samples)

    def _versions(self) -> tuple[int, ...]:
        # in-place updates (optimizer steps, set_flat, BatchNorm statistics) bump _version
        return tuple(t._version for t in (*self._params, *self.model.buffers()))

    def _flat_grad_graph(self) -> Tensor:
        """Flat gradient with its graph, kept while the parameters are unchanged."""
        if self._graph is None or self._graph_versions != self._versions():
            self._graph = None  # free the old graph before building the new one
            loss = sum(self._batch_loss(x, y) for x, y in self._batches)
            self._graph = _flat(self._grads(loss, create_graph=True), self._params)
            self._graph_versions = self._versions()
        return self._graph

    def _grads(self, loss: Tensor, create_graph: bool) -> tuple[Tensor | None, ...]:
        return torch.autograd.grad(loss, self._params, create_graph=create_graph, allow_unused=True)

    def _backward_dot(self, flat_grad: Tensor, v: Tensor, retain: bool) -> Tensor:
        if not flat_grad.requires_grad:  # loss is at most linear in the parameters: H = 0
            return torch.zeros_like(v)
        hv = torch.autograd.grad(
            flat_grad, self._params, grad_outputs=v, retain_graph=retain, allow_unused=True
        )
        return _flat(hv, self._params)

    def _hvp(self, v: Tensor) -> Tensor:
        if self.method == "graph":
            return self._backward_dot(self._flat_grad_graph(), v, retain=True)
        total = torch.zeros_like(v)
        if self.method == "double_backward":
            for x, y in self._batches:
                g = _flat(self._grads(self._batch_loss(x, y), create_graph=True), self._params)
                total += self._backward_dot(g, v, retain=False)
            return total
        names = [n for n, _ in self._named]
        primals = {n: p.detach() for n, p in self._named}
        tangents = dict(zip(names, _split_like(v, self._params), strict=True))
        for x, y in self._batches:
            _, hv = jvp(
                grad(lambda p, x=x, y=y: self._batch_loss(x, y, p)), (primals,), (tangents,)
            )
            total += torch.cat([hv[n].reshape(-1) for n in names])
        return total

    # -- public -------------------------------------------------------------------------------

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a flat 1-D tensor ``v`` (cast to the model's dtype and device)."""
        v = _check_vector(v, self.dim, self.dtype, self.device)
        with eval_mode(self.model), torch.enable_grad():
            try:
                hv = self._hvp(v).detach()
            except (NotImplementedError, RuntimeError) as e:
                if not (self._auto and self.method == "jvp"):
                    raise
                warnings.warn(f"forward-mode AD failed on this model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120]}); Hessian products use double "
                              "backward instead (slower on a GPU)", RuntimeWarning, stacklevel=2)
                self.method = "double_backward"
                hv = self._hvp(v).detach()
        self.n_matvecs += 1
        return hv + self.weight_decay * v if self.weight_decay else hv

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def matmat(self, vs: Tensor) -> Tensor:
        """``H v`` for each row of ``vs`` (``b x dim``), in one batched backward pass per data
        batch (``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the backward)
        for the ``graph`` and ``double_backward`` methods; row by row for ``jvp``.

        Counts ``b`` products. Throughput per vector against :meth:`matvec`:
        ``benchmarks/spectrum.py``.
        """
        if vs.dim() != 2 or vs.shape[1] != self.dim:
            raise ValueError(f"expected a b x {self.dim} matrix, got shape {tuple(vs.shape)}")
        vs = vs.to(dtype=self.dtype, device=self.device)
        if self.method == "jvp":
            return torch.stack([self.matvec(v) for v in vs])
        with eval_mode(self.model), torch.enable_grad():
            if self.method == "graph":
                hv = self._backward_dots(self._flat_grad_graph(), vs, retain=True)
            else:
                hv = torch.zeros_like(vs)
                for x, y in self._batches:
                    g = _flat(self._grads(self._batch_loss(x, y), create_graph=True), self._params)
                    hv += self._backward_dots(g, vs, retain=False)
        self.n_matvecs += vs.shape[0]
        return hv + self.weight_decay * vs if self.weight_decay else hv

    def _backward_dots(self, flat_grad: Tensor, vs: Tensor, retain: bool) -> Tensor:
        if not flat_grad.requires_grad:
            return torch.zeros_like(vs)
        hv = torch.autograd.grad(flat_grad, self._params, grad_outputs=vs, retain_graph=retain,
                                 allow_unused=True, is_grads_batched=True)
        b = vs.shape[0]
        return torch.cat([
            (torch.zeros(b, p.numel(), dtype=vs.dtype, device=vs.device) if t is None
             else t.detach().reshape(b, -1))
            for t, p in zip(hv, self._params, strict=True)
        ], dim=1)

    def gradient(self) -> Tensor:
        """Flat gradient of the objective (mean loss plus the L2 term) at the current parameters."""
        with eval_mode(self.model), torch.enable_grad():
            if self.method == "graph":
                g = self._flat_grad_graph().detach().clone()
            else:
                g = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
                for x, y in self._batches:
                    g += _flat(
                        self._grads(self._batch_loss(x, y), create_graph=False), self._params
                    )
        return g + self.weight_decay * get_flat(self.model) if self.weight_decay else g

    def loss(self) -> float:
        """The objective (mean loss plus the L2 term) at the current parameters."""
        with eval_mode(self.model), torch.no_grad():
            value = float(sum(float(self._batch_loss(x, y)) for x, y in self._batches))
        if self.weight_decay:
            value += 0.5 * self.weight_decay * float(get_flat(self.model).pow(2).sum())
        return value


def _flat(tensors: Iterable[Tensor | None], like: list[Tensor]) -> Tensor:
    """Concatenate per-parameter tensors, with zeros for parameters the loss does not use."""
    return torch.cat(
        [
            (torch.zeros_like(p) if t is None else t).reshape(-1)
            for t, p in zip(tensors, like, strict=True)
        ]
    )


def _split_like(v: Tensor, like: list[Tensor]) -> list[Tensor]:
    return [
        part.view_as(p) for part, p in zip(v.split([p.numel() for p in like]), like, strict=True)
    ]


def _split(batches: list[Batch], chunk_size: int | None) -> list[Batch]:
    if chunk_size is None:
        return [(x, y) for x, y in batches if x.shape[0] > 0]
    return [
        (x[i : i + chunk_size], y[i : i + chunk_size])
        for x, y in batches
        for i in range(0, int(x.shape[0]), chunk_size)
    ]


class FlatHessian:
    """Hessian of ``loss(theta)`` at a fixed flat ``theta``: the operator for losses that are
    functions of the flat parameters (path methods), where :class:`HessianOperator` needs a model
    and data.

    Products are double backward through the gradient graph, built once and kept (Pearlmutter
    1994).

    Args:
        loss: differentiable scalar function of a flat parameter vector.
        theta: the point.
    """

    def __init__(self, loss: Callable[[Tensor], Tensor], theta: Tensor) -> None:
        self._x = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (self._g,) = torch.autograd.grad(loss(self._x), self._x, create_graph=True)
        self.dim, self.dtype, self.device = theta.numel(), theta.dtype, theta.device
        self.n_matvecs = 0

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a 1-D tensor ``v``."""
        self.n_matvecs += 1
        if not self._g.requires_grad:  # at most linear: no curvature
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(self._g, self._x, grad_outputs=v, retain_graph=True)
        return hv.detach()

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)


CURVATURES = ("ggn", "fisher", "fisher_mc", "empirical_fisher")


class GGNOperator:
    """Gauss-Newton-type curvature of the sample-weighted mean loss: ``(1/N) sum_i J_i^T M_i J_i``.

    ``J_i`` is the Jacobian of sample ``i``'s outputs (logits) w.r.t. the trainable parameters;
    ``M_i`` depends on ``kind``:

    - ``"ggn"``: the Hessian of the loss w.r.t. the outputs (Schraudolph 2002, "Fast Curvature
      Matrix-Vector Products for Second-Order Gradient Descent"; Martens 2020, "New Insights and
      Perspectives on the Natural Gradient Method"). Positive semidefinite for convex losses;
      computed by autograd on the outputs, so any ``loss_fn`` works.
    - ``"fisher"``: the Fisher of the softmax likelihood, ``E_{y~p}[(e_y - p)(e_y - p)^T] =
      diag(p) - p p^T``, exact; equal to the GGN for cross-entropy (Martens 2020, sec. 9.2).
    - ``"fisher_mc"``: the same expectation by ``mc_samples`` labels drawn from ``p`` with
      ``seed`` (what K-FAC-style methods use).
    - ``"empirical_fisher"``: ``(e_y - p)(e_y - p)^T`` at the true labels: the uncentred second
      moment of per-sample gradients (Kunstner, Hennig & Balles 2019, "Limitations of the
      Empirical Fisher Approximation"), the relative of the noise probe's covariance ``C``.

    The Fisher kinds assume a softmax cross-entropy model. Products are a forward-mode ``J v``
    and a reverse-mode ``J^T u`` per batch (``torch.func``), with the model in eval mode.

    Args:
        model: the network (outputs are logits).
        loss_fn: batch-mean loss (``"ggn"`` differentiates it; the others use softmax).
        data: one ``(inputs, targets)`` pair or an iterable of pairs.
        kind: one of :data:`CURVATURES`.
        mc_samples: labels per sample for ``"fisher_mc"``.
        seed: seed of the Monte-Carlo labels.
        chunk_size: split batches larger than this.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        data: Batch | Iterable[Batch],
        *,
        kind: str = "ggn",
        mc_samples: int = 1,
        seed: int = 0,
        chunk_size: int | None = None,
    ) -> None:
        if kind not in CURVATURES:
            raise ValueError(f"kind={kind!r} is not one of {CURVATURES}")
        if not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"mc_samples={mc_samples!r} must be an integer >= 1")
        self._named = trainable(model)
        if not self._named:
            raise ValueError("model has no trainable parameters (all have requires_grad=False)")
        self.model, self.loss_fn, self.kind = model, loss_fn, kind
        params = [p for _, p in self._named]
        self.dim = sum(p.numel() for p in params)
        self.dtype, self.device = params[0].dtype, params[0].device
        self._batches = _split(
            [(x.to(self.device), y.to(self.device)) for x, y in as_batches(data)], chunk_size
        )
        self.n_samples = sum(int(x.shape[0]) for x, _ in self._batches)
        if self.n_samples == 0:
            raise ValueError("data hold no samples: pass at least one non-empty batch")
        self.n_matvecs = 0
        self.mc_labels: list[Tensor] = []
        if kind == "fisher_mc":
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad(), eval_mode(model):
                for x, _ in self._batches:
                    p = torch.softmax(model(x).double(), dim=1).cpu()
                    self.mc_labels.append(torch.multinomial(p, mc_samples, True, generator=gen).to(self.device))

    def _outputs_fn(self, x: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        buffers = dict(self.model.named_buffers())
        return lambda params: functional_call(self.model, {**params, **buffers}, (x,))

    def _middle(self, logits: Tensor, y: Tensor, jv: Tensor, index: int) -> Tensor:
        """``M_i (J v)_i`` for every sample of a batch, scaled by ``1/N``."""
        if self.kind == "ggn":
            out = logits.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = self.loss_fn(out, y) * (out.shape[0] / self.n_samples)
                (g,) = torch.autograd.grad(loss, out, create_graph=True)
                (hu,) = torch.autograd.grad(g, out, grad_outputs=jv, allow_unused=True)
            return torch.zeros_like(jv) if hu is None else hu
        p = torch.softmax(logits.detach(), dim=1)
        if self.kind == "fisher":
            m = p * jv - p * (p * jv).sum(1, keepdim=True)
        else:
            labels = self.mc_labels[index] if self.kind == "fisher_mc" else y[:, None]
            m = torch.zeros_like(jv)
            for s in range(labels.shape[1]):
                r = -p.clone()
                r[torch.arange(len(r)), labels[:, s]] += 1.0  # e_y - p: the per-sample output gradient
                m += r * (r * jv).sum(1, keepdim=True)
            m /= labels.shape[1]
        return m / self.n_samples

    def matvec(self, v: Tensor) -> Tensor:
        """``G v`` for a flat 1-D tensor ``v``."""
        v = _check_vector(v, self.dim, self.dtype, self.device)
        params = [p for _, p in self._named]
        primals = {n: p.detach() for n, p in self._named}
        tangents = dict(zip(primals, _split_like(v, params), strict=True))
        total = torch.zeros_like(v)
        with eval_mode(self.model):
            for i, (x, y) in enumerate(self._batches):
                f = self._outputs_fn(x)
                logits, jv = jvp(f, (primals,), (tangents,))
                u = self._middle(logits, y, jv, i)
                _, pullback = vjp(f, primals)
                (g,) = pullback(u)
                total += torch.cat([g[n].reshape(-1) for n in primals])
        self.n_matvecs += 1
        return total.detach()

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)


class Restricted:
    """The diagonal block of an operator on a subset of coordinates: ``A[idx][:, idx]``.

    Each product embeds ``v`` in a zero vector of the full size, so it costs one product of
    ``op`` (per-layer spectra need no other machinery).

    Args:
        op: the full operator.
        index: the coordinates of the block (1-D integer tensor).
    """

    def __init__(self, op: Operator, index: Tensor) -> None:
        self.op = op
        self.dtype, self.device = operator_dtype_device(op)
        self.index = index.to(self.device)
        self.dim = int(index.numel())
        self.n_matvecs = 0

    def matvec(self, v: Tensor) -> Tensor:
        full = torch.zeros(self.op.dim, dtype=self.dtype, device=self.device)
        full[self.index] = v.to(dtype=self.dtype, device=self.device)
        self.n_matvecs += 1
        return self.op.matvec(full)[self.index]
