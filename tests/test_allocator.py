"""The CPU allocator setting of the training scripts (training/allocator.py)."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_sets_the_thresholds_once():
    # In a fresh interpreter: the thresholds stay set for the life of a process.
    code = (
        "from training.allocator import keep_freed_memory\n"
        "import torch\n"
        "assert keep_freed_memory() is True\n"
        "assert keep_freed_memory() is True  # cached: mallopt runs once\n"
        "assert keep_freed_memory.cache_info().misses == 1\n"
        "x = torch.ones(59457, 128); del x; y = torch.zeros(59457, 128)\n"
        "assert float(y.sum()) == 0.0  # memory reused from the heap is still zeroed where asked\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO_ROOT))
