"""UnIVAL's decoding: the original's beam search and ending, inside `generate()`.

The original decodes with fairseq's sequence generator (the OFA fork). Three of its rules differ from
`transformers`' defaults, and they change the captions it writes:

* **The ending is scored.** A hypothesis that reaches the length limit gets a forced `</s>` whose log-probability
  counts in its score, so `max_len_b=22` allows 22 free tokens and a 23rd, `</s>`. A generation config with
  `force_final_eos=True` does the same: at the last step of `max_new_tokens` only `</s>` is allowed, and it keeps its
  log-probability (`transformers`' `forced_eos_token_id` sets it to 0). The task configs of `processing.tasks` use it,
  with `max_new_tokens = max_len_b + 1`.
* **First finished, first kept.** A hypothesis that finished at an earlier step is never replaced by a better one that
  finishes later; within one step the finishing candidates are taken best first until `num_beams` are collected.
  `transformers`' beam search keeps the best `num_beams` of all finished ones. [`UnivalGenerationMixin._beam_search`]
  is the original's search; it ends each row as soon as `num_beams` hypotheses are finished (`early_stopping=True`
  in `transformers`' terms; the setting has no other effect here) and returns them sorted by their final score.
* **Constraints renormalise.** An answer trie masks the logits before the log-softmax, so the allowed tokens share
  all the probability. Processors marked `renormalizes = True` (`AnswerTrieLogitsProcessor`) are therefore moved in
  front of every other processor of the list.

The remaining rules map to standard settings: `<pad>` is never generated (`suppress_tokens=[pad]`), `min_new_tokens`
bans `</s>` as `min_len` does, `no_repeat_ngram_size` blocks over `<s>` and every chosen token, and
`length_penalty` 0 / 1 are `--unnormalized` / the default length normalisation (score / number of tokens, `</s>`
included).

The search also skips a copy `transformers` makes at every step: the cross-attention keys and values are the same for
every beam of a sample, so only the self-attention cache is reordered.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import EncoderDecoderCache
from transformers.generation.utils import ALL_CACHE_NAMES, GenerateBeamEncoderDecoderOutput


class UnivalFinalEosLogitsProcessor(LogitsProcessor):
    r"""
    At the last step allowed by `max_length`, keeps only `</s>`, with the score it has (the original's ending: the
    final `</s>` is forced and scored). Installed by `generate()` when the generation config has `force_final_eos`.

    Args:
        max_length (`int`): the length of the decoder sequences, prompt included, that ends the generation.
        eos_token_id (`int`): id of `</s>`.
    """

    def __init__(self, max_length: int, eos_token_id: int):
        self.max_length = int(max_length)
        self.eos_token_id = int(eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] < self.max_length - 1:
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.eos_token_id] = scores[:, self.eos_token_id]
        return forced


class _OriginalBeamSearch:
    """The bookkeeping of the original's beam search for `batch` rows of `num_beams` hypotheses, vectorised over
    rows (`UnivalGenerationMixin._beam_search` runs the model around it).

    Running hypotheses: tokens (batch, beams, max_length), cumulative log-probs (batch, beams), and for
    `compute_transition_scores` the flat index of the running beam each token came from (batch, beams, max_new).
    Finished ones: the same, plus their final score, in `num_beams` slots per row filled in order (slot `num_beams`
    takes what is discarded).
    """

    def __init__(self, input_ids: torch.LongTensor, num_beams: int, max_length: int, pad_token_id: int):
        batch_beams, self.prompt_len = input_ids.shape
        self.batch, self.beams = batch_beams // num_beams, num_beams
        device = input_ids.device
        max_new = max_length - self.prompt_len
        self.tokens = input_ids.new_full((self.batch, num_beams, max_length), pad_token_id)
        self.tokens[:, :, : self.prompt_len] = input_ids.view(self.batch, num_beams, -1)
        # Every beam starts as the same prompt: only the first one is expanded at the first step.
        self.scores = torch.full((self.batch, num_beams), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.beam_indices = torch.full((self.batch, num_beams, max_new), -1, dtype=torch.long, device=device)
        self.finished_tokens = input_ids.new_full((self.batch, num_beams + 1, max_length), pad_token_id)
        self.finished_scores = torch.full((self.batch, num_beams + 1), float("-inf"), device=device)
        self.finished_indices = torch.full((self.batch, num_beams + 1, max_new), -1, dtype=torch.long, device=device)
        self.finished_lengths = torch.zeros((self.batch, num_beams + 1), dtype=torch.long, device=device)
        self.num_finished = torch.zeros(self.batch, dtype=torch.long, device=device)
        self.done = torch.zeros(self.batch, dtype=torch.bool, device=device)
        self.row_offsets = torch.arange(self.batch, device=device).unsqueeze(1) * num_beams  # (batch, 1)

    def flat_tokens(self, cur_len: int) -> torch.LongTensor:
        return self.tokens[:, :, :cur_len].reshape(self.batch * self.beams, cur_len)

    def candidates(self, log_probs: torch.Tensor, cur_len: int):
        """The best 2 * beams continuations of each row: log_probs (batch * beams, vocab), processed -> cumulative
        scores (batch, 2k), their sequences (batch, 2k, max_length), source beams (batch, 2k), beam indices."""
        vocab = log_probs.shape[-1]
        accumulated = (self.scores.unsqueeze(-1) + log_probs.view(self.batch, self.beams, vocab)).view(self.batch, -1)
        top_scores, top_ids = accumulated.topk(2 * self.beams, dim=1)
        source = torch.div(top_ids, vocab, rounding_mode="floor")
        sequences = self.tokens.gather(1, source.unsqueeze(-1).expand(-1, -1, self.tokens.shape[-1])).clone()
        sequences[:, :, cur_len] = top_ids % vocab
        indices = self.beam_indices.gather(1, source.unsqueeze(-1).expand(-1, -1, self.beam_indices.shape[-1])).clone()
        indices[:, :, cur_len - self.prompt_len] = source + self.row_offsets
        return top_scores, sequences, source, indices

    def step(self, log_probs, cur_len, stops, length_penalty) -> torch.LongTensor:
        """One step. `stops(sequences)` says which candidate sequences (batch * 2k, cur_len + 1) end (`</s>`, the
        length limit, any stopping criterion). Returns the flat index of the beam each surviving hypothesis extends
        (for the cache)."""
        top_scores, sequences, source, indices = self.candidates(log_probs, cur_len)
        ends = stops(sequences[:, :, : cur_len + 1].reshape(-1, cur_len + 1)).view(self.batch, -1)
        rank = torch.arange(2 * self.beams, device=ends.device).unsqueeze(0)
        # An ending candidate finishes if it ranks among the best `beams` and is finite; first come, first kept.
        finishing = ends & (rank < self.beams) & torch.isfinite(top_scores) & ~self.done.unsqueeze(1)
        order = finishing.long().cumsum(1) - 1
        accepted = finishing & (order < (self.beams - self.num_finished).unsqueeze(1))
        slots = torch.where(accepted, self.num_finished.unsqueeze(1) + order, self.beams)  # (batch, 2k)
        length = cur_len + 1 - self.prompt_len
        self._store_finished(slots, sequences, top_scores / (length**length_penalty), indices, length)
        self.num_finished += accepted.sum(1)
        # The best `beams` candidates that do not end continue, in rank order (-inf ones too, as the original).
        keep = (ends.long() * 2 * self.beams + rank).argsort(dim=1)[:, : self.beams]
        self.tokens = sequences.gather(1, keep.unsqueeze(-1).expand(-1, -1, sequences.shape[-1]))
        # (More than `beams` candidates end only with several end tokens or custom criteria: those kept cannot go on.)
        self.scores = top_scores.gather(1, keep).masked_fill(ends.gather(1, keep), float("-inf"))
        self.beam_indices = indices.gather(1, keep.unsqueeze(-1).expand(-1, -1, indices.shape[-1]))
        # A row is done with `beams` finished hypotheses, or when none of its live ones can still finish.
        self.done |= (self.num_finished >= self.beams) | ~torch.isfinite(self.scores).any(1)
        return (source.gather(1, keep) + self.row_offsets).view(-1)

    def _store_finished(self, slots, sequences, scores, indices, length):
        self.finished_tokens.scatter_(1, slots.unsqueeze(-1).expand_as(sequences), sequences)
        self.finished_scores.scatter_(1, slots, scores)
        self.finished_indices.scatter_(1, slots.unsqueeze(-1).expand_as(indices), indices)
        self.finished_lengths.scatter_(1, slots, torch.full_like(slots, length))
        # Slot `beams` collects the discarded candidates; keep it empty.
        self.finished_scores[:, self.beams] = float("-inf")
        self.finished_lengths[:, self.beams] = 0

    def finalize(self, num_return_sequences: int, cur_len: int, length_penalty: float):
        """The finished hypotheses of each row sorted by final score, best first (a stable sort, as the original's):
        sequences (batch * n, length), scores (batch * n,), beam indices (batch * n, generated length). A row that
        finished none (every ending masked, e.g. by `bad_words_ids` banning `</s>`) returns its live hypotheses."""
        empty = self.num_finished.eq(0)
        if bool(empty.any()):
            slots = torch.where(empty.unsqueeze(1), torch.arange(self.beams, device=empty.device), self.beams)
            length = cur_len - self.prompt_len
            self._store_finished(slots, self.tokens, self.scores / max(length, 1) ** length_penalty, self.beam_indices, length)
        scores = self.finished_scores[:, : self.beams]
        order = scores.argsort(dim=1, descending=True, stable=True)[:, :num_return_sequences]
        sequences = self.finished_tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, self.finished_tokens.shape[-1]))
        indices = self.finished_indices.gather(1, order.unsqueeze(-1).expand(-1, -1, self.finished_indices.shape[-1]))
        generated = max(int(self.finished_lengths.max()), 1)
        return (
            sequences[:, :, : self.prompt_len + generated].flatten(0, 1),
            scores.gather(1, order).flatten(),
            indices[:, :, :generated].flatten(0, 1),
        )


class UnivalGenerationMixin(GenerationMixin):
    """`GenerationMixin` with the original's beam search and processor order (see the module docstring)."""

    def _prepare_generation_config(self, generation_config, **kwargs):
        # `force_final_eos` is UnIVAL's own setting: `GenerationConfig.update` only takes the standard ones, so a
        # per-call value is applied here (it is stored in, and read from, `generation_config.json` like any other).
        force_final_eos = kwargs.pop("force_final_eos", None)
        generation_config, model_kwargs = super()._prepare_generation_config(generation_config, **kwargs)
        # `transformers` does not validate these two: `num_beams=0` ends in a ZeroDivisionError inside the search, a
        # negative one in a tensor of negative size, and `num_return_sequences=0` returns no sequence at all.
        for name in ("num_beams", "num_return_sequences"):
            value = getattr(generation_config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if force_final_eos is not None:
            generation_config.force_final_eos = bool(force_final_eos)
        return generation_config, model_kwargs

    def create_masks_for_generate(self, attention_mask=None, **kwargs):
        # `transformers` turns the decoder mask into a 4D causal mask when the cache is static. UnIVAL's decoder needs
        # the 2D mask (it counts each row's positions from its first real token, and builds the causal mask with its
        # position bias), and pads it to the cache's allocation itself.
        return attention_mask

    def _get_logits_processor(self, generation_config, *args, **kwargs) -> LogitsProcessorList:
        processors = super()._get_logits_processor(generation_config, *args, **kwargs)
        # A renormalising constraint must see the scores before any other mask, as the original masks the logits
        # before its log-softmax; the others only set scores to -inf, so their order does not matter.
        ordered = sorted(processors, key=lambda processor: not getattr(processor, "renormalizes", False))
        if getattr(generation_config, "force_final_eos", False):
            if generation_config._eos_token_tensor is None:
                raise ValueError("`force_final_eos` needs an `eos_token_id`")
            eos = int(generation_config._eos_token_tensor.view(-1)[0])
            ordered.append(UnivalFinalEosLogitsProcessor(generation_config.max_length, eos))
        return LogitsProcessorList(ordered)

    def _reorder_cache_for_beams(self, model_kwargs: dict, beam_idx: torch.LongTensor) -> None:
        cache_key = next((key for key in ALL_CACHE_NAMES if model_kwargs.get(key) is not None), None)
        if cache_key is None:
            return
        cache = model_kwargs[cache_key]
        # Cross-attention keys/values are the encoder's, identical for every beam of a sample: only the
        # self-attention cache depends on the beam.
        (cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache).reorder_cache(beam_idx)

    def _beam_search(
        self,
        input_ids: torch.LongTensor,
        logits_processor: LogitsProcessorList,
        stopping_criteria,
        generation_config,
        synced_gpus: bool = False,
        **model_kwargs,
    ):
        """The original's beam search (see the module docstring); the inputs and outputs of `transformers`'."""
        config = generation_config
        if config.do_sample:
            raise ValueError("UnIVAL's beam search is deterministic: beam sampling (`do_sample=True`) is not supported")
        search = _OriginalBeamSearch(input_ids, config.num_beams, config.max_length, int(config._pad_token_tensor))
        record = _StepRecorder(config, model_kwargs.get("encoder_outputs"))
        cur_len, this_peer_finished = search.prompt_len, False
        # As `transformers`' searches: the steps after the prefill run compiled when the cache is static and the
        # device (or `compile_config._compile_all_devices`) allows it.
        model_forward = (
            self.get_compiled_call(config.compile_config)
            if self._valid_auto_compile_criteria(model_kwargs, config)
            else self.__call__
        )
        model_outputs = self._prefill(input_ids, config, model_kwargs, is_first_iteration=not config.is_assistant)
        while self._has_unfinished_sequences(this_peer_finished, synced_gpus, device=input_ids.device):
            if model_outputs is None:
                inputs = self.prepare_inputs_for_generation(
                    search.flat_tokens(cur_len), next_sequence_length=1 if model_kwargs["use_cache"] else None,
                    **model_kwargs,
                )
                model_outputs = model_forward(**inputs, return_dict=True)
            model_kwargs = self._update_model_kwargs_for_generation(model_outputs, model_kwargs, is_encoder_decoder=True)
            if synced_gpus and this_peer_finished:
                model_outputs = None
                continue
            logits = model_outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32, device=input_ids.device)
            log_probs = logits_processor(search.flat_tokens(cur_len), nn.functional.log_softmax(logits, dim=-1))
            log_probs = log_probs.masked_fill(log_probs.isnan(), float("-inf"))  # a row with every token masked
            record.add(model_outputs, logits, log_probs)
            model_outputs = None
            beam_idx = search.step(
                log_probs, cur_len, lambda sequences: stopping_criteria(sequences, record.scores), config.length_penalty
            )
            self._reorder_cache_for_beams(model_kwargs, beam_idx)
            cur_len += 1
            this_peer_finished = bool(search.done.all()) or cur_len >= config.max_length
        sequences, scores, beam_indices = search.finalize(config.num_return_sequences, cur_len, config.length_penalty)
        if not config.return_dict_in_generate:
            return sequences
        return record.output(sequences, scores, beam_indices, model_kwargs)


class _StepRecorder:
    """What `return_dict_in_generate` asks to keep of each step, and the output it builds."""

    def __init__(self, config, encoder_outputs):
        keep = config.return_dict_in_generate
        self.config = config
        self.scores = () if keep and config.output_scores else None
        self.logits = () if keep and config.output_logits else None
        self.attentions = () if keep and config.output_attentions else None
        self.cross_attentions = () if keep and config.output_attentions else None
        self.hidden_states = () if keep and config.output_hidden_states else None
        self.encoder_outputs = encoder_outputs

    def add(self, model_outputs, logits: torch.Tensor, log_probs: torch.Tensor) -> None:
        if self.scores is not None:
            self.scores += (log_probs.clone(),)
        if self.logits is not None:
            self.logits += (logits.clone(),)
        if self.attentions is not None:
            self.attentions += (model_outputs.decoder_attentions,)
            self.cross_attentions += (model_outputs.cross_attentions,)
        if self.hidden_states is not None:
            self.hidden_states += (model_outputs.decoder_hidden_states,)

    def output(self, sequences, scores, beam_indices, model_kwargs) -> GenerateBeamEncoderDecoderOutput:
        encoder = self.encoder_outputs
        cache_key = next((key for key in ALL_CACHE_NAMES if key in model_kwargs), None)
        return GenerateBeamEncoderDecoderOutput(
            sequences=sequences,
            sequences_scores=scores if self.config.output_scores else None,
            scores=self.scores,
            logits=self.logits,
            beam_indices=beam_indices,
            encoder_attentions=encoder.get("attentions") if encoder is not None and self.attentions is not None else None,
            encoder_hidden_states=(
                encoder.get("hidden_states") if encoder is not None and self.hidden_states is not None else None
            ),
            decoder_attentions=self.attentions,
            cross_attentions=self.cross_attentions,
            decoder_hidden_states=self.hidden_states,
            cache=model_kwargs.get(cache_key) if cache_key else None,
        )


__all__ = ["UnivalFinalEosLogitsProcessor", "UnivalGenerationMixin"]
