"""Generation and forward-pass speed of UnIVAL, as ratios against baselines measured in the same run.

    python benchmarks/bench_generate.py            # released dimensions (768 d, 6+6 layers, 12 heads), random weights
    python benchmarks/bench_generate.py --preset unival-tiny --repeats 2   # a quick smoke run
    python benchmarks/bench_generate.py --only beam_caption,vqa --repeats 2  # a subset

Reports:
1. cached greedy decoding, tokens/s: text-only UnIVAL vs `BartForConditionalGeneration` of equal dimensions
   (same vocabulary, layers, heads, FFN), both with a KV cache (target: >= 1.2, issue 21);
2. cached vs uncached decoding of 32 new tokens (target: >= 3x), for a text-only prompt at batch 1 (on a CPU both
   are bound by reading the weights once per step there, so the cache can save little) and for captioning;
3. SDPA vs eager attention, encoder+decoder forward at source length 512 (target: >= 1.2x);
4. image captioning throughput (images/s), greedy, batch 8 vs batch 1;
5. beam-5 captioning with the original's caption settings (`generation_config("caption")`: beam 5, 22 tokens +
   `</s>`, no-repeat-3), images/s, batch 8 vs batch 1 (target >= 2x);
6. VQA with ragged, left-padded decoder prompts and `generation_config("vqa")`, questions/s, batch 16 vs batch 1
   (target >= 4x);
7. entailment: `score_candidates` over 3 one-token candidates vs `generate()` with
   `generation_config("visual_entailment")`, examples/s at the same batch;
8. bf16 vs fp32 cached greedy decoding, text only, tokens/s (target >= 1.6x on a CPU with AVX512-BF16), the bf16
   model loaded as users load it (`dtype=torch.bfloat16`: norms in float32) and cast whole by `.to()`;
9. static cache (`cache_implementation="static"`), eager and compiled by `generate()` (`compile_config`), vs the
   default dynamic cache, cached greedy decoding, text only, batch 1, tokens/s, and the compiled model vs BART.

`--only bart,cache,sdpa,caption,beam_caption,vqa,scoring,bf16,compile` runs a subset; `--profile` prints the top ops of one
batched run of measurements 5-8 (`torch.profiler`).

Timings are medians over `--repeats` runs after a warm-up; only ratios are meaningful across machines.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from types import SimpleNamespace

import torch

from processing.tasks import generation_config
from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from transformers import BartConfig, BartForConditionalGeneration


def cpu_description() -> str:
    """The CPU's kernel level and whether it computes bf16 natively: without AVX512-BF16 (or AMX), oneDNN emulates
    bf16 matrix products through float32, and the bf16 vs fp32 ratio says little about a machine that has it."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        pass
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"CPU kernels {torch.backends.cpu.get_cpu_capability()}, native bf16: {', '.join(native) or 'no'}"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def top_ops(fn, label: str, rows: int = 8) -> None:
    """Print the ops with the most self CPU time in one run of `fn`."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    print(f"   profile of {label}:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def per_item_rate(fn_for_batch, batch: int, items: int, repeats: int) -> float:
    """Items/s when `items` items are processed in chunks of `batch` (`fn_for_batch(start, n)` runs one chunk)."""
    def run():
        for start in range(0, items, batch):
            fn_for_batch(start, min(batch, items - start))
    return items / median_time(run, repeats)


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


MEASUREMENTS = ("bart", "cache", "sdpa", "caption", "beam_caption", "vqa", "scoring", "bf16", "compile")


def bench_bart(ctx) -> None:
    """1. cached greedy decoding, text only, vs BART of equal dimensions."""
    bart, n_new = bart_like(ctx.config), ctx.args.new_tokens
    t_unival = median_time(lambda: ctx.model.generate(input_ids=ctx.prompt, **ctx.greedy), ctx.args.repeats)
    t_bart = median_time(lambda: bart.generate(input_ids=ctx.prompt, **ctx.greedy), ctx.args.repeats)
    print(f"1. cached greedy, {n_new} tokens: UnIVAL {n_new / t_unival:.1f} tok/s, BART {n_new / t_bart:.1f} tok/s "
          f"-> UnIVAL/BART = {t_bart / t_unival:.2f} (target >= 1.2)")


def bench_cache(ctx) -> None:
    """2. cached vs uncached decoding. The encoder runs once per generate() call either way, so its output is
    computed beforehand and passed in: the timings cover decoding only. Text-only prompt at batch 1, and captioning
    (an image's patches + the caption prompt, batch 4), where the cache also saves re-projecting the encoder output
    in every cross-attention layer at every step."""
    model, size = ctx.model, ctx.args.image_size
    cases = {
        "text-only prompt, batch 1": {"input_ids": ctx.prompt},
        f"captioning, {size}px image + prompt, batch 4": {
            "input_ids": ctx.caption_prompt.expand(4, -1), "pixel_values": ctx.images[:4]
        },
    }
    for name, inputs in cases.items():
        encoded = {"encoder_outputs": model.get_encoder()(**inputs), "input_ids": inputs["input_ids"]}
        t_cached = median_time(lambda: model.generate(**encoded, **ctx.greedy), ctx.args.repeats)
        t_uncached = median_time(lambda: model.generate(**encoded, use_cache=False, **ctx.greedy), ctx.args.repeats)
        print(f"2. decoding {ctx.args.new_tokens} new tokens, {name}: cached {t_cached:.3f} s, uncached "
              f"{t_uncached:.3f} s -> speed-up {t_uncached / t_cached:.2f}x (target >= 3x)")


def bench_sdpa(ctx) -> None:
    """3. eager vs SDPA forward at source length 512."""
    config, model = ctx.config, ctx.model
    eager = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    long_ids = torch.randint(4, 50000, (4, min(512, config.max_source_positions)))
    targets = torch.randint(4, 50000, (4, 32))
    t_eager = median_time(lambda: eager(input_ids=long_ids, decoder_input_ids=targets), ctx.args.repeats)
    t_sdpa = median_time(lambda: model(input_ids=long_ids, decoder_input_ids=targets), ctx.args.repeats)
    print(f"3. forward, batch 4, source {long_ids.shape[1]}: eager {t_eager:.3f} s, SDPA {t_sdpa:.3f} s "
          f"-> SDPA speed-up {t_eager / t_sdpa:.2f}x (target >= 1.2x)")


def bench_caption(ctx) -> None:
    """4. greedy captioning throughput, 8 images, batch 8 vs batch 1."""
    caption = dict(num_beams=1, do_sample=False, max_new_tokens=16, min_new_tokens=16)

    def chunk(start, n):
        ctx.model.generate(input_ids=ctx.caption_prompt.expand(n, -1), pixel_values=ctx.images[start : start + n],
                           **caption)

    repeats = max(1, ctx.args.repeats // 2)
    one, eight = (per_item_rate(chunk, n, 8, repeats) for n in (1, 8))
    print(f"4. captioning 8 images at {ctx.args.image_size}px: batch 1 {one:.2f} img/s, batch 8 {eight:.2f} img/s "
          f"-> batch speed-up {eight / one:.2f}x")


def beam_caption_settings():
    """The original's captioning settings, with min_new_tokens = max_new_tokens - 1: random weights then decode all
    22 caption tokens before the forced `</s>`, so every run does the same number of steps."""
    gen = generation_config("caption")
    gen.min_new_tokens = gen.max_new_tokens - 1
    return gen


def bench_beam_caption(ctx) -> None:
    """5. beam-5 captioning with the original's settings (`beam_caption_settings`). Batch 1 is
    timed over `--batch1-items` images, batch 8 over 8."""
    gen = beam_caption_settings()

    def chunk(start, n):
        ctx.model.generate(input_ids=ctx.caption_prompt.expand(n, -1), pixel_values=ctx.images[start : start + n],
                           generation_config=gen)

    one = per_item_rate(chunk, 1, ctx.args.batch1_items, ctx.args.repeats)
    eight = per_item_rate(chunk, 8, 8, ctx.args.repeats)
    print(f"5. beam-5 captioning ({gen.max_new_tokens} tokens incl. </s>, no-repeat-{gen.no_repeat_ngram_size}) at "
          f"{ctx.args.image_size}px: batch 1 {one:.3f} img/s, batch 8 {eight:.3f} img/s -> {eight / one:.2f}x "
          f"(target >= 2x)")
    if ctx.args.profile:
        top_ops(lambda: chunk(0, 8), "beam-5 captioning, batch 8")


def ragged_prompts(lengths, pad: int = 1):
    """Decoder prompts `<s>` + question tokens, left-padded with `pad`, and their mask (the processor's layout)."""
    width = max(lengths) + 1
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, width - n - 1] = 0
        ids[row, width - n :] = torch.randint(4, 50000, (n,))
        mask[row, width - n - 1 :] = 1
    return ids, mask


def encoder_text(decoder_ids, mask):
    """The encoder's text: each row's question (the decoder prompt without `<s>`) + `</s>`, right-padded."""
    rows = [decoder_ids[r, mask[r].bool()][1:].tolist() + [2] for r in range(len(decoder_ids))]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), 1, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)], attention[r, : len(row)] = torch.tensor(row), 1
    return ids, attention


def vqa_batch(ctx, start, n):
    """Rows `start:start + n` of the 16 ragged VQA examples, each chunk padded to its own longest question."""
    lengths = ctx.question_lengths[start : start + n]
    torch.manual_seed(start)
    dec_ids, dec_mask = ragged_prompts(lengths)
    enc_ids, enc_mask = encoder_text(dec_ids, dec_mask)
    images = ctx.images.repeat(2, 1, 1, 1)[start : start + n]
    encoder_inputs = dict(input_ids=enc_ids, attention_mask=enc_mask, pixel_values=images)
    return dec_ids, dec_mask, encoder_inputs


def bench_vqa(ctx) -> None:
    """6. VQA with ragged decoder prompts (questions of 4-19 tokens), beam 5; batch 16 vs batch 1 (batch 1 timed
    over `--batch1-items` questions of spread lengths)."""
    gen = generation_config("vqa", max_new_tokens=ctx.args.vqa_new_tokens, min_new_tokens=ctx.args.vqa_new_tokens)

    def chunk(start, n):
        dec_ids, dec_mask, enc = vqa_batch(ctx, start, n)
        ctx.model.generate(decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask, generation_config=gen, **enc)

    starts = range(0, 16, 16 // ctx.args.batch1_items)[: ctx.args.batch1_items]  # questions of spread lengths
    one = len(starts) / median_time(lambda: [chunk(start, 1) for start in starts], ctx.args.repeats)
    sixteen = per_item_rate(chunk, 16, 16, ctx.args.repeats)
    print(f"6. VQA, beam 5, {gen.max_new_tokens} new tokens, ragged prompts, {ctx.args.image_size}px: batch 1 "
          f"{one:.3f} q/s, batch 16 {sixteen:.3f} q/s -> {sixteen / one:.2f}x (target >= 4x)")
    if ctx.args.profile:
        top_ops(lambda: chunk(0, 16), "VQA, batch 16")


def bench_scoring(ctx) -> None:
    """7. entailment, batch 8: scoring 3 one-token candidates vs beam-5 generation of the label."""
    gen = generation_config("visual_entailment")
    candidates = [[10932], [117], [2085]]  # any three ids (" yes", " no", " maybe" in the released vocabulary)
    dec_ids, dec_mask, enc = vqa_batch(ctx, 0, 8)
    t_score = median_time(lambda: ctx.model.score_candidates(candidates, dec_ids, dec_mask, **enc), ctx.args.repeats)
    t_gen = median_time(lambda: ctx.model.generate(decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask,
                                                   generation_config=gen, **enc), ctx.args.repeats)
    print(f"7. entailment, batch 8, {ctx.args.image_size}px: scoring 3 candidates {8 / t_score:.2f} ex/s, generate "
          f"(beam {gen.num_beams}, <= {gen.max_new_tokens} tokens) {8 / t_gen:.2f} ex/s "
          f"-> scoring {t_gen / t_score:.2f}x")
    if ctx.args.profile:
        top_ops(lambda: ctx.model.score_candidates(candidates, dec_ids, dec_mask, **enc), "scoring, batch 8")


def bench_bf16(ctx) -> None:
    """8. bf16 vs fp32: cached greedy decoding, text only, batch 1; beam-5 captioning of 8 images in one batch."""
    n_new = ctx.args.new_tokens
    # As users load it: `from_pretrained(dtype=torch.bfloat16)` keeps the norms and the audio front end in float32.
    with tempfile.TemporaryDirectory() as saved:
        ctx.model.save_pretrained(saved)
        bf16 = UnivalForConditionalGeneration.from_pretrained(saved, dtype=torch.bfloat16).eval()
    all_bf16 = copy.deepcopy(ctx.model).to(torch.bfloat16)  # `.to()` casts the norms too
    t_fp32, t_bf16, t_all = (median_time(lambda: model.generate(input_ids=ctx.prompt, **ctx.greedy), ctx.args.repeats)
                             for model in (ctx.model, bf16, all_bf16))
    print(f"8. cached greedy, {n_new} tokens, text only: fp32 {n_new / t_fp32:.1f} tok/s, bf16 {n_new / t_bf16:.1f} "
          f"tok/s -> {t_fp32 / t_bf16:.2f}x (target >= 1.6x); norms in bf16 too (`.to(torch.bfloat16)`) "
          f"{n_new / t_all:.1f} tok/s -> {t_fp32 / t_all:.2f}x")
    # Batched beam search multiplies rows (batch 8 x 5 beams): without native bf16, oneDNN's emulated bf16 matrix
    # products fall behind float32's there, while at one row (greedy, batch 1) reading half the bytes still wins.
    gen = beam_caption_settings()

    def captions(model):
        return lambda: model.generate(input_ids=ctx.caption_prompt.expand(8, -1), pixel_values=ctx.images,
                                      generation_config=gen)

    repeats = max(1, ctx.args.repeats // 2)
    b_fp32, b_bf16 = (median_time(captions(model), repeats) for model in (ctx.model, bf16))
    print(f"8b. beam-5 captioning, 8 images at {ctx.args.image_size}px in one batch: fp32 {8 / b_fp32:.3f} img/s, "
          f"bf16 {8 / b_bf16:.3f} img/s -> {b_fp32 / b_bf16:.2f}x")
    if ctx.args.profile:
        top_ops(lambda: bf16.generate(input_ids=ctx.prompt, **ctx.greedy), "bf16 greedy")


def bench_compile(ctx) -> None:
    """9. static cache, eager and compiled, vs the dynamic cache; the compiled model vs BART. On a CPU `generate()`
    compiles only when `compile_config._compile_all_devices` is set; the warm-up run pays for the compilation."""
    from transformers import CompileConfig

    n_new, model = ctx.args.new_tokens, ctx.model
    compile_config = CompileConfig(dynamic=None)
    compile_config._compile_all_devices = True
    runs = {
        "dynamic": {},
        "static": {"cache_implementation": "static"},
        "static+compiled": {"cache_implementation": "static", "compile_config": compile_config},
    }
    tokens = {}
    times = {}
    for name, extra in runs.items():
        times[name] = median_time(lambda: model.generate(input_ids=ctx.prompt, **ctx.greedy, **extra), ctx.args.repeats)
        tokens[name] = model.generate(input_ids=ctx.prompt, **ctx.greedy, **extra)
    bart = bart_like(ctx.config)
    t_bart = median_time(lambda: bart.generate(input_ids=ctx.prompt, **ctx.greedy), ctx.args.repeats)
    same = all(torch.equal(tokens["dynamic"], out) for out in tokens.values())
    rates = ", ".join(f"{name} {n_new / t:.1f} tok/s" for name, t in times.items())
    print(f"9. cached greedy, {n_new} tokens, text only: {rates}; BART {n_new / t_bart:.1f} tok/s -> static "
          f"{times['dynamic'] / times['static']:.2f}x, static+compiled {times['dynamic'] / times['static+compiled']:.2f}x "
          f"the dynamic cache; static+compiled/BART {t_bart / times['static+compiled']:.2f}; same tokens: {same}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="unival-base-image", help="UnivalConfig preset (default: released dims)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: " + ",".join(MEASUREMENTS))
    parser.add_argument("--batch1-items", type=int, default=4, help="items timed one at a time in 5 and 6")
    parser.add_argument("--vqa-new-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print the top ops of one batched run of 5-8")
    args = parser.parse_args()
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurements {sorted(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = UnivalConfig.from_preset(args.preset, dropout=0.0)
    model = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    prompt = torch.randint(4, 50000, (1, 24))
    prompt[:, 0], prompt[:, -1] = 0, 2
    caption_prompt = prompt[:, :8].clone()
    caption_prompt[:, -1] = 2
    n_new = args.new_tokens
    ctx = SimpleNamespace(
        args=args, config=config, model=model, prompt=prompt, caption_prompt=caption_prompt,
        images=torch.randn(8, 3, args.image_size, args.image_size),
        greedy=dict(do_sample=False, num_beams=1, max_new_tokens=n_new, min_new_tokens=n_new),
        question_lengths=[4 + (7 * i) % 16 for i in range(16)],
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_description()}")
    print(f"UnIVAL preset {args.preset}: "
          f"d={config.d_model}, layers={config.encoder_layers}+{config.decoder_layers}, heads={config.encoder_attention_heads}")
    with torch.inference_mode():
        for name in args.only:
            globals()[f"bench_{name}"](ctx)


if __name__ == "__main__":
    main()
