"""Key map of the transformer: which original state-dict key becomes which parameter of the port.

Every original key is either mapped or dropped on purpose (`DROPPED_KEY_REASONS`); anything else is an error, so a
checkpoint of an unknown variant cannot load half-way silently. Tower keys are handed to `tower_keys`.
"""

from __future__ import annotations

import re

from .tower_keys import (
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_video_tower_key,
)


# Original keys that have no counterpart in the port, and why.
DROPPED_KEY_REASONS = {
    r"(encoder|decoder)\.version": "fairseq bookkeeping",
    r"(encoder|decoder)\.token_rp_bucket": "relative-position buckets are recomputed (checked when present)",
    r"(encoder|decoder)\.image_rp_bucket": "relative-position buckets are recomputed (checked when present)",
    r"decoder\.image_position_idx": "image-code generation only (not ported)",
    r"decoder\.embed_image_positions\.weight": "image-code generation only (not ported)",
    r"decoder\.image_pos_ln\.(weight|bias)": "image-code generation only (not ported)",
    r"decoder\.image_rel_pos_table_list\.\d+\.weight": "image-code generation only (not ported)",
    r"decoder\.code_layernorm_embedding\.(weight|bias)": "image-code generation only (not ported)",
    r"decoder\.output_projection\.weight": "tied to the shared token embedding",
    r"(encoder|decoder)\.embed_tokens\.weight": "tied: one shared token embedding",
}
_DROPPED = [re.compile(pattern + "$") for pattern in DROPPED_KEY_REASONS]

# Plain renames inside the transformer (applied after the encoder./decoder. prefix is handled).
_LAYER_RENAMES = [
    (re.compile(r"^layers\.(\d+)\.(fc1|fc2|ffn_layernorm)\."), r"layers.\1.mlp.\2."),
    (re.compile(r"^token_rel_pos_table_list\."), "token_rel_pos_tables."),
    (re.compile(r"^image_rel_pos_table_list\."), "image_rel_pos_tables."),
    (re.compile(r"^pos_q_linear\."), "position_bias.q_linear."),
    (re.compile(r"^pos_k_linear\."), "position_bias.k_linear."),
    (re.compile(r"^self_pos_q_linear\."), "self_position_bias.q_linear."),
    (re.compile(r"^self_pos_k_linear\."), "self_position_bias.k_linear."),
    (re.compile(r"^cross_pos_q_linear\."), "cross_position_bias.q_linear."),
    (re.compile(r"^cross_pos_k_linear\."), "cross_position_bias.k_linear."),
]
# After the renames, the names the port has (the same as the original's for everything not renamed).
_LAYER_PARAMETER = (
    r"layers\.\d+\.((self_attn|encoder_attn)\.((q_proj|k_proj|v_proj|out_proj)\.(weight|bias)|c_attn)|"
    r"(self_attn_layer_norm|attn_ln|self_attn_ln|cross_attn_ln|encoder_attn_layer_norm|final_layer_norm|"
    r"mlp\.ffn_layernorm|mlp\.fc1|mlp\.fc2)\.(weight|bias)|w_resid)"
)
_ENCODER_DIRECT = re.compile(
    r"^((layernorm_embedding|patch_layernorm_embedding|pos_ln|image_pos_ln|image_proj|video_proj|audio_proj|"
    r"layer_norm|position_bias\.[qk]_linear)\.(weight|bias)|"
    r"(type_embedding|embed_positions|embed_image_positions|embed_video_positions|embed_audio_positions|"
    r"token_rel_pos_tables\.\d+|image_rel_pos_tables\.\d+)\.weight|" + _LAYER_PARAMETER + ")$"
)
_DECODER_DIRECT = re.compile(
    r"^((layernorm_embedding|pos_ln|layer_norm|self_position_bias\.[qk]_linear|cross_position_bias\.[qk]_linear)"
    r"\.(weight|bias)|(embed_positions|token_rel_pos_tables\.\d+)\.weight|" + _LAYER_PARAMETER + ")$"
)
_TOWERS = {
    "embed_images.": ("image_tower.", convert_original_image_tower_key),
    "embed_videos.": ("video_tower.", convert_original_video_tower_key),
    "embed_audios.": ("audio_tower.", convert_original_audio_tower_key),
}


def convert_original_key(key: str, prefix: str = "model.") -> str | None:
    """Name of the port's parameter for an original key (with `prefix` for the `model.` of
    `UnivalForConditionalGeneration`), or None for a key dropped on purpose. Raises `KeyError` for an unknown key."""
    if any(pattern.match(key) for pattern in _DROPPED):
        return None
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        raise KeyError(f"unexpected original key {key!r}: not under encoder. or decoder.")
    if side == "encoder":
        for original, (ours, convert) in _TOWERS.items():
            if rest.startswith(original):
                converted = convert(rest[len(original):])
                return None if converted is None else f"{prefix}encoder.{ours}{converted}"
    for pattern, replacement in _LAYER_RENAMES:
        rest = pattern.sub(replacement, rest)
    if not (_ENCODER_DIRECT if side == "encoder" else _DECODER_DIRECT).match(rest):
        raise KeyError(f"unexpected original key {key!r}: no counterpart in the port")
    return f"{prefix}{side}.{rest}"


__all__ = ["DROPPED_KEY_REASONS", "convert_original_key"]
