"""Multitask pretraining of UnIVAL with task balancing and a multimodal curriculum, on `transformers.Trainer`.

    python training/pretrain.py --recipe synthetic_tiny --output_dir outputs/pretrain
    python training/pretrain.py --set sources.world.path=/tmp/world sources.world.num_examples=200 --max_steps 20
    accelerate launch --multi_gpu --num_processes 2 training/pretrain.py --recipe synthetic_tiny --output_dir ...
    python training/pretrain.py --recipe my_recipe.yaml --stages video --resume_from_checkpoint true

A recipe (`training/recipe.py`) lists the data sources and the curriculum stages; each stage starts from the
previous stage's weights, has its own datasets, task mixture, processor settings (resolution, frames) and
schedule, and is written to `OUTPUT_DIR/STAGE/final` (`training/stages.py`). A finished stage is skipped when the
run is restarted, so a stage can be resumed or rerun on its own (`--stages NAME`).

`--set KEY.PATH=VALUE ...` changes the recipe's values without copying it, validated as the recipe's own: the
embedded recipe's synthetic world with `--set sources.world.path=DIR sources.world.num_examples=N`, one stage's
schedule with `--set stages.NAME.training.max_steps=N`.

Any `TrainingArguments` flag (`--max_steps`, `--learning_rate`, ...) overrides the recipe's value for EVERY stage:
`--max_steps 20` runs each stage for 20 steps. Each stage prints the values the command line changes; for one stage
only, use `--set stages.NAME.training.FIELD=VALUE`.

On CPU the command line keeps freed memory in glibc's heap, for faster steps (`training/allocator.py`;
`--keep_freed_memory false` keeps glibc's defaults); when stderr is not a terminal it writes plain log lines, no
progress bars.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python training/pretrain.py` / `accelerate launch training/pretrain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.cli import configure_logging, configure_process, parse_command_line
from training.recipe import load_recipe
from training.stages import run_recipe


@dataclass
class PretrainArguments:
    recipe: str = field(default="synthetic_tiny", metadata={"help": "recipe file, or the name of a shipped recipe"})
    set: list[str] = field(
        default_factory=list,
        metadata={"help": "KEY.PATH=VALUE changes of the recipe (VALUE read as YAML), e.g. "
                          "sources.world.num_examples=200 stages.image_text.training.max_steps=100"},
    )
    stages: str | None = field(default=None, metadata={"help": "comma-separated stage names to run (default: all)"})
    overwrite_stages: bool = field(default=False, metadata={"help": "rerun stages whose final model exists"})


def run(argv: list[str] | None = None) -> list[dict]:
    """Runs the command line `argv` (default `sys.argv[1:]`) in this process, with its process settings
    (`training.cli.configure_process`); returns the summaries of the stages run."""
    args, process, training = parse_command_line(
        list(sys.argv[1:] if argv is None else argv), PretrainArguments, "outputs/pretrain", __doc__
    )
    configure_process(process)
    recipe = load_recipe(args.recipe, args.set)
    stages = args.stages.split(",") if args.stages else None
    return run_recipe(recipe, training, stages=stages, overwrite=args.overwrite_stages)


def main() -> None:
    configure_logging()
    run()


if __name__ == "__main__":
    main()
