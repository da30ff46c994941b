"""The CPU allocator setting of the training scripts (training/allocator.py): set by their command lines only,
and only unless turned off."""

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


def test_the_library_leaves_the_allocator_alone_and_the_command_lines_can_too():
    # In a fresh interpreter: importing every training module, and parsing a command line, call no mallopt; the
    # command lines' process settings do, unless --keep_freed_memory false.
    code = (
        "import training.allocator as allocator\n"
        "import training.cli, training.finetune, training.finetuning, training.pretrain, training.stages\n"
        "from training.cli import configure_process, parse_command_line\n"
        "from training.pretrain import PretrainArguments\n"
        "assert allocator.keep_freed_memory.cache_info().currsize == 0\n"
        "_, off, _ = parse_command_line(['--keep_freed_memory', 'false'], PretrainArguments, 'out', '')\n"
        "_, default, _ = parse_command_line([], PretrainArguments, 'out', '')\n"
        "assert not off.keep_freed_memory and default.keep_freed_memory\n"
        "configure_process(off)\n"
        "assert allocator.keep_freed_memory.cache_info().currsize == 0\n"
        "configure_process(default)\n"
        "assert allocator.keep_freed_memory.cache_info().currsize == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO_ROOT))
