"""Data-parallel curvature products over ``torch.distributed``: each process holds a shard.

The probe samples are split across the ranks of a process group (contiguous parts whose sizes
differ by at most one: :func:`shard_range`). A product of the curvature of the mean loss over all
``N`` samples is the sample-weighted sum of the shards' products: shard ``r`` builds its own
operator (say a :class:`~losslands.curvature.operators.HessianOperator`, which averages over its
``n_r`` samples), and :class:`AllReduced` scales its product by ``n_r / N`` and sums it over the
ranks with ``all_reduce(SUM)``, so every rank holds the same vector.

Who drives the Krylov methods: **every rank, replicated**. Lanczos, the trace estimators, SLQ and
:func:`~losslands.curvature.spectrum.spectrum` run unchanged on every rank. They draw every random
vector from a seeded ``torch.Generator`` on the CPU in float64 (``trace.probe_vectors``,
``lanczos``), and all-reduce hands every rank the same bits, so the ranks do the same arithmetic
on the same numbers and take the same branches (stopping tests, restarts, deflation) without
talking. The alternative, rank 0 driving and broadcasting each start vector, would need a second
collective per product and a protocol for the other ranks to learn when to stop; replicated, the
probe code runs as it is on every rank and the only communication is the reduction itself. The
driver's own work (reorthogonalisation, small eigenproblems) is repeated on every rank; it is
cheap next to a product over a shard. The one risk, ranks whose arithmetic differs (different CPU
kernels on mixed nodes) and so whose control flow could part and deadlock, is checked: with
``check_inputs`` (default) every product first compares a fingerprint of its input vector across
ranks (one tiny extra all-reduce) and every rank raises the same error when they differ.

Gradients through a reduction: :func:`sum_over_ranks` is differentiable, so a loss summed over
shards can be differentiated (the path probes' evaluation losses).

Pure PyTorch: no Hydra, no Lightning; the process group is set up by the caller (the CLI entry
does it from torchrun's or SLURM's environment, :mod:`losslands.launch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from losslands.curvature.operators import Operator, operator_dtype_device

Batch = tuple[Tensor, Tensor]


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous part of ``n`` items: the first
    ``n % world_size`` ranks get one more item than the others."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    base, extra = divmod(int(n), world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@dataclass(frozen=True)
class Shard:
    """This process's place in a data-parallel group: which part of the samples it holds and
    how it talks to the others.

    Attributes:
        rank: this process's rank in ``group``.
        world_size: the number of ranks.
        group: the process group of the reductions (None: the default group).
        control: the group of object broadcasts (e.g. a gloo group with a long timeout, so a
            rank may wait for rank 0 to train a model); None: ``group``.
    """

    rank: int
    world_size: int
    group: Any = None
    control: Any = None

    @classmethod
    def current(cls, group: Any = None, control: Any = None) -> Shard | None:
        """The shard of this process in ``group`` (default: the default group), or None when no
        process group is initialised or it has one rank (the single-process path)."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world = dist.get_world_size(group)
        return None if world < 2 else cls(dist.get_rank(group), world, group, control)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and logs."""
        return self.rank == 0

    def range(self, n: int) -> tuple[int, int]:
        """This rank's ``[start, stop)`` of ``n`` samples (:func:`shard_range`)."""
        return shard_range(n, self.rank, self.world_size)

    def split(self, x: Tensor, y: Tensor) -> Batch:
        """This rank's contiguous part of the batch ``(x, y)``."""
        if len(x) < self.world_size:
            raise ValueError(
                f"{len(x)} samples cannot be shared by {self.world_size} ranks: use more "
                "samples or fewer processes"
            )
        start, stop = self.range(len(x))
        return x[start:stop], y[start:stop]

    def batches(self, batches: Sequence[Batch]) -> list[Batch]:
        """This rank's contiguous part of the samples of ``batches`` (taken in order, as if
        concatenated), keeping the batch boundaries inside it. May be empty."""
        start, stop = self.range(sum(len(x) for x, _ in batches))
        out, offset = [], 0
        for x, y in batches:
            lo, hi = max(start - offset, 0), min(stop - offset, len(x))
            if lo < hi:
                out.append((x[lo:hi], y[lo:hi]))
            offset += len(x)
        return out

    def all_reduce(self, t: Tensor) -> Tensor:
        """The sum of ``t`` over the ranks (a new tensor; ``t`` is left as it is)."""
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def broadcast_object(self, obj: Any = None, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (picklable), on every rank."""
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, group=self.control or self.group)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank arrives (on the control group)."""
        dist.barrier(group=self.control or self.group)


class _ReduceGradient(torch.autograd.Function):
    """Identity forward; the backward sums the gradient over the ranks."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, shard: Shard) -> Tensor:
        ctx.shard = shard
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _SumOverRanks.apply(grad, ctx.shard), None


class _SumOverRanks(torch.autograd.Function):
    """Forward sums over the ranks; the backward passes the gradient through (each rank's
    input contributes with weight one to the replicated output)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, shard: Shard) -> Tensor:
        ctx.shard = shard
        return shard.all_reduce(t)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _ReduceGradient.apply(grad, ctx.shard), None


def sum_over_ranks(t: Tensor, shard: Shard) -> Tensor:
    """``sum_r t_r`` on every rank, differentiable: the gradient w.r.t. each rank's ``t_r`` is
    the output's gradient (twice differentiable too: the two steps are each other's adjoint)."""
    return _SumOverRanks.apply(t, shard)


def replicated(theta: Tensor, shard: Shard) -> Tensor:
    """``theta`` as it is, marked as held identically by every rank: gradients flowing back to
    it are summed over the ranks. Use as the input of a per-shard loss whose sum over ranks
    (:func:`sum_over_ranks`) is the objective, so ``d(sum_r f_r)/d theta`` lands on every rank."""
    return _ReduceGradient.apply(theta, shard)


def sharded_loss(
    make_loss: Callable[[list[Batch]], Callable[[Tensor], Tensor]],
    batches: Sequence[Batch],
    shard: Shard,
) -> Callable[[Tensor], Tensor]:
    """The sample-weighted mean loss over all of ``batches``, each rank evaluating its shard.

    Args:
        make_loss: ``batches -> f(theta)``, the mean loss over those batches (e.g.
            :func:`losslands.flat.flat_loss` bound to a model).
        batches: every rank's same full list of batches.
        shard: this rank's place.

    Returns:
        ``f(theta)``, the same value on every rank, differentiable w.r.t. ``theta``.
    """
    total = sum(len(x) for x, _ in batches)
    own = shard.batches(batches)
    weight = sum(len(x) for x, _ in own) / total
    local = make_loss(own) if own else None

    def f(theta: Tensor) -> Tensor:
        t = replicated(theta, shard)
        # a rank without samples still joins the backward's reduction through a zero term
        part = local(t) * weight if local is not None else (t * 0).sum()
        return sum_over_ranks(part, shard)

    return f


class AllReduced:
    """An operator whose products are summed over the ranks: ``A v = sum_r w_r A_r v``.

    With ``A_r`` the curvature of the mean loss over shard ``r``'s ``n_r`` samples and
    ``w_r = n_r / N``, ``A`` is the curvature of the mean loss over all ``N`` samples. Every
    rank must call the same products in the same order (see the module docstring). Also offers
    ``matmat`` when the inner operator does, and ``gradient()`` / ``loss()`` (summed the same
    way) when it has them.

    Args:
        op: this rank's operator.
        weight: this rank's weight ``w_r`` (``n_r / N``).
        shard: this rank's place.
        check_inputs: compare a fingerprint of every input across the ranks first (one small
            all-reduce) and raise on all ranks when they differ.

    Attributes:
        n_matvecs: products of the whole operator (each is one product on every rank).
        n_samples: ``N``, when the inner operator counts its samples.
    """

    def __init__(self, op: Operator, weight: float, shard: Shard, *, check_inputs: bool = True) -> None:
        self.op, self.weight, self.shard, self.check_inputs = op, float(weight), shard, check_inputs
        self.dim = int(op.dim)
        self.dtype, self.device = operator_dtype_device(op)
        self.n_matvecs = 0
        if hasattr(op, "n_samples"):
            self.n_samples = int(round(float(shard.all_reduce(
                torch.tensor(float(op.n_samples), dtype=torch.float64, device=self.device)))))
        if hasattr(op, "matmat"):
            self.matmat = self._matmat

    @property
    def weight_decay(self) -> float:
        """The inner operator's L2 term (it appears once in the weighted sum: weights sum to 1)."""
        return float(getattr(self.op, "weight_decay", 0.0))

    def _check(self, v: Tensor) -> None:
        if not self.check_inputs:
            return
        d = v.detach().to(torch.float64)
        f = torch.stack([d.sum(), d.pow(2).sum(), d.flatten()[0], d.flatten()[-1]])
        both = torch.cat([f, -f])
        dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self.shard.group)
        if not torch.equal(both[:4], -both[4:]):
            raise RuntimeError(
                "the ranks multiply different vectors: their Krylov runs have parted (different "
                "arithmetic on different hardware?); run the probe on identical devices"
            )

    def matvec(self, v: Tensor) -> Tensor:
        """``sum_r w_r A_r v`` on every rank."""
        v = v.to(dtype=self.dtype, device=self.device)
        self._check(v)
        out = self.shard.all_reduce(self.op.matvec(v) * self.weight)
        self.n_matvecs += 1
        return out

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def _matmat(self, vs: Tensor) -> Tensor:
        """``sum_r w_r A_r v`` for each row ``v`` of ``vs``, one reduction for all rows."""
        vs = vs.to(dtype=self.dtype, device=self.device)
        self._check(vs)
        out = self.shard.all_reduce(self.op.matmat(vs) * self.weight)
        self.n_matvecs += int(vs.shape[0])
        return out

    def gradient(self) -> Tensor:
        """``sum_r w_r grad L_r``: the gradient of the mean loss over all samples."""
        return self.shard.all_reduce(self.op.gradient() * self.weight)

    def loss(self) -> float:
        """``sum_r w_r L_r``: the mean loss over all samples."""
        value = torch.tensor(self.op.loss() * self.weight, dtype=torch.float64, device=self.device)
        return float(self.shard.all_reduce(value))
