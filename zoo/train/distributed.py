"""Process groups, all on PyTorch's own engine (no home-made communication).

Under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) says who we are;
the backend follows the device: NCCL on GPUs, gloo on CPUs. One explicit 1-D DeviceMesh spans all ranks.
How each strategy uses the group lives in zoo/train/strategy.py.

Failing fast: a rank killed outright closes its sockets, and gloo fails the others' next collective at once
("Connection reset by peer"); a rank that hangs instead (stopped, deadlocked, cut off) holds the others in a
collective until the group's timeout (train.dist_timeout_s), after which they fail too. Either way torchrun
sees a failed worker: it stops the rest, and with --max-restarts starts them again (`torchrun_restarts`).
"""

import datetime
import os
import signal
import socket
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

from zoo.errors import InputError

# How long a collective waits for the other ranks (train.dist_timeout_s). torch's default for gloo (NCCL's is 10 min):
# long enough for what the others wait for rank 0 to do alone, such as preparing the data or the final evaluation.
DIST_TIMEOUT_S = 1800.0

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


def setup(grouped: bool, device: str = "auto", strategy: str = "single", timeout_s: float = DIST_TIMEOUT_S) -> Dist:
    """Join the process group torchrun describes (or make a one-process group for a lone grouped run).
    `grouped` is False for a strategy that runs one process without a group; `strategy` names it in errors;
    a collective waiting longer than `timeout_s` for another rank raises instead of hanging."""
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
        timeout = datetime.timedelta(seconds=timeout_s)
        if launched:
            dist.init_process_group(backend, device_id=torch_device if device == "cuda" else None, timeout=timeout)
        else:  # a lone process asked for ddp/zero1/fsdp: a group of one, so the code path is the same
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                                    timeout=timeout)
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


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is True on any: one all-reduce (MAX) of one number, so that all ranks take
    the same branch after it (a rank that branched alone would leave the others waiting in a collective)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


# How a collective fails when another rank is gone: gloo raises a plain RuntimeError naming the socket error
# (its messages, torch 2.9), NCCL and the c10d store raise torch.distributed.DistError subclasses.
LOST_RANK_MESSAGES = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Timed out waiting")


def lost_a_rank(error: BaseException) -> bool:
    """Whether `error` is a collective failing because another rank died or hung past the group's timeout, in a
    multi-rank run (checked before the group is torn down)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in LOST_RANK_MESSAGES))


def torchrun_restarts() -> int:
    """How many times torchrun (--max-restarts) has started this worker group again after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))


class StopSignal:
    """SIGTERM as a request to stop at the next step boundary: how a scheduler preempts a job (Slurm sends it to
    every task, Kubernetes to the container, and torchrun's agent passes its own on to the workers) before a
    SIGKILL after a grace period (Slurm's KillWait, Kubernetes' terminationGracePeriodSeconds: 30 s by default).

    The handler only sets a flag (Python runs it between bytecodes of the main thread, so the step in flight,
    or a collective it waits in, finishes first); the trainer checks `requested` once per step. `install` is a
    no-op outside the main thread (signal.signal works there only); `restore` puts the previous handler back.
    """

    def __init__(self):
        self.received = False
        self._installed, self._previous = False, None

    def install(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame):
        self.received = True

    def requested(self, device: torch.device) -> bool:
        """Whether any rank got the signal. Every rank must call this at the same step: they agree to stop
        together, though the signal may reach them at different moments, or only some of them."""
        return any_rank(self.received, device)

    def restore(self):
        if self._installed:
            # None: the previous handler was not set from Python (signal.signal's docs); fall back to the default
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False
