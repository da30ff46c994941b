"""Reading original fairseq UnIVAL checkpoints without running any code they might carry.

A fairseq checkpoint is a pickle. Besides tensors and containers it holds an `argparse.Namespace` (the model
arguments) and a few numpy values (training metrics, iterator state). We unpickle with PyTorch's restricted
`weights_only=True` loader and allow exactly those extra types; a file that asks for any other global (a function
to call, a class to build) is refused before anything of it runs, with the names it asked for.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint asks the unpickler for something a fairseq checkpoint never needs."""


def _safe_globals() -> list:
    """The only non-PyTorch globals a fairseq checkpoint needs: the argument namespace and numpy arrays/scalars
    (under both their numpy 1 and numpy 2 module paths, since old files name `numpy.core`)."""
    reconstruct = np._core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar
    allowed = [
        argparse.Namespace,
        np.ndarray,
        np.dtype,
        reconstruct,
        scalar,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy.core.multiarray.scalar"),
    ]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return allowed


def load_original_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a fairseq checkpoint file safely (see the module docstring). Raises `FileNotFoundError`, `ValueError`
    for an empty or non-checkpoint file, and `UnsafeCheckpointError` for a pickle that asks for anything unsafe."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip checkpoint, or unreadable: the torch message says enough
            unsafe = []
        names = ", ".join(unsafe) or str(error).splitlines()[0]
        raise UnsafeCheckpointError(
            f"refusing to unpickle {path}: it asks for {names}, which a fairseq UnIVAL checkpoint never needs. "
            "Nothing from the file was executed."
        ) from None
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from None
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise ValueError(f"{path} is not a fairseq checkpoint: expected a dict with a 'model' state dict")
    return dict(checkpoint)


def select_weights(checkpoint: Mapping[str, Any], ema: bool = False) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint: `checkpoint['model']`, or with `ema=True` the EMA copy that the VQA and
    video-QA finetunes store (the fp32 copy when present, as the original evaluates with)."""
    if not ema:
        return dict(checkpoint["model"])
    extra = checkpoint.get("extra_state") or {}
    for key in ("ema_fp32_params", "ema"):
        if isinstance(extra.get(key), Mapping) and extra[key]:
            weights = dict(extra[key])
            # The fp32 EMA copy holds parameters only; buffers (BatchNorm statistics, ...) come from the model.
            for name, value in checkpoint["model"].items():
                weights.setdefault(name, value)
            return weights
    raise ValueError("this checkpoint has no EMA weights (extra_state['ema']); convert it without --ema")


def original_arguments(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The flat model-argument dict of a checkpoint (`cfg['model']` in fairseq >= 0.10, `args` in older files)."""
    candidates = []
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, Mapping):
        candidates.append(cfg.get("model"))
    candidates.append(checkpoint.get("args"))
    for candidate in candidates:
        if isinstance(candidate, argparse.Namespace):
            return vars(candidate)
        if isinstance(candidate, Mapping) and candidate:
            return dict(candidate)
    raise ValueError("the checkpoint stores no model arguments (neither cfg['model'] nor args)")


__all__ = ["UnsafeCheckpointError", "load_original_checkpoint", "original_arguments", "select_weights"]
