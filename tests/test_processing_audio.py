"""Tests of UnivalFeatureExtractor: formats, downmix, resampling, int16 round trip, crop / repeat-pad, bad input."""

import numpy as np
import pytest
import soundfile
import soxr
import torch

from media_fixtures import make_frames, make_tone, write_audio, write_video
from processing.feature_extraction_unival import UnivalFeatureExtractor, crop_or_pad, int16_round_trip


MAX = 480000


@pytest.fixture(scope="module")
def extractor():
    return UnivalFeatureExtractor()


def original_pipeline(waveform_48k: np.ndarray) -> np.ndarray:
    """The original's int16 round trip and repeat-pad, written out independently."""
    quantised = (np.clip(waveform_48k, -1, 1) * 32767.0).astype(np.int16)
    audio = (quantised / 32767.0).astype(np.float32)
    if len(audio) < MAX:
        audio = np.concatenate([audio] * (MAX // len(audio)))
        audio = np.concatenate([audio, np.zeros(MAX - len(audio), dtype=np.float32)])
    return audio


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_audio_files(suffix, extractor, tmp_path):
    tone = make_tone(1.5, 48000)
    path = write_audio(tmp_path / f"tone{suffix}", tone, 48000)
    out = extractor(path, return_tensors="pt")
    values = out["audio_values"]
    assert values.shape == (1, MAX) and values.dtype == torch.float32
    assert torch.isfinite(values).all()
    assert set(out.keys()) == {"audio_values"}
    if suffix != ".ogg":  # lossless formats: exactly the original pipeline
        stored, _ = soundfile.read(path, dtype="float64")
        np.testing.assert_array_equal(values[0].numpy(), original_pipeline(stored))
    else:
        assert float(values[0, :72000].abs().max()) == pytest.approx(0.5, abs=0.05)


def test_mp3_if_supported(extractor, tmp_path):
    if "MP3" not in soundfile.available_formats():
        pytest.skip("libsndfile without MP3 support")
    path = write_audio(tmp_path / "tone.mp3", make_tone(1.0, 48000), 48000)
    assert extractor(path)["audio_values"].shape == (1, MAX)


def test_stereo_is_downmixed(extractor, tmp_path):
    left = make_tone(1.0, 48000, amplitude=0.4)
    stereo = np.stack([left, 0.5 * left], axis=1)
    path = write_audio(tmp_path / "stereo.wav", stereo, 48000)
    stored, _ = soundfile.read(path, dtype="float64")
    values = extractor(path)["audio_values"][0]
    np.testing.assert_array_equal(values, original_pipeline(stored.mean(axis=1)))
    # a (channels, samples) array is downmixed the same way
    from_array = extractor(stored.T, sampling_rate=48000)["audio_values"][0]
    np.testing.assert_array_equal(from_array, values)


def test_16k_is_resampled_to_48k(extractor, tmp_path):
    tone = make_tone(1.0, 16000, frequency=300.0)
    path = write_audio(tmp_path / "tone16k.flac", tone, 16000)
    stored, _ = soundfile.read(path, dtype="float64")
    resampled = soxr.resample(stored, 16000, 48000, quality="HQ")
    assert resampled.shape[0] == 48000
    values = extractor(path)["audio_values"][0]
    np.testing.assert_array_equal(values, original_pipeline(resampled))
    # one second at 48 kHz tiled 10 times fills the 10 s exactly
    np.testing.assert_array_equal(values[:48000], values[48000:96000])
    assert values[-1] == values[47999]
    # arrays with their sampling rate give the same result
    np.testing.assert_array_equal(extractor(stored, sampling_rate=16000)["audio_values"][0], values)


def test_repeat_pad_then_zero_pad(extractor):
    waveform = make_tone(3.5, 48000, amplitude=0.3)
    values = extractor(waveform, sampling_rate=48000)["audio_values"][0]
    n = len(waveform)  # 168000: tiled twice = 336000, then 144000 zeros
    rounded = int16_round_trip(waveform)
    np.testing.assert_array_equal(values[:n], rounded)
    np.testing.assert_array_equal(values[n : 2 * n], rounded)
    assert np.all(values[2 * n :] == 0)
    zero_padded = extractor(waveform, sampling_rate=48000, padding_mode="pad")["audio_values"][0]
    np.testing.assert_array_equal(zero_padded[:n], rounded)
    assert np.all(zero_padded[n:] == 0)


def test_crop_modes(extractor):
    waveform = np.linspace(-0.9, 0.9, 48000 * 12)
    rounded = int16_round_trip(waveform)
    overflow = len(waveform) - MAX
    centre = extractor(waveform, sampling_rate=48000)["audio_values"][0]
    np.testing.assert_array_equal(centre, rounded[overflow // 2 : overflow // 2 + MAX])
    start = extractor(waveform, sampling_rate=48000, crop_mode="start")["audio_values"][0]
    np.testing.assert_array_equal(start, rounded[:MAX])
    first = extractor(waveform, sampling_rate=48000, crop_mode="random", seed=1)["audio_values"][0]
    again = extractor(waveform, sampling_rate=48000, crop_mode="random", seed=1)["audio_values"][0]
    np.testing.assert_array_equal(first, again)
    offset = int(np.random.default_rng(1).integers(0, overflow + 1))
    np.testing.assert_array_equal(first, rounded[offset : offset + MAX])
    other = extractor(waveform, sampling_rate=48000, crop_mode="random", seed=2)["audio_values"][0]
    assert not np.array_equal(first, other)


def test_crop_or_pad_helper():
    assert crop_or_pad(np.arange(10.0), 4, crop_mode="center").tolist() == [3, 4, 5, 6]
    assert crop_or_pad(np.arange(3.0), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert crop_or_pad(np.arange(3.0), 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    assert crop_or_pad(np.arange(3.0), 8, padding_mode="pad").tolist() == [0, 1, 2, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        crop_or_pad(np.arange(10.0), 4, crop_mode="middle")


def test_int16_round_trip_is_the_original():
    x = np.array([-2.0, -1.0, -0.5, -1e-6, 0.0, 0.123456, 0.99999, 1.5])
    expected = ((np.clip(x, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
    np.testing.assert_array_equal(int16_round_trip(x), expected)


def test_input_kinds(extractor, tmp_path):
    tone = make_tone(0.5, 48000)
    path = write_audio(tmp_path / "tone.wav", tone, 48000)
    stored, _ = soundfile.read(path, dtype="float64")
    expected = extractor(path)["audio_values"]
    for variant in (
        (tmp_path / "tone.wav").read_bytes(),
        {"array": stored, "sampling_rate": 48000},
        torch.from_numpy(stored),
        list(stored),
    ):
        np.testing.assert_array_equal(extractor(variant, sampling_rate=48000)["audio_values"], expected)
    pcm = (np.clip(stored, -1, 1) * 32767).astype(np.int16)
    assert extractor(pcm, sampling_rate=48000)["audio_values"].shape == (1, MAX)
    batch = extractor([path, stored], sampling_rate=48000)["audio_values"]
    assert batch.shape == (2, MAX)


def test_silent_audio_gives_zeros(extractor, tmp_path):
    path = write_audio(tmp_path / "silence.wav", np.zeros(24000), 48000)
    values = extractor(path)["audio_values"]
    assert values.shape == (1, MAX) and np.all(values == 0)


def test_zero_byte_file(extractor, tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        extractor(str(path))


def test_text_file_as_audio(extractor, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("hello, this is text and not a RIFF file\n" * 10)
    with pytest.raises(ValueError, match="cannot read .* as audio"):
        extractor(str(path))


def test_video_file_as_audio_has_a_hint(extractor, tmp_path):
    path = write_video(tmp_path / "clip.mp4", make_frames(3))
    with pytest.raises(ValueError, match="videos="):
        extractor(path)


def test_bad_arrays_and_types(extractor, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        extractor(np.zeros(0), sampling_rate=48000)
    with pytest.raises(ValueError, match="NaN"):
        extractor(np.array([0.0, np.nan, 0.1]), sampling_rate=48000)
    with pytest.raises(ValueError):
        extractor(np.zeros((2, 3, 4)), sampling_rate=48000)
    with pytest.raises(TypeError):
        extractor(12345)
    with pytest.raises(ValueError):
        extractor([])
    with pytest.raises(FileNotFoundError):
        extractor(str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="crop_mode"):
        extractor(np.zeros(10), sampling_rate=48000, crop_mode="middle")
    with pytest.raises(ValueError):
        UnivalFeatureExtractor(padding_mode="reflect")


def test_save_and_load(tmp_path):
    custom = UnivalFeatureExtractor(max_length=48000, crop_mode="random")
    custom.save_pretrained(tmp_path)
    reloaded = UnivalFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.max_length == 48000 and reloaded.crop_mode == "random"
    tone = make_tone(0.3, 48000)
    np.testing.assert_array_equal(
        reloaded(tone, sampling_rate=48000)["audio_values"], custom(tone, sampling_rate=48000)["audio_values"]
    )
