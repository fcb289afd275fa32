"""Training in random subspaces ``theta0 + P z`` (Li, Farkhoor, Liu, Yosinski 2018)."""

from losslands.subspace.projections import (
    DEFAULT_MAX_DENSE_BYTES,
    DenseProjection,
    FastfoodProjection,
    Projection,
    SparseProjection,
    fwht,
    make_projection,
)
from losslands.subspace.train import SubspaceResult, train_in_subspace

__all__ = [
    "DEFAULT_MAX_DENSE_BYTES",
    "DenseProjection",
    "FastfoodProjection",
    "Projection",
    "SparseProjection",
    "SubspaceResult",
    "fwht",
    "make_projection",
    "train_in_subspace",
]
