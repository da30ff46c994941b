"""Rendering of synthetic media: shapes on canvases (PNG), moving shapes (MP4 via PyAV) and sound events (FLAC/WAV).

All drawing is aliasing-free (PIL without anti-aliasing), so every object pixel has exactly its palette colour in a
PNG and the tight pixel box of an object is known exactly. Rendering depends only on its arguments (no global RNG):
the same scene always gives byte-identical files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .vocab import BACKGROUNDS, COLOURS

# --------------------------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------------------------


def _star_points(n: int = 5, inner: float = 0.45) -> np.ndarray:
    pts = []
    for k in range(2 * n):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / n
        pts.append((r * math.cos(a), r * math.sin(a)))
    p = np.array(pts)
    p -= p.min(axis=0)
    return p / p.max(axis=0)  # normalised so the star exactly fills the unit box


_UNIT_POLYGONS = {
    "square": np.array([(0, 0), (1, 0), (1, 1), (0, 1)], float),
    "triangle": np.array([(0.5, 0), (1, 1), (0, 1)], float),
    "diamond": np.array([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)], float),
    "star": _star_points(),
    "cross": np.array(
        [(1 / 3, 0), (2 / 3, 0), (2 / 3, 1 / 3), (1, 1 / 3), (1, 2 / 3), (2 / 3, 2 / 3), (2 / 3, 1), (1 / 3, 1),
         (1 / 3, 2 / 3), (0, 2 / 3), (0, 1 / 3), (1 / 3, 1 / 3)],
        float,
    ),
}


@lru_cache(maxsize=4096)
def _shape_mask_cached(shape: str, w: int, h: int) -> bytes:
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse((0, 0, w - 1, h - 1), fill=255)
    else:
        pts = _UNIT_POLYGONS[shape] * np.array([w - 1, h - 1])
        d.polygon([(float(x), float(y)) for x, y in pts], fill=255)
    return np.asarray(img).astype(bool).tobytes()


def shape_mask(shape: str, w: int, h: int | None = None) -> np.ndarray:
    """Boolean mask (h, w) of ``shape`` filling a w x h box (touching all four sides)."""
    h = w if h is None else h
    return np.frombuffer(_shape_mask_cached(shape, int(w), int(h)), dtype=bool).reshape(h, w).copy()


def size_px(size: str, canvas: int, fractions: dict[str, float]) -> int:
    """Side in pixels (even) of an object of ``size`` on a ``canvas`` px square."""
    return max(4, int(round(fractions[size] * canvas / 2.0)) * 2)


IMAGE_SIZE_FRACTIONS = {"small": 0.125, "medium": 0.19, "large": 0.27}
VIDEO_SIZE_FRACTIONS = {"small": 0.19, "medium": 0.25, "large": 0.32}

# --------------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedObject:
    size: str
    colour: str
    shape: str
    x: int  # top-left of the object's box, pixels
    y: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Tight pixel box ``(x0, y0, x1, y1)``, x1/y1 exclusive (so width = x1 - x0)."""
        return (self.x, self.y, self.x + self.side, self.y + self.side)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.side / 2.0, self.y + self.side / 2.0)


def background(canvas: int, bg: str, texture: str, seed: int) -> np.ndarray:
    """Light background: ``texture`` in {"plain", "noise", "stripes"}; deterministic in ``seed``."""
    base = np.array(BACKGROUNDS[bg], dtype=np.int16)
    arr = np.broadcast_to(base, (canvas, canvas, 3)).copy()
    if texture == "noise":
        rng = np.random.default_rng(seed)
        arr += rng.integers(-8, 9, size=(canvas, canvas, 1), dtype=np.int16)
    elif texture == "stripes":
        period = 6 + seed % 5
        yy, xx = np.mgrid[0:canvas, 0:canvas]
        arr += (((xx + yy) // period) % 2 * 10 - 5).astype(np.int16)[..., None]
    elif texture != "plain":
        raise ValueError(f"unknown texture {texture!r}")
    return np.clip(arr, 0, 255).astype(np.uint8)


def draw_objects(canvas_rgb: np.ndarray, objects: list[PlacedObject], colours: list[str] | None = None) -> np.ndarray:
    out = canvas_rgb.copy()
    for i, o in enumerate(objects):
        m = shape_mask(o.shape, o.side)
        c = COLOURS[colours[i] if colours else o.colour]
        region = out[o.y : o.y + o.side, o.x : o.x + o.side]
        region[m] = c
    return out


def render_image(canvas: int, bg: str, texture: str, seed: int, objects: list[PlacedObject]) -> np.ndarray:
    return draw_objects(background(canvas, bg, texture, seed), objects)


def save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, format="PNG", optimize=False, compress_level=6)


# --------------------------------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------------------------------


def write_mp4(frames: np.ndarray, path: Path, fps: int = 8, qp: int = 0, pix_fmt: str = "yuv444p") -> None:
    """Write uint8 RGB frames (T, H, W, 3) as an H.264 MP4 with PyAV (libx264).

    Constant quantiser ``qp`` (0 = lossless in the YUV domain) and one thread: x264's rate control (CRF with
    macroblock-tree) was seen to give different bytes for the same frames from run to run, a fixed quantiser does
    not. ``pix_fmt`` "yuv444p" keeps the shapes' colours crisp; "yuv420p" is the common format of real videos."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        stream.options = {"qp": str(qp), "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video_frames(path) -> np.ndarray:
    """Decode every frame of a video file to uint8 RGB (T, H, W, 3) with PyAV."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


# --------------------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundEvent:
    kind: str  # "high beep" | "low beep" | "rising chirp" | "falling chirp" | "noise"
    start: float  # seconds
    duration: float
    f0: float = 0.0  # Hz (start frequency for chirps)
    f1: float = 0.0  # Hz (end frequency for chirps)
    amplitude: float = 0.4
    quick: bool = False


def _fade(n: int, sr: int, ms: float = 5.0) -> np.ndarray:
    k = max(1, min(n // 2, int(sr * ms / 1000)))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, k))
    env[:k] = ramp
    env[n - k :] = ramp[::-1]
    return env


def synth_audio(events: list[SoundEvent], duration: float, sr: int, background_noise: float, seed: int) -> np.ndarray:
    n_total = int(round(duration * sr))
    rng = np.random.default_rng(seed)
    y = np.zeros(n_total)
    if background_noise > 0:
        y += rng.normal(0.0, background_noise, n_total)
    for e in events:
        s0 = int(round(e.start * sr))
        n = int(round(e.duration * sr))
        t = np.arange(n) / sr
        if e.kind == "noise":
            sig = rng.uniform(-1.0, 1.0, n)
        elif e.kind.endswith("chirp"):
            # exponential sweep from f0 to f1
            k = math.log(e.f1 / e.f0) / e.duration
            phase = 2 * math.pi * e.f0 * (np.exp(k * t) - 1.0) / k
            sig = np.sin(phase)
        else:
            sig = np.sin(2 * math.pi * e.f0 * t)
        y[s0 : s0 + n] += e.amplitude * sig * _fade(n, sr)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def write_audio(wave: np.ndarray, sr: int, path: Path) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    sf.write(str(path), wave, sr, format=fmt, subtype="PCM_16")


def read_audio(path) -> tuple[np.ndarray, int]:
    """Mono float32 waveform and sample rate (soundfile; channels averaged)."""
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1), sr
