"""The definitions section of REPORT.md: how each number is computed.

The general and training paragraphs live here; each probe's paragraph and its scalars' one-line
definitions come from the probe's own ``INFO`` (:class:`losslands.probes.base.ProbeInfo`).
"""

from __future__ import annotations

from losslands.probes.base import available_probes, load_probe

GENERAL = """\
## Definitions

Probes use the trained float32 weights with the model in eval mode (fixed BatchNorm
statistics), except where a section says otherwise (perturbation losses in float64; path and
subspace training use batch statistics and recompute them at evaluated points). "Probe subset" = a fixed, unaugmented subset of the training split drawn with
`data.probe_seed`: the same images for every optimizer and seed. Tables give mean ± sample std
over seeds (n = number of seeds with a result).

- **Training**: train accuracy/loss are averages over the last epoch's augmented batches; val
  accuracy/loss on the (sub)set test split, unaugmented (CIFAR-10 has no separate validation
  split; nothing is tuned on it, so "val" here is test accuracy). *Epochs to 90%*: first epoch whose val
  accuracy reaches 90% of the final val accuracy.
"""


def definitions() -> str:
    """The definitions section: the general paragraphs, then each probe's paragraph (shared
    paragraphs once) and its scalars with their units."""
    infos = sorted(((load_probe(n).INFO, n) for n in available_probes()),
                   key=lambda t: (t[0].order, t[1]))
    seen: set[str] = set()
    parts = [GENERAL]
    for info, _ in infos:
        if info.definition and info.definition not in seen:
            seen.add(info.definition)
            parts.append(f"- {info.definition}\n")
    parts.append("\n### Scalars\n")
    for info, name in infos:
        rows = [f"`{key}` ({s.unit}): {s.definition}" if s.unit else f"`{key}`: {s.definition}"
                for key, s in info.scalars.items()]
        parts.append(f"- `probe={name}`: " + "; ".join(rows) + "\n")
    return "".join(parts)
