"""Input checks shared by the metric functions."""

from __future__ import annotations

from collections.abc import Iterable


__all__ = ["paired_lists"]


def paired_lists(
    predictions: Iterable, references: Iterable, references_are: str, samples: str = "samples"
) -> tuple[list, list]:
    """``predictions`` and ``references`` as lists that pair up one to one: as many of each (``references_are``
    names the references in the error, e.g. ``"answer lists"``) and at least one of the ``samples`` (a mean over
    none is undefined). Raises ``ValueError`` otherwise.

    Each metric rejects a bare string as ``predictions`` itself, before this: it would pass as a list of letters.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} {references_are}")
    if not predictions:
        raise ValueError(f"no {samples} to score")
    return predictions, references
