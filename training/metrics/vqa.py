"""VQA metrics: the standard 10-annotator VQA accuracy with the VQA answer normalisation, its simple
``min(1, matches / 3)`` form, and the UnIVAL/OFA "VQA score" (the confidence of the predicted answer).

Written from the published VQA evaluation description (Antol et al. 2015; the visualqa.org evaluation page) and
the documented behaviour of the official evaluation script; no code was taken from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .inputs import paired_lists


__all__ = [
    "normalize_vqa_answer",
    "vqa_answer_accuracy",
    "vqa_accuracy",
    "answer_confidences",
    "vqa_score",
]


# Characters the VQA evaluation treats as punctuation. Apostrophes and colons are kept (possessives, times such
# as 2:30); periods are handled separately (kept only before a digit, e.g. decimals).
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions typed without their apostrophe -> the contraction. Only unambiguous forms: words that are also
# ordinary English words ("its", "well", "were", "wed", "shed", "ill", "hell", "id", "lets") are left alone.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldntve": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadntve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hedve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "im": "i'm", "ive": "i've",
    "isnt": "isn't", "itd": "it'd", "itdve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't",
    "mightntve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "shant": "shan't",
    "shedve": "she'd've", "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldntve": "shouldn't've", "somebodyd": "somebody'd", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldntve": "wouldn't've", "yall": "y'all",
    "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}

_NORMALIZE_MODES = ("always", "if_disagree", "never")
_FORMULAS = ("official", "simple")


def _clean_whitespace(answer: str) -> str:
    return str(answer).replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    # A punctuation mark next to a space (or anywhere, when the text holds a digit-comma-digit group such as
    # "2,000") is deleted; otherwise it becomes a space. Periods are deleted unless a digit follows.
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if delete_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _process_digits_articles(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_vqa_answer(answer: str) -> str:
    """The VQA answer normalisation, in order:

    1. newlines/tabs -> spaces, strip;
    2. punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: deleted where it touches a space or when the
       answer contains a digit-comma-digit group (``2,000`` -> ``2000``), otherwise replaced by a space
       (``black/white`` -> ``black white``); apostrophes and colons are kept;
    3. periods are deleted unless followed by a digit (``3.5`` stays, ``dog.`` -> ``dog``);
    4. lower-case, split on whitespace; number words ``none zero one .. ten`` -> ``0 0 1 .. 10``;
       articles ``a an the`` are dropped; contractions missing their apostrophe get it back (``dont`` -> ``don't``);
       words re-joined by single spaces.

    >>> normalize_vqa_answer("Two dogs.")
    '2 dogs'
    """
    return _process_digits_articles(_process_punctuation(_clean_whitespace(answer)))


def _check_mode(normalize) -> str:
    if normalize is True:
        return "always"
    if normalize is False:
        return "never"
    if normalize not in _NORMALIZE_MODES:
        raise ValueError(f"normalize must be a bool or one of {_NORMALIZE_MODES}, not {normalize!r}")
    return normalize


def _prepared(prediction: str, answers: Sequence[str], normalize) -> tuple[str, list[str]]:
    mode = _check_mode(normalize)
    if isinstance(answers, str):
        raise TypeError("answers must be a sequence of annotator answers, not a single string")
    pred = _clean_whitespace(prediction)
    gts = [_clean_whitespace(a) for a in answers]
    if not gts:
        raise ValueError("no ground-truth answers")
    if mode == "always" or (mode == "if_disagree" and len(set(gts)) > 1):
        pred = normalize_vqa_answer(pred)
        gts = [normalize_vqa_answer(a) for a in gts]
    return pred, gts


def vqa_answer_accuracy(prediction: str, answers: Sequence[str], *, formula: str = "official", normalize="always") -> float:
    """VQA accuracy of one predicted answer against the annotators' answers (10 in VQA v2).

    ``formula="official"``: the mean, over the N leave-one-annotator-out subsets of N-1 answers, of
    ``min(1, #answers in the subset equal to the prediction / 3)``. With N = 10 and m matching annotators this is
    0 (m=0), 0.3 (m=1), 0.6 (m=2), 0.9 (m=3) and 1 (m>=4). ``formula="simple"``: ``min(1, m / 3)``.

    ``normalize``: ``"always"`` (default; ``True``) normalises prediction and answers with
    :func:`normalize_vqa_answer`; ``"if_disagree"`` does so only when the (whitespace-stripped) answers are not all
    identical, which is what the official evaluation script does; ``"never"`` (``False``) compares the stripped
    strings as they are.
    """
    if formula not in _FORMULAS:
        raise ValueError(f"formula must be one of {_FORMULAS}, not {formula!r}")
    pred, gts = _prepared(prediction, answers, normalize)
    matches = sum(1 for a in gts if a == pred)
    if formula == "simple":
        return min(1.0, matches / 3.0)
    total = 0.0
    for i in range(len(gts)):
        in_subset = matches - (1 if gts[i] == pred else 0)
        total += min(1.0, in_subset / 3.0)
    return total / len(gts)


def vqa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    formula: str = "official",
    normalize="always",
) -> dict:
    """Mean :func:`vqa_answer_accuracy` over questions; ``references[i]`` holds question i's annotator answers.

    Returns ``{"vqa_accuracy": mean, "scores": [per-question accuracies]}``.
    """
    if isinstance(predictions, str):
        raise TypeError("predictions must be a sequence of answers, not a string")
    predictions, references = paired_lists(predictions, references, "answer lists", "questions")
    scores = [vqa_answer_accuracy(p, r, formula=formula, normalize=normalize) for p, r in zip(predictions, references)]
    return {"vqa_accuracy": sum(scores) / len(scores), "scores": scores}


def answer_confidences(answers: Sequence[str], *, formula: str = "official", normalize="always") -> dict[str, float]:
    """``{answer: VQA accuracy that answer would get}`` for every distinct (normalised) answer, i.e. a reference
    dictionary in the form :func:`vqa_score` takes. (The UnIVAL/OFA VQA files ship such confidences precomputed.)"""
    _, gts = _prepared("", answers, normalize)
    return {a: vqa_answer_accuracy(a, gts, formula=formula, normalize="never") for a in dict.fromkeys(gts)}


def vqa_score(
    predictions: Sequence[str],
    references: Sequence[Mapping[str, float]],
    *,
    normalize: bool = False,
) -> dict:
    """The UnIVAL/OFA VQA score: the confidence ``references[i][prediction]`` of the predicted answer in the
    question's ``{answer: confidence}`` dictionary, 0 when the answer is not there; averaged over questions.

    The prediction is whitespace-stripped; with ``normalize=True`` the prediction and the dictionary's answers are
    also passed through :func:`normalize_vqa_answer` (answers that then coincide keep the highest confidence).

    Returns ``{"vqa_score": mean, "scores": [per-question scores]}``.
    """
    if isinstance(predictions, str):
        raise TypeError("predictions must be a sequence of answers, not a string")
    predictions, references = paired_lists(predictions, references, "reference dictionaries", "questions")
    scores = []
    for pred, ref in zip(predictions, references):
        pred = _clean_whitespace(pred)
        if normalize:
            pred = normalize_vqa_answer(pred)
            merged: dict[str, float] = {}
            for answer, conf in ref.items():
                key = normalize_vqa_answer(answer)
                merged[key] = max(float(conf), merged.get(key, float("-inf")))
            ref = merged
        scores.append(float(ref.get(pred, 0.0)))
    return {"vqa_score": sum(scores) / len(scores), "scores": scores}
