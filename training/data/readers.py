"""Readers of the original OFA/UnIVAL TSV files and of Hugging Face datasets, mapped to the one example schema
(:mod:`training.data.schema`).

TSV files
---------
The original files have no header; each line is one row of tab-separated columns and a task reads the columns
listed in ``--selected-cols``. :data:`TSV_KINDS` gives, per kind, the selected columns (defaults below) and what they
hold:

============== ============= ====================================================================================
kind           columns       fields (in selected order)
============== ============= ====================================================================================
caption        0,4,2         id, image (base64 or path), caption (``&&``-separated references allowed)
vqa            0,5,2,3,4     id, image, question, refs ``conf|!+answer&&conf|!+answer...``, object tags (``&&``)
refcoco        0,4,2,3       id, image, referring text, box ``x0,y0,x1,y1`` (pixels)
snli_ve        0,2,3,4,5     id, image, hypothesis, premise, label (entailment/neutral/contradiction or yes/maybe/no)
video_caption  0,4,2         id, video path (relative to ``media_root``), caption
audio_caption  0,4,2         id, audio path (relative to ``media_root``), caption
video_qa       0,5,2,3,4     id, video path, question, refs, object tags
pretrain       0,1,...,7     id, media (path or base64), caption, question, refs, gt objects, dataset name, type
============== ============= ====================================================================================

Pretraining rows are dispatched on their ``type`` column: ``caption`` -> caption, ``qa`` -> vqa,
``visual_grounding`` -> visual_grounding (the box is in the refs column, the referring text in the caption column),
``video_caption``, ``video_qa``, ``audio_caption``. The auxiliary tasks UnIVAL derives from those rows at training
time (image-text matching, QA matching, grounded captioning) are left to the collator.

Images are base64 strings (standard or URL-safe alphabet, as written by OFA's tools) or paths relative to
``media_root`` (default: the TSV's folder); ``image_encoding="auto"`` tells them apart by the string's shape
(a short string ending in an image extension is a path). Every base64 image is decoded and verified with PIL, and
every media path must exist (``check_media=True``), so a broken row is caught where it is read.

Errors
------
A malformed row (missing column, bad base64, missing media file, box with 3 numbers, non-numeric confidence, unknown
label or type, empty text...) raises :class:`DataFormatError` naming the file and 1-based line number with
``on_error="raise"`` (default), or with ``on_error="skip"`` is logged as a warning (``logging`` logger
``training.data.readers``) and counted in a :class:`ReadStats` (``stats.skipped``, ``stats.errors``). A row is
never turned into a guessed example.

Streaming
---------
``iter_tsv`` is a plain generator (constant memory). ``read_tsv(..., streaming=True)`` wraps it in a
``datasets.IterableDataset`` (list of paths = shards), ``streaming=False`` builds an in-memory ``datasets.Dataset``.
``from_hf_dataset`` maps a ``Dataset`` or an ``IterableDataset`` (lazily) with a column mapping.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from .schema import FIELDS, SchemaError, best_answer, make_example

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS + AUDIO_EXTENSIONS

ENTAILMENT_TO_LABEL = {"entailment": "yes", "contradiction": "no", "neutral": "maybe", "yes": "yes", "no": "no",
                       "maybe": "maybe"}
LABEL_TO_ENTAILMENT = {"yes": "entailment", "no": "contradiction", "maybe": "neutral"}

#: pretraining TSV ``type`` column -> (task, modality)
PRETRAIN_TYPES: dict[str, tuple[str, str]] = {
    "caption": ("caption", "image"),
    "qa": ("vqa", "image"),
    "visual_grounding": ("visual_grounding", "image"),
    "video_caption": ("video_caption", "video"),
    "video_qa": ("video_qa", "video"),
    "audio_caption": ("audio_caption", "audio"),
}
_TASK_TO_PRETRAIN_TYPE = {v[0]: k for k, v in PRETRAIN_TYPES.items()}


class DataFormatError(ValueError):
    """A malformed row: ``path``, 1-based ``line`` (or row index for HF datasets) and ``reason``."""

    def __init__(self, path: str, line: Optional[int], reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclass
class ReadStats:
    """Counters of a read: rows seen, examples produced, rows skipped and their errors (first ``max_errors``)."""

    rows: int = 0
    examples: int = 0
    skipped: int = 0
    errors: list[tuple[str, Optional[int], str]] = field(default_factory=list)
    max_errors: int = 1000

    def record(self, err: DataFormatError) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append((err.path, err.line, err.reason))


@dataclass(frozen=True)
class TsvKind:
    name: str
    selected_cols: tuple[int, ...]
    fields: tuple[str, ...]
    task: Optional[str]  # None: dispatched per row (pretrain)
    modality: Optional[str]


TSV_KINDS: dict[str, TsvKind] = {
    k.name: k
    for k in (
        TsvKind("caption", (0, 4, 2), ("id", "media", "caption"), "caption", "image"),
        TsvKind("vqa", (0, 5, 2, 3, 4), ("id", "media", "question", "refs", "object_tags"), "vqa", "image"),
        TsvKind("refcoco", (0, 4, 2, 3), ("id", "media", "text", "box"), "visual_grounding", "image"),
        TsvKind("snli_ve", (0, 2, 3, 4, 5), ("id", "media", "hypothesis", "premise", "label"), "visual_entailment",
                "image"),
        TsvKind("video_caption", (0, 4, 2), ("id", "media", "caption"), "video_caption", "video"),
        TsvKind("audio_caption", (0, 4, 2), ("id", "media", "caption"), "audio_caption", "audio"),
        TsvKind("video_qa", (0, 5, 2, 3, 4), ("id", "media", "question", "refs", "object_tags"), "video_qa", "video"),
        TsvKind("pretrain", tuple(range(8)),
                ("id", "media", "caption", "question", "refs", "object_tags", "dataset", "type"), None, None),
    )
}

# --------------------------------------------------------------------------------------------------------------------
# Field parsers (raise ValueError with a reason; the caller adds file and line)
# --------------------------------------------------------------------------------------------------------------------


def parse_refs(refs: str) -> tuple[list[str], list[float]]:
    """``"conf|!+answer&&conf|!+answer"`` -> (answers, confidences); duplicates keep their highest confidence."""
    if not refs.strip():
        raise ValueError("empty answer refs")
    answers: list[str] = []
    confs: list[float] = []
    for item in refs.split("&&"):
        if "|!+" not in item:
            raise ValueError(f"answer ref {item!r} is not 'confidence|!+answer'")
        conf_s, ans = item.split("|!+", 1)
        try:
            conf = float(conf_s)
        except ValueError:
            raise ValueError(f"non-numeric answer confidence {conf_s!r}") from None
        if not math.isfinite(conf) or conf < 0:
            raise ValueError(f"answer confidence {conf_s!r} is not a finite non-negative number")
        ans = ans.strip()
        if not ans:
            raise ValueError(f"empty answer in ref {item!r}")
        if ans in answers:
            k = answers.index(ans)
            confs[k] = max(confs[k], conf)
        else:
            answers.append(ans)
            confs.append(conf)
    return answers, confs


def format_refs(answers: Sequence[str], confidences: Sequence[float]) -> str:
    for a in answers:
        if "&&" in a or "|!+" in a:
            raise ValueError(f"answer {a!r} contains a refs separator")
    return "&&".join(f"{float(c)!r}|!+{a}" for a, c in zip(answers, confidences))


def parse_box(text: str) -> list[float]:
    parts = text.strip().split(",")
    if len(parts) != 4:
        raise ValueError(f"box {text!r} has {len(parts)} numbers, expected 4 (x0,y0,x1,y1)")
    try:
        box = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"box {text!r} is not numeric") from None
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"box {text!r} is not finite")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box {text!r} has x1 <= x0 or y1 <= y0")
    return box


def parse_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split("&&") if t.strip()]


def decode_base64_image(s: str, verify: bool = True) -> bytes:
    """Bytes of a base64 image (standard or URL-safe alphabet, padding optional); verified with PIL."""
    t = "".join(s.split()).replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        raw = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"bad base64 image ({e})") from None
    if not raw:
        raise ValueError("empty base64 image")
    if verify:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(raw)) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"base64 data is not a decodable image ({type(e).__name__}: {e})") from None
    return raw


def encode_base64_image(data: bytes, urlsafe: bool = True) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode("ascii")


def _looks_like_path(s: str, extensions: Sequence[str] = MEDIA_EXTENSIONS) -> bool:
    return len(s) < 1024 and "\n" not in s and s.lower().endswith(tuple(extensions))


@dataclass
class _Ctx:
    path: str
    media_root: Path
    split: str
    source: Optional[str]
    image_encoding: str
    check_media: bool
    verify_images: bool


def _resolve_media(value: str, ctx: _Ctx, modality: str) -> str:
    p = Path(value)
    if not p.is_absolute():
        p = ctx.media_root / p
    if ctx.check_media and not p.is_file():
        raise ValueError(f"{modality} file {str(p)!r} does not exist")
    return str(p)


def _image_value(value: str, ctx: _Ctx) -> tuple[dict, Optional[str]]:
    """(value for the Image column, media_path)."""
    value = value.strip()
    if not value:
        raise ValueError("empty image column")
    mode = ctx.image_encoding
    if mode == "auto":
        mode = "path" if _looks_like_path(value) else "base64"
    if mode == "path":
        path = _resolve_media(value, ctx, "image")
        if ctx.verify_images:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise ValueError(f"image file {path!r} is not a decodable image ({e})") from None
        return {"bytes": None, "path": path}, path
    if mode == "base64":
        return {"bytes": decode_base64_image(value, ctx.verify_images), "path": None}, None
    raise ValueError(f"unknown image_encoding {ctx.image_encoding!r}")


def _captions(text: str) -> list[str]:
    caps = [c.strip() for c in text.split("&&")]
    if not caps or any(not c for c in caps):
        raise ValueError(f"empty caption in {text!r}")
    return caps


def _row_to_example(f: dict[str, str], kind: TsvKind, ctx: _Ctx, line: int) -> dict:
    task, modality = kind.task, kind.modality
    source = ctx.source or Path(ctx.path).stem
    if kind.name == "pretrain":
        rtype = f["type"].strip()
        if rtype not in PRETRAIN_TYPES:
            raise ValueError(f"unknown pretraining row type {rtype!r} (known: {', '.join(PRETRAIN_TYPES)})")
        task, modality = PRETRAIN_TYPES[rtype]
        if f["dataset"].strip():
            source = f["dataset"].strip()
    ex_id = f["id"].strip()
    if not ex_id:
        raise ValueError("empty id")
    out: dict[str, Any] = dict(id=ex_id, source=source, task=task, modality=modality, split=ctx.split,
                               metadata={"file": ctx.path, "line": line, "kind": kind.name})
    if modality == "image":
        out["image"], out["media_path"] = _image_value(f["media"], ctx)
    else:
        value = f["media"].strip()
        if not value:
            raise ValueError(f"empty {modality} path")
        exts = VIDEO_EXTENSIONS if modality == "video" else AUDIO_EXTENSIONS
        if not _looks_like_path(value, exts + MEDIA_EXTENSIONS):
            raise ValueError(f"{modality} column is not a media path ({value[:40]!r}...)")
        out["media_path"] = _resolve_media(value, ctx, modality)
    if "object_tags" in f:
        out["object_tags"] = parse_tags(f["object_tags"])

    if task in ("caption", "video_caption", "audio_caption"):
        caps = _captions(f["caption"])
        out.update(target=caps[0], answers=caps)
    elif task in ("vqa", "video_qa"):
        q = f["question"].strip()
        if not q:
            raise ValueError("empty question")
        answers, confs = parse_refs(f["refs"])
        out.update(question=q, answers=answers, answer_confidences=confs, target=best_answer(answers, confs))
    elif task == "visual_grounding":
        text = (f["text"] if "text" in f else f["caption"]).strip()
        if not text:
            raise ValueError("empty referring expression")
        out.update(text=text, boxes=[parse_box(f["box"] if "box" in f else f["refs"])])
    elif task == "visual_entailment":
        label = f["label"].strip().lower()
        if label not in ENTAILMENT_TO_LABEL:
            raise ValueError(f"unknown entailment label {f['label']!r}")
        hyp = f["hypothesis"].strip()
        if not hyp:
            raise ValueError("empty hypothesis")
        out.update(text=hyp, premise=f["premise"].strip() or None, target=ENTAILMENT_TO_LABEL[label])
    return make_example(**out)


# --------------------------------------------------------------------------------------------------------------------
# TSV reading
# --------------------------------------------------------------------------------------------------------------------


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def iter_tsv(path: PathLike, kind: str, *, selected_cols: Optional[Sequence[int]] = None,
             media_root: Optional[PathLike] = None, split: str = "train", source: Optional[str] = None,
             on_error: str = "raise", stats: Optional[ReadStats] = None, image_encoding: str = "auto",
             check_media: bool = True, verify_images: bool = True) -> Iterator[dict]:
    """Yield schema examples from one OFA/UnIVAL TSV file, line by line (constant memory).

    ``kind``: a key of :data:`TSV_KINDS`; ``selected_cols`` overrides its default columns (same order of fields);
    ``media_root``: base of relative media paths (default: the TSV's folder); ``source``: value of the ``source``
    field (default: the file stem; pretraining rows use their dataset-name column); ``on_error``: "raise" or "skip"
    (see module doc); ``stats``: a :class:`ReadStats` to update; ``image_encoding``: "auto", "base64" or "path"."""
    _check_on_error(on_error)
    if kind not in TSV_KINDS:
        raise ValueError(f"unknown TSV kind {kind!r} (known: {', '.join(TSV_KINDS)})")
    k = TSV_KINDS[kind]
    cols = tuple(selected_cols) if selected_cols is not None else k.selected_cols
    if len(cols) != len(k.fields):
        raise ValueError(f"kind {kind!r} needs {len(k.fields)} selected columns ({', '.join(k.fields)}), got {cols}")
    stats = stats if stats is not None else ReadStats()
    path = str(path)
    ctx = _Ctx(path, Path(media_root) if media_root is not None else Path(path).resolve().parent, split, source,
               image_encoding, check_media, verify_images)
    need = max(cols) + 1
    with open(path, encoding="utf-8", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            stats.rows += 1
            try:
                row = line.rstrip("\r\n").split("\t")
                if row == [""]:
                    raise ValueError("empty line")
                if len(row) < need:
                    raise ValueError(f"{len(row)} columns, but column {need - 1} is selected ({kind} reads {cols})")
                fields = {name: row[c] for name, c in zip(k.fields, cols)}
                ex = _row_to_example(fields, k, ctx, line_no)
            except (ValueError, SchemaError) as e:
                err = e if isinstance(e, DataFormatError) else DataFormatError(path, line_no, str(e))
                if on_error == "raise":
                    raise err from None
                logger.warning("skipping malformed row: %s", err)
                stats.record(err)
                continue
            stats.examples += 1
            yield ex


def _iter_tsv_files(paths: list, **kwargs) -> Iterator[dict]:
    for p in paths:
        yield from iter_tsv(p, **kwargs)


def read_tsv(paths: Union[PathLike, Sequence[PathLike]], kind: str, *, streaming: bool = False,
             stats: Optional[ReadStats] = None, **kwargs):
    """Read one or more TSV files of ``kind`` into a ``datasets.Dataset`` (in memory) or, with ``streaming=True``,
    a lazy ``datasets.IterableDataset`` whose shards are the files. Other keyword arguments: see :func:`iter_tsv`.
    ``stats`` is updated as rows are read (for a streaming dataset: as it is iterated, in this process)."""
    import datasets

    from .schema import example_features

    paths_list = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    _check_on_error(kwargs.get("on_error", "raise"))
    if "selected_cols" in kwargs and kwargs["selected_cols"] is not None:
        kwargs["selected_cols"] = tuple(kwargs["selected_cols"])
    stats = stats if stats is not None else ReadStats()
    if streaming:
        return datasets.IterableDataset.from_generator(
            _iter_tsv_files, features=example_features(),
            gen_kwargs={"paths": paths_list, "kind": kind, "stats": stats, **kwargs})
    rows = list(_iter_tsv_files(paths_list, kind=kind, stats=stats, **kwargs))
    return datasets.Dataset.from_list(rows, features=example_features())


# --------------------------------------------------------------------------------------------------------------------
# TSV writing (export schema examples in the original layouts)
# --------------------------------------------------------------------------------------------------------------------


def _clean(text: Optional[str], what: str) -> str:
    text = "" if text is None else str(text)
    if "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a tab or a newline")
    return text


def _media_cell(ex: dict, image_format: str, media_root: Optional[Path]) -> str:
    if ex["modality"] == "image" and image_format == "base64":
        img = ex.get("image")
        data = None
        if isinstance(img, dict) and img.get("bytes"):
            data = img["bytes"]
        elif isinstance(img, dict) and img.get("path"):
            data = Path(img["path"]).read_bytes()
        elif isinstance(img, str):
            data = Path(img).read_bytes()
        elif img is not None and hasattr(img, "save"):
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            data = buf.getvalue()
        elif ex.get("media_path"):
            data = Path(ex["media_path"]).read_bytes()
        if data is None:
            raise ValueError(f"{ex['id']}: no image to encode")
        return encode_base64_image(data)
    mp = ex.get("media_path")
    if not mp:
        raise ValueError(f"{ex['id']}: no media_path to write")
    if media_root is not None:
        try:
            return Path(mp).resolve().relative_to(Path(media_root).resolve()).as_posix()
        except ValueError:
            pass
    return str(mp)


def example_to_tsv_row(ex: dict, kind: str, image_format: str = "base64", media_root: Optional[PathLike] = None) -> str:
    """One TSV line (without newline) in the layout of ``kind`` (unselected columns: column 1 = group id, others
    empty)."""
    k = TSV_KINDS[kind]
    task = ex["task"]
    if k.task is not None and task != k.task:
        raise ValueError(f"{ex['id']}: a {task} example cannot be written as {kind}")
    if k.task is None and task not in _TASK_TO_PRETRAIN_TYPE:
        raise ValueError(f"{ex['id']}: task {task} has no pretraining TSV type")
    values: dict[str, str] = {"id": _clean(ex["id"], "id"),
                              "media": _media_cell(ex, image_format, Path(media_root) if media_root else None)}
    captions = "&&".join(_clean(a, "caption") for a in (ex["answers"] or [ex["target"]]))
    if task in ("caption", "video_caption", "audio_caption"):
        values["caption"] = captions
    elif task in ("vqa", "video_qa"):
        values["question"] = _clean(ex["question"], "question")
        values["refs"] = format_refs(ex["answers"], ex["answer_confidences"])
    elif task == "visual_grounding":
        values["text" if kind == "refcoco" else "caption"] = _clean(ex["text"], "text")
        values["box" if kind == "refcoco" else "refs"] = ",".join(repr(float(v)) for v in ex["boxes"][0])
    elif task == "visual_entailment":
        values.update(hypothesis=_clean(ex["text"], "hypothesis"), premise=_clean(ex.get("premise"), "premise"),
                      label=LABEL_TO_ENTAILMENT[ex["target"]])
    values["object_tags"] = "&&".join(_clean(t, "tag") for t in ex.get("object_tags") or [])
    if kind == "pretrain":
        values["dataset"] = _clean(ex.get("source") or "", "source")
        values["type"] = _TASK_TO_PRETRAIN_TYPE[task]
    cols = [""] * (max(k.selected_cols) + 1)
    if 1 not in k.selected_cols:
        cols[1] = _clean(ex.get("group_id") or "", "group id")
    for name, c in zip(k.fields, k.selected_cols):
        cols[c] = values.get(name, "")
    return "\t".join(cols)


def write_tsv(examples: Iterable[dict], path: PathLike, kind: str, image_format: str = "base64",
              media_root: Optional[PathLike] = None) -> int:
    """Write schema examples as an OFA/UnIVAL TSV of ``kind``; images as base64 (default) or paths (relative to
    ``media_root`` when given). Returns the number of rows written."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for ex in examples:
            f.write(example_to_tsv_row(ex, kind, image_format, media_root) + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets with a column mapping
# --------------------------------------------------------------------------------------------------------------------

#: roles a column mapping may name (schema role -> meaning)
HF_ROLES = {
    "id": "example id (default: '<source>-<row index>')",
    "group_id": "image / clip id shared by examples of the same media",
    "image": "an Image column, a path string, raw bytes or a PIL image",
    "media": "path of a video / audio file (relative to media_root)",
    "caption": "one caption (str) or reference captions (list of str)",
    "question": "question text",
    "answers": "annotator answers: list of str, list of {'answer': str}, or a dict {'answer': [...]}",
    "answer_confidences": "confidences matching a list of unique answers",
    "answer": "one answer string",
    "text": "referring expression / hypothesis / candidate text",
    "box": "a box (see box_format)",
    "premise": "premise text",
    "label": "entailment label (str, or int with a ClassLabel feature)",
    "object_tags": "list of object tags or an '&&'-joined string",
}


def _vqa_confidences(votes: Sequence[str]) -> tuple[list[str], list[float]]:
    """VQAv2-style soft scores: min(1, n / 3) per distinct answer; most frequent first (ties: first seen)."""
    counts: dict[str, int] = {}
    for v in votes:
        v = str(v).strip()
        if not v:
            raise ValueError("empty annotator answer")
        counts[v] = counts.get(v, 0) + 1
    answers = sorted(counts, key=lambda a: -counts[a])
    return answers, [min(1.0, counts[a] / 3.0) for a in answers]


def _hf_answers(value: Any) -> list[str]:
    if isinstance(value, dict):
        if "answer" not in value:
            raise ValueError("answers dict has no 'answer' key")
        value = value["answer"]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"answers must be a non-empty list, got {type(value).__name__}")
    return [v["answer"] if isinstance(v, dict) else v for v in value]


def _hf_box(value: Any, box_format: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"box {value!r} must have 4 numbers")
    try:
        b = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"box {value!r} is not numeric") from None
    if box_format == "xywh":
        b = [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    elif box_format != "xyxy":
        raise ValueError(f"unknown box_format {box_format!r}")
    if not all(math.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box {value!r} is empty or not finite")
    return b


class _HFMapper:
    def __init__(self, task, columns, modality, split, source, media_root, expand_captions, box_format,
                 label_names, on_error, stats):
        self.task, self.columns, self.modality, self.split, self.source = task, columns, modality, split, source
        self.media_root = Path(media_root) if media_root is not None else None
        self.expand_captions, self.box_format, self.label_names = expand_captions, box_format, label_names
        self.on_error, self.stats = on_error, stats

    def col(self, row: dict, role: str, required: bool = True):
        name = self.columns.get(role)
        if name is None:
            if required:
                raise ValueError(f"no column mapped to {role!r}")
            return None
        value = row.get(name)
        if value is None and required:
            raise ValueError(f"column {name!r} ({role}) is empty")
        return value

    def media(self, row: dict) -> dict:
        if self.modality == "image":
            img = self.col(row, "image")
            if isinstance(img, dict):
                if img.get("bytes"):
                    return {"image": {"bytes": img["bytes"], "path": None}, "media_path": None}
                path = img.get("path")
            elif isinstance(img, (bytes, bytearray)):
                return {"image": {"bytes": bytes(img), "path": None}, "media_path": None}
            elif isinstance(img, str):
                path = img
            elif hasattr(img, "save"):  # PIL image
                return {"image": img, "media_path": None}
            else:
                raise ValueError(f"unsupported image value of type {type(img).__name__}")
            if not path:
                raise ValueError("image has neither bytes nor path")
            p = Path(path)
            if not p.is_absolute() and self.media_root is not None:
                p = self.media_root / p
            if not p.is_file():
                raise ValueError(f"image file {str(p)!r} does not exist")
            return {"image": {"bytes": None, "path": str(p)}, "media_path": str(p)}
        if self.modality in ("video", "audio"):
            path = self.col(row, "media")
            if not isinstance(path, str) or not path.strip():
                raise ValueError(f"{self.modality} path must be a non-empty string")
            p = Path(path)
            if not p.is_absolute() and self.media_root is not None:
                p = self.media_root / p
            if not p.is_file():
                raise ValueError(f"{self.modality} file {str(p)!r} does not exist")
            return {"media_path": str(p)}
        return {}

    def examples(self, row: dict, idx: int) -> list[dict]:
        task = self.task
        ex_id = self.col(row, "id", required=False)
        ex_id = str(ex_id) if ex_id is not None else f"{self.source}-{idx}"
        group = self.col(row, "group_id", required=False)
        base: dict[str, Any] = dict(id=ex_id, source=self.source, task=task, modality=self.modality,
                                    split=self.split, group_id=str(group) if group is not None else ex_id,
                                    metadata={"row": idx})
        base.update(self.media(row))
        tags = self.col(row, "object_tags", required=False)
        if tags is not None:
            base["object_tags"] = parse_tags(tags) if isinstance(tags, str) else [str(t) for t in tags]
        if task in ("caption", "video_caption", "audio_caption"):
            caps = self.col(row, "caption")
            caps = [caps] if isinstance(caps, str) else list(caps)
            caps = [str(c).strip() for c in caps]
            if not caps or any(not c for c in caps):
                raise ValueError("empty caption")
            if self.expand_captions and len(caps) > 1:
                return [make_example(**(base | {"id": f"{ex_id}-{k}", "target": c, "answers": caps}))
                        for k, c in enumerate(caps)]
            return [make_example(**base, target=caps[0], answers=caps)]
        if task in ("vqa", "video_qa"):
            q = str(self.col(row, "question")).strip()
            if not q:
                raise ValueError("empty question")
            if "answers" in self.columns:
                answers = _hf_answers(self.col(row, "answers"))
                confs = self.col(row, "answer_confidences", required=False)
                if confs is not None:
                    try:
                        confs = [float(c) for c in confs]
                    except (TypeError, ValueError):
                        raise ValueError(f"non-numeric answer confidences {confs!r}") from None
                    if len(confs) != len(answers):
                        raise ValueError("answers and answer_confidences differ in length")
                    answers = [str(a).strip() for a in answers]
                else:
                    answers, confs = _vqa_confidences(answers)
            else:
                answers, confs = [str(self.col(row, "answer")).strip()], [1.0]
            return [make_example(**base, question=q, answers=answers, answer_confidences=confs,
                                 target=best_answer(answers, confs))]
        if task == "visual_grounding":
            text = str(self.col(row, "text")).strip()
            if not text:
                raise ValueError("empty referring expression")
            return [make_example(**base, text=text, boxes=[_hf_box(self.col(row, "box"), self.box_format)])]
        if task == "visual_entailment":
            label = self.col(row, "label")
            if isinstance(label, int) and not isinstance(label, bool):
                if not self.label_names or not 0 <= label < len(self.label_names):
                    raise ValueError(f"integer label {label} without label names")
                label = self.label_names[label]
            label = str(label).strip().lower()
            if label not in ENTAILMENT_TO_LABEL:
                raise ValueError(f"unknown entailment label {label!r}")
            premise = self.col(row, "premise", required=False)
            return [make_example(**base, text=str(self.col(row, "text")).strip(), target=ENTAILMENT_TO_LABEL[label],
                                 premise=str(premise).strip() if premise is not None else None)]
        if task == "grounded_caption":
            cap = self.col(row, "caption")
            return [make_example(**base, target=str(cap).strip(), boxes=[_hf_box(self.col(row, "box"),
                                                                                self.box_format)])]
        if task in ("image_text_matching", "video_text_matching", "audio_text_matching", "qa_matching"):
            label = str(self.col(row, "label")).strip().lower()
            if label not in ("yes", "no"):
                raise ValueError(f"matching label must be yes/no, got {label!r}")
            q = self.col(row, "question", required=task == "qa_matching")
            return [make_example(**base, text=str(self.col(row, "text")).strip(), target=label,
                                 question=str(q).strip() if q is not None else None)]
        raise ValueError(f"task {task!r} is not supported by from_hf_dataset")

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        out: dict[str, list] = {k: [] for k in FIELDS}
        names = list(batch)
        for j, idx in enumerate(indices):
            row = {k: batch[k][j] for k in names}
            self.stats.rows += 1
            try:
                made = self.examples(row, idx)
            except (ValueError, SchemaError, OSError) as e:
                err = DataFormatError(self.source, None, f"row {idx}: {e}")
                if self.on_error == "raise":
                    raise err from None
                logger.warning("skipping malformed row: %s", err)
                self.stats.record(err)
                continue
            for ex in made:
                self.stats.examples += 1
                for k in FIELDS:
                    out[k].append(ex[k])
        return out


def from_hf_dataset(dataset, task: str, columns: dict[str, str], *, modality: Optional[str] = None,
                    split: str = "train", source: str = "hf", media_root: Optional[PathLike] = None,
                    expand_captions: bool = False, box_format: str = "xyxy", on_error: str = "raise",
                    stats: Optional[ReadStats] = None, batch_size: int = 64):
    """Map a Hugging Face ``Dataset`` or ``IterableDataset`` to the schema with a column mapping
    ``{role: column}`` (roles: :data:`HF_ROLES`). Returns the same kind of dataset (lazy for an IterableDataset).

    Examples::

        from_hf_dataset(coco, "caption", {"image": "image", "caption": "captions"})
        from_hf_dataset(vqav2, "vqa", {"image": "image", "question": "question", "answers": "answers"})
        from_hf_dataset(refcoco, "visual_grounding", {"image": "image", "text": "sentence", "box": "bbox"},
                        box_format="xywh")

    Annotator answer lists get VQAv2 confidences ``min(1, n/3)``. ``expand_captions`` emits one example per reference
    caption. Errors: ``on_error`` as for TSV files; the row index replaces the line number."""
    import datasets

    from .schema import TASK_MODALITIES, TASKS, example_features

    _check_on_error(on_error)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    modality = modality or TASK_MODALITIES[task][0]
    unknown = set(columns) - set(HF_ROLES)
    if unknown:
        raise ValueError(f"unknown column roles {sorted(unknown)} (known: {', '.join(HF_ROLES)})")
    feats = dataset.features
    if feats is not None:
        missing = [c for c in columns.values() if c not in feats]
        if missing:
            raise ValueError(f"dataset has no column(s) {missing}; columns: {list(feats)}")
    label_names = None
    if feats is not None and "label" in columns and isinstance(feats.get(columns["label"]), datasets.ClassLabel):
        label_names = feats[columns["label"]].names
    if feats is not None and "image" in columns and isinstance(feats.get(columns["image"]), datasets.Image):
        dataset = dataset.cast_column(columns["image"], datasets.Image(decode=False))
    stats = stats if stats is not None else ReadStats()
    mapper = _HFMapper(task, dict(columns), modality, split, source, media_root, expand_captions, box_format,
                       label_names, on_error, stats)
    remove = list(dataset.column_names) if dataset.column_names is not None else None
    kwargs: dict[str, Any] = dict(batched=True, batch_size=batch_size, with_indices=True, remove_columns=remove,
                                  features=example_features())
    if isinstance(dataset, datasets.Dataset):
        kwargs.update(load_from_cache_file=False, desc=None)
        return dataset.map(mapper, **kwargs)
    return dataset.map(mapper, **kwargs)

