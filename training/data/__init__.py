"""Data for UnIVAL training: one example schema, a synthetic multimodal world, ground-truth checkers and readers of
the original OFA/UnIVAL TSV files and of Hugging Face datasets.

Submodules are imported lazily (``datasets`` / PyAV are only loaded when used):

* :mod:`training.data.schema`    -- ``TASKS``, ``MODALITIES``, ``FIELDS``, ``example_features()``, ``make_example``
* :mod:`training.data.synthetic` -- ``generate_world``, ``load_world``, ``write_world``, ``WorldConfig``, CLI
* :mod:`training.data.checks`    -- ``check_example``, ``verify_world``, per-task ``check_*`` functions
* :mod:`training.data.readers`   -- ``read_tsv``, ``iter_tsv``, ``write_tsv``, ``from_hf_dataset``, ``TSV_KINDS``
"""

from importlib import import_module

_EXPORTS = {
    "TASKS": "schema",
    "MODALITIES": "schema",
    "SPLITS": "schema",
    "FIELDS": "schema",
    "TASK_MODALITIES": "schema",
    "example_features": "schema",
    "make_example": "schema",
    "validate_example": "schema",
    "SchemaError": "schema",
    "generate_world": "synthetic",
    "load_world": "synthetic",
    "write_world": "synthetic",
    "WorldConfig": "synthetic",
    "DEFAULT_NUM_EXAMPLES": "synthetic",
    "check_example": "checks",
    "verify_world": "checks",
    "CheckFailure": "checks",
    "read_tsv": "readers",
    "iter_tsv": "readers",
    "write_tsv": "readers",
    "from_hf_dataset": "readers",
    "TSV_KINDS": "readers",
    "DataFormatError": "readers",
    "ReadStats": "readers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
