"""External weights: probe a model trained elsewhere (``weights=PATH``) instead of training it.

A weights file may be a bare state dict, a training script's checkpoint holding one under
``model``, ``state_dict``, ``model_state_dict`` or ``net`` (beside optimizer state, configs,
counters and NumPy RNG states), or a Lightning ``.ckpt`` (whose keys carry the LightningModule's
attribute, e.g. ``model.``). Files are read by :func:`losslands.safe_load.load_torch`, which runs
no code from them unless the user trusts the file. Nothing here imports Hydra or Lightning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from losslands.safe_load import load_torch
from losslands.training.cache import file_sha256

log = logging.getLogger(__name__)

# Where checkpoints keep the model's state dict, in the order they are looked up.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")
# Top-level counters of a checkpoint worth recording (which epoch the weights are from).
_COUNTERS = ("epoch", "global_step", "step", "iteration")
# How many names of each kind a mismatch error lists.
_SHOWN = 5
TRUST_OPT_IN = ("if you trust the file, load it anyway with weights_trust=true (torch.load with "
                "weights_only=False, which runs whatever the pickle calls)")


class WeightsError(ValueError):
    """A weights file that holds no usable state dict for the configured model."""


@dataclass
class LoadedWeights:
    """Where loaded weights came from.

    Attributes:
        path: the file, absolute.
        sha256: the file's content hash.
        entry: the checkpoint key the state dict was under ("" for a bare state dict).
        prefix: the key prefix stripped to match the model ("" if none).
        ignored: state-dict keys outside ``prefix`` that were not loaded.
        counters: the checkpoint's top-level counters (``epoch``, ``global_step``, ...).
    """

    path: str
    sha256: str
    entry: str = ""
    prefix: str = ""
    ignored: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def find_state_dict(obj: Any, path: str | os.PathLike = "") -> tuple[dict[str, Tensor], str]:
    """The model state dict inside a loaded file and the key it was under ("" for a bare one).

    Raises:
        WeightsError: none of the accepted layouts; the message lists the top-level keys.
    """
    if isinstance(obj, nn.Module):  # a pickled module (only loads when trusted)
        return dict(obj.state_dict()), "<module>"
    if _is_state_dict(obj):
        return dict(obj), ""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            value = obj.get(key)
            if isinstance(value, nn.Module):
                return dict(value.state_dict()), key
            if _is_state_dict(value):
                return dict(value), key
        found = ", ".join(repr(k) for k in list(obj)[:12]) or "none"
        what = f"a dict with keys {found}"
    else:
        what = f"a {type(obj).__name__}"
    raise WeightsError(
        f"no state dict in {path}: it holds {what}. Expected a state dict (parameter name -> "
        f"tensor), or a dict holding one under {', '.join(repr(k) for k in STATE_DICT_KEYS)}"
    )


def _prefixes(keys: list[str]) -> set[str]:
    """Every dotted prefix (``"a."``, ``"a.b."``, ...) of the keys, the empty one included."""
    out = {""}
    for k in keys:
        parts = k.split(".")
        out.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    return out


def _common_prefix(keys: list[str]) -> str:
    """The longest dotted prefix all keys share ("" if none)."""
    parts = [k.split(".")[:-1] for k in keys]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "".join(f"{p}." for p in common)


@dataclass
class _Match:
    prefix: str
    missing: list[str]
    unexpected: list[str]
    outside: list[str]

    @property
    def exact(self) -> bool:
        return not self.missing and not self.unexpected

    @property
    def errors(self) -> int:
        return len(self.missing) + len(self.unexpected)


def _match(keys: list[str], expected: set[str], prefix: str) -> _Match:
    inside = {k[len(prefix):] for k in keys if k.startswith(prefix)}
    return _Match(prefix, sorted(expected - inside), sorted(inside - expected),
                  sorted(k for k in keys if not k.startswith(prefix)))


def _listing(names: list[str]) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def match_state_dict(
    model: nn.Module, state: Mapping[str, Tensor], *, source: str = "the file",
    expected_model: str = "",
) -> tuple[dict[str, Tensor], _Match]:
    """``state`` renamed to ``model``'s keys, stripping the one key prefix that explains a
    mismatch (``model.`` of a Lightning module, ``module.`` of DataParallel, ``_orig_mod.`` of
    ``torch.compile``, ...); keys outside that prefix are left out.

    Raises:
        WeightsError: keys or shapes do not match; one message lists the first missing,
            unexpected and mis-shaped entries and the model config that was expected.
    """
    expected = model.state_dict()
    keys = list(state)
    best = _match(keys, set(expected), "")
    several: list[str] = []
    if not best.exact:  # look for a prefix only when the names differ
        exact = [m for p in _prefixes(keys) if (m := _match(keys, set(expected), p)).exact]
        # a prefix counts when it also holds most of the file, so a checkpoint holding two
        # copies (e.g. model. and ema.) is not resolved by a guess
        fits = [m for m in exact if len(m.outside) < len(keys) - len(m.outside)]
        several = sorted(m.prefix for m in exact)
        if fits:
            best = min(fits, key=lambda m: (len(m.outside), len(m.prefix)))
        elif common := _common_prefix(keys):
            # report the mismatch below a prefix all keys share (a .ckpt's model.) if it helps
            below = _match(keys, set(expected), common)
            best = below if below.errors < best.errors else best
    stripped = f" (after stripping the key prefix {best.prefix!r})" if best.prefix else ""
    where = source + stripped
    model_hint = f" The model was built from model={expected_model}." if expected_model else ""
    if not best.exact:
        parts = []
        if best.missing:
            parts.append(f"missing from {where}: {_listing(best.missing)}")
        if best.unexpected:
            parts.append(f"unexpected in {where}: {_listing(best.unexpected)}")
        if len(several) > 1:
            parts.append(f"the file holds the model under several prefixes ({', '.join(several)}) "
                         "and none is the obvious one")
        raise WeightsError(
            "the weights do not fit the configured model: " + "; ".join(parts) + "." + model_hint
            + " Set model= (or model._target_= and its options) to the architecture the weights "
            "were saved from."
        )
    renamed = {k[len(best.prefix):]: v for k, v in state.items() if k.startswith(best.prefix)}
    shapes = [f"{k} {tuple(renamed[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if renamed[k].shape != v.shape]
    if shapes:
        raise WeightsError(
            f"the weights do not fit the configured model: shapes differ (file vs model) for "
            f"{_listing(shapes)}.{model_hint} Check the model's options (e.g. num_classes, width)."
        )
    return renamed, best


def load_weights(model: nn.Module, path: str | os.PathLike, *, trust: bool = False,
                 expected_model: str = "") -> LoadedWeights:
    """Load the weights file ``path`` into ``model`` (in place) and say where they came from.

    Args:
        model: the configured architecture.
        path: a state dict, a checkpoint dict holding one, or a Lightning ``.ckpt``.
        trust: load with ``weights_only=False`` (see :func:`losslands.safe_load.load_torch`).
        expected_model: the model config, for error messages.

    Raises:
        FileNotFoundError: no such file.
        losslands.safe_load.UnsafeFileError: the file would import a non-allowlisted global.
        WeightsError: no state dict for ``model`` in the file (the message says why).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"weights={str(path)!r}: no such file")
    obj = load_torch(path, trust=trust, opt_in=TRUST_OPT_IN)
    state, entry = find_state_dict(obj, path)
    source = str(path) + (f"[{entry!r}]" if entry else "")
    renamed, match = match_state_dict(model, state, source=source, expected_model=expected_model)
    if match.prefix:
        log.info("weights %s: stripped the key prefix %r to match the model", source, match.prefix)
    if match.outside:
        log.info("weights %s: left out %d entries outside %r: %s", source, len(match.outside),
                 match.prefix, _listing(match.outside))
    model.load_state_dict(renamed, strict=True)
    counters = {}
    if isinstance(obj, Mapping):
        counters = {k: int(obj[k]) for k in _COUNTERS
                    if isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool)}
    return LoadedWeights(str(path), file_sha256(path), entry, match.prefix, match.outside, counters)


def describe_model(model_cfg: Mapping[str, Any]) -> str:
    """A model config as one line, e.g. ``{_target_: ...SmallCNN, num_classes: 10}``."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in model_cfg.items() if k != "name") + "}"


