"""Keep freed tensor memory in the process on CPU training runs (glibc only).

glibc's `malloc` serves large blocks (above a threshold that starts at 128 KiB and adapts up to 32 MiB) with fresh
`mmap`ed pages and unmaps them when they are freed, so every CPU training step page-faults its large tensors in
again: the `vocab_size x d_model` gradients of the tied embedding (59,457 x 128 floats, 30 MB, twice per step), the
logits at the supervised positions, the image tower's activations. Measured on the embedded recipe's model (96 px,
batch 16, `benchmarks/bench_train_step.py --allocator`): 160 ms per step with glibc's defaults, 130 ms with large
blocks kept in the heap; 600-step runs with the defaults spent 1.5 to 3.4 minutes of system time in page faults.

PyTorch's CPU performance guide answers the same problem by preloading jemalloc or tcmalloc (`LD_PRELOAD`); setting
glibc's own thresholds needs nothing installed and no restart. Written by hand because no library exposes
`mallopt`.

Nothing here runs on import, and the library never calls it: the training command lines do, before training
(`training.cli.configure_process`; `--keep_freed_memory false` keeps glibc's defaults), and so may any script that
trains on CPU. The thresholds then hold for the rest of the process: keeping up to `KEEP_BYTES` of freed memory is
what makes the steps faster, and what a process that goes on to do other work may not want.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

import torch

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks below this size come from the heap, and the heap keeps up to this much free memory instead of returning it.
KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raises glibc's mmap and trim thresholds to `KEEP_BYTES` (once per process). Returns whether they were set:
    False where CUDA is available (the training tensors live on the GPU), off Linux or with another C library,
    where nothing changes."""
    if torch.cuda.is_available() or not sys.platform.startswith("linux"):
        return False
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # The trim threshold first: setting either one turns off glibc's adaptive mmap threshold.
    done = bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES))
    if not done:
        logger.warning("mallopt refused the allocator thresholds; CPU training steps keep paying for page faults")
    return done


__all__ = ["keep_freed_memory"]
