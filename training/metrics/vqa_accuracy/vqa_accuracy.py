"""VQA accuracy (10-annotator formula, VQA answer normalisation) as a local `evaluate` metric; the computation
is `training.metrics.vqa.vqa_accuracy`."""

import evaluate

from training.metrics.vqa import vqa_accuracy
from training.metrics.local_modules import metric_info


_CITATION = """\
@inproceedings{antol2015vqa,
  title={VQA: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and
          Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={ICCV},
  year={2015}
}
"""

_DESCRIPTION = """\
VQA accuracy: for each question, the mean over the leave-one-annotator-out subsets of the annotators' answers of
min(1, #subset answers equal to the prediction / 3) (formula="official"), or min(1, #matches / 3)
(formula="simple"); answers normalised as in the VQA evaluation (punctuation, number words to digits, articles,
contractions) unless normalize="never".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted answers (strings).
    references: list of lists of annotator answers (10 per question in VQA v2).
    formula: "official" (default) or "simple".
    normalize: "always" (default), "if_disagree" (as the official script) or "never".
Returns:
    vqa_accuracy: mean accuracy; scores: per-question accuracies.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, predictions="text", references="texts")

    def _compute(self, predictions, references, formula="official", normalize="always"):
        return vqa_accuracy(predictions, references, formula=formula, normalize=normalize)
