"""torch.distributed helpers: the same training code runs single-process or under torchrun."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mmrec.models.base import SeqBatch, SeqRecModel


def launched_by_torchrun() -> bool:
    """True when torchrun's environment (WORLD_SIZE > 1) asks for a process group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_distributed(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) if launched by torchrun and not
    yet joined; returns the device this rank should use (cuda:LOCAL_RANK on GPUs)."""
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return device


def shutdown() -> None:
    """Leave the process group (end of a torchrun stage), so every rank exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (identity without a process group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class LossModule(nn.Module):
    """Wraps a SeqRecModel so DDP sees `loss` as `forward` (DDP hooks run on forward only)."""

    def __init__(self, model: SeqRecModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(SeqBatch(seq), epoch)


def wrap_for_training(model: SeqRecModel, device: torch.device) -> nn.Module:
    """LossModule, inside DistributedDataParallel when a process group is active."""
    module: nn.Module = LossModule(model)
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # A model whose step may leave parameters unused (an ablation's idle heads) says so;
        # DDP's search for them costs a graph traversal every step, so only then. Model buffers
        # are constants (frozen features, log-popularity): never re-broadcast them.
        find_unused = bool(model.leaves_parameters_unused())
        module = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused,
                                         broadcast_buffers=False)
    return module
