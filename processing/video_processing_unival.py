"""Video processor of UnIVAL (frame sampling as the original, PyAV decoding, centre crop, normalisation)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypedDict

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.video_processing_utils import VideoProcessorMixin

from .constants import DEFAULT_NUM_FRAMES, DEFAULT_VIDEO_CROP_SIZE, IMAGE_MEAN, IMAGE_STD, RESCALE_FACTOR
from .media_io import (
    call_generator,
    check_bytes,
    check_file,
    describe,
    each_input,
    is_array_like,
    is_bytes,
    is_path,
    pixels_to_uint8,
    resolve_call_options,
    to_numpy,
    wrong_modality_hint,
)
from .image_processing_unival import load_image


FRAME_SAMPLING_MODES = ("middle", "random")


class UnivalVideoProcessorKwargs(TypedDict, total=False):
    do_convert_rgb: bool | None
    num_frames: int | None
    do_sample_frames: bool | str | None
    do_resize: bool | None
    resample: int | None
    do_center_crop: bool | None
    crop_size: int | list[int] | tuple[int, ...] | dict[str, int] | None
    do_rescale: bool | None
    rescale_factor: float | None
    do_normalize: bool | None
    image_mean: float | list[float] | tuple[float, ...] | None
    image_std: float | list[float] | tuple[float, ...] | None


def sample_frame_indices(
    total_frames: int,
    num_frames: int,
    mode: str = "middle",
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """Indices of the frames UnIVAL takes from a video of `total_frames` frames.

    As the original: `[0, total_frames)` is split into `num_frames` equal segments with
    `np.linspace(0, total_frames, num_frames + 1).astype(int)` and one frame is taken per segment: the middle one,
    `(start + end - 1) // 2` (`mode="middle"`, the default, deterministic, for inference), or a uniformly random one
    in `[start, end - 2]` (`mode="random"`, training; the original draws from `range(start, end - 1)`; a segment of
    a single frame gives its only frame, where the original fell back to a random sorted subset of all frames).

    A video with fewer frames than `num_frames` gives all its frames in order, then its last frame repeated up to
    `num_frames` (the original's padding); a one-frame video gives that frame `num_frames` times.
    """
    total_frames, num_frames = int(total_frames), int(num_frames)
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if mode not in FRAME_SAMPLING_MODES:
        raise ValueError(f"frame sampling mode must be one of {FRAME_SAMPLING_MODES}, got {mode!r}")
    if total_frames < num_frames:
        indices = np.arange(total_frames)
        return np.concatenate([indices, np.full(num_frames - total_frames, total_frames - 1)]).astype(np.int64)
    edges = np.linspace(0, total_frames, num_frames + 1).astype(int)
    starts, ends = edges[:-1], edges[1:]
    if mode == "middle":
        return ((starts + ends - 1) // 2).astype(np.int64)
    rng = generator if generator is not None else np.random.default_rng()
    highs = np.maximum(ends - 1, starts + 1)  # exclusive upper bound
    return np.array([rng.integers(lo, hi) for lo, hi in zip(starts, highs)], dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------------
def _open_container(video, opener):
    import av

    try:
        return av.open(opener(), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(
            f"cannot read {describe(video)} as a video: {error}" + wrong_modality_hint(video, "video")
        ) from None


def _count_frames(video, opener) -> int:
    import av

    count = 0
    with _open_container(video, opener) as container:
        stream = container.streams.video[0]
        try:
            for _ in container.decode(stream):
                count += 1
        except av.error.FFmpegError as error:
            if count == 0:
                raise ValueError(f"cannot decode video {describe(video)}: {error}") from None
    return count


def read_video(
    video,
    sample_indices_fn: Callable[[int], np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Decode a video file (path or bytes) with PyAV and return `(frames, total_frames)`: the RGB uint8 frames
    (T, H, W, 3) at `sample_indices_fn(total_frames)` (all frames when it is `None`) and the number of frames of the
    video.

    The frame count is the container's when it records one (MP4, AVI, ...), else it is counted by decoding (WebM /
    Matroska record none; `transformers.video_utils.load_video` relies on the recorded count, which is why this
    reader exists). If the recorded count is wrong, the video is decoded again with the real count.

    Raises `FileNotFoundError` for a missing file and `ValueError` for an empty, unreadable or corrupt file, a
    file without a video stream or a video without decodable frames.
    """
    import av

    if is_path(video):
        path = check_file(video, "video")

        def opener():
            return os.fspath(path)

    elif is_bytes(video):
        check_bytes(video, "video")
        payload = bytes(video)

        def opener():
            import io

            return io.BytesIO(payload)

    else:
        raise TypeError(f"read_video takes a path or bytes, got {describe(video)}")

    with _open_container(video, opener) as container:
        if not container.streams.video:
            raise ValueError(f"{describe(video)} has no video stream" + wrong_modality_hint(video, "video"))
        recorded = int(container.streams.video[0].frames or 0)

    total = recorded if recorded > 0 else _count_frames(video, opener)
    if total <= 0:
        raise ValueError(f"video {describe(video)} has no decodable frames")

    for _attempt in range(2):
        indices = np.arange(total) if sample_indices_fn is None else np.asarray(sample_indices_fn(total))
        wanted = set(int(i) for i in indices)
        last = max(wanted)
        frames: dict[int, np.ndarray] = {}
        decoded = 0
        with _open_container(video, opener) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for index, frame in enumerate(container.decode(stream)):
                    decoded = index + 1
                    if index in wanted:
                        frames[index] = frame.to_ndarray(format="rgb24")
                    if index >= last:
                        break
            except av.error.FFmpegError as error:
                if decoded == 0:
                    raise ValueError(f"cannot decode video {describe(video)}: {error}") from None
        if len(frames) == len(wanted):
            return np.stack([frames[int(i)] for i in indices]), total
        if decoded == 0:
            raise ValueError(f"video {describe(video)} has no decodable frames")
        # The recorded frame count was too large (decoding stopped before the last wanted frame): sample again with
        # the number of frames really decoded.
        total = decoded
    raise ValueError(f"could not decode the requested frames of {describe(video)}")


def _frames_to_array(video) -> np.ndarray:
    """(T, H, W, C) uint8 array from a frame array / tensor or a list of frames (PIL images or arrays)."""
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("a video given as a list of frames is empty")
        frames = []
        for frame in video:
            if isinstance(frame, Image.Image):
                frames.append(np.asarray(load_image(frame).convert("RGB")))  # high-bit-depth frames scaled
            elif is_array_like(frame):
                frames.append(_frame_hwc(to_numpy(frame)))
            else:
                raise TypeError(f"a video frame must be a PIL image or an array, got {describe(frame)}")
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"the frames of a video have different shapes: {sorted(shapes)}")
        return np.stack(frames)
    array = to_numpy(video)
    if array.ndim == 3:  # a single frame
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"a video array must be (T, H, W, C) or (T, C, H, W), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("a video array has no frames")
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)
    return np.stack([_frame_hwc(frame) for frame in array])


def _frame_hwc(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3:
        raise ValueError(f"a video frame must be (H, W, C), got shape {frame.shape}")
    if frame.shape[-1] not in (1, 3, 4) and frame.shape[0] in (1, 3, 4):
        frame = frame.transpose(1, 2, 0)
    if frame.shape[-1] not in (1, 3, 4):
        raise ValueError(f"a video frame needs 1, 3 or 4 channels, got shape {frame.shape}")
    if frame.size == 0:
        raise ValueError("a video frame is empty")
    # The images' conversion (16-bit frames scaled, not clipped; NaN refused), so a frame reads as the same image.
    frame = pixels_to_uint8(frame, "a video frame")
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    elif frame.shape[-1] == 4:
        frame = frame[..., :3]
    return frame


def _crop_hw(crop_size) -> tuple[int, int]:
    if isinstance(crop_size, int):
        return crop_size, crop_size
    if isinstance(crop_size, dict) or hasattr(crop_size, "height"):
        height = crop_size.get("height") if isinstance(crop_size, dict) else crop_size.height
        width = crop_size.get("width") if isinstance(crop_size, dict) else crop_size.width
        return int(height), int(width)
    if isinstance(crop_size, (list, tuple)) and len(crop_size) == 2:
        return int(crop_size[0]), int(crop_size[1])
    raise ValueError(f"crop_size must be an int, (height, width) or {{'height', 'width'}}, got {crop_size!r}")


def center_crop_or_pad(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre crop (T, H, W, C) frames to `height` x `width`, zero-padding sides that are too small, with the
    offsets torchvision's `CenterCrop` uses (pad `(d // 2, (d + 1) // 2)`, crop at `round((size - crop) / 2)`)."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h or pad_w:
        frames = np.pad(
            frames, ((0, 0), (pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)), mode="constant"
        )
        _, h, w, _ = frames.shape
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return frames[:, top : top + height, left : left + width]


class UnivalVideoProcessor(VideoProcessorMixin, PilBackend):
    r"""
    Video processor of UnIVAL (PIL / NumPy only: no torchvision needed).

    1. **Decoding** (files: mp4, webm, avi, mkv, ... through PyAV; or frames: a (T, H, W, C) uint8 array / tensor,
       a (T, C, H, W) one, or a list of PIL images / arrays). Frame pixels are read as images' are
       (`media_io.pixels_to_uint8`): uint16 scaled from 16 bits, floats as [0, 1] intensities, NaN refused.
    2. **Frame sampling** (`num_frames`, default 16; the original used 8 for video QA): one frame per equal segment,
       the middle one by default (`do_sample_frames=True` or `"middle"`), a random one for training
       (`do_sample_frames="random"`, with `seed=` or `generator=` for reproducibility); see `sample_frame_indices`.
       Videos shorter than `num_frames` repeat their last frame; a one-frame video repeats its frame.
       `do_sample_frames=False` keeps every frame (all videos of a batch must then have as many frames).
    3. **Resize** (`do_resize`, default `True`): shorter side to the crop size, bicubic, aspect ratio kept. The
       original used *no* resize (centre crop only, on videos its authors had stored at their own resolution);
       user videos come in any size, so resizing is the default here. `do_resize=False` reproduces the original.
    4. **Centre crop** to `crop_size` (default 384) with zero padding of frames smaller than the crop (zeros become
       -1 after normalisation), as torchvision's `CenterCrop` in the original.
    5. `/ 255`, normalisation with mean = std = 0.5.

    Returns `pixel_values_videos` (n, 3, T, H, W) float32 (channels, then time: the layout of the model).
    """

    valid_kwargs = UnivalVideoProcessorKwargs
    model_input_names = ["pixel_values_videos"]

    do_convert_rgb = True
    num_frames = DEFAULT_NUM_FRAMES
    do_sample_frames = True
    do_resize = True
    resample = PILImageResampling.BICUBIC
    do_center_crop = True
    crop_size = {"height": DEFAULT_VIDEO_CROP_SIZE, "width": DEFAULT_VIDEO_CROP_SIZE}
    do_rescale = True
    rescale_factor = RESCALE_FACTOR
    do_normalize = True
    image_mean = IMAGE_MEAN
    image_std = IMAGE_STD
    # not used by this processor, kept `None` so the serialised config stays minimal
    size = None

    def __init__(self, **kwargs):
        if isinstance(kwargs.get("crop_size"), int):
            kwargs["crop_size"] = {"height": kwargs["crop_size"], "width": kwargs["crop_size"]}
        super().__init__(**kwargs)

    def _resolve(self, kwargs: dict) -> dict:
        return resolve_call_options(self, kwargs, extra_note=" and seed, generator, return_tensors")

    @staticmethod
    def _sampling_mode(value) -> str | None:
        if value is True or value is None:
            return "middle"
        if value is False:
            return None
        if isinstance(value, str) and value.lower() in FRAME_SAMPLING_MODES:
            return value.lower()
        raise ValueError(f"do_sample_frames must be True, False, 'middle' or 'random', got {value!r}")

    def load_frames(
        self,
        video,
        num_frames: int | None = None,
        do_sample_frames: bool | str | None = None,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Decode (if needed) and sample one video; returns its RGB uint8 frames (T, H, W, 3)."""
        num_frames = self.num_frames if num_frames is None else int(num_frames)
        mode = self._sampling_mode(self.do_sample_frames if do_sample_frames is None else do_sample_frames)

        def indices_fn(total: int) -> np.ndarray:
            if mode is None:
                return np.arange(total)
            return sample_frame_indices(total, num_frames, mode=mode, generator=generator)

        if is_path(video) or is_bytes(video):
            frames, _ = read_video(video, indices_fn)
            return frames
        if isinstance(video, (list, tuple)) or is_array_like(video):
            frames = _frames_to_array(video)
            return frames[indices_fn(frames.shape[0])]
        if isinstance(video, Image.Image):
            frames = _frames_to_array([video])
            return frames[indices_fn(1)]
        raise TypeError(
            f"unsupported video input {describe(video)}: pass a path, bytes, a (T, H, W, C) array or a list of frames"
        )

    def _transform(self, frames: np.ndarray, options: dict) -> np.ndarray:
        crop_h, crop_w = _crop_hw(options["crop_size"])
        if options["do_resize"]:
            _, h, w, _ = frames.shape
            scale = max(crop_h / h, crop_w / w)
            new_h, new_w = max(crop_h, int(h * scale)), max(crop_w, int(w * scale))
            if (new_h, new_w) != (h, w):
                resample = PILImageResampling(options["resample"])
                frames = np.stack(
                    [np.asarray(Image.fromarray(f).resize((new_w, new_h), resample=resample)) for f in frames]
                )
        if options["do_center_crop"]:
            frames = center_crop_or_pad(frames, crop_h, crop_w)
        video = frames.transpose(3, 0, 1, 2).astype(np.float32)  # (C, T, H, W)
        if options["do_rescale"]:
            video = video * np.float32(options["rescale_factor"])
        if options["do_normalize"]:
            mean = np.asarray(options["image_mean"], dtype=np.float32).reshape(-1, 1, 1, 1)
            std = np.asarray(options["image_std"], dtype=np.float32).reshape(-1, 1, 1, 1)
            video = (video - mean) / std
        return video.astype(np.float32, copy=False)

    def preprocess(
        self,
        videos,
        *,
        return_tensors=None,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Process one video or a list of videos (see the class docstring). Options given here override the
        processor's settings for this call. `seed` / `generator` drive `do_sample_frames="random"`."""
        options = self._resolve(kwargs)
        generator = call_generator(generator, seed)
        outputs = []
        for video in each_input(self._as_video_list(videos), "video"):
            frames = self.load_frames(video, options["num_frames"], options["do_sample_frames"], generator)
            outputs.append(self._transform(frames, options))
        shapes = {v.shape for v in outputs}
        if len(shapes) != 1:
            raise ValueError(
                f"processed videos have different shapes {sorted(shapes)}: use frame sampling and centre cropping"
            )
        return BatchFeature(data={"pixel_values_videos": np.stack(outputs)}, tensor_type=return_tensors)

    @staticmethod
    def _as_video_list(videos) -> list:
        """A list of videos from one video or a list of videos. A list whose items are all frames (PIL images or 3-D
        arrays) is ONE video given as frames."""
        if isinstance(videos, (list, tuple)):
            if not videos:
                raise ValueError("no video given")
            if all(isinstance(v, Image.Image) or (is_array_like(v) and to_numpy(v).ndim == 3) for v in videos):
                return [list(videos)]
            return list(videos)
        if is_array_like(videos) and to_numpy(videos).ndim == 5:
            return list(to_numpy(videos))
        return [videos]

    def __call__(self, videos, **kwargs) -> BatchFeature:
        return self.preprocess(videos, **kwargs)


__all__ = ["UnivalVideoProcessor", "center_crop_or_pad", "read_video", "sample_frame_indices"]
