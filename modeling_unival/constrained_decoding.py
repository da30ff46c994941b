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
from torch import nn
from transformers import LogitsProcessor

from .ids import EOS_TOKEN_ID


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
    r"""
    Restricts every row to the answer trie and renormalises over the allowed tokens, as the original, which masks the
    logits before its log-softmax: the output is the log-probability among the allowed tokens (0 where a single
    continuation is allowed). `renormalizes = True` makes `generate()` run it before every other processor (see
    `modeling_unival.generation`). The tokens after `prompt_length` columns are the answer so far; with a
    left-padded decoder prompt that is the prompt's width.

    The trie is compiled to tensors once, so that a step costs a few vectorised lookups per answer token: the
    children of node `n` are `child_tokens[offsets[n]:offsets[n + 1]]`, and a (node, token) edge is found by binary
    search in `edge_keys` (node * vocabulary + token, sorted).
    """

    renormalizes = True

    def __init__(self, trie: AnswerTrie, prompt_length: int = 1):
        self.trie = trie
        self.prompt_length = int(prompt_length)
        self._compiled: dict[tuple[str, int], tuple[torch.Tensor, ...]] = {}

    def _compile(self, device: torch.device, vocab_size: int) -> tuple[torch.Tensor, ...]:
        key = (str(device), vocab_size)
        if key not in self._compiled:
            nodes, edges = [self.trie.root], []  # edges: (parent, token, child)
            for parent, node in enumerate(nodes):  # breadth first; `nodes` grows while it is walked
                for token, child in node.items():
                    if not 0 <= token < vocab_size:
                        raise ValueError(f"answer token {token} is outside the vocabulary of {vocab_size}")
                    edges.append((parent, token, len(nodes)))
                    nodes.append(child)
            edge = torch.tensor(edges, dtype=torch.long, device=device).view(-1, 3)
            keys = edge[:, 0] * vocab_size + edge[:, 1]
            order = keys.argsort()
            degree = torch.bincount(edge[:, 0], minlength=len(nodes))
            offsets = torch.cat([degree.new_zeros(1), degree.cumsum(0)])
            self._compiled[key] = (keys[order], edge[order, 2], edge[:, 1], offsets)  # edges are grouped by parent
        return self._compiled[key]

    def _nodes(self, answers: torch.LongTensor, vocab_size: int, edge_keys, edge_children) -> torch.LongTensor:
        """The trie node each row's answer so far leads to, -1 once it left the trie: (rows,)."""
        nodes = answers.new_zeros(answers.shape[0])
        for column in answers.unbind(1):  # one vectorised lookup per answer token
            keys = nodes.clamp(min=0) * vocab_size + column
            found = torch.searchsorted(edge_keys, keys).clamp(max=edge_keys.numel() - 1)
            nodes = torch.where((nodes >= 0) & edge_keys[found].eq(keys), edge_children[found], -1)
        return nodes

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, vocab_size = scores.shape
        edge_keys, edge_children, child_tokens, offsets = self._compile(scores.device, vocab_size)
        nodes = self._nodes(input_ids[:, self.prompt_length :], vocab_size, edge_keys, edge_children)
        degree = torch.where(nodes >= 0, offsets[nodes.clamp(min=0) + 1] - offsets[nodes.clamp(min=0)], 0)
        row_of_edge = torch.repeat_interleave(torch.arange(rows, device=scores.device), degree)
        first_edge = torch.repeat_interleave(offsets[nodes.clamp(min=0)], degree)
        within = torch.arange(row_of_edge.numel(), device=scores.device) - torch.repeat_interleave(
            degree.cumsum(0) - degree, degree
        )
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        allowed[row_of_edge, child_tokens[first_edge + within]] = True
        # A row that left the trie, or stands on a complete answer with no continuation, can only end.
        allowed[degree.eq(0), self.trie.eos_token_id] = True
        return nn.functional.log_softmax(scores.float().masked_fill(~allowed, float("-inf")), dim=-1).to(scores.dtype)


class UnivalLocationLogitsProcessor(LogitsProcessor):
    r"""
    Keeps only the location tokens `<bin_0>` .. `<bin_{num_bins - 1}>` and `</s>`, so that visual grounding decodes
    a box and nothing else (with `min_new_tokens=4` and the task's `force_final_eos`: four bins, then `</s>`). The
    original does not restrict its RefCOCO decoding; a well-trained model emits location tokens anyway, a small or
    young one may not.

    Args:
        first_token_id (`int`): id of `<bin_0>`.
        num_bins (`int`): number of location tokens.
        eos_token_id (`int`, defaults to UnIVAL's `</s>`): the token that ends the box.
    """

    def __init__(self, first_token_id: int, num_bins: int, eos_token_id: int = EOS_TOKEN_ID):
        if first_token_id < 0 or num_bins < 1:
            raise ValueError(f"invalid location-token range: first id {first_token_id}, {num_bins} bins")
        self.first_token_id = int(first_token_id)
        self.num_bins = int(num_bins)
        self.eos_token_id = int(eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.first_token_id : self.first_token_id + self.num_bins] = 0.0
        mask[:, self.eos_token_id] = 0.0
        return scores + mask


__all__ = ["AnswerTrie", "AnswerTrieLogitsProcessor", "UnivalLocationLogitsProcessor"]
