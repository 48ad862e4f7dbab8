"""Atomic training checkpoints with exact resume.

A checkpoint is a directory `checkpoints/step_00000010/`. It is written under a temporary name, the
`COMPLETE` marker goes in last, then the directory is renamed into place: a run killed mid-write leaves
only a `.tmp_*` directory that resume ignores, and the last good checkpoint untouched.

Contents: model + optimizer + tensors laid out like the parameters (the EMA weights), written the way the
strategy keeps them (zoo/train/strategy.py: one file from rank 0, or DCP shards from every rank under
FSDP), the trainer state (step, data position, grad scaler, EMA settings, non-finite counters) and each
rank's RNG states (python, numpy, torch, cuda). Everything is read back with `weights_only=True` or DCP:
no arbitrary unpickling.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from zoo.train.strategy import Single
from zoo.utils import publish

MARKER = "COMPLETE"


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": numpy_state[2],
                       "has_gauss": numpy_state[3], "cached_gaussian": numpy_state[4]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return []
    done = [d for d in root.glob("step_*") if (d / MARKER).exists()]
    return sorted(done, key=lambda d: int(d.name.split("_")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(run_dir: Path, step: int, strategy: Single, model, optimizer, trainer_state: dict,
                    sharded: dict, keep: int = 2) -> Path:
    """Every rank calls this. Rank 0 publishes the directory once all ranks have written their parts."""
    env = strategy.env
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step:08d}", root / f".tmp_step_{step:08d}"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    env.barrier()

    strategy.save(model, optimizer, tmp, sharded)
    if env.is_main:
        torch.save(trainer_state, tmp / "trainer.pt")
    torch.save(rng_state(), tmp / f"rng_rank{env.rank}.pt")
    env.barrier()

    if env.is_main:
        (tmp / MARKER).write_text(json.dumps({"step": step, "world_size": env.world_size,
                                              "strategy": strategy.name}))
        publish(tmp, final)  # the checkpoint appears whole or not at all
        for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    env.barrier()
    return final


def load_checkpoint(path: Path, strategy: Single, model, optimizer, sharded: dict) -> tuple[dict, dict]:
    """Restore model, optimizer and this rank's RNG in place; returns (trainer state, the saved `sharded`)."""
    saved = strategy.load(model, optimizer, path, sharded)
    rng_file = path / f"rng_rank{strategy.env.rank}.pt"
    if rng_file.exists():  # a different world size has no RNG file for new ranks: they keep their seed
        set_rng_state(torch.load(rng_file, weights_only=True))
    return torch.load(path / "trainer.pt", map_location="cpu", weights_only=True), saved
