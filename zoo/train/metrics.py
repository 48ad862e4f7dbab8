"""What a run shows: a tqdm bar (rank 0), a JSONL log, TensorBoard events, a loss-curve PNG, and MFU.

MFU (model FLOPs utilisation, Chowdhery et al., 2022, "PaLM", appendix B) = achieved model FLOPs/s over the
hardware peak. A family may give a formula (zoo.nn.transformer_flops_per_token for a Transformer);
otherwise one training step's FLOPs are measured once with torch.utils.flop_counter. The peak comes from
a table on GPUs and from a measured matmul on CPUs, in the dtype the run computes in (there is no honest
spec-sheet number for a shared CPU, and one with bf16 units multiplies bf16 several times faster than fp32: an fp32
peak put a bf16 run's MFU above 1).
"""

import json
import math
import time
from pathlib import Path

import torch

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12,
                 "3090": 71e12, "V100": 125e12, "T4": 65e12}


def measure_flops(fn, exclude: list[torch.nn.Module] = ()) -> float:
    """FLOPs of one call (forward + backward if fn does both), counted by torch.utils.flop_counter, less the
    FLOPs spent inside the `exclude` modules (frozen auxiliaries: not the trained model's work)."""
    from torch.utils.flop_counter import FlopCounterMode

    excluded, starts, hooks = [0], [], []
    with FlopCounterMode(display=False) as counter:
        for module in exclude:
            hooks.append(module.register_forward_pre_hook(lambda m, a: starts.append(counter.get_total_flops())))
            hooks.append(module.register_forward_hook(
                lambda m, a, out: excluded.__setitem__(0, excluded[0] + counter.get_total_flops() - starts.pop())))
        try:
            fn()
        finally:
            for hook in hooks:
                hook.remove()
    return float(counter.get_total_flops() - excluded[0])


_cpu_peaks: dict[torch.dtype, float] = {}  # measured once per process and dtype
CPU_MATMUL_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # any other precision multiplies in fp32


def peak_flops(device: torch.device, precision: str) -> float:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_BF16.items():
            if key in name:
                return value if precision != "fp32" else value / 2  # TF32 runs at half the bf16 rate
        return 0.0
    dtype = CPU_MATMUL_DTYPES.get(precision, torch.float32)
    if dtype not in _cpu_peaks:
        _cpu_peaks[dtype] = matmul_flops_per_s(dtype)
    return _cpu_peaks[dtype]


def matmul_flops_per_s(dtype: torch.dtype, size: int = 1024) -> float:
    """The best of a few size^3 matmuls in `dtype` at this process's thread count, in FLOP/s."""
    generator = torch.Generator().manual_seed(0)  # not the global RNG: resuming must not shift it
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    a @ b
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class RunLog:
    """JSONL + TensorBoard + tqdm on rank 0; a no-op elsewhere."""

    def __init__(self, out_dir: Path, total_steps: int, start_step: int, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.history: list[dict] = []
        if not enabled:
            return
        from tqdm.auto import tqdm

        out_dir.mkdir(parents=True, exist_ok=True)
        # Every record carries elapsed_s, wall seconds since this log opened (a resumed run counts from its
        # resume): a run's time to reach a validation loss reads off its evaluation records.
        self.started = time.perf_counter()
        self.path = out_dir / "log.jsonl"
        if self.path.exists():
            # Resuming at start_step: records past it came from work that was lost with the killed run.
            records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.history = [r for r in records if r.get("step", 0) <= start_step] if start_step else []
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True,
                        mininterval=1.0)

    def log(self, record: dict):
        if not self.enabled:
            return
        record = {**record, "elapsed_s": round(time.perf_counter() - self.started, 3)}
        self.history.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def progress(self, steps: int, **postfix):
        if self.enabled:
            self.bar.update(steps)
            if postfix:
                self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                     refresh=False)

    def write(self, message: str):
        if self.enabled:
            self.bar.write(message)

    def close(self):
        if self.enabled:
            self.bar.close()
            self.file.close()
            if self.writer is not None:
                self.writer.close()


def plot_losses(history: list[dict], path: Path, title: str = ""):
    """The loss curve PNG: training loss per logged step and validation loss per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
