"""Generation and forward-pass speed of UnIVAL, as ratios against baselines measured in the same run.

    python benchmarks/bench_generate.py            # released dimensions (768 d, 6+6 layers, 12 heads), random weights
    python benchmarks/bench_generate.py --preset unival-tiny --repeats 2   # a quick smoke run

Reports:
1. cached greedy decoding, tokens/s: text-only UnIVAL vs `BartForConditionalGeneration` of equal dimensions
   (same vocabulary, layers, heads, FFN), both with a KV cache (target: >= 0.9);
2. cached vs uncached decoding of 32 new tokens (target: >= 3x), for a text-only prompt at batch 1 (on a CPU both
   are bound by reading the weights once per step there, so the cache can save little) and for captioning;
3. SDPA vs eager attention, encoder+decoder forward at source length 512 (target: >= 1.2x);
4. image captioning throughput (images/s), batch 8 vs batch 1.

Timings are medians over `--repeats` runs after a warm-up; only ratios are meaningful across machines.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from transformers import BartConfig, BartForConditionalGeneration


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bart_like(config: UnivalConfig) -> BartForConditionalGeneration:
    bart_config = BartConfig(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.encoder_attention_heads,
        decoder_attention_heads=config.decoder_attention_heads,
        encoder_ffn_dim=config.encoder_ffn_dim,
        decoder_ffn_dim=config.decoder_ffn_dim,
        max_position_embeddings=config.max_source_positions,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(bart_config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="unival-base-image", help="UnivalConfig preset (default: released dims)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=384)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = UnivalConfig.from_preset(args.preset, dropout=0.0)
    model = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    bart = bart_like(config)
    n_new = args.new_tokens
    greedy = dict(do_sample=False, num_beams=1, max_new_tokens=n_new, min_new_tokens=n_new)
    prompt = torch.randint(4, 50000, (1, 24))
    prompt[:, 0], prompt[:, -1] = 0, 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; UnIVAL preset {args.preset}: "
          f"d={config.d_model}, layers={config.encoder_layers}+{config.decoder_layers}, heads={config.encoder_attention_heads}")

    with torch.inference_mode():
        # 1. cached greedy decoding, text only, vs BART
        t_unival = median_time(lambda: model.generate(input_ids=prompt, **greedy), args.repeats)
        t_bart = median_time(lambda: bart.generate(input_ids=prompt, **greedy), args.repeats)
        ratio_bart = t_bart / t_unival
        print(f"1. cached greedy, {n_new} tokens: UnIVAL {n_new / t_unival:.1f} tok/s, BART {n_new / t_bart:.1f} tok/s "
              f"-> UnIVAL/BART = {ratio_bart:.2f} (target >= 0.9)")

        # 2. cached vs uncached decoding. The encoder runs once per generate() call either way, so its output is
        # computed beforehand and passed in: the timings cover decoding only. Text-only prompt at batch 1, and
        # captioning (an image's patches + the caption prompt, batch 4), where the cache also saves re-projecting
        # the encoder output in every cross-attention layer at every step.
        images = torch.randn(8, 3, args.image_size, args.image_size)
        caption_prompt = prompt[:, :8].clone()
        caption_prompt[:, -1] = 2
        encoder = model.get_encoder()
        cases = {
            "text-only prompt, batch 1": {"input_ids": prompt},
            f"captioning, {args.image_size}px image + prompt, batch 4": {
                "input_ids": caption_prompt.expand(4, -1), "pixel_values": images[:4]
            },
        }
        for name, inputs in cases.items():
            encoded = {"encoder_outputs": encoder(**inputs), "input_ids": inputs["input_ids"]}
            t_cached = median_time(lambda: model.generate(**encoded, **greedy), args.repeats)
            t_uncached = median_time(lambda: model.generate(**encoded, use_cache=False, **greedy), args.repeats)
            print(f"2. decoding {n_new} new tokens, {name}: cached {t_cached:.3f} s, uncached {t_uncached:.3f} s "
                  f"-> speed-up {t_uncached / t_cached:.2f}x (target >= 3x)")

        # 3. eager vs SDPA forward at source length 512
        eager = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
        eager.load_state_dict(model.state_dict())
        long_ids = torch.randint(4, 50000, (4, min(512, config.max_source_positions)))
        targets = torch.randint(4, 50000, (4, 32))
        t_eager = median_time(lambda: eager(input_ids=long_ids, decoder_input_ids=targets), args.repeats)
        t_sdpa = median_time(lambda: model(input_ids=long_ids, decoder_input_ids=targets), args.repeats)
        print(f"3. forward, batch 4, source {long_ids.shape[1]}: eager {t_eager:.3f} s, SDPA {t_sdpa:.3f} s "
              f"-> SDPA speed-up {t_eager / t_sdpa:.2f}x (target >= 1.2x)")

        # 4. captioning throughput, batch 8 vs batch 1
        caption = dict(num_beams=1, do_sample=False, max_new_tokens=16, min_new_tokens=16)

        def run_batch(n):
            for start in range(0, 8, n):
                model.generate(input_ids=caption_prompt.expand(n, -1), pixel_values=images[start : start + n], **caption)

        t_one = median_time(lambda: run_batch(1), max(1, args.repeats // 2))
        t_eight = median_time(lambda: run_batch(8), max(1, args.repeats // 2))
        print(f"4. captioning 8 images at {args.image_size}px: batch 1 {8 / t_one:.2f} img/s, batch 8 {8 / t_eight:.2f} img/s "
              f"-> batch speed-up {t_one / t_eight:.2f}x")


if __name__ == "__main__":
    main()
