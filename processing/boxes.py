"""Box quantisation into UnIVAL location tokens (`<bin_0>` .. `<bin_999>`) and back.

The original (reference section 5.5) resizes the image to a square of side `S` (512 for RefCOCO), scales the box by
`(S / width, S / height)`, divides by `max_image_size` (512) and quantises each coordinate to
`round(value * (num_bins - 1))`. Decoding is the inverse: `x = bin / (num_bins - 1) * max_image_size / (S / width)`.

Here `S` is `processed_size` and `max_image_size` defaults to it, so by default a coordinate is simply normalised
by the original image's width or height; pass `max_image_size=512` with a smaller `processed_size` to reproduce the
pretraining quirk (boxes divided by 512 on 384/480 px images). Rounding is half-to-even, as `torch.round`.

Images sizes are `(height, width)` everywhere, like `image_sizes` of the image processor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from .constants import BIN_TOKEN_OFFSET, BIN_TOKEN_TEMPLATE, NUM_BINS
from .prompts import TokenText


_BIN_PATTERN = re.compile(r"<bin_(\d+)>")


def _image_hw(image_size) -> tuple[float, float]:
    """(height, width) from a `(height, width)` pair, a tensor / array of 2 values or a PIL image."""
    if hasattr(image_size, "size") and hasattr(image_size, "mode"):  # PIL image: .size is (width, height)
        width, height = image_size.size
        return float(height), float(width)
    values = np.asarray(image_size, dtype=np.float64).reshape(-1)
    if values.shape[0] != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    height, width = float(values[0]), float(values[1])
    if not (math.isfinite(height) and math.isfinite(width)) or height <= 0 or width <= 0:
        raise ValueError(f"image_size must be two positive numbers (height, width), got {image_size!r}")
    return height, width


def _scales(image_size, processed_size, max_image_size) -> tuple[float, float]:
    """Factors mapping pixel coordinates of the original image to normalised [0, 1] coordinates: (sx, sy)."""
    height, width = _image_hw(image_size)
    if processed_size is None:
        processed_size = max_image_size
    if processed_size is None:
        return 1.0 / width, 1.0 / height
    if max_image_size is None:
        max_image_size = processed_size
    if processed_size <= 0 or max_image_size <= 0:
        raise ValueError("processed_size and max_image_size must be positive")
    return processed_size / width / max_image_size, processed_size / height / max_image_size


def bin_token(index: int) -> str:
    """The location token of bin `index` (`"<bin_{index}>"`)."""
    return BIN_TOKEN_TEMPLATE.format(int(index))


def box_to_bins(
    box: Sequence[float],
    image_size,
    *,
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
    clip: bool = False,
) -> list[int]:
    """Quantise a pixel box `[x0, y0, x1, y1]` of an image of `image_size` = `(height, width)` into 4 bin indices.

    Raises `ValueError` when the box is not 4 finite numbers, when `x1 < x0` or `y1 < y0` (always, also with
    `clip=True`) and when the box leaves the image (`x < 0`, `x > width`, ...) unless `clip=True`, which clips it to
    the image first. Degenerate boxes (`x1 == x0`) are accepted.
    """
    num_bins = NUM_BINS if num_bins is None else int(num_bins)
    try:
        coords = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise ValueError(f"a box must be 4 numbers [x0, y0, x1, y1], got {box!r}") from None
    if len(coords) != 4 or not all(math.isfinite(v) for v in coords):
        raise ValueError(f"a box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = coords
    if x1 < x0 or y1 < y0:
        raise ValueError(f"invalid box {box!r}: needs x0 <= x1 and y0 <= y1 (format [x0, y0, x1, y1])")
    height, width = _image_hw(image_size)
    outside = x0 < 0 or y0 < 0 or x1 > width or y1 > height
    if outside:
        if not clip:
            raise ValueError(
                f"box {box!r} lies outside the image of size (height={height:g}, width={width:g}); "
                "pass clip=True to clip it to the image"
            )
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    sx, sy = _scales(image_size, processed_size, max_image_size)
    normalised = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    bins = [int(np.round(v * (num_bins - 1))) for v in normalised]
    if any(b < 0 or b >= num_bins for b in bins):
        raise ValueError(
            f"box {box!r} quantises to bins {bins} outside [0, {num_bins - 1}]: max_image_size is smaller than the "
            "processed image"
        )
    return bins


def quantize_box(
    box: Sequence[float],
    image_size,
    *,
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
    clip: bool = False,
) -> str:
    """Quantise a pixel box into the original's location-token string `"<bin_a> <bin_b> <bin_c> <bin_d>"`.

    See `box_to_bins` for the arguments and errors. The tokenizer encodes this string into exactly 4 tokens (the
    whitespace between location tokens is dropped, as the original encodes them without BPE). It is a
    `prompts.TokenText`, which the processor encodes as location tokens (the same string typed as plain text is
    encoded as text).
    """
    bins = box_to_bins(
        box, image_size, processed_size=processed_size, max_image_size=max_image_size, num_bins=num_bins, clip=clip
    )
    # A `TokenText`: the one way, with the `region` field, that location tokens get into a prompt or a target.
    return TokenText.tokens(" ".join(bin_token(b) for b in bins))


def bins_to_box(
    bins: Sequence[int],
    image_size,
    *,
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
) -> list[float]:
    """De-quantise 4 bin indices into a pixel box `[x0, y0, x1, y1]` of the original image (`(height, width)`)."""
    num_bins = NUM_BINS if num_bins is None else int(num_bins)
    bins = [int(b) for b in bins]
    if len(bins) != 4:
        raise ValueError(f"a box needs 4 bins, got {len(bins)}")
    if any(b < 0 or b >= num_bins for b in bins):
        raise ValueError(f"bins must lie in [0, {num_bins - 1}], got {bins}")
    sx, sy = _scales(image_size, processed_size, max_image_size)
    b0, b1, b2, b3 = (b / (num_bins - 1) for b in bins)
    return [b0 / sx, b1 / sy, b2 / sx, b3 / sy]


def well_formed_box(box: Sequence[float], image_size) -> list[float]:
    """`[x0, y0, x1, y1]` with each coordinate pair sorted (`x0 <= x1`, `y0 <= y1`) and clipped to the image of
    `image_size` ((height, width) or a PIL image): what a generated box is turned into, since a model may write its
    corners in reverse order and, with `max_image_size`, past the image's border."""
    height, width = _image_hw(image_size)
    x0, x1 = sorted(min(max(float(v), 0.0), width) for v in (box[0], box[2]))
    y0, y1 = sorted(min(max(float(v), 0.0), height) for v in (box[1], box[3]))
    return [x0, y0, x1, y1]


def extract_bins(sequence, num_bins: int | None = None) -> list[int]:
    """The bin indices found, in order, in a decoded string (`"<bin_12>"` ...) or a sequence of token ids."""
    num_bins = NUM_BINS if num_bins is None else int(num_bins)
    if isinstance(sequence, str):
        found = [int(m) for m in _BIN_PATTERN.findall(sequence)]
        return [b for b in found if b < num_bins]
    if hasattr(sequence, "tolist"):
        sequence = sequence.tolist()
    if not isinstance(sequence, Iterable):
        raise TypeError(f"expected a string or a sequence of token ids, got {type(sequence).__name__}")
    return [int(t) - BIN_TOKEN_OFFSET for t in sequence if BIN_TOKEN_OFFSET <= int(t) < BIN_TOKEN_OFFSET + num_bins]


__all__ = ["bin_token", "bins_to_box", "box_to_bins", "extract_bins", "quantize_box", "well_formed_box"]
