"""UnIVAL checkpoints in `transformers.pipeline`.

```python
>>> import hub_upload.pipelines  # or `import modeling_unival, processing` (configuration_unival.py imports it)
>>> from transformers import pipeline
>>> pipeline("image-to-text", model="unival-caption")("kitchen.jpg")
[{'generated_text': 'a kitchen with a stove and a sink'}]
>>> pipe = pipeline("image-text-to-text", model="unival-vqa")
>>> pipe("kitchen.jpg", text="what color is the stove?")
>>> pipe("kitchen.jpg", text="the stove", task="visual_grounding")  # adds "box": [x0, y0, x1, y1] in pixels
>>> pipeline("unival", model="unival-video-caption")("clip.mp4")
```

The pipeline itself lives in `modeling_unival/pipeline_unival.py` (see its docstring), because that file is saved
next to the weights as remote code. How each route reaches it:

* Package installed: `pipeline()` loads the processor through `AutoProcessor`, so `processing` must be imported (this
  module does it). Importing the pipeline module registers [`UnivalImageTextToTextPipeline`] for
  `"image-text-to-text"` in `transformers.pipelines.PIPELINE_REGISTRY` (transformers 5 rewrites `"image-to-text"` to
  that task before it reads the registry, so the registry entry of `"image-to-text"` itself is never read), and
  [`UnivalPipeline`] for the new task `"unival"`. The image-text-to-text entry builds the stock
  `ImageTextToTextPipeline` for any model that is not UnIVAL.
* Remote code (`trust_remote_code=True`, package not installed): `pipeline()` loads the checkpoint's configuration
  before it resolves the task; the configuration file imports `pipeline_unival.py` from next to the weights, which
  registers the same entries. The processor is remote code too (`processor_config.json` / `tokenizer_config.json`
  carry `auto_map`, and the processing files are saved next to the weights).

A `custom_pipelines` block in `config.json` is deliberately not used: `pipeline()` looks a task up in that block
before anything else and then refuses to run without `trust_remote_code=True` even when the package is installed, so
a checkpoint carrying one could not serve `pipeline("image-to-text", model=...)` without that argument.
"""

import processing  # noqa: F401  (registers the UnIVAL processor with AutoProcessor, which `pipeline()` loads)
from modeling_unival.constrained_decoding import UnivalLocationLogitsProcessor
from modeling_unival.pipeline_unival import (
    UnivalImageTextToTextPipeline,
    UnivalPipeline,
    is_unival_model,
    register_pipelines,
)


register_pipelines()

__all__ = [
    "UnivalImageTextToTextPipeline",
    "UnivalLocationLogitsProcessor",
    "UnivalPipeline",
    "is_unival_model",
    "register_pipelines",
]
