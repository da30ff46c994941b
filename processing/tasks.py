"""The task registry of UnIVAL: one `TaskSpec` per task, read by everything that needs to know about a task.

A `TaskSpec` says, for one task, what the processor builds (the encoder prompt, from which fields, which field a
call's `text=` fills), how the decoder is laid out (`prompt_type`), what the model writes (`output`: a caption, a
free answer, a label of a closed set, a box), how the original generated it (`generation`) and how it is scored
(`metric`). The processor, the training collator, the evaluation, the pipelines, the recipes, finetuning and the
model cards all read this table; none of them keeps a list of tasks of its own.

| task | aliases | prompt fields (`text=` fills the first) | layout | output | metric |
|---|---|---|---|---|---|
| `caption` | | - (the sample's modality) | plain | caption | CIDEr-D |
| `image_caption` | `image_captioning` | - | plain | caption | CIDEr-D |
| `video_caption` | `video_captioning` | - | plain | caption | CIDEr-D |
| `audio_caption` | `audio_captioning` | - | plain | caption | CIDEr-D |
| `vqa` | `visual_question_answering` | question | prev_output | answer | VQA score |
| `video_qa` | `video_question_answering` | question | prev_output | answer | VQA score |
| `visual_grounding` | `grounding`, `refcoco` | text | plain | box | accuracy@0.5 |
| `grounded_caption` | `grounded_captioning`, `region_caption` | region (or `box` + `image_size`) | plain | caption | CIDEr-D |
| `image_text_matching` | `itm` | caption | plain | yes / no | accuracy |
| `video_text_matching` | | caption | plain | yes / no | accuracy |
| `audio_text_matching` | | caption | plain | yes / no | accuracy |
| `text_matching` | | caption (the sample's modality) | plain | yes / no | accuracy |
| `visual_entailment` | `snli_ve`, `entailment` | hypothesis (+ optional premise) | prev_output | yes / no / maybe | accuracy |
| `qa_matching` | | answer, question | plain | yes / no | accuracy |
| `text_to_image` | | caption | plain | `<code_i>` tokens | - |

The prompt strings themselves and the text normalisation are in `processing.prompts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from transformers import GenerationConfig

from . import prompts as P
from .constants import MAX_CAPTION_TARGET_WORDS, MAX_SOURCE_WORDS
from .ids import BOS_TOKEN_ID, EOS_TOKEN_ID, MODALITY_NAMES, PAD_TOKEN_ID, Modality


PROMPT_TYPES = ("none", "prev_output")
#: What a task's model writes. `post_process_generation` returns, per sample: a cleaned string ("caption",
#: "answer", "label"), a dict with the pixel box ("box"), or the raw token ids ("codes").
OUTPUT_KINDS = ("caption", "answer", "label", "box", "codes")
NUM_LOCATION_TOKENS = 4


# --------------------------------------------------------------------------------------------------------------------
# Inference settings of the original evaluation scripts (reference section 8), as `generate()` keyword arguments.
# --------------------------------------------------------------------------------------------------------------------
# How the original's generator counts and ends (see `modeling_unival.generation`): its `max_len_b` free tokens are
# followed by a forced, scored `</s>` (`max_new_tokens = max_len_b + 1`, `force_final_eos`), `<pad>` is never
# generated, and `--unnormalized` ranks by the summed log-probability (`length_penalty=0.0`; without it the score is
# divided by the length, `</s>` included: 1.0). The search stops once `num_beams` hypotheses are finished.
_ORIGINAL_ENDING = {"force_final_eos": True, "suppress_tokens": [PAD_TOKEN_ID], "early_stopping": True}
# Captions (COCO eval script): beam 5, max_len_b 22, min_len 1, no repeated 3-gram, unnormalized.
CAPTION_GENERATION = MappingProxyType({
    "num_beams": 5, "max_new_tokens": 22 + 1, "min_new_tokens": 1, "no_repeat_ngram_size": 3, "length_penalty": 0.0,
    **_ORIGINAL_ENDING,
})
# VQA: beam 5, unnormalized, the question as a decoder prompt. No min_len ban: the original's counts the question,
# so it is over before the answer starts. The original also restricts answers to a trie of its answer list (see
# `modeling_unival.constrained_decoding.AnswerTrie`), which a checkpoint cannot store; its length limit, 200 tokens
# with the question, never binds a trie answer, so a free answer is bounded at 16 tokens instead.
ANSWER_GENERATION = MappingProxyType({
    "num_beams": 5, "max_new_tokens": 16, "min_new_tokens": 0, "length_penalty": 0.0, **_ORIGINAL_ENDING,
})
# RefCOCO: beam 5, exactly four location tokens and `</s>`, no repeated 3-gram, length-normalised score.
GROUNDING_GENERATION = MappingProxyType({
    "num_beams": 5, "min_new_tokens": NUM_LOCATION_TOKENS, "max_new_tokens": NUM_LOCATION_TOKENS + 1,
    "no_repeat_ngram_size": 3, "length_penalty": 1.0, **_ORIGINAL_ENDING,
})
# yes / no / maybe answers: at most two tokens and `</s>` (the original scores these sets instead: see
# `UnivalForConditionalGeneration.score_candidates`).
LABEL_GENERATION = MappingProxyType({
    "num_beams": 5, "max_new_tokens": 3, "min_new_tokens": 0, "length_penalty": 0.0, **_ORIGINAL_ENDING,
})
# Settings that only mean something to beam search, with transformers' neutral values: a greedy configuration sets
# them to these (rather than leaving them unset, which would let `generate()` take a checkpoint's beam settings
# and warn that greedy decoding ignores them).
_BEAM_ONLY_DEFAULTS = MappingProxyType({"early_stopping": False, "length_penalty": 1.0})

# The special tokens of UnIVAL's vocabulary, which every generation config needs (decoding starts from `<s>`).
_SPECIAL_TOKEN_SETTINGS = MappingProxyType({
    "bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID, "pad_token_id": PAD_TOKEN_ID,
    "decoder_start_token_id": BOS_TOKEN_ID,
})

YES_NO = ("yes", "no")
ENTAILMENT_LABELS = ("yes", "no", "maybe")
#: SNLI-VE's label names and the answer the original trains for each.
ENTAILMENT_ANSWERS = MappingProxyType({"entailment": "yes", "contradiction": "no", "neutral": "maybe"})


# --------------------------------------------------------------------------------------------------------------------
# Prompt builders: one per prompt family, each taking the normalised fields of its task.
# --------------------------------------------------------------------------------------------------------------------
def _media_name(modality: Modality) -> str:
    if modality not in MODALITY_NAMES:
        raise ValueError("this task needs an image, a video or an audio sample")
    return MODALITY_NAMES[modality]


def _caption_prompt(modality: Modality, audio_prompt: str = "video", **_) -> str:
    _media_name(modality)
    if modality == Modality.AUDIO:
        if audio_prompt not in ("video", "audio"):
            raise ValueError(f"audio_prompt must be 'video' or 'audio', got {audio_prompt!r}")
        return P.AUDIO_CAPTION_PROMPT if audio_prompt == "audio" else P.AUDIO_CAPTION_PROMPT_AS_TRAINED
    return {Modality.IMAGE: P.IMAGE_CAPTION_PROMPT, Modality.VIDEO: P.VIDEO_CAPTION_PROMPT}[modality]


def _question_prompt(modality: Modality, question: str, append_question_mark: bool = True, **_) -> str:
    if append_question_mark and not question.endswith("?"):
        question = question + "?"
    return P.QUESTION_TEMPLATE.format(question=question)


def _grounding_prompt(modality: Modality, text: str, **_) -> str:
    return P.GROUNDING_TEMPLATE.format(text=text)


def _grounded_caption_prompt(modality: Modality, region: str, **_) -> str:
    # `region` is the one prompt field read as tokens (location tokens only); they follow the prompt directly (the
    # original encodes them without BPE, so no space token).
    region = P.token_string(region, "`region`")
    return P.TokenText([(P.GROUNDED_CAPTION_PROMPT, False), ("".join(region.split()), True)])


def _matching_prompt(modality: Modality, caption: str, **_) -> str:
    return P.MATCHING_TEMPLATE.format(medium=_media_name(modality), caption=caption)


def _entailment_prompt(modality: Modality, hypothesis: str, premise: str | None = None, **_) -> str:
    if premise is not None:
        return P.ENTAILMENT_WITH_PREMISE_TEMPLATE.format(premise=premise, hypothesis=hypothesis)
    return P.ENTAILMENT_TEMPLATE.format(hypothesis=hypothesis)


def _qa_matching_prompt(modality: Modality, question: str, answer: str, **_) -> str:
    return P.QA_MATCHING_TEMPLATE.format(question=question, answer=answer)


def _text_to_image_prompt(modality: Modality, caption: str, **_) -> str:
    return P.TEXT_TO_IMAGE_TEMPLATE.format(caption=caption)


# How each prompt field is normalised before it goes into a template (`normalize=True`): questions with
# `pre_question`, every other free text with `pre_caption`; location tokens and candidate answers verbatim.
_QUESTION_FIELDS = frozenset({"question"})
_VERBATIM_FIELDS = frozenset({"region", "answer"})


@dataclass(frozen=True)
class TaskSpec:
    """Everything the package knows about one task (see the module docstring).

    Attributes:
        name: canonical name.
        modality: the modality the prompt refers to; `None` when it follows the sample's (image by default).
        prompt_fields: the fields the prompt needs (`build_prompt` checks them).
        primary_field: the field a processor call's `text=` fills (`None`: the prompt takes no free text).
        prompt_type: decoder layout of the original finetuning: `"none"` (the target after `<s>`) or `"prev_output"`
            (the prompt is also the decoder prefix, the loss covers only the answer).
        output: what the model writes, one of `OUTPUT_KINDS`.
        labels: the closed answer set of `"label"` tasks (candidate answers, scored as the original does).
        generation: the original's inference settings, as `generate()` keyword arguments.
        metric: the standard metric (`"cider"`, `"vqa"`, `"grounding"`, `"accuracy"`), `None` if unscored here.
        aliases: other accepted names.
        image_size / num_frames: input sizes of the released recipes (informational).
        optional_fields: fields the prompt may take besides `prompt_fields`.
    """

    name: str
    modality: Modality | None
    prompt_builder: Callable[..., str] = field(repr=False, compare=False)
    prompt_fields: tuple[str, ...] = ()
    primary_field: str | None = None
    prompt_type: str = "none"
    output: str = "caption"
    labels: tuple[str, ...] = ()
    generation: Mapping = field(default_factory=dict, compare=False)
    metric: str | None = None
    aliases: tuple[str, ...] = ()
    image_size: int | None = None
    num_frames: int | None = None
    optional_fields: tuple[str, ...] = ()

    def __post_init__(self):
        if self.prompt_type not in PROMPT_TYPES:
            raise ValueError(f"task {self.name}: prompt_type must be one of {PROMPT_TYPES}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"task {self.name}: output must be one of {OUTPUT_KINDS}")
        if (self.output == "label") != bool(self.labels):
            raise ValueError(f"task {self.name}: label tasks, and only they, have a label set")

    @property
    def default_modality(self) -> Modality:
        """The modality of a sample of this task when the sample does not say (image for the tasks that follow the
        sample's modality)."""
        return Modality.IMAGE if self.modality is None else self.modality

    def generation_config(self, **overrides) -> GenerationConfig:
        """A `GenerationConfig` with the original's settings for this task (and UnIVAL's special tokens), updated with
        `overrides`. When the result
        decodes greedily (`num_beams=1`), the settings only beam search reads take their neutral values, so that
        `generate(generation_config=...)` does not warn about them."""
        settings = {**_SPECIAL_TOKEN_SETTINGS, **self.generation, **overrides}
        if settings.get("num_beams", 1) == 1:
            settings.update({key: value for key, value in _BEAM_ONLY_DEFAULTS.items() if key not in overrides})
        return GenerationConfig(**settings)


def _spec(name, modality, builder, fields=(), **kwargs) -> TaskSpec:
    primary = kwargs.pop("primary_field", fields[0] if fields else None)
    return TaskSpec(name, modality, builder, tuple(fields), primary, **kwargs)


_CAPTION = {"output": "caption", "generation": CAPTION_GENERATION, "metric": "cider"}
_ANSWER = {"output": "answer", "prompt_type": "prev_output", "generation": ANSWER_GENERATION, "metric": "vqa"}
_MATCH = {"output": "label", "labels": YES_NO, "generation": LABEL_GENERATION, "metric": "accuracy"}

TASKS: Mapping[str, TaskSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        _spec("caption", None, _caption_prompt, image_size=480, num_frames=16, **_CAPTION),
        _spec("image_caption", Modality.IMAGE, _caption_prompt, aliases=("image_captioning",), image_size=480,
              **_CAPTION),
        _spec("video_caption", Modality.VIDEO, _caption_prompt, aliases=("video_captioning",), num_frames=16,
              **_CAPTION),
        _spec("audio_caption", Modality.AUDIO, _caption_prompt, aliases=("audio_captioning",), **_CAPTION),
        _spec("vqa", Modality.IMAGE, _question_prompt, ("question",), aliases=("visual_question_answering",),
              image_size=480, **_ANSWER),
        _spec("video_qa", Modality.VIDEO, _question_prompt, ("question",), aliases=("video_question_answering",),
              num_frames=8, **_ANSWER),
        _spec("visual_grounding", Modality.IMAGE, _grounding_prompt, ("text",), aliases=("grounding", "refcoco"),
              output="box", generation=GROUNDING_GENERATION, metric="grounding", image_size=512),
        _spec("grounded_caption", Modality.IMAGE, _grounded_caption_prompt, ("region",),
              aliases=("grounded_captioning", "region_caption"), image_size=512, **_CAPTION),
        _spec("image_text_matching", Modality.IMAGE, _matching_prompt, ("caption",), aliases=("itm",), **_MATCH),
        _spec("video_text_matching", Modality.VIDEO, _matching_prompt, ("caption",), **_MATCH),
        _spec("audio_text_matching", Modality.AUDIO, _matching_prompt, ("caption",), **_MATCH),
        _spec("text_matching", None, _matching_prompt, ("caption",), **_MATCH),
        _spec("visual_entailment", Modality.IMAGE, _entailment_prompt, ("hypothesis",), optional_fields=("premise",),
              aliases=("snli_ve", "entailment"), image_size=480,
              **{**_MATCH, "labels": ENTAILMENT_LABELS, "prompt_type": "prev_output"}),
        _spec("qa_matching", None, _qa_matching_prompt, ("answer", "question"), **_MATCH),
        _spec("text_to_image", Modality.TEXT, _text_to_image_prompt, ("caption",), output="codes"),
    )
})

_ALIASES = {alias: spec.name for spec in TASKS.values() for alias in spec.aliases}

#: Every keyword `build_prompt` understands, besides `task` (the processor routes these to it).
PROMPT_KEYWORDS = frozenset(
    {name for spec in TASKS.values() for name in spec.prompt_fields + spec.optional_fields}
    | {"modality", "box", "image_size", "normalize", "max_words", "append_question_mark", "audio_prompt",
       "processed_size", "max_image_size", "num_bins", "clip"}
)


def task_names() -> list[str]:
    """Canonical task names, then aliases (for help texts and error messages)."""
    return sorted(TASKS) + sorted(_ALIASES)


def resolve_task(task: str | TaskSpec) -> TaskSpec:
    """The `TaskSpec` of a task name or alias (case, `-` and spaces ignored); `ValueError` for unknown tasks."""
    if isinstance(task, TaskSpec):
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {type(task).__name__}")
    key = task.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(task_names())}")
    return TASKS[key]


def generation_config(task: str | TaskSpec, **overrides) -> GenerationConfig:
    """The original's generation settings of `task` as a `GenerationConfig` (see `TaskSpec.generation_config`)."""
    return resolve_task(task).generation_config(**overrides)


def resolve_modality(spec: TaskSpec, modality) -> Modality:
    """The modality a prompt of `spec` refers to: the task's own, else `modality` (name, id or `Modality`), else
    image."""
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


def _region_from_box(task: str, box, image_size, **quantize_options) -> str:
    if box is None or image_size is None:
        raise ValueError(f"task {task!r} needs `region` (location tokens) or `box` and `image_size`")
    from .boxes import quantize_box  # local import: boxes does not depend on tasks

    return quantize_box(box, image_size, **quantize_options)


def build_prompt(
    task: str | TaskSpec,
    *,
    modality: Modality | str | int | None = None,
    normalize: bool = True,
    max_words: int | None = MAX_SOURCE_WORDS,
    append_question_mark: bool = True,
    audio_prompt: str = "video",
    box=None,
    image_size=None,
    processed_size: int | None = None,
    max_image_size: int | None = None,
    num_bins: int | None = None,
    clip: bool = False,
    **fields,
) -> str:
    """Build the encoder prompt of `task` exactly as the original does.

    Args:
        task: a task name or alias (see the module docstring).
        modality: for the tasks that follow the sample's modality (`caption`, `text_matching`, `qa_matching`):
            `"image"`, `"video"`, `"audio"` or a `Modality`. Defaults to image.
        **fields: the task's text fields (`question`, `caption`, `text`, `hypothesis`, `premise`, `answer`,
            `region`). `visual_grounding` also takes its expression as `caption`. They are plain text (see
            `prompts.TokenText`), except `region`, which must be location tokens only (`"<bin_1> <bin_2> ..."`).
        box / image_size: for `grounded_caption`, a pixel `[x0, y0, x1, y1]` box of an image of `(height, width)`
            instead of `region`, with `processed_size` / `max_image_size` / `num_bins` / `clip` as `quantize_box`.
        normalize: apply `pre_question` (questions) / `pre_caption` (captions, referring expressions, hypotheses) as
            the original finetuning does. Set `False` to use the text verbatim.
        max_words: word limit of that normalisation (80, the original's `max_src_length`).
        append_question_mark: VQA / video QA: append `?` when the question does not end with one (finetuning
            format). The pretraining format did not append it.
        audio_prompt: `"video"` (default, the prompt the released audio checkpoints were trained with) or `"audio"`.
    """
    spec = resolve_task(task)
    task = task if isinstance(task, str) else spec.name
    unknown = set(fields) - set(spec.prompt_fields) - set(spec.optional_fields) - PROMPT_KEYWORDS
    if unknown:
        raise TypeError(f"build_prompt got unexpected field(s) {sorted(unknown)}")
    medium = resolve_modality(spec, modality)
    if spec.name == "visual_grounding" and fields.get("text") is None:
        fields["text"] = fields.pop("caption", None)
    if spec.name == "grounded_caption" and fields.get("region") is None:
        fields["region"] = _region_from_box(
            task, box, image_size, processed_size=processed_size, max_image_size=max_image_size, num_bins=num_bins,
            clip=clip,
        )
    values = {}
    for name in spec.prompt_fields + spec.optional_fields:
        value = fields.get(name)
        if value is None and name in spec.optional_fields:
            continue
        value = _require(task, value, name)
        if normalize and name not in _VERBATIM_FIELDS:
            value = P.pre_question(value, max_words) if name in _QUESTION_FIELDS else P.pre_caption(value, max_words)
        values[name] = value
    try:
        return spec.prompt_builder(medium, append_question_mark=append_question_mark, audio_prompt=audio_prompt, **values)
    except ValueError as error:
        raise ValueError(f"task {task!r}: {error}") from None


def label_answer(spec: TaskSpec, label) -> str:
    """The answer word of a label-set task for `label`: a bool for yes / no tasks, a label (`"yes"`, `"no"`,
    `"maybe"`) or an SNLI-VE label name (`"entailment"`, `"contradiction"`, `"neutral"`)."""
    if isinstance(label, bool) and spec.labels == YES_NO:
        return "yes" if label else "no"
    if isinstance(label, str):
        key = label.strip().lower()
        key = ENTAILMENT_ANSWERS.get(key, key) if spec.labels == ENTAILMENT_LABELS else key
        if key in spec.labels:
            return key
    raise ValueError(f"task {spec.name!r} needs `label` in {spec.labels}" + (
        " (or True / False)" if spec.labels == YES_NO else " (or entailment / contradiction / neutral)"
    ) + f", got {label!r}")


def build_target(
    task: str | TaskSpec,
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
    """Build the decoder target text of `task` as the original finetuning does, by the task's output kind:

    * captions (captioning, grounded captioning): `" {caption}"`, cleaned with `clean_caption_target` when `clean`
      (plain text: a `<bin_5>` written in a caption is encoded as text);
    * `<code_i>` sequences (text-to-image): `caption`, which must hold only code tokens (a `prompts.TokenText`);
    * answers (VQA, video QA): `" {answer}"`;
    * boxes (visual grounding): the 4 location tokens of `box` (pixel coordinates in an image of `image_size`), a
      `prompts.TokenText`;
    * labels (matching, entailment): `" yes"` / `" no"` / `" maybe"` from `label` (see `label_answer`).
    """
    spec = resolve_task(task)
    task = task if isinstance(task, str) else spec.name
    if spec.output == "codes":
        return P.token_string(_require(task, caption, "caption"), f"the target of task {task!r}", kind="code")
    if spec.output == "caption":
        value = _require(task, caption, "caption")
        if clean:
            value = P.clean_caption_target(value, max_words)
        return P.format_target(value)
    if spec.output == "answer":
        return P.format_target(_require(task, answer, "answer").strip())
    if spec.output == "box":
        if box is None or image_size is None:
            raise ValueError(f"task {task!r} needs `box` and `image_size` to build its target")
        from .boxes import quantize_box

        return quantize_box(
            box, image_size, processed_size=processed_size, max_image_size=max_image_size, num_bins=num_bins, clip=clip
        )
    return P.format_target(label_answer(spec, label))


__all__ = [
    "ANSWER_GENERATION",
    "CAPTION_GENERATION",
    "ENTAILMENT_ANSWERS",
    "ENTAILMENT_LABELS",
    "GROUNDING_GENERATION",
    "LABEL_GENERATION",
    "NUM_LOCATION_TOKENS",
    "OUTPUT_KINDS",
    "PROMPT_KEYWORDS",
    "PROMPT_TYPES",
    "TASKS",
    "TaskSpec",
    "YES_NO",
    "build_prompt",
    "build_target",
    "generation_config",
    "label_answer",
    "resolve_modality",
    "resolve_task",
    "task_names",
]
