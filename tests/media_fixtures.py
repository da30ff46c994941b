"""Synthetic media files for the tests (no network, no data files): images with PIL, videos with PyAV, audio with
soundfile."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def make_image(height: int = 60, width: int = 90, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A random image of the given size."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def frame_value(index: int) -> int:
    """Grey level of frame `index` in the videos of `write_video` (distinct by 12 levels per frame, cycling)."""
    return 16 + (12 * index) % 220


def make_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 frames, frame `i` uniformly grey at `frame_value(i)`."""
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frames[index] = frame_value(index)
    return frames


_VIDEO_CODECS = {
    ".mp4": ("libx264", {"crf": "0", "preset": "ultrafast"}),
    ".mkv": ("libx264", {"crf": "0", "preset": "ultrafast"}),
    ".webm": ("libvpx-vp9", {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}),
    ".avi": ("mjpeg", {"q:v": "2"}),
}


def write_video(path, frames: np.ndarray, fps: int = 10) -> str:
    """Write (T, H, W, 3) uint8 frames to `path` with PyAV; the container follows the extension (.mp4 and .mkv:
    lossless H.264, .webm: lossless VP9, .avi: MJPEG)."""
    import av

    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    codec, options = _VIDEO_CODECS[suffix]
    height, width = frames.shape[1:3]
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_tone(seconds: float, sampling_rate: int, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone (mono, float64)."""
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def write_audio(path, waveform: np.ndarray, sampling_rate: int) -> str:
    """Write a waveform ((n,) or (n, channels)) with soundfile; the format follows the extension (.ogg: Vorbis)."""
    import soundfile

    path = os.fspath(path)
    subtype = "VORBIS" if path.lower().endswith(".ogg") else None
    soundfile.write(path, waveform, sampling_rate, subtype=subtype)
    return path


__all__ = ["frame_value", "make_frames", "make_image", "make_tone", "write_audio", "write_video"]
