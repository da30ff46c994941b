"""Parity check of the video and audio towers against outputs of the original backbone modules.

A tower fixture folder holds `towers.pt` (see `shared/fixtures/towers/README.md`): for each tower, the
original's constructor settings, the original names and shapes of its learned tensors (whose values are
regenerated here with a salted recipe), the stored buffers (BatchNorm statistics and, for audio, the STFT
kernels and mel matrix) and input/output cases. [`run_tower_parity`] rebuilds every tower from those, loads
the weights through the port's key maps, and compares the outputs.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

from .configuration_unival import PANN_PRESETS, UnivalAudioConfig, UnivalVideoConfig
from .towers import (
    UnivalAudioTower,
    UnivalLogMelSpectrogram,
    UnivalVideoTower,
    convert_original_audio_tower_key,
    convert_original_video_tower_key,
)


AUDIO_ATOL = 1e-3
VIDEO_ATOL = 2e-3
# Video may also pass on a bound relative to the output's magnitude (the README's alternative).
VIDEO_RTOL_OF_MAX = 1e-4
VIDEO_RTOL_BASE = 1e-3
# Largest allowed difference between recomputed front-end buffers and stored ones (beyond float16 rounding).
FRONT_END_ATOL = 1e-4


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


def audio_config_from_original(settings: dict) -> UnivalAudioConfig:
    """Build a [`UnivalAudioConfig`] from the original PANN constructor settings (`model_name` Cnn6/10/14, ...)."""
    model_name = str(settings["model_name"])
    preset = PANN_PRESETS.get(model_name.lower())
    if preset is None:
        raise ValueError(f"unknown PANN variant {model_name!r}; supported: {sorted(PANN_PRESETS)}")
    return UnivalAudioConfig(
        **preset,
        sample_rate=int(settings["sample_rate"]),
        n_fft=int(settings["window_size"]),
        hop_length=int(settings["hop_size"]),
        num_mel_bins=int(settings["mel_bins"]),
        f_min=float(settings["fmin"]),
        f_max=float(settings["fmax"]),
    )


def video_config_from_original(settings: dict) -> UnivalVideoConfig:
    """Build a [`UnivalVideoConfig`] from the original ResNeXt3D constructor settings (`layers`, `cardinality`)."""
    depths = [int(depth) for depth in settings["layers"]]
    shortcut_type = settings.get("shortcut_type", "B")
    if shortcut_type != "B":
        raise ValueError(f"only the 3D ResNeXt with shortcut type 'B' is supported, got {shortcut_type!r}")
    # The original's variants: three stages (`resnext50`, 1024-d) or four (`all_resnext101`, 2048-d).
    hidden_sizes = {3: [256, 512, 1024], 4: [256, 512, 1024, 2048]}.get(len(depths))
    if hidden_sizes is None:
        raise ValueError(f"unknown 3D ResNeXt variant with layers {depths}: expected three or four stages")
    return UnivalVideoConfig(depths=depths, hidden_sizes=hidden_sizes, cardinality=int(settings.get("cardinality", 32)))


def _front_end_check(tower: UnivalAudioTower, stored: dict[str, torch.Tensor]) -> tuple[bool, float]:
    """Compare freshly computed front-end buffers with the loaded ones. Stored buffers that are float16-rounded
    (the parity fixtures) may differ by their rounding error, at most 2^-11 of their magnitude."""
    fresh = UnivalLogMelSpectrogram(tower.config).compute_buffers()
    worst, excess = 0.0, 0.0
    for name, value in fresh.items():
        loaded = stored[name].float()
        diff = (value - loaded).abs()
        worst = max(worst, diff.max().item())
        rounding = 2.0**-11 * loaded.abs() if torch.equal(loaded, loaded.half().float()) else 0.0
        excess = max(excess, (diff - rounding).max().item())
    return excess <= FRONT_END_ATOL, worst


def run_tower_parity(folder: str | Path, verbose: bool = True) -> tuple[int, int]:
    """
    Check every tower in `folder/towers.pt` against the original's outputs (float32, eval mode).

    Prints one line per (tower, case) with the max abs difference and the tolerance, and for audio towers one
    line comparing the front-end buffers that `reset_front_end()` would compute with the stored ones. A tower
    whose converted state dict does not load strictly fails all its cases.

    Returns:
        `(number of checks that passed, number of checks)`.
    """
    path = Path(folder) / "towers.pt"
    fixture = torch.load(path, map_location="cpu", weights_only=True)
    salt = fixture["_meta"]["salt"]

    def report(line: str) -> None:
        if verbose:
            print(line, flush=True)

    passed = total = 0
    for name, entry in fixture.items():
        if name == "_meta":
            continue
        settings = entry["config"]
        kind = _tower_kind(name, settings)
        if kind == "audio":
            tower = UnivalAudioTower(audio_config_from_original(settings))
            convert_key = convert_original_audio_tower_key
        else:
            tower = UnivalVideoTower(video_config_from_original(settings))
            convert_key = convert_original_video_tower_key

        original = {key: recipe_tensor(salt, key, shape) for key, shape in entry["recipe_keys"]}
        for key, value in entry["buffers"].items():
            original[key] = value.float() if value.is_floating_point() else value
        state_dict = {}
        for key, value in original.items():
            new_key = convert_key(key)
            if new_key is not None:
                state_dict[new_key] = value
        missing, unexpected = tower.load_state_dict(state_dict, strict=False)
        tower.eval().float()

        cases = entry["cases"]
        if missing or unexpected:
            total += len(cases) + (kind == "audio")
            report(f"tower {name}: FAIL loading weights: missing {list(missing)}, unexpected {list(unexpected)}")
            continue

        for case_name, case in cases.items():
            total += 1
            inputs = case["input"].float()
            expected = case["output"].float()
            with torch.no_grad():
                output = tower(inputs)
            if kind == "audio":
                tolerance = AUDIO_ATOL
            else:
                tolerance = max(VIDEO_ATOL, VIDEO_RTOL_OF_MAX * expected.abs().max().item() + VIDEO_RTOL_BASE)
            if output.shape != expected.shape:
                report(
                    f"tower {name} / {case_name}: FAIL shape {tuple(output.shape)} != expected {tuple(expected.shape)}"
                )
                continue
            diff = (output - expected).abs().max().item()
            ok = diff <= tolerance
            passed += ok
            report(
                f"tower {name} / {case_name}: {'ok' if ok else 'FAIL'} max abs diff {diff:.2e} "
                f"(tol {tolerance:.1e}, max |ref| {expected.abs().max().item():.2f}, shape {tuple(expected.shape)})"
            )

        if kind == "audio":
            total += 1
            stored = {key: buffer for key, buffer in tower.front_end.named_buffers()}
            ok, diff = _front_end_check(tower, stored)
            passed += ok
            report(
                f"tower {name} / front end recomputed by reset_front_end(): {'ok' if ok else 'FAIL'} "
                f"max abs diff {diff:.2e} vs stored buffers (tol {FRONT_END_ATOL:.0e} beyond float16 rounding)"
            )
    return passed, total


if __name__ == "__main__":
    import sys

    ok, n = run_tower_parity(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(f"tower parity: {ok}/{n} cases ok")
    sys.exit(0 if ok == n else 1)
