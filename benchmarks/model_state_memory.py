"""Memory of the model states of UnIVAL at the released size (`unival-base`: all three towers), measured on CPU:
parameters, gradients and AdamW state, whole and per process under FSDP full sharding.

    python benchmarks/model_state_memory.py                    # one process: the whole states, after one AdamW step
    python -m torch.distributed.run --nproc_per_node 2 benchmarks/model_state_memory.py --fsdp
                                                               # 2 processes (gloo): each rank's FSDP shards

The single-process run builds the model, runs one training step on an image, a video and an audio clip and an AdamW step, and counts
the bytes of every parameter, gradient and optimizer-state tensor (fp32). The `--fsdp` run wraps the model as the
shipped FSDP configs do (`UnivalEncoderLayer` / `UnivalDecoderLayer` units, FULL_SHARD, `use_orig_params`) and
reports each rank's local shard sizes (the towers and embeddings sit in the root unit, sharded too, and gathered
whole for every forward and backward pass). Activations are not counted: they depend on the batch, resolution and
activation checkpointing. The per-GPU table of docs/training.md is computed from these figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os

import torch

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.modeling_unival import UnivalDecoderLayer, UnivalEncoderLayer


MIB = 2**20


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def parameter_breakdown(model) -> dict[str, int]:
    """Parameters per part: the transformer (embeddings included) and each tower with its projection."""
    parts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        part = next((tower for tower in ("image", "video", "audio") if f".{tower}_" in name or f"embed_{tower}" in name),
                    "transformer")
        parts[part] = parts.get(part, 0) + parameter.numel()
    return parts


def one_step(model, size: int = 64):
    """One AdamW step on a batch of three samples, an image, a video and an audio clip, so that every tower gets
    gradients and optimizer state (small inputs: the states do not depend on them)."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, 50000, (3, 12))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids,
                 pixel_values=torch.randn(1, 3, size, size), pixel_values_videos=torch.randn(1, 3, 4, size, size),
                 audio_values=torch.randn(1, 48000), patch_types=torch.tensor([0, 1, 2])).loss
    loss.backward()
    optimizer.step()
    return optimizer


def optimizer_bytes(optimizer) -> int:
    return sum(_bytes(v for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
               for state in optimizer.state.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="unival-base")
    parser.add_argument("--fsdp", action="store_true", help="run under torch.distributed.run: report FSDP shards")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("WORLD_SIZE", "1"))))
    torch.manual_seed(0)
    model = UnivalForConditionalGeneration(UnivalConfig.from_preset(args.preset))
    if not args.fsdp:
        optimizer = one_step(model)
        parameters = list(model.parameters())
        result = {
            "preset": args.preset,
            "parameters": sum(p.numel() for p in parameters),
            "parameters_by_part": parameter_breakdown(model),
            "parameter_mib": _bytes(parameters) / MIB,
            "gradient_mib": _bytes(p.grad for p in parameters) / MIB,
            "adamw_state_mib": optimizer_bytes(optimizer) / MIB,
            "buffer_mib": _bytes(model.buffers()) / MIB,
        }
        print(json.dumps(result, indent=1))
        return

    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    dist.init_process_group("gloo")
    policy = functools.partial(transformer_auto_wrap_policy,
                               transformer_layer_cls={UnivalEncoderLayer, UnivalDecoderLayer})
    wrapped = FullyShardedDataParallel(model, auto_wrap_policy=policy, sharding_strategy=ShardingStrategy.FULL_SHARD,
                                       device_id=torch.device("cpu"), use_orig_params=True)
    optimizer = one_step(wrapped)
    flat = [handle.flat_param for handle in wrapped._all_handles]
    local = {
        "rank": dist.get_rank(),
        "world_size": dist.get_world_size(),
        "parameter_shard_mib": _bytes(p._local_shard for p in flat) / MIB,
        "gradient_shard_mib": _bytes(p.grad for p in flat) / MIB,
        "adamw_state_shard_mib": optimizer_bytes(optimizer) / MIB,
        "largest_unit_gathered_mib": max(p._unpadded_unsharded_size.numel() for p in flat) * 4 / MIB,
    }
    for rank in range(dist.get_world_size()):
        if rank == dist.get_rank():
            print(json.dumps(local), flush=True)
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
