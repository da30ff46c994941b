"""Readers of the original TSV formats and of Hugging Face datasets."""

import base64
import io
import json
import logging

import datasets
import numpy as np
import pytest
from PIL import Image

from training.data import readers, synthetic
from training.data.readers import DataFormatError, ReadStats, iter_tsv, read_tsv
from training.data.schema import FIELDS


def _png(colour=(255, 0, 0), size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


B64 = base64.urlsafe_b64encode(_png()).decode()
B64_STD = base64.b64encode(_png((0, 0, 255))).decode()


def _write(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pixels(ex):
    img = ex["image"]
    if isinstance(img, dict):
        img = Image.open(io.BytesIO(img["bytes"])) if img.get("bytes") else Image.open(img["path"])
    return np.asarray(img.convert("RGB"))


@pytest.fixture()
def media(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "audio").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "videos" / "v1.mp4").write_bytes(b"\x00")
    (tmp_path / "audio" / "a1.flac").write_bytes(b"\x00")
    (tmp_path / "images" / "i1.png").write_bytes(_png((0, 255, 0)))
    return tmp_path


def test_caption_tsv(tmp_path):
    p = _write(tmp_path / "caption.tsv", [["1", "img1", "a red square&&a square", "tags", B64],
                                          ["2", "img2", "a blue square", "", B64_STD]])
    exs = list(iter_tsv(p, "caption"))
    assert [e["id"] for e in exs] == ["1", "2"]
    e = exs[0]
    assert (e["task"], e["modality"], e["target"]) == ("caption", "image", "a red square")
    assert e["answers"] == ["a red square", "a square"] and e["answer_confidences"] == [1.0, 1.0]
    assert e["source"] == "caption" and e["media_path"] is None
    assert json.loads(e["metadata"])["line"] == 1
    assert _pixels(e)[0, 0].tolist() == [255, 0, 0]
    assert _pixels(exs[1])[0, 0].tolist() == [0, 0, 255]
    assert list(e) == list(FIELDS)


def test_vqa_tsv(tmp_path):
    p = _write(tmp_path / "vqa.tsv", [["q1", "img", "what color is it?", "0.6|!+red&&1.0|!+dark red&&0.3|!+pink",
                                       "square&&box", B64]])
    (e,) = iter_tsv(p, "vqa")
    assert (e["task"], e["question"], e["target"]) == ("vqa", "what color is it?", "dark red")
    assert e["answers"] == ["red", "dark red", "pink"] and e["answer_confidences"] == [0.6, 1.0, 0.3]
    assert e["object_tags"] == ["square", "box"]


def test_refcoco_tsv(tmp_path):
    p = _write(tmp_path / "refcoco.tsv", [["r1", "img", "the man on the left", "10,20.5,50,80", B64]])
    (e,) = iter_tsv(p, "refcoco")
    assert (e["task"], e["text"], e["target"]) == ("visual_grounding", "the man on the left", "")
    assert e["boxes"] == [[10.0, 20.5, 50.0, 80.0]]


def test_snli_ve_tsv(tmp_path):
    rows = [[f"s{i}", "img", B64, "a dog runs", "a dog in a park", label]
            for i, label in enumerate(["entailment", "neutral", "contradiction"])]
    exs = list(iter_tsv(_write(tmp_path / "ve.tsv", rows), "snli_ve"))
    assert [e["target"] for e in exs] == ["yes", "maybe", "no"]
    assert exs[0]["text"] == "a dog runs" and exs[0]["premise"] == "a dog in a park"
    assert exs[0]["task"] == "visual_entailment"


def test_video_audio_tsv_with_relative_paths(media):
    vc = _write(media / "vc.tsv", [["v1", "vid", "a man sings", "", "videos/v1.mp4"]])
    (e,) = iter_tsv(vc, "video_caption")
    assert (e["task"], e["modality"], e["target"]) == ("video_caption", "video", "a man sings")
    assert e["media_path"] == str(media / "videos" / "v1.mp4") and e["image"] is None
    ac = _write(media / "sub.tsv", [["a1", "aud", "rain falls", "", "audio/a1.flac"]])
    (e,) = iter_tsv(ac, "audio_caption", media_root=media)
    assert (e["task"], e["modality"]) == ("audio_caption", "audio")
    vq = _write(media / "vq.tsv", [["x", "vid", "what is he doing?", "1.0|!+singing", "", "videos/v1.mp4"]])
    (e,) = iter_tsv(vq, "video_qa")
    assert (e["task"], e["target"], e["question"]) == ("video_qa", "singing", "what is he doing?")


def test_pretrain_tsv(media):
    rows = [
        ["p1", B64, "a red square", "", "", "square&&red", "coco", "caption"],
        ["p2", "images/i1.png", "", "what color?", "1.0|!+green", "", "vqa_data", "qa"],
        ["p3", B64, "the red square", "", "1,2,10,11", "", "refcoco", "visual_grounding"],
        ["p4", "videos/v1.mp4", "a man sings", "", "", "", "webvid", "video_caption"],
        ["p5", "videos/v1.mp4", "", "who sings?", "0.9|!+a man&&0.5|!+a woman", "", "tgif", "video_qa"],
        ["p6", "audio/a1.flac", "rain", "", "", "", "audiocaps", "audio_caption"],
    ]
    exs = list(iter_tsv(_write(media / "pre.tsv", rows), "pretrain"))
    assert [e["task"] for e in exs] == ["caption", "vqa", "visual_grounding", "video_caption", "video_qa",
                                        "audio_caption"]
    assert [e["source"] for e in exs] == ["coco", "vqa_data", "refcoco", "webvid", "tgif", "audiocaps"]
    assert exs[0]["object_tags"] == ["square", "red"]
    assert exs[1]["media_path"].endswith("images/i1.png") and _pixels(exs[1])[0, 0].tolist() == [0, 255, 0]
    assert exs[2]["boxes"] == [[1.0, 2.0, 10.0, 11.0]] and exs[2]["text"] == "the red square"
    assert exs[4]["target"] == "a man"


BAD_ROWS = {
    # kind: (good row, [(bad row, reason fragment)])
    "caption": (["1", "i", "cap", "", B64], [
        (["2", "i", "cap", "", "!!!not base64!!!"], "base64"),
        (["3", "i", "cap"], "columns"),
        (["4", "i", "cap", "", base64.b64encode(b"hello world, not an image").decode()], "not a decodable image"),
        (["5", "i", "", "", B64], "empty caption"),
    ]),
    "vqa": (["1", "i", "q?", "1.0|!+yes", "", B64], [
        (["2", "i", "q?", "high|!+yes", "", B64], "non-numeric"),
        (["3", "i", "q?", "yes", "", B64], "confidence|!+answer"),
        (["4", "i", "q?", "1.0|!+yes", ""], "columns"),
    ]),
    "refcoco": (["1", "i", "the cat", "1,2,3,4", B64], [
        (["2", "i", "the cat", "1,2,3", B64], "3 numbers"),
        (["3", "i", "the cat", "1,2,a,4", B64], "not numeric"),
        (["4", "i", "the cat", "5,2,3,4", B64], "x1 <= x0"),
    ]),
    "snli_ve": (["1", "i", B64, "h", "p", "entailment"], [
        (["2", "i", B64, "h", "p", "perhaps"], "label"),
    ]),
    "video_caption": (["1", "v", "cap", "", "videos/v1.mp4"], [
        (["2", "v", "cap", "", "videos/missing.mp4"], "does not exist"),
    ]),
    "pretrain": (["1", B64, "cap", "", "", "", "d", "caption"], [
        (["2", B64, "cap", "", "", "", "d", "detection"], "unknown pretraining row type"),
    ]),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_malformed_rows_are_reported_with_line_numbers(media, kind, caplog):
    good, bad = BAD_ROWS[kind]
    rows = [good] + [b for b, _ in bad] + [good]
    path = _write(media / f"bad_{kind}.tsv", rows)
    # raise: the first bad row (line 2) stops the read
    with pytest.raises(DataFormatError) as ei:
        list(iter_tsv(path, kind))
    assert ei.value.line == 2 and ei.value.path == str(path)
    assert f"{path}:2:" in str(ei.value) and bad[0][1] in str(ei.value)
    # skip: every bad row is logged and counted, the good ones come through
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="training.data.readers"):
        exs = list(iter_tsv(path, kind, on_error="skip", stats=stats))
    assert len(exs) == 2
    assert stats.rows == len(rows) and stats.examples == 2 and stats.skipped == len(bad)
    assert [line for _, line, _ in stats.errors] == list(range(2, 2 + len(bad)))
    for (_, _, reason), (_, fragment) in zip(stats.errors, bad):
        assert fragment in reason
    assert sum("skipping malformed row" in r.message for r in caplog.records) == len(bad)


def test_empty_line_and_bad_arguments(tmp_path):
    p = tmp_path / "e.tsv"
    p.write_text("1\ti\tcap\t\t" + B64 + "\n\n")
    with pytest.raises(DataFormatError, match=r":2: empty line"):
        list(iter_tsv(p, "caption"))
    with pytest.raises(ValueError, match="on_error"):
        list(iter_tsv(p, "caption", on_error="ignore"))
    with pytest.raises(ValueError, match="unknown TSV kind"):
        list(iter_tsv(p, "coco"))


def test_selected_cols_override(tmp_path):
    p = _write(tmp_path / "c.tsv", [[B64, "cap", "id9"]])
    (e,) = iter_tsv(p, "caption", selected_cols=(2, 0, 1))
    assert e["id"] == "id9" and e["target"] == "cap"


def _rows(ds):
    out = []
    for r in ds:
        r = dict(r)
        r["image"] = None if r["image"] is None else _pixels(r).tobytes()
        out.append(r)
    return out


def test_streaming_equals_eager(media):
    good, bad = BAD_ROWS["vqa"]
    p1 = _write(media / "s1.tsv", [good, bad[0][0], ["x", "i", "q2?", "0.5|!+no&&1|!+yes", "", B64]])
    p2 = _write(media / "s2.tsv", [["y", "i", "q3?", "1|!+maybe", "", B64_STD]])
    s_eager, s_stream = ReadStats(), ReadStats()
    eager = read_tsv([p1, p2], "vqa", on_error="skip", stats=s_eager)
    stream = read_tsv([p1, p2], "vqa", on_error="skip", stats=s_stream, streaming=True)
    assert isinstance(eager, datasets.Dataset) and isinstance(stream, datasets.IterableDataset)
    assert stream.num_shards == 2
    assert s_stream.rows == 0  # lazy: nothing read yet
    assert _rows(eager) == _rows(stream)
    assert len(eager) == 3 and s_eager.skipped == s_stream.skipped == 1
    assert eager.features == stream.features
    # plain generator too
    assert [e["id"] for e in iter_tsv(p1, "vqa", on_error="skip")] == ["1", "x"]


def test_synthetic_world_round_trips_through_every_tsv_kind(tmp_path):
    root = tmp_path / "w"
    dd = synthetic.generate_world(root, num_examples=60, seed=4)
    rows = [r for split in dd.values() for r in split]
    kinds = {"caption": "caption", "vqa": "vqa", "refcoco": "visual_grounding", "snli_ve": "visual_entailment",
             "video_caption": "video_caption", "audio_caption": "audio_caption", "video_qa": "video_qa"}
    keys = ("id", "task", "modality", "text", "premise", "question", "target", "answers", "answer_confidences",
            "boxes", "object_tags")
    for kind, task in kinds.items():
        exs = [r for r in rows if r["task"] == task]
        assert exs, kind
        path = tmp_path / f"{kind}.tsv"
        assert readers.write_tsv(exs, path, kind, media_root=root) == len(exs)
        back = list(iter_tsv(path, kind, media_root=root))
        ks = [k for k in keys if k != "object_tags" or "object_tags" in readers.TSV_KINDS[kind].fields]
        assert [{k: e[k] for k in ks} for e in back] == [{k: e[k] for k in ks} for e in exs], kind
        for a, b in zip(exs, back):
            if a["modality"] == "image":
                assert np.array_equal(np.asarray(a["image"].convert("RGB")), _pixels(b))
            else:
                assert b["media_path"] == a["media_path"]
    pre = [r for r in rows if r["task"] in ("caption", "vqa", "visual_grounding", "video_caption", "video_qa",
                                             "audio_caption")]
    readers.write_tsv(pre, tmp_path / "pre.tsv", "pretrain", image_format="path", media_root=root)
    back = list(iter_tsv(tmp_path / "pre.tsv", "pretrain", media_root=root))
    assert [(e["task"], e["target"], e["boxes"], e["source"]) for e in back] == \
        [(e["task"], e["target"], e["boxes"], "synthetic") for e in pre]
    with pytest.raises(ValueError, match="cannot be written"):
        readers.write_tsv([rows[0] | {"task": "vqa"}], tmp_path / "x.tsv", "caption")


# ----------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ----------------------------------------------------------------------------------------------------------------------


def _coco_like():
    imgs = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    ds = datasets.Dataset.from_dict({
        "image": imgs,
        "captions": [["a red image", "red"], ["a green image"], ["blue", "a blue one", "azure"]],
        "image_id": [11, 12, 13],
    })
    return ds.cast_column("image", datasets.Image())


def test_hf_coco_like_captions():
    ds = _coco_like()
    out = readers.from_hf_dataset(ds, "caption", {"image": "image", "caption": "captions", "group_id": "image_id"},
                                  source="coco")
    assert isinstance(out, datasets.Dataset) and len(out) == 3
    assert out.column_names == list(FIELDS)
    r = out[2]
    assert (r["task"], r["target"], r["answers"], r["group_id"]) == ("caption", "blue", ["blue", "a blue one", "azure"],
                                                                      "13")
    assert r["id"] == "coco-2" and np.asarray(r["image"])[0, 0].tolist() == [0, 0, 255]
    expanded = readers.from_hf_dataset(ds, "caption", {"image": "image", "caption": "captions"}, expand_captions=True)
    assert len(expanded) == 6 and expanded[1]["target"] == "red"


def test_hf_vqav2_like_streaming_equals_eager():
    ds = datasets.Dataset.from_dict({
        "image": [Image.new("RGB", (8, 8), (9, 9, 9))] * 2,
        "question": ["what is it?", "how many?"],
        "answers": [["cat"] * 7 + ["dog"] * 2 + ["lion"], ["2"] * 2 + ["3"] * 8],
        "question_id": ["q1", "q2"],
    }).cast_column("image", datasets.Image())
    cols = {"image": "image", "question": "question", "answers": "answers", "id": "question_id"}
    eager = readers.from_hf_dataset(ds, "vqa", cols, source="vqav2")
    r = eager[0]
    assert r["target"] == "cat" and r["answers"] == ["cat", "dog", "lion"]
    assert r["answer_confidences"] == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert eager[1]["target"] == "3" and eager[1]["id"] == "q2"
    lazy = readers.from_hf_dataset(ds.to_iterable_dataset(num_shards=2), "vqa", cols, source="vqav2")
    assert isinstance(lazy, datasets.IterableDataset)
    assert _rows(lazy) == _rows(eager)
    # HuggingFaceM4/VQAv2-style answers: a list of {"answer", "answer_confidence", "answer_id"} dicts
    dicts = ds.map(lambda r: {"answers": [{"answer": a, "answer_id": i} for i, a in enumerate(r["answers"])]})
    assert _rows(readers.from_hf_dataset(dicts, "vqa", cols, source="vqav2")) == _rows(eager)


def test_hf_grounding_entailment_and_errors(caplog):
    ds = datasets.Dataset.from_dict({
        "img": [Image.new("RGB", (20, 20))] * 3,
        "sentence": ["the dog", "the cat", "the bird"],
        "bbox": [[1, 2, 5, 6], [1, 2, 5], [0, 0, 3, 3]],
        "label": [0, 1, 2],
    }).cast_column("img", datasets.Image()).cast_column(
        "label", datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]))
    cols = {"image": "img", "text": "sentence", "box": "bbox"}
    with pytest.raises(DataFormatError, match="row 1: box"):
        readers.from_hf_dataset(ds, "visual_grounding", cols, box_format="xywh")
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="training.data.readers"):
        out = readers.from_hf_dataset(ds, "visual_grounding", cols, box_format="xywh", on_error="skip", stats=stats)
    assert len(out) == 2 and stats.skipped == 1 and stats.errors[0][2].startswith("row 1")
    assert out[0]["boxes"] == [[1.0, 2.0, 6.0, 8.0]]
    ve = readers.from_hf_dataset(ds, "visual_entailment", {"image": "img", "text": "sentence", "label": "label"})
    assert ve["target"] == ["yes", "maybe", "no"]
    with pytest.raises(ValueError, match="no column"):
        readers.from_hf_dataset(ds, "caption", {"image": "img", "caption": "captions"})
