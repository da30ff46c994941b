"""UnIVAL for `transformers`: configuration, model, conversion from the original fairseq checkpoints.

Importing this package registers the model with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForSeq2SeqLM`, `AutoModelForImageTextToText`) and the pipeline task `"unival"`, and marks the classes for remote code so that a saved
checkpoint also loads with `trust_remote_code=True` where this package is not installed.

`save_preset(name, folder)` (or `python -m modeling_unival.presets NAME --out FOLDER`) writes a randomly initialised
model of a preset with its processor and generation config, for `from_pretrained(FOLDER)`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
)

from .candidate_scoring import score_candidates
from .configuration_unival import PRESETS, UnivalAudioConfig, UnivalConfig, UnivalVideoConfig
from .constrained_decoding import AnswerTrie, AnswerTrieLogitsProcessor, UnivalLocationLogitsProcessor
from .generation import UnivalFinalEosLogitsProcessor
from .modeling_unival import (
    UnivalEncoderOutput,
    UnivalForConditionalGeneration,
    UnivalModel,
    UnivalPreTrainedModel,
)
from .pipeline_unival import UnivalPipeline, register_pipeline, repair_image_to_text_warning
from .presets import save_preset


AutoConfig.register("unival", UnivalConfig, exist_ok=True)
AutoModel.register(UnivalConfig, UnivalModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(UnivalConfig, UnivalForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(UnivalConfig, UnivalForConditionalGeneration, exist_ok=True)

# The pipeline task "unival" (a name of UnIVAL's own: every other task keeps its stock pipeline).
register_pipeline()
repair_image_to_text_warning()

UnivalConfig.register_for_auto_class()
UnivalModel.register_for_auto_class("AutoModel")
UnivalForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "AnswerTrie",
    "AnswerTrieLogitsProcessor",
    "PRESETS",
    "UnivalAudioConfig",
    "UnivalConfig",
    "UnivalEncoderOutput",
    "UnivalFinalEosLogitsProcessor",
    "UnivalForConditionalGeneration",
    "UnivalLocationLogitsProcessor",
    "UnivalModel",
    "UnivalPipeline",
    "UnivalPreTrainedModel",
    "UnivalVideoConfig",
    "save_preset",
    "score_candidates",
]
