"""Process groups, all on PyTorch's own engine (no home-made communication).

Under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) says who we are;
the backend follows the device: NCCL on GPUs, gloo on CPUs. One explicit 1-D DeviceMesh spans all ranks.
How each strategy uses the group lives in zoo/train/strategy.py.
"""

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from zoo.errors import InputError


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mesh: object | None = None  # torch.distributed.DeviceMesh when a process group exists

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if dist.is_initialized():
            dist.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(grouped: bool, device: str = "auto", strategy: str = "single") -> Dist:
    """Join the process group torchrun describes (or make a one-process group for a lone grouped run).
    `grouped` is False for a strategy that runs one process without a group; `strategy` names it in errors."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if launched else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if launched else 0
    if not grouped and world_size > 1:
        raise InputError(f"train.strategy={strategy} under torchrun with {world_size} processes; "
                         f"use one of ddp, zero1, fsdp")

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"train.device={device!r}; allowed: auto, cpu, cuda")
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")

    if not grouped:
        return Dist(0, 1, 0, torch_device)
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if launched:
            dist.init_process_group(backend, device_id=torch_device if device == "cuda" else None)
        else:  # a lone process asked for ddp/zero1/fsdp: a group of one, so the code path is the same
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device, (dist.get_world_size(),), mesh_dim_names=("dp",))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, torch_device, mesh)


def teardown():
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks. SUM then divide: gloo has no ReduceOp.AVG."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value
