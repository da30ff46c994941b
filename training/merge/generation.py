"""The generation config of a merged model: the inputs' when they all have the same one, else the original's
settings of the merged model's task (`processing.tasks`).

A merged model generates like one of its inputs only if they agree: a caption model and a VQA model merged keep
neither's settings silently, the caller names the task the merged model is for.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence

from torch import nn
from transformers import GenerationConfig

from processing.tasks import generation_config


# The registry holds the decoding settings of each task; the special tokens are the model's.
_SPECIAL_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_TASK_HINT = "pass the merged model's task (`task=`, `--task` on the command line)"


def _settings(config: GenerationConfig) -> dict:
    return json.loads(config.to_json_string(use_diff=False, ignore_metadata=True))


def _first_difference(first: GenerationConfig, other: GenerationConfig) -> tuple[str, object, object] | None:
    a, b = _settings(first), _settings(other)
    for key in list(a) + [key for key in b if key not in a]:
        if a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def merged_generation_config(
    models: Sequence[nn.Module], labels: Sequence[str], task: str | None = None
) -> GenerationConfig:
    """The generation config of the merge of `models` (named `labels` in messages): with `task`, the original's
    settings of that task (and the models' special tokens); otherwise a copy of the models' own, which must be the
    same in every model."""
    if task is not None:
        config = models[0].config
        return generation_config(task, **{name: getattr(config, name, None) for name in _SPECIAL_TOKEN_IDS})
    first = models[0].generation_config
    for label, model in zip(labels[1:], models[1:]):
        difference = _first_difference(first, model.generation_config)
        if difference is not None:
            key, a, b = difference
            raise ValueError(
                f"the inputs' generation configs differ: {key} is {a!r} in {labels[0]} but {b!r} in {label}; "
                f"{_TASK_HINT} to give the merged model the original's settings of that task"
            )
    return copy.deepcopy(first)


def check_task_settings(config: GenerationConfig) -> None:
    """Refuse the inputs' generation config when it sets no generation length: it is no task's (the registry's tasks
    that write text all set one), and `generate()` would fall back to transformers' default `max_length` with a
    warning."""
    if config.max_new_tokens is None and config.max_length == GenerationConfig().max_length:
        raise ValueError(
            "the merged model's generation config (its inputs') sets no task's generation settings (no "
            f"max_new_tokens / max_length); {_TASK_HINT} to save the original's settings of that task"
        )
