"""Video and audio towers of UnIVAL.

* [`UnivalVideoTower`]: the 3D ResNeXt of Hara et al. (three or four stages) that UnIVAL uses for video.
* [`UnivalAudioTower`]: the PANN CNNs of Kong et al. (Cnn6 / Cnn10 / Cnn14) with their log-mel front end.
* The image tower is `transformers.ResNetModel`; only its key names differ from the original's timm-style
  ResNet (`modeling_unival.conversion.tower_keys` maps them).

The towers are plain `nn.Module`s: the UnIVAL model owns them and initialises them through
[`init_tower_weights`], called from its `_init_weights`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.audio_utils import mel_filter_bank, window_function

from .configuration_unival import UnivalAudioConfig, UnivalVideoConfig


# ----------------------------------------------------------------------------------------------------------------
# Video: 3D ResNeXt
# ----------------------------------------------------------------------------------------------------------------


class UnivalResNeXt3DBottleneck(nn.Module):
    """
    One ResNeXt bottleneck in 3D: 1x1x1 conv -> grouped 3x3x3 conv (carries the stride) -> 1x1x1 conv, each
    followed by BatchNorm, ReLU after the first two and after the residual sum. Where the output shape differs
    from the input shape, the shortcut is a strided 1x1x1 conv + BatchNorm (the original's "shortcut type B");
    otherwise it is the identity.

    Input (batch, in_channels, T, H, W) -> output (batch, out_channels, T/stride, H/stride, W/stride) (rounded up).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, cardinality: int, stride: int, eps: float):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width, eps=eps)
        self.conv2 = nn.Conv3d(
            width, width, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm3d(width, eps=eps)
        self.conv3 = nn.Conv3d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            # `downsample.0` / `downsample.1`: the torchvision-style names the original checkpoints use.
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels, eps=eps),
            )
        else:
            self.downsample = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states if self.downsample is None else self.downsample(hidden_states)
        hidden_states = self.relu(self.bn1(self.conv1(hidden_states)))
        hidden_states = self.relu(self.bn2(self.conv2(hidden_states)))
        hidden_states = self.bn3(self.conv3(hidden_states))
        return self.relu(hidden_states + residual)


class UnivalVideoTower(nn.Module):
    """
    The 3D ResNeXt video tower (`resnext50`: three stages, 1024-d; `all_resnext101`: four stages, 2048-d).

    Stem: 7x7x7 conv with stride (1, 2, 2) and padding 3, BatchNorm, ReLU, 3x3x3 max-pool with stride 2 and
    padding 1. Then stage `i` (`layer{i}`, from 1) stacks `depths[i-1]` bottlenecks with `hidden_sizes[i-1]`
    output channels; the first block of every stage but the first has stride 2 in time, height and width.
    There is no pooling or classifier at the end: the tower returns the last stage's feature map, which UnIVAL
    flattens into patch tokens.

    Parameter names (`conv1`, `bn1`, `layer{i}.{j}.conv1` ... `downsample.1`) are those of the original, so an
    original checkpoint loads after stripping its prefix (see `modeling_unival.conversion.tower_keys`).
    """

    def __init__(self, config: UnivalVideoConfig):
        super().__init__()
        self.config = config
        eps = config.batch_norm_eps
        self.conv1 = nn.Conv3d(
            config.num_channels, config.embedding_size, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False
        )
        self.bn1 = nn.BatchNorm3d(config.embedding_size, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)

        self.stage_names = []
        in_channels = config.embedding_size
        for index, (out_channels, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
            # The original's bottleneck width: `cardinality * int(planes / 32)` with planes = out / expansion.
            width = config.cardinality * ((out_channels // config.expansion) // 32)
            blocks = []
            for block_index in range(depth):
                stride = 2 if (index > 0 and block_index == 0) else 1
                blocks.append(
                    UnivalResNeXt3DBottleneck(in_channels, out_channels, width, config.cardinality, stride, eps)
                )
                in_channels = out_channels
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)

    def forward(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pixel_values_videos (`torch.Tensor` of shape `(batch, channels, frames, height, width)`): normalised
                frames, channels first and then time (the original's layout).

        Returns:
            `torch.Tensor` of shape `(batch, hidden_sizes[-1], T', H', W')`: with n stages, H' = H / 2^(n+1)
            and W' = W / 2^(n+1) (rounded up by the conv arithmetic), T' = T / 2^n (the stem keeps time).
        """
        if pixel_values_videos.dim() != 5:
            raise ValueError(
                "UnivalVideoTower expects (batch, channels, frames, height, width), got shape "
                f"{tuple(pixel_values_videos.shape)}"
            )
        hidden_states = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values_videos))))
        for name in self.stage_names:
            hidden_states = getattr(self, name)(hidden_states)
        return hidden_states


# ----------------------------------------------------------------------------------------------------------------
# Audio: log-mel front end + PANN CNN
# ----------------------------------------------------------------------------------------------------------------


class UnivalLogMelSpectrogram(nn.Module):
    """
    PANN's log-mel front end: a centred STFT computed as a strided 1-D convolution with two stored kernels
    (the real and imaginary parts of a Hann-windowed DFT), the power spectrum, a stored mel matrix, and decibels
    `10 * log10(max(mel, 1e-10))` (reference 1, no `top_db` clipping).

    The kernels and the mel matrix are persistent buffers because the original checkpoints carry them and the
    outputs must match those exact values (recomputing with `torch.stft`, or a filter bank for another sampling
    rate, changes the results beyond the parity tolerance). [`reset_parameters`] recomputes them from the config.

    The computation always runs in float32 with autocast disabled, as in the original (a power spectrum easily
    overflows float16); the caller casts the result to the dtype of its convolutions.

    Input (batch, samples) -> output (batch, 1, 1 + samples // hop_length, num_mel_bins), float32.
    `samples` must exceed `n_fft // 2` (reflect padding needs it).
    """

    def __init__(self, config: UnivalAudioConfig):
        super().__init__()
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        self.sample_rate = config.sample_rate
        self.num_mel_bins = config.num_mel_bins
        self.f_min = config.f_min
        self.f_max = config.f_max
        num_bins = config.n_fft // 2 + 1
        # (frequency bins, 1, n_fft): Conv1d weights, one output channel per frequency bin.
        self.register_buffer("stft_kernel_real", torch.empty(num_bins, 1, config.n_fft), persistent=True)
        self.register_buffer("stft_kernel_imag", torch.empty(num_bins, 1, config.n_fft), persistent=True)
        # (frequency bins, mel bins)
        self.register_buffer("mel_filters", torch.empty(num_bins, config.num_mel_bins), persistent=True)
        # On the meta device (`from_pretrained`), the values come from the checkpoint or from `_init_weights`.
        if self.mel_filters.device.type != "meta":
            self.reset_parameters()

    def compute_buffers(self) -> dict[str, torch.Tensor]:
        """The front-end buffers as the original builds them, computed in float64 and returned in float32 (CPU).

        - Periodic Hann window (`scipy.signal.get_window("hann", n_fft, fftbins=True)`).
        - `stft_kernel_real[k, 0, n] = window[n] * cos(2 pi k n / n_fft)`,
          `stft_kernel_imag[k, 0, n] = -window[n] * sin(2 pi k n / n_fft)` (the DFT's exp(-2 pi i k n / N)).
        - The Slaney-style mel matrix of librosa's `filters.mel` (Slaney mel scale, area-normalised).
        """
        n_fft = self.n_fft
        window = window_function(n_fft, "hann", periodic=True).astype(np.float64)
        time = np.arange(n_fft)
        frequency = np.arange(n_fft // 2 + 1)[:, None]
        # Reduce k * n modulo n_fft before scaling: keeps the angle small, so float64 cos/sin stay exact.
        angle = 2.0 * np.pi * ((frequency * time[None, :]) % n_fft) / n_fft
        kernel_real = np.cos(angle) * window[None, :]
        kernel_imag = -np.sin(angle) * window[None, :]
        mel = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=self.num_mel_bins,
            min_frequency=float(self.f_min),
            max_frequency=float(self.f_max),
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
            dtype=np.float64,
        )
        return {
            "stft_kernel_real": torch.from_numpy(kernel_real[:, None, :]).float(),
            "stft_kernel_imag": torch.from_numpy(kernel_imag[:, None, :]).float(),
            "mel_filters": torch.from_numpy(mel).float(),
        }

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re)compute the buffers from the config. Uses `transformers.initialization.copy_`, so buffers already
        loaded from a checkpoint by `from_pretrained` (flagged `_is_hf_initialized`) are left alone."""
        for name, value in self.compute_buffers().items():
            buffer = getattr(self, name)
            init.copy_(buffer, value.to(device=buffer.device, dtype=buffer.dtype))

    def forward(self, audio_values: torch.Tensor) -> torch.Tensor:
        device_type = audio_values.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            waveform = audio_values.float()[:, None, :]  # (batch, 1, samples)
            padding = self.n_fft // 2
            waveform = F.pad(waveform, (padding, padding), mode="reflect")
            # (batch, frequency bins, frames)
            real = F.conv1d(waveform, self.stft_kernel_real.float(), stride=self.hop_length)
            imag = F.conv1d(waveform, self.stft_kernel_imag.float(), stride=self.hop_length)
            power = (real**2 + imag**2).transpose(1, 2)  # (batch, frames, frequency bins)
            mel = torch.matmul(power, self.mel_filters.float())  # (batch, frames, mel bins)
            log_mel = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return log_mel[:, None]  # (batch, 1, frames, mel bins)


class UnivalPannConvBlock(nn.Module):
    """
    One PANN convolution block followed by a square average pool (kernel = stride = `pool_size`, floor):

    * `"double_conv3x3"` (Cnn10, Cnn14): conv1 3x3 -> bn1 -> ReLU -> conv2 3x3 -> bn2 -> ReLU -> pool
    * `"conv5x5"` (Cnn6): conv1 5x5 -> bn1 -> ReLU -> pool

    Convolutions have no bias and "same" padding. (batch, C_in, T, F) -> (batch, C_out, T // pool, F // pool).
    """

    def __init__(self, in_channels: int, out_channels: int, block_type: str, pool_size: int, eps: float):
        super().__init__()
        kernel_size = 5 if block_type == "conv5x5" else 3
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=eps)
        if block_type == "double_conv3x3":
            self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels, eps=eps)
        else:
            self.conv2 = None
            self.bn2 = None
        self.pool_size = pool_size

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)))
        if self.conv2 is not None:
            hidden_states = F.relu(self.bn2(self.conv2(hidden_states)))
        if self.pool_size != 1:
            hidden_states = F.avg_pool2d(hidden_states, kernel_size=self.pool_size)
        return hidden_states


class UnivalAudioTower(nn.Module):
    """
    The PANN audio tower (Cnn6 / Cnn10 / Cnn14, see `PANN_PRESETS`): log-mel front end (`front_end`), `bn0`
    (BatchNorm over the mel bins), then `conv_block1` ... `conv_block{n}`, with dropout (`config.dropout`,
    0.2 in the original) after every block in training. No global pooling or classifier: the tower returns
    the feature map, which UnIVAL flattens into patch tokens (time-major).

    Not implemented: the original's SpecAugment (time/frequency masking applied in training only), and its
    unused classifier heads `fc1` / `fc_audioset`.

    The front end runs in float32 even when the rest of the tower runs in bfloat16/float16; its output is
    cast to the dtype of `bn0`, and that of `bn0` to the blocks' dtype.
    """

    def __init__(self, config: UnivalAudioConfig):
        super().__init__()
        self.config = config
        self.front_end = UnivalLogMelSpectrogram(config)
        self.bn0 = nn.BatchNorm2d(config.num_mel_bins, eps=config.batch_norm_eps)
        self.block_names = []
        in_channels = 1
        for index, (out_channels, pool_size) in enumerate(zip(config.hidden_sizes, config.pool_sizes)):
            name = f"conv_block{index + 1}"
            self.add_module(
                name,
                UnivalPannConvBlock(in_channels, out_channels, config.block_type, pool_size, config.batch_norm_eps),
            )
            self.block_names.append(name)
            in_channels = out_channels
        self.dropout = nn.Dropout(config.dropout)

    def reset_front_end(self) -> None:
        """Recompute the STFT kernels and the mel matrix from the config (see [`UnivalLogMelSpectrogram`])."""
        self.front_end.reset_parameters()

    def forward(self, audio_values: torch.Tensor) -> torch.Tensor:
        """
        Args:
            audio_values (`torch.Tensor` of shape `(batch, samples)`): raw mono waveform at `config.sample_rate`.

        Returns:
            `torch.Tensor` of shape `(batch, hidden_sizes[-1], frames', mel')`, where the STFT has
            `1 + samples // hop_length` frames and every block divides frames and mel bins by its pool size
            (floor).
        """
        if audio_values.dim() != 2:
            raise ValueError(f"UnivalAudioTower expects (batch, samples), got shape {tuple(audio_values.shape)}")
        hidden_states = self.front_end(audio_values)  # (batch, 1, frames, mel), float32
        # bn0 normalises each mel bin: move the mel axis to the channel position and back. Under a bf16/fp16 model
        # it stays in float32 with the front end (`UnivalPreTrainedModel.post_init`); the blocks take their dtype.
        hidden_states = self.bn0(hidden_states.to(self.bn0.weight.dtype).transpose(1, 3)).transpose(1, 3)
        hidden_states = hidden_states.to(self.conv_block1.conv1.weight.dtype)
        for name in self.block_names:
            hidden_states = self.dropout(getattr(self, name)(hidden_states))
        return hidden_states


# ----------------------------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def init_tower_weights(module: nn.Module) -> bool:
    """
    Initialise one module of a tower the way the original backbones do (meant to be called from
    `UnivalPreTrainedModel._init_weights`, which `transformers` applies to every submodule):

    * `Conv2d` / `Conv3d`: Kaiming normal (fan_out, ReLU), bias (if any) zero.
    * BatchNorm: weight 1, bias 0, running mean 0, running variance 1, `num_batches_tracked` 0.
    * [`UnivalLogMelSpectrogram`]: STFT kernels and mel matrix recomputed from the config.

    Uses the `transformers.initialization` helpers, which skip tensors already loaded from a checkpoint.
    Returns True when `module` was one of these kinds (so the caller can skip its own generic init).
    """
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            init.zeros_(module.bias)
        return True
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        if module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
        if module.running_mean is not None:
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
        if module.num_batches_tracked is not None:
            init.zeros_(module.num_batches_tracked)
        return True
    if isinstance(module, UnivalLogMelSpectrogram):
        module.reset_parameters()
        return True
    return False


__all__ = [
    "UnivalVideoTower",
    "UnivalAudioTower",
    "UnivalLogMelSpectrogram",
    "UnivalResNeXt3DBottleneck",
    "UnivalPannConvBlock",
    "init_tower_weights",
]
