"""A local web demo of a UnIVAL checkpoint: any modality in, every task, grounding boxes drawn on the image.

    pip install ".[demo]"                        # gradio
    python -m hub_upload.demo --model DIR        # http://127.0.0.1:7860
    python -m hub_upload.demo                    # the embedded default's model, once `bash scripts/demo.sh` trained it

Upload one file or several (images, videos, audio: the extension tells them apart), pick a task, type the text the
task needs (question, referring expression, caption, hypothesis; for a grounded caption the region as `x0, y0, x1, y1`
in pixels), and run. The answers come back as a table, one row per file; the first image is shown with the predicted
box (visual grounding) or the given region (grounded caption) drawn on it. The generation settings of the task (the
original's, `processing.tasks.generation_config`) are shown and can be changed. Inference is the `"unival"` pipeline
of `modeling_unival`; the app listens on 127.0.0.1 only, unless `--host` says otherwise.

The library never imports this module: gradio is an optional extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from processing.ids import MODALITY_NAMES
from processing.media_io import media_kind
from processing.tasks import generation_config, resolve_task


#: Where `bash scripts/demo.sh` (examples/demo.py) writes the embedded default's final model.
EMBEDDED_DEFAULT_MODEL = Path("outputs/demo/video_audio/final")
BOX_COLOR = (255, 0, 0)


@dataclass(frozen=True)
class DemoTask:
    label: str
    task: str
    text_hint: str | None  # what the text box holds; None: no text

    @property
    def modality(self) -> str | None:
        """The modality the task takes, or None for the tasks that follow the file's (captioning)."""
        return MODALITY_NAMES.get(resolve_task(self.task).default_modality)


DEMO_TASKS = (
    DemoTask("caption (image, video or audio)", "caption", None),
    DemoTask("visual question answering", "vqa", "question"),
    DemoTask("visual grounding", "visual_grounding", "referring expression"),
    DemoTask("grounded caption", "grounded_caption", "region x0, y0, x1, y1 in pixels"),
    DemoTask("image-text matching", "image_text_matching", "caption"),
    DemoTask("visual entailment", "visual_entailment", "hypothesis"),
    DemoTask("video caption", "video_caption", None),
    DemoTask("video question answering", "video_qa", "question"),
    DemoTask("audio caption", "audio_caption", None),
)
_BY_LABEL = {task.label: task for task in DEMO_TASKS}


def file_modality(path: str) -> tuple[str, str]:
    """`(modality, processor argument)` of an uploaded file, by its extension (`media_io.media_kind`)."""
    found = media_kind(path)
    if found is None:
        suffix = Path(path).suffix.lower()
        raise ValueError(f"{Path(path).name}: not an image, video or audio file (by its extension {suffix or 'none'})")
    return found


def task_settings(label: str) -> tuple[int, int]:
    """(num_beams, max_new_tokens) of the task's original inference settings."""
    config = generation_config(_BY_LABEL[label].task)
    return int(config.num_beams), int(config.max_new_tokens)


def parse_region(text: str) -> list[float]:
    try:
        values = [float(value) for value in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"a grounded caption needs the region as 4 numbers x0, y0, x1, y1 in pixels, got {text!r}")
    return values


def draw_box(image, box, width: int = 3):
    """A copy of `image` (PIL) with `box` ([x0, y0, x1, y1], pixels) drawn as a rectangle."""
    from PIL import ImageDraw

    drawn = image.convert("RGB").copy()
    ImageDraw.Draw(drawn).rectangle([float(v) for v in box], outline=BOX_COLOR, width=width)
    return drawn


def predict(pipe, files, label: str, text: str, num_beams: int, max_new_tokens: int):
    """Runs the task on every file: `(rows, image)` with one `[file, answer, box]` row per file, and the first image
    with the predicted box (grounding) or the given region (grounded caption) drawn, else the first image as it is."""
    from PIL import Image

    if not files:
        raise ValueError("upload at least one image, video or audio file")
    task = _BY_LABEL[label]
    text = (text or "").strip()
    if task.text_hint and not text:
        raise ValueError(f"{task.label} needs a {task.text_hint}")
    paths = [getattr(file, "name", file) for file in (files if isinstance(files, (list, tuple)) else [files])]
    settings = {"num_beams": int(num_beams), "max_new_tokens": int(max_new_tokens)}
    rows, shown = [], None
    for path in paths:
        modality, argument = file_modality(path)
        if task.modality is not None and modality != task.modality:
            raise ValueError(f"{task.label} takes {task.modality} files, and {Path(path).name} is {modality}")
        arguments = {argument: path, "task": task.task}
        region = None
        if task.task == "grounded_caption":
            region = parse_region(text)
            arguments["box"] = [region]
        elif text:
            arguments["text"] = text
        (record,) = pipe(**arguments, generate_kwargs=settings)
        box = record.get("box") or region
        coordinates = "" if box is None else ", ".join(f"{v:.0f}" for v in box)
        # a grounding answer is its box (the text is the four location tokens)
        rows.append([Path(path).name, f"box {coordinates}" if "box" in record else record["generated_text"], coordinates])
        if shown is None and modality == "image":
            with Image.open(path) as image:
                shown = draw_box(image, box) if box is not None else image.convert("RGB")
    return rows, shown


def build_app(pipe):
    """The gradio app of `pipe` (a `"unival"` pipeline)."""
    import gradio as gr

    first = DEMO_TASKS[0]
    beams, new_tokens = task_settings(first.label)
    with gr.Blocks(title="UnIVAL") as app:
        gr.Markdown("# UnIVAL\nImages, video and audio in; captions, answers and boxes out.")
        with gr.Row():
            with gr.Column():
                files = gr.File(label="image, video or audio files", file_count="multiple", type="filepath",
                                elem_id="files")
                task = gr.Radio([t.label for t in DEMO_TASKS], value=first.label, label="task", elem_id="task")
                text = gr.Textbox(label="text", placeholder="not needed for captions", elem_id="text")
                with gr.Row():
                    num_beams = gr.Number(value=beams, precision=0, minimum=1, label="beams", elem_id="beams")
                    max_new = gr.Number(value=new_tokens, precision=0, minimum=1, label="max new tokens",
                                        elem_id="max_new_tokens")
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                answer = gr.Textbox(label="answer (first file)", elem_id="answer", interactive=False)
                image = gr.Image(label="image", type="pil", format="png", elem_id="drawn", interactive=False)
                table = gr.Dataframe(headers=["file", "answer", "box"], label="all files", elem_id="table",
                                     interactive=False)

        def on_task(label):
            beams, new_tokens = task_settings(label)
            hint = _BY_LABEL[label].text_hint
            return beams, new_tokens, gr.update(placeholder=hint or "not needed for this task")

        def on_run(files, label, text, beams, new_tokens):
            try:
                rows, shown = predict(pipe, files, label, text, beams, new_tokens)
            except ValueError as error:
                raise gr.Error(str(error)) from None
            return rows[0][1], shown, rows

        task.change(on_task, task, [num_beams, max_new, text])
        run.click(on_run, [files, task, text, num_beams, max_new], [answer, image, table])
    return app


def load_pipeline(model: str | os.PathLike | None):
    import modeling_unival  # noqa: F401  (registers the "unival" pipeline)
    from transformers import pipeline

    if model is None:
        if not EMBEDDED_DEFAULT_MODEL.is_dir():
            raise FileNotFoundError(
                f"no --model given and no embedded default model at {EMBEDDED_DEFAULT_MODEL}: train it with "
                "`bash scripts/demo.sh` (about 20 minutes on 2 CPU cores), or pass --model DIR (a converted "
                "checkpoint, or `python -m modeling_unival.presets unival-tiny --out DIR` for random weights)")
        model = EMBEDDED_DEFAULT_MODEL
    if not Path(model).is_dir():
        raise FileNotFoundError(f"--model: model directory {model} does not exist")
    return pipeline("unival", model=str(model))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help=f"a saved UnIVAL folder (default: {EMBEDDED_DEFAULT_MODEL})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        pipe = load_pipeline(args.model)
    except (FileNotFoundError, OSError) as error:
        print(f"[demo] {error}", file=sys.stderr)
        return 1
    build_app(pipe).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
