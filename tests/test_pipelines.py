"""`transformers.pipeline` on saved UnIVAL checkpoints: with the package imported, and as remote code without it."""

import functools
import http.server
import json
import logging
import re
import subprocess
import textwrap
import threading

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, pipeline
from transformers.pipelines import PIPELINE_REGISTRY, _resolve_deprecated_task
from transformers.pipelines.image_text_to_text import ImageTextToTextPipeline

from checkpoint_support import (
    BLOCK_PACKAGES,
    CHECKPOINT_GENERATION,
    IMAGE_SIZE,
    PYTHON,
    save_tiny_checkpoint,
    single_torch_thread,
    subprocess_env,
    write_media,
)
from hub_upload.pipelines import UnivalImageTextToTextPipeline, UnivalPipeline
from modeling_unival import UnivalForConditionalGeneration
from processing import UnivalProcessor


NEW_TOKENS = CHECKPOINT_GENERATION["max_new_tokens"]
BIN = re.compile(r"<bin_(\d+)>")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module", autouse=True)
def _emit_the_image_to_text_warning_once():
    """transformers 5.24 logs the "image-to-text" -> "image-text-to-text" rewrite with a stray `UserWarning` argument,
    so formatting that log record fails, and pytest turns logging errors into test failures. The message goes through
    `warning_once`, which caches it: emit it once here with logging errors tolerated."""
    previous, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        _resolve_deprecated_task("image-to-text")
    finally:
        logging.raiseExceptions = previous


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoint") / "unival-tiny"
    save_tiny_checkpoint(directory)
    return str(directory)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def captioner(checkpoint):
    return pipeline("image-to-text", model=checkpoint)


@pytest.fixture(scope="module")
def unival(checkpoint):
    return pipeline("unival", model=checkpoint)


def assert_records(output, keys=("generated_text",)):
    assert isinstance(output, list) and output, output
    for record in output:
        assert isinstance(record, dict) and set(keys) <= set(record), record
        assert isinstance(record.get("generated_text", ""), str)


def assert_box_inside(box, width, height):
    assert isinstance(box, list) and len(box) == 4 and all(isinstance(v, float) for v in box), box
    x0, y0, x1, y1 = box
    assert 0 <= x0 <= width and 0 <= x1 <= width and 0 <= y0 <= height and 0 <= y1 <= height, box


# ---------------------------------------------------------------------------------------------------------------------
# With the package imported
# ---------------------------------------------------------------------------------------------------------------------
def test_task_names_pick_the_unival_pipeline(captioner, unival, checkpoint):
    assert type(captioner) is UnivalImageTextToTextPipeline and captioner.task == "image-text-to-text"
    assert type(unival) is UnivalPipeline
    assert isinstance(captioner.model, UnivalForConditionalGeneration)
    assert type(pipeline("image-text-to-text", model=checkpoint)) is UnivalImageTextToTextPipeline
    # the registry entry keeps the stock model classes and default model
    entry = PIPELINE_REGISTRY.supported_tasks["image-text-to-text"]
    assert entry["pt"] == (AutoModelForImageTextToText,) and "default" in entry


def test_caption_of_a_path_a_pil_image_and_a_list(captioner, media):
    for image in (media["image"], Image.open(media["image"])):
        output = captioner(image)
        assert_records(output)
        assert len(output) == 1 and set(output[0]) == {"generated_text"}
    batch = captioner([media["image"], Image.open(media["image"])])
    assert isinstance(batch, list) and len(batch) == 2
    for output in batch:
        assert_records(output)
    assert captioner(images=media["image"]) == captioner(media["image"])


def test_generation_settings_come_from_the_checkpoint_and_can_be_overridden(captioner, checkpoint, media):
    def new_tokens(output):
        (record,) = output
        return record["generated_token_ids"].shape[-1] - 1  # minus the decoder start token

    assert new_tokens(captioner(media["image"], return_tensors=True)) == NEW_TOKENS
    assert NEW_TOKENS <= new_tokens(captioner(media["image"], max_new_tokens=5, return_tensors=True)) <= 5
    override = {"max_new_tokens": 6, "min_new_tokens": 6}
    assert new_tokens(captioner(media["image"], generate_kwargs=override, return_tensors=True)) == 6
    assert new_tokens(captioner(media["image"], return_tensors=True)) == NEW_TOKENS  # per call only
    assert len(captioner(media["image"], num_beams=3, num_return_sequences=2)) == 2
    with pytest.raises(ValueError, match="twice"):
        captioner(media["image"], max_new_tokens=4, generate_kwargs={"max_new_tokens": 4})
    # settings given to `pipeline(...)` apply to every call
    short = pipeline("image-to-text", model=checkpoint, max_new_tokens=2, min_new_tokens=2)
    assert new_tokens(short(media["image"], return_tensors=True)) == 2


def test_visual_question_answering(captioner, media):
    output = captioner(media["image"], text="what color is the circle?")
    assert_records(output, keys=("generated_text", "input_text"))
    assert output[0]["input_text"] == "what color is the circle?"
    (full,) = captioner(media["image"], text="what color is the circle?", return_full_text=True)
    assert full["generated_text"].startswith("what color is the circle?")
    # two images, one question each
    batch = captioner([media["image"], media["image"]], text=["what color is the circle?", "is there a square?"])
    assert [out[0]["input_text"] for out in batch] == ["what color is the circle?", "is there a square?"]


def test_visual_grounding_returns_a_box_in_the_original_image(captioner, media, tmp_path):
    width, height = IMAGE_SIZE
    (record,) = captioner(media["image"], text="the red circle", task="visual_grounding", max_new_tokens=9)
    assert set(record) == {"input_text", "generated_text", "box"}
    assert len(BIN.findall(record["generated_text"])) == 4  # exactly four location tokens, whatever max_new_tokens
    assert_box_inside(record["box"], width, height)
    # pixels of each original image: a large one gives a box in its own coordinates
    large = tmp_path / "large.png"
    Image.open(media["image"]).resize((600, 450)).save(large)
    small, big = captioner([media["image"], str(large)], text="the blue square", task="grounding")
    assert_box_inside(small[0]["box"], width, height)
    assert_box_inside(big[0]["box"], 600, 450)
    with pytest.raises(ValueError, match="expects an image"):
        captioner(media["video"], text="the square", task="visual_grounding")


def test_video_and_audio_captioning_from_files(unival, captioner, media):
    for output in (unival(media["video"]), unival(videos=media["video"]), unival(audio=media["audio"]),
                   unival(media["audio"]), captioner(media["video"])):
        assert_records(output)
    batch = unival([media["image"], media["video"], media["audio"]])
    assert len(batch) == 3 and all(len(out) == 1 for out in batch)
    (answer,) = unival(media["video"], text="what is moving?")  # video question answering
    assert answer["input_text"] == "what is moving?"
    (record,) = unival({"audio": media["audio"]}, max_new_tokens=5, return_tensors=True)
    assert NEW_TOKENS + 1 <= record["generated_token_ids"].shape[-1] <= 6


def test_tasks_prompts_and_errors(unival, media):
    (match,) = unival(media["image"], text="a red circle", task="image_text_matching")
    assert match["input_text"] == "a red circle"
    assert_records(unival(media["image"], prompt=" what does the image describe?"))
    assert_records(unival(text=" what is the capital of france?"))
    with pytest.raises(ValueError, match="unknown task"):
        unival(media["image"], task="segmentation")
    with pytest.raises(ValueError, match="either `task` or `prompt`"):
        unival(media["image"], task="caption", prompt=" hi")
    with pytest.raises(ValueError, match="batch_size"):
        unival([media["image"]] * 2, batch_size=2)
    with pytest.raises(ValueError, match="2 texts"):
        unival(media["image"], text=["a", "b"])
    with pytest.raises(ValueError, match="images=`"):
        unival(torch.zeros(2, 2))


def test_the_processor_layouts_decide_the_pipeline_layout(checkpoint, media, tmp_path):
    """A model trained with the matching tasks in the prev_output layout (a processor's `prompt_types`) is served with
    it: the caption to check is forced as the decoder prefix and stripped from the answer."""
    plain = pipeline("unival", model=checkpoint)
    plain.save_pretrained(tmp_path)
    UnivalProcessor.from_pretrained(tmp_path, prompt_types={"itm": "prev_output"}).save_pretrained(tmp_path)
    prev = pipeline("unival", model=str(tmp_path))
    assert prev.processor.prompt_types == {"image_text_matching": "prev_output"}
    sample = {"modality": "image", "media": media["image"], "text": "a red circle"}
    before = plain.preprocess(sample, task="image_text_matching")
    after = prev.preprocess(sample, task="image_text_matching")
    assert not before["meta"]["prev_output"] and before["meta"]["prompt_length"] == 1
    assert after["meta"]["prev_output"]
    prefix = after["inputs"]["decoder_input_ids"][0].tolist()
    assert prefix == after["inputs"]["input_ids"][0, :-1].tolist()  # `<s>` + the prompt, without `</s>`
    assert after["meta"]["prompt_length"] == len(prefix)
    (match,) = prev(media["image"], text="a red circle", task="image_text_matching")
    assert match["input_text"] == "a red circle" and "describe" not in match["generated_text"]


def test_image_urls_are_fetched(captioner, media):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media["image"]).rsplit("/", 1)[0])
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/shapes.png"
        assert captioner(url, return_tensors=True)[0]["generated_token_ids"].tolist() == (
            captioner(media["image"], return_tensors=True)[0]["generated_token_ids"].tolist()
        )
    finally:
        server.shutdown()
        server.server_close()


def test_other_models_keep_the_stock_image_text_to_text_pipeline():
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(
        vision_config={"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": 128, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "encoder_hidden_size": 8, "sep_token_id": 2, "bos_token_id": 3},
        projection_dim=8,
    )
    other = pipeline("image-text-to-text", model=BlipForConditionalGeneration(config), processor=object())
    assert type(other) is ImageTextToTextPipeline


def test_saved_pipeline_reloads_without_custom_pipelines(captioner, tmp_path, media):
    captioner.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "custom_pipelines" not in config
    reloaded = pipeline("image-to-text", model=str(tmp_path / "saved"))
    assert reloaded(media["image"], return_tensors=True)[0]["generated_token_ids"].tolist() == (
        captioner(media["image"], return_tensors=True)[0]["generated_token_ids"].tolist()
    )


# ---------------------------------------------------------------------------------------------------------------------
# Remote code, without the package
# ---------------------------------------------------------------------------------------------------------------------
REMOTE_SCRIPT = """
import json
from PIL import Image
from transformers import pipeline

checkpoint, media = {checkpoint!r}, {media!r}
report = {{}}
captioner = pipeline("image-to-text", model=checkpoint, trust_remote_code=True)
report["classes"] = [type(obj).__module__ for obj in (captioner, captioner.model, captioner.processor)]
report["caption_path"] = captioner(media["image"])
report["caption_pil"] = captioner(Image.open(media["image"]))
report["caption_list"] = captioner([media["image"], media["image"]])
report["lengths"] = [
    captioner(media["image"], return_tensors=True)[0]["generated_token_ids"].shape[-1],
    captioner(media["image"], generate_kwargs={{"max_new_tokens": 6, "min_new_tokens": 6}},
              return_tensors=True)[0]["generated_token_ids"].shape[-1],
]
itt = pipeline("image-text-to-text", model=checkpoint, trust_remote_code=True)
report["vqa"] = itt(media["image"], text="what color is the circle?")
report["grounding"] = itt(media["image"], text="the red circle", task="visual_grounding")
unival = pipeline("unival", model=checkpoint, trust_remote_code=True)
report["video"] = unival(media["video"])
report["audio"] = unival(audio=media["audio"])
print("REPORT " + json.dumps(report))
"""


@pytest.mark.slow
def test_pipelines_through_remote_code_without_the_package(checkpoint, media, tmp_path):
    files = {path.name for path in __import__("pathlib").Path(checkpoint).iterdir()}
    # Remote-code prerequisites (see hub_upload/pipelines.py): the pipeline and processing code next to the weights.
    needed = {"pipeline_unival.py", "processing_unival.py", "prompts.py", "tokenization_unival.py"}
    assert needed <= files, (
        f"the saved checkpoint lacks {sorted(needed - files)}: the processing classes must be registered for their "
        "auto classes (`register_for_auto_class`) and `configuration_unival.py` must import `pipeline_unival`"
    )
    script = BLOCK_PACKAGES + textwrap.dedent(REMOTE_SCRIPT.format(checkpoint=checkpoint, media=media))
    result = subprocess.run([PYTHON, "-c", script], cwd=tmp_path, env=subprocess_env(tmp_path, HF_HUB_OFFLINE="1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.split("REPORT ", 1)[1])

    assert all(module.startswith("transformers_modules.") for module in report["classes"]), report["classes"]
    for key in ("caption_path", "caption_pil", "vqa", "video", "audio"):
        assert len(report[key]) == 1 and isinstance(report[key][0]["generated_text"], str), report[key]
    assert len(report["caption_list"]) == 2 and all(len(out) == 1 for out in report["caption_list"])
    assert report["lengths"] == [NEW_TOKENS + 1, 7]
    assert report["vqa"][0]["input_text"] == "what color is the circle?"
    (grounding,) = report["grounding"]
    assert len(BIN.findall(grounding["generated_text"])) == 4
    assert_box_inside([float(v) for v in grounding["box"]], *IMAGE_SIZE)
