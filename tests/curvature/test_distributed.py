"""Data-parallel products (2 gloo processes on the CPU) against one process, and the sharding
helpers. The spawned processes compute everything once; the tests compare their records."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from losslands.curvature import HessianOperator, hutchinson_trace, lanczos, slq_density
from losslands.curvature.distributed import AllReduced, Shard, shard_range
from losslands.curvature.spectrum import spectrum
from losslands.curvature.trace import probe_vectors

N = 37  # odd: the shards differ in size (19 + 18)
SPECTRUM = {"k": 3, "max_iters": 60, "tol": 1e-10, "certify_iters": 10, "trace_samples": 4,
            "slq_vectors": 1, "slq_iters": 10, "seed": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, world: int, *args) -> None:
    """Run ``worker(rank, world, *args)`` in ``world`` fresh processes joined in a gloo group."""
    mp.spawn(_init_and_run, args=(world, free_port(), worker, args), nprocs=world, join=True)


def _init_and_run(rank: int, world: int, port: int, worker, args) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        worker(rank, world, *args)
    finally:
        dist.destroy_process_group()


def tiny_problem():
    """A float64 tanh MLP (4 -> 6 -> 3, 51 parameters) and ``N`` samples, seeded."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    return model, nn.CrossEntropyLoss(), x, y


def outputs(op) -> dict:
    """Everything compared: products, extremes, trace, density, spectrum()."""
    v = next(iter(probe_vectors(op, 1, seed=11)))
    eig = lanczos(op, 3, max_iters=60, tol=1e-10, seed=1)
    res = spectrum(op, **SPECTRUM)
    return {
        "matvec": op.matvec(v),
        "matmat": op.matmat(torch.stack([v, 2 * v])),
        "gradient": op.gradient(),
        "loss": op.loss(),
        "top": eig.top, "bottom": eig.bottom,
        "trace": hutchinson_trace(op, n_samples=5, seed=2).trace,
        "density": slq_density(op, n_vectors=2, n_iters=12, seed=4).density,
        "spectrum": {k: getattr(res, k) for k in ("top", "bottom", "trace", "nodes", "weights",
                                                  "top_certified", "bottom_certified")},
        "matvecs": op.n_matvecs,
    }


def _spectrum_worker(rank: int, world: int, out: str) -> None:
    model, loss_fn, x, y = tiny_problem()
    shard = Shard.current()
    xs, ys = shard.split(x, y)
    op = AllReduced(HessianOperator(model, loss_fn, (xs, ys), weight_decay=0.01), len(xs) / N, shard)
    torch.save({"n_local": len(xs), "n_samples": op.n_samples, **outputs(op)}, f"{out}/rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    spawn(_spectrum_worker, 2, str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    torch.set_num_threads(1)
    model, loss_fn, x, y = tiny_problem()
    return outputs(HessianOperator(model, loss_fn, (x, y), weight_decay=0.01))


def test_shards_are_contiguous_and_differ_by_at_most_one():
    for n in (0, 1, 5, 37, 64):
        for world in (1, 2, 3, 8):
            ranges = [shard_range(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
            sizes = [b - a for a, b in ranges]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="rank 2"):
        shard_range(10, 2, 2)


def test_shard_batches_split_the_concatenated_samples_across_batch_boundaries():
    x = torch.arange(10.0)[:, None]
    batches = [(x[:4], x[:4, 0]), (x[4:7], x[4:7, 0]), (x[7:], x[7:, 0])]
    parts = [Shard(r, 3).batches(batches) for r in range(3)]
    got = [torch.cat([b[0][:, 0] for b in p]).tolist() for p in parts]
    assert got == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    # rank 1 of 4 holds samples 3..5, which straddle the first two batches
    assert [len(bx) for bx, _ in Shard(1, 4).batches(batches)] == [1, 2]
    assert Shard(3, 4).split(x, x[:, 0])[0][:, 0].tolist() == [8, 9]
    with pytest.raises(ValueError, match="cannot be shared"):
        Shard(0, 4).split(x[:3], x[:3, 0])


def test_every_rank_holds_the_same_results(two_ranks):
    a, b = two_ranks
    assert (a["n_local"], b["n_local"]) == (19, 18) and a["n_samples"] == b["n_samples"] == N
    for key in a:
        if key != "n_local":
            assert str(a[key]) == str(b[key]), key  # bit-identical, so control flow agrees


def test_products_gradient_and_loss_equal_one_process(two_ranks, one_process):
    got = two_ranks[0]
    for key in ("matvec", "matmat", "gradient"):
        torch.testing.assert_close(got[key], one_process[key], rtol=1e-12, atol=1e-14)
    assert got["loss"] == pytest.approx(one_process["loss"], rel=1e-13)


def test_top_bottom_trace_and_density_equal_one_process(two_ranks, one_process):
    got = two_ranks[0]
    torch.testing.assert_close(got["top"], one_process["top"], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(got["bottom"], one_process["bottom"], rtol=1e-9, atol=1e-11)
    assert got["trace"] == pytest.approx(one_process["trace"], rel=1e-10)
    torch.testing.assert_close(got["density"], one_process["density"], rtol=1e-6, atol=1e-9)
    s, r = got["spectrum"], one_process["spectrum"]
    assert s["top"] == pytest.approx(r["top"], rel=1e-9, abs=1e-11)
    assert s["bottom"] == pytest.approx(r["bottom"], rel=1e-9, abs=1e-11)
    assert s["trace"] == pytest.approx(r["trace"], rel=1e-9)
    assert s["top_certified"] == r["top_certified"] and s["bottom_certified"] == r["bottom_certified"]
    assert s["weights"] == pytest.approx(r["weights"], rel=1e-6, abs=1e-12)
    assert got["matvecs"] == one_process["matvecs"]


def _diverging_worker(rank: int, world: int, out: str) -> None:
    model, loss_fn, x, y = tiny_problem()
    shard = Shard.current()
    xs, ys = shard.split(x, y)
    op = AllReduced(HessianOperator(model, loss_fn, (xs, ys)), len(xs) / N, shard)
    v = torch.ones(op.dim, dtype=torch.float64) * (1 + rank)  # the ranks disagree on v
    try:
        op.matvec(v)
        message = ""
    except RuntimeError as e:
        message = str(e)
    with open(f"{out}/rank{rank}.txt", "w") as f:
        f.write(message)


def test_ranks_that_multiply_different_vectors_all_raise(tmp_path):
    spawn(_diverging_worker, 2, str(tmp_path))
    for r in range(2):
        assert "different vectors" in (tmp_path / f"rank{r}.txt").read_text()
