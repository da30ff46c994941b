"""Evaluation metrics for UnIVAL tasks, as plain functions and as local `evaluate` modules.

- captioning: :func:`cider_d` (CIDEr-D), :func:`coco_bleu` (BLEU-1..4), :func:`meteor` (needs Java + jar),
  :func:`coco_tokenize`
- VQA: :func:`vqa_accuracy` / :func:`vqa_answer_accuracy` (10-annotator accuracy), :func:`normalize_vqa_answer`,
  :func:`vqa_score` (UnIVAL/OFA confidence score), :func:`answer_confidences`
- grounding: :func:`box_iou`, :func:`box_ious`, :func:`grounding_accuracy` (Acc@0.5)
- classification: :func:`classification_accuracy`, :func:`normalize_label`
- :func:`load_metric`: the ``evaluate`` module of a metric, loaded from this package's local scripts
"""

from .captioning import cider_d, coco_bleu, coco_tokenize, meteor, meteor_available
from .classification import classification_accuracy, normalize_label
from .grounding import box_iou, box_ious, grounding_accuracy
from .local_modules import METRIC_MODULES, load_metric, metric_module_path
from .vqa import answer_confidences, normalize_vqa_answer, vqa_accuracy, vqa_answer_accuracy, vqa_score


__all__ = [
    "cider_d",
    "coco_bleu",
    "coco_tokenize",
    "meteor",
    "meteor_available",
    "classification_accuracy",
    "normalize_label",
    "box_iou",
    "box_ious",
    "grounding_accuracy",
    "vqa_accuracy",
    "vqa_answer_accuracy",
    "normalize_vqa_answer",
    "vqa_score",
    "answer_confidences",
    "METRIC_MODULES",
    "load_metric",
    "metric_module_path",
]
