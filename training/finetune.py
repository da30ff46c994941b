"""Single-task finetuning of a (pretrained) UnIVAL on `transformers.Trainer` (`training/finetuning.py`), with the
original's per-task settings, generation metrics during evaluation, and parameter-efficient variants.

    python training/finetune.py --task caption --model outputs/pretrain/video_audio/final \\
        --world outputs/synthetic-world --output_dir outputs/ft_caption
    python training/finetune.py --task vqa --model MODEL --train_tsv vqa_train.tsv --eval_tsv vqa_val.tsv \\
        --tsv_kind vqa --media_root images/ --output_dir outputs/ft_vqa --lora --merge_lora
    python training/finetune.py --task visual_grounding --model MODEL --hf_dataset data/refcoco_arrow \\
        --columns '{"image": "image", "text": "sentence", "boxes": "bbox"}' --output_dir outputs/ft_refcoco
    python -m training.finetune --task caption ...
    accelerate launch --multi_gpu --num_processes 2 training/finetune.py --task caption ...

Settings: the package's training defaults <- finetuning's common settings (clip norm 1.0, evaluation and saving every
epoch) <- the task's row of the original finetuning scripts (`training.finetuning.TASK_DEFAULTS`) <- any
`TrainingArguments` flag given here. Output: OUTPUT_DIR/final (model or LoRA adapter, processor, the task's
generation_config.json, finetune_summary.json), with --merge_lora also OUTPUT_DIR/final_merged.

On CPU the command line keeps freed memory in glibc's heap, for faster steps (`training/allocator.py`;
`--keep_freed_memory false` keeps glibc's defaults); when stderr is not a terminal it writes plain log lines, no
progress bars.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python training/finetune.py` / `accelerate launch training/finetune.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.cli import ProcessArguments, configure_logging, configure_process, parse_command_line
from training.finetuning import FinetuneArguments, finetune


def parse_arguments(argv: list[str]) -> tuple[FinetuneArguments, ProcessArguments, dict]:
    """(finetuning arguments, process settings, `TrainingArguments` values given) of a command line."""
    return parse_command_line(list(argv), FinetuneArguments, "outputs/finetune", __doc__)


def run(argv: list[str] | None = None) -> dict:
    """Runs the command line `argv` (default `sys.argv[1:]`) in this process, with its process settings
    (`training.cli.configure_process`); returns the run's summary (also in `final/finetune_summary.json`)."""
    args, process, training = parse_arguments(sys.argv[1:] if argv is None else argv)
    configure_process(process)
    return finetune(args, training)[1]


def main() -> None:
    configure_logging()
    run()


if __name__ == "__main__":
    main()
