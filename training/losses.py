"""The original's finetuning criterion for captions and video QA: label-smoothed cross-entropy plus the "encouraging
loss" bonus, with the worst tokens dropped late in training (reference section 7.3, footnote 1; OFA's
`ajust_label_smoothed_encouraging_loss`). The model's own loss (`label_smoothed_cross_entropy`) is the pretraining
criterion; this one is applied by `FinetuneTrainer` when the task's row asks for it.

Per supervised target token, with log-probabilities `l_v` scaled by the sample's weight (VQA answer confidence) as the
original scales them, `p_v = exp(l_v)`, `eps` the label smoothing and `V` the vocabulary size:

    ls    = (1 - eps - eps / (V - 1)) * (-l_target) + eps / (V - 1) * sum_v(-l_v)
    b_v   = log(1 - p_v)                                            for p_v <= log_end (clamped at log 1e-5)
          = (p_v - log_end) / (log_end - 1) + log(1 - log_end)      above: the tangent, so the bonus stays finite
    loss  = ls + (1 - eps) * b_target + eps / V * sum_v(b_v)

`b` is negative and largest in magnitude for confident tokens: the loss keeps rewarding well-classified tokens where
cross-entropy stops. After `drop_worst_after` updates, the `drop_worst_ratio` fraction of tokens with the largest
`ls` is left out (the original ranks by `ls`, then adds the bonus of the kept tokens). The sum is divided by the
number of kept tokens, or by `num_items_in_batch * (1 - drop_worst_ratio)` under gradient accumulation / DDP.
"""

from __future__ import annotations

import torch
from torch import nn

from modeling_unival.modeling_unival import label_smoothed_token_losses


def encouraging_bonus(probs: torch.Tensor, log_end: float) -> torch.Tensor:
    """`log(1 - p)`, continued by its tangent above `log_end` (1.0: the plain log, clamped)."""
    bonus = torch.log(torch.clamp(1.0 - probs, min=1e-5))
    if log_end != 1.0:
        tangent = (probs - log_end) / (log_end - 1.0) + torch.log(torch.tensor(1.0 - log_end, dtype=probs.dtype))
        bonus = torch.where(probs > log_end, tangent, bonus)
    return bonus


def label_smoothed_encouraging_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    label_weights: torch.Tensor | None = None,
    log_end: float = 0.75,
    drop_worst_ratio: float = 0.0,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The criterion of the module docstring. `logits` (tokens, V) at the supervised positions, `labels` (tokens,),
    `label_weights` (tokens,) or None."""
    if not 0.0 <= drop_worst_ratio < 1.0:
        raise ValueError(f"drop_worst_ratio must be in [0, 1), got {drop_worst_ratio}")
    vocab_size = logits.shape[-1]
    log_probs = nn.functional.log_softmax(logits.float(), dim=-1)
    if label_weights is not None:
        log_probs = log_probs * label_weights.to(log_probs.dtype).unsqueeze(-1)
    token_loss = label_smoothed_token_losses(log_probs, labels, epsilon)
    if drop_worst_ratio > 0:
        keep = int(token_loss.shape[0] * (1.0 - drop_worst_ratio))
        token_loss, kept = torch.topk(token_loss, k=keep, largest=False)
        log_probs, labels = log_probs[kept], labels[kept]
    bonus = encouraging_bonus(log_probs.exp(), log_end)
    token_loss = token_loss + (1.0 - epsilon) * bonus.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    token_loss = token_loss + epsilon / vocab_size * bonus.sum(-1)
    if num_items_in_batch is not None:
        denominator = num_items_in_batch * (1.0 - drop_worst_ratio)
        if isinstance(denominator, torch.Tensor):
            denominator = denominator.to(token_loss.device)
    else:
        denominator = max(token_loss.shape[0], 1)
    return token_loss.sum() / denominator


__all__ = ["encouraging_bonus", "label_smoothed_encouraging_loss"]
