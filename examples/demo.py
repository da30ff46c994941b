"""The package's main job on its embedded default, with nothing downloaded.

1. generate the synthetic multimodal world (images of shapes, videos of moving shapes, tone/chirp/noise clips);
2. pretrain a small UnIVAL on it with task balancing and the multimodal curriculum of
   `training/recipes/synthetic_tiny.yaml` (image captioning, then every image-text task, then video and audio);
3. reload the result with `AutoModelForSeq2SeqLM`/`AutoProcessor` and caption, answer and ground the held-out test
   split, printing every task's score next to two baselines: the prior (the most frequent training answer, or the
   mean box) and the same model given every example's media from another scene ("shuffled"), which keeps all it
   learnt from the prompts alone.

    python examples/demo.py [--output-dir outputs/demo] [--max-per-task N]

A second run reuses the world and the finished stages, so it only evaluates again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import modeling_unival  # noqa: E402,F401  (registers the Auto classes)
import processing  # noqa: E402,F401
from training.collator import UnivalMultitaskCollator  # noqa: E402
from training.data.synthetic import load_world  # noqa: E402
from training.evaluation import evaluate_examples, format_results  # noqa: E402
from training.pretrain import run as pretrain  # noqa: E402
from training.recipe import load_recipe  # noqa: E402
from transformers import AutoModelForSeq2SeqLM, AutoProcessor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--recipe", default="synthetic_tiny")
    parser.add_argument("--max-per-task", type=int, default=None, help="evaluate at most N test examples per task")
    args = parser.parse_args()
    start = time.perf_counter()

    recipe = load_recipe(args.recipe)
    print(f"[demo] recipe {recipe.name!r}: stages {[s.name for s in recipe.stages]}")
    pretrain(["--recipe", args.recipe, "--output_dir", str(args.output_dir), "--report_to", "none",
              "--disable_tqdm", "true"])
    final = args.output_dir / recipe.stages[-1].name / "final"
    print(f"[demo] pretraining finished after {time.perf_counter() - start:.0f} s; loading {final}")

    model = AutoModelForSeq2SeqLM.from_pretrained(final).eval()
    processor = AutoProcessor.from_pretrained(final)
    world = load_world(recipe.sources["world"]["path"])
    test = list(world["test"])
    if args.max_per_task:
        seen, kept = Counter(), []
        for example in test:
            seen[example["task"]] += 1
            if seen[example["task"]] <= args.max_per_task:
                kept.append(example)
        test = kept
    print(f"[demo] evaluating on {len(test)} held-out test examples (scenes never seen in training)")
    collator = UnivalMultitaskCollator(processor, training=False)
    results = evaluate_examples(model, collator, test, list(world["train"]), batch_size=32,
                                generation_overrides={"num_beams": 1}, shuffled_media=True)
    print(format_results(results))
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2))

    # A few predictions, next to the truth.
    shown = {}
    for example in test:
        if example["task"] in ("caption", "vqa", "visual_grounding", "video_caption", "audio_caption") and example["task"] not in shown:
            shown[example["task"]] = example
    for task, example in shown.items():
        batch = next(collator.iter_generation_batches([example], 1))
        with torch.no_grad():
            generated = model.generate(**batch.inputs, generation_config=batch.generation_config(num_beams=1))
        output = processor.post_process_generation(generated, task, prompt_lengths=batch.decoder_prompt_length,
                                                   image_sizes=[batch.references[0].get("image_size")])[0]
        if task == "visual_grounding":
            box = [round(v) for v in output["box"]] if output["box"] else None
            print(f"[demo] {task:16s} {example['text']!r}: predicted {box}, true {[round(v) for v in example['boxes'][0]]}")
        elif task == "vqa":
            print(f"[demo] {task:16s} {example['question']!r}: {output!r} (true {example['target']!r})")
        else:
            print(f"[demo] {task:16s} {output!r} (true {example['target']!r})")
    print(f"[demo] done in {time.perf_counter() - start:.0f} s; scores in {args.output_dir / 'results.json'}")


if __name__ == "__main__":
    main()
