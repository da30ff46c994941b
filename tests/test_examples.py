"""The learnability probes of examples/ run end to end (a few steps; their findings are in the README)."""

import ast
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


def _world_probe(tmp_path, *options):
    command = [sys.executable, str(REPO_ROOT / "examples" / "probe_world.py"), "--world", str(tmp_path / "world"),
               "--num-examples", "800", "--steps", "2", "--max-test-per-task", "3", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))


def _training_rows(stdout: str) -> dict[str, int]:
    """The probe's first line: training rows per task."""
    return ast.literal_eval(next(line for line in stdout.splitlines() if line.startswith("{")))


def _scores(stdout: str) -> dict[str, dict]:
    """The probe's last lines: `task {scores}` for every task trained."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("probe_world: ")) + 1
    return {task: json.loads(scores) for task, scores in (line.split(" ", 1) for line in lines[start:])}


def test_world_probe_runs(tmp_path):
    result = _world_probe(tmp_path, "--tasks", "caption,image_text_matching",
                          "--prompt-types", "image_text_matching=prev_output", "--save", str(tmp_path / "model"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "caption,image_text_matching, 2 steps" in result.stdout
    assert "layouts {'image_text_matching': 'prev_output'}, from scratch, all levels" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("image_text_matching "))
    scores = json.loads(line.split(" ", 1)[1])
    assert scores["examples"] >= 1 and sum(n for n, _ in scores["by_kind"].values()) == scores["examples"]
    all_levels = _training_rows(result.stdout)["image_text_matching"]
    first = _scores(result.stdout)

    # A second probe starts from the saved model, on the simplest scenes only. With no training step it scores
    # exactly as the first one did after its last step: the saved weights are the ones it starts from.
    result = _world_probe(tmp_path, "--tasks", "caption,image_text_matching",
                          "--prompt-types", "image_text_matching=prev_output", "--init", str(tmp_path / "model"),
                          "--levels", "1", "--steps", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"from {tmp_path / 'model'}, levels [1]" in result.stdout
    assert 0 < _training_rows(result.stdout)["image_text_matching"] < all_levels
    assert _scores(result.stdout) == first
    # The saved model's shape is kept: asking for another one is an error, not silently ignored.
    result = _world_probe(tmp_path, "--init", str(tmp_path / "model"), "--d-model", "64")
    assert result.returncode != 0 and "--init takes the saved model's shape" in result.stderr
