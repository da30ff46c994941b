"""Whole state dicts: converting an original one, loading it into the port, checking the buffers the port recomputes."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..configuration_unival import UnivalConfig
from ..modeling_unival import patch_relative_position_bucket, token_relative_position_bucket
from .keys import convert_original_key


# The original stores one token embedding three times (all embeddings shared, output projection tied).
ORIGINAL_TIED_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")
# Parameters tied to `model.shared.weight`: never in a converted state dict, filled by `tie_weights()`.
TIED_KEYS = ("lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def _shared_embedding(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The one token embedding of an original state dict, in float32; raises if its tied copies differ."""
    tied = [key for key in ORIGINAL_TIED_KEYS if key in state_dict]
    if not tied:
        raise KeyError("the state dict has no token embedding (encoder.embed_tokens.weight)")
    shared = state_dict[tied[0]].float()
    if shared.is_meta:  # shape-only conversion (e.g. checking a key list): nothing to compare
        return shared
    for key in tied[1:]:
        if not torch.equal(state_dict[key].float(), shared):
            raise ValueError(
                f"{key} differs from {tied[0]}: UnIVAL ties all token embeddings, this checkpoint does not"
            )
    return shared


def convert_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "model."
) -> dict[str, torch.Tensor]:
    """Maps an original state dict (`checkpoint['model']` or its EMA copy) onto `UnivalForConditionalGeneration`.

    Floating tensors become float32 (the released files are float16); integer buffers keep their dtype. The three
    tied token-embedding keys become one `shared` parameter (they must be equal). `lm_head.weight` is not emitted:
    `from_pretrained`/`tie_weights` ties it to the shared embedding.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = convert_original_key(key, prefix)
        if new_key is not None:
            converted[new_key] = value.float() if value.is_floating_point() else value.clone()
    converted[f"{prefix}shared.weight"] = _shared_embedding(state_dict)
    return converted


def load_original_state_dict(model, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Converts an original state dict and loads it into `model` (a `UnivalForConditionalGeneration`), then ties
    the embeddings. Raises `ValueError` naming the first keys that are missing or left over."""
    missing, unexpected = model.load_state_dict(convert_original_state_dict(state_dict), strict=False)
    missing = [key for key in missing if key not in TIED_KEYS]
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint does not fit the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.tie_weights()


def _token_buckets_equal(stored: torch.Tensor, config: UnivalConfig, max_positions: int) -> bool:
    positions = torch.arange(stored.shape[0])
    offsets = positions[:, None] - positions[None, :]
    ours = token_relative_position_bucket(offsets, config.token_bucket_size, max_positions)
    return torch.equal(ours, stored.long())


def _image_buckets_equal(stored: torch.Tensor, config: UnivalConfig) -> bool:
    bucket = config.image_bucket_size
    ids = torch.arange(1, bucket * bucket + 1)
    # Row/column 0 belong to the unused class token: compare the patch-patch block only.
    ours = patch_relative_position_bucket(ids, ids, bucket)
    return stored.shape == (bucket * bucket + 1,) * 2 and torch.equal(ours, stored[1:, 1:].long())


def check_original_buffers(state_dict: Mapping[str, torch.Tensor], config: UnivalConfig) -> dict[str, bool]:
    """Compares the bucket tables the original stores with the ones the port computes. Returns {key: equal}.

    A mismatch means either a different bucket formula or a checkpoint whose integer buffers were averaged (the
    original merging script rounds them): the port never loads these buffers, so it is reported, not fatal.
    """
    results = {}
    for side, max_positions in (("encoder", config.max_source_positions), ("decoder", config.max_target_positions)):
        if f"{side}.token_rp_bucket" in state_dict:
            stored = state_dict[f"{side}.token_rp_bucket"]
            results[f"{side}.token_rp_bucket"] = _token_buckets_equal(stored, config, max_positions)
        if f"{side}.image_rp_bucket" in state_dict:
            results[f"{side}.image_rp_bucket"] = _image_buckets_equal(state_dict[f"{side}.image_rp_bucket"], config)
    return results


__all__ = [
    "TIED_KEYS",
    "check_original_buffers",
    "convert_original_state_dict",
    "load_original_state_dict",
]
