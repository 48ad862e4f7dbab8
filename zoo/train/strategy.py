"""Where the four training strategies differ, in one place: how the model is wrapped, when gradients are
reduced, which optimizer holds the state, and how model + optimizer state is saved, restored and gathered.
The trainer and checkpointing call these methods and never compare strategy names.

  single  one process, no wrapper
  ddp     DistributedDataParallel: a full replica per rank, gradients all-reduced (averaged) in backward
  zero1   DDP + ZeroRedundancyOptimizer: optimizer state partitioned across ranks (ZeRO stage 1,
          Rajbhandari et al., 2020); each rank updates its shard, then parameters are broadcast
  fsdp    FSDP2 `fully_shard` per block then the root: parameters, gradients and optimizer state sharded
          (ZeRO-3); parameters all-gathered just in time for each block's forward/backward; checkpoints
          through torch.distributed.checkpoint (DCP), each rank writing its own shards
"""

import contextlib
import platform
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import torch_load
from zoo.decoding import COMPUTE_METHODS
from zoo.errors import InputError
from zoo.train.distributed import DIST_TIMEOUT_S, Dist, setup

STATE_FILE = "state.pt"
SHARDED_DIR = "sharded"


def has_bf16_units(device: torch.device) -> bool:
    """Whether the device multiplies bf16 matrices in hardware: a CUDA GPU of compute capability 8.0 or later, or a
    CPU that oneDNN runs bf16 on (AVX-512 or AMX on x86, bf16 instructions on Arm). Without them torch falls back
    to reference kernels, many times slower than fp32 (README: precision auto)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def describe_cpu() -> str:
    """The CPU's model name, the vector width ATen dispatches to, and its bf16 matmul units: machines sold under one
    name differ in both, and bf16 runs many times slower without the units, so timings from such machines differ.
    Whether it has the units is has_bf16_units' answer (what precision auto acts on); /proc/cpuinfo only names the
    x86 instructions behind a yes, since Arm's bf16 instructions and AVX-512's oneDNN path carry no such flag."""
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        name = names[0] if names else name
        flags = {flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    named = sorted(flags & {"avx512_bf16", "amx_bf16"})
    units = (", ".join(named) or "yes") if has_bf16_units(torch.device("cpu")) else "none"
    return f"{name} ({torch.backends.cpu.get_cpu_capability()}, bf16 units: {units})"


def resolve_precision(precision: str, device: torch.device) -> str:
    """train.precision=auto: bf16 autocast where the device has bf16 units, fp32 where it has none (a recipe that
    chose bf16 for speed would run many times slower there). Any other value is kept as asked."""
    if precision != "auto":
        return precision
    return "bf16" if has_bf16_units(device) else "fp32"


def describe_precision(precision: str, device: torch.device) -> str:
    """train.precision for the run log: what auto chose and why, or that bf16 was asked of a device without bf16
    units (kept as asked, since a test or a comparison may want exactly that, but said, so a slow run is explained)."""
    resolved, units = resolve_precision(precision, device), has_bf16_units(device)
    if precision == "auto":
        return f"auto -> {resolved} ({'' if units else 'no '}bf16 units on this {device.type})"
    if resolved == "bf16" and not units:
        return (f"bf16 (this {device.type} has no bf16 units: its bf16 matmuls run many times slower than fp32; "
                f"train.precision=auto picks fp32 here)")
    return resolved


class Single:
    name = "single"
    grouped = False  # runs in a process group (torchrun, or a group of one)
    supports_lora = True

    def __init__(self, env: Dist, precision: str):
        self.env, self.precision = env, resolve_precision(precision, env.device)

    def wrap(self, model: nn.Module, blocks: list[nn.Module]) -> nn.Module:
        return model

    def unwrap(self, wrapped: nn.Module) -> nn.Module:
        return wrapped

    def sync_gradients(self, wrapped: nn.Module, last: bool):
        """Context for one micro-batch's backward: reduce gradients across ranks on the last one only."""
        return contextlib.nullcontext()

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.env.device.type, dtype=dtype)

    def make_optimizer(self, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
        # One fused kernel per parameter instead of a dozen elementwise ops, on CPU (torch >= 2.4) as on CUDA:
        # torch picks it by itself only on CUDA, and its CPU default (a per-tensor loop) costs a gpt-nano step
        # about 1.5 ms.
        return torch.optim.AdamW(groups, fused=True, **kwargs)

    # ------------------------------------------------------------------------------------ state on disk

    def save(self, wrapped: nn.Module, optimizer, directory: Path, sharded: dict):
        """Model + optimizer state (and `sharded`: tensors laid out like the parameters, e.g. EMA weights),
        written by rank 0 as one file (read back with weights_only=True)."""
        if self.env.is_main:
            torch.save({"model": self.unwrap(wrapped).state_dict(), "optim": optimizer.state_dict(),
                        "sharded": sharded}, directory / STATE_FILE)

    def load(self, wrapped: nn.Module, optimizer, directory: Path, sharded: dict) -> dict:
        """Restore model and optimizer in place; returns the saved `sharded` dict (same keys as given)."""
        if not (directory / STATE_FILE).exists():
            raise InputError(f"{directory} holds no {STATE_FILE}: it was written by the fsdp strategy (sharded), "
                             f"which cannot be resumed with {self.name}")
        state = torch_load(directory / STATE_FILE, map_location=self.env.device)  # weights_only=True
        self.unwrap(wrapped).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
        return state.get("sharded", {})

    def full_state_dict(self, wrapped: nn.Module) -> dict | None:
        """The whole model's state on rank 0 (None elsewhere); every rank must call it."""
        return self.unwrap(wrapped).state_dict() if self.env.is_main else None


class DDP(Single):
    name = "ddp"
    grouped = True

    def wrap(self, model, blocks):
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.env.mesh.get_group())

    def unwrap(self, wrapped):
        return wrapped.module

    def sync_gradients(self, wrapped, last):
        return contextlib.nullcontext() if last else wrapped.no_sync()


class Zero1(DDP):
    name = "zero1"
    supports_lora = False

    def make_optimizer(self, groups, **kwargs):
        from torch.distributed.optim import ZeroRedundancyOptimizer

        first, *rest = groups
        optimizer = ZeroRedundancyOptimizer(first["params"], optimizer_class=torch.optim.AdamW,
                                            process_group=self.env.mesh.get_group(), fused=True,
                                            weight_decay=first["weight_decay"], **kwargs)
        for group in rest:
            optimizer.add_param_group(group)
        return optimizer

    def save(self, wrapped, optimizer, directory, sharded):
        optimizer.consolidate_state_dict(to=0)  # every rank takes part; rank 0 receives the shards
        super().save(wrapped, optimizer, directory, sharded)


class FSDP(Single):
    name = "fsdp"
    grouped = True
    supports_lora = False

    def wrap(self, model, blocks):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        # bf16 compute with fp32 gradient reduction (torchtitan's default); fp32 params stay the master copy.
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.precision == "bf16" else MixedPrecisionPolicy()
        for block in blocks:  # one all-gather per block keeps peak memory at one block's full parameters
            fully_shard(block, mesh=self.env.mesh, mp_policy=policy)
        fully_shard(model, mesh=self.env.mesh, mp_policy=policy)
        # FSDP2 gathers the root's parameters around forward() only; decoding calls prefill/step directly
        for method in COMPUTE_METHODS:
            if callable(getattr(model, method, None)):
                register_fsdp_forward_method(model, method)
        return model

    def sync_gradients(self, wrapped, last):
        wrapped.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def autocast(self):
        if self.precision == "bf16":
            return contextlib.nullcontext()  # the MixedPrecisionPolicy casts the parameters itself
        return super().autocast()

    def make_optimizer(self, groups, **kwargs):
        return torch.optim.AdamW(groups, **kwargs)  # sharded DTensor parameters keep the default implementation

    def save(self, wrapped, optimizer, directory, sharded):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(wrapped, optimizer)
        dcp.save({"model": model_state, "optim": optim_state, "sharded": sharded},
                 checkpoint_id=str(directory / SHARDED_DIR))

    def load(self, wrapped, optimizer, directory, sharded):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        if not (directory / SHARDED_DIR).exists():
            raise InputError(f"{directory} was written by a strategy that keeps whole tensors ({STATE_FILE}); "
                             f"resuming it with fsdp is not supported across FSDP's sharded format")
        model_state, optim_state = get_state_dict(wrapped, optimizer)
        state = {"model": model_state, "optim": optim_state, "sharded": sharded}
        dcp.load(state, checkpoint_id=str(directory / SHARDED_DIR))  # in place, into this rank's shards
        set_state_dict(wrapped, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        return state["sharded"]

    def full_state_dict(self, wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.env.is_main else None


STRATEGIES = {cls.name: cls for cls in (Single, DDP, Zero1, FSDP)}


def make_strategy(name: str, device: str, precision: str, timeout_s: float = DIST_TIMEOUT_S) -> Single:
    """Join the process group the strategy needs (collectives time out after timeout_s), then return it."""
    if name not in STRATEGIES:
        raise InputError(f"train.strategy={name!r}; allowed: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    return cls(setup(cls.grouped, device, name, timeout_s), precision)
