"""Small helpers shared by the UnIVAL processors to accept files, bytes and arrays with clear errors, and batches of
them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


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


def to_numpy(value):
    """Convert torch tensors (and array-likes) to numpy without importing torch when it is not needed."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def is_array_like(value) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")


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
    "describe",
    "each_input",
    "is_array_like",
    "is_bytes",
    "is_path",
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

