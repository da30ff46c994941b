"""training.losses: the encouraging loss against a per-token hand computation of the original's formula."""

import math

import pytest
import torch

from modeling_unival.modeling_unival import label_smoothed_cross_entropy
from training.losses import encouraging_bonus, label_smoothed_encouraging_loss


def by_hand(logits, labels, eps, weights, log_end, drop):
    vocab = logits.shape[-1]
    rows = []
    for t in range(logits.shape[0]):
        lp = torch.log_softmax(logits[t].double(), -1) * (1.0 if weights is None else float(weights[t]))
        ls = (1 - eps - eps / (vocab - 1)) * -lp[labels[t]] + eps / (vocab - 1) * -lp.sum()
        rows.append((float(ls), lp, int(labels[t])))
    rows.sort(key=lambda r: r[0])
    rows = rows[: int(len(rows) * (1 - drop))]
    total = 0.0
    for ls, lp, label in rows:
        bonus = []
        for v in range(vocab):
            p = math.exp(float(lp[v]))
            b = math.log(max(1 - p, 1e-5)) if p <= log_end else (p - log_end) / (log_end - 1) + math.log(1 - log_end)
            bonus.append(b)
        total += ls + (1 - eps) * bonus[label] + eps / vocab * sum(bonus)
    return total / len(rows)


@pytest.mark.parametrize("drop", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_the_formula(drop, weighted):
    torch.manual_seed(0)
    logits = torch.randn(8, 6) * 3
    logits[0, 2] = 9.0  # a confident token: its bonus is on the linear part
    labels = torch.tensor([2, 1, 0, 5, 4, 3, 2, 1])
    weights = torch.rand(8) + 0.5 if weighted else None
    got = label_smoothed_encouraging_loss(logits, labels, 0.1, weights, log_end=0.75, drop_worst_ratio=drop)
    assert got.item() == pytest.approx(by_hand(logits, labels, 0.1, weights, 0.75, drop), rel=1e-5)


def test_bonus_is_continuous_at_log_end_and_rewards_confidence():
    p = torch.tensor([0.75 - 1e-6, 0.75 + 1e-6, 0.2, 0.99], dtype=torch.float64)
    b = encouraging_bonus(p, 0.75)
    assert b[0].item() == pytest.approx(b[1].item(), abs=1e-4)
    assert b[2] > b[0] > b[3]  # more confident -> larger bonus (more negative loss)


def test_without_bonus_terms_it_is_the_models_loss():
    """The label-smoothed part equals the model's criterion: the loss minus the bonus terms."""
    torch.manual_seed(1)
    logits, labels = torch.randn(5, 7), torch.tensor([1, 2, 3, 4, 5])
    log_probs = torch.log_softmax(logits, -1)
    bonus = encouraging_bonus(log_probs.exp(), 0.75)
    bonus_part = ((0.9 * bonus.gather(-1, labels[:, None]).squeeze(-1)) + 0.1 / 7 * bonus.sum(-1)).mean()
    encouraging = label_smoothed_encouraging_loss(logits, labels, 0.1)
    torch.testing.assert_close(encouraging - bonus_part, label_smoothed_cross_entropy(logits, labels, 0.1))


def test_num_items_in_batch_is_the_denominator():
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    mean = label_smoothed_encouraging_loss(logits, labels, 0.1)
    torch.testing.assert_close(label_smoothed_encouraging_loss(logits, labels, 0.1, num_items_in_batch=8), mean / 2)
    with pytest.raises(ValueError, match="drop_worst_ratio"):
        label_smoothed_encouraging_loss(logits, labels, 0.1, drop_worst_ratio=1.0)
