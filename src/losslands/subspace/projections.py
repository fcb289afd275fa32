"""Random projections ``P: R^d -> R^D`` with unit-norm columns, for training in random subspaces.

Li, Farkhoor, Liu, Yosinski (2018), "Measuring the Intrinsic Dimension of Objective Landscapes",
train ``theta = theta0 + P z`` over ``z`` in ``R^d`` with a fixed random ``P`` whose columns have
unit length. Three constructions trade memory for speed:

* ``dense``: Gaussian matrix, columns normalised (Li et al. 2018); ``D * d`` numbers.
* ``sparse``: very sparse random projection (Li, Hastie, Church 2006, "Very sparse random
  projections"), columns normalised; about ``d * sqrt(D)`` non-zeros.
* ``fastfood``: Walsh-Hadamard blocks (Le, Sarlos, Smola 2013, "Fastfood - approximating kernel
  expansions in loglinear time"), as used by Li et al. (2018); ``O(D)`` memory,
  ``O(D log d)`` time.

Every projection is generated on the CPU from ``torch.Generator().manual_seed(seed)`` and then
moved, so a seed gives the same matrix on every device.

Over ~300 lines: three projections on one interface, each short.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import torch
from torch import Tensor

DEFAULT_MAX_DENSE_BYTES = 256 * 2**20
KINDS = ("dense", "sparse", "fastfood")


def fwht(x: Tensor) -> Tensor:
    """Unnormalised fast Walsh-Hadamard transform ``H x`` along the last dimension.

    ``H`` is the Sylvester-ordered Hadamard matrix (entries +-1, ``H @ H = n I``), the one
    ``scipy.linalg.hadamard`` returns. Iterative butterflies, ``log2(n)`` vectorised stages;
    differentiable through autograd.

    Args:
        x: tensor whose last dimension ``n`` is a power of two.
    """
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two last dimension, got {n}; zero-pad the input")
    lead = x.shape[:-1]
    h = 1
    while h < n:
        pairs = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2).reshape(*lead, n)
        h *= 2
    return x


def _check_sizes(D: int, d: int) -> None:
    if not (isinstance(D, int) and isinstance(d, int)) or d < 1 or D < 1:
        raise ValueError(f"D and d must be positive integers, got D={D!r}, d={d!r}")
    if d > D:
        raise ValueError(f"subspace dimension d={d} exceeds the parameter count D={D}; use d <= D")


class Projection(ABC):
    """A fixed linear map ``P: R^d -> R^D`` with unit-norm columns.

    Attributes:
        D: ambient (parameter) dimension.
        d: subspace dimension.
        seed: seed the projection was generated from.
    """

    def __init__(self, D: int, d: int, seed: int, device, dtype) -> None:
        _check_sizes(D, d)
        self.D, self.d, self.seed = D, d, seed
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not self.dtype.is_floating_point:
            raise ValueError(f"projection dtype must be floating point, got {self.dtype}")

    def __call__(self, z: Tensor) -> Tensor:
        """``P z`` for ``z`` of shape ``(d,)`` or ``(d, k)``, on ``z``'s device and dtype.

        Differentiable in ``z``. Build the projection with ``z``'s device and dtype to avoid a
        cast of its tensors on every call.
        """
        self._check_input(z, self.d, "z")
        return self._apply(z)

    def transpose(self, v: Tensor) -> Tensor:
        """``P^T v`` for ``v`` of shape ``(D,)`` or ``(D, k)``, on ``v``'s device and dtype."""
        self._check_input(v, self.D, "v")
        return self._apply_transpose(v)

    def to_dense(self, chunk: int = 256) -> Tensor:
        """The explicit ``(D, d)`` matrix, built ``chunk`` columns at a time (small problems)."""
        eye = torch.eye(self.d, device=self.device, dtype=self.dtype)
        return torch.cat([self(eye[:, i : i + chunk]) for i in range(0, self.d, chunk)], dim=1)

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the projection's tensors."""

    @abstractmethod
    def _apply(self, z: Tensor) -> Tensor: ...

    @abstractmethod
    def _apply_transpose(self, v: Tensor) -> Tensor: ...

    @staticmethod
    def _check_input(x: Tensor, n: int, name: str) -> None:
        if x.dim() not in (1, 2) or x.shape[0] != n:
            raise ValueError(f"{name} must have shape ({n},) or ({n}, k), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(D={self.D}, d={self.d}, seed={self.seed})"


def _like(t: Tensor, x: Tensor) -> Tensor:
    """``t`` on ``x``'s device (and dtype, for floating ``t``); a no-op when they already match."""
    dtype = x.dtype if t.is_floating_point() else t.dtype
    return t.to(device=x.device, dtype=dtype)


class DenseProjection(Projection):
    """Gaussian matrix with columns normalised to unit length (Li et al. 2018).

    Raises:
        ValueError: if ``D * d`` entries would take more than ``max_dense_bytes``.
    """

    def __init__(
        self,
        D: int,
        d: int,
        *,
        seed: int = 0,
        device=None,
        dtype=None,
        max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
    ) -> None:
        super().__init__(D, d, seed, device, dtype)
        size = D * d * self.dtype.itemsize
        if size > max_dense_bytes:
            raise ValueError(
                f"a dense {D} x {d} projection would hold {size / 2**20:.0f} MiB, above "
                f"max_dense_bytes={max_dense_bytes / 2**20:.0f} MiB; use projection='fastfood' "
                "(O(D) memory) or projection='sparse', or raise max_dense_bytes"
            )
        gen = torch.Generator().manual_seed(seed)
        # Drawn in float32 whatever the dtype, so one seed gives the same subspace in any dtype.
        matrix = torch.randn(D, d, generator=gen).to(self.dtype)
        matrix /= torch.linalg.vector_norm(matrix, dim=0)
        self.matrix = matrix.to(self.device)

    @property
    def nbytes(self) -> int:
        return self.matrix.numel() * self.matrix.element_size()

    def _apply(self, z: Tensor) -> Tensor:
        return _like(self.matrix, z) @ z

    def _apply_transpose(self, v: Tensor) -> Tensor:
        return _like(self.matrix, v).T @ v


class SparseProjection(Projection):
    """Very sparse random projection (Li, Hastie, Church 2006), columns normalised.

    Each entry is non-zero independently with probability ``density`` (default ``1/sqrt(D)``,
    the "very sparse" choice ``s = sqrt(D)`` of Li et al. 2006) with a random sign; each column is
    then divided by its norm, so its non-zeros are ``+-1/sqrt(nnz)``. A column left empty by the
    draw (probability about ``exp(-sqrt(D))``) gets one random entry so it can be normalised.
    Stored as torch sparse CSR matrices (``P`` and ``P^T``).
    """

    def __init__(
        self,
        D: int,
        d: int,
        *,
        seed: int = 0,
        device=None,
        dtype=None,
        density: float | None = None,
    ) -> None:
        super().__init__(D, d, seed, device, dtype)
        p = 1.0 / math.sqrt(D) if density is None else float(density)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        self.density = p
        gen = torch.Generator().manual_seed(seed)
        flat = _bernoulli_positions(D * d, p, gen)  # column-major linear indices
        rows, cols = flat % D, flat // D
        counts = torch.bincount(cols, minlength=d)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            rows = torch.cat([rows, torch.randint(0, D, (empty.numel(),), generator=gen)])
            cols = torch.cat([cols, empty])
            counts[empty] = 1
        signs = torch.randint(0, 2, (rows.numel(),), generator=gen, dtype=torch.float64) * 2 - 1
        values = (signs / counts[cols].double().sqrt()).to(self.dtype)
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), values, (D, d), check_invariants=True
        ).coalesce()
        # CSR products are several times faster than COO's on CPU; P^T is kept too, so the
        # backward pass does not transpose P at every step.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.matrix = coo.to_sparse_csr().to(self.device)
            self.matrix_t = coo.t().coalesce().to_sparse_csr().to(self.device)

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.matrix._nnz())

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for m in (self.matrix, self.matrix_t)
            for t in (m.crow_indices(), m.col_indices(), m.values())
        )

    def _apply(self, z: Tensor) -> Tensor:
        return _CsrMatmul.apply(z, _like(self.matrix, z), _like(self.matrix_t, z))

    def _apply_transpose(self, v: Tensor) -> Tensor:
        return _CsrMatmul.apply(v, _like(self.matrix_t, v), _like(self.matrix, v))


class _CsrMatmul(torch.autograd.Function):
    """``matrix @ x`` whose backward uses the stored transpose."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: Tensor, matrix_t: Tensor) -> Tensor:
        ctx.matrix_t = matrix_t
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.matrix_t @ grad, None, None


def _bernoulli_positions(n: int, p: float, gen: torch.Generator) -> Tensor:
    """Sorted indices in ``[0, n)`` where i.i.d. Bernoulli(p) trials succeed.

    Gaps between successes are geometric, so the cost is proportional to the number of
    successes, not to ``n`` (which is ``D * d``, billions for a network).
    """
    chunks, last = [], -1
    expected = n * p
    while last < n - 1:
        size = int(expected + 6 * math.sqrt(expected) + 16)
        gaps = torch.empty(size, dtype=torch.float64).geometric_(p, generator=gen)
        pos = last + torch.cumsum(gaps, 0).long()
        chunks.append(pos)
        last = int(pos[-1])
    pos = torch.cat(chunks)
    return pos[pos < n]


class FastfoodProjection(Projection):
    """Fastfood projection (Le, Sarlos, Smola 2013), stacked as in Li et al. (2018).

    ``z`` is zero-padded to ``n = 2^ceil(log2 d)`` and mapped by ``ceil(D / n)`` independent
    blocks ``V_b = H G_b Pi_b H B_b`` (``H`` Walsh-Hadamard, ``B_b`` random signs, ``Pi_b`` a
    random permutation, ``G_b`` Gaussian diagonal); the stacked outputs are cut to ``D`` rows.
    Le et al.'s row scaling ``S`` only shapes a kernel approximation and is left out. Columns are
    then scaled to exactly unit norm: a full block adds ``n * ||G_b||^2`` to every squared column
    norm (``H`` has +-1 entries and ``H H = n I``); the cut last block's share is computed
    exactly once, by transforming unit vectors (``min(d, rows kept)`` transforms of size ``n``).
    Memory ``O(D)``, time ``O(D log n)`` per product.
    """

    def __init__(self, D: int, d: int, *, seed: int = 0, device=None, dtype=None) -> None:
        super().__init__(D, d, seed, device, dtype)
        n = 1 << (d - 1).bit_length()
        blocks = -(-D // n)
        gen = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, (blocks, n), generator=gen, dtype=torch.float64) * 2 - 1
        perm = torch.argsort(torch.rand(blocks, n, generator=gen, dtype=torch.float64), dim=1)
        gauss = torch.randn(blocks, n, generator=gen, dtype=torch.float64)
        self.n, self.blocks = n, blocks
        self.signs, self.perm, self.gauss = signs, perm, gauss
        self.inv_perm = torch.argsort(perm, dim=1)
        # drawn on the CPU (the same numbers on every device), normalised where it will run: the
        # column norms are the construction's one O(d n log n) step, minutes on a CPU at d ~ 1e5
        self.perm, self.inv_perm = self.perm.to(self.device), self.inv_perm.to(self.device)
        self.gauss = self.gauss.to(self.device)
        self.col_scale = self._column_sq_norms().rsqrt()
        for name in ("signs", "gauss", "col_scale"):
            setattr(self, name, getattr(self, name).to(device=self.device, dtype=self.dtype))

    def _column_sq_norms(self) -> Tensor:
        """Squared norms of the unscaled columns (returned in float64)."""
        n, kept = self.n, self.D - (self.blocks - 1) * self.n
        full = n * self.gauss[:-1].square().sum()
        if kept == n:
            return (full + n * self.gauss[-1].square().sum()).expand(self.d).clone()
        # B's signs square away; H B e_j and H e_r are rows of H, built without a transform.
        # float32 is enough for a float32 projection and halves the cost of this, the only
        # O(min(d, kept) * n log n) step.
        work = torch.float64 if self.dtype == torch.float64 else torch.float32
        perm, inv_perm, gauss = self.perm[-1], self.inv_perm[-1], self.gauss[-1].to(work)
        partial = torch.zeros(self.d, dtype=work, device=gauss.device)
        chunk = min(n, max(1, 2**20 // n))  # rows per transform batch (~4 MB of float32)
        if self.d <= kept:  # column j of the cut block: rows < kept of H G Pi h_j
            for i, h in _hadamard_row_chunks(self.d, chunk, n, work, gauss.device):
                y = fwht(h[:, perm] * gauss)[:, :kept]
                partial[i : i + y.shape[0]] = y.square().sum(1)
        else:  # row r of the cut block: H Pi^T G h_r, squared and summed over r
            for _, h in _hadamard_row_chunks(kept, chunk, n, work, gauss.device):
                partial += fwht((h * gauss)[:, inv_perm])[:, : self.d].square().sum(0)
        return full + partial.double()

    @property
    def nbytes(self) -> int:
        tensors = (self.signs, self.gauss, self.col_scale, self.perm, self.inv_perm)
        return sum(t.numel() * t.element_size() for t in tensors)

    def _apply(self, z: Tensor) -> Tensor:
        x = (z.T if z.dim() == 2 else z) * _like(self.col_scale, z)  # (k, d) or (d,)
        x = torch.nn.functional.pad(x, (0, self.n - self.d)).unsqueeze(-2)
        y = _blocks_forward(x, *(_like(t, z) for t in (self.signs, self.perm, self.gauss)))
        y = y.flatten(-2)[..., : self.D]
        return y.T if z.dim() == 2 else y

    def _apply_transpose(self, v: Tensor) -> Tensor:
        x = v.T if v.dim() == 2 else v
        x = torch.nn.functional.pad(x, (0, self.blocks * self.n - self.D))
        x = x.unflatten(-1, (self.blocks, self.n))
        y = _blocks_transpose(x, *(_like(t, v) for t in (self.signs, self.inv_perm, self.gauss)))
        y = y.sum(-2)[..., : self.d] * _like(self.col_scale, v)
        return y.T if v.dim() == 2 else y


def _hadamard_rows(start: int, stop: int, n: int, dtype: torch.dtype, device=None) -> Tensor:
    """Rows ``start..stop-1`` of the Sylvester Hadamard matrix of order ``n``.

    ``H[r, k] = (-1)^popcount(r & k)``; the parity is folded with xor shifts.
    """
    bits = torch.arange(start, stop, device=device).unsqueeze(1) & torch.arange(n, device=device)
    for shift in (16, 8, 4, 2, 1):
        bits ^= bits >> shift
    return (1 - 2 * (bits & 1)).to(dtype)


def _hadamard_row_chunks(rows: int, chunk: int, n: int, dtype: torch.dtype, device=None):
    """``(start, H[start:start + chunk])`` for the first ``rows`` rows of the Hadamard matrix of
    order ``n``, ``chunk`` (a power of two) rows at a time.

    The bits of ``start`` (a multiple of ``chunk``) and of ``t < chunk`` do not overlap, so
    ``H[start + t, k] = H[start, k] * H[t, k mod chunk]``: one row's parities per chunk and a
    product with a fixed tile, instead of every row's (the same exact +-1 values).
    """
    if chunk & (chunk - 1) or chunk < 1 or chunk > n:
        raise ValueError(f"chunk must be a power of two in 1..{n}, got {chunk}")
    tile = _hadamard_rows(0, chunk, n, dtype, device)  # H[t, k mod chunk] = H[t, k] for t < chunk
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        yield start, _hadamard_rows(start, start + 1, n, dtype, device) * tile[: stop - start]


def _blocks_forward(x: Tensor, signs: Tensor, perm: Tensor, gauss: Tensor) -> Tensor:
    """``H G Pi H B x`` per block: ``x`` is ``(..., 1, n)``, the result ``(..., blocks, n)``."""
    y = fwht(x * signs)
    y = torch.gather(y, -1, perm.expand(y.shape))
    return fwht(y * gauss)


def _blocks_transpose(x: Tensor, signs: Tensor, inv_perm: Tensor, gauss: Tensor) -> Tensor:
    """``B H Pi^T G H x`` per block: ``x`` and the result are ``(..., blocks, n)``."""
    y = fwht(x) * gauss
    y = torch.gather(y, -1, inv_perm.expand(y.shape))
    return fwht(y) * signs


def make_projection(
    kind: str,
    D: int,
    d: int,
    *,
    seed: int = 0,
    device=None,
    dtype=None,
    max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> Projection:
    """Build a projection ``P: R^d -> R^D`` with unit-norm columns.

    Args:
        kind: ``"dense"``, ``"sparse"`` or ``"fastfood"`` (see the module docstring).
        D: ambient dimension (number of parameters).
        d: subspace dimension, ``1 <= d <= D``.
        seed: the same seed gives the same projection on every device.
        device: where the projection's tensors live (default CPU).
        dtype: floating dtype of the projection (default ``torch.get_default_dtype()``).
        max_dense_bytes: ``"dense"`` refuses to hold more than this many bytes.
    """
    common = dict(seed=seed, device=device, dtype=dtype)
    if kind == "dense":
        return DenseProjection(D, d, max_dense_bytes=max_dense_bytes, **common)
    if kind == "sparse":
        return SparseProjection(D, d, **common)
    if kind == "fastfood":
        return FastfoodProjection(D, d, **common)
    raise ValueError(f"unknown projection {kind!r}; use one of {', '.join(KINDS)}")
