"""Model cards for converted UnIVAL checkpoints, built with `huggingface_hub.ModelCard`."""

from __future__ import annotations

from dataclasses import dataclass, field

from huggingface_hub import ModelCard, ModelCardData

from processing.tasks import resolve_task


PAPER_TITLE = "Unified Model for Image, Video, Audio and Language Tasks"
PAPER_URL = "https://arxiv.org/abs/2307.16184"
ORIGINAL_CODE_URL = "https://github.com/mshukor/UnIVAL"
CITATION = """@article{shukor2023unival,
  title   = {Unified Model for Image, Video, Audio and Language Tasks},
  author  = {Shukor, Mustafa and Dancette, Corentin and Rame, Alexandre and Cord, Matthieu},
  journal = {Transactions on Machine Learning Research},
  year    = {2023}
}"""

# Results reported by the original authors for their released finetuned checkpoints (their README). They are the
# ORIGINAL model's numbers, not measured on this port.
REPORTED_RESULTS = [
    ("visual grounding", "RefCOCO val / testA / testB", "Acc@0.5", "89.1 / 91.5 / 85.2"),
    ("visual grounding", "RefCOCO+ val / testA / testB", "Acc@0.5", "82.2 / 86.9 / 75.3"),
    ("visual grounding", "RefCOCOg val-u / test-u", "Acc@0.5", "84.7 / 85.2"),
    ("image captioning", "COCO Karpathy test", "CIDEr", "137.0"),
    ("VQA", "VQAv2 test-dev / test-std", "Acc", "77.0 / 77.1"),
    ("visual entailment", "SNLI-VE val / test", "Acc", "78.2 / 78.6"),
    ("video QA", "MSRVTT-QA test", "Acc", "43.5"),
    ("video captioning", "MSR-VTT test", "CIDEr", "60.5"),
    ("audio captioning", "AudioCaps test", "CIDEr", "71.3"),
]

# Original release name -> the `--task` its conversion should use (reference: `checkpoints.md` of the original).
RELEASED_CHECKPOINTS = {
    "unival_s1": "caption",
    "unival_s2_hs": "caption",
    "unival_caption_stage_1": "caption",
    "unival_refcoco": "refcoco",
    "unival_refcocoplus": "refcoco",
    "unival_refcocog": "refcoco",
    "unival_vqa": "vqa",
    "unival_snli_ve": "snli_ve",
    "unival_video_caption_stage_1": "video_caption",
    "unival_video_caption_activitynet_stage_1": "video_caption",
    "unival_video_vqa": "video_qa",
    "unival_video_vqa_msvd": "video_qa",
    "unival_audio_caption": "audio_caption",
    "unival_audio_caption_clotho": "audio_caption",
}

_USAGE = {
    "image": ('images="photo.jpg"', "image"),
    "video": ('videos="clip.mp4"', "video"),
    "audio": ('audio="sound.wav"', "audio"),
}


@dataclass
class ConversionRecord:
    """What the card says about where the weights came from."""

    source_file: str
    source_sha256: str
    task: str
    ema: bool
    modalities: list[str]
    num_parameters: int
    parity_note: str = ""
    buffer_checks: dict[str, bool] = field(default_factory=dict)


def _usage_snippet(repo_id: str, task: str, modality: str, prompt_type: str) -> str:
    media_argument, _ = _USAGE.get(modality, _USAGE["image"])
    call = f'processor(task="{task}", {media_argument}, return_tensors="pt")'
    decode = "processor.post_process_caption(generated)[0]"
    if prompt_type == "prev_output":  # the question is forced as the decoder prefix, the answer follows it
        call = f'processor(task="{task}", text="what is in the picture", {media_argument}, return_decoder_prompt=True, return_tensors="pt")'
        decode = 'processor.post_process_vqa(generated, prompt_lengths=inputs["decoder_input_ids"].shape[1])[0]'
    elif task == "visual_grounding":
        call = f'processor(task="{task}", text="the man in the red shirt", {media_argument}, return_image_sizes=True, return_tensors="pt")'
        decode = 'processor.post_process_grounding(generated, image_sizes)[0]["box"]'
    pop_sizes = 'image_sizes = inputs.pop("image_sizes")\n' if task == "visual_grounding" else ""
    return f"""```python
import modeling_unival, processing  # registers UnIVAL with the Auto classes (or pass trust_remote_code=True)
from transformers import AutoModelForSeq2SeqLM, AutoProcessor

model = AutoModelForSeq2SeqLM.from_pretrained("{repo_id}").eval()
processor = AutoProcessor.from_pretrained("{repo_id}")
inputs = {call}
{pop_sizes}generated = model.generate(**inputs)  # the task's settings come from generation_config.json
print({decode}){"  # box in pixels of the original image" if task == "visual_grounding" else ""}
```"""


def build_model_card(repo_id: str, record: ConversionRecord) -> ModelCard:
    """A complete card: description, modalities, the task and its prompt, the paper, the original's reported results
    (labelled as such), the conversion, license, limitations and a usage snippet."""
    spec = resolve_task(record.task)
    modality = spec.modality.name.lower() if spec.modality is not None and spec.modality.name != "TEXT" else "image"
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["unival", "multimodal", "image-to-text", "video", "audio", "visual-question-answering", "visual-grounding"],
    )
    generation = ", ".join(f"{k}={v}" for k, v in spec.generation.items()) or "transformers' defaults"
    layout = 'question forced as decoder prefix, "prev_output"' if spec.prompt_type == "prev_output" else "encoder prompt"
    results = "\n".join(f"| {t} | {d} | {m} | {v} |" for t, d, m, v in REPORTED_RESULTS)
    checks = "; ".join(f"`{k}` {'matches' if ok else 'DIFFERS FROM'} the recomputed buckets" for k, ok in record.buffer_checks.items())
    content = f"""---
{card_data.to_yaml()}
---

# UnIVAL ({spec.name}) for 🤗 Transformers

UnIVAL is a ~0.25B-parameter encoder-decoder that reads **text, images, video and audio** and writes text:
captions, answers, and `<bin_i>` location tokens for boxes ([{PAPER_TITLE}]({PAPER_URL}), Shukor et al., TMLR 2023).
It is OFA's unified transformer (BART-base sized, NormFormer extras) with one convolutional tower per modality:
a ResNet-101 for images, a 3D ResNeXt-101 for video and a PANN CNN for audio. Positions enter only as attention biases.

This checkpoint was converted from the original fairseq release ([code]({ORIGINAL_CODE_URL})) for the task
**{spec.name}**. Towers present: {", ".join(record.modalities)}. Parameters: {record.num_parameters / 1e6:.1f}M.

## Task and prompt

- Task: `{spec.name}` ({layout}).
- The processor builds the original prompts: `processor(task="{spec.name}", ...)`; see `processing.prompts` for every task's exact string.
- Generation settings (from the original evaluation scripts, stored in `generation_config.json`): {generation}.

## Usage

{_usage_snippet(repo_id, spec.name, modality, spec.prompt_type)}

## Results reported by the original authors

These are the numbers of the ORIGINAL UnIVAL models as published by their authors; they were not re-measured on
this conversion.

| task | dataset | metric | UnIVAL (original) |
| --- | --- | --- | --- |
{results}

## Conversion

- Source: `{record.source_file}` (sha256 `{record.source_sha256[:16]}…`), {"EMA weights" if record.ema else "model weights"}, float16 up-cast to float32.
- Read with a restricted unpickler (no code from the file is executed), keys mapped with `modeling_unival.conversion`.
- Dropped on purpose: the ImageNet/AudioSet classifier heads of the towers, the decoder's image-code generation tables, fairseq bookkeeping. {checks}
- Numerical parity of the port with the original implementation is checked by `python -m modeling_unival.parity` on reference fixtures. {record.parity_note}

## Limitations

- Text-to-image generation (`<code_i>` tokens) is not ported.
- The original randomly dropped patches at inference when an image gave more than `sample_patch_num` tokens; this port does so only in training.
- VQA answers are constrained to the training answer list in the original (an answer trie); pass
  `modeling_unival.constrained_decoding.AnswerTrie` as a logits processor to do the same.
- The audio-captioning checkpoints were trained with the *video* captioning prompt; the processor uses it by default.
- English only; the model inherits the biases of its training data (COCO, VQAv2, RefCOCO, MSR-VTT, AudioCaps, ...).

## License and citation

The original UnIVAL code builds on OFA and fairseq, both Apache-2.0; the card declares the same license. Check
the original repository for the terms of the released weights before redistributing them.

```bibtex
{CITATION}
```
"""
    return ModelCard(content)


__all__ = ["ConversionRecord", "REPORTED_RESULTS", "RELEASED_CHECKPOINTS", "build_model_card"]
