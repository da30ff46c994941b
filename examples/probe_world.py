"""World probe: train the demo's model shape on a few tasks of the synthetic world, then score them on its test split.

A plain training loop (AdamW, constant learning rate, batches drawn task-uniformly with replacement) instead of the
recipe's `Trainer` stages, to ask one question at a time: can this model learn task X from the world at all, and
what changes that? For example (the README quotes these runs):

    python examples/probe_world.py --tasks caption,image_text_matching --steps 2000
    python examples/probe_world.py --tasks caption,image_text_matching --steps 2000 \
        --prompt-types image_text_matching=prev_output --seed 1
    python examples/probe_world.py --tasks visual_grounding --steps 1000 --num-bins 128
    python examples/probe_world.py --tasks image_text_matching --steps 400 --batch-size 64 \
        --prompt-types image_text_matching=prev_output --init outputs/demo/image_caption/final
    python examples/probe_world.py --tasks caption,image_text_matching --steps 500 --batch-size 32 --levels 1 \
        --prompt-types image_text_matching=prev_output

Every task given is scored on the test split (greedy decoding, `training.evaluation`); the matching tasks are also
broken down by negative kind and scene difficulty. The world is generated with the embedded recipe's settings when
`--world` does not hold one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration  # noqa: E402
from training.allocator import keep_freed_memory  # noqa: E402
from training.collator import UnivalMultitaskCollator  # noqa: E402
from training.evaluation import answer_vocabulary, generate_predictions, score_records  # noqa: E402
from training.recipe import load_recipe  # noqa: E402
from training.sources import load_source  # noqa: E402
from training.stages import make_processor  # noqa: E402

MATCHING_TASKS = ("image_text_matching", "video_text_matching", "audio_text_matching", "qa_matching")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="caption,image_text_matching", help="comma-separated world tasks to train")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--layers", type=int, default=None, help="encoder and decoder layers (default 2)")
    p.add_argument("--d-model", type=int, default=None,
                   help="model width (default: the recipe's 128); FFNs 2x as wide, init_std d_model ** -0.5")
    p.add_argument("--init", default=None, help="start from a saved model (e.g. a recipe stage's final) instead of "
                   "from scratch; the processor is the recipe's, as for a model from scratch")
    p.add_argument("--save", default=None, help="save the trained model and processor to this directory")
    p.add_argument("--levels", default=None, help="train on scenes of these difficulty levels only, e.g. 1 or 1,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-types", default="", help="decoder layouts, e.g. image_text_matching=prev_output,vqa=none")
    p.add_argument("--num-bins", type=int, default=None, help="location bins (default: the processor's 1,000)")
    p.add_argument("--world", default=None, help="world directory (default: the embedded recipe's)")
    p.add_argument("--num-examples", type=int, default=None, help="world size (default: the embedded recipe's)")
    p.add_argument("--max-test-per-task", type=int, default=None)
    args = p.parse_args(argv)
    if args.init and (args.layers or args.d_model):
        p.error("--init takes the saved model's shape: --layers and --d-model apply to a model from scratch")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    keep_freed_memory()  # on CPU, as the training scripts (training/allocator.py)
    recipe = load_recipe("synthetic_tiny")
    source = dict(recipe.sources["world"])
    source.update({k: v for k, v in (("path", args.world), ("num_examples", args.num_examples)) if v is not None})
    world = load_source("world", source)
    tasks = args.tasks.split(",")
    layouts = dict(item.split("=", 1) for item in args.prompt_types.split(",") if item)
    processor = make_processor({**recipe.processor, "image_size": args.image_size, "prompt_types": layouts})
    if args.num_bins is not None:
        processor.num_bins = args.num_bins
    collator = UnivalMultitaskCollator(processor, training=True)

    torch.manual_seed(args.seed)
    if args.init:
        model = UnivalForConditionalGeneration.from_pretrained(args.init)
    else:
        layers = args.layers or 2
        overrides = dict(recipe.model.get("overrides", {}), encoder_layers=layers, decoder_layers=layers)
        if args.d_model:
            d = args.d_model
            overrides.update(d_model=d, encoder_ffn_dim=2 * d, decoder_ffn_dim=2 * d, init_std=round(d ** -0.5, 3))
        model = UnivalForConditionalGeneration(
            UnivalConfig.from_preset(recipe.model.get("preset", "unival-tiny"), **overrides))
    optimizer = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.01)

    train = world["train"]
    rows_of = defaultdict(list)
    levels = None if args.levels is None else {int(level) for level in args.levels.split(",")}
    columns = train.select_columns(["task", "difficulty"]).to_dict()
    for index, (task, level) in enumerate(zip(columns["task"], columns["difficulty"])):
        if task in tasks and (levels is None or level in levels):
            rows_of[task].append(index)
    missing = [t for t in tasks if not rows_of[t]]
    if missing:
        raise SystemExit(f"the world has no training examples of {missing}"
                         + (f" at difficulty levels {sorted(levels)}" if levels else ""))
    print({t: len(rows_of[t]) for t in tasks}, flush=True)

    rng = np.random.default_rng(args.seed)
    model.train()
    start = time.perf_counter()
    for step in range(args.steps):
        rows = [int(rng.choice(rows_of[tasks[rng.integers(len(tasks))]])) for _ in range(args.batch_size)]
        loss = model(**collator([train[i] for i in rows]), return_logits=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)

    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
    model.eval()
    test = [e for e in world["test"] if e["task"] in tasks]
    if args.max_test_per_task:
        kept = defaultdict(list)
        for e in test:
            if len(kept[e["task"]]) < args.max_test_per_task:
                kept[e["task"]].append(e)
        test = [e for rows in kept.values() for e in rows]
    scorer = UnivalMultitaskCollator(processor, training=False)
    priors = [train[i] for i in range(0, len(train), 7)]
    # One generation pass (as `evaluate_examples`, answers restricted to the training answers) for the scores and
    # the matching tasks' breakdown by negative kind and scene difficulty.
    records = generate_predictions(model, scorer, test, 32, answer_vocabulary=answer_vocabulary(priors))
    results = score_records(records, priors)
    example_of = {e["id"]: e for e in test}
    right = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record["task"] in MATCHING_TASKS:
            example = example_of[record["id"]]
            metadata = json.loads(example["metadata"]) if isinstance(example["metadata"], str) else example["metadata"] or {}
            # Caption negatives name their kind ("other_scene", "colour", ...); QA-matching ones their question type.
            kind = "positive" if example["target"] == "yes" else metadata.get("negative") or "negative"
            if metadata.get("question_type"):
                kind = f"{kind}/{metadata['question_type']}"
            key = f"{kind}/level{example.get('difficulty')}"
            right[record["task"]][key].append(record["prediction"].strip() == example["target"])
    for task, kinds in right.items():
        results[task]["by_kind"] = {k: [len(v), round(100 * sum(v) / len(v), 1)] for k, v in sorted(kinds.items())}
    start_from = f"from {args.init}" if args.init else "from scratch"
    trained_on = f"levels {sorted(levels)}" if levels else "all levels"
    print(f"probe_world: {args.tasks}, {args.steps} steps, seed {args.seed}, layouts {layouts or 'default'}, "
          f"{start_from}, {trained_on}, {time.perf_counter() - start:.0f} s")
    for task, scores in sorted(results.items()):
        print(task, json.dumps(scores))


if __name__ == "__main__":
    main()
