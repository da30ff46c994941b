"""BLEU-1..4 as the COCO caption evaluation computes it, as a local `evaluate` metric; the computation is
`training.metrics.captioning.coco_bleu`."""

import evaluate

from training.metrics.captioning import coco_bleu
from training.metrics.local_modules import metric_info


_CITATION = """\
@inproceedings{papineni2002bleu,
  title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle={ACL},
  year={2002}
}
"""

_DESCRIPTION = """\
Corpus-level BLEU-1..4 with the COCO caption evaluation's conventions: clipped n-gram counts against the maximum
count over the references, the reference length closest to each candidate (ties: the shorter) for the brevity
penalty, no smoothing beyond 1e-15 / 1e-9 guards. Captions are tokenised like the COCO PTB-tokenizer step unless
tokenize=False.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated captions, one string per image.
    references: list of lists of reference captions.
    max_n: highest n-gram order (default 4).
    length_option: "closest" (default), "shortest" or "average" reference length.
    tokenize: apply the COCO-style tokenisation (default True).
Returns:
    bleu_1 .. bleu_4: corpus BLEU; scores: per-image [bleu_1..bleu_4]; precisions; brevity_penalty;
    length_ratio; translation_length; reference_length.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CocoBleu(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, predictions="text", references="texts")

    def _compute(self, predictions, references, max_n=4, length_option="closest", tokenize=True):
        return coco_bleu(predictions, references, max_n=max_n, length_option=length_option, tokenize=tokenize)
