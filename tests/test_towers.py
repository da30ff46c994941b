"""Tests of the video and audio towers, their key maps (and the image tower's), initialisation, and the
tower parity fixtures (outputs of the original backbone modules)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import ResNetConfig, ResNetModel

from conftest import shared_path
from tower_layouts import original_audio_shapes, original_image_shapes, original_video_shapes, random_state_dict
from modeling_unival.configuration_unival import PANN_PRESETS, UnivalAudioConfig, UnivalVideoConfig
from modeling_unival.conversion import (
    audio_config_from_original,
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_tower_state_dict,
    convert_original_video_tower_key,
    video_config_from_original,
)
from modeling_unival.tower_parity import run_tower_parity, tower_tolerance
from modeling_unival.towers import UnivalAudioTower, UnivalLogMelSpectrogram, UnivalVideoTower, init_tower_weights




# ---------------------------------------------------------------------------------------------------------------
# Tiny configurations
# ---------------------------------------------------------------------------------------------------------------

VIDEO_CONFIGS = {
    "3stage": dict(embedding_size=8, hidden_sizes=(64, 64, 64), depths=(1, 2, 1), cardinality=4),
    "4stage": dict(embedding_size=8, hidden_sizes=(64, 64, 64, 128), depths=(1, 1, 2, 1), cardinality=4),
}
AUDIO_CONFIGS = {
    "cnn6": dict(block_type="conv5x5", hidden_sizes=(4, 8, 8, 16), pool_sizes=(2, 2, 2, 2)),
    "cnn10": dict(block_type="double_conv3x3", hidden_sizes=(4, 4, 8, 8, 16), pool_sizes=(2, 2, 2, 2, 2)),
    "cnn14": dict(block_type="double_conv3x3", hidden_sizes=(4, 4, 8, 8, 16, 16), pool_sizes=(2, 2, 2, 2, 2, 1)),
}


def randomize_batch_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so eval-mode tests see them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            if isinstance(submodule, torch.nn.modules.batchnorm._BatchNorm):
                size = submodule.num_features
                submodule.weight.copy_(1 + 0.1 * torch.randn(size, generator=generator))
                submodule.bias.copy_(0.1 * torch.randn(size, generator=generator))
                submodule.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                submodule.running_var.copy_(0.5 + torch.rand(size, generator=generator))


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def expected_video_shape(config: UnivalVideoConfig, batch: int, frames: int, height: int, width: int):
    t, h, w = frames, conv_out(height, 7, 2, 3), conv_out(width, 7, 2, 3)  # stem conv: stride (1, 2, 2)
    t, h, w = (conv_out(n, 3, 2, 1) for n in (t, h, w))  # max-pool
    for _ in config.hidden_sizes[1:]:  # strided stages (grouped 3x3x3 conv, padding 1)
        t, h, w = (conv_out(n, 3, 2, 1) for n in (t, h, w))
    return (batch, config.hidden_sizes[-1], t, h, w)


def expected_audio_shape(config: UnivalAudioConfig, batch: int, samples: int):
    frames, mels = 1 + samples // config.hop_length, config.num_mel_bins
    for pool in config.pool_sizes:
        frames, mels = frames // pool, mels // pool
    return (batch, config.hidden_sizes[-1], frames, mels)


# ---------------------------------------------------------------------------------------------------------------
# Video tower
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VIDEO_CONFIGS))
@pytest.mark.parametrize("size", [(4, 32, 32), (5, 33, 31), (1, 17, 24)])
def test_video_tower_shapes(variant, size):
    torch.manual_seed(0)
    config = UnivalVideoConfig(**VIDEO_CONFIGS[variant])
    tower = UnivalVideoTower(config).eval()
    video = torch.randn(2, 3, *size)
    with torch.no_grad():
        output = tower(video)
    assert output.shape == expected_video_shape(config, 2, *size)
    assert torch.isfinite(output).all()


def test_video_tower_layout_matches_original_variants():
    # Bottleneck widths and names of the released 4-stage ResNeXt-101, without allocating it.
    with torch.device("meta"):
        tower = UnivalVideoTower(UnivalVideoConfig())
    shapes = {key: tuple(value.shape) for key, value in tower.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7, 7)
    assert shapes["layer1.0.conv2.weight"] == (128, 4, 3, 3, 3)
    assert shapes["layer4.0.conv2.weight"] == (1024, 32, 3, 3, 3)
    assert shapes["layer4.2.conv3.weight"] == (2048, 1024, 1, 1, 1)
    assert shapes["layer3.22.bn3.running_var"] == (1024,)
    assert "layer1.0.downsample.0.weight" in shapes and "layer1.1.downsample.0.weight" not in shapes
    assert tower.conv1.stride == (1, 2, 2) and tower.layer2[0].conv2.stride == (2, 2, 2)


def test_video_tower_eval_determinism_and_batch_independence():
    torch.manual_seed(0)
    tower = UnivalVideoTower(UnivalVideoConfig(**VIDEO_CONFIGS["3stage"]))
    randomize_batch_norms(tower)
    tower.eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        first, second = tower(video), tower(video)
        alone = tower(video[1:])
    assert torch.equal(first, second)
    torch.testing.assert_close(first[1:], alone, atol=1e-5, rtol=1e-4)


def test_video_tower_gradients_in_train_mode():
    torch.manual_seed(0)
    tower = UnivalVideoTower(UnivalVideoConfig(**VIDEO_CONFIGS["4stage"])).train()
    output = tower(torch.randn(2, 3, 4, 32, 32))
    (output**2).mean().backward()
    for name, parameter in tower.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # Running statistics moved (BatchNorm in training mode).
    assert tower.bn1.num_batches_tracked.item() == 1


def test_video_tower_rejects_wrong_rank():
    tower = UnivalVideoTower(UnivalVideoConfig(**VIDEO_CONFIGS["3stage"]))
    with pytest.raises(ValueError, match="frames"):
        tower(torch.randn(2, 3, 32, 32))


# ---------------------------------------------------------------------------------------------------------------
# Audio tower
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(AUDIO_CONFIGS))
@pytest.mark.parametrize("samples", [48000, 48001, 12345])
def test_audio_tower_shapes(variant, samples):
    torch.manual_seed(0)
    config = UnivalAudioConfig(**AUDIO_CONFIGS[variant])
    tower = UnivalAudioTower(config).eval()
    with torch.no_grad():
        output = tower(0.1 * torch.randn(2, samples))
    assert output.shape == expected_audio_shape(config, 2, samples)
    assert torch.isfinite(output).all()


def test_audio_tower_one_second_clip_matches_original_token_grid():
    # The parity fixture's Cnn6 case: 48000 samples at hop 200 -> 241 frames -> 15 x 4 cells.
    config = UnivalAudioConfig(**{**AUDIO_CONFIGS["cnn6"], "hidden_sizes": (4, 4, 4, 8)})
    with torch.no_grad():
        output = UnivalAudioTower(config).eval()(torch.randn(1, 48000))
    assert output.shape == (1, 8, 15, 4)


def test_audio_front_end_layout_and_values():
    config = UnivalAudioConfig(n_fft=64, hop_length=16, num_mel_bins=8, sample_rate=16000, f_min=0.0, f_max=8000.0)
    front_end = UnivalLogMelSpectrogram(config)
    assert front_end.stft_kernel_real.shape == (33, 1, 64) and front_end.mel_filters.shape == (33, 8)
    waveform = torch.randn(2, 1000, dtype=torch.float64).float()
    log_mel = front_end(waveform)
    assert log_mel.shape == (2, 1, 1 + 1000 // 16, 8) and log_mel.dtype == torch.float32
    # Same numbers from torch.stft with a periodic Hann window (centred, reflect padding).
    spectrum = torch.stft(
        waveform.double(), n_fft=64, hop_length=16, window=torch.hann_window(64, periodic=True, dtype=torch.float64),
        center=True, pad_mode="reflect", return_complex=True,
    )
    power = spectrum.abs() ** 2  # (batch, bins, frames)
    reference = 10 * torch.log10(torch.clamp(power.transpose(1, 2) @ front_end.mel_filters.double(), min=1e-10))
    torch.testing.assert_close(log_mel[:, 0].double(), reference, atol=1e-3, rtol=1e-4)
    # Silence hits the 1e-10 floor: -100 dB.
    assert torch.allclose(front_end(torch.zeros(1, 1000)), torch.tensor(-100.0))


def test_audio_tower_eval_determinism_and_batch_independence():
    torch.manual_seed(0)
    tower = UnivalAudioTower(UnivalAudioConfig(**AUDIO_CONFIGS["cnn14"]))
    randomize_batch_norms(tower)
    tower.eval()
    audio = 0.1 * torch.randn(2, 24000)
    with torch.no_grad():
        first, second = tower(audio), tower(audio)
        alone = tower(audio[:1])
    assert torch.equal(first, second)
    torch.testing.assert_close(first[:1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["cnn6", "cnn14"])
def test_audio_tower_gradients_in_train_mode(variant):
    torch.manual_seed(0)
    tower = UnivalAudioTower(UnivalAudioConfig(**AUDIO_CONFIGS[variant])).train()
    output = tower(0.1 * torch.randn(2, 12000))
    (output**2).mean().backward()
    for name, parameter in tower.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # The front end is fixed: buffers, no parameters.
    assert not any(name.startswith("front_end.") for name, _ in tower.named_parameters())


def test_audio_tower_dropout_only_in_training():
    config = UnivalAudioConfig(**{**AUDIO_CONFIGS["cnn6"], "dropout": 0.5})
    tower = UnivalAudioTower(config)
    assert tower.dropout.p == 0.5
    audio = 0.1 * torch.randn(1, 12000)
    tower.eval()
    with torch.no_grad():
        assert torch.equal(tower(audio), tower(audio))


def test_audio_front_end_stays_float32_in_low_precision():
    torch.manual_seed(0)
    config = UnivalAudioConfig(**AUDIO_CONFIGS["cnn6"])
    reference_tower = UnivalAudioTower(config).eval()
    tower = UnivalAudioTower(config).eval()
    tower.load_state_dict(reference_tower.state_dict())
    tower.to(torch.bfloat16)
    audio = 0.1 * torch.randn(1, 12000)
    with torch.no_grad():
        # Large inputs would overflow a float16 power spectrum; the front end computes in float32.
        assert tower.front_end(audio.bfloat16() * 100).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert tower.front_end(audio).dtype == torch.float32
        output = tower(audio)
        reference = reference_tower(audio)
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), reference, atol=0.1, rtol=0.1)


def test_audio_tower_rejects_wrong_rank():
    tower = UnivalAudioTower(UnivalAudioConfig(**AUDIO_CONFIGS["cnn6"]))
    with pytest.raises(ValueError, match="samples"):
        tower(torch.randn(2, 1, 4000))


# ---------------------------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------------------------


def test_init_tower_weights_resets_everything():
    torch.manual_seed(0)
    tower = UnivalAudioTower(UnivalAudioConfig(**AUDIO_CONFIGS["cnn10"]))
    randomize_batch_norms(tower)
    for buffer in tower.front_end.buffers():
        buffer.fill_(3.0)
    with torch.no_grad():
        tower.conv_block3.conv1.weight.fill_(1.0)
    tower.apply(init_tower_weights)
    for name, value in tower.front_end.compute_buffers().items():
        assert torch.equal(getattr(tower.front_end, name), value), name
    for module in tower.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))
            assert module.num_batches_tracked.item() == 0
    weight = tower.conv_block3.conv1.weight  # kaiming normal, fan_out: std = sqrt(2 / (out * k * k))
    expected_std = (2.0 / (weight.shape[0] * weight.shape[2] * weight.shape[3])) ** 0.5
    assert abs(weight.std().item() / expected_std - 1) < 0.1
    assert init_tower_weights(torch.nn.Linear(2, 2)) is False


def test_init_tower_weights_after_meta_construction_and_respects_loaded_buffers():
    # transformers 5 builds models on the meta device, materialises them, then runs `_init_weights`.
    config = UnivalAudioConfig(**AUDIO_CONFIGS["cnn6"])
    with torch.device("meta"):
        tower = UnivalAudioTower(config)
    tower.to_empty(device="cpu")
    loaded = torch.full_like(tower.front_end.mel_filters, 0.5)
    tower.front_end.mel_filters.copy_(loaded)
    tower.front_end.mel_filters._is_hf_initialized = True  # what `from_pretrained` sets on loaded tensors
    tower.apply(init_tower_weights)
    assert torch.equal(tower.front_end.mel_filters, loaded)
    fresh = tower.front_end.compute_buffers()
    assert torch.equal(tower.front_end.stft_kernel_real, fresh["stft_kernel_real"])
    with torch.no_grad():
        assert torch.isfinite(tower.eval()(torch.randn(1, 8000))).all()

    with torch.device("meta"):
        video = UnivalVideoTower(UnivalVideoConfig(**VIDEO_CONFIGS["3stage"]))
    video.to_empty(device="cpu")
    video.apply(init_tower_weights)
    assert torch.equal(video.layer2[0].bn3.running_var, torch.ones(64))
    with torch.no_grad():
        assert torch.isfinite(video.eval()(torch.randn(1, 3, 4, 32, 32))).all()


# ---------------------------------------------------------------------------------------------------------------
# Key conversion from the original checkpoints
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VIDEO_CONFIGS))
def test_video_key_conversion_round_trip(variant):
    kwargs = VIDEO_CONFIGS[variant]
    config = UnivalVideoConfig(**kwargs)
    original = random_state_dict(
        original_video_shapes(kwargs["depths"], kwargs["hidden_sizes"], kwargs["cardinality"], 8, fc=True)
    )
    converted = convert_original_tower_state_dict(original, convert_original_video_tower_key)
    assert "fc.weight" not in converted and len(converted) == len(original) - 2
    tower = UnivalVideoTower(config)
    tower.load_state_dict(converted, strict=True)
    assert torch.equal(tower.layer1[0].downsample[1].running_var, original["layer1.0.downsample.1.running_var"])


@pytest.mark.parametrize("variant", sorted(AUDIO_CONFIGS))
def test_audio_key_conversion_round_trip(variant):
    config = UnivalAudioConfig(**AUDIO_CONFIGS[variant])
    original = random_state_dict(original_audio_shapes(config))
    converted = convert_original_tower_state_dict(original, convert_original_audio_tower_key)
    assert not any(key.startswith(("fc1.", "fc_audioset.")) for key in converted)
    tower = UnivalAudioTower(config)
    tower.load_state_dict(converted, strict=True)
    assert torch.equal(tower.front_end.mel_filters, original["logmel_extractor.melW"])
    assert torch.equal(tower.front_end.stft_kernel_imag, original["spectrogram_extractor.stft.conv_imag.weight"])
    assert torch.equal(tower.bn0.running_mean, original["bn0.running_mean"])


def timm_resnet_reference(state_dict: dict[str, torch.Tensor], config: ResNetConfig, pixels: torch.Tensor):
    """A functional timm-style ResNet (v1.5: stride on the 3x3 conv) on original-named weights."""

    def bn(x, prefix):
        return F.batch_norm(
            x, state_dict[f"{prefix}.running_mean"], state_dict[f"{prefix}.running_var"],
            state_dict[f"{prefix}.weight"], state_dict[f"{prefix}.bias"], training=False, eps=1e-5,
        )

    x = F.relu(bn(F.conv2d(pixels, state_dict["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, depth in enumerate(config.depths, start=1):
        for block in range(depth):
            p = f"layer{stage}.{block}"
            stride = 2 if (stage > 1 and block == 0) else 1
            out = F.relu(bn(F.conv2d(x, state_dict[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, state_dict[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, state_dict[f"{p}.conv3.weight"]), f"{p}.bn3")
            if f"{p}.downsample.0.weight" in state_dict:
                x = bn(F.conv2d(x, state_dict[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + x)
    return x


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(embedding_size=8, hidden_sizes=(16, 32, 32, 64), depths=(1, 2, 1, 1)),
        dict(embedding_size=16, hidden_sizes=(16, 32, 64, 64), depths=(2, 1, 1, 2)),
    ],
)
def test_image_key_conversion_round_trip_onto_resnet_model(kwargs):
    config = ResNetConfig(layer_type="bottleneck", **kwargs)
    original = random_state_dict(original_image_shapes(config))
    converted = convert_original_tower_state_dict(original, convert_original_image_tower_key)
    model = ResNetModel(config).eval()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    pixels = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        output = model(pixels).last_hidden_state
    torch.testing.assert_close(output, timm_resnet_reference(original, config, pixels), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("convert", "key"),
    [
        (convert_original_video_tower_key, "layer4.2.bn4.bias"),
        (convert_original_video_tower_key, "avgpool.weight"),
        (convert_original_audio_tower_key, "conv_block1.conv3.weight"),
        (convert_original_audio_tower_key, "spectrogram_extractor.stft.conv_real.bias"),
        (convert_original_image_tower_key, "layer1.0.se.fc1.weight"),
        (convert_original_image_tower_key, "layer0.0.conv1.weight"),
    ],
)
def test_key_conversion_rejects_unknown_keys(convert, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        convert(key)


def test_key_conversion_examples():
    assert convert_original_video_tower_key("layer4.2.bn3.bias") == "layer4.2.bn3.bias"
    assert convert_original_video_tower_key("fc.weight") is None
    assert convert_original_audio_tower_key("conv_block1.conv1.weight") == "conv_block1.conv1.weight"
    assert convert_original_audio_tower_key("logmel_extractor.melW") == "front_end.mel_filters"
    assert convert_original_audio_tower_key("fc_audioset.bias") is None
    assert convert_original_image_tower_key("conv1.weight") == "embedder.embedder.convolution.weight"
    assert (
        convert_original_image_tower_key("layer3.22.bn2.running_var")
        == "encoder.stages.2.layers.22.layer.1.normalization.running_var"
    )
    assert (
        convert_original_image_tower_key("layer1.0.downsample.1.num_batches_tracked")
        == "encoder.stages.0.layers.0.shortcut.normalization.num_batches_tracked"
    )
    assert convert_original_image_tower_key("fc.bias") is None


# ---------------------------------------------------------------------------------------------------------------
# Fixtures produced by the original
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_released_towers_fixture_parity():
    """Cnn14, Cnn10 and the 4-stage ResNeXt-101 against the original modules' outputs (10-25 s on 2 cores)."""
    folder = shared_path("fixtures", "towers")
    passed, total = run_tower_parity(folder, verbose=True)
    assert total > 0
    assert passed == total, f"tower parity: {passed}/{total} checks ok"


def test_tower_tolerance_is_the_readmes_absolute_or_relative_bound():
    """README: atol 1e-3 (audio) / 2e-3 (video), or |diff| <= 1e-4 * max|output| + 1e-3; the looser one applies."""
    assert tower_tolerance("video", 1.0) == pytest.approx(2e-3)  # 1e-4 + 1e-3 < 2e-3: the absolute bound
    assert tower_tolerance("video", 12.0) == pytest.approx(2.2e-3)  # above max|output| = 10 the relative one
    assert tower_tolerance("audio", 0.0) == pytest.approx(1e-3)
    # A Cnn14 feature map whose values reach 433: float32 round-off of that size is allowed, 0.0443.
    assert tower_tolerance("audio", 433.0) == pytest.approx(1e-4 * 433.0 + 1e-3)
    assert 0.04 <= tower_tolerance("audio", 433.0) < 0.05


def test_front_end_buffers_match_towers_fixture():
    folder = shared_path("fixtures", "towers")
    fixture = torch.load(folder / "towers.pt", weights_only=True)
    audio_entries = [entry for name, entry in fixture.items() if name != "_meta" and "model_name" in entry["config"]]
    assert audio_entries
    for entry in audio_entries:
        config = audio_config_from_original(entry["config"])
        computed = UnivalLogMelSpectrogram(config).compute_buffers()
        stored = entry["buffers"]
        # Stored in exact float32 here: recomputation agrees to float32 round-off.
        torch.testing.assert_close(computed["stft_kernel_real"], stored["spectrogram_extractor.stft.conv_real.weight"],
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(computed["stft_kernel_imag"], stored["spectrogram_extractor.stft.conv_imag.weight"],
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(computed["mel_filters"], stored["logmel_extractor.melW"], atol=1e-7, rtol=1e-5)


def load_parity_state_dict() -> dict[str, torch.Tensor]:
    folder = shared_path("fixtures", "parity")
    state_dict = torch.load(folder / "original_state_dict.pt", weights_only=True)
    return {key: (value.float() if value.is_floating_point() else value) for key, value in state_dict.items()}


def sub_state_dict(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def test_parity_fixture_towers_load_with_real_original_keys():
    """The parity fixture's towers (ResNet-50, 3-stage ResNeXt-3D, Cnn6) load strictly after conversion, and its
    float16-rounded front-end buffers are the rounded version of what `reset_front_end` computes."""
    folder = shared_path("fixtures", "parity")
    arguments = json.loads((folder / "original_args.json").read_text())
    state_dict = load_parity_state_dict()

    audio_config = audio_config_from_original(arguments["audio_cfg"])
    assert audio_config.block_type == PANN_PRESETS["cnn6"]["block_type"]
    audio = UnivalAudioTower(audio_config)
    original_audio = sub_state_dict(state_dict, "encoder.embed_audios.")
    audio.load_state_dict(convert_original_tower_state_dict(original_audio, convert_original_audio_tower_key))
    computed = audio.front_end.compute_buffers()
    for name, value in computed.items():
        stored = getattr(audio.front_end, name)
        # float16 rounding: at most half a float16 ulp, i.e. 2^-11 of the magnitude (plus subnormal slack).
        assert ((value - stored).abs() <= 2.0**-11 * value.abs() + 1e-7).all(), name

    video = UnivalVideoTower(video_config_from_original({"layers": [3, 4, 6], "cardinality": 32}))
    original_video = sub_state_dict(state_dict, "encoder.embed_videos.")
    video.load_state_dict(convert_original_tower_state_dict(original_video, convert_original_video_tower_key))

    image = ResNetModel(ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3]))
    original_image = sub_state_dict(state_dict, "encoder.embed_images.")
    result = image.load_state_dict(
        convert_original_tower_state_dict(original_image, convert_original_image_tower_key), strict=True
    )
    assert not result.missing_keys and not result.unexpected_keys
