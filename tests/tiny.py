"""Tiny UnIVAL models and inputs shared by the tests."""

import torch

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration


def tiny_config(**overrides) -> UnivalConfig:
    return UnivalConfig.from_preset("unival-tiny", **overrides)


def tiny_model(seed: int = 0, **overrides) -> UnivalForConditionalGeneration:
    torch.manual_seed(seed)
    model = UnivalForConditionalGeneration(tiny_config(**overrides))
    return model.eval()


def text_ids(lengths, seed=0, vocab=(4, 400)):
    """`<s> random tokens </s>` rows right-padded with 1; returns (input_ids, attention_mask)."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths) + 2
    ids = torch.ones(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, 0] = 0
        ids[row, 1 : length + 1] = torch.randint(vocab[0], vocab[1], (length,), generator=generator)
        ids[row, length + 1] = 2
        mask[row, : length + 2] = 1
    return ids, mask


def media(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if kind == "image":
        return torch.randn(n, 3, 64, 64, generator=generator)
    if kind == "video":
        return torch.randn(n, 3, 8, 32, 32, generator=generator)
    if kind == "audio":
        return torch.randn(n, 9600, generator=generator) * 0.1
    raise ValueError(kind)


MODALITY_KEYS = {"image": ("pixel_values", 0), "video": ("pixel_values_videos", 1), "audio": ("audio_values", 2)}
