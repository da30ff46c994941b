"""Reading merge inputs from disk: saved models, PEFT adapter directories on their base model, and their processors."""

from __future__ import annotations

import json
from pathlib import Path

from training.cli import looks_like_path, require_model_dir


def adapter_base(path: Path) -> str | None:
    """The base model (`base_model_name_or_path`) of a PEFT adapter directory; `None` for a model directory."""
    adapter = path / "adapter_config.json"
    if not adapter.exists():
        return None
    base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter} names no base model (base_model_name_or_path)")
    if not Path(base).exists() and looks_like_path(base):
        raise FileNotFoundError(f"model directory {base} (the base model of the adapter {path}) does not exist")
    return base


def input_dirs(path: Path) -> list[Path]:
    """The local directories an input directory is read from: its own, then for a PEFT adapter its base model's (when
    that is a directory rather than a hub id)."""
    base = adapter_base(path)
    return [path] + ([Path(base)] if base is not None and Path(base).is_dir() else [])


def load_for_merge(path: str | Path, **kwargs):
    """Load a saved UnIVAL model, or a PEFT adapter directory (`adapter_config.json`) on top of its base model
    (`base_model_name_or_path`); the adapters are merged by the merge functions."""
    from modeling_unival import UnivalForConditionalGeneration

    path = require_model_dir(path)
    base_path = adapter_base(path)
    if base_path is None:
        return UnivalForConditionalGeneration.from_pretrained(path, **kwargs).eval()
    from peft import PeftModel

    base = UnivalForConditionalGeneration.from_pretrained(base_path, **kwargs)
    model = PeftModel.from_pretrained(base, str(path))
    model.name_or_path = str(path)
    return model.eval()


def _has_processor(path: Path) -> bool:
    return (path / "processor_config.json").exists() or (path / "tokenizer_config.json").exists()


def processor_dir(path: Path) -> Path | None:
    """The directory holding the processor of a saved model: its own, or for a PEFT adapter its base model's."""
    return next((directory for directory in input_dirs(path) if _has_processor(directory)), None)


def load_processor(path: Path):
    from processing import UnivalProcessor

    return UnivalProcessor.from_pretrained(str(path))
