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

from .constants import BIN_TOKEN_TEMPLATE, CODE_TOKEN_TEMPLATE, MAX_CAPTION_TARGET_WORDS, MAX_SOURCE_WORDS


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
# Token strings: where location / code tokens may come from
# --------------------------------------------------------------------------------------------------------------------
def _token_pattern(template: str) -> str:
    return re.escape(template).replace(re.escape("{}"), r"\d+")


_BIN_PATTERN = _token_pattern(BIN_TOKEN_TEMPLATE)
_CODE_PATTERN = _token_pattern(CODE_TOKEN_TEMPLATE)
_TOKEN_STRINGS = {
    "location": re.compile(rf"\s*(?:{_BIN_PATTERN}\s*)+"),
    "code": re.compile(rf"\s*(?:{_CODE_PATTERN}\s*)+"),
    "location or code": re.compile(rf"\s*(?:(?:{_BIN_PATTERN}|{_CODE_PATTERN})\s*)+"),
}


class TokenText(str):
    """A prompt or target built by the processing code, which knows which of its parts are location / code tokens.

    User text is plain text: the processor encodes a `<bin_5>`, `<code_3>`, `<s>` or `</s>` typed in a prompt, a
    question or a caption as the characters it is (as the original's BPE did), never as a control token. Location
    and code tokens come only from the parts of a `TokenText` marked as tokens, which this package builds from
    numeric boxes (`quantize_box`), from the `region` field of grounded captioning and from the targets of the box /
    code tasks (`token_string`, which accepts nothing but such tokens).

    It compares and hashes as the plain string; every string operation on it returns a plain `str`, whose tokens are
    text again (so nothing turns user text into tokens by accident).

    Args:
        segments: `(text, is_tokens)` pairs, concatenated in order; the `is_tokens` parts must hold only location /
            code tokens and whitespace.
    """

    def __new__(cls, segments):
        segments = tuple((str(text), bool(is_tokens)) for text, is_tokens in segments if text)
        for text, is_tokens in segments:
            if is_tokens and not _TOKEN_STRINGS["location or code"].fullmatch(text):
                raise ValueError(f"a token part must hold only <bin_i> / <code_i> tokens, got {text!r}")
        self = super().__new__(cls, "".join(text for text, _ in segments))
        self.segments = segments
        return self

    def __getnewargs__(self):  # pickling (e.g. to data-loader workers) keeps the segments
        return (self.segments,)

    @classmethod
    def tokens(cls, text: str) -> TokenText:
        """A string that is tokens only."""
        return cls([(text, True)])


def token_string(text, what: str, kind: str = "location") -> TokenText:
    """`text` as a `TokenText` of tokens, after checking that it holds only `kind` tokens (`"location"`: `<bin_i>`,
    `"code"`: `<code_i>`, `"location or code"`) and whitespace; `ValueError` naming `what` otherwise. The explicit way
    into tokens for the inputs that *are* tokens (a grounded caption's `region`, a grounding or code target)."""
    if isinstance(text, TokenText) and all(is_tokens for _, is_tokens in text.segments):
        return text
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string of {kind} tokens, got {type(text).__name__}")
    if not _TOKEN_STRINGS[kind].fullmatch(text):
        example = BIN_TOKEN_TEMPLATE.format(12) if kind != "code" else CODE_TOKEN_TEMPLATE.format(12)
        raise ValueError(
            f"{what} must hold only {kind} tokens (like {example!r}) separated by whitespace, got {text!r}"
        )
    return TokenText.tokens(text)


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
    if isinstance(text, TokenText):
        return TokenText(((TARGET_TEMPLATE.format(text=""), False),) + text.segments)
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
    "TokenText",
    "VIDEO_CAPTION_PROMPT",
    "clean_caption_target",
    "format_target",
    "postprocess_caption",
    "postprocess_vqa_answer",
    "pre_caption",
    "pre_question",
    "token_string",
]
