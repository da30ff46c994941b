"""`evaluate` modules for this package's metrics, loaded from local script folders (no Hub, works offline).

Each metric lives in ``training/metrics/<name>/<name>.py`` as an ``evaluate.Metric`` whose ``_compute`` calls the
plain function of this package (``from training.metrics.captioning import cider_d`` ...), so there is one
implementation. ``evaluate.load(<folder>)`` copies only the script into its modules cache
(``$HF_MODULES_CACHE/evaluate_modules/metrics/<name>/<hash>/``); the copied script still imports the plain
functions from the installed ``training`` package, so changes to them take effect without touching the cache. For
the same reason the scripts build their ``MetricInfo`` with :func:`metric_info` from here rather than each writing it
out.
"""

from __future__ import annotations

from pathlib import Path


__all__ = ["METRIC_MODULES", "metric_module_path", "load_metric", "metric_info"]

_HERE = Path(__file__).resolve().parent

#: names accepted by :func:`load_metric`
METRIC_MODULES = ("cider", "coco_bleu", "vqa_accuracy", "grounding_accuracy", "classification_accuracy")


def metric_module_path(name: str) -> Path:
    """Absolute path of the folder holding the ``evaluate`` script of metric ``name``."""
    if name not in METRIC_MODULES:
        raise ValueError(f"unknown metric {name!r}; choose one of {METRIC_MODULES}")
    return _HERE / name


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of this package's local metric module ``name`` (one of :data:`METRIC_MODULES`).

    Keyword arguments go to ``evaluate.load``; ``keep_in_memory`` defaults to True (no Arrow cache files) unless
    ``num_process`` > 1 (distributed evaluation needs the file cache)."""
    import evaluate

    if int(kwargs.get("num_process", 1)) == 1:
        kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_module_path(name)), **kwargs)


#: The kinds of metric input, by the name :func:`metric_info` takes.
METRIC_INPUT_KINDS = ("text", "texts", "box")


def _input_feature(kind: str):
    import datasets

    if kind == "text":
        return datasets.Value("string")
    if kind == "texts":
        return datasets.Sequence(datasets.Value("string"))
    if kind == "box":
        return datasets.Sequence(datasets.Value("float64"), length=4)
    raise ValueError(f"unknown metric input kind {kind!r}; choose one of {METRIC_INPUT_KINDS}")


def metric_info(description: str, citation: str, inputs_description: str, *, predictions: str, references: str):
    """The ``evaluate.MetricInfo`` of one of this package's metric scripts: its texts, and the features of its
    ``predictions`` and ``references`` by kind (one of :data:`METRIC_INPUT_KINDS`: ``"text"`` a string per sample,
    ``"texts"`` a list of strings per sample, ``"box"`` 4 floats ``[x0, y0, x1, y1]`` per sample)."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features(
            {"predictions": _input_feature(predictions), "references": _input_feature(references)}
        ),
    )
