"""Training-step speed of UnIVAL on a multitask batch, as a ratio against the baseline measured in the same run.

    python benchmarks/bench_train_step.py                      # the embedded default's model (d=128), 96 px images
    python benchmarks/bench_train_step.py --d-model 768 --repeats 3

A multitask batch mixes long targets (captions) with one-word ones (yes/no, answers, 4 location tokens), so most
target positions are padding. The baseline projects every position to the 59,457-token vocabulary and computes the
loss from the full logits (`return_logits=True`, what `model(**batch)` does); the training path projects only the
supervised positions (`return_logits=False`, what `UnivalTrainer` uses for its training steps). Both compute the
same loss. Reported: forward + backward + AdamW step time, median over `--repeats` runs of `--steps` steps.

`--allocator` then times the training path again with `training.allocator.keep_freed_memory()` (large freed blocks
kept in the heap instead of unmapped and page-faulted in again every step), against the training path measured
above with glibc's default thresholds. Not interleaved: the thresholds cannot be put back in a running process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from processing.constants import BIN_TOKEN_OFFSET


def multitask_batch(batch_size: int, image_size: int, generator: torch.Generator) -> dict:
    """Random images, 24-token prompts, and targets of multitask lengths: a quarter captions (18 tokens), a quarter
    boxes (5), half one-word answers (2)."""
    lengths = [18, 5, 2, 2] * (batch_size // 4)
    width = max(lengths)
    labels = torch.full((batch_size, width), -100)
    for row, length in enumerate(lengths):
        labels[row, : length - 1] = torch.randint(4, BIN_TOKEN_OFFSET, (length - 1,), generator=generator)
        labels[row, length - 1] = 2
    input_ids = torch.randint(4, 50000, (batch_size, 24), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 0, 2
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, image_size, image_size, generator=generator),
        "labels": labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--allocator", action="store_true", help="also time the training path with the heap kept")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = UnivalConfig.from_preset(
        "unival-tiny", d_model=args.d_model, encoder_ffn_dim=2 * args.d_model, decoder_ffn_dim=2 * args.d_model
    )
    model = UnivalForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [multitask_batch(args.batch_size, args.image_size, torch.Generator().manual_seed(i)) for i in range(args.steps)]
    supervised = sum(int(b["labels"].ne(-100).sum()) for b in batches) / sum(b["labels"].numel() for b in batches)

    def run(return_logits: bool) -> float:
        start = time.perf_counter()
        for batch in batches:
            loss = model(**batch, return_logits=return_logits).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / len(batches)

    run(True)  # warm-up
    times = {flag: [] for flag in (True, False)}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits both alike
        for flag in (True, False):
            times[flag].append(run(flag))
    full, lean = statistics.median(times[True]), statistics.median(times[False])
    print(f"d_model {args.d_model}, batch {args.batch_size}, {args.image_size} px, {supervised:.0%} of target positions supervised")
    print(f"training step, logits at every position (baseline): {full * 1000:.0f} ms")
    print(f"training step, logits at supervised positions only: {lean * 1000:.0f} ms  -> {full / lean:.2f}x")
    if args.allocator:
        from training.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("--allocator needs glibc (Linux) and no CUDA")
        run(False)  # warm-up: the heap grows to its working size
        kept = statistics.median(run(False) for _ in range(args.repeats))
        print(f"training step, supervised positions, freed memory kept in the heap: {kept * 1000:.0f} ms  "
              f"-> {lean / kept:.2f}x over glibc's default thresholds")


if __name__ == "__main__":
    main()
