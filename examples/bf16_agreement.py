"""Does bf16 inference write what fp32 writes? Greedy captions of a trained model, in both precisions.

Loads a trained UnIVAL (by default the embedded default that `examples/demo.py` trains), takes N held-out captioning
examples of the synthetic world (image, video and audio captions in turn) and decodes each
greedily, once with the model in float32 and once loaded with `dtype=torch.bfloat16`. Prints how many captions are
identical, and the ones that are not.

    python examples/demo.py                      # trains outputs/demo (about 20 minutes on 2 cores)
    python examples/bf16_agreement.py [--model outputs/demo/video_audio/final] [--examples 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import modeling_unival  # noqa: E402,F401  (registers the Auto classes)
import processing  # noqa: E402,F401
from training.collator import UnivalMultitaskCollator  # noqa: E402
from training.data.synthetic import load_world  # noqa: E402
from training.recipe import load_recipe  # noqa: E402
from transformers import AutoModelForSeq2SeqLM, AutoProcessor  # noqa: E402

CAPTION_TASKS = ("caption", "video_caption", "audio_caption")


def greedy_captions(model, processor, collator, examples, batch_size: int) -> list[tuple[str, str]]:
    """(task, caption) of every example, in the collator's batch order (grouped by task and modality)."""
    captions = []
    for batch in collator.iter_generation_batches(examples, batch_size):
        with torch.no_grad():
            generated = model.generate(**batch.inputs, generation_config=batch.generation_config(num_beams=1))
        texts = processor.post_process_generation(generated, batch.task, prompt_lengths=batch.decoder_prompt_length)
        captions += [(batch.task, text) for text in texts]
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("outputs/demo/video_audio/final"))
    parser.add_argument("--recipe", default="synthetic_tiny", help="the recipe whose world holds the test split")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    processor = AutoProcessor.from_pretrained(args.model)
    world = load_world(load_recipe(args.recipe).sources["world"]["path"])
    # The first examples of each captioning task, in turn, until `--examples` are taken.
    by_task = {task: [e for e in world["test"] if e["task"] == task] for task in CAPTION_TASKS}
    examples = [e for group in zip(*by_task.values()) for e in group][: args.examples]
    collator = UnivalMultitaskCollator(processor, training=False)

    fp32_model = AutoModelForSeq2SeqLM.from_pretrained(args.model).eval()
    fp32 = greedy_captions(fp32_model, processor, collator, examples, args.batch_size)
    # The audio front end and the norms stay in float32 (`_keep_in_fp32_modules_strict`); media take the towers' dtype.
    bf16_model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=torch.bfloat16).eval()
    bf16 = greedy_captions(bf16_model, processor, collator, examples, args.batch_size)

    same = sum(a == b for (_, a), (_, b) in zip(fp32, bf16))
    tasks = {task: sum(e["task"] == task for e in examples) for task in CAPTION_TASKS}
    print(f"examples: {len(examples)} ({', '.join(f'{t} {n}' for t, n in tasks.items())})")
    print(f"identical greedy captions, bf16 vs fp32: {same}/{len(examples)}")
    for (task, a), (_, b) in zip(fp32, bf16):
        if a != b:
            print(f"  {task}: fp32 {a!r} | bf16 {b!r}")


if __name__ == "__main__":
    main()
