"""Process groups and model wrapping, all on PyTorch's own engine (no home-made communication).

Under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) says who we are;
the backend follows the device: NCCL on GPUs, gloo on CPUs. One explicit 1-D DeviceMesh spans all ranks.

Strategies (the lecture's "optimisation strategies" slides):
  single  one process, no wrapper
  ddp     DistributedDataParallel: a full replica per rank, gradients all-reduced (averaged) in backward
  zero1   DDP + ZeroRedundancyOptimizer: optimizer state partitioned across ranks (ZeRO stage 1,
          Rajbhandari et al., 2020); each rank updates its shard, then parameters are broadcast
  fsdp    FSDP2 `fully_shard` per block then the root: parameters, gradients and optimizer state sharded
          (ZeRO-3); parameters all-gathered just in time for each block's forward/backward
"""

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("single", "ddp", "zero1", "fsdp")


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


def setup(strategy: str, device: str = "auto") -> Dist:
    """Join the process group torchrun describes (or make a one-process group for a lone ddp/fsdp run)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"train.strategy={strategy!r}; allowed: {', '.join(STRATEGIES)}")
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if launched else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if launched else 0
    if strategy == "single" and world_size > 1:
        raise ValueError(f"train.strategy=single under torchrun with {world_size} processes; "
                         f"use one of ddp, zero1, fsdp")

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"train.device={device!r}; allowed: auto, cpu, cuda")
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")

    if strategy == "single":
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


def wrap_model(model: nn.Module, blocks: list[nn.Module], strategy: str, env: Dist, precision: str) -> nn.Module:
    """Return the module to train. For fsdp the model itself is sharded in place and returned."""
    if strategy in ("ddp", "zero1"):
        from torch.nn.parallel import DistributedDataParallel

        ids = [env.device.index] if env.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=env.mesh.get_group())
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # bf16 compute with fp32 gradient reduction (torchtitan's default); fp32 params stay the master copy.
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if precision == "bf16" else MixedPrecisionPolicy()
        for block in blocks:  # one all-gather per block keeps peak memory at one block's full parameters
            fully_shard(block, mesh=env.mesh, mp_policy=policy)
        fully_shard(model, mesh=env.mesh, mp_policy=policy)
        return model
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) \
        else model


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks. SUM then divide: gloo has no ReduceOp.AVG."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value
