"""CIDEr-D (COCO caption evaluation conventions) as a local `evaluate` metric; the computation is
`training.metrics.captioning.cider_d`."""

import evaluate

from training.metrics.captioning import cider_d
from training.metrics.local_modules import metric_info


_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={CVPR},
  year={2015}
}
"""

_DESCRIPTION = """\
CIDEr-D as the COCO caption evaluation computes it: TF-IDF weighted 1..4-gram vectors with document frequencies
taken over the reference sets of the evaluated corpus, clipped cosine similarity per n-gram order with a Gaussian
length penalty (sigma 6), averaged over references and orders, times 10. Captions are tokenised like the COCO
PTB-tokenizer step (lower-case, punctuation removed) unless tokenize=False.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated captions, one string per image.
    references: list of lists of reference captions.
    sigma: width of the Gaussian length penalty (default 6.0).
    tokenize: apply the COCO-style tokenisation (default True).
Returns:
    cider_d: corpus CIDEr-D (mean of the per-image scores); NaN, with a warning, for a single image (CIDEr-D's
        n-gram weights are all 0 over one image's references).
    scores: per-image CIDEr-D.
Examples:
    >>> from training.metrics import load_metric
    >>> cider = load_metric("cider")
    >>> cider.compute(predictions=["a dog runs", "a cat"], references=[["a dog runs"], ["a black cat"]])["cider_d"]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, predictions="text", references="texts")

    def _compute(self, predictions, references, sigma=6.0, tokenize=True):
        return cider_d(predictions, references, sigma=sigma, tokenize=tokenize)
