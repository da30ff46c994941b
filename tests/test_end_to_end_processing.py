"""Files on disk -> UnivalProcessor -> tiny UnivalForConditionalGeneration -> generate() -> text and boxes."""

import pytest
import torch

from media_fixtures import make_frames, make_image, make_tone, write_audio, write_video
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from tiny import tiny_model


@pytest.fixture(scope="module")
def processor():
    # Sizes that fit the tiny model's 16x16 patch-position grid (the released model uses 480 px, 16 frames at
    # 384 px and 10 s of audio).
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(size=128),
        video_processor=UnivalVideoProcessor(num_frames=8, crop_size=64),
        feature_extractor=UnivalFeatureExtractor(max_length=48000),
    )


@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    image = folder / "shapes.png"
    make_image(90, 120, seed=3).save(image)
    video = write_video(folder / "clip.mp4", make_frames(12, height=72, width=96))
    audio = write_audio(folder / "beep.wav", make_tone(0.7, 16000, frequency=880.0), 16000)
    return {"image": str(image), "video": str(video), "audio": str(audio)}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("kind", ["image", "video", "audio", "text"])
def test_each_modality_generates(processor, model, media_files, kind):
    kwargs = {"image": {"images": media_files["image"]}, "video": {"videos": media_files["video"]},
              "audio": {"audio": media_files["audio"]}, "text": {}}[kind]
    task = {"image": "caption", "video": "video_caption", "audio": "audio_caption"}.get(kind)
    if task:
        inputs = processor(task=task, return_tensors="pt", **kwargs)
    else:
        inputs = processor(text=" what is the capital of france?", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, num_beams=2)
    assert out.shape[0] == 1 and out[0, 0].item() == 0
    texts = processor.batch_decode(out, skip_special_tokens=True)
    assert isinstance(texts[0], str)


def test_mixed_batch_of_all_four(processor, model, media_files):
    inputs = processor(
        text=[" what does the image describe?", " what does the video describe?", " what does the audio describe?", " hi"],
        images=[media_files["image"], None, None, None],
        videos=[None, media_files["video"], None, None],
        audio=[None, None, media_files["audio"], None],
        return_tensors="pt",
    )
    assert inputs["patch_types"].tolist() == [0, 1, 2, -1]
    with torch.no_grad():
        batched = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        alone = [
            model.generate(**processor(text=" what does the image describe?", images=media_files["image"], return_tensors="pt"), max_new_tokens=6),
            model.generate(**processor(text=" what does the video describe?", videos=media_files["video"], return_tensors="pt"), max_new_tokens=6),
            model.generate(**processor(text=" what does the audio describe?", audio=media_files["audio"], return_tensors="pt"), max_new_tokens=6),
            model.generate(**processor(text=" hi", return_tensors="pt"), max_new_tokens=6),
        ]
    for row, single in zip(batched, alone):
        assert torch.equal(row[: single.shape[1]], single[0])


def test_training_targets_feed_the_loss(processor, model, media_files):
    inputs = processor(
        task="vqa", text=["what colour is the shape", "is it round"], images=[media_files["image"]] * 2,
        targets=["red", "yes"], label_weights=[1.0, 0.6], return_tensors="pt",
    )
    assert inputs["labels"].shape == inputs["decoder_input_ids"].shape
    loss = model(**inputs).loss
    assert torch.isfinite(loss)


def test_grounding_round_trip_through_generate(processor, model, media_files):
    inputs = processor(task="visual_grounding", text="the red circle", images=media_files["image"],
                       return_tensors="pt", return_image_sizes=True)
    image_sizes = inputs.pop("image_sizes")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4,
                             bad_words_ids=[[i] for i in range(58457)])  # force location tokens
    result = processor.post_process_grounding(out, image_sizes)[0]
    x0, y0, x1, y1 = result["box"]
    assert len(result["bins"]) == 4
    assert all(0 <= v <= 120 for v in (x0, x1)) and all(0 <= v <= 90 for v in (y0, y1))
