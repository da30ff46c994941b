"""Configuration classes for UnIVAL (Shukor et al., TMLR 2023).

`UnivalConfig` holds every hyperparameter of the original `unival_base` family plus one sub-config per
modality tower:

* `image_config`: a `transformers` `ResNetConfig`. The original uses a timm-style ResNet (v1.5: stride on
  the 3x3 convolution, 1x1 conv + BN shortcut); `transformers`' own ResNet has exactly these modules, so
  the image tower is `ResNetModel` and only the key names differ.
* `video_config`: `UnivalVideoConfig`, the 3D ResNeXt of the original (three or four stages).
* `audio_config`: `UnivalAudioConfig`, the PANN CNNs (Cnn6 / Cnn10 / Cnn14) with their log-mel front end.

The video and audio towers are optional: the released image-text checkpoints (e.g. RefCOCO) have no video
tower, and only the audio-captioning checkpoints have an audio tower.
"""

from __future__ import annotations

import contextlib
import copy
import os
from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, ResNetConfig
from transformers.configuration_utils import SubConfigSpec

from .ids import BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID, VOCAB_SIZE


AUTO_MAP = {
    "AutoConfig": "configuration_unival.UnivalConfig",
    "AutoModel": "modeling_unival.UnivalModel",
    "AutoModelForSeq2SeqLM": "modeling_unival.UnivalForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_unival.UnivalForConditionalGeneration",
}

# ResNet depths of the original's `resnet_type` choices (timm naming).
RESNET_DEPTHS = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def _store_as_lists(config: PreTrainedConfig, *names: str) -> None:
    """Stores the per-stage fields `names` of a tower config as lists: JSON gives lists back, so a config must hold
    lists to compare equal to itself saved and reloaded."""
    for name in names:
        setattr(config, name, list(getattr(config, name)))


def _check_one_entry_per_stage(config: PreTrainedConfig, first: str, second: str) -> None:
    """The per-stage fields `first` and `second` of a tower config describe the same stages: a longer one would
    silently lose its extra entries."""
    first_value, second_value = getattr(config, first), getattr(config, second)
    if len(first_value) != len(second_value):
        raise ValueError(
            f"{config.base_config_key}: {first} ({first_value}) and {second} ({second_value}) must have the same length"
        )


@strict
class UnivalVideoConfig(PreTrainedConfig):
    r"""
    Configuration of the 3D ResNeXt video tower (Hara et al., kenshohara/3D-ResNets) used by UnIVAL.

    The stem is a 7x7x7 convolution with stride (1, 2, 2), BatchNorm, ReLU and a 3x3x3 max-pool with stride 2;
    then one stage per entry of `depths`, made of ResNeXt bottlenecks (1x1x1 conv, grouped 3x3x3 conv,
    1x1x1 conv, each followed by BatchNorm; shortcut = 1x1x1 conv + BatchNorm where the shape changes).
    The first stage has stride 1, the others stride 2 in time, height and width.

    Args:
        num_channels (`int`, defaults to 3): input channels.
        embedding_size (`int`, defaults to 64): channels of the stem.
        hidden_sizes (`tuple[int]`, defaults to `(256, 512, 1024, 2048)`): output channels of each stage. The
            bottleneck width of a stage is `cardinality * ((hidden_size // expansion) // 32)`, as in the original.
        depths (`tuple[int]`, defaults to `(3, 4, 23, 3)`): blocks per stage. The original's `resnext50`
            option is the three-stage `(3, 4, 6)` with hidden sizes `(256, 512, 1024)`; the released
            `all_resnext101` tower is the default.
        cardinality (`int`, defaults to 32): groups of the 3x3x3 convolution.
        expansion (`int`, defaults to 2): ratio between a stage's output channels and its "planes".
        batch_norm_eps (`float`, defaults to 1e-5): BatchNorm epsilon.
    """

    model_type = "unival_video"
    base_config_key = "video_config"

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list[int] | tuple[int, ...] = (256, 512, 1024, 2048)
    depths: list[int] | tuple[int, ...] = (3, 4, 23, 3)
    cardinality: int = 32
    expansion: int = 2
    batch_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs):
        _store_as_lists(self, "hidden_sizes", "depths")
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        _check_one_entry_per_stage(self, "hidden_sizes", "depths")
        for size in self.hidden_sizes:
            planes = size // self.expansion
            if planes < 32 or self.cardinality * (planes // 32) <= 0:
                raise ValueError(
                    f"video_config: hidden size {size} gives {planes} planes; the bottleneck width "
                    "cardinality * (planes // 32) needs at least 32 planes"
                )

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]


@strict
class UnivalAudioConfig(PreTrainedConfig):
    r"""
    Configuration of the PANN audio tower (Kong et al., 2020) used by UnIVAL, with its log-mel front end.

    The front end is part of the checkpoint: the STFT is a 1-D convolution with stored Hann-windowed DFT
    kernels (centred, reflect padding), the power spectrum is multiplied by a stored mel matrix and turned into
    decibels (`10 * log10(max(x, 1e-10))`). Then `bn0` normalises each mel bin and a stack of convolution blocks
    produces a (batch, channels, frames', mel') feature map.

    Args:
        sample_rate (`int`, defaults to 48000): sampling rate the mel matrix is built for.
        n_fft (`int`, defaults to 1024): STFT window and FFT size (the original's `window_size`).
        hop_length (`int`, defaults to 200): STFT hop (the original's `hop_size`; UnIVAL's scripts pass 200).
        num_mel_bins (`int`, defaults to 64): mel bins.
        f_min (`float`, defaults to 50.0) / f_max (`float`, defaults to 14000.0): mel filter-bank range.
        block_type (`str`, defaults to `"double_conv3x3"`): `"double_conv3x3"` (Cnn10, Cnn14: two 3x3 conv + BN
            + ReLU) or `"conv5x5"` (Cnn6: one 5x5 conv + BN + ReLU). Each block ends with an average pool.
        hidden_sizes (`tuple[int]`, defaults to Cnn14's `(64, 128, 256, 512, 1024, 2048)`): channels per block.
        pool_sizes (`tuple[int]`, defaults to `(2, 2, 2, 2, 2, 1)`): square average-pool size after each block.
        batch_norm_eps (`float`, defaults to 1e-5): BatchNorm epsilon.
        dropout (`float`, defaults to 0.2): dropout after every block (training only), as in the original.
    """

    model_type = "unival_audio"
    base_config_key = "audio_config"
    block_types: ClassVar[tuple[str, ...]] = ("double_conv3x3", "conv5x5")

    sample_rate: int = 48000
    n_fft: int = 1024
    hop_length: int = 200
    num_mel_bins: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    block_type: str = "double_conv3x3"
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    pool_sizes: list[int] | tuple[int, ...] = (2, 2, 2, 2, 2, 1)
    batch_norm_eps: float = 1e-5
    dropout: float | int = 0.2

    def __post_init__(self, **kwargs):
        _store_as_lists(self, "hidden_sizes", "pool_sizes")
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if self.block_type not in self.block_types:
            raise ValueError(f"audio_config: block_type must be one of {self.block_types}, got {self.block_type!r}")
        _check_one_entry_per_stage(self, "hidden_sizes", "pool_sizes")

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]


# The PANN variants the original offers (`--audio-encoder-name pann_cnn6|pann_cnn10|pann_cnn14`).
PANN_PRESETS = {
    "cnn6": {"block_type": "conv5x5", "hidden_sizes": (64, 128, 256, 512), "pool_sizes": (2, 2, 2, 2)},
    "cnn10": {"block_type": "double_conv3x3", "hidden_sizes": (64, 128, 256, 512, 1024), "pool_sizes": (2, 2, 2, 2, 2)},
    "cnn14": {
        "block_type": "double_conv3x3",
        "hidden_sizes": (64, 128, 256, 512, 1024, 2048),
        "pool_sizes": (2, 2, 2, 2, 2, 1),
    },
}

# The 3D ResNeXt variants the original offers (`--video-encoder-name resnext50|all_resnext101`).
RESNEXT3D_PRESETS = {
    "resnext50": {"depths": (3, 4, 6), "hidden_sizes": (256, 512, 1024)},
    "all_resnext101": {"depths": (3, 4, 23, 3), "hidden_sizes": (256, 512, 1024, 2048)},
}


class UnivalCheckpointNotFoundError(OSError):
    """A checkpoint name that is neither a folder nor reachable; the message says how to write a preset folder."""


@contextlib.contextmanager
def explain_missing_checkpoint(name):
    """Re-raises an `OSError` of `from_pretrained(name)`, where `name` is no local folder, with the UnIVAL presets
    and the command that writes one to a folder: no UnIVAL checkpoint has a hub name of its own, so a bare preset
    name (`"unival-base"`) is the likely mistake."""
    try:
        yield
    except UnivalCheckpointNotFoundError:
        raise
    except OSError as error:
        if not isinstance(name, (str, os.PathLike)) or os.path.isdir(name):
            raise
        preset = os.fspath(name) if os.fspath(name) in PRESETS else "unival-base"
        raise UnivalCheckpointNotFoundError(
            f"{error}\n\n{os.fspath(name)!r} is neither a local folder nor a checkpoint that can be reached. The UnIVAL "
            f"presets ({', '.join(PRESETS)}) are architectures, not downloads: write a randomly initialised one, with "
            f"its processor and generation config, to a folder with\n"
            f"    python -m modeling_unival.presets {preset} --out {os.fspath(name)}\n"
            f"(or `modeling_unival.save_preset({preset!r}, {os.fspath(name)!r})`) and load that folder, or pass the "
            "folder of a converted original checkpoint (`python -m hub_upload.convert`)."
        ) from error


@strict
class UnivalConfig(PreTrainedConfig):
    r"""
    Configuration of a UnIVAL encoder-decoder. The defaults are those of the original `unival_base`
    architecture (Shukor et al., 2023) with the flags every released run script passes; the towers default
    to ResNet-101 (image) only. Use [`UnivalConfig.from_preset`] for the released base model with all towers,
    or for a tiny model for tests.

    Args:
        vocab_size (`int`, defaults to 59457): BART's 50265 ids + 8192 `<code_i>` + 1000 `<bin_i>` tokens.
        d_model (`int`, defaults to 768): width of the transformer.
        encoder_layers / decoder_layers (`int`, defaults to 6): transformer layers.
        encoder_attention_heads / decoder_attention_heads (`int`, defaults to 12).
        encoder_ffn_dim / decoder_ffn_dim (`int`, defaults to 3072).
        activation_function (`str`, defaults to `"gelu"`): exact (erf) GELU.
        dropout (`float`, defaults to 0.1): dropout on embeddings and block outputs.
        attention_dropout (`float`, defaults to 0.0) / activation_dropout (`float`, defaults to 0.0).
        encoder_drop_path_rate / decoder_drop_path_rate (`float`, defaults to 0.1): stochastic depth, rising
            linearly from 0 at the first layer to this value at the last one.
        attn_scale_factor (`float`, defaults to 2.0): queries are scaled by `(head_dim * attn_scale_factor) ** -0.5`
            and so are the absolute position-bias queries.
        token_bucket_size (`int`, defaults to 256): relative-position buckets of text (`2 * size - 1` of them,
            log-spaced beyond `size / 2`).
        image_bucket_size (`int`, defaults to 42): side of the patch position grid; patch feature maps may be at
            most this many rows and columns.
        max_source_positions / max_target_positions (`int`, defaults to 1024): longest text input / output.
        scale_attn (`bool`, defaults to True): NormFormer LayerNorm on the attention output.
        scale_fc (`bool`, defaults to True): NormFormer LayerNorm between the FFN activation and `fc2`.
        scale_heads (`bool`, defaults to True): learned per-head gain on the attention output.
        scale_resids (`bool`, defaults to False): learned per-channel gain on the residual branch.
        layernorm_embedding (`bool`, defaults to True): LayerNorm on the token embeddings (encoder and decoder).
        patch_layernorm_embedding (`bool`, defaults to True): LayerNorm on the projected patch embeddings.
        entangle_position_embedding (`bool`, defaults to False): also add the position embeddings (before their
            LayerNorm) to the token and patch embeddings, in the encoder and the decoder (the original's
            `--entangle-position-embedding` without `--disable-entangle`). The released models carry positions
            only as attention biases; adding them helps a small model trained from scratch learn locations.
        add_type_embedding (`bool`, defaults to True): add a learned type embedding (0 text, 1 patch).
        layer_norm_eps (`float`, defaults to 1e-5).
        init_std (`float`, defaults to 0.02): standard deviation of the normal initialisation of the transformer's
            linear and embedding weights (BART's value, made for d_model = 768). A small model trained from scratch
            needs about `d_model ** -0.5`: at d_model = 128 and 0.02 the attention logits start near zero and tasks
            that compare two inputs (text-image matching, "is X the same as Y?") stay at chance for thousands of
            steps (`examples/probe_learnability.py --probe compare`).
        sample_patch_num (`int`, *optional*): during training only, keep a random subset of this many patch
            tokens per sample when there are more (the original also did this at inference, which we do not).
        label_smoothing (`float`, defaults to 0.1): label smoothing of the training loss (fairseq's formula).
        image_config (`ResNetConfig` or `dict`): the image tower (ResNet-101 by default).
        video_config (`UnivalVideoConfig` or `dict`, *optional*): the video tower; `None` for none.
        audio_config (`UnivalAudioConfig` or `dict`, *optional*): the audio tower; `None` for none.
    """

    model_type = "unival"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["past_key_values"]
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }
    sub_configs_defaults = {
        "image_config": SubConfigSpec(
            config_class=ResNetConfig,
            init_kwargs={"depths": RESNET_DEPTHS["resnet101"], "hidden_sizes": (256, 512, 1024, 2048)},
        ),
        "video_config": SubConfigSpec(config_class=UnivalVideoConfig, optional=True),
        "audio_config": SubConfigSpec(config_class=UnivalAudioConfig, optional=True),
    }

    vocab_size: int = VOCAB_SIZE
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 12
    decoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    decoder_ffn_dim: int = 3072
    activation_function: str = "gelu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    encoder_drop_path_rate: float | int = 0.1
    decoder_drop_path_rate: float | int = 0.1
    attn_scale_factor: float | int = 2.0
    token_bucket_size: int = 256
    image_bucket_size: int = 42
    max_source_positions: int = 1024
    max_target_positions: int = 1024
    scale_attn: bool = True
    scale_fc: bool = True
    scale_heads: bool = True
    scale_resids: bool = False
    layernorm_embedding: bool = True
    patch_layernorm_embedding: bool = True
    entangle_position_embedding: bool = False
    add_type_embedding: bool = True
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    sample_patch_num: int | None = None
    label_smoothing: float | int = 0.1
    use_cache: bool = True
    pad_token_id: int | None = PAD_TOKEN_ID
    bos_token_id: int | None = BOS_TOKEN_ID
    eos_token_id: int | list[int] | None = EOS_TOKEN_ID
    decoder_start_token_id: int | None = BOS_TOKEN_ID
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True
    image_config: dict | PreTrainedConfig | None = None
    video_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Saved checkpoints carry the modeling code (see `register_for_auto_class` in `modeling_unival/__init__.py`);
        # this map tells `trust_remote_code=True` loading which class serves each Auto class.
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)

    def validate_architecture(self):
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if self.d_model % heads != 0:
                raise ValueError(f"d_model ({self.d_model}) must be divisible by {side}_attention_heads ({heads})")
        if self.token_bucket_size < 2 or self.token_bucket_size > self.max_source_positions:
            raise ValueError(
                f"token_bucket_size ({self.token_bucket_size}) must lie in [2, max_source_positions]"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.encoder_attention_heads

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "UnivalConfig":
        with explain_missing_checkpoint(pretrained_model_name_or_path):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "UnivalConfig":
        """Build a named configuration: `"unival-base"` (the released model: 768 dims, 6+6 layers, ResNet-101,
        four-stage 3D ResNeXt-101 and PANN Cnn14), `"unival-base-image"` (text and image only) or `"unival-tiny"`
        (a few-MB model with all three towers, for tests and the embedded demo). Keyword arguments override
        top-level fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown UnIVAL preset {name!r}; choose one of {sorted(PRESETS)}")
        kwargs = copy.deepcopy(PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)


PRESETS = {
    "unival-base": {
        "image_config": {"depths": RESNET_DEPTHS["resnet101"]},
        "video_config": dict(RESNEXT3D_PRESETS["all_resnext101"]),
        "audio_config": dict(PANN_PRESETS["cnn14"]),
    },
    "unival-base-image": {"image_config": {"depths": RESNET_DEPTHS["resnet101"]}},
    "unival-tiny": {
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "dropout": 0.0,
        "encoder_drop_path_rate": 0.0,
        "decoder_drop_path_rate": 0.0,
        "token_bucket_size": 32,
        "image_bucket_size": 16,
        "max_source_positions": 128,
        "max_target_positions": 64,
        "image_config": {"embedding_size": 8, "hidden_sizes": (16, 32, 32, 64), "depths": (1, 1, 1, 1)},
        "video_config": {"embedding_size": 8, "hidden_sizes": (64, 64), "depths": (1, 1), "cardinality": 4},
        "audio_config": {"block_type": "conv5x5", "hidden_sizes": (8, 16, 32, 64), "pool_sizes": (2, 2, 2, 2)},
    },
}


__all__ = [
    "UnivalConfig",
    "UnivalVideoConfig",
    "UnivalAudioConfig",
    "UnivalCheckpointNotFoundError",
    "PRESETS",
    "PANN_PRESETS",
    "RESNEXT3D_PRESETS",
    "explain_missing_checkpoint",
]
