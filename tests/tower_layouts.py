"""Key names and shapes of the original backbones' state dicts, written from their descriptions (reference 3.1-3.3):
timm / torchvision ResNet, kenshohara's 3D ResNeXt, PANN with its torchlibrosa front end. Shared by the tower and
initialisation tests."""

from __future__ import annotations

import torch
from transformers import ResNetConfig

from modeling_unival.configuration_unival import UnivalAudioConfig


BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn_keys(prefix: str, channels: int) -> dict[str, tuple]:
    return {f"{prefix}.{field}": (() if field == "num_batches_tracked" else (channels,)) for field in BN_FIELDS}


def random_state_dict(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state_dict[key] = 0.5 + torch.rand(shape, generator=generator)
        else:
            state_dict[key] = 0.1 * torch.randn(shape, generator=generator)
    return state_dict


def original_video_shapes(depths, hidden_sizes, cardinality, embedding=64, fc=False) -> dict[str, tuple]:
    """Key names and shapes of the original ResNeXt3D (kenshohara naming), written from its description."""
    shapes = {"conv1.weight": (embedding, 3, 7, 7, 7), **bn_keys("bn1", embedding)}
    in_channels = embedding
    for stage, (depth, out_channels) in enumerate(zip(depths, hidden_sizes), start=1):
        planes = out_channels // 2
        width = cardinality * (planes // 32)
        for block in range(depth):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1, 1)
            shapes.update(bn_keys(f"{prefix}.bn1", width))
            shapes[f"{prefix}.conv2.weight"] = (width, width // cardinality, 3, 3, 3)
            shapes.update(bn_keys(f"{prefix}.bn2", width))
            shapes[f"{prefix}.conv3.weight"] = (out_channels, width, 1, 1, 1)
            shapes.update(bn_keys(f"{prefix}.bn3", out_channels))
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (out_channels, in_channels, 1, 1, 1)
                shapes.update(bn_keys(f"{prefix}.downsample.1", out_channels))
            in_channels = out_channels
    if fc:
        shapes.update({"fc.weight": (400, in_channels), "fc.bias": (400,)})
    return shapes


def original_audio_shapes(config: UnivalAudioConfig, classes: int = 527) -> dict[str, tuple]:
    """Key names and shapes of the original PANN (torchlibrosa front end, unused classifier heads)."""
    bins = config.n_fft // 2 + 1
    shapes = {
        "spectrogram_extractor.stft.conv_real.weight": (bins, 1, config.n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (bins, 1, config.n_fft),
        "logmel_extractor.melW": (bins, config.num_mel_bins),
        **bn_keys("bn0", config.num_mel_bins),
    }
    in_channels, kernel = 1, (5 if config.block_type == "conv5x5" else 3)
    for index, out_channels in enumerate(config.hidden_sizes, start=1):
        shapes[f"conv_block{index}.conv1.weight"] = (out_channels, in_channels, kernel, kernel)
        shapes.update(bn_keys(f"conv_block{index}.bn1", out_channels))
        if config.block_type == "double_conv3x3":
            shapes[f"conv_block{index}.conv2.weight"] = (out_channels, out_channels, kernel, kernel)
            shapes.update(bn_keys(f"conv_block{index}.bn2", out_channels))
        in_channels = out_channels
    last = config.hidden_sizes[-1]
    shapes.update({"fc1.weight": (last, last), "fc1.bias": (last,), "fc_audioset.weight": (classes, last)})
    shapes["fc_audioset.bias"] = (classes,)
    return shapes


def original_image_shapes(config: ResNetConfig, classes: int = 1000) -> dict[str, tuple]:
    """Key names and shapes of a timm/torchvision-style bottleneck ResNet."""
    shapes = {"conv1.weight": (config.embedding_size, 3, 7, 7), **bn_keys("bn1", config.embedding_size)}
    in_channels = config.embedding_size
    for stage, (depth, out_channels) in enumerate(zip(config.depths, config.hidden_sizes), start=1):
        width = out_channels // 4
        for block in range(depth):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1)
            shapes.update(bn_keys(f"{prefix}.bn1", width))
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(bn_keys(f"{prefix}.bn2", width))
            shapes[f"{prefix}.conv3.weight"] = (out_channels, width, 1, 1)
            shapes.update(bn_keys(f"{prefix}.bn3", out_channels))
            if block == 0 and (stage > 1 or in_channels != out_channels):
                shapes[f"{prefix}.downsample.0.weight"] = (out_channels, in_channels, 1, 1)
                shapes.update(bn_keys(f"{prefix}.downsample.1", out_channels))
            in_channels = out_channels
    shapes.update({"fc.weight": (classes, in_channels), "fc.bias": (classes,)})
    return shapes
