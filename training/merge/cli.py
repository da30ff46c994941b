"""`python -m training.merge`: merge saved models (see the package docstring for the commands)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from training.cli import require_model_dir

from .batches import schema_batches
from .batchnorm import BN_MODES
from .generation import check_task_settings, merged_generation_config
from .interpolation import interpolate, interpolate_pair, uniform_soup
from .loading import input_dirs, load_for_merge, load_processor, processor_dir
from .saving import save_merged
from .scoring import negative_cross_entropy
from .soups import greedy_soup, ratatouille


logger = logging.getLogger(__name__)

METHODS = ("uniform", "weighted", "interpolate", "greedy", "ratatouille")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.merge",
        description="Merge UnIVAL models in weight space (interpolation, uniform / weighted / greedy soups, "
        "ratatouille).",
    )
    parser.add_argument("--models", nargs="+", required=True, metavar="DIR", help="saved models (or PEFT adapters)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to save the merged model (a new directory)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out model directory, even one of the inputs (once the merge is complete)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="default: interpolate with --alpha, weighted with --weights, uniform otherwise",
    )
    parser.add_argument("--weights", nargs="+", type=float, metavar="W", help="one weight per model (sum 1)")
    parser.add_argument("--normalize", action="store_true", help="divide --weights by their sum")
    parser.add_argument("--alpha", type=float, help="two models: alpha * first + (1 - alpha) * second")
    parser.add_argument(
        "--task",
        help="the merged model's task: its generation_config.json gets the original's settings of that task "
        "(default: the inputs' generation config, when every input has the same one and it sets a generation length)",
    )
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


def _input_paths(args, parser) -> list[Path]:
    """The `--models` directories, checked before anything is loaded: each exists, and `--out` is none of the
    directories they are read from (saving there would replace an input's weights by the merge) nor any other
    existing directory, unless `--overwrite`. Paths are compared resolved (`./a`, `a` and a symlink to it are one)."""
    paths, read_from = [], []
    for model in args.models:
        try:
            paths.append(require_model_dir(model))
            read_from.extend(input_dirs(paths[-1]))  # a PEFT adapter's base directory too, checked to exist
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"--models: {error}")
    if args.processor:
        try:
            require_model_dir(args.processor)
        except FileNotFoundError as error:
            parser.error(f"--processor: {error}")
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out} is an existing file, not a directory")
    for directory in read_from:
        if out in directory.resolve().parents:
            parser.error(f"--out {args.out} holds the input model directory {directory}: replacing it would delete it")
    if args.overwrite:
        # `--overwrite` replaces the directory as a whole: only ever a saved model, never e.g. a folder of models.
        if out.is_dir() and any(out.iterdir()) and not _is_model_dir(out):
            parser.error(f"--out {args.out} is not a saved model directory; --overwrite replaces only those")
        return paths
    for directory in read_from:
        if directory.resolve() == out:
            parser.error(
                f"--out {args.out} is the input model directory {directory}: saving the merge there would "
                "overwrite its weights; choose another --out, or pass --overwrite to replace it"
            )
    if out.is_dir() and any(out.iterdir()):
        parser.error(f"--out {args.out} exists and is not empty; choose another --out, or pass --overwrite")
    return paths


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


class _CurrentStdoutHandler(logging.StreamHandler):
    """A stream handler writing to `sys.stdout` as it is when a record is emitted, not as it was when the handler was
    made: `main` may run several times in one process, with stdout redirected in between (tests, notebooks)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler's constructor sets it; the current stdout is always used
        pass


def _cli_logging() -> None:
    package_logger = logging.getLogger(__package__)  # the parent of every module's logger
    if not any(getattr(handler, "_merge_cli", False) for handler in package_logger.handlers):
        handler = _CurrentStdoutHandler()
        handler.setFormatter(logging.Formatter("[merge] %(message)s"))
        handler._merge_cli = True
        package_logger.addHandler(handler)
    package_logger.propagate = False
    package_logger.setLevel(logging.INFO)


def _load_models(paths: list[Path], args, parser) -> list:
    """The input models on `--device`, refused (before any merging) when no generation config of a task follows from
    them and `--task`."""
    device = torch.device(args.device)
    models = []
    for path in paths:
        logger.info("loading %s", path)
        models.append(load_for_merge(path).to(device))
    try:
        generation = merged_generation_config(models, [str(p) for p in paths], args.task)
        if args.task is None:
            check_task_settings(generation)
    except ValueError as error:
        parser.error(str(error))
    return models


def _load_processors(paths: list[Path], processor_path: str | None) -> tuple:
    """The processor to save (`--processor`, else the first input's) and each input's processor (`None` if none)."""
    processor_dirs = [processor_dir(p) for p in paths]
    loaded = {d: load_processor(d) for d in dict.fromkeys(d for d in processor_dirs if d is not None)}
    processors = [None if d is None else loaded[d] for d in processor_dirs]
    if processor_path:
        return load_processor(Path(processor_path)), processors
    return next((p for p in processors if p is not None), None), processors


def _need_processor(processor, option: str, parser):
    if processor is None:
        parser.error(f"{option} needs a processor: none is saved with the models; pass --processor DIR")
    return processor


def _merge(method: str, models: list, weights, args, parser, processor, **common):
    if method == "greedy":
        eval_batches = schema_batches(
            args.eval_data, _need_processor(processor, "--eval-data", parser), split=args.eval_split,
            tasks=args.eval_tasks, batch_size=args.batch_size, max_examples=args.eval_max_examples,
        )
        logger.info("greedy soup scored by -cross-entropy on %d batches of %s", len(eval_batches), args.eval_data)
        result = greedy_soup(models, negative_cross_entropy(eval_batches), **common)
        logger.info("greedy soup: %d of %d models, score %.6g", len(result.ingredients), len(models), result.score)
        result.model.merge_recipe.details["evaluation"] = f"-cross-entropy on {args.eval_data} (split {args.eval_split})"
        return result.model
    if method == "interpolate":
        return interpolate_pair(models[0], models[1], args.alpha, **common)
    if method == "uniform":
        return uniform_soup(models, **common)
    if method == "ratatouille":
        return ratatouille(models, weights, base_model=args.base_model, normalize=args.normalize, **common)
    return interpolate(models, weights, normalize=args.normalize, **common)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    method, weights = _method_and_weights(args, parser)
    paths = _input_paths(args, parser)
    _cli_logging()
    start = time.perf_counter()

    models = _load_models(paths, args, parser)
    processor, processors = _load_processors(paths, args.processor)
    logger.info("method %s%s, BatchNorm statistics: %s", method, f", weights {weights}" if weights else "", args.bn)
    bn_batches = None
    if args.bn == "recompute":
        bn_batches = schema_batches(
            args.bn_data, _need_processor(processor, "--bn-data", parser), split=args.bn_split, tasks=args.bn_tasks,
            batch_size=args.batch_size, max_examples=args.bn_batches * args.batch_size,
        )
        logger.info("%d batches for the BatchNorm statistics from %s", len(bn_batches), args.bn_data)

    merged = _merge(
        method, models, weights, args, parser, processor,
        names=[str(p) for p in paths], processors=processors, bn=args.bn, bn_batches=bn_batches, task=args.task,
    )
    recipe = merged.merge_recipe
    if recipe.batchnorm == "recompute":
        recipe.batchnorm_data = f"{args.bn_data} (split {args.bn_split}, {len(bn_batches)} batches)"
    recipe.details["command"] = shlex.join(["python", "-m", "training.merge", *argv])
    out = save_merged(merged, args.out, processor=processor, overwrite=args.overwrite)
    logger.info("done: %s merge of %d models in %.1f s", method, len(models), time.perf_counter() - start)
    return out
