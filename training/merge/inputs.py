"""The inputs of a merge: models, PEFT models and state dicts, each resolved to its tensors and tied-weight groups."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn


logger = logging.getLogger(__name__)

ModelOrStateDict = Union[nn.Module, Mapping[str, torch.Tensor]]


@dataclass
class MergeInput:
    label: str  # used in messages
    source: str  # used in the recipe
    state: dict[str, torch.Tensor]
    groups: list[list[str]]  # names sharing one tensor (tied weights), in state-dict order
    group_of: dict[str, int]
    model: nn.Module | None = None
    config: Any = None
    from_peft: bool = False


def is_peft_model(obj) -> bool:
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


def alias_groups(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Names grouped by the tensor they refer to (tied weights share one storage), in state-dict order."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(_storage_key(name, tensor), []).append(name)
    return list(groups.values())


def _state_of(obj, index: int) -> tuple[nn.Module | None, dict[str, torch.Tensor]]:
    """The model (`None` for a state dict) and the tensors of one input, a PEFT model already merged into its base."""
    if is_peft_model(obj):
        obj = copy.deepcopy(obj).merge_and_unload()
    if isinstance(obj, nn.Module):
        return obj, dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise TypeError(f"input {index}: expected a model, a PeftModel or a state dict, got {type(obj).__name__}")
    for key in obj:
        if "lora_A" in key or "lora_B" in key or "lora_embedding_" in key:
            raise ValueError(
                f"input {index} is a state dict with LoRA tensors ({key!r}): pass the PeftModel (its adapters are "
                "merged with `merge_and_unload` first) or merge the adapters yourself"
            )
    return None, dict(obj)


def _resolve_input(obj, index: int, name: str | None) -> MergeInput:
    from_peft = is_peft_model(obj)
    path = _path_of(obj) if isinstance(obj, nn.Module) else ""
    model, state = _state_of(obj, index)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"input {index}: state-dict entry {key!r} is a {type(value).__name__}, not a tensor")
    if name is not None:
        label = source = str(name)
    else:
        label = f"model {index}" + (f" ({path})" if path else "")
        source = path or f"model {index}"
    groups = alias_groups(state)
    group_of = {member: g for g, members in enumerate(groups) for member in members}
    if from_peft:
        logger.info("%s: LoRA adapters merged into the base weights (merge_and_unload on a copy)", label)
    return MergeInput(label, source, state, groups, group_of, model, getattr(model, "config", None), from_peft)


def resolve_inputs(models, names) -> list[MergeInput]:
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
