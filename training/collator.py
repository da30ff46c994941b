"""Multitask collator of UnIVAL: a list of schema examples (any tasks, any modalities) -> one batch for the model.

```python
from torch.utils.data import DataLoader
from training.collator import UnivalMultitaskCollator

collator = UnivalMultitaskCollator(processor)                 # processor: a UnivalProcessor
loader = DataLoader(dataset["train"], batch_size=32, collate_fn=collator)
loss = model(**next(iter(loader))).loss
```

Each example follows `training.data.schema` (raw fields only). The collator

* builds the example's prompt with `processing.prompts.build_prompt` (through the processor, so that its
  `audio_prompt` / `num_bins` apply) and its target with `processing.prompts.build_target`:

  ============================================== ======================================= ==========================
  task                                           prompt fields                           target
  ============================================== ======================================= ==========================
  caption / video_caption / audio_caption        the modality's caption prompt           `target` (cleaned caption)
  vqa / video_qa                                 `question`                              `target` (best answer) [1]
  qa_matching                                    `question`, `text` (candidate answer)   yes / no
  visual_grounding                               `text` (referring expression)           4 bins of `boxes[0]` [2]
  grounded_caption                               4 bins of `boxes[0]` [2]                `target` (cleaned caption)
  image/video/audio_text_matching                `text` (caption)                        yes / no
  visual_entailment                              `text` (hypothesis; premise unused [3]) yes / no / maybe
  ============================================== ======================================= ==========================

  [1] `label_weights` = the confidence of the trained answer (the original weights the VQA loss by it); 1.0 for every
  other task. With `sample_answers=True` (training only) the answer is drawn among `answers` with probabilities
  proportional to their confidences (seeded), and weighted by its own confidence.
  [2] pixel box of the ORIGINAL image, normalised by its width (x) and height (y): the processor resizes every image
  to a square, so a coordinate relative to the original image equals the coordinate relative to the processed one
  (the original RefCOCO pipeline: resize to S x S, scale by (S / w, S / h), divide by S = max_image_size = 512).
  [3] as UnIVAL's SNLI-VE recipe; `use_premise=True` gives the OFA prompt with the premise.

* hands media to the processor undecoded where it can (image paths / bytes / PIL images, video and audio paths), in
  ONE processor call for the whole batch (one padding of the prompts, one tensor per modality);
* lays out the decoder side per example: VQA, video QA and visual entailment use the "prev_output" layout of the
  original finetuning (decoder input `<s>` + prompt + target, labels -100 over the prompt), the other tasks the plain
  one (`<s>` + target). Mixed layouts are built by the processor's own target builder (once per layout present in
  the batch) and merged into one right-padded batch, so the prev_output logic lives only in `processing`.

The batch is a plain `dict` of tensors with exactly the keys `UnivalForConditionalGeneration.forward` takes:
`input_ids`, `attention_mask`, `pixel_values` / `pixel_values_videos` / `audio_values` (those present),
`patch_types` (when any example has media), `decoder_input_ids`, `decoder_attention_mask`, `labels`,
`label_weights`. `collate_with_meta` returns `(batch, meta)` with per-example meta (id, task, prompt, target, ...)
kept apart from the model inputs. `last_task_counts` / `task_counts` count the tasks of the last / all batches built
by this collator object (with DataLoader workers, each worker counts its own batches: use `collate_with_meta`).

Evaluation: `iter_generation_batches(examples, batch_size)` groups examples by task and modality and yields
`GenerationBatch`es with the `generate()` inputs (for prev_output tasks the questions left-padded in the decoder,
with `decoder_attention_mask`), the references and the task's original generation settings;
`build_generation_inputs(examples)` builds one such batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from processing import tasks as task_lib
from processing.constants import MODALITY_NAMES


_MEDIA_MODALITIES = tuple(MODALITY_NAMES.values())
#: Output kinds the collator builds targets for (`<code_i>` image generation is not ported).
_SUPPORTED_OUTPUTS = ("caption", "answer", "label", "box")
#: The model's inputs, in the order the batch dict lists them.
MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "pixel_values_videos",
    "audio_values",
    "patch_types",
    "decoder_input_ids",
    "decoder_attention_mask",
    "labels",
    "label_weights",
)


class GenerationBatch(NamedTuple):
    """One `generate()` call of an evaluation:
    `model.generate(**batch.inputs, generation_config=batch.generation_config())`.

    `task`: canonical task name; `prompt_type`: "none" or "prev_output"; `inputs`: dict of tensors (with
    `decoder_input_ids` = `<s>` + prompt for prev_output tasks); `references`: one dict per example (see
    `UnivalMultitaskCollator.reference`); `decoder_prompt_length`: decoder columns before the generated tokens (1,
    or for prev_output the width of the left-padded prompts), e.g. for
    `processor.post_process_vqa(out, prompt_lengths=batch.decoder_prompt_length)`.
    """

    task: str
    prompt_type: str
    inputs: dict
    references: list
    decoder_prompt_length: int

    def generation_config(self, **overrides):
        """The original's generation settings of the batch's task, updated with `overrides` (the task registry's
        `generation_config`: greedy overrides get neutral beam-only settings, so `generate()` does not warn)."""
        if self.task == "mixed":
            raise ValueError("a batch of several tasks has no generation settings of its own; pass them to generate()")
        return task_lib.generation_config(self.task, **overrides)


def _as_example_list(examples) -> list[dict]:
    """A list of example dicts from a list of dicts or a dict of columns (`dataset[:8]`)."""
    if isinstance(examples, Mapping):
        columns = {k: list(v) for k, v in examples.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError("a batch given as columns must have columns of one length")
        (n,) = lengths
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    examples = list(examples)
    for index, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise TypeError(f"example {index} is a {type(example).__name__}, expected a dict (schema example)")
    return examples


def _describe(example: Mapping, index: int) -> str:
    ident = example.get("id")
    return f"example {index}" + (f" ({ident})" if ident else "")


class UnivalMultitaskCollator:
    """Turns a list of schema examples (mixed tasks and modalities) into one batch for `UnivalForConditionalGeneration`.

    Args:
        processor: a `UnivalProcessor` (its sizes, `audio_prompt`, `num_bins`, limits and decoder layouts apply:
            `processor.prompt_type_of(task)`, by default prev_output for vqa, video_qa and visual_entailment and the
            plain layout otherwise; a processor's `prompt_types` changes them).
        max_target_length / max_source_length: decoder / prompt token limits (default: the processor's).
        training: training batches (enables `sample_answers`); `False` for validation batches (deterministic).
        seed: seed of the answer sampling (each DataLoader worker derives its own stream from it).
        sample_answers: in training, draw the VQA / video QA answer among `answers` by confidence instead of using
            the schema's `target` (the best answer). Off by default (the original trains on the best answer).
        clean_captions: clean caption targets as the original finetuning (punctuation removed, at most 20 words).
        use_premise: visual entailment prompt with the premise (OFA); UnIVAL does not use it (default False).
        clip_boxes: clip boxes that leave the image before quantising (instead of raising).
        images_kwargs / videos_kwargs / audio_kwargs: options passed to the processor's sub-processors on every call
            (e.g. `videos_kwargs={"do_sample_frames": "random"}`, `audio_kwargs={"crop_mode": "random"}`).
    """

    def __init__(
        self,
        processor,
        *,
        max_target_length: int | None = None,
        max_source_length: int | None = None,
        training: bool = True,
        seed: int | None = None,
        sample_answers: bool = False,
        clean_captions: bool = True,
        use_premise: bool = False,
        clip_boxes: bool = True,
        images_kwargs: Mapping[str, Any] | None = None,
        videos_kwargs: Mapping[str, Any] | None = None,
        audio_kwargs: Mapping[str, Any] | None = None,
    ):
        self.processor = processor
        if max_target_length is None:
            max_target_length = processor.max_target_length
        if max_source_length is None:
            max_source_length = processor.max_source_length
        self.max_target_length = int(max_target_length)
        self.max_source_length = int(max_source_length)
        if self.max_target_length < 2 or self.max_source_length < 2:
            raise ValueError("max_target_length and max_source_length must be at least 2")
        self.training = bool(training)
        self.seed = seed
        self.sample_answers = bool(sample_answers)
        self.clean_captions = bool(clean_captions)
        self.use_premise = bool(use_premise)
        self.clip_boxes = bool(clip_boxes)
        self.images_kwargs = dict(images_kwargs or {})
        self.videos_kwargs = dict(videos_kwargs or {})
        self.audio_kwargs = dict(audio_kwargs or {})
        self.last_task_counts: dict[str, int] = {}
        self.task_counts: Counter = Counter()
        self._rngs: dict[int, np.random.Generator] = {}

    # ---------------------------------------------------------------------------------------------------------------
    # Public entry points
    # ---------------------------------------------------------------------------------------------------------------
    def __call__(self, examples) -> dict[str, torch.Tensor]:
        """The model inputs of a batch (a dict of tensors for `model(**batch)`)."""
        return self.collate_with_meta(examples)[0]

    def collate_with_meta(self, examples) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """`(batch, meta)`: the model inputs and one dict per example (`id`, `task`, `modality`, `prompt_type`,
        `prompt`, `target`, `label_weight`). Pass only `batch` to the model."""
        examples = _as_example_list(examples)
        if not examples:
            raise ValueError("empty batch")
        items = [self._prepare(example, index, with_target=True) for index, example in enumerate(examples)]
        try:
            encoded = self._process(items, with_targets=True)
        except ValueError as error:
            raise ValueError(f"{error} (batch of examples {[item['id'] or i for i, item in enumerate(items)]})") from None
        batch = {
            key: torch.from_numpy(np.ascontiguousarray(encoded[key])) for key in MODEL_INPUT_KEYS if key in encoded
        }
        counts = Counter(item["task"] for item in items)
        self.last_task_counts = dict(counts)
        self.task_counts.update(counts)
        meta = [
            {
                "id": item["id"],
                "task": item["task"],
                "modality": item["modality"],
                "prompt_type": item["prompt_type"],
                "prompt": item["prompt"],
                "target": item["target"],
                "label_weight": item["label_weight"],
            }
            for item in items
        ]
        return batch, meta

    # ---------------------------------------------------------------------------------------------------------------
    # Per-example text
    # ---------------------------------------------------------------------------------------------------------------
    def task_of(self, example: Mapping) -> str:
        """Canonical task name of an example (`processing.prompts` name; schema names are canonical already)."""
        task = example.get("task")
        if not task:
            raise ValueError("example has no task")
        spec = task_lib.resolve_task(task)
        if spec.output not in _SUPPORTED_OUTPUTS:
            raise ValueError(f"task {task!r} is not supported by the multitask collator")
        return spec.name

    def modality_of(self, example: Mapping) -> str:
        """`image` / `video` / `audio` / `text` (from the example, else the task's usual modality)."""
        modality = example.get("modality")
        if modality:
            if modality not in _MEDIA_MODALITIES + ("text",):
                raise ValueError(f"unknown modality {modality!r}")
            return modality
        return MODALITY_NAMES.get(task_lib.resolve_task(example["task"]).default_modality, "text")

    def prompt_type_of(self, task: str) -> str:
        return self.processor.prompt_type_of(task)

    def image_size_of(self, example: Mapping) -> tuple[int, int]:
        """Original `(height, width)` of an example's image (only the file header is read)."""
        image = self._media_item(example, "image")
        return tuple(int(v) for v in self.processor.image_processor.get_image_sizes([image])[0])

    def build_prompt(self, example: Mapping) -> str:
        """The encoder prompt of an example (exact original strings, see `processing.tasks`). Schema columns fill the
        task's prompt fields: `question` the question, `text` the task's primary field (the caption to check, the
        referring expression, the hypothesis, the candidate answer of QA matching), `premise` the premise when
        `use_premise`; grounded captioning takes its region from `boxes[0]`."""
        spec = task_lib.resolve_task(self.task_of(example))
        modality = self.modality_of(example)
        fields: dict[str, Any] = {}
        for name in spec.prompt_fields:
            if name == "question":
                fields[name] = example.get("question")
            elif name == "region":
                fields.update(box=self._first_box(example), image_size=self.image_size_of(example), clip=self.clip_boxes)
            else:
                fields[name] = example.get("text")
        if "premise" in spec.optional_fields and self.use_premise and example.get("premise"):
            fields["premise"] = example["premise"]
        medium = modality if modality in _MEDIA_MODALITIES else None
        return self.processor.build_prompt(spec.name, modality=medium, **fields)

    def build_target(self, example: Mapping, answer: str | None = None) -> str:
        """The decoder target text of an example, by its task's output kind (`answer` overrides the VQA answer)."""
        spec = task_lib.resolve_task(self.task_of(example))
        target = example.get("target")
        if spec.output == "caption":
            return task_lib.build_target(spec, caption=target, clean=self.clean_captions)
        if spec.output == "answer":
            return task_lib.build_target(spec, answer=answer if answer is not None else target)
        if spec.output == "label":
            return task_lib.build_target(spec, label=target)
        return self.processor.build_target(
            spec.name, box=self._first_box(example), image_size=self.image_size_of(example), clip=self.clip_boxes
        )

    def reference(self, example: Mapping) -> dict:
        """What an evaluation compares a generated output with: `id`, `task`, `target`, `answers`,
        `answer_confidences`, and for grounding `box` (pixels) and `image_size` (original (height, width), for
        `processor.post_process_grounding`)."""
        task = self.task_of(example)
        ref = {
            "id": example.get("id"),
            "task": task,
            "target": example.get("target"),
            "answers": list(example.get("answers") or []),
            "answer_confidences": [float(c) for c in (example.get("answer_confidences") or [])],
        }
        if "region" in task_lib.TASKS[task].prompt_fields or task_lib.TASKS[task].output == "box":
            ref["box"] = [float(v) for v in self._first_box(example)]
            ref["image_size"] = self.image_size_of(example)
        return ref

    # ---------------------------------------------------------------------------------------------------------------
    # Evaluation
    # ---------------------------------------------------------------------------------------------------------------
    def build_generation_inputs(self, examples) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """`(inputs, references)` for one `generate()` call. All examples must share the decoder layout (use
        `iter_generation_batches` to group any list of examples)."""
        batch = self._generation_batch(_as_example_list(examples))
        return batch.inputs, batch.references

    def iter_generation_batches(self, examples: Iterable, batch_size: int, num_workers: int = 0):
        """Yield `GenerationBatch`es over `examples`, grouped by task and modality, at most `batch_size` examples
        each, groups in order of first appearance. Media are loaded batch by batch: with `num_workers > 0`, in that
        many DataLoader worker processes, ahead of the model (the batches still arrive in order)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        groups: dict[tuple, list[dict]] = {}
        for example in _as_example_list(examples):
            task = self.task_of(example)
            key: tuple = (task, self.modality_of(example), self.prompt_type_of(task))
            groups.setdefault(key, []).append(example)
        chunks = [members[start : start + batch_size] for members in groups.values()
                  for start in range(0, len(members), batch_size)]
        if num_workers == 0:
            yield from map(self._generation_batch, chunks)
            return
        # Each chunk is one batch already: no sampler batching, the collator builds it in a worker.
        yield from DataLoader(chunks, batch_size=None, shuffle=False, num_workers=num_workers,
                              collate_fn=self._generation_batch)

    def _generation_batch(self, examples: list[dict]) -> GenerationBatch:
        if not examples:
            raise ValueError("no examples")
        items = [self._prepare(example, index, with_target=False) for index, example in enumerate(examples)]
        tasks = {item["task"] for item in items}
        layouts = {item["prompt_type"] for item in items}
        if len(layouts) > 1:
            raise ValueError(
                "examples with the prev_output layout and the plain one cannot share a generate() call; "
                "use iter_generation_batches"
            )
        (layout,) = layouts
        encoded = self._process(items, decoder_prompt=layout == "prev_output")
        # prev_output prompts are left-padded: the generated tokens start at the same column in every row.
        decoder_prompt_length = int(encoded["decoder_input_ids"].shape[1]) if layout == "prev_output" else 1
        keys = MODEL_INPUT_KEYS[:6] + ("decoder_input_ids", "decoder_attention_mask")
        inputs = {key: torch.from_numpy(np.ascontiguousarray(encoded[key])) for key in keys if key in encoded}
        task = tasks.pop() if len(tasks) == 1 else "mixed"
        references = [self.reference(example) for example in examples]
        return GenerationBatch(task, layout, inputs, references, decoder_prompt_length)

    # ---------------------------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------------------------
    def _first_box(self, example: Mapping):
        boxes = example.get("boxes") or []
        if len(boxes) < 1:
            raise ValueError(f"task {example.get('task')!r} needs a box in `boxes`")
        return list(boxes[0])

    def _media_item(self, example: Mapping, modality: str):
        """What the processor is given for an example's media: an image (path, bytes or PIL image; a
        `datasets.Image(decode=False)` dict gives its bytes or path), or the video / audio path."""
        if modality == "image":
            image = example.get("image")
            if isinstance(image, Mapping):
                image = image.get("bytes") or image.get("path")
            if image is None:
                image = example.get("media_path")
            if image is None:
                raise ValueError("image example without `image` or `media_path`")
            return image
        path = example.get("media_path")
        if not path:
            raise ValueError(f"{modality} example without `media_path`")
        return path

    def _rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        if worker not in self._rngs:
            entropy = [self.seed if self.seed is not None else np.random.SeedSequence().entropy, worker + 1]
            self._rngs[worker] = np.random.default_rng(entropy)
        return self._rngs[worker]

    def _answer(self, example: Mapping) -> tuple[str, float]:
        """(answer, confidence) trained for a VQA-like example."""
        target = example.get("target")
        answers = list(example.get("answers") or [])
        confidences = [float(c) for c in (example.get("answer_confidences") or [])]
        if len(confidences) != len(answers):
            confidences = [1.0] * len(answers)
        if self.training and self.sample_answers and answers:
            weights = np.asarray(confidences, dtype=np.float64)
            if weights.sum() > 0:
                choice = int(self._rng().choice(len(answers), p=weights / weights.sum()))
                return answers[choice], confidences[choice]
        if not target:
            if not answers:
                raise ValueError("VQA example without target or answers")
            best = max(range(len(answers)), key=lambda i: (confidences[i], -i))
            return answers[best], confidences[best]
        weight = confidences[answers.index(target)] if target in answers else 1.0
        return target, weight

    def _prepare(self, example: Mapping, index: int, *, with_target: bool) -> dict:
        try:
            task = self.task_of(example)
            modality = self.modality_of(example)
            item = {
                "id": example.get("id"),
                "task": task,
                "modality": modality,
                "prompt_type": self.prompt_type_of(task),
                "media": self._media_item(example, modality) if modality in _MEDIA_MODALITIES else None,
                "prompt": self.build_prompt(example),
                "target": None,
                "label_weight": 1.0,
            }
            if with_target:
                answer = None
                if task_lib.TASKS[task].output == "answer":
                    answer, item["label_weight"] = self._answer(example)
                item["target"] = self.build_target(example, answer=answer)
                if not item["target"].strip():
                    raise ValueError("empty target")
        except (ValueError, TypeError, KeyError) as error:
            raise type(error)(f"{_describe(example, index)}, task {example.get('task')!r}: {error}") from None
        return item

    def _process(self, items: list[dict], decoder_prompt: bool = False, with_targets: bool = False) -> dict:
        """One processor call: prompts, media of every modality, patch_types and, `with_targets`, the decoder side
        of every example in its own layout (numpy arrays)."""
        media = {m: [item["media"] if item["modality"] == m else None for item in items] for m in _MEDIA_MODALITIES}
        kwargs = {}
        if decoder_prompt:
            kwargs = {"prompt_type": "prev_output", "return_decoder_prompt": True}
        if with_targets:
            kwargs = {
                "targets": [item["target"] for item in items],
                "prompt_type": [item["prompt_type"] for item in items],
                "label_weights": [item["label_weight"] for item in items],
                "max_target_length": self.max_target_length,
            }
        out = self.processor(
            text=[item["prompt"] for item in items],
            images=media["image"] if any(v is not None for v in media["image"]) else None,
            videos=media["video"] if any(v is not None for v in media["video"]) else None,
            audio=media["audio"] if any(v is not None for v in media["audio"]) else None,
            max_source_length=self.max_source_length,
            images_kwargs=self.images_kwargs,
            videos_kwargs=self.videos_kwargs,
            audio_kwargs=self.audio_kwargs,
            **kwargs,
        )
        return dict(out)

    def _prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        ids = self.processor.tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]
        return [list(row)[: self.max_source_length] for row in ids]


__all__ = ["GenerationBatch", "MODEL_INPUT_KEYS", "UnivalMultitaskCollator"]
