"""Where a trainer runs and how it steps: device, torchrun process group, precision, seeding.

Shared by the U-Net loop (`export.train.loop`) and the generator trainers
(`export.generators.common`), so that every workstation model picks its device, joins a
torchrun launch and scales fp16 gradients the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from appliance.errors import ApplianceError

__all__ = ["Runtime", "optimiser_step", "precision_for", "seed_everything", "select_runtime"]


@dataclass
class Runtime:
    """This process's device and its place in a torchrun launch (rank 0 of 1 when alone)."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def select_runtime(requested: str) -> Runtime:
    """Pick the device; join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ApplianceError(f"--device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ApplianceError("--device cuda asked for, but this machine has no usable CUDA GPU")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        return Runtime(device, dist.get_rank(), world, local_rank)
    return Runtime(torch.device("cuda") if use_cuda else torch.device("cpu"))


def precision_for(device: torch.device) -> tuple[torch.dtype | None, str]:
    """bf16 autocast where the GPU supports it, else fp16 (with a scaler); fp32 on the CPU."""
    if device.type != "cuda":
        return None, "fp32"
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16"
    return torch.float16, "fp16"


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generator (what loaders and layer init draw from)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def optimiser_step(
    optimiser: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    update: bool = True,
) -> None:
    """One optimiser step through the AMP grad scaler (a pass-through without fp16).

    `update=False` where one scaler serves two optimisers in one iteration: it must update
    once, after the last of them has stepped.
    """
    optimiser.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    if update:
        scaler.update()
