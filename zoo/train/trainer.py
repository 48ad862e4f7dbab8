"""The one trainer: every family trains through `Trainer` via its registered `Family` spec.

    zoo train gpt-nano --out runs/gpt --steps 2000 --set train.strategy=ddp        (one process)
    torchrun --nproc_per_node=2 -m zoo.cli train gpt-nano --out runs/gpt ...       (many)

A step: each rank takes its shard of the global batch in `grad_accum` micro-batches (collated by the family),
runs the family's loss under autocast, backward (gradients averaged across ranks on the last micro-batch
only), clips, skips the update if the loss or gradient norm is not finite, and steps AdamW at the scheduled
LR. What differs between single, DDP, ZeRO-1 and FSDP2 lives in zoo/train/strategy.py.
"""

import contextlib
import itertools
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.optim import _muon

from zoo.config import config_to_dict
from zoo.errors import InputError, TrainingError
from zoo.registry import Family, TrainingData, zoo_home
from zoo.train import checkpointing
from zoo.train.distributed import (
    DIST_TIMEOUT_S,
    StopSignal,
    all_reduce_mean,
    any_rank,
    lost_a_rank,
    teardown,
    torchrun_restarts,
)
from zoo.train.lora import apply_lora, count_parameters, merge_lora, parse_lora, save_adapter
from zoo.train.metrics import RunLog, measure_flops, peak_flops, plot_losses
from zoo.train.strategy import STRATEGIES, describe_precision, has_bf16_units, make_strategy
from zoo.utils import git_state, model_device

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
OPTIMIZERS = ("adamw", "muon")
LENGTH_GROUP_BATCHES = 50  # batches sorted by length together (HF Trainer's megabatch of 50)
STEP_FIELDS = ("step", "loss", "grad_norm", "lr", "skipped", "samples_per_s", "mfu", "skipped_total", "tokens_per_s",
               "elapsed_s")  # elapsed_s: added to every record by the RunLog


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32  # global: samples per optimizer step, summed over ranks and micro-batches
    grad_accum: int = 1  # micro-batches per step (each rank: batch_size / (grad_accum * world) samples each)
    lr: float = 1e-3
    min_lr: float = 1e-4  # cosine decay ends here (Loshchilov & Hutter, 2017)
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW (Loshchilov & Hutter, 2019), on matrices only
    optimizer: str = "adamw"  # adamw | muon (Muon on the hidden weight matrices, AdamW on the rest: MuonWithAdamW)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA only) | auto (bf16
    # where the device has bf16 units, else fp32: strategy.resolve_precision)
    strategy: str = "single"  # single | ddp | zero1 | fsdp
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    compile: bool = False  # torch.compile each block
    num_workers: int = 0  # DataLoader worker processes for data computed on the fly (0: in the training process)
    group_by_length: bool = True  # batch items of similar length together, when the family gives their lengths
    seed: int = 1337
    eval_every: int = 500  # 0 = evaluate at the end only
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = checkpoint at the end only
    keep_checkpoints: int = 2
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off (diffusion uses 0.999+)
    max_nonfinite: int = 3  # stop after this many non-finite steps in a row
    dist_timeout_s: float = DIST_TIMEOUT_S  # a collective waiting longer for another rank (a hung one) fails the run
    lora: str = ""  # e.g. "r=8,alpha=16": train LoRA adapters only (peft), merged on export
    init_from: str = ""  # a model directory (zoo's or a Hugging Face folder) to start from (fine-tuning; LoRA's base)
    device: str = "auto"  # auto | cpu | cuda
    tensorboard: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise InputError(f"train.precision={self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise InputError(f"train.strategy={self.strategy!r}; allowed: {', '.join(STRATEGIES)}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"train.optimizer={self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.optimizer == "muon" and (self.strategy not in ("single", "ddp") or self.precision == "fp16"):
            raise InputError(f"train.optimizer=muon trains with strategy single or ddp and precision fp32, bf16 or "
                             f"auto, not {self.strategy} / {self.precision}")
        for name in ("steps", "batch_size", "grad_accum", "log_every", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise InputError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "weight_decay", "grad_clip", "eval_every", "checkpoint_every"):  # 0 means off
            if getattr(self, name) < 0:
                raise InputError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"train.{name} is an Adam decay in [0, 1), got {getattr(self, name)}")
        if self.num_workers < 0:
            raise InputError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise InputError(f"need 0 <= train.min_lr <= train.lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0 <= self.ema < 1:
            raise InputError(f"train.ema is a decay in [0, 1), got {self.ema}")
        if self.lora:
            parse_lora(self.lora)  # a bad spec fails now, not after the data (or a DiT's VAE) is prepared
        if self.dist_timeout_s <= 0:
            raise InputError(f"train.dist_timeout_s must be > 0 (seconds), got {self.dist_timeout_s}")


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at the last step (nanoGPT's get_lr). Step is 1-based."""
    if step <= config.warmup:
        return config.lr * step / max(1, config.warmup)
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (config.lr - config.min_lr)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class BatchPlan:
    """Which samples each rank sees at each step: a pure function of (seed, step), so resuming needs only
    the step, and any number of ranks sees the same global batch as one process.

    Global sample p (p = step * batch_size + j) is item perm_e[p mod n] of epoch e = p // n, with a fresh
    seeded permutation per epoch (sampling without replacement, as an epoch-based DataLoader would).

    With item `lengths` (TrainingData.lengths: audio frames, tokens), the permutation is length-grouped as the
    LengthGroupedSampler of Hugging Face's Trainer: each run of LENGTH_GROUP_BATCHES batches is sorted by
    length, then the batches are shuffled, so a batch pads its items to a similar length instead of to the
    longest of a random draw, while every item is still seen once per epoch in a random batch order.
    """

    def __init__(self, n: int, batch_size: int, grad_accum: int, world_size: int, rank: int, seed: int,
                 lengths: Sequence[int] | None = None):
        per_micro = batch_size // grad_accum
        if batch_size % (grad_accum * world_size):
            raise InputError(f"train.batch_size={batch_size} must be divisible by grad_accum * ranks = "
                             f"{grad_accum} * {world_size}")
        if n < 1:
            raise InputError("the training set is empty")
        self.n, self.batch_size, self.grad_accum = n, batch_size, grad_accum
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.per_rank = per_micro // world_size
        if lengths is not None and len(lengths) != n:
            raise InputError(f"TrainingData.lengths has {len(lengths)} entries for {n} training items")
        self.lengths = torch.as_tensor(lengths) if lengths is not None else None
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=generator)
            if self.lengths is not None:
                perm = self._grouped(perm, generator)
            self._perms = {epoch: perm}  # keep one epoch in memory
        return self._perms[epoch]

    def _grouped(self, perm: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = self.batch_size
        runs = perm.split(size * LENGTH_GROUP_BATCHES)
        perm = torch.cat([run[torch.argsort(self.lengths[run], descending=True, stable=True)] for run in runs])
        whole = self.n // size * size  # the last partial batch keeps its place at the end
        batches = perm[:whole].view(-1, size)[torch.randperm(self.n // size, generator=generator)]
        return torch.cat([batches.flatten(), perm[whole:]])

    def micro_batches(self, step: int) -> list[torch.Tensor]:
        """Indices for this rank at 0-based `step`: grad_accum tensors of per_rank indices each."""
        positions = step * self.batch_size + torch.arange(self.batch_size)
        epochs = positions // self.n
        indices = torch.empty_like(positions)
        for epoch in epochs.unique().tolist():
            chosen = epochs == epoch
            indices[chosen] = self._perm(epoch)[positions[chosen] % self.n]
        # (accum, world, per_rank): micro-batch m of rank r
        return list(indices.view(self.grad_accum, self.world_size, self.per_rank)[:, self.rank])


class PlanSampler:
    """The plan's micro-batches from `start` on, as index lists: a DataLoader batch_sampler, so worker
    processes build the batches ahead while the exact order (and so exact resume) stays the plan's."""

    def __init__(self, plan: BatchPlan, start: int):
        self.plan, self.start = plan, start

    def __iter__(self):
        for step in itertools.count(self.start):
            for indices in self.plan.micro_batches(step):
                yield indices.tolist()


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def split_loss(output, family: str) -> tuple[torch.Tensor, dict]:
    """A family's loss output -> (scalar loss, metrics). It may return the loss alone or (loss, metrics)."""
    loss, metrics = output if isinstance(output, tuple) else (output, {})
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise InputError(f"family {family!r}: loss must return a scalar tensor or (scalar tensor, dict of metrics), "
                         f"got {type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    clash = sorted(set(metrics) & set(STEP_FIELDS))
    if clash:
        raise InputError(f"family {family!r}: loss metrics may not be named {', '.join(clash)} (the trainer's own "
                         f"log fields: {', '.join(STEP_FIELDS)})")
    return loss, metrics


class NonFiniteError(TrainingError):
    """train.max_nonfinite non-finite steps in a row: the run stops, its last good checkpoint untouched."""


def as_validation(metrics: dict) -> dict:
    """Evaluation metrics as log fields: numbers only, each named val_* (top1 -> val_top1, val_loss stays)."""
    return {(k if k.startswith("val") else f"val_{k}"): v for k, v in metrics.items() if isinstance(v, (int, float))}


def clean_name(name: str) -> str:
    """A parameter's name as in the unwrapped model (no DDP `module.`, no checkpoint-wrapper segment)."""
    return name.replace("_checkpoint_wrapped_module.", "").removeprefix("module.")


def newton_schulz_fp32(grad: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int,
                       eps: float) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz iteration (Jordan et al., 2024), X <- aX + (bA + cA^2)X with
    A = XX^T on the wider orientation after scaling to spectral norm <= 1, run in fp32 where torch's runs in bf16."""
    a, b, c = ns_coefficients
    wide = grad.size(0) <= grad.size(1)
    x = grad.float() if wide else grad.float().T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Fp32Muon(torch.optim.Muon):
    """torch.optim.Muon with its Newton-Schulz iterations in fp32 (newton_schulz_fp32), for a device without bf16
    units. torch runs them in bf16, as the reference implementation does (Jordan et al., 2024), which suits a device
    that has them; one without them multiplies bf16 matrices many times slower than fp32 ones (README: the race on
    an AVX2 CPU). The momentum, Nesterov update, weight decay and learning rate adjustment stay torch's own."""

    def step(self, closure=None):
        with mock.patch.object(_muon, "_zeropower_via_newtonschulz", newton_schulz_fp32):
            return super().step(closure)


class MuonWithAdamW:
    """Muon (Jordan et al., 2024: the momentum orthogonalised by Newton-Schulz iterations) on the hidden weight
    matrices, AdamW on the rest (embeddings, output heads, gains, biases), as modded-nanogpt's speed-run records
    train. torch.optim.Muon's adjust_lr_fn="match_rms_adamw" (Liu et al., 2025, "Muon is Scalable for LLM
    Training") scales its updates to AdamW's RMS, so both share the learning rate, its schedule and the weight
    decay. On a device without bf16 units the Muon half is Fp32Muon. One optimizer to the trainer: the groups of
    both, one step, one state dict."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.optimizers = {"muon": muon, "adamw": adamw}

    @classmethod
    def build(cls, groups: list[dict], lr_scales: list[float], named: list, model: torch.nn.Module, lr: float,
              betas: tuple) -> tuple["MuonWithAdamW", list[float]]:
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        hidden = {id(p) for name, p in named if p.dim() == 2 and id(p) not in embeddings and "head" not in name}
        split = {"muon": [], "adamw": []}  # each family group in two, keeping its weight decay and LR scale
        for group, scale in zip(groups, lr_scales):
            for kind in split:
                params = [p for p in group["params"] if (id(p) in hidden) == (kind == "muon")]
                if params:
                    split[kind].append(({**group, "params": params}, scale))
        muon_class = torch.optim.Muon if has_bf16_units(model_device(model)) else Fp32Muon
        muon = muon_class([g for g, _ in split["muon"]], lr=lr, adjust_lr_fn="match_rms_adamw")
        adamw = torch.optim.AdamW([g for g, _ in split["adamw"]], lr=lr, betas=betas, fused=True)
        return cls(muon, adamw), [scale for kind in split for _, scale in split[kind]]

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    def step(self):
        for optimizer in self.optimizers.values():
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True):
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {kind: optimizer.state_dict() for kind, optimizer in self.optimizers.items()}

    def load_state_dict(self, state: dict):
        for kind, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[kind])


class Trainer:
    def __init__(self, family: Family, model_config, data_config, config: TrainConfig, out_dir: str | Path,
                 data_path: str | None = None, name: str | None = None, resume: bool = False,
                 overwrite: bool = False):
        for hook in ("prepare_data", "loss", "evaluate"):
            if getattr(family, hook) is None:
                raise InputError(f"family {family.name!r} cannot be trained: it has no {hook}")
        self.family, self.config, self.data_config = family, config, data_config
        self.out_dir, self.data_path, self.name = Path(out_dir), data_path, name
        self.strategy = make_strategy(config.strategy, config.device, config.precision, config.dist_timeout_s)
        self.env = self.strategy.env
        # torchrun --max-restarts started the workers again after a failure: continue from the checkpoint. Asked of
        # every rank: an agent that restarts its workers because another node's failed leaves its own
        # TORCHELASTIC_RESTART_COUNT at 0 (it counts failures of its own workers only).
        self.resuming = resume or any_rank(torchrun_restarts() > 0, self.env.device)
        if not self.resuming:  # before the data is prepared: a refusal should not wait for it
            start_over(self.out_dir, overwrite, self.env)
        if config.lora and not self.strategy.supports_lora:
            raise InputError(f"LoRA trains with strategy single or ddp, not {config.strategy}")
        if config.precision == "fp16" and self.env.device.type != "cuda":
            raise InputError("train.precision=fp16 needs CUDA (GradScaler); on CPU use bf16")

        seed_everything(config.seed)  # identical initial weights on every rank
        base = None
        if config.init_from:
            from zoo.interop import load_directory

            base = load_directory(config.init_from)  # zoo's own directory or a Hugging Face folder
            model_config = base.config  # the architecture comes from the model being fine-tuned
        self.data = self._prepare_data(model_config, base)
        self.model_config = self.data.config
        self.frozen = self._place_frozen(self.data.frozen)
        seed_everything(config.seed)  # again: the initial weights depend on the seed alone, not on what data drew
        model = base if base is not None else family.build(self.model_config)
        for key, value in self.data.extras.items():
            setattr(model, key, value)
        model.zoo_name = name
        model.to(self.env.device)
        if config.lora:
            model = apply_lora(model, config.lora)
        self.trainable, self.total_params = count_parameters(model)
        self.flops_per_sample = self._flops_per_sample(model)

        blocks = family.blocks(model)
        if config.activation_checkpointing and blocks:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

            block_ids = {id(b) for b in blocks}
            apply_activation_checkpointing(model, check_fn=lambda m: id(m) in block_ids)
            blocks = family.blocks(model)
        if config.compile:
            for block in blocks or [model]:
                block.compile()
        self.raw_model = model
        self.model = self.strategy.wrap(model, blocks)
        # The trained parameters, once: after wrapping (FSDP swaps in sharded ones), shared by the optimizer,
        # gradient clipping and the EMA.
        named = [(clean_name(n), p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.optimizer, self.lr_scales = self._make_optimizer(named)
        self.scaler = torch.amp.GradScaler("cuda") if self.strategy.precision == "fp16" else None
        self.ema = None
        if config.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.params, decay=config.ema)
        self.plan = BatchPlan(len(self.data.train), config.batch_size, config.grad_accum, self.env.world_size,
                              self.env.rank, config.seed,
                              lengths=self.data.lengths if config.group_by_length else None)
        self._batches, self._batches_step = None, None
        self.step, self.nonfinite_in_row, self.skipped = 0, 0, 0
        torch.manual_seed(config.seed + 7919 * self.env.rank)  # dropout streams differ per rank
        if self.resuming:
            self._resume()  # restores each rank's RNG state as it was at the checkpoint

    # ---------------------------------------------------------------------------------------------- setup

    def _prepare_data(self, model_config, base) -> TrainingData:
        cache_dir = zoo_home() / "cache"
        args = (model_config, self.data_config, self.data_path, cache_dir)
        kwargs = {"run_dir": self.out_dir, **({"model": base} if base is not None else {})}
        if self.env.is_main:  # rank 0 fills the cache (tokenizer training, rendering); the others reuse it
            data = self.family.prepare_data(*args, **kwargs)
        self.env.barrier()
        if not self.env.is_main:
            data = self.family.prepare_data(*args, **kwargs)
        return data

    def _place_frozen(self, frozen: dict) -> dict:
        """Frozen auxiliary modules: on the device, in eval mode, gradients off (so no backward graph through
        them); they are not part of the trained model, so not optimized, checkpointed, counted or sharded."""
        for name, module in frozen.items():
            if not isinstance(module, torch.nn.Module):
                raise InputError(f"family {self.family.name!r}: frozen[{name!r}] must be an nn.Module, "
                                 f"got {type(module).__name__}")
            module.to(self.env.device).eval().requires_grad_(False)
        return frozen

    def _flops_per_sample(self, model) -> float:
        formula = self.family.flops_per_sample(model, self.data_config)
        if formula is not None:
            return float(formula)
        sample = to_device(self.family.collate([self.data.train[0]]), self.env.device)

        def forward_backward():
            loss, _ = split_loss(self.family.loss(model, sample, **self.frozen), self.family.name)
            loss.backward()

        with torch.random.fork_rng(devices=[]):
            flops = measure_flops(forward_backward, exclude=list(self.frozen.values()))
        model.zero_grad(set_to_none=True)
        return flops

    def _make_optimizer(self, named: list) -> tuple[torch.optim.Optimizer, list[float]]:
        groups = self.family.param_groups(named, self.config.weight_decay)
        grouped = sum(len(g["params"]) for g in groups)
        if grouped != len(named) or len({id(p) for g in groups for p in g["params"]}) != len(named):
            raise InputError(f"family {self.family.name!r}: param_groups must place each of the {len(named)} trained "
                             f"parameters in exactly one group (got {grouped})")
        lr_scales = [float(g.pop("lr_scale", 1.0)) for g in groups]  # applied by the schedule in train_step
        betas = (self.config.beta1, self.config.beta2)
        if self.config.optimizer == "muon":
            return MuonWithAdamW.build(groups, lr_scales, named, self.model, lr=self.config.lr, betas=betas)
        return self.strategy.make_optimizer(groups, lr=self.config.lr, betas=betas), lr_scales

    # ------------------------------------------------------------------------------------------ checkpoints

    def _resume(self):
        path = checkpointing.latest_checkpoint(self.out_dir)
        if path is None:
            if self.env.is_main:
                print(f"--resume: no checkpoint in {self.out_dir / 'checkpoints'}; starting from step 0")
            return
        state, sharded = checkpointing.load_checkpoint(path, self.strategy, self.model, self.optimizer,
                                                       self._sharded_state())
        self.step, self.nonfinite_in_row, self.skipped = state["step"], state["nonfinite_in_row"], state["skipped"]
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict({**state["ema"], "shadow_params": [sharded["ema"][str(i)]
                                                                        for i in range(len(self.params))]})
        if self.env.is_main:
            print(f"resumed from {path} at step {self.step}")

    def _sharded_state(self) -> dict:
        """Tensors laid out like the parameters (sharded under FSDP): the EMA weights."""
        if self.ema is None:
            return {}
        return {"ema": {str(i): shadow for i, shadow in enumerate(self.ema.shadow_params)}}

    def _trainer_state(self) -> dict:
        state = {"step": self.step, "samples_seen": self.step * self.config.batch_size,
                 "nonfinite_in_row": self.nonfinite_in_row, "skipped": self.skipped}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = {k: v for k, v in self.ema.state_dict().items() if k != "shadow_params"}
        return state

    def save_checkpoint(self):
        checkpointing.save_checkpoint(self.out_dir, self.step, self.strategy, self.model, self.optimizer,
                                      self._trainer_state(), self._sharded_state(), self.config.keep_checkpoints)

    # ----------------------------------------------------------------------------------------------- data

    def _step_batches(self) -> list:
        """This rank's micro-batches for self.step, collated and on the device. A stream is opened at the
        current step and reused while steps follow each other (a resume or a jump opens a new one)."""
        if self._batches is None or self._batches_step != self.step:
            self.close_batches()
            self._batches = self._batch_stream(self.step)
        self._batches_step = self.step + 1
        return next(self._batches)

    def _batch_stream(self, start: int):
        train, collate, device = self.data.train, self.family.collate, self.env.device
        if self.config.num_workers == 0:
            for step in itertools.count(start):
                yield [to_device(collate([train[int(i)] for i in indices]), device)
                       for indices in self.plan.micro_batches(step)]
            return
        # Workers build batches ahead in the plan's order. Their seeds come from a private generator, not the
        # global RNG (which dropout uses and a resume restores), so opening the loader shifts no random stream.
        loader = torch.utils.data.DataLoader(
            train, batch_sampler=PlanSampler(self.plan, start), collate_fn=collate,
            num_workers=self.config.num_workers, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(self.config.seed + start))
        micro_batches = iter(loader)
        while True:
            yield [to_device(next(micro_batches), device) for _ in range(self.config.grad_accum)]

    def close_batches(self):
        """Stop the batch stream (and its worker processes, if any)."""
        if self._batches is not None:
            self._batches.close()
            self._batches = None

    # ----------------------------------------------------------------------------------------------- step

    def train_step(self) -> dict:
        """One optimizer step (self.step -> self.step + 1). Returns loss, grad norm, lr, whether it was skipped,
        and the family's metrics (averaged over micro-batches and ranks)."""
        cfg = self.config
        lr = lr_at(self.step + 1, cfg)
        for group, scale in zip(self.optimizer.param_groups, self.lr_scales):
            group["lr"] = lr * scale
        if not self.strategy.unwrap(self.model).training:  # train() walks every module: ~0.4 ms, so only if needed
            self.model.train()
        micro_batches = self._step_batches()
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            with self.strategy.sync_gradients(self.model, last=i == len(micro_batches) - 1):
                with self.strategy.autocast():
                    loss, metrics = split_loss(self.family.loss(self.model, batch, **self.frozen), self.family.name)
                scaled = loss.float() / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            for key, value in {"loss": loss, **metrics}.items():
                value = torch.as_tensor(value).detach().float().to(self.env.device)
                sums[key] = sums[key] + value if key in sums else value
        # one all-reduce for the loss and every metric
        means = all_reduce_mean(torch.stack(list(sums.values())) / len(micro_batches)).tolist()
        averaged = dict(zip(sums, means))

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
            grad_norm = grad_norm.full_tensor()
        loss_value, norm_value = averaged.pop("loss"), float(grad_norm)
        finite = math.isfinite(loss_value) and (math.isfinite(norm_value) or self.scaler is not None)
        applied = finite
        if finite:
            if self.scaler is not None:
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)  # skips by itself on fp16 overflow, then lowers the scale
                self.scaler.update()
                # an overflow is routine while the scale settles: logged as skipped, not counted as a failure
                applied = self.scaler.get_scale() >= scale
            else:
                self.optimizer.step()
            if self.ema is not None and applied:
                self.ema.step(self.params)
            self.nonfinite_in_row = 0
        else:
            self.nonfinite_in_row += 1
            if self.scaler is not None:
                self._back_off_loss_scale()
        self.skipped += not applied
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.nonfinite_in_row >= cfg.max_nonfinite:
            last = checkpointing.latest_checkpoint(self.out_dir)
            raise NonFiniteError(
                f"{self.nonfinite_in_row} non-finite steps in a row (loss={loss_value}, grad norm={norm_value}) "
                f"at step {self.step}; stopping (train.max_nonfinite={cfg.max_nonfinite}). The last good "
                f"checkpoint is untouched: {last or 'none written yet'}. Try a lower train.lr, "
                f"train.grad_clip, or train.precision=fp32.")
        return {"loss": loss_value, "grad_norm": norm_value, "lr": lr, "skipped": not applied, **averaged}

    def _back_off_loss_scale(self):
        """End the GradScaler's step without an update, lowering the scale as for an overflow. unscale_ has run,
        and until update() the next step's unscale_ raises; update() alone lowers the scale only if unscale_
        found inf/NaN gradients, while here the loss alone may have been non-finite."""
        scale = self.scaler.get_scale()
        self.scaler.update()  # backs off (and restarts the growth count) when the gradients overflowed
        if self.scaler.get_scale() >= scale:
            self.scaler.update(scale * self.scaler.get_backoff_factor())

    # ------------------------------------------------------------------------------------------------ fit

    @contextlib.contextmanager
    def ema_weights(self):
        """The EMA weights in the model for the duration (every rank: under FSDP each swaps its own shards),
        the trained weights back after. Without EMA, nothing changes."""
        if self.ema is None:
            yield
            return
        self.ema.store(self.params)
        self.ema.copy_to(self.params)
        try:
            yield
        finally:
            self.ema.restore(self.params)

    def evaluate(self, quick: bool, out_dir: Path | None = None) -> dict:
        """The family's evaluate, on the EMA weights when EMA is on, under this run's precision. Every rank
        takes part (an FSDP forward all-gathers); the family restores the model's train/eval mode itself."""
        with self.ema_weights(), self.strategy.autocast():
            return self.family.evaluate(self.strategy.unwrap(self.model), self.data, self.data_config,
                                        out_dir=out_dir, quick=quick)

    def fit(self) -> dict:
        cfg, env = self.config, self.env
        if env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_config()
        log = RunLog(self.out_dir, cfg.steps, self.step, env.is_main, cfg.tensorboard)
        if env.is_main:
            log.write(f"{self.name or self.family.name}: {self.total_params:,} parameters "
                      f"({self.trainable:,} trainable), {env.world_size} rank(s), strategy {cfg.strategy}, "
                      f"precision {describe_precision(cfg.precision, env.device)}, device {env.device}"
                      + (f", EMA {cfg.ema} (evaluated and exported)" if self.ema is not None else ""))
        peak = peak_flops(env.device, self.strategy.precision) * env.world_size
        window_start, window_steps = time.perf_counter(), 0
        metrics: dict = {}
        stop = StopSignal().install()
        try:
            while self.step < cfg.steps:
                result = self.train_step()
                window_steps += 1
                if result["skipped"]:
                    log.write(f"step {self.step}: non-finite loss/gradient, update skipped "
                              f"({self.nonfinite_in_row} in a row)")
                log.progress(1, loss=result["loss"], lr=result["lr"])
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    samples_per_s = window_steps * cfg.batch_size / elapsed
                    record = {"step": self.step, **result, "samples_per_s": samples_per_s,
                              "mfu": samples_per_s * self.flops_per_sample / peak if peak else 0.0,
                              "skipped_total": self.skipped}
                    if self.data.tokens_per_sample:
                        record["tokens_per_s"] = samples_per_s * self.data.tokens_per_sample
                    log.log(record)
                    window_start, window_steps = time.perf_counter(), 0
                if self.step < cfg.steps and stop.requested(env.device):
                    self._stop_early(log)
                    return {}
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    metrics = self.evaluate(quick=True)
                    log.log({"step": self.step, **as_validation(metrics)})
                    window_start = time.perf_counter()  # evaluation time is not training throughput
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save_checkpoint()
                    window_start = time.perf_counter()
            self.close_batches()
            self.save_checkpoint()
            metrics = self.export()
            if env.is_main:
                log.log({"step": self.step, **as_validation(metrics)})
                plot_losses(log.history, self.out_dir / "loss.png", title=self.name or self.family.name)
        except RuntimeError as error:
            if not lost_a_rank(error):  # checked here, while the process group is still up
                raise
            raise self._lost_rank_error(error) from error
        finally:
            stop.restore()
            self.close_batches()
            log.close()
        return metrics

    def _lost_rank_error(self, error: RuntimeError) -> TrainingError:
        """The others' view of a dead or hung rank: one line (the `zoo` command prints it) rather than gloo's
        traceback, naming the checkpoint that `--resume` continues from."""
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        latest = checkpointing.latest_checkpoint(self.out_dir)
        return TrainingError(
            f"rank {self.env.rank} of {self.env.world_size} lost another rank at step {self.step} (it died, "
            f"or hung past train.dist_timeout_s={self.config.dist_timeout_s:g}): {first_line}. "
            + (f"The last checkpoint, {latest}, is whole: rerun the same command with --resume (torchrun "
               f"--max-restarts does that by itself)." if latest else "No checkpoint was written yet."))

    def _stop_early(self, log: RunLog):
        """SIGTERM (a preempted machine): checkpoint this step and return normally, so the process exits 0.
        The run is unfinished, so nothing is exported; `--resume` continues it exactly."""
        self.close_batches()
        self.save_checkpoint()
        if self.env.is_main:
            log.write(f"SIGTERM: stopped at step {self.step} of {self.config.steps} and saved "
                      f"{checkpointing.latest_checkpoint(self.out_dir)}; the model is not exported. To continue, run "
                      f"the same command with --resume.")

    def _write_run_config(self):
        run = {"name": self.name, "family": self.family.name, "data_path": self.data_path,
               "world_size": self.env.world_size, "model": config_to_dict(self.model_config),
               "data": config_to_dict(self.data_config) if self.data_config is not None else {},
               "train": config_to_dict(self.config)}
        # the code this run trains with, so that shipped weights name the commit that made them (zoo.shipped)
        run["commit"], run["dirty"] = git_state()
        (self.out_dir / "train_config.json").write_text(json.dumps(run, indent=2) + "\n")

    def export(self) -> dict:
        """Write the final model (the EMA weights when EMA is on) as a save_pretrained directory (the run
        directory itself) and evaluate it. Every rank takes part in gathering the weights; rank 0 writes."""
        metrics, model = {}, None
        with self.ema_weights():
            state = self.strategy.full_state_dict(self.model)
            if self.env.is_main and self.config.lora:  # LoRA runs unsharded: the live model holds the adapters
                save_adapter(self.raw_model, self.out_dir / "adapter")
                model = merge_lora(self.raw_model)  # training is over: fold the adapters in, in place
            elif self.env.is_main:
                model = self.family.build(self.model_config)
                model.load_state_dict(state)  # copies, so the EMA weights stay in it after the restore below
        if self.env.is_main:
            for key, value in self.data.extras.items():
                setattr(model, key, value)
            model.zoo_name = self.name
            model = model.to(self.env.device).eval()
            metrics = self.family.evaluate(model, self.data, self.data_config, out_dir=self.out_dir, quick=False)
            model.to("cpu").save_pretrained(self.out_dir)
            (self.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        self.env.barrier()
        return metrics


def train(name: str, out: str | Path | None = None, data: str | None = None, steps: int | None = None,
          sets: list[str] = (), resume: bool = False, lora: str | None = None, overwrite: bool = False) -> dict:
    """`zoo train NAME`: the registered recipe plus --set overrides, run by the Trainer. `overwrite` starts over in
    a previous run that has checkpoints (they are deleted); without it, or --resume, such a run is refused."""
    from zoo.config import parse_sets, replace_config
    from zoo.registry import get_family, get_model_entry

    entry = get_model_entry(name)
    family = get_family(entry.family)
    sections = parse_sets(list(sets))
    model_config = replace_config(entry.make_config(), sections["model"], "model")
    if family.data_config is None and sections["data"]:
        raise InputError(f"family {family.name!r} has no data settings; drop --set data.*")
    data_config = replace_config(replace_config(family.data_config(), entry.data, "data"), sections["data"],
                                 "data") if family.data_config else None
    train_overrides = {**entry.train, **({"steps": steps} if steps is not None else {}),
                       **({"lora": lora} if lora else {})}
    config = replace_config(replace_config(TrainConfig(), train_overrides, "train"), sections["train"], "train")
    out_dir = Path(out) if out else zoo_home() / name
    check_out_dir(out_dir)
    if resume:
        _check_resume_config(out_dir, config)
    trainer = Trainer(family, model_config, data_config, config, out_dir, data, name, resume, overwrite)
    try:
        return trainer.fit()
    finally:
        teardown()


RUN_MARKERS = ("train_config.json", "checkpoints")  # what a zoo run directory holds from its first step


def is_run_dir(directory: Path) -> bool:
    return any((directory / marker).exists() for marker in RUN_MARKERS)


def check_out_dir(out_dir: Path):
    """Refuse to train into a directory that holds anything but a zoo run, rather than mix checkpoints, logs and
    the exported model into a user's files (as the HF example scripts refuse a non-empty output_dir). Allowed: a
    new or empty directory, and a previous zoo run: --resume continues it, and without --resume training starts
    over there (the log restarts, the export is replaced; its checkpoints go only with --overwrite: start_over).
    A directory of zoo runs only counts as one: a DiT run trains its helper models (vae/, judge/) before its own
    first file appears."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; allowed: a new or empty directory, or a zoo run directory")
    entries = sorted(out_dir.iterdir())
    if not entries or is_run_dir(out_dir) or all(entry.is_dir() and is_run_dir(entry) for entry in entries):
        return
    shown = ", ".join(entry.name for entry in entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise InputError(f"--out {out_dir} exists and is not a zoo run (it holds {shown}); allowed: a new or empty "
                     f"directory, or a previous zoo run (with {' or '.join(RUN_MARKERS)}) to continue with --resume "
                     f"or start over; choose another --out")


def start_over(out_dir: Path, overwrite: bool, env):
    """A fresh run in a directory whose previous run left checkpoints: their later steps would be what a later
    --resume picks up, so they go (with overwrite) or the run is refused, never silently mixed or lost. Every rank
    takes the same branch (a node without the shared directory sees no checkpoints)."""
    latest = checkpointing.latest_checkpoint(out_dir)
    if any_rank(latest is not None and not overwrite, env.device):
        raise InputError(f"--out {out_dir} holds a previous run's checkpoints"
                         f"{f' (latest {latest.name})' if latest else ''}; allowed: --resume to continue it, "
                         f"--overwrite to start over (its checkpoints are deleted), or another --out")
    if latest is not None and env.is_main:
        shutil.rmtree(out_dir / "checkpoints")
        print(f"--overwrite: deleted the previous run's checkpoints in {out_dir} (latest {latest.name})")
    env.barrier()


def _check_resume_config(out_dir: Path, config: TrainConfig):
    saved_path = out_dir / "train_config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())["train"]
    now = config_to_dict(config)
    # settings that change neither the batches nor the updates (batches are a function of seed and step only,
    # whoever builds them) may differ on resume
    free = ("steps", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints", "tensorboard", "num_workers",
            "dist_timeout_s")
    changed = [k for k in now if k not in free and saved.get(k) != now[k]]
    if changed:
        raise InputError(f"--resume with different training settings than {saved_path}: "
                         + ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed))
