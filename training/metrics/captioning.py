"""Captioning metrics as the COCO caption evaluation computes them: CIDEr-D, BLEU-1..4 and (optionally) METEOR.

Everything here is written from the published definitions (Papineni et al. 2002 for BLEU, Vedantam et al. 2015
for CIDEr / CIDEr-D) and the documented conventions of the COCO caption evaluation; no code was taken from it.

Inputs are parallel sequences: ``predictions[i]`` is the single generated caption of sample ``i`` and
``references[i]`` the list (at least one) of its ground-truth captions.

Tokenisation
------------
The COCO pipeline runs the Stanford PTB tokenizer (Java) with lower-casing on every caption, then drops the tokens
that are pure punctuation (``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;``) and joins the rest with
single spaces; the scorers then split on whitespace. :func:`coco_tokenize` approximates that without Java:

1. lower-case; curly quotes become straight ones;
2. brackets ``()[]{}``, double quotes, back-ticks and ``? ! ;`` are removed (PTB makes them their own tokens,
   which COCO drops);
3. ``,`` and ``:`` are removed unless they sit between two digits (PTB keeps ``1,000`` and ``10:30``);
4. ``.`` is removed unless it sits between two digits (``3.5`` stays); so ``...`` disappears too. (PTB keeps an
   abbreviation such as ``mr.`` whole; this tokenizer gives ``mr``. Rare in captions.)
5. ``$`` and ``%`` become their own tokens, as PTB makes them;
6. on each whitespace token: ``--``, stand-alone ``-`` and leading/trailing hyphens are removed (inner hyphens stay:
   ``hot-dog``); quote apostrophes at the start/end of a word are removed (``dogs'`` -> ``dogs``); PTB's clitic
   split is applied: ``n't 's 're 've 'll 'd 'm`` become their own tokens (``don't`` -> ``do n't``,
   ``dog's`` -> ``dog 's``) and ``cannot`` -> ``can not``.

For plain lower-case captions made of words, spaces and sentence punctuation this equals the COCO tokenisation.
Pass ``tokenize=False`` to the scorers for text that is already tokenised (then it is only split on whitespace).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .inputs import paired_lists


__all__ = [
    "coco_tokenize",
    "cider_d",
    "coco_bleu",
    "meteor",
    "meteor_available",
]


# ----------------------------------------------------------------------------------------------------------------
# Tokenisation
# ----------------------------------------------------------------------------------------------------------------

_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def _split_word(word: str) -> list[str]:
    if word in ("-", "--"):
        return []
    word = word.strip("-")
    if word in _CLITICS:
        return [word]
    word = word.strip("'")
    if not word:
        return []
    if word == "cannot":
        return ["can", "not"]
    match = _CLITIC_RE.match(word)
    if match:
        return [match.group(1), match.group(2)]
    return [word]


def coco_tokenize(text: str) -> str:
    """Lower-case and tokenise one caption the way the COCO evaluation's PTB tokenizer step does for ordinary
    English text; returns the tokens joined by single spaces (see the module docstring for the exact rules)."""
    s = str(text).lower()
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    s = re.sub(r"[()\[\]{}\"`?!;]", " ", s)
    s = re.sub(r"(?<!\d)[,:.]|[,:.](?!\d)", " ", s)
    s = re.sub(r"([$%])", r" \1 ", s)
    s = s.replace("--", " ")
    tokens: list[str] = []
    for word in s.split():
        tokens.extend(_split_word(word))
    return " ".join(tokens)


def _prepare(predictions, references, tokenize: bool) -> tuple[list[list[str]], list[list[list[str]]]]:
    if isinstance(predictions, str):
        raise TypeError("predictions must be a sequence of strings, one caption per sample, not a string")
    predictions, references = paired_lists(predictions, references, "reference lists")
    norm = coco_tokenize if tokenize else str
    cands, refs = [], []
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if isinstance(ref, str):
            ref = [ref]
        ref = list(ref)
        if not ref:
            raise ValueError(f"sample {i} has no reference caption")
        cands.append(norm(pred).split())
        refs.append([norm(r).split() for r in ref])
    return cands, refs


def _ngrams(tokens: list[str], max_n: int) -> list[Counter]:
    """Counts of the 1..max_n-grams of ``tokens``, one Counter per order."""
    return [Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)) for k in range(1, max_n + 1)]


# ----------------------------------------------------------------------------------------------------------------
# CIDEr-D
# ----------------------------------------------------------------------------------------------------------------


def _tfidf(counts: list[Counter], df: Counter, log_num_images: float):
    vectors, norms = [], []
    for order_counts in counts:
        vec = {g: tf * (log_num_images - math.log(max(1.0, df[g]))) for g, tf in order_counts.items()}
        vectors.append(vec)
        norms.append(math.sqrt(sum(w * w for w in vec.values())))
    # COCO's "length" for the Gaussian penalty is the number of BIGRAMS of the sentence (n-gram index 1), i.e.
    # max(words - 1, 0): it differs from the word count only when comparing one-word sentences with longer ones.
    length = sum(counts[1].values()) if len(counts) > 1 else 0
    return vectors, norms, length


def _cider_pair(cand, ref, sigma: float) -> list[float]:
    vec_c, norm_c, len_c = cand
    vec_r, norm_r, len_r = ref
    delta = float(len_c - len_r)
    penalty = math.exp(-(delta**2) / (2.0 * sigma**2))
    sims = []
    for vc, vr, nc, nr in zip(vec_c, vec_r, norm_c, norm_r):
        # "-D": a candidate n-gram's weight is clipped at the reference's weight for it.
        value = sum(min(w, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, w in vc.items())
        if nc != 0.0 and nr != 0.0:
            value /= nc * nr
        sims.append(value * penalty)
    return sims


def cider_d(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    n: int = 4,
    sigma: float = 6.0,
    tokenize: bool = True,
) -> dict:
    """CIDEr-D of a corpus, as the COCO caption evaluation computes it.

    For every sample the candidate and each reference become, per n-gram order k = 1..n, TF-IDF vectors
    ``g_k(s)[w] = count_s(w) * (log(N) - log(max(1, df(w))))`` where ``N`` is the number of samples (images) in
    the evaluated corpus and ``df(w)`` the number of samples whose REFERENCE set contains n-gram ``w``
    (candidates do not count; an n-gram no reference contains gets ``df = 0``, hence weight ``log(N)``).
    Then, with ``c`` the candidate and ``r_j`` its m references::

        sim_k(c, r) = sum_w min(g_k(c)[w], g_k(r)[w]) * g_k(r)[w] / (||g_k(c)|| * ||g_k(r)||)  (0 if a norm is 0)
                      * exp(-(l(c) - l(r))**2 / (2 * sigma**2))
        CIDEr-D(c, refs) = 10 * (1/n) * sum_k (1/m) * sum_j sim_k(c, r_j)

    where ``l(s)`` is the COCO implementation's length: the number of bigrams of ``s`` (its word count minus one).
    The corpus score is the plain mean of the per-sample scores. A candidate identical to all of its references
    scores 10 when it has at least n words and not all of its n-grams occur in every sample's references.

    CIDEr-D is undefined for a corpus of one sample: every weight is log(1) - log(1) = 0, so any caption, right or
    wrong, would score 0. Such a corpus gets NaN scores and a `UserWarning` saying so.

    Returns ``{"cider_d": corpus score, "scores": [per-sample scores]}``.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    cands, refs = _prepare(predictions, references, tokenize)
    if len(cands) < 2:
        warnings.warn(
            "CIDEr-D needs at least 2 samples: its n-gram weights log(N) - log(df) are all 0 for a corpus of one "
            "sample, so it cannot tell a right caption from a wrong one. Returning NaN; score more examples.",
            UserWarning,
            stacklevel=2,
        )
        return {"cider_d": math.nan, "scores": [math.nan] * len(cands)}
    cand_counts = [_ngrams(c, n) for c in cands]
    ref_counts = [[_ngrams(r, n) for r in rs] for rs in refs]
    df: Counter = Counter()
    for rs in ref_counts:
        df.update({g for r in rs for order in r for g in order})
    log_num_images = math.log(float(len(cands)))
    scores = []
    for cc, rcs in zip(cand_counts, ref_counts):
        cand = _tfidf(cc, df, log_num_images)
        total = [0.0] * n
        for rc in rcs:
            for k, s in enumerate(_cider_pair(cand, _tfidf(rc, df, log_num_images), sigma)):
                total[k] += s
        scores.append(10.0 * (sum(total) / n) / len(rcs))
    return {"cider_d": sum(scores) / len(scores), "scores": scores}


# ----------------------------------------------------------------------------------------------------------------
# BLEU
# ----------------------------------------------------------------------------------------------------------------

_TINY = 1e-15
_SMALL = 1e-9


def _effective_ref_length(ref_lengths: list[int], cand_length: int, option: str) -> float:
    if option == "closest":
        # the reference length closest to the candidate's; a tie goes to the shorter reference
        return float(min(ref_lengths, key=lambda length: (abs(length - cand_length), length)))
    if option == "shortest":
        return float(min(ref_lengths))
    if option == "average":
        return float(sum(ref_lengths)) / len(ref_lengths)
    raise ValueError(f"length_option must be 'closest', 'shortest' or 'average', not {option!r}")


def _bleu_from_counts(correct, guess, cand_len: float, ref_len: float, max_n: int) -> list[float]:
    scores, product = [], 1.0
    for k in range(max_n):
        product *= (correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (cand_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1.0:
        scores = [s * math.exp(1.0 - 1.0 / ratio) for s in scores]
    return scores


def coco_bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    max_n: int = 4,
    length_option: str = "closest",
    tokenize: bool = True,
) -> dict:
    """BLEU-1..max_n as the COCO caption evaluation computes it (corpus level, "closest" reference length).

    Per sample: ``c`` = candidate length in words; ``r`` = the reference length closest to ``c`` (ties: the
    shorter; ``length_option`` "shortest"/"average" are the other two COCO options); for k = 1..max_n,
    ``guess_k = max(c - k + 1, 0)`` and ``correct_k = sum_w min(count_cand(w), max_j count_ref_j(w))`` over the
    candidate's k-grams (clipped counts). Corpus: ``C, R, GUESS_k, CORRECT_k`` are the sums over samples, and::

        p_k    = (CORRECT_k + 1e-15) / (GUESS_k + 1e-9)
        BP     = exp(1 - R / C) if C < R else 1   (computed as exp(1 - 1/ratio), ratio = (C + 1e-15) / (R + 1e-9))
        BLEU-n = BP * (p_1 * ... * p_n) ** (1 / n)

    No smoothing beyond those two constants: a corpus with no matching 4-gram gets a BLEU-4 near 0, as in COCO.
    ``scores`` holds the same formula applied to each sample's own counts (COCO's per-sentence list).

    Returns ``{"bleu_1": .., ..., "bleu_<max_n>": .., "scores": [[b1..bn] per sample], "precisions": [p_k],
    "brevity_penalty": BP, "length_ratio": C / R, "translation_length": C, "reference_length": R}``.
    """
    if max_n < 1:
        raise ValueError("max_n must be >= 1")
    cands, refs = _prepare(predictions, references, tokenize)
    total_correct = [0] * max_n
    total_guess = [0] * max_n
    total_c, total_r = 0, 0.0
    per_sample = []
    for cand, rs in zip(cands, refs):
        cand_counts = _ngrams(cand, max_n)
        max_ref: list[Counter] = [Counter() for _ in range(max_n)]
        for r in rs:
            for k, order in enumerate(_ngrams(r, max_n)):
                for g, count in order.items():
                    if count > max_ref[k][g]:
                        max_ref[k][g] = count
        correct = [sum(min(count, max_ref[k][g]) for g, count in cand_counts[k].items()) for k in range(max_n)]
        guess = [max(len(cand) - k, 0) for k in range(max_n)]
        c = len(cand)
        r = _effective_ref_length([len(x) for x in rs], c, length_option)
        per_sample.append(_bleu_from_counts(correct, guess, c, r, max_n))
        total_c += c
        total_r += r
        for k in range(max_n):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
    corpus = _bleu_from_counts(total_correct, total_guess, total_c, total_r, max_n)
    ratio = (total_c + _TINY) / (total_r + _SMALL)
    result = {f"bleu_{k + 1}": corpus[k] for k in range(max_n)}
    result.update(
        scores=per_sample,
        precisions=[(total_correct[k] + _TINY) / (total_guess[k] + _SMALL) for k in range(max_n)],
        brevity_penalty=math.exp(1.0 - 1.0 / ratio) if ratio < 1.0 else 1.0,
        length_ratio=ratio,
        translation_length=total_c,
        reference_length=total_r,
    )
    return result


# ----------------------------------------------------------------------------------------------------------------
# METEOR (needs Java and the METEOR 1.5 jar; neither is shipped)
# ----------------------------------------------------------------------------------------------------------------

METEOR_JAR_ENV = "METEOR_JAR"


def _meteor_setup(jar: str | os.PathLike | None, java: str | None) -> tuple[str, str]:
    java_path = java or shutil.which("java")
    jar_path = jar or os.environ.get(METEOR_JAR_ENV)
    problems = []
    if not java_path:
        problems.append("no `java` executable on PATH")
    if not jar_path:
        problems.append(f"no METEOR jar given (pass jar=... or set the {METEOR_JAR_ENV} environment variable)")
    elif not Path(jar_path).is_file():
        problems.append(f"the METEOR jar {jar_path!r} does not exist")
    if problems:
        raise RuntimeError(
            "METEOR is unavailable: it needs a Java runtime and the METEOR 1.5 jar (meteor-1.5.jar, with its "
            "paraphrase data, as used by the COCO caption evaluation), which this package does not ship or "
            f"download. Problem(s): {'; '.join(problems)}. Use CIDEr-D / BLEU instead, or install Java and point "
            f"{METEOR_JAR_ENV} at the jar."
        )
    return str(java_path), str(jar_path)


def meteor_available(jar: str | os.PathLike | None = None, java: str | None = None) -> bool:
    """Whether :func:`meteor` can run (a `java` executable and an existing METEOR jar)."""
    try:
        _meteor_setup(jar, java)
    except RuntimeError:
        return False
    return True


def _meteor_clean(text: str) -> str:
    return " ".join(str(text).replace("|||", " ").split())


def meteor(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    jar: str | os.PathLike | None = None,
    java: str | None = None,
    language: str = "en",
    tokenize: bool = True,
    timeout: float = 600.0,
) -> dict:
    """METEOR 1.5 through its Java jar, in the way the COCO evaluation runs it (``-l en -norm``, stdio mode).

    Raises ``RuntimeError`` unless Java is available and the jar is given (``jar=`` or the ``METEOR_JAR``
    environment variable). The jar's ``-stdio`` protocol is used in two runs: one ``SCORE ||| ref ||| ... ||| hyp``
    line per sample, answered by a statistics line each; then a single ``EVAL ||| stats_1 ||| ... ||| stats_N``
    line, answered by N per-sample scores and the corpus score (METEOR aggregates the statistics; the corpus score
    is not the mean of the per-sample ones).

    Returns ``{"meteor": corpus score, "scores": [per-sample scores]}``.
    """
    java_path, jar_path = _meteor_setup(jar, java)
    cands, refs = _prepare(predictions, references, tokenize)
    command = [java_path, "-jar", "-Xmx2G", jar_path, "-", "-", "-stdio", "-l", language, "-norm"]
    score_lines = [
        "SCORE ||| " + " ||| ".join(_meteor_clean(" ".join(r)) for r in rs) + " ||| " + _meteor_clean(" ".join(c))
        for c, rs in zip(cands, refs)
    ]

    def run(lines: list[str]) -> list[str]:
        proc = subprocess.run(
            command, input="\n".join(lines) + "\n", capture_output=True, text=True, encoding="utf-8",
            timeout=timeout, cwd=str(Path(jar_path).resolve().parent),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"METEOR failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    stats = run(score_lines)
    if len(stats) != len(score_lines):
        raise RuntimeError(f"METEOR returned {len(stats)} statistics lines for {len(score_lines)} samples")
    values = run(["EVAL ||| " + " ||| ".join(stats)])
    if len(values) < len(stats) + 1:
        raise RuntimeError(f"METEOR returned {len(values)} score lines, expected {len(stats) + 1}")
    numbers = [float(v) for v in values[-(len(stats) + 1) :]]
    return {"meteor": numbers[-1], "scores": numbers[:-1]}
