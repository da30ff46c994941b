"""Closed-set answers by scoring every candidate, as the original's SNLI-VE and VQA "allcand" inference.

Instead of generating, the original teacher-forces `<s>` + question + answer for every candidate answer and sums
the answer's log-probabilities (its tokens and the final `</s>`), each taken among the tokens the trie of all
candidates allows at that point (the log-softmax is renormalised over them). The prediction is the arg-max; there is
no length normalisation.

```python
candidates = [tokenizer(" " + answer, add_special_tokens=False)["input_ids"] for answer in ("yes", "no", "two")]
inputs = processor(task="vqa", question=questions, images=images, return_decoder_prompt=True, return_tensors="pt")
scores = model.score_candidates(candidates, **inputs)  # the left-padded `<s>` + question prompts are the prefix
predicted = scores.argmax(-1)
```

The encoder runs once; the decoder runs on every (row, candidate) pair, `candidate_batch_size` candidates (times
the batch) at a time, and the vocabulary projection runs only at the positions that are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .modeling_unival import UnivalEncoderOutput


@dataclass(frozen=True)
class CandidateTrie:
    """The trie of a candidate set, as tensors. For candidate `c` and depth `k` (0 .. len(c)), the scored position
    predicts `targets[c, k]` (the k-th answer token, `</s>` at k = len(c)) from trie node `nodes[c, k]` (the node of
    the prefix `c[:k]`); that node allows `children[node][child_mask[node]]`. Entries past a candidate's end are 0."""

    tokens: torch.LongTensor  # (num_candidates, longest) answer tokens, right-padded with 0
    lengths: torch.LongTensor  # (num_candidates,)
    nodes: torch.LongTensor  # (num_candidates, longest + 1)
    targets: torch.LongTensor  # (num_candidates, longest + 1)
    children: torch.LongTensor  # (num_nodes, max_children)
    child_mask: torch.BoolTensor  # (num_nodes, max_children), True on real children (they come first)

    @classmethod
    def build(
        cls, candidates: Sequence[Sequence[int]], vocab_size: int, eos_token_id: int, device=None
    ) -> "CandidateTrie":
        candidates = _checked_candidates(candidates, vocab_size, eos_token_id)
        edges: dict[tuple[int, int], int] = {}  # (parent node, token) -> child node; node 0 is the root (`<s>`)
        children: list[dict[int, None]] = [{}]  # per node its allowed tokens, in first-seen order
        node_rows = []
        for answer in candidates:
            path = [0]
            for token in answer:
                children[path[-1]].setdefault(token)
                if (path[-1], token) not in edges:
                    edges[path[-1], token] = len(children)
                    children.append({})
                path.append(edges[path[-1], token])
            children[path[-1]].setdefault(eos_token_id)  # a complete answer may end here
            node_rows.append(path)
        longest = max(map(len, candidates))
        tokens, nodes, targets = (
            torch.zeros(len(candidates), width, dtype=torch.long) for width in (longest, longest + 1, longest + 1)
        )
        for c, (answer, path) in enumerate(zip(candidates, node_rows)):
            tokens[c, : len(answer)] = torch.tensor(answer)
            nodes[c, : len(path)] = torch.tensor(path)
            targets[c, : len(path)] = torch.tensor(answer + [eos_token_id])
        width = max(map(len, children))
        child_tokens = torch.zeros(len(children), width, dtype=torch.long)
        child_mask = torch.zeros(len(children), width, dtype=torch.bool)
        for node, allowed in enumerate(children):
            child_tokens[node, : len(allowed)] = torch.tensor(list(allowed), dtype=torch.long)
            child_mask[node, : len(allowed)] = True
        lengths = torch.tensor(list(map(len, candidates)))
        return cls(*(t.to(device) for t in (tokens, lengths, nodes, targets, child_tokens, child_mask)))


def _checked_candidates(candidates, vocab_size: int, eos_token_id: int) -> list[list[int]]:
    if isinstance(candidates, (str, torch.Tensor)) or not isinstance(candidates, Sequence):
        raise TypeError("`candidates` must be a list of token-id lists (one per answer)")
    if len(candidates) == 0:
        raise ValueError("`candidates` is empty: at least one candidate answer is needed")
    checked = []
    for index, answer in enumerate(candidates):
        answer = [int(token) for token in (answer.tolist() if isinstance(answer, torch.Tensor) else answer)]
        if not answer:
            raise ValueError(f"candidate {index} has no tokens")
        if any(not 0 <= token < vocab_size for token in answer):
            raise ValueError(f"candidate {index} has token ids outside the vocabulary of {vocab_size}: {answer}")
        if eos_token_id in answer:
            # The trie could not tell a `</s>` token inside an answer from the end of a shorter one.
            raise ValueError(f"candidate {index} contains `</s>` ({eos_token_id}); give the answer tokens only")
        checked.append(answer)
    return checked


def _prompt_lengths(decoder_input_ids, decoder_attention_mask, pad_token_id: int) -> torch.LongTensor:
    """Number of real tokens of each left-padded prompt (batch,), after checking the layout."""
    if decoder_input_ids.ndim != 2 or decoder_input_ids.is_floating_point():
        raise ValueError(
            f"`decoder_input_ids` must be an integer tensor (batch, prompt_length), got "
            f"{decoder_input_ids.dtype} {tuple(decoder_input_ids.shape)}"
        )
    mask = decoder_input_ids.ne(pad_token_id) if decoder_attention_mask is None else decoder_attention_mask.bool()
    if mask.shape != decoder_input_ids.shape:
        raise ValueError(
            f"`decoder_attention_mask` has shape {tuple(mask.shape)}, `decoder_input_ids` "
            f"{tuple(decoder_input_ids.shape)}"
        )
    if not bool(mask[:, -1].all()) or bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError("the decoder prompts must be left-padded, each with at least one real token (`<s>`)")
    return mask.sum(-1)


def _encode(model, encoder_outputs, encoder_inputs: dict) -> UnivalEncoderOutput:
    if encoder_outputs is None:
        if not encoder_inputs:
            raise ValueError("pass the encoder inputs (input_ids, pixel_values, ...) or `encoder_outputs`")
        return model.get_encoder()(**encoder_inputs)
    if encoder_inputs:
        raise ValueError(f"pass either `encoder_outputs` or encoder inputs, not both (got {sorted(encoder_inputs)})")
    if (
        not isinstance(encoder_outputs, UnivalEncoderOutput)
        or encoder_outputs.attention_mask is None
        or encoder_outputs.position_embeddings is None
    ):
        raise TypeError("`encoder_outputs` must be the UnivalEncoderOutput returned by `model.get_encoder()`")
    return encoder_outputs


def _teacher_forcing_inputs(prompt_ids, prompt_lengths, tokens, lengths, pad_token_id: int):
    """Every row's prompt (left-padded input, moved to the left) followed by every candidate, right-padded:
    ids and mask (batch, num_candidates, width), width = longest prompt + longest candidate."""
    batch, prompt_width = prompt_ids.shape
    columns = torch.arange(int(prompt_lengths.max()) + tokens.shape[1], device=prompt_ids.device)
    starts = prompt_lengths[:, None]  # where each row's answer starts
    # The left padding of row r is `prompt_width - P_r` columns: column t of the prompt is column t + that.
    prompt = prompt_ids.gather(1, (columns + prompt_width - starts).clamp(0, prompt_width - 1))
    in_prompt = (columns < starts)[:, None, :]
    answer_columns = (columns - starts)[:, None, :]  # (batch, 1, width)
    in_answer = (answer_columns >= 0) & (answer_columns < lengths[None, :, None])
    candidates = torch.arange(tokens.shape[0], device=tokens.device)[None, :, None]
    answer = tokens[candidates, answer_columns.clamp(0, tokens.shape[1] - 1)]
    ids = torch.where(in_prompt, prompt[:, None, :], torch.where(in_answer, answer, pad_token_id))
    return ids, in_prompt | in_answer


def _chunk_scores(model, encoded: UnivalEncoderOutput, prompt_ids, prompt_lengths, trie: CandidateTrie, chunk: slice):
    """Scores (batch, chunk size) of the candidates `chunk` for every row."""
    tokens, lengths = trie.tokens[chunk], trie.lengths[chunk]
    longest = int(lengths.max())
    ids, mask = _teacher_forcing_inputs(
        prompt_ids, prompt_lengths, tokens[:, :longest], lengths, model.config.pad_token_id
    )
    batch, num, width = ids.shape
    pairs = torch.arange(batch, device=ids.device).repeat_interleave(num)  # the encoder row of each (row, candidate)
    features = model(
        decoder_input_ids=ids.view(batch * num, width),
        decoder_attention_mask=mask.view(batch * num, width).long(),
        encoder_outputs=UnivalEncoderOutput(
            last_hidden_state=encoded.last_hidden_state[pairs],
            attention_mask=encoded.attention_mask[pairs],
            position_embeddings=encoded.position_embeddings.expand(batch, -1, -1)[pairs],
        ),
        use_cache=False,
        return_logits=False,
    ).decoder_features.view(batch, num, width, -1)
    # The position predicting answer token k (k = len: `</s>`) holds token k - 1 (for k = 0 the prompt's last).
    positions = (prompt_lengths[:, None] - 1 + torch.arange(longest + 1, device=ids.device)).clamp(max=width - 1)
    rows, candidates = torch.arange(batch, device=ids.device), torch.arange(num, device=ids.device)
    scored = features[rows[:, None, None], candidates[None, :, None], positions[:, None, :]]  # (batch, num, depth, dim)
    scores = torch.zeros(batch, num, dtype=torch.float32, device=ids.device)
    weight = model.lm_head.weight  # (vocab, dim); UnIVAL's output projection has no bias
    for depth in range(longest + 1):  # one projection per answer position, only for the candidates that reach it
        live = lengths >= depth
        nodes = trie.nodes[chunk][live, depth]
        degree = int(trie.child_mask[nodes].sum(-1).max())
        # Only the tokens the trie allows at this depth are projected, in float32 whatever the model's dtype: a few
        # rows of the vocabulary instead of all 59,457 (3 for entailment's first token, then `</s>` alone), and no
        # bf16 rounding of the logits that decide between candidates.
        tokens_here, allowed = trie.children[nodes, :degree].unique(return_inverse=True)  # (U,), (live, degree)
        with torch.autocast(device_type=ids.device.type, enabled=False):
            logits = scored[:, live, depth].float() @ weight[tokens_here].float().T  # (batch, live, U)
        allowed_logits = logits.gather(-1, allowed.expand(batch, -1, -1))
        allowed_logits = allowed_logits.masked_fill(~trie.child_mask[nodes, :degree], float("-inf"))
        target = torch.searchsorted(tokens_here, trie.targets[chunk][live, depth])  # each target's column in `logits`
        target = logits.gather(-1, target.expand(batch, -1)[..., None]).squeeze(-1)
        scores[:, live] += target - allowed_logits.logsumexp(-1)  # log-softmax over the allowed tokens only
    return scores


@torch.no_grad()
def score_candidates(
    model,
    candidates: Sequence[Sequence[int]],
    decoder_input_ids: torch.LongTensor,
    decoder_attention_mask: torch.Tensor | None = None,
    encoder_outputs: UnivalEncoderOutput | None = None,
    candidate_batch_size: int | None = None,
    **encoder_inputs,
) -> torch.FloatTensor:
    r"""
    The original's all-candidate score of every candidate answer for every row: (batch, num_candidates), float32.

    Args:
        model ([`UnivalForConditionalGeneration`]): in eval mode.
        candidates (`list[list[int]]`): each answer's token ids, without `<s>` and `</s>`; the same set for every row.
        decoder_input_ids (`torch.LongTensor` of shape `(batch_size, prompt_length)`): `<s>` + question per row, left-
            padded with `pad_token_id` (the processor's "prev_output" prompts); `<s>` alone is a valid prompt.
        decoder_attention_mask (`torch.Tensor` of the same shape, *optional*): 1 for real prompt tokens; derived
            from `pad_token_id` when omitted.
        encoder_outputs ([`UnivalEncoderOutput`], *optional*): from `model.get_encoder()(...)`, instead of
            `encoder_inputs`.
        candidate_batch_size (`int`, *optional*): how many candidates (each for every row) one decoder pass takes;
            all at once by default. Lower it to bound memory: a pass holds `batch_size * candidate_batch_size`
            decoder sequences and their copies of the encoder output.
        encoder_inputs: `input_ids`, `attention_mask`, `pixel_values`, `patch_masks`, ... as for `model.forward`.

    Returns:
        `torch.FloatTensor` of shape `(batch_size, num_candidates)`: per candidate the sum of the log-probs of its
        tokens and of `</s>`, each among the tokens the trie of all candidates allows there; `argmax(-1)` predicts.
    """
    config = model.config
    trie = CandidateTrie.build(candidates, model.lm_head.weight.shape[0], config.eos_token_id, decoder_input_ids.device)
    prompt_lengths = _prompt_lengths(decoder_input_ids, decoder_attention_mask, config.pad_token_id)
    if candidate_batch_size is not None and (not isinstance(candidate_batch_size, int) or candidate_batch_size < 1):
        raise ValueError(f"`candidate_batch_size` must be a positive integer, got {candidate_batch_size!r}")
    encoded = _encode(model, encoder_outputs, encoder_inputs)
    if encoded.last_hidden_state.shape[0] != decoder_input_ids.shape[0]:
        raise ValueError(
            f"the encoder inputs have {encoded.last_hidden_state.shape[0]} rows, `decoder_input_ids` "
            f"{decoder_input_ids.shape[0]}"
        )
    step = candidate_batch_size or len(trie.lengths)
    chunks = [slice(start, start + step) for start in range(0, len(trie.lengths), step)]
    scores = [_chunk_scores(model, encoded, decoder_input_ids, prompt_lengths, trie, chunk) for chunk in chunks]
    return torch.cat(scores, dim=1)


__all__ = ["CandidateTrie", "score_candidates"]
