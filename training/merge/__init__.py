"""Weight-space merging of UnIVAL models: interpolation, model soups, "ratatouille" and fusing.

UnIVAL (Shukor et al., TMLR 2023, "Multimodal Model Merging") merges multimodal models finetuned on different
tasks by averaging their weights. This package provides the merges of the paper, in the `transformers` way
(models in, a normal `PreTrainedModel` out, `save_pretrained` / `from_pretrained` round trips):

=========================================== =======================================================================
function                                    what
=========================================== =======================================================================
`interpolate(models, weights)`              `sum_i w_i * theta_i` (weights >= 0, summing to 1; `normalize=True`
                                            rescales them)
`interpolate_pair(model_a, model_b, alpha)` `alpha * A + (1 - alpha) * B`: `alpha=1` gives A, `alpha=0` gives B
                                            (the original's `lambda * A + (1 - lambda) * B`)
`uniform_soup(models)`                      every weight `1 / N`
`greedy_soup(models, evaluate_fn)`          Wortsman et al. (2022): candidates sorted by their own score, each one
                                            kept only if the soup's score does not decrease
`ratatouille(models, base_model=...)`       average of finetunes that share one pretrained start (Ramé et al.,
                                            2023), with that shared start checked
`fuse(models, finetune_fn)`                 average, then a short finetuning of the average (`finetune_fn`)
`recompute_batchnorm(model, batches)`       BatchNorm running statistics re-estimated on data
`save_merged(model, out_dir, processor)`    a normal saved model + processor + a model card stating the recipe
`interpolation_sweep(a, b, alphas, fns)`    evaluate tasks along the A-B line; CSV + PNG
=========================================== =======================================================================

Semantics (decided here; the original `preprocess/average_save_models.py` differs where noted):

* **Inputs** are `PreTrainedModel`s, PEFT `PeftModel`s or plain state dicts (`{name: tensor}`), mixed freely. A
  PEFT model is merged into its base first (`merge_and_unload` on a copy: the input is not modified). A state
  dict holding LoRA tensors (`lora_A` / `lora_B`) is refused. The result is a model when any input is a model (a
  copy of the first model input with a nonzero weight, whose config it keeps), otherwise a state dict with the
  first input's keys.
* **Compatibility** is checked before any arithmetic, and a `ValueError` names the first problem: the first
  parameter (in the first input's order) that is missing from an input or has another shape, with the shapes; a
  parameter an input has and the first one lacks; a differing configuration field (everything but the
  training-only and bookkeeping fields of `IGNORED_CONFIG_FIELDS`, e.g. dropout, at any nesting level); a
  differing tokenizer vocabulary (first differing token) when processors / tokenizers are given. Keys missing
  from an input are an error: nothing is silently rescaled (the original did `theta += lambda_i * theta` for
  them) or silently taken from one model.
* **Floating-point tensors** (parameters and float buffers) are combined in float32 (float64 for float64
  tensors) and cast back to the dtype of the first input with a nonzero weight. Inputs with a zero weight are
  validated but not read, and a tensor that is identical in every weighted input is copied as it is, so merging
  a model with itself, or `alpha` = 0 / 1, reproduces the input bit for bit.
* **Non-floating tensors** (`num_batches_tracked` and any other integer / bool buffer) are copied from ONE
  input: the first input with a nonzero weight (the first input, unless its weight is 0). The original averaged
  them as floats and truncated them back to int64.
* **BatchNorm running statistics** (float buffers of the towers) are interpolated like the weights by default
  (`bn="interpolate"`). `bn="recompute"` (with `bn_batches`) re-estimates them on data after the merge, see
  `recompute_batchnorm`.
* **Generation config:** with `task=` (any merge function; `--task` on the command line) the merged model gets the
  original's settings of that task (`processing.tasks.generation_config`, with the model's special tokens).
  Without it, the inputs' generation config, which must then be the same in every model input (a `ValueError`
  names the first differing field). `save_merged` writes a directory only with a task's generation config (one that
  sets a generation length), so that the reloaded model generates with its task's settings and without warnings.
* **Tied weights** are merged once: tensors sharing storage (`lm_head.weight`, `model.encoder.embed_tokens.weight`
  and `model.decoder.embed_tokens.weight` are `model.shared.weight`) form one group, and the merged values are
  written into the template's own tensors, so `merged.lm_head.weight is merged.model.shared.weight` still holds
  (and after `save_merged` + `from_pretrained`). A saved checkpoint holding only `model.shared.weight` matches a
  model with the whole group. Weights tied in one input but not in another are refused unless equal.

The returned model carries its recipe (`model.merge_recipe`, a `MergeRecipe`), which `save_merged` writes into
the model card (README.md) and `merge_recipe.json`.

Command line (directories saved with `save_pretrained`, or PEFT adapter directories whose base is readable):

    python -m training.merge --models DIR_A DIR_B --alpha 0.3 --task caption --out merged  # 0.3 * A + 0.7 * B
    python -m training.merge --models D1 D2 D3 --weights 0.2 0.3 0.5 --task vqa --out merged
    python -m training.merge --models D1 D2 D3 --method uniform --out soup [--bn recompute --bn-data WORLD]
    python -m training.merge --models D1 D2 D3 --method greedy --eval-data WORLD --eval-tasks caption --out soup

`--task` may be left out when the inputs' generation configs are one task's (e.g. checkpoints converted for one
task). `--out` must be a new (or empty) directory, and not one of the inputs (the merge would overwrite its
weights), unless `--overwrite`: the output is written to a temporary directory beside `--out` and renamed into place
once complete, so an existing model is replaced whole and an interrupted merge leaves no half-written model.

`--bn-data` / `--eval-data` are directories in the `training.data` schema layout (`SPLIT.jsonl` + media, e.g. a
synthetic world written by `python -m training.data.synthetic`), batched with the models' processor. The command
line's greedy soup scores a model by minus its token-level cross-entropy on `--eval-data` (teacher forcing);
task metrics (CIDEr, VQA accuracy) plug in through the Python API's `evaluate_fn`.

Modules: `interpolation` (the arithmetic), `checks` (compatibility), `inputs` (models, PEFT models, state dicts),
`soups` (greedy soup, ratatouille, fusing), `batchnorm`, `generation` (the merged generation config), `recipe`,
`saving`, `sweep` and `plotting`, and for the command line `cli`, `loading`, `batches` and `scoring`.
"""


from .batches import schema_batches
from .batchnorm import BN_MODES, recompute_batchnorm
from .checks import IGNORED_CONFIG_FIELDS, check_compatible, check_tokenizers, check_weights
from .cli import main
from .interpolation import interpolate, interpolate_pair, uniform_soup
from .loading import load_for_merge
from .recipe import MergeRecipe
from .saving import save_merged
from .scoring import negative_cross_entropy
from .soups import GreedySoupResult, fuse, greedy_soup, ratatouille
from .sweep import interpolation_sweep


__all__ = [
    "BN_MODES",
    "IGNORED_CONFIG_FIELDS",
    "GreedySoupResult",
    "MergeRecipe",
    "check_compatible",
    "check_tokenizers",
    "check_weights",
    "fuse",
    "greedy_soup",
    "interpolate",
    "interpolate_pair",
    "interpolation_sweep",
    "load_for_merge",
    "main",
    "negative_cross_entropy",
    "ratatouille",
    "recompute_batchnorm",
    "save_merged",
    "schema_batches",
    "uniform_soup",
]
