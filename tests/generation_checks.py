"""Checks of what a training run writes for inference: the saved `generation_config.json` is its task's, and the
reloaded model generates with it, and greedily, without a single warning."""

import logging
import warnings

import transformers
from transformers import AutoModelForSeq2SeqLM, AutoProcessor, GenerationConfig

import modeling_unival  # noqa: F401  (registers the Auto classes)
from processing.tasks import generation_config, resolve_task


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def assert_saved_generation_config(directory, task: str) -> None:
    saved = GenerationConfig.from_pretrained(directory)
    for name, value in resolve_task(task).generation.items():
        assert getattr(saved, name) == value, (name, getattr(saved, name), value)
    assert saved.decoder_start_token_id is not None and saved.eos_token_id is not None


def assert_generates_without_warnings(directory, examples: list[dict], task: str) -> None:
    """Reloads `directory` with the Auto classes and generates for `examples` (one task) with the saved settings,
    then greedily (`num_beams=1`, and the task's greedy settings): neither `warnings` nor transformers' logger may
    say anything."""
    from training.collator import UnivalMultitaskCollator

    records = _Records()
    library_logger = transformers.logging.get_logger()  # the `transformers` logger every module logs under
    library_logger.addHandler(records)
    # `logger.warning_once` remembers what it said earlier in the session: forget it, so nothing is hidden.
    transformers.utils.logging.warning_once.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
            processor = AutoProcessor.from_pretrained(directory)
            batch = next(UnivalMultitaskCollator(processor, training=False).iter_generation_batches(examples, 4))
            assert batch.task == resolve_task(task).name
            beam = model.generate(**batch.inputs)
            greedy = model.generate(**batch.inputs, num_beams=1)
            model.generate(**batch.inputs, **generation_config(task, num_beams=1).to_diff_dict())
    finally:
        library_logger.removeHandler(records)
    said = [str(w.message) for w in caught] + records.messages
    assert not said, said
    # The saved settings are the ones used: at most the task's new tokens after the decoder prompt.
    limit = resolve_task(task).generation["max_new_tokens"] + batch.decoder_prompt_length
    assert beam.shape[1] <= limit and greedy.shape[1] <= limit
