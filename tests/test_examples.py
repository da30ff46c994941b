"""The learnability probes of examples/ run end to end (a few steps; their findings are in the README)."""

import json
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


def test_world_probe_runs(tmp_path):
    command = [sys.executable, str(REPO_ROOT / "examples" / "probe_world.py"), "--world", str(tmp_path / "world"),
               "--num-examples", "800", "--tasks", "caption,image_text_matching", "--steps", "2",
               "--prompt-types", "image_text_matching=prev_output", "--max-test-per-task", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "caption,image_text_matching, 2 steps" in result.stdout
    assert "layouts {'image_text_matching': 'prev_output'}" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("image_text_matching "))
    scores = json.loads(line.split(" ", 1)[1])
    assert scores["examples"] >= 1 and sum(n for n, _ in scores["by_kind"].values()) == scores["examples"]
