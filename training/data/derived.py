"""The pretraining tasks the original derives from every pretraining row (reference section 6.1).

UnIVAL's pretraining TSV holds caption, VQA and grounding rows; its dataset adds a second example to each of them:

* a caption row (image, video or audio) also yields a **text matching** example: `' does the image describe " c "?'`
  with the true caption (probability 0.5, answer "yes") or a negative caption ("no");
* a VQA row (image or video) also yields a **QA matching** example: the question with the true answer or a negative
  answer;
* a grounding row also yields a **grounded captioning** example: the box in, the referring expression out.

Negatives follow the original's rules where it has them: a negative caption replaces one object tag of the caption by
another object word (probability 0.4, when the row has tags that occur in its caption), otherwise it is the caption
of another row of the same modality. A negative answer is another answer of the same kind: a count +-1 for numbers,
the other of yes/no, else an answer of another row whose question starts with the same two words (the original reads
answer types from a `type2ans.json` file that is not released; the question prefix stands in for the type).

The original draws the positive/negative choice anew every epoch; here it is drawn once, from `seed` and the row's
position, so a dataset is reproducible and a resumed run sees the same examples.

    derived = derive_pretraining_tasks(dataset, seed=0)       # the input rows followed by the derived ones
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from .schema import make_example


#: Task derived from each row task (the original's pairing), by modality where it matters.
DERIVED_TASK = {
    "caption": "image_text_matching",
    "video_caption": "video_text_matching",
    "audio_caption": "audio_text_matching",
    "vqa": "qa_matching",
    "video_qa": "qa_matching",
    "visual_grounding": "grounded_caption",
}
#: Probability of a tag-replacement negative caption (when the caption mentions one of the row's tags).
TAG_NEGATIVE_PROBABILITY = 0.4
POSITIVE_PROBABILITY = 0.5

_NUMBER = re.compile(r"^\d+$")


def _question_kind(question: str) -> str:
    return " ".join(question.lower().split()[:2])


def _pick_other(rng: np.random.Generator, pool: list[str], avoid: set[str]) -> str | None:
    """A random element of `pool` not in `avoid` (a few draws, then a scan: pools are large, hits are common)."""
    for _ in range(8):
        candidate = pool[int(rng.integers(len(pool)))] if pool else None
        if candidate is not None and candidate not in avoid:
            return candidate
    others = [c for c in pool if c not in avoid]
    return others[int(rng.integers(len(others)))] if others else None


def _negative_answer(rng: np.random.Generator, answer: str, pool: list[str]) -> str | None:
    if _NUMBER.match(answer):
        value = int(answer)
        return str(value + 1 if value == 0 or rng.random() < 0.5 else value - 1)
    if answer in ("yes", "no"):
        return "no" if answer == "yes" else "yes"
    return _pick_other(rng, pool, {answer})


def _negative_caption(rng: np.random.Generator, caption: str, tags: list[str], tag_words: list[str],
                      captions: list[str]) -> str | None:
    present = [t for t in dict.fromkeys(tags) if re.search(rf"\b{re.escape(t)}\b", caption)]
    if present and rng.random() < TAG_NEGATIVE_PROBABILITY:
        new = _pick_other(rng, tag_words, set(present))
        if new is not None:
            tag = present[int(rng.integers(len(present)))]
            return re.sub(rf"\b{re.escape(tag)}\b", new, caption, count=1)
    return _pick_other(rng, captions, {caption})


def derived_examples(examples: list[dict], seed: int = 0) -> list[dict]:
    """The derived example of every row of `examples` (schema dicts) that has one, in row order. Rows whose negative
    cannot be built (a dataset of one caption, a VQA dataset with one answer) get a positive example."""
    captions, answers, tag_words = defaultdict(list), defaultdict(list), set()
    for ex in examples:
        if ex["task"] in ("caption", "video_caption", "audio_caption"):
            captions[ex["modality"]].append(ex["target"])
            tag_words.update(ex.get("object_tags") or [])
        elif ex["task"] in ("vqa", "video_qa"):
            answers[_question_kind(ex["question"])].extend(ex.get("answers") or [ex["target"]])
    tag_list = sorted(tag_words)
    answer_pools = {kind: sorted(set(pool)) for kind, pool in answers.items()}
    out = []
    for index, ex in enumerate(examples):
        task = DERIVED_TASK.get(ex["task"])
        if task is None:
            continue
        rng = np.random.default_rng([seed, index])
        fields = {k: ex[k] for k in ("source", "modality", "split", "group_id", "image", "media_path", "object_tags",
                                     "difficulty") if k in ex}
        metadata = {**json.loads(ex.get("metadata") or "{}"), "derived_from": ex["id"]}
        if task == "grounded_caption":
            fields.update(boxes=ex["boxes"][:1], target=ex["text"], answers=[ex["text"]])
        else:
            positive = rng.random() < POSITIVE_PROBABILITY
            if task == "qa_matching":
                pool = answer_pools[_question_kind(ex["question"])]
                negative = None if positive else _negative_answer(rng, ex["target"], pool)
                fields.update(question=ex["question"], text=ex["target"] if negative is None else negative)
            else:
                negative = None if positive else _negative_caption(
                    rng, ex["target"], ex.get("object_tags") or [], tag_list, captions[ex["modality"]]
                )
                fields.update(text=ex["target"] if negative is None else negative)
            label = "yes" if negative is None else "no"
            fields.update(target=label, answers=[label])
            metadata["negative"] = negative is not None
        out.append(make_example(id=f"{ex['id']}-{task}", task=task, metadata=metadata, **fields))
    return out


def derive_pretraining_tasks(dataset, seed: int = 0):
    """`dataset` (a `datasets.Dataset` of schema examples) followed by the derived examples of its rows. Images are
    copied as stored bytes, never decoded."""
    import datasets

    image_feature = dataset.features.get("image")
    light = dataset.cast_column("image", datasets.Image(decode=False)) if image_feature is not None else dataset
    extra = derived_examples(light.to_list(), seed)
    if not extra:
        return dataset
    extra = datasets.Dataset.from_list(extra, features=light.features)
    if image_feature is not None:
        extra = extra.cast_column("image", image_feature)
    return datasets.concatenate_datasets([dataset, extra])


__all__ = ["DERIVED_TASK", "derive_pretraining_tasks", "derived_examples"]
