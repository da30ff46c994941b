"""Accuracy for generated class labels (e.g. yes / no / maybe answers of entailment-style tasks)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .inputs import paired_lists


__all__ = ["normalize_label", "classification_accuracy"]

_EDGE_PUNCTUATION = ".,;:!?\"'`()[]{}"


def normalize_label(text: str) -> str:
    """Lower-case, strip surrounding whitespace and punctuation (``"Yes."`` -> ``"yes"``), collapse inner
    whitespace to single spaces."""
    return re.sub(r"\s+", " ", str(text).strip().strip(_EDGE_PUNCTUATION + " \t\n").lower()).strip()


def classification_accuracy(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    normalize: bool = True,
) -> dict:
    """Exact-match accuracy of predicted labels against reference labels, after :func:`normalize_label` when
    ``normalize`` (default) and as given otherwise.

    Returns ``{"accuracy": .., "correct": [per-sample bool], "per_label": {reference label: accuracy}}``.
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of labels, not strings")
    predictions, references = paired_lists(predictions, references, "references")
    norm = normalize_label if normalize else str
    preds = [norm(p) for p in predictions]
    refs = [norm(r) for r in references]
    correct = [p == r for p, r in zip(preds, refs)]
    totals: dict[str, list[int]] = {}
    for r, ok in zip(refs, correct):
        counts = totals.setdefault(r, [0, 0])
        counts[0] += int(ok)
        counts[1] += 1
    return {
        "accuracy": sum(correct) / len(correct),
        "correct": correct,
        "per_label": {label: hit / n for label, (hit, n) in totals.items()},
    }
