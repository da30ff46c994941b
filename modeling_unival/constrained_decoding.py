"""Decoding restricted to a closed set of answers, as the original's VQA inference (a trie over the answers).

transformers 5 has no constrained beam search any more; a trie plugged in as a `LogitsProcessor` (or through
`prefix_allowed_tokens_fn`) does the same job and works with greedy, beam search and sampling:

```python
trie = AnswerTrie.from_answers(["yes", "no", "two", "red"], tokenizer)
outputs = model.generate(**inputs, logits_processor=LogitsProcessorList([trie.logits_processor()]), num_beams=5)
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from transformers import LogitsProcessor


class AnswerTrie:
    """A prefix tree over token sequences (each answer's tokens followed by `</s>`)."""

    def __init__(self, sequences: Iterable[Sequence[int]], eos_token_id: int = 2):
        self.eos_token_id = eos_token_id
        self.root: dict[int, dict] = {}
        self.num_answers = 0
        for sequence in sequences:
            sequence = list(sequence)
            if not sequence:
                raise ValueError("an answer with no tokens cannot be decoded")
            node = self.root
            for token in sequence:
                node = node.setdefault(int(token), {})
            self.num_answers += 1
        if not self.num_answers:
            raise ValueError("AnswerTrie needs at least one answer")

    @classmethod
    def from_answers(cls, answers: Iterable[str], tokenizer, eos_token_id: int | None = None) -> "AnswerTrie":
        """Answers as text. Each is tokenised as the original's targets: with a leading space, no `<s>`, then `</s>`."""
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        sequences = []
        for answer in answers:
            text = answer if answer.startswith(" ") else " " + answer
            sequences.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
        return cls(sequences, eos)

    def next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Tokens allowed after `prefix` (the answer tokens generated so far). A prefix that left the trie, or a
        completed answer, allows only `</s>` so that the sequence ends."""
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return [self.eos_token_id]
        return list(node) or [self.eos_token_id]

    def prefix_allowed_tokens_fn(self, prompt_length: int = 1) -> Callable[[int, torch.Tensor], list[int]]:
        """For `generate(prefix_allowed_tokens_fn=...)`. `prompt_length` decoder tokens precede the answer: 1 for
        `<s>` alone, or 1 + the question's length when the question is forced as a decoder prefix (the original's
        "prev_output" VQA layout; all rows of the batch must then share that length)."""

        def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            return self.next_tokens(input_ids[prompt_length:].tolist())

        return allowed

    def logits_processor(self, prompt_length: int = 1) -> "AnswerTrieLogitsProcessor":
        return AnswerTrieLogitsProcessor(self, prompt_length)


class AnswerTrieLogitsProcessor(LogitsProcessor):
    """Sets every score outside the answer trie to -inf (see [`AnswerTrie.prefix_allowed_tokens_fn`])."""

    def __init__(self, trie: AnswerTrie, prompt_length: int = 1):
        self.trie = trie
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, prefix in enumerate(input_ids[:, self.prompt_length :].tolist()):
            mask[row, self.trie.next_tokens(prefix)] = 0.0
        return scores + mask


class UnivalLocationLogitsProcessor(LogitsProcessor):
    r"""
    Keeps only the location tokens `<bin_0>` .. `<bin_{num_bins - 1}>`, so that visual grounding decodes a box and
    nothing else. (The original does not restrict its RefCOCO decoding; a well-trained model emits location tokens
    anyway, a small or young one may not.)

    Args:
        first_token_id (`int`): id of `<bin_0>`.
        num_bins (`int`): number of location tokens.
    """

    def __init__(self, first_token_id: int, num_bins: int):
        if first_token_id < 0 or num_bins < 1:
            raise ValueError(f"invalid location-token range: first id {first_token_id}, {num_bins} bins")
        self.first_token_id = int(first_token_id)
        self.num_bins = int(num_bins)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.first_token_id : self.first_token_id + self.num_bins] = 0.0
        return scores + mask


__all__ = ["AnswerTrie", "AnswerTrieLogitsProcessor", "UnivalLocationLogitsProcessor"]
