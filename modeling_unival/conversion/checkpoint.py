"""Reading original fairseq UnIVAL checkpoints without running any code they might carry.

A fairseq checkpoint is a pickle. Besides tensors and containers it holds an `argparse.Namespace` (the model
arguments) and a few numpy values (training metrics, iterator state). We unpickle with PyTorch's restricted
`weights_only=True` loader and allow exactly those extra types; a file that asks for any other global (a function
to call, a class to build) is refused before anything of it runs, with the names it asked for.
"""

from __future__ import annotations

import argparse
import pickle
import re
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


# `torch.save` writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle of protocol 2 or above.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = range(2, 6)


def check_checkpoint_file(path: str | Path) -> None:
    """Refuses a file that is not a PyTorch checkpoint (an image, a text file, ...) by its first bytes, before the
    unpickler reads it: a stray file would otherwise fail inside the unpickler with a message about pickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    is_pickle = len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS
    if not (head == _ZIP_MAGIC or is_pickle):
        what = "it is empty" if not head else f"it starts with {head!r}, neither a zip archive nor a pickle"
        raise ValueError(f"{path} is not a PyTorch checkpoint (torch.save file): {what}")


def _refused_globals(path: Path, error: pickle.UnpicklingError) -> str:
    """The globals a refused pickle asked for. A zip checkpoint lists them; for a legacy pickle they can only be read
    from torch's own message, which also advises `weights_only=False`: exactly what must not be done with such a
    file, so only the names are kept."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy pickle, or unreadable: fall back on the message
        unsafe = []
    unsafe = unsafe or re.findall(r"GLOBAL (\S+)", str(error))
    return ", ".join(dict.fromkeys(unsafe)) or "a global the restricted unpickler does not allow"


def read_torch_file(path: str | Path, what: str = "a fairseq UnIVAL checkpoint") -> Any:
    """The object `torch.save` wrote to `path`, read with PyTorch's restricted `weights_only=True` unpickler that also
    allows the argument namespace and numpy values of fairseq checkpoints (see the module docstring). Raises
    `FileNotFoundError`, `ValueError` for an empty or non-checkpoint file, and `UnsafeCheckpointError` naming the
    globals a pickle asks for beyond those (`what` says which kind of file never needs them)."""
    path = Path(path)
    check_checkpoint_file(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"refusing to unpickle {path}: it asks for {_refused_globals(path, error)}, which {what} never needs. "
            "Nothing from the file was executed."
        ) from None
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from None


def read_weights_file(path: str | Path, what: str) -> Mapping[str, Any]:
    """A weights file as a mapping: `.safetensors` (safetensors' own reader) or a `torch.save` file
    (`read_torch_file`). Raises `ValueError` naming the file for anything that is not a mapping of weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: cannot read it as safetensors (truncated or corrupt?): {error}") from None
    loaded = read_torch_file(path, what)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not the state dict of {what}")
    return loaded


def load_original_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a fairseq checkpoint file safely (`read_torch_file`); raises `ValueError` for a file that is not a
    fairseq checkpoint (no 'model' state dict)."""
    checkpoint = read_torch_file(path)
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


__all__ = [
    "UnsafeCheckpointError",
    "check_checkpoint_file",
    "load_original_checkpoint",
    "original_arguments",
    "read_torch_file",
    "read_weights_file",
    "select_weights",
]
