"""Compatibility checks of a merge: the weights, then every parameter name and shape, the architecture configuration
and the tokenizer vocabularies, each refusal naming the first problem."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .inputs import MergeInput, ModelOrStateDict, resolve_inputs


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

WEIGHT_TOLERANCE = 1e-6


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


def _all_config_differences(inputs: list[MergeInput]) -> list[tuple[str, str, Any, str, Any]]:
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


def _match_parameters(inputs: list[MergeInput], note: str) -> list[tuple[set[str], list[torch.Tensor]]]:
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


def check_inputs(inputs: list[MergeInput], processors) -> list[tuple[set[str], list[torch.Tensor]]]:
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
    check_inputs(resolve_inputs(models, names), processors)
