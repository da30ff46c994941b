"""The paper's model-merging study in miniature, on the synthetic world.

From one pretrained UnIVAL (the embedded default of `examples/demo.py`), finetune one model for image captioning
and one for VQA, interpolate their weights `alpha * captioner + (1 - alpha) * VQA model` for alpha in
{0, 0.1, ..., 1}, and evaluate both tasks at every alpha on held-out examples. Writes
`interpolation_sweep.csv` and `interpolation_sweep.png` to the output directory.

    python examples/merging_experiment.py [--pretrained outputs/demo/video_audio/final] [--out outputs/merging]

Runs the demo's pretraining first when the pretrained model is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modeling_unival  # noqa: E402,F401
import processing  # noqa: E402,F401
from training.collator import UnivalMultitaskCollator  # noqa: E402
from training.data.synthetic import load_world  # noqa: E402
from training.evaluation import evaluate_examples  # noqa: E402
from training.finetune import run as finetune  # noqa: E402
from training.merge import interpolation_sweep  # noqa: E402
from training.pretrain import run as pretrain  # noqa: E402
from transformers import AutoModelForSeq2SeqLM, AutoProcessor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", type=Path, default=Path("outputs/demo/video_audio/final"))
    parser.add_argument("--world", type=Path, default=Path("outputs/synthetic-world"))
    parser.add_argument("--out", type=Path, default=Path("outputs/merging"))
    parser.add_argument("--steps", type=int, default=150, help="finetuning steps per task")
    parser.add_argument("--eval-examples", type=int, default=60, help="held-out examples per task and alpha")
    args = parser.parse_args()
    start = time.perf_counter()
    if not (args.pretrained / "model.safetensors").exists():
        print(f"[merge-exp] {args.pretrained} missing: running the demo's pretraining first")
        pretrain(["--recipe", "synthetic_tiny", "--output_dir", str(args.pretrained.parents[1]), "--report_to", "none"])

    finetuned = {}
    for task in ("caption", "vqa"):
        out = args.out / f"finetune-{task}"
        if not (out / "final" / "model.safetensors").exists():
            print(f"[merge-exp] finetuning the pretrained model for {task} ({args.steps} steps)")
            finetune([
                "--task", task, "--model", str(args.pretrained), "--world", str(args.world), "--keep_processor_sizes", "true",
                "--output_dir", str(out), "--max_steps", str(args.steps), "--learning_rate", "1e-3",
                "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
                "--generation_eval", "false", "--report_to", "none", "--disable_tqdm", "true", "--full_determinism", "true",
            ])
        finetuned[task] = AutoModelForSeq2SeqLM.from_pretrained(out / "final").eval()

    processor = AutoProcessor.from_pretrained(args.pretrained)
    collator = UnivalMultitaskCollator(processor, training=False)
    world = load_world(args.world)
    train = list(world["train"])
    held_out = {task: [e for e in world["test"] if e["task"] == task][: args.eval_examples] for task in ("caption", "vqa")}

    def scorer(task: str, metric: str):
        def evaluate(model) -> float:
            results = evaluate_examples(model, collator, held_out[task], train, batch_size=32,
                                        generation_overrides={"num_beams": 1})
            return results[task][metric]

        return evaluate

    alphas = [round(0.1 * i, 1) for i in range(11)]
    print(f"[merge-exp] sweeping alpha * captioner + (1 - alpha) * VQA model over {alphas}")
    rows = interpolation_sweep(
        finetuned["caption"],
        finetuned["vqa"],
        alphas,
        {"caption CIDEr-D": scorer("caption", "cider"), "VQA score": scorer("vqa", "vqa_score")},
        out_dir=args.out,
        title="UnIVAL in miniature: interpolating a captioning and a VQA finetune",
        model_names=("caption finetune", "VQA finetune"),
    )
    for row in rows:
        print(f"[merge-exp] alpha {row['alpha']:.1f}: caption CIDEr-D {row['caption CIDEr-D']:6.1f}, VQA score {row['VQA score']:5.1f}")
    (args.out / "interpolation_sweep.json").write_text(json.dumps(rows, indent=2))
    print(f"[merge-exp] done in {time.perf_counter() - start:.0f} s; plot and table in {args.out}")


if __name__ == "__main__":
    main()
