"""A synthetic multimodal world for training and testing UnIVAL-style models on a laptop.

``generate_world(out_dir, num_examples=..., seed=...)`` renders real media files and writes one JSONL file per split:

* **images** (PNG, ``image_size`` px square, default 128): 1-4 coloured shapes (6 shapes, 8 colours, 3 sizes) at known
  positions on plain or lightly textured light backgrounds. Tasks: ``caption``, ``vqa`` (colour / shape / size /
  counts / existence / relations, with 10 simulated annotators), ``qa_matching``, ``visual_grounding`` (referring
  expression -> exact pixel box), ``grounded_caption`` (box -> region caption), ``image_text_matching`` (yes/no;
  negatives as the original mixes them: 40% a minimal mutation of the true caption, 60% another scene's caption),
  ``visual_entailment`` (yes / no / maybe; "maybe" for statements a still
  image cannot decide: motion, hidden objects, drawing order, material).
* **videos** (MP4, H.264 via PyAV, lossless yuv444p by default, ``video_size`` px, ``num_frames`` frames, default
  64 px x 16 frames): shapes that move left/right/up/down, appear, disappear or change colour, optionally next to
  still shapes. Tasks: ``video_caption``, ``video_qa``, ``video_text_matching``, ``qa_matching``.
* **audio** (48 kHz mono FLAC or WAV, 1-3 s): sequences of high/low beeps, quick beep rhythms, rising/falling chirps
  and noise bursts. Tasks: ``audio_caption``, ``audio_text_matching``.

Every example carries ``difficulty`` 1..3 (objects per scene and distractors; events per clip; textures / background
noise) for curricula. Splits are generated from disjoint seed streams and scene ids, duplicate scenes are rejected
across the whole world, and the disjointness is asserted (scene ids, scene contents and media file hashes).

Files (paths inside the JSONL are relative to ``out_dir``)::

    out_dir/world.json                  config + counts (no timestamps: same seed -> same bytes)
    out_dir/{train,validation,test}.jsonl   one schema example per line (see training.data.schema; no "image" key)
    out_dir/scenes/{split}.jsonl        ground truth of every scene (objects, boxes, events, media sha256)
    out_dir/media/{split}/{image,video,audio}/<scene_id>.{png,mp4,flac}

CLI: ``python -m training.data.synthetic --out DIR --num-examples N --seed S [--modalities image,video]
[--tasks caption,vqa] [--verify]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import render, semantics, vocab
from .schema import FIELDS, SPLITS, TASKS, make_example
from .semantics import Obj, Undefined, is_unique, spatial_relation
from .vocab import Attr

GENERATOR_VERSION = 2
DEFAULT_NUM_EXAMPLES = 4000
DEFAULT_SEED = 0

#: Tasks produced per modality (in the order they are emitted for a scene).
MODALITY_TASKS: dict[str, tuple[str, ...]] = {
    "image": ("caption", "vqa", "visual_grounding", "image_text_matching", "grounded_caption", "visual_entailment",
              "qa_matching"),
    "video": ("video_caption", "video_qa", "video_text_matching", "qa_matching"),
    "audio": ("audio_caption", "audio_text_matching"),
}
#: Examples of each task made from one scene.
PER_SCENE: dict[str, int] = {"vqa": 2}
SYNTHETIC_MODALITIES: tuple[str, ...] = tuple(MODALITY_TASKS)
_SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}
_MOD_ID = {"image": 0, "video": 1, "audio": 2}
_MOD_SHORT = {"image": "img", "video": "vid", "audio": "aud"}
_MEDIA_EXT = {"image": "png", "video": "mp4"}


class WorldError(RuntimeError):
    pass


@dataclass
class WorldConfig:
    num_examples: int = DEFAULT_NUM_EXAMPLES
    seed: int = DEFAULT_SEED
    modalities: tuple[str, ...] = SYNTHETIC_MODALITIES
    tasks: tuple[str, ...] = TASKS
    #: share of the examples per modality (renormalised over the selected modalities)
    modality_weights: dict[str, float] = field(default_factory=lambda: {"image": 0.6, "video": 0.2, "audio": 0.2})
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    difficulties: tuple[int, ...] = (1, 2, 3)
    image_size: int = 128
    video_size: int = 64
    num_frames: int = 16
    fps: int = 8
    #: "yuv444p" (default; lossless H.264, colours within +-1 of the rendered frames) or "yuv420p" (the usual pixel
    #: format of real videos; chroma subsampling smears small shapes: the checkers reject ~15% of such videos)
    video_pix_fmt: str = "yuv444p"
    sample_rate: int = 48000
    audio_format: str = "flac"
    #: share of the matching tasks' negatives that are minimal mutations of the true caption (one attribute, object,
    #: relation or event changed); the others are the caption of another random scene. The original draws a one-tag
    #: replacement with probability 0.4 and otherwise a random caption of the corpus.
    minimal_negative_rate: float = 0.4

    def validate(self) -> None:
        if self.num_examples < 0:
            raise ValueError("num_examples must be >= 0")
        bad = set(self.modalities) - set(SYNTHETIC_MODALITIES)
        if bad:
            raise ValueError(f"unknown modalities {sorted(bad)}; choose from {SYNTHETIC_MODALITIES}")
        bad = set(self.tasks) - set(TASKS)
        if bad:
            raise ValueError(f"unknown tasks {sorted(bad)}; choose from {TASKS}")
        if not set(self.difficulties) <= {1, 2, 3} or not self.difficulties:
            raise ValueError("difficulties must be a non-empty subset of (1, 2, 3)")
        if set(self.split_fractions) - set(SPLITS) or any(v < 0 for v in self.split_fractions.values()):
            raise ValueError(f"split_fractions keys must be in {SPLITS} with non-negative values")
        if self.image_size < 64 or self.video_size < 48:
            raise ValueError("image_size must be >= 64 and video_size >= 48")
        if not 8 <= self.num_frames <= 64:
            raise ValueError("num_frames must be in [8, 64]")
        if self.video_pix_fmt not in ("yuv444p", "yuv420p"):
            raise ValueError("video_pix_fmt must be 'yuv444p' or 'yuv420p'")
        if not 0.0 <= self.minimal_negative_rate <= 1.0:
            raise ValueError("minimal_negative_rate must be in [0, 1]")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError("audio_format must be 'flac' or 'wav'")
        if not self.active_modalities():
            raise ValueError("the selected modalities and tasks leave nothing to generate")

    def active_modalities(self) -> list[str]:
        return [m for m in SYNTHETIC_MODALITIES if m in self.modalities and self.tasks_for(m)]

    def tasks_for(self, modality: str) -> tuple[str, ...]:
        return tuple(t for t in MODALITY_TASKS[modality] if t in self.tasks)


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    keys = [k for k, w in weights.items() if w > 0]
    if not keys:
        return {k: 0 for k in weights}
    s = sum(weights[k] for k in keys)
    raw = {k: total * weights[k] / s for k in keys}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(keys, key=lambda k: (-(raw[k] - out[k]), keys.index(k)))[:rest]:
        out[k] += 1
    return {k: out.get(k, 0) for k in weights}


def plan_counts(cfg: WorldConfig) -> dict[str, dict[str, int]]:
    """Number of examples per split and modality."""
    per_split = _largest_remainder(cfg.num_examples, {s: cfg.split_fractions.get(s, 0.0) for s in SPLITS})
    mods = cfg.active_modalities()
    weights = {m: cfg.modality_weights.get(m, 0.0) for m in mods}
    return {s: _largest_remainder(n, weights) for s, n in per_split.items()}


def _rng(cfg: WorldConfig, split: str, modality: str, index: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([GENERATOR_VERSION, cfg.seed, _SPLIT_ID[split], _MOD_ID[modality], index, attempt])
    )


def _choice(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _annotate(rng: np.random.Generator, correct: str, wrong_pool: Sequence[str], level: int) -> tuple[list, list, list]:
    """Ten simulated annotators: 10 - k agree with the truth, k <= level pick a plausible wrong answer.
    Returns (answers, confidences, raw votes); confidence = min(1, votes / 3) as in VQAv2; best answer first."""
    n_wrong = int(rng.integers(0, level + 1)) if wrong_pool else 0
    votes = [correct] * (10 - n_wrong) + [str(_choice(rng, list(wrong_pool))) for _ in range(n_wrong)]
    cnt = Counter(votes)
    answers = sorted(cnt, key=lambda a: (-cnt[a], a != correct, a))
    return answers, [min(1.0, cnt[a] / 3.0) for a in answers], votes


def _digits_around(n: int, lo: int = 0, hi: int = 6) -> list[str]:
    return [str(v) for v in (n - 1, n + 1) if lo <= v <= hi]


# ====================================================================================================================
# Images
# ====================================================================================================================

RE_OPTIONS = {
    "any": (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")),
    "no_colour": (("shape",), ("size", "shape")),
    "no_shape": (("colour",), ("size", "colour")),
    "no_size": (("shape",), ("colour", "shape"), ("colour",)),
}


def _attr_from(o: Obj, keys: Sequence[str]) -> Attr:
    return Attr(o.size if "size" in keys else None, o.colour if "colour" in keys else None,
                o.shape if "shape" in keys else None)


def unique_ref(rng: np.random.Generator, o: Obj, objs: Sequence[Obj], options: str = "any",
               richer: float = 0.3) -> Optional[Attr]:
    """A referring expression (as an :class:`Attr`) that picks out ``o`` alone: usually the shortest, with
    probability ``richer`` a longer unique one."""
    unique = [a for a in (_attr_from(o, k) for k in RE_OPTIONS[options]) if is_unique(a, objs)]
    if not unique:
        return None
    return unique[0] if rng.random() >= richer else _choice(rng, unique)


def _sample_attrs(rng: np.random.Generator, n: int, level: int) -> list[tuple[str, str, str]]:
    C, S, Z = vocab.COLOUR_NAMES, vocab.SHAPES, vocab.SIZES
    if level == 1:
        cs = rng.choice(len(C), n, replace=False)
        ss = rng.choice(len(S), n, replace=False)
        return [(str(_choice(rng, Z)), C[c], S[s]) for c, s in zip(cs, ss)]
    out: list[tuple[str, str, str]] = []
    if level == 3:  # a distractor pair: same colour and shape, different sizes
        c, s = _choice(rng, C), _choice(rng, S)
        z = rng.choice(len(Z), 2, replace=False)
        out = [(Z[z[0]], c, s), (Z[z[1]], c, s)]
    while len(out) < n:
        if level == 2 and out and rng.random() < 0.5:  # share a colour or a shape with an earlier object
            base = _choice(rng, out)
            if rng.random() < 0.5:
                cand = (_choice(rng, Z), base[1], _choice(rng, S))
            else:
                cand = (_choice(rng, Z), _choice(rng, C), base[2])
        else:
            cand = (_choice(rng, Z), _choice(rng, C), _choice(rng, S))
        if level == 2 and any((o[1], o[2]) == (cand[1], cand[2]) for o in out):
            continue
        if cand not in out:
            out.append(cand)
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _place(rng: np.random.Generator, sides: Sequence[int], canvas: int, gap: int = 4,
           margin: int = 2, tries: int = 300) -> Optional[list[tuple[int, int]]]:
    boxes: list[tuple[int, int, int, int]] = []
    out = []
    for side in sides:
        hi = (canvas - side - margin) // 2
        lo = (margin + 1) // 2
        for _ in range(tries):
            x, y = 2 * int(rng.integers(lo, hi + 1)), 2 * int(rng.integers(lo, hi + 1))
            box = (x, y, x + side, y + side)
            if not any(_overlaps(box, b, gap) for b in boxes):
                boxes.append(box)
                out.append((x, y))
                break
        else:
            return None
    return out


def _image_scene(rng: np.random.Generator, cfg: WorldConfig, level: int) -> dict:
    S = cfg.image_size
    n = int(_choice(rng, {1: (1, 2), 2: (2, 3), 3: (3, 4)}[level]))
    while True:
        attrs = _sample_attrs(rng, n, level)
        sides = [render.size_px(a[0], S, render.IMAGE_SIZE_FRACTIONS) for a in attrs]
        pos = _place(rng, sides, S)
        if pos is not None:
            break
    texture = {1: "plain", 2: _choice(rng, ("plain", "noise")), 3: _choice(rng, ("noise", "stripes"))}[level]
    return {
        "background": str(_choice(rng, tuple(vocab.BACKGROUNDS))),
        "texture": texture,
        "texture_seed": int(rng.integers(2**31)),
        "objects": [
            {"size": a[0], "colour": a[1], "shape": a[2], "box": [x, y, x + s, y + s]}
            for a, s, (x, y) in zip(attrs, sides, pos)
        ],
    }


def _image_objs(scene: dict) -> list[Obj]:
    return [Obj(o["size"], o["colour"], o["shape"], tuple(float(v) for v in o["box"])) for o in scene["objects"]]


def _render_image_scene(scene: dict, cfg: WorldConfig) -> np.ndarray:
    placed = [render.PlacedObject(o["size"], o["colour"], o["shape"], o["box"][0], o["box"][1],
                                  o["box"][2] - o["box"][0]) for o in scene["objects"]]
    return render.render_image(cfg.image_size, scene["background"], scene["texture"], scene["texture_seed"], placed)


def _captions(rng: np.random.Generator, objs: Sequence[Obj]) -> list[str]:
    """Reference captions of a scene (the first one is the training target)."""
    t = [(o.size, o.colour, o.shape) for o in objs]
    if len(objs) == 1:
        return [vocab.render_caption(t)]
    if len(objs) == 2:
        i, j = (0, 1) if rng.random() < 0.5 else (1, 0)
        rel = spatial_relation(objs[i], objs[j], min_ratio=2.0)
        if rel:
            return [vocab.render_caption([t[i], t[j]], rel),
                    vocab.render_caption([t[j], t[i]], vocab.INVERSE_RELATION[rel])]
        return [vocab.render_caption([t[i], t[j]]), vocab.render_caption([t[j], t[i]])]
    by_x = sorted(range(len(objs)), key=lambda k: objs[k].centre[0])
    xs = [objs[k].centre[0] for k in by_x]
    if all(b - a >= 4 for a, b in zip(xs, xs[1:])):
        ltr = vocab.render_caption([t[k] for k in by_x], order="left to right")
        rtl = vocab.render_caption([t[k] for k in reversed(by_x)], order="right to left")
        return [ltr, rtl] if rng.random() < 0.5 else [rtl, ltr]
    perm = rng.permutation(len(objs))
    return [vocab.render_caption([t[k] for k in perm])]


def _clear_pairs(objs: Sequence[Obj]) -> list[tuple[int, int, str]]:
    out = []
    for i in range(len(objs)):
        for j in range(len(objs)):
            if i != j:
                rel = spatial_relation(objs[i], objs[j], min_ratio=2.0)
                if rel:
                    out.append((i, j, rel))
    return out


def _image_question(rng: np.random.Generator, objs: Sequence[Obj], qtype: str):
    """(Question, correct answer, wrong-answer pool) or None when the type does not apply to the scene."""
    Q = vocab.Question
    order = [objs[k] for k in rng.permutation(len(objs))]
    if qtype in ("color", "shape", "size"):
        opts = {"color": "no_colour", "shape": "no_shape", "size": "no_size"}[qtype]
        for o in order:
            ref = unique_ref(rng, o, objs, opts)
            if ref is not None:
                ans = {"color": o.colour, "shape": o.shape, "size": o.size}[qtype]
                pool = {"color": vocab.COLOUR_NAMES, "shape": vocab.SHAPES, "size": vocab.SIZES}[qtype]
                return Q(qtype, ref=ref), ans, [p for p in pool if p != ans]
        return None
    if qtype == "count":
        return Q("count"), str(len(objs)), _digits_around(len(objs))
    if qtype == "count_color":
        colour = order[0].colour if rng.random() < 0.7 else _choice(rng, vocab.COLOUR_NAMES)
        n = sum(o.colour == colour for o in objs)
        return Q(qtype, colour=colour), str(n), _digits_around(n)
    if qtype == "count_shape":
        shape = order[0].shape if rng.random() < 0.7 else _choice(rng, vocab.SHAPES)
        n = sum(o.shape == shape for o in objs)
        return Q(qtype, shape=shape), str(n), _digits_around(n)
    if qtype == "exists":
        present = {(o.colour, o.shape) for o in objs}
        if rng.random() < 0.5:
            c, s = order[0].colour, order[0].shape
        else:
            while True:
                c, s = _choice(rng, vocab.COLOUR_NAMES), _choice(rng, vocab.SHAPES)
                if (c, s) not in present:
                    break
        ans = "yes" if (c, s) in present else "no"
        return Q(qtype, colour=c, shape=s), ans, ["no" if ans == "yes" else "yes"]
    if qtype in ("relation_yn", "where"):
        pairs = _clear_pairs(objs)
        for k in rng.permutation(len(pairs)):
            i, j, rel = pairs[k]
            r1, r2 = unique_ref(rng, objs[i], objs), unique_ref(rng, objs[j], objs)
            if r1 is None or r2 is None:
                continue
            if qtype == "where":
                ans = vocab.RELATION_ANSWER[rel]
                return Q(qtype, ref=r1, ref2=r2), ans, [a for a in vocab.RELATION_ANSWER.values() if a != ans]
            asked = rel if rng.random() < 0.5 else _choice(rng, [r for r in vocab.RELATIONS if r != rel])
            ans = "yes" if asked == rel else "no"
            return Q(qtype, ref=r1, ref2=r2, relation=asked), ans, ["no" if ans == "yes" else "yes"]
        return None
    raise ValueError(qtype)


def _image_caption_is_false(caption: str, objs: Sequence[Obj]) -> bool:
    try:
        return semantics.caption_problem(vocab.parse_caption(caption), objs) is not None
    except Undefined:  # a caption about objects the scene lacks
        return True


def _video_caption_is_false(caption: str, events) -> bool:
    parsed = vocab.parse_video_caption(caption)
    return parsed is not None and semantics.video_caption_problem(*parsed, events) is not None


def _negative_caption(rng: np.random.Generator, objs: Sequence[Obj], canvas: int) -> tuple[str, str]:
    """A caption of a minimally mutated scene that is false of ``objs``; returns (caption, mutation)."""
    for _ in range(50):
        kinds = ["colour", "shape", "size"] + (["drop"] if len(objs) >= 2 else []) + (["add"] if len(objs) <= 3 else [])
        if len(objs) == 2 and _clear_pairs(objs):
            kinds.append("relation")
        kind = _choice(rng, kinds)
        mutated = list(objs)
        i = int(rng.integers(len(objs)))
        o = objs[i]
        if kind == "colour":
            mutated[i] = Obj(o.size, _choice(rng, [c for c in vocab.COLOUR_NAMES if c != o.colour]), o.shape, o.box)
        elif kind == "shape":
            mutated[i] = Obj(o.size, o.colour, _choice(rng, [s for s in vocab.SHAPES if s != o.shape]), o.box)
        elif kind == "size":
            mutated[i] = Obj(_choice(rng, [z for z in vocab.SIZES if z != o.size]), o.colour, o.shape, o.box)
        elif kind == "drop":
            mutated.pop(i)
        elif kind == "add":
            size = _choice(rng, vocab.SIZES)
            side = render.size_px(size, canvas, render.IMAGE_SIZE_FRACTIONS)
            pos = _place(rng, [side], canvas)
            if pos is None:
                continue
            x, y = pos[0]
            new = Obj(size, _choice(rng, vocab.COLOUR_NAMES), _choice(rng, vocab.SHAPES), (x, y, x + side, y + side))
            mutated.insert(int(rng.integers(len(mutated) + 1)), new)
        if len({(m.size, m.colour, m.shape) for m in mutated}) != len(mutated):
            continue
        if kind == "relation":
            i, j, rel = _choice(rng, _clear_pairs(objs))
            wrong = _choice(rng, [r for r in vocab.RELATIONS if r != rel])
            cap = vocab.render_caption([(objs[i].size, objs[i].colour, objs[i].shape),
                                        (objs[j].size, objs[j].colour, objs[j].shape)], wrong)
        else:
            cap = _captions(rng, mutated)[0]
        if _image_caption_is_false(cap, objs):
            return cap, kind
    raise WorldError("could not build a negative caption")


def _other_scene_caption(rng: np.random.Generator, cfg: WorldConfig, level: int, modality: str,
                         is_false: Callable[[str], bool]) -> tuple[str, str]:
    """The caption of another random scene of ``modality`` that ``is_false`` of this one (the matching tasks' easy
    negatives, as the original's random captions); returns (caption, "other_scene")."""
    for _ in range(50):
        other = _SCENE_FN[modality](rng, cfg, level)  # a scene description only: nothing is rendered
        if modality == "image":
            caption = _captions(rng, _image_objs(other))[0]
        elif modality == "video":
            caption = vocab.render_video_caption(*_video_clauses(other))
        else:
            caption = vocab.render_audio_caption(_audio_groups(other))
        if is_false(caption):
            return caption, "other_scene"
    raise WorldError(f"could not find a false {modality} caption among other scenes")


def _matching_negative(rng: np.random.Generator, cfg: WorldConfig, level: int, modality: str,
                       minimal: Callable[[], tuple[str, str]], is_false: Callable[[str], bool]) -> tuple[str, str]:
    """A matching task's negative caption and its kind: ``minimal()`` (one detail of the true caption changed) with
    probability ``cfg.minimal_negative_rate``, otherwise another scene's caption."""
    if rng.random() < cfg.minimal_negative_rate:
        return minimal()
    return _other_scene_caption(rng, cfg, level, modality, is_false)


def _hypothesis(rng: np.random.Generator, objs: Sequence[Obj], label: str) -> vocab.Hypothesis:
    H = vocab.Hypothesis
    n = len(objs)
    for _ in range(50):
        o = _choice(rng, list(objs))
        if label == "maybe":
            htype = _choice(rng, ("moving", "hidden", "material") + (("drawn_before",) if n >= 2 else ()))
            ref = unique_ref(rng, o, objs)
            if ref is None:
                continue
            if htype == "moving":
                h = H(htype, ref=ref, extra=_choice(rng, vocab.DIRECTIONS))
            elif htype == "hidden":
                h = H(htype, ref=ref, colour=_choice(rng, vocab.COLOUR_NAMES), shape=_choice(rng, vocab.SHAPES))
            elif htype == "material":
                h = H(htype, ref=ref, extra=_choice(rng, vocab.MATERIALS))
            else:
                other = _choice(rng, [p for p in objs if p is not o])
                ref2 = unique_ref(rng, other, objs)
                if ref2 is None:
                    continue
                h = H(htype, ref=ref, ref2=ref2)
        else:
            yes = label == "yes"
            htype = _choice(rng, ("exists", "count", "relation", "color", "size", "all_color"))
            if htype == "exists":
                if yes:
                    h = H(htype, colour=o.colour, shape=o.shape)
                else:
                    c, s = _choice(rng, vocab.COLOUR_NAMES), _choice(rng, vocab.SHAPES)
                    h = H(htype, colour=c, shape=s)
            elif htype == "count":
                h = H(htype, count=n if yes else int(_choice(rng, [v for v in (n - 1, n + 1, n + 2) if 1 <= v <= 5])))
            elif htype == "relation":
                pairs = _clear_pairs(objs)
                if not pairs:
                    continue
                i, j, rel = _choice(rng, pairs)
                r1, r2 = unique_ref(rng, objs[i], objs), unique_ref(rng, objs[j], objs)
                if r1 is None or r2 is None:
                    continue
                said = rel if yes else _choice(rng, [r for r in vocab.RELATIONS if r != rel])
                h = H(htype, ref=r1, ref2=r2, relation=said)
            elif htype == "color":
                ref = unique_ref(rng, o, objs, "no_colour")
                if ref is None:
                    continue
                wrong = [c for c in vocab.COLOUR_NAMES if c != o.colour]
                h = H(htype, ref=ref, colour=o.colour if yes else _choice(rng, wrong))
            elif htype == "size":
                ref = unique_ref(rng, o, objs, "no_size")
                if ref is None:
                    continue
                h = H(htype, ref=ref, size=o.size if yes else _choice(rng, [z for z in vocab.SIZES if z != o.size]))
            else:
                h = H(htype, colour=o.colour)
        try:
            if semantics.hypothesis_label(h, objs) == label:
                return h
        except Undefined:
            continue
    raise WorldError(f"could not build a {label!r} hypothesis")


def _per_task_examples(tasks: Sequence[str], example: Callable[[str], dict]) -> list[dict]:
    """A scene's examples: `example(task)` for each task in order, `PER_SCENE[task]` times (default once), each
    tagged with its task. `example` draws from the scene's random generator, so the order of the calls is part of
    the world's content."""
    out = []
    for task in tasks:
        for _ in range(PER_SCENE.get(task, 1)):
            ex = example(task)
            ex["task"] = task
            out.append(ex)
    return out


def _image_examples(rng: np.random.Generator, cfg: WorldConfig, scene: dict, level: int,
                    tasks: Sequence[str]) -> list[dict]:
    objs = _image_objs(scene)
    captions = _captions(rng, objs)
    for c in captions:  # self-consistency of the generator
        assert semantics.caption_problem(vocab.parse_caption(c), objs) is None, c
    base = {"num_objects": len(objs)}

    def question(qtypes: Sequence[str]):
        for k in rng.permutation(len(qtypes)):
            made = _image_question(rng, objs, qtypes[k])
            if made is not None:
                q, ans, pool = made
                assert semantics.answer_question(q, objs) == ans
                return q, ans, pool
        raise WorldError("no question applies")

    def example(task: str) -> dict:
        if task == "caption":
            return dict(target=captions[0], answers=captions, metadata=base)
        if task == "vqa":
            q, ans, pool = question(vocab.QUESTION_TYPES)
            answers, confs, votes = _annotate(rng, ans, pool, level)
            return dict(question=vocab.render_question(q), target=ans, answers=answers, answer_confidences=confs,
                        metadata=base | {"question_type": q.qtype, "annotator_answers": votes})
        if task == "qa_matching":
            q, ans, pool = question(vocab.QUESTION_TYPES)
            yes = rng.random() < 0.5
            cand = ans if yes else str(_choice(rng, pool))
            return dict(question=vocab.render_question(q), text=cand, target="yes" if yes else "no",
                        metadata=base | {"question_type": q.qtype})
        if task == "visual_grounding":
            o = _choice(rng, objs)
            return dict(text=vocab.referring_expression(unique_ref(rng, o, objs)), boxes=[list(o.box)],
                        metadata=base)
        if task == "grounded_caption":
            o = _choice(rng, objs)
            return dict(boxes=[list(o.box)], target=vocab.region_phrase(o.size, o.colour, o.shape), metadata=base)
        if task == "image_text_matching":
            if rng.random() < 0.5:
                return dict(text=_choice(rng, captions), target="yes", metadata=base | {"negative": None})
            cap, kind = _matching_negative(rng, cfg, level, "image",
                                           lambda: _negative_caption(rng, objs, cfg.image_size),
                                           lambda c: _image_caption_is_false(c, objs))
            return dict(text=cap, target="no", metadata=base | {"negative": kind})
        if task == "visual_entailment":
            label = str(_choice(rng, ("yes", "no", "maybe")))
            h = _hypothesis(rng, objs, label)
            return dict(text=vocab.render_hypothesis(h), premise=captions[0], target=label,
                        metadata=base | {"hypothesis_type": h.htype})
        raise ValueError(task)

    return _per_task_examples(tasks, example)


# ====================================================================================================================
# Videos
# ====================================================================================================================


def _video_scene(rng: np.random.Generator, cfg: WorldConfig, level: int) -> dict:
    V, T = cfg.video_size, cfg.num_frames
    n_act = 1 if level < 3 else 2
    n_still = {1: 0, 2: 1, 3: int(rng.integers(0, 2))}[level]
    while True:
        kinds = [str(_choice(rng, ("move", "move", "move", "appear", "disappear", "turn"))) for _ in range(n_act)]
        kinds += ["still"] * n_still
        colours = list(rng.permutation(vocab.COLOUR_NAMES))
        shapes = rng.choice(len(vocab.SHAPES), len(kinds), replace=False)
        objects, sweeps, ok = [], [], True
        for kind, s in zip(kinds, shapes):
            size = str(_choice(rng, vocab.SIZES))
            side = render.size_px(size, V, render.VIDEO_SIZE_FRACTIONS)
            o = {"shape": vocab.SHAPES[s], "size": size, "side": side, "event": kind, "colour": str(colours.pop()),
                 "new_colour": None, "direction": None, "switch_frame": None}
            if kind == "turn":
                o["new_colour"] = str(colours.pop())
            if kind in ("appear", "disappear", "turn"):
                o["switch_frame"] = int(rng.integers(max(1, T // 4), 3 * T // 4 + 1))
            lo, hi = 1, (V - side - 2) // 2
            placed = False
            for _ in range(200):
                x0, y0 = 2 * int(rng.integers(lo, hi + 1)), 2 * int(rng.integers(lo, hi + 1))
                x1, y1 = x0, y0
                if kind == "move":
                    d = str(_choice(rng, vocab.DIRECTIONS))
                    o["direction"] = d
                    dist = 2 * int(rng.integers(int(0.2 * V), (V - side - 4) // 2 + 1))
                    if dist < 0.4 * V:
                        continue
                    dx, dy = {"left": (-dist, 0), "right": (dist, 0), "up": (0, -dist), "down": (0, dist)}[d]
                    x1, y1 = x0 + dx, y0 + dy
                    if not (2 <= x1 <= V - side - 2 and 2 <= y1 <= V - side - 2):
                        continue
                sweep = (min(x0, x1), min(y0, y1), max(x0, x1) + side, max(y0, y1) + side)
                if any(_overlaps(sweep, b, 3) for b in sweeps):
                    continue
                sweeps.append(sweep)
                o["start_box"] = [x0, y0, x0 + side, y0 + side]
                o["end_box"] = [x1, y1, x1 + side, y1 + side]
                placed = True
                break
            if not placed:
                ok = False
                break
            objects.append(o)
        if ok:
            break
    order = rng.permutation(len(objects))
    return {
        "background": str(_choice(rng, tuple(vocab.BACKGROUNDS))),
        "texture": "plain" if level < 3 else "noise",
        "texture_seed": int(rng.integers(2**31)),
        "objects": [objects[i] for i in order],
    }


def _video_frames(scene: dict, cfg: WorldConfig) -> np.ndarray:
    V, T = cfg.video_size, cfg.num_frames
    bg = render.background(V, scene["background"], scene["texture"], scene["texture_seed"])
    frames = []
    for t in range(T):
        placed, colours = [], []
        for o in scene["objects"]:
            k = o["switch_frame"]
            if (o["event"] == "appear" and t < k) or (o["event"] == "disappear" and t >= k):
                continue
            (x0, y0), (x1, y1) = o["start_box"][:2], o["end_box"][:2]
            x = x0 + 2 * int(round((x1 - x0) / 2 * t / (T - 1)))
            y = y0 + 2 * int(round((y1 - y0) / 2 * t / (T - 1)))
            placed.append(render.PlacedObject(o["size"], o["colour"], o["shape"], x, y, o["side"]))
            colours.append(o["new_colour"] if o["event"] == "turn" and t >= k else o["colour"])
        frames.append(render.draw_objects(bg, placed, colours))
    return np.stack(frames)


def _video_truth(scene: dict) -> tuple[list[Obj], list[Obj]]:
    start, end = [], []
    for o in scene["objects"]:
        if o["event"] != "appear":
            start.append(Obj(o["size"], o["colour"], o["shape"], tuple(map(float, o["start_box"]))))
        if o["event"] != "disappear":
            colour = o["new_colour"] if o["event"] == "turn" else o["colour"]
            end.append(Obj(o["size"], colour, o["shape"], tuple(map(float, o["end_box"]))))
    return start, end


def _video_clauses(scene: dict) -> tuple[list[vocab.VideoClause], list[vocab.VideoClause]]:
    actors, still = [], []
    for o in scene["objects"]:
        attr = Attr(o["size"], o["colour"], o["shape"])
        clause = vocab.VideoClause(o["event"], attr, direction=o["direction"], new_colour=o["new_colour"])
        (still if o["event"] == "still" else actors).append(clause)
    return actors, still


def _video_question(rng: np.random.Generator, scene: dict, events, qtype: str):
    objs = scene["objects"]
    every = [Obj(o["size"], o["colour"], o["shape"], (0, 0, 1, 1)) for o in objs]
    if qtype == "direction":
        cands = [o for o in objs if o["event"] == "move"]
        if not cands:
            return None
        o = _choice(rng, cands)
        ref = unique_ref(rng, Obj(o["size"], o["colour"], o["shape"], (0, 0, 1, 1)), every, richer=0.7)
        return ref, o["direction"], [d for d in vocab.DIRECTIONS if d != o["direction"]]
    if qtype == "turn_color":
        cands = [o for o in objs if o["event"] == "turn"]
        if not cands:
            return None
        o = _choice(rng, cands)
        ref = unique_ref(rng, Obj(o["size"], o["colour"], o["shape"], (0, 0, 1, 1)), every, "no_colour")
        return ref, o["new_colour"], [c for c in vocab.COLOUR_NAMES if c != o["new_colour"]]
    if qtype in ("appear_shape", "disappear_shape"):
        cands = [o for o in objs if o["event"] == qtype.split("_")[0]]
        if len(cands) != 1:
            return None
        return None, cands[0]["shape"], [s for s in vocab.SHAPES if s != cands[0]["shape"]]
    if qtype == "moves_yn":
        cands = [o for o in objs if o["event"] in ("move", "still")]
        if not cands:
            return None
        o = _choice(rng, cands)
        ref = unique_ref(rng, Obj(o["size"], o["colour"], o["shape"], (0, 0, 1, 1)), every, richer=0.7)
        ans = "yes" if o["event"] == "move" else "no"
        return ref, ans, ["no" if ans == "yes" else "yes"]
    ans = semantics.answer_video_question(qtype, None, events)
    return None, ans, _digits_around(int(ans))


def _negative_video_caption(rng: np.random.Generator, scene: dict, events) -> tuple[str, str]:
    actors, still = _video_clauses(scene)
    used_colours = {o["colour"] for o in scene["objects"]} | {o["new_colour"] for o in scene["objects"]}
    used_shapes = {o["shape"] for o in scene["objects"]}
    for _ in range(50):
        a2, s2 = list(actors), list(still)
        lst = a2 if (not s2 or rng.random() < 0.7) else s2
        i = int(rng.integers(len(lst)))
        c = lst[i]
        kinds = ["colour", "shape"]
        kinds += {"move": ["direction"], "appear": ["flip"], "disappear": ["flip"], "turn": ["new_colour"],
                  "still": ["moves"]}[c.kind]
        kind = _choice(rng, kinds)
        free_colours = [x for x in vocab.COLOUR_NAMES if x not in used_colours]
        if kind == "colour":
            c = vocab.VideoClause(c.kind, Attr(c.attr.size, _choice(rng, free_colours), c.attr.shape), c.direction,
                                  c.new_colour)
        elif kind == "shape":
            c = vocab.VideoClause(c.kind, Attr(c.attr.size, c.attr.colour,
                                               _choice(rng, [s for s in vocab.SHAPES if s not in used_shapes])),
                                  c.direction, c.new_colour)
        elif kind == "direction":
            others = [d for d in vocab.DIRECTIONS if d != c.direction]
            c = vocab.VideoClause("move", c.attr, direction=_choice(rng, others))
        elif kind == "flip":
            c = vocab.VideoClause("appear" if c.kind == "disappear" else "disappear", c.attr)
        elif kind == "new_colour":
            c = vocab.VideoClause("turn", c.attr, new_colour=_choice(rng, free_colours))
        else:  # a still object said to move
            s2.pop(i)
            a2.append(vocab.VideoClause("move", c.attr, direction=_choice(rng, vocab.DIRECTIONS)))
            lst = None
        if lst is not None:
            lst[i] = c
        cap = vocab.render_video_caption(a2, s2)
        if _video_caption_is_false(cap, events):
            return cap, kind
    raise WorldError("could not build a negative video caption")


def _video_examples(rng: np.random.Generator, cfg: WorldConfig, scene: dict, level: int,
                    tasks: Sequence[str]) -> list[dict]:
    start, end = _video_truth(scene)
    events = semantics.video_events(start, end, cfg.video_size)
    actors, still = _video_clauses(scene)
    captions = [vocab.render_video_caption(actors, still)]
    if len(actors) == 2:
        captions.append(vocab.render_video_caption(actors[::-1], still))
    for c in captions:
        assert semantics.video_caption_problem(*vocab.parse_video_caption(c), events) is None, c
    base = {"num_objects": len(scene["objects"]), "events": [o["event"] for o in scene["objects"]]}

    def question():
        qtypes = vocab.VIDEO_QUESTION_TYPES
        # favour the informative questions over counts
        weights = np.array([3, 3, 2, 2, 2, 1, 1, 1], float)
        for k in rng.choice(len(qtypes), len(qtypes), replace=False, p=weights / weights.sum()):
            made = _video_question(rng, scene, events, qtypes[k])
            if made is not None and (made[0] is not None or qtypes[k] not in ("direction", "turn_color", "moves_yn")):
                ref, ans, pool = made
                assert semantics.answer_video_question(qtypes[k], ref, events) == ans
                return vocab.render_video_question(qtypes[k], ref), qtypes[k], ans, pool
        raise WorldError("no video question applies")

    def example(task: str) -> dict:
        if task == "video_caption":
            return dict(target=captions[0], answers=captions, metadata=base)
        if task == "video_qa":
            q, qtype, ans, pool = question()
            answers, confs, votes = _annotate(rng, ans, pool, level)
            return dict(question=q, target=ans, answers=answers, answer_confidences=confs,
                        metadata=base | {"question_type": qtype, "annotator_answers": votes})
        if task == "qa_matching":
            q, qtype, ans, pool = question()
            yes = rng.random() < 0.5
            return dict(question=q, text=ans if yes else str(_choice(rng, pool)), target="yes" if yes else "no",
                        metadata=base | {"question_type": qtype})
        if task == "video_text_matching":
            if rng.random() < 0.5:
                return dict(text=_choice(rng, captions), target="yes", metadata=base | {"negative": None})
            cap, kind = _matching_negative(rng, cfg, level, "video",
                                           lambda: _negative_video_caption(rng, scene, events),
                                           lambda c: _video_caption_is_false(c, events))
            return dict(text=cap, target="no", metadata=base | {"negative": kind})
        raise ValueError(task)

    return _per_task_examples(tasks, example)


# ====================================================================================================================
# Audio
# ====================================================================================================================

_BEEP_FREQ = {"high beep": (1600.0, 2400.0), "low beep": (300.0, 500.0)}


def _group_events(rng: np.random.Generator, g: vocab.SoundGroup, t: float) -> tuple[list[render.SoundEvent], float]:
    events = []
    for j in range(g.count):
        amp = float(rng.uniform(0.3, 0.5))
        if g.kind in _BEEP_FREQ:
            f = float(rng.uniform(*_BEEP_FREQ[g.kind]))
            dur, gap = (0.06, 0.07) if g.quick else (float(rng.uniform(0.15, 0.22)), float(rng.uniform(0.12, 0.18)))
            events.append(render.SoundEvent(g.kind, t, dur, f, f, amp, g.quick))
        elif g.kind.endswith("chirp"):
            lo, hi = float(rng.uniform(350, 500)), float(rng.uniform(1800, 2600))
            f0, f1 = (lo, hi) if g.kind == "rising chirp" else (hi, lo)
            dur, gap = float(rng.uniform(0.3, 0.45)), float(rng.uniform(0.15, 0.2))
            events.append(render.SoundEvent(g.kind, t, dur, f0, f1, amp))
        else:
            dur, gap = float(rng.uniform(0.2, 0.3)), float(rng.uniform(0.15, 0.2))
            events.append(render.SoundEvent("noise", t, dur, 0.0, 0.0, amp))
        t += dur + (gap if j < g.count - 1 else 0.0)
    return events, t


def _audio_scene(rng: np.random.Generator, cfg: WorldConfig, level: int) -> dict:
    n_groups = level
    while True:
        groups: list[vocab.SoundGroup] = []
        while len(groups) < n_groups:
            kind = str(_choice(rng, vocab.AUDIO_KINDS))
            quick = kind.endswith("beep") and rng.random() < 0.35
            count = int(rng.integers(2, 5)) if quick else int(rng.integers(1, 4 if kind.endswith("beep") else 3))
            g = vocab.SoundGroup(kind, count, quick)
            if groups and (groups[-1].kind, groups[-1].quick) == (kind, quick):
                continue
            groups.append(g)
        t = float(rng.uniform(0.1, 0.2))
        events = []
        for i, g in enumerate(groups):
            evs, t = _group_events(rng, g, t)
            events += evs
            if i < len(groups) - 1:
                t += float(rng.uniform(0.25, 0.35))
        if t + 0.15 <= 3.0:
            break
    duration = round(max(1.0, t + float(rng.uniform(0.1, 0.2))), 3)
    return {
        "groups": [asdict(g) for g in groups],
        "events": [asdict(e) for e in events],
        "duration": duration,
        "background_noise": 0.003 if level == 3 else 0.0,
        "noise_seed": int(rng.integers(2**31)),
    }


def _audio_groups(scene: dict) -> list[vocab.SoundGroup]:
    return [vocab.SoundGroup(**g) for g in scene["groups"]]


def _negative_audio_caption(rng: np.random.Generator, groups: list[vocab.SoundGroup]) -> tuple[str, str]:
    swap = {"high beep": "low beep", "low beep": "high beep", "rising chirp": "falling chirp",
            "falling chirp": "rising chirp"}
    for _ in range(50):
        g2 = list(groups)
        i = int(rng.integers(len(g2)))
        g = g2[i]
        kinds = ["count", "kind"] + (["flip"] if g.kind in swap else []) + (["order"] if len(g2) >= 2 else [])
        kind = _choice(rng, kinds)
        if kind == "count":
            lo = 2 if g.quick else 1
            counts = [c for c in (g.count - 1, g.count + 1) if lo <= c <= 5]
            g2[i] = vocab.SoundGroup(g.kind, int(_choice(rng, counts)), g.quick)
        elif kind == "kind":
            new = _choice(rng, [k for k in vocab.AUDIO_KINDS if k != g.kind])
            g2[i] = vocab.SoundGroup(new, g.count, g.quick and new.endswith("beep"))
        elif kind == "flip":
            g2[i] = vocab.SoundGroup(swap[g.kind], g.count, g.quick)
        else:
            j = i + 1 if i + 1 < len(g2) else i - 1
            g2[i], g2[j] = g2[j], g2[i]
        canonical = all((a.kind, a.quick) != (b.kind, b.quick) for a, b in zip(g2, g2[1:]))
        if canonical and g2 != groups and not (g2[i].quick and g2[i].count < 2):
            return vocab.render_audio_caption(g2), kind
    raise WorldError("could not build a negative audio caption")


def _audio_examples(rng: np.random.Generator, cfg: WorldConfig, scene: dict, level: int,
                    tasks: Sequence[str]) -> list[dict]:
    groups = _audio_groups(scene)
    caption = vocab.render_audio_caption(groups)
    assert vocab.parse_audio_caption(caption) == groups
    base = {"num_events": len(scene["events"])}
    def example(task: str) -> dict:
        if task == "audio_caption":
            return dict(target=caption, metadata=base)
        if task == "audio_text_matching":
            if rng.random() < 0.5:
                return dict(text=caption, target="yes", metadata=base | {"negative": None})
            # audio captions are canonical: another caption describes other sounds
            cap, kind = _matching_negative(rng, cfg, level, "audio", lambda: _negative_audio_caption(rng, groups),
                                           lambda c: c != caption)
            return dict(text=cap, target="no", metadata=base | {"negative": kind})
        raise ValueError(task)

    return _per_task_examples(tasks, example)


def _render_audio_scene(scene: dict, cfg: WorldConfig) -> np.ndarray:
    events = [render.SoundEvent(**e) for e in scene["events"]]
    return render.synth_audio(events, scene["duration"], cfg.sample_rate, scene["background_noise"],
                              scene["noise_seed"])


# ====================================================================================================================
# World
# ====================================================================================================================

_SCENE_FN: dict[str, Callable] = {"image": _image_scene, "video": _video_scene, "audio": _audio_scene}
_EXAMPLES_FN: dict[str, Callable] = {"image": _image_examples, "video": _video_examples, "audio": _audio_examples}


def _signature(modality: str, scene: dict) -> str:
    """Content signature of a scene (independent of its id / split / texture noise seed)."""
    if modality == "audio":
        events = [{k: round(v, 3) if isinstance(v, float) else v for k, v in e.items()} for e in scene["events"]]
        key = {"groups": scene["groups"], "events": events}
    else:
        key = {k: v for k, v in scene.items() if k not in ("texture_seed",)}
    return hashlib.sha256(json.dumps([modality, key], sort_keys=True).encode()).hexdigest()


def _write_media(modality: str, scene: dict, cfg: WorldConfig, path: Path) -> None:
    if modality == "image":
        render.save_png(_render_image_scene(scene, cfg), path)
    elif modality == "video":
        render.write_mp4(_video_frames(scene, cfg), path, fps=cfg.fps, pix_fmt=cfg.video_pix_fmt)
    else:
        render.write_audio(_render_audio_scene(scene, cfg), cfg.sample_rate, path)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_media_job(job: tuple[str, dict, WorldConfig, Path]) -> str:
    """Renders and writes one scene's media file; returns its sha256. A job depends on nothing but its arguments, so
    the files are the same bytes whichever process writes them."""
    modality, scene, cfg, path = job
    _write_media(modality, scene, cfg, path)
    return _file_sha256(path)


# Below this many media files a split is written in-process: a few dozen files take well under a second, and small
# worlds (the tests') then start no worker processes.
_MIN_FILES_FOR_WORKERS = 64


def _write_all_media(jobs: list[tuple[str, dict, WorldConfig, Path]], num_workers: int) -> list[str]:
    # Rendering and encoding (PNG, H.264, FLAC) is ~70% of a world's generation time and independent per scene.
    if num_workers <= 1 or len(jobs) < _MIN_FILES_FOR_WORKERS:
        return [_write_media_job(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(_write_media_job, jobs, chunksize=32))


def _clean_output(out: Path, overwrite: bool) -> None:
    owned = [out / "media", out / "scenes", out / "world.json"] + [out / f"{s}.jsonl" for s in SPLITS]
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace a world there")
        if not (out / "world.json").exists():
            raise FileExistsError(f"{out} is not empty and holds no world.json: refusing to overwrite it")
        for p in owned:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _configured(config: Optional[WorldConfig], overrides: dict) -> WorldConfig:
    """`config` (default: the default world) with `overrides` applied, normalised and validated."""
    cfg = config or WorldConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown world option {k!r}")
        setattr(cfg, k, v)
    cfg.modalities = tuple(cfg.modalities)
    cfg.tasks = tuple(cfg.tasks)
    cfg.difficulties = tuple(int(d) for d in cfg.difficulties)
    cfg.validate()
    return cfg


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _draw_new_scene(cfg: WorldConfig, split: str, modality: str, index: int,
                    seen_signatures: dict[str, str]) -> tuple[np.random.Generator, int, dict, str]:
    """The `index`-th scene of a split and modality: `(rng, difficulty, scene, signature)`. A scene whose content
    the world already holds (in any split) is redrawn from the next seed attempt."""
    for attempt in range(101):
        rng = _rng(cfg, split, modality, index, attempt)
        level = int(_choice(rng, cfg.difficulties))
        scene = _SCENE_FN[modality](rng, cfg, level)
        sig = _signature(modality, scene)
        if sig not in seen_signatures:
            return rng, level, scene, sig
    raise WorldError("could not draw a new scene; the world is too small for this many examples")


def _scene_examples(made: list[dict], record: dict) -> list[dict]:
    """The schema examples made from one scene (`record`: its entry in `scenes/SPLIT.jsonl`), numbered per task."""
    examples = []
    task_k = Counter()
    scene_id = record["scene_id"]
    for ex in made:
        task = ex.pop("task")
        k = task_k[task]
        task_k[task] += 1
        tags = [f"{o['colour']} {o['shape']}" for o in record.get("objects", [])]
        examples.append(make_example(
            id=f"{scene_id}-{task}-{k}", source="synthetic", task=task, modality=record["modality"],
            split=record["split"], group_id=scene_id, media_path=record["media_path"], difficulty=record["difficulty"],
            object_tags=tags, **ex))
    return examples


def _draw_split(cfg: WorldConfig, split: str, budgets: dict[str, int], out: Path,
                seen_signatures: dict[str, str]) -> tuple[list[dict], list[dict], list[tuple]]:
    """Draw the scenes of one split until each modality's example budget is spent: `(examples, scenes, media
    jobs)`. The scenes' `sha256` is filled in once their media are written."""
    examples: list[dict] = []
    scenes: list[dict] = []
    media_jobs: list[tuple[str, dict, WorldConfig, Path]] = []
    for modality in cfg.active_modalities():
        budget = budgets[modality]
        tasks = cfg.tasks_for(modality)
        index = 0
        while budget > 0:
            rng, level, scene, sig = _draw_new_scene(cfg, split, modality, index, seen_signatures)
            scene_id = f"{split}-{_MOD_SHORT[modality]}-{index:06d}"
            seen_signatures[sig] = scene_id
            # rotate the task order so that small splits still see every task
            r = index % len(tasks)
            made = _EXAMPLES_FN[modality](rng, cfg, scene, level, tasks[r:] + tasks[:r])[:budget]
            budget -= len(made)
            ext = _MEDIA_EXT.get(modality, cfg.audio_format)
            rel = f"media/{split}/{modality}/{scene_id}.{ext}"
            media_jobs.append((modality, scene, cfg, out / rel))
            scenes.append({"scene_id": scene_id, "split": split, "modality": modality, "difficulty": level,
                           "media_path": rel, "sha256": None, "signature": sig} | scene)
            examples += _scene_examples(made, scenes[-1])
            index += 1
    return examples, scenes, media_jobs


def _split_counts(examples: list[dict], scenes: list[dict]) -> dict:
    return {
        "examples": len(examples),
        "scenes": len(scenes),
        "by_task": dict(sorted(Counter(e["task"] for e in examples).items())),
        "by_modality": dict(sorted(Counter(e["modality"] for e in examples).items())),
        "by_difficulty": {str(k): v for k, v in sorted(Counter(e["difficulty"] for e in examples).items())},
    }


def _check_disjoint_media(split_hashes: dict[str, set]) -> None:
    # splits share no scene: ids are split-prefixed, signatures are deduplicated when drawn; check the media bytes too
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = split_hashes[a] & split_hashes[b]
            if shared:
                raise WorldError(f"splits {a} and {b} share {len(shared)} media files")


def write_world(out_dir, config: Optional[WorldConfig] = None, overwrite: bool = False,
                num_workers: Optional[int] = None, **overrides) -> dict:
    """Render the world's media and write the JSONL files; returns the manifest (also written to world.json).

    `num_workers` processes render and encode the media files (default: the CPU cores available); the world's bytes
    do not depend on it."""
    cfg = _configured(config, overrides)
    out = Path(out_dir)
    _clean_output(out, overwrite)
    plan = plan_counts(cfg)
    num_workers = _available_cores() if num_workers is None else num_workers
    seen_signatures: dict[str, str] = {}
    split_hashes: dict[str, set] = {}
    counts: dict[str, dict] = {}
    for split in SPLITS:
        examples, scenes, media_jobs = _draw_split(cfg, split, plan[split], out, seen_signatures)
        digests = _write_all_media(media_jobs, num_workers)
        for scene, digest in zip(scenes, digests):
            scene["sha256"] = digest
        split_hashes[split] = set(digests)
        _write_jsonl(out / f"{split}.jsonl", [{k: v for k, v in ex.items() if k != "image"} for ex in examples])
        _write_jsonl(out / "scenes" / f"{split}.jsonl", scenes)
        counts[split] = _split_counts(examples, scenes)
    _check_disjoint_media(split_hashes)
    manifest = {"generator_version": GENERATOR_VERSION, "config": _config_dict(cfg), "counts": counts}
    (out / "world.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _config_dict(cfg: WorldConfig) -> dict:
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_jsonl_examples(out_dir, split: str, absolute_paths: bool = True):
    """Yield the schema examples of one split (``image`` set to the image file path for image examples)."""
    root = Path(out_dir)
    with open(root / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            full = str((root / row["media_path"]).resolve()) if row.get("media_path") else None
            # the Image column always holds a path that opens from anywhere
            row["image"] = full if row["modality"] == "image" else None
            if absolute_paths:
                row["media_path"] = full
            yield {k: row.get(k) for k in FIELDS}


def load_world(out_dir, splits: Optional[Sequence[str]] = None, streaming: bool = False,
               absolute_paths: bool = True):
    """Load a written world as a ``datasets.DatasetDict`` (``IterableDatasetDict`` with ``streaming=True``).

    ``image`` is a ``datasets.Image()`` column (decoded to PIL on access) for image examples and None otherwise;
    video and audio are referenced by ``media_path`` (absolute unless ``absolute_paths=False``, then relative to
    ``out_dir``). Audio is *not* a ``datasets.Audio`` column: decoding it needs ``torchcodec``, which is not a
    dependency of this project; read it with ``training.data.render.read_audio`` (soundfile)."""
    import datasets

    from .schema import example_features

    root = Path(out_dir)
    if not (root / "world.json").exists():
        raise FileNotFoundError(f"{root} holds no world.json (generate one with generate_world)")
    splits = list(splits) if splits is not None else [s for s in SPLITS if (root / f"{s}.jsonl").exists()]
    feats = example_features()
    if streaming:
        return datasets.IterableDatasetDict({
            s: datasets.IterableDataset.from_generator(
                read_jsonl_examples, features=feats,
                gen_kwargs={"out_dir": str(root), "split": s, "absolute_paths": absolute_paths})
            for s in splits
        })
    return datasets.DatasetDict({
        s: datasets.Dataset.from_list(list(read_jsonl_examples(root, s, absolute_paths)), features=feats,
                                      split=datasets.Split(s) if s in ("train", "validation", "test") else None)
        for s in splits
    })


def generate_world(out_dir, num_examples: int = DEFAULT_NUM_EXAMPLES, seed: int = DEFAULT_SEED,
                   overwrite: bool = False, verify: bool = False, **options):
    """Generate a world into ``out_dir`` and return it loaded as a ``datasets.DatasetDict``.

    ``options`` are :class:`WorldConfig` fields (``modalities``, ``tasks``, ``difficulties``, ``image_size``,
    ``video_size``, ``num_frames``, ``sample_rate``, ``audio_format``, ``split_fractions``, ``modality_weights``).
    With ``verify=True`` every example is re-checked against its media (:func:`training.data.checks.verify_world`).
    """
    cfg = WorldConfig(num_examples=num_examples, seed=seed)
    write_world(out_dir, cfg, overwrite=overwrite, **options)
    if verify:
        from .checks import verify_world

        verify_world(out_dir)
    return load_world(out_dir)


# ====================================================================================================================
# CLI
# ====================================================================================================================


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.data.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-examples", type=int, default=DEFAULT_NUM_EXAMPLES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--modalities", type=_csv, default=SYNTHETIC_MODALITIES, help="comma list of image,video,audio")
    p.add_argument("--tasks", type=_csv, default=TASKS, help=f"comma list of {','.join(TASKS)}")
    p.add_argument("--difficulties", type=_csv, default=("1", "2", "3"), help="comma list of levels 1,2,3")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--video-size", type=int, default=64)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--video-pix-fmt", choices=("yuv444p", "yuv420p"), default="yuv444p")
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--audio-format", choices=("flac", "wav"), default="flac")
    p.add_argument("--minimal-negative-rate", type=float, default=WorldConfig.minimal_negative_rate,
                   help="share of the matching negatives that minimally mutate the true caption (the rest describe "
                        "another scene)")
    p.add_argument("--split-fractions", type=_csv, default=("0.8", "0.1", "0.1"),
                   help="train,validation,test fractions (default 0.8,0.1,0.1)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="processes that render the media (default: the CPU cores available; same bytes either way)")
    p.add_argument("--overwrite", action="store_true", help="replace a world already in --out")
    p.add_argument("--verify", action="store_true", help="re-check every example against its media afterwards")
    args = p.parse_args(argv)
    if len(args.split_fractions) != 3:
        p.error("--split-fractions needs three numbers")
    cfg = WorldConfig(
        num_examples=args.num_examples, seed=args.seed, modalities=args.modalities, tasks=args.tasks,
        difficulties=tuple(int(d) for d in args.difficulties), image_size=args.image_size,
        video_size=args.video_size, num_frames=args.num_frames, video_pix_fmt=args.video_pix_fmt,
        sample_rate=args.sample_rate, audio_format=args.audio_format,
        minimal_negative_rate=args.minimal_negative_rate,
        split_fractions=dict(zip(SPLITS, (float(x) for x in args.split_fractions))),
    )
    t0 = time.perf_counter()
    try:
        manifest = write_world(args.out, cfg, overwrite=args.overwrite, num_workers=args.num_workers)
    except (ValueError, FileExistsError, WorldError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    summary = {s: c["examples"] for s, c in manifest["counts"].items()}
    print(f"wrote {sum(summary.values())} examples {summary} to {args.out} in {elapsed:.1f}s")
    if args.verify:
        from .checks import verify_world

        t1 = time.perf_counter()
        report = verify_world(args.out)
        print(f"verified {report['checked']} examples against their media in {time.perf_counter() - t1:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
