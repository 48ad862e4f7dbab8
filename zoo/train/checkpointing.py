"""Atomic training checkpoints with exact resume.

A checkpoint is a directory `checkpoints/step_00000010/`. It is written under a temporary name, the
`COMPLETE` marker goes in last, then the directory is renamed into place: a run killed mid-write leaves
only a `.tmp_*` directory that resume ignores, and the last good checkpoint untouched.

Contents: model + optimizer (FSDP: sharded, through torch.distributed.checkpoint; otherwise one file
from rank 0, ZeRO-1 optimizer shards consolidated first), trainer state (step, data position, grad
scaler, EMA, non-finite counters) and each rank's RNG states (python, numpy, torch, cuda). Everything is
read back with `weights_only=True` or DCP: no arbitrary unpickling.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from zoo.train.distributed import Dist, unwrap

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


def save_checkpoint(run_dir: Path, step: int, model, optimizer, trainer_state: dict, strategy: str, env: Dist,
                    keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step:08d}", root / f".tmp_step_{step:08d}"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    env.barrier()

    if strategy == "fsdp":
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / "sharded"))
    else:
        if strategy == "zero1":
            optimizer.consolidate_state_dict(to=0)  # every rank takes part; rank 0 receives the shards
        if env.is_main:
            torch.save({"model": unwrap(model).state_dict(), "optim": optimizer.state_dict()}, tmp / "state.pt")
    if env.is_main:
        torch.save(trainer_state, tmp / "trainer.pt")
    torch.save(rng_state(), tmp / f"rng_rank{env.rank}.pt")
    env.barrier()

    if env.is_main:
        (tmp / MARKER).write_text(json.dumps({"step": step, "world_size": env.world_size, "strategy": strategy}))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # atomic on POSIX: the checkpoint appears whole or not at all
        for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    env.barrier()
    return final


def load_checkpoint(path: Path, model, optimizer, strategy: str, env: Dist) -> dict:
    """Restore model, optimizer and this rank's RNG in place; returns the trainer state."""
    meta = json.loads((path / MARKER).read_text())
    if meta["strategy"] != strategy and "fsdp" in (meta["strategy"], strategy):
        raise ValueError(f"{path} was written with strategy={meta['strategy']}; resuming with {strategy} "
                         f"is not supported across FSDP's sharded format")
    if strategy == "fsdp":
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=str(path / "sharded"))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        state = torch.load(path / "state.pt", map_location=env.device, weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
    rng_file = path / f"rng_rank{env.rank}.pt"
    if rng_file.exists():  # a different world size has no RNG file for new ranks: they keep their seed
        set_rng_state(torch.load(rng_file, weights_only=True))
    return torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
