"""The port's configuration of an original model: which original argument becomes which config field.

`config_from_original_args` reads the original's argument namespace (`cfg['model']` of a checkpoint); the tower
functions read the constructor settings of the original backbones (PANN's `Cnn6(sample_rate=..., ...)`, the 3D
ResNeXt's `layers`), which is how the original builds its audio tower and how the tower fixtures describe theirs.
An argument whose value the port does not implement raises `NotImplementedError` instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..configuration_unival import (
    PANN_PRESETS,
    RESNET_DEPTHS,
    RESNEXT3D_PRESETS,
    UnivalAudioConfig,
    UnivalConfig,
    UnivalVideoConfig,
)


# flag: the value the port implements
_UNSUPPORTED_FLAGS = {
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
# config field: original argument, for the arguments every original namespace has.
_REQUIRED_ARGUMENTS = {
    "d_model": "encoder_embed_dim",
    "encoder_layers": "encoder_layers",
    "decoder_layers": "decoder_layers",
    "encoder_attention_heads": "encoder_attention_heads",
    "decoder_attention_heads": "decoder_attention_heads",
    "encoder_ffn_dim": "encoder_ffn_embed_dim",
    "decoder_ffn_dim": "decoder_ffn_embed_dim",
}
# Same names in both, with the original's default where the namespace leaves the argument out.
_OPTIONAL_ARGUMENTS = {
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_drop_path_rate": 0.0,
    "decoder_drop_path_rate": 0.0,
    "attn_scale_factor": 2,
    "token_bucket_size": 256,
    "image_bucket_size": 42,
    "max_source_positions": 1024,
    "max_target_positions": 1024,
    "sample_patch_num": None,
}
# Store-true switches of the original (absent = off).
_SWITCHES = (
    "scale_attn", "scale_fc", "scale_heads", "scale_resids", "layernorm_embedding", "patch_layernorm_embedding",
    "add_type_embedding",
)
# The original's `AUDIO_CFG`, for checkpoints that do not store their own audio settings.
_AUDIO_CFG_DEFAULTS = {"sample_rate": 48000, "window_size": 1024, "hop_size": 480, "mel_bins": 64, "fmin": 50,
                       "fmax": 14000}


# ----------------------------------------------------------------------------------------------------------------
# Towers, from the original backbones' constructor settings
# ----------------------------------------------------------------------------------------------------------------


def audio_config_from_original(settings: Mapping) -> UnivalAudioConfig:
    """A `UnivalAudioConfig` from the original PANN constructor settings (`model_name` Cnn6 / Cnn10 / Cnn14,
    `sample_rate`, `window_size`, `hop_size`, `mel_bins`, `fmin`, `fmax`: the keys of the original's `AUDIO_CFG`)."""
    model_name = str(settings["model_name"])
    preset = PANN_PRESETS.get(model_name.lower())
    if preset is None:
        raise NotImplementedError(f"PANN variant {model_name!r} is not ported; choose one of {sorted(PANN_PRESETS)}")
    return UnivalAudioConfig(
        **preset,
        sample_rate=int(settings["sample_rate"]),
        n_fft=int(settings["window_size"]),
        hop_length=int(settings["hop_size"]),
        num_mel_bins=int(settings["mel_bins"]),
        f_min=float(settings["fmin"]),
        f_max=float(settings["fmax"]),
    )


def video_config_from_original(settings: Mapping) -> UnivalVideoConfig:
    """A `UnivalVideoConfig` from the original ResNeXt3D constructor settings (`layers`, `cardinality`,
    `shortcut_type`). The original's stage widths are fixed per stage (256, 512, 1024, 2048 output channels); its
    variants have three stages (`resnext50`, 1024-d) or four (`all_resnext101`, 2048-d)."""
    depths = [int(depth) for depth in settings["layers"]]
    shortcut_type = settings.get("shortcut_type", "B")
    if shortcut_type != "B":
        raise NotImplementedError(f"only the 3D ResNeXt with shortcut type 'B' is ported, got {shortcut_type!r}")
    if len(depths) not in (3, 4):
        raise NotImplementedError(f"3D ResNeXt with layers {depths}: the original has three or four stages")
    hidden_sizes = list(RESNEXT3D_PRESETS["all_resnext101"]["hidden_sizes"][: len(depths)])
    return UnivalVideoConfig(depths=depths, hidden_sizes=hidden_sizes, cardinality=int(settings.get("cardinality", 32)))


# ----------------------------------------------------------------------------------------------------------------
# The whole model, from the original's argument namespace
# ----------------------------------------------------------------------------------------------------------------


def _check_supported(args: Mapping) -> None:
    """Raises `NotImplementedError` for an argument value whose computation the port does not have."""
    for flag, supported in _UNSUPPORTED_FLAGS.items():
        if args.get(flag) is not None and bool(args[flag]) != supported:
            raise NotImplementedError(
                f"original argument {flag}={args[flag]!r} is not supported (the port implements {supported})"
            )
    if args.get("image_encoder_name", "timm_resnet") != "timm_resnet":
        raise NotImplementedError(f"image_encoder_name={args['image_encoder_name']!r}: only timm_resnet is ported")
    if args["encoder_embed_dim"] != args.get("decoder_embed_dim", args["encoder_embed_dim"]):
        raise NotImplementedError("encoder and decoder widths differ")
    if args.get("activation_fn", "gelu") not in _ACTIVATIONS:
        raise NotImplementedError(f"activation_fn={args['activation_fn']!r} is not supported")


def _position_entangling(args: Mapping) -> bool:
    """The port's one `entangle_position_embedding` from the original's two flags (encoder and decoder)."""
    encoder_entangle = bool(args.get("entangle_position_embedding") or False)
    decoder_entangle = not bool(args.get("disable_entangle", True))
    if encoder_entangle != decoder_entangle:
        raise NotImplementedError(
            f"entangle_position_embedding={encoder_entangle} with disable_entangle={not decoder_entangle}: the port "
            "adds positions to the embeddings in both encoder and decoder or in neither"
        )
    return encoder_entangle


def _vocab_size(args: Mapping, state_dict: Mapping[str, torch.Tensor] | None) -> int:
    """The dictionary size: the token embedding's rows when the weights are given, else a `vocab_size` argument."""
    if state_dict is not None and "encoder.embed_tokens.weight" in state_dict:
        return state_dict["encoder.embed_tokens.weight"].shape[0]
    if args.get("vocab_size") is None:
        raise ValueError("cannot tell the vocabulary size: pass the state dict or a `vocab_size` argument")
    return args["vocab_size"]


def _image_config(args: Mapping) -> dict:
    resnet_type = args.get("resnet_type", "resnet101")
    if resnet_type not in RESNET_DEPTHS:
        raise NotImplementedError(f"resnet_type={resnet_type!r}: choose one of {sorted(RESNET_DEPTHS)}")
    return {"depths": RESNET_DEPTHS[resnet_type], "hidden_sizes": (256, 512, 1024, 2048)}


def _video_config(args: Mapping) -> dict | None:
    name = args.get("video_encoder_name")
    if not name:
        return None
    if name not in RESNEXT3D_PRESETS:
        raise NotImplementedError(f"video_encoder_name={name!r}: choose one of {sorted(RESNEXT3D_PRESETS)}")
    return dict(RESNEXT3D_PRESETS[name])


def _audio_config(args: Mapping, audio_cfg: Mapping | None) -> UnivalAudioConfig | None:
    """The audio tower: the variant from `audio_encoder_name` (`pann_cnn14`, ...), the front end from the original's
    `AUDIO_CFG`, where the model arguments `hop_size` and `mel_bins` (which the run scripts pass) take precedence."""
    name = args.get("audio_encoder_name")
    if not name:
        return None
    settings = {**_AUDIO_CFG_DEFAULTS, **(audio_cfg or {}), "model_name": name.removeprefix("pann_")}
    settings.update({key: args[key] for key in ("hop_size", "mel_bins") if args.get(key) is not None})
    return audio_config_from_original(settings)


def config_from_original_args(
    args: Mapping, state_dict: Mapping[str, torch.Tensor] | None = None, audio_cfg: Mapping | None = None
) -> UnivalConfig:
    """Builds the `UnivalConfig` of an original model from its argument namespace (as a dict).

    The towers present are decided by the state dict when given (the original's arguments name a video/audio encoder
    even in checkpoints that never built one, e.g. the RefCOCO finetunes), otherwise by the arguments.
    `audio_cfg` is the original's `AUDIO_CFG` (sample rate, window, fmin, fmax); its defaults are used when omitted.
    """
    args = dict(args)
    _check_supported(args)

    def has_tower(prefix: str) -> bool:
        return state_dict is None or any(key.startswith(prefix) for key in state_dict)

    return UnivalConfig(
        vocab_size=_vocab_size(args, state_dict),
        activation_function=_ACTIVATIONS[args.get("activation_fn", "gelu")],
        entangle_position_embedding=_position_entangling(args),
        image_config=_image_config(args),
        video_config=_video_config(args) if has_tower("encoder.embed_videos.") else None,
        audio_config=_audio_config(args, audio_cfg) if has_tower("encoder.embed_audios.") else None,
        **{field: args[argument] for field, argument in _REQUIRED_ARGUMENTS.items()},
        **{field: args.get(field, default) for field, default in _OPTIONAL_ARGUMENTS.items()},
        **{switch: bool(args.get(switch, False)) for switch in _SWITCHES},
    )


__all__ = ["audio_config_from_original", "config_from_original_args", "video_config_from_original"]
