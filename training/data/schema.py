"""The one example schema shared by every data source (synthetic world, OFA/UnIVAL TSV files, Hugging Face datasets).

An example holds *raw* fields only (caption, question, answers, region text, box in pixels, hypothesis, ...); prompt
strings and token ids are built later by ``processing`` / the collator.

Fields (``FIELDS`` gives the order; :func:`example_features` the ``datasets.Features``):

==================== ========================= =====================================================================
field                type                      meaning
==================== ========================= =====================================================================
id                   str                       unique id of the example
source               str                       "synthetic", the TSV's dataset name / file stem, or a user label
task                 str                       one of :data:`TASKS`
modality             str                       one of :data:`MODALITIES`
split                str                       "train" / "validation" / "test" (or a user split)
group_id             str                       examples built from the same scene / image / clip share it
image                datasets.Image() | None   the image (image modality), else None
media_path           str | None                path of the media file (image file when there is one, video, audio);
                                               None for base64-embedded images and text-only examples
text                 str | None                statement text: candidate caption (``*_text_matching``), referring
                                               expression (``visual_grounding``), hypothesis (``visual_entailment``),
                                               candidate answer (``qa_matching``)
premise              str | None                premise caption (``visual_entailment``; UnIVAL does not feed it)
question             str | None                question (``vqa``, ``video_qa``, ``qa_matching``)
target               str                       the raw training target: caption, best answer, "yes"/"no"/"maybe",
                                               region caption; "" for ``visual_grounding`` (its target is boxes[0])
answers              list[str]                 every acceptable target (reference captions, annotator answers)
answer_confidences   list[float]               one confidence per answer (VQA ``min(1, n/3)``; 1.0 otherwise);
                                               ``target`` is the first answer with the highest confidence
boxes                list[list[float]]         pixel boxes ``[x0, y0, x1, y1]`` in the original media, x1/y1
                                               exclusive; one box for grounding / grounded captioning, else []
object_tags          list[str]                 object tags of the scene (TSV "object tags" / "gt objects" columns)
difficulty           int                       curriculum level 1..3 (synthetic), 0 = unknown
metadata             str                       JSON object with source-specific extras (file/line for readers,
                                               template types for the synthetic world)
==================== ========================= =====================================================================
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Task names, in a fixed order.
TASKS: tuple[str, ...] = (
    "caption",  # image -> caption
    "vqa",  # image + question -> answer
    "qa_matching",  # image/video + question + candidate answer -> yes/no
    "visual_grounding",  # image + referring expression -> box
    "grounded_caption",  # image + box -> region caption
    "image_text_matching",  # image + caption -> yes/no
    "visual_entailment",  # image + hypothesis -> yes/no/maybe
    "video_caption",  # video -> caption
    "video_qa",  # video + question -> answer
    "video_text_matching",  # video + caption -> yes/no
    "audio_caption",  # audio -> caption
    "audio_text_matching",  # audio + caption -> yes/no
)
MODALITIES: tuple[str, ...] = ("image", "video", "audio", "text")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: modality each task normally has (qa_matching: image or video).
TASK_MODALITIES: dict[str, tuple[str, ...]] = {
    "caption": ("image",),
    "vqa": ("image",),
    "qa_matching": ("image", "video"),
    "visual_grounding": ("image",),
    "grounded_caption": ("image",),
    "image_text_matching": ("image",),
    "visual_entailment": ("image",),
    "video_caption": ("video",),
    "video_qa": ("video",),
    "video_text_matching": ("video",),
    "audio_caption": ("audio",),
    "audio_text_matching": ("audio",),
}
YES_NO = ("yes", "no")
ENTAILMENT_LABELS = ("yes", "no", "maybe")

FIELDS: tuple[str, ...] = (
    "id",
    "source",
    "task",
    "modality",
    "split",
    "group_id",
    "image",
    "media_path",
    "text",
    "premise",
    "question",
    "target",
    "answers",
    "answer_confidences",
    "boxes",
    "object_tags",
    "difficulty",
    "metadata",
)


class SchemaError(ValueError):
    """An example that does not satisfy the schema."""


def example_features():
    """``datasets.Features`` of the schema (imported lazily: ``datasets`` is heavy)."""
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "source": Value("string"),
            "task": Value("string"),
            "modality": Value("string"),
            "split": Value("string"),
            "group_id": Value("string"),
            "image": Image(),
            "media_path": Value("string"),
            "text": Value("string"),
            "premise": Value("string"),
            "question": Value("string"),
            "target": Value("string"),
            "answers": List(Value("string")),
            "answer_confidences": List(Value("float64")),
            "boxes": List(List(Value("float64"), length=4)),
            "object_tags": List(Value("string")),
            "difficulty": Value("int32"),
            "metadata": Value("string"),
        }
    )


def make_example(**fields: Any) -> dict:
    """Build a schema example: fills defaults, orders the keys as :data:`FIELDS`, validates, and derives
    ``answers`` / ``answer_confidences`` from ``target`` when they are not given."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise SchemaError(f"unknown example fields {sorted(unknown)}")
    ex = {
        "id": None,
        "source": "",
        "task": None,
        "modality": None,
        "split": "train",
        "group_id": None,
        "image": None,
        "media_path": None,
        "text": None,
        "premise": None,
        "question": None,
        "target": "",
        "answers": None,
        "answer_confidences": None,
        "boxes": [],
        "object_tags": [],
        "difficulty": 0,
        "metadata": "{}",
    }
    ex.update(fields)
    if isinstance(ex["metadata"], dict):
        ex["metadata"] = json.dumps(ex["metadata"], sort_keys=True, ensure_ascii=False)
    if ex["group_id"] is None:
        ex["group_id"] = ex["id"]
    if ex["answers"] is None:
        ex["answers"] = [ex["target"]] if ex["target"] else []
    if ex["answer_confidences"] is None:
        ex["answer_confidences"] = [1.0] * len(ex["answers"])
    ex["boxes"] = [[float(v) for v in b] for b in ex["boxes"]]
    ex["answer_confidences"] = [float(c) for c in ex["answer_confidences"]]
    validate_example(ex)
    return {k: ex[k] for k in FIELDS}


def validate_example(ex: dict) -> None:
    """Raise :class:`SchemaError` when ``ex`` is not a well-formed example."""
    missing = [k for k in FIELDS if k not in ex]
    if missing:
        raise SchemaError(f"missing fields {missing}")
    if not isinstance(ex["id"], str) or not ex["id"]:
        raise SchemaError("id must be a non-empty string")
    if ex["task"] not in TASKS:
        raise SchemaError(f"unknown task {ex['task']!r} (known: {', '.join(TASKS)})")
    if ex["modality"] not in MODALITIES:
        raise SchemaError(f"unknown modality {ex['modality']!r}")
    if ex["modality"] not in TASK_MODALITIES[ex["task"]] and ex["modality"] != "text":
        raise SchemaError(f"task {ex['task']} does not take modality {ex['modality']}")
    if ex["modality"] == "image" and ex["image"] is None and not ex["media_path"]:
        raise SchemaError("image example without an image")
    if ex["modality"] in ("video", "audio") and not ex["media_path"]:
        raise SchemaError(f"{ex['modality']} example without media_path")
    if not isinstance(ex["target"], str):
        raise SchemaError("target must be a string")
    if len(ex["answers"]) != len(ex["answer_confidences"]):
        raise SchemaError("answers and answer_confidences differ in length")
    for c in ex["answer_confidences"]:
        if not (isinstance(c, float) and math.isfinite(c) and c >= 0):
            raise SchemaError(f"bad answer confidence {c!r}")
    for b in ex["boxes"]:
        if len(b) != 4 or not all(math.isfinite(v) for v in b):
            raise SchemaError(f"box must be 4 finite numbers, got {b!r}")
        if b[2] <= b[0] or b[3] <= b[1]:
            raise SchemaError(f"box has x1 <= x0 or y1 <= y0: {b!r}")
    task = ex["task"]
    if task == "visual_grounding" and len(ex["boxes"]) != 1:
        raise SchemaError("visual_grounding needs exactly one box")
    if task == "grounded_caption" and len(ex["boxes"]) != 1:
        raise SchemaError("grounded_caption needs exactly one box")
    if task in ("vqa", "video_qa", "qa_matching") and not ex["question"]:
        raise SchemaError(f"{task} needs a question")
    if task.endswith("_text_matching") or task == "qa_matching":
        if ex["target"] not in YES_NO:
            raise SchemaError(f"{task} target must be yes/no, got {ex['target']!r}")
        if not ex["text"]:
            raise SchemaError(f"{task} needs a candidate text")
    if task == "visual_entailment":
        if ex["target"] not in ENTAILMENT_LABELS:
            raise SchemaError(f"visual_entailment target must be yes/no/maybe, got {ex['target']!r}")
        if not ex["text"]:
            raise SchemaError("visual_entailment needs a hypothesis (text)")
    if task == "visual_grounding" and not ex["text"]:
        raise SchemaError("visual_grounding needs a referring expression (text)")
    if task != "visual_grounding" and not ex["target"]:
        raise SchemaError(f"{task} needs a non-empty target")
    try:
        json.loads(ex["metadata"])
    except (TypeError, ValueError) as e:
        raise SchemaError(f"metadata must be a JSON string: {e}") from None


def best_answer(answers: list[str], confidences: list[float]) -> str:
    """First answer with the highest confidence."""
    if not answers:
        raise SchemaError("no answers")
    best = max(range(len(answers)), key=lambda i: (confidences[i], -i))
    return answers[best]
