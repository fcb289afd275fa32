"""reuse_freed_memory: large tensors allocated again after a free stop faulting in new pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHILD = """
import resource, sys, torch
from losslands.allocator import reuse_freed_memory
if sys.argv[1] == "reuse" and not reuse_freed_memory():
    print("unsupported"); sys.exit()
for _ in range(8):  # glibc's bins settle over the first few frees (5 here), then reuse
    torch.ones(10 * 2**20)  # 40 MiB, above glibc's largest mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(10 * 2**20)  # allocated, written, freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_reused_memory_takes_no_page_faults_where_the_default_takes_one_per_page():
    reused = _faults("reuse")
    if reused == "unsupported":
        pytest.skip("not glibc: reuse_freed_memory is a no-op here")
    default = int(_faults("default"))
    if default < 20 * 10:
        # huge pages, a preloaded allocator or MALLOC_* settings: nothing here to compare against
        pytest.skip(f"the default allocation took only {default} page faults here")
    # with 4 KiB pages the default maps each 40 MiB afresh: 20 x 10,240 faults; reuse: ~0
    assert int(reused) < default / 100
