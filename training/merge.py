"""Weight-space merging of UnIVAL models: interpolation, model soups, "ratatouille" and fusing.

UnIVAL (Shukor et al., TMLR 2023, "Multimodal Model Merging") merges multimodal models finetuned on different
tasks by averaging their weights. This module provides the merges of the paper, in the `transformers` way
(models in, a normal `PreTrainedModel` out, `save_pretrained` / `from_pretrained` round trips):

=========================================== =======================================================================
function                                    what
=========================================== =======================================================================
`interpolate(models, weights)`              `sum_i w_i * theta_i` (weights >= 0, summing to 1; `normalize=True`
                                            rescales them)
`interpolate_pair(model_a, model_b, alpha)` `alpha * A + (1 - alpha) * B`: `alpha=1` gives A, `alpha=0` gives B
                                            (the original's `lambda * A + (1 - lambda) * B`)
`uniform_soup(models)`                      every weight `1 / N`
`greedy_soup(models, evaluate_fn)`          Wortsman et al. (2022): candidates sorted by their own score, each one
                                            kept only if the soup's score does not decrease
`ratatouille(models, base_model=...)`       average of finetunes that share one pretrained start (Ramé et al.,
                                            2023), with that shared start checked
`fuse(models, finetune_fn)`                 average, then a short finetuning of the average (`finetune_fn`)
`recompute_batchnorm(model, batches)`       BatchNorm running statistics re-estimated on data
`save_merged(model, out_dir, processor)`    a normal saved model + processor + a model card stating the recipe
`interpolation_sweep(a, b, alphas, fns)`    evaluate tasks along the A-B line; CSV + PNG
=========================================== =======================================================================

Semantics (decided here; the original `preprocess/average_save_models.py` differs where noted):

* **Inputs** are `PreTrainedModel`s, PEFT `PeftModel`s or plain state dicts (`{name: tensor}`), mixed freely. A
  PEFT model is merged into its base first (`merge_and_unload` on a copy: the input is not modified). A state
  dict holding LoRA tensors (`lora_A` / `lora_B`) is refused. The result is a model when any input is a model (a
  copy of the first model input with a nonzero weight, whose config and generation config it keeps), otherwise
  a state dict with the first input's keys.
* **Compatibility** is checked before any arithmetic, and a `ValueError` names the first problem: the first
  parameter (in the first input's order) that is missing from an input or has another shape, with the shapes; a
  parameter an input has and the first one lacks; a differing configuration field (everything but the
  training-only and bookkeeping fields of `IGNORED_CONFIG_FIELDS`, e.g. dropout, at any nesting level); a
  differing tokenizer vocabulary (first differing token) when processors / tokenizers are given. Keys missing
  from an input are an error: nothing is silently rescaled (the original did `theta += lambda_i * theta` for
  them) or silently taken from one model.
* **Floating-point tensors** (parameters and float buffers) are combined in float32 (float64 for float64
  tensors) and cast back to the dtype of the first input with a nonzero weight. Inputs with a zero weight are
  validated but not read, and a tensor that is identical in every weighted input is copied as it is, so merging
  a model with itself, or `alpha` = 0 / 1, reproduces the input bit for bit.
* **Non-floating tensors** (`num_batches_tracked` and any other integer / bool buffer) are copied from ONE
  input: the first input with a nonzero weight (the first input, unless its weight is 0). The original averaged
  them as floats and truncated them back to int64.
* **BatchNorm running statistics** (float buffers of the towers) are interpolated like the weights by default
  (`bn="interpolate"`). `bn="recompute"` (with `bn_batches`) re-estimates them on data after the merge, see
  `recompute_batchnorm`.
* **Tied weights** are merged once: tensors sharing storage (`lm_head.weight`, `model.encoder.embed_tokens.weight`
  and `model.decoder.embed_tokens.weight` are `model.shared.weight`) form one group, and the merged values are
  written into the template's own tensors, so `merged.lm_head.weight is merged.model.shared.weight` still holds
  (and after `save_merged` + `from_pretrained`). A saved checkpoint holding only `model.shared.weight` matches a
  model with the whole group. Weights tied in one input but not in another are refused unless equal.

The returned model carries its recipe (`model.merge_recipe`, a `MergeRecipe`), which `save_merged` writes into
the model card (README.md) and `merge_recipe.json`.

Command line (directories saved with `save_pretrained`, or PEFT adapter directories whose base is readable):

    python -m training.merge --models DIR_A DIR_B --alpha 0.3 --out merged      # 0.3 * A + 0.7 * B
    python -m training.merge --models D1 D2 D3 --weights 0.2 0.3 0.5 --out merged
    python -m training.merge --models D1 D2 D3 --method uniform --out soup [--bn recompute --bn-data WORLD]
    python -m training.merge --models D1 D2 D3 --method greedy --eval-data WORLD --eval-tasks caption --out soup

`--bn-data` / `--eval-data` are directories in the `training.data` schema layout (`SPLIT.jsonl` + media, e.g. a
synthetic world written by `python -m training.data.synthetic`), batched with the models' processor. The command
line's greedy soup scores a model by minus its token-level cross-entropy on `--eval-data` (teacher forcing);
task metrics (CIDEr, VQA accuracy) plug in through the Python API's `evaluate_fn`.
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

if __package__ in (None, ""):  # `python training/merge.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn


logger = logging.getLogger("training.merge")

#: Configuration fields that may differ between merged models: training-only hyperparameters (they do not change
#: the function a model computes in eval mode) and bookkeeping. They are ignored at every nesting level
#: (e.g. `audio_config.dropout`); every other field must be equal. The merged model keeps its template's values.
TRAINING_ONLY_CONFIG_FIELDS = frozenset(
    {
        "dropout",
        "attention_dropout",
        "activation_dropout",
        "classifier_dropout",
        "encoder_drop_path_rate",
        "decoder_drop_path_rate",
        "drop_path_rate",
        "encoder_layerdrop",
        "decoder_layerdrop",
        "label_smoothing",
        "sample_patch_num",
        "init_std",
        "initializer_range",
    }
)
BOOKKEEPING_CONFIG_FIELDS = frozenset(
    {
        "_name_or_path",
        "_commit_hash",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "transformers_version",
        "architectures",
        "auto_map",
        "dtype",
        "torch_dtype",
        "use_cache",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "chunk_size_feed_forward",
        "id2label",
        "label2id",
        "problem_type",
        "base_model",  # checked by `ratatouille`, not by plain interpolation
    }
)
IGNORED_CONFIG_FIELDS = TRAINING_ONLY_CONFIG_FIELDS | BOOKKEEPING_CONFIG_FIELDS

BN_MODES = ("interpolate", "recompute")
METHODS = ("uniform", "weighted", "interpolate", "greedy", "ratatouille")
WEIGHT_TOLERANCE = 1e-6

ModelOrStateDict = Union[nn.Module, Mapping[str, torch.Tensor]]
Batches = Union[Iterable[Mapping[str, Any]], Callable[[], Iterable[Mapping[str, Any]]]]


# --------------------------------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class MergeRecipe:
    """How a merged model was made; `save_merged` writes it into the model card and `merge_recipe.json`.

    Attributes:
        method: `"weighted"`, `"uniform"`, `"interpolate"`, `"greedy"`, `"ratatouille"` or `"fusing"`.
        inputs: one name per ingredient (a path when the model was loaded from one).
        weights: the weight of each ingredient (after normalisation).
        batchnorm: `"interpolate"` or `"recompute"`.
        batchnorm_data: what the statistics were recomputed on (with `"recompute"`).
        integer_buffers_from: the input whose integer buffers (`num_batches_tracked`) were copied.
        base_model: the shared pretrained start (ratatouille), when known.
        details: anything else (greedy-soup scores, alpha, LoRA inputs, the command line).
    """

    method: str
    inputs: list[str]
    weights: list[float]
    batchnorm: str = "interpolate"
    batchnorm_data: str | None = None
    integer_buffers_from: str | None = None
    base_model: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "MergeRecipe":
        return cls(**dict(data))

    def formula(self) -> str:
        if self.method == "interpolate" and len(self.weights) == 2:
            return f"{self.weights[0]:g} * A + {self.weights[1]:g} * B  (A = {self.inputs[0]}, B = {self.inputs[1]})"
        return " + ".join(f"{w:g} * theta_{i}" for i, w in enumerate(self.weights))

    def to_markdown(self) -> str:
        lines = [
            "# Merged UnIVAL model",
            "",
            "This model was made by weight-space merging (`training.merge`), as in UnIVAL's multimodal model merging "
            "(Shukor et al., TMLR 2023). It loads like any other checkpoint: "
            "`UnivalForConditionalGeneration.from_pretrained(path)`.",
            "",
            "## Merge recipe",
            "",
            f"- **Method:** {self.method}",
            f"- **Formula:** `theta = {self.formula()}`",
        ]
        if self.base_model:
            lines.append(f"- **Shared pretrained model:** {self.base_model}")
        lines += ["", "| # | input | weight |", "|---|---|---|"]
        lines += [f"| {i} | {name} | {weight:.6g} |" for i, (name, weight) in enumerate(zip(self.inputs, self.weights))]
        lines.append("")
        if self.batchnorm == "recompute":
            data = f" on {self.batchnorm_data}" if self.batchnorm_data else ""
            lines.append(
                f"- **BatchNorm running statistics:** recomputed{data} after merging (cumulative average over the "
                "batches, BatchNorm layers in train mode, everything else in eval mode); layers that saw no data "
                "keep the interpolated statistics."
            )
        else:
            lines.append("- **BatchNorm running statistics:** interpolated with the same weights as the parameters.")
        lines.append(
            "- **Integer buffers** (`num_batches_tracked`, ...): copied from "
            f"{self.integer_buffers_from or 'the first input with a nonzero weight'}, not averaged."
        )
        lines.append(
            "- **Tied weights:** each group of tied tensors (`model.shared.weight` with `lm_head.weight` and the "
            "encoder / decoder token embeddings) is merged once and stays tied."
        )
        shown = {k: v for k, v in self.details.items() if k != "command"}
        if shown:
            lines += ["", "## Details", "", "```json", json.dumps(shown, indent=2, default=str), "```"]
        if self.details.get("command"):
            lines += ["", "## Reproduce", "", "```bash", str(self.details["command"]), "```"]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# Inputs: models, PEFT models, state dicts
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Input:
    label: str  # used in messages
    source: str  # used in the recipe
    state: dict[str, torch.Tensor]
    groups: list[list[str]]  # names sharing one tensor (tied weights), in state-dict order
    group_of: dict[str, int]
    model: nn.Module | None = None
    config: Any = None
    from_peft: bool = False


def _is_peft_model(obj) -> bool:
    return isinstance(obj, nn.Module) and hasattr(obj, "peft_config") and hasattr(obj, "merge_and_unload")


def _path_of(model) -> str:
    path = getattr(model, "name_or_path", None)
    if not path:
        path = getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(path) if path else ""


def _storage_key(name: str, tensor: torch.Tensor) -> tuple:
    if tensor.device.type == "meta":
        raise ValueError(f"`{name}` is a meta tensor: load the weights before merging")
    if tensor.numel() == 0:  # empty tensors have no storage to share
        return ("empty", name)
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _alias_groups(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Names grouped by the tensor they refer to (tied weights share one storage), in state-dict order."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(_storage_key(name, tensor), []).append(name)
    return list(groups.values())


def _resolve_input(obj, index: int, name: str | None) -> _Input:
    from_peft = False
    path = _path_of(obj) if isinstance(obj, nn.Module) else ""
    if _is_peft_model(obj):
        obj = copy.deepcopy(obj).merge_and_unload()
        from_peft = True
    if isinstance(obj, nn.Module):
        model = obj
        state = dict(model.state_dict())
    elif isinstance(obj, Mapping):
        model, state, path = None, dict(obj), ""
        for key in state:
            if "lora_A" in key or "lora_B" in key or "lora_embedding_" in key:
                raise ValueError(
                    f"input {index} is a state dict with LoRA tensors ({key!r}): pass the PeftModel (its adapters are "
                    "merged with `merge_and_unload` first) or merge the adapters yourself"
                )
    else:
        raise TypeError(f"input {index}: expected a model, a PeftModel or a state dict, got {type(obj).__name__}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"input {index}: state-dict entry {key!r} is a {type(value).__name__}, not a tensor")
    if name is not None:
        label = source = str(name)
    else:
        label = f"model {index}" + (f" ({path})" if path else "")
        source = path or f"model {index}"
    groups = _alias_groups(state)
    group_of = {member: g for g, members in enumerate(groups) for member in members}
    if from_peft:
        logger.info("%s: LoRA adapters merged into the base weights (merge_and_unload on a copy)", label)
    return _Input(label, source, state, groups, group_of, model, getattr(model, "config", None), from_peft)


def _resolve_inputs(models, names) -> list[_Input]:
    if isinstance(models, (nn.Module, Mapping)) or not isinstance(models, Iterable):
        raise TypeError("`models` must be a list of models, PeftModels or state dicts")
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    if names is not None:
        names = list(names)
        if len(names) != len(models):
            raise ValueError(f"{len(names)} names for {len(models)} models")
    return [_resolve_input(obj, i, None if names is None else names[i]) for i, obj in enumerate(models)]


def check_weights(weights: Sequence[float], num_models: int, normalize: bool = False) -> list[float]:
    """Validate merge weights: one per model, finite, non-negative, summing to 1 (within 1e-6). With
    `normalize=True` they are divided by their sum instead (which must be positive). Returns them as floats."""
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError) as error:
        raise ValueError(f"weights must be numbers, got {weights!r}") from error
    if len(weights) != num_models:
        raise ValueError(f"got {len(weights)} weights for {num_models} models: give one weight per model")
    for i, w in enumerate(weights):
        if not math.isfinite(w):
            raise ValueError(f"weight {i} is {w}: weights must be finite")
        if w < 0:
            raise ValueError(f"weight {i} is {w}: weights must be non-negative (no extrapolation)")
    total = math.fsum(weights)
    if normalize:
        if total <= 0:
            raise ValueError("weights sum to 0: cannot normalise them")
        return [w / total for w in weights]
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"weights {weights} sum to {total:.8g}, not 1: fix them or pass normalize=True")
    return weights


# --------------------------------------------------------------------------------------------------------------------
# Compatibility checks
# --------------------------------------------------------------------------------------------------------------------
_MISSING = object()


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))


def _config_differences(first: Mapping, other: Mapping, prefix: str = "") -> list[tuple[str, Any, Any]]:
    differences = []
    keys = list(first) + [key for key in other if key not in first]
    for key in keys:
        if key in IGNORED_CONFIG_FIELDS:
            continue
        a, b = first.get(key, _MISSING), other.get(key, _MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differences += _config_differences(a, b, f"{prefix}{key}.")
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b):
            continue
        elif a is _MISSING or b is _MISSING or a != b:
            differences.append((f"{prefix}{key}", a, b))
    return differences


def _show(value) -> str:
    if value is _MISSING:
        return "<absent>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _all_config_differences(inputs: list[_Input]) -> list[tuple[str, str, Any, str, Any]]:
    """(field, first label, first value, other label, other value) for every differing architecture field."""
    with_config = [inp for inp in inputs if inp.config is not None]
    if len(with_config) < 2:
        return []
    reference = with_config[0]
    first = _config_dict(reference.config)
    found = []
    for other in with_config[1:]:
        for name, a, b in _config_differences(first, _config_dict(other.config)):
            found.append((name, reference.label, a, other.label, b))
    return found


def _config_note(differences) -> str:
    if not differences:
        return ""
    shown = ", ".join(f"{name}: {_show(a)} vs {_show(b)}" for name, _, a, _, b in differences[:3])
    more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
    return f"; the configurations differ in {shown}{more}"


def _shape(tensor: torch.Tensor) -> tuple:
    return tuple(tensor.shape)


def _match_parameters(inputs: list[_Input], note: str) -> list[tuple[set[str], list[torch.Tensor]]]:
    """One entry per tensor group of the first input: all names the group has in any input, and each input's tensor.
    Raises on the first parameter (in the first input's order) that an input lacks or has with another shape."""
    reference = inputs[0]
    matched = []
    used: list[dict[int, int]] = [{} for _ in inputs]
    for ref_index, group in enumerate(reference.groups):
        ref_tensor = reference.state[group[0]]
        names = set(group)
        tensors = [ref_tensor]
        used[0][ref_index] = ref_index
        for j, other in enumerate(inputs[1:], start=1):
            indices = sorted({other.group_of[n] for n in group if n in other.group_of})
            if not indices:
                raise ValueError(
                    f"incompatible models: parameter {group[0]!r} (shape {_shape(ref_tensor)}) of {reference.label} "
                    f"is missing from {other.label}{note}"
                )
            candidates = [other.state[other.groups[i][0]] for i in indices]
            if any(not torch.equal(candidates[0], c) for c in candidates[1:]):
                tied = [other.groups[i][0] for i in indices]
                raise ValueError(
                    f"incompatible models: {' and '.join(map(repr, tied))} are one tied tensor in {reference.label} "
                    f"but different tensors in {other.label}"
                )
            for i in indices:
                if i in used[j] and used[j][i] != ref_index:
                    previous = reference.groups[used[j][i]][0]
                    if not torch.equal(reference.state[previous], ref_tensor):
                        raise ValueError(
                            f"incompatible models: {previous!r} and {group[0]!r} are one tied tensor in {other.label} "
                            f"but different tensors in {reference.label}"
                        )
                used[j][i] = ref_index
            tensor = candidates[0]
            if tensor.shape != ref_tensor.shape:
                raise ValueError(
                    f"incompatible models: parameter {group[0]!r} has shape {_shape(ref_tensor)} in {reference.label} "
                    f"but {_shape(tensor)} in {other.label}{note}"
                )
            if tensor.is_floating_point() != ref_tensor.is_floating_point():
                raise ValueError(
                    f"incompatible models: parameter {group[0]!r} is {ref_tensor.dtype} in {reference.label} but "
                    f"{tensor.dtype} in {other.label}"
                )
            names.update(n for i in indices for n in other.groups[i])
            tensors.append(tensor)
        matched.append((names, tensors))
    for j, other in enumerate(inputs[1:], start=1):
        for i, group in enumerate(other.groups):
            if i not in used[j]:
                tensor = other.state[group[0]]
                raise ValueError(
                    f"incompatible models: {other.label} has parameter {group[0]!r} (shape {_shape(tensor)}) that "
                    f"{reference.label} lacks{note}"
                )
    return matched


def _tokenizer_of(obj):
    return obj if hasattr(obj, "get_vocab") else obj.tokenizer


def check_tokenizers(processors: Sequence, names: Sequence[str] | None = None) -> None:
    """Refuse tokenizers (or processors holding one) whose vocabularies differ, naming the first differing token.
    `None` entries are skipped."""
    present = [(i, _tokenizer_of(p)) for i, p in enumerate(processors) if p is not None]
    if len(present) < 2:
        return
    label = (lambda i: names[i]) if names is not None else (lambda i: f"model {i}")
    first_index, first = present[0]
    vocab = first.get_vocab()
    for index, tokenizer in present[1:]:
        other = tokenizer.get_vocab()
        if other == vocab:
            continue
        for token, token_id in sorted(vocab.items(), key=lambda item: item[1]):
            if token not in other:
                raise ValueError(
                    f"different tokenizers: token {token!r} (id {token_id}) of {label(first_index)} is missing from "
                    f"the vocabulary of {label(index)}"
                )
            if other[token] != token_id:
                raise ValueError(
                    f"different tokenizers: token {token!r} has id {token_id} in {label(first_index)} but "
                    f"{other[token]} in {label(index)}"
                )
        extra = min((token_id, token) for token, token_id in other.items() if token not in vocab)
        raise ValueError(
            f"different tokenizers: token {extra[1]!r} (id {extra[0]}) of {label(index)} is missing from the "
            f"vocabulary of {label(first_index)} ({len(vocab)} vs {len(other)} tokens)"
        )


def _check_inputs(inputs: list[_Input], processors) -> list[tuple[set[str], list[torch.Tensor]]]:
    differences = _all_config_differences(inputs)
    matched = _match_parameters(inputs, _config_note(differences))
    if differences:
        name, label_a, a, label_b, b = differences[0]
        raise ValueError(
            f"incompatible configurations: field {name!r} is {_show(a)} in {label_a} but {_show(b)} in {label_b}"
            + (f" (and {len(differences) - 1} more differing fields)" if len(differences) > 1 else "")
        )
    if processors is not None:
        processors = list(processors)
        if len(processors) != len(inputs):
            raise ValueError(f"{len(processors)} processors for {len(inputs)} models")
        check_tokenizers(processors, [inp.label for inp in inputs])
    return matched


def check_compatible(
    models: Sequence[ModelOrStateDict], *, processors: Sequence | None = None, names: Sequence[str] | None = None
) -> None:
    """Raise a `ValueError` naming the first incompatibility between `models` (parameters, shapes, configuration
    fields, tokenizer vocabularies); return `None` when they can be merged."""
    _check_inputs(_resolve_inputs(models, names), processors)


# --------------------------------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------------------------------
def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.device != b.device or a.shape != b.shape:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b)


def _combine(tensors: list[torch.Tensor], weights: list[float], lead: int) -> tuple[torch.Tensor, str]:
    """The merged value of one tensor group and how it was obtained ("integer", "identical" or "interpolated")."""
    first = tensors[lead]
    if not first.is_floating_point():
        return first.detach().clone(), "integer"
    active = [t for w, t in zip(weights, tensors) if w != 0.0]
    if all(_same_tensor(t, first) for t in active):
        return first.detach().clone(), "identical"
    accumulate = torch.float64 if first.dtype == torch.float64 else torch.float32
    total = torch.zeros(first.shape, dtype=accumulate, device=first.device)
    for weight, tensor in zip(weights, tensors):
        if weight != 0.0:
            total.add_(tensor.detach().to(device=first.device, dtype=accumulate), alpha=weight)
    return total.to(first.dtype), "interpolated"


def interpolate(
    models: Sequence[ModelOrStateDict],
    weights: Sequence[float],
    *,
    normalize: bool = False,
    processors: Sequence | None = None,
    names: Sequence[str] | None = None,
    bn: str = "interpolate",
    bn_batches: Batches | None = None,
    method: str = "weighted",
    details: Mapping | None = None,
):
    """Weighted average `sum_i weights[i] * theta_i` of compatible models (see the module docstring for the exact
    semantics: integer buffers, BatchNorm statistics, tied weights, LoRA inputs).

    Args:
        models: `PreTrainedModel`s, PEFT models and / or state dicts of one architecture.
        weights: one non-negative weight per model, summing to 1 (or any non-negative weights with `normalize=True`).
        normalize: divide the weights by their sum instead of requiring a sum of 1.
        processors: optional processors or tokenizers, one per model (`None` entries allowed); their vocabularies
            must be equal.
        names: optional names of the inputs, for messages and the recipe (default: `model i` and the model's path).
        bn: `"interpolate"` (default) or `"recompute"`: re-estimate the BatchNorm statistics of the merged model on
            `bn_batches` (see `recompute_batchnorm`; needs a model input).
        bn_batches: batches (dicts of model inputs) for `bn="recompute"`: a list, or a zero-argument callable
            returning an iterable.
        method: name of the method, recorded in the recipe.
        details: extra recipe details.

    Returns:
        A new model (a copy of the first model input with a nonzero weight, holding the merged tensors and its
        recipe in `merge_recipe`) when any input is a model; otherwise a new state dict. The inputs are not modified.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if bn == "recompute" and bn_batches is None:
        raise ValueError("bn='recompute' needs `bn_batches` (batches to re-estimate the BatchNorm statistics on)")
    if bn == "interpolate" and bn_batches is not None:
        raise ValueError("`bn_batches` given but bn='interpolate': pass bn='recompute' to use them")
    inputs = _resolve_inputs(models, names)
    weights = check_weights(weights, len(inputs), normalize=normalize)
    matched = _check_inputs(inputs, processors)
    lead = next(i for i, w in enumerate(weights) if w > 0)

    merged_by_name: dict[str, torch.Tensor] = {}
    counts = {"interpolated": 0, "identical": 0, "integer": 0}
    for names_of_group, tensors in matched:
        value, kind = _combine(tensors, weights, lead)
        counts[kind] += 1
        for name in names_of_group:
            merged_by_name[name] = value
    logger.info(
        "merged %d inputs with weights %s: %d tensors interpolated, %d identical in every input, %d integer tensors "
        "copied from %s",
        len(inputs), [round(w, 6) for w in weights], counts["interpolated"], counts["identical"], counts["integer"],
        inputs[lead].label,
    )

    model_indices = [i for i, inp in enumerate(inputs) if inp.model is not None]
    if not model_indices:
        if bn == "recompute":
            raise ValueError("bn='recompute' needs a model among the inputs (only state dicts were given)")
        return {name: merged_by_name[name] for name in inputs[0].state}

    template_index = next((i for i in model_indices if weights[i] > 0), model_indices[0])
    template = inputs[template_index]
    result = template.model if template.from_peft else copy.deepcopy(template.model)
    state = result.state_dict()
    with torch.no_grad():
        for group in _alias_groups(state):
            source = next((merged_by_name[n] for n in group if n in merged_by_name), None)
            if source is None:  # cannot happen after the checks; kept as a guard
                raise ValueError(f"no merged value for {group[0]!r}")
            state[group[0]].copy_(source)

    recipe = MergeRecipe(
        method=method,
        inputs=[inp.source for inp in inputs],
        weights=list(weights),
        batchnorm=bn,
        integer_buffers_from=inputs[lead].source,
        details=dict(details or {}),
    )
    peft_inputs = [inp.source for inp in inputs if inp.from_peft]
    if peft_inputs:
        recipe.details["lora_merged_inputs"] = peft_inputs
    if bn == "recompute":
        summary = recompute_batchnorm(result, bn_batches)
        recipe.batchnorm_data = f"{summary['batches']} batches"
        recipe.details["batchnorm_recompute"] = summary
    result.merge_recipe = recipe
    return result


def interpolate_pair(model_a: ModelOrStateDict, model_b: ModelOrStateDict, alpha: float, **kwargs):
    """`alpha * A + (1 - alpha) * B` (the original's `lambda * A + (1 - lambda) * B`): `alpha=1` returns A,
    `alpha=0` returns B, exactly. `alpha` must lie in [0, 1]. Keyword arguments go to `interpolate` (the
    processors / names, if given, are in the order A, B)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (alpha * A + (1 - alpha) * B), got {alpha}")
    kwargs.setdefault("method", "interpolate")
    details = dict(kwargs.pop("details", None) or {})
    details.setdefault("alpha", alpha)
    return interpolate([model_a, model_b], [alpha, 1.0 - alpha], details=details, **kwargs)


def uniform_soup(models: Sequence[ModelOrStateDict], **kwargs):
    """The uniform soup: every model weighted `1 / N` (keyword arguments go to `interpolate`)."""
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    kwargs.setdefault("method", "uniform")
    kwargs.setdefault("normalize", True)  # 1/N in floating point need not sum to exactly 1
    return interpolate(models, [1.0 / len(models)] * len(models), **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Greedy soup, ratatouille, fusing
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class GreedySoupResult:
    """Outcome of `greedy_soup`.

    Attributes:
        model: the soup (uniform average of the ingredients).
        ingredients: indices (into the input list) of the models in the soup, in the order they were added.
        individual_scores: each input model's own score.
        score: the soup's score.
        history: one dict per candidate tried after the first: `candidate`, `score` (of the soup with it), `added`.
    """

    model: nn.Module
    ingredients: list[int]
    individual_scores: list[float]
    score: float
    history: list[dict]


def _score(evaluate_fn, model, what: str) -> float:
    value = float(evaluate_fn(model))
    if math.isnan(value):
        raise ValueError(f"evaluate_fn returned NaN for {what}")
    return value


def greedy_soup(
    models: Sequence[ModelOrStateDict],
    evaluate_fn: Callable[[nn.Module], float],
    *,
    individual_scores: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    processors: Sequence | None = None,
    bn: str = "interpolate",
    bn_batches: Batches | None = None,
) -> GreedySoupResult:
    """Greedy soup (Wortsman et al., 2022): sort the models by their own validation score (`evaluate_fn(model)`,
    higher is better; stable for ties), start the soup with the best one, then try each next model in that order
    and keep it only if the uniform soup with it scores at least as well as the soup without it.

    `individual_scores` skips the evaluation of the single models. With `bn="recompute"` every tried soup of two or
    more models has its BatchNorm statistics re-estimated on `bn_batches` before it is scored. All models must be
    compatible (checked first, as by `interpolate`). The soup is returned with its recipe (`model.merge_recipe`).
    """
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    inputs = _resolve_inputs(models, names)
    _check_inputs(inputs, processors)
    labels = [inp.label for inp in inputs]
    sources = [inp.source for inp in inputs]
    if individual_scores is None:
        scores = []
        for index, model in enumerate(models):
            scores.append(_score(evaluate_fn, model, labels[index]))
            logger.info("greedy soup: %s scores %.6g", labels[index], scores[-1])
    else:
        scores = [float(s) for s in individual_scores]
        if len(scores) != len(models):
            raise ValueError(f"{len(scores)} individual scores for {len(models)} models")
    order = sorted(range(len(models)), key=lambda i: -scores[i])
    soup = [order[0]]
    best = scores[order[0]]
    logger.info("greedy soup: starting from %s (score %.6g)", labels[order[0]], best)
    merge_names = names if names is None else list(names)

    def make(indices):
        return interpolate(
            [models[i] for i in indices],
            [1.0 / len(indices)] * len(indices),
            normalize=True,
            names=None if merge_names is None else [merge_names[i] for i in indices],
            bn=bn if len(indices) > 1 else "interpolate",
            bn_batches=bn_batches if len(indices) > 1 else None,
            method="greedy",
        )

    current = make(soup)
    history = []
    for candidate in order[1:]:
        trial = make(soup + [candidate])
        score = _score(evaluate_fn, trial, f"the soup with {labels[candidate]}")
        added = score >= best
        history.append({"candidate": candidate, "input": sources[candidate], "score": score, "added": added})
        logger.info(
            "greedy soup: + %s -> %.6g (best %.6g): %s", labels[candidate], score, best, "added" if added else "skipped"
        )
        if added:
            soup.append(candidate)
            best = score
            current = trial
    recipe = current.merge_recipe
    recipe.method = "greedy"
    if bn == "recompute" and len(soup) == 1:
        recipe.details["batchnorm_note"] = "a soup of one model keeps that model's own BatchNorm statistics"
    recipe.details.update(
        {
            "individual_scores": {sources[i]: scores[i] for i in range(len(models))},
            "candidate_order": [sources[i] for i in order],
            "soup_score": best,
            "history": history,
        }
    )
    return GreedySoupResult(current, soup, scores, best, history)


def ratatouille(
    models: Sequence[ModelOrStateDict],
    weights: Sequence[float] | None = None,
    *,
    base_model: str | None = None,
    require_base_model: bool = False,
    **kwargs,
):
    """Average finetunes that started from one pretrained model ("model ratatouille", Ramé et al., 2023; UnIVAL's
    "ratatouille" averages auxiliary finetunes re-finetuned on the target task). Uniform by default, or `weights`.

    The shared start is checked in two ways:

    * always: identical architecture (every parameter name and shape, every architecture config field, as in
      `interpolate`);
    * by name, through a `base_model` attribute of the configs (the finetuning script records the pretrained
      checkpoint there: `model.config.base_model = "path/or/hub-id"`). With `base_model=` given, every model must
      record exactly that name. Without it, the models that record one must agree, and models recording one may
      not be mixed with models that do not. When none records it, only the architecture is checked (a warning
      says so), or a `ValueError` is raised with `require_base_model=True`.

    Keyword arguments go to `interpolate`. The merged model's recipe names the base model.
    """
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    names = kwargs.get("names")
    labels = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    recorded = []
    for model in models:
        config = getattr(model.get_base_model() if _is_peft_model(model) else model, "config", None)
        recorded.append(getattr(config, "base_model", None) if config is not None else None)
    if base_model is not None:
        for label, name in zip(labels, recorded):
            if name is None:
                raise ValueError(f"ratatouille: {label} does not record its base model (config.base_model)")
            if name != base_model:
                raise ValueError(f"ratatouille: {label} was finetuned from {name!r}, not from {base_model!r}")
    else:
        known = [(label, name) for label, name in zip(labels, recorded) if name is not None]
        if known and len(known) < len(models):
            missing = next(label for label, name in zip(labels, recorded) if name is None)
            raise ValueError(
                f"ratatouille: {known[0][0]} records its base model ({known[0][1]!r}) but {missing} does not "
                "(config.base_model)"
            )
        for label, name in known[1:]:
            if name != known[0][1]:
                raise ValueError(
                    f"ratatouille: the models start from different pretrained models: {known[0][0]} from "
                    f"{known[0][1]!r}, {label} from {name!r}"
                )
        if known:
            base_model = known[0][1]
        elif require_base_model:
            raise ValueError("ratatouille: no model records its base model (config.base_model)")
        else:
            logger.warning(
                "ratatouille: no model records its base model (config.base_model); only the architecture is checked"
            )
    if weights is None:
        weights = [1.0 / len(models)] * len(models)
        kwargs.setdefault("normalize", True)
    kwargs.setdefault("method", "ratatouille")
    merged = interpolate(models, weights, **kwargs)
    if isinstance(merged, nn.Module):
        merged.merge_recipe.base_model = base_model
    return merged


def fuse(
    models: Sequence[ModelOrStateDict],
    finetune_fn: Callable[[nn.Module], nn.Module | None],
    weights: Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """"Fusing": average the models (uniformly, or with `weights`), then finetune the average briefly with
    `finetune_fn(model) -> model` (or `None` when it trains in place). The training loop is the caller's; this
    is the composition. Keyword arguments go to `interpolate`. Returns the finetuned model with its recipe."""
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    if weights is None:
        weights = [1.0 / len(models)] * len(models)
        kwargs.setdefault("normalize", True)
    kwargs.setdefault("method", "fusing")
    average = interpolate(models, weights, **kwargs)
    if not isinstance(average, nn.Module):
        raise ValueError("fuse needs at least one model among the inputs (only state dicts were given)")
    recipe = average.merge_recipe
    logger.info("fusing: finetuning the average with %s", getattr(finetune_fn, "__name__", repr(finetune_fn)))
    result = finetune_fn(average)
    result = average if result is None else result
    recipe.details["then_finetuned_with"] = getattr(finetune_fn, "__name__", repr(finetune_fn))
    result.merge_recipe = recipe
    return result


# --------------------------------------------------------------------------------------------------------------------
# BatchNorm statistics
# --------------------------------------------------------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _forward_for_statistics(model: nn.Module, batch: Mapping[str, Any]) -> None:
    device = _model_device(model)
    batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        # the towers (all the BatchNorm layers) live in the encoder: the decoder needs not run
        encoder = model.get_encoder()
        accepted = {
            name
            for name, parameter in inspect.signature(encoder.forward).parameters.items()
            if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
        encoder(**{key: value for key, value in batch.items() if key in accepted})
    else:
        model(**batch)


def recompute_batchnorm(model: nn.Module, batches: Batches, *, max_batches: int | None = None) -> dict:
    """Re-estimate the running statistics of every BatchNorm layer of `model` (in place) on `batches`.

    The statistics are reset, the BatchNorm layers put in train mode with `momentum=None` (cumulative average:
    the running mean / variance become the average over the batches of each batch's mean / unbiased variance, so
    with one batch exactly that batch's statistics), and every other module in eval mode; the batches run through
    the model without gradients (for an encoder-decoder, through the encoder only, where the towers are). Then the
    momenta and every module's train / eval mode are restored. BatchNorm layers that saw no data (e.g. the audio
    tower when the batches hold only images) keep their previous statistics.

    Args:
        model: the model (modified in place).
        batches: dicts of model inputs (as a collator returns them): a list / iterable, or a zero-argument callable
            returning one. Tensors are moved to the model's device.
        max_batches: use at most this many batches.

    Returns:
        `{"batches": n, "recomputed_layers": k, "kept_layers": [names of the layers that saw no data]}`.
    """
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    if callable(batches) and not isinstance(batches, Iterable):
        batches = batches()
    if not layers:
        return {"batches": 0, "recomputed_layers": 0, "kept_layers": []}
    saved = {
        name: (module.running_mean.clone(), module.running_var.clone(), module.num_batches_tracked.clone())
        for name, module in layers
    }
    momenta = {name: module.momentum for name, module in layers}
    modes = [(module, module.training) for module in model.modules()]

    def restore(name, module):
        mean, var, count = saved[name]
        with torch.no_grad():
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.num_batches_tracked.copy_(count)

    seen = 0
    try:
        model.eval()
        for _, module in layers:
            module.reset_running_stats()
            module.momentum = None
            module.train()
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                _forward_for_statistics(model, batch)
                seen += 1
    except BaseException:
        for name, module in layers:
            restore(name, module)
        raise
    finally:
        for name, module in layers:
            module.momentum = momenta[name]
        for module, mode in modes:
            module.train(mode)
    if seen == 0:
        for name, module in layers:
            restore(name, module)
        raise ValueError("recompute_batchnorm: no batches")
    kept = []
    for name, module in layers:
        if int(module.num_batches_tracked) == 0:
            restore(name, module)
            kept.append(name)
    logger.info(
        "BatchNorm statistics recomputed on %d batches for %d layers (%d layers saw no data and keep theirs)",
        seen, len(layers) - len(kept), len(kept),
    )
    return {"batches": seen, "recomputed_layers": len(layers) - len(kept), "kept_layers": kept}


# --------------------------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------------------------
def save_merged(
    model: nn.Module,
    out_dir: str | Path,
    processor=None,
    recipe: MergeRecipe | Mapping | None = None,
    **save_kwargs,
) -> Path:
    """Save a merged model like any checkpoint (`save_pretrained`: safetensors + config + generation config), the
    processor when given, `merge_recipe.json`, and a README.md model card (`huggingface_hub.ModelCard`) stating the
    recipe: inputs, weights, method, BatchNorm handling. `recipe` defaults to the `merge_recipe` that the merge
    functions attach to their result. Reload with `UnivalForConditionalGeneration.from_pretrained(out_dir)`."""
    from huggingface_hub import ModelCard, ModelCardData

    recipe = recipe if recipe is not None else getattr(model, "merge_recipe", None)
    if recipe is None:
        raise ValueError("no merge recipe: pass `recipe=` (the merge functions attach one as `model.merge_recipe`)")
    if isinstance(recipe, Mapping):
        recipe = MergeRecipe.from_dict(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, **save_kwargs)
    if processor is not None:
        processor.save_pretrained(out)
    (out / "merge_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2, default=str) + "\n")
    card_data = ModelCardData(library_name="transformers", tags=["unival", "model-merging", f"merge-{recipe.method}"])
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{recipe.to_markdown()}")
    card.save(out / "README.md")
    logger.info("saved the merged model to %s", out)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Interpolation sweep (the paper's accuracy-vs-lambda curves)
# --------------------------------------------------------------------------------------------------------------------
def interpolation_sweep(
    model_a: ModelOrStateDict,
    model_b: ModelOrStateDict,
    alphas: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    evaluate_fns: Mapping[str, Callable[[nn.Module], float]] | Callable[[nn.Module], float] | None = None,
    *,
    out_dir: str | Path | None = None,
    plot: bool = True,
    title: str | None = None,
    **kwargs,
) -> list[dict]:
    """Evaluate `alpha * A + (1 - alpha) * B` for each alpha with each `evaluate_fns[task](model) -> float`.

    Returns one row per alpha: `{"alpha": alpha, task: score, ...}`. With `out_dir`, writes
    `interpolation_sweep.csv` and (with `plot=True`) `interpolation_sweep.png`: each task's score against alpha
    and, for two tasks, one task's score against the other's (the trade-off front). Keyword arguments go to
    `interpolate_pair` (e.g. `bn="recompute"`, `bn_batches=`)."""
    if evaluate_fns is None:
        raise ValueError("interpolation_sweep needs evaluate_fns ({task: fn(model) -> float})")
    if callable(evaluate_fns) and not isinstance(evaluate_fns, Mapping):
        evaluate_fns = {"score": evaluate_fns}
    if not evaluate_fns:
        raise ValueError("interpolation_sweep needs at least one evaluation function")
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("interpolation_sweep needs at least one alpha")
    for alpha in alphas:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rows = []
    for alpha in alphas:
        merged = interpolate_pair(model_a, model_b, alpha, **kwargs)
        row = {"alpha": alpha}
        for task, fn in evaluate_fns.items():
            row[task] = float(fn(merged))
        rows.append(row)
        logger.info("sweep: alpha %.3g -> %s", alpha, ", ".join(f"{k} {v:.6g}" for k, v in row.items() if k != "alpha"))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "interpolation_sweep.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["alpha", *evaluate_fns])
            writer.writeheader()
            writer.writerows(rows)
        if plot:
            _plot_sweep(rows, list(evaluate_fns), out / "interpolation_sweep.png", title)
    return rows


def _plot_sweep(rows: list[dict], tasks: list[str], path: Path, title: str | None) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    panels = 2 if len(tasks) == 2 else 1
    figure = Figure(figsize=(5 * panels, 4), dpi=100)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    alphas = [row["alpha"] for row in rows]
    for task in tasks:
        axes[0].plot(alphas, [row[task] for row in rows], marker="o", label=task)
    axes[0].set_xlabel("alpha (weight of model A; 0 = B, 1 = A)")
    axes[0].set_ylabel("score")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if panels == 2:
        first, second = tasks
        axes[1].plot([row[first] for row in rows], [row[second] for row in rows], marker="o")
        for row in rows:
            axes[1].annotate(f"{row['alpha']:g}", (row[first], row[second]), fontsize=8)
        axes[1].set_xlabel(first)
        axes[1].set_ylabel(second)
        axes[1].grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------
def load_for_merge(path: str | Path, **kwargs):
    """Load a saved UnIVAL model, or a PEFT adapter directory (`adapter_config.json`) on top of its base model
    (`base_model_name_or_path`); the adapters are merged by the merge functions."""
    from modeling_unival import UnivalForConditionalGeneration

    path = Path(path)
    adapter = path / "adapter_config.json"
    if adapter.exists():
        from peft import PeftModel

        base_path = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_path:
            raise ValueError(f"{adapter} names no base model (base_model_name_or_path)")
        base = UnivalForConditionalGeneration.from_pretrained(base_path, **kwargs)
        model = PeftModel.from_pretrained(base, str(path))
        model.name_or_path = str(path)
        return model.eval()
    return UnivalForConditionalGeneration.from_pretrained(path, **kwargs).eval()


def _has_processor(path: Path) -> bool:
    return (path / "processor_config.json").exists() or (path / "tokenizer_config.json").exists()


def _processor_dir(path: Path) -> Path | None:
    """The directory holding the processor of a saved model: its own, or for a PEFT adapter its base model's."""
    if _has_processor(path):
        return path
    adapter = path / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base and Path(base).is_dir() and _has_processor(Path(base)):
            return Path(base)
    return None


def _load_processor(path: Path):
    from processing import UnivalProcessor

    return UnivalProcessor.from_pretrained(str(path))


def schema_batches(
    data_dir: str | Path,
    processor,
    *,
    split: str,
    tasks: Sequence[str] | None = None,
    batch_size: int = 8,
    max_examples: int | None = None,
) -> list[dict]:
    """Batches (model inputs with labels) of the examples of `data_dir/SPLIT.jsonl` (the `training.data` schema,
    e.g. a synthetic world), optionally restricted to `tasks`, built with `UnivalMultitaskCollator` in evaluation
    mode."""
    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import read_jsonl_examples

    root = Path(data_dir)
    if not (root / f"{split}.jsonl").exists():
        raise FileNotFoundError(f"{root / (split + '.jsonl')} not found (a directory in the training.data layout)")
    wanted = set(tasks) if tasks else None
    examples = []
    for example in read_jsonl_examples(root, split):
        if wanted is None or example["task"] in wanted:
            examples.append(example)
            if max_examples is not None and len(examples) >= max_examples:
                break
    if not examples:
        restriction = f" for tasks {sorted(wanted)}" if wanted else ""
        raise ValueError(f"no examples in {root / (split + '.jsonl')}{restriction}")
    collator = UnivalMultitaskCollator(processor, training=False)
    return [collator(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]


def negative_cross_entropy(batches: Sequence[Mapping[str, torch.Tensor]]) -> Callable[[nn.Module], float]:
    """An `evaluate_fn` for `greedy_soup`: minus the mean token-level cross-entropy (teacher forcing, no label
    smoothing, label weights ignored) of a model on `batches` (with `labels`). Higher is better."""

    def evaluate(model: nn.Module) -> float:
        device = _model_device(model)
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "label_weights")}
                labels = batch["labels"].to(device)
                if "decoder_input_ids" not in inputs:
                    inputs["labels"] = labels
                logits = model(**inputs).logits.float()
                total += nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
                ).item()
                tokens += int(labels.ne(-100).sum())
        model.train(was_training)
        return -total / max(tokens, 1)

    evaluate.__name__ = "negative_cross_entropy"
    return evaluate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.merge",
        description="Merge UnIVAL models in weight space (interpolation, uniform / weighted / greedy soups, "
        "ratatouille).",
    )
    parser.add_argument("--models", nargs="+", required=True, metavar="DIR", help="saved models (or PEFT adapters)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to save the merged model")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="default: interpolate with --alpha, weighted with --weights, uniform otherwise",
    )
    parser.add_argument("--weights", nargs="+", type=float, metavar="W", help="one weight per model (sum 1)")
    parser.add_argument("--normalize", action="store_true", help="divide --weights by their sum")
    parser.add_argument("--alpha", type=float, help="two models: alpha * first + (1 - alpha) * second")
    parser.add_argument("--base-model", help="ratatouille: the pretrained model every input must record")
    parser.add_argument("--processor", metavar="DIR", help="processor to save (default: the models' first)")
    parser.add_argument("--bn", choices=BN_MODES, default="interpolate", help="BatchNorm statistics handling")
    parser.add_argument("--bn-data", metavar="DIR", help="data for --bn recompute (training.data layout)")
    parser.add_argument("--bn-split", default="train")
    parser.add_argument("--bn-tasks", nargs="+", metavar="TASK")
    parser.add_argument("--bn-batches", type=int, default=16, help="at most this many batches for --bn recompute")
    parser.add_argument("--eval-data", metavar="DIR", help="greedy: validation data (training.data layout)")
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--eval-tasks", nargs="+", metavar="TASK", help="greedy: tasks to score (default: all)")
    parser.add_argument("--eval-max-examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="device to merge and run forward passes on")
    return parser


def _method_and_weights(args, parser) -> tuple[str, list[float] | None]:
    method = args.method or ("interpolate" if args.alpha is not None else "weighted" if args.weights else "uniform")
    n = len(args.models)
    if args.alpha is not None and args.weights:
        parser.error("give either --alpha or --weights, not both")
    if method == "interpolate":
        if args.alpha is None or n != 2:
            parser.error("--method interpolate needs --alpha and exactly two --models")
        return method, [args.alpha, 1.0 - args.alpha]
    if args.alpha is not None:
        parser.error(f"--alpha is for two-model interpolation, not --method {method}")
    if method == "weighted" and not args.weights:
        parser.error("--method weighted needs --weights")
    if method in ("uniform", "greedy") and args.weights:
        parser.error(f"--method {method} takes no --weights")
    if method == "greedy" and not args.eval_data:
        parser.error("--method greedy needs --eval-data (the Python API takes any evaluate_fn)")
    if args.bn == "recompute" and not args.bn_data:
        parser.error("--bn recompute needs --bn-data")
    if args.bn_data and args.bn != "recompute":
        parser.error("--bn-data is for --bn recompute")
    return method, args.weights


def _cli_logging() -> None:
    if not any(getattr(handler, "_merge_cli", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[merge] %(message)s"))
        handler._merge_cli = True
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    method, weights = _method_and_weights(args, parser)
    _cli_logging()
    start = time.perf_counter()

    paths = [Path(p) for p in args.models]
    device = torch.device(args.device)
    models = []
    for path in paths:
        logger.info("loading %s", path)
        models.append(load_for_merge(path).to(device))
    processor_dirs = [_processor_dir(p) for p in paths]
    loaded = {d: _load_processor(d) for d in dict.fromkeys(d for d in processor_dirs if d is not None)}
    processors = [None if d is None else loaded[d] for d in processor_dirs]
    if args.processor:
        processor = _load_processor(Path(args.processor))
    else:
        processor = next((p for p in processors if p is not None), None)
    logger.info("method %s%s, BatchNorm statistics: %s", method, f", weights {weights}" if weights else "", args.bn)

    def need_processor(option: str):
        if processor is None:
            parser.error(f"{option} needs a processor: none is saved with the models; pass --processor DIR")
        return processor

    bn_batches = None
    if args.bn == "recompute":
        bn_batches = schema_batches(
            args.bn_data, need_processor("--bn-data"), split=args.bn_split, tasks=args.bn_tasks,
            batch_size=args.batch_size, max_examples=args.bn_batches * args.batch_size,
        )
        logger.info("%d batches for the BatchNorm statistics from %s", len(bn_batches), args.bn_data)

    common = dict(names=[str(p) for p in paths], processors=processors, bn=args.bn, bn_batches=bn_batches)
    if method == "greedy":
        eval_batches = schema_batches(
            args.eval_data, need_processor("--eval-data"), split=args.eval_split, tasks=args.eval_tasks,
            batch_size=args.batch_size, max_examples=args.eval_max_examples,
        )
        logger.info("greedy soup scored by -cross-entropy on %d batches of %s", len(eval_batches), args.eval_data)
        result = greedy_soup(models, negative_cross_entropy(eval_batches), **common)
        merged = result.model
        logger.info("greedy soup: %d of %d models, score %.6g", len(result.ingredients), len(models), result.score)
    elif method == "interpolate":
        merged = interpolate_pair(models[0], models[1], args.alpha, **common)
    elif method == "uniform":
        merged = uniform_soup(models, **common)
    elif method == "ratatouille":
        merged = ratatouille(models, weights, base_model=args.base_model, normalize=args.normalize, **common)
    else:
        merged = interpolate(models, weights, normalize=args.normalize, **common)
    recipe = merged.merge_recipe
    if recipe.batchnorm == "recompute":
        recipe.batchnorm_data = f"{args.bn_data} (split {args.bn_split}, {len(bn_batches)} batches)"
    if method == "greedy":
        recipe.details["evaluation"] = f"-cross-entropy on {args.eval_data} (split {args.eval_split})"
    recipe.details["command"] = shlex.join(["python", "-m", "training.merge", *argv])
    out = save_merged(merged, args.out, processor=processor)
    logger.info("done: %s merge of %d models in %.1f s", method, len(models), time.perf_counter() - start)
    return out


__all__ = [
    "BN_MODES",
    "IGNORED_CONFIG_FIELDS",
    "GreedySoupResult",
    "MergeRecipe",
    "check_compatible",
    "check_tokenizers",
    "check_weights",
    "fuse",
    "greedy_soup",
    "interpolate",
    "interpolate_pair",
    "interpolation_sweep",
    "load_for_merge",
    "negative_cross_entropy",
    "ratatouille",
    "recompute_batchnorm",
    "save_merged",
    "schema_batches",
    "uniform_soup",
]


if __name__ == "__main__":
    main()
