"""From the original fairseq UnIVAL to this port: configuration and state-dict key map.

The checkpoint-file reader (safe unpickling, EMA selection, hub packaging) is `hub_upload.convert`; this module
only knows the model: which original argument becomes which config field, and which original key becomes which
parameter. Every original key is either mapped or dropped on purpose (`DROPPED_KEY_REASONS`); anything else is an
error, so a checkpoint of an unknown variant cannot load half-way silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch

from .configuration_unival import PANN_PRESETS, RESNEXT3D_PRESETS, RESNET_DEPTHS, UnivalConfig
from .modeling_unival import patch_relative_position_bucket, token_relative_position_bucket
from .towers import (
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_video_tower_key,
)


logger = logging.getLogger(__name__)

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
        if new_key is None:
            continue
        converted[new_key] = value.float() if value.is_floating_point() else value.clone()

    tied = [k for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight") if k in state_dict]
    if not tied:
        raise KeyError("the state dict has no token embedding (encoder.embed_tokens.weight)")
    shared = state_dict[tied[0]].float()
    for key in tied[1:]:
        if shared.is_meta:  # shape-only conversion (e.g. checking a key list): nothing to compare
            break
        if not torch.equal(state_dict[key].float(), shared):
            raise ValueError(f"{key} differs from {tied[0]}: UnIVAL ties all token embeddings, this checkpoint does not")
    converted[f"{prefix}shared.weight"] = shared
    return converted


# Parameters tied to `model.shared.weight`: never in a converted state dict, filled by `tie_weights()`.
TIED_KEYS = ("lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def load_original_state_dict(model, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Converts an original state dict and loads it into `model` (a `UnivalForConditionalGeneration`), then ties
    the embeddings. Raises `ValueError` naming the first keys that are missing or left over."""
    missing, unexpected = model.load_state_dict(convert_original_state_dict(state_dict), strict=False)
    missing = [key for key in missing if key not in TIED_KEYS]
    if missing or unexpected:
        raise ValueError(f"the checkpoint does not fit the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()


def check_original_buffers(state_dict: Mapping[str, torch.Tensor], config: UnivalConfig) -> dict[str, bool]:
    """Compares the bucket tables the original stores with the ones the port computes. Returns {key: equal}.

    A mismatch means either a different bucket formula or a checkpoint whose integer buffers were averaged (the
    original merging script rounds them): the port never loads these buffers, so it is reported, not fatal.
    """
    results = {}
    for side, max_positions in (("encoder", config.max_source_positions), ("decoder", config.max_target_positions)):
        key = f"{side}.token_rp_bucket"
        if key in state_dict:
            stored = state_dict[key]
            n = stored.shape[0]
            positions = torch.arange(n)
            ours = token_relative_position_bucket(
                positions[:, None] - positions[None, :], config.token_bucket_size, max_positions
            )
            results[key] = torch.equal(ours, stored.long())
        key = f"{side}.image_rp_bucket"
        if key in state_dict:
            stored = state_dict[key].long()
            bucket = config.image_bucket_size
            ids = torch.arange(1, bucket * bucket + 1)
            # Row/column 0 belong to the unused class token: compare the patch-patch block only.
            ours = patch_relative_position_bucket(ids, ids, bucket)
            results[key] = stored.shape == (bucket * bucket + 1,) * 2 and torch.equal(ours, stored[1:, 1:])
    return results


_UNSUPPORTED_FLAGS = {
    # flag: value the port implements
    "encoder_normalize_before": True,
    "decoder_normalize_before": True,
    "no_scale_embedding": True,
    "share_all_embeddings": True,
    "add_mm_type_embedding": False,
    "qk_norm": False,
    "with_cls": False,
    "encoder_prompt": False,
    "decoder_prompt": False,
    "adapter": False,
}
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}


def config_from_original_args(
    args: Mapping, state_dict: Mapping[str, torch.Tensor] | None = None, audio_cfg: Mapping | None = None
) -> UnivalConfig:
    """Builds the `UnivalConfig` of an original model from its argument namespace (as a dict).

    The towers present are decided by the state dict when given (the original's arguments name a video/audio encoder
    even in checkpoints that never built one, e.g. the RefCOCO finetunes), otherwise by the arguments.
    `audio_cfg` is the original's `AUDIO_CFG` (sample rate, window, fmin, fmax); its defaults are used when omitted.
    """
    args = dict(args)
    for flag, supported in _UNSUPPORTED_FLAGS.items():
        if flag in args and args[flag] is not None and bool(args[flag]) != supported:
            raise NotImplementedError(f"original argument {flag}={args[flag]!r} is not supported (the port implements {supported})")
    # Encoder and decoder switch position entangling with two flags; the port has one for both.
    encoder_entangle = bool(args.get("entangle_position_embedding") or False)
    decoder_entangle = not bool(args.get("disable_entangle", True))
    if encoder_entangle != decoder_entangle:
        raise NotImplementedError(
            f"entangle_position_embedding={encoder_entangle} with disable_entangle={not decoder_entangle}: the port "
            "adds positions to the embeddings in both encoder and decoder or in neither"
        )
    if args.get("image_encoder_name", "timm_resnet") != "timm_resnet":
        raise NotImplementedError(f"image_encoder_name={args['image_encoder_name']!r}: only timm_resnet is ported")
    if args["encoder_embed_dim"] != args.get("decoder_embed_dim", args["encoder_embed_dim"]):
        raise NotImplementedError("encoder and decoder widths differ")
    activation = args.get("activation_fn", "gelu")
    if activation not in _ACTIVATIONS:
        raise NotImplementedError(f"activation_fn={activation!r} is not supported")
    resnet_type = args.get("resnet_type", "resnet101")
    if resnet_type not in RESNET_DEPTHS:
        raise NotImplementedError(f"resnet_type={resnet_type!r}: choose one of {sorted(RESNET_DEPTHS)}")

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in state_dict) if state_dict is not None else True

    vocab_size = args.get("vocab_size")
    if state_dict is not None and "encoder.embed_tokens.weight" in state_dict:
        vocab_size = state_dict["encoder.embed_tokens.weight"].shape[0]
    if vocab_size is None:
        raise ValueError("cannot tell the vocabulary size: pass the state dict or a `vocab_size` argument")

    video_config = None
    video_name = args.get("video_encoder_name")
    if video_name and has("encoder.embed_videos."):
        if video_name not in RESNEXT3D_PRESETS:
            raise NotImplementedError(f"video_encoder_name={video_name!r}: choose one of {sorted(RESNEXT3D_PRESETS)}")
        video_config = dict(RESNEXT3D_PRESETS[video_name])

    audio_config = None
    audio_name = args.get("audio_encoder_name")
    if audio_name and has("encoder.embed_audios."):
        variant = audio_name.removeprefix("pann_")
        if variant not in PANN_PRESETS:
            raise NotImplementedError(f"audio_encoder_name={audio_name!r}: choose one of pann_{{{','.join(PANN_PRESETS)}}}")
        audio_cfg = dict(audio_cfg or {})
        audio_config = dict(PANN_PRESETS[variant])
        audio_config.update(
            sample_rate=audio_cfg.get("sample_rate", 48000),
            n_fft=audio_cfg.get("window_size", 1024),
            hop_length=args.get("hop_size", audio_cfg.get("hop_size", 480)),
            num_mel_bins=args.get("mel_bins", audio_cfg.get("mel_bins", 64)),
            f_min=audio_cfg.get("fmin", 50),
            f_max=audio_cfg.get("fmax", 14000),
        )

    return UnivalConfig(
        vocab_size=vocab_size,
        d_model=args["encoder_embed_dim"],
        encoder_layers=args["encoder_layers"],
        decoder_layers=args["decoder_layers"],
        encoder_attention_heads=args["encoder_attention_heads"],
        decoder_attention_heads=args["decoder_attention_heads"],
        encoder_ffn_dim=args["encoder_ffn_embed_dim"],
        decoder_ffn_dim=args["decoder_ffn_embed_dim"],
        activation_function=_ACTIVATIONS[activation],
        dropout=args.get("dropout", 0.1),
        attention_dropout=args.get("attention_dropout", 0.0),
        activation_dropout=args.get("activation_dropout", 0.0),
        encoder_drop_path_rate=args.get("encoder_drop_path_rate", 0.0),
        decoder_drop_path_rate=args.get("decoder_drop_path_rate", 0.0),
        attn_scale_factor=args.get("attn_scale_factor", 2),
        token_bucket_size=args.get("token_bucket_size", 256),
        image_bucket_size=args.get("image_bucket_size", 42),
        max_source_positions=args.get("max_source_positions", 1024),
        max_target_positions=args.get("max_target_positions", 1024),
        scale_attn=bool(args.get("scale_attn", False)),
        scale_fc=bool(args.get("scale_fc", False)),
        scale_heads=bool(args.get("scale_heads", False)),
        scale_resids=bool(args.get("scale_resids", False)),
        layernorm_embedding=bool(args.get("layernorm_embedding", False)),
        patch_layernorm_embedding=bool(args.get("patch_layernorm_embedding", False)),
        add_type_embedding=bool(args.get("add_type_embedding", False)),
        entangle_position_embedding=encoder_entangle,
        sample_patch_num=args.get("sample_patch_num"),
        image_config={"depths": RESNET_DEPTHS[resnet_type], "hidden_sizes": (256, 512, 1024, 2048)},
        video_config=video_config,
        audio_config=audio_config,
    )


__all__ = [
    "DROPPED_KEY_REASONS",
    "TIED_KEYS",
    "load_original_state_dict",
    "check_original_buffers",
    "config_from_original_args",
    "convert_original_key",
    "convert_original_state_dict",
]
