"""Prompt strings, target format and text normalisation of UnIVAL.

Every prompt string of the original recipes lives here, exactly as the original feeds it to the BPE (note the
leading spaces); `pre_caption` / `pre_question` are the original text normalisations and `postprocess_caption` /
`postprocess_vqa_answer` the clean-ups applied to generated text before evaluation.

Which task uses which prompt, and everything else about a task, is in `processing.tasks`.

Audio captioning: the released AudioCaps / Clotho checkpoints were finetuned with the *video* prompt
`" what does the video describe?"` (`audio_caption_dataset.py` of the original). That is the default here, for parity
with those checkpoints; pass `audio_prompt="audio"` to use `" what does the audio describe?"` (the prompt of the
original's pretraining code, which no released checkpoint was trained with).
"""

from __future__ import annotations

import re
import string

from .constants import MAX_CAPTION_TARGET_WORDS, MAX_SOURCE_WORDS


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


__all__ = [
    "AUDIO_CAPTION_PROMPT",
    "AUDIO_CAPTION_PROMPT_AS_TRAINED",
    "ENTAILMENT_TEMPLATE",
    "ENTAILMENT_WITH_PREMISE_TEMPLATE",
    "GROUNDED_CAPTION_PROMPT",
    "GROUNDING_TEMPLATE",
    "IMAGE_CAPTION_PROMPT",
    "MATCHING_TEMPLATE",
    "QA_MATCHING_TEMPLATE",
    "QUESTION_TEMPLATE",
    "TEXT_TO_IMAGE_TEMPLATE",
    "VIDEO_CAPTION_PROMPT",
    "clean_caption_target",
    "format_target",
    "postprocess_caption",
    "postprocess_vqa_answer",
    "pre_caption",
    "pre_question",
]
