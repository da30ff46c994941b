"""UnivalMultitaskCollator: schema examples of mixed tasks / modalities -> one model batch; generation batches."""

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from media_fixtures import make_image
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from processing import prompts as P
from processing import tasks as T
from processing.boxes import bins_to_box, extract_bins, quantize_box
from processing.constants import BIN_TOKEN_OFFSET, EOS_TOKEN_ID, LABEL_IGNORE_INDEX, NUM_BINS
from tiny import tiny_model
from training.collator import MODEL_INPUT_KEYS, GenerationBatch, UnivalMultitaskCollator
from training.data.schema import TASKS, make_example
from training.data.synthetic import generate_world, load_world


PREV_OUTPUT_TASKS = {"vqa", "video_qa", "visual_entailment"}
PATCH_TYPE = {"image": 0, "video": 1, "audio": 2, "text": -1}
BIN_IDS = range(BIN_TOKEN_OFFSET, BIN_TOKEN_OFFSET + NUM_BINS)  # 58457 .. 59456


@pytest.fixture(scope="module")
def processor():
    # sizes that fit the tiny model's 16x16 patch-position grid
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(size=128),
        video_processor=UnivalVideoProcessor(num_frames=8, crop_size=64),
        feature_extractor=UnivalFeatureExtractor(max_length=48000),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    dd = generate_world(root, num_examples=60, seed=0)
    return root, dd


@pytest.fixture(scope="module")
def one_of_each(world):
    """One train example of every task (all 12 tasks, image + video + audio)."""
    _, dd = world
    seen = {}
    for example in dd["train"]:
        seen.setdefault(example["task"], example)
    assert set(seen) == set(TASKS)
    return [seen[t] for t in TASKS]


@pytest.fixture(scope="module")
def collator(processor):
    return UnivalMultitaskCollator(processor)


def _row_target_tokens(labels_row):
    return [t for t in labels_row.tolist() if t != LABEL_IGNORE_INDEX]


def _vqa_example(answers, confidences, target=None, image=None, question="what colour is the circle?"):
    return make_example(
        id="vqa-custom", task="vqa", modality="image", image=image if image is not None else make_image(64, 64),
        question=question, target=target or answers[0], answers=answers, answer_confidences=confidences,
    )


# --------------------------------------------------------------------------------------------------------------------
# The batch contract
# --------------------------------------------------------------------------------------------------------------------
def test_mixed_batch_keys_shapes_dtypes(collator, one_of_each):
    batch = collator(one_of_each)
    n = len(one_of_each)
    assert isinstance(batch, dict)
    assert set(batch) == set(MODEL_INPUT_KEYS)
    modalities = [ex["modality"] for ex in one_of_each]
    counts = Counter(modalities)
    assert batch["pixel_values"].shape == (counts["image"], 3, 128, 128)
    assert batch["pixel_values_videos"].shape == (counts["video"], 3, 8, 64, 64)
    assert batch["audio_values"].shape == (counts["audio"], 48000)
    for key in ("pixel_values", "pixel_values_videos", "audio_values", "label_weights"):
        assert batch[key].dtype == torch.float32
    for key in ("input_ids", "attention_mask", "patch_types", "decoder_input_ids", "decoder_attention_mask", "labels"):
        assert batch[key].dtype == torch.int64
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == n
    assert batch["decoder_input_ids"].shape == batch["labels"].shape == batch["decoder_attention_mask"].shape
    assert batch["decoder_input_ids"].shape[0] == n and batch["label_weights"].shape == (n,)
    assert batch["patch_types"].tolist() == [PATCH_TYPE[m] for m in modalities]
    assert collator.last_task_counts == {t: 1 for t in TASKS}


def test_labels_end_with_eos_and_align_with_decoder_inputs(collator, one_of_each):
    batch = collator(one_of_each)
    for row in range(len(one_of_each)):
        labels = batch["labels"][row].tolist()
        decoder = batch["decoder_input_ids"][row].tolist()
        mask = batch["decoder_attention_mask"][row].tolist()
        length = sum(mask)
        assert mask == [1] * length + [0] * (len(mask) - length)  # right padding
        assert decoder[0] == 0
        # labels are decoder inputs shifted left, + </s>, then -100 padding
        assert labels[length - 1] == EOS_TOKEN_ID
        assert all(t == LABEL_IGNORE_INDEX for t in labels[length:])
        assert all(t == 1 for t in decoder[length:])
        for t in range(length - 1):
            if labels[t] != LABEL_IGNORE_INDEX:
                assert decoder[t + 1] == labels[t]
        # the encoder side: <s> ... </s>, right padded
        ids = batch["input_ids"][row].tolist()
        src_len = int(batch["attention_mask"][row].sum())
        assert ids[0] == 0 and ids[src_len - 1] == EOS_TOKEN_ID and all(t == 1 for t in ids[src_len:])


def test_prev_output_layout_per_example(collator, one_of_each):
    batch = collator(one_of_each)
    for row, example in enumerate(one_of_each):
        labels = batch["labels"][row].tolist()
        prompt_len = int(batch["attention_mask"][row].sum()) - 2  # without <s> and </s>
        if example["task"] in PREV_OUTPUT_TASKS:
            assert labels[:prompt_len] == [LABEL_IGNORE_INDEX] * prompt_len
            assert labels[prompt_len] != LABEL_IGNORE_INDEX
            prompt_tokens = batch["input_ids"][row, 1 : 1 + prompt_len].tolist()
            assert batch["decoder_input_ids"][row, 1 : 1 + prompt_len].tolist() == prompt_tokens
        else:
            assert labels[0] != LABEL_IGNORE_INDEX


def test_each_row_equals_the_example_collated_alone(collator, one_of_each):
    """Mixing tasks, modalities and layouts in one batch changes nothing but the padding."""
    batch = collator(one_of_each)
    media_index = Counter()
    media_key = {"image": "pixel_values", "video": "pixel_values_videos", "audio": "audio_values"}
    for row, example in enumerate(one_of_each):
        alone = collator([example])
        for key, mask_key in (("input_ids", "attention_mask"), ("decoder_input_ids", "decoder_attention_mask"),
                              ("labels", "decoder_attention_mask")):
            width = alone[key].shape[1]
            assert batch[key][row, :width].tolist() == alone[key][0].tolist(), (example["task"], key)
            assert int(batch[mask_key][row].sum()) == int(alone[mask_key][0].sum())
        key = media_key[example["modality"]]
        assert torch.equal(batch[key][media_index[key]], alone[key][0])
        media_index[key] += 1
        assert batch["label_weights"][row] == alone["label_weights"][0]


def test_same_as_the_processor_for_a_single_task(processor, collator, world):
    """The collator's prev_output rows are the processor's own (one implementation of the layout)."""
    _, dd = world
    vqa = [ex for ex in dd["train"] if ex["task"] == "vqa"][:4]
    batch = collator(vqa)
    reference = processor(
        task="vqa", text=[ex["question"] for ex in vqa], images=[ex["image"] for ex in vqa],
        targets=[ex["target"] for ex in vqa], return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "pixel_values", "patch_types", "decoder_input_ids",
                "decoder_attention_mask", "labels"):
        assert torch.equal(batch[key], reference[key]), key


def test_grounding_labels_are_four_bins_and_eos(collator, one_of_each):
    batch = collator(one_of_each)
    row = [ex["task"] for ex in one_of_each].index("visual_grounding")
    example = one_of_each[row]
    tokens = _row_target_tokens(batch["labels"][row])
    assert len(tokens) == 5 and tokens[-1] == EOS_TOKEN_ID
    assert all(t in BIN_IDS for t in tokens[:4])
    height, width = example["image"].height, example["image"].width
    expected = extract_bins(quantize_box(example["boxes"][0], (height, width)))
    assert [t - BIN_TOKEN_OFFSET for t in tokens[:4]] == expected


def test_label_weights(collator, one_of_each):
    batch, meta = collator.collate_with_meta(one_of_each)
    for row, example in enumerate(one_of_each):
        if example["task"] in ("vqa", "video_qa"):
            expected = example["answer_confidences"][example["answers"].index(example["target"])]
        else:
            expected = 1.0
        assert batch["label_weights"][row].item() == pytest.approx(expected)
        assert meta[row]["label_weight"] == pytest.approx(expected)
    low = _vqa_example(["red", "blue"], [0.6, 0.3])
    out = collator([low, one_of_each[0]])
    assert out["label_weights"].tolist() == pytest.approx([0.6, 1.0])


def test_training_uses_the_best_answer_and_optional_sampling(processor):
    example = _vqa_example(["red", "blue", "green"], [1.0, 0.6, 0.3])
    tokenizer = processor.tokenizer

    def answers_of(collator, n=40):
        out = []
        for _ in range(n):
            _, meta = collator.collate_with_meta([example])
            out.append((meta[0]["target"], meta[0]["label_weight"]))
        return out

    deterministic = answers_of(UnivalMultitaskCollator(processor, training=True), n=3)
    assert deterministic == [(" red", 1.0)] * 3
    sampled = answers_of(UnivalMultitaskCollator(processor, training=True, sample_answers=True, seed=3))
    again = answers_of(UnivalMultitaskCollator(processor, training=True, sample_answers=True, seed=3))
    assert sampled == again  # seeded
    assert {a for a, _ in sampled} == {" red", " blue", " green"}
    weight = {" red": 1.0, " blue": 0.6, " green": 0.3}
    assert all(w == pytest.approx(weight[a]) for a, w in sampled)
    assert Counter(a for a, _ in sampled)[" red"] > Counter(a for a, _ in sampled)[" green"]
    # the label tokens follow the sampled answer
    collator = UnivalMultitaskCollator(processor, training=True, sample_answers=True, seed=5)
    batch, meta = collator.collate_with_meta([example])
    answer_ids = tokenizer(meta[0]["target"], add_special_tokens=False)["input_ids"]
    assert _row_target_tokens(batch["labels"][0]) == answer_ids + [EOS_TOKEN_ID]
    # evaluation batches never sample
    evaluation = UnivalMultitaskCollator(processor, training=False, sample_answers=True, seed=3)
    assert answers_of(evaluation, n=5) == [(" red", 1.0)] * 5


# --------------------------------------------------------------------------------------------------------------------
# Prompts and targets
# --------------------------------------------------------------------------------------------------------------------
def test_exact_prompts_of_every_task(processor, collator, one_of_each):
    by_task = {ex["task"]: ex for ex in one_of_each}

    def bins(example):
        return "".join(quantize_box(example["boxes"][0], (128, 128)).split())

    expected = {
        "caption": P.IMAGE_CAPTION_PROMPT,
        "video_caption": P.VIDEO_CAPTION_PROMPT,
        "audio_caption": P.AUDIO_CAPTION_PROMPT_AS_TRAINED,  # the processor's default audio prompt
        "vqa": P.QUESTION_TEMPLATE.format(question=P.pre_question(by_task["vqa"]["question"]).rstrip("?") + "?"),
        "video_qa": P.QUESTION_TEMPLATE.format(
            question=P.pre_question(by_task["video_qa"]["question"]).rstrip("?") + "?"
        ),
        "qa_matching": P.QA_MATCHING_TEMPLATE.format(
            question=P.pre_question(by_task["qa_matching"]["question"]), answer=by_task["qa_matching"]["text"]
        ),
        "visual_grounding": P.GROUNDING_TEMPLATE.format(text=P.pre_caption(by_task["visual_grounding"]["text"])),
        "grounded_caption": P.GROUNDED_CAPTION_PROMPT + bins(by_task["grounded_caption"]),
        "image_text_matching": P.MATCHING_TEMPLATE.format(
            medium="image", caption=P.pre_caption(by_task["image_text_matching"]["text"])
        ),
        "video_text_matching": P.MATCHING_TEMPLATE.format(
            medium="video", caption=P.pre_caption(by_task["video_text_matching"]["text"])
        ),
        "audio_text_matching": P.MATCHING_TEMPLATE.format(
            medium="audio", caption=P.pre_caption(by_task["audio_text_matching"]["text"])
        ),
        "visual_entailment": P.ENTAILMENT_TEMPLATE.format(
            hypothesis=P.pre_caption(by_task["visual_entailment"]["text"])
        ),
    }
    assert set(expected) == set(TASKS)
    batch, meta = collator.collate_with_meta(one_of_each)
    for row, example in enumerate(one_of_each):
        prompt = expected[example["task"]]
        assert collator.build_prompt(example) == prompt, example["task"]
        assert meta[row]["prompt"] == prompt
        ids = processor.tokenizer(prompt)["input_ids"]
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
    assert "region:<bin_" in expected["grounded_caption"]
    # the premise is not fed (UnIVAL's SNLI-VE recipe) unless asked for
    ve = by_task["visual_entailment"]
    with_premise = UnivalMultitaskCollator(processor, use_premise=True).build_prompt(ve)
    assert with_premise == P.ENTAILMENT_WITH_PREMISE_TEMPLATE.format(
        premise=P.pre_caption(ve["premise"]), hypothesis=P.pre_caption(ve["text"])
    )


def test_modality_aware_caption_and_audio_prompt(processor, world, one_of_each):
    by_task = {ex["task"]: ex for ex in one_of_each}
    video = dict(by_task["video_caption"], task="caption")  # "caption" of a video -> the video prompt
    audio = dict(by_task["audio_caption"], task="caption")
    collator = UnivalMultitaskCollator(processor)
    assert collator.build_prompt(video) == P.VIDEO_CAPTION_PROMPT
    assert collator.build_prompt(audio) == P.AUDIO_CAPTION_PROMPT_AS_TRAINED
    batch = collator([video, audio, by_task["caption"]])
    assert batch["patch_types"].tolist() == [1, 2, 0]
    audio_processor = UnivalProcessor(
        image_processor=processor.image_processor, video_processor=processor.video_processor,
        feature_extractor=processor.feature_extractor, audio_prompt="audio",
    )
    assert UnivalMultitaskCollator(audio_processor).build_prompt(by_task["audio_caption"]) == P.AUDIO_CAPTION_PROMPT


def test_exact_targets(collator, one_of_each):
    for example in one_of_each:
        task = example["task"]
        target = collator.build_target(example)
        if task in ("caption", "video_caption", "audio_caption", "grounded_caption"):
            assert target == " " + P.clean_caption_target(example["target"])
        elif task in ("vqa", "video_qa"):
            assert target == " " + example["target"]
        elif task == "visual_grounding":
            assert target == quantize_box(example["boxes"][0], (128, 128))
        else:
            assert target == " " + example["target"] and example["target"] in ("yes", "no", "maybe")


def test_grounding_quantisation_on_a_non_square_image(processor, collator, tmp_path):
    height, width = 90, 200
    image = make_image(height, width, seed=1)
    path = tmp_path / "wide.png"
    image.save(path)
    box = [20.0, 10.0, 151.0, 83.0]
    variants = {
        "pil": dict(image=image),
        "path": dict(image=None, media_path=str(path)),
        "image_dict": dict(image={"bytes": path.read_bytes(), "path": None}),
        "image_dict_path": dict(image={"bytes": None, "path": str(path)}),
    }
    targets = {}
    for name, media in variants.items():
        example = make_example(id=f"vg-{name}", task="visual_grounding", modality="image", text="the wide box",
                               boxes=[box], **{"image": image, **media})
        batch = collator([example])
        tokens = _row_target_tokens(batch["labels"][0])
        assert tokens[-1] == EOS_TOKEN_ID and all(t in BIN_IDS for t in tokens[:4])
        targets[name] = [t - BIN_TOKEN_OFFSET for t in tokens[:4]]
        assert batch["pixel_values"].shape == (1, 3, 128, 128)  # resized to a square
    assert len({tuple(v) for v in targets.values()}) == 1
    bins = targets["pil"]
    # x normalised by the width, y by the height of the ORIGINAL image
    assert bins == [round(20 / 200 * 999), round(10 / 90 * 999), round(151 / 200 * 999), round(83 / 90 * 999)]
    decoded = bins_to_box(bins, (height, width))
    for value, truth, side in zip(decoded, box, (width, height, width, height)):
        assert abs(value - truth) <= side / (NUM_BINS - 1)
    # the same box in the processed (square) image: coordinates relative to that image are unchanged
    processed = [box[0] * 128 / width, box[1] * 128 / height, box[2] * 128 / width, box[3] * 128 / height]
    assert extract_bins(quantize_box(processed, (128, 128))) == bins
    # grounded captioning quantises its region the same way
    gc = make_example(id="gc", task="grounded_caption", modality="image", image=image, boxes=[box],
                      target="a wide box")
    assert collator.build_prompt(gc) == P.GROUNDED_CAPTION_PROMPT + "".join(f"<bin_{b}>" for b in bins)


def test_text_only_examples(collator, one_of_each):
    text_qa = make_example(id="text-qa", task="vqa", modality="text", question="what is two plus two", target="four")
    mixed = collator([text_qa, one_of_each[0]])
    assert mixed["patch_types"].tolist() == [-1, 0]
    alone = collator([text_qa])
    assert not {"pixel_values", "pixel_values_videos", "audio_values", "patch_types"} & set(alone)
    assert torch.isfinite(tiny_model()(**alone).loss)


def test_processor_prompt_types_set_the_layouts(processor, one_of_each, tmp_path):
    vqa = next(ex for ex in one_of_each if ex["task"] == "vqa")
    caption = next(ex for ex in one_of_each if ex["task"] == "caption")
    changed = UnivalProcessor(
        image_processor=processor.image_processor,
        video_processor=processor.video_processor,
        feature_extractor=processor.feature_extractor,
        prompt_types={"VQA": "none", "caption": "prev_output", "itm": "prev_output"},  # names are canonicalised
    )
    assert changed.prompt_types == {"caption": "prev_output", "image_text_matching": "prev_output", "vqa": "none"}
    batch, meta = UnivalMultitaskCollator(changed).collate_with_meta([vqa, caption])
    assert [m["prompt_type"] for m in meta] == ["none", "prev_output"]
    assert batch["labels"][0, 0].item() != LABEL_IGNORE_INDEX
    assert batch["labels"][1, 0].item() == LABEL_IGNORE_INDEX
    # the layouts travel with the saved processor
    changed.save_pretrained(tmp_path)
    reloaded = UnivalProcessor.from_pretrained(tmp_path)
    assert reloaded.prompt_types == changed.prompt_types
    assert reloaded.prompt_type_of("vqa") == "none" and reloaded.prompt_type_of("qa_matching") == "none"
    assert processor.prompt_type_of("vqa") == "prev_output"
    with pytest.raises(ValueError, match="prompt_types"):
        UnivalProcessor(prompt_types={"vqa": "prefix"})
    with pytest.raises(ValueError, match="unknown task"):
        UnivalProcessor(prompt_types={"nope": "none"})
    with pytest.raises(TypeError, match="prompt_types"):
        UnivalProcessor(prompt_types=["vqa"])


def test_bad_examples_name_the_example(collator, one_of_each):
    grounding = dict(next(ex for ex in one_of_each if ex["task"] == "visual_grounding"), boxes=[])
    with pytest.raises(ValueError, match="visual_grounding.*needs a box"):
        collator([one_of_each[0], grounding])
    matching = dict(next(ex for ex in one_of_each if ex["task"] == "image_text_matching"), target="perhaps")
    with pytest.raises(ValueError, match=matching["id"]):
        collator([matching])
    with pytest.raises(ValueError, match="unknown task"):
        collator([dict(one_of_each[0], task="juggling")])
    with pytest.raises(ValueError, match="media_path"):
        collator([dict(next(ex for ex in one_of_each if ex["modality"] == "video"), media_path=None)])
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


def test_too_long_prev_output_prompt_is_reported(processor, one_of_each):
    vqa = next(ex for ex in one_of_each if ex["task"] == "vqa")
    short = UnivalMultitaskCollator(processor, max_target_length=6)
    with pytest.raises(ValueError, match="prev_output"):
        short([vqa, one_of_each[0]])


# --------------------------------------------------------------------------------------------------------------------
# Model, DataLoader, Trainer
# --------------------------------------------------------------------------------------------------------------------
def test_batch_trains_the_tiny_model(collator, one_of_each):
    batch = collator(one_of_each)
    model = tiny_model(seed=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses


def test_dataloader_over_a_dataset(collator, world):
    _, dd = world
    loader = DataLoader(dd["train"], batch_size=16, shuffle=True, collate_fn=collator.collate_with_meta,
                        generator=torch.Generator().manual_seed(0))
    seen = Counter()
    for batch, meta in loader:
        assert set(batch) <= set(MODEL_INPUT_KEYS)
        assert batch["input_ids"].shape[0] == len(meta) == batch["labels"].shape[0]
        seen.update(m["task"] for m in meta)
        assert collator.last_task_counts == dict(Counter(m["task"] for m in meta))
    assert seen == Counter(dd["train"]["task"])
    # undecoded image column ({"bytes", "path"} dicts) and a dict of columns (dataset[:n]) work too
    import datasets

    raw = dd["validation"].cast_column("image", datasets.Image(decode=False))
    assert isinstance(raw[0]["image"], (dict, type(None)))
    a = collator(list(dd["validation"]))
    b = collator(raw[:])
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dataloader_over_a_streaming_dataset(processor, world):
    root, dd = world
    streaming = load_world(root, streaming=True)["train"]
    collator = UnivalMultitaskCollator(processor)
    total = 0
    for batch in DataLoader(streaming, batch_size=16, collate_fn=collator):
        assert batch["labels"].shape[0] == batch["input_ids"].shape[0]
        total += batch["input_ids"].shape[0]
    assert total == len(dd["train"])
    assert sum(collator.task_counts.values()) == total


def test_collator_pickles_for_dataloader_workers(collator, one_of_each):
    clone = pickle.loads(pickle.dumps(collator))
    a, b = collator(one_of_each[:3]), clone(one_of_each[:3])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_takes_the_collator(processor, world, tmp_path):
    from transformers import Trainer, TrainingArguments

    _, dd = world
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8, remove_unused_columns=False,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, label_names=["labels"],
    )
    trainer = Trainer(model=tiny_model().train(), args=args, train_dataset=dd["train"],
                      data_collator=UnivalMultitaskCollator(processor))
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------------------------------
def test_generation_batches_from_dataloader_workers_equal_the_in_process_ones(collator, world):
    """`num_workers=2`: the media are decoded in worker processes, and the batches arrive in the same order with the
    same tensors."""
    _, dd = world
    examples = list(dd["validation"]) + list(dd["train"])
    local = list(collator.iter_generation_batches(examples, batch_size=4))
    workers = list(collator.iter_generation_batches(examples, batch_size=4, num_workers=2))
    assert len(local) == len(workers) > 1
    for ours, theirs in zip(local, workers):
        assert (ours.task, ours.prompt_type, ours.decoder_prompt_length) == (theirs.task, theirs.prompt_type,
                                                                            theirs.decoder_prompt_length)
        assert [r["id"] for r in ours.references] == [r["id"] for r in theirs.references]
        assert ours.inputs.keys() == theirs.inputs.keys()
        for key, value in ours.inputs.items():
            assert torch.equal(value, theirs.inputs[key]), key
    with pytest.raises(ValueError, match="num_workers"):
        next(collator.iter_generation_batches(examples, batch_size=4, num_workers=-1))


def test_generation_batches(processor, collator, world, one_of_each):
    _, dd = world
    examples = list(dd["validation"]) + list(dd["train"])
    batches = list(collator.iter_generation_batches(examples, batch_size=4))
    assert sum(len(b.references) for b in batches) == len(examples)
    assert sorted(r["id"] for b in batches for r in b.references) == sorted(ex["id"] for ex in examples)
    model = tiny_model()
    ran = set()
    for gb in batches:
        assert isinstance(gb, GenerationBatch) and 1 <= len(gb.references) <= 4
        assert {r["task"] for r in gb.references} == {gb.task}
        assert "labels" not in gb.inputs
        if gb.task in PREV_OUTPUT_TASKS:
            assert gb.prompt_type == "prev_output"
            decoder, mask = gb.inputs["decoder_input_ids"], gb.inputs["decoder_attention_mask"]
            assert decoder.shape == mask.shape and decoder.shape[1] == gb.decoder_prompt_length
            for row in range(decoder.shape[0]):  # `<s>` + the question, left-padded
                length = int(gb.inputs["attention_mask"][row].sum()) - 1  # the encoder's copy ends with `</s>`
                assert mask[row].tolist() == [0] * (decoder.shape[1] - length) + [1] * length
                assert decoder[row, decoder.shape[1] - length :].tolist() == gb.inputs["input_ids"][row, :length].tolist()
        else:
            assert "decoder_input_ids" not in gb.inputs and "decoder_attention_mask" not in gb.inputs
            assert gb.decoder_prompt_length == 1
        config = gb.generation_config()
        assert {k: getattr(config, k) for k in T.TASKS[gb.task].generation} == dict(T.TASKS[gb.task].generation)
        if gb.task in ("vqa", "visual_grounding", "caption") and gb.task not in ran:
            ran.add(gb.task)
            kwargs = dict(T.TASKS[gb.task].generation, num_beams=2)
            kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], 5)  # grounding: four bins and `</s>`
            kwargs.pop("min_new_tokens", None)
            if gb.task == "visual_grounding":
                kwargs["bad_words_ids"] = [[i] for i in range(BIN_TOKEN_OFFSET) if i != EOS_TOKEN_ID]
            with torch.no_grad():
                out = model.generate(**gb.inputs, **kwargs)
            assert out.shape[0] == len(gb.references)
            if gb.task == "vqa":
                assert torch.equal(out[:, : gb.decoder_prompt_length], gb.inputs["decoder_input_ids"])
                answers = processor.post_process_vqa(out, prompt_lengths=gb.decoder_prompt_length)
                assert len(answers) == len(gb.references)
            if gb.task == "visual_grounding":
                sizes = [r["image_size"] for r in gb.references]
                assert sizes == [(128, 128)] * len(sizes)
                boxes = processor.post_process_grounding(out, sizes)
                assert all(b["box"] is not None for b in boxes)
                assert all(len(r["box"]) == 4 for r in gb.references)
    assert ran == {"vqa", "visual_grounding", "caption"}


def test_build_generation_inputs(collator, world):
    _, dd = world
    captions = [ex for ex in dd["train"] if ex["task"] in ("caption", "video_caption", "audio_caption")]
    inputs, references = collator.build_generation_inputs(captions)
    assert inputs["patch_types"].tolist() == [PATCH_TYPE[ex["modality"]] for ex in captions]
    assert [r["answers"] for r in references] == [ex["answers"] for ex in captions]
    assert set(inputs) <= set(MODEL_INPUT_KEYS[:6])
    vqa = [ex for ex in dd["train"] if ex["task"] == "vqa"]
    lengths = {len(collator._prompt_ids([collator.build_prompt(ex)])[0]) for ex in vqa}
    assert len(lengths) > 1
    # Questions of different lengths share one call, left-padded in the decoder, and decode as they do alone.
    inputs, _ = collator.build_generation_inputs(vqa)
    width = inputs["decoder_input_ids"].shape[1]
    model = tiny_model()
    settings = dict(num_beams=3, max_new_tokens=4, return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        batched = model.generate(**inputs, **settings)
        for row, example in enumerate(vqa):
            alone_inputs, _ = collator.build_generation_inputs([example])
            alone = model.generate(**alone_inputs, **settings)
            alone_width = alone_inputs["decoder_input_ids"].shape[1]
            assert batched.sequences[row, width:].tolist()[: alone.sequences.shape[1] - alone_width] == (
                alone.sequences[0, alone_width:].tolist()
            )
            torch.testing.assert_close(batched.sequences_scores[row], alone.sequences_scores[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prev_output"):
        collator.build_generation_inputs([vqa[0], captions[0]])
    inputs, _ = collator.build_generation_inputs(vqa[:1])
    assert inputs["decoder_input_ids"].shape[0] == 1
