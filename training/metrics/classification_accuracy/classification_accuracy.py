"""Exact-match accuracy of generated labels (e.g. yes / no / maybe) as a local `evaluate` metric; the
computation is `training.metrics.classification.classification_accuracy`."""

import evaluate

from training.metrics.classification import classification_accuracy
from training.metrics.local_modules import metric_info


_DESCRIPTION = """\
Exact-match accuracy between generated and reference labels, after lower-casing and stripping surrounding
whitespace and punctuation unless normalize=False.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated labels (strings).
    references: list of reference labels (strings).
    normalize: normalise both before comparing (default True).
Returns:
    accuracy; correct: per-sample bool; per_label: accuracy per reference label.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, "", _KWARGS_DESCRIPTION, predictions="text", references="text")

    def _compute(self, predictions, references, normalize=True):
        return classification_accuracy(predictions, references, normalize=normalize)
