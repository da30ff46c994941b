"""From the original fairseq UnIVAL to this port: everything a conversion needs, in one place.

| module | what |
| --- | --- |
| `checkpoint` | reading an original checkpoint file without running code from it; its arguments; its (EMA) weights |
| `keys` | the transformer's key map: every original key mapped or dropped on purpose |
| `tower_keys` | the key maps of the image, video and audio towers |
| `config` | the `UnivalConfig` of an original model from its arguments; tower configs from backbone settings |
| `state_dict` | converting and loading a whole state dict; checking the buffers the port recomputes |
| `parts` | initialising a model from BART and the pretrained backbones, as the original's training starts; adding towers |

The modeling files (`configuration_unival.py`, `modeling_unival.py`, `towers.py`) never import this package: they
are saved next to every checkpoint as its remote code, and a converted checkpoint needs none of this.
"""

from .checkpoint import (
    UnsafeCheckpointError,
    check_checkpoint_file,
    load_original_checkpoint,
    original_arguments,
    read_torch_file,
    read_weights_file,
    select_weights,
)
from .config import audio_config_from_original, config_from_original_args, video_config_from_original
from .keys import DROPPED_KEY_REASONS, convert_original_key
from .parts import InitReport, PartReport, add_towers, init_from_parts, tower_config
from .state_dict import TIED_KEYS, check_original_buffers, convert_original_state_dict, load_original_state_dict
from .tower_keys import (
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_tower_state_dict,
    convert_original_video_tower_key,
)


__all__ = [
    "DROPPED_KEY_REASONS",
    "InitReport",
    "PartReport",
    "TIED_KEYS",
    "UnsafeCheckpointError",
    "add_towers",
    "audio_config_from_original",
    "check_checkpoint_file",
    "check_original_buffers",
    "config_from_original_args",
    "convert_original_audio_tower_key",
    "convert_original_image_tower_key",
    "convert_original_key",
    "convert_original_state_dict",
    "convert_original_tower_state_dict",
    "convert_original_video_tower_key",
    "init_from_parts",
    "load_original_checkpoint",
    "load_original_state_dict",
    "original_arguments",
    "read_torch_file",
    "read_weights_file",
    "select_weights",
    "tower_config",
    "video_config_from_original",
]
