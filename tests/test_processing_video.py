"""Tests of UnivalVideoProcessor: frame sampling, PyAV decoding of mp4 / webm / avi / mkv, frames, bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from media_fixtures import frame_value, make_frames, make_tone, write_audio, write_video
from processing.video_processing_unival import (
    UnivalVideoProcessor,
    center_crop_or_pad,
    read_video,
    sample_frame_indices,
)


def middle_indices(total, num_frames):
    edges = np.linspace(0, total, num_frames + 1).astype(int)
    return [(int(s) + int(e) - 1) // 2 for s, e in zip(edges[:-1], edges[1:])]


def frame_indices_of(pixel_values_videos):
    """Recover the frame index of each output frame from its grey level (see media_fixtures.frame_value)."""
    video = pixel_values_videos[0]  # (3, T, H, W)
    centre = video[:, :, video.shape[2] // 2, video.shape[3] // 2].mean(axis=0)  # (T,)
    levels = (np.asarray(centre) * 0.5 + 0.5) * 255
    table = np.array([frame_value(i) for i in range(18)])
    return [int(np.argmin(np.abs(table - level))) for level in levels]


@pytest.fixture(scope="module")
def processor():
    return UnivalVideoProcessor()


# ---------------------------------------------------------------------------------------------------------------------
# frame sampling
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("total, num_frames", [(100, 16), (20, 16), (16, 16), (17, 8), (1000, 8), (33, 16)])
def test_middle_sampling(total, num_frames):
    indices = sample_frame_indices(total, num_frames)
    assert indices.tolist() == middle_indices(total, num_frames)
    assert indices.dtype == np.int64


def test_known_middle_indices():
    assert sample_frame_indices(100, 16).tolist() == [2, 8, 14, 21, 27, 33, 39, 46, 52, 58, 64, 71, 77, 83, 89, 96]


def test_short_and_one_frame_videos_repeat_the_last_frame():
    assert sample_frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert sample_frame_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert sample_frame_indices(5, 8, mode="random").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_random_sampling_is_seeded_and_stays_in_its_segment():
    first = sample_frame_indices(100, 16, "random", np.random.default_rng(0))
    again = sample_frame_indices(100, 16, "random", np.random.default_rng(0))
    assert first.tolist() == again.tolist()
    edges = np.linspace(0, 100, 17).astype(int)
    for index, start, end in zip(first, edges[:-1], edges[1:]):
        assert start <= index <= max(start, end - 2)
    draws = {tuple(sample_frame_indices(100, 16, "random", np.random.default_rng(s))) for s in range(5)}
    assert len(draws) > 1


def test_sampling_errors():
    with pytest.raises(ValueError):
        sample_frame_indices(0, 4)
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)
    with pytest.raises(ValueError):
        sample_frame_indices(10, 4, mode="uniform")


# ---------------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
def test_video_files(suffix, processor, tmp_path):
    path = write_video(tmp_path / f"clip{suffix}", make_frames(18))
    frames, total = read_video(path)
    assert total == 18 and frames.shape == (18, 48, 64, 3) and frames.dtype == np.uint8
    out = processor(path, crop_size=32, return_tensors="pt")
    pixels = out["pixel_values_videos"]
    assert pixels.shape == (1, 3, 16, 32, 32) and pixels.dtype == torch.float32
    assert frame_indices_of(pixels.numpy()) == middle_indices(18, 16)
    out8 = processor(path, crop_size=32, num_frames=8)
    assert out8["pixel_values_videos"].shape == (1, 3, 8, 32, 32)
    assert frame_indices_of(out8["pixel_values_videos"]) == middle_indices(18, 8)


def test_bytes_input(processor, tmp_path):
    path = write_video(tmp_path / "clip.webm", make_frames(6))
    from_bytes = processor((tmp_path / "clip.webm").read_bytes(), crop_size=32)["pixel_values_videos"]
    np.testing.assert_array_equal(from_bytes, processor(path, crop_size=32)["pixel_values_videos"])


def test_default_output_layout(processor, tmp_path):
    path = write_video(tmp_path / "clip.mp4", make_frames(4))
    pixels = processor(path)["pixel_values_videos"]
    assert pixels.shape == (1, 3, 16, 384, 384) and pixels.dtype == np.float32
    # 4 frames -> frames 0, 1, 2, 3, then frame 3 repeated
    assert frame_indices_of(pixels) == [0, 1, 2, 3] + [3] * 12


def test_one_frame_video(processor, tmp_path):
    path = write_video(tmp_path / "one.mp4", make_frames(1))
    pixels = processor(path, crop_size=32)["pixel_values_videos"]
    assert pixels.shape == (1, 3, 16, 32, 32)
    assert frame_indices_of(pixels) == [0] * 16
    np.testing.assert_array_equal(pixels[0, :, 0], pixels[0, :, -1])


def test_original_crop_without_resize_zero_pads(processor):
    frames = make_frames(3, height=48, width=64)
    pixels = processor(frames, do_resize=False, num_frames=3)["pixel_values_videos"][0]  # (3, 3, 384, 384)
    assert pixels.shape == (3, 3, 384, 384)
    top, left = (384 - 48) // 2, (384 - 64) // 2
    inside = pixels[:, :, top : top + 48, left : left + 64]
    expected = (np.array([frame_value(i) for i in range(3)], dtype=np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(inside[0, :, 0, 0], expected, atol=1e-6)
    assert np.all(inside == inside[:, :, :1, :1])
    border = pixels.copy()
    border[:, :, top : top + 48, left : left + 64] = -1
    assert np.all(border == -1.0)


def test_center_crop_offsets_match_torchvision():
    frames = np.arange(1 * 5 * 7 * 1, dtype=np.uint8).reshape(1, 5, 7, 1)
    cropped = center_crop_or_pad(frames, 3, 4)
    # torchvision: top = round((5 - 3) / 2) = 1, left = round((7 - 4) / 2) = round(1.5) = 2
    np.testing.assert_array_equal(cropped, frames[:, 1:4, 2:6])
    padded = center_crop_or_pad(frames, 8, 10)
    assert padded.shape == (1, 8, 10, 1)
    np.testing.assert_array_equal(padded[:, 1:6, 1:8], frames)


def test_resize_keeps_aspect_then_crops(processor):
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, :10] = 255  # left edge white: cut away by the centre crop after the resize
    pixels = processor(frames, crop_size=20, num_frames=2)["pixel_values_videos"]
    assert pixels.shape == (1, 3, 2, 20, 20)
    assert np.all(pixels == -1.0)


def test_frame_arrays_and_lists(processor):
    frames = make_frames(10)
    expected = processor(frames, crop_size=32)["pixel_values_videos"]
    variants = [
        frames.transpose(0, 3, 1, 2),
        torch.from_numpy(frames.copy()),
        [Image.fromarray(f) for f in frames],
        list(frames),
    ]
    for variant in variants:
        np.testing.assert_array_equal(processor(variant, crop_size=32)["pixel_values_videos"], expected)
    assert frame_indices_of(expected) == middle_indices(10, 16)[:0] + [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] + [9] * 6


def test_batch_of_videos(processor, tmp_path):
    path = write_video(tmp_path / "a.avi", make_frames(12))
    out = processor([path, make_frames(3)], crop_size=32, num_frames=4, return_tensors="pt")
    assert out["pixel_values_videos"].shape == (2, 3, 4, 32, 32)


def test_random_frame_sampling_with_seed(processor):
    frames = make_frames(18)
    a = processor(frames, crop_size=8, do_sample_frames="random", seed=3, num_frames=4)["pixel_values_videos"]
    b = processor(frames, crop_size=8, do_sample_frames="random", seed=3, num_frames=4)["pixel_values_videos"]
    np.testing.assert_array_equal(a, b)
    assert processor(frames, crop_size=8, do_sample_frames=False)["pixel_values_videos"].shape[2] == 18


def test_save_and_load(processor, tmp_path):
    custom = UnivalVideoProcessor(num_frames=8, crop_size=224, do_resize=False)
    custom.save_pretrained(tmp_path)
    reloaded = UnivalVideoProcessor.from_pretrained(tmp_path)
    assert reloaded.num_frames == 8 and reloaded.crop_size.height == 224 and reloaded.do_resize is False
    frames = make_frames(9)
    np.testing.assert_array_equal(reloaded(frames)["pixel_values_videos"], custom(frames)["pixel_values_videos"])


# ---------------------------------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------------------------------
def test_unreadable_video(processor, tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_text("this is not a video at all " * 20)
    with pytest.raises(ValueError, match="video"):
        processor(str(path))


def test_truncated_video(processor, tmp_path):
    path = write_video(tmp_path / "clip.mp4", make_frames(12))
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:200])
    with pytest.raises(ValueError):
        processor(str(tmp_path / "cut.mp4"))
    assert path


def test_empty_missing_and_audio_files(processor, tmp_path):
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        processor(str(empty))
    with pytest.raises(FileNotFoundError):
        processor(str(tmp_path / "missing.mp4"))
    wav = write_audio(tmp_path / "tone.wav", make_tone(0.2, 8000), 8000)
    with pytest.raises(ValueError, match="no video stream"):
        processor(wav)


def test_wrong_video_types(processor):
    with pytest.raises(TypeError):
        processor(12)
    with pytest.raises(ValueError):
        processor([])
    with pytest.raises(ValueError):
        processor(np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        processor(np.zeros((2, 8, 8, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="do_sample_frames"):
        processor(make_frames(2), do_sample_frames="sometimes")
    with pytest.raises(TypeError, match="unexpected option"):
        processor(make_frames(2), frames_per_second=3)
