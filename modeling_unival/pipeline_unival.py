"""UnIVAL in `transformers.pipeline`: every task, over images, videos and audio, batched.

Two routes, neither of which changes anything for other models:

* `pipeline("image-text-to-text", model=DIR)` (and `"image-to-text"`, which transformers 5 rewrites to it) builds the
  stock `ImageTextToTextPipeline`: `UnivalProcessor` takes its `processor(images=..., text=...)` call (the text is the
  prompt, or with `task=` the task's field) and its `post_process_image_text_to_text`. It also serves checkpoints
  loaded as remote code (`trust_remote_code=True`) where this package is not installed.
* `pipeline("unival", model=DIR)`: [`UnivalPipeline`], registered under that task name of its own when
  `modeling_unival` is imported. It runs every UnIVAL task on images, videos and audio, captions without a text,
  returns boxes for grounding and cleans captions and answers as the original evaluation.

```python
>>> from transformers import pipeline
>>> unival = pipeline("unival", model="unival-caption")
>>> unival("kitchen.jpg")
[{'generated_text': 'a kitchen with a stove and a sink'}]
>>> unival("kitchen.jpg", text="the stove", task="visual_grounding")
[{'input_text': 'the stove', 'generated_text': '<bin_112><bin_371><bin_548><bin_802>',
  'box': [54.1, 178.2, 263.3, 385.3]}]
>>> unival(["clip.mp4", "dog.wav"], batch_size=8)
>>> pipeline("image-text-to-text", model="unival-vqa")("kitchen.jpg", text="what color is the stove?",
...                                                    return_full_text=False)
```
"""

from __future__ import annotations

import importlib
import logging
import os

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessorList
from transformers.image_utils import load_image
from transformers.pipelines.base import Pipeline

from .constrained_decoding import UnivalLocationLogitsProcessor


# Processor argument of each modality.
_MEDIA_ARGUMENTS = {"image": "images", "video": "videos", "audio": "audio"}
# Keys accepted in a sample given as a dict.
_SAMPLE_KEYS = {"image": "image", "images": "image", "video": "video", "videos": "video", "audio": "audio"}
# `generate()` arguments that are not generation-config fields, accepted as call keywords too.
_GENERATE_ARGUMENTS = {"logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "streamer"}


def is_unival_model(model) -> bool:
    """Whether `model` is a UnIVAL model (from the installed package or from remote code)."""
    return getattr(getattr(model, "config", None), "model_type", None) == "unival"


class UnivalPipeline(Pipeline):
    r"""
    Pipeline of UnIVAL: captioning (images, videos, audio), question answering (images, videos), visual grounding
    and the other UnIVAL tasks.

    Generation follows the checkpoint's `generation_config.json` (the original's settings for the task the checkpoint
    was trained for). Override them per call with `max_new_tokens=` / `generate_kwargs={...}` (or any generation
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

    Batching: `batch_size=N` runs up to N samples per `generate()` call (one processor call, padded once). Samples of
    one call share their task and modality; the questions of the tasks that put them in the decoder (VQA, video QA,
    entailment) are left-padded there, whatever their lengths. The results come back in input order, equal to those
    of `batch_size=1`.

    Returns, for one input, a list with one dict per returned sequence (`num_return_sequences`); for a list of inputs,
    a list of such lists. Each dict has `generated_text` (captions and answers cleaned as in the original
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
    # samples
    # -----------------------------------------------------------------------------------------------------------------
    def _processing_module(self, name: str):
        """`name` from the processor's own package (`processing.<name>` with the installed package)."""
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
            found = self._processing_module("media_io").media_kind(item)
            return "image" if found is None else found[0]  # an unknown extension is left to the image reader
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

    def _sample_task(self, sample: dict, task: str | None, prompt: str | None):
        """The `TaskSpec` a sample runs (`None`: its text, or `prompt`, is the prompt verbatim)."""
        if prompt is not None:
            if sample["text"] is not None:
                raise ValueError("pass either `text` (with a task) or `prompt`, not both")
            return None
        if task is None:
            modality, text = sample["modality"], sample["text"]
            task = ("caption" if modality is not None else None) if text is None else (
                {"image": "vqa", "video": "video_qa"}.get(modality)
            )
        return None if task is None else self._processing_module("tasks").resolve_task(task)

    def _group_key(self, sample: dict, spec) -> tuple:
        """Samples with equal keys run in one `generate()` call: same task and modality. Questions of different
        lengths decode together (left-padded decoder prompts; the decoder counts positions from each row's first
        real token)."""
        return (None if spec is None else spec.name, sample["modality"])

    def _batches(self, samples: list[dict], batch_size: int, task, prompt) -> list[dict]:
        groups: dict[tuple, list[int]] = {}
        specs = [self._sample_task(sample, task, prompt) for sample in samples]
        for index, (sample, spec) in enumerate(zip(samples, specs)):
            groups.setdefault(self._group_key(sample, spec), []).append(index)
        batches = []
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batches.append({"spec": specs[chunk[0]], "indices": chunk, "samples": [samples[i] for i in chunk]})
        return batches

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
            batch_size (`int`, *optional*): samples per `generate()` call (default: the pipeline's, else 1).
            max_new_tokens (`int`, *optional*) / generate_kwargs (`dict`, *optional*): generation settings for this
                call, on top of the checkpoint's generation config. Generation parameters may also be given directly
                as keywords (`num_beams=3`).
            return_tensors (`bool`, *optional*): return `generated_token_ids` instead of text.
            return_full_text (`bool`, *optional*, defaults to `False`): prefix the generated text with the input text.
            processor_kwargs (`dict`, *optional*): extra processor options (e.g. `{"num_frames": 8}`).
            timeout (`float`, *optional*): timeout for image URLs.
        """
        batch_size = kwargs.pop("batch_size", None)
        batch_size = (self._batch_size or 1) if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        kwargs.pop("num_workers", None)  # one processor call per batch: media are decoded there, not in workers
        samples, batched = self._collect_samples(inputs, text, images, videos, audio)
        if kwargs.get("task") is not None and kwargs.get("prompt") is not None:
            raise ValueError("pass either `task` or `prompt`, not both")
        batches = self._batches(samples, batch_size, kwargs.get("task"), kwargs.get("prompt"))
        # Each batch is one input of the base class, which then runs preprocess -> forward -> postprocess on it.
        outputs = super().__call__(batches, batch_size=1, **kwargs)
        results = [None] * len(samples)
        for batch, records in zip(batches, outputs):
            for index, sample_records in zip(batch["indices"], records):
                results[index] = sample_records
        return results if batched else results[0]

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

    def _processor_call(self, batch: dict, prompt: str | None, timeout, processor_kwargs: dict):
        spec, samples = batch["spec"], batch["samples"]
        modality = samples[0]["modality"]
        call = dict(processor_kwargs)
        # a long prompt is truncated to what the model can embed (the processor's default is the released 1024)
        call.setdefault("max_source_length", min(self.processor.max_source_length,
                                                 self.model.config.max_source_positions))
        if modality is not None:
            media = [sample["media"] for sample in samples]
            if modality == "image":
                media = [load_image(m, timeout=timeout) if isinstance(m, str) and m.startswith(("http://", "https://"))
                         else m for m in media]
            call[_MEDIA_ARGUMENTS[modality]] = media
        texts = [sample["text"] for sample in samples]
        if spec is None:
            return self.processor(text=[prompt] * len(samples) if prompt is not None else texts, return_tensors="pt",
                                  **call)
        if spec.output == "box" and modality != "image":
            raise ValueError(f"task {spec.name!r} expects an image per sample")
        return self.processor(
            task=spec.name,
            text=None if all(t is None for t in texts) else texts,
            return_tensors="pt",
            return_image_sizes=modality == "image",
            return_decoder_prompt=self.processor.prompt_type_of(spec.name) == "prev_output",
            **call,
        )

    def preprocess(self, batch, prompt=None, timeout=None, processor_kwargs=None):
        inputs = self._processor_call(batch, prompt, timeout, processor_kwargs or {})
        image_sizes = inputs.pop("image_sizes", None)
        inputs = dict(inputs.to(dtype=self.dtype) if self.dtype is not None else inputs)  # floating tensors only
        decoder_prompt = inputs.get("decoder_input_ids")
        spec = batch["spec"]
        meta = {
            "task": None if spec is None else spec.name,
            "output": None if spec is None else spec.output,
            "input_texts": [prompt] * len(batch["samples"]) if prompt is not None else [
                sample["text"] for sample in batch["samples"]
            ],
            "prompt_length": 1 if decoder_prompt is None else decoder_prompt.shape[1],
            "image_sizes": None if image_sizes is None or not len(image_sizes) else image_sizes.tolist(),
        }
        return {"inputs": inputs, "meta": meta}

    def _forward(self, model_inputs, generate_kwargs=None):
        inputs, meta = dict(model_inputs["inputs"]), model_inputs["meta"]
        generate_kwargs = dict(generate_kwargs or {})
        overrides = {"return_dict_in_generate": False}
        if meta["output"] == "box":
            tasks = self._processing_module("tasks")
            processors = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
            processors.append(
                UnivalLocationLogitsProcessor(self.processor.tokenizer.bin_token_offset, self.processor.num_bins)
            )
            overrides.update(
                logits_processor=processors,
                min_new_tokens=tasks.NUM_LOCATION_TOKENS,
                max_new_tokens=tasks.GROUNDING_GENERATION["max_new_tokens"],
                force_final_eos=True,
            )
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs, **overrides)
        sequences = self.model.generate(**inputs, **generate_kwargs)
        return {"sequences": sequences, "meta": meta}

    def postprocess(self, model_outputs, return_tensors=False, return_full_text=False):
        sequences, meta = model_outputs["sequences"], model_outputs["meta"]
        input_texts = meta["input_texts"]
        per_sample = len(sequences) // len(input_texts)  # num_return_sequences
        if return_tensors:
            # A left-padded decoder prompt (questions of different lengths) leaves `<pad>` in front of a row's
            # `<s>`: returned without it, as the row decoded alone.
            pad = self.processor.tokenizer.pad_token_id
            records = [{"generated_token_ids": sequence[int(sequence.ne(pad).int().argmax()) :]} for sequence in sequences]
        elif meta["task"] is None:
            decoded = self.processor.batch_decode(sequences[:, meta["prompt_length"] :], skip_special_tokens=True)
            records = [{"generated_text": text.strip()} for text in decoded]
        else:
            sizes = None if meta["image_sizes"] is None else [s for s in meta["image_sizes"] for _ in range(per_sample)]
            outputs = self.processor.post_process_generation(
                sequences, meta["task"], image_sizes=sizes, prompt_lengths=meta["prompt_length"]
            )
            records = [
                {"generated_text": out["text"], "box": out["box"]} if isinstance(out, dict) else {"generated_text": out}
                for out in outputs
            ]
        results = []
        for index, input_text in enumerate(input_texts):
            sample_records = records[index * per_sample : (index + 1) * per_sample]
            if input_text is not None:
                if return_full_text and not return_tensors:
                    for record in sample_records:
                        record["generated_text"] = f"{input_text.strip()} {record['generated_text']}".strip()
                sample_records = [{"input_text": input_text, **record} for record in sample_records]
            results.append(sample_records)
        return results

    def save_pretrained(self, save_directory, **kwargs):
        """Save the model and the processor (without a `custom_pipelines` entry: the `"unival"` task comes with the
        package, and a `custom_pipelines` entry would make `pipeline()` demand `trust_remote_code=True` for it)."""
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory, **kwargs)


class _ImageToTextDeprecationRecord(logging.Filter):
    """transformers 5.x logs its rewrite of the removed `"image-to-text"` task to `"image-text-to-text"` with a stray
    `UserWarning` argument (`logger.warning_once(message, UserWarning)`), so formatting the record fails and logging
    prints a `--- Logging error ---` traceback instead of the message, for every model. This filter drops the stray
    argument of that one record, so the message is logged as transformers means it; nothing else is touched."""

    _MESSAGE = "The task `image-to-text` has been removed"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args == (UserWarning,) and str(record.msg).startswith(self._MESSAGE):
            record.args = ()
        return True


def repair_image_to_text_warning() -> None:
    """Install `_ImageToTextDeprecationRecord` on transformers' pipeline logger (idempotent)."""
    logger = logging.getLogger("transformers.pipelines")
    if not any(isinstance(f, _ImageToTextDeprecationRecord) for f in logger.filters):
        logger.addFilter(_ImageToTextDeprecationRecord())


def register_pipeline() -> None:
    """Register [`UnivalPipeline`] under the task name `"unival"` (with `AutoModelForSeq2SeqLM`). Only this new name is
    added to transformers' pipeline registry; every other task keeps its stock pipeline."""
    from transformers import AutoModelForSeq2SeqLM
    from transformers.pipelines import PIPELINE_REGISTRY

    if PIPELINE_REGISTRY.supported_tasks.get("unival", {}).get("impl") is not UnivalPipeline:
        PIPELINE_REGISTRY.register_pipeline(
            "unival", pipeline_class=UnivalPipeline, pt_model=AutoModelForSeq2SeqLM, type="multimodal"
        )


__all__ = ["UnivalPipeline", "is_unival_model", "register_pipeline", "repair_image_to_text_warning"]
