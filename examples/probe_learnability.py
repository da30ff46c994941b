"""Can a small UnIVAL trained from scratch learn a skill at all? Probes on generated inputs (no files), each training
the embedded default's model (`training/recipes/synthetic_tiny.yaml`: d=128, 2+2 layers, a 3-stage image tower) on
fresh samples every step:

* `colour`: "what color is the square?" about one coloured square on white -> the colour word (6 classes);
* `bind`: two squares of different colours, one filled, one hollow: "what color is the hollow square?" -> its colour
  (the colour of the object the text picks out: chance is 50% once the model knows which two colours are present);
* `match`: "does the image describe " a red square "?" -> yes/no (the caption's colour is right about half the time);
* `colour+match`: half of each batch `colour`, half `match` (scored on `match`), as multitask pretraining mixes them;
* `compare`: text only, "is " red " the same as " blue "?" -> yes/no: a 36-entry lookup table;
* `locate`: "which region ...?" -> the square's box as 4 location tokens (mean coordinate error in pixels).

    python examples/probe_learnability.py --probe bind --steps 2000 --lr 1e-3 [--preset-image-tower]
    python examples/probe_learnability.py --probe bind --steps 1000 --lr 1e-3 --layout prev_output
    python examples/probe_learnability.py --probe colour --steps 600 --lr 3e-4
    python examples/probe_learnability.py --probe colour+match --steps 1200 --lr 1e-3 [--init-std 0.02]
    python examples/probe_learnability.py --probe compare --steps 600 --lr 1e-3 [--init-std 0.02]

`--init-std` overrides the recipe's `init_std` (0.08, about d_model ** -0.5); BART's 0.02 is the value the released
models were initialised with, made for d_model = 768. `--preset-image-tower` swaps the recipe's 3-stage image tower
(stride 16: 6 x 6 patches at 96 px) for the `unival-tiny` preset's 4-stage one (stride 32, as the original's
ResNet: 3 x 3 patches at 96 px, where two 24 px squares often share a patch). Last runs on 2 CPU cores (README,
"The embedded default: results"):

* bind: 97.3% after 2,000 steps at 1e-3 (~320 s), 55.1% with `--preset-image-tower`; after 1,000 steps 43.0%,
  43.8% with `--preset-image-tower`, and 62.5% with `--layout prev_output` (one run each: the skill emerges between
  1,000 and 2,000 steps);
* compare: 100% after 600 steps at 1e-3 with init 0.08, the majority answer (59.4%) with 0.02 (66-73 s);
* colour+match: 85.2% after 1,200 steps at 1e-3 with 0.08, the majority answer (56.6%) with 0.02 (180-204 s);
* colour: 99.2% after 600 steps at 3e-4, 35.9% at 2e-3; locate: 1.47 px mean error after 400 steps at 2e-3 (both
  with 0.02).

All but bind were measured with the 4-stage tower.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration  # noqa: E402
from processing import UnivalTokenizer  # noqa: E402
from processing.constants import BIN_TOKEN_OFFSET, NUM_BINS  # noqa: E402
from training.allocator import keep_freed_memory  # noqa: E402
from training.recipe import RECIPES_DIR, load_recipe  # noqa: E402


COLOURS = {"red": (1, 0, 0), "green": (0, 0.7, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0), "black": (0, 0, 0),
           "purple": (0.6, 0, 0.8)}
IMAGE, SQUARE = 96, 24
# Probes whose prompts all have the same length, so that the prev_output layout needs no padding.
PREV_OUTPUT_PROBES = ("colour", "bind", "match")


def sample(probe: str, n: int, rng: np.random.Generator, tokenizer, layout: str):
    """(model inputs with labels, position of the answer token in the labels, answer ids)."""
    if probe == "colour+match":
        colour = sample("colour", n // 2, rng, tokenizer, layout)
        return _concat(colour, sample("match", n - n // 2, rng, tokenizer, layout), tokenizer.pad_token_id)
    names = list(COLOURS)
    if probe == "compare":
        texts, answers = [], []
        for _ in range(n):
            first = names[rng.integers(len(names))]
            second = first if rng.random() < 0.5 else names[rng.integers(len(names))]
            texts.append(f' is " {first} " the same as " {second} "?')
            answers.append([tokenizer(" yes" if first == second else " no", add_special_tokens=False)["input_ids"][0]])
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
        answer_ids = torch.tensor(answers)
        labels = torch.cat([answer_ids, torch.full((n, 1), tokenizer.eos_token_id)], dim=1)
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}
        return inputs, 0, answer_ids
    images = torch.ones(n, 3, IMAGE, IMAGE)
    texts, answers = [], []
    for i in range(n):
        if probe == "bind":
            text, answer = _draw_two_squares(images[i], names, rng)
            texts.append(text)
            answers.append([tokenizer(" " + answer, add_special_tokens=False)["input_ids"][0]])
            continue
        colour = names[rng.integers(len(names))]
        x, y = (int(v) for v in rng.integers(0, IMAGE - SQUARE, size=2))
        images[i, :, y : y + SQUARE, x : x + SQUARE] = torch.tensor(COLOURS[colour]).view(3, 1, 1)
        if probe == "colour":
            texts.append(" what color is the square?")
            answers.append([tokenizer(" " + colour, add_special_tokens=False)["input_ids"][0]])
        elif probe == "match":
            said = colour if rng.random() < 0.5 else names[rng.integers(len(names))]
            texts.append(f' does the image describe " a {said} square "?')
            answers.append([tokenizer(" yes" if said == colour else " no", add_special_tokens=False)["input_ids"][0]])
        else:
            texts.append(' which region does the text " the square " describe?')
            box = np.array([x, y, x + SQUARE, y + SQUARE]) / IMAGE
            answers.append([BIN_TOKEN_OFFSET + int(round(v * (NUM_BINS - 1))) for v in box])
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    answer_ids = torch.tensor(answers)
    eos = torch.full((n, 1), tokenizer.eos_token_id)
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
              "pixel_values": (images - 0.5) / 0.5}
    if layout == "prev_output" and probe in PREV_OUTPUT_PROBES:
        prompt = encoded["input_ids"][:, :-1]
        inputs["decoder_input_ids"] = torch.cat([prompt, answer_ids], dim=1)
        labels = torch.full_like(inputs["decoder_input_ids"], -100)
        labels[:, -1:] = eos
        labels[:, prompt.shape[1] - 1 : prompt.shape[1] - 1 + answer_ids.shape[1]] = answer_ids
        start = prompt.shape[1] - 1
    else:
        labels, start = torch.cat([answer_ids, eos], dim=1), 0
    inputs["labels"] = labels
    return inputs, start, answer_ids


def _draw_two_squares(image: torch.Tensor, names: list[str], rng: np.random.Generator) -> tuple[str, str]:
    """Draws a filled and a hollow square of two different colours on `image` (3, IMAGE, IMAGE), apart; returns the
    question about one of them and its colour."""
    filled, hollow = (names[k] for k in rng.choice(len(names), size=2, replace=False))
    while True:
        (x0, y0), (x1, y1) = rng.integers(0, IMAGE - SQUARE, size=(2, 2)).tolist()
        if abs(x0 - x1) >= SQUARE + 2 or abs(y0 - y1) >= SQUARE + 2:
            break
    image[:, y0 : y0 + SQUARE, x0 : x0 + SQUARE] = torch.tensor(COLOURS[filled]).view(3, 1, 1)
    image[:, y1 : y1 + SQUARE, x1 : x1 + SQUARE] = torch.tensor(COLOURS[hollow]).view(3, 1, 1)
    image[:, y1 + 6 : y1 + SQUARE - 6, x1 + 6 : x1 + SQUARE - 6] = 1.0  # the hollow square: a 6 px frame
    asked = "filled" if rng.random() < 0.5 else "hollow"
    return f" what color is the {asked} square?", filled if asked == "filled" else hollow


def _concat(a, b, pad_token_id: int):
    """Two `sample` results as one batch (the prompts right-padded to a common length)."""
    (x, start, x_answers), (y, _, y_answers) = a, b
    length = max(x["input_ids"].shape[1], y["input_ids"].shape[1])
    pad = {"input_ids": pad_token_id, "attention_mask": 0}
    merged = {}
    for key in x:
        first, second = x[key], y[key]
        if key in pad:
            first = torch.nn.functional.pad(first, (0, length - first.shape[1]), value=pad[key])
            second = torch.nn.functional.pad(second, (0, length - second.shape[1]), value=pad[key])
        merged[key] = torch.cat([first, second])
    return merged, start, torch.cat([x_answers, y_answers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", choices=("colour", "bind", "match", "colour+match", "compare", "locate"),
                        default="colour")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layout", choices=("none", "prev_output"), default="none")
    parser.add_argument("--init-std", type=float, default=None, help="the config's init_std (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the drawn inputs")
    parser.add_argument("--preset-image-tower", action="store_true",
                        help="the unival-tiny preset's 4-stage image tower (stride 32), not the recipe's 3-stage one")
    args = parser.parse_args()
    keep_freed_memory()  # on CPU, as the training scripts (training/allocator.py)
    if args.layout == "prev_output" and args.probe not in PREV_OUTPUT_PROBES:
        parser.error(f"--layout prev_output applies to the {', '.join(PREV_OUTPUT_PROBES)} probes only")

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tokenizer = UnivalTokenizer()  # the shipped BPE vocabulary
    model_spec = load_recipe(RECIPES_DIR / "synthetic_tiny.yaml").model
    overrides = dict(model_spec.get("overrides", {}))
    if args.init_std is not None:
        overrides["init_std"] = args.init_std
    if args.preset_image_tower:
        overrides.pop("image_config", None)
    config = UnivalConfig.from_preset(model_spec["preset"], **overrides)
    model = UnivalForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    for step in range(args.steps):
        inputs, _, _ = sample(args.probe, args.batch_size, rng, tokenizer, args.layout)
        loss = model(**inputs, return_logits=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step:5d}  loss {loss.item():.3f}", flush=True)

    model.eval()
    scored = "match" if args.probe == "colour+match" else args.probe
    inputs, first, answers = sample(scored, 256, rng, tokenizer, args.layout)
    with torch.no_grad():
        logits = model(**inputs).logits[:, first : first + answers.shape[1]]
    if args.probe == "locate":
        predicted = logits[..., BIN_TOKEN_OFFSET : BIN_TOKEN_OFFSET + NUM_BINS].argmax(-1).float()
        error = (predicted - (answers - BIN_TOKEN_OFFSET).float()).abs().mean() / (NUM_BINS - 1) * IMAGE
        result = f"mean coordinate error {error:.2f} px (teacher-forced)"
    else:  # the answer among the probe's answers, as the evaluation's answer trie restricts it
        words = [" " + c for c in COLOURS] if scored in ("colour", "bind") else [" yes", " no"]
        candidates = torch.tensor([tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words])
        predicted = candidates[logits[:, 0, candidates].argmax(-1)]
        accuracy = (predicted == answers[:, 0]).float().mean()
        majority = answers[:, 0].unique(return_counts=True)[1].max() / len(answers)
        result = f"accuracy {accuracy:.3f} (majority answer: {majority:.3f})"
    stages = len(config.image_config.hidden_sizes)
    print(f"{args.probe}, {args.steps} steps at lr {args.lr}, init_std {config.init_std}, {stages}-stage image tower "
          f"({args.layout} layout): {result}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
