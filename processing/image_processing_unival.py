"""Image processor of UnIVAL."""

from __future__ import annotations

import warnings
from typing import TypedDict

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import PILImageResampling

from .constants import DEFAULT_IMAGE_SIZE, IMAGE_MEAN, IMAGE_STD, RESCALE_FACTOR
from .media_io import (
    check_bytes,
    check_file,
    describe,
    is_array_like,
    is_bytes,
    is_path,
    resolve_call_options,
    to_numpy,
    wrong_modality_hint,
)



class UnivalImageProcessorKwargs(TypedDict, total=False):
    do_convert_rgb: bool | None
    do_resize: bool | None
    size: int | list[int] | tuple[int, ...] | dict[str, int] | None
    resample: int | None
    do_rescale: bool | None
    rescale_factor: float | None
    do_normalize: bool | None
    image_mean: float | list[float] | tuple[float, ...] | None
    image_std: float | list[float] | tuple[float, ...] | None


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """PIL image from an (H, W), (H, W, C) or (C, H, W) array; floats are taken as [0, 1] intensities."""
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, C) or (C, H, W) with C in 1/3/4, got {array.shape}")
    if array.size == 0:
        raise ValueError(f"an image array is empty: shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError("an image array contains NaN or infinite values")
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"an integer image array must hold values in [0, 255], got dtype {array.dtype}")
        array = array.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def load_image(image) -> Image.Image:
    """Load one image from a path, bytes, a PIL image, a numpy array or a torch tensor, fully decoded.

    Raises `FileNotFoundError` for a missing file, `ValueError` for an empty, corrupt, truncated or non-image file and
    `TypeError` for unsupported input types.
    """
    if isinstance(image, Image.Image):
        source, opener = image, None
    elif is_path(image):
        source, opener = check_file(image, "image"), None
    elif is_bytes(image):
        source, opener = check_bytes(image, "image"), None
    elif is_array_like(image):
        return _array_to_pil(to_numpy(image))
    else:
        raise TypeError(
            f"unsupported image input {describe(image)}: pass a path, bytes, a PIL image, a numpy array or a tensor"
        )
    try:
        if isinstance(source, Image.Image):
            pil = source
        else:
            pil = Image.open(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil.load()
    except UnidentifiedImageError:
        raise ValueError(
            f"cannot read {describe(image)} as an image: not an image or an unsupported format"
            + wrong_modality_hint(image, "image")
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot decode image {describe(image)}: {error} (corrupt or truncated file?)") from None
    return pil


def _image_size(image) -> tuple[int, int]:
    """(height, width) of an input without decoding its pixels when possible."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    if is_path(image) or is_bytes(image):
        source = check_file(image, "image") if is_path(image) else check_bytes(image, "image")
        try:
            with Image.open(source) as pil:
                return pil.height, pil.width
        except UnidentifiedImageError:
            raise ValueError(
                f"cannot read {describe(image)} as an image: not an image or an unsupported format"
                + wrong_modality_hint(image, "image")
            ) from None
    pil = load_image(image)
    return pil.height, pil.width


def _as_image_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    if is_array_like(images) and to_numpy(images).ndim == 4:
        return list(to_numpy(images))
    return [images]


def _size_hw(size) -> tuple[int, int]:
    if size is None:
        raise ValueError("size must be set")
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) or hasattr(size, "height"):
        height = size.get("height") if isinstance(size, dict) else size.height
        width = size.get("width") if isinstance(size, dict) else size.width
        if height is None or width is None:
            raise ValueError(f"size must give 'height' and 'width', got {dict(size)}")
        return int(height), int(width)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be an int, (height, width) or {{'height', 'width'}}, got {size!r}")


class UnivalImageProcessor(PilBackend):
    r"""
    Image processor of UnIVAL, as the original finetuning and inference pipelines: convert to RGB, resize to a square
    `size` x `size` with PIL bicubic interpolation (the aspect ratio is *not* kept, nothing is cropped), rescale to
    [0, 1] (`/ 255`) and normalise with mean = std = 0.5 to [-1, 1]. Channels first.

    The original used 480 px for captioning, VQA and SNLI-VE, 512 px for RefCOCO and 384 px in pretraining stage 1;
    `size` is a setting (`UnivalImageProcessor(size=512)` or `processor(..., size=512)`). EXIF orientation is not
    applied (as the original).

    Inputs: paths, bytes, PIL images, numpy arrays ((H, W), (H, W, C) or (C, H, W); uint8 or float in [0, 1]) or
    torch tensors; one image or a list.

    Returns a `BatchFeature` with `pixel_values` (n, 3, H, W) float32, and with `return_image_sizes=True` also
    `image_sizes` (n, 2) int64 = the original (height, width) of each image (what the grounding post-processing
    needs to map boxes back). `get_image_sizes(images)` returns the same without processing the pixels.
    """

    valid_kwargs = UnivalImageProcessorKwargs
    model_input_names = ["pixel_values"]

    do_convert_rgb = True
    do_resize = True
    size = {"height": DEFAULT_IMAGE_SIZE, "width": DEFAULT_IMAGE_SIZE}
    resample = PILImageResampling.BICUBIC
    do_rescale = True
    rescale_factor = RESCALE_FACTOR
    do_normalize = True
    image_mean = IMAGE_MEAN
    image_std = IMAGE_STD

    def __init__(self, **kwargs):
        if isinstance(kwargs.get("size"), int):
            kwargs["size"] = {"height": kwargs["size"], "width": kwargs["size"]}
        super().__init__(**kwargs)

    def _resolve(self, kwargs: dict) -> dict:
        return resolve_call_options(self, kwargs)

    def get_image_sizes(self, images) -> list[tuple[int, int]]:
        """Original `(height, width)` of each image (files are opened lazily: only their header is read)."""
        return [_image_size(image) for image in _as_image_list(images)]

    def preprocess(self, images, *, return_tensors=None, return_image_sizes: bool = False, **kwargs) -> BatchFeature:
        """Process one image or a list of images; see the class docstring. Options given here override the
        processor's settings for this call (`size`, `do_resize`, `resample`, `do_rescale`, `rescale_factor`,
        `do_normalize`, `image_mean`, `image_std`, `do_convert_rgb`)."""
        options = self._resolve(kwargs)
        image_list = _as_image_list(images)
        if not image_list:
            raise ValueError("no image given")
        height, width = _size_hw(options["size"])
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive, got {options['size']}")
        resample = PILImageResampling(options["resample"] if options["resample"] is not None else Image.BICUBIC)
        mean = np.asarray(options["image_mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(options["image_std"], dtype=np.float32).reshape(-1, 1, 1)

        pixel_values, sizes = [], []
        for index, image in enumerate(image_list):
            if image is None:
                raise ValueError(f"image {index} is None")
            pil = load_image(image)
            sizes.append((pil.height, pil.width))
            if options["do_convert_rgb"] and pil.mode != "RGB":
                pil = pil.convert("RGB")
            if options["do_resize"] and (pil.width, pil.height) != (width, height):
                pil = pil.resize((width, height), resample=resample)
            array = np.asarray(pil)
            if array.ndim == 2:
                array = array[..., None]
            array = array.transpose(2, 0, 1).astype(np.float32)
            if options["do_rescale"]:
                array = array * np.float32(options["rescale_factor"])
            if options["do_normalize"]:
                array = (array - mean) / std
            pixel_values.append(array.astype(np.float32, copy=False))

        shapes = {value.shape for value in pixel_values}
        if len(shapes) != 1:
            raise ValueError(f"processed images have different shapes {sorted(shapes)}; enable do_resize")
        data = {"pixel_values": np.stack(pixel_values)}
        if return_image_sizes:
            data["image_sizes"] = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def __call__(self, images, *args, **kwargs) -> BatchFeature:
        if args:
            raise TypeError(f"{type(self).__name__} takes the images as its only positional argument")
        return self.preprocess(images, **kwargs)


__all__ = ["UnivalImageProcessor", "load_image"]
