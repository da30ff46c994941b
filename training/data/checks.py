"""Ground-truth checkers: verify a synthetic example against its *rendered media*, not against stored metadata.

Perception is done from scratch on the files:

* images: pixels are classified to the nearest palette colour, connected components become objects, the shape is the
  template with the best IoU against the blob, the size class comes from the blob's extent, the box is the blob's
  tight pixel box;
* videos: the MP4 is decoded with PyAV and the same detector runs on every frame; objects are matched by shape
  (never repeated within a synthetic video); the first and last frames say who moved where, appeared, disappeared
  or changed colour, and every blob is tracked through the frames in between (steady motion, no wandering, a single
  appearance / colour switch);
* audio: the waveform is cut into sound events by its energy envelope; each event is classified from its spectrum
  (flatness -> noise; peak-frequency trajectory -> rising/falling chirp; peak level -> high/low beep; duration ->
  quick beep).

The example's text is parsed with the strict grammar of :mod:`training.data.vocab` and its truth evaluated with
:mod:`training.data.semantics` over the detected objects/events. ``check_example`` returns None when the example is
verified and a human-readable reason otherwise; ``verify_world`` checks a whole world.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import render, semantics, vocab
from .schema import best_answer
from .semantics import Obj, Undefined, box_iou


class CheckFailure(AssertionError):
    """An example that does not agree with its media."""


class PerceptionError(CheckFailure):
    """The media could not be interpreted (an unknown blob, an unreadable file...)."""


# --------------------------------------------------------------------------------------------------------------------
# Image perception
# --------------------------------------------------------------------------------------------------------------------

_PALETTE_NAMES = list(vocab.COLOURS)
_PALETTE = np.array([vocab.COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)


def connected_components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as boolean masks (label propagation, numpy only)."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        m = lab.copy()
        np.minimum(m[1:], lab[:-1], out=m[1:])
        np.minimum(m[:-1], lab[1:], out=m[:-1])
        np.minimum(m[:, 1:], lab[:, :-1], out=m[:, 1:])
        np.minimum(m[:, :-1], lab[:, 1:], out=m[:, :-1])
        m = np.where(mask, m, big)
        if np.array_equal(m, lab):
            break
        lab = m
    return [lab == v for v in np.unique(lab[mask])]


def classify_pixels(rgb: np.ndarray, max_dist: float = 60.0) -> np.ndarray:
    """Index of the nearest palette colour per pixel, -1 where no palette colour is within ``max_dist``."""
    d = np.linalg.norm(rgb[..., None, :].astype(np.float32) - _PALETTE, axis=-1)
    idx = d.argmin(axis=-1)
    idx[d.min(axis=-1) > max_dist] = -1
    return idx


def detect_objects(rgb: np.ndarray, size_fractions: dict[str, float], min_area_frac: float = 0.35,
                   max_dist: float = 60.0, min_iou: float = 0.7) -> list[Obj]:
    """Objects (size, colour, shape, tight box) found in an RGB image of the synthetic world."""
    canvas = rgb.shape[1]
    sides = {z: render.size_px(z, canvas, size_fractions) for z in vocab.SIZES}
    smallest = min(sides.values())
    min_area = min_area_frac * smallest * smallest * 0.4
    cls = classify_pixels(rgb, max_dist)
    objs = []
    for ci, colour in enumerate(_PALETTE_NAMES):
        mask = cls == ci
        if not mask.any():
            continue
        for comp in connected_components(mask):
            if comp.sum() < min_area:
                continue  # compression speckle
            ys, xs = np.nonzero(comp)
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            blob = comp[y0:y1, x0:x1]
            w, h = x1 - x0, y1 - y0
            ious = {}
            for shape in vocab.SHAPES:
                t = render.shape_mask(shape, w, h)
                ious[shape] = (blob & t).sum() / max(1, (blob | t).sum())
            shape = max(ious, key=ious.get)
            if ious[shape] < min_iou:
                raise PerceptionError(f"a {colour} blob at {(x0, y0, x1, y1)} is no known shape "
                                      f"(best {shape} IoU {ious[shape]:.2f})")
            side = max(w, h)
            size = min(sides, key=lambda z: abs(sides[z] - side))
            if abs(sides[size] - side) > 3:
                raise PerceptionError(f"a {colour} {shape} of {side}px has no size class ({sides})")
            objs.append(Obj(size, colour, shape, (float(x0), float(y0), float(x1), float(y1))))
    return objs


# --------------------------------------------------------------------------------------------------------------------
# Audio perception
# --------------------------------------------------------------------------------------------------------------------


def analyze_audio(wave: np.ndarray, sr: int, threshold: float = 0.05) -> list[dict]:
    """Sound events of a clip: list of {kind, quick, start, duration, f_start, f_end, flatness}."""
    hop = max(1, sr // 400)  # 2.5 ms
    n = len(wave) // hop
    if n == 0:
        return []
    rms = np.sqrt((wave[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1))
    active = rms > threshold
    segs: list[list[int]] = []
    i = 0
    while i < n:
        if active[i]:
            j = i
            while j < n and active[j]:
                j += 1
            if segs and (i - segs[-1][1]) * hop < 0.015 * sr:
                segs[-1][1] = j
            else:
                segs.append([i, j])
            i = j
        else:
            i += 1
    events = []
    n_fft = 1024
    window = np.hanning(n_fft)
    for a, b in segs:
        s0, s1 = a * hop, b * hop
        dur = (s1 - s0) / sr
        if dur < 0.025:
            continue
        cut = int(0.1 * (s1 - s0))
        core = wave[s0 + cut : s1 - cut].astype(np.float64)
        if len(core) < n_fft:
            core = np.pad(core, (0, n_fft - len(core)))
        starts = range(0, len(core) - n_fft + 1, n_fft // 4)
        peaks, flat = [], []
        for st in starts:
            p = np.abs(np.fft.rfft(core[st : st + n_fft] * window)) ** 2 + 1e-12
            peaks.append(p.argmax() * sr / n_fft)
            flat.append(np.exp(np.mean(np.log(p[1:]))) / np.mean(p[1:]))
        peaks_a = np.array(peaks)
        k = max(1, len(peaks_a) // 3)
        f_start, f_end = float(np.median(peaks_a[:k])), float(np.median(peaks_a[-k:]))
        flatness = float(np.median(flat))
        if flatness > 0.2:
            kind = "noise"
        elif f_end > 1.5 * f_start:
            kind = "rising chirp"
        elif f_start > 1.5 * f_end:
            kind = "falling chirp"
        else:
            kind = "high beep" if np.median(peaks_a) > 1000 else "low beep"
        quick = kind.endswith("beep") and dur < 0.1
        events.append({"kind": kind, "quick": quick, "start": s0 / sr, "duration": dur, "f_start": f_start,
                       "f_end": f_end, "flatness": flatness})
    return events


def audio_groups(wave: np.ndarray, sr: int) -> list[vocab.SoundGroup]:
    return vocab.canonical_groups([(e["kind"], e["quick"]) for e in analyze_audio(wave, sr)])


# --------------------------------------------------------------------------------------------------------------------
# Media access (with a small cache: several examples share one scene)
# --------------------------------------------------------------------------------------------------------------------

_CACHE: "OrderedDict[tuple, object]" = OrderedDict()
_CACHE_SIZE = 64


def _cached(key: tuple, fn: Callable[[], object]):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    val = fn()
    _CACHE[key] = val
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return val


def _file_key(path) -> tuple:
    p = Path(path)
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _media_path(ex: dict, root: Optional[Path]) -> Path:
    mp = ex.get("media_path")
    if not mp:
        raise PerceptionError(f"{ex.get('id')}: no media_path")
    p = Path(mp)
    if not p.is_absolute() and root is not None:
        p = root / p
    if not p.exists():
        raise PerceptionError(f"{ex.get('id')}: media file {p} does not exist")
    return p


def load_rgb(ex: dict, root: Optional[Path] = None) -> np.ndarray:
    from PIL import Image

    img = ex.get("image")
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"))
    if isinstance(img, dict) and img.get("bytes"):
        return np.asarray(Image.open(io.BytesIO(img["bytes"])).convert("RGB"))
    if isinstance(img, dict) and img.get("path"):
        path = Path(img["path"])
    elif isinstance(img, str):
        path = Path(img)
    else:
        path = _media_path(ex, root)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_objects(ex: dict, root: Optional[Path] = None) -> list[Obj]:
    rgb = load_rgb(ex, root)
    key = ("img", rgb.shape, hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest())
    return _cached(key, lambda: detect_objects(rgb, render.IMAGE_SIZE_FRACTIONS))


def video_tracks(ex: dict, root: Optional[Path] = None) -> tuple[list[list[Obj]], int]:
    """Objects detected in every frame of the decoded video, and the frame width."""
    path = _media_path(ex, root)

    def run():
        frames = render.read_video_frames(path)
        return [detect_objects(f, render.VIDEO_SIZE_FRACTIONS) for f in frames], frames.shape[2]

    return _cached(("vid",) + _file_key(path), run)


def _track_problem(per_frame: list[list[Obj]], events: dict) -> Optional[str]:
    """Check that every frame agrees with the first-to-last-frame story: motion is monotonic, still objects stay,
    an object appears / disappears / changes colour exactly once, and nothing else shows up in between."""
    for t, objs in enumerate(per_frame):
        extra = {o.shape for o in objs} - set(events)
        if extra:
            return f"frame {t} shows {sorted(extra)}, which neither the first nor the last frame has"
    for shape, ev in events.items():
        track = [next((o for o in objs if o.shape == shape), None) for objs in per_frame]
        present = [o is not None for o in track]
        switches = sum(a != b for a, b in zip(present, present[1:]))
        if ev.kind in ("appear", "disappear"):
            if switches != 1:
                return f"the {shape} {ev.kind}s but is present/absent {switches + 1} times"
            continue
        if not all(present):
            return f"the {shape} is missing from frame {present.index(False)}"
        if ev.kind == "turn":
            colours = [o.colour for o in track]
            if sum(a != b for a, b in zip(colours, colours[1:])) != 1:
                return f"the {shape} changes colour more than once ({colours})"
            continue
        xs = [o.centre[0] for o in track]
        ys = [o.centre[1] for o in track]
        if ev.kind == "still":
            if max(xs) - min(xs) > 3 or max(ys) - min(ys) > 3:
                return f"the {shape} is said to stay still but wanders"
            continue
        along, across = (xs, ys) if ev.direction in ("left", "right") else (ys, xs)
        sign = 1 if ev.direction in ("right", "down") else -1
        if any(sign * (b - a) < -1 for a, b in zip(along, along[1:])):
            return f"the {shape} does not move steadily {ev.direction}"
        if max(across) - min(across) > 3:
            return f"the {shape} drifts sideways while moving {ev.direction}"
    return None


def video_events(ex: dict, root: Optional[Path] = None):
    per_frame, size = video_tracks(ex, root)
    events = semantics.video_events(per_frame[0], per_frame[-1], size)
    problem = _track_problem(per_frame, events)
    if problem:
        raise CheckFailure(f"video frames: {problem}")
    return events


def audio_groups_of(ex: dict, root: Optional[Path] = None) -> list[vocab.SoundGroup]:
    path = _media_path(ex, root)
    return _cached(("aud",) + _file_key(path), lambda: audio_groups(*render.read_audio(path)))


# --------------------------------------------------------------------------------------------------------------------
# Per-task checkers: each raises CheckFailure
# --------------------------------------------------------------------------------------------------------------------


def _fail(msg: str):
    raise CheckFailure(msg)


def _parse(fn, text, what):
    parsed = fn(text) if isinstance(text, str) else None
    if parsed is None:
        _fail(f"{what} {text!r} is not in the world's grammar")
    return parsed


def _check_answers(ex: dict) -> None:
    answers, confs = ex["answers"], ex["answer_confidences"]
    if not answers or len(answers) != len(confs):
        _fail("answers / answer_confidences missing or of different lengths")
    if best_answer(answers, confs) != ex["target"]:
        _fail(f"target {ex['target']!r} is not the highest-confidence answer of {list(zip(answers, confs))}")


def _check_captions(ex: dict, parse: Callable, what: str, problem_of: Callable) -> None:
    """Every caption of ``ex`` (the target, then the reference answers) must be a ``what`` of the grammar (``parse``)
    of which ``problem_of`` finds nothing false."""
    for caption in [ex["target"]] + list(ex["answers"]):
        problem = problem_of(_parse(parse, caption, what))
        if problem:
            _fail(problem)


def _check_answer(ex: dict, truth: str, media: str) -> None:
    """A question's target must be the answer its ``media`` gives (``truth``), and the best of its answers."""
    if truth != ex["target"]:
        _fail(f"answer {ex['target']!r} but the {media} says {truth!r}")
    _check_answers(ex)


def _check_match_label(ex: dict, true: bool, media: str) -> None:
    """A text-matching example's target must say (yes / no) whether its text is ``true`` of its ``media``."""
    if ex["target"] != ("yes" if true else "no"):
        _fail(f"label {ex['target']!r} but {ex['text']!r} is {'true' if true else 'false'} of the {media}")


def check_caption(ex, root=None):
    objs = image_objects(ex, root)
    _check_captions(ex, vocab.parse_caption, "caption", lambda claim: semantics.caption_problem(claim, objs))


def check_vqa(ex, root=None):
    objs = image_objects(ex, root)
    q = _parse(vocab.parse_question, ex["question"], "question")
    _check_answer(ex, semantics.answer_question(q, objs), "image")


def check_qa_matching(ex, root=None):
    if ex["modality"] == "video":
        qtype, ref = _parse(vocab.parse_video_question, ex["question"], "video question")
        truth = semantics.answer_video_question(qtype, ref, video_events(ex, root))
    else:
        truth = semantics.answer_question(_parse(vocab.parse_question, ex["question"], "question"),
                                          image_objects(ex, root))
    expected = "yes" if ex["text"] == truth else "no"
    if ex["target"] != expected:
        _fail(f"label {ex['target']!r} for candidate {ex['text']!r}, but the answer is {truth!r}")


def check_visual_grounding(ex, root=None, tol: float = 1.0):
    objs = image_objects(ex, root)
    ref = _parse(vocab.parse_referring_expression, ex["text"], "referring expression")
    o = semantics.resolve(ref, objs)
    if len(ex["boxes"]) != 1:
        _fail("visual_grounding needs exactly one box")
    box = ex["boxes"][0]
    if max(abs(a - b) for a, b in zip(box, o.box)) > tol:
        _fail(f"box {box} but {ex['text']!r} is at {list(o.box)}")


def check_grounded_caption(ex, root=None, min_iou: float = 0.9):
    objs = image_objects(ex, root)
    box = ex["boxes"][0]
    inside = [o for o in objs if box_iou(box, o.box) >= min_iou]
    if len(inside) != 1:
        _fail(f"box {box} covers {len(inside)} objects")
    said = _parse(vocab.parse_noun_phrase, ex["target"], "region caption")
    o = inside[0]
    if (said.size, said.colour, said.shape) != (o.size, o.colour, o.shape):
        _fail(f"region caption {ex['target']!r} but the region holds a {o.size} {o.colour} {o.shape}")


def check_image_text_matching(ex, root=None):
    objs = image_objects(ex, root)
    claim = _parse(vocab.parse_caption, ex["text"], "caption")
    try:
        true = semantics.caption_problem(claim, objs) is None
    except Undefined:
        true = False
    _check_match_label(ex, true, "image")


def check_visual_entailment(ex, root=None):
    objs = image_objects(ex, root)
    h = _parse(vocab.parse_hypothesis, ex["text"], "hypothesis")
    label = semantics.hypothesis_label(h, objs)
    if label != ex["target"]:
        _fail(f"label {ex['target']!r} but {ex['text']!r} is {label!r} given the image")
    if ex.get("premise"):
        problem = semantics.caption_problem(_parse(vocab.parse_caption, ex["premise"], "premise"), objs)
        if problem:
            _fail(f"premise: {problem}")


def check_video_caption(ex, root=None):
    events = video_events(ex, root)
    _check_captions(ex, vocab.parse_video_caption, "video caption",
                    lambda clauses: semantics.video_caption_problem(*clauses, events))


def check_video_qa(ex, root=None):
    qtype, ref = _parse(vocab.parse_video_question, ex["question"], "video question")
    _check_answer(ex, semantics.answer_video_question(qtype, ref, video_events(ex, root)), "video")


def check_video_text_matching(ex, root=None):
    events = video_events(ex, root)
    parsed = _parse(vocab.parse_video_caption, ex["text"], "video caption")
    _check_match_label(ex, semantics.video_caption_problem(*parsed, events) is None, "video")


def check_audio_caption(ex, root=None):
    actual = audio_groups_of(ex, root)
    _check_captions(ex, vocab.parse_audio_caption, "audio caption",
                    lambda groups: semantics.audio_caption_problem(groups, actual))


def check_audio_text_matching(ex, root=None):
    actual = audio_groups_of(ex, root)
    claimed = _parse(vocab.parse_audio_caption, ex["text"], "audio caption")
    _check_match_label(ex, semantics.audio_caption_problem(claimed, actual) is None, "clip")


CHECKERS: dict[str, Callable] = {
    "caption": check_caption,
    "vqa": check_vqa,
    "qa_matching": check_qa_matching,
    "visual_grounding": check_visual_grounding,
    "grounded_caption": check_grounded_caption,
    "image_text_matching": check_image_text_matching,
    "visual_entailment": check_visual_entailment,
    "video_caption": check_video_caption,
    "video_qa": check_video_qa,
    "video_text_matching": check_video_text_matching,
    "audio_caption": check_audio_caption,
    "audio_text_matching": check_audio_text_matching,
}


def check_example(ex: dict, root=None) -> Optional[str]:
    """None when ``ex`` agrees with its media; otherwise the reason. ``root``: base of relative media paths."""
    fn = CHECKERS.get(ex.get("task"))
    if fn is None:
        return f"no checker for task {ex.get('task')!r}"
    try:
        fn(ex, Path(root) if root is not None else None)
    except Undefined as e:
        return f"undefined: {e}"
    except CheckFailure as e:
        return str(e) or type(e).__name__
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def verify_world(world, splits: Optional[Sequence[str]] = None, raise_on_failure: bool = True,
                 limit: Optional[int] = None) -> dict:
    """Check every example of a written world (a directory) against its media.

    Returns {"checked", "failures": [(id, reason)], "by_task": {task: n}}; raises CheckFailure listing the first
    failures when ``raise_on_failure``."""
    from .schema import SPLITS

    root = Path(world)
    report = {"checked": 0, "failures": [], "by_task": {}}
    for split in splits or SPLITS:
        path = root / f"{split}.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if limit is not None and i >= limit:
                    break
                ex = json.loads(line)
                reason = check_example(ex, root)
                report["checked"] += 1
                report["by_task"][ex["task"]] = report["by_task"].get(ex["task"], 0) + 1
                if reason is not None:
                    report["failures"].append((ex["id"], reason))
    if raise_on_failure and report["failures"]:
        head = "\n".join(f"  {i}: {r}" for i, r in report["failures"][:20])
        n, total = len(report["failures"]), report["checked"]
        raise CheckFailure(f"{n} of {total} examples disagree with their media:\n{head}")
    return report
