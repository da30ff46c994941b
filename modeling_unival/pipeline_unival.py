"""UnIVAL in `transformers.pipeline`: captioning, question answering and grounding over images, videos and audio.

[`UnivalPipeline`] serves three task names:

* `"image-to-text"`, which transformers 5 rewrites to `"image-text-to-text"` before it looks at its task registry, and
  `"image-text-to-text"` itself. UnIVAL takes this registry entry over with [`UnivalImageTextToTextPipeline`], which
  builds a [`UnivalPipeline`] for UnIVAL models and the stock `ImageTextToTextPipeline`, unchanged, for other models;
* `"unival"`, a task of its own, for videos and audio as well as images.

```python
>>> from transformers import pipeline
>>> captioner = pipeline("image-to-text", model="unival-caption")
>>> captioner("kitchen.jpg")
[{'generated_text': 'a kitchen with a stove and a sink'}]
>>> vqa = pipeline("image-text-to-text", model="unival-vqa")
>>> vqa("kitchen.jpg", text="what color is the stove?")
[{'input_text': 'what color is the stove?', 'generated_text': 'white'}]
>>> vqa("kitchen.jpg", text="the stove", task="visual_grounding")
[{'input_text': 'the stove', 'generated_text': '<bin_112><bin_371><bin_548><bin_802>',
  'box': [54.1, 178.2, 263.3, 385.3]}]
>>> unival = pipeline("unival", model="unival-video-caption")
>>> unival("clip.mp4"), unival(audio="dog.wav")
```

The task registry entries are added by [`register_pipelines`], which runs when this module is imported. This module
is imported by `configuration_unival.py`, so that both routes register them before `pipeline()` resolves its task:
importing the installed package, and loading a checkpoint's configuration with `trust_remote_code=True` (this file is
then one of the remote-code files saved next to the weights). That is also why this file imports nothing from the
UnIVAL packages: it reaches the processor's helper modules (`prompts`, `constants`) through the processor itself.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForSeq2SeqLM, LogitsProcessorList
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import Pipeline
from transformers.pipelines.image_text_to_text import ImageTextToTextPipeline

from .constrained_decoding import UnivalLocationLogitsProcessor


# Processor argument of each modality.
_MEDIA_ARGUMENTS = {"image": "images", "video": "videos", "audio": "audio"}
# Keys accepted in a sample given as a dict.
_SAMPLE_KEYS = {"image": "image", "images": "image", "video": "video", "videos": "video", "audio": "audio"}
_CAPTION_TASKS = ("caption", "image_caption", "video_caption", "audio_caption", "grounded_caption")
_GROUNDING_TASK = "visual_grounding"
_NUM_LOCATION_TOKENS = 4
# `generate()` arguments that are not generation-config fields, accepted as call keywords too.
_GENERATE_ARGUMENTS = {"logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "streamer"}


def is_unival_model(model) -> bool:
    """Whether `model` is a UnIVAL model (from the installed package or from remote code)."""
    return getattr(getattr(model, "config", None), "model_type", None) == "unival"


class UnivalPipeline(Pipeline):
    r"""
    Pipeline of UnIVAL: captioning (images, videos, audio), question answering (images, videos), visual grounding
    and the other UnIVAL tasks, one sample per `generate()` call.

    Generation follows the checkpoint's `generation_config.json` (the original's settings for the task the checkpoint
    was finetuned on). Override them per call with `max_new_tokens=` / `generate_kwargs={...}` (or any generation
    parameter as a keyword), or for every call by passing them to `pipeline(...)`. Visual grounding always decodes
    exactly four location tokens.

    Inputs: a path (the extension tells images, videos and audio apart), a PIL image, an array (1-D: a waveform,
    3-D: an image, 4-D: video frames), or a dict `{"image" | "video" | "audio": ..., "text": ...}`; or a list of
    those. `images=`, `videos=` and `audio=` name the modality explicitly.

    Which task runs:

    - `task=` (a UnIVAL task name or alias, e.g. `"visual_grounding"`, `"image_text_matching"`, `"vqa"`), with
      `text` filling the task's text field (question, referring expression, caption ...);
    - otherwise, without `text`: captioning of the sample's modality; with `text`: VQA for an image, video QA for a
      video, and `text` used verbatim as the prompt for audio and text-only samples;
    - `prompt=`: an encoder prompt used verbatim (no task), e.g. `prompt=" what does the image describe?"`.

    Returns, for one input, a list with one dict per returned sequence (`num_return_sequences`); for a list of inputs,
    a list of such lists. Each dict has `generated_text` (captions and answers are cleaned as in the original
    evaluation), `input_text` when a text or prompt was given, and for visual grounding `box`: `[x0, y0, x1, y1]` in
    pixels of the original image. With `return_tensors=True`, `generated_token_ids` (the whole decoder sequence)
    replaces `generated_text`.
    """

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    _pipeline_calls_generate = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(f"{type(self).__name__} needs the UnIVAL processor saved with the checkpoint")
        if not is_unival_model(self.model):
            raise ValueError(f"{type(self).__name__} serves UnIVAL models, got a {type(self.model).__name__}")

    # -----------------------------------------------------------------------------------------------------------------
    # helpers
    # -----------------------------------------------------------------------------------------------------------------
    def _processing_module(self, name: str):
        """`name` from the processor's own package: `processing.<name>` with the installed package, the copy next to
        the weights with remote code."""
        package = type(self.processor).__module__.rpartition(".")[0]
        try:
            return importlib.import_module(f"{package}.{name}")
        except ImportError as error:
            raise TypeError(
                f"{type(self).__name__} needs a UnIVAL processor (no module {name!r} next to "
                f"{type(self.processor).__module__}): {error}"
            ) from None

    def _infer_modality(self, item) -> str:
        if isinstance(item, Image.Image):
            return "image"
        if isinstance(item, (str, os.PathLike)):
            constants = self._processing_module("constants")
            suffix = Path(str(item).split("?")[0]).suffix.lower()
            if suffix in constants.VIDEO_EXTENSIONS:
                return "video"
            if suffix in constants.AUDIO_EXTENSIONS:
                return "audio"
            return "image"
        if isinstance(item, (np.ndarray, torch.Tensor)):
            modality = {1: "audio", 3: "image", 4: "video"}.get(item.ndim)
            if modality is not None:
                return modality
        raise ValueError(
            f"cannot tell whether a {type(item).__name__} is an image, a video or audio: pass it as `images=`, "
            "`videos=` or `audio=`"
        )

    def _sample(self, item, text, modality=None) -> dict:
        if isinstance(item, dict):
            media_keys = [key for key in item if key in _SAMPLE_KEYS]
            unknown = set(item) - set(_SAMPLE_KEYS) - {"text"}
            if unknown or len(media_keys) > 1:
                raise ValueError(
                    f"a sample dict holds one of {sorted(_SAMPLE_KEYS)} and optionally `text`; got keys {sorted(item)}"
                )
            if text is not None and item.get("text") is not None:
                raise ValueError("pass the text either in the sample dict or as `text=`, not both")
            sample_text = item.get("text", text)
            if not media_keys:
                return {"modality": None, "media": None, "text": sample_text}
            return {"modality": _SAMPLE_KEYS[media_keys[0]], "media": item[media_keys[0]], "text": sample_text}
        if item is None:
            return {"modality": None, "media": None, "text": text}
        return {"modality": modality or self._infer_modality(item), "media": item, "text": text}

    def _collect_samples(self, inputs, text, images, videos, audio) -> tuple[list[dict], bool]:
        given = [(name, value) for name, value in (("inputs", inputs), ("images", images), ("videos", videos),
                                                   ("audio", audio)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"pass the inputs once (got {' and '.join(name for name, _ in given)})")
        if given:
            name, source = given[0]
            modality = {"images": "image", "videos": "video", "audio": "audio"}.get(name)
        elif text is not None:
            source, modality = (None if isinstance(text, str) else [None] * len(text)), None
        else:
            raise ValueError("nothing to process: pass an image, a video, an audio clip or a text")
        batched = isinstance(source, (list, tuple))
        items = list(source) if batched else [source]
        if not items:
            raise ValueError("the list of inputs is empty")
        if text is None or isinstance(text, str):
            texts = [text] * len(items)
        elif isinstance(text, (list, tuple)):
            if not batched or len(text) != len(items):
                raise ValueError(f"got {len(text)} texts for {len(items) if batched else 'a single'} input(s)")
            texts = list(text)
        else:
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}")
        return [self._sample(item, t, modality) for item, t in zip(items, texts)], batched

    @staticmethod
    def _default_task(modality: str | None, text: str | None) -> str | None:
        if text is None:
            return "caption" if modality is not None else None
        return {"image": "vqa", "video": "video_qa"}.get(modality)

    # -----------------------------------------------------------------------------------------------------------------
    # Pipeline API
    # -----------------------------------------------------------------------------------------------------------------
    def __call__(self, inputs=None, text=None, *, images=None, videos=None, audio=None, **kwargs):
        """
        Run UnIVAL on one input or a list of inputs (see the class docstring).

        Args:
            inputs: a path, a PIL image, an array, a sample dict, or a list of them.
            text (`str` or `list[str]`, *optional*): the question / referring expression / caption of the task; one
                string applies to every input.
            images / videos / audio: the inputs, naming their modality (instead of `inputs`).
            task (`str`, *optional*): a UnIVAL task name or alias (`"visual_grounding"`, `"vqa"`, ...).
            prompt (`str`, *optional*): an encoder prompt used verbatim instead of a task.
            max_new_tokens (`int`, *optional*) / generate_kwargs (`dict`, *optional*): generation settings for this
                call, on top of the checkpoint's generation config. Generation parameters may also be given directly
                as keywords (`num_beams=3`).
            return_tensors (`bool`, *optional*): return `generated_token_ids` instead of text.
            return_full_text (`bool`, *optional*, defaults to `False`): prefix the generated text with the input text.
            processor_kwargs (`dict`, *optional*): extra processor options (e.g. `{"num_frames": 8}`).
            timeout (`float`, *optional*): timeout for image URLs.
        """
        batch_size = kwargs.get("batch_size") or self._batch_size
        if batch_size not in (None, 1):
            raise ValueError(f"{type(self).__name__} runs one sample per forward pass; batch_size must be 1")
        samples, batched = self._collect_samples(inputs, text, images, videos, audio)
        return super().__call__(samples if batched else samples[0], **kwargs)

    def _sanitize_parameters(
        self,
        task=None,
        prompt=None,
        max_new_tokens=None,
        generate_kwargs=None,
        return_tensors=None,
        return_full_text=None,
        processor_kwargs=None,
        timeout=None,
        **kwargs,
    ):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if task is not None and prompt is not None:
            raise ValueError("pass either `task` or `prompt`, not both")
        if task is not None:
            preprocess_params["task"] = task
        if prompt is not None:
            preprocess_params["prompt"] = prompt
        if timeout is not None:
            preprocess_params["timeout"] = timeout

        generation_keys = set(self.model.generation_config.to_dict()) | _GENERATE_ARGUMENTS
        generate_kwargs = dict(generate_kwargs or {})
        processor_kwargs = dict(processor_kwargs or {})
        for key, value in kwargs.items():
            (generate_kwargs if key in generation_keys else processor_kwargs)[key] = value
        if max_new_tokens is not None:
            if "max_new_tokens" in generate_kwargs:
                raise ValueError("`max_new_tokens` is given twice, as a parameter and in `generate_kwargs`")
            generate_kwargs["max_new_tokens"] = max_new_tokens
        if generate_kwargs:
            forward_params["generate_kwargs"] = generate_kwargs
        if processor_kwargs:
            preprocess_params["processor_kwargs"] = processor_kwargs

        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        if return_full_text is not None:
            postprocess_params["return_full_text"] = return_full_text
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, sample, task=None, prompt=None, timeout=None, processor_kwargs=None):
        modality, media, text = sample["modality"], sample["media"], sample["text"]
        if modality == "image" and isinstance(media, str) and media.startswith(("http://", "https://")):
            media = load_image(media, timeout=timeout)
        call_kwargs = dict(processor_kwargs or {})
        if modality is not None:
            call_kwargs[_MEDIA_ARGUMENTS[modality]] = media

        spec = None
        if prompt is not None:
            if text is not None:
                raise ValueError("pass either `text` (with a task) or `prompt`, not both")
            input_text = prompt
            inputs = self.processor(text=prompt, return_tensors="pt", **call_kwargs)
        else:
            input_text = text
            task = task if task is not None else self._default_task(modality, text)
            if task is None:
                inputs = self.processor(text=text, return_tensors="pt", **call_kwargs)
            else:
                spec = self._processing_module("tasks").resolve_task(task)
                prev_output = self.processor.prompt_type_of(spec.name) == "prev_output"
                inputs = self.processor(
                    task=spec.name,
                    text=text,
                    return_tensors="pt",
                    return_image_sizes=modality == "image",
                    return_decoder_prompt=prev_output,
                    **call_kwargs,
                )
        image_sizes = inputs.pop("image_sizes", None)
        inputs = dict(inputs.to(dtype=self.dtype) if self.dtype is not None else inputs)  # floating tensors only
        # One unpadded sample: the decoder prompt (prev_output layout) needs no mask.
        inputs.pop("decoder_attention_mask", None)
        decoder_prompt = inputs.get("decoder_input_ids")
        meta = {
            "task": spec.name if spec is not None else None,
            "input_text": input_text,
            "prompt_length": 1 if decoder_prompt is None else decoder_prompt.shape[1],
            "prev_output": spec is not None and prev_output,
            "image_size": None if image_sizes is None or not len(image_sizes) else image_sizes[0].tolist(),
        }
        if meta["task"] == _GROUNDING_TASK and meta["image_size"] is None:
            raise ValueError("visual grounding needs an image")
        return {"inputs": inputs, "meta": meta}

    def _location_logits_processor(self) -> UnivalLocationLogitsProcessor:
        constants = self._processing_module("constants")
        first = self.processor.tokenizer.convert_tokens_to_ids(constants.BIN_TOKEN_TEMPLATE.format(0))
        return UnivalLocationLogitsProcessor(first, self.processor.num_bins)

    def _forward(self, model_inputs, generate_kwargs=None):
        inputs, meta = dict(model_inputs["inputs"]), model_inputs["meta"]
        generate_kwargs = dict(generate_kwargs or {})
        overrides = {"return_dict_in_generate": False}
        if meta["task"] == _GROUNDING_TASK:
            processors = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
            processors.append(self._location_logits_processor())
            overrides.update(
                logits_processor=processors,
                min_new_tokens=_NUM_LOCATION_TOKENS,
                max_new_tokens=_NUM_LOCATION_TOKENS,
            )
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs, **overrides)
        sequences = self.model.generate(**inputs, **generate_kwargs)
        return {"sequences": sequences, "meta": meta}

    def postprocess(self, model_outputs, return_tensors=False, return_full_text=False):
        sequences, meta = model_outputs["sequences"], model_outputs["meta"]
        task, input_text = meta["task"], meta["input_text"]
        if return_tensors:
            records = [{"generated_token_ids": sequence} for sequence in sequences]
        elif task == _GROUNDING_TASK:
            results = self.processor.post_process_grounding(sequences, [meta["image_size"]] * len(sequences))
            records = [{"generated_text": result["text"], "box": result["box"]} for result in results]
        else:
            if meta["prev_output"]:
                texts = self.processor.post_process_vqa(sequences, prompt_lengths=meta["prompt_length"])
            elif task in _CAPTION_TASKS:
                texts = self.processor.post_process_caption(sequences)
            else:
                decoded = self.processor.batch_decode(sequences[:, meta["prompt_length"] :], skip_special_tokens=True)
                texts = [text.strip() for text in decoded]
            if return_full_text and input_text is not None:
                texts = [f"{input_text.strip()} {text}".strip() for text in texts]
            records = [{"generated_text": text} for text in texts]
        if input_text is not None:
            records = [{"input_text": input_text, **record} for record in records]
        return records

    def save_pretrained(self, save_directory, **kwargs):
        """Save the model and the processor. The pipeline code needs no `custom_pipelines` entry: it travels with the
        model's remote code (see the module docstring)."""
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory, **kwargs)


class UnivalImageTextToTextPipeline(UnivalPipeline):
    """
    The `"image-text-to-text"` task (and `"image-to-text"`, which transformers 5 rewrites to it) once UnIVAL is
    registered: a [`UnivalPipeline`] for UnIVAL models, the stock [`ImageTextToTextPipeline`] for every other model,
    built exactly as `pipeline()` would have built it.
    """

    # `pipeline()` reads these from the registered class before it knows which pipeline it gets: keep the stock ones.
    _load_processor = ImageTextToTextPipeline._load_processor
    _load_image_processor = ImageTextToTextPipeline._load_image_processor
    _load_video_processor = ImageTextToTextPipeline._load_video_processor
    _load_feature_extractor = ImageTextToTextPipeline._load_feature_extractor
    _load_tokenizer = ImageTextToTextPipeline._load_tokenizer

    def __new__(cls, *args, **kwargs):
        model = kwargs["model"] if "model" in kwargs else (args[0] if args else None)
        if not is_unival_model(model):
            return ImageTextToTextPipeline(*args, **kwargs)
        return super().__new__(cls)


def register_pipelines() -> None:
    """
    Register UnIVAL with the `transformers` pipeline registry (idempotent):

    - `"image-text-to-text"` (also reached by `"image-to-text"`): [`UnivalImageTextToTextPipeline`], which keeps the
      stock pipeline for every other model; the entry keeps its stock model classes and defaults.
    - `"unival"`: [`UnivalPipeline`] with `AutoModelForSeq2SeqLM`.

    The entries are written directly rather than with `PIPELINE_REGISTRY.register_pipeline`, which warns when a task
    is registered again (this runs for the installed package and again for each remote-code copy) and marks the class
    for a `custom_pipelines` entry on `save_pretrained`, which would make the saved checkpoint require
    `trust_remote_code=True` even where the package is installed.
    """
    supported = PIPELINE_REGISTRY.supported_tasks
    supported["image-text-to-text"] = {**supported["image-text-to-text"], "impl": UnivalImageTextToTextPipeline}
    supported["unival"] = {"impl": UnivalPipeline, "pt": (AutoModelForSeq2SeqLM,), "type": "multimodal"}


register_pipelines()

__all__ = [
    "UnivalImageTextToTextPipeline",
    "UnivalLocationLogitsProcessor",
    "UnivalPipeline",
    "is_unival_model",
    "register_pipelines",
]
