"""Tests of UnivalProcessor: the model input contract, tasks and prompts, targets, save / load, bad input."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoProcessor, AutoTokenizer

import processing
from media_fixtures import make_frames, make_image, make_tone, write_audio, write_video
from processing import Modality, UnivalProcessor, build_prompt, build_target, pre_caption, pre_question
from processing.constants import BIN_TOKEN_OFFSET, LABEL_IGNORE_INDEX


IMAGE_PROMPT = " what does the image describe?"
VIDEO_PROMPT = " what does the video describe?"
IMAGE_PROMPT_IDS = [0, 99, 473, 5, 2274, 6190, 116, 2]
VIDEO_PROMPT_IDS = [0, 99, 473, 5, 569, 6190, 116, 2]
CONTRACT_KEYS = {"input_ids", "attention_mask", "pixel_values", "pixel_values_videos", "audio_values", "patch_types"}


@pytest.fixture(scope="module")
def processor():
    # small media sizes keep the tests fast; the defaults are tested separately
    return UnivalProcessor(
        image_processor=processing.UnivalImageProcessor(size=64),
        video_processor=processing.UnivalVideoProcessor(crop_size=32, num_frames=4),
        feature_extractor=processing.UnivalFeatureExtractor(max_length=16000),
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    image = root / "image.jpg"
    make_image(60, 90, seed=5).save(image)
    video = write_video(root / "clip.mp4", make_frames(10))
    audio = write_audio(root / "tone.wav", make_tone(0.25, 16000), 16000)
    return {"image": str(image), "video": video, "audio": audio, "root": root}


def test_defaults():
    processor = UnivalProcessor()
    assert processor.image_processor.size.height == 480
    assert processor.video_processor.num_frames == 16 and processor.video_processor.crop_size.height == 384
    assert processor.feature_extractor.max_length == 480000 and processor.feature_extractor.sampling_rate == 48000
    assert processor.max_source_length == 1024
    assert isinstance(processor.tokenizer, processing.UnivalTokenizer)


def test_modality_enum():
    assert [int(m) for m in (Modality.TEXT, Modality.IMAGE, Modality.VIDEO, Modality.AUDIO)] == [-1, 0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# the model input contract
# ---------------------------------------------------------------------------------------------------------------------
def test_image_file(processor, media):
    out = processor(text=IMAGE_PROMPT, images=media["image"], return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask", "pixel_values", "patch_types"}
    assert out["input_ids"].tolist() == [IMAGE_PROMPT_IDS] and out["input_ids"].dtype == torch.int64
    assert out["attention_mask"].tolist() == [[1] * 8] and out["attention_mask"].dtype == torch.int64
    assert out["pixel_values"].shape == (1, 3, 64, 64) and out["pixel_values"].dtype == torch.float32
    assert out["patch_types"].tolist() == [0] and out["patch_types"].dtype == torch.int64
    alone = processor.image_processor(media["image"])["pixel_values"]
    np.testing.assert_array_equal(out["pixel_values"].numpy(), alone)


def test_video_file(processor, media):
    out = processor(text=VIDEO_PROMPT, videos=media["video"], return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask", "pixel_values_videos", "patch_types"}
    assert out["pixel_values_videos"].shape == (1, 3, 4, 32, 32)
    assert out["pixel_values_videos"].dtype == torch.float32
    assert out["patch_types"].tolist() == [1]
    assert out["input_ids"].tolist() == [VIDEO_PROMPT_IDS]


def test_audio_file(processor, media):
    out = processor(task="audio_caption", audio=media["audio"], return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask", "audio_values", "patch_types"}
    assert out["audio_values"].shape == (1, 16000) and out["audio_values"].dtype == torch.float32
    assert out["patch_types"].tolist() == [2]
    assert out["input_ids"].tolist() == [VIDEO_PROMPT_IDS]  # the audio checkpoints were trained with the video prompt


def test_text_alone(processor):
    out = processor(text=[" hello world", " a longer prompt here"], return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"][0].tolist()[-2:] == [1, 1]
    assert out["attention_mask"].sum(1).tolist() == [4, 6]


def test_mixed_batch_of_four(processor, media):
    out = processor(
        text=[IMAGE_PROMPT, VIDEO_PROMPT, VIDEO_PROMPT, " just text, a bit longer than the others"],
        images=[media["image"], None, None, None],
        videos=[None, media["video"], None, None],
        audio=[None, None, media["audio"], None],
        return_tensors="pt",
    )
    assert set(out) == CONTRACT_KEYS
    assert out["patch_types"].tolist() == [0, 1, 2, -1]
    assert out["input_ids"].shape[0] == 4 and out["attention_mask"].shape == out["input_ids"].shape
    assert out["pixel_values"].shape == (1, 3, 64, 64)
    assert out["pixel_values_videos"].shape == (1, 3, 4, 32, 32)
    assert out["audio_values"].shape == (1, 16000)
    assert out["input_ids"][0, :8].tolist() == IMAGE_PROMPT_IDS
    assert out["input_ids"][0, 8:].eq(1).all() and out["attention_mask"][0, 8:].eq(0).all()
    for key in ("pixel_values", "pixel_values_videos", "audio_values"):
        assert out[key].dtype == torch.float32
    for key in ("input_ids", "attention_mask", "patch_types"):
        assert out[key].dtype == torch.int64


def test_media_rows_follow_batch_order(processor):
    images = [make_image(20, 30, seed=1), make_image(25, 25, seed=2)]
    out = processor(text=IMAGE_PROMPT, images=[images[0], None, images[1]])
    assert out["patch_types"].tolist() == [0, -1, 0]
    np.testing.assert_array_equal(out["pixel_values"], processor.image_processor(images)["pixel_values"])


def test_single_text_applies_to_every_sample(processor):
    out = processor(text=IMAGE_PROMPT, images=[make_image(), make_image(seed=2)])
    assert out["input_ids"].tolist() == [IMAGE_PROMPT_IDS, IMAGE_PROMPT_IDS]


def test_numpy_output_by_default(processor):
    out = processor(text=IMAGE_PROMPT, images=make_image())
    assert isinstance(out["input_ids"], np.ndarray) and out["input_ids"].dtype == np.int64


def test_sub_processor_options(processor, media):
    out = processor(text=IMAGE_PROMPT, images=media["image"], size=48)
    assert out["pixel_values"].shape == (1, 3, 48, 48)
    out = processor(text=VIDEO_PROMPT, videos=media["video"], videos_kwargs={"num_frames": 2, "crop_size": 16})
    assert out["pixel_values_videos"].shape == (1, 3, 2, 16, 16)
    a = processor(text=VIDEO_PROMPT, videos=media["video"], do_sample_frames="random", seed=0)
    b = processor(text=VIDEO_PROMPT, videos=media["video"], do_sample_frames="random", seed=0)
    np.testing.assert_array_equal(a["pixel_values_videos"], b["pixel_values_videos"])
    out = processor(text=VIDEO_PROMPT, audio=np.zeros(100), sampling_rate=48000, audio_kwargs={"max_length": 50})
    assert out["audio_values"].shape == (1, 50)


# ---------------------------------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------------------------------
def test_save_and_auto_load_give_identical_outputs(media, tmp_path):
    processor = UnivalProcessor(
        image_processor=processing.UnivalImageProcessor(size=96),
        video_processor=processing.UnivalVideoProcessor(crop_size=48, num_frames=8),
        feature_extractor=processing.UnivalFeatureExtractor(max_length=24000),
        max_source_length=64,
        audio_prompt="audio",
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "UnivalProcessor"
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is UnivalProcessor
    assert reloaded.max_source_length == 64 and reloaded.audio_prompt == "audio"
    kwargs = dict(
        text=[IMAGE_PROMPT, VIDEO_PROMPT, " what does the audio describe?", " text only"],
        images=[media["image"], None, None, None],
        videos=[None, media["video"], None, None],
        audio=[None, None, media["audio"], None],
        targets=["two dogs", "a man cooking", "rain falls", "hello"],
        return_tensors="pt",
    )
    first, second = processor(**kwargs), reloaded(**kwargs)
    assert set(first) == set(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert reloaded(task="audio_caption", audio=media["audio"])["input_ids"][0].tolist() == (
        processor.tokenizer(" what does the audio describe?")["input_ids"]
    )


def test_auto_classes_load_each_part(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert type(AutoTokenizer.from_pretrained(tmp_path)) is processing.UnivalTokenizer
    image_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(image_processor) is processing.UnivalImageProcessor and image_processor.size.height == 64
    feature_extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(feature_extractor) is processing.UnivalFeatureExtractor and feature_extractor.max_length == 16000


def test_auto_registration():
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

    from modeling_unival.configuration_unival import UnivalConfig

    assert PROCESSOR_MAPPING[UnivalConfig] is UnivalProcessor
    assert TOKENIZER_MAPPING[UnivalConfig] is processing.UnivalTokenizer
    assert IMAGE_PROCESSOR_MAPPING[UnivalConfig]["pil"] is processing.UnivalImageProcessor
    assert VIDEO_PROCESSOR_MAPPING[UnivalConfig]["pil"] is processing.UnivalVideoProcessor
    assert FEATURE_EXTRACTOR_MAPPING[UnivalConfig] is processing.UnivalFeatureExtractor
    processing.register_auto_classes()  # idempotent


# ---------------------------------------------------------------------------------------------------------------------
# prompts of every task
# ---------------------------------------------------------------------------------------------------------------------
def test_prompts_of_every_task():
    assert build_prompt("caption") == " what does the image describe?"
    assert build_prompt("image_caption") == " what does the image describe?"
    assert build_prompt("caption", modality="video") == " what does the video describe?"
    assert build_prompt("video_caption") == " what does the video describe?"
    assert build_prompt("audio_caption") == " what does the video describe?"
    assert build_prompt("audio_caption", audio_prompt="audio") == " what does the audio describe?"
    assert build_prompt("vqa", question="What color is the car") == " what color is the car?"
    assert build_prompt("vqa", question="what color is the car?") == " what color is the car?"
    assert build_prompt("vqa", question="What color?", append_question_mark=False) == " what color?"
    assert build_prompt("vqa", question="Is it red", append_question_mark=False) == " is it red"
    assert build_prompt("video_qa", question="What is the man doing") == " what is the man doing?"
    assert build_prompt("visual_grounding", text="A man in a red-shirt") == (
        ' which region does the text " a man in a red shirt " describe?'
    )
    assert build_prompt("refcoco", text="the dog") == ' which region does the text " the dog " describe?'
    assert build_prompt("grounded_caption", region="<bin_1> <bin_2> <bin_3> <bin_4>") == (
        "  what does the region describe? region:<bin_1><bin_2><bin_3><bin_4>"
    )
    assert build_prompt("grounded_caption", box=[0, 0, 100, 50], image_size=(100, 200)) == (
        "  what does the region describe? region:<bin_0><bin_0><bin_500><bin_500>"
    )
    assert build_prompt("image_text_matching", caption="Two dogs playing") == (
        ' does the image describe " two dogs playing "?'
    )
    assert build_prompt("video_text_matching", caption="a cat") == ' does the video describe " a cat "?'
    assert build_prompt("audio_text_matching", caption="rain") == ' does the audio describe " rain "?'
    assert build_prompt("text_matching", caption="rain", modality="audio") == ' does the audio describe " rain "?'
    assert build_prompt("visual_entailment", hypothesis="Two dogs playing") == (
        ' does the image describe " two dogs playing "?'
    )
    assert build_prompt("snli_ve", hypothesis="dogs", premise="Two dogs run") == (
        ' can image and text1 " two dogs run " imply text2 " dogs "?'
    )
    assert build_prompt("qa_matching", question="what is it", answer="a dog") == (
        ' what is the answer to question " what is it ". is " a dog "?'
    )
    assert build_prompt("text_to_image", caption="A red car") == " what is the complete image? caption: a red car"


def test_prompt_token_ids(processor):
    tokenizer = processor.tokenizer
    assert tokenizer(processor.grounding_prompt("a man in a red shirt"))["input_ids"] == [
        0, 61, 976, 473, 5, 2788, 22, 10, 313, 11, 10, 1275, 6399, 22, 6190, 116, 2,
    ]
    assert tokenizer(processor.entailment_prompt("two dogs playing"))["input_ids"] == [
        0, 473, 5, 2274, 6190, 22, 80, 3678, 816, 22, 116, 2,
    ]
    assert tokenizer(processor.vqa_prompt("what color is the car"))["input_ids"] == [0, 99, 3195, 16, 5, 512, 116, 2]
    ids = tokenizer(processor.grounded_caption_prompt("<bin_1> <bin_2> <bin_3> <bin_4>"))["input_ids"]
    assert ids == [0, 1437, 99, 473, 5, 976, 6190, 116, 976, 35] + [BIN_TOKEN_OFFSET + i for i in (1, 2, 3, 4)] + [2]
    assert processor.caption_prompt("video") == VIDEO_PROMPT
    assert processor.matching_prompt("a cat", "video") == ' does the video describe " a cat "?'


def test_targets_of_tasks():
    assert build_target("caption", caption="Two dogs, playing in the park!") == " Two dogs playing in the park"
    assert build_target("vqa", answer="red") == " red"
    assert build_target("visual_entailment", label="entailment") == " yes"
    assert build_target("snli_ve", label="contradiction") == " no"
    assert build_target("snli_ve", label="neutral") == " maybe"
    assert build_target("image_text_matching", label=True) == " yes"
    assert build_target("visual_grounding", box=[0, 0, 100, 50], image_size=(100, 200)) == (
        "<bin_0> <bin_0> <bin_500> <bin_500>"
    )
    with pytest.raises(ValueError):
        build_target("visual_entailment", label="unsure")


def test_text_normalisation():
    assert pre_caption(",.The man-in/black <person>  walks\n") == "the man in black person walks"
    assert pre_caption("  ,.lead spaces keep it") == ",.lead spaces keep it"  # as the original: lstrip first
    assert pre_question("?What's the Man-doing  now?") == "what's the man doing now?"
    assert pre_question("<person> here") == "<person> here"
    long = " ".join(f"w{i}" for i in range(100))
    assert len(pre_question(long).split()) == 80
    assert len(pre_caption(long, max_words=5).split()) == 5
    assert processing.postprocess_vqa_answer("  Red. ") == "red"
    assert processing.postprocess_caption(" a dog, running!  fast ") == "a dog running fast"


def test_task_mode(processor, media):
    out = processor(task="vqa", text="What color is the car", images=media["image"])
    assert out["input_ids"].tolist() == [[0, 99, 3195, 16, 5, 512, 116, 2]]
    same = processor(task="vqa", question="What color is the car", images=media["image"])
    np.testing.assert_array_equal(out["input_ids"], same["input_ids"])
    out = processor(task="caption", images=[media["image"], None], videos=[None, media["video"]])
    assert out["input_ids"].tolist() == [IMAGE_PROMPT_IDS, VIDEO_PROMPT_IDS]
    assert out["patch_types"].tolist() == [0, 1]
    out = processor(task="visual_grounding", text=["a man in a red shirt", "the dog"], images=[media["image"]] * 2)
    assert out["input_ids"][0].tolist() == [0, 61, 976, 473, 5, 2788, 22, 10, 313, 11, 10, 1275, 6399, 22, 6190, 116, 2]
    out = processor(task="grounded_caption", box=[0, 0, 45, 30], images=media["image"])  # image is 60 x 90
    assert out["input_ids"][0, -5:].tolist() == [BIN_TOKEN_OFFSET + b for b in (0, 0, 500, 500)] + [2]
    out = processor(task="audio_caption", audio=media["audio"], audio_prompt="audio")
    assert out["input_ids"].tolist() == [processor.tokenizer(" what does the audio describe?")["input_ids"]]


# ---------------------------------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------------------------------
def test_targets_standard_layout(processor, media):
    out = processor(
        text=[IMAGE_PROMPT, IMAGE_PROMPT],
        images=[media["image"], media["image"]],
        targets=["two dogs playing", " a cat"],
        return_tensors="pt",
    )
    assert set(out) == {"input_ids", "attention_mask", "pixel_values", "patch_types", "labels",
                        "decoder_input_ids", "decoder_attention_mask"}
    dogs = processor.tokenizer(" two dogs playing", add_special_tokens=False)["input_ids"]
    cat = processor.tokenizer(" a cat", add_special_tokens=False)["input_ids"]
    width = len(dogs) + 1
    assert out["labels"].tolist() == [dogs + [2], cat + [2] + [LABEL_IGNORE_INDEX] * (width - len(cat) - 1)]
    assert out["decoder_input_ids"].tolist() == [[0] + dogs, [0] + cat + [1] * (width - len(cat) - 1)]
    assert out["decoder_attention_mask"].tolist() == [[1] * width, [1] * (len(cat) + 1) + [0] * (width - len(cat) - 1)]
    assert out["labels"].dtype == torch.int64 and out["decoder_input_ids"].dtype == torch.int64
    text_target = processor(text=[IMAGE_PROMPT] * 2, images=[media["image"]] * 2,
                            text_target=["two dogs playing", " a cat"], return_tensors="pt")
    assert torch.equal(text_target["labels"], out["labels"])


def test_grounding_target_is_four_bins(processor, media):
    box = processor.quantize_box([10, 5, 50, 40], (60, 90))
    out = processor(task="visual_grounding", text="a dog", images=media["image"], targets=box)
    assert out["labels"][0].tolist() == [BIN_TOKEN_OFFSET + b for b in processing.extract_bins(box)] + [2]


def test_prev_output_layout(processor, media):
    """Reference 6.2: decoder input = <s> + question tokens + answer tokens; labels = -100 over the question
    positions, then answer + </s>."""
    out = processor(
        task="vqa",
        question=["What color is the car", "how many dogs"],
        images=[media["image"], media["image"]],
        targets=["red", "2"],
        label_weights=[1.0, 0.3],
        return_tensors="pt",
    )
    question = [99, 3195, 16, 5, 512, 116]
    red = processor.tokenizer(" red", add_special_tokens=False)["input_ids"]
    assert out["input_ids"][0].tolist() == [0] + question + [2]
    assert out["decoder_input_ids"][0].tolist() == [0] + question + red
    assert out["labels"][0].tolist() == [LABEL_IGNORE_INDEX] * len(question) + red + [2]
    assert out["decoder_input_ids"].shape == out["labels"].shape == out["decoder_attention_mask"].shape
    second = out["input_ids"][1][out["attention_mask"][1].bool()].tolist()[1:-1]
    two = processor.tokenizer(" 2", add_special_tokens=False)["input_ids"]
    n = len(second) + len(two) + 1
    assert out["decoder_input_ids"][1, :n].tolist() == [0] + second + two
    assert out["labels"][1, :n].tolist() == [LABEL_IGNORE_INDEX] * len(second) + two + [2]
    assert out["labels"][1, n:].eq(LABEL_IGNORE_INDEX).all() and out["decoder_input_ids"][1, n:].eq(1).all()
    assert out["label_weights"].tolist() == pytest.approx([1.0, 0.3]) and out["label_weights"].dtype == torch.float32
    # explicit layout without a task, and the SNLI-VE default
    plain = processor(text=" what color is the car?", images=media["image"], targets="red", prompt_type="prev_output")
    assert plain["labels"][0].tolist() == out["labels"][0].tolist()
    snli = processor(task="snli_ve", text="two dogs playing", images=media["image"], targets="yes")
    assert snli["labels"][0].tolist()[-2:] == [4420, 2]
    assert snli["labels"][0].tolist()[:-2] == [LABEL_IGNORE_INDEX] * (snli["input_ids"].shape[1] - 2)


def test_decoder_prompt_for_inference(processor, media):
    out = processor(task="vqa", question=["what color is the car", "is it red"], images=[media["image"]] * 2,
                    return_decoder_prompt=True)
    assert out["decoder_input_ids"][0].tolist() == [0, 99, 3195, 16, 5, 512, 116]
    assert out["decoder_input_ids"][1, 0] == 1 and out["decoder_input_ids"][1, -1] != 1  # left padded
    assert out["decoder_attention_mask"][1].tolist()[0] == 0
    assert "decoder_input_ids" not in processor(task="vqa", question="is it red", images=media["image"])
    with pytest.raises(ValueError, match="prev_output"):
        processor(text=IMAGE_PROMPT, images=media["image"], return_decoder_prompt=True)


# ---------------------------------------------------------------------------------------------------------------------
# post-processing
# ---------------------------------------------------------------------------------------------------------------------
def test_post_process_grounding_maps_back_to_the_original_image(processor):
    image = make_image(300, 500)
    box = [50.0, 30.0, 400.0, 250.0]
    out = processor(task="visual_grounding", text="a thing", images=image,
                    targets=processor.quantize_box(box, (300, 500)), return_image_sizes=True, return_tensors="pt")
    assert out["image_sizes"].tolist() == [[300, 500]]
    generated = torch.cat([torch.zeros(1, 1, dtype=torch.long), out["labels"]], dim=1)  # <s> bins </s>
    result = processor.post_process_grounding(generated, out["image_sizes"])[0]
    assert len(result["bins"]) == 4
    for original, restored, side in zip(box, result["box"], (500, 300, 500, 300)):
        assert abs(original - restored) <= side / 999 / 2 + 1e-9
    from_text = processor.post_process_grounding(["<bin_0><bin_0><bin_999><bin_999>"], [image])[0]
    assert from_text["box"] == pytest.approx([0, 0, 500, 300])
    assert processor.post_process_grounding(["no box"], [(10, 10)])[0]["box"] is None
    scored = processor.post_process_grounding(generated, [(300, 500)], scores=torch.tensor([-0.25]))[0]
    assert scored["score"] == pytest.approx(-0.25) and scored["box"] == result["box"]


def test_post_process_vqa_and_caption(processor):
    ids = processor.tokenizer([" Red.", " Two dogs, playing!"])["input_ids"]
    assert processor.post_process_vqa([ids[0]]) == ["red"]
    assert processor.post_process_caption([ids[1]]) == ["Two dogs playing"]
    prefixed = [0, 99, 3195, 16, 5, 512, 116] + processor.tokenizer(" red", add_special_tokens=False)["input_ids"] + [2]
    assert processor.post_process_vqa(torch.tensor([prefixed]), prompt_lengths=7) == ["red"]
    assert processor.batch_decode([ids[0]], skip_special_tokens=True) == [" Red."]


# ---------------------------------------------------------------------------------------------------------------------
# truncation and bad input
# ---------------------------------------------------------------------------------------------------------------------
def test_long_prompt_is_truncated_keeping_eos(processor):
    long_prompt = " word" * 2000
    out = processor(text=long_prompt)
    assert out["input_ids"].shape == (1, 1024)
    assert out["input_ids"][0, 0] == 0 and out["input_ids"][0, -1] == 2
    short = processor(text=long_prompt, max_source_length=10)
    assert short["input_ids"].shape == (1, 10) and short["input_ids"][0, -1] == 2
    # with a task, the original's 80-word limit applies first
    vqa = processor(task="vqa", question=" ".join(["why"] * 200), images=make_image())
    assert vqa["input_ids"].shape[1] == 80 + 1 + 2  # 80 words + "?" + <s> </s>


def test_lists_of_different_lengths(processor, media):
    with pytest.raises(ValueError, match=r"text has 3.*images has 2"):
        processor(text=[IMAGE_PROMPT] * 3, images=[media["image"], None])
    with pytest.raises(ValueError, match="targets has 1"):
        processor(text=[IMAGE_PROMPT] * 2, targets=["a"])


def test_single_media_item_with_a_larger_batch(processor, media):
    with pytest.raises(ValueError, match="one entry per sample"):
        processor(text=[IMAGE_PROMPT, IMAGE_PROMPT], images=media["image"])


def test_sample_with_two_modalities(processor, media):
    with pytest.raises(ValueError, match="sample 0 has both image and video"):
        processor(text=IMAGE_PROMPT, images=media["image"], videos=media["video"])


def test_empty_text_and_targets(processor):
    with pytest.raises(ValueError, match="sample 0 has no prompt and no media"):
        processor(text="")
    with pytest.raises(ValueError, match="sample 1 has no prompt and no media"):
        processor(text=[" ok", "   "])
    with pytest.raises(ValueError, match="target"):
        processor(text=" ok", targets="")
    with pytest.raises(ValueError, match="empty batch"):
        processor(text=[])


def test_media_without_prompt_gets_its_caption_prompt(processor, tmp_path):
    """No text (or blank text) for a sample with media: the caption prompt of its modality, as BLIP-style
    processors caption unconditionally; a given prompt stays verbatim beside it."""
    image = make_image()
    caption = processor(task="caption", images=image)["input_ids"]
    for call in ({"images": image}, {"images": image, "text": ""}, {"images": image, "text": "  "}):
        np.testing.assert_array_equal(processor(**call)["input_ids"], caption)
    mixed = processor(images=[image, None], text=["", " hello"])
    assert processor.batch_decode(mixed["input_ids"], skip_special_tokens=True) == [
        " what does the image describe?", " hello"
    ]
    audio = make_tone(1.0, 16000)
    np.testing.assert_array_equal(
        processor(audio=audio, sampling_rate=16000)["input_ids"],
        processor(task="caption", audio=audio, sampling_rate=16000)["input_ids"],
    )


def test_wrong_types(processor):
    with pytest.raises(TypeError):
        processor(text=[" ok", None])
    with pytest.raises(TypeError):
        processor(text=12)
    with pytest.raises(TypeError):
        processor(text=" ok", images=3.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        processor(text=" ok", max_length=10)
    with pytest.raises(TypeError, match="unexpected keyword"):
        processor(text=" ok", colour="red")
    assert processor(text=" ok", padding=True, truncation=True)["input_ids"].shape == (1, 3)
    with pytest.raises(ValueError, match="padding"):
        processor(text=" ok", padding="max_length")
    with pytest.raises(TypeError, match="without `task=`"):
        processor(text=" ok", question="why")
    with pytest.raises(TypeError, match="not both"):
        processor(task="vqa", text="why", question="why", images=make_image())
    with pytest.raises(TypeError):
        UnivalProcessor(image_processor=processing.UnivalTokenizer())


def test_bad_task_usage(processor, media):
    with pytest.raises(ValueError, match="unknown task"):
        processor(task="segmentation", images=media["image"])
    with pytest.raises(ValueError, match="expects an image per sample; sample 0 has a video"):
        processor(task="vqa", question="why", videos=media["video"])
    with pytest.raises(ValueError, match="needs `question`"):
        processor(task="vqa", images=media["image"])
    with pytest.raises(TypeError, match="without text"):
        processor(task="caption", text="a dog", images=media["image"])
    with pytest.raises(ValueError, match="label_weights"):
        processor(text=" ok", label_weights=[1.0])
    with pytest.raises(ValueError, match="prompt_type"):
        processor(text=" ok", targets="a", prompt_type="prefix")


def test_bad_media_through_the_processor(processor, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    with pytest.raises(ValueError):
        processor(text=IMAGE_PROMPT, images=str(corrupt))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        processor(text=VIDEO_PROMPT, audio=str(empty))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(ValueError):
        processor(text=VIDEO_PROMPT, audio=str(text_file))
    with pytest.raises(ValueError):
        processor(text=VIDEO_PROMPT, videos=str(text_file))
    with pytest.raises(ValueError, match="URL"):
        processor(text=IMAGE_PROMPT, images="http://example.com/x.png")


def test_silent_audio_and_one_frame_video_through_the_processor(processor, tmp_path):
    silent = write_audio(tmp_path / "silent.flac", np.zeros(8000), 16000)
    one = write_video(tmp_path / "one.webm", make_frames(1))
    out = processor(text=[VIDEO_PROMPT, VIDEO_PROMPT], audio=[silent, None], videos=[None, one])
    assert np.all(out["audio_values"] == 0)
    video = out["pixel_values_videos"][0]
    assert video.shape == (3, 4, 32, 32)
    np.testing.assert_array_equal(video[:, 0], video[:, 3])
