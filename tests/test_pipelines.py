"""`transformers.pipeline` on saved UnIVAL checkpoints: the stock image-text-to-text pipeline, the `"unival"` task,
batching, remote code without the package, and no side effect of importing the package on other models."""

import functools
import http.server
import json
import re
import subprocess
import textwrap
import threading

import pytest
import torch
from PIL import Image
from transformers import pipeline
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
from conftest import REPO_ROOT
from modeling_unival import UnivalForConditionalGeneration
from modeling_unival.pipeline_unival import UnivalPipeline
from processing import UnivalProcessor


NEW_TOKENS = CHECKPOINT_GENERATION["max_new_tokens"]
BIN = re.compile(r"<bin_(\d+)>")
CAPTION_PROMPT = " what does the image describe?"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoint") / "unival-tiny"
    save_tiny_checkpoint(directory)
    return str(directory)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def unival(checkpoint):
    return pipeline("unival", model=checkpoint)


@pytest.fixture(scope="module")
def stock(checkpoint):
    return pipeline("image-text-to-text", model=checkpoint)


def assert_records(output, keys=("generated_text",)):
    assert isinstance(output, list) and output, output
    for record in output:
        assert isinstance(record, dict) and set(keys) <= set(record), record
        assert isinstance(record.get("generated_text", ""), str)


def assert_box_inside(box, width, height):
    assert isinstance(box, list) and len(box) == 4 and all(isinstance(v, float) for v in box), box
    x0, y0, x1, y1 = box
    assert 0 <= x0 <= width and 0 <= x1 <= width and 0 <= y0 <= height and 0 <= y1 <= height, box


def token_ids(output) -> list[list[int]]:
    return [record["generated_token_ids"].tolist() for record in output]


# ---------------------------------------------------------------------------------------------------------------------
# The stock image-text-to-text pipeline
# ---------------------------------------------------------------------------------------------------------------------
def test_image_text_to_text_is_the_stock_pipeline(stock, media):
    assert type(stock) is ImageTextToTextPipeline and isinstance(stock.model, UnivalForConditionalGeneration)
    (record,) = stock(media["image"], text=CAPTION_PROMPT, return_full_text=False)
    assert set(record) == {"input_text", "generated_text"} and record["input_text"] == CAPTION_PROMPT
    (full,) = stock(media["image"], text=CAPTION_PROMPT)
    assert full["generated_text"] == CAPTION_PROMPT + record["generated_text"]
    # a task of the processor, through the stock call: the VQA prompt of the question
    (answer,) = stock(Image.open(media["image"]), text="What color is the circle", task="vqa", return_full_text=False)
    assert isinstance(answer["generated_text"], str)
    (tensors,) = stock(media["image"], text=CAPTION_PROMPT, return_tensors=True)
    assert tensors["generated_token_ids"].shape[-1] == NEW_TOKENS + 1  # the checkpoint's generation config
    # no prompt: the processor captions (the stock pipeline needs a `text`, "" is the caption of the image)
    (uncond,) = stock(media["image"], text="", return_tensors=True)
    assert token_ids([uncond]) == token_ids([tensors])
    (uncond_text,) = stock(media["image"], text="")
    assert uncond_text == {"input_text": "", "generated_text": record["generated_text"]}


def test_image_to_text_logs_no_traceback(checkpoint, media, tmp_path):
    """transformers rewrites "image-to-text" to "image-text-to-text" with a log record that fails to format (a
    `--- Logging error ---` traceback): importing the package repairs that record, in a fresh process."""
    script = textwrap.dedent(f"""
        import modeling_unival, processing
        from transformers import pipeline
        pipe = pipeline("image-to-text", model={checkpoint!r})
        print("TYPE", type(pipe).__name__)
        print("OUT", pipe({media["image"]!r}, text={CAPTION_PROMPT!r}, return_full_text=False)[0]["generated_text"])
        print("OUT", pipe({media["image"]!r}, text="")[0]["generated_text"])
    """)
    result = subprocess.run([PYTHON, "-c", script], cwd=REPO_ROOT, env=subprocess_env(tmp_path, HF_HUB_OFFLINE="1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TYPE ImageTextToTextPipeline" in result.stdout
    prompted, unconditional = [line for line in result.stdout.splitlines() if line.startswith("OUT")]
    assert prompted == unconditional  # text="" captions with the caption prompt
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, result.stderr


def test_stock_pipeline_batches_give_the_unbatched_outputs(stock, media, tmp_path):
    images = [media["image"]] + [
        Image.effect_noise((60 + 7 * k, 50 + 5 * k), 40 + 20 * k).convert("RGB") for k in range(8)
    ]
    alone = [token_ids(stock(image, text=CAPTION_PROMPT, return_tensors=True)) for image in images]
    # a stream of samples (a list of dicts would read as a chat), collated by the pipeline's DataLoader 8 at a time
    samples = ({"images": image, "text": CAPTION_PROMPT} for image in images)
    assert [token_ids(out) for out in stock(samples, return_tensors=True, batch_size=8)] == alone
    # parallel lists: one processor call for all of them
    together = stock(images, text=[CAPTION_PROMPT] * len(images), return_tensors=True)
    assert [token_ids([record]) for record in together] == alone
    assert len({json.dumps(ids) for ids in alone}) > 1  # the inputs give different outputs: the test can fail


# ---------------------------------------------------------------------------------------------------------------------
# The "unival" task
# ---------------------------------------------------------------------------------------------------------------------
def test_unival_task_captions_every_modality(unival, media):
    assert type(unival) is UnivalPipeline
    for image in (media["image"], Image.open(media["image"])):
        output = unival(image)
        assert_records(output)
        assert len(output) == 1 and set(output[0]) == {"generated_text"}
    for output in (unival(media["video"]), unival(videos=media["video"]), unival(audio=media["audio"]),
                   unival(media["audio"]), unival({"audio": media["audio"]})):
        assert_records(output)
    batch = unival([media["image"], media["video"], media["audio"]])
    assert len(batch) == 3 and all(len(out) == 1 for out in batch)
    assert unival(images=media["image"]) == unival(media["image"])


def test_generation_settings_come_from_the_checkpoint_and_can_be_overridden(unival, checkpoint, media):
    def new_tokens(output):
        (record,) = output
        return record["generated_token_ids"].shape[-1] - 1  # minus the decoder start token

    assert new_tokens(unival(media["image"], return_tensors=True)) == NEW_TOKENS
    assert NEW_TOKENS <= new_tokens(unival(media["image"], max_new_tokens=5, return_tensors=True)) <= 5
    override = {"max_new_tokens": 6, "min_new_tokens": 6}
    assert new_tokens(unival(media["image"], generate_kwargs=override, return_tensors=True)) == 6
    assert new_tokens(unival(media["image"], return_tensors=True)) == NEW_TOKENS  # per call only
    assert len(unival(media["image"], num_beams=3, num_return_sequences=2)) == 2
    with pytest.raises(ValueError, match="twice"):
        unival(media["image"], max_new_tokens=4, generate_kwargs={"max_new_tokens": 4})
    short = pipeline("unival", model=checkpoint, max_new_tokens=2, min_new_tokens=2)
    assert new_tokens(short(media["image"], return_tensors=True)) == 2


def test_question_answering_and_full_text(unival, media):
    output = unival(media["image"], text="what color is the circle?")
    assert_records(output, keys=("generated_text", "input_text"))
    assert output[0]["input_text"] == "what color is the circle?"
    (full,) = unival(media["image"], text="what color is the circle?", return_full_text=True)
    assert full["generated_text"].startswith("what color is the circle?")
    batch = unival([media["image"], media["image"]], text=["what color is the circle?", "is there a square?"])
    assert [out[0]["input_text"] for out in batch] == ["what color is the circle?", "is there a square?"]
    (answer,) = unival(media["video"], text="what is moving?")  # video question answering
    assert answer["input_text"] == "what is moving?"


def test_visual_grounding_returns_a_box_in_the_original_image(unival, media, tmp_path):
    width, height = IMAGE_SIZE
    (record,) = unival(media["image"], text="the red circle", task="visual_grounding", max_new_tokens=9)
    assert set(record) == {"input_text", "generated_text", "box"}
    assert len(BIN.findall(record["generated_text"])) == 4  # exactly four location tokens, whatever max_new_tokens
    assert_box_inside(record["box"], width, height)
    large = tmp_path / "large.png"
    Image.open(media["image"]).resize((600, 450)).save(large)
    small, big = unival([media["image"], str(large)], text="the blue square", task="grounding", batch_size=2)
    assert_box_inside(small[0]["box"], width, height)
    assert_box_inside(big[0]["box"], 600, 450)
    with pytest.raises(ValueError, match="expects an image"):
        unival(media["video"], text="the square", task="visual_grounding")


def test_tasks_prompts_and_errors(unival, media):
    (match,) = unival(media["image"], text="a red circle", task="image_text_matching")
    assert match["input_text"] == "a red circle"
    assert_records(unival(media["image"], prompt=CAPTION_PROMPT))
    assert_records(unival(text=" what is the capital of france?"))
    with pytest.raises(ValueError, match="unknown task"):
        unival(media["image"], task="segmentation")
    with pytest.raises(ValueError, match="either `task` or `prompt`"):
        unival(media["image"], task="caption", prompt=" hi")
    with pytest.raises(ValueError, match="batch_size"):
        unival([media["image"]] * 2, batch_size=0)
    with pytest.raises(ValueError, match="2 texts"):
        unival(media["image"], text=["a", "b"])
    with pytest.raises(ValueError, match="images=`"):
        unival(torch.zeros(2, 2))


def test_unival_batches_give_the_unbatched_outputs(unival, media, tmp_path):
    """Mixed tasks, modalities and question lengths, in any order: `batch_size=8` returns, sample by sample, what
    `batch_size=1` returns (token ids and scores of grounding through the boxes)."""
    images = [Image.effect_noise((64 + 9 * k, 48 + 4 * k), 30 + 25 * k).convert("RGB") for k in range(5)]
    inputs = [media["image"], media["video"], *images, media["audio"], images[0], media["video"]]
    texts = [None, None, "what color?", "is there a red circle here?", None, "how many shapes?", "what color?", None,
             None, "what is moving in the clip?"]
    alone = [unival(item, text=text, return_tensors=True) for item, text in zip(inputs, texts)]
    batched = unival(inputs, text=texts, return_tensors=True, batch_size=8)
    assert [token_ids(out) for out in batched] == [token_ids(out) for out in alone]
    assert len({json.dumps(token_ids(out)) for out in alone}) > 2
    boxes_alone = [unival(image, text="the shape", task="visual_grounding")[0]["box"] for image in images]
    boxes = [out[0]["box"] for out in unival(images, text="the shape", task="visual_grounding", batch_size=8)]
    assert boxes == boxes_alone


def test_the_processor_layouts_decide_the_pipeline_layout(checkpoint, media, tmp_path):
    """A model trained with the matching tasks in the prev_output layout (a processor's `prompt_types`) is served with
    it: the caption to check is forced as the decoder prefix and stripped from the answer."""
    plain = pipeline("unival", model=checkpoint)
    plain.save_pretrained(tmp_path)
    UnivalProcessor.from_pretrained(tmp_path, prompt_types={"itm": "prev_output"}).save_pretrained(tmp_path)
    prev = pipeline("unival", model=str(tmp_path))
    assert prev.processor.prompt_types == {"image_text_matching": "prev_output"}
    sample = {"modality": "image", "media": media["image"], "text": "a red circle"}
    (batch_plain,) = plain._batches([sample], 1, "image_text_matching", None)
    (batch_prev,) = prev._batches([sample], 1, "image_text_matching", None)
    before, after = plain.preprocess(batch_plain), prev.preprocess(batch_prev)
    assert before["meta"]["prompt_length"] == 1 and "decoder_input_ids" not in before["inputs"]
    prefix = after["inputs"]["decoder_input_ids"][0].tolist()
    assert prefix == after["inputs"]["input_ids"][0, :-1].tolist()  # `<s>` + the prompt, without `</s>`
    assert after["meta"]["prompt_length"] == len(prefix)
    (match,) = prev(media["image"], text="a red circle", task="image_text_matching")
    assert match["input_text"] == "a red circle" and "describe" not in match["generated_text"]


def test_image_urls_are_fetched(unival, media):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media["image"]).rsplit("/", 1)[0])
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/shapes.png"
        assert token_ids(unival(url, return_tensors=True)) == token_ids(unival(media["image"], return_tensors=True))
    finally:
        server.shutdown()
        server.server_close()


def test_saved_pipeline_reloads_without_custom_pipelines(unival, tmp_path, media):
    unival.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "custom_pipelines" not in config
    reloaded = pipeline("unival", model=str(tmp_path / "saved"))
    assert token_ids(reloaded(media["image"], return_tensors=True)) == token_ids(unival(media["image"],
                                                                                        return_tensors=True))


# ---------------------------------------------------------------------------------------------------------------------
# No side effects on other models
# ---------------------------------------------------------------------------------------------------------------------
OTHER_MODELS_SCRIPT = """
import json, sys
import torch
IMPORT = sys.argv[1] == "import"
if IMPORT:
    import modeling_unival, processing  # noqa: F401
from transformers import (BlipConfig, BlipForConditionalGeneration, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast,
                          pipeline)
from transformers.models.auto import modeling_auto, configuration_auto
from transformers.pipelines import PIPELINE_REGISTRY

report = {{}}
report["registry"] = {{task: [getattr(entry["impl"], "__qualname__", str(entry["impl"])),
                             [c.__name__ for c in entry.get("pt", ())]]
                      for task, entry in PIPELINE_REGISTRY.supported_tasks.items() if task != "unival"}}
report["image_text_to_text_models"] = sorted(
    key for key in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES if key != "unival")
report["configs"] = sorted(key for key in configuration_auto.CONFIG_MAPPING_NAMES if key != "unival")
torch.manual_seed(0)
blip = BlipForConditionalGeneration(BlipConfig(
    vision_config={{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "image_size": 32, "patch_size": 16}},
    text_config={{"vocab_size": 128, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "encoder_hidden_size": 8, "sep_token_id": 2, "bos_token_id": 3}},
    projection_dim=8))
report["blip_pipeline"] = type(pipeline("image-text-to-text", model=blip, processor=object())).__qualname__
merges = [tuple(line.split()) for line in open({merges!r}).read().splitlines()[1:] if line.strip()]
tokenizer = GPT2TokenizerFast(vocab=json.load(open({vocab!r})), merges=merges)
gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=max(tokenizer.get_vocab().values()) + 1, n_embd=16, n_layer=1, n_head=2, n_positions=64))
generator = pipeline("text-generation", model=gpt2, tokenizer=tokenizer)
report["gpt2_pipeline"] = type(generator).__qualname__
report["gpt2_output"] = generator("a red circle and", max_new_tokens=6, do_sample=False)[0]["generated_text"]
print("REPORT " + json.dumps(report, sort_keys=True))
"""


@pytest.mark.slow
def test_importing_the_package_leaves_other_models_pipelines_as_they_are(tmp_path):
    bpe = REPO_ROOT / "processing" / "data" / "bpe"
    script = OTHER_MODELS_SCRIPT.format(vocab=str(bpe / "encoder.json"), merges=str(bpe / "vocab.bpe"))
    reports = {}
    for mode in ("plain", "import"):
        result = subprocess.run([PYTHON, "-c", script, mode], cwd=REPO_ROOT,
                                env=subprocess_env(tmp_path, HF_HUB_OFFLINE="1"), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        reports[mode] = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert reports["import"] == reports["plain"]
    assert reports["plain"]["blip_pipeline"] == "ImageTextToTextPipeline"
    assert reports["plain"]["registry"]["image-text-to-text"][0].endswith("ImageTextToTextPipeline")


# ---------------------------------------------------------------------------------------------------------------------
# Remote code, without the package
# ---------------------------------------------------------------------------------------------------------------------
REMOTE_SCRIPT = """
import json
from PIL import Image
from transformers import pipeline

checkpoint, media = {checkpoint!r}, {media!r}
report = {{}}
pipe = pipeline("image-text-to-text", model=checkpoint, trust_remote_code=True)
report["classes"] = [type(obj).__module__ for obj in (pipe.model, pipe.processor)]
report["caption"] = pipe(media["image"], text={prompt!r}, return_full_text=False)
report["caption_list"] = pipe([media["image"], Image.open(media["image"])], text=[{prompt!r}] * 2, batch_size=2)
report["vqa"] = pipe(media["image"], text="what color is the circle", task="vqa", return_full_text=False)
report["length"] = pipe(media["image"], text={prompt!r}, return_tensors=True)[0]["generated_token_ids"].shape[-1]
print("REPORT " + json.dumps(report))
"""


@pytest.mark.slow
def test_stock_pipeline_through_remote_code_without_the_package(checkpoint, media, tmp_path):
    files = {path.name for path in __import__("pathlib").Path(checkpoint).iterdir()}
    needed = {"processing_unival.py", "prompts.py", "tasks.py", "ids.py", "tokenization_unival.py"}
    assert needed <= files, f"the saved checkpoint lacks {sorted(needed - files)}"
    script = BLOCK_PACKAGES + textwrap.dedent(
        REMOTE_SCRIPT.format(checkpoint=checkpoint, media=media, prompt=CAPTION_PROMPT)
    )
    result = subprocess.run([PYTHON, "-c", script], cwd=tmp_path, env=subprocess_env(tmp_path, HF_HUB_OFFLINE="1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert all(module.startswith("transformers_modules.") for module in report["classes"]), report["classes"]
    for key in ("caption", "vqa"):
        assert len(report[key]) == 1 and isinstance(report[key][0]["generated_text"], str), report[key]
    assert len(report["caption_list"]) == 2 and all("generated_text" in out for out in report["caption_list"])
    assert report["length"] == NEW_TOKENS + 1


# ---------------------------------------------------------------------------------------------------------------------
# Hostile input through the pipelines (issue 22): each error names the argument or the file
# ---------------------------------------------------------------------------------------------------------------------
def test_a_path_given_as_the_prompt_is_refused_not_captioned(stock, unival, media):
    """`pipe(path)` without `text=`: the stock pipeline hands the path over as the prompt; a caption of its characters
    would be a silent wrong result."""
    for call in (lambda: stock(media["image"]), lambda: unival(text=media["image"])):
        with pytest.raises(ValueError, match=r"is the image .*pass it as `images=`.*text=\"\""):
            call()
    with pytest.raises(ValueError, match="is the video .*`videos=`"):
        unival(text=media["video"])
    with pytest.raises(ValueError, match="is the audio .*`audio=`"):
        unival(text=media["audio"])


def test_corrupt_empty_and_missing_media_are_named(unival, media, tmp_path):
    bad_png, empty_wav, bad_mp4 = tmp_path / "bad.png", tmp_path / "empty.wav", tmp_path / "bad.mp4"
    bad_png.write_bytes(b"not a png at all")
    empty_wav.write_bytes(b"")
    bad_mp4.write_bytes(b"\x00" * 100)
    cases = [
        (lambda: unival(str(bad_png)), ValueError, r"`images`: cannot read .*bad\.png"),
        (lambda: unival(str(tmp_path / "missing.png")), FileNotFoundError, r"`images`: .*missing\.png"),
        (lambda: unival(audio=str(empty_wav), task="audio_caption"), ValueError, r"`audio`: .*empty\.wav.* empty"),
        (lambda: unival(videos=str(bad_mp4), task="video_caption"), ValueError, r"`videos`: cannot read .*bad\.mp4"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_hostile_generation_settings_and_prompts(unival, checkpoint, media):
    with pytest.raises(ValueError, match="`num_beams` must be a positive integer"):
        unival(media["image"], generate_kwargs={"num_beams": 0})
    with pytest.raises(ValueError, match="max_new_tokens"):
        unival(media["image"], generate_kwargs={"max_new_tokens": 0})
    # a 5,000-word prompt is truncated to what the checkpoint embeds (the tiny model: 128 positions), with a warning
    limit = UnivalForConditionalGeneration.from_pretrained(checkpoint).config.max_source_positions
    assert limit < 1024
    (record,) = unival(media["image"], prompt=" word" * 5000, return_tensors=True)
    assert record["generated_token_ids"].shape[-1] >= 1
    # a box outside the image is refused, or clipped to the image when asked
    outside = [[-50, -50, 10 * IMAGE_SIZE[0], 900]]
    with pytest.raises(ValueError, match=r"sample 0: box .* lies outside the image .*clip=True"):
        unival(media["image"], task="grounded_caption", box=outside)
    (inside,) = unival(media["image"], task="grounded_caption", box=[[0, 0, IMAGE_SIZE[0], IMAGE_SIZE[1]]],
                       return_tensors=True)
    (clipped,) = unival(media["image"], task="grounded_caption", box=outside, clip=True, return_tensors=True)
    assert token_ids([inside]) == token_ids([clipped])
