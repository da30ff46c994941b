"""Ground-truth checkers: they pass on generated examples and fail on corrupted ones."""

import copy
import json
import re

import numpy as np
import pytest
from PIL import Image

from training.data import checks, render, synthetic, vocab
from training.data.schema import TASKS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("checked_world")
    synthetic.write_world(root, synthetic.WorldConfig(num_examples=60, seed=11))
    rows = []
    for split in ("train", "validation", "test"):
        rows += [json.loads(line) for line in open(root / f"{split}.jsonl")]
    return root, rows


def _first(rows, task, pred=lambda r: True):
    for r in rows:
        if r["task"] == task and pred(r):
            return copy.deepcopy(r)
    pytest.skip(f"no {task} example with the wanted property in this world")


def test_every_generated_example_passes(world):
    root, rows = world
    report = checks.verify_world(root, raise_on_failure=False)
    assert report["failures"] == []
    assert report["checked"] == len(rows) == 60
    assert set(report["by_task"]) == set(TASKS)


def test_detector_recovers_the_ground_truth(world):
    root, _ = world
    for line in open(root / "scenes" / "train.jsonl"):
        s = json.loads(line)
        if s["modality"] != "image":
            continue
        rgb = np.asarray(Image.open(root / s["media_path"]).convert("RGB"))
        found = {(o.size, o.colour, o.shape, tuple(int(v) for v in o.box))
                 for o in checks.detect_objects(rgb, render.IMAGE_SIZE_FRACTIONS)}
        truth = {(o["size"], o["colour"], o["shape"], tuple(o["box"])) for o in s["objects"]}
        assert found == truth


def _other_colour(text):
    used = set(re.findall("|".join(vocab.COLOUR_NAMES), text))
    return next(c for c in vocab.COLOUR_NAMES if c not in used)


def _swap_first_colour(text):
    m = re.search(r"\b(" + "|".join(vocab.COLOUR_NAMES) + r")\b", text)
    new = _other_colour(text)
    out = text[: m.start()] + new + text[m.end():]
    # keep the article grammatical ("a orange" -> "an orange") so only the meaning is wrong
    return re.sub(r"\ba (?=[aeiou])", "an ", re.sub(r"\ban (?=[^aeiou])", "a ", out))


def _wrong_answer(r):
    wrong = {"yes": "no", "no": "yes"}.get(r["target"])
    if wrong is None:
        for pool in (vocab.COLOUR_NAMES, vocab.SHAPES, vocab.SIZES, vocab.DIRECTIONS,
                     ("left", "right", "above", "below")):
            if r["target"] in pool:
                wrong = next(p for p in pool if p != r["target"])
        if wrong is None:
            wrong = str(int(r["target"]) + 1)
    return wrong


def _assert_fails(ex, root):
    reason = checks.check_example(ex, root)
    assert reason is not None, f"corrupted example passed: {ex['task']} {ex.get('text')!r} {ex['target']!r}"
    return reason


def test_caption_with_a_swapped_colour_fails(world):
    root, rows = world
    r = _first(rows, "caption")
    assert checks.check_example(r, root) is None
    r["target"] = _swap_first_colour(r["target"])
    r["answers"] = [r["target"]]
    assert "names" in _assert_fails(r, root)


def test_caption_with_a_missing_object_fails(world):
    root, rows = world
    r = _first(rows, "caption", lambda r: json.loads(r["metadata"])["num_objects"] == 2)
    first_np = re.match(r"^(an? (?:\w+ )+?(?:" + "|".join(vocab.SHAPES) + "))", r["target"]).group(1)
    r["target"] = r["answers"][0] = first_np
    r["answers"] = [first_np]
    _assert_fails(r, root)


@pytest.mark.parametrize("task", ["vqa", "video_qa"])
def test_wrong_answer_fails(world, task):
    root, rows = world
    r = _first(rows, task)
    r["target"] = _wrong_answer(r)
    r["answers"] = [r["target"]] + [a for a in r["answers"] if a != r["target"]]
    r["answer_confidences"] = [1.0] * len(r["answers"])
    assert "answer" in _assert_fails(r, root)


def test_vqa_target_must_be_the_best_answer(world):
    root, rows = world
    r = _first(rows, "vqa")
    r["answers"] = ["zzz"] + r["answers"]
    r["answer_confidences"] = [1.0] + r["answer_confidences"]
    assert "highest-confidence" in _assert_fails(r, root)


@pytest.mark.parametrize("task", ["qa_matching", "image_text_matching", "video_text_matching",
                                  "audio_text_matching"])
def test_flipped_matching_label_fails(world, task):
    root, rows = world
    for pred in (lambda r: r["target"] == "yes", lambda r: r["target"] == "no"):
        r = _first(rows, task, pred) if any(x["task"] == task and pred(x) for x in rows) else None
        if r is None:
            continue
        r["target"] = "no" if r["target"] == "yes" else "yes"
        _assert_fails(r, root)


def test_video_qa_matching_is_checked_against_the_video(world):
    root, rows = world
    r = _first(rows, "qa_matching", lambda r: r["modality"] == "video")
    assert checks.check_example(r, root) is None
    r["target"] = "no" if r["target"] == "yes" else "yes"
    _assert_fails(r, root)


def test_shifted_box_fails(world):
    root, rows = world
    r = _first(rows, "visual_grounding")
    assert checks.check_example(r, root) is None
    x0, y0, x1, y1 = r["boxes"][0]
    r["boxes"] = [[x0 + 4, y0, x1 + 4, y1]]
    assert "box" in _assert_fails(r, root)


def test_grounded_caption_corruptions_fail(world):
    root, rows = world
    r = _first(rows, "grounded_caption")
    bad = copy.deepcopy(r)
    bad["target"] = _swap_first_colour(bad["target"])
    _assert_fails(bad, root)
    bad = copy.deepcopy(r)
    x0, y0, x1, y1 = bad["boxes"][0]
    w = x1 - x0
    bad["boxes"] = [[x0 + w / 2, y0 + w / 2, x1 + w / 2, y1 + w / 2]]
    _assert_fails(bad, root)


def test_entailment_label_change_fails(world):
    root, rows = world
    r = _first(rows, "visual_entailment")
    for other in {"yes", "no", "maybe"} - {r["target"]}:
        bad = dict(r, target=other)
        _assert_fails(bad, root)


def test_entailment_maybe_means_undecidable():
    objs = [synthetic.Obj("small", "red", "circle", (10, 10, 26, 26)),
            synthetic.Obj("large", "blue", "square", (10, 60, 44, 94))]
    h = vocab.parse_hypothesis("the red circle is moving to the left")
    assert h is not None and not h.decidable
    assert checks.semantics.hypothesis_label(h, objs) == "maybe"
    h = vocab.parse_hypothesis("the circle is above the blue square")
    assert checks.semantics.hypothesis_label(h, objs) == "yes"
    h = vocab.parse_hypothesis("there are three shapes")
    assert checks.semantics.hypothesis_label(h, objs) == "no"


def test_video_caption_corruptions_fail(world):
    root, rows = world
    r = _first(rows, "video_caption")
    bad = dict(r, target=_swap_first_colour(r["target"]), answers=[])
    _assert_fails(bad, root)
    directions = {"to the left": "to the right", "to the right": "to the left", "moves up": "moves down",
                  "moves down": "moves up"}
    for row in rows:
        if row["task"] == "video_caption" and any(d in row["target"] for d in directions):
            text = row["target"]
            for a, b in directions.items():
                if a in text:
                    text = text.replace(a, b)
                    break
            _assert_fails(dict(row, target=text, answers=[]), root)
            break


def test_audio_caption_corruptions_fail(world):
    root, rows = world
    swaps = [("high", "low"), ("low", "high"), ("rising", "falling"), ("falling", "rising")]
    tried = 0
    for r in rows:
        if r["task"] != "audio_caption":
            continue
        assert checks.check_example(r, root) is None
        text = r["target"]
        for a, b in swaps:
            if a in text:
                text = text.replace(a, b, 1)
                break
        else:
            text = "a high beep followed by " + text
        _assert_fails(dict(r, target=text, answers=[]), root)
        tried += 1
    assert tried


def test_swapped_media_fails(world, tmp_path):
    root, rows = world
    imgs = sorted({r["media_path"] for r in rows if r["modality"] == "image"})
    r = _first(rows, "caption", lambda r: r["media_path"] == imgs[0])
    captions_other = [x["target"] for x in rows if x["task"] == "caption" and x["media_path"] == imgs[1]]
    assert r["target"] not in captions_other
    _assert_fails(dict(r, media_path=imgs[1]), root)
    # audio: replace the clip with silence
    a = _first(rows, "audio_caption")
    silent = tmp_path / "silence.flac"
    render.write_audio(np.zeros(48000, np.float32), 48000, silent)
    _assert_fails(dict(a, media_path=str(silent)), root)
    # video: another video of the world
    vids = sorted({r["media_path"] for r in rows if r["modality"] == "video"})
    v = _first(rows, "video_caption", lambda r: r["media_path"] == vids[0])
    _assert_fails(dict(v, media_path=vids[1]), root)


def test_recoloured_image_fails(world, tmp_path):
    root, rows = world
    r = _first(rows, "caption")
    rgb = np.asarray(Image.open(root / r["media_path"]).convert("RGB")).copy()
    colour = re.search("|".join(vocab.COLOUR_NAMES), r["target"]).group(0)
    new = _other_colour(r["target"])
    mask = (rgb == np.array(vocab.COLOURS[colour], np.uint8)).all(-1)
    assert mask.any()
    rgb[mask] = vocab.COLOURS[new]
    path = tmp_path / "recoloured.png"
    Image.fromarray(rgb).save(path)
    reason = _assert_fails(dict(r, media_path=str(path)), root)
    assert new in reason


def test_unparseable_text_fails(world):
    root, rows = world
    r = _first(rows, "image_text_matching")
    reason = _assert_fails(dict(r, text=r["text"] + " and a dragon"), root)
    assert "grammar" in reason


def test_audio_analysis_detects_events():
    sr = 48000
    ev = [render.SoundEvent("high beep", 0.1, 0.2, 2000, 2000, 0.4),
          render.SoundEvent("low beep", 0.5, 0.2, 400, 400, 0.4),
          render.SoundEvent("low beep", 0.85, 0.2, 400, 400, 0.4),
          render.SoundEvent("rising chirp", 1.3, 0.4, 400, 2200, 0.4),
          render.SoundEvent("noise", 1.9, 0.25, 0, 0, 0.4)]
    wave = render.synth_audio(ev, 2.4, sr, 0.003, seed=0)
    groups = checks.audio_groups(wave, sr)
    assert vocab.render_audio_caption(groups) == \
        "a high beep, then two low beeps, then a rising chirp, then a burst of noise"


def test_video_frames_are_tracked(world, tmp_path):
    root, rows = world
    r = _first(rows, "video_caption", lambda r: " moves " in r["target"])
    frames = render.read_video_frames(root / r["media_path"])
    assert len(frames) == 16
    shuffled = frames.copy()
    shuffled[[4, 11]] = shuffled[[11, 4]]  # the mover jumps back and forth; first and last frames unchanged
    path = tmp_path / "jumpy.mp4"
    render.write_mp4(shuffled, path)
    reason = _assert_fails(dict(r, media_path=str(path)), root)
    assert "steadily" in reason
