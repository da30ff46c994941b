"""Visual grounding accuracy at IoU >= 0.5 as a local `evaluate` metric; the computation is
`training.metrics.grounding.grounding_accuracy`."""

import evaluate

from training.metrics.grounding import grounding_accuracy
from training.metrics.local_modules import metric_info


_CITATION = """\
@inproceedings{yu2016modeling,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={ECCV},
  year={2016}
}
"""

_DESCRIPTION = """\
Fraction of predicted boxes (x0, y0, x1, y1, pixels, continuous "+0" coordinates) whose IoU with the reference
box is at least the threshold (0.5). Degenerate boxes have zero area; an IoU with a zero union is 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted boxes [x0, y0, x1, y1].
    references: list of reference boxes [x0, y0, x1, y1].
    threshold: IoU threshold (default 0.5).
    eps: added to the union (default 0; UnIVAL/OFA use 1e-6).
Returns:
    accuracy; mean_iou; ious: per-sample IoU; hits: per-sample bool.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GroundingAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, predictions="box", references="box")

    def _compute(self, predictions, references, threshold=0.5, eps=0.0):
        return grounding_accuracy(predictions, references, threshold=threshold, eps=eps)
