"""Image processor of UnIVAL."""

from __future__ import annotations

import warnings
from typing import TypedDict

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import PILImageResampling, SizeDict

from .constants import DEFAULT_IMAGE_SIZE, IMAGE_MEAN, IMAGE_STD, RESCALE_FACTOR, UINT16_MAX
from .media_io import (
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
    array = pixels_to_uint8(array, f"image array {describe(array)}")
    return Image.fromarray(np.ascontiguousarray(array))


# PIL modes of more than 8 bits per pixel. `convert("RGB")` clips them to 255 instead of scaling them (a 16-bit PNG
# comes out white), so `load_image` brings them to 8 bits with `pixels_to_uint8`, as the same pixels given as an array.
_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def _to_8bit(pil: Image.Image, image) -> Image.Image:
    """An 8-bit (`L`) image of a high-bit-depth one: `I;16*` scaled from 16 bits, mode `I` (32-bit integers, how PIL
    holds 16-bit data after `convert("I")` and in some formats) read as 16-bit values, mode `F` as intensities in
    [0, 1] like float arrays."""
    array = np.asarray(pil)
    if pil.mode == "I":
        if array.size and (array.min() < 0 or array.max() > UINT16_MAX):
            raise ValueError(
                f"image {describe(image)} (PIL mode I) must hold 16-bit values in [0, {UINT16_MAX}], "
                f"got values in [{array.min()}, {array.max()}]"
            )
        array = array.astype(np.uint16)
    elif pil.mode != "F":
        array = array.astype(np.uint16)  # native byte order of the I;16B / I;16L variants
    return Image.fromarray(pixels_to_uint8(array, f"image {describe(image)} (PIL mode {pil.mode})"))


def _unreadable(image) -> ValueError:
    """The error for an input PIL cannot identify as an image (with a hint when its extension names another
    modality)."""
    return ValueError(
        f"cannot read {describe(image)} as an image: not an image or an unsupported format"
        + wrong_modality_hint(image, "image")
    )


def load_image(image) -> Image.Image:
    """Load one image from a path, bytes, a PIL image, a numpy array or a torch tensor, fully decoded.

    Raises `FileNotFoundError` for a missing file, `ValueError` for an empty, corrupt, truncated or non-image file and
    `TypeError` for unsupported input types.
    """
    if is_array_like(image):
        return _array_to_pil(to_numpy(image))
    if not isinstance(image, Image.Image) and not is_path(image) and not is_bytes(image):
        raise TypeError(
            f"unsupported image input {describe(image)}: pass a path, bytes, a PIL image, a numpy array or a tensor"
        )
    if is_path(image) or is_bytes(image):
        # Checked before decoding: a missing file is a FileNotFoundError, not a decoding error.
        source = check_file(image, "image") if is_path(image) else check_bytes(image, "image")
    try:
        pil = image if isinstance(image, Image.Image) else Image.open(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil.load()
    except UnidentifiedImageError:
        raise _unreadable(image) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot decode image {describe(image)}: {error} (corrupt or truncated file?)") from None
    if pil.mode in _HIGH_BIT_DEPTH_MODES:
        pil = _to_8bit(pil, image)
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
            raise _unreadable(image) from None
    pil = load_image(image)
    return pil.height, pil.width


def _as_image_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    if is_array_like(images) and to_numpy(images).ndim == 4:
        return list(to_numpy(images))
    return [images]


class UnivalImageProcessor(PilBackend):
    r"""
    Image processor of UnIVAL, as the original finetuning and inference pipelines: convert to RGB, resize to a square
    `size` x `size` with PIL bicubic interpolation (the aspect ratio is *not* kept, nothing is cropped), rescale to
    [0, 1] (`/ 255`) and normalise with mean = std = 0.5 to [-1, 1]. Channels first.

    The original used 480 px for captioning, VQA and SNLI-VE, 512 px for RefCOCO and 384 px in pretraining stage 1;
    `size` is a setting (`UnivalImageProcessor(size=512)` or `processor(..., size=512)`): an int is a square, a pair
    or a dict is (height, width). EXIF orientation is not applied (as the original).

    Inputs: paths, bytes, PIL images, numpy arrays ((H, W), (H, W, C) or (C, H, W); uint8, uint16, bool or float in
    [0, 1]) or torch tensors; one image or a list. URLs are refused, never fetched. High-bit-depth pixels are scaled
    to 8 bits the same way whether they come from a file (16-bit PNG / TIFF: PIL modes `I;16`, `I`), a PIL image or
    an array (see `media_io.pixels_to_uint8`); PIL mode `F` images, like float arrays, hold intensities in [0, 1].

    Returns a `BatchFeature` with `pixel_values` (n, 3, H, W) float32, and with `return_image_sizes=True` also
    `image_sizes` (n, 2) int64 = the original (height, width) of each image (what the grounding post-processing
    needs to map boxes back). `get_image_sizes(images)` returns the same without processing the pixels.

    Resizing, rescaling and normalising are `PilBackend`'s; this class reads the inputs (`load_image`), converts them
    to RGB as the original and stacks the results.
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

    def get_image_sizes(self, images) -> list[tuple[int, int]]:
        """Original `(height, width)` of each image (files are opened lazily: only their header is read)."""
        return [_image_size(image) for image in _as_image_list(images)]

    def preprocess(self, images, *, return_tensors=None, return_image_sizes: bool = False, **kwargs) -> BatchFeature:
        """Process one image or a list of images; see the class docstring. Options given here override the
        processor's settings for this call (`size`, `do_resize`, `resample`, `do_rescale`, `rescale_factor`,
        `do_normalize`, `image_mean`, `image_std`, `do_convert_rgb`); None keeps the setting."""
        # Unlike the base class, an unknown option raises with the valid ones listed and None means "the setting",
        # as in the other UnIVAL processors.
        options = resolve_call_options(self, kwargs)
        call = {"return_tensors": return_tensors, "return_image_sizes": return_image_sizes}
        return super().preprocess(images, image_like_kwargs=call, **options)

    def _standardize_kwargs(self, **kwargs) -> dict:
        # `default_to_square` is no option of this processor, so the base class would read an int `size` as a
        # shortest edge: pass the class default (True, a square) instead.
        return super()._standardize_kwargs(default_to_square=self.default_to_square, **kwargs)

    def _validate_preprocess_kwargs(self, size: SizeDict | None = None, **kwargs):
        super()._validate_preprocess_kwargs(size=size, **kwargs)
        if size is not None and not ((size.height or 0) > 0 and (size.width or 0) > 0):
            raise ValueError(
                f"size must be a positive int, (height, width) or {{'height', 'width'}}, got {dict(size)}"
            )

    def _prepare_image_like_inputs(self, images, do_convert_rgb: bool | None = None, **kwargs) -> list[np.ndarray]:
        """The inputs as (C, H, W) uint8 arrays at their own size, read here rather than by the base class (which
        would download URLs and accepts fewer kinds of input)."""
        image_list = _as_image_list(images)
        if not image_list:
            raise ValueError("no image given")
        image_list = list(each_input(image_list, "image"))  # every image present before any is read
        return [self.process_image(image, do_convert_rgb=do_convert_rgb) for image in image_list]

    def process_image(self, image, do_convert_rgb: bool | None = None, **kwargs) -> np.ndarray:
        pil = load_image(image)
        # PIL's own conversion, as the original: it drops an alpha channel, where the base class composites
        # transparent pixels onto white.
        if do_convert_rgb and pil.mode != "RGB":
            pil = pil.convert("RGB")
        return super().process_image(pil, do_convert_rgb=False)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | int,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | tuple[float, ...],
        image_std: float | tuple[float, ...],
        return_tensors=None,
        return_image_sizes: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Resize (no crop, no pad), rescale and normalise each (C, H, W) image with the backend's operations, then
        stack them: `pixel_values` (n, C, H, W) float32, and `image_sizes` (n, 2) = each input's (height, width)."""
        sizes = [image.shape[-2:] for image in images]
        pixel_values = []
        for image in images:
            if do_resize:
                image = self.resize(image, size=size, resample=resample)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            pixel_values.append(image.astype(np.float32, copy=False))
        shapes = {image.shape for image in pixel_values}
        if len(shapes) != 1:
            raise ValueError(f"processed images have different shapes {sorted(shapes)}; enable do_resize")
        data = {"pixel_values": np.stack(pixel_values)}
        if return_image_sizes:
            data["image_sizes"] = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        return BatchFeature(data=data, tensor_type=return_tensors)


__all__ = ["UnivalImageProcessor", "load_image"]
