"""Processing classes of UnIVAL for 🤗 transformers.

Importing this package registers the classes with the Auto classes for the model type `"unival"`:
`AutoTokenizer`, `AutoImageProcessor` (both backends), `AutoVideoProcessor` (both backends, through its mapping: the
class itself needs torchvision in transformers 5.x), `AutoFeatureExtractor` and `AutoProcessor` (and `AutoConfig`,
with `exist_ok=True`, so registering the config again elsewhere is harmless).

Layout:

- `constants.py`: token ids, vocabulary layout, `Modality`, normalisation constants, default sizes;
- `prompts.py`: task prompts and targets, `pre_caption` / `pre_question`, answer / caption clean-up, and `TokenText`
  (the only strings whose location / code tokens the processor encodes as tokens: user text is plain text);
- `boxes.py`: box quantisation into `<bin_i>` tokens and back;
- `tokenization_unival.py`, `image_processing_unival.py`, `video_processing_unival.py`,
  `feature_extraction_unival.py`, `processing_unival.py`: the processing classes.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

from modeling_unival.configuration_unival import UnivalConfig

from .boxes import bin_token, bins_to_box, box_to_bins, extract_bins, quantize_box
from .constants import Modality
from .feature_extraction_unival import UnivalFeatureExtractor
from .image_processing_unival import UnivalImageProcessor
from .processing_unival import UnivalProcessor
from .tasks import TASKS, TaskSpec, build_prompt, build_target, generation_config, resolve_task
from .prompts import (
    TokenText,
    clean_caption_target,
    postprocess_caption,
    postprocess_vqa_answer,
    pre_caption,
    pre_question,
    token_string,
)
from .tokenization_unival import UnivalTokenizer
from .video_processing_unival import UnivalVideoProcessor, sample_frame_indices


def register_auto_classes() -> None:
    """Register the UnIVAL processing classes with the transformers Auto classes (idempotent)."""
    AutoConfig.register(UnivalConfig.model_type, UnivalConfig, exist_ok=True)
    AutoTokenizer.register(UnivalConfig, tokenizer_class=UnivalTokenizer, exist_ok=True)
    AutoImageProcessor.register(
        UnivalConfig,
        image_processor_classes={"pil": UnivalImageProcessor, "torchvision": UnivalImageProcessor},
        exist_ok=True,
    )
    # `AutoVideoProcessor` itself cannot be touched without torchvision in transformers 5.x (the class is gated by a
    # `requires` on torchvision), so register in its mapping directly: this is what `AutoVideoProcessor.register`
    # does, and `AutoVideoProcessor.from_pretrained` then finds the class wherever torchvision is installed.
    VIDEO_PROCESSOR_MAPPING.register(
        UnivalConfig, {"pil": UnivalVideoProcessor, "torchvision": UnivalVideoProcessor}, exist_ok=True
    )
    AutoFeatureExtractor.register(UnivalConfig, UnivalFeatureExtractor, exist_ok=True)
    AutoProcessor.register(UnivalConfig, UnivalProcessor, exist_ok=True)
    # A saved processor carries its code (the processing files next to the weights, `auto_map` in its configs), so
    # that `AutoProcessor.from_pretrained(..., trust_remote_code=True)` works where this package is not installed.
    UnivalProcessor.register_for_auto_class("AutoProcessor")
    UnivalTokenizer.register_for_auto_class("AutoTokenizer")
    UnivalImageProcessor.register_for_auto_class("AutoImageProcessor")
    UnivalVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    UnivalFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")


register_auto_classes()

__all__ = [
    "TASKS",
    "Modality",
    "TaskSpec",
    "TokenText",
    "UnivalFeatureExtractor",
    "UnivalImageProcessor",
    "UnivalProcessor",
    "UnivalTokenizer",
    "UnivalVideoProcessor",
    "bin_token",
    "bins_to_box",
    "box_to_bins",
    "build_prompt",
    "build_target",
    "clean_caption_target",
    "extract_bins",
    "generation_config",
    "postprocess_caption",
    "postprocess_vqa_answer",
    "pre_caption",
    "pre_question",
    "quantize_box",
    "register_auto_classes",
    "resolve_task",
    "sample_frame_indices",
    "token_string",
]
