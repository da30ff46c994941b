"""Task balancing: mixture weights and the task-balanced sampler."""

from collections import Counter

import pytest

from training.sampling import TaskBalancedSampler, mixture_weights


def test_mixture_weights_explicit_and_temperature():
    sizes = {"caption": 800, "vqa": 150, "grounding": 50}
    assert mixture_weights(sizes, {"caption": 2, "vqa": 1, "grounding": 1}) == {"caption": 0.5, "vqa": 0.25, "grounding": 0.25}
    proportional = mixture_weights(sizes)
    assert proportional == pytest.approx({"caption": 0.8, "vqa": 0.15, "grounding": 0.05})
    flatter = mixture_weights(sizes, temperature=2.0)
    total = sum(s ** 0.5 for s in sizes.values())
    assert flatter == pytest.approx({k: s ** 0.5 / total for k, s in sizes.items()})
    assert flatter["grounding"] > proportional["grounding"]
    assert mixture_weights(sizes, {"caption": 1.0})["vqa"] == 0.0
    with pytest.raises(ValueError, match="unknown task group"):
        mixture_weights(sizes, {"detection": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        mixture_weights(sizes, {"caption": -1.0, "vqa": 2.0})
    with pytest.raises(ValueError, match="no examples"):
        mixture_weights({"caption": 0})


def test_realised_proportions_follow_the_weights_over_2000_draws():
    sizes = {"caption": 500, "vqa": 120, "grounding": 30, "video_caption": 60}
    weights = {"caption": 0.4, "vqa": 0.3, "grounding": 0.2, "video_caption": 0.1}
    sampler = TaskBalancedSampler(sizes, weights, num_samples=2000, seed=3)
    offsets, start = {}, 0
    for name, size in sizes.items():
        offsets[name] = range(start, start + size)
        start += size
    counts = Counter(next(n for n, r in offsets.items() if i in r) for i in sampler)
    assert sum(counts.values()) == 2000
    for name, weight in weights.items():
        assert abs(counts[name] / 2000 - weight) < 0.03, (name, counts[name] / 2000)


def test_stream_is_deterministic_and_changes_with_the_epoch():
    sizes, weights = {"a": 40, "b": 10}, {"a": 0.5, "b": 0.5}
    first = list(TaskBalancedSampler(sizes, weights, seed=1))
    assert first == list(TaskBalancedSampler(sizes, weights, seed=1))
    sampler = TaskBalancedSampler(sizes, weights, seed=1)
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(first) == 50 and all(0 <= i < 50 for i in first)


def test_a_group_is_walked_without_replacement_before_repeating():
    sampler = TaskBalancedSampler({"a": 10, "b": 10}, {"a": 1.0, "b": 0.0}, num_samples=20, seed=0)
    drawn = list(sampler)
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:]) == list(range(10))
