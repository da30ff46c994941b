"""Model cards of UnIVAL model directories, stating what the weights are from facts, not from a template.

    write_model_card(directory, provenance, task=None, *, repo_id=None, tags=())

writes `directory/README.md` for a directory that `save_pretrained` has already filled. The card says

* where the weights come from (`provenance`): a markdown sentence of the writer's own, e.g.
  "a finetune of unival-base on COCO for `caption`", "an interpolation of A and B with weight 0.3",
  "randomly initialised, preset `unival-tiny`"; or a [`ConvertedCheckpoint`], whose sentence is built from the
  facts of a conversion: the source file and its sha256, and the architecture found compared with the released
  `unival-base` one ([`architecture_differences`]);
* the architecture, read from the directory's `config.json`, next to the released one, with parameter counts;
* the task, its prompt and the generation settings of the directory's `generation_config.json`, when `task` is
  given, and a usage snippet;
* the original authors' reported results only for a conversion with the released architecture, labelled as theirs;
* the port's limitations, license and citation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import GenerationConfig

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.configuration_unival import PANN_PRESETS, RESNET_DEPTHS, RESNEXT3D_PRESETS
from processing.tasks import TaskSpec, resolve_task


RELEASED_PRESET = "unival-base"
PAPER_TITLE = "Unified Model for Image, Video, Audio and Language Tasks"
PAPER_URL = "https://arxiv.org/abs/2307.16184"
ORIGINAL_CODE_URL = "https://github.com/mshukor/UnIVAL"
CITATION = """@article{shukor2023unival,
  title   = {Unified Model for Image, Video, Audio and Language Tasks},
  author  = {Shukor, Mustafa and Dancette, Corentin and Rame, Alexandre and Cord, Matthieu},
  journal = {Transactions on Machine Learning Research},
  year    = {2023}
}"""

# Results reported by the original authors for their released finetuned checkpoints (their README). They are the
# ORIGINAL models' numbers, not measured on this port.
REPORTED_RESULTS = [
    ("visual grounding", "RefCOCO val / testA / testB", "Acc@0.5", "89.1 / 91.5 / 85.2"),
    ("visual grounding", "RefCOCO+ val / testA / testB", "Acc@0.5", "82.2 / 86.9 / 75.3"),
    ("visual grounding", "RefCOCOg val-u / test-u", "Acc@0.5", "84.7 / 85.2"),
    ("image captioning", "COCO Karpathy test", "CIDEr", "137.0"),
    ("VQA", "VQAv2 test-dev / test-std", "Acc", "77.0 / 77.1"),
    ("visual entailment", "SNLI-VE val / test", "Acc", "78.2 / 78.6"),
    ("video QA", "MSRVTT-QA test", "Acc", "43.5"),
    ("video captioning", "MSR-VTT test", "CIDEr", "60.5"),
    ("audio captioning", "AudioCaps test", "CIDEr", "71.3"),
]

_USAGE = {"image": 'images="photo.jpg"', "video": 'videos="clip.mp4"', "audio": 'audio="sound.wav"'}
_TOWER_TAGS = {"image": "image-to-text", "video": "video-text-to-text", "audio": "audio-text-to-text"}


# --------------------------------------------------------------------------------------------------------------------
# Architecture facts
# --------------------------------------------------------------------------------------------------------------------
#: The image towers the original offers: its ResNet depths, at the standard widths.
_RESNET_PRESETS = {
    name: {"depths": depths, "hidden_sizes": (256, 512, 1024, 2048)} for name, depths in RESNET_DEPTHS.items()
}


def _preset_of(tower, presets: dict[str, dict]) -> str | None:
    """The name of the first of `presets` (name -> fields) whose every field the tower config `tower` has, or None.
    Lists compare as tuples: a config holds lists, the presets tuples."""
    for name, preset in presets.items():
        ours = {key: getattr(tower, key) for key in preset}
        if all((tuple(value) if isinstance(value, list) else value) == preset[key] for key, value in ours.items()):
            return name
    return None


#: Per modality: the original's presets of that tower, its table line when it is one of them (from the tower config
#: and the preset's name) and its line otherwise (its shape).
_TOWER_LINES: dict[str, tuple[dict[str, dict], Callable[[object, str], str], Callable[[object], str]]] = {
    "image": (
        _RESNET_PRESETS,
        lambda image, name: f"ResNet-{name.removeprefix('resnet')}",
        lambda image: f"ResNet, depths {tuple(image.depths)}, widths {tuple(image.hidden_sizes)}",
    ),
    "video": (
        RESNEXT3D_PRESETS,
        lambda video, name: f"3D ResNeXt `{name}`, {len(video.depths)} stages",
        lambda video: f"3D ResNeXt, depths {tuple(video.depths)}, widths {tuple(video.hidden_sizes)}",
    ),
    "audio": (
        PANN_PRESETS,
        lambda audio, name: (
            f"PANN {name.capitalize()}, {audio.sample_rate} Hz, hop {audio.hop_length}, {audio.num_mel_bins} mel"
        ),
        lambda audio: f"PANN-style CNN ({audio.block_type}, widths {tuple(audio.hidden_sizes)})",
    ),
}


def _tower_name(config: UnivalConfig, modality: str) -> str:
    """The architecture table's line of a tower: "none" when the checkpoint has no such tower."""
    tower = getattr(config, f"{modality}_config")
    if tower is None:
        return "none"
    presets, preset_line, other_line = _TOWER_LINES[modality]
    name = _preset_of(tower, presets)
    return other_line(tower) if name is None else preset_line(tower, name)


def _architecture_rows(config: UnivalConfig) -> list[tuple[str, str, bool]]:
    """(what, value, whether a value unlike the released one makes a different architecture). Absent towers do not:
    released checkpoints leave out the towers their task does not use."""
    return [
        ("d_model", str(config.d_model), True),
        ("layers (encoder + decoder)", f"{config.encoder_layers} + {config.decoder_layers}", True),
        ("attention heads", f"{config.encoder_attention_heads} / {config.decoder_attention_heads}", True),
        ("FFN width", f"{config.encoder_ffn_dim} / {config.decoder_ffn_dim}", True),
        ("vocabulary", str(config.vocab_size), True),
        ("bucket sizes (token / image)", f"{config.token_bucket_size} / {config.image_bucket_size}", True),
        ("image tower", _tower_name(config, "image"), True),
        ("video tower", _tower_name(config, "video"), config.video_config is not None),
        ("audio tower", _tower_name(config, "audio"), config.audio_config is not None),
    ]


@lru_cache(maxsize=1)
def _released_config() -> UnivalConfig:
    return UnivalConfig.from_preset(RELEASED_PRESET)


def architecture_differences(config: UnivalConfig) -> list[str]:
    """How `config` differs from the released `unival-base` architecture, e.g. `["d_model 32 (released 768)"]`;
    empty when it is the released one (possibly without the video or audio tower, like the released finetunes)."""
    released = {what: value for what, value, _ in _architecture_rows(_released_config())}
    return [
        f"{what} {value} (released {released[what]})"
        for what, value, compared in _architecture_rows(config)
        if compared and value != released[what]
    ]


def _num_parameters(config: UnivalConfig) -> int:
    with torch.device("meta"):  # shapes only: counting needs no memory and no initialisation
        return UnivalForConditionalGeneration(config).num_parameters()


def _architecture_section(config: UnivalConfig) -> str:
    released = _released_config()
    rows = [
        f"| {what} | {value} | {theirs} |"
        for (what, value, _), (_, theirs, _) in zip(_architecture_rows(config), _architecture_rows(released))
    ]
    rows.append(f"| parameters | {_num_parameters(config) / 1e6:.1f}M | {_num_parameters(released) / 1e6:.1f}M |")
    header = f"| | this model | released `{RELEASED_PRESET}` |\n| --- | --- | --- |"
    return "## Architecture\n\nRead from `config.json`.\n\n" + "\n".join([header, *rows])


# --------------------------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """Weights converted from a checkpoint of the original fairseq implementation: the facts known at conversion.

    Attributes:
        source_file: the checkpoint's file name.
        source_sha256: its sha256 (hex).
        ema: whether the EMA copy of the weights was converted.
        buffer_checks: `{original buffer: equal}` from `modeling_unival.conversion.check_original_buffers`.
    """

    source_file: str
    source_sha256: str
    ema: bool = False
    buffer_checks: Mapping[str, bool] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path, ema: bool = False, buffer_checks: Mapping[str, bool] | None = None):
        return cls(Path(path).name, file_sha256(path), ema, dict(buffer_checks or {}))

    def describe(self, config: UnivalConfig) -> str:
        """Markdown: what the source was (judged from its architecture), then how it was converted."""
        differences = architecture_differences(config)
        if differences:
            what = (
                "Converted from an original-implementation checkpoint whose architecture is not the released one "
                f"({'; '.join(differences)}): a test or custom checkpoint, not a released model."
            )
        else:
            what = f"Converted from an original checkpoint with the released `{RELEASED_PRESET}` architecture."
        return f"""{what}

- Source: `{self.source_file}`, sha256 `{self.source_sha256}`;
  {"its EMA weights" if self.ema else "its model weights"}, as float32.
- Read with a restricted unpickler (no code from the file is executed), keys mapped by `modeling_unival.conversion`.
- Dropped on purpose: the towers' ImageNet/AudioSet classifier heads, the decoder's image-code generation tables,
  fairseq bookkeeping.{self._buffer_note()}
- The port's numerical parity with the original implementation is checked by `python -m modeling_unival.parity`
  on reference fixtures (not on this file)."""

    def _buffer_note(self) -> str:
        """A bullet on the bucket tables the file stores and the port recomputes ("" when it stores none)."""
        if not self.buffer_checks:
            return ""
        differing = [f"`{key}`" for key, equal in self.buffer_checks.items() if not equal]
        if not differing:
            stored = ", ".join(f"`{key}`" for key in self.buffer_checks)
            return f"\n- The relative-position bucket tables the file stores ({stored}) equal the port's own."
        return (
            f"\n- {', '.join(differing)} DIFFER from the port's recomputed bucket tables (an averaged checkpoint?); "
            "the port uses its own."
        )


def _is_released_conversion(provenance: str | ConvertedCheckpoint, config: UnivalConfig) -> bool:
    return isinstance(provenance, ConvertedCheckpoint) and not architecture_differences(config)


def _reported_results_section() -> str:
    results = "\n".join(f"| {t} | {d} | {m} | {v} |" for t, d, m, v in REPORTED_RESULTS)
    return f"""## Results reported by the original authors

The original authors report these numbers for their released checkpoints of this architecture. They were not
measured on this conversion, and describe it only if its source file is one of those releases.

| task | dataset | metric | UnIVAL (original) |
| --- | --- | --- | --- |
{results}"""


# --------------------------------------------------------------------------------------------------------------------
# Task and usage
# --------------------------------------------------------------------------------------------------------------------
def _generation_settings(directory: Path) -> str:
    """The directory's `generation_config.json` settings, without the token ids (they are the dictionary's)."""
    if not (directory / "generation_config.json").is_file():
        return "none stored (transformers' defaults)"
    settings = GenerationConfig.from_pretrained(directory).to_diff_dict()
    shown = {
        key: value for key, value in settings.items() if not key.endswith("token_id") and key != "transformers_version"
    }
    return ", ".join(f"{key}={value}" for key, value in sorted(shown.items())) or "transformers' defaults"


def _task_section(spec: TaskSpec, directory: Path) -> str:
    layout = "encoder prompt"
    if spec.prompt_type == "prev_output":
        layout = 'question forced as decoder prefix, "prev_output"'
    return f"""## Task and prompt

- Task: `{spec.name}` ({layout}).
- The processor builds the original prompts: `processor(task="{spec.name}", ...)`; see `processing.prompts` for
  every task's exact string.
- Generation settings stored in `generation_config.json`: {_generation_settings(directory)}."""


def _usage_snippet(repo_id: str, spec: TaskSpec) -> str:
    modality = spec.modality.name.lower() if spec.modality is not None and spec.modality.name != "TEXT" else "image"
    media_argument, task = _USAGE[modality], spec.name
    call = f'processor(task="{task}", {media_argument}, return_tensors="pt")'
    decode = "processor.post_process_caption(generated)[0]"
    if spec.prompt_type == "prev_output":  # the question is forced as the decoder prefix, the answer follows it
        call = (
            f'processor(task="{task}", text="what is in the picture", {media_argument}, return_decoder_prompt=True, '
            'return_tensors="pt")'
        )
        decode = 'processor.post_process_vqa(generated, prompt_lengths=inputs["decoder_input_ids"].shape[1])[0]'
    elif task == "visual_grounding":
        call = (
            f'processor(task="{task}", text="the man in the red shirt", {media_argument}, return_image_sizes=True, '
            'return_tensors="pt")'
        )
        decode = 'processor.post_process_grounding(generated, image_sizes)[0]["box"]'
    pop_sizes = 'image_sizes = inputs.pop("image_sizes")\n' if task == "visual_grounding" else ""
    return f"""## Usage

```python
import modeling_unival, processing  # registers UnIVAL with the Auto classes (or pass trust_remote_code=True)
from transformers import AutoModelForSeq2SeqLM, AutoProcessor

model = AutoModelForSeq2SeqLM.from_pretrained("{repo_id}").eval()
processor = AutoProcessor.from_pretrained("{repo_id}")
inputs = {call}
{pop_sizes}generated = model.generate(**inputs)  # the settings of generation_config.json
print({decode}){"  # box in pixels of the original image" if task == "visual_grounding" else ""}
```"""


_LIMITATIONS = """## Limitations

- Text-to-image generation (`<code_i>` tokens) is not ported.
- The original randomly dropped patches at inference when an image gave more than `sample_patch_num` tokens; this
  port does so only in training.
- VQA answers are constrained to the training answer list in the original (an answer trie); pass
  `modeling_unival.constrained_decoding.AnswerTrie` as a logits processor to do the same.
- The original audio-captioning checkpoints were trained with the *video* captioning prompt; the processor uses it
  by default.
- English only; a model inherits the biases of its training data.

## License and citation

The original UnIVAL code builds on OFA and fairseq, both Apache-2.0; the card declares the same license. Check
the original repository for the terms of its released weights before redistributing weights derived from them."""


# --------------------------------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------------------------------
def _front_matter(config: UnivalConfig, tags: Sequence[str]) -> str:
    towers = ["image"] + [name for name in ("video", "audio") if getattr(config, f"{name}_config") is not None]
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["unival", "multimodal", *(_TOWER_TAGS[name] for name in towers), *tags],
    )
    return f"---\n{card_data.to_yaml()}\n---"


def _introduction(repo_id: str) -> str:
    """The title and what UnIVAL is (the family, not these weights: their facts follow in the other sections)."""
    return f"""# {repo_id}

A [UnIVAL]({PAPER_URL}) model for 🤗 Transformers. UnIVAL ({PAPER_TITLE}, Shukor et al., TMLR 2023) is an
encoder-decoder that reads text, images, video and audio and writes text: captions, answers, and `<bin_i>` location
tokens for boxes. It is OFA's unified transformer with NormFormer extras and one convolutional tower per modality;
positions enter only as attention biases ([original code]({ORIGINAL_CODE_URL}))."""


def write_model_card(
    directory: str | Path,
    provenance: str | ConvertedCheckpoint,
    task: str | TaskSpec | None = None,
    *,
    repo_id: str | None = None,
    tags: Sequence[str] = (),
) -> Path:
    """Writes `directory/README.md`, the model card of a saved UnIVAL model directory (see the module docstring).

    Args:
        directory: a directory written by `save_pretrained` (its `config.json` is read; `generation_config.json`
            too when present).
        provenance: where the weights come from: markdown of the caller's own ("a finetune of X on Y for `caption`")
            or a [`ConvertedCheckpoint`].
        task: the task the model is meant for (a name or alias of `processing.tasks`); adds the task section.
        repo_id: the name in the title and usage snippet (defaults to the directory's name).
        tags: extra model-card tags (e.g. `["model-merging"]`).

    Returns:
        The path of the card.
    """
    directory = Path(directory)
    config = UnivalConfig.from_pretrained(directory)
    spec = resolve_task(task) if task is not None else None
    repo_id = repo_id or directory.name
    origin = provenance.describe(config) if isinstance(provenance, ConvertedCheckpoint) else provenance
    sections = [
        _front_matter(config, tags),
        _introduction(repo_id),
        f"## Provenance\n\n{origin}",
        _architecture_section(config),
        *([_task_section(spec, directory)] if spec is not None else []),
        _usage_snippet(repo_id, spec or resolve_task("caption")),
        *([_reported_results_section()] if _is_released_conversion(provenance, config) else []),
        _LIMITATIONS,
        f"```bibtex\n{CITATION}\n```",
    ]
    path = directory / "README.md"
    ModelCard("\n\n".join(sections) + "\n").save(path)
    return path


__all__ = ["ConvertedCheckpoint", "REPORTED_RESULTS", "architecture_differences", "file_sha256", "write_model_card"]
