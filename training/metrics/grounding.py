"""Visual grounding metrics: box IoU and accuracy at IoU >= 0.5 (RefCOCO / RefCOCO+ / RefCOCOg convention).

Boxes are ``(x0, y0, x1, y1)`` in pixels with continuous coordinates ("+0" convention): width = ``x1 - x0`` and
height = ``y1 - y0``, with no "+1" for inclusive integer pixel indices. So ``(0, 0, 10, 10)`` has area 100.

Degenerate boxes (``x1 <= x0`` or ``y1 <= y0``) have zero area: their width/height is clamped at 0, and the
intersection likewise. The IoU is ``intersection / union`` and is defined as 0 when the union is 0 (two degenerate
boxes, even identical ones) or when a coordinate is not finite (e.g. a NaN from an unparsable prediction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


__all__ = ["box_iou", "box_ious", "grounding_accuracy"]


def _as_boxes(boxes, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be boxes (x0, y0, x1, y1): a (4,) or (N, 4) array, got shape {array.shape}")
    return array


def box_ious(boxes_a, boxes_b, *, eps: float = 0.0) -> np.ndarray:
    """Element-wise IoU of two (N, 4) arrays of ``(x0, y0, x1, y1)`` boxes (see the module docstring).

    ``eps`` is added to the union (the UnIVAL/OFA evaluation uses 1e-6, which puts an IoU of exactly 0.5 just
    below the threshold); the default 0 gives the exact IoU."""
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} boxes against {b.shape[0]}")
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    inter_w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = inter_w * inter_h
    union = area_a + area_b - inter + eps
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1) & np.isfinite(union) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(finite, inter / np.where(finite, union, 1.0), 0.0)
    return iou


def box_iou(box_a: Sequence[float], box_b: Sequence[float], *, eps: float = 0.0) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes (see the module docstring)."""
    return float(box_ious(box_a, box_b, eps=eps)[0])


def grounding_accuracy(predictions, references, *, threshold: float = 0.5, eps: float = 0.0) -> dict:
    """Fraction of predicted boxes whose IoU with the reference box is ``>= threshold`` (0.5: "Acc@0.5").

    ``predictions`` and ``references`` are N boxes each ((N, 4) array or a list of 4-sequences). A hit also needs a
    positive-area intersection (only relevant for ``threshold=0``).

    Returns ``{"accuracy": .., "mean_iou": .., "ious": [per-sample IoU], "hits": [per-sample bool]}``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must lie in [0, 1]")
    preds = _as_boxes(predictions, "predictions")
    refs = _as_boxes(references, "references")
    if preds.shape[0] == 0:
        raise ValueError("no boxes to score")
    ious = box_ious(preds, refs, eps=eps)
    hits = (ious >= threshold) & (ious > 0)
    return {
        "accuracy": float(hits.mean()),
        "mean_iou": float(ious.mean()),
        "ious": ious.tolist(),
        "hits": hits.tolist(),
    }
