"""Convert an original fairseq UnIVAL checkpoint into a complete `transformers` model directory.

    python -m hub_upload.convert --checkpoint unival_vqa/checkpoint_best.pt --out unival-vqa --task vqa --ema

The directory holds `model.safetensors`, `config.json` (with `auto_map` for `trust_remote_code`),
`generation_config.json` (the task's inference settings from the original evaluation scripts), the processor and
tokenizer files, the modeling code, and a model card (`README.md`, `hub_upload.model_card`: the source file, its
sha256 and its architecture compared with the released one). The conversion reloads the directory with
`AutoModelForSeq2SeqLM` and runs one forward pass as a self-check. Reading, key maps and config derivation are
`modeling_unival.conversion`'s.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.conversion import (
    UnsafeCheckpointError,
    check_checkpoint_file,
    check_original_buffers,
    config_from_original_args,
    load_original_checkpoint,
    load_original_state_dict,
    original_arguments,
    select_weights,
)
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from processing.tasks import generation_config, resolve_task

from .model_card import ConvertedCheckpoint, write_model_card


logger = logging.getLogger(__name__)

# `--task` choices: the original's task names, resolved through the aliases of `processing.tasks`.
TASK_CHOICES = ("caption", "vqa", "refcoco", "snli_ve", "video_caption", "video_qa", "audio_caption")


def build_processor(args: Mapping, task: str) -> UnivalProcessor:
    """The processor of a converted checkpoint: image size, frames and crop size from the original arguments
    (falling back on the task's released recipe)."""
    spec = resolve_task(task)
    image_size = args.get("patch_image_size") or spec.image_size or 480
    if spec.name == "visual_grounding":
        image_size = spec.image_size  # RefCOCO finetuning and evaluation resize to 512 whatever the stored argument
    num_frames = args.get("num_frames") or spec.num_frames or 16
    crop = args.get("patch_frame_size") or 384
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(size=int(image_size)),
        video_processor=UnivalVideoProcessor(num_frames=int(num_frames), crop_size=int(crop)),
        feature_extractor=UnivalFeatureExtractor(),
    )


def check_out_dir(out_dir: Path) -> None:
    """Refuses an output directory that cannot be made because it, or a folder above it, is an existing file; checked
    before the (long) conversion rather than when saving."""
    for candidate in (out_dir, *out_dir.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ValueError(f"--out {out_dir}: {candidate} is an existing file, not a directory")
            return


def convert_model(checkpoint_path: Path, ema: bool = False) -> tuple[UnivalForConditionalGeneration, dict, dict]:
    """The port of a checkpoint's weights (eval mode), the checkpoint's original arguments, and the comparison of its
    stored bucket buffers with the recomputed ones (`{key: equal}`; a mismatch is logged, the port recomputes them)."""
    checkpoint = load_original_checkpoint(Path(checkpoint_path))
    weights = select_weights(checkpoint, ema=ema)
    args = original_arguments(checkpoint)
    config = config_from_original_args(args, weights)
    model = UnivalForConditionalGeneration(config)
    load_original_state_dict(model, weights)
    buffer_checks = check_original_buffers(weights, config)
    for key, equal in buffer_checks.items():
        if not equal:
            logger.warning("%s differs from the recomputed buckets (averaged checkpoint?); the port recomputes it", key)
    return model.eval(), args, buffer_checks


def _describe(config: UnivalConfig) -> str:
    towers = ["image"] + [name for name in ("video", "audio") if getattr(config, f"{name}_config") is not None]
    return (
        f"{config.d_model} dims, {config.encoder_layers}+{config.decoder_layers} layers, vocabulary "
        f"{config.vocab_size}, towers: {', '.join(towers)}"
    )


def convert_checkpoint(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    task: str = "caption",
    ema: bool = False,
    repo_id: str | None = None,
) -> Path:
    """Converts `checkpoint_path` into `out_dir` (see the module docstring) and returns `out_dir`."""
    checkpoint_path, out_dir = Path(checkpoint_path), Path(out_dir)
    spec = resolve_task(task)
    check_out_dir(out_dir)
    check_checkpoint_file(checkpoint_path)
    print(f"[convert] reading {checkpoint_path} (restricted unpickler)")
    model, args, buffer_checks = convert_model(checkpoint_path, ema)
    config = model.config
    print(f"[convert] {_describe(config)}")
    processor = build_processor(args, spec.name)
    if len(processor.tokenizer) != config.vocab_size:
        logger.warning(
            "the model's vocabulary (%d) differs from the UnIVAL tokenizer's (%d): the saved processor does not fit it",
            config.vocab_size,
            len(processor.tokenizer),
        )
    special_ids = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    model.generation_config = generation_config(spec, **{name: getattr(config, name) for name in special_ids})

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    provenance = ConvertedCheckpoint.from_file(checkpoint_path, ema=ema, buffer_checks=buffer_checks)
    write_model_card(out_dir, provenance, spec, repo_id=repo_id)
    print(f"[convert] wrote {out_dir}")
    self_check(model, out_dir)
    return out_dir


@torch.no_grad()
def self_check(model: UnivalForConditionalGeneration, out_dir: Path) -> float:
    """Reloads `out_dir` with `AutoModelForSeq2SeqLM` and compares one forward pass with the in-memory model."""
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out_dir).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.tensor([[0, 4, 5, 6, 2]]),
        "pixel_values": torch.randn(1, 3, 64, 64, generator=generator),
        "decoder_input_ids": torch.tensor([[0, 7, 8]]),
    }
    difference = (reloaded(**inputs).logits - model(**inputs).logits).abs().max().item()
    if difference > 1e-5:
        raise RuntimeError(f"self-check failed: the reloaded model differs by {difference:.2e}")
    print(f"[convert] self-check: reloaded with AutoModelForSeq2SeqLM, same forward pass (max diff {difference:.1e})")
    return difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="original fairseq checkpoint (.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output directory, e.g. unival-base")
    parser.add_argument(
        "--task", default="caption", choices=TASK_CHOICES, help="sets the processor sizes and generation settings"
    )
    parser.add_argument("--ema", action="store_true", help="convert the EMA weights (VQA and video-QA finetunes)")
    parser.add_argument("--repo-id", default=None, help="name used in the model card's usage snippet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[convert] %(levelname)s %(message)s")
    try:
        convert_checkpoint(args.checkpoint, args.out, task=args.task, ema=args.ema, repo_id=args.repo_id)
    except (FileNotFoundError, ValueError, NotImplementedError, UnsafeCheckpointError) as error:
        print(f"[convert] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
