"""Parity check of the video and audio towers against outputs of the original backbone modules.

A tower fixture folder holds `towers.pt` (see `shared/fixtures/towers/README.md`): for each tower, the
original's constructor settings, the original names and shapes of its learned tensors (whose values are
regenerated here with a salted recipe), the stored buffers (BatchNorm statistics and, for audio, the STFT
kernels and mel matrix) and input/output cases. [`run_tower_parity`] rebuilds every tower from those, loads
the weights through the port's key maps, and compares the outputs with the README's tolerance
([`tower_tolerance`]). `python -m modeling_unival.parity FOLDER` runs it.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch
from torch import nn

from .conversion import (
    audio_config_from_original,
    convert_original_audio_tower_key,
    convert_original_tower_state_dict,
    convert_original_video_tower_key,
    video_config_from_original,
)
from .towers import UnivalAudioTower, UnivalLogMelSpectrogram, UnivalVideoTower


# The README's tolerances: "atol 1e-3 for audio and 2e-3 for video (or a relative bound,
# |diff| <= 1e-4 * max|output| + 1e-3)".
TOWER_ATOL = {"audio": 1e-3, "video": 2e-3}
RELATIVE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE_FLOOR = 1e-3
# Largest allowed difference between recomputed front-end buffers and stored ones (beyond float16 rounding).
FRONT_END_ATOL = 1e-4


def tower_tolerance(kind: str, max_abs_output: float) -> float:
    """The largest max-abs difference a tower case may have, for a reference output whose largest magnitude is
    `max_abs_output`. A case passes under the absolute bound of its kind or under the relative one, whichever is
    looser: float32 round-off grows with the outputs' magnitude (a Cnn14 feature map can reach hundreds), so a
    fixed atol would fail a faithful port on large outputs."""
    return max(TOWER_ATOL[kind], RELATIVE_TOLERANCE * max_abs_output + RELATIVE_TOLERANCE_FLOOR)


def recipe_tensor(salt: str, key: str, shape) -> torch.Tensor:
    """The fixture's deterministic value for the learned tensor `key` (original naming) of shape `shape`."""
    shape = tuple(int(size) for size in shape)
    generator = torch.Generator().manual_seed(zlib.crc32(f"{salt}:{key}".encode()))
    if len(shape) == 1:  # BatchNorm affine parameters
        if key.endswith("weight"):
            tensor = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            tensor = 0.1 * torch.randn(shape, generator=generator)
    else:  # convolution weights
        tensor = torch.randn(shape, generator=generator) * math.sqrt(2.0 / math.prod(shape[1:]))
    return tensor.half().float()


def _tower_kind(name: str, settings: dict) -> str:
    if "model_name" in settings:
        return "audio"
    if "layers" in settings:
        return "video"
    raise ValueError(f"tower fixture {name!r}: cannot tell audio from video by its config {sorted(settings)}")


def _load_tower(kind: str, entry: dict, salt: str) -> nn.Module:
    """The port's tower for a fixture entry, with the recipe's weights and the stored buffers loaded through the key
    map, in eval mode and float32. Raises `ValueError` when the converted state dict does not fit strictly."""
    if kind == "audio":
        tower = UnivalAudioTower(audio_config_from_original(entry["config"]))
        convert_key = convert_original_audio_tower_key
    else:
        tower = UnivalVideoTower(video_config_from_original(entry["config"]))
        convert_key = convert_original_video_tower_key
    original = {key: recipe_tensor(salt, key, shape) for key, shape in entry["recipe_keys"]}
    for key, value in entry["buffers"].items():
        original[key] = value.float() if value.is_floating_point() else value
    missing, unexpected = tower.load_state_dict(convert_original_tower_state_dict(original, convert_key), strict=False)
    if missing or unexpected:
        raise ValueError(f"weights did not load: missing {list(missing)}, unexpected {list(unexpected)}")
    return tower.eval().float()


@torch.no_grad()
def _check_case(label: str, tower: nn.Module, kind: str, case: dict) -> tuple[bool, str]:
    expected = case["output"].float()
    output = tower(case["input"].float())
    if output.shape != expected.shape:
        return False, f"{label}: FAIL shape {tuple(output.shape)} != expected {tuple(expected.shape)}"
    reference_max = expected.abs().max().item()
    tolerance = tower_tolerance(kind, reference_max)
    diff = (output - expected).abs().max().item()
    ok = diff <= tolerance
    return ok, (
        f"{label}: {'ok' if ok else 'FAIL'} max abs diff {diff:.2e} "
        f"(tol {tolerance:.1e}, max |ref| {reference_max:.2f}, shape {tuple(expected.shape)})"
    )


def _front_end_excess(tower: UnivalAudioTower) -> tuple[float, float]:
    """(largest difference, largest difference beyond float16 rounding) between the front-end buffers that
    `reset_front_end()` would compute and the loaded ones. Float16-rounded stored buffers (the parity fixtures)
    may differ by their rounding error, at most 2^-11 of their magnitude."""
    fresh = UnivalLogMelSpectrogram(tower.config).compute_buffers()
    worst, excess = 0.0, 0.0
    for name, value in fresh.items():
        loaded = getattr(tower.front_end, name).float()
        diff = (value - loaded).abs()
        worst = max(worst, diff.max().item())
        rounding = 2.0**-11 * loaded.abs() if torch.equal(loaded, loaded.half().float()) else 0.0
        excess = max(excess, (diff - rounding).max().item())
    return worst, excess


def _check_front_end(label: str, tower: UnivalAudioTower) -> tuple[bool, str]:
    worst, excess = _front_end_excess(tower)
    ok = excess <= FRONT_END_ATOL
    return ok, (
        f"{label}: {'ok' if ok else 'FAIL'} max abs diff {worst:.2e} vs stored buffers "
        f"(tol {FRONT_END_ATOL:.0e} beyond float16 rounding)"
    )


def _check_tower(name: str, entry: dict, salt: str) -> list[tuple[bool, str]]:
    """(passed, report line) for every case of one tower entry, and for audio towers its front-end buffers."""
    kind = _tower_kind(name, entry["config"])
    labels = [f"tower {name} / {case_name}" for case_name in entry["cases"]]
    front_end_label = f"tower {name} / front end recomputed by reset_front_end()"
    try:
        tower = _load_tower(kind, entry, salt)
    except ValueError as error:  # every check of the tower fails, for the one reason
        every_check = labels + ([front_end_label] if kind == "audio" else [])
        return [(False, f"{label}: FAIL {error}") for label in every_check]
    results = [_check_case(label, tower, kind, case) for label, case in zip(labels, entry["cases"].values())]
    if kind == "audio":
        results.append(_check_front_end(front_end_label, tower))
    return results


def run_tower_parity(folder: str | Path, verbose: bool = True) -> tuple[int, int]:
    """
    Check every tower in `folder/towers.pt` against the original's outputs (float32, eval mode).

    Prints one line per (tower, case) with the max abs difference and the tolerance, and for audio towers one
    line comparing the front-end buffers that `reset_front_end()` would compute with the stored ones. A tower
    whose converted state dict does not load strictly fails all its checks.

    Returns:
        `(number of checks that passed, number of checks)`.
    """
    fixture = torch.load(Path(folder) / "towers.pt", map_location="cpu", weights_only=True)
    salt = fixture["_meta"]["salt"]
    passed = total = 0
    for name, entry in fixture.items():
        if name == "_meta":
            continue
        for ok, line in _check_tower(name, entry, salt):
            passed += ok
            total += 1
            if verbose:
                print(line, flush=True)
    return passed, total


__all__ = ["recipe_tensor", "run_tower_parity", "tower_tolerance"]
