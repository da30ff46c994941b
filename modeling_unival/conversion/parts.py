"""Initialising a UnIVAL model from the pretrained parts the original's training starts from (reference 7.2, 3.1-3.3):

| part | source | in the original |
| --- | --- | --- |
| `text` | fairseq BART (`bart.base/model.pt`), or a transformers BART folder / hub id (`facebook/bart-base`) | `--restore-file bart.base/model.pt` (pretraining stage 1) |
| `image` | a timm / torchvision ResNet-50, -101 or -152 state dict (`resnet101_a1h-36d3f2aa.pth`) | `--resnet-model-path` (stage 1) |
| `video` | the Kinetics-400 3D ResNeXt of kenshohara's repository (`resnext-101-kinetics.pth`) | `--video-model-path` (stage 2) |
| `audio` | a PANN checkpoint (`Cnn14_mAP_0.431.pth`; Cnn10 / Cnn6 too) | `--audio-model-path` (audio finetunes) |

The rules are the original's loading code (`unival.py` / `unify_transformer.py` `upgrade_state_dict_named`, and the
towers' constructors):

- **text**: every BART tensor goes to the UnIVAL parameter of the same fairseq name (the converter's key map,
  `keys.convert_original_key`): token embeddings, learned positions (row for row, as the original copies them,
  although UnIVAL counts text positions from row 0 where BART counted from row 2), attention, FFN, layer norms, the
  embedding layer norms. BART's vocabulary is the first rows of UnIVAL's, so its rows are kept where they are (all of them:
  `bart.base/model.pt` has 51,201 rows, its padding words and `<mask>` after the 50,264 BPE ids, which the original
  keeps in place) and the rows up to `vocab_size` are drawn from N(0, d_model^-0.5), as the original extends a
  smaller vocabulary. Everything BART lacks (NormFormer layer norms, head scales, relative-position tables, the
  position-bias projections, the modality projections and positions, the final layer norms) keeps the freshly built
  model's values, as the original fills missing keys from its freshly built model, whose initialisation (BERT's:
  normal(0, 0.02) weights, zero biases, unit layer norms) the port's `_init_weights` shares.
- **towers**: the backbone's keys (`module.`, `sed_model.`, `audio_branch.` prefixes stripped, as the original does)
  map through the converter's tower key maps; the classifier heads (`fc`, PANN's `fc1` / `fc_audioset`) are dropped.
  The original loads these files non-strictly; here a file that does not cover the tower (another depth, a missing
  block) or has a tensor of another shape is refused with the key named, instead of leaving part of a tower random.
- **audio front end**: the STFT kernels and mel filter bank of a PANN file are those of its 32 kHz training. By
  default the model keeps its own, built for its `audio_config` (48 kHz for UnIVAL). The original's non-strict load
  takes the file's when the mel-bin count matches (64) and drops them with `bn0` when it does not;
  `audio_front_end="file"` does the former.

Files are read with `torch.load(weights_only=True)` (plus the argument namespace and numpy values fairseq files
hold) or safetensors; nothing in them is executed.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..configuration_unival import PANN_PRESETS, RESNEXT3D_PRESETS, UnivalAudioConfig, UnivalVideoConfig
from .checkpoint import read_weights_file
from .keys import DROPPED_KEY_REASONS, convert_original_key
from .state_dict import ORIGINAL_TIED_KEYS, TIED_KEYS, _shared_embedding
from .tower_keys import (
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_video_tower_key,
)


PARTS = ("text", "image", "video", "audio")
AUDIO_FRONT_ENDS = ("model", "file")

# What a backbone file wraps its state dict in, and the prefixes the original strips from its keys.
_TOWER_CONTAINERS = {"image": ("state_dict", "model"), "video": ("state_dict",), "audio": ("model",)}
_TOWER_PREFIXES = {"image": ("module.",), "video": ("module.",), "audio": ("module.", "sed_model.", "audio_branch.")}
_TOWER_KEY_MAPS = {
    "image": convert_original_image_tower_key,
    "video": convert_original_video_tower_key,
    "audio": convert_original_audio_tower_key,
}
_CLASSIFIER_REASON = {
    "image": "the ImageNet classifier (UnIVAL uses the last stage's feature map)",
    "video": "the Kinetics classifier (UnIVAL uses the last stage's feature map)",
    "audio": "PANN's AudioSet heads (UnIVAL uses the last block's feature map)",
}
_AUDIO_FRONT_END = ("front_end.stft_kernel_real", "front_end.stft_kernel_imag", "front_end.mel_filters")
_TRANSFORMERS_BART_DROPPED = {
    "final_logits_bias": "BART's output bias (zeros in the released BART); UnIVAL's output projection has none",
}
# fairseq's legacy layer-norm names, renamed by the original's layer `upgrade_state_dict_named`.
_LEGACY_LAYER_NORMS = {
    "encoder": {"0": "self_attn_layer_norm", "1": "final_layer_norm"},
    "decoder": {"0": "self_attn_layer_norm", "1": "encoder_attn_layer_norm", "2": "final_layer_norm"},
}
_LEGACY_LAYER_NORM = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.layer_norms\.(\d)\.(weight|bias)$")
# A hub repository id (`name` or `owner/name`), as opposed to a local path that does not exist.
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass
class PartReport:
    """What initialising one part did: the port's tensors set from the source (`loaded`), the port's tensors of the
    part given another value and how (`initialised`), and the source's keys left out and why (`dropped`)."""

    part: str
    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.part}: {self.source} ({self.layout}): {len(self.loaded)} tensors loaded, "
                 f"{len(self.initialised)} initialised, {len(self.dropped)} source keys dropped"]
        for title, entries in (("initialised", self.initialised), ("dropped", self.dropped)):
            by_reason: dict[str, list[str]] = {}
            for key, reason in entries.items():
                by_reason.setdefault(reason, []).append(key)
            for reason, keys in by_reason.items():
                shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                lines.append(f"  {title} ({len(keys)}): {reason}: {shown}")
        return "\n".join(lines)


@dataclass
class InitReport:
    """The `PartReport` of every part initialised, in the order they were applied."""

    parts: list[PartReport] = field(default_factory=list)

    def __getitem__(self, part: str) -> PartReport:
        for report in self.parts:
            if report.part == part:
                return report
        raise KeyError(f"no {part!r} part was initialised; parts: {[r.part for r in self.parts]}")

    def summary(self) -> str:
        return "\n".join(report.summary() for report in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {report.part: {"source": report.source, "layout": report.layout, "loaded": report.loaded,
                              "initialised": report.initialised, "dropped": report.dropped}
                for report in self.parts}

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# Reading the sources
# ----------------------------------------------------------------------------------------------------------------


def _bart_from_transformers(weights: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A transformers `BartModel` / `BartForConditionalGeneration` state dict in fairseq's names (transformers kept
    fairseq's layer names; only the tied embeddings, the head and the `model.` prefix differ), and the keys dropped."""
    state, dropped = {}, {}
    for key, value in weights.items():
        name = key.removeprefix("model.")
        if name in _TRANSFORMERS_BART_DROPPED:
            dropped[key] = _TRANSFORMERS_BART_DROPPED[name]
        elif name == "shared.weight":
            state["encoder.embed_tokens.weight"] = value
        elif name == "lm_head.weight":
            state["decoder.output_projection.weight"] = value
        else:
            state[name] = value
    if "encoder.embed_tokens.weight" not in state:  # a file saved with only one copy of the tied embedding
        for key in ("decoder.embed_tokens.weight", "decoder.output_projection.weight"):
            if key in state:
                state["encoder.embed_tokens.weight"] = state[key]
                break
    return state, dropped


def _transformers_bart_folder(folder: Path) -> dict[str, torch.Tensor]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"text source {folder}: no config.json (not a transformers model folder)")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "bart":
        raise ValueError(f"text source {folder}: a {model_type!r} model; UnIVAL initialises from BART (model_type 'bart')")
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"text source {folder}: no model.safetensors or pytorch_model.bin")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(read_weights_file(file, "a BART model"))
    return weights


def _download(repo_id: str) -> Path:
    """The folder of hub repository `repo_id` with its config and safetensors weights (downloaded, or from the cache)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors"]))
    except Exception as error:  # offline, unknown repository, no access: all say the same to the caller
        raise OSError(f"text source {repo_id!r} is no local file or folder, and the hub cannot give it: "
                      f"{type(error).__name__}: {error}") from None


def read_text_source(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """BART weights in fairseq's key names, the layout they were read from (`"fairseq"` or `"transformers"`) and the
    source keys dropped on the way. `source`: a fairseq checkpoint file (`{"model": state dict, ...}`), a transformers
    BART folder or weights file, or a hub repository id."""
    path = Path(source)
    if path.is_file():
        weights = read_weights_file(path, "a BART checkpoint")
        if isinstance(weights.get("model"), Mapping):  # fairseq: the weights, with args / optimizer history around them
            return dict(weights["model"]), "fairseq", {}
    elif path.is_dir():
        weights = _transformers_bart_folder(path)
    elif _HUB_ID.match(str(source)):
        weights = _transformers_bart_folder(_download(str(source)))
    else:
        raise FileNotFoundError(f"text source {source}: no such file or folder")
    state, dropped = _bart_from_transformers(weights)
    return state, "transformers", dropped


def _strip_prefixes(state: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """`state` with the wrapper prefixes (`module.` of DataParallel, `sed_model.`, ...) removed from its keys."""
    stripped = {}
    for key, value in state.items():
        name = key
        while name.startswith(prefixes):
            name = name.removeprefix(next(prefix for prefix in prefixes if name.startswith(prefix)))
        stripped[name] = value
    return stripped


def read_tower_source(part: str, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a backbone file in the original's tower names: unwrapped from its container
    (`['state_dict']` for the Kinetics ResNeXt, `['model']` for PANN) and without the prefixes the original strips."""
    loaded = read_weights_file(source, f"a {part} backbone")
    for container in _TOWER_CONTAINERS[part]:
        if isinstance(loaded.get(container), Mapping):
            loaded = loaded[container]
            break
    state = _strip_prefixes(loaded, _TOWER_PREFIXES[part])
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{part} source {source}: {not_tensors[:3]} are not tensors: not a state dict of weights")
    return state


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


def _check_shape(target: torch.Tensor, value: torch.Tensor, key: str, name: str, source: str, hint: str = "") -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(
            f"{source}: {key} has shape {tuple(value.shape)}, the model's {name} {tuple(target.shape)}{hint}"
        )


def _copy_all(params: Mapping[str, torch.Tensor], plan: list[tuple[str, torch.Tensor]]) -> None:
    """Copies the checked `(name, value)` pairs: only once every key of a source is checked, so that a refused file
    leaves the model as it was."""
    for name, value in plan:
        params[name].copy_(value.to(dtype=params[name].dtype))


def _initialisation_rule(model: nn.Module, name: str) -> str:
    """How the freshly built model initialised parameter `name` (the port's `_init_weights`, the original's
    `init_bert_params`)."""
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    std = model.config.init_std
    if isinstance(module, nn.Embedding):
        return f"normal(0, {std}) (the freshly built model's)"
    if isinstance(module, nn.Linear):
        return f"normal(0, {std}) (the freshly built model's)" if leaf == "weight" else "zeros (the freshly built model's)"
    if isinstance(module, nn.LayerNorm):
        return "ones (the freshly built model's)" if leaf == "weight" else "zeros (the freshly built model's)"
    if leaf in ("c_attn", "w_resid"):
        return "ones (the freshly built model's)"
    return "the freshly built model's"


def _text_key(key: str) -> str:
    match = _LEGACY_LAYER_NORM.match(key)
    if match is None:
        return key
    side, layer, index, field_name = match.groups()
    return f"{side}.layers.{layer}.{_LEGACY_LAYER_NORMS[side][index]}.{field_name}"


def _is_tower_parameter(name: str) -> bool:
    return ".image_tower." in name or ".video_tower." in name or ".audio_tower." in name


@torch.no_grad()
def load_text(model, source: str | os.PathLike, generator: torch.Generator | None = None) -> PartReport:
    """Initialises the transformer of `model` from BART (`read_text_source`), as the module docstring describes."""
    state, layout, dropped = read_text_source(source)
    return load_text_state(model, state, os.fspath(source), layout, dropped, generator)


@torch.no_grad()
def load_text_state(model, state: Mapping[str, torch.Tensor], source: str, layout: str = "fairseq",
                    dropped: Mapping[str, str] | None = None, generator: torch.Generator | None = None) -> PartReport:
    """`load_text` on a BART state dict in fairseq's names (`source` names it in messages); everything is checked
    before anything is copied."""
    report = PartReport("text", source, layout, dropped=dict(dropped or {}))
    params = model.state_dict()
    shared = _shared_embedding(state)
    embedding = params["model.shared.weight"]
    vocab_size, dim = embedding.shape
    if shared.shape[1] != dim:
        raise ValueError(f"{source}: the token embeddings have {shared.shape[1]} dimensions, the model {dim} (d_model)")
    rows = shared.shape[0]
    if rows > vocab_size:
        raise ValueError(f"{source}: {rows} token embeddings, more than the model's vocabulary of {vocab_size}")
    dropped_patterns = [(re.compile(pattern + "$"), reason) for pattern, reason in DROPPED_KEY_REASONS.items()]
    plan = []
    for key, value in state.items():
        if key in ORIGINAL_TIED_KEYS:
            continue  # the one shared embedding, below
        key = _text_key(key)
        try:
            name = convert_original_key(key)
        except KeyError:
            raise ValueError(f"{source}: {key!r} has no counterpart in UnIVAL (is this a BART checkpoint?)") from None
        if name is None:
            report.dropped[key] = next(reason for pattern, reason in dropped_patterns if pattern.match(key))
            continue
        if name.startswith("model.encoder.") and _is_tower_parameter(name):
            raise ValueError(f"{source}: {key!r} is a tower weight: a BART checkpoint has none")
        if name not in params:
            raise ValueError(f"{source}: {key} maps to {name}, which this model does not have (a deeper BART than "
                             f"the model's {model.config.encoder_layers}+{model.config.decoder_layers} layers?)")
        hint = " (max_source_positions / max_target_positions + 2 rows)" if "embed_positions" in key else ""
        hint = hint if value.shape[-1:] == params[name].shape[-1:] else ""
        _check_shape(params[name], value, key, name, source, hint)
        plan.append((name, value))

    _copy_all(params, plan)
    report.loaded.extend(name for name, _ in plan)
    embedding[:rows] = shared.to(embedding.dtype)
    # The original's vocabulary extension: the ids BART lacks (the <code_i> and <bin_i> rows) ~ N(0, d^-0.5).
    added = torch.randn((vocab_size - rows, dim), generator=generator) * dim**-0.5
    embedding[rows:] = added.to(embedding.dtype)
    report.loaded.append("model.shared.weight")
    if rows < vocab_size:
        report.initialised[f"model.shared.weight[{rows}:{vocab_size}]"] = (
            f"normal(0, d_model^-0.5 = {dim ** -0.5:.4f}): the ids beyond BART's {rows} rows, as the original extends "
            "a smaller vocabulary")
    for name in params:
        if name not in report.loaded and name not in TIED_KEYS and not _is_tower_parameter(name):
            report.initialised[name] = _initialisation_rule(model, name)
    return report


def _file_depths(keys) -> tuple[int, ...]:
    """Blocks per stage of a ResNet-style state dict (`layer{i}.{j}.` keys), for the message of a depth mismatch."""
    blocks: dict[int, set[int]] = {}
    for key in keys:
        match = re.match(r"^layer(\d+)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return tuple(len(blocks[stage]) for stage in sorted(blocks))


@torch.no_grad()
def load_tower(model, part: str, source: str | os.PathLike, audio_front_end: str = "model") -> PartReport:
    """Initialises the `part` tower (`"image"`, `"video"`, `"audio"`) of `model` from a backbone file."""
    _tower(model, part, audio_front_end)  # before reading a large file
    return load_tower_state(model, part, read_tower_source(part, source), os.fspath(source), audio_front_end)


def _tower(model, part: str, audio_front_end: str):
    """The `part` tower of `model`, once the arguments of loading it are checked."""
    if audio_front_end not in AUDIO_FRONT_ENDS:
        raise ValueError(f"audio_front_end must be one of {AUDIO_FRONT_ENDS}, got {audio_front_end!r}")
    tower = getattr(model.model.encoder, f"{part}_tower")
    if tower is None:
        raise ValueError(f"the model has no {part} tower: add one first (`add_towers(model, {part}=...)`, or "
                         f"`towers: {{{part}: ...}}` in a recipe stage)")
    return tower


@torch.no_grad()
def load_tower_state(model, part: str, state: Mapping[str, torch.Tensor], source: str,
                     audio_front_end: str = "model") -> PartReport:
    """`load_tower` on a backbone state dict in the original's tower names (`source` names it in messages);
    everything is checked before anything is copied."""
    tower = _tower(model, part, audio_front_end)
    report = PartReport(part, source, "backbone")
    params = tower.state_dict()
    prefix = f"model.encoder.{part}_tower."
    mel_bins = getattr(getattr(model.config, "audio_config", None), "num_mel_bins", None)
    file_mel_bins = state["bn0.weight"].shape[0] if part == "audio" and "bn0.weight" in state else None
    plan = []
    for key, value in state.items():
        try:
            name = _TOWER_KEY_MAPS[part](key)
        except ValueError:
            raise ValueError(f"{part} source {source}: {key!r} is not a key of the {part} backbone UnIVAL uses") from None
        if name is None:
            report.dropped[key] = _CLASSIFIER_REASON[part]
        elif part == "audio" and file_mel_bins is not None and file_mel_bins != mel_bins and (
                name.startswith("bn0.") or name == "front_end.mel_filters"):
            report.dropped[key] = (f"the file's {file_mel_bins} mel bins differ from the model's {mel_bins}: the "
                                   "original drops its log-mel and bn0 tensors then")
        elif name in _AUDIO_FRONT_END and audio_front_end == "model":
            report.dropped[key] = ("the model keeps its own STFT / mel front end, built for its audio_config "
                                   f"({model.config.audio_config.sample_rate} Hz); PANN files hold their 32 kHz one")
        elif name not in params:
            depths = _file_depths(state)
            raise ValueError(f"{part} source {source}: {key} has no place in the model's {part} tower"
                             + (f" (the file has {depths} blocks per stage)" if depths else ""))
        else:
            _check_shape(params[name], value, key, prefix + name, source)
            plan.append((name, value))
    loaded = {name for name, _ in plan}
    missing = [name for name in params if name not in loaded and name not in _AUDIO_FRONT_END
               and not name.endswith("num_batches_tracked")
               and not (part == "audio" and name.startswith("bn0.") and file_mel_bins != mel_bins)]
    if missing:
        depths = _file_depths(state)
        raise ValueError(f"{part} source {source} does not cover the model's {part} tower: {len(missing)} tensors "
                         f"missing, e.g. {missing[:3]}" + (f" (the file has {depths} blocks per stage)" if depths else ""))
    _copy_all(params, plan)
    report.loaded.extend(prefix + name for name, _ in plan)
    for name in params:
        if name not in loaded:
            report.initialised[prefix + name] = (
                "the model's own front end, built for its audio_config" if name in _AUDIO_FRONT_END
                else "the freshly built model's (not in the file)")
    return report


def init_from_parts(
    model,
    *,
    text: str | os.PathLike | None = None,
    image: str | os.PathLike | None = None,
    video: str | os.PathLike | None = None,
    audio: str | os.PathLike | None = None,
    seed: int = 0,
    audio_front_end: str = "model",
) -> InitReport:
    """
    Initialises the parts of `model` (a `UnivalForConditionalGeneration`, in place) from pretrained weights, as the
    original's pretraining and audio finetunes start (see the module docstring for the rules); returns the report of
    what was loaded, initialised and dropped.

    Args:
        text: BART: a fairseq checkpoint (`bart.base/model.pt`), a transformers BART folder or weights file, or a hub
            id (`"facebook/bart-base"`).
        image / video / audio: the backbone files (`resnet101_a1h-36d3f2aa.pth`, `resnext-101-kinetics.pth`,
            `Cnn14_mAP_0.431.pth`); `.pth`/`.pt`/`.bin` (safe unpickler) or `.safetensors`.
        seed: seeds the token-embedding rows BART lacks.
        audio_front_end: `"model"` (default: keep the model's STFT / mel front end, built for its sampling rate) or
            `"file"` (the PANN file's, as the original's non-strict load does).
    """
    given = {"text": text, "image": image, "video": video, "audio": audio}
    if not any(value is not None for value in given.values()):
        raise ValueError(f"name at least one part to initialise: {', '.join(PARTS)}")
    generator = torch.Generator().manual_seed(int(seed))
    report = InitReport()
    if text is not None:
        report.parts.append(load_text(model, text, generator))
    for part in ("image", "video", "audio"):
        if given[part] is not None:
            report.parts.append(load_tower(model, part, given[part], audio_front_end))
    model.tie_weights()
    return report


# ----------------------------------------------------------------------------------------------------------------
# Adding a tower (a stage that adds a modality)
# ----------------------------------------------------------------------------------------------------------------

_TOWER_CONFIGS = {"video": (UnivalVideoConfig, RESNEXT3D_PRESETS), "audio": (UnivalAudioConfig, PANN_PRESETS)}


def tower_config(part: str, spec) -> UnivalVideoConfig | UnivalAudioConfig:
    """The config of a `"video"` or `"audio"` tower from a config, a dict of its fields, or a backbone name
    (`"all_resnext101"`, `"resnext50"`; `"cnn14"`, `"cnn10"`, `"cnn6"`)."""
    if part not in _TOWER_CONFIGS:
        raise ValueError(f"towers can be added for {sorted(_TOWER_CONFIGS)}, not {part!r} (every model has an image tower)")
    config_class, presets = _TOWER_CONFIGS[part]
    if isinstance(spec, config_class):
        return copy.deepcopy(spec)
    if isinstance(spec, str):
        if spec not in presets:
            raise ValueError(f"unknown {part} backbone {spec!r}; choose one of {sorted(presets)} or give its fields")
        return config_class(**presets[spec])
    if isinstance(spec, Mapping):
        return config_class(**spec)
    raise TypeError(f"{part} tower: expected a backbone name, a dict of fields or a {config_class.__name__}, got {spec!r}")


def add_towers(model, *, video=None, audio=None, seed: int = 0):
    """
    A copy of `model` with a video and / or audio tower added (each a backbone name, a dict of config fields or a
    config: `tower_config`), everything else equal to `model`'s weights: what the original's stage 2 builds when it
    adds the video tower to the stage-1 model. The new tower, its projection and its position table are freshly
    initialised (weights drawn with `seed`); load pretrained tower weights with `init_from_parts` afterwards.
    """
    config = copy.deepcopy(model.config)
    added = []
    for part, spec in (("video", video), ("audio", audio)):
        if spec is None:
            continue
        if getattr(config, f"{part}_config") is not None:
            raise ValueError(f"the model already has a {part} tower")
        setattr(config, f"{part}_config", tower_config(part, spec))
        added.append(part)
    if not added:
        raise ValueError("name a tower to add: video= or audio=")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        extended = type(model)(config)
    missing, unexpected = extended.load_state_dict(model.state_dict(), strict=False)
    new_modules = tuple(f"model.encoder.{name}" for part in added
                        for name in (f"{part}_tower.", f"{part}_proj.", f"embed_{part}_positions."))
    stray = [key for key in missing if not key.startswith(new_modules) and key not in TIED_KEYS]
    if stray or unexpected:
        raise RuntimeError(f"adding {added} changed other weights: missing {stray[:3]}, unexpected {unexpected[:3]}")
    extended.tie_weights()
    extended.generation_config = copy.deepcopy(model.generation_config)
    return extended.to(dtype=next(model.parameters()).dtype).train(model.training)


__all__ = [
    "AUDIO_FRONT_ENDS",
    "PARTS",
    "InitReport",
    "PartReport",
    "add_towers",
    "init_from_parts",
    "load_text",
    "load_text_state",
    "load_tower",
    "load_tower_state",
    "read_text_source",
    "read_tower_source",
    "tower_config",
]
