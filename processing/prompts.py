"""Task prompts, target formats and text normalisation of UnIVAL.

Every prompt string of the original recipes lives here, exactly as the original feeds it to the BPE (note the
leading spaces). `build_prompt(task, **fields)` builds the encoder prompt of a task and `build_target(task, **fields)`
the decoder target; `pre_caption` / `pre_question` are the original text normalisations and `postprocess_caption` /
`postprocess_vqa_answer` the clean-ups applied to generated text before evaluation.

Tasks (canonical name, then accepted aliases):

| task | aliases | prompt | target |
|---|---|---|---|
| `caption` | | caption prompt of the sample's modality (image by default) | `" {caption}"` |
| `image_caption` | `image_captioning` | `" what does the image describe?"` | `" {caption}"` |
| `video_caption` | `video_captioning` | `" what does the video describe?"` | `" {caption}"` |
| `audio_caption` | `audio_captioning` | `" what does the video describe?"` (sic, see below) | `" {caption}"` |
| `vqa` | `visual_question_answering` | `" {question}?"` | `" {answer}"` (prev_output layout) |
| `video_qa` | `video_question_answering` | `" {question}?"` | `" {answer}"` (prev_output layout) |
| `visual_grounding` | `grounding`, `refcoco` | `' which region does the text " {text} " describe?'` | `"<bin_x0> <bin_y0> <bin_x1> <bin_y1>"` |
| `grounded_caption` | `grounded_captioning`, `region_caption` | `"  what does the region describe? region:"` + 4 bins | `" {caption}"` |
| `image_text_matching` | `itm` | `' does the image describe " {caption} "?'` | `" yes"` / `" no"` |
| `video_text_matching` | | `' does the video describe " {caption} "?'` | `" yes"` / `" no"` |
| `audio_text_matching` | | `' does the audio describe " {caption} "?'` | `" yes"` / `" no"` |
| `text_matching` | | matching prompt of the sample's modality | `" yes"` / `" no"` |
| `visual_entailment` | `snli_ve`, `entailment` | `' does the image describe " {hypothesis} "?'` | `" yes"` / `" no"` / `" maybe"` (prev_output) |
| `qa_matching` | | `' what is the answer to question " {question} ". is " {answer} "?'` | `" yes"` / `" no"` |
| `text_to_image` | | `" what is the complete image? caption: {caption}"` | `<code_i>` tokens |

Audio captioning: the released AudioCaps / Clotho checkpoints were finetuned with the *video* prompt
`" what does the video describe?"` (`audio_caption_dataset.py` of the original). That is the default here, for parity
with those checkpoints; pass `audio_prompt="audio"` to use `" what does the audio describe?"` (the prompt of the
original's pretraining code, which no released checkpoint was trained with).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from .constants import MAX_CAPTION_TARGET_WORDS, MAX_SOURCE_WORDS, MODALITY_NAMES, Modality


# --------------------------------------------------------------------------------------------------------------------
# Prompt strings (exact, with their leading spaces)
# --------------------------------------------------------------------------------------------------------------------
IMAGE_CAPTION_PROMPT = " what does the image describe?"
VIDEO_CAPTION_PROMPT = " what does the video describe?"
AUDIO_CAPTION_PROMPT = " what does the audio describe?"
#: Prompt of the released audio-captioning checkpoints (the video prompt, see the module docstring).
AUDIO_CAPTION_PROMPT_AS_TRAINED = VIDEO_CAPTION_PROMPT

QUESTION_TEMPLATE = " {question}"
GROUNDING_TEMPLATE = ' which region does the text " {text} " describe?'
GROUNDED_CAPTION_PROMPT = "  what does the region describe? region:"
MATCHING_TEMPLATE = ' does the {medium} describe " {caption} "?'
ENTAILMENT_TEMPLATE = ' does the image describe " {hypothesis} "?'
ENTAILMENT_WITH_PREMISE_TEMPLATE = ' can image and text1 " {premise} " imply text2 " {hypothesis} "?'
QA_MATCHING_TEMPLATE = ' what is the answer to question " {question} ". is " {answer} "?'
TEXT_TO_IMAGE_TEMPLATE = " what is the complete image? caption: {caption}"

TARGET_TEMPLATE = " {text}"
YES_ANSWER = " yes"
NO_ANSWER = " no"
MAYBE_ANSWER = " maybe"
#: SNLI-VE labels and the answer the original trains for each.
ENTAILMENT_ANSWERS = {"entailment": YES_ANSWER, "contradiction": NO_ANSWER, "neutral": MAYBE_ANSWER}

_CAPTION_PROMPTS = {
    Modality.IMAGE: IMAGE_CAPTION_PROMPT,
    Modality.VIDEO: VIDEO_CAPTION_PROMPT,
    Modality.AUDIO: AUDIO_CAPTION_PROMPT_AS_TRAINED,
}


# --------------------------------------------------------------------------------------------------------------------
# Text normalisation (reference section 5.4)
# --------------------------------------------------------------------------------------------------------------------
_LEADING_PUNCTUATION = ",.!?*#:;~"
_WHITESPACE_RUN = re.compile(r"\s{2,}")
_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)


def _normalize_text(text: str, max_words: int | None, map_person: bool) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    text = text.lower().lstrip(_LEADING_PUNCTUATION)
    text = text.replace("-", " ").replace("/", " ")
    if map_person:
        text = text.replace("<person>", "person")
    # Like the original: runs of two or more whitespace characters become one space (a single tab or newline inside
    # the text is kept), then a trailing newline and surrounding spaces are removed.
    text = _WHITESPACE_RUN.sub(" ", text).rstrip("\n").strip(" ")
    if max_words is not None:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words])
    return text


def pre_caption(caption: str, max_words: int | None = MAX_SOURCE_WORDS) -> str:
    """Normalise a caption or a referring expression as the original does before building a prompt.

    Lowercases, strips the leading characters `,.!?*#:;~`, replaces `-` and `/` by spaces, maps `<person>` to
    `person`, collapses runs of whitespace and keeps at most `max_words` space-separated words (the original's
    `max_src_length`, 80 words; `None` keeps everything).
    """
    return _normalize_text(caption, max_words, map_person=True)


def pre_question(question: str, max_words: int | None = MAX_SOURCE_WORDS) -> str:
    """Normalise a question as the original does: `pre_caption` without the `<person>` mapping."""
    return _normalize_text(question, max_words, map_person=False)


def clean_caption_target(caption: str, max_words: int | None = MAX_CAPTION_TARGET_WORDS) -> str:
    """Caption *target* clean-up of the original caption finetuning: drop every ASCII punctuation character, collapse
    whitespace and keep the first `max_words` words (20 in the released recipes). The case is kept."""
    if not isinstance(caption, str):
        raise TypeError(f"expected a string, got {type(caption).__name__}")
    words = caption.translate(_PUNCTUATION_TABLE).split()
    if max_words is not None:
        words = words[:max_words]
    return " ".join(words)


def postprocess_caption(text: str) -> str:
    """Clean a generated caption as the original evaluation does: drop punctuation, collapse whitespace."""
    return " ".join(text.translate(_PUNCTUATION_TABLE).split())


def postprocess_vqa_answer(text: str) -> str:
    """Clean a generated VQA answer for scoring: strip, lowercase, drop trailing punctuation."""
    return text.strip().lower().rstrip(string.punctuation + " ").strip()


# --------------------------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------------------------
# Inference settings of the original evaluation scripts (reference section 8), as `generate()` keyword arguments.
# fairseq's beam search with `--unnormalized` ranks finished hypotheses by their summed log-probability: that is
# `length_penalty=0.0`; it stops once `num_beams` hypotheses are finished: `early_stopping=True`.
CAPTION_GENERATION = {
    "num_beams": 5, "max_new_tokens": 22, "min_new_tokens": 1, "no_repeat_ngram_size": 3, "length_penalty": 0.0,
    "early_stopping": True,
}
# VQA: beam 5, unnormalized; the original also restricts answers to a trie of its answer list (see
# `modeling_unival.constrained_decoding.AnswerTrie`), which a checkpoint cannot store.
ANSWER_GENERATION = {"num_beams": 5, "max_new_tokens": 16, "length_penalty": 0.0, "early_stopping": True}
# RefCOCO: beam 5, exactly four location tokens, no repeated 3-gram.
GROUNDING_GENERATION = {
    "num_beams": 5, "min_new_tokens": 4, "max_new_tokens": 4, "no_repeat_ngram_size": 3, "early_stopping": True,
}
# yes / no / maybe style answers: one token and </s>.
SHORT_ANSWER_GENERATION = {"num_beams": 5, "max_new_tokens": 3, "length_penalty": 0.0, "early_stopping": True}


@dataclass(frozen=True)
class TaskSpec:
    """Description of a task: the modality its prompt refers to, the decoder layout the original finetuning used,
    the input sizes of the released recipes (informational: the processor never changes its sizes by itself) and
    the original's inference settings (`generation`, `generate()` keyword arguments)."""

    name: str
    modality: Modality | None  # None: follows the sample's modality
    prompt_type: str = "none"  # "none" or "prev_output"
    image_size: int | None = None
    num_frames: int | None = None
    generation: dict = field(default_factory=dict, compare=False)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("caption", None, image_size=480, num_frames=16, generation=CAPTION_GENERATION),
        TaskSpec("image_caption", Modality.IMAGE, image_size=480, generation=CAPTION_GENERATION),
        TaskSpec("video_caption", Modality.VIDEO, num_frames=16, generation=CAPTION_GENERATION),
        TaskSpec("audio_caption", Modality.AUDIO, generation=CAPTION_GENERATION),
        TaskSpec("vqa", Modality.IMAGE, prompt_type="prev_output", image_size=480, generation=ANSWER_GENERATION),
        TaskSpec("video_qa", Modality.VIDEO, prompt_type="prev_output", num_frames=8, generation=ANSWER_GENERATION),
        TaskSpec("visual_grounding", Modality.IMAGE, image_size=512, generation=GROUNDING_GENERATION),
        TaskSpec("grounded_caption", Modality.IMAGE, image_size=512, generation=CAPTION_GENERATION),
        TaskSpec("image_text_matching", Modality.IMAGE, generation=SHORT_ANSWER_GENERATION),
        TaskSpec("video_text_matching", Modality.VIDEO, generation=SHORT_ANSWER_GENERATION),
        TaskSpec("audio_text_matching", Modality.AUDIO, generation=SHORT_ANSWER_GENERATION),
        TaskSpec("text_matching", None, generation=SHORT_ANSWER_GENERATION),
        TaskSpec(
            "visual_entailment", Modality.IMAGE, prompt_type="prev_output", image_size=480,
            generation=SHORT_ANSWER_GENERATION,
        ),
        TaskSpec("qa_matching", None, generation=SHORT_ANSWER_GENERATION),
        TaskSpec("text_to_image", Modality.TEXT),
    )
}

TASK_ALIASES = {
    "image_captioning": "image_caption",
    "video_captioning": "video_caption",
    "audio_captioning": "audio_caption",
    "visual_question_answering": "vqa",
    "video_question_answering": "video_qa",
    "grounding": "visual_grounding",
    "refcoco": "visual_grounding",
    "grounded_captioning": "grounded_caption",
    "region_caption": "grounded_caption",
    "itm": "image_text_matching",
    "snli_ve": "visual_entailment",
    "entailment": "visual_entailment",
}

#: The fields each task's prompt needs (checked by `build_prompt`).
PROMPT_FIELDS = {
    "caption": (),
    "image_caption": (),
    "video_caption": (),
    "audio_caption": (),
    "vqa": ("question",),
    "video_qa": ("question",),
    "visual_grounding": ("text",),
    "grounded_caption": ("region",),
    "image_text_matching": ("caption",),
    "video_text_matching": ("caption",),
    "audio_text_matching": ("caption",),
    "text_matching": ("caption",),
    "visual_entailment": ("hypothesis",),
    "qa_matching": ("question", "answer"),
    "text_to_image": ("caption",),
}

#: The field a processor call's `text=` fills when a task is given (tasks absent here take no free text).
PRIMARY_FIELDS = {
    "vqa": "question",
    "video_qa": "question",
    "visual_grounding": "text",
    "grounded_caption": "region",
    "image_text_matching": "caption",
    "video_text_matching": "caption",
    "audio_text_matching": "caption",
    "text_matching": "caption",
    "visual_entailment": "hypothesis",
    "text_to_image": "caption",
}

#: Every keyword `build_prompt` understands, besides `task`.
PROMPT_KEYWORDS = frozenset(
    {
        "modality",
        "question",
        "caption",
        "text",
        "hypothesis",
        "premise",
        "answer",
        "region",
        "box",
        "image_size",
        "normalize",
        "max_words",
        "append_question_mark",
        "audio_prompt",
        "processed_size",
        "max_image_size",
        "num_bins",
        "clip",
    }
)


def resolve_task(task: str) -> TaskSpec:
    """Return the `TaskSpec` of a task name or alias (case-insensitive); raise `ValueError` for unknown tasks."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {type(task).__name__}")
    key = task.strip().lower().replace("-", "_").replace(" ", "_")
    key = TASK_ALIASES.get(key, key)
    if key not in TASKS:
        known = sorted(set(TASKS) | set(TASK_ALIASES))
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(known)}")
    return TASKS[key]


def _resolve_modality(spec: TaskSpec, modality) -> Modality:
    if spec.modality is not None:
        return spec.modality
    if modality is None:
        return Modality.IMAGE
    if isinstance(modality, str):
        try:
            return Modality[modality.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown modality {modality!r}; use 'image', 'video' or 'audio'") from None
    return Modality(int(modality))


def _require(task: str, value, name: str) -> str:
    if value is None:
        raise ValueError(f"task {task!r} needs `{name}`")
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"`{name}` is empty")
    return value


def build_prompt(
    task: str,
    *,
    modality: Modality | str | int | None = None,
    question: str | None = None,
    caption: str | None = None,
    text: str | None = None,
    hypothesis: str | None = None,
    premise: str | None = None,
    answer: str | None = None,
    region: str | None = None,
    box=None,
    image_size=None,
    normalize: bool = True,
    max_words: int | None = MAX_SOURCE_WORDS,
    append_question_mark: bool = True,
    audio_prompt: str = "video",
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
    clip: bool = False,
) -> str:
    """Build the encoder prompt of `task` exactly as the original does.

    Args:
        task: a task name or alias (see the module docstring).
        modality: for the modality-dependent tasks (`caption`, `text_matching`, `qa_matching`): `"image"`,
            `"video"`, `"audio"` or a `Modality`. Defaults to image.
        question / caption / text / hypothesis / premise / answer: the task's text fields.
        region: for `grounded_caption`, the 4 location tokens (e.g. `quantize_box(...)`); alternatively pass `box`
            (pixel `[x0, y0, x1, y1]`) and `image_size` (`(height, width)` of the original image), plus optionally
            `processed_size` / `max_image_size` / `num_bins` / `clip` as for `quantize_box`.
        normalize: apply `pre_question` (questions) / `pre_caption` (captions, referring expressions, hypotheses) as
            the original finetuning does. Set `False` to use the text verbatim.
        max_words: word limit of that normalisation (80, the original's `max_src_length`).
        append_question_mark: VQA / video QA: append `?` when the question does not end with one (finetuning
            format). The pretraining format did not append it.
        audio_prompt: `"video"` (default, the prompt the released audio checkpoints were trained with) or `"audio"`.
        premise: visual entailment only; when given, the OFA-style premise prompt is used (the UnIVAL recipe did
            not use the premise).
    """
    spec = resolve_task(task)
    name = spec.name
    medium = _resolve_modality(spec, modality)

    def caption_norm(value: str) -> str:
        return pre_caption(value, max_words) if normalize else value

    def question_norm(value: str) -> str:
        return pre_question(value, max_words) if normalize else value

    if name in ("caption", "image_caption", "video_caption", "audio_caption"):
        if medium == Modality.AUDIO:
            if audio_prompt not in ("video", "audio"):
                raise ValueError(f"audio_prompt must be 'video' or 'audio', got {audio_prompt!r}")
            return AUDIO_CAPTION_PROMPT if audio_prompt == "audio" else AUDIO_CAPTION_PROMPT_AS_TRAINED
        if medium not in _CAPTION_PROMPTS:
            raise ValueError(f"task {task!r} needs an image, a video or an audio sample")
        return _CAPTION_PROMPTS[medium]

    if name in ("vqa", "video_qa"):
        value = question_norm(_require(task, question, "question"))
        if append_question_mark and not value.endswith("?"):
            value = value + "?"
        return QUESTION_TEMPLATE.format(question=value)

    if name == "visual_grounding":
        value = text if text is not None else caption
        value = caption_norm(_require(task, value, "text"))
        return GROUNDING_TEMPLATE.format(text=value)

    if name == "grounded_caption":
        if region is None:
            if box is None or image_size is None:
                raise ValueError(f"task {task!r} needs `region` (location tokens) or `box` and `image_size`")
            from .boxes import quantize_box  # local import: boxes does not depend on prompts

            region = quantize_box(
                box,
                image_size,
                processed_size=processed_size,
                max_image_size=max_image_size,
                num_bins=num_bins,
                clip=clip,
            )
        region = _require(task, region, "region")
        # The location tokens follow the prompt directly (the original encodes them without BPE, so no space token).
        return GROUNDED_CAPTION_PROMPT + "".join(region.split())

    if name in ("image_text_matching", "video_text_matching", "audio_text_matching", "text_matching"):
        if medium not in MODALITY_NAMES:
            raise ValueError(f"task {task!r} needs an image, a video or an audio sample")
        value = caption_norm(_require(task, caption, "caption"))
        return MATCHING_TEMPLATE.format(medium=MODALITY_NAMES[medium], caption=value)

    if name == "visual_entailment":
        value = caption_norm(_require(task, hypothesis, "hypothesis"))
        if premise is not None:
            premise = caption_norm(_require(task, premise, "premise"))
            return ENTAILMENT_WITH_PREMISE_TEMPLATE.format(premise=premise, hypothesis=value)
        return ENTAILMENT_TEMPLATE.format(hypothesis=value)

    if name == "qa_matching":
        q = question_norm(_require(task, question, "question"))
        a = _require(task, answer, "answer")
        return QA_MATCHING_TEMPLATE.format(question=q, answer=a)

    if name == "text_to_image":
        value = caption_norm(_require(task, caption, "caption"))
        return TEXT_TO_IMAGE_TEMPLATE.format(caption=value)

    raise AssertionError(f"unhandled task {name}")  # pragma: no cover


def format_target(text: str) -> str:
    """Format a free-text decoder target as the original does: `" {text}"` (one leading space), unless it already
    starts with whitespace or with a location / code token (`<bin_...>`, `<code_...>`, which are not preceded by a
    space)."""
    if not isinstance(text, str):
        raise TypeError(f"a target must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("a target is empty")
    if text[0].isspace() or text.startswith(("<bin_", "<code_")):
        return text
    return TARGET_TEMPLATE.format(text=text)


def build_target(
    task: str,
    *,
    caption: str | None = None,
    answer: str | None = None,
    label: str | bool | None = None,
    box=None,
    image_size=None,
    clean: bool = True,
    max_words: int | None = MAX_CAPTION_TARGET_WORDS,
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
    clip: bool = False,
) -> str:
    """Build the decoder target text of `task` as the original finetuning does.

    * captioning / grounded captioning: `" {caption}"`, cleaned with `clean_caption_target` when `clean`;
    * VQA / video QA / QA: `" {answer}"`;
    * visual grounding: the 4 location tokens of `box` (pixel coordinates in an image of `image_size`);
    * matching tasks: `label` (bool) -> `" yes"` / `" no"`;
    * visual entailment: `label` in `entailment` / `contradiction` / `neutral` (or `yes` / `no` / `maybe`).
    """
    spec = resolve_task(task)
    name = spec.name
    if name in ("caption", "image_caption", "video_caption", "audio_caption", "grounded_caption", "text_to_image"):
        value = _require(task, caption, "caption")
        if clean and name != "text_to_image":
            value = clean_caption_target(value, max_words)
        return format_target(value)
    if name in ("vqa", "video_qa"):
        return format_target(_require(task, answer, "answer").strip())
    if name == "visual_grounding":
        if box is None or image_size is None:
            raise ValueError(f"task {task!r} needs `box` and `image_size` to build its target")
        from .boxes import quantize_box

        return quantize_box(
            box, image_size, processed_size=processed_size, max_image_size=max_image_size, num_bins=num_bins, clip=clip
        )
    if name in ("image_text_matching", "video_text_matching", "audio_text_matching", "text_matching", "qa_matching"):
        if not isinstance(label, bool):
            raise ValueError(f"task {task!r} needs `label=True` (match) or `label=False`")
        return YES_ANSWER if label else NO_ANSWER
    if name == "visual_entailment":
        if not isinstance(label, str):
            raise ValueError("task 'visual_entailment' needs `label` in 'entailment', 'contradiction', 'neutral'")
        key = label.strip().lower()
        by_answer = {answer.strip(): answer for answer in ENTAILMENT_ANSWERS.values()}
        if key in ENTAILMENT_ANSWERS:
            return ENTAILMENT_ANSWERS[key]
        if key in by_answer:
            return by_answer[key]
        raise ValueError(f"unknown entailment label {label!r}; use entailment / contradiction / neutral")
    raise AssertionError(f"unhandled task {name}")  # pragma: no cover


__all__ = [
    "AUDIO_CAPTION_PROMPT",
    "AUDIO_CAPTION_PROMPT_AS_TRAINED",
    "ENTAILMENT_ANSWERS",
    "ENTAILMENT_TEMPLATE",
    "ENTAILMENT_WITH_PREMISE_TEMPLATE",
    "GROUNDED_CAPTION_PROMPT",
    "GROUNDING_TEMPLATE",
    "IMAGE_CAPTION_PROMPT",
    "MATCHING_TEMPLATE",
    "PROMPT_FIELDS",
    "PRIMARY_FIELDS",
    "PROMPT_KEYWORDS",
    "QA_MATCHING_TEMPLATE",
    "QUESTION_TEMPLATE",
    "TASKS",
    "TASK_ALIASES",
    "TEXT_TO_IMAGE_TEMPLATE",
    "TaskSpec",
    "VIDEO_CAPTION_PROMPT",
    "build_prompt",
    "build_target",
    "clean_caption_target",
    "format_target",
    "postprocess_caption",
    "postprocess_vqa_answer",
    "pre_caption",
    "pre_question",
    "resolve_task",
]
