"""Audio feature extractor of UnIVAL: the raw 48 kHz waveform, cropped or repeat-padded to 10 s."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .constants import AUDIO_MAX_SAMPLES, AUDIO_SAMPLING_RATE, INT16_MAX
from .media_io import (
    call_generator,
    check_bytes,
    check_file,
    check_finite,
    describe,
    each_input,
    is_array_like,
    is_bytes,
    is_path,
    to_numpy,
    wrong_modality_hint,
)


logger = logging.get_logger(__name__)

CROP_MODES = ("center", "random", "start")
PADDING_MODES = ("repeatpad", "pad")


# Context kept on each side of the part of a long file that is read, so that the resampler's filter sees real
# samples at the edges of the crop (soxr's HQ filter spans a few ms); the crop is then taken inside it.
READ_MARGIN_SECONDS = 0.05


def _read_window(frames: int, sampling_rate: int, max_seconds, crop_mode: str, generator) -> tuple[int, int]:
    """`(start, count)` frames of a file of `frames` frames to read for a crop of `max_seconds`: all of it when it is
    not longer than the crop plus its margins; otherwise the crop's window, placed by `crop_mode` (at the start, the
    centre or a random offset, as `crop_or_pad` places a crop), with `READ_MARGIN_SECONDS` on each side."""
    if max_seconds is None:
        return 0, frames
    margin = math.ceil(READ_MARGIN_SECONDS * sampling_rate)
    count = math.ceil(max_seconds * sampling_rate) + 2 * margin
    if frames <= count:
        return 0, frames
    overflow = frames - count
    if crop_mode == "random":
        rng = generator if generator is not None else np.random.default_rng()
        return int(rng.integers(0, overflow + 1)), count
    return (overflow // 2 if crop_mode == "center" else 0), count


def read_audio(audio, max_seconds: float | None = None, crop_mode: str = "center", generator=None):
    """Read an audio file (path or bytes) with `soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...).

    With `max_seconds`, a file longer than that is not decoded whole: only the part that a crop of `max_seconds`
    placed by `crop_mode` keeps (`"start"`, `"center"`, `"random"` with `generator`), plus `READ_MARGIN_SECONDS` on
    each side, is read (libsndfile seeks), so that the memory and the bytes read are bounded by the crop, not by the
    file (a 2-hour recording gives its 10 s as fast as a 10 s one). Shorter files are read whole.

    Returns `(waveform, sampling_rate)` with the waveform float64 (frames, channels) in [-1, 1]. Raises
    `FileNotFoundError` for a missing file and `ValueError` for an empty file, a file libsndfile cannot decode (not
    audio, or an unsupported format such as AAC / M4A), a file with no samples and non-finite samples.
    """
    import soundfile

    if is_path(audio):
        source = check_file(audio, "audio")
    elif is_bytes(audio):
        source = check_bytes(audio, "audio")
    else:
        raise TypeError(f"read_audio takes a path or bytes, got {describe(audio)}")
    try:
        with soundfile.SoundFile(source) as file:
            start, count = _read_window(file.frames, file.samplerate, max_seconds, crop_mode, generator)
            if start:
                file.seek(start)
            waveform = file.read(count, dtype="float64", always_2d=True)
            sampling_rate = file.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(
            f"cannot read {describe(audio)} as audio: {str(error).rstrip('.')}. "
            "Readable formats are those of libsndfile (WAV, FLAC, OGG, MP3, AIFF, ...)"
            + wrong_modality_hint(audio, "audio")
        ) from None
    if waveform.shape[0] == 0:
        raise ValueError(f"audio {describe(audio)} contains no samples")
    check_finite(waveform, f"audio {describe(audio)}")  # float WAV / FLAC files can hold NaN samples too
    return waveform, int(sampling_rate)


def _array_waveform(array: np.ndarray) -> np.ndarray:
    """float64 waveform from an array: 1-D mono, or 2-D with the channels on the smaller axis; integer PCM scaled."""
    if array.dtype == object:
        raise TypeError(f"an audio array must be numeric, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min == 0:  # unsigned PCM (e.g. 8-bit WAV)
            array = (array.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        else:
            array = array.astype(np.float64) / float(-info.min)
    elif not np.issubdtype(array.dtype, np.floating):  # bool, complex, strings: no waveform
        raise TypeError(f"an audio array must hold real numbers (float or integer PCM), got dtype {array.dtype}")
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim == 2:
        if array.shape[0] < array.shape[1]:  # (channels, frames) -> (frames, channels)
            array = array.T
    else:
        raise ValueError(f"an audio array must be 1-D (samples) or 2-D (samples x channels), got shape {array.shape}")
    if array.shape[0] == 0 or array.size == 0:
        raise ValueError("an audio array is empty")
    check_finite(array, f"an audio array of shape {array.shape}")
    return array


def resample(waveform: np.ndarray, orig_sampling_rate: int, target_sampling_rate: int) -> np.ndarray:
    """Resample a 1-D waveform with `soxr` (the SoX resampler library, high quality setting)."""
    if orig_sampling_rate == target_sampling_rate:
        return waveform
    import soxr

    return soxr.resample(waveform, orig_sampling_rate, target_sampling_rate, quality="HQ")


def int16_round_trip(waveform: np.ndarray) -> np.ndarray:
    """The original's quantisation: clip to [-1, 1], `* 32767`, cast to int16 (truncation), `/ 32767`, float32."""
    quantised = (np.clip(waveform, -1.0, 1.0) * INT16_MAX).astype(np.int16)
    return (quantised / INT16_MAX).astype(np.float32)


def crop_or_pad(
    waveform: np.ndarray,
    max_length: int,
    crop_mode: str = "center",
    padding_mode: str = "repeatpad",
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """Bring a 1-D waveform to exactly `max_length` samples as the original (`rand_trunc` + `repeatpad`).

    Longer waveforms are cropped: at a random offset (`crop_mode="random"`, the original, which did so also at
    evaluation), at the centre (`"center"`, the default here, deterministic for inference) or at the start
    (`"start"`). Shorter ones are tiled `floor(max_length / length)` times then zero-padded at the end
    (`padding_mode="repeatpad"`), or only zero-padded (`"pad"`).
    """
    length = waveform.shape[0]
    if length > max_length:
        overflow = length - max_length
        if crop_mode == "random":
            rng = generator if generator is not None else np.random.default_rng()
            offset = int(rng.integers(0, overflow + 1))
        elif crop_mode == "center":
            offset = overflow // 2
        elif crop_mode == "start":
            offset = 0
        else:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        return waveform[offset : offset + max_length]
    if length < max_length:
        if padding_mode == "repeatpad":
            waveform = np.tile(waveform, max_length // length)
        elif padding_mode != "pad":
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        return np.pad(waveform, (0, max_length - waveform.shape[0]), mode="constant")
    return waveform


class UnivalFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Audio feature extractor of UnIVAL. The model computes its log-mel features itself (PANN front end), so this
    returns the raw waveform as the original audio pipeline prepares it:

    1. read the file with `soundfile` (WAV, FLAC, OGG, MP3, ... whatever libsndfile decodes) or take an array (with
       its `sampling_rate`);
    2. downmix to mono (mean of the channels);
    3. resample to 48 kHz with `soxr` (the SoX resampler; the original assumed 48 kHz files);
    4. int16 round trip (clip to [-1, 1], `* 32767`, int16, `/ 32767`), as the original;
    5. crop or repeat-pad to `max_length` = 480,000 samples (10 s): see `crop_or_pad`. The original cropped at a
       random offset even at evaluation; the default here is a deterministic centre crop (`crop_mode="center"`),
       use `crop_mode="random"` (with `seed=` / `generator=`) for training.

    A file longer than `max_length` (plus 2 x `READ_MARGIN_SECONDS`) is not decoded whole: only the window around
    the crop is read (`read_audio`), so a 2-hour recording costs what a 10 s one does. The crop is then taken inside
    that window (the same position for `"start"` and `"center"`; for `"random"` the window's offset is drawn, then
    the crop's, from the same generator).

    Silent audio is valid and gives zeros (nothing is normalised). Empty arrays, 0-byte files and files that are not
    audio raise `ValueError`.

    Returns `audio_values` (n, max_length) float32.
    """

    model_input_names = ["audio_values"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = AUDIO_SAMPLING_RATE,
        padding_value: float = 0.0,
        max_length: int = AUDIO_MAX_SAMPLES,
        crop_mode: str = "center",
        padding_mode: str = "repeatpad",
        do_int16_round_trip: bool = True,
        return_attention_mask: bool = False,
        **kwargs,
    ):
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.max_length = int(max_length)
        self.crop_mode = crop_mode
        self.padding_mode = padding_mode
        self.do_int16_round_trip = do_int16_round_trip

    def load_waveform(
        self, audio, sampling_rate: int | None = None, max_length: int | None = None, crop_mode: str = "center",
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Mono float waveform at `self.sampling_rate` (before the int16 round trip and cropping) of one input:
        a path, bytes, an array / tensor / list of samples (with `sampling_rate`), or a dict with `array` and
        `sampling_rate` (the 🤗 datasets `Audio` format). With `max_length` (samples at `self.sampling_rate`), a file
        longer than that is read only around the crop `crop_mode` will take (`read_audio`'s `max_seconds`)."""
        if isinstance(audio, dict):
            if "array" not in audio:
                raise ValueError("an audio dict needs an 'array' (and a 'sampling_rate') entry")
            sampling_rate = audio.get("sampling_rate", sampling_rate)
            audio = audio["array"]
        if is_path(audio) or is_bytes(audio):
            max_seconds = None if max_length is None else max_length / self.sampling_rate
            waveform, file_rate = read_audio(audio, max_seconds, crop_mode, generator)
            if sampling_rate is not None and int(sampling_rate) != file_rate:
                logger.warning_once(
                    f"sampling_rate={sampling_rate} ignored for audio files: their own rate ({file_rate} Hz) is used"
                )
            sampling_rate = file_rate
        elif is_array_like(audio) or isinstance(audio, (list, tuple)):
            waveform = _array_waveform(to_numpy(audio) if is_array_like(audio) else np.asarray(audio))
            if sampling_rate is None:
                logger.warning_once(
                    f"no sampling_rate given with an audio array: assuming {self.sampling_rate} Hz. Pass "
                    "`sampling_rate=` to resample it correctly."
                )
                sampling_rate = self.sampling_rate
        else:
            raise TypeError(
                f"unsupported audio input {describe(audio)}: pass a path, bytes, an array of samples or a dict"
            )
        if int(sampling_rate) <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
        mono = waveform.mean(axis=1)
        return resample(mono, int(sampling_rate), self.sampling_rate)

    def __call__(
        self,
        audio,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        max_length: int | None = None,
        crop_mode: str | None = None,
        padding_mode: str | None = None,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Process one audio input or a list of them (see the class docstring).

        Args:
            audio: a path, bytes, a 1-D / 2-D array or tensor, a list of floats, a datasets-style dict, or a list of
                such inputs.
            sampling_rate: rate of array inputs (files carry their own).
            return_tensors: `"pt"`, `"np"` or `None` (numpy).
            max_length / crop_mode / padding_mode: override the settings for this call.
            seed / generator: randomness of `crop_mode="random"`.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected option(s) {sorted(kwargs)}")
        max_length = self.max_length if max_length is None else int(max_length)
        crop_mode = self.crop_mode if crop_mode is None else crop_mode
        padding_mode = self.padding_mode if padding_mode is None else padding_mode
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        generator = call_generator(generator, seed)

        values = []
        for item in each_input(self._as_audio_list(audio), "audio"):
            waveform = self.load_waveform(item, sampling_rate, max_length, crop_mode, generator)
            if self.do_int16_round_trip:
                waveform = int16_round_trip(waveform)
            waveform = crop_or_pad(waveform, max_length, crop_mode, padding_mode, generator)
            values.append(waveform.astype(np.float32, copy=False))
        return BatchFeature({"audio_values": np.stack(values)}, tensor_type=return_tensors)

    @staticmethod
    def _as_audio_list(audio) -> list:
        """One input or a list of inputs. A list of numbers is ONE waveform; a list of anything else is a batch."""
        if isinstance(audio, (list, tuple)):
            if not audio:
                raise ValueError("no audio given (empty list)")
            if all(isinstance(v, (int, float, np.number)) for v in audio):
                return [np.asarray(audio, dtype=np.float64)]
            return list(audio)
        return [audio]


__all__ = ["UnivalFeatureExtractor", "crop_or_pad", "int16_round_trip", "read_audio", "resample"]
