"""Processor of UnIVAL: prompts and targets, images, videos and audio, in one call."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.image_processing_base import ImageProcessingMixin
from transformers.processing_utils import MODALITY_TO_AUTOPROCESSOR_MAPPING, ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging
from transformers.video_processing_utils import VideoProcessorMixin

from . import prompts as prompt_lib
from . import tasks as task_lib
from .prompts import format_target  # noqa: F401  (the `from .x import` form makes remote-code saving copy these files)
from .tasks import resolve_task  # noqa: F401
from .boxes import bins_to_box, extract_bins, quantize_box, well_formed_box
from .constants import (
    BOS_TOKEN_ID,
    EOS_TOKEN_ID,
    LABEL_IGNORE_INDEX,
    MAX_SOURCE_LENGTH,
    MAX_TARGET_LENGTH,
    MODALITY_NAMES,
    NUM_BINS,
    PAD_TOKEN_ID,
    Modality,
)
from .feature_extraction_unival import UnivalFeatureExtractor
from .image_processing_unival import UnivalImageProcessor, UnivalImageProcessorKwargs
from .media_io import is_array_like, media_path_in_text, to_numpy
from .tokenization_unival import UnivalTokenizer
from .video_processing_unival import UnivalVideoProcessor, UnivalVideoProcessorKwargs


logger = logging.get_logger(__name__)

PROMPT_TYPES = ("none", "prev_output")
_MEDIA_ARGUMENTS = ((Modality.IMAGE, "images"), (Modality.VIDEO, "videos"), (Modality.AUDIO, "audio"))
_IMAGE_OPTIONS = frozenset(UnivalImageProcessorKwargs.__annotations__)
_VIDEO_OPTIONS = frozenset(UnivalVideoProcessorKwargs.__annotations__) | {"seed", "generator"}
_AUDIO_OPTIONS = frozenset({"crop_mode", "padding_mode", "seed", "generator"})


# --------------------------------------------------------------------------------------------------------------------
# Input normalisation: every input becomes either None (absent), a single item, or a per-sample list
# --------------------------------------------------------------------------------------------------------------------
class _Single:
    """Marks one item given for a batch of size 1 (as opposed to a per-sample list)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _is_frame(value) -> bool:
    return isinstance(value, Image.Image) or (is_array_like(value) and to_numpy(value).ndim == 3)


def _is_sample(value) -> bool:
    return isinstance(value, numbers.Number)


def _split_media(value, batch_ndim: int | None = None, is_part: Callable[[object], bool] | None = None):
    """One modality's input as None, a `_Single` item or a per-sample list. A list is per sample, unless all its
    entries are parts of one item (`is_part`: the frames of a video, the samples of a waveform); an array of
    `batch_ndim` dimensions is a batch, one item per row."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if is_part is not None and value and all(is_part(v) for v in value):
            return _Single(list(value))
        return list(value)
    if batch_ndim is not None and is_array_like(value) and to_numpy(value).ndim == batch_ndim:
        return list(to_numpy(value))
    return _Single(value)


def _split_inputs(text, images, videos, audio, targets, label_weights) -> dict:
    """Each input as one entry per sample (or `None` when not given), by name."""
    return {
        "text": _split_text(text, "text"),
        "images": _split_media(images, batch_ndim=4),
        "videos": _split_media(videos, batch_ndim=5, is_part=_is_frame),
        "audio": _split_media(audio, is_part=_is_sample),
        "targets": _split_text(targets, "targets"),
        "label_weights": _split_label_weights(label_weights),
    }


def _refuse_media_paths_as_text(splits) -> None:
    """A text-only call whose text is a media file's path or URL gets an error, not a caption of the path's
    characters: that is what `pipeline("image-to-text")(path)` does, as the stock pipeline passes a lone path as the
    prompt (transformers 5)."""
    if any(splits[name] is not None for name in ("images", "videos", "audio")) or splits["text"] is None:
        return
    texts = [splits["text"].value] if isinstance(splits["text"], _Single) else splits["text"]
    for index, text in enumerate(texts):
        found = media_path_in_text(text)
        if found is not None:
            kind, argument = found
            raise ValueError(
                f"`text` of sample {index} is the {kind} {text!r}, and no {kind} was given: pass it as `{argument}=` "
                f"(with the image-text-to-text / image-to-text pipelines: `pipe({text!r}, text=\"\")` captions it, "
                "`text=` takes the prompt or the task's field)"
            )


def _split_text(text, name: str):
    if text is None:
        return None
    if isinstance(text, str):
        return _Single(text)
    if isinstance(text, (list, tuple)):
        for index, item in enumerate(text):
            if not isinstance(item, str):
                raise TypeError(f"{name}[{index}] must be a string, got {type(item).__name__}")
        return list(text)
    raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")


def _split_field(name: str, value):
    """Task fields: a scalar applies to every sample, a list gives one value per sample."""
    if value is None:
        return None
    if name == "box":
        nested = isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (list, tuple))
        if nested or (is_array_like(value) and to_numpy(value).ndim == 2):
            return list(value)
        return _Single(value)
    if name == "image_size":
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
            return list(value)
        return _Single(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return _Single(value)


def _split_label_weights(label_weights):
    if label_weights is None:
        return None
    if isinstance(label_weights, (list, tuple)) or is_array_like(label_weights):
        return list(label_weights)
    return _Single(label_weights)


def _label_weights(split, batch_size: int) -> np.ndarray:
    weights = np.asarray([_take(split, i) for i in range(batch_size)], dtype=np.float32)
    if not np.all(np.isfinite(weights)):
        raise ValueError("label_weights must be finite numbers")
    return weights


def _take(split, index: int):
    if split is None:
        return None
    if isinstance(split, _Single):
        return split.value
    return split[index]


@contextlib.contextmanager
def _naming_argument(name: str):
    """Prefix the errors of the sub-processor reading the `name` argument with that name (the sub-processors name
    the input, e.g. the file, but not which argument of the call it was given as). The class is kept (a missing file
    stays a `FileNotFoundError`); errors that cannot be rebuilt from a message are left as they are."""
    try:
        yield
    except (ValueError, TypeError, OSError) as error:
        message = str(error)
        if message.startswith(f"`{name}`"):
            raise
        try:
            renamed = type(error)(f"`{name}`: {message}")
        except Exception:  # an error class with another constructor: keep it
            raise error from None
        raise renamed from None


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _pad(sequences: list[list[int]], value: int, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), value, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        if left:
            ids[row, length - len(seq) :] = seq
            mask[row, length - len(seq) :] = 1
        else:
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
    return ids, mask


class UnivalProcessor(ProcessorMixin):
    r"""
    Processor of UnIVAL: wraps a [`UnivalTokenizer`], a [`UnivalImageProcessor`], a [`UnivalVideoProcessor`] and a
    [`UnivalFeatureExtractor`] (each built with its defaults when not given).

    A call processes a batch of samples; each sample has a prompt and at most one of an image, a video or an audio
    clip. Give either parallel lists (`text=[...]`, `images=[img, None, ...]`, `videos=[None, path, ...]`,
    `audio=[None, None, wav]`, one entry per sample, `None` where a sample has no such input), or single items for a
    batch of one. A single `text` string applies to every sample. Paths, bytes, PIL images, arrays and tensors are
    accepted (see the sub-processors). Instead of `text`, `task=` and the task's fields build the original prompts
    (`processor(task="vqa", question="what is on the table", images=img)`; see `processing.prompts`). A sample with
    media and no prompt (no `text`, or `""`) gets the caption prompt of its modality.

    The output (a `BatchFeature`, ready for `model(**inputs)` / `model.generate(**inputs)`) holds:

    - `input_ids` (B, S) int64, `<s> prompt </s>` right-padded with `<pad>` (1), and `attention_mask` (B, S);
    - `pixel_values` (N_img, 3, H, W) float32 for the samples with an image, in batch order;
    - `pixel_values_videos` (N_vid, 3, T, H, W) float32 for the samples with a video;
    - `audio_values` (N_aud, L) float32 (48 kHz waveform) for the samples with audio;
    - `patch_types` (B,) int64 (-1 text only, 0 image, 1 video, 2 audio) whenever a sample has media;
    - with targets (`targets=` / `text_target=`): `decoder_input_ids` (`<s>` + target, padded with 1),
      `decoder_attention_mask`, `labels` (target + `</s>`, padded with -100) and, with `label_weights=`,
      `label_weights` (B,) float32. With `prompt_type="prev_output"` (the VQA / video QA / SNLI-VE finetuning
      layout, the default of those tasks) the decoder input is `<s>` + prompt tokens + target tokens and the labels
      are -100 over the prompt positions, then target + `</s>`;
    - `image_sizes` (N_img, 2) int64, original (height, width), only with `return_image_sizes=True` (remove it before
      calling the model; it is what `post_process_grounding` needs).

    User text is plain text: `<s>`, `</s>`, `<pad>`, `<unk>`, `<bin_5>`, `<code_3>` written in a prompt, a question,
    a caption or a target are encoded as the characters they are (`UnivalTokenizer.encode_text`), never as control
    or location tokens. The only control tokens are the `<s>` / `</s>` the processor adds, and location / code
    tokens come only from numeric boxes (`box=`, `quantize_box`, `build_prompt` / `build_target`), from the
    grounded-caption `region=` field and from the targets of `task="visual_grounding"` / `"text_to_image"`, which
    must hold nothing but such tokens (see `processing.prompts.TokenText`).

    Prompts longer than `max_source_length` tokens (1024) are truncated to that many tokens, keeping `</s>` last;
    targets are truncated to `max_target_length` (1024) decoder positions. The original's limit of 80 *words* is
    applied by `pre_caption` / `pre_question` when prompts are built from a task.

    Example:

    ```python
    >>> from processing import UnivalProcessor
    >>> processor = UnivalProcessor()
    >>> inputs = processor(
    ...     text=[" what does the image describe?", " what does the video describe?", " hello"],
    ...     images=["cat.jpg", None, None],
    ...     videos=[None, "clip.mp4", None],
    ...     return_tensors="pt",
    ... )
    >>> inputs["patch_types"]
    tensor([ 0,  1, -1])
    >>> vqa = processor(task="vqa", text="what is on the table", images="kitchen.jpg", return_tensors="pt")
    >>> boxes = processor.post_process_grounding(generated_ids, image_sizes=[(480, 640)])
    ```

    Args:
        max_source_length (`int`, defaults to 1024): maximum prompt length in tokens (with `<s>` and `</s>`).
        max_target_length (`int`, defaults to 1024): maximum decoder length in tokens.
        num_bins (`int`, defaults to 1000): number of location tokens.
        audio_prompt (`str`, defaults to `"video"`): caption prompt of audio samples; `"video"` is the prompt the
            released audio-captioning checkpoints were trained with, `"audio"` the audio one.
        prompt_types (`dict[str, str]`, *optional*): decoder layout (`"none"` or `"prev_output"`) of some tasks,
            overriding their default in `processing.prompts.TASKS` (e.g. `{"image_text_matching": "prev_output"}`).
            It is saved with the processor, so that a model trained with other layouts is evaluated and served by the
            pipelines with the layouts it was trained with.
    """

    def __init__(
        self,
        tokenizer=None,
        image_processor=None,
        video_processor=None,
        feature_extractor=None,
        max_source_length: int = MAX_SOURCE_LENGTH,
        max_target_length: int = MAX_TARGET_LENGTH,
        num_bins: int = NUM_BINS,
        audio_prompt: str = "video",
        prompt_types: dict[str, str] | None = None,
        **kwargs,
    ):
        tokenizer = UnivalTokenizer() if tokenizer is None else tokenizer
        image_processor = UnivalImageProcessor() if image_processor is None else image_processor
        video_processor = UnivalVideoProcessor() if video_processor is None else video_processor
        feature_extractor = UnivalFeatureExtractor() if feature_extractor is None else feature_extractor
        if audio_prompt not in ("video", "audio"):
            raise ValueError(f"audio_prompt must be 'video' or 'audio', got {audio_prompt!r}")
        if int(max_source_length) < 2 or int(max_target_length) < 2:
            raise ValueError("max_source_length and max_target_length must be at least 2")
        self.max_source_length = int(max_source_length)
        self.max_target_length = int(max_target_length)
        self.num_bins = int(num_bins)
        self.audio_prompt = audio_prompt
        self.prompt_types = self._canonical_prompt_types(prompt_types)
        super().__init__(
            tokenizer=tokenizer,
            image_processor=image_processor,
            video_processor=video_processor,
            feature_extractor=feature_extractor,
            **kwargs,
        )

    @staticmethod
    def _canonical_prompt_types(prompt_types) -> dict[str, str]:
        """`{canonical task name: layout}` of the given overrides (aliases resolved); raises on an unknown task or
        layout."""
        if prompt_types is None:
            return {}
        if not isinstance(prompt_types, dict):
            raise TypeError(f"prompt_types must be a dict {{task: layout}}, got {type(prompt_types).__name__}")
        canonical = {}
        for task, layout in prompt_types.items():
            if layout not in PROMPT_TYPES:
                raise ValueError(f"prompt_types[{task!r}] must be one of {PROMPT_TYPES}, got {layout!r}")
            canonical[task_lib.resolve_task(task).name] = layout
        return dict(sorted(canonical.items()))

    def prompt_type_of(self, task: str) -> str:
        """The decoder layout of `task` (name or alias) with this processor: its `prompt_types` entry, else the
        task's default."""
        spec = task_lib.resolve_task(task)
        return self.prompt_types.get(spec.name, spec.prompt_type)

    _SUB_PROCESSOR_BASES = {
        "tokenizer": PreTrainedTokenizerBase,
        "image_processor": ImageProcessingMixin,
        "video_processor": VideoProcessorMixin,
        "feature_extractor": FeatureExtractionMixin,
    }

    def check_argument_for_proper_class(self, argument_name, argument):
        # The generic check resolves base classes by name through the Auto mappings, and fails as soon as a
        # processor is registered there with a backend dict (as `AutoImageProcessor.register` stores it) in 5.x.
        expected = self._SUB_PROCESSOR_BASES.get(argument_name)
        if expected is None:
            return super().check_argument_for_proper_class(argument_name, argument)
        if not isinstance(argument, expected):
            raise TypeError(
                f"{type(self).__name__}: `{argument_name}` must be a {expected.__name__}, got {type(argument).__name__}"
            )
        return expected

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The generic loader goes through `AutoVideoProcessor`, which raises ImportError without torchvision in
        # transformers 5.x; load the video processor from its saved type instead.
        subfolder = kwargs.pop("subfolder", "")
        args = []
        for name in cls.get_attributes():
            if name == "tokenizer":
                tokenizer = cls._load_tokenizer_from_pretrained(
                    name, pretrained_model_name_or_path, subfolder=subfolder, **kwargs
                )
                args.append(tokenizer)
            elif name == "video_processor":
                args.append(cls._load_video_processor(pretrained_model_name_or_path, subfolder=subfolder, **kwargs))
            else:
                auto_class = MODALITY_TO_AUTOPROCESSOR_MAPPING[name]
                args.append(auto_class.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs))
        return args

    @staticmethod
    def _load_video_processor(pretrained_model_name_or_path, **kwargs):
        from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

        config, _ = UnivalVideoProcessor.get_video_processor_dict(pretrained_model_name_or_path, **dict(kwargs))
        class_name = config.get("video_processor_type", UnivalVideoProcessor.__name__)
        video_class = UnivalVideoProcessor
        for classes in VIDEO_PROCESSOR_MAPPING._extra_content.values():
            for candidate in (classes or {}).values():
                if isinstance(candidate, type) and candidate.__name__ == class_name:
                    video_class = candidate
        return video_class.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "pixel_values_videos", "audio_values", "patch_types"]

    # ---------------------------------------------------------------------------------------------------------------
    # Main entry point
    # ---------------------------------------------------------------------------------------------------------------
    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        videos=None,
        audio=None,
        *,
        task: str | None = None,
        targets: str | list[str] | None = None,
        text_target: str | list[str] | None = None,
        prompt_type: str | Sequence[str] | None = None,
        label_weights: float | Sequence[float] | None = None,
        format_targets: bool = True,
        return_tensors=None,
        max_source_length: int | None = None,
        max_target_length: int | None = None,
        return_image_sizes: bool = False,
        return_decoder_prompt: bool = False,
        sampling_rate: int | None = None,
        images_kwargs: dict | None = None,
        videos_kwargs: dict | None = None,
        audio_kwargs: dict | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Process a batch (see the class docstring).

        Args:
            images / text / videos / audio: the samples' inputs (keywords recommended).
            task: build the prompts of this task from its fields (`question=`, `caption=`, `text=`, `hypothesis=`,
                `premise=`, `answer=`, `region=` or `box=` + `image_size=`, each a value or a per-sample list), and
                use the task's layout (`prompt_type_of(task)`). With a task, `text=` is the task's main field (the
                question of `vqa`, the referring expression of `visual_grounding`, the caption of the matching tasks,
                the hypothesis of `visual_entailment`), not a ready prompt; without a task, `text=` is the prompt.
            targets / text_target: decoder targets (one per sample). A target gets one leading space, as the
                original formats `" {caption}"` / `" {answer}"`, unless it starts with whitespace or a `<bin_...>` /
                `<code_...>` token (`format_targets=False` keeps targets verbatim).
            prompt_type: `"none"` or `"prev_output"` (see the class docstring), or one of them per sample (a batch
                may mix the layouts, e.g. VQA with captioning).
            label_weights: per-sample loss weights (VQA answer confidences), returned as `label_weights`.
            return_tensors: `"pt"`, `"np"` or `None` (numpy arrays). `padding` / `truncation` are accepted for
                generic callers with their fixed values only (`True` / `"longest"`).
            max_source_length / max_target_length: override the processor's limits for this call.
            return_image_sizes: add `image_sizes` (original (height, width) of each image).
            return_decoder_prompt: without targets and with `prompt_type="prev_output"`, add `decoder_input_ids` =
                `<s>` + prompt tokens, LEFT-padded with `<pad>`, and `decoder_attention_mask`: the forced decoder
                prefix of VQA / SNLI-VE inference (check that your generation code supports left padding).
            sampling_rate: rate of audio given as arrays.
            images_kwargs / videos_kwargs / audio_kwargs: options of the sub-processors for this call (e.g.
                `images_kwargs={"size": 512}`, `videos_kwargs={"num_frames": 8, "do_sample_frames": "random",
                "seed": 0}`, `audio_kwargs={"crop_mode": "random"}`). Those options may also be given directly as
                keywords (`size=512`, `num_frames=8`, `seed=0`); a keyword goes to every sub-processor that knows it.
        """
        self._check_fixed_text_options(kwargs)
        task_fields, images_kwargs, videos_kwargs, audio_kwargs = self._route_kwargs(
            kwargs, images_kwargs, videos_kwargs, audio_kwargs
        )
        if targets is not None and text_target is not None:
            raise TypeError("pass the decoder targets either as `targets` or as `text_target`, not both")
        spec = task_lib.resolve_task(task) if task is not None else None
        text = self._text_as_task_field(spec, task, text, task_fields)
        max_source_length, max_target_length = self._lengths(max_source_length, max_target_length)

        splits = _split_inputs(text, images, videos, audio, text_target if targets is None else targets, label_weights)
        field_splits = {name: _split_field(name, value) for name, value in task_fields.items()}
        _refuse_media_paths_as_text(splits)
        batch_size = self._checked_batch_size(splits, field_splits)
        prompt_types = self._prompt_types(prompt_type, spec, batch_size)
        modalities = [self._sample_modality(splits, index) for index in range(batch_size)]
        prompts = self._prompts(spec, task, splits, field_splits, modalities)

        source_ids = self._encode(prompts, max_source_length, add_special_tokens=True, what="prompt")
        input_ids, attention_mask = _pad(source_ids, self.tokenizer.pad_token_id)
        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        data.update(self._media(splits, modalities, return_image_sizes, sampling_rate, images_kwargs, videos_kwargs,
                                audio_kwargs))
        if splits["targets"] is not None:
            data.update(
                self._decoder_side(splits, source_ids, prompt_types, max_target_length, format_targets, spec)
            )
        elif return_decoder_prompt:
            data.update(self._decoder_prompts(source_ids, prompt_types))
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ---------------------------------------------------------------------------------------------------------------
    # steps of __call__
    # ---------------------------------------------------------------------------------------------------------------
    def _check_fixed_text_options(self, kwargs: dict) -> None:
        """`padding` / `truncation` as generic callers (pipelines, collators) pass them: the behaviour is fixed."""
        padding = kwargs.pop("padding", True)
        if padding not in (True, "longest"):
            raise ValueError(f"{type(self).__name__} always pads to the longest sequence; got padding={padding!r}")
        truncation = kwargs.pop("truncation", True)
        if truncation not in (True, None):
            raise ValueError(
                f"{type(self).__name__} always truncates to max_source_length / max_target_length; "
                f"got truncation={truncation!r}"
            )

    @staticmethod
    def _text_as_task_field(spec, task, text, task_fields: dict):
        """With a task, `text` is the task's primary field (the question of VQA, the expression of grounding...):
        move it into `task_fields` and return `None`; without a task, `text` is the prompt."""
        if spec is None:
            if task_fields:
                raise TypeError(f"unexpected keyword argument(s) {sorted(task_fields)} without `task=`")
            return text
        if text is None:
            return None
        field = spec.primary_field
        if field is None:
            raise TypeError(f"task {task!r} builds its prompt without text: do not pass `text`")
        if field in task_fields:
            raise TypeError(f"task {task!r}: pass the {field} either as `text` or as `{field}`, not both")
        task_fields[field] = text
        return None

    def _lengths(self, max_source_length, max_target_length) -> tuple[int, int]:
        max_source_length = self.max_source_length if max_source_length is None else int(max_source_length)
        max_target_length = self.max_target_length if max_target_length is None else int(max_target_length)
        if max_source_length < 2 or max_target_length < 2:
            raise ValueError("max_source_length and max_target_length must be at least 2")
        return max_source_length, max_target_length

    def _checked_batch_size(self, splits: dict, field_splits: dict) -> int:
        batch_size = self._batch_size({**splits, **field_splits})
        for name in ("images", "videos", "audio", "targets", "label_weights"):
            if isinstance(splits[name], _Single) and batch_size > 1:
                raise ValueError(
                    f"`{name}` is a single item but the batch has {batch_size} samples: pass a list with one entry "
                    "per sample (None for samples without it)"
                )
        if splits["label_weights"] is not None and splits["targets"] is None:
            raise ValueError("`label_weights` needs `targets`")
        return batch_size

    def _prompt_types(self, prompt_type, spec, batch_size: int) -> list[str]:
        """The decoder layout of each sample: `prompt_type` (one, or one per sample), else the task's layout."""
        if prompt_type is None:
            prompt_type = self.prompt_type_of(spec.name) if spec is not None else "none"
        prompt_types = [prompt_type] * batch_size if isinstance(prompt_type, str) else list(prompt_type)
        for value in prompt_types:
            if value not in PROMPT_TYPES:
                raise ValueError(f"prompt_type must be one of {PROMPT_TYPES} (or a list of them), got {value!r}")
        if len(prompt_types) != batch_size:
            raise ValueError(f"prompt_type has {len(prompt_types)} entries for a batch of {batch_size}")
        return prompt_types

    @staticmethod
    def _sample_modality(splits: dict, index: int) -> Modality:
        present = [modality for modality, name in _MEDIA_ARGUMENTS if _take(splits[name], index) is not None]
        if len(present) > 1:
            names = " and ".join(MODALITY_NAMES[m] for m in present)
            raise ValueError(
                f"sample {index} has both {names}: a sample may carry at most one image, video or audio input"
            )
        return present[0] if present else Modality.TEXT

    def _prompts(self, spec, task, splits: dict, field_splits: dict, modalities: list) -> list[str]:
        """One encoder prompt per sample. With a task, built from its fields; without, `text=` verbatim, where a
        sample with media and no text (or blank text) gets its modality's caption prompt: the unconditional
        captioning of BLIP-style processors, which the stock image-text-to-text pipeline reaches with `text=""`."""
        if splits["text"] is None and spec is not None:
            return [
                self._task_prompt(spec, task, modality, {k: _take(v, i) for k, v in field_splits.items()},
                                  _take(splits["images"], i), i)
                for i, modality in enumerate(modalities)
            ]
        prompts = []
        for index, modality in enumerate(modalities):
            prompt = None if splits["text"] is None else _take(splits["text"], index)
            if prompt is None or not prompt.strip():
                if modality == Modality.TEXT:
                    raise ValueError(
                        f"sample {index} has no prompt and no media: pass its prompt as `text=` (or build it with "
                        "`task=` and the task's fields)"
                    )
                caption = task_lib.resolve_task("caption")
                prompt = self._task_prompt(caption, caption.name, modality, {}, None, index)
            prompts.append(prompt)
        return prompts

    def _media(self, splits, modalities, return_image_sizes, sampling_rate, images_kwargs, videos_kwargs,
               audio_kwargs) -> dict:
        """Each modality's tensor, its samples in batch order, and `patch_types` when any sample has media."""
        def items(modality, name):
            return [_take(splits[name], i) for i, m in enumerate(modalities) if m == modality]

        data = {}
        image_items = items(Modality.IMAGE, "images")
        if image_items:
            with _naming_argument("images"):
                out = self.image_processor(image_items, return_image_sizes=return_image_sizes, **images_kwargs)
            data["pixel_values"] = out["pixel_values"]
            if return_image_sizes:
                data["image_sizes"] = out["image_sizes"]
        elif return_image_sizes:
            data["image_sizes"] = np.zeros((0, 2), dtype=np.int64)
        video_items = items(Modality.VIDEO, "videos")
        if video_items:
            with _naming_argument("videos"):
                data["pixel_values_videos"] = self.video_processor(video_items, **videos_kwargs)["pixel_values_videos"]
        audio_items = items(Modality.AUDIO, "audio")
        if audio_items:
            with _naming_argument("audio"):
                data["audio_values"] = self.feature_extractor(
                    audio_items, sampling_rate=sampling_rate, **audio_kwargs
                )["audio_values"]
        if any(m != Modality.TEXT for m in modalities):
            data["patch_types"] = np.asarray([int(m) for m in modalities], dtype=np.int64)
        return data

    def _decoder_side(self, splits, source_ids, prompt_types, max_target_length, format_targets, spec=None) -> dict:
        """Decoder inputs, labels and (when given) label weights of the targets, each sample in its layout."""
        target_texts = [_take(splits["targets"], i) for i in range(len(source_ids))]
        data = self._build_targets(target_texts, source_ids, prompt_types, max_target_length, format_targets, spec)
        if splits["label_weights"] is not None:
            data["label_weights"] = _label_weights(splits["label_weights"], len(source_ids))
        return data

    def _decoder_prompts(self, source_ids, prompt_types) -> dict:
        """`<s>` + prompt tokens of each sample, LEFT-padded: the forced decoder prefix of the prev_output layout."""
        if any(value != "prev_output" for value in prompt_types):
            raise ValueError("return_decoder_prompt needs prompt_type='prev_output' for every sample")
        prefixes = [[BOS_TOKEN_ID] + ids[1:-1] for ids in source_ids]
        decoder_ids, decoder_mask = _pad(prefixes, self.tokenizer.pad_token_id, left=True)
        return {"decoder_input_ids": decoder_ids, "decoder_attention_mask": decoder_mask}

    # ---------------------------------------------------------------------------------------------------------------
    # helpers of __call__
    # ---------------------------------------------------------------------------------------------------------------
    def _route_kwargs(self, kwargs, images_kwargs, videos_kwargs, audio_kwargs):
        images_kwargs = dict(images_kwargs or {})
        videos_kwargs = dict(videos_kwargs or {})
        audio_kwargs = dict(audio_kwargs or {})
        task_fields = {}
        for key, value in kwargs.items():
            routed = False
            if key in task_lib.PROMPT_KEYWORDS:
                task_fields[key] = value
                continue
            if key in _IMAGE_OPTIONS:
                images_kwargs.setdefault(key, value)
                routed = True
            if key in _VIDEO_OPTIONS:
                videos_kwargs.setdefault(key, value)
                routed = True
            if key in _AUDIO_OPTIONS:
                audio_kwargs.setdefault(key, value)
                routed = True
            if not routed:
                hint = ""
                if key == "max_length":
                    hint = (
                        " (use max_source_length / max_target_length for text, "
                        "audio_kwargs={'max_length': ...} for audio)"
                    )
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {key!r}{hint}")
        return task_fields, images_kwargs, videos_kwargs, audio_kwargs

    @staticmethod
    def _batch_size(splits: dict) -> int:
        lengths = {name: len(value) for name, value in splits.items() if isinstance(value, list)}
        if not lengths:
            return 1
        if len(set(lengths.values())) > 1:
            described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise ValueError(f"inconsistent batch: the per-sample lists have different lengths ({described})")
        size = next(iter(lengths.values()))
        if size == 0:
            raise ValueError(f"empty batch: {', '.join(lengths)} {'is' if len(lengths) == 1 else 'are'} empty")
        return size

    @staticmethod
    def _check_task_modality(spec, task, modality: Modality, index: int) -> None:
        expected = spec.modality
        if expected is None:
            if modality == Modality.TEXT and spec.name != "qa_matching":
                raise ValueError(f"task {task!r}: sample {index} has no image, video or audio")
            return
        if expected == Modality.TEXT:
            if modality != Modality.TEXT:
                raise ValueError(f"task {task!r} takes no media, but sample {index} has {_a(MODALITY_NAMES[modality])}")
            return
        if modality != expected:
            got = "no media" if modality == Modality.TEXT else _a(MODALITY_NAMES[modality])
            raise ValueError(
                f"task {task!r} expects {_a(MODALITY_NAMES[expected])} per sample; sample {index} has {got}"
            )

    def _task_prompt(self, spec, task, modality, fields, image, index) -> str:
        self._check_task_modality(spec, task, modality, index)
        fields = {k: v for k, v in fields.items() if v is not None}
        if spec.name == "grounded_caption" and "box" in fields and "image_size" not in fields and image is not None:
            fields["image_size"] = self.image_processor.get_image_sizes([image])[0]
        fields.setdefault("audio_prompt", self.audio_prompt)
        if spec.name in ("grounded_caption",):
            fields.setdefault("num_bins", self.num_bins)
        try:
            return task_lib.build_prompt(
                task, modality=None if modality == Modality.TEXT else modality, **fields
            )
        except (ValueError, TypeError) as error:
            raise type(error)(f"sample {index}: {error}") from None

    def _text_ids(self, text: str) -> list[int]:
        """Token ids of a prompt or a target, without `<s>` / `</s>`. User text is plain text (`encode_text`: a
        `</s>` or `<bin_5>` typed in it stays text); only the token parts of a `TokenText`, which this package builds
        from boxes and from the token-only `region` / box and code targets, are encoded as tokens."""
        segments = text.segments if isinstance(text, prompt_lib.TokenText) else ((text, False),)
        ids = []
        for part, is_tokens in segments:
            if is_tokens:
                ids.extend(self.tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"])
            else:
                ids.extend(self.tokenizer.encode_text(part))
        return ids

    def _encode(self, texts: list[str], max_length: int, add_special_tokens: bool, what: str) -> list[list[int]]:
        result = []
        for index, text in enumerate(texts):
            ids = self._text_ids(text)
            if add_special_tokens:  # the template's own control tokens, the only ones a prompt gets
                ids = [self.tokenizer.bos_token_id] + ids + [self.tokenizer.eos_token_id]
            if len(ids) > max_length:
                logger.warning_once(
                    f"a {what} of {len(ids)} tokens was truncated to {max_length} tokens (sample {index})"
                )
                ids = ids[: max_length - 1] + [EOS_TOKEN_ID] if add_special_tokens else ids[:max_length]
            result.append(ids)
        return result

    def _build_targets(self, target_texts, source_ids, prompt_types, max_target_length, format_targets,
                       spec=None) -> dict:
        token_kind = {"box": "location", "codes": "code"}.get(spec.output) if spec is not None else None
        texts = []
        for index, target in enumerate(target_texts):
            if target is None or not target.strip():
                raise ValueError(f"the target of sample {index} is empty")
            if token_kind is not None:
                # The targets of the box / code tasks are token strings by definition: accepted as tokens once
                # checked to hold nothing else.
                target = prompt_lib.token_string(target, f"the target of sample {index}", kind=token_kind)
            texts.append(prompt_lib.format_target(target) if format_targets else target)
        target_ids = self._encode(texts, max_target_length - 1, add_special_tokens=False, what="target")
        decoder_inputs, labels = [], []
        for index, tokens in enumerate(target_ids):
            prefix = source_ids[index][1:-1] if prompt_types[index] == "prev_output" else []
            room = max_target_length - 1 - len(prefix)
            if room <= 0:
                raise ValueError(
                    f"sample {index}: the prompt ({len(prefix)} tokens) leaves no room for the target within "
                    f"max_target_length={max_target_length} in the prev_output layout"
                )
            tokens = tokens[:room]
            decoder_inputs.append([BOS_TOKEN_ID] + prefix + tokens)
            labels.append([LABEL_IGNORE_INDEX] * len(prefix) + tokens + [EOS_TOKEN_ID])
        decoder_input_ids, decoder_attention_mask = _pad(decoder_inputs, PAD_TOKEN_ID)
        label_ids, _ = _pad(labels, LABEL_IGNORE_INDEX)
        return {
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
            "labels": label_ids,
        }

    # ---------------------------------------------------------------------------------------------------------------
    # Prompts
    # ---------------------------------------------------------------------------------------------------------------
    def build_prompt(self, task: str, **fields) -> str:
        """The original prompt of `task` (see `processing.prompts.build_prompt`)."""
        fields.setdefault("audio_prompt", self.audio_prompt)
        fields.setdefault("num_bins", self.num_bins)
        return task_lib.build_prompt(task, **fields)

    def build_target(self, task: str, **fields) -> str:
        """The original target text of `task` (see `processing.prompts.build_target`)."""
        fields.setdefault("num_bins", self.num_bins)
        return task_lib.build_target(task, **fields)

    def caption_prompt(self, modality: Modality | str = Modality.IMAGE) -> str:
        """Captioning prompt of an image, a video or an audio clip (audio: see `audio_prompt`)."""
        return self.build_prompt("caption", modality=modality)

    def vqa_prompt(self, question: str, **options) -> str:
        """VQA / video QA prompt `" {question}?"` (question normalised with `pre_question`)."""
        return self.build_prompt("vqa", question=question, **options)

    def grounding_prompt(self, text: str, **options) -> str:
        """Visual grounding prompt for a referring expression."""
        return self.build_prompt("visual_grounding", text=text, **options)

    def grounded_caption_prompt(self, region: str | None = None, *, box=None, image_size=None, **options) -> str:
        """Grounded captioning prompt for a region (location tokens, or a pixel `box` in an image of `image_size`)."""
        return self.build_prompt("grounded_caption", region=region, box=box, image_size=image_size, **options)

    def matching_prompt(self, caption: str, modality: Modality | str = Modality.IMAGE, **options) -> str:
        """Image / video / audio-text matching prompt."""
        return self.build_prompt("text_matching", caption=caption, modality=modality, **options)

    def entailment_prompt(self, hypothesis: str, premise: str | None = None, **options) -> str:
        """Visual entailment (SNLI-VE) prompt."""
        return self.build_prompt("visual_entailment", hypothesis=hypothesis, premise=premise, **options)

    # ---------------------------------------------------------------------------------------------------------------
    # Boxes and post-processing
    # ---------------------------------------------------------------------------------------------------------------
    def quantize_box(self, box, image_size, *, processed_size=None, max_image_size=None, clip: bool = False) -> str:
        """Location tokens `"<bin_a> <bin_b> <bin_c> <bin_d>"` of a pixel box `[x0, y0, x1, y1]` in an image of
        `image_size` = (height, width) (see `processing.boxes.quantize_box`; raises for boxes outside the image
        unless `clip=True`, and for `x1 < x0` / `y1 < y0`)."""
        return quantize_box(
            box, image_size, processed_size=processed_size, max_image_size=max_image_size, num_bins=self.num_bins,
            clip=clip,
        )

    def post_process_grounding(
        self,
        generated,
        image_sizes,
        *,
        processed_size: int | None = None,
        max_image_size: int | None = None,
        scores=None,
    ) -> list[dict]:
        """Turn generated location tokens into boxes in the ORIGINAL images' pixel coordinates.

        Args:
            generated: token ids (B, T) (tensor, array or lists) or decoded strings.
            image_sizes: the original (height, width) of each image: the `image_sizes` returned with
                `return_image_sizes=True`, a list of pairs, or the PIL images themselves.
            processed_size / max_image_size: only for the pretraining quirk (see `processing.boxes`); by default
                coordinates are relative to the processed image, whose size cancels out.

            scores: optional per-sequence scores (e.g. `sequences_scores` of `generate`), copied to `"score"`.

        Returns one dict per sample: `{"box": [x0, y0, x1, y1] or None, "bins": [...], "text": decoded}` (`box` is
        None when fewer than 4 location tokens were generated; extra ones are ignored), plus `"score"` when `scores`
        is given. The box is always well formed: a model may generate a corner pair in reverse order (`x1 < x0` or
        `y1 < y0`), so each coordinate pair is sorted (`x0 <= x1`, `y0 <= y1`), and it is clipped to the image
        (with `max_image_size` a bin can map past the image's border). `"bins"` are the generated bins, unsorted.
        """
        if isinstance(generated, str):
            generated = [generated]
        if is_array_like(generated):
            generated = to_numpy(generated)
            if generated.ndim == 1:
                generated = generated[None]
            generated = generated.tolist()
        if isinstance(image_sizes, Image.Image):
            image_sizes = [image_sizes]
        elif is_array_like(image_sizes):
            image_sizes = to_numpy(image_sizes).reshape(-1, 2).tolist()
        elif isinstance(image_sizes, (list, tuple)) and len(image_sizes) == 2 and all(
            isinstance(v, numbers.Number) for v in image_sizes
        ):
            image_sizes = [image_sizes]
        if len(image_sizes) != len(generated):
            raise ValueError(f"got {len(generated)} sequences but {len(image_sizes)} image sizes")
        if scores is not None:
            scores = to_numpy(scores).reshape(-1).tolist() if is_array_like(scores) else list(scores)
            if len(scores) != len(generated):
                raise ValueError(f"got {len(generated)} sequences but {len(scores)} scores")
        results = []
        for index, (sequence, size) in enumerate(zip(generated, image_sizes)):
            text = sequence if isinstance(sequence, str) else self.tokenizer.decode(sequence, skip_special_tokens=True)
            bins = extract_bins(sequence, self.num_bins)
            box = None
            if len(bins) >= 4:
                bins = bins[:4]
                box = well_formed_box(
                    bins_to_box(
                        bins, size, processed_size=processed_size, max_image_size=max_image_size,
                        num_bins=self.num_bins,
                    ),
                    size,
                )
            result = {"box": box, "bins": bins, "text": text}
            if scores is not None:
                result["score"] = float(scores[index])
            results.append(result)
        return results

    def post_process_generation(
        self,
        generated,
        task: str,
        *,
        image_sizes=None,
        prompt_lengths: int | Sequence[int] | None = None,
        scores=None,
    ) -> list:
        """The generated sequences of `task` in the structure its output kind calls for, one entry per sequence
        (Florence-2's `post_process_generation` for UnIVAL's tasks):

        - captions (captioning, grounded captioning): cleaned strings (`post_process_caption`);
        - answers and labels (VQA, video QA, matching, entailment): cleaned strings (`post_process_vqa`), with the
          decoder prompt of the prev_output layout dropped (`prompt_lengths`: its length, e.g. the width of the
          `decoder_input_ids` given to `generate`);
        - boxes (visual grounding): `{"box", "bins", "text"}` dicts in pixels of the original images, which needs
          `image_sizes` (`post_process_grounding`);
        - `<code_i>` sequences (text-to-image): the token ids as lists.

        `scores` (e.g. `sequences_scores`), when given, are returned beside: a list of `(output, score)` pairs for
        text outputs, a `"score"` entry for boxes.
        """
        spec = task_lib.resolve_task(task)
        if spec.output == "box":
            if image_sizes is None:
                raise ValueError(f"task {spec.name!r} returns boxes: pass the original `image_sizes`")
            return self.post_process_grounding(generated, image_sizes, scores=scores)
        if spec.output == "codes":
            outputs = self._as_sequences(generated)
        elif spec.output == "caption":
            outputs = self.post_process_caption(generated)
        else:
            outputs = self.post_process_vqa(generated, prompt_lengths=prompt_lengths)
        if scores is None:
            return outputs
        scores = to_numpy(scores).reshape(-1).tolist() if is_array_like(scores) else list(scores)
        if len(scores) != len(outputs):
            raise ValueError(f"got {len(outputs)} sequences but {len(scores)} scores")
        return list(zip(outputs, scores))

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """Decoded text of each sequence, for transformers' `image-text-to-text` pipeline (without surrounding
        whitespace: UnIVAL's answers start with a space token)."""
        texts = self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)
        return [text.strip() for text in texts]

    def post_process_vqa(self, generated, prompt_lengths: int | Sequence[int] | None = None) -> list[str]:
        """Decoded, cleaned answers (strip, lowercase, no trailing punctuation). With the prev_output layout, pass
        the number of decoder-prompt tokens to drop from each sequence (`prompt_lengths`, e.g. the width of the
        left-padded `decoder_input_ids` given to `generate`)."""
        sequences = self._as_sequences(generated)
        if prompt_lengths is not None:
            if isinstance(prompt_lengths, numbers.Number):
                prompt_lengths = [int(prompt_lengths)] * len(sequences)
            sequences = [seq[int(n):] for seq, n in zip(sequences, prompt_lengths)]
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [prompt_lib.postprocess_vqa_answer(t) for t in texts]

    def post_process_caption(self, generated) -> list[str]:
        """Decoded captions cleaned as the original evaluation (punctuation removed, whitespace collapsed)."""
        texts = self.tokenizer.batch_decode(self._as_sequences(generated), skip_special_tokens=True)
        return [prompt_lib.postprocess_caption(t) for t in texts]

    @staticmethod
    def _as_sequences(generated) -> list[list[int]]:
        if is_array_like(generated):
            generated = to_numpy(generated)
            if generated.ndim == 1:
                generated = generated[None]
            return generated.tolist()
        if generated and isinstance(generated[0], numbers.Number):
            return [list(generated)]
        return [list(s) for s in generated]


__all__ = ["UnivalProcessor"]
