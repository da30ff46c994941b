"""PyTorch UnIVAL: a unified image, video, audio and language encoder-decoder (Shukor et al., TMLR 2023).

UnIVAL is OFA's "unify transformer" (BART-sized, NormFormer extras) with one convolutional tower per modality.
What sets it apart from BART, and what this file has to reproduce exactly:

* Positions never enter the hidden states. They enter only as attention biases: an absolute bias
  `(W_q P)(W_k P)^T * s` computed once per forward pass from LayerNormed position embeddings `P` and shared by
  all layers, plus a learned relative bias per layer (1-D log-bucketed for text, 2-D for patches).
* The encoder input is `[patch tokens ; text tokens]`; patch tokens are a tower's flattened feature map projected
  to `d_model`.
* Queries are scaled by `(head_dim * attn_scale_factor) ** -0.5`, and every block has NormFormer's extra
  LayerNorms and a per-head gain.

Beyond the original, a batch may mix modalities: each sample is routed to its own tower and the patch blocks are
padded to the longest one with a mask, so that every sample's output equals running it alone.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from transformers import ResNetConfig
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.models.resnet.modeling_resnet import ResNetEmbeddings, ResNetEncoder
from transformers.utils import logging

from .configuration_unival import UnivalConfig, explain_missing_checkpoint
from .generation import UnivalGenerationMixin
from .ids import MODALITY_NAMES, Modality
from .towers import UnivalAudioTower, UnivalVideoTower, init_tower_weights


logger = logging.get_logger(__name__)


_MODALITY_INPUTS = {
    Modality.IMAGE: "pixel_values",
    Modality.VIDEO: "pixel_values_videos",
    Modality.AUDIO: "audio_values",
}
# Rank and layout of each modality's input tensor, for the error messages.
_MODALITY_LAYOUTS = {
    Modality.IMAGE: (4, "(num_images, channels, height, width)"),
    Modality.VIDEO: (5, "(num_videos, channels, frames, height, width)"),
    Modality.AUDIO: (2, "(num_clips, samples)"),
}


def _check_token_ids(token_ids: torch.Tensor, argument: str, vocab_size: int, ignore_index: int | None = None):
    """Refuses ids outside `[0, vocab_size)` (besides `ignore_index`), which the embedding or the loss would only
    report as an index error from inside torch. One min/max per tensor: the decoder runs it at every generation step,
    and skips it under `torch.compile`, whose steps only see tokens the model itself chose."""
    if token_ids.is_floating_point() or token_ids.dtype == torch.bool:
        raise TypeError(f"`{argument}` must be an integer tensor of token ids, got dtype {token_ids.dtype}")
    if token_ids.numel() == 0 or torch.compiler.is_compiling():
        return
    checked = token_ids if ignore_index is None else token_ids.masked_fill(token_ids.eq(ignore_index), 0)
    low, high = torch.aminmax(checked)
    if bool((low >= 0) & (high < vocab_size)):  # one host sync
        return
    offending = checked[(checked < 0) | (checked >= vocab_size)]
    allowed = f"0..{vocab_size - 1}" + (f" (or {ignore_index}, ignored)" if ignore_index is not None else "")
    raise ValueError(
        f"`{argument}` holds token ids outside the vocabulary ({offending.numel()} of them, from "
        f"{int(offending.min())} to {int(offending.max())}): ids must be in {allowed} "
        f"(config.vocab_size={vocab_size}). A converted checkpoint's vocabulary can be smaller than the processor's "
        "(a parity fixture has 1305 tokens): encode the inputs with the processor saved with the checkpoint"
    )


# ----------------------------------------------------------------------------------------------------------------
# Relative-position buckets
# ----------------------------------------------------------------------------------------------------------------


def token_relative_position_bucket(relative_position: torch.Tensor, bucket_size: int, max_distance: int) -> torch.Tensor:
    """Maps `query_position - key_position` to one of `2 * bucket_size - 1` buckets.

    Distances below `bucket_size // 2` get a bucket each; longer ones share log-spaced buckets up to
    `max_distance - 1`. Computed in float32 as the original, so that the buckets match its stored tables exactly.
    """
    mid = bucket_size // 2
    sign = torch.sign(relative_position)
    abs_position = torch.where(
        (relative_position < mid) & (relative_position > -mid),
        torch.full_like(relative_position, mid - 1),
        relative_position.abs(),
    )
    log_position = (
        torch.ceil(torch.log(abs_position / mid) / math.log((max_distance - 1) / mid) * (mid - 1)) + mid
    ).int()
    bucket = torch.where(abs_position <= mid, relative_position, log_position * sign).long()
    return bucket + bucket_size - 1


def patch_relative_position_bucket(query_ids: torch.Tensor, key_ids: torch.Tensor, bucket_size: int) -> torch.Tensor:
    """Relative 2-D bucket between patch position ids (`id = 1 + row * bucket_size + column`).

    query_ids: (..., Nq), key_ids: (..., Nk) -> (..., Nq, Nk) with values in [0, (2 * bucket_size - 1) ** 2).
    (The original's table has 3 extra rows for a class token that UnIVAL never uses.)
    """
    q_row, q_col = (query_ids - 1) // bucket_size, (query_ids - 1) % bucket_size
    k_row, k_col = (key_ids - 1) // bucket_size, (key_ids - 1) % bucket_size
    d_row = q_row.unsqueeze(-1) - k_row.unsqueeze(-2) + bucket_size - 1
    d_col = q_col.unsqueeze(-1) - k_col.unsqueeze(-2) + bucket_size - 1
    return d_row * (2 * bucket_size - 1) + d_col


def grid_position_ids(height: int, width: int, bucket_size: int, device=None) -> torch.Tensor:
    """Position ids `1 + row * bucket_size + column` of a row-major `height x width` grid, flattened."""
    rows = torch.arange(height, device=device).unsqueeze(1)
    cols = torch.arange(width, device=device).unsqueeze(0)
    return (1 + rows * bucket_size + cols).flatten()


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class UnivalEncoderOutput(BaseModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_patches + sequence_length, d_model)`):
        Encoder output after the final LayerNorm: patch tokens first, then text tokens.
    attention_mask (`torch.LongTensor` of shape `(batch_size, num_patches + sequence_length)`):
        1 for real positions, 0 for padding (padded text, padded or masked patches). The decoder's cross-attention
        uses this mask, not the text-only `attention_mask` of the inputs.
    position_embeddings (`torch.FloatTensor` of shape `(batch_size, num_patches + sequence_length, d_model)`):
        LayerNormed position embeddings of every encoder position; the keys of the decoder's cross-attention bias.
    """

    attention_mask: torch.LongTensor | None = None
    position_embeddings: torch.FloatTensor | None = None


@dataclass
class UnivalSeq2SeqModelOutput(Seq2SeqModelOutput):
    r"""
    encoder_attention_mask (`torch.LongTensor` of shape `(batch_size, num_patches + sequence_length)`):
        See [`UnivalEncoderOutput.attention_mask`].
    encoder_position_embeddings (`torch.FloatTensor` of shape `(batch_size, num_patches + sequence_length, d_model)`):
        See [`UnivalEncoderOutput.position_embeddings`].
    """

    encoder_attention_mask: torch.LongTensor | None = None
    encoder_position_embeddings: torch.FloatTensor | None = None


@dataclass
class UnivalSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    decoder_features (`torch.FloatTensor` of shape `(batch_size, target_length, d_model)`):
        Decoder output after its final LayerNorm, before the tied output projection.
    encoder_attention_mask / encoder_position_embeddings: see [`UnivalEncoderOutput`].
    """

    decoder_features: torch.FloatTensor | None = None
    encoder_attention_mask: torch.LongTensor | None = None
    encoder_position_embeddings: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def _linear_rates(max_rate: float, num_layers: int) -> list[float]:
    """Drop-path rate of each layer, rising linearly from 0 to `max_rate` (as `torch.linspace`, in plain Python so
    that models can be built on the meta device)."""
    return [max_rate * i / max(num_layers - 1, 1) for i in range(num_layers)]


class UnivalLayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` that also runs when its parameters stay in float32 under a bfloat16/float16 model (see
    `UnivalPreTrainedModel.post_init`): it then normalises in float32 and returns the input's dtype."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.dtype == self.weight.dtype:
            return super().forward(hidden_states)
        # Not left to torch's mixed-dtype kernel, which exists on CPU but not on every device.
        normalized = nn.functional.layer_norm(
            hidden_states.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        )
        return normalized.to(hidden_states.dtype)


class UnivalDropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `drop_prob` (training only)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        mask = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * mask / keep_prob

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    """Plain attention; `attention_mask` is an additive float bias (positions, causality and padding)."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _convolution_dtype(tower: nn.Module) -> torch.dtype:
    """The dtype a tower takes its input in: that of its convolutions (its norms may be float32 under bf16)."""
    return next(module.weight.dtype for module in tower.modules() if isinstance(module, nn.modules.conv._ConvNd))


def _cpu_convolves_natively(dtype: torch.dtype) -> bool:
    """Whether oneDNN convolves `dtype` on this CPU. Without AVX-512 (or AMX) it does not, and torch falls back to
    `_slow_conv2d_forward`: the released image tower then takes 93 s instead of 1 s for 8 images at 256 px."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    return check is None or not hasattr(torch.ops.mkldnn, check) or bool(getattr(torch.ops.mkldnn, check)())


def _warn_if_convolutions_are_emulated(tower: nn.Module, device: torch.device):
    dtype = _convolution_dtype(tower)
    if device.type == "cpu" and not _cpu_convolves_natively(dtype):
        logger.warning_once(
            f"this CPU has no native {dtype} convolutions (no AVX-512 / AMX), so the towers' convolutions run on "
            "torch's slow reference kernel, about 100x slower than float32; its emulated reduced-precision matrix "
            "products are also slower than float32 beyond one row. Use float32 on this machine, or keep the towers "
            "in float32 (`model.model.encoder.image_tower.float()`, likewise video_tower and audio_tower)."
        )


class UnivalAttention(nn.Module):
    """Multi-head attention whose mask argument carries UnIVAL's position bias, with an optional per-head gain
    (`c_attn`, NormFormer's "scale_heads") applied to each head's output before `out_proj`."""

    def __init__(self, config: UnivalConfig, num_heads: int, layer_idx: int | None = None):
        super().__init__()
        self.config = config
        self.embed_dim = config.d_model
        self.num_heads = num_heads
        self.head_dim = self.embed_dim // num_heads
        self.scaling = (self.head_dim * config.attn_scale_factor) ** -0.5
        self.dropout = config.attention_dropout
        self.layer_idx = layer_idx
        # The bias always arrives as a float mask, so SDPA must never infer causality on its own.
        self.is_causal = False

        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.c_attn = nn.Parameter(torch.ones(num_heads)) if config.scale_heads else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states: (batch, q_len, dim); attention_bias: broadcastable to (batch, heads, q_len, kv_len)."""
        is_cross_attention = key_value_states is not None
        batch_size, q_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch_size, q_len, -1, self.head_dim).transpose(1, 2)

        layer_cache, is_updated = None, False
        if cache is not None:
            if isinstance(cache, EncoderDecoderCache):
                is_updated = cache.is_updated.get(self.layer_idx, False)
                layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
            else:
                layer_cache = cache

        if is_cross_attention and is_updated:
            # The encoder output does not change during generation: its keys/values were cached at the first step.
            key = layer_cache.layers[self.layer_idx].keys
            value = layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            kv_shape = (batch_size, source.shape[1], -1, self.head_dim)
            key = self.k_proj(source).view(kv_shape).transpose(1, 2)
            value = self.v_proj(source).view(kv_shape).transpose(1, 2)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention:
                    cache.is_updated[self.layer_idx] = True

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_bias.to(query.dtype),
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        # attn_output: (batch, q_len, heads, head_dim)
        if self.c_attn is not None:
            attn_output = attn_output * self.c_attn.to(attn_output.dtype).unsqueeze(-1)
        attn_output = attn_output.reshape(batch_size, q_len, self.embed_dim)
        return self.out_proj(attn_output), attn_weights


class UnivalFeedForward(nn.Module):
    """fc1 -> activation -> (NormFormer LayerNorm) -> fc2."""

    def __init__(self, config: UnivalConfig, ffn_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.ffn_layernorm = UnivalLayerNorm(ffn_dim, eps=config.layer_norm_eps) if config.scale_fc else None
        self.fc2 = nn.Linear(ffn_dim, config.d_model)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        if self.ffn_layernorm is not None:
            hidden_states = self.ffn_layernorm(hidden_states)
        return self.fc2(hidden_states)


class UnivalResidualLayer(GradientCheckpointingLayer):
    """What the encoder and decoder layers share: how a branch (an attention or the feed-forward) rejoins the
    residual stream. Subclasses set `dropout`, `drop_path`, `mlp`, `final_layer_norm` and `w_resid`."""

    def _rejoin(
        self,
        residual: torch.Tensor,
        branch: torch.Tensor,
        branch_norm: nn.Module | None = None,
        residual_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """NormFormer's LayerNorm on the branch output (`branch_norm`, with `scale_attn`), dropout, then the residual
        (times `residual_scale`, with `scale_resids`) plus the drop-path'ed branch."""
        if branch_norm is not None:
            branch = branch_norm(branch)
        branch = nn.functional.dropout(branch, p=self.dropout, training=self.training)
        if residual_scale is not None:
            residual = residual * residual_scale
        return residual + self.drop_path(branch)

    def _feed_forward_branch(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last sub-block of every layer: pre-LN feed-forward, rejoined with the `w_resid`-scaled residual."""
        return self._rejoin(hidden_states, self.mlp(self.final_layer_norm(hidden_states)), residual_scale=self.w_resid)


class UnivalEncoderLayer(UnivalResidualLayer):
    """Pre-LN block: self-attention (+ NormFormer LN), then feed-forward; each branch with dropout and drop-path."""

    def __init__(self, config: UnivalConfig, drop_path_rate: float):
        super().__init__()
        dim = config.d_model
        self.self_attn = UnivalAttention(config, config.encoder_attention_heads)
        self.self_attn_layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.attn_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.scale_attn else None
        self.final_layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = UnivalFeedForward(config, config.encoder_ffn_dim)
        self.w_resid = nn.Parameter(torch.ones(dim)) if config.scale_resids else None
        self.dropout = config.dropout
        self.drop_path = UnivalDropPath(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor, attention_bias: torch.Tensor, **kwargs) -> torch.Tensor:
        attention, _ = self.self_attn(self.self_attn_layer_norm(hidden_states), attention_bias, **kwargs)
        hidden_states = self._rejoin(hidden_states, attention, self.attn_ln)
        return self._feed_forward_branch(hidden_states)


class UnivalDecoderLayer(UnivalResidualLayer):
    """Pre-LN block: causal self-attention, cross-attention over the encoder, feed-forward (NormFormer LNs after
    both attentions)."""

    def __init__(self, config: UnivalConfig, drop_path_rate: float, layer_idx: int):
        super().__init__()
        dim = config.d_model
        self.self_attn = UnivalAttention(config, config.decoder_attention_heads, layer_idx=layer_idx)
        self.self_attn_layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.self_attn_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.scale_attn else None
        self.encoder_attn = UnivalAttention(config, config.decoder_attention_heads, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.cross_attn_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.scale_attn else None
        self.final_layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = UnivalFeedForward(config, config.decoder_ffn_dim)
        self.w_resid = nn.Parameter(torch.ones(dim)) if config.scale_resids else None
        self.dropout = config.dropout
        self.drop_path = UnivalDropPath(drop_path_rate)

    def forward(
        self,
        hidden_states: torch.Tensor,
        self_attention_bias: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cross_attention_bias: torch.Tensor,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attention, _ = self.self_attn(
            self.self_attn_layer_norm(hidden_states), self_attention_bias, cache=cache, **kwargs
        )
        hidden_states = self._rejoin(hidden_states, attention, self.self_attn_ln)
        attention, _ = self.encoder_attn(
            self.encoder_attn_layer_norm(hidden_states),
            cross_attention_bias,
            key_value_states=encoder_hidden_states,
            cache=cache,
            **kwargs,
        )
        hidden_states = self._rejoin(hidden_states, attention, self.cross_attn_ln)
        return self._feed_forward_branch(hidden_states)


class UnivalImageTower(nn.Module):
    """The image tower: `transformers`' ResNet stem and stages (the original's timm ResNet has exactly these
    modules), without a pooler. Plain modules rather than `ResNetModel`, so that the tower is not a nested
    `PreTrainedModel` with its own attention-implementation checks.

    pixel_values (batch, 3, H, W) -> feature map (batch, hidden_sizes[-1], H/32, W/32).
    """

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embedder(pixel_values)).last_hidden_state


class UnivalPositionBias(nn.Module):
    """The absolute part of UnIVAL's attention bias: `(W_q P_q + b_q) (W_k P_k + b_k)^T * s`, split into heads.

    `P_q`, `P_k` are LayerNormed position embeddings; `s = (head_dim * attn_scale_factor) ** -0.5`.

    With few queries (a decoding step) the key projection is the expensive part: projecting 250 encoder
    positions costs 250 * d^2 per step, more than the whole decoder layer stack. Folding `W_k` into the queries
    instead, `q_h W_kh P_k^T + q_h . b_kh`, costs `q_len * heads * k_len * d`; `forward` picks whichever of the two
    equal expressions is cheaper for the shapes at hand.
    """

    def __init__(self, config: UnivalConfig, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.scaling = (self.head_dim * config.attn_scale_factor) ** -0.5
        self.q_linear = nn.Linear(config.d_model, config.d_model)
        self.k_linear = nn.Linear(config.d_model, config.d_model)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """query_positions: (batch or 1, q_len, dim), key_positions: (batch or 1, k_len, dim)
        -> (batch, heads, q_len, k_len)."""
        dim = query_positions.shape[-1]
        query = self.q_linear(query_positions) * self.scaling
        query = query.view(*query.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, q, hd)
        if query_positions.shape[1] * (self.num_heads - 1) < dim:
            weight = self.k_linear.weight.view(self.num_heads, self.head_dim, dim)  # (H, hd, dim)
            folded = torch.einsum("bhqe,hed->bhqd", query, weight)  # (B or 1, H, q, dim)
            key_bias = torch.einsum("bhqe,he->bhq", query, self.k_linear.bias.view(self.num_heads, self.head_dim))
            return self._fold_keys(folded, key_positions) + key_bias.unsqueeze(-1)
        key = self.k_linear(key_positions)
        key = key.view(*key.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)
        return torch.matmul(query, key.transpose(-1, -2))

    @staticmethod
    def _fold_keys(folded: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """folded (B or 1, H, q, dim) x key_positions (B, k, dim) -> (B, H, q, k), as one matrix product per row
        (or one for the batch when the queries are shared): a broadcasting `matmul` would first copy the keys once
        per head, which in beam search is most of a decoding step."""
        batch, heads, q_len, dim = folded.shape
        if batch == 1:
            scores = torch.matmul(key_positions, folded.reshape(heads * q_len, dim).transpose(0, 1))  # (B, k, H*q)
            return scores.view(key_positions.shape[0], -1, heads, q_len).permute(0, 2, 3, 1)
        keys = key_positions.expand(batch, -1, -1).transpose(1, 2)  # (B, dim, k)
        return torch.bmm(folded.reshape(batch, heads * q_len, dim), keys).view(
            batch, heads, q_len, -1
        )


# ----------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# ----------------------------------------------------------------------------------------------------------------


@contextmanager
def _name_unreadable_weights(name, subfolder: str):
    """Re-raises safetensors' error on a truncated or corrupt weights file (`incomplete metadata, file not fully
    covered`), which does not say which file, as an `OSError` that names it."""
    try:
        yield
    except SafetensorError as error:
        raise OSError(
            f"{_unreadable_weights_file(name, subfolder)}: cannot read the weights ({error}). The file is truncated or "
            "corrupt, e.g. by an interrupted download or copy: download, copy or convert it again"
        ) from error


def _unreadable_weights_file(name, subfolder: str) -> str:
    """The first `.safetensors` file of a local checkpoint folder whose header safetensors refuses, else the
    checkpoint itself (a hub name, whose files the cache holds)."""
    if not isinstance(name, (str, os.PathLike)):
        return repr(name)
    folder = os.path.join(os.fspath(name), subfolder)
    if os.path.isdir(folder):
        for file_name in sorted(entry for entry in os.listdir(folder) if entry.endswith(".safetensors")):
            path = os.path.join(folder, file_name)
            try:
                with safe_open(path, framework="pt"):
                    pass
            except SafetensorError:
                return path
    return os.fspath(name)


class UnivalPreTrainedModel(PreTrainedModel):
    config_class = UnivalConfig
    config: UnivalConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "video", "audio", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["UnivalEncoderLayer", "UnivalDecoderLayer", "UnivalImageTower", "UnivalVideoTower", "UnivalAudioTower"]
    # Loading with `dtype=torch.bfloat16` / `torch.float16` keeps these in float32 (the non-strict list would do so
    # only for float16). The log-mel front end: its DFT kernels and mel matrix come from the checkpoint and must not
    # be rounded. `post_init` adds every LayerNorm and BatchNorm (see there).
    _keep_in_fp32_modules_strict = ["front_end"]
    _supports_sdpa = True
    _supports_flash_attn = False  # the position bias is an additive float mask
    _supports_flex_attn = False
    _can_compile_fullgraph = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        with _name_unreadable_weights(pretrained_model_name_or_path, kwargs.get("subfolder") or ""):
            with explain_missing_checkpoint(pretrained_model_name_or_path):
                return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def post_init(self):
        # Normalisation layers stay in float32 too: 0.1% of the parameters, whose bf16 rounding alone moves the
        # embedded default's teacher-forced log-probs by 0.0013 on average, against 0.0030 for all its weights. With
        # them in float32 the bf16 model's error is 10-15% lower on each of three trained models, and its bf16
        # greedy captions equal fp32's on 97 of 100 instead of 94 (the 2026-12-05 default, docs/benchmarks.md).
        # Torch's BatchNorm takes a bf16/fp16 input with float32 parameters (as under autocast); `UnivalLayerNorm`
        # handles the mixed case itself. Listed by path, since the norms' names vary.
        norms = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)
        norm_paths = [re.escape(name) for name, module in self.named_modules() if isinstance(module, norms)]
        if norm_paths:
            tensors = r"\.(weight|bias|running_mean|running_var)$"
            self._keep_in_fp32_modules_strict = [
                *type(self)._keep_in_fp32_modules_strict, rf"(^|\.)({'|'.join(norm_paths)}){tensors}"
            ]
        super().post_init()

    def _init_weights(self, module: nn.Module):
        std = self.config.init_std
        if init_tower_weights(module):
            return
        if isinstance(module, UnivalAttention):
            if module.c_attn is not None:
                init.ones_(module.c_attn)
        elif isinstance(module, (UnivalEncoderLayer, UnivalDecoderLayer)):
            if module.w_resid is not None:
                init.ones_(module.w_resid)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        else:
            super()._init_weights(module)


# ----------------------------------------------------------------------------------------------------------------
# Routing checks (media rows <-> samples)
# ----------------------------------------------------------------------------------------------------------------


def _infer_patch_types(given: dict[int, torch.Tensor], batch_size: int, device: torch.device) -> torch.Tensor:
    """`patch_types` (batch,) when omitted: only one modality input may be given, with one row per sample."""
    if len(given) > 1:
        raise ValueError(
            "several modality inputs were given without `patch_types`: pass `patch_types` (batch,) with "
            "-1 (no media), 0 (image), 1 (video) or 2 (audio) per sample"
        )
    ((patch_type, values),) = given.items()
    if values.shape[0] != batch_size:
        raise ValueError(
            f"`{_MODALITY_INPUTS[patch_type]}` has {values.shape[0]} rows for a batch of {batch_size}: "
            "pass `patch_types` to say which samples carry it"
        )
    return torch.full((batch_size,), patch_type, dtype=torch.long, device=device)


def _checked_patch_types(
    patch_types: torch.Tensor, given: dict[int, torch.Tensor], batch_size: int, device: torch.device
) -> torch.Tensor:
    """A given `patch_types` as a long tensor on `device`, once checked against the batch and the media rows."""
    if not isinstance(patch_types, torch.Tensor) or patch_types.is_floating_point() or patch_types.dtype == torch.bool:
        raise TypeError("`patch_types` must be an integer tensor of shape (batch,)")
    if patch_types.shape != (batch_size,):
        raise ValueError(f"`patch_types` must have shape ({batch_size},), got {tuple(patch_types.shape)}")
    patch_types = patch_types.to(device=device, dtype=torch.long)
    allowed = (Modality.TEXT, Modality.IMAGE, Modality.VIDEO, Modality.AUDIO)
    if not torch.isin(patch_types, torch.tensor(allowed, device=device)).all():
        raise ValueError(f"`patch_types` values must be in {allowed}, got {patch_types.tolist()}")
    for patch_type, name in _MODALITY_INPUTS.items():
        count = int((patch_types == patch_type).sum())
        rows = given[patch_type].shape[0] if patch_type in given else 0
        if count != rows:
            raise ValueError(
                f"`patch_types` marks {count} sample(s) as {MODALITY_NAMES[patch_type]} but `{name}` has "
                f"{rows} row(s)"
            )
    return patch_types


def _checked_patch_masks(patch_masks: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor | None:
    """A given `patch_masks` as a bool tensor (batch,) on `device`."""
    if patch_masks is None:
        return None
    if not isinstance(patch_masks, torch.Tensor) or patch_masks.shape != (batch_size,):
        raise ValueError(
            f"`patch_masks` must be a tensor of shape ({batch_size},), got "
            f"{tuple(patch_masks.shape) if isinstance(patch_masks, torch.Tensor) else type(patch_masks).__name__}"
        )
    return patch_masks.to(device=device, dtype=torch.bool)


# ----------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------


class UnivalEncoder(UnivalPreTrainedModel):
    """Embeds text and patches, builds the position biases, and runs the transformer encoder layers.

    The towers live here (as in the original) so that one `get_encoder()` call covers everything `generate()`
    must run once before decoding.
    """

    def __init__(self, config: UnivalConfig):
        super().__init__(config)
        dim = config.d_model
        heads = config.encoder_attention_heads
        bucket = config.image_bucket_size
        num_patch_positions = bucket * bucket + 1  # id 0 is the original's (unused) class-token slot

        self.embed_tokens = nn.Embedding(config.vocab_size, dim, config.pad_token_id)
        self.type_embedding = nn.Embedding(2, dim) if config.add_type_embedding else None
        self.layernorm_embedding = (
            UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.layernorm_embedding else None
        )
        self.patch_layernorm_embedding = (
            UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.patch_layernorm_embedding else None
        )

        # Position embeddings (used only inside the attention bias). The text table has two spare rows, as the
        # original's (fairseq's padding offset, unused here since text positions count from 0).
        self.embed_positions = nn.Embedding(config.max_source_positions + 2, dim)
        self.pos_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.image_pos_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.position_bias = UnivalPositionBias(config, heads)

        self.image_tower = UnivalImageTower(config.image_config)
        self.image_proj = nn.Linear(config.image_config.hidden_sizes[-1], dim)
        self.embed_image_positions = nn.Embedding(num_patch_positions, dim)
        if config.video_config is not None:
            self.video_tower = UnivalVideoTower(config.video_config)
            self.video_proj = nn.Linear(config.video_config.output_size, dim)
            self.embed_video_positions = nn.Embedding(num_patch_positions, dim)
        else:
            self.video_tower = self.video_proj = self.embed_video_positions = None
        if config.audio_config is not None:
            self.audio_tower = UnivalAudioTower(config.audio_config)
            self.audio_proj = nn.Linear(config.audio_config.output_size, dim)
            self.embed_audio_positions = nn.Embedding(num_patch_positions, dim)
        else:
            self.audio_tower = self.audio_proj = self.embed_audio_positions = None

        drop_path_rates = _linear_rates(config.encoder_drop_path_rate, config.encoder_layers)
        self.layers = nn.ModuleList([UnivalEncoderLayer(config, rate) for rate in drop_path_rates])
        self.layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        # Per-layer relative-position tables: text (1-D buckets) and patches (2-D buckets; +3 unused class-token rows).
        self.token_rel_pos_tables = nn.ModuleList(
            [nn.Embedding(2 * config.token_bucket_size - 1, heads) for _ in range(config.encoder_layers)]
        )
        self.image_rel_pos_tables = nn.ModuleList(
            [nn.Embedding((2 * bucket - 1) ** 2 + 3, heads) for _ in range(config.encoder_layers)]
        )
        self.gradient_checkpointing = False
        self.post_init()

    # --- patch embedding per modality ------------------------------------------------------------------------------

    def _check_grid(self, height: int, width: int, argument: str):
        bucket = self.config.image_bucket_size
        if height > bucket or width > bucket:
            raise ValueError(
                f"`{argument}` gives a {height}x{width} feature map, but the position table holds at most "
                f"{bucket}x{bucket} patches (config.image_bucket_size): use a smaller input"
            )

    def embed_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values: (n, 3, H, W) -> features (n, h*w, C) row-major and their position ids (h*w,)."""
        # Media arrive in float32 from the processor; a bfloat16/float16 model takes them in its own dtype.
        _warn_if_convolutions_are_emulated(self.image_tower, pixel_values.device)
        features = self.image_tower(pixel_values.to(_convolution_dtype(self.image_tower)))
        _, _, height, width = features.shape
        self._check_grid(height, width, "pixel_values")
        ids = grid_position_ids(height, width, self.config.image_bucket_size, features.device)
        return features.flatten(2).transpose(1, 2), ids

    def embed_video(self, pixel_values_videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, T, H, W) -> features (n, t*h*w, C) in (time, row, column) order; every time slice reuses the
        same spatial ids (the original has no temporal position embedding)."""
        _warn_if_convolutions_are_emulated(self.video_tower, pixel_values_videos.device)
        features = self.video_tower(pixel_values_videos.to(_convolution_dtype(self.video_tower)))
        _, _, frames, height, width = features.shape
        self._check_grid(height, width, "pixel_values_videos")
        ids = grid_position_ids(height, width, self.config.image_bucket_size, features.device).repeat(frames)
        return features.flatten(2).transpose(1, 2), ids

    def embed_audio(self, audio_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, samples) -> features (n, N, C) time-major. The ids are the first N of a square grid of side
        ceil(sqrt(N)) (not the real frames x mel-bins grid), as in the original."""
        _warn_if_convolutions_are_emulated(self.audio_tower.conv_block1, audio_values.device)  # past the front end
        features = self.audio_tower(audio_values)
        num_tokens = features.shape[2] * features.shape[3]
        side = math.ceil(math.sqrt(num_tokens))
        self._check_grid(side, side, "audio_values")
        ids = grid_position_ids(side, side, self.config.image_bucket_size, features.device)[:num_tokens]
        return features.flatten(2).transpose(1, 2), ids

    def _modality_modules(self, patch_type: int):
        if patch_type == Modality.IMAGE:
            return self.embed_image, self.image_proj, self.embed_image_positions
        if patch_type == Modality.VIDEO:
            return self.embed_video, self.video_proj, self.embed_video_positions
        return self.embed_audio, self.audio_proj, self.embed_audio_positions

    def embed_patches(
        self,
        inputs: dict[int, torch.Tensor],
        patch_types: torch.Tensor,
        patch_masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Runs each modality's tower on its own samples and lays the patch blocks out per sample.

        Returns, with N the longest patch block of the batch:
            embeds (batch, N, dim), position embeddings after `image_pos_ln` (batch, N, dim),
            position ids (batch, N) (0 on padding), and a validity mask (batch, N) bool.
        """
        batch_size = patch_types.shape[0]
        dim = self.config.d_model
        blocks = []
        for patch_type, values in inputs.items():
            rows = (patch_types == patch_type).nonzero().squeeze(1)
            embed_fn, proj, position_table = self._modality_modules(patch_type)
            features, ids = embed_fn(values)
            ids = ids.unsqueeze(0).expand(features.shape[0], -1)
            if self.training and self.config.sample_patch_num is not None and ids.shape[1] > self.config.sample_patch_num:
                # Keep a random subset of patches per sample (training-time augmentation of the original).
                keep = torch.rand(ids.shape, device=ids.device).argsort(dim=1)[:, : self.config.sample_patch_num]
                keep = keep.sort(dim=1).values
                features = features.gather(1, keep.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
                ids = ids.gather(1, keep)
            # A tower may run in another dtype than the transformer (kept in float32 under a bf16 model).
            blocks.append((rows, proj(features.to(proj.weight.dtype)), ids, position_table(ids)))

        num_patches = max(block[1].shape[1] for block in blocks)
        reference = blocks[0][1]
        embeds = reference.new_zeros(batch_size, num_patches, dim)
        positions = reference.new_zeros(batch_size, num_patches, dim)
        position_ids = torch.zeros(batch_size, num_patches, dtype=torch.long, device=reference.device)
        valid = torch.zeros(batch_size, num_patches, dtype=torch.bool, device=reference.device)
        for rows, block_embeds, block_ids, block_positions in blocks:
            length = block_embeds.shape[1]
            embeds[rows, :length] = block_embeds.to(embeds.dtype)
            positions[rows, :length] = block_positions.to(positions.dtype)
            position_ids[rows, :length] = block_ids
            valid[rows, :length] = True
        if patch_masks is not None:
            valid = valid & patch_masks.unsqueeze(1)

        embeds = self._finish_embeddings(embeds, positions, 1, self.patch_layernorm_embedding)
        return embeds, self.image_pos_ln(positions), position_ids, valid

    def _finish_embeddings(
        self, embeds: torch.Tensor, raw_positions: torch.Tensor, type_id: int, layer_norm: nn.LayerNorm | None
    ) -> torch.Tensor:
        """What text (type 0) and patch (type 1) embeddings share: + the position embeddings before their LayerNorm
        when entangled, + the type embedding, LayerNorm."""
        if self.config.entangle_position_embedding:
            embeds = embeds + raw_positions
        if self.type_embedding is not None:
            embeds = embeds + self.type_embedding.weight[type_id]
        if layer_norm is not None:
            embeds = layer_norm(embeds)
        return embeds

    # --- input checks ----------------------------------------------------------------------------------------------

    def _text_padding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Checks the text inputs; returns their padding (batch, sequence_length), True on padding."""
        if input_ids is None:
            raise ValueError("`input_ids` is required: UnIVAL's encoder always reads a text prompt")
        if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise TypeError("`input_ids` must be an integer tensor of shape (batch, sequence_length)")
        if input_ids.ndim != 2:
            raise ValueError(f"`input_ids` must have shape (batch, sequence_length), got {tuple(input_ids.shape)}")
        _check_token_ids(input_ids, "input_ids", self.embed_tokens.num_embeddings)
        if input_ids.shape[1] > self.config.max_source_positions:
            raise ValueError(
                f"`input_ids` has {input_ids.shape[1]} positions, more than max_source_positions="
                f"{self.config.max_source_positions}: truncate the prompt"
            )
        if attention_mask is None:
            return input_ids.eq(self.config.pad_token_id)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"`attention_mask` must have the shape of `input_ids` {tuple(input_ids.shape)}, got "
                f"{tuple(attention_mask.shape)}"
            )
        return attention_mask.eq(0)

    def _check_modality_input(self, patch_type: int, values: torch.Tensor):
        """Type, layout, channels and finiteness of one modality's tensor, and that the model has its tower."""
        name = _MODALITY_INPUTS[patch_type]
        rank, layout = _MODALITY_LAYOUTS[patch_type]
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(values).__name__}")
        if not values.is_floating_point():
            raise TypeError(
                f"`{name}` must be a floating-point tensor (torch.float32, as the processor returns it), got dtype "
                f"{values.dtype}: raw integer pixels or samples must first be rescaled and normalised, which the "
                "processor does"
            )
        if values.ndim != rank:
            raise ValueError(f"`{name}` must have shape {layout}, got {tuple(values.shape)}")
        # A NaN or inf spreads through the tower's convolutions into every logit of its sample, silently.
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            raise ValueError(
                f"`{name}` holds {int((~finite).sum())} non-finite values (NaN or inf) out of {values.numel()}: "
                "media must be finite"
            )
        modality = MODALITY_NAMES[patch_type]
        if getattr(self, f"{modality}_tower") is None:
            raise ValueError(
                f"`{name}` was given, but this model has no {modality} tower (its config has no {modality}_config)"
            )
        if patch_type == Modality.IMAGE and values.shape[1] != self.config.image_config.num_channels:
            raise ValueError(
                f"`pixel_values` must have {self.config.image_config.num_channels} channels, "
                f"got shape {tuple(values.shape)}"
            )
        if patch_type == Modality.VIDEO and values.shape[1] != self.config.video_config.num_channels:
            raise ValueError(
                f"`pixel_values_videos` must have shape (num_videos, {self.config.video_config.num_channels}, frames, "
                f"height, width) (channels before frames), got {tuple(values.shape)}"
            )

    def _gather_modality_inputs(
        self,
        batch_size: int,
        device: torch.device,
        pixel_values: torch.Tensor | None,
        pixel_values_videos: torch.Tensor | None,
        audio_values: torch.Tensor | None,
        patch_types: torch.Tensor | None,
        patch_masks: torch.Tensor | None,
    ) -> tuple[dict[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None] | None]:
        """Checks the media inputs. Returns the given ones by modality and the routing `(patch_types (batch,) long,
        patch_masks (batch,) bool or None)`, or `({}, None)` for a text-only batch."""
        inputs = {
            Modality.IMAGE: pixel_values,
            Modality.VIDEO: pixel_values_videos,
            Modality.AUDIO: audio_values,
        }
        given = {patch_type: values for patch_type, values in inputs.items() if values is not None}
        for patch_type, values in given.items():
            self._check_modality_input(patch_type, values)
        if patch_types is None and not given:
            if patch_masks is not None:
                raise ValueError("`patch_masks` was given without any image, video or audio input")
            return {}, None
        if patch_types is None:
            patch_types = _infer_patch_types(given, batch_size, device)
        else:
            patch_types = _checked_patch_types(patch_types, given, batch_size, device)
        return given, (patch_types, _checked_patch_masks(patch_masks, batch_size, device))

    # --- forward ---------------------------------------------------------------------------------------------------

    def embed_text(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (batch, S) -> token embeddings (batch, S, dim) (scale 1.0, + type 0, LayerNorm) and the
        LayerNormed position embeddings (1, S, dim)."""
        raw_positions = self.embed_positions(torch.arange(input_ids.shape[1], device=input_ids.device)).unsqueeze(0)
        text_embeds = self._finish_embeddings(self.embed_tokens(input_ids), raw_positions, 0, self.layernorm_embedding)
        return text_embeds, self.pos_ln(raw_positions)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        audio_values: torch.FloatTensor | None = None,
        patch_types: torch.LongTensor | None = None,
        patch_masks: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UnivalEncoderOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): `<s> prompt </s>`, right-padded.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 1 for text tokens,
            0 for padding; derived from `pad_token_id` when omitted.
        pixel_values (`torch.FloatTensor` of shape `(num_images, 3, height, width)`, *optional*): the images of the
            samples whose `patch_types` is 0, in batch order.
        pixel_values_videos (`torch.FloatTensor` of shape `(num_videos, 3, frames, height, width)`, *optional*): the
            videos of the samples whose `patch_types` is 1.
        audio_values (`torch.FloatTensor` of shape `(num_clips, samples)`, *optional*): raw mono waveforms (48 kHz by
            default) of the samples whose `patch_types` is 2.
        patch_types (`torch.LongTensor` of shape `(batch_size,)`, *optional*): per sample -1 (text only), 0, 1 or 2.
            May be omitted when a single modality input has one row per sample.
        patch_masks (`torch.BoolTensor` of shape `(batch_size,)`, *optional*): False turns a sample's patch tokens
            into padding (the original's convention).
        """
        text_padding = self._text_padding(input_ids, attention_mask)
        batch_size = input_ids.shape[0]
        modality_inputs, routing = self._gather_modality_inputs(
            batch_size, input_ids.device, pixel_values, pixel_values_videos, audio_values, patch_types, patch_masks
        )
        text_embeds, text_positions = self.embed_text(input_ids)
        if modality_inputs:
            patch_embeds, patch_positions, patch_ids, patch_valid = self.embed_patches(modality_inputs, *routing)
            hidden_states = torch.cat([patch_embeds, text_embeds.to(patch_embeds.dtype)], dim=1)
            positions = torch.cat(
                [patch_positions, text_positions.expand(batch_size, -1, -1).to(patch_positions.dtype)], dim=1
            )
            padding = torch.cat([~patch_valid, text_padding], dim=1)
        else:
            patch_ids = None
            hidden_states, positions, padding = text_embeds, text_positions, text_padding
        # hidden_states, positions: (batch, N + S, dim) (positions (1, S, dim) for text-only); padding (batch, N + S)
        hidden_states = nn.functional.dropout(hidden_states, p=self.config.dropout, training=self.training)
        has_padding = bool(padding.any())
        if has_padding:
            hidden_states = hidden_states * (~padding).unsqueeze(-1).to(hidden_states.dtype)

        # Absolute part of the attention bias, shared by all layers, + key padding. positions has batch 1 for
        # text-only inputs, so without padding the bias stays (1, heads, L, L) and is broadcast over the batch by the
        # attention kernels instead of being materialised per sample.
        absolute_bias = self.position_bias(positions, positions)
        if has_padding:
            absolute_bias = absolute_bias.masked_fill(padding[:, None, None, :], torch.finfo(absolute_bias.dtype).min)
        hidden_states, all_hidden_states = self._run_layers(
            hidden_states, absolute_bias, input_ids.shape[1], patch_ids, output_hidden_states
        )
        return UnivalEncoderOutput(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attention_mask=(~padding).long(),
            position_embeddings=positions.expand(batch_size, -1, -1),
        )

    def _run_layers(
        self,
        hidden_states: torch.Tensor,
        absolute_bias: torch.Tensor,
        seq_len: int,
        patch_ids: torch.Tensor | None,
        output_hidden_states: bool | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The layers and the final LayerNorm, each layer with its own relative biases on top of `absolute_bias`.

        hidden_states (batch, N + S, dim); patch_ids (batch, N) or None without patches. Returns the output and,
        with `output_hidden_states`, every layer's input and the output.
        """
        positions = torch.arange(seq_len, device=hidden_states.device)
        text_buckets = token_relative_position_bucket(
            positions[:, None] - positions[None, :], self.config.token_bucket_size, self.config.max_source_positions
        )
        patch_buckets = None
        if patch_ids is not None:
            patch_buckets = patch_relative_position_bucket(patch_ids, patch_ids, self.config.image_bucket_size)
        all_hidden_states = () if output_hidden_states else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states = layer(hidden_states, self._layer_bias(idx, absolute_bias, text_buckets, patch_buckets))
        hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states

    def _layer_bias(
        self,
        layer_idx: int,
        absolute_bias: torch.Tensor,
        text_buckets: torch.Tensor,
        patch_buckets: torch.Tensor | None,
    ) -> torch.Tensor:
        """absolute_bias (batch, heads, N + S, N + S) + this layer's relative biases on the text-text block (buckets
        (S, S)) and on the patch-patch block (buckets (batch, N, N)); patch-text blocks get only the absolute part."""
        text_bias = self.token_rel_pos_tables[layer_idx].weight[text_buckets].permute(2, 0, 1)  # (heads, S, S)
        if patch_buckets is None:
            return absolute_bias + text_bias.to(absolute_bias.dtype)
        num_patches = patch_buckets.shape[1]
        patch_bias = self.image_rel_pos_tables[layer_idx].weight[patch_buckets].permute(0, 3, 1, 2)  # (B, heads, N, N)
        bias = absolute_bias.clone()
        bias[:, :, num_patches:, num_patches:] += text_bias.to(bias.dtype)
        bias[:, :, :num_patches, :num_patches] += patch_bias.to(bias.dtype)
        return bias


# ----------------------------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------------------------


class UnivalDecoder(UnivalPreTrainedModel):
    """Causal transformer decoder; positions enter only through the self- and cross-attention biases."""

    def __init__(self, config: UnivalConfig):
        super().__init__(config)
        dim = config.d_model
        heads = config.decoder_attention_heads
        self.embed_tokens = nn.Embedding(config.vocab_size, dim, config.pad_token_id)
        self.layernorm_embedding = (
            UnivalLayerNorm(dim, eps=config.layer_norm_eps) if config.layernorm_embedding else None
        )
        self.embed_positions = nn.Embedding(config.max_target_positions + 2, dim)
        self.pos_ln = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.self_position_bias = UnivalPositionBias(config, heads)
        self.cross_position_bias = UnivalPositionBias(config, heads)
        drop_path_rates = _linear_rates(config.decoder_drop_path_rate, config.decoder_layers)
        self.layers = nn.ModuleList(
            [UnivalDecoderLayer(config, rate, layer_idx=i) for i, rate in enumerate(drop_path_rates)]
        )
        self.layer_norm = UnivalLayerNorm(dim, eps=config.layer_norm_eps)
        self.token_rel_pos_tables = nn.ModuleList(
            [nn.Embedding(2 * config.token_bucket_size - 1, heads) for _ in range(config.decoder_layers)]
        )
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        encoder_position_embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`): `<s>` + target tokens (only the new
            tokens when `cache` holds the previous ones).
        encoder_hidden_states / encoder_attention_mask / encoder_position_embeddings: from [`UnivalEncoderOutput`].
        attention_mask (`torch.Tensor` of shape `(batch_size, past_length + target_length)`, *optional*): 1 for real
            tokens. When omitted and there is no cache, pad tokens of `input_ids` are masked as keys (as the original).
        """
        if input_ids.is_floating_point() or input_ids.ndim != 2:
            raise ValueError(
                f"`decoder_input_ids` must be an integer tensor of shape (batch, target_length), got "
                f"{input_ids.dtype} {tuple(input_ids.shape)}"
            )
        _check_token_ids(input_ids, "decoder_input_ids", self.embed_tokens.num_embeddings)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        # A dynamic cache returns the past and new keys; a static one (`cache_implementation="static"`) its whole
        # allocation, whose unwritten columns all lie after the newest query and are masked as the future. Under a
        # static cache `past_len` is a 0-d tensor (no host sync, nothing for `torch.compile` to specialise on), so the
        # new columns are selected with `query_columns` rather than sliced.
        past_len = cache.get_seq_length() if cache is not None else 0
        allocated = cache.get_max_length() if cache is not None else -1
        static = allocated > 0
        key_len = allocated if static else past_len + input_ids.shape[1]
        if key_len > self.config.max_target_positions:
            raise ValueError(
                f"the decoder input reaches {key_len} positions (past and new tokens, or a static cache's allocation), "
                f"more than max_target_positions={self.config.max_target_positions}: shorten "
                "`decoder_input_ids`/`labels` or `max_new_tokens`"
            )
        query_columns = torch.arange(input_ids.shape[1], device=input_ids.device) + past_len
        key_padding = self._key_padding(input_ids, attention_mask, past_len, key_len, static)
        position_ids = self._position_ids(attention_mask, key_len, static)
        hidden_states, key_positions = self.embed(input_ids, position_ids, query_columns)
        query_positions = key_positions.index_select(1, query_columns)
        self_bias = self._self_attention_bias(query_positions, key_positions, query_columns, key_padding)
        cross_bias = self._cross_attention_bias(
            query_positions, encoder_position_embeddings, encoder_attention_mask, static
        )
        hidden_states, all_hidden_states = self._run_layers(
            hidden_states, self_bias, encoder_hidden_states, cross_bias, query_columns, key_len, cache,
            output_hidden_states,
        )
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, cache=cache, hidden_states=all_hidden_states
        )

    def _position_ids(self, attention_mask: torch.Tensor | None, key_len: int, static: bool) -> torch.Tensor:
        """Decoder position of every key column: (batch or 1, key_len). Positions count from each row's first real
        token, so that a left-padded prompt (a batch of questions of different lengths, as the "prev_output" tasks
        put them in the decoder) sees the positions it would see alone. Only the absolute position bias moves with
        the shift: the relative bias depends on column differences, the same with or without the padding. Right
        padding (training targets) and no mask give 0..key_len-1 for every row, as the original. (Under a static
        cache the shift is always applied, without the host sync that tests whether there is one.)"""
        columns = torch.arange(key_len, device=self.embed_positions.weight.device)
        if attention_mask is None:
            return columns.unsqueeze(0)
        leading_pads = attention_mask.eq(0).long().cumprod(-1).sum(-1, keepdim=True)  # (batch, 1)
        if not static and not bool(leading_pads.any()):
            return columns.unsqueeze(0)
        return (columns.unsqueeze(0) - leading_pads).clamp(min=0)

    def embed(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, query_columns: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (batch, q_len), the new tokens, at key columns `query_columns` (q_len,); position_ids (batch or
        1, key_len) -> token embeddings after dropout (batch, q_len, dim) and the LayerNormed position embeddings of
        every key column (batch or 1, key_len, dim)."""
        raw_positions = self.embed_positions(position_ids)
        hidden_states = self.embed_tokens(input_ids)
        if self.config.entangle_position_embedding:
            hidden_states = hidden_states + raw_positions.index_select(1, query_columns)
        if self.layernorm_embedding is not None:
            hidden_states = self.layernorm_embedding(hidden_states)
        hidden_states = nn.functional.dropout(hidden_states, p=self.config.dropout, training=self.training)
        return hidden_states, self.pos_ln(raw_positions)

    def _self_attention_bias(
        self,
        query_positions: torch.Tensor,
        key_positions: torch.Tensor,
        query_columns: torch.Tensor,
        key_padding: torch.Tensor | None,
    ) -> torch.Tensor:
        """Absolute self-attention bias of the new queries over all keys, with the causal mask and key padding
        (batch, key_len) or None: positions (batch or 1, q_len / key_len, dim) -> (batch or 1, heads, q_len, key_len)."""
        bias = self.self_position_bias(query_positions, key_positions)
        columns = torch.arange(key_positions.shape[1], device=key_positions.device)
        masked = (columns[None, :] > query_columns[:, None]).unsqueeze(0)  # (1, q, key_len), True = masked
        if key_padding is not None:
            masked = masked | key_padding[:, None, :]
        return bias.masked_fill(masked.unsqueeze(1), torch.finfo(bias.dtype).min)

    def _cross_attention_bias(
        self,
        query_positions: torch.Tensor,
        encoder_position_embeddings: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        static: bool,
    ) -> torch.Tensor:
        """The new queries' positions (batch or 1, q_len, dim) vs the encoder's, already LayerNormed (batch, L, dim),
        with the encoder padding masked -> (batch, heads, q_len, L). Without padding the bias keeps batch size 1
        (broadcast by the kernels); a static cache always masks, without the host sync that tests for padding."""
        bias = self.cross_position_bias(query_positions.to(encoder_position_embeddings.dtype), encoder_position_embeddings)
        if static or not bool(encoder_attention_mask.all()):
            bias = bias.masked_fill(encoder_attention_mask.eq(0)[:, None, None, :], torch.finfo(bias.dtype).min)
        return bias

    def _run_layers(
        self,
        hidden_states: torch.Tensor,
        self_bias: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cross_bias: torch.Tensor,
        query_columns: torch.Tensor,
        key_len: int,
        cache: Cache | None,
        output_hidden_states: bool | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The layers and the final LayerNorm, each layer adding its relative bias to `self_bias`. Returns the output
        and, with `output_hidden_states`, every layer's input and the output."""
        columns = torch.arange(key_len, device=hidden_states.device)
        buckets = token_relative_position_bucket(
            query_columns[:, None] - columns[None, :],
            self.config.token_bucket_size,
            self.config.max_target_positions,
        )  # (q_len, key_len)
        all_hidden_states = () if output_hidden_states else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            relative = self.token_rel_pos_tables[idx].weight[buckets].permute(2, 0, 1).unsqueeze(0)  # (1, heads, q, keys)
            hidden_states = layer(
                hidden_states, self_bias + relative.to(self_bias.dtype), encoder_hidden_states, cross_bias, cache=cache
            )
        hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states

    def _key_padding(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        past_len: int | torch.Tensor,
        key_len: int,
        static: bool,
    ) -> torch.Tensor | None:
        """Padded keys (batch, key_len), True = padding; None where there is none, so that the bias keeps batch size
        1 and is broadcast. Without `attention_mask`, pad tokens are padding, known only without a cache. A static
        cache's mask covers the columns written so far; the rest are the future, masked as such."""
        if attention_mask is not None:
            width = attention_mask.shape[-1]
            if attention_mask.ndim != 2 or attention_mask.shape[0] != input_ids.shape[0] or width > key_len or (
                not static and width != key_len
            ):
                raise ValueError(
                    f"`decoder_attention_mask` must have shape ({input_ids.shape[0]}, {key_len}) (past and new "
                    f"tokens), got {tuple(attention_mask.shape)}"
                )
            if static:
                return nn.functional.pad(attention_mask.eq(0), (0, key_len - width), value=False)
            return None if bool(attention_mask.all()) else attention_mask.eq(0)
        if isinstance(past_len, int) and past_len == 0:
            pads = input_ids.eq(self.config.pad_token_id)
            if bool(pads.any()):
                return nn.functional.pad(pads, (0, key_len - pads.shape[1]), value=False)
        return None


# ----------------------------------------------------------------------------------------------------------------
# Full models
# ----------------------------------------------------------------------------------------------------------------


class UnivalModel(UnivalPreTrainedModel):
    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
    }

    def __init__(self, config: UnivalConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = UnivalEncoder(config)
        self.decoder = UnivalDecoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value
        self.decoder.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        audio_values: torch.FloatTensor | None = None,
        patch_types: torch.LongTensor | None = None,
        patch_masks: torch.BoolTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: UnivalEncoderOutput | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> UnivalSeq2SeqModelOutput:
        if kwargs.get("past_key_values") is not None and cache is None:
            cache = kwargs.pop("past_key_values")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                pixel_values_videos=pixel_values_videos,
                audio_values=audio_values,
                patch_types=patch_types,
                patch_masks=patch_masks,
                output_hidden_states=output_hidden_states,
            )
        elif not isinstance(encoder_outputs, UnivalEncoderOutput):
            raise TypeError(
                "`encoder_outputs` must be the UnivalEncoderOutput returned by `model.get_encoder()`: the decoder needs "
                "its `attention_mask` and `position_embeddings`"
            )
        if decoder_input_ids is None:
            raise ValueError("`decoder_input_ids` (or `labels`) is required")
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=encoder_outputs.attention_mask,
            encoder_position_embeddings=encoder_outputs.position_embeddings,
            attention_mask=decoder_attention_mask,
            cache=cache,
            use_cache=use_cache if use_cache is not None else self.config.use_cache,
            output_hidden_states=output_hidden_states,
        )
        return UnivalSeq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attention_mask=encoder_outputs.attention_mask,
            encoder_position_embeddings=encoder_outputs.position_embeddings,
        )


# How many of each position's highest logits `vocabulary_logits` recomputes in float32: the 2 x num_beams candidates
# beam search keeps per beam, for up to 16 beams.
REFINED_TOP_LOGITS = 32


def vocabulary_logits(lm_head: nn.Linear, hidden_states: torch.Tensor) -> torch.Tensor:
    """`lm_head(hidden_states)`; in bfloat16 / float16, returned in float32 with each position's `REFINED_TOP_LOGITS`
    highest logits recomputed in float32 from the same hidden state and weights.

    Why: a bf16 logit keeps 8 significant bits, so near a logit of 10 consecutive values are 0.0625 apart, and two
    candidates closer than that tie or swap. On the embedded default's held-out captions (logits 7-12), rounding the
    logits alone caused about 2 of every 3 greedy decisions that bf16 changed against float32. The other third comes
    from the weights' own rounding and stays. Recomputing the top candidates costs `REFINED_TOP_LOGITS` dot products
    per position, against the vocabulary's 59,457. Only the candidates that greedy and beam search can pick need
    the precision: the rest of the row enters only the softmax's normaliser, to which its rounding adds nothing
    measurable.
    """
    logits = lm_head(hidden_states)
    if logits.dtype not in (torch.bfloat16, torch.float16):
        return logits
    top = logits.topk(min(REFINED_TOP_LOGITS, logits.shape[-1]), dim=-1).indices  # (batch, length, k)
    # Under autocast the product below would be cast back to the reduced dtype.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        rows = lm_head.weight[top].float()  # (batch, length, k, d_model)
        exact = (rows @ hidden_states.float().unsqueeze(-1)).squeeze(-1)
    return logits.float().scatter(-1, top, exact)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """`labels` (target + `</s>`, -100 on ignored positions) -> decoder inputs `<s>` + target."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted.eq(-100), pad_token_id)


def label_smoothed_token_losses(log_probs: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """fairseq's label-smoothed NLL of every token: `(1 - eps - eps / (V - 1)) * nll + eps / (V - 1) * sum_v(-log p_v)`.
    `log_probs` are `labels.shape + (V,)`; every label must be a vocabulary index."""
    nll = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if epsilon <= 0:
        return nll
    eps_i = epsilon / (log_probs.shape[-1] - 1)
    return (1.0 - epsilon - eps_i) * nll + eps_i * -log_probs.sum(-1)


def supervised_positions(
    hidden_states: torch.Tensor, labels: torch.Tensor, label_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decoder features (num_targets, d), labels (num_targets,) and per-sample weights repeated per token
    (num_targets,) or None, at the positions whose label is not -100: what a loss needs to project to the
    vocabulary only where there is a target."""
    labels = labels.to(hidden_states.device)
    supervised = labels.ne(-100)
    weights = None
    if label_weights is not None:
        weights = label_weights.to(hidden_states.device).unsqueeze(-1).expand_as(labels)[supervised]
    return hidden_states[supervised], labels[supervised], weights


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    label_weights: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """fairseq's label-smoothed NLL, as the original trains with:

    `loss = (1 - eps - eps / (V - 1)) * nll + eps / (V - 1) * sum_v(-log p_v)` per target token, positions with
    label -100 ignored. `logits` are `labels.shape + (V,)`: (batch, length, V) or flat (tokens, V). `label_weights`
    scales each sample's tokens (VQA answer confidence): (batch,) for batched labels, or one weight per label. The
    sum is divided by `num_items_in_batch` when given (gradient accumulation / DDP), otherwise by the number of
    tokens.
    """
    log_probs = nn.functional.log_softmax(logits.float(), dim=-1)
    valid = labels.ne(-100)
    token_loss = label_smoothed_token_losses(log_probs, labels.masked_fill(~valid, 0), epsilon) * valid
    if label_weights is not None:
        weights = label_weights.to(token_loss.dtype)
        token_loss = token_loss * (weights.unsqueeze(-1) if weights.dim() < token_loss.dim() else weights)
    denominator = num_items_in_batch if num_items_in_batch is not None else valid.sum().clamp(min=1)
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(token_loss.device)
    return token_loss.sum() / denominator


class UnivalForConditionalGeneration(UnivalPreTrainedModel, UnivalGenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: UnivalConfig):
        super().__init__(config)
        self.model = UnivalModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_encoder(self, modality: str | None = None):
        if modality is None:
            return self.model.encoder
        return super().get_encoder(modality)

    def get_decoder(self):
        return self.model.decoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        audio_values: torch.FloatTensor | None = None,
        patch_types: torch.LongTensor | None = None,
        patch_masks: torch.BoolTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: UnivalEncoderOutput | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        label_weights: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool = True,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> UnivalSeq2SeqLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*): target tokens + `</s>`,
            -100 where no loss is wanted. `decoder_input_ids` default to `labels` shifted right behind `<s>`.
        label_weights (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): per-sample loss weights (the
            original's VQA answer confidences).
        return_logits (`bool`, defaults to True): with `return_logits=False`, `logits` is None; with `labels`, the
            output projection runs only at the supervised positions, for the loss (the same loss). In a multitask
            batch most target positions are padding (captions beside yes/no answers) and the vocabulary-sized
            projection dominates the step of a small model, so training steps use this (`UnivalTrainer`).
            Without `labels`, nothing is projected (a custom criterion projects `decoder_features` itself).
        logits_to_keep (`int`, defaults to 0): project only the last `logits_to_keep` positions (0: all). `generate()`
            passes 1, so that a decoder prompt (a VQA question) is not projected onto the vocabulary at every position.

        A model in bfloat16 or float16 returns float32 `logits`, its top candidates computed in float32
        ([`vocabulary_logits`]).
        """
        if kwargs.get("past_key_values") is not None and cache is None:
            cache = kwargs.pop("past_key_values")
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if labels is not None:
            # Before the shift: out-of-vocabulary labels would otherwise be reported as `decoder_input_ids`.
            _check_token_ids(labels, "labels", self.lm_head.out_features, ignore_index=-100)
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            audio_values=audio_values,
            patch_types=patch_types,
            patch_masks=patch_masks,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        projected = hidden_states[:, -logits_to_keep:] if logits_to_keep and labels is None else hidden_states
        logits = vocabulary_logits(self.lm_head, projected) if return_logits else None
        loss = None
        if labels is not None and logits is not None:
            loss = label_smoothed_cross_entropy(
                logits, labels.to(logits.device), self.config.label_smoothing, label_weights, num_items_in_batch
            )
        elif labels is not None:
            features, targets, weights = supervised_positions(hidden_states, labels, label_weights)
            loss = label_smoothed_cross_entropy(
                self.lm_head(features), targets, self.config.label_smoothing, weights, num_items_in_batch
            )
        return UnivalSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            decoder_features=outputs.last_hidden_state,
            encoder_attention_mask=outputs.encoder_attention_mask,
            encoder_position_embeddings=outputs.encoder_position_embeddings,
        )

    def score_candidates(
        self,
        candidates: list[list[int]],
        decoder_input_ids: torch.LongTensor,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: UnivalEncoderOutput | None = None,
        candidate_batch_size: int | None = None,
        **encoder_inputs,
    ) -> torch.FloatTensor:
        r"""
        The original's all-candidate scoring (SNLI-VE, VQA "allcand"): for every row, the summed log-probability of
        each candidate answer and its `</s>`, teacher-forced after the row's `<s>` + question and renormalised over
        the tokens the trie of all candidates allows. See [`~candidate_scoring.score_candidates`] for the arguments.

        ```python
        >>> candidates = [tokenizer(" " + a, add_special_tokens=False)["input_ids"] for a in ("yes", "no", "two")]
        >>> inputs = processor(task="vqa", question=questions, images=images, return_decoder_prompt=True,
        ...                    return_tensors="pt")
        >>> scores = model.score_candidates(candidates, **inputs)  # `<s>` + question prompts, left-padded
        >>> predicted = scores.argmax(-1)  # (batch_size,) candidate indices
        ```
        """
        from .candidate_scoring import score_candidates  # the scorer imports this module

        return score_candidates(
            self,
            candidates,
            decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            candidate_batch_size=candidate_batch_size,
            **encoder_inputs,
        )


__all__ = [
    "UnivalPreTrainedModel",
    "UnivalEncoder",
    "UnivalDecoder",
    "UnivalModel",
    "UnivalForConditionalGeneration",
    "UnivalEncoderOutput",
    "label_smoothed_cross_entropy",
    "label_smoothed_token_losses",
    "supervised_positions",
    "shift_tokens_right",
    "token_relative_position_bucket",
    "patch_relative_position_bucket",
]
