"""Key maps of the three towers, from the original backbones' state-dict names to the port's.

Keys are relative to the tower (the original's `encoder.embed_images.` / `embed_videos.` / `embed_audios.` prefix
already stripped). Each map returns the port's name, None for a key the port drops on purpose (the backbones'
unused classifier heads), and raises `ValueError` for anything else, so that a backbone of an unknown variant
cannot load half-way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch


_BN_FIELDS = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"

# ----------------------------------------------------------------------------------------------------------------
# Video: 3D ResNeXt (the port keeps the original's names)
# ----------------------------------------------------------------------------------------------------------------

_VIDEO_KEY = re.compile(
    rf"^(?:conv1\.weight|bn1\.{_BN_FIELDS}"
    rf"|layer\d+\.\d+\.(?:conv[123]\.weight|bn[123]\.{_BN_FIELDS}|downsample\.0\.weight|downsample\.1\.{_BN_FIELDS}))$"
)
# The Kinetics checkpoint the original starts from has a classifier that UnIVAL's 3D ResNeXt does not build.
_VIDEO_DROPPED = re.compile(r"^fc\.(?:weight|bias)$")


def convert_original_video_tower_key(key: str) -> str | None:
    """Map an original 3D-ResNeXt key (e.g. `layer4.2.bn3.bias`) to `UnivalVideoTower`'s: the names are the
    same. Returns None for the Kinetics classifier `fc.*`; raises `ValueError` for anything else."""
    if _VIDEO_KEY.match(key):
        return key
    if _VIDEO_DROPPED.match(key):
        return None
    raise ValueError(f"unrecognised key for the video tower: {key!r}")


# ----------------------------------------------------------------------------------------------------------------
# Audio: PANN CNN with the torchlibrosa front end
# ----------------------------------------------------------------------------------------------------------------

_AUDIO_RENAMES = {
    "spectrogram_extractor.stft.conv_real.weight": "front_end.stft_kernel_real",
    "spectrogram_extractor.stft.conv_imag.weight": "front_end.stft_kernel_imag",
    "logmel_extractor.melW": "front_end.mel_filters",
}
_AUDIO_KEY = re.compile(rf"^(?:bn0\.{_BN_FIELDS}|conv_block\d+\.(?:conv[12]\.weight|bn[12]\.{_BN_FIELDS}))$")
# PANN's AudioSet classification heads: kept in the original's state dict, never called by UnIVAL.
_AUDIO_DROPPED = re.compile(r"^(?:fc1|fc_audioset)\.(?:weight|bias)$")


def convert_original_audio_tower_key(key: str) -> str | None:
    """Map an original PANN key (e.g. `conv_block1.conv1.weight`, `logmel_extractor.melW`) to
    `UnivalAudioTower`'s. Returns None for the unused classifier heads `fc1.*` and `fc_audioset.*`; raises
    `ValueError` for anything else."""
    if key in _AUDIO_RENAMES:
        return _AUDIO_RENAMES[key]
    if _AUDIO_KEY.match(key):
        return key
    if _AUDIO_DROPPED.match(key):
        return None
    raise ValueError(f"unrecognised key for the audio tower: {key!r}")


# ----------------------------------------------------------------------------------------------------------------
# Image: timm-style ResNet -> `transformers.ResNetModel`
# ----------------------------------------------------------------------------------------------------------------

_IMAGE_STEM = re.compile(rf"^(conv1\.weight|bn1\.{_BN_FIELDS})$")
_IMAGE_BLOCK = re.compile(
    rf"^layer(\d+)\.(\d+)\.(?:conv([123])\.(weight)|bn([123])\.({_BN_FIELDS})"
    rf"|downsample\.0\.(weight)|downsample\.1\.({_BN_FIELDS}))$"
)
_IMAGE_DROPPED = re.compile(r"^fc\.(?:weight|bias)$")


def _image_block_key(match: re.Match, key: str) -> str:
    """`layer{i}.{j}.(conv|bn){k}.*` or `.downsample.{0,1}.*` -> the `ResNetModel` name (see the caller's table)."""
    stage, block, conv_index, conv_field, bn_index, bn_field, shortcut_conv_field, shortcut_bn_field = match.groups()
    stage = int(stage) - 1
    if stage < 0:
        raise ValueError(f"unrecognised key for the image tower (stages count from layer1): {key!r}")
    prefix = f"encoder.stages.{stage}.layers.{block}"
    if conv_index is not None:
        return f"{prefix}.layer.{int(conv_index) - 1}.convolution.{conv_field}"
    if bn_index is not None:
        return f"{prefix}.layer.{int(bn_index) - 1}.normalization.{bn_field}"
    if shortcut_conv_field is not None:
        return f"{prefix}.shortcut.convolution.{shortcut_conv_field}"
    return f"{prefix}.shortcut.normalization.{shortcut_bn_field}"


def convert_original_image_tower_key(key: str) -> str | None:
    """
    Map a timm/torchvision-style ResNet key to `transformers.ResNetModel`'s:

    | original | `ResNetModel` |
    | --- | --- |
    | `conv1.weight`, `bn1.*` | `embedder.embedder.convolution.weight`, `embedder.embedder.normalization.*` |
    | `layer{i}.{j}.conv{k}.weight`, `.bn{k}.*` | `encoder.stages.{i-1}.layers.{j}.layer.{k-1}.convolution.weight`, `.normalization.*` |
    | `layer{i}.{j}.downsample.0.weight`, `.downsample.1.*` | `encoder.stages.{i-1}.layers.{j}.shortcut.convolution.weight`, `.normalization.*` |

    Returns None for the unused ImageNet classifier `fc.*`; raises `ValueError` for anything else.
    """
    if _IMAGE_STEM.match(key):
        module, field = key.split(".", 1)
        kind = "convolution" if module == "conv1" else "normalization"
        return f"embedder.embedder.{kind}.{field}"
    match = _IMAGE_BLOCK.match(key)
    if match:
        return _image_block_key(match, key)
    if _IMAGE_DROPPED.match(key):
        return None
    raise ValueError(f"unrecognised key for the image tower: {key!r}")


def convert_original_tower_state_dict(
    state_dict: Mapping[str, torch.Tensor], convert_key: Callable[[str], str | None]
) -> dict[str, torch.Tensor]:
    """Apply one of the `convert_original_*_tower_key` functions to a whole state dict (dropped keys removed)."""
    converted = {}
    for key, value in state_dict.items():
        new_key = convert_key(key)
        if new_key is not None:
            converted[new_key] = value
    return converted


__all__ = [
    "convert_original_audio_tower_key",
    "convert_original_image_tower_key",
    "convert_original_tower_state_dict",
    "convert_original_video_tower_key",
]
