"""Saved tiny UnIVAL checkpoints, media files and subprocess settings shared by the pipeline and hub tests."""

import contextlib
import os
import sys
import textwrap

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import GenerationConfig

from media_fixtures import make_frames, make_tone, write_audio, write_video
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from tiny import tiny_model


# The checkpoint's generation settings: exactly three new tokens, so that tests can see them applied.
CHECKPOINT_GENERATION = {"num_beams": 2, "max_new_tokens": 3, "min_new_tokens": 3, "early_stopping": True}
IMAGE_SIZE = (120, 90)  # (width, height) of the test image


def tiny_processor() -> UnivalProcessor:
    """A processor whose sizes fit the tiny model's position grid."""
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(size=128),
        video_processor=UnivalVideoProcessor(num_frames=8, crop_size=64),
        feature_extractor=UnivalFeatureExtractor(max_length=48000),
    )


def save_tiny_checkpoint(directory, seed: int = 0, **generation):
    """`model.save_pretrained` + `processor.save_pretrained` + a task `generation_config.json`; returns the model."""
    model = tiny_model(seed)
    config = model.config
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        **{**CHECKPOINT_GENERATION, **generation},
    )
    model.save_pretrained(directory)
    tiny_processor().save_pretrained(directory)
    return model


def write_media(folder) -> dict[str, str]:
    """A PNG (a red circle and a blue square on grey), an mp4 and a wav, written to `folder`."""
    folder = os.fspath(folder)
    image = Image.new("RGB", IMAGE_SIZE, (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 50, 50), fill=(220, 30, 30))
    draw.rectangle((70, 40, 110, 80), fill=(30, 60, 220))
    image.save(os.path.join(folder, "shapes.png"))
    frames = make_frames(12, height=72, width=96)
    frames[:, 20:40, 30:50] = np.array([30, 160, 60], dtype=np.uint8)
    return {
        "image": os.path.join(folder, "shapes.png"),
        "video": write_video(os.path.join(folder, "clip.mp4"), frames),
        "audio": write_audio(os.path.join(folder, "beep.wav"), make_tone(0.7, 16000, frequency=880.0), 16000),
    }


# Prepended to subprocess scripts: the UnIVAL packages cannot be imported.
BLOCK_PACKAGES = textwrap.dedent(
    """
    import sys
    for _name in ("modeling_unival", "processing", "training", "hub_upload"):
        sys.modules[_name] = None  # make the installed package unimportable
    """
)

# Prepended to subprocess scripts that talk to the local hub: any connection to a host other than the loopback
# address fails, so that a test can never reach the network.
LOOPBACK_ONLY = textwrap.dedent(
    """
    import socket
    _getaddrinfo = socket.getaddrinfo
    def _loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", None):
            raise OSError(f"test guard: connection to {host!r} refused (only 127.0.0.1 is allowed)")
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = _loopback_only
    """
)


@contextlib.contextmanager
def single_torch_thread():
    """Run torch on one thread. The tiny models' ops take microseconds; with several OpenMP threads on a busy machine,
    each op waits milliseconds for its threads (a forward pass of the tiny model: ~1 s on 2 threads, ~10 ms on 1)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def subprocess_env(tmp_path, **overrides) -> dict[str, str]:
    """Environment of a test subprocess: no proxies, caches and remote-code modules under `tmp_path`."""
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_CACHE=str(tmp_path / "hf_home" / "hub"),
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",  # see `single_torch_thread`
    )
    env.update(overrides)
    return env


PYTHON = sys.executable
