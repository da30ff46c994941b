"""What the training command lines (`training/pretrain.py`, `training/finetune.py`) share: how they read their
flags, and the process-wide settings they apply before training (which the library itself never changes).

`TrainingArguments` flags are read as values, the ones given on the command line only, and no `TrainingArguments`
is built from them: the library builds each stage's own from its layers of defaults (`training.stages`). Building
one here would also set up the process's distributed state, and on a multi-process CPU launch (`torchrun`,
`accelerate launch`) one built without `use_cpu` joins the process group as a non-distributed run: transformers then
warns on every rank that DDP is not in use (`TrainingArguments._setup_devices`), and the state it leaves behind has
no barrier for `main_process_first`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class ProcessArguments:
    keep_freed_memory: bool = field(
        default=True,
        metadata={"help": "on CPU, keep large freed blocks in glibc's heap instead of unmapping them (about 20%% "
                          "faster training steps, training/allocator.py); `--keep_freed_memory false` (or "
                          "`--no_keep_freed_memory`) keeps glibc's defaults. Nothing changes on GPU machines or without glibc"},
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every flag's help (as `HfArgumentParser`'s own formatter), the description as written."""


_UNSET = object()


def parse_command_line(argv: list[str], script_type: type, default_output_dir: str, description: str):
    """Reads `argv` against the script's dataclass, [`ProcessArguments`] and the `TrainingArguments` flags.

    Returns `(script_args, process_args, training_values)`: the two dataclasses (defaults where a flag is not
    given), and `{field: value}` of the `TrainingArguments` flags given, with `output_dir` defaulting to
    `default_output_dir`.
    """
    types = (script_type, ProcessArguments, TrainingArguments)
    # allow_abbrev=False: a flag is only ever read under its full name, so the values given are the values meant.
    parser = HfArgumentParser(types, description=description, formatter_class=_HelpFormatter, allow_abbrev=False)
    # argparse sets a default only where the namespace has no value yet: pre-set names that stay `_UNSET` were not
    # given on the command line.
    names = [f.name for cls in types for f in dataclasses.fields(cls) if f.init]
    namespace = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names, _UNSET)))
    given = {name: value for name, value in vars(namespace).items() if value is not _UNSET}

    def instance(cls):
        return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.init and f.name in given})

    training_names = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    training = {name: value for name, value in given.items() if name in training_names}
    training.setdefault("output_dir", default_output_dir)
    return instance(script_type), instance(ProcessArguments), training


def configure_process(process: ProcessArguments) -> None:
    """The settings a training command applies to its whole process: glibc's allocator thresholds on CPU (unless
    `--keep_freed_memory false`), and plain log lines instead of progress bars when stderr is not a terminal (a log
    file would collect their escape codes; Trainer's own bars follow `disable_tqdm`, see `training.stages`)."""
    if process.keep_freed_memory:
        from training.allocator import keep_freed_memory

        keep_freed_memory()
    if not sys.stderr.isatty():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()  # "Loading weights" of `from_pretrained`


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def require_model_dir(path: str | Path) -> Path:
    """`path` as a `Path` when it is a directory. A missing one is refused here by name: `from_pretrained` would take
    it for a hub repository id and fail with a message about the form of repo ids."""
    given, path = path, Path(path)  # named as given: `Path` drops a leading `./`
    if not path.exists():
        raise FileNotFoundError(f"model directory {given} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(
            f"{given} is not a directory (a model saved with `save_pretrained`, or a PEFT adapter directory)"
        )
    return path


def looks_like_path(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a hub repository id (`owner/name`): it starts with `.` or
    `~`, is absolute, or has more separators than a repo id."""
    return name.startswith((".", "~", os.sep)) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


__all__ = [
    "ProcessArguments",
    "configure_logging",
    "configure_process",
    "looks_like_path",
    "parse_command_line",
    "require_model_dir",
]
