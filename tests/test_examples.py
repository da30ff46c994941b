"""The learnability probes of examples/ run end to end (a few steps; their findings are in the README)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.parametrize("probe, options, expected", [
    ("colour", [], "3-stage image tower (none layout): accuracy"),
    ("bind", [], "accuracy"),
    ("bind", ["--preset-image-tower", "--init-std", "0.02"], "init_std 0.02, 4-stage image tower (none layout)"),
    ("match", ["--layout", "prev_output"], "accuracy"),
    ("bind", ["--layout", "prev_output"], "(prev_output layout): accuracy"),
    ("colour+match", [], "accuracy"),
    ("compare", [], "accuracy"),
    ("locate", [], "mean coordinate error"),
])
def test_probe_runs(probe, options, expected):
    command = [sys.executable, str(REPO_ROOT / "examples" / "probe_learnability.py"), "--probe", probe, "--steps", "2",
               "--batch-size", "4", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{probe}, 2 steps" in result.stdout and expected in result.stdout
