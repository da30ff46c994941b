"""Small helpers shared by the UnIVAL processors to accept files, bytes and arrays with clear errors, and batches of
them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, UINT8_MAX, UINT16_MAX, VIDEO_EXTENSIONS


PathLike = (str, os.PathLike)
BytesLike = (bytes, bytearray, memoryview)


def is_path(value) -> bool:
    return isinstance(value, PathLike)


def is_bytes(value) -> bool:
    return isinstance(value, BytesLike)


def describe(value) -> str:
    """Short description of an input for error messages."""
    if is_path(value):
        return repr(os.fspath(value))
    if is_bytes(value):
        return f"<{len(value)} bytes>"
    if isinstance(value, np.ndarray):
        return f"<array shape={value.shape} dtype={value.dtype}>"
    return f"<{type(value).__name__}>"


def check_file(path, kind: str) -> Path:
    """Validate a path given for `kind` ("image", "video" or "audio"): not a URL, existing, a file, not empty."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode()
    if text.startswith(("http://", "https://", "ftp://")):
        raise ValueError(f"{kind} {text!r} is a URL: URLs are not downloaded; download the file and pass its path")
    file = Path(text)
    if not file.exists():
        raise FileNotFoundError(f"{kind} file not found: {text!r}")
    if not file.is_file():
        raise ValueError(f"{kind} path {text!r} is not a file")
    if file.stat().st_size == 0:
        raise ValueError(f"{kind} file {text!r} is empty (0 bytes)")
    return file


def check_bytes(data, kind: str) -> io.BytesIO:
    if len(data) == 0:
        raise ValueError(f"{kind} bytes are empty")
    return io.BytesIO(bytes(data))


def wrong_modality_hint(source, kind: str) -> str:
    """A hint when a file's extension says it belongs to another modality (e.g. a .wav passed as an image)."""
    if not is_path(source):
        return ""
    suffix = Path(os.fspath(source)).suffix.lower()
    owners = []
    if suffix in IMAGE_EXTENSIONS and kind != "image":
        owners.append("an image (pass it as `images=`)")
    if suffix in VIDEO_EXTENSIONS and kind != "video":
        owners.append("a video (pass it as `videos=`)")
    if suffix in AUDIO_EXTENSIONS and kind != "audio":
        owners.append("an audio file (pass it as `audio=`)")
    if owners:
        return f"; the extension {suffix!r} suggests " + " or ".join(owners)
    return ""


_MEDIA_FILE_KINDS = (("image", "images", IMAGE_EXTENSIONS), ("video", "videos", VIDEO_EXTENSIONS),
                    ("audio", "audio", AUDIO_EXTENSIONS))


def media_kind(path) -> tuple[str, str] | None:
    """`(kind, argument)` of a media file or URL by its extension (`("image", "images")`, `("video", "videos")`,
    `("audio", "audio")`: the modality and the processor argument that takes it), `None` for any other extension."""
    suffix = Path(os.fspath(path).split("?", 1)[0]).suffix.lower()
    for kind, argument, extensions in _MEDIA_FILE_KINDS:
        if suffix in extensions:
            return kind, argument
    return None


def media_path_in_text(text) -> tuple[str, str] | None:
    """`media_kind` of a text that is nothing but a media file's path (an existing file, or a path with a folder)
    or URL: what a media input given in the text's place looks like (the stock image-text-to-text pipeline called
    with a path and no `text=` passes the path as the prompt); `None` for anything else (a bare "photo.png" that is
    no file stays text)."""
    if not isinstance(text, str) or not text or any(c.isspace() for c in text):
        return None
    path_like = text.startswith(("http://", "https://", ".", "~")) or os.sep in text or "/" in text
    found = media_kind(text)
    return found if found is not None and (path_like or os.path.isfile(text)) else None


def to_numpy(value):
    """Convert torch tensors (and array-likes) to numpy without importing torch when it is not needed."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def is_array_like(value) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise a `ValueError` naming `what` when a numeric array holds NaN or infinite values (which would otherwise
    be cast to arbitrary pixels or samples)."""
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")


def pixels_to_uint8(array: np.ndarray, what: str = "an image array") -> np.ndarray:
    """8-bit pixels of an image or video frame array, by dtype; the one conversion of the file and array inputs of
    images and videos (a 16-bit PNG and the same pixels as a uint16 array give the same result):

    - uint8: unchanged; bool: False / True -> 0 / 255;
    - float (float arrays and PIL mode `F` images): intensities in [0, 1], scaled by 255, rounded and clipped;
    - uint16 (PIL modes `I;16*`): the full 16-bit range scaled onto 8 bits (`round(v * 255 / 65535)`);
    - other integers (e.g. int64 tensors of 8-bit images): values in [0, 255], taken as they are.

    Raises a `ValueError` naming `what` for NaN / infinite values and out-of-range integers, a `TypeError` for
    non-numeric arrays.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * UINT8_MAX
    if np.issubdtype(array.dtype, np.floating):
        check_finite(array, what)
        return np.clip(np.round(array * float(UINT8_MAX)), 0, UINT8_MAX).astype(np.uint8)
    if array.dtype == np.uint16:
        # Exact integer arithmetic: (v * 255 + 32767) // 65535 is round-half-up of v * 255 / 65535.
        scaled = (array.astype(np.uint32) * UINT8_MAX + UINT16_MAX // 2) // UINT16_MAX
        return scaled.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > UINT8_MAX):
            raise ValueError(
                f"{what} of dtype {array.dtype} must hold 8-bit values in [0, {UINT8_MAX}] (pass 16-bit pixels as "
                f"uint16, floats as intensities in [0, 1]), got values in [{array.min()}, {array.max()}]"
            )
        return array.astype(np.uint8)
    raise TypeError(f"{what} must hold numbers (uint8, uint16, bool or float), got dtype {array.dtype}")


def call_generator(generator: np.random.Generator | None, seed: int | None) -> np.random.Generator | None:
    """The randomness of one processor call: `generator` when given, else a generator seeded with `seed`, else None
    (the processor then draws from fresh entropy)."""
    if generator is None and seed is not None:
        return np.random.default_rng(seed)
    return generator


def each_input(items, kind: str):
    """The inputs of a batch, in order, raising a `ValueError` that names the position of a None one (a sample whose
    `kind` is missing) when the iteration reaches it, so that the inputs before it are read first as before."""
    for index, item in enumerate(items):
        if item is None:
            raise ValueError(f"{kind} {index} is None")
        yield item


__all__ = [
    "call_generator",
    "check_bytes",
    "check_file",
    "check_finite",
    "describe",
    "each_input",
    "is_array_like",
    "is_bytes",
    "is_path",
    "media_kind",
    "media_path_in_text",
    "pixels_to_uint8",
    "to_numpy",
    "wrong_modality_hint",
]


def resolve_call_options(processor, kwargs: dict, extra_note: str = "") -> dict:
    """A sub-processor call's options: each of `processor.valid_kwargs` taken from `kwargs`, or from the
    processor's own setting when absent or None. Unknown names raise a `TypeError` that lists the valid ones."""
    valid = processor.valid_kwargs.__annotations__
    unknown = set(kwargs) - set(valid)
    if unknown:
        raise TypeError(
            f"{type(processor).__name__} got unexpected option(s) {sorted(unknown)}; "
            f"valid options: {sorted(valid)}{extra_note}"
        )
    return {name: getattr(processor, name, None) if kwargs.get(name) is None else kwargs[name] for name in valid}

