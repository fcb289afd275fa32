"""Curvature measured during training, on a fixed probe subset, without perturbing the run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from losslands.curvature import (
    HessianOperator,
    eval_mode,
    gradient_noise,
    hutchinson_trace,
    lanczos,
)


class CurvatureCallback(Callback):
    """Cheap curvature probes at the end of every ``every_n_epochs``-th training epoch.

    On the fixed, unaugmented probe subset ``trainer.datamodule.probe_subset(n)`` (the same
    images for every optimizer and seed), with the network in eval mode:

    - ``lambda_max``: top Hessian eigenvalue of the mean loss from ``lanczos_iters`` Lanczos
      steps (Lanczos 1950; a few steps already resolve an isolated top eigenvalue);
    - ``trace``: Hutchinson's estimate (Hutchinson 1989) from ``hutchinson_samples`` probes,
      with its standard error;
    - ``noise_ratio``: ``lambda_C / lambda_H`` of :func:`losslands.curvature.gradient_noise` on
      the first ``noise_samples`` images of the subset (its ``lambda_H`` is on those images).

    Values go to the loggers as ``curvature/lambda_max``, ``curvature/trace`` and
    ``curvature/noise_ratio`` and to ``pl_module.probe_history`` (a list of dicts with
    ``epoch``), which the training summary copies; the callback state keeps the history in
    checkpoints, so a resumed run continues it.

    The measurement leaves training untouched: every random draw uses seeded private
    generators and the global CPU/CUDA RNG state is forked anyway, each submodule's train/eval
    flag is restored, and ``.grad`` of every parameter is left as it was (the probes use
    ``torch.autograd.grad``/``torch.func``, never ``backward``). The loss is the module's
    ``loss_fn`` (default cross-entropy) on its ``model`` attribute (default: the module).

    Args:
        every_n_epochs: Measure after epochs ``every_n_epochs, 2 * every_n_epochs, ...``.
        n_samples: Probe-subset size for ``lambda_max`` and the trace.
        lanczos_iters: Lanczos steps (no convergence warning: few steps are the point).
        hutchinson_samples: Rademacher probes of the trace (>= 2).
        noise_samples: Images for the noise ratio (<= ``n_samples``; 0 disables it).
        seed: Seed of the Lanczos start vector and the trace probes.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int = 512,
        lanczos_iters: int = 20,
        hutchinson_samples: int = 10,
        noise_samples: int = 256,
        seed: int = 0,
    ) -> None:
        for key, value, low in (
            ("every_n_epochs", every_n_epochs, 1),
            ("n_samples", n_samples, 1),
            ("lanczos_iters", lanczos_iters, 2),
            ("hutchinson_samples", hutchinson_samples, 2),
            ("noise_samples", noise_samples, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"callbacks.curvature.{key}={value!r} must be an integer >= {low}")
        if noise_samples == 1 or noise_samples > n_samples:
            raise ValueError(
                f"callbacks.curvature.noise_samples={noise_samples} must be 0 (off) "
                f"or in 2..n_samples={n_samples}"
            )
        self.every_n_epochs, self.n_samples = every_n_epochs, n_samples
        self.lanczos_iters, self.hutchinson_samples = lanczos_iters, hutchinson_samples
        self.noise_samples, self.seed = noise_samples, seed
        self._history: list[dict[str, Any]] | None = None
        self._restored: list[dict[str, Any]] | None = None

    # -- history, shared with the module and kept in checkpoints ----------------------------------

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        available = trainer.datamodule.num_train
        if self.n_samples > available:
            raise ValueError(
                f"callbacks.curvature.n_samples={self.n_samples} exceeds the {available} training "
                f"images: lower it (or raise data.train_subset)"
            )
        history = getattr(pl_module, "probe_history", None)
        if history is None:
            history = []
            pl_module.probe_history = history
        if self._restored is not None:  # checkpoint state loaded before fit start
            history[:] = self._restored
            self._restored = None
        self._history = history

    def state_dict(self) -> dict[str, Any]:
        return {
            "probe_history": list(
                self._history if self._history is not None else self._restored or []
            )
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restored = [dict(h) for h in state_dict.get("probe_history", [])]
        if self._history is not None:
            self._history[:] = restored  # in place: the module holds the same list
        else:
            self._restored = restored

    # -- measurement ------------------------------------------------------------------------------

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs:
            return
        if self._history is None:
            self.on_fit_start(trainer, pl_module)
        start = time.perf_counter()
        x, y = trainer.datamodule.probe_subset(self.n_samples)
        net = getattr(pl_module, "model", pl_module)
        loss_fn = getattr(pl_module, "loss_fn", None) or nn.CrossEntropyLoss()
        with _untouched(net, pl_module.device):
            values = self.measure(net, loss_fn, x.to(pl_module.device), y.to(pl_module.device))
        entry = {"epoch": epoch, **values, "seconds": time.perf_counter() - start}
        self._history.append(entry)
        for key in ("lambda_max", "trace", "noise_ratio"):
            if key in values:
                pl_module.log(f"curvature/{key}", values[key], on_step=False, on_epoch=True)

    def measure(
        self, net: nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, float]:
        """The probes on ``(x, y)`` at the network's current weights."""
        op = HessianOperator(net, loss_fn, (x, y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # few Lanczos steps by design
            eig = lanczos(op, 1, max_iters=self.lanczos_iters, seed=self.seed, true_residuals=False)
        trace = hutchinson_trace(op, n_samples=self.hutchinson_samples, seed=self.seed)
        out = {
            "lambda_max": float(eig.top[0]),
            "lanczos_residual": float(eig.top_residuals[0]),
            "trace": trace.trace,
            "trace_stderr": trace.stderr,
        }
        if self.noise_samples:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                gn = gradient_noise(
                    net,
                    loss_fn,
                    x[: self.noise_samples],
                    y[: self.noise_samples],
                    lanczos_kwargs={"max_iters": self.lanczos_iters, "seed": self.seed},
                )
            out.update(noise_ratio=gn.ratio, lambda_c=gn.lambda_c, lambda_h=gn.lambda_h)
        return out


@contextmanager
def _untouched(net: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, forked RNG streams, gradients on, and every ``.grad`` restored afterwards."""
    grads = [(p, p.grad) for p in net.parameters()]
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), eval_mode(net), torch.enable_grad():
            yield
    finally:
        for p, g in grads:
            p.grad = g
