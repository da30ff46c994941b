"""The matching / grounded-captioning examples derived from original pretraining rows (training.data.derived)."""

import json

import datasets
import pytest
from PIL import Image

from training.data.derived import derive_pretraining_tasks, derived_examples
from training.data.schema import example_features, make_example, validate_example


def rows():
    image = Image.new("RGB", (8, 8), "red")
    out = []
    captions = ["a red circle next to a blue square", "a green star", "a dog on a sofa", "a cat under a table"]
    tags = [["circle", "square"], ["star"], ["dog", "sofa"], ["cat", "table"]]
    for i, (caption, tag) in enumerate(zip(captions, tags)):
        out.append(make_example(id=f"c{i}", task="caption", modality="image", image=image, target=caption, object_tags=tag))
    questions = [("how many dogs are there?", "3"), ("is the cat black?", "yes"), ("what color is the car?", "red"),
                 ("what color is the bus?", "blue"), ("what color is the sky?", "grey")]
    for i, (question, answer) in enumerate(questions):
        out.append(make_example(id=f"q{i}", task="vqa", modality="image", image=image, question=question,
                                target=answer, answers=[answer], answer_confidences=[1.0]))
    out.append(make_example(id="g0", task="visual_grounding", modality="image", image=image, text="the red circle",
                            boxes=[[1, 1, 5, 5]]))
    out.append(make_example(id="v0", task="video_caption", modality="video", media_path="a.mp4", target="a ball rolls"))
    out.append(make_example(id="v1", task="video_caption", modality="video", media_path="b.mp4", target="a man runs"))
    return out


def test_each_row_yields_its_derived_task():
    source = rows()
    derived = derived_examples(source, seed=0)
    by_source = {json.loads(d["metadata"])["derived_from"]: d for d in derived}
    assert set(by_source) == {r["id"] for r in source}
    expected = {"c": "image_text_matching", "q": "qa_matching", "g": "grounded_caption", "v": "video_text_matching"}
    for source_id, example in by_source.items():
        assert example["task"] == expected[source_id[0]]
        validate_example(example)
    grounded = by_source["g0"]
    assert grounded["target"] == "the red circle" and grounded["boxes"] == [[1.0, 1.0, 5.0, 5.0]]
    assert by_source["v0"]["media_path"] == "a.mp4" and by_source["c0"]["image"] is not None


@pytest.mark.parametrize("seed", range(12))
def test_labels_tell_the_truth(seed):
    source = {r["id"]: r for r in rows()}
    for example in derived_examples(list(source.values()), seed=seed):
        origin = source[json.loads(example["metadata"])["derived_from"]]
        if example["task"] == "grounded_caption":
            continue
        truth = origin["target"]
        assert (example["text"] == truth) == (example["target"] == "yes"), example
        if example["task"] == "qa_matching" and example["target"] == "no":
            if truth.isdigit():
                assert abs(int(example["text"]) - int(truth)) == 1
            elif truth in ("yes", "no"):
                assert example["text"] == {"yes": "no", "no": "yes"}[truth]
            else:  # another answer to a question of the same kind ("what color ...")
                assert example["text"] in {"red", "blue", "grey"} - {truth}
        if example["task"] == "video_text_matching" and example["target"] == "no":
            assert example["text"] in {"a ball rolls", "a man runs"} - {truth}


def test_negatives_mix_tag_replacements_and_other_captions():
    image_rows = [r for r in rows() if r["task"] == "caption"]
    kinds = {"tag": 0, "other": 0}
    captions = {r["target"] for r in image_rows}
    for seed in range(200):
        for example in derived_examples(image_rows, seed=seed):
            if example["target"] == "no":
                kinds["other" if example["text"] in captions else "tag"] += 1
    total = sum(kinds.values())
    assert 0.3 < kinds["tag"] / total < 0.5, kinds  # the original's 0.4
    positives = sum(e["target"] == "yes" for s in range(200) for e in derived_examples(image_rows, seed=s))
    assert 0.45 < positives / (positives + total) < 0.55


def test_derivation_is_deterministic_and_appends_to_the_dataset():
    source = rows()
    assert derived_examples(source, seed=3) == derived_examples(source, seed=3)
    assert derived_examples(source, seed=3) != derived_examples(source, seed=4)
    dataset = datasets.Dataset.from_list(source, features=example_features())
    extended = derive_pretraining_tasks(dataset, seed=0)
    assert len(extended) == 2 * len(source)
    assert extended[: len(source)]["id"] == dataset["id"]
    assert isinstance(extended[len(source)]["image"], Image.Image)
