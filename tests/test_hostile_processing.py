"""Hostile inputs to the processing classes (issue 22): high-bit-depth images, control and location tokens typed in
user text, reversed generated boxes, non-finite arrays, and a sweep of corrupt / empty / odd inputs over every
public entry point."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_fixtures import make_frames, make_image, make_tone, write_audio, write_video
from processing import UnivalProcessor
from processing.constants import (
    BIN_TOKEN_OFFSET,
    BOS_TOKEN_ID,
    EOS_TOKEN_ID,
    LABEL_IGNORE_INDEX,
    MASK_TOKEN_ID,
    NUM_FAIRSEQ_SPECIALS,
)
from processing.prompts import TokenText
from processing.tasks import build_prompt, build_target


@pytest.fixture(scope="module")
def processor():
    return UnivalProcessor()


# ---------------------------------------------------------------------------------------------------------------------
# 1. high-bit-depth images: file, PIL and array inputs agree, and 16 bits are scaled, not clipped
# ---------------------------------------------------------------------------------------------------------------------
def _gradient8(height: int = 24, width: int = 256) -> np.ndarray:
    return np.tile(np.arange(width, dtype=np.uint8), (height, 1))


def _pixels(processor, image, **kwargs) -> np.ndarray:
    return processor.image_processor(image, size=32, **kwargs)["pixel_values"]


def test_16_bit_png_equals_the_8_bit_image_and_the_uint16_array(processor, tmp_path):
    gray8 = _gradient8()
    gray16 = gray8.astype(np.uint16) * 257  # the same intensities on 16 bits
    path = str(tmp_path / "gradient16.png")
    Image.fromarray(gray16).save(path)
    with Image.open(path) as reread:
        assert reread.mode in ("I;16", "I")  # PIL's own reading of a 16-bit grayscale PNG

    expected = _pixels(processor, Image.fromarray(gray8))
    from_file = _pixels(processor, path)
    assert from_file.mean() < 0.5  # not the all-white picture of a clipping `convert("RGB")`
    np.testing.assert_array_equal(from_file, expected)
    np.testing.assert_array_equal(_pixels(processor, gray16), expected)  # the uint16 array path
    np.testing.assert_array_equal(_pixels(processor, Image.open(path)), expected)  # PIL input
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(_pixels(processor, handle.read()), expected)  # bytes


def test_16_bit_values_that_are_not_multiples_of_257(processor, tmp_path):
    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    gray16[0, :2] = (0, 65535)
    path = str(tmp_path / "noise16.png")
    Image.fromarray(gray16).save(path)
    from_file = _pixels(processor, path, do_resize=False, do_normalize=False)
    np.testing.assert_array_equal(from_file, _pixels(processor, gray16, do_resize=False, do_normalize=False))
    # up to rounding, the intensity v / 65535 (as a float array in [0, 1])
    as_float = _pixels(processor, gray16.astype(np.float64) / 65535, do_resize=False, do_normalize=False)
    np.testing.assert_allclose(from_file, as_float, atol=1 / 255 + 1e-6)
    assert from_file[0, :, 0, 0].tolist() == [0.0] * 3 and from_file[0, :, 0, 1].tolist() == [1.0] * 3


def test_pil_modes_i_and_f(processor):
    gray8 = _gradient8()
    expected = _pixels(processor, Image.fromarray(gray8))
    mode_i = Image.fromarray(gray8.astype(np.uint16) * 257).convert("I")
    assert mode_i.mode == "I"
    np.testing.assert_array_equal(_pixels(processor, mode_i), expected)
    # mode F holds intensities in [0, 1], like float arrays
    mode_f = Image.fromarray(gray8.astype(np.float32) / 255, mode="F")
    np.testing.assert_array_equal(_pixels(processor, mode_f), expected)
    np.testing.assert_array_equal(_pixels(processor, gray8.astype(np.float32) / 255), expected)
    with pytest.raises(ValueError, match="16-bit"):
        _pixels(processor, Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)))  # not 16-bit data


def test_16_bit_video_frames_are_scaled_as_images(processor):
    frames8 = make_frames(2, 16, 16)
    expected = processor.video_processor(frames8)["pixel_values_videos"]
    frames16 = frames8.astype(np.uint16) * 257
    np.testing.assert_array_equal(processor.video_processor(frames16)["pixel_values_videos"], expected)
    as_pil = [Image.fromarray(frame[..., 0].astype(np.uint16) * 257) for frame in frames8]
    np.testing.assert_array_equal(processor.video_processor(as_pil)["pixel_values_videos"], expected)


def test_integer_arrays_beyond_8_bits_are_refused_unless_uint16(processor):
    with pytest.raises(ValueError, match=r"\[0, 255\].*uint16"):
        _pixels(processor, np.full((5, 5, 3), 1000, dtype=np.int32))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        processor.video_processor(np.full((2, 5, 5, 3), -1, dtype=np.int64))


# ---------------------------------------------------------------------------------------------------------------------
# 2. user text is plain text
# ---------------------------------------------------------------------------------------------------------------------
LITERALS = " a <s> b </s> <pad> c <unk> <bin_5> <code_3> <mask> d"


def _is_text_id(token_id: int) -> bool:
    """A BPE id: not a fairseq special, `<mask>`, a code or a location token."""
    return NUM_FAIRSEQ_SPECIALS <= int(token_id) < MASK_TOKEN_ID


def _body(ids) -> list[int]:
    ids = [int(t) for t in ids]
    assert ids[0] == BOS_TOKEN_ID and ids[-1] == EOS_TOKEN_ID
    return ids[1:-1]


def test_literal_control_and_location_tokens_in_a_prompt_are_text(processor):
    ids = processor(text=LITERALS)["input_ids"][0]
    body = _body(ids)
    assert all(_is_text_id(t) for t in body), body
    assert processor.tokenizer.decode(body) == LITERALS  # the characters themselves
    assert body == processor.tokenizer.encode_text(LITERALS)
    # the tokenizer's own call stays the raw-token path
    raw = processor.tokenizer(LITERALS, add_special_tokens=False)["input_ids"]
    assert BIN_TOKEN_OFFSET + 5 in raw and EOS_TOKEN_ID in raw


def test_literals_in_task_fields_and_targets_are_text(processor):
    image = make_image()
    out = processor(task="vqa", question=f"what is{LITERALS}", images=image, targets=f"yes{LITERALS}",
                    return_tensors="np")
    assert all(_is_text_id(t) for t in _body(out["input_ids"][0]))
    labels = [int(t) for t in out["labels"][0] if t != LABEL_IGNORE_INDEX]
    assert labels[-1] == EOS_TOKEN_ID and all(_is_text_id(t) for t in labels[:-1])
    decoder = [int(t) for t, m in zip(out["decoder_input_ids"][0], out["decoder_attention_mask"][0]) if m]
    assert decoder[0] == BOS_TOKEN_ID and all(_is_text_id(t) for t in decoder[1:])
    for task, field in (("visual_grounding", "text"), ("image_text_matching", "caption"),
                        ("visual_entailment", "hypothesis")):
        out = processor(task=task, images=image, **{field: LITERALS})
        assert all(_is_text_id(t) for t in _body(out["input_ids"][0])), task
    # a caption target (training labels) follows the same rule, also built with build_target
    out = processor(task="caption", images=image, targets=build_target("caption", caption=LITERALS, clean=False))
    labels = [int(t) for t in out["labels"][0] if t != LABEL_IGNORE_INDEX]
    assert all(_is_text_id(t) for t in labels[:-1])
    # a location string typed as a plain target, without a task, is text too
    out = processor(text=" hi", targets="<bin_1> <bin_2> <bin_3> <bin_4>")
    assert all(_is_text_id(t) for t in out["labels"][0][:-1])


def test_location_tokens_come_from_boxes(processor):
    image = make_image(60, 90)
    out = processor(task="grounded_caption", box=[0, 0, 45, 30], images=image)
    assert out["input_ids"][0, -5:].tolist() == [BIN_TOKEN_OFFSET + b for b in (0, 0, 500, 500)] + [EOS_TOKEN_ID]
    # `region` is the explicit token field: location tokens only
    out = processor(task="grounded_caption", region="<bin_1> <bin_2> <bin_3> <bin_4>", images=image)
    assert out["input_ids"][0, -5:].tolist() == [BIN_TOKEN_OFFSET + b for b in (1, 2, 3, 4)] + [EOS_TOKEN_ID]
    with pytest.raises(ValueError, match="region"):
        processor(task="grounded_caption", region="<bin_1> </s> a dog", images=image)
    # grounding targets: from a box (quantize_box), or a string that is location tokens only with the task
    box = processor.quantize_box([9, 6, 45, 30], (60, 90))
    for target in (box, str(box)):
        labels = processor(task="visual_grounding", text="a dog", images=image, targets=target)["labels"][0]
        assert [t - BIN_TOKEN_OFFSET for t in labels[:4].tolist()] == [100, 100, 500, 500]
    with pytest.raises(ValueError, match="location tokens"):
        processor(task="visual_grounding", text="a dog", images=image, targets="<bin_1> a dog")
    # the same box string as a target without a task: a TokenText keeps its tokens
    labels = processor(text=" which region?", targets=box)["labels"][0].tolist()
    assert labels[:4] == [BIN_TOKEN_OFFSET + b for b in (100, 100, 500, 500)]
    # code targets of text-to-image
    target = build_target("text_to_image", caption="<code_0><code_8191>")
    labels = processor(task="text_to_image", caption="a red car", targets=target)["labels"][0].tolist()
    assert labels == [processor.tokenizer.code_token_id(0), processor.tokenizer.code_token_id(8191), EOS_TOKEN_ID]
    with pytest.raises(ValueError, match="code tokens"):
        build_target("text_to_image", caption="a red car")


def test_token_text_is_a_string_that_keeps_its_tokens_only_as_is():
    prompt = build_prompt("grounded_caption", box=[0, 0, 100, 50], image_size=(100, 200))
    assert isinstance(prompt, TokenText)
    assert prompt == "  what does the region describe? region:<bin_0><bin_0><bin_500><bin_500>"
    restored = pickle.loads(pickle.dumps(prompt))
    assert isinstance(restored, TokenText) and restored.segments == prompt.segments
    assert type(prompt + " more") is str and type(prompt.lower()) is str  # edits give plain text
    with pytest.raises(ValueError):
        TokenText([(" text", True)])


# ---------------------------------------------------------------------------------------------------------------------
# 3. generated boxes in reverse order
# ---------------------------------------------------------------------------------------------------------------------
def _bins(*values) -> list[int]:
    return [BOS_TOKEN_ID] + [BIN_TOKEN_OFFSET + v for v in values] + [EOS_TOKEN_ID]


def test_post_process_grounding_sorts_reversed_corners(processor):
    result = processor.post_process_grounding([_bins(999, 666, 0, 333)], [(300, 999)])[0]
    assert result["box"] == pytest.approx([0.0, 100.0, 999.0, 200.0])
    assert result["bins"] == [999, 666, 0, 333]  # the generated bins are reported as generated
    x0, y0, x1, y1 = processor.post_process_grounding(["<bin_10><bin_900><bin_5><bin_20>"], [(100, 100)])[0]["box"]
    assert x0 <= x1 and y0 <= y1


def test_post_process_grounding_clips_to_the_image(processor):
    # with the pretraining quirk (coordinates divided by 512 on 384 px images), the last bins lie past the border
    result = processor.post_process_grounding(
        [_bins(0, 0, 999, 999)], [(300, 600)], processed_size=384, max_image_size=512
    )[0]
    assert result["box"] == pytest.approx([0.0, 0.0, 600.0, 300.0])


# ---------------------------------------------------------------------------------------------------------------------
# 4. non-finite arrays, every modality
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "argument, shape", [("images", (8, 8, 3)), ("videos", (2, 8, 8, 3)), ("audio", (480,))]
)
def test_non_finite_arrays_are_refused_naming_the_argument(processor, argument, shape, bad):
    array = np.full(shape, 0.25, dtype=np.float32)
    array.flat[3] = bad
    with pytest.raises(ValueError, match=rf"`{argument}`.*NaN or infinite"):
        processor(**{argument: array}, sampling_rate=48000)
    import torch

    with pytest.raises(ValueError, match="NaN or infinite"):
        processor(**{argument: torch.from_numpy(array)}, sampling_rate=48000)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_arrays_are_refused_by_the_sub_processors(processor, bad):
    image = np.full((8, 8), bad, dtype=np.float64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor.image_processor(image)
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor.image_processor(Image.fromarray(image.astype(np.float32), mode="F"))  # a float TIFF, say
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor.video_processor([np.full((8, 8, 3), bad, dtype=np.float32)])
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor.feature_extractor(np.full(100, bad), sampling_rate=48000)


def test_non_finite_samples_in_an_audio_file(processor, tmp_path):
    import soundfile

    waveform = make_tone(0.1, 16000)
    waveform[5] = np.nan
    path = str(tmp_path / "nan.wav")
    soundfile.write(path, waveform, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav.*NaN or infinite"):
        processor.feature_extractor(path)


# ---------------------------------------------------------------------------------------------------------------------
# sweep: hostile inputs over the public entry points
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    truncated = folder / "truncated.png"
    make_image(40, 40).save(folder / "whole.png")
    truncated.write_bytes((folder / "whole.png").read_bytes()[:200])
    empty_audio = folder / "empty.wav"
    empty_audio.write_bytes(b"")
    header_only = write_audio(folder / "no_samples.wav", np.zeros((0,)), 16000)
    silent = write_audio(folder / "silent.wav", np.zeros(1600), 16000)
    one_frame = write_video(folder / "one_frame.mp4", make_frames(1, 16, 16))
    return {
        "corrupt image file": (str(corrupt), "corrupt.png"),
        "truncated image file": (str(truncated), "truncated.png"),
        "empty audio file": (str(empty_audio), "empty.wav"),
        "audio file without samples": (header_only, "no_samples.wav"),
        "silent audio file": (silent, "silent.wav"),
        "one-frame video": (one_frame, "one_frame.mp4"),
        "complex array": (np.ones((8, 8, 3), dtype=np.complex64), "complex64"),
        "string array": (np.full((8, 8, 3), "x"), "<U1"),
        "object array": (np.full((8, 8, 3), None, dtype=object), "object"),
    }


def _entry_points(processor):
    """(name, call) of each public way an input reaches a modality's reader."""
    return {
        "image": [
            ("processor(images=)", lambda x: processor(images=x)),
            ("image_processor()", lambda x: processor.image_processor(x)),
            ("image_processor.get_image_sizes()", lambda x: processor.image_processor.get_image_sizes(x)),
            ("processor(task=grounded_caption, box=)",
             lambda x: processor(task="grounded_caption", box=[0, 0, 1, 1], images=x)),
        ],
        "video": [
            ("processor(videos=)", lambda x: processor(videos=x)),
            ("video_processor()", lambda x: processor.video_processor(x)),
        ],
        "audio": [
            ("processor(audio=)", lambda x: processor(audio=x, sampling_rate=16000)),
            ("feature_extractor()", lambda x: processor.feature_extractor(x, sampling_rate=16000)),
        ],
    }


# Inputs that are valid for a modality: they must be processed, not refused.
_VALID = {("silent audio file", "audio"), ("one-frame video", "video")}
# `get_image_sizes` reads only a file's header, by design: a file truncated after its header passes it.
_HEADER_ONLY = {("truncated image file", "image_processor.get_image_sizes()")}


@pytest.mark.parametrize("modality", ["image", "video", "audio"])
def test_hostile_input_sweep(processor, hostile, modality):
    failures = []
    for input_name, (value, mention) in hostile.items():
        for entry, call in _entry_points(processor)[modality]:
            try:
                call(value)
            except (ValueError, OSError, TypeError) as error:
                if (input_name, modality) in _VALID:
                    failures.append(f"{entry} refused the valid {input_name}: {error!r}")
                elif type(error).__module__ != "builtins":
                    failures.append(f"{entry} on {input_name}: library exception {type(error).__module__}.{error!r}")
                elif mention not in str(error):
                    failures.append(f"{entry} on {input_name}: message does not name the input: {error}")
            except Exception as error:  # noqa: BLE001 (what the sweep looks for)
                failures.append(f"{entry} on {input_name}: raised {type(error).__module__}.{error!r}")
            else:
                if (input_name, modality) not in _VALID and (input_name, entry) not in _HEADER_ONLY:
                    failures.append(f"{entry} accepted the {input_name}")
    assert not failures, "\n".join(failures)


def test_silent_audio_is_zeros_and_a_one_frame_video_is_repeated(processor, hostile):
    audio = processor(audio=hostile["silent audio file"][0])["audio_values"]
    assert audio.shape == (1, 480000) and not audio.any()
    video = processor(videos=hostile["one-frame video"][0])["pixel_values_videos"]
    assert video.shape[2] == processor.video_processor.num_frames and np.isfinite(video).all()
    assert os.path.exists(hostile["one-frame video"][0])


# ---------------------------------------------------------------------------------------------------------------------
# long audio files: only the crop is read
# ---------------------------------------------------------------------------------------------------------------------
def _long_wav(path, seconds: int, sampling_rate: int, channels: int) -> str:
    """A PCM-16 WAV of `seconds` (hours, if asked) without writing them: a one-second file whose header is rewritten
    for the full length, then extended to it as a sparse file (silence that takes no disk)."""
    import soundfile

    soundfile.write(path, np.zeros((sampling_rate, channels), dtype=np.int16), sampling_rate, subtype="PCM_16")
    data_bytes = seconds * sampling_rate * channels * 2
    with open(path, "r+b") as handle:
        header = handle.read(4096)
        data_chunk = header.index(b"data")
        handle.seek(4)
        handle.write((data_chunk + 8 + data_bytes - 8).to_bytes(4, "little"))  # RIFF size
        handle.seek(data_chunk + 4)
        handle.write(data_bytes.to_bytes(4, "little"))
        handle.truncate(data_chunk + 8 + data_bytes)
    return str(path)


def _bytes_read() -> int:
    """This process's bytes read so far, by read() calls of any kind (Linux: /proc/self/io `rchar`)."""
    with open("/proc/self/io") as stats:
        return next(int(line.split()[1]) for line in stats if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts bytes read with Linux's /proc/self/io")
@pytest.mark.parametrize("sampling_rate, channels", [(16000, 1), (48000, 2)])
@pytest.mark.parametrize("crop_mode", ["center", "random", "start"])
def test_two_hour_wav_reads_only_the_crop(processor, tmp_path, sampling_rate, channels, crop_mode):
    import soundfile

    path = _long_wav(tmp_path / "two_hours.wav", 2 * 3600, sampling_rate, channels)
    assert soundfile.info(path).duration == 2 * 3600
    file_size = os.path.getsize(path)  # 230 MB / 1.4 GB
    before = _bytes_read()
    values = processor.feature_extractor(path, crop_mode=crop_mode, seed=0)["audio_values"]
    read = _bytes_read() - before
    assert values.shape == (1, processor.feature_extractor.max_length)
    crop_bytes = 10 * sampling_rate * channels * 2  # 10 s of the file's frames
    assert read < 2 * crop_bytes + 1_000_000, (read, crop_bytes, file_size)


@pytest.mark.parametrize("crop_mode", ["center", "start"])
@pytest.mark.parametrize("sampling_rate", [16000, 48000])
def test_reading_a_window_gives_the_crop_of_the_whole_file(processor, tmp_path, crop_mode, sampling_rate):
    """A 40 s file (read around its 10 s crop) and the same samples given whole as an array give the same crop: the
    margins keep the resampler's edges out of it."""
    import soundfile

    rng = np.random.default_rng(0)
    waveform = np.clip(rng.normal(0, 0.2, (40 * sampling_rate, 2)), -1, 1)
    path = str(tmp_path / "long.wav")
    soundfile.write(path, waveform, sampling_rate, subtype="PCM_16")
    samples, _ = soundfile.read(path, dtype="float64", always_2d=True)
    from_file = processor.feature_extractor(path, crop_mode=crop_mode)["audio_values"]
    from_array = processor.feature_extractor(samples, sampling_rate=sampling_rate, crop_mode=crop_mode)["audio_values"]
    # The int16 round trip after resampling can move a sample by one step (1 / 32767) where resampling differs in
    # the last bits; nothing more.
    np.testing.assert_allclose(from_file, from_array, rtol=0, atol=1.01 / 32767)
    assert np.mean(from_file == from_array) > 0.99


# ---------------------------------------------------------------------------------------------------------------------
# 6. a media path given as the text of a text-only call is refused, not tokenised
# ---------------------------------------------------------------------------------------------------------------------
def test_a_media_path_as_the_only_text_is_refused(processor, hostile, tmp_path):
    image = str(Path(hostile["corrupt image file"][0]).with_name("whole.png"))
    for kind, argument, path in (("image", "images", image), ("video", "videos", hostile["one-frame video"][0]),
                                 ("audio", "audio", hostile["silent audio file"][0])):
        for text in (path, [" a question", path]):
            with pytest.raises(ValueError, match=rf"is the {kind} .*pass it as `{argument}=`"):
                processor(text=text)
    for url in ("https://example.com/cat.jpg", "http://example.com/a/clip.mp4?x=1", "./missing/photo.PNG"):
        with pytest.raises(ValueError, match="pass it as"):
            processor(text=url)
    # text that only mentions a file stays text: a bare name that is no file, a sentence, a non-media path
    for text in ("photo.png", "what is in photo.png?", "see ./notes.txt", str(tmp_path)):
        assert processor(text=text)["input_ids"][0][0] == BOS_TOKEN_ID
    bare = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(bare)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(ValueError, match="is the image 'photo.png'"):  # an existing file, named bare
            processor(text="photo.png")
    finally:
        os.chdir(cwd)
    # with the media given, a path in the text is the user's text
    assert processor(images=image, text=image)["input_ids"].shape[0] == 1
